/*
 * The weight quantizer: one BF16 matrix W [rows = out, cols = in] into the stored tensors of a
 * quantized format (quant/layout.h), on the CPU or on a CUDA GPU, with the same bytes.
 *
 * It knows nothing of plans, recipes or checkpoints: a g4q_wquant_job says what to quantize and
 * where the results go (src/export/quantize_item.c builds one from a plan item).
 *
 *   CPU  (backend/cpu/cpu_wquant.c): the reference quantizers of quant/quant.h (round to nearest
 *        with a scale search) and quant/gptq.h (GPTQ). Every format.
 *   CUDA (backend/cuda/cuda_wquant.cu): the kernels of backend/cuda/quant_cuda.h and
 *        quant_ct_cuda.h, for the formats g4q_wquant_gpu_supports accepts (NVFP4 ModelOpt;
 *        NVFP4 compressed-tensors with max scales, round to nearest; FP8 128x128 blocks; INT4
 *        GPTQ and compressed-tensors). Round to nearest gives the CPU's bytes exactly (the
 *        per-block code is quant/blockq.h on both, docs/architecture.md §4.3). GPTQ runs the
 *        CPU's column loop, but its inverse Hessian factor is computed in another order
 *        (quant_cuda.h), so a code can differ where a weight sits on a rounding boundary.
 *   Without CUDA (backend/nocuda/wquant_stub.c) g4q_wquant_gpu_create fails with
 *        G4Q_ERR_UNSUPPORTED and the CPU does the work.
 *
 * The GPU quantizer is created once per run and reused for every tensor: its device buffers (the
 * weight, the codes, the scales, the Hessian) grow on demand and are kept; it reports the most
 * device memory it held at once (GPTQ's transient working memory included, and that of a pipe).
 * g4q_wquant_gpu_run does one job at a time, synchronously; the pipe below
 * (backend/cuda/cuda_wquant_pipe.cu) runs a stream of jobs with upload, quantization and
 * download overlapped, for the exporter.
 */
#ifndef G4Q_BACKEND_WQUANT_H
#define G4Q_BACKEND_WQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"
#include "quant/gptq.h"
#include "quant/layout.h"
#include "quant/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_wquant_job {
    g4q_layout_format format; /* a quantized format (not G4Q_LAYOUT_BF16) */
    const char *name;         /* the weight's name, for messages */
    int64_t rows, cols;       /* out and in features (the quantizers check their shape rules) */
    g4q_scale_method method;  /* the scale search (quant/quant.h) */
    int gptq;                 /* 0: round to nearest; 1: GPTQ (quant/gptq.h), needs H */
    const g4q_gptq_opts *gptq_opts; /* GPTQ options; NULL: the defaults (quant/gptq.h) */
    /* Formats with a per-tensor scale (layout role G4Q_LROLE_GLOBAL: NVFP4, FP8 per tensor):
     * fused 1 when W belongs to a fused group whose members share one global amax (formats.md
     * §2.7), group_amax (>= W's max |w|); fused 0: W's own max |w| is taken. Others: unused. */
    int fused;
    float group_amax;
    const uint16_t *w; /* bf16 [rows, cols] row-major, host memory */
    /* The input Hessian of cols inputs (quant.h g4q_hess), host memory, for GPTQ (which needs
     * every entry: block 0) and the imatrix / hessian scale searches (which read its diagonal
     * blocks); NULL otherwise. With a nonzero H->key the GPU quantizer keeps H, and GPTQ's
     * inverse factor of it, on the device for the next job of the same key (no upload, no
     * factorization: the same bytes); it holds one key at a time. */
    const g4q_hess *H;
    /* Host output buffers: out[k] receives tensor k of g4q_layout_get(format)->t, in its written
     * dtype and shape for (rows, cols, the layout's group) (g4q_layout_nbytes bytes), for every
     * k whose role is not calibrated (g4q_layout_role_calibrated: those entries are ignored). */
    void *out[G4Q_LAYOUT_MAX_TENSORS];
    float *deq; /* NULL, or fp32 [rows, cols]: the dequantized result as the quant/quant.h
                   decoders give it from the outputs (e.g. for sequential calibration) */
} g4q_wquant_job;

/* Checks what every implementation relies on: a quantized format, w, positive rows and cols, an
 * output buffer for every quantizer-written tensor. G4Q_ERR_INVALID naming the job otherwise. */
g4q_status g4q_wquant_check(g4q_ctx *ctx, const g4q_wquant_job *job);

/* Quantizes on the CPU (any format). Errors: those of the quantizers (shape rules, non-finite
 * weights, a Hessian a weighted method or GPTQ needs), G4Q_ERR_UNSUPPORTED for a scale search
 * the format does not define (compressed-tensors NVFP4 and FP8 per tensor: max only), NOMEM. */
g4q_status g4q_wquant_cpu(g4q_ctx *ctx, const g4q_wquant_job *job);

typedef struct g4q_wquant_gpu g4q_wquant_gpu;

/* A GPU quantizer on the current device (its own stream); G4Q_ERR_UNSUPPORTED without CUDA. */
g4q_status g4q_wquant_gpu_create(g4q_ctx *ctx, g4q_wquant_gpu **out);
void g4q_wquant_gpu_free(g4q_wquant_gpu *q); /* NULL is a no-op */
/* Most device memory held at once, bytes; 0 for NULL. */
size_t g4q_wquant_gpu_peak_bytes(const g4q_wquant_gpu *q);
/* 1 if the job's format has a CUDA kernel (0 in builds without CUDA). */
int g4q_wquant_gpu_supports(const g4q_wquant_job *job);
/* Uploads w (and H), quantizes on the GPU and fills the job's outputs (and deq) as
 * g4q_wquant_cpu does; errors as the CPU's, plus G4Q_ERR_CUDA. */
g4q_status g4q_wquant_gpu_run(g4q_ctx *ctx, g4q_wquant_gpu *q, const g4q_wquant_job *job);

/* On gpu when it is non-NULL and supports the job, else on the CPU. */
g4q_status g4q_wquant_run(g4q_ctx *ctx, g4q_wquant_gpu *gpu, const g4q_wquant_job *job);

/*
 * ---- The GPU pipeline: many jobs in flight, reading, quantizing and copying back overlapped ----
 *
 * For a caller with a stream of jobs (the exporter, docs/architecture.md §2.1): the jobs are
 * submitted in order and come back, in the same order, as results whose outputs sit in pinned
 * host buffers owned by the pipe; the caller hands those to its writer and releases them once
 * written. The bytes are those of g4q_wquant_run (and so of g4q_wquant_cpu) for the same job.
 *
 * Inside, two threads of the pipe, each with its own CUDA stream on the GPU quantizer's device:
 *   upload    per job: a free device input slot (G4Q_WQUANT_PIPE_SLOTS, each grown to the largest
 *             weight), then the weight in chunks: copied from job.w into one of a ring of pinned
 *             staging chunks (on copy_threads host threads) and sent to the slot with an
 *             asynchronous copy, so that the host copy of chunk i+1 overlaps the transfer of
 *             chunk i and the upload of job i+1 overlaps the quantization of job i. Then it calls
 *             the job's input_done: job.w is not read again (but see NaN below).
 *   quantize  per unit, once all its jobs are uploaded: each job's max |w| on the device (exact:
 *             the integer max of the magnitude bits, as g4q_quant_amax_bf16), the unit's shared
 *             amax for a fused unit, then per job the kernels of g4q_wquant_gpu_run into device
 *             buffers, copied back into a pinned output slot (G4Q_WQUANT_PIPE_OUT_SLOTS, each
 *             grown to the largest job's outputs; waits while every slot is held) and queued as a
 *             result. The job's device slot is then free for the next upload.
 * Device memory: the input slots plus one set of output buffers (and INT4's unpacked codes and
 * scales); host: G4Q_WQUANT_PIPE_CHUNKS staging chunks of chunk_bytes and the output slots, all
 * pinned. The staging chunks are allocated at creation, the rest on first use (at the sizes of
 * opts, when given), all kept until g4q_wquant_pipe_free; the device part counts in
 * g4q_wquant_gpu_peak_bytes. The pipe's streams and buffers are its own: g4q_wquant_gpu_run on
 * the same quantizer may run beside it (on the caller's thread).
 *
 * A unit is 1 to G4Q_WQUANT_PIPE_MAX_UNIT jobs submitted together. fused 1: their global amax is
 * the max of their own amaxes (the NVFP4 fused group of formats.md §2.7, as the exporter's CPU
 * path computes it with g4q_quant_amax_bf16 over the members in order), job.fused and
 * job.group_amax are ignored; fused 0 (then n must be 1): job.fused/group_amax as for
 * g4q_wquant_run.
 *
 * NaN and infinity: a job whose weight holds one fails as the CPU fails, with G4Q_ERR_NUMERIC
 * and g4q_quant_amax_bf16's message (the element index), which is computed again from job.w on
 * the host: job.w must stay readable (its pages may be dropped) until the job's result is handed
 * out or the pipe is freed. The message of a fused unit's amax carries no `where` prefix (the
 * exporter's CPU path reports a group amax failure the same way); every other failure of a job is
 * prefixed with its `where`.
 *
 * Errors: the first failure of either thread (a CUDA error, device or pinned memory exhausted, a
 * job refused by its quantizer) is kept with its message; the threads stop taking work and
 * g4q_wquant_pipe_wait / g4q_wquant_pipe_submit return it from then on (in the caller's ctx). No
 * result is handed out for the failing job or any after it.
 *
 * Threads: submit, wait and free on one caller thread; g4q_wquant_pipe_release on any thread;
 * input_done runs on the upload thread, concurrently with the caller. The pipe's threads work
 * with copies of the creator's ctx (its thread count for the CPU parts: the NaN message, INT4
 * packing).
 */
#define G4Q_WQUANT_PIPE_MAX_UNIT 3  /* jobs in one unit (the largest fused group: q, k, v) */
#define G4Q_WQUANT_PIPE_MAX_JOBS 8  /* jobs submitted and not yet quantized, at most */
#define G4Q_WQUANT_PIPE_SLOTS 5     /* device input slots: a unit of 3 and 2 uploads ahead */
#define G4Q_WQUANT_PIPE_OUT_SLOTS 6 /* pinned output slots */
#define G4Q_WQUANT_PIPE_CHUNKS 4    /* pinned staging chunks */

typedef struct g4q_wquant_pipe g4q_wquant_pipe;

typedef struct g4q_wquant_pipe_opts {
    uint64_t max_w_bytes;   /* the largest weight to come (bf16 bytes), so that the input slots
                               are allocated once; 0: grown on demand */
    uint64_t max_out_bytes; /* the largest sum of one job's output bytes (layout sizes), ditto */
    uint64_t chunk_bytes;   /* staging chunk; 0: 16 MB (tests use small ones) */
    int copy_threads;       /* host threads for each staging copy; <= 0: 1 */
} g4q_wquant_pipe_opts;

typedef struct g4q_wquant_pipe_item {
    g4q_wquant_job job; /* g4q_wquant_pipe_accepts(&job); job.out is ignored. job.name and job.w
                           stay valid until the result is handed out or the pipe is freed */
    void *tag;          /* returned with the result */
    const char *where;  /* prefixed to this job's error messages (e.g. the input file); NULL:
                           none; valid as job.name */
    /* Called exactly once for every job of an accepted submission, on a pipe thread or in
     * g4q_wquant_pipe_free: once job.w has been copied to the device, or when the job is
     * dropped (an earlier failure, or the pipe freed first). NULL: nothing. */
    void (*input_done)(void *arg);
    void *input_arg;
} g4q_wquant_pipe_item;

typedef struct g4q_wquant_pipe_result {
    void *tag;
    /* out[k]: tensor k of g4q_layout_get(job.format)->t as g4q_wquant_run writes job.out[k]
     * (nbytes[k] = g4q_layout_nbytes), in pinned host memory owned by the pipe; NULL (0 bytes)
     * for the calibrated entries. */
    void *out[G4Q_LAYOUT_MAX_TENSORS];
    uint64_t nbytes[G4Q_LAYOUT_MAX_TENSORS];
    int n_out;  /* non-NULL entries: out[0 .. n_out) */
    void *hold; /* give to g4q_wquant_pipe_release once for each of out[0 .. n_out) when it is no
                   longer read (the buffers return to the pipe after the last) */
} g4q_wquant_pipe_result;

/* 1 if the pipe takes the job: g4q_wquant_gpu_supports, round to nearest (no GPTQ), no Hessian,
 * no deq. */
int g4q_wquant_pipe_accepts(const g4q_wquant_job *job);

/* A pipe on gpu's device (its two threads start here); opts NULL: all defaults.
 * G4Q_ERR_UNSUPPORTED without CUDA, INVALID without gpu; G4Q_ERR_CUDA (streams, events, the
 * pinned staging), NOMEM or INTERNAL (threads), with nothing left running. */
g4q_status g4q_wquant_pipe_create(g4q_ctx *ctx, g4q_wquant_gpu *gpu,
                                  const g4q_wquant_pipe_opts *opts, g4q_wquant_pipe **out);

/* Submits one unit: items[0 .. n), 1 <= n <= G4Q_WQUANT_PIPE_MAX_UNIT, n == 1 unless fused; the
 * items are copied. Never blocks: the pipe must have room for n jobs (g4q_wquant_pipe_wait with
 * need n said so), else G4Q_ERR_INVALID. G4Q_ERR_INVALID also for a job the pipe does not accept
 * or without weight and shape; the pipe's first failure if it has one. When it returns an error
 * nothing was submitted and no input_done is called. */
g4q_status g4q_wquant_pipe_submit(g4q_ctx *ctx, g4q_wquant_pipe *p,
                                  const g4q_wquant_pipe_item *items, int n, int fused);

/* Hands out the next result, in submission order (*got = 1, *res filled), or waits for one:
 *   need > 0   until a result is ready or the pipe has room for `need` more jobs;
 *   need == 0  until a result is ready or no job is in flight (all results handed out: *got 0);
 *   need < 0   never waits.
 * Returns with *got = 0 otherwise. The caller must keep taking results while it waits for room
 * (the quantizer waits for output slots that only released results free). Returns the pipe's
 * first failure, if any, in ctx (then *got = 0). */
g4q_status g4q_wquant_pipe_wait(g4q_ctx *ctx, g4q_wquant_pipe *p, int need,
                                g4q_wquant_pipe_result *res, int *got);

/* Returns one output of a result (see hold); any thread. */
void g4q_wquant_pipe_release(void *hold);

/* Stops the threads (the job being uploaded and the one being quantized finish first), calls
 * input_done for the jobs never uploaded, and frees everything. Every result handed out must
 * have been released (its buffers are freed here). NULL is a no-op. */
void g4q_wquant_pipe_free(g4q_wquant_pipe *p);

/* ---- shared by the implementations ---- */

/* memcpy of n bytes on up to `threads` OpenMP threads (the pipe's staging copies). */
void g4q_wquant_host_copy(void *dst, const void *src, size_t n, int threads);

/* ---- shared by the implementations (backend/cpu/cpu_wquant.c) ---- */

/* Packs INT4 codes q int8 [rows, cols] and fp32 group scales [rows, cols / group] (exact in the
 * layout's scale dtype) into the job's INT4 outputs (GPTQ v1 or compressed-tensors). */
g4q_status g4q_wquant_pack_int4(g4q_ctx *ctx, const g4q_wquant_job *job, const int8_t *q,
                                const float *scales);

/* Fills job->deq (which must be non-NULL) from the filled outputs; INT4 from its unpacked codes
 * and fp32 scales (q, scales), the other formats from job->out (q, scales unused). */
void g4q_wquant_dequant(const g4q_wquant_job *job, const int8_t *q, const float *scales);

#ifdef __cplusplus
}
#endif
#endif
