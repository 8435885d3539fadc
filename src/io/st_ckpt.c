/*
 * Checkpoint folders: one model.safetensors, or model.safetensors.index.json and the shards its
 * weight_map names. Every tensor of every shard is gathered into one contiguous array with a sorted
 * name index.
 */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/sys.h"

#define CKPT_SINGLE "model.safetensors"
#define CKPT_INDEX "model.safetensors.index.json"
#define CKPT_MAX_INDEX (256u << 20)

struct g4q_ckpt {
    char *dir;
    size_t nfiles;
    g4q_st_file **files;        /* [nfiles], sorted by file name */
    size_t count;               /* tensors in all files */
    g4q_tensor *tensors;        /* [count], file by file, data-offset order within a file */
    const g4q_tensor **by_name; /* [count], sorted by name */
    uint64_t data_bytes;
};

/* One weight_map entry: tensor name -> shard number. */
typedef struct map_entry {
    const char *name;
    const char *shard_name;
    size_t shard;
} map_entry;

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_map_entry(const void *a, const void *b)
{
    return strcmp(((const map_entry *)a)->name, ((const map_entry *)b)->name);
}

static int cmp_key_map_entry(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const map_entry *)elem)->name);
}

static int cmp_tensor_ptr_name(const void *a, const void *b)
{
    const g4q_tensor *x = *(const g4q_tensor *const *)a, *y = *(const g4q_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_key_tensor(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const g4q_tensor *const *)elem)->name);
}

static int plain_file_name(const char *s)
{
    return s[0] != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static g4q_status open_shard(g4q_ctx *ctx, g4q_ckpt *c, const char *name, const char *index_path)
{
    char path[4096];
    G4Q_TRY(g4q_path_join(ctx, path, sizeof path, c->dir, name));
    g4q_status st = g4q_st_open(ctx, path, &c->files[c->nfiles]);
    if (st != G4Q_OK) {
        if (index_path)
            g4q_error_prefix(ctx, "%s", index_path);
        return st;
    }
    c->nfiles++;
    return G4Q_OK;
}

/* Checks that weight_map and the opened shards agree exactly. */
static g4q_status check_consistency(g4q_ctx *ctx, const g4q_ckpt *c, const char *ipath,
                                    const map_entry *map, size_t nmap, char **shards)
{
    for (size_t i = 0; i < nmap; i++)
        if (!g4q_st_find(c->files[map[i].shard], map[i].name))
            return g4q_fail(ctx, G4Q_ERR_FORMAT,
                            "%s: tensor '%s': weight_map names shard %s, which does not hold it",
                            ipath, map[i].name, map[i].shard_name);
    for (size_t s = 0; s < c->nfiles; s++) {
        for (size_t k = 0; k < g4q_st_count(c->files[s]); k++) {
            const char *name = g4q_st_tensor(c->files[s], k)->name;
            const map_entry *m = bsearch(name, map, nmap, sizeof *map, cmp_key_map_entry);
            if (!m)
                return g4q_fail(ctx, G4Q_ERR_FORMAT,
                                "%s: tensor '%s': in shard %s but not in weight_map", ipath, name,
                                shards[s]);
            if (m->shard != s)
                return g4q_fail(ctx, G4Q_ERR_FORMAT,
                                "%s: tensor '%s': in shard %s but weight_map names %s", ipath,
                                name, shards[s], m->shard_name);
        }
    }
    return G4Q_OK;
}

/* Reads the index, opens every shard it names and checks both agree. */
static g4q_status open_index(g4q_ctx *ctx, g4q_ckpt *c, const char *ipath)
{
    char *text = NULL;
    size_t len = 0;
    G4Q_TRY(g4q_read_file(ctx, ipath, CKPT_MAX_INDEX, &text, &len));
    g4q_status st = G4Q_OK;
    cJSON *root = NULL;
    map_entry *map = NULL;
    char **shards = NULL;
    size_t bad = g4q_st_utf8_check(text, len);
    if (bad < len) {
        st = g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: not valid UTF-8 at byte %zu", ipath, bad);
        goto out;
    }
    root = cJSON_ParseWithLength(text, len);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        st = g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: not a JSON object with a \"weight_map\" object",
                      ipath);
        goto out;
    }
    size_t nmap = (size_t)cJSON_GetArraySize(wm), nshards = 0;
    map = calloc(nmap + 1, sizeof *map);
    shards = calloc(nmap + 1, sizeof *shards);
    if (!map || !shards) {
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", ipath);
        goto out;
    }
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, wm)
    {
        if (!cJSON_IsString(e) || !plain_file_name(e->valuestring)) {
            st = g4q_fail(ctx, G4Q_ERR_FORMAT,
                          "%s: tensor '%s': weight_map value is not a plain file name", ipath,
                          e->string);
            goto out;
        }
        map[i].name = e->string;
        map[i].shard_name = e->valuestring;
        shards[i++] = e->valuestring;
    }
    qsort(shards, nmap, sizeof *shards, cmp_str_ptr);
    for (i = 0; i < nmap; i++)
        if (i == 0 || strcmp(shards[i], shards[nshards - 1]) != 0)
            shards[nshards++] = shards[i];
    for (i = 0; i < nmap; i++) {
        char **p = bsearch(&map[i].shard_name, shards, nshards, sizeof *shards, cmp_str_ptr);
        map[i].shard = (size_t)(p - shards);
    }
    qsort(map, nmap, sizeof *map, cmp_map_entry);
    for (i = 1; i < nmap; i++)
        if (strcmp(map[i - 1].name, map[i].name) == 0) {
            st = g4q_fail(ctx, G4Q_ERR_FORMAT,
                          "%s: tensor '%s' appears twice in weight_map (%s, %s)", ipath,
                          map[i].name, map[i - 1].shard_name, map[i].shard_name);
            goto out;
        }
    c->files = calloc(nshards + 1, sizeof *c->files);
    if (!c->files) {
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", ipath);
        goto out;
    }
    for (i = 0; i < nshards && st == G4Q_OK; i++)
        st = open_shard(ctx, c, shards[i], ipath);
    if (st == G4Q_OK)
        st = check_consistency(ctx, c, ipath, map, nmap, shards);
out:
    free(map);
    free(shards);
    cJSON_Delete(root);
    free(text);
    return st;
}

/* Gathers all tensors into one array and builds the name index. */
static g4q_status gather(g4q_ctx *ctx, g4q_ckpt *c)
{
    for (size_t s = 0; s < c->nfiles; s++)
        c->count += g4q_st_count(c->files[s]);
    c->tensors = calloc(c->count + 1, sizeof *c->tensors);
    c->by_name = calloc(c->count + 1, sizeof *c->by_name);
    if (!c->tensors || !c->by_name)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory for %zu tensors", c->dir, c->count);
    size_t k = 0;
    for (size_t s = 0; s < c->nfiles; s++)
        for (size_t i = 0; i < g4q_st_count(c->files[s]); i++) {
            c->tensors[k] = *g4q_st_tensor(c->files[s], i);
            c->tensors[k].file = (int)s;
            c->data_bytes += c->tensors[k].nbytes;
            c->by_name[k] = &c->tensors[k];
            k++;
        }
    if (c->count > 1)
        qsort(c->by_name, c->count, sizeof *c->by_name, cmp_tensor_ptr_name);
    for (size_t i = 1; i < c->count; i++)
        if (strcmp(c->by_name[i - 1]->name, c->by_name[i]->name) == 0)
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: tensor '%s' appears in two files", c->dir,
                            c->by_name[i]->name);
    return G4Q_OK;
}

g4q_status g4q_ckpt_open(g4q_ctx *ctx, const char *dir, g4q_ckpt **out)
{
    *out = NULL;
    g4q_ckpt *c = calloc(1, sizeof *c);
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", dir);
    }
    char single[4096], index[4096];
    g4q_status st = g4q_path_join(ctx, single, sizeof single, dir, CKPT_SINGLE);
    if (st == G4Q_OK)
        st = g4q_path_join(ctx, index, sizeof index, dir, CKPT_INDEX);
    if (st == G4Q_OK) {
        if (g4q_path_exists(single)) {
            c->files = calloc(1, sizeof *c->files);
            st = c->files ? open_shard(ctx, c, CKPT_SINGLE, NULL)
                          : g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", dir);
        } else if (g4q_path_exists(index)) {
            st = open_index(ctx, c, index);
        } else {
            st = g4q_fail(ctx, G4Q_ERR_NOT_FOUND, "%s: neither %s nor %s found", dir, CKPT_SINGLE,
                          CKPT_INDEX);
        }
    }
    if (st == G4Q_OK)
        st = gather(ctx, c);
    if (st != G4Q_OK) {
        g4q_ckpt_close(c);
        return st;
    }
    *out = c;
    return G4Q_OK;
}

void g4q_ckpt_close(g4q_ckpt *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nfiles; i++)
        g4q_st_close(c->files[i]);
    free(c->files);
    free(c->tensors);
    free(c->by_name);
    free(c->dir);
    free(c);
}

const char *g4q_ckpt_dir(const g4q_ckpt *c)
{
    return c->dir;
}

size_t g4q_ckpt_count(const g4q_ckpt *c)
{
    return c->count;
}

const g4q_tensor *g4q_ckpt_tensor(const g4q_ckpt *c, size_t i)
{
    return i < c->count ? &c->tensors[i] : NULL;
}

const g4q_tensor *g4q_ckpt_find(const g4q_ckpt *c, const char *name)
{
    if (c->count == 0)
        return NULL;
    const g4q_tensor *const *p =
        bsearch(name, c->by_name, c->count, sizeof *c->by_name, cmp_key_tensor);
    return p ? *p : NULL;
}

size_t g4q_ckpt_file_count(const g4q_ckpt *c)
{
    return c->nfiles;
}

const g4q_st_file *g4q_ckpt_file(const g4q_ckpt *c, size_t i)
{
    return i < c->nfiles ? c->files[i] : NULL;
}

uint64_t g4q_ckpt_data_bytes(const g4q_ckpt *c)
{
    return c->data_bytes;
}

/* Drops the resident pages wholly inside [p, p + n) (madvise DONTNEED on a read-only mapping). */
static void drop_pages(const void *p, size_t n)
{
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0)
        return;
    uintptr_t mask = (uintptr_t)pg - 1;
    uintptr_t a = ((uintptr_t)p + mask) & ~mask;
    uintptr_t b = ((uintptr_t)p + (uintptr_t)n) & ~mask;
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

void g4q_ckpt_release_all(const g4q_ckpt *c)
{
    for (size_t i = 0; c && i < c->nfiles; i++) {
        const g4q_st_file *f = c->files[i];
        size_t n = g4q_st_count(f);
        if (!g4q_st_is_mapped(f) || n == 0)
            continue;
        const g4q_tensor *first = g4q_st_tensor(f, 0), *last = g4q_st_tensor(f, n - 1);
        drop_pages(first->data, (size_t)((const unsigned char *)last->data + last->nbytes -
                                         (const unsigned char *)first->data));
    }
}

void g4q_ckpt_release(const g4q_ckpt *c, const g4q_tensor *t)
{
    if (!c || !t || t->nbytes == 0 || t->file < 0 || (size_t)t->file >= c->nfiles ||
        !g4q_st_is_mapped(c->files[t->file]))
        return;
    drop_pages(t->data, t->nbytes);
}
