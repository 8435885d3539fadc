/*
 * Recipe loading: libyaml's document API gives a node tree with 0-based marks; every check below
 * reports "path:line:col" (1-based) of the node concerned. Validation happens in file order: the
 * top-level keys are read in a fixed order (export before rules) so that a rule can be checked
 * against the export format where its node is at hand.
 */
#include "recipe/recipe.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <yaml.h>

#include "base/sys.h"
#include "recipe/glob.h"

#define RECIPE_MAX_BYTES (1u << 20)
#define PATTERN_MAX 1000
#define SEED_MAX ((long long)1 << 53) /* exact in JSON numbers */

#define G4Q_X_NAME(e, s) s,
static const char *const export_names[] = {G4Q_RECIPE_EXPORT_TABLE(G4Q_X_NAME)};
static const char *const weights_names[] = {G4Q_RECIPE_WEIGHTS_TABLE(G4Q_X_NAME)};
static const char *const search_names[] = {G4Q_RECIPE_SEARCH_TABLE(G4Q_X_NAME)};
static const char *const algo_names[] = {G4Q_RECIPE_ALGO_TABLE(G4Q_X_NAME)};
static const char *const smooth_names[] = {G4Q_RECIPE_SMOOTH_TABLE(G4Q_X_NAME)};
static const char *const act_names[] = {G4Q_RECIPE_ACT_TABLE(G4Q_X_NAME)};
static const char *const kv_names[] = {G4Q_RECIPE_KV_TABLE(G4Q_X_NAME)};
static const char *const kv_scales_names[] = {G4Q_RECIPE_KV_SCALES_TABLE(G4Q_X_NAME)};
#undef G4Q_X_NAME

static const char *name_of(const char *const *names, int count, int v)
{
    return (v >= 0 && v < count) ? names[v] : "?";
}

const char *g4q_recipe_export_name(g4q_recipe_export v)
{
    return name_of(export_names, G4Q_RECIPE_EXPORT_COUNT, (int)v);
}
const char *g4q_recipe_weights_name(g4q_recipe_weights v)
{
    return name_of(weights_names, G4Q_RECIPE_W_COUNT, (int)v);
}
const char *g4q_recipe_search_name(g4q_recipe_search v)
{
    return name_of(search_names, G4Q_RECIPE_SEARCH_COUNT, (int)v);
}
const char *g4q_recipe_smooth_name(g4q_recipe_smooth v)
{
    return name_of(smooth_names, G4Q_RECIPE_SMOOTH_COUNT, (int)v);
}
const char *g4q_recipe_algo_name(g4q_recipe_algo v)
{
    return name_of(algo_names, G4Q_RECIPE_ALGO_COUNT, (int)v);
}
const char *g4q_recipe_act_name(g4q_recipe_act v)
{
    return name_of(act_names, G4Q_RECIPE_ACT_COUNT, (int)v);
}
const char *g4q_recipe_kv_name(g4q_recipe_kv v)
{
    return name_of(kv_names, G4Q_RECIPE_KV_COUNT, (int)v);
}
const char *g4q_recipe_kv_scales_name(g4q_recipe_kv_scales v)
{
    return name_of(kv_scales_names, G4Q_RECIPE_KV_SCALES_COUNT, (int)v);
}

/* Allowed keys per mapping, in the order the messages list them. */
static const char *const top_keys[] = {"name",    "description", "export",     "rules",
                                       "exclude", "kv_cache",    "calibration"};
static const char *const rule_keys[] = {"pattern",     "weights",  "scale_search", "algorithm",
                                        "activations", "smoothing"};
static const char *const kv_keys[] = {"format", "scales"};
static const char *const calib_keys[] = {"dataset", "samples", "seq_len", "batch", "seed",
                                         "sequential"};
#define NKEYS(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct parser {
    g4q_ctx *ctx;
    yaml_document_t *doc;
    const char *path;
    g4q_recipe *r;
    const yaml_node_t **rule_nodes; /* the mapping node of each rule, for later checks */
} parser;

/* Records "path:line:col: message" for node n (or for a raw mark when n is NULL). */
static g4q_status fail_at_mark(parser *p, yaml_mark_t m, g4q_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static g4q_status fail_at_mark(parser *p, yaml_mark_t m, g4q_status code, const char *fmt, ...)
{
    char msg[G4Q_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return g4q_fail(p->ctx, code, "%s:%zu:%zu: %s", p->path, m.line + 1, m.column + 1, msg);
}

#define FAIL_AT(p, node, ...) fail_at_mark((p), (node)->start_mark, G4Q_ERR_INVALID, __VA_ARGS__)

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a sequence";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "nothing";
    }
}

static int is_null_scalar(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

static yaml_node_t *node_at(parser *p, int index)
{
    return yaml_document_get_node(p->doc, index);
}

/* Lists names as "a, b, c" into buf. */
static const char *join_names(char *buf, size_t n, const char *const *names, int count)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < count && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", names[i]);
    return buf;
}

/* Checks that n is a mapping whose keys are distinct scalars from `allowed`. */
static g4q_status check_mapping(parser *p, const yaml_node_t *n, const char *what,
                                const char *const *allowed, int n_allowed)
{
    char list[256];
    if (n->type != YAML_MAPPING_NODE)
        return FAIL_AT(p, n, "%s: expected a mapping with keys %s, got %s", what,
                       join_names(list, sizeof list, allowed, n_allowed), node_kind(n));
    for (yaml_node_pair_t *a = n->data.mapping.pairs.start; a < n->data.mapping.pairs.top; a++) {
        const yaml_node_t *k = node_at(p, a->key);
        if (k->type != YAML_SCALAR_NODE)
            return FAIL_AT(p, k, "%s: keys must be plain names, got %s", what, node_kind(k));
        const char *key = (const char *)k->data.scalar.value;
        int ok = 0;
        for (int i = 0; i < n_allowed; i++)
            ok |= !strcmp(key, allowed[i]);
        if (!ok)
            return FAIL_AT(p, k, "%s: unknown key '%s'; allowed keys: %s", what, key,
                           join_names(list, sizeof list, allowed, n_allowed));
        for (yaml_node_pair_t *b = n->data.mapping.pairs.start; b < a; b++) {
            const yaml_node_t *kb = node_at(p, b->key);
            if (!strcmp((const char *)kb->data.scalar.value, key))
                return FAIL_AT(p, k, "%s: duplicate key '%s' (first at line %zu)", what, key,
                               kb->start_mark.line + 1);
        }
    }
    return G4Q_OK;
}

/* The value of key in a checked mapping, or NULL when absent. */
static const yaml_node_t *lookup(parser *p, const yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top;
         a++)
        if (!strcmp((const char *)node_at(p, a->key)->data.scalar.value, key))
            return node_at(p, a->value);
    return NULL;
}

static g4q_status require(parser *p, const yaml_node_t *map, const char *what, const char *key,
                          const yaml_node_t **out)
{
    *out = lookup(p, map, key);
    if (!*out)
        return FAIL_AT(p, map, "%s: missing required key '%s'", what, key);
    return G4Q_OK;
}

/* A non-null scalar, copied into the recipe arena. */
static g4q_status get_string(parser *p, const yaml_node_t *n, const char *what, const char **out)
{
    if (n->type != YAML_SCALAR_NODE || is_null_scalar(n))
        return FAIL_AT(p, n, "%s: expected a string, got %s", what,
                       n->type == YAML_SCALAR_NODE ? "null" : node_kind(n));
    size_t len = n->data.scalar.length;
    if (strlen((const char *)n->data.scalar.value) != len)
        return FAIL_AT(p, n, "%s: the string contains a NUL byte", what);
    char *s;
    G4Q_TRY(g4q_arena_take(p->ctx, &p->r->arena, len + 1, 1, (void **)&s));
    memcpy(s, n->data.scalar.value, len + 1);
    *out = s;
    return G4Q_OK;
}

static g4q_status get_enum(parser *p, const yaml_node_t *n, const char *what,
                           const char *const *names, int count, int *out)
{
    char list[256];
    if (n->type != YAML_SCALAR_NODE || is_null_scalar(n))
        return FAIL_AT(p, n, "%s: expected one of %s, got %s", what,
                       join_names(list, sizeof list, names, count),
                       n->type == YAML_SCALAR_NODE ? "null" : node_kind(n));
    const char *v = (const char *)n->data.scalar.value;
    for (int i = 0; i < count; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return G4Q_OK;
        }
    return FAIL_AT(p, n, "%s: unknown value '%s'; valid values: %s", what, v,
                   join_names(list, sizeof list, names, count));
}

/* A plain decimal integer in [lo, hi]. */
static g4q_status get_int(parser *p, const yaml_node_t *n, const char *what, long long lo,
                          long long hi, long long *out)
{
    const char *v = n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "";
    int plain = n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    size_t i = (v[0] == '-' || v[0] == '+') ? 1 : 0;
    int digits = v[i] != '\0';
    for (; v[i]; i++)
        digits &= v[i] >= '0' && v[i] <= '9';
    if (!plain || !digits)
        return FAIL_AT(p, n, "%s: expected an integer in [%lld, %lld], got %s%s%s", what, lo, hi,
                       n->type != YAML_SCALAR_NODE ? node_kind(n) : plain ? "'" : "the quoted '",
                       n->type == YAML_SCALAR_NODE ? v : "",
                       n->type == YAML_SCALAR_NODE ? "'" : "");
    errno = 0;
    long long x = strtoll(v, NULL, 10);
    if (errno == ERANGE || x < lo || x > hi)
        return FAIL_AT(p, n, "%s: %s is out of range [%lld, %lld]", what, v, lo, hi);
    *out = x;
    return G4Q_OK;
}

static g4q_status get_pattern(parser *p, const yaml_node_t *n, const char *what, const char **out)
{
    G4Q_TRY(get_string(p, n, what, out));
    size_t off = 0;
    const char *why = g4q_glob_check(*out, &off);
    if (why)
        return FAIL_AT(p, n, "%s: bad pattern '%s': %s at offset %zu", what, *out, why, off);
    if (strlen(*out) > PATTERN_MAX)
        return FAIL_AT(p, n, "%s: pattern longer than %d characters", what, PATTERN_MAX);
    return G4Q_OK;
}

/* Weight/search/activation combinations a format defines, and what the export can carry. */
static g4q_status check_rule_combination(parser *p, const yaml_node_t *map, const char *what,
                                         const g4q_recipe_rule *rule)
{
    const yaml_node_t *wn = lookup(p, map, "weights");
    const yaml_node_t *sn = lookup(p, map, "scale_search");
    const yaml_node_t *gn = lookup(p, map, "algorithm");
    const yaml_node_t *an = lookup(p, map, "activations");
    const char *w = g4q_recipe_weights_name(rule->weights);
    g4q_recipe_export ex = p->r->export_format;
    const yaml_node_t *mn = lookup(p, map, "smoothing");
    if (rule->weights == G4Q_RECIPE_W_BF16) {
        const yaml_node_t *extra = sn ? sn : gn ? gn : an ? an : mn;
        if (extra)
            return FAIL_AT(p, extra,
                           "%s: weights bf16 keeps the module unquantized; remove '%s'", what,
                           sn   ? "scale_search"
                           : gn ? "algorithm"
                           : an ? "activations"
                                : "smoothing");
        return G4Q_OK;
    }
    if (rule->algo == G4Q_RECIPE_ALGO_GPTQ && rule->weights == G4Q_RECIPE_W_FP8)
        return FAIL_AT(p, gn,
                       "%s: algorithm gptq is defined for nvfp4, fp8-block and int4 weights, not "
                       "fp8 per-tensor",
                       what);
    if (rule->search == G4Q_RECIPE_SEARCH_FOUR_OVER_SIX && rule->weights != G4Q_RECIPE_W_NVFP4)
        return FAIL_AT(p, sn,
                       "%s: scale_search four-over-six is defined for nvfp4 weights only "
                       "(formats.md §2.6); valid for %s: max, mse",
                       what, w);
    if ((rule->search == G4Q_RECIPE_SEARCH_IMATRIX || rule->search == G4Q_RECIPE_SEARCH_HESSIAN) &&
        rule->weights == G4Q_RECIPE_W_FP8)
        return FAIL_AT(p, sn,
                       "%s: scale_search %s is defined for nvfp4, fp8-block and int4 weights, not "
                       "fp8 per-tensor",
                       what, search_names[rule->search]);
    const yaml_node_t *apos = an ? an : map;
    switch (rule->weights) {
    case G4Q_RECIPE_W_NVFP4:
        if (rule->act == G4Q_RECIPE_ACT_FP8)
            return FAIL_AT(p, apos,
                           "%s: nvfp4 weights take activations none (W4A16) or nvfp4 (W4A4), "
                           "not fp8",
                           what);
        break;
    case G4Q_RECIPE_W_FP8:
        if (rule->act != G4Q_RECIPE_ACT_FP8)
            return FAIL_AT(p, apos,
                           "%s: fp8 per-tensor weights export as ModelOpt FP8, which is W8A8 "
                           "(formats.md §3): set activations: fp8, or use weights: fp8-block "
                           "for weight-only FP8",
                           what);
        break;
    default: /* fp8-block and int4 are weight-only formats */
        if (rule->act != G4Q_RECIPE_ACT_NONE)
            return FAIL_AT(p, apos,
                           "%s: %s is a weight-only format; activations must be none%s", what, w,
                           rule->weights == G4Q_RECIPE_W_FP8_BLOCK
                               ? " (vLLM quantizes activations dynamically per 1x128, §4)"
                               : "");
        break;
    }
    if (ex == G4Q_RECIPE_EXPORT_MODELOPT && rule->weights == G4Q_RECIPE_W_INT4)
        return FAIL_AT(p, wn,
                       "%s: export modelopt cannot carry int4 weights: ModelOpt's W4A16_AWQ "
                       "exists but vLLM cannot load it (formats.md §5.1); use export: gptq or "
                       "export: compressed-tensors",
                       what);
    if (ex == G4Q_RECIPE_EXPORT_GPTQ && rule->weights != G4Q_RECIPE_W_INT4)
        return FAIL_AT(p, wn,
                       "%s: export gptq carries int4 weights only (formats.md §5.2), not %s; use "
                       "export: modelopt (nvfp4, fp8, fp8-block) or compressed-tensors (nvfp4)",
                       what, w);
    if (ex == G4Q_RECIPE_EXPORT_COMPRESSED_TENSORS && rule->weights != G4Q_RECIPE_W_NVFP4 &&
        rule->weights != G4Q_RECIPE_W_INT4)
        return FAIL_AT(p, wn,
                       "%s: export compressed-tensors carries nvfp4 (nvfp4-pack-quantized, "
                       "formats.md §6) or int4 (pack-quantized, §5.3) weights only, not %s; use "
                       "export: modelopt",
                       what, w);
    return G4Q_OK;
}

static g4q_status parse_rule(parser *p, const yaml_node_t *map, int index)
{
    char what[64];
    snprintf(what, sizeof what, "rules[%d]", index + 1);
    G4Q_TRY(check_mapping(p, map, what, rule_keys, NKEYS(rule_keys)));
    g4q_recipe_rule *rule = &p->r->rules[index];
    const yaml_node_t *n;
    G4Q_TRY(require(p, map, what, "pattern", &n));
    G4Q_TRY(get_pattern(p, n, what, &rule->pattern));
    rule->line = (int)n->start_mark.line + 1;
    rule->column = (int)n->start_mark.column + 1;
    int v = 0;
    G4Q_TRY(require(p, map, what, "weights", &n));
    G4Q_TRY(get_enum(p, n, what, weights_names, G4Q_RECIPE_W_COUNT, &v));
    rule->weights = (g4q_recipe_weights)v;
    rule->search = G4Q_RECIPE_SEARCH_MAX;
    if ((n = lookup(p, map, "scale_search"))) {
        G4Q_TRY(get_enum(p, n, what, search_names, G4Q_RECIPE_SEARCH_COUNT, &v));
        rule->search = (g4q_recipe_search)v;
    }
    rule->algo = G4Q_RECIPE_ALGO_RTN;
    if ((n = lookup(p, map, "algorithm"))) {
        G4Q_TRY(get_enum(p, n, what, algo_names, G4Q_RECIPE_ALGO_COUNT, &v));
        rule->algo = (g4q_recipe_algo)v;
    }
    rule->act = G4Q_RECIPE_ACT_NONE;
    if ((n = lookup(p, map, "activations"))) {
        G4Q_TRY(get_enum(p, n, what, act_names, G4Q_RECIPE_ACT_COUNT, &v));
        rule->act = (g4q_recipe_act)v;
    }
    rule->smooth = G4Q_RECIPE_SMOOTH_NONE;
    if ((n = lookup(p, map, "smoothing"))) {
        G4Q_TRY(get_enum(p, n, what, smooth_names, G4Q_RECIPE_SMOOTH_COUNT, &v));
        rule->smooth = (g4q_recipe_smooth)v;
    }
    p->rule_nodes[index] = map;
    return check_rule_combination(p, map, what, rule);
}

static g4q_status parse_rules(parser *p, const yaml_node_t *seq)
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return FAIL_AT(p, seq, "rules: expected a sequence of rules, got %s", node_kind(seq));
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n == 0)
        return FAIL_AT(p, seq, "rules: at least one rule is required");
    g4q_recipe *r = p->r;
    G4Q_TRY(g4q_arena_take(p->ctx, &r->arena, n * sizeof *r->rules, _Alignof(g4q_recipe_rule),
                           (void **)&r->rules));
    G4Q_TRY(g4q_arena_take(p->ctx, &r->arena, n * sizeof *p->rule_nodes,
                           _Alignof(const yaml_node_t *), (void **)&p->rule_nodes));
    memset(r->rules, 0, n * sizeof *r->rules);
    r->n_rules = (int)n;
    for (size_t i = 0; i < n; i++)
        G4Q_TRY(parse_rule(p, node_at(p, seq->data.sequence.items.start[i]), (int)i));
    return G4Q_OK;
}

static g4q_status parse_excludes(parser *p, const yaml_node_t *seq)
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return FAIL_AT(p, seq, "exclude: expected a sequence of patterns, got %s",
                       node_kind(seq));
    size_t n = (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    g4q_recipe *r = p->r;
    G4Q_TRY(g4q_arena_take(p->ctx, &r->arena, (n ? n : 1) * sizeof *r->excludes,
                           _Alignof(g4q_recipe_exclude), (void **)&r->excludes));
    r->n_excludes = (int)n;
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *e = node_at(p, seq->data.sequence.items.start[i]);
        char what[64];
        snprintf(what, sizeof what, "exclude[%zu]", i + 1);
        G4Q_TRY(get_pattern(p, e, what, &r->excludes[i].pattern));
        r->excludes[i].line = (int)e->start_mark.line + 1;
        r->excludes[i].column = (int)e->start_mark.column + 1;
    }
    return G4Q_OK;
}

static g4q_status parse_kv(parser *p, const yaml_node_t *map)
{
    G4Q_TRY(check_mapping(p, map, "kv_cache", kv_keys, NKEYS(kv_keys)));
    g4q_recipe *r = p->r;
    const yaml_node_t *fn, *sn;
    int v = 0;
    G4Q_TRY(require(p, map, "kv_cache", "format", &fn));
    G4Q_TRY(get_enum(p, fn, "kv_cache.format", kv_names, G4Q_RECIPE_KV_COUNT, &v));
    r->kv_format = (g4q_recipe_kv)v;
    if ((sn = lookup(p, map, "scales"))) {
        if (r->kv_format == G4Q_RECIPE_KV_NONE)
            return FAIL_AT(p, sn, "kv_cache.scales: only applies to kv_cache.format fp8");
        G4Q_TRY(get_enum(p, sn, "kv_cache.scales", kv_scales_names, G4Q_RECIPE_KV_SCALES_COUNT,
                         &v));
        r->kv_scales = (g4q_recipe_kv_scales)v;
    }
    if (r->kv_format == G4Q_RECIPE_KV_FP8 && r->export_format != G4Q_RECIPE_EXPORT_MODELOPT)
        return FAIL_AT(p, fn,
                       "kv_cache.format: fp8 needs export: modelopt (kv_cache_quant_algo, "
                       "formats.md §7-§8); the %s exporter writes no KV-cache quantization. Keep "
                       "format none and run the engine with --kv-cache-dtype fp8 instead",
                       g4q_recipe_export_name(r->export_format));
    return G4Q_OK;
}

/* "builtin:NAME" stays as is; a relative path is resolved against the recipe's folder. */
static g4q_status resolve_dataset(parser *p, const yaml_node_t *n, g4q_recipe_calib *c)
{
    const char *d = c->dataset;
    if (!strncmp(d, "builtin:", 8)) {
        if (!d[8])
            return FAIL_AT(p, n, "calibration.dataset: 'builtin:' needs a set name");
        c->dataset_path = d;
        return G4Q_OK;
    }
    const char *slash = strrchr(p->path, '/');
    if (d[0] == '/' || !slash) {
        c->dataset_path = d;
        return G4Q_OK;
    }
    size_t dl = (size_t)(slash - p->path), nl = strlen(d);
    char *s;
    G4Q_TRY(g4q_arena_take(p->ctx, &p->r->arena, dl + nl + 2, 1, (void **)&s));
    memcpy(s, p->path, dl);
    s[dl] = '/';
    memcpy(s + dl + 1, d, nl + 1);
    c->dataset_path = s;
    return G4Q_OK;
}

static g4q_status parse_calib(parser *p, const yaml_node_t *map)
{
    G4Q_TRY(check_mapping(p, map, "calibration", calib_keys, NKEYS(calib_keys)));
    g4q_recipe_calib *c = &p->r->calib;
    const yaml_node_t *n;
    long long v = 0;
    c->present = 1;
    G4Q_TRY(require(p, map, "calibration", "dataset", &n));
    G4Q_TRY(get_string(p, n, "calibration.dataset", &c->dataset));
    G4Q_TRY(resolve_dataset(p, n, c));
    G4Q_TRY(require(p, map, "calibration", "samples", &n));
    G4Q_TRY(get_int(p, n, "calibration.samples", 1, 10000000, &v));
    c->samples = (int)v;
    G4Q_TRY(require(p, map, "calibration", "seq_len", &n));
    G4Q_TRY(get_int(p, n, "calibration.seq_len", 1, 262144, &v));
    c->seq_len = (int)v;
    c->batch = 1;
    if ((n = lookup(p, map, "batch"))) {
        G4Q_TRY(get_int(p, n, "calibration.batch", 1, c->samples, &v));
        c->batch = (int)v;
    }
    c->seed = 0;
    if ((n = lookup(p, map, "seed"))) {
        G4Q_TRY(get_int(p, n, "calibration.seed", 0, SEED_MAX, &v));
        c->seed = (uint64_t)v;
    }
    c->sequential = 0;
    if ((n = lookup(p, map, "sequential"))) {
        static const char *const bools[] = {"false", "true"};
        G4Q_TRY(get_enum(p, n, "calibration.sequential", bools, 2, &c->sequential));
    }
    return G4Q_OK;
}

/* Checks across rules: one quantized format per export unless ModelOpt MIXED_PRECISION can carry
 * the mix; at least one rule quantizes; calibration present when needed. */
static g4q_status check_recipe(parser *p, const yaml_node_t *root, const yaml_node_t *rules)
{
    g4q_recipe *r = p->r;
    int first = -1;
    for (int i = 0; i < r->n_rules; i++) {
        const g4q_recipe_rule *ru = &r->rules[i];
        if (ru->weights == G4Q_RECIPE_W_BF16)
            continue;
        if (first < 0) {
            first = i;
            continue;
        }
        const g4q_recipe_rule *f = &r->rules[first];
        if (ru->weights == f->weights && ru->act == f->act)
            continue;
        const yaml_node_t *at = p->rule_nodes[i];
        if (r->export_format != G4Q_RECIPE_EXPORT_MODELOPT)
            return FAIL_AT(p, at,
                           "rules[%d]: %s weights with %s activations differ from rules[%d] "
                           "(%s/%s); mixing formats needs export: modelopt (MIXED_PRECISION, "
                           "formats.md §8.5), the %s exporter writes one format",
                           i + 1, g4q_recipe_weights_name(ru->weights),
                           g4q_recipe_act_name(ru->act), first + 1,
                           g4q_recipe_weights_name(f->weights), g4q_recipe_act_name(f->act),
                           g4q_recipe_export_name(r->export_format));
        if (ru->weights == G4Q_RECIPE_W_FP8_BLOCK || f->weights == G4Q_RECIPE_W_FP8_BLOCK)
            return FAIL_AT(p, at,
                           "rules[%d]: this recipe mixes quantized formats (a ModelOpt "
                           "MIXED_PRECISION export, formats.md §8.5), which vLLM supports for "
                           "fp8, nvfp4 W4A4 and nvfp4 W4A16 layers only, not fp8-block",
                           i + 1);
        r->mixed = 1;
    }
    if (first < 0)
        return FAIL_AT(p, rules, "rules: no rule quantizes anything (every rule is bf16)");
    if (g4q_recipe_needs_calibration(r) && !r->calib.present) {
        int act_rule = -1, algo_rule = -1, smooth_rule = -1;
        for (int i = 0; i < r->n_rules; i++) {
            if (smooth_rule < 0 && r->rules[i].smooth != G4Q_RECIPE_SMOOTH_NONE)
                smooth_rule = i;
            if (act_rule < 0 && r->rules[i].act != G4Q_RECIPE_ACT_NONE)
                act_rule = i;
            if (algo_rule < 0 && r->rules[i].algo != G4Q_RECIPE_ALGO_RTN)
                algo_rule = i;
        }
        char why[128];
        if (act_rule >= 0)
            snprintf(why, sizeof why, "rules[%d] quantizes activations (%s), whose input scales",
                     act_rule + 1, g4q_recipe_act_name(r->rules[act_rule].act));
        else if (algo_rule >= 0)
            snprintf(why, sizeof why, "rules[%d] uses algorithm %s, whose input Hessians",
                     algo_rule + 1, g4q_recipe_algo_name(r->rules[algo_rule].algo));
        else if (smooth_rule >= 0)
            snprintf(why, sizeof why, "rules[%d] uses smoothing %s, whose factors",
                     smooth_rule + 1, g4q_recipe_smooth_name(r->rules[smooth_rule].smooth));
        else
            snprintf(why, sizeof why, "kv_cache.scales: calibrated KV scales");
        return FAIL_AT(p, root,
                       "missing required key 'calibration': %s need calibration data "
                       "(give dataset, samples, seq_len)",
                       why);
    }
    return G4Q_OK;
}

static g4q_status parse_root(parser *p, const yaml_node_t *root)
{
    G4Q_TRY(check_mapping(p, root, "recipe", top_keys, NKEYS(top_keys)));
    g4q_recipe *r = p->r;
    const yaml_node_t *n, *rules;
    int v = 0;
    G4Q_TRY(require(p, root, "recipe", "name", &n));
    G4Q_TRY(get_string(p, n, "name", &r->name));
    r->description = "";
    if ((n = lookup(p, root, "description")))
        G4Q_TRY(get_string(p, n, "description", &r->description));
    G4Q_TRY(require(p, root, "recipe", "export", &n));
    G4Q_TRY(get_enum(p, n, "export", export_names, G4Q_RECIPE_EXPORT_COUNT, &v));
    r->export_format = (g4q_recipe_export)v;
    G4Q_TRY(require(p, root, "recipe", "rules", &rules));
    G4Q_TRY(parse_rules(p, rules));
    if ((n = lookup(p, root, "exclude")))
        G4Q_TRY(parse_excludes(p, n));
    r->kv_format = G4Q_RECIPE_KV_NONE;
    r->kv_scales = G4Q_RECIPE_KV_SCALES_CAST;
    if ((n = lookup(p, root, "kv_cache")))
        G4Q_TRY(parse_kv(p, n));
    if ((n = lookup(p, root, "calibration")))
        G4Q_TRY(parse_calib(p, n));
    return check_recipe(p, root, rules);
}

static g4q_status yaml_error(parser *p, const yaml_parser_t *yp)
{
    const char *problem = yp->problem ? yp->problem : "unreadable YAML";
    if (yp->context)
        return fail_at_mark(p, yp->problem_mark, G4Q_ERR_FORMAT,
                            "YAML syntax error: %s %s (line %zu)", problem, yp->context,
                            yp->context_mark.line + 1);
    return fail_at_mark(p, yp->problem_mark, G4Q_ERR_FORMAT, "YAML syntax error: %s", problem);
}

/* Sizes the recipe arena from the document: every string copied is a scalar referenced from a
 * sequence item or a mapping value (aliases count once per reference), and every array element
 * comes from a sequence item. Then copies the path into it. */
static g4q_status init_arena(parser *p, yaml_document_t *doc)
{
    size_t plen = strlen(p->path);
    size_t bytes = 2 * plen + 4096;
    size_t per_item = sizeof(g4q_recipe_rule) + sizeof(g4q_recipe_exclude) +
                      sizeof(const yaml_node_t *) + 16;
    for (yaml_node_t *n = doc->nodes.start; n < doc->nodes.top; n++) {
        if (n->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = n->data.sequence.items.start;
                 it < n->data.sequence.items.top; it++) {
                yaml_node_t *v = yaml_document_get_node(doc, *it);
                bytes += per_item + (v && v->type == YAML_SCALAR_NODE ? v->data.scalar.length : 0);
            }
        } else if (n->type == YAML_MAPPING_NODE) {
            for (yaml_node_pair_t *a = n->data.mapping.pairs.start; a < n->data.mapping.pairs.top;
                 a++) {
                yaml_node_t *v = yaml_document_get_node(doc, a->value);
                bytes += 16 + (v && v->type == YAML_SCALAR_NODE ? v->data.scalar.length : 0);
            }
        }
    }
    g4q_recipe *r = p->r;
    G4Q_TRY(g4q_arena_init(p->ctx, &r->arena, "recipe", bytes));
    char *s;
    G4Q_TRY(g4q_arena_take(p->ctx, &r->arena, plen + 1, 1, (void **)&s));
    memcpy(s, p->path, plen + 1);
    r->path = s;
    return G4Q_OK;
}

/* Loads the single document of the stream and validates it into p->r. */
static g4q_status parse_document(parser *p, yaml_parser_t *yp)
{
    yaml_document_t doc;
    if (!yaml_parser_load(yp, &doc))
        return yaml_error(p, yp);
    p->doc = &doc;
    g4q_status st = init_arena(p, &doc);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (st != G4Q_OK) {
        /* reported by init_arena */
    } else if (!root) {
        yaml_mark_t m = {0, 0, 0};
        st = fail_at_mark(p, m, G4Q_ERR_INVALID,
                          "empty recipe; expected a mapping with keys name, export, rules, ...");
    } else {
        st = parse_root(p, root);
    }
    if (st == G4Q_OK) {
        yaml_document_t next;
        if (!yaml_parser_load(yp, &next)) {
            st = yaml_error(p, yp);
        } else {
            yaml_node_t *extra = yaml_document_get_root_node(&next);
            if (extra)
                st = fail_at_mark(p, extra->start_mark, G4Q_ERR_INVALID,
                                  "a recipe file holds one YAML document; found a second one");
            yaml_document_delete(&next);
        }
    }
    yaml_document_delete(&doc);
    p->doc = NULL;
    return st;
}

g4q_status g4q_recipe_parse(g4q_ctx *ctx, const char *path, const char *text, size_t len,
                            g4q_recipe **out)
{
    *out = NULL;
    g4q_recipe *r = calloc(1, sizeof *r);
    if (!r)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", path);
    g4q_sha256_hex(text, len, r->sha256);
    parser p = {.ctx = ctx, .doc = NULL, .path = path, .r = r, .rule_nodes = NULL};
    g4q_status st;
    yaml_parser_t yp;
    if (!yaml_parser_initialize(&yp)) {
        g4q_recipe_free(r);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: cannot initialise the YAML parser", path);
    }
    yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
    st = parse_document(&p, &yp);
    yaml_parser_delete(&yp);
    if (st != G4Q_OK) {
        g4q_recipe_free(r);
        return st;
    }
    *out = r;
    return G4Q_OK;
}

g4q_status g4q_recipe_load(g4q_ctx *ctx, const char *path, g4q_recipe **out)
{
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    G4Q_TRY(g4q_read_file(ctx, path, RECIPE_MAX_BYTES, &text, &len));
    g4q_status st = g4q_recipe_parse(ctx, path, text, len, out);
    free(text);
    return st;
}

void g4q_recipe_free(g4q_recipe *r)
{
    if (!r)
        return;
    g4q_arena_free(&r->arena);
    free(r);
}

g4q_recipe_decision g4q_recipe_match(const g4q_recipe *r, const char *module_name)
{
    g4q_recipe_decision d = {.weights = G4Q_RECIPE_W_BF16,
                             .search = G4Q_RECIPE_SEARCH_MAX,
                             .algo = G4Q_RECIPE_ALGO_RTN,
                             .act = G4Q_RECIPE_ACT_NONE,
                             .smooth = G4Q_RECIPE_SMOOTH_NONE,
                             .rule = -1,
                             .exclude = -1};
    for (int i = 0; i < r->n_excludes; i++)
        if (g4q_glob_match(r->excludes[i].pattern, module_name)) {
            d.exclude = i;
            return d;
        }
    for (int i = 0; i < r->n_rules; i++)
        if (g4q_glob_match(r->rules[i].pattern, module_name)) {
            d.weights = r->rules[i].weights;
            d.search = r->rules[i].search;
            d.algo = r->rules[i].algo;
            d.act = r->rules[i].act;
            d.smooth = r->rules[i].smooth;
            d.rule = i;
            return d;
        }
    return d;
}

int g4q_recipe_needs_calibration(const g4q_recipe *r)
{
    for (int i = 0; i < r->n_rules; i++)
        if (r->rules[i].act != G4Q_RECIPE_ACT_NONE || r->rules[i].algo != G4Q_RECIPE_ALGO_RTN ||
            r->rules[i].smooth != G4Q_RECIPE_SMOOTH_NONE ||
            r->rules[i].search == G4Q_RECIPE_SEARCH_IMATRIX ||
            r->rules[i].search == G4Q_RECIPE_SEARCH_HESSIAN)
            return 1;
    return r->kv_format == G4Q_RECIPE_KV_FP8 && r->kv_scales == G4Q_RECIPE_KV_SCALES_CALIBRATED;
}

/* Base name of a path (the part after the last '/'). */
static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

g4q_status g4q_recipe_check_patterns(g4q_ctx *ctx, const g4q_recipe *r, const char *const *names,
                                     size_t n)
{
    size_t quantized = 0;
    for (size_t k = 0; k < n; k++)
        quantized += g4q_recipe_match(r, names[k]).weights != G4Q_RECIPE_W_BF16;
    for (int i = 0; i < r->n_rules; i++) {
        const g4q_recipe_rule *ru = &r->rules[i];
        size_t matched = 0, decided = 0;
        const char *shadowed = NULL;
        g4q_recipe_decision why = {0};
        for (size_t k = 0; k < n; k++) {
            if (!g4q_glob_match(ru->pattern, names[k]))
                continue;
            matched++;
            g4q_recipe_decision d = g4q_recipe_match(r, names[k]);
            if (d.rule == i)
                decided++;
            else if (!shadowed) {
                shadowed = names[k];
                why = d;
            }
        }
        if (matched == 0)
            return g4q_fail(ctx, G4Q_ERR_INVALID,
                            "%s:%d:%d: rules[%d]: pattern '%s' matches none of the model's %zu "
                            "candidate modules%s%s%s",
                            r->path, ru->line, ru->column, i + 1, ru->pattern, n,
                            n ? " (e.g. '" : "", n ? names[0] : "", n ? "')" : "");
        if (decided == 0) {
            char by[160];
            if (why.exclude >= 0)
                snprintf(by, sizeof by, "exclude pattern '%s' at line %d",
                         r->excludes[why.exclude].pattern, r->excludes[why.exclude].line);
            else
                snprintf(by, sizeof by, "rules[%d] at line %d", why.rule + 1,
                         why.rule >= 0 ? r->rules[why.rule].line : 0);
            return g4q_fail(ctx, G4Q_ERR_INVALID,
                            "%s:%d:%d: rules[%d]: pattern '%s' matches %zu modules but decides "
                            "none: an exclude or an earlier rule takes each (e.g. '%s' by %s)",
                            r->path, ru->line, ru->column, i + 1, ru->pattern, matched,
                            shadowed, by);
        }
    }
    if (quantized == 0)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%s:1:1: the recipe quantizes none of the model's "
                        "%zu candidate modules", r->path, n);
    for (int i = 0; i < r->n_excludes; i++) {
        size_t matched = 0;
        for (size_t k = 0; k < n && !matched; k++)
            matched += g4q_glob_match(r->excludes[i].pattern, names[k]);
        if (!matched)
            G4Q_WARN(ctx, "%s:%d:%d: exclude pattern '%s' matches none of the model's modules",
                     r->path, r->excludes[i].line, r->excludes[i].column,
                     r->excludes[i].pattern);
    }
    return G4Q_OK;
}

static cJSON *rule_json(const g4q_recipe_rule *ru)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "pattern", ru->pattern);
    cJSON_AddStringToObject(o, "weights", g4q_recipe_weights_name(ru->weights));
    if (ru->weights != G4Q_RECIPE_W_BF16) {
        cJSON_AddStringToObject(o, "scale_search", g4q_recipe_search_name(ru->search));
        if (ru->algo != G4Q_RECIPE_ALGO_RTN) /* rtn: absent, as before gptq existed */
            cJSON_AddStringToObject(o, "algorithm", g4q_recipe_algo_name(ru->algo));
        cJSON_AddStringToObject(o, "activations", g4q_recipe_act_name(ru->act));
        if (ru->smooth != G4Q_RECIPE_SMOOTH_NONE) /* none: absent, as before smoothing existed */
            cJSON_AddStringToObject(o, "smoothing", g4q_recipe_smooth_name(ru->smooth));
    }
    cJSON_AddNumberToObject(o, "line", ru->line);
    return o;
}

static cJSON *calib_json(const g4q_recipe *r)
{
    const g4q_recipe_calib *c = &r->calib;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddBoolToObject(o, "needed", g4q_recipe_needs_calibration(r));
    if (c->present) {
        cJSON_AddStringToObject(o, "dataset", c->dataset);
        cJSON_AddNumberToObject(o, "samples", c->samples);
        cJSON_AddNumberToObject(o, "seq_len", c->seq_len);
        cJSON_AddNumberToObject(o, "batch", c->batch);
        cJSON_AddNumberToObject(o, "seed", (double)c->seed);
        cJSON_AddBoolToObject(o, "sequential", c->sequential);
    }
    return o;
}

cJSON *g4q_recipe_to_cjson(const g4q_recipe *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *rules = cJSON_CreateArray();
    cJSON *ex = cJSON_CreateArray();
    cJSON *kv = cJSON_CreateObject();
    cJSON *calib = calib_json(r);
    int ok = o && rules && ex && kv && calib;
    for (int i = 0; ok && i < r->n_rules; i++) {
        cJSON *ru = rule_json(&r->rules[i]);
        ok = ru && cJSON_AddItemToArray(rules, ru);
    }
    for (int i = 0; ok && i < r->n_excludes; i++) {
        cJSON *s = cJSON_CreateString(r->excludes[i].pattern);
        ok = s && cJSON_AddItemToArray(ex, s);
    }
    if (!ok) {
        cJSON_Delete(o);
        cJSON_Delete(rules);
        cJSON_Delete(ex);
        cJSON_Delete(kv);
        cJSON_Delete(calib);
        return NULL;
    }
    cJSON_AddStringToObject(o, "name", r->name);
    cJSON_AddStringToObject(o, "description", r->description);
    cJSON_AddStringToObject(o, "file", base_name(r->path));
    cJSON_AddStringToObject(o, "sha256", r->sha256);
    cJSON_AddStringToObject(o, "export", g4q_recipe_export_name(r->export_format));
    cJSON_AddBoolToObject(o, "mixed_precision", r->mixed);
    cJSON_AddItemToObject(o, "rules", rules);
    cJSON_AddItemToObject(o, "exclude", ex);
    cJSON_AddStringToObject(kv, "format", g4q_recipe_kv_name(r->kv_format));
    if (r->kv_format != G4Q_RECIPE_KV_NONE)
        cJSON_AddStringToObject(kv, "scales", g4q_recipe_kv_scales_name(r->kv_scales));
    cJSON_AddItemToObject(o, "kv_cache", kv);
    cJSON_AddItemToObject(o, "calibration", calib);
    return o;
}

g4q_status g4q_recipe_describe(g4q_ctx *ctx, const g4q_recipe *r, char **json)
{
    *json = NULL;
    cJSON *o = g4q_recipe_to_cjson(r);
    char *s = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!s)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory describing the recipe", r->path);
    *json = s;
    return G4Q_OK;
}
