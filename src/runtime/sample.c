#include "runtime/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- RNG: splitmix64 seeding, xoshiro256** ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void g4q_rng_seed(g4q_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t g4q_rng_next(g4q_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double g4q_rng_uniform(g4q_rng *r)
{
    return (double)(g4q_rng_next(r) >> 11) * 0x1.0p-53;
}

/* ---- sampler ---- */

typedef struct cand {
    double z; /* logit / temperature */
    int32_t id;
} cand;

struct g4q_sampler {
    g4q_ctx *ctx;
    g4q_sampler_opts o;
    int vocab;
    uint8_t *mask; /* [vocab]: 1 = suppressed */
    cand *c;       /* [vocab] scratch */
    g4q_rng rng;
};

g4q_status g4q_sampler_create(g4q_ctx *ctx, const g4q_sampler_opts *opts, int vocab,
                              const int32_t *suppress, size_t n_suppress, g4q_sampler **out)
{
    *out = NULL;
    if (!(opts->temperature >= 0) || !isfinite(opts->temperature))
        return g4q_fail(ctx, G4Q_ERR_INVALID, "temperature %g: expected a finite value >= 0",
                        opts->temperature);
    if (opts->top_k < 0)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "top-k %d: expected >= 0 (0 = off)", opts->top_k);
    if (!(opts->top_p >= 0 && opts->top_p <= 1))
        return g4q_fail(ctx, G4Q_ERR_INVALID, "top-p %g: expected a value in [0, 1] (1 = off)",
                        opts->top_p);
    if (vocab < 1) return g4q_fail(ctx, G4Q_ERR_INVALID, "sampler: vocabulary of %d", vocab);
    g4q_sampler *s = calloc(1, sizeof *s);
    if (s) {
        s->mask = calloc((size_t)vocab, 1);
        s->c = malloc((size_t)vocab * sizeof *s->c);
    }
    if (!s || !s->mask || !s->c) {
        g4q_sampler_free(s);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "sampler: out of memory");
    }
    s->ctx = ctx;
    s->o = *opts;
    s->vocab = vocab;
    for (size_t i = 0; i < n_suppress; i++)
        if (suppress[i] >= 0 && suppress[i] < vocab) s->mask[suppress[i]] = 1;
    g4q_rng_seed(&s->rng, opts->seed);
    *out = s;
    return G4Q_OK;
}

void g4q_sampler_free(g4q_sampler *s)
{
    if (!s) return;
    free(s->mask);
    free(s->c);
    free(s);
}

const uint8_t *g4q_sampler_greedy_mask(const g4q_sampler *s)
{
    return s->o.temperature == 0 ? s->mask : NULL;
}

int32_t g4q_sample_argmax(const float *logits, int n, const uint8_t *mask)
{
    int32_t best = -1;
    float bv = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (mask && mask[i]) continue;
        if (logits[i] > bv) { /* strict: the first (lowest) id of a tie wins; NaN never does */
            bv = logits[i];
            best = i;
        }
    }
    return best;
}

/* a ranks before b: larger z, then lower id. */
static int better(const cand *a, const cand *b)
{
    return a->z > b->z || (a->z == b->z && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* Min-heap on `better` (the root is the worst kept candidate). */
static void sift_down(cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(&h[w], &h[l])) w = l;
        if (r < n && better(&h[w], &h[r])) w = r;
        if (w == i) return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Collects the candidates into s->c sorted best first; returns their count. */
static size_t collect(g4q_sampler *s, const float *logits)
{
    const double inv_t = 1.0 / s->o.temperature;
    size_t k = s->o.top_k > 0 ? (size_t)s->o.top_k : (size_t)s->vocab;
    size_t n = 0;
    for (int i = 0; i < s->vocab; i++) {
        if (s->mask[i] || logits[i] == -INFINITY) continue;
        cand c = {(double)logits[i] * inv_t, i};
        if (n < k) {
            s->c[n++] = c;
            if (n == k && k < (size_t)s->vocab) /* heapify once full */
                for (size_t j = k / 2; j-- > 0;)
                    sift_down(s->c, n, j);
        } else if (better(&c, &s->c[0])) {
            s->c[0] = c;
            sift_down(s->c, n, 0);
        }
    }
    qsort(s->c, n, sizeof *s->c, cmp_cand);
    return n;
}

g4q_status g4q_sampler_next(g4q_sampler *s, const float *logits, int32_t *token)
{
    for (int i = 0; i < s->vocab; i++)
        if (isnan(logits[i]))
            return g4q_fail(s->ctx, G4Q_ERR_NUMERIC, "sampler: logit of token %d is NaN", i);
    if (s->o.temperature == 0) {
        *token = g4q_sample_argmax(logits, s->vocab, s->mask);
        if (*token < 0) return g4q_fail(s->ctx, G4Q_ERR_NUMERIC, "sampler: no selectable token");
        return G4Q_OK;
    }
    size_t n = collect(s, logits);
    if (n == 0 || !isfinite(s->c[0].z))
        return g4q_fail(s->ctx, G4Q_ERR_NUMERIC, "sampler: no selectable token (or +inf logit)");
    const double zmax = s->c[0].z;
    double total = 0;
    for (size_t i = 0; i < n; i++)
        total += exp(s->c[i].z - zmax);
    if (s->o.top_p > 0 && s->o.top_p < 1) {
        double cum = 0, keep_total = 0;
        size_t keep = 0;
        while (keep < n) {
            double p = exp(s->c[keep].z - zmax);
            cum += p / total;
            keep_total += p;
            keep++;
            if (cum >= s->o.top_p) break;
        }
        n = keep;
        total = keep_total;
    }
    const double u = g4q_rng_uniform(&s->rng) * total;
    double cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += exp(s->c[i].z - zmax);
        if (cum > u) {
            *token = s->c[i].id;
            return G4Q_OK;
        }
    }
    *token = s->c[n - 1].id; /* rounding left u at the very top */
    return G4Q_OK;
}
