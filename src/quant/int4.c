/* INT4 symmetric group quantizer (§5) and the GPTQ v1 / compressed-tensors pack-quantized byte
 * layouts. */
#include "quant/quant.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "quant/blockq.h"

int64_t g4q_int4_group_count(int64_t cols, int group)
{
    return group > 0 ? (cols + group - 1) / group : 0;
}

static int store_of(g4q_dtype dt)
{
    switch (dt) {
    case G4Q_DT_F16:
        return G4Q_SCALE_STORE_F16;
    case G4Q_DT_BF16:
        return G4Q_SCALE_STORE_BF16;
    case G4Q_DT_F32:
        return G4Q_SCALE_STORE_F32;
    default:
        return -1;
    }
}

g4q_status g4q_int4_quantize(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                             int64_t cols, int group, g4q_scale_method method,
                             g4q_dtype scale_dtype, int8_t *q, float *scales)
{
    return g4q_int4_quantize_h(ctx, name, w, rows, cols, group, method, scale_dtype, NULL, q,
                               scales);
}

g4q_status g4q_int4_quantize_h(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                               int64_t cols, int group, g4q_scale_method method,
                               g4q_dtype scale_dtype, const g4q_hess *H, int8_t *q, float *scales)
{
    const char *nm = name ? name : "?";
    if (rows <= 0 || cols <= 0 || group <= 0)
        return g4q_fail(ctx, G4Q_ERR_SHAPE, "tensor '%s': bad shape [%lld, %lld] or group %d", nm,
                        (long long)rows, (long long)cols, group);
    if (!w || !q || !scales)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': NULL buffer", nm);
    int store = store_of(scale_dtype);
    if (store < 0)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': INT4 scales cannot be stored as %s",
                        nm, g4q_dtype_name(scale_dtype));
    if (method != G4Q_SCALE_MAX && method != G4Q_SCALE_MSE && !g4q_scale_method_weighted(method))
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "tensor '%s': INT4 supports max, mse, imatrix and hessian, not %s", nm,
                        g4q_scale_method_name(method));
    float tamax;
    G4Q_TRY(g4q_quant_amax_bf16(ctx, nm, w, (size_t)rows * (size_t)cols, &tamax));
    float *hw;
    G4Q_TRY(g4q_hess_prepare(ctx, nm, method, H, cols, group, &hw));
    const int hess = method == G4Q_SCALE_HESSIAN;
    int64_t ng = g4q_int4_group_count(cols, group);
    int bad = 0;
    int nt = ctx->threads > 0 ? ctx->threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(nt) reduction(| : bad)
    for (int64_t b = 0; b < rows * ng; b++) {
        int64_t r = b / ng, c0 = (b % ng) * group;
        int n = (int)(cols - c0 < group ? cols - c0 : group);
        const uint16_t *src = w + r * cols + c0;
        float s;
        if (!hw)
            s = g4q_int4_group_scale(src, n, method == G4Q_SCALE_MSE, store);
        else if (hess) /* compact [ng][group][group] blocks */
            s = g4q_int4_group_scale_h(src, n, (int)method, store,
                                       hw + (b % ng) * (int64_t)group * group, group, 0);
        else /* compact diagonal */
            s = g4q_int4_group_scale_h(src, n, (int)method, store, hw, 0, c0);
        if (isinf(s))
            bad = 1;
        scales[b] = s;
        for (int j = 0; j < n; j++)
            q[r * cols + c0 + j] = (int8_t)g4q_int4_encode(g4q_bf16_to_f32(src[j]) / s);
    }
    free(hw);
    if (bad)
        return g4q_fail(ctx, G4Q_ERR_NUMERIC, "tensor '%s': a group scale overflows %s (amax %g)",
                        nm, g4q_dtype_name(scale_dtype), (double)tamax);
    return G4Q_OK;
}

void g4q_int4_dequantize(const int8_t *q, const float *scales, int64_t rows, int64_t cols,
                         int group, float *out)
{
    int64_t ng = g4q_int4_group_count(cols, group);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            out[r * cols + c] = (float)q[r * cols + c] * scales[r * ng + c / group];
}

/* Eight offset nibbles of q[0..7], first in the least significant bits. */
static int32_t pack8(const int8_t *q)
{
    uint32_t v = 0;
    for (int j = 0; j < G4Q_INT4_PER_I32; j++)
        v |= g4q_int4_offset_nibble(q[j]) << (4 * j);
    int32_t s;
    memcpy(&s, &v, 4);
    return s;
}

g4q_status g4q_int4_pack_gptq(g4q_ctx *ctx, const char *name, const int8_t *q,
                              const float *scales, int64_t rows, int64_t cols, int group,
                              int32_t *qweight, int32_t *qzeros, uint16_t *scales_f16,
                              int32_t *g_idx)
{
    const char *nm = name ? name : "?";
    if (rows <= 0 || cols <= 0 || group <= 0 || group % 8 != 0 || cols % group != 0 ||
        rows % 8 != 0)
        return g4q_fail(ctx, G4Q_ERR_SHAPE,
                        "tensor '%s': shape [%lld, %lld], group %d: GPTQ needs in %% group == 0, "
                        "group %% 8 == 0 and out %% 8 == 0",
                        nm, (long long)rows, (long long)cols, group);
    int64_t ng = cols / group;
    for (int64_t i = 0; i < rows * ng; i++)
        if (g4q_f16_to_f32(g4q_f32_to_f16(scales[i])) != scales[i] || !(scales[i] > 0.0f))
            return g4q_fail(ctx, G4Q_ERR_INVALID,
                            "tensor '%s': scale %lld (%g) is not a positive f16 value; quantize "
                            "with scale dtype F16 for GPTQ",
                            nm, (long long)i, (double)scales[i]);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < cols / 8; i++) {
        int8_t tmp[G4Q_INT4_PER_I32];
        for (int64_t n = 0; n < rows; n++) {
            for (int j = 0; j < G4Q_INT4_PER_I32; j++)
                tmp[j] = q[n * cols + 8 * i + j];
            qweight[i * rows + n] = pack8(tmp);
        }
    }
    for (int64_t g = 0; g < ng; g++) {
        for (int64_t k = 0; k < rows / 8; k++)
            qzeros[g * (rows / 8) + k] = (int32_t)0x77777777;
        for (int64_t n = 0; n < rows; n++)
            scales_f16[g * rows + n] = g4q_f32_to_f16(scales[n * ng + g]);
    }
    for (int64_t i = 0; i < cols; i++)
        g_idx[i] = (int32_t)(i / group);
    return G4Q_OK;
}

g4q_status g4q_int4_pack_ct(g4q_ctx *ctx, const char *name, const int8_t *q, const float *scales,
                            int64_t rows, int64_t cols, int group, g4q_dtype scale_dtype,
                            int32_t *weight_packed, void *scale_out)
{
    const char *nm = name ? name : "?";
    int store = store_of(scale_dtype);
    if (rows <= 0 || cols <= 0 || group <= 0 || cols % 8 != 0 || store < 0)
        return g4q_fail(ctx, G4Q_ERR_SHAPE,
                        "tensor '%s': shape [%lld, %lld], scale dtype %s: CT pack-quantized "
                        "needs in %% 8 == 0 and F16/BF16/F32 scales",
                        nm, (long long)rows, (long long)cols, g4q_dtype_name(scale_dtype));
    int64_t ns = rows * g4q_int4_group_count(cols, group);
    for (int64_t i = 0; i < ns; i++) {
        float s = scales[i];
        if (!(s > 0.0f) || g4q_int4_store_scale(s, store) != s)
            return g4q_fail(ctx, G4Q_ERR_INVALID,
                            "tensor '%s': scale %lld (%g) is not a positive %s value", nm,
                            (long long)i, (double)s, g4q_dtype_name(scale_dtype));
        if (store == G4Q_SCALE_STORE_F16)
            ((uint16_t *)scale_out)[i] = g4q_f32_to_f16(s);
        else if (store == G4Q_SCALE_STORE_BF16)
            ((uint16_t *)scale_out)[i] = g4q_f32_to_bf16(s);
        else
            ((float *)scale_out)[i] = s;
    }
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < rows; n++)
        for (int64_t i = 0; i < cols / 8; i++)
            weight_packed[n * (cols / 8) + i] = pack8(q + n * cols + 8 * i);
    return G4Q_OK;
}

g4q_status g4q_int4_unpack_gptq(g4q_ctx *ctx, const char *name, const int32_t *qweight,
                                const int32_t *qzeros, const uint16_t *scales_f16, int64_t rows,
                                int64_t cols, int group, int8_t *q, float *scales)
{
    const char *nm = name ? name : "?";
    if (rows <= 0 || cols <= 0 || group <= 0 || cols % group != 0 || cols % 8 != 0 ||
        rows % 8 != 0)
        return g4q_fail(ctx, G4Q_ERR_SHAPE, "tensor '%s': bad GPTQ shape [%lld, %lld], group %d",
                        nm, (long long)rows, (long long)cols, group);
    int64_t ng = cols / group;
    for (int64_t g = 0; g < ng; g++)
        for (int64_t k = 0; k < rows / 8; k++) {
            uint32_t z;
            memcpy(&z, &qzeros[g * (rows / 8) + k], 4);
            for (int j = 0; j < 8; j++)
                if (((z >> (4 * j)) & 15u) != 7u)
                    return g4q_fail(ctx, G4Q_ERR_FORMAT,
                                    "tensor '%s': qzeros[%lld, %lld] = 0x%08x, expected "
                                    "0x77777777 (symmetric)",
                                    nm, (long long)g, (long long)k, (unsigned)z);
        }
    for (int64_t i = 0; i < cols / 8; i++)
        for (int64_t n = 0; n < rows; n++) {
            uint32_t v;
            memcpy(&v, &qweight[i * rows + n], 4);
            for (int j = 0; j < 8; j++)
                q[n * cols + 8 * i + j] = (int8_t)((int)((v >> (4 * j)) & 15u) - 8);
        }
    for (int64_t g = 0; g < ng; g++)
        for (int64_t n = 0; n < rows; n++)
            scales[n * ng + g] = g4q_f16_to_f32(scales_f16[g * rows + n]);
    return G4Q_OK;
}
