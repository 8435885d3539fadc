/*
 * CPU backend: binding of the packed weight formats of backend.h and their row decoder, used by
 * the GEMM (cpu_matmul.c) to widen a few rows at a time into per-thread scratch.
 *
 * The element codecs are those of src/quant/codecs.h, and every decoded value is computed with
 * the same fp32 operations, in the same order, as the src/quant decoders (quant.h), so the
 * widened rows are bit-identical to g4q_*_dequantize:
 *   NVFP4 (ModelOpt)  fl32(fl32(E2M1 · E4M3) · scale2)      (E2M1 · E4M3 is exact)
 *   NVFP4 (CT)        fl32(fl32(E2M1 · E4M3) ÷ global)
 *   FP8 block/tensor  fl32(E4M3 · scale)
 *   INT4              fl32(q · scale)
 * NVFP4 and FP8 keep a small decode table per weight (16 KB / 1 KB) so that the hot loop is one
 * table lookup per element.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"
#include "quant/codecs.h"

#define NVFP4_LUT (256 * 16)

static float load_f32(const void *p, size_t i)
{
    float v;
    memcpy(&v, (const unsigned char *)p + 4 * i, 4);
    return v;
}

static uint32_t load_u32(const void *p, size_t i)
{
    uint32_t v;
    memcpy(&v, (const unsigned char *)p + 4 * i, 4);
    return v;
}

/* INT4 scale i of the scale array, widened exactly to fp32. */
static float int4_scale(const g4q_bweight *w, size_t i)
{
    uint16_t h;
    switch (w->scale_dtype) {
    case G4Q_DT_F16:
        memcpy(&h, (const unsigned char *)w->scale + 2 * i, 2);
        return g4q_f16_to_f32(h);
    case G4Q_DT_BF16:
        memcpy(&h, (const unsigned char *)w->scale + 2 * i, 2);
        return g4q_bf16_to_f32(h);
    default:
        return load_f32(w->scale, i);
    }
}

static g4q_status bad(g4q_backend *be, const g4q_weight_desc *d, const char *why)
{
    return g4q_fail(be->ctx, G4Q_ERR_INVALID, "cpu backend: weight '%s' (%s [%lld, %lld]): %s",
                    d->name ? d->name : "(unnamed)", g4q_wformat_name(d->format),
                    (long long)d->rows, (long long)d->cols, why);
}

static g4q_status bind_nvfp4(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight *w)
{
    if (d->cols % G4Q_NVFP4_BLOCK) return bad(be, d, "in features not a multiple of 16");
    if (!d->scale || !d->scale2) return bad(be, d, "block scales or global scale missing");
    if (d->flags & ~G4Q_WD_GLOBAL_RECIPROCAL) return bad(be, d, "unknown flags");
    float g = load_f32(d->scale2, 0);
    if (!isfinite(g) || !(g > 0.0f)) return bad(be, d, "global scale not finite and > 0");
    w->lut = malloc(NVFP4_LUT * sizeof *w->lut);
    if (!w->lut)
        return g4q_fail(be->ctx, G4Q_ERR_NOMEM, "cpu backend: weight '%s': decode table", w->name);
    const int recip = (d->flags & G4Q_WD_GLOBAL_RECIPROCAL) != 0;
    for (int s = 0; s < 256; s++) {
        float sv = g4q_e4m3_decode((uint8_t)s);
        for (int c = 0; c < 16; c++) {
            float t = g4q_e2m1_decode((uint8_t)c) * sv; /* exact */
            w->lut[s * 16 + c] = recip ? t / g : t * g;
        }
    }
    return G4Q_OK;
}

static g4q_status bind_fp8(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight *w)
{
    if (!d->scale) return bad(be, d, "scales missing");
    if (d->flags & ~G4Q_WD_FP8_PER_TENSOR) return bad(be, d, "unknown flags");
    w->lut = malloc(256 * sizeof *w->lut);
    if (!w->lut)
        return g4q_fail(be->ctx, G4Q_ERR_NOMEM, "cpu backend: weight '%s': decode table", w->name);
    for (int c = 0; c < 256; c++)
        w->lut[c] = g4q_e4m3_decode((uint8_t)c);
    return G4Q_OK;
}

static g4q_status bind_int4(g4q_backend *be, const g4q_weight_desc *d)
{
    if (!d->scale) return bad(be, d, "scales missing");
    if (d->flags & ~G4Q_WD_INT4_GPTQ) return bad(be, d, "unknown flags");
    if (d->group <= 0 || d->group % G4Q_INT4_PER_I32 || d->cols % d->group)
        return bad(be, d, "group must be a positive multiple of 8 dividing in features");
    if (d->scale_dtype != G4Q_DT_F16 && d->scale_dtype != G4Q_DT_BF16 &&
        d->scale_dtype != G4Q_DT_F32)
        return bad(be, d, "scale_dtype must be F16, BF16 or F32");
    return G4Q_OK;
}

g4q_status g4q_cpu_bind_packed(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight *w)
{
    w->scale = d->scale;
    w->flags = d->flags;
    w->group = d->group;
    w->scale_dtype = d->scale_dtype;
    switch (d->format) {
    case G4Q_WF_NVFP4:
        return bind_nvfp4(be, d, w);
    case G4Q_WF_FP8_BLOCK:
        return bind_fp8(be, d, w);
    case G4Q_WF_INT4:
        return bind_int4(be, d);
    default:
        return g4q_fail(be->ctx, G4Q_ERR_UNSUPPORTED, "cpu backend: weight '%s': format %s",
                        w->name, g4q_wformat_name(d->format));
    }
}

/* ---- row decoders ---- */

static void decode_nvfp4(const g4q_bweight *w, int64_t r0, int nr, float *wf)
{
    const int64_t in = w->cols, nb = in / G4Q_NVFP4_BLOCK;
    const uint8_t *codes = w->data, *sc = w->scale;
    for (int r = 0; r < nr; r++) {
        const uint8_t *cr = codes + (r0 + r) * (in / 2), *sr = sc + (r0 + r) * nb;
        float *o = wf + (int64_t)r * in;
        for (int64_t b = 0; b < nb; b++) {
            const float *lut = w->lut + 16 * (size_t)sr[b];
            const uint8_t *cb = cr + b * (G4Q_NVFP4_BLOCK / 2);
            float *ob = o + b * G4Q_NVFP4_BLOCK;
            for (int j = 0; j < G4Q_NVFP4_BLOCK / 2; j++) {
                ob[2 * j] = lut[cb[j] & 15u];
                ob[2 * j + 1] = lut[cb[j] >> 4];
            }
        }
    }
}

static void decode_fp8(const g4q_bweight *w, int64_t r0, int nr, float *wf)
{
    const int64_t in = w->cols, nbc = (in + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK;
    const int per_tensor = (w->flags & G4Q_WD_FP8_PER_TENSOR) != 0;
    const uint8_t *q = w->data;
    for (int r = 0; r < nr; r++) {
        const int64_t row = r0 + r;
        const uint8_t *qr = q + row * in;
        float *o = wf + (int64_t)r * in;
        for (int64_t cb = 0; cb < nbc; cb++) {
            float s =
                load_f32(w->scale, per_tensor ? 0 : (size_t)((row / G4Q_FP8_BLOCK) * nbc + cb));
            int64_t c1 = (cb + 1) * G4Q_FP8_BLOCK < in ? (cb + 1) * G4Q_FP8_BLOCK : in;
            for (int64_t c = cb * G4Q_FP8_BLOCK; c < c1; c++)
                o[c] = w->lut[qr[c]] * s;
        }
    }
}

static void decode_int4(const g4q_bweight *w, int64_t r0, int nr, float *wf)
{
    const int64_t in = w->cols, out = w->rows, nw = in / G4Q_INT4_PER_I32, ng = in / w->group;
    const int wpg = w->group / G4Q_INT4_PER_I32; /* words per group */
    const int gptq = (w->flags & G4Q_WD_INT4_GPTQ) != 0;
    for (int r = 0; r < nr; r++) {
        const int64_t row = r0 + r;
        float *o = wf + (int64_t)r * in;
        for (int64_t g = 0; g < ng; g++) {
            float s = int4_scale(w, (size_t)(gptq ? g * out + row : row * ng + g));
            for (int64_t i = g * wpg; i < (g + 1) * wpg; i++) {
                uint32_t v = load_u32(w->data, (size_t)(gptq ? i * out + row : row * nw + i));
                for (int j = 0; j < G4Q_INT4_PER_I32; j++)
                    o[8 * i + j] = (float)((int)((v >> (4 * j)) & 15u) - 8) * s;
            }
        }
    }
}

void g4q_cpu_decode_rows(const g4q_bweight *w, int64_t r0, int nr, float *wf)
{
    const int64_t in = w->cols;
    switch (w->format) {
    case G4Q_WF_NVFP4:
        decode_nvfp4(w, r0, nr, wf);
        return;
    case G4Q_WF_FP8_BLOCK:
        decode_fp8(w, r0, nr, wf);
        return;
    case G4Q_WF_INT4:
        decode_int4(w, r0, nr, wf);
        return;
    default: {
        const uint16_t *src = (const uint16_t *)w->data + r0 * in;
#pragma omp simd
        for (int64_t k = 0; k < (int64_t)nr * in; k++)
            wf[k] = g4q_bits_f32((uint32_t)src[k] << 16); /* bf16 -> fp32 is exact */
        return;
    }
    }
}
