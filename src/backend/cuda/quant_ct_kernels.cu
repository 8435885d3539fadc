// The compressed-tensors NVFP4 quantizer on the device (quant_ct_cuda.h): one thread per
// 16-element block running g4q_nvfp4_block_ct (quant/blockq.h), whose arithmetic is correctly
// rounded on both sides (__fmul_rn / __fdiv_rn here), so the bytes equal the CPU reference's. The
// global scale is computed on the host by the CPU's own function. No fast-math in this file.
#include <cmath>
#include <cstdint>

#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/quant_ct_cuda.h"
#include "backend/cuda/quant_cuda.h"
#include "quant/blockq.h"

namespace {

__global__ void nvfp4_ct_kernel(const uint16_t *w, int64_t nblocks, float gs, uint8_t *packed,
                                uint8_t *scales)
{
    const int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (b >= nblocks) return;
    // the block's 16 bf16 values: two 16-byte loads
    const uint4 *src = reinterpret_cast<const uint4 *>(w + b * G4Q_NVFP4_BLOCK);
    const uint4 v0 = src[0], v1 = src[1];
    const uint32_t words[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
    float x[G4Q_NVFP4_BLOCK];
    for (int i = 0; i < 8; i++) {
        x[2 * i] = g4q_bf16_to_f32((uint16_t)(words[i] & 0xffffu));
        x[2 * i + 1] = g4q_bf16_to_f32((uint16_t)(words[i] >> 16));
    }
    uint8_t out[G4Q_NVFP4_BLOCK / 2];
    scales[b] = g4q_nvfp4_block_ct(x, gs, out);
    uint2 o;
    o.x = out[0] | (out[1] << 8) | (out[2] << 16) | ((uint32_t)out[3] << 24);
    o.y = out[4] | (out[5] << 8) | (out[6] << 16) | ((uint32_t)out[7] << 24);
    reinterpret_cast<uint2 *>(packed)[b] = o;
}

} // namespace

extern "C" g4q_status g4q_cuda_nvfp4_quantize_ct(g4q_ctx *ctx, const char *name,
                                                 const uint16_t *d_w, int64_t rows, int64_t cols,
                                                 float global_amax, uint8_t *d_packed,
                                                 uint8_t *d_scales, float *global_scale,
                                                 void *stream)
{
    const char *nm = name ? name : "?";
    if (rows <= 0 || cols <= 0 || cols % G4Q_NVFP4_BLOCK != 0)
        return g4q_fail(ctx, G4Q_ERR_SHAPE,
                        "tensor '%s': shape [%lld, %lld]: NVFP4 needs in %% 16 == 0", nm,
                        (long long)rows, (long long)cols);
    if (!d_w || !d_packed || !d_scales || !global_scale)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': NULL buffer", nm);
    G4Q_TRY(g4q_cuda_nvfp4_check(ctx, nm, d_w, rows, cols, global_amax, d_packed, stream));
    const float gs = g4q_nvfp4_ct_global_scale(global_amax);
    if (std::isinf(gs))
        return g4q_fail(ctx, G4Q_ERR_NUMERIC, "tensor '%s': global amax %g gives an infinite "
                        "weight_global_scale", nm, (double)global_amax);
    cudaStream_t st = (cudaStream_t)stream;
    const int64_t nblocks = rows * (cols / G4Q_NVFP4_BLOCK);
    nvfp4_ct_kernel<<<(unsigned)((nblocks + 127) / 128), 128, 0, st>>>(d_w, nblocks, gs, d_packed,
                                                                       d_scales);
    G4Q_CUDA_CHECK(cudaGetLastError());
    G4Q_CUDA_CHECK(cudaStreamSynchronize(st));
    *global_scale = gs;
    return G4Q_OK;
}
