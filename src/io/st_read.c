/*
 * Reading one safetensors file: the 8-byte header length, the JSON header (validated in full before
 * anything is handed out) and a read-only mapping of the data.
 */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest integer a double (as cJSON stores numbers) holds exactly. */
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53 */

struct g4q_st_file {
    char *path;                 /* label used in messages */
    const unsigned char *base;  /* the whole file image */
    size_t len;                 /* its length in bytes */
    int mapped;                 /* 1 when base is our mmap (unmapped on close) */
    size_t count;               /* number of tensors */
    g4q_tensor *tensors;        /* [count], data-offset order */
    const g4q_tensor **by_name; /* [count], sorted by name (strcmp) */
    size_t nmeta;               /* number of __metadata__ entries */
    const char **meta;          /* [2 * nmeta]: key, value, ... */
    char *strings;              /* one block holding every name, key and value */
};

/* One header entry while it is being validated. */
typedef struct st_entry {
    g4q_tensor t;
    uint64_t begin, end; /* data_offsets, relative to the data section */
} st_entry;

size_t g4q_st_utf8_check(const void *buf, size_t len)
{
    const unsigned char *s = buf;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return i; /* continuation byte, overlong lead 0xc0/0xc1, or > 0xf4 */
        }
        if (len - i <= n)
            return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n + 1;
    }
    return len;
}

static int is_json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A double that is an integer in [0, 2^53]. */
static int exact_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return 0;
    double d = j->valuedouble;
    if (!(d >= 0.0 && d <= ST_MAX_EXACT) || d != floor(d))
        return 0;
    *out = (uint64_t)d;
    return 1;
}

static void fmt_shape(char *buf, size_t n, const g4q_tensor *t)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, d ? ", " : "", t->shape[d]);
    if (k < n)
        snprintf(buf + k, n - k, "]");
}

static g4q_status parse_shape(g4q_ctx *ctx, const char *label, const char *name, const cJSON *j,
                              g4q_tensor *t)
{
    if (!cJSON_IsArray(j))
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: tensor '%s': 'shape' is not an array", label,
                        name);
    int nd = cJSON_GetArraySize(j);
    if (nd > G4Q_MAX_DIMS)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "%s: tensor '%s': %d dims, at most %d supported",
                        label, name, nd, G4Q_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int d = 0, zero = 0, overflow = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        uint64_t v;
        if (!exact_uint(e, &v)) {
            if (cJSON_IsNumber(e))
                return g4q_fail(ctx, G4Q_ERR_FORMAT,
                                "%s: tensor '%s': shape dim %d is %.17g, not an integer in "
                                "[0, 2^53]",
                                label, name, d, e->valuedouble);
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: tensor '%s': shape dim %d is not a number",
                            label, name, d);
        }
        t->shape[d++] = (int64_t)v;
        if (v == 0)
            zero = 1;
        else if (__builtin_mul_overflow(numel, v, &numel))
            overflow = 1;
    }
    uint64_t es = g4q_dtype_size(t->dtype);
    /* A zero dim makes an empty tensor even when the other dims' product overflows. */
    if (zero) {
        t->numel = 0;
        t->nbytes = 0;
        return G4Q_OK;
    }
    if (overflow || __builtin_mul_overflow(numel, es, &t->nbytes)) {
        char sh[256];
        fmt_shape(sh, sizeof sh, t);
        return g4q_fail(ctx, G4Q_ERR_FORMAT,
                        "%s: tensor '%s': shape %s of %s needs more than 2^64 bytes", label, name,
                        sh, g4q_dtype_name(t->dtype));
    }
    t->numel = numel;
    return G4Q_OK;
}

static g4q_status parse_offsets(g4q_ctx *ctx, const char *label, const char *name,
                                const cJSON *j, st_entry *e)
{
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) != 2)
        return g4q_fail(ctx, G4Q_ERR_FORMAT,
                        "%s: tensor '%s': 'data_offsets' is not an array of two numbers", label,
                        name);
    uint64_t v[2];
    for (int k = 0; k < 2; k++) {
        const cJSON *x = cJSON_GetArrayItem(j, k);
        if (!exact_uint(x, &v[k])) {
            if (cJSON_IsNumber(x))
                return g4q_fail(ctx, G4Q_ERR_FORMAT,
                                "%s: tensor '%s': data_offsets[%d] is %.17g, not an integer in "
                                "[0, 2^53]",
                                label, name, k, x->valuedouble);
            return g4q_fail(ctx, G4Q_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets[%d] is not a number", label, name, k);
        }
    }
    e->begin = v[0];
    e->end = v[1];
    if (e->end < e->begin)
        return g4q_fail(ctx, G4Q_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                        "] end before they begin",
                        label, name, e->begin, e->end);
    return G4Q_OK;
}

/* Validates one tensor entry {"dtype", "shape", "data_offsets"} with exactly those keys. */
static g4q_status parse_entry(g4q_ctx *ctx, const char *label, const cJSON *j, st_entry *e)
{
    const char *name = j->string;
    if (!cJSON_IsObject(j))
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", label,
                        name);
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    const cJSON *got[3] = {NULL, NULL, NULL};
    const cJSON *c;
    cJSON_ArrayForEach(c, j)
    {
        int k = 0;
        while (k < 3 && strcmp(c->string, keys[k]) != 0)
            k++;
        if (k == 3)
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: tensor '%s': unexpected key '%s'", label,
                            name, c->string);
        if (got[k])
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: tensor '%s': key '%s' appears twice", label,
                            name, keys[k]);
        got[k] = c;
    }
    for (int k = 0; k < 3; k++)
        if (!got[k])
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: tensor '%s': missing key '%s'", label, name,
                            keys[k]);
    memset(e, 0, sizeof *e);
    e->t.name = name;
    if (!cJSON_IsString(got[0]))
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: tensor '%s': 'dtype' is not a string", label,
                        name);
    int dt = g4q_dtype_parse(got[0]->valuestring);
    if (dt < 0)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%s'", label,
                        name, got[0]->valuestring);
    e->t.dtype = (g4q_dtype)dt;
    G4Q_TRY(parse_shape(ctx, label, name, got[1], &e->t));
    G4Q_TRY(parse_offsets(ctx, label, name, got[2], e));
    if (e->end - e->begin != e->t.nbytes) {
        char sh[256];
        fmt_shape(sh, sizeof sh, &e->t);
        return g4q_fail(ctx, G4Q_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                        " bytes, shape %s of %s needs %" PRIu64,
                        label, name, e->begin, e->end, e->end - e->begin, sh,
                        g4q_dtype_name(e->t.dtype), e->t.nbytes);
    }
    return G4Q_OK;
}

static int cmp_tensor_ptr_name(const void *a, const void *b)
{
    const g4q_tensor *x = *(const g4q_tensor *const *)a, *y = *(const g4q_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_entry_offset(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

/* Sorts f->by_name over f->tensors; reports the first name that appears twice. */
static g4q_status build_name_index(g4q_ctx *ctx, const char *label, g4q_st_file *f)
{
    for (size_t i = 0; i < f->count; i++)
        f->by_name[i] = &f->tensors[i];
    if (f->count > 1)
        qsort(f->by_name, f->count, sizeof *f->by_name, cmp_tensor_ptr_name);
    for (size_t i = 1; i < f->count; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: tensor '%s' appears twice in the header",
                            label, f->by_name[i]->name);
    return G4Q_OK;
}

/* Checks that the sorted ranges tile [0, data_len) exactly. */
static g4q_status check_ranges(g4q_ctx *ctx, const char *label, const st_entry *e, size_t n,
                               uint64_t data_len)
{
    uint64_t expect = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].begin < expect)
            return g4q_fail(ctx, G4Q_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                            "] overlap tensor '%s' (which ends at %" PRIu64 ")",
                            label, e[i].t.name, e[i].begin, e[i].end, e[i - 1].t.name, expect);
        if (e[i].begin > expect)
            return g4q_fail(ctx, G4Q_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                            "] leave a gap of %" PRIu64 " bytes after offset %" PRIu64,
                            label, e[i].t.name, e[i].begin, e[i].end, e[i].begin - expect, expect);
        expect = e[i].end;
    }
    if (expect != data_len)
        return g4q_fail(ctx, G4Q_ERR_FORMAT,
                        "%s: %" PRIu64 " trailing bytes after the last tensor's data (data ends at "
                        "%" PRIu64 ", the data section holds %" PRIu64 ")",
                        label, data_len - expect, expect, data_len);
    return G4Q_OK;
}

/* Checks the "__metadata__" entry is an object of string values (distinct keys: see
 * check_metadata_keys) and counts its entries and string bytes. */
static g4q_status check_metadata(g4q_ctx *ctx, const char *label, const cJSON *m, size_t *nmeta,
                                 size_t *bytes)
{
    if (!cJSON_IsObject(m))
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: '__metadata__' is not a JSON object", label);
    const cJSON *c;
    cJSON_ArrayForEach(c, m)
    {
        if (!cJSON_IsString(c))
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: __metadata__ key '%s' is not a string",
                            label, c->string);
        (*nmeta)++;
        *bytes += strlen(c->string) + strlen(c->valuestring) + 2;
    }
    return G4Q_OK;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Rejects a __metadata__ key that appears twice (sorting, so a huge header stays O(n log n)). */
static g4q_status check_metadata_keys(g4q_ctx *ctx, const char *label, const g4q_st_file *f)
{
    if (f->nmeta < 2)
        return G4Q_OK;
    const char **keys = malloc(f->nmeta * sizeof *keys);
    if (!keys)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", label);
    for (size_t i = 0; i < f->nmeta; i++)
        keys[i] = f->meta[2 * i];
    qsort(keys, f->nmeta, sizeof *keys, cmp_str_ptr);
    g4q_status st = G4Q_OK;
    for (size_t i = 1; i < f->nmeta && st == G4Q_OK; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            st = g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: __metadata__ key '%s' appears twice", label,
                          keys[i]);
    free(keys);
    return st;
}

static char *put_string(char **cursor, const char *s)
{
    size_t n = strlen(s) + 1;
    char *out = *cursor;
    memcpy(out, s, n);
    *cursor += n;
    return out;
}

/* Parses the JSON text, validates it and fills f (everything but path/base/len/mapped). */
static g4q_status parse_json(g4q_ctx *ctx, const char *label, const char *text, size_t n,
                             uint64_t data_len, uint64_t data_start, g4q_st_file *f)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu)",
                        label, at + 8);
    }
    g4q_status st = G4Q_OK;
    st_entry *ents = NULL;
    for (const char *p = end; p < text + n; p++)
        if (!is_json_space((unsigned char)*p)) {
            st = g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: junk after the header JSON at byte %zu", label,
                          (size_t)(p - text) + 8);
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        st = g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: header is not a JSON object", label);
        goto out;
    }
    size_t count = 0, nmeta = 0, bytes = 0;
    const cJSON *meta = NULL, *c;
    cJSON_ArrayForEach(c, root)
    {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (meta) {
                st = g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: '__metadata__' appears twice", label);
                goto out;
            }
            meta = c;
            if ((st = check_metadata(ctx, label, c, &nmeta, &bytes)) != G4Q_OK)
                goto out;
        } else {
            count++;
            bytes += strlen(c->string) + 1;
        }
    }
    ents = calloc(count ? count : 1, sizeof *ents);
    f->tensors = calloc(count ? count : 1, sizeof *f->tensors);
    f->by_name = calloc(count ? count : 1, sizeof *f->by_name);
    f->meta = calloc(2 * nmeta + 1, sizeof *f->meta);
    f->strings = malloc(bytes + 1);
    if (!ents || !f->tensors || !f->by_name || !f->meta || !f->strings) {
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory for %zu tensors", label, count);
        goto out;
    }
    size_t i = 0;
    cJSON_ArrayForEach(c, root)
    {
        if (c == meta)
            continue;
        if ((st = parse_entry(ctx, label, c, &ents[i])) != G4Q_OK)
            goto out;
        if (ents[i].end > data_len) {
            st = g4q_fail(ctx, G4Q_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                          "] run past the end of the file (the data section holds %" PRIu64
                          " bytes)",
                          label, c->string, ents[i].begin, ents[i].end, data_len);
            goto out;
        }
        i++;
    }
    /* Names first (a duplicate also shows up as an overlap, but this message is clearer). */
    f->count = count;
    for (i = 0; i < count; i++)
        f->tensors[i] = ents[i].t;
    if ((st = build_name_index(ctx, label, f)) != G4Q_OK)
        goto out;
    if (count > 1)
        qsort(ents, count, sizeof *ents, cmp_entry_offset);
    if ((st = check_ranges(ctx, label, ents, count, data_len)) != G4Q_OK)
        goto out;
    char *cursor = f->strings;
    for (i = 0; i < count; i++) {
        g4q_tensor *t = &f->tensors[i];
        *t = ents[i].t;
        t->name = put_string(&cursor, ents[i].t.name);
        t->file = 0;
        t->file_offset = data_start + ents[i].begin;
        t->data = f->base + t->file_offset;
    }
    if (meta) {
        size_t k = 0;
        cJSON_ArrayForEach(c, meta)
        {
            f->meta[k++] = put_string(&cursor, c->string);
            f->meta[k++] = put_string(&cursor, c->valuestring);
        }
    }
    f->nmeta = nmeta;
    if ((st = check_metadata_keys(ctx, label, f)) != G4Q_OK)
        goto out;
    st = build_name_index(ctx, label, f);
out:
    free(ents);
    cJSON_Delete(root);
    return st;
}

/* Validates the image f->base[0, f->len). */
static g4q_status parse_image(g4q_ctx *ctx, g4q_st_file *f)
{
    const char *label = f->path;
    if (f->len < 8)
        return g4q_fail(ctx, G4Q_ERR_FORMAT,
                        "%s: %zu bytes, too short for the 8-byte header length", label, f->len);
    uint64_t n = 0;
    for (int k = 7; k >= 0; k--)
        n = (n << 8) | f->base[k];
    if (n < 2)
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: header length %" PRIu64 " is too small", label,
                        n);
    if (n > G4Q_ST_MAX_HEADER)
        return g4q_fail(ctx, G4Q_ERR_FORMAT,
                        "%s: header length %" PRIu64 " exceeds the limit of %u bytes", label, n,
                        G4Q_ST_MAX_HEADER);
    if (n > f->len - 8)
        return g4q_fail(ctx, G4Q_ERR_FORMAT,
                        "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                        label, n, f->len);
    const unsigned char *h = f->base + 8;
    size_t bad = g4q_st_utf8_check(h, (size_t)n);
    if (bad < n)
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: header is not valid UTF-8 at byte %zu", label,
                        bad + 8);
    for (size_t k = 0; k < n; k++)
        if (h[k] < 0x20 && !is_json_space(h[k]))
            return g4q_fail(ctx, G4Q_ERR_FORMAT,
                            "%s: header holds control character 0x%02x at byte %zu", label, h[k],
                            k + 8);
    /* cJSON gets its own NUL-terminated copy, so it never reads past the header. */
    char *text = malloc((size_t)n + 1);
    if (!text)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: cannot allocate %" PRIu64 " header bytes", label,
                        n + 1);
    memcpy(text, h, (size_t)n);
    text[n] = '\0';
    g4q_status st = parse_json(ctx, label, text, (size_t)n, f->len - 8 - n, 8 + n, f);
    free(text);
    return st;
}

static g4q_status new_file(g4q_ctx *ctx, const char *label, g4q_st_file **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out || !((*out)->path = strdup(label))) {
        free(*out);
        *out = NULL;
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", label);
    }
    return G4Q_OK;
}

g4q_status g4q_st_open_memory(g4q_ctx *ctx, const char *label, const void *buf, size_t len,
                              g4q_st_file **out)
{
    *out = NULL;
    g4q_st_file *f;
    G4Q_TRY(new_file(ctx, label, &f));
    f->base = buf;
    f->len = len;
    g4q_status st = parse_image(ctx, f);
    if (st != G4Q_OK) {
        g4q_st_close(f);
        return st;
    }
    *out = f;
    return G4Q_OK;
}

g4q_status g4q_st_open(g4q_ctx *ctx, const char *path, g4q_st_file **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return g4q_fail(ctx, errno == ENOENT ? G4Q_ERR_NOT_FOUND : G4Q_ERR_IO, "%s: %s", path,
                        strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return g4q_fail(ctx, G4Q_ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    if (len < 8) {
        close(fd);
        return g4q_fail(ctx, G4Q_ERR_FORMAT,
                        "%s: %zu bytes, too short for the 8-byte header length", path, len);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return g4q_fail(ctx, G4Q_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, len,
                        strerror(e));
    g4q_st_file *f;
    g4q_status st = new_file(ctx, path, &f);
    if (st != G4Q_OK) {
        munmap(map, len);
        return st;
    }
    f->base = map;
    f->len = len;
    f->mapped = 1;
    st = parse_image(ctx, f);
    if (st != G4Q_OK) {
        g4q_st_close(f);
        return st;
    }
    *out = f;
    return G4Q_OK;
}

void g4q_st_close(g4q_st_file *f)
{
    if (!f)
        return;
    if (f->mapped)
        munmap((void *)f->base, f->len);
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    free(f->strings);
    free(f->path);
    free(f);
}

size_t g4q_st_count(const g4q_st_file *f)
{
    return f->count;
}

const g4q_tensor *g4q_st_tensor(const g4q_st_file *f, size_t i)
{
    return i < f->count ? &f->tensors[i] : NULL;
}

static int cmp_key_tensor(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const g4q_tensor *const *)elem)->name);
}

const g4q_tensor *g4q_st_find(const g4q_st_file *f, const char *name)
{
    if (f->count == 0)
        return NULL;
    const g4q_tensor *const *p =
        bsearch(name, f->by_name, f->count, sizeof *f->by_name, cmp_key_tensor);
    return p ? *p : NULL;
}

const char *g4q_st_metadata(const g4q_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta[2 * i], key) == 0)
            return f->meta[2 * i + 1];
    return NULL;
}

size_t g4q_st_metadata_count(const g4q_st_file *f)
{
    return f->nmeta;
}

const char *g4q_st_metadata_key(const g4q_st_file *f, size_t i)
{
    return i < f->nmeta ? f->meta[2 * i] : NULL;
}

const char *g4q_st_path(const g4q_st_file *f)
{
    return f->path;
}

int g4q_st_is_mapped(const g4q_st_file *f)
{
    return f->mapped;
}

int g4q_tensor_int_at(const g4q_tensor *t, uint64_t i, int64_t *out)
{
    if (i >= t->numel)
        return 0;
    const unsigned char *p = (const unsigned char *)t->data;
    if (t->dtype == G4Q_DT_I32) {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        *out = v;
        return 1;
    }
    if (t->dtype == G4Q_DT_I64) {
        memcpy(out, p + 8 * i, 8);
        return 1;
    }
    return 0;
}
