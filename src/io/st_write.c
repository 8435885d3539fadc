/*
 * Streamed safetensors writing: tensors are declared up front, so every header is final before the
 * first data byte; data then go straight to their place in the shard files with pwrite, in any
 * order, and the writer checks at the end that every byte was written exactly once.
 */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/strbuf.h"
#include "base/sys.h"

#define STW_MAX_OFFSET (UINT64_C(1) << 53) /* readers keep offsets in doubles */
#define STW_INDEX "model.safetensors.index.json"

typedef struct stw_range {
    uint64_t begin, end;
} stw_range;

typedef struct stw_tensor {
    char *name;
    g4q_dtype dtype;
    int ndim;
    int64_t shape[G4Q_MAX_DIMS];
    uint64_t nbytes;
    size_t shard;
    uint64_t data_offset; /* within the shard's data section */
    uint64_t file_offset; /* absolute, in the shard file */
    uint64_t written;     /* bytes written so far */
    stw_range *ranges;    /* written byte ranges: sorted, disjoint, adjacent ones merged */
    size_t nranges, cap;
} stw_tensor;

typedef struct stw_shard {
    char name[64];
    char *path;
    int fd; /* -1 when closed */
    size_t first, end; /* tensors [first, end) */
    uint64_t data_bytes;
} stw_shard;

enum { STW_DECLARING, STW_WRITING, STW_DONE, STW_FAILED };

struct g4q_st_writer {
    g4q_ctx *ctx;
    char *dir;
    uint64_t shard_bytes;
    char **meta; /* [2 * nmeta] copies of key, value */
    size_t nmeta;
    stw_tensor *t;
    size_t n, cap;
    stw_shard *shards;
    size_t nshards;
    int state;
};


/* ---- declaration ---- */

static int valid_text(const char *s)
{
    size_t n = strlen(s);
    return g4q_st_utf8_check(s, n) == n;
}

g4q_status g4q_stw_create(g4q_ctx *ctx, const char *dir, const g4q_st_writer_opts *opts,
                          g4q_st_writer **out)
{
    *out = NULL;
    if (!g4q_is_dir(dir))
        return g4q_fail(ctx, G4Q_ERR_NOT_FOUND, "%s: not an existing directory", dir);
    g4q_st_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", dir);
    }
    w->ctx = ctx;
    w->shard_bytes = opts ? opts->shard_bytes : 0;
    const char *const *kv = opts ? opts->metadata_kv : NULL;
    size_t nkv = 0;
    while (kv && kv[2 * nkv])
        nkv++;
    w->meta = calloc(2 * nkv + 1, sizeof *w->meta);
    if (!w->meta) {
        g4q_stw_free(w);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", dir);
    }
    for (size_t i = 0; i < nkv; i++) {
        const char *k = kv[2 * i], *v = kv[2 * i + 1];
        g4q_status st = G4Q_OK;
        if (!v || !valid_text(k) || !valid_text(v))
            st = g4q_fail(ctx, G4Q_ERR_INVALID,
                          "%s: metadata key '%s': missing value or not valid UTF-8", dir, k);
        for (size_t j = 0; j < i && st == G4Q_OK; j++)
            if (strcmp(kv[2 * j], k) == 0)
                st = g4q_fail(ctx, G4Q_ERR_INVALID, "%s: metadata key '%s' given twice", dir, k);
        if (st == G4Q_OK && (!(w->meta[2 * i] = strdup(k)) || !(w->meta[2 * i + 1] = strdup(v))))
            st = g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", dir);
        w->nmeta = i + 1;
        if (st != G4Q_OK) {
            g4q_stw_free(w);
            return st;
        }
    }
    *out = w;
    return G4Q_OK;
}

g4q_status g4q_stw_declare(g4q_st_writer *w, const char *name, g4q_dtype dtype, int ndim,
                           const int64_t *shape, size_t *index)
{
    g4q_ctx *ctx = w->ctx;
    if (w->state != STW_DECLARING)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%s: tensor '%s' declared after g4q_stw_begin",
                        w->dir, name ? name : "(null)");
    if (!name || !*name || !valid_text(name) || strcmp(name, "__metadata__") == 0)
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "%s: tensor name '%s' is empty, not valid UTF-8 or reserved", w->dir,
                        name ? name : "(null)");
    if ((unsigned)dtype >= G4Q_DT_COUNT || ndim < 0 || ndim > G4Q_MAX_DIMS || (ndim && !shape))
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%s: tensor '%s': bad dtype %d or ndim %d", w->dir,
                        name, (int)dtype, ndim);
    uint64_t numel = 1;
    int overflow = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (uint64_t)shape[d] > STW_MAX_OFFSET)
            return g4q_fail(ctx, G4Q_ERR_INVALID, "%s: tensor '%s': dim %d is %" PRId64, w->dir,
                            name, d, shape[d]);
        if (__builtin_mul_overflow(numel, (uint64_t)shape[d], &numel))
            overflow = 1;
    }
    uint64_t nbytes = 0;
    if (numel && (overflow || __builtin_mul_overflow(numel, g4q_dtype_size(dtype), &nbytes) ||
                  nbytes > STW_MAX_OFFSET))
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%s: tensor '%s': more than 2^53 bytes", w->dir,
                        name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        stw_tensor *t = realloc(w->t, cap * sizeof *t);
        if (!t)
            return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", w->dir);
        w->t = t;
        w->cap = cap;
    }
    stw_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", w->dir);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++)
        t->shape[d] = shape[d];
    t->nbytes = nbytes;
    if (index)
        *index = w->n;
    w->n++;
    return G4Q_OK;
}

/* ---- begin: shards, headers, reserved space ---- */

static int cmp_tensor_ptr_name(const void *a, const void *b)
{
    const stw_tensor *x = *(const stw_tensor *const *)a, *y = *(const stw_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Tensor pointers sorted by name (caller frees); reports a repeated name. */
static g4q_status sorted_names(g4q_st_writer *w, stw_tensor ***out)
{
    stw_tensor **v = calloc(w->n + 1, sizeof *v);
    if (!v)
        return g4q_fail(w->ctx, G4Q_ERR_NOMEM, "%s: out of memory", w->dir);
    for (size_t i = 0; i < w->n; i++)
        v[i] = &w->t[i];
    if (w->n > 1)
        qsort(v, w->n, sizeof *v, cmp_tensor_ptr_name);
    for (size_t i = 1; i < w->n; i++)
        if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
            g4q_status st = g4q_fail(w->ctx, G4Q_ERR_INVALID, "%s: tensor '%s' declared twice",
                                     w->dir, v[i]->name);
            free(v);
            return st;
        }
    *out = v;
    return G4Q_OK;
}

static g4q_status assign_shards(g4q_st_writer *w)
{
    size_t ns = w->n ? 0 : 1;
    uint64_t cur = 0;
    for (size_t i = 0; i < w->n; i++) {
        uint64_t b = w->t[i].nbytes;
        if (ns == 0 || (w->shard_bytes && cur > 0 && b > 0 &&
                        (cur >= w->shard_bytes || b > w->shard_bytes - cur))) {
            ns++;
            cur = 0;
        }
        w->t[i].shard = ns - 1;
        w->t[i].data_offset = cur;
        cur += b;
        if (cur > STW_MAX_OFFSET)
            return g4q_fail(w->ctx, G4Q_ERR_INVALID,
                            "%s: tensor '%s': a shard would hold more than 2^53 bytes", w->dir,
                            w->t[i].name);
    }
    w->shards = calloc(ns, sizeof *w->shards);
    if (!w->shards)
        return g4q_fail(w->ctx, G4Q_ERR_NOMEM, "%s: out of memory", w->dir);
    w->nshards = ns;
    for (size_t s = 0; s < ns; s++) {
        stw_shard *sh = &w->shards[s];
        sh->fd = -1;
        if (ns == 1)
            snprintf(sh->name, sizeof sh->name, "model.safetensors");
        else
            snprintf(sh->name, sizeof sh->name, "model-%05zu-of-%05zu.safetensors", s + 1, ns);
        char path[4096];
        G4Q_TRY(g4q_path_join(w->ctx, path, sizeof path, w->dir, sh->name));
        if (!(sh->path = strdup(path)))
            return g4q_fail(w->ctx, G4Q_ERR_NOMEM, "%s: out of memory", w->dir);
    }
    for (size_t i = 0; i < w->n; i++) {
        stw_shard *sh = &w->shards[w->t[i].shard];
        if (sh->end == 0)
            sh->first = i;
        sh->end = i + 1;
        sh->data_bytes += w->t[i].nbytes;
    }
    return G4Q_OK;
}

/* The padded header of one shard: 8-byte length, JSON, spaces to a multiple of 8. */
static g4q_status build_header(g4q_st_writer *w, const stw_shard *sh, g4q_strbuf *b)
{
    g4q_strbuf_add(b, "\0\0\0\0\0\0\0\0", 8);
    g4q_strbuf_str(b, "{\"__metadata__\":{");
    int user_format = 0;
    for (size_t i = 0; i < w->nmeta; i++)
        user_format |= strcmp(w->meta[2 * i], "format") == 0;
    if (!user_format)
        g4q_strbuf_str(b, "\"format\":\"pt\"");
    for (size_t i = 0; i < w->nmeta; i++) {
        if (i || !user_format)
            g4q_strbuf_str(b, ",");
        g4q_strbuf_json_string(b, w->meta[2 * i], 0);
        g4q_strbuf_str(b, ":");
        g4q_strbuf_json_string(b, w->meta[2 * i + 1], 0);
    }
    g4q_strbuf_str(b, "}");
    for (size_t i = sh->first; i < sh->end; i++) {
        const stw_tensor *t = &w->t[i];
        g4q_strbuf_str(b, ",");
        g4q_strbuf_json_string(b, t->name, 0);
        g4q_strbuf_fmt(b, ":{\"dtype\":\"%s\",\"shape\":[", g4q_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            g4q_strbuf_fmt(b, "%s%" PRId64, d ? "," : "", t->shape[d]);
        g4q_strbuf_fmt(b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", t->data_offset,
               t->data_offset + t->nbytes);
    }
    g4q_strbuf_str(b, "}");
    while (b->len % 8)
        g4q_strbuf_str(b, " ");
    if (b->oom)
        return g4q_fail(w->ctx, G4Q_ERR_NOMEM, "%s: out of memory for the header", sh->path);
    uint64_t n = b->len - 8;
    if (n > G4Q_ST_MAX_HEADER)
        return g4q_fail(w->ctx, G4Q_ERR_INVALID, "%s: header of %" PRIu64 " bytes exceeds %u",
                        sh->path, n, G4Q_ST_MAX_HEADER);
    for (int k = 0; k < 8; k++)
        b->p[k] = (char)(n >> (8 * k));
    return G4Q_OK;
}

static g4q_status pwrite_all(g4q_ctx *ctx, int fd, const char *path, const char *what,
                             const void *data, uint64_t n, uint64_t off)
{
    const unsigned char *p = data;
    while (n > 0) {
        size_t chunk = n > (UINT64_C(1) << 30) ? (size_t)1 << 30 : (size_t)n;
        ssize_t r = pwrite(fd, p, chunk, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            return g4q_fail(ctx, g4q_status_from_write_errno(e), "%s: %s: write failed: %s", path,
                            what, strerror(e));
        }
        p += r;
        n -= (uint64_t)r;
        off += (uint64_t)r;
    }
    return G4Q_OK;
}

static g4q_status begin_shard(g4q_st_writer *w, stw_shard *sh)
{
    g4q_strbuf b = {0};
    g4q_status st = build_header(w, sh, &b);
    if (st != G4Q_OK) {
        free(b.p);
        return st;
    }
    uint64_t hdr = b.len;
    for (size_t i = sh->first; i < sh->end; i++)
        w->t[i].file_offset = hdr + w->t[i].data_offset;
    sh->fd = open(sh->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (sh->fd < 0) {
        int e = errno;
        free(b.p);
        return g4q_fail(w->ctx, g4q_status_from_write_errno(e), "%s: cannot create: %s",
                        sh->path, strerror(e));
    }
    st = pwrite_all(w->ctx, sh->fd, sh->path, "header", b.p, hdr, 0);
    free(b.p);
    G4Q_TRY(st);
    if (sh->data_bytes > 0) {
        int e = posix_fallocate(sh->fd, (off_t)hdr, (off_t)sh->data_bytes);
        if (e != 0)
            return g4q_fail(w->ctx, g4q_status_from_write_errno(e),
                            "%s: cannot reserve %" PRIu64 " bytes: %s", sh->path,
                            sh->data_bytes, strerror(e));
    }
    return G4Q_OK;
}

g4q_status g4q_stw_begin(g4q_st_writer *w)
{
    if (w->state != STW_DECLARING)
        return g4q_fail(w->ctx, G4Q_ERR_INVALID, "%s: g4q_stw_begin called twice", w->dir);
    w->state = STW_FAILED;
    stw_tensor **names;
    G4Q_TRY(sorted_names(w, &names));
    free(names);
    G4Q_TRY(assign_shards(w));
    for (size_t s = 0; s < w->nshards; s++)
        G4Q_TRY(begin_shard(w, &w->shards[s]));
    w->state = STW_WRITING;
    return G4Q_OK;
}

/* ---- writing ---- */

/* Records [b, e) as written: -1 when it overlaps bytes already written, -2 when out of memory. */
static int range_add(stw_tensor *t, uint64_t b, uint64_t e)
{
    size_t lo = 0, hi = t->nranges; /* first range with begin >= e... found by binary search */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ranges[mid].begin < b)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* lo: first range with begin >= b. */
    if (lo < t->nranges && t->ranges[lo].begin < e)
        return -1;
    if (lo > 0 && t->ranges[lo - 1].end > b)
        return -1;
    int join_prev = lo > 0 && t->ranges[lo - 1].end == b;
    int join_next = lo < t->nranges && t->ranges[lo].begin == e;
    if (join_prev && join_next) {
        t->ranges[lo - 1].end = t->ranges[lo].end;
        memmove(&t->ranges[lo], &t->ranges[lo + 1], (t->nranges - lo - 1) * sizeof *t->ranges);
        t->nranges--;
    } else if (join_prev) {
        t->ranges[lo - 1].end = e;
    } else if (join_next) {
        t->ranges[lo].begin = b;
    } else {
        if (t->nranges == t->cap) {
            size_t cap = t->cap ? 2 * t->cap : 4;
            stw_range *r = realloc(t->ranges, cap * sizeof *r);
            if (!r)
                return -2;
            t->ranges = r;
            t->cap = cap;
        }
        memmove(&t->ranges[lo + 1], &t->ranges[lo], (t->nranges - lo) * sizeof *t->ranges);
        t->ranges[lo].begin = b;
        t->ranges[lo].end = e;
        t->nranges++;
    }
    return 0;
}

g4q_status g4q_stw_claim(g4q_st_writer *w, size_t index, uint64_t offset, uint64_t n,
                         g4q_stw_target *out)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    if (w->state != STW_WRITING)
        return g4q_fail(w->ctx, G4Q_ERR_INVALID, "%s: g4q_stw_write outside begin..finish",
                        w->dir);
    if (index >= w->n)
        return g4q_fail(w->ctx, G4Q_ERR_INVALID, "%s: tensor index %zu out of range (%zu)",
                        w->dir, index, w->n);
    stw_tensor *t = &w->t[index];
    const stw_shard *sh = &w->shards[t->shard];
    if (offset > t->nbytes || n > t->nbytes - offset)
        return g4q_fail(w->ctx, G4Q_ERR_INVALID,
                        "%s: tensor '%s': write of bytes [%" PRIu64 ", +%" PRIu64
                        ") past its %" PRIu64 " bytes",
                        sh->path, t->name, offset, n, t->nbytes);
    if (n > 0) {
        int r = range_add(t, offset, offset + n);
        if (r == -1)
            return g4q_fail(w->ctx, G4Q_ERR_INVALID,
                            "%s: tensor '%s': bytes [%" PRIu64 ", %" PRIu64 ") written twice",
                            sh->path, t->name, offset, offset + n);
        if (r == -2)
            return g4q_fail(w->ctx, G4Q_ERR_NOMEM, "%s: out of memory", sh->path);
        t->written += n;
    }
    out->fd = sh->fd;
    out->file_offset = t->file_offset + offset;
    out->nbytes = n;
    out->path = sh->path;
    out->name = t->name;
    return G4Q_OK;
}

g4q_status g4q_stw_write_claimed(g4q_ctx *ctx, const g4q_stw_target *t, const void *data)
{
    if (t->nbytes == 0)
        return G4Q_OK;
    char what[64 + 32];
    snprintf(what, sizeof what, "tensor '%.60s'", t->name);
    return pwrite_all(ctx, t->fd, t->path, what, data, t->nbytes, t->file_offset);
}

void g4q_stw_set_failed(g4q_st_writer *w)
{
    w->state = STW_FAILED;
}

g4q_status g4q_stw_write(g4q_st_writer *w, size_t index, uint64_t offset, const void *data,
                         uint64_t n)
{
    g4q_stw_target t;
    G4Q_TRY(g4q_stw_claim(w, index, offset, n, &t));
    g4q_status st = g4q_stw_write_claimed(w->ctx, &t, data);
    if (st != G4Q_OK)
        g4q_stw_set_failed(w);
    return st;
}

/* ---- finish ---- */

static g4q_status write_index(g4q_st_writer *w)
{
    stw_tensor **v;
    G4Q_TRY(sorted_names(w, &v));
    uint64_t total = 0;
    for (size_t i = 0; i < w->n; i++)
        total += w->t[i].nbytes;
    g4q_strbuf b = {0};
    g4q_strbuf_fmt(&b, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n  \"weight_map\": {",
           total);
    for (size_t i = 0; i < w->n; i++) {
        g4q_strbuf_str(&b, i ? ",\n    " : "\n    ");
        g4q_strbuf_json_string(&b, v[i]->name, 0);
        g4q_strbuf_str(&b, ": ");
        g4q_strbuf_json_string(&b, w->shards[v[i]->shard].name, 0);
    }
    g4q_strbuf_str(&b, "\n  }\n}\n");
    free(v);
    char path[4096];
    g4q_status st = g4q_path_join(w->ctx, path, sizeof path, w->dir, STW_INDEX);
    if (st == G4Q_OK && b.oom)
        st = g4q_fail(w->ctx, G4Q_ERR_NOMEM, "%s: out of memory", path);
    if (st == G4Q_OK)
        st = g4q_write_file(w->ctx, path, b.p, b.len);
    free(b.p);
    return st;
}

g4q_status g4q_stw_finish(g4q_st_writer *w)
{
    if (w->state != STW_WRITING)
        return g4q_fail(w->ctx, G4Q_ERR_INVALID, "%s: g4q_stw_finish without a good begin",
                        w->dir);
    size_t missing = 0, first = 0;
    for (size_t i = 0; i < w->n; i++)
        if (w->t[i].written != w->t[i].nbytes && missing++ == 0)
            first = i;
    if (missing) {
        const stw_tensor *t = &w->t[first];
        return g4q_fail(w->ctx, G4Q_ERR_INVALID,
                        "%s: tensor '%s': %" PRIu64 " of %" PRIu64
                        " bytes written (%zu tensors incomplete)",
                        w->shards[t->shard].path, t->name, t->written, t->nbytes, missing);
    }
    w->state = STW_FAILED;
    for (size_t s = 0; s < w->nshards; s++) {
        stw_shard *sh = &w->shards[s];
        int rc = close(sh->fd);
        sh->fd = -1;
        if (rc != 0)
            return g4q_fail(w->ctx, g4q_status_from_write_errno(errno), "%s: close failed: %s",
                            sh->path, strerror(errno));
    }
    if (w->nshards > 1)
        G4Q_TRY(write_index(w));
    w->state = STW_DONE;
    return G4Q_OK;
}

void g4q_stw_free(g4q_st_writer *w)
{
    if (!w)
        return;
    for (size_t s = 0; s < w->nshards; s++) {
        if (w->shards[s].fd >= 0)
            close(w->shards[s].fd);
        free(w->shards[s].path);
    }
    free(w->shards);
    for (size_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].ranges);
    }
    free(w->t);
    for (size_t i = 0; w->meta && i < 2 * w->nmeta; i++)
        free(w->meta[i]);
    free(w->meta);
    free(w->dir);
    free(w);
}
