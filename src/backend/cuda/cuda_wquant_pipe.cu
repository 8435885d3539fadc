// The GPU weight-quantization pipeline (backend/wquant.h, "The GPU pipeline"): an upload thread
// and a quantize thread, each with its own stream, around a ring of submitted jobs.
//
// Job j moves through counters that only grow, all under mu: submitted (j < sub), uploaded
// (j < up: its weight is in device input slot ring[j].dslot, the copy ordered before
// dslot_ev[dslot]) and quantized (j < qz: its result is queued or handed out). A unit is
// quantized once all its jobs are uploaded; its jobs' device slots are freed one by one as they
// are quantized, and its results take pinned output slots that come back through
// g4q_wquant_pipe_release.
#include <pthread.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_wquant_internal.h"
#include "backend/cuda/quant_cuda.h"
#include "quant/quant.h"

namespace {

constexpr int RING = 16; // ring entries: more than G4Q_WQUANT_PIPE_MAX_JOBS jobs are never live
static_assert(RING >= G4Q_WQUANT_PIPE_MAX_JOBS + G4Q_WQUANT_PIPE_MAX_UNIT, "ring too small");
static_assert(RING >= G4Q_WQUANT_PIPE_OUT_SLOTS, "result ring too small");
static_assert(G4Q_WQUANT_PIPE_MAX_UNIT <= G4Q_WQUANT_PIPE_SLOTS,
              "a unit must fit in the device slots");
constexpr size_t DEFAULT_CHUNK = (size_t)16 << 20;
constexpr size_t OUT_ALIGN = 256; // outputs inside an output slot

struct pjob {
    g4q_wquant_pipe_item it;
    int unit_n; // on a unit's first job: the unit's size; 0 on the others
    int fused;  // the unit's
    int dslot;  // the device input slot, once uploaded
};

struct out_slot {
    g4q_wquant_pipe *pipe;
    wq_buf buf; // pinned
    bool used;  // taken by the quantizer or held by a result
    int refs;   // outputs of its result not yet released
};

} // namespace

struct g4q_wquant_pipe {
    g4q_wquant_gpu *gpu;
    int device;
    g4q_wquant_pipe_opts o;
    g4q_ctx ctx_up, ctx_q; // the threads' contexts: copies of the creator's
    pthread_mutex_t mu, mem_mu;
    pthread_cond_t cv_up;   // the uploader's: a job submitted, a device slot freed, stop
    pthread_cond_t cv_q;    // the quantizer's: a job uploaded, an output slot freed, stop
    pthread_cond_t cv_main; // the caller's: a result queued, a unit quantized, a failure
    pjob ring[RING];
    uint64_t sub, up, qz;
    g4q_wquant_pipe_result res[RING];
    uint64_t res_in, res_out;
    bool dslot_busy[G4Q_WQUANT_PIPE_SLOTS];
    wq_buf dslot[G4Q_WQUANT_PIPE_SLOTS];
    cudaEvent_t dslot_ev[G4Q_WQUANT_PIPE_SLOTS];
    wq_buf stage[G4Q_WQUANT_PIPE_CHUNKS];
    cudaEvent_t stage_ev[G4Q_WQUANT_PIPE_CHUNKS];
    unsigned stage_next;
    out_slot outs[G4Q_WQUANT_PIPE_OUT_SLOTS];
    cudaStream_t s_up, s_q;
    wq_mem mem;
    wq_exec x; // the quantizer's output buffers and pinned INT4 scratch
    bool stop;
    g4q_status err; // first failure
    char msg[G4Q_ERR_MSG_MAX];
    pthread_t t_up, t_q;
    bool started_up, started_q;
};

namespace {

bool stopping(g4q_wquant_pipe *p)
{
    return __atomic_load_n(&p->stop, __ATOMIC_RELAXED);
}

// Records the first failure (message from tctx) and wakes everyone; call with mu held.
void set_error(g4q_wquant_pipe *p, g4q_status st, const g4q_ctx *tctx)
{
    if (p->err == G4Q_OK) {
        p->err = st;
        snprintf(p->msg, sizeof p->msg, "%s", g4q_ctx_error(tctx));
    }
    pthread_cond_broadcast(&p->cv_up);
    pthread_cond_broadcast(&p->cv_q);
    pthread_cond_broadcast(&p->cv_main);
}

// Prefixes the message of a failed job with its `where`.
g4q_status with_where(g4q_ctx *ctx, const pjob *j, g4q_status st)
{
    if (st != G4Q_OK && j->it.where) g4q_error_prefix(ctx, "%s", j->it.where);
    return st;
}

int free_dslot(const g4q_wquant_pipe *p)
{
    for (int d = 0; d < G4Q_WQUANT_PIPE_SLOTS; d++)
        if (!p->dslot_busy[d]) return d;
    return -1;
}

size_t weight_bytes(const g4q_wquant_job *job)
{
    return (size_t)job->rows * (size_t)job->cols * sizeof(uint16_t);
}

// ---- upload ----

// job.w into device slot d through the pinned staging chunks (wquant.h, "upload").
g4q_status upload(g4q_wquant_pipe *p, const pjob *j, int d)
{
    g4q_ctx *ctx = &p->ctx_up;
    const size_t bytes = weight_bytes(&j->it.job);
    const size_t slot = bytes > p->o.max_w_bytes ? bytes : (size_t)p->o.max_w_bytes;
    G4Q_TRY(wq_dev_ensure(ctx, &p->mem, &p->dslot[d], slot, "a weight input slot"));
    const unsigned char *src = reinterpret_cast<const unsigned char *>(j->it.job.w);
    unsigned char *dst = static_cast<unsigned char *>(p->dslot[d].p);
    const size_t chunk = p->o.chunk_bytes;
    for (size_t off = 0; off < bytes; off += chunk) {
        if (stopping(p)) return g4q_fail(ctx, G4Q_ERR_INTERNAL, "GPU pipe stopped");
        const size_t len = bytes - off < chunk ? bytes - off : chunk;
        const unsigned r = p->stage_next++ % G4Q_WQUANT_PIPE_CHUNKS;
        G4Q_CUDA_CHECK(cudaEventSynchronize(p->stage_ev[r])); // its last transfer is done
        g4q_wquant_host_copy(p->stage[r].p, src + off, len, p->o.copy_threads);
        G4Q_CUDA_CHECK(cudaMemcpyAsync(dst + off, p->stage[r].p, len, cudaMemcpyHostToDevice,
                                       p->s_up));
        G4Q_CUDA_CHECK(cudaEventRecord(p->stage_ev[r], p->s_up));
    }
    G4Q_CUDA_CHECK(cudaEventRecord(p->dslot_ev[d], p->s_up));
    return G4Q_OK;
}

void *uploader(void *arg)
{
    g4q_wquant_pipe *p = static_cast<g4q_wquant_pipe *>(arg);
    cudaError_t e = cudaSetDevice(p->device);
    pthread_mutex_lock(&p->mu);
    if (e != cudaSuccess)
        set_error(p, g4q_fail(&p->ctx_up, G4Q_ERR_CUDA, "GPU pipe: cannot select device %d: %s",
                              p->device, cudaGetErrorString(e)),
                  &p->ctx_up);
    for (;;) {
        int d = -1;
        while (!p->stop && p->err == G4Q_OK && !(p->up < p->sub && (d = free_dslot(p)) >= 0))
            pthread_cond_wait(&p->cv_up, &p->mu);
        if (p->stop || p->err != G4Q_OK) break;
        p->dslot_busy[d] = true;
        pjob *j = &p->ring[p->up % RING];
        pthread_mutex_unlock(&p->mu);
        g4q_status st = with_where(&p->ctx_up, j, upload(p, j, d));
        if (j->it.input_done) j->it.input_done(j->it.input_arg);
        pthread_mutex_lock(&p->mu);
        j->dslot = d;
        p->up++; // uploaded or failed: its input_done has run either way
        if (st != G4Q_OK) set_error(p, st, &p->ctx_up);
        pthread_cond_broadcast(&p->cv_q);
    }
    pthread_mutex_unlock(&p->mu);
    return nullptr;
}

// ---- quantize ----

// The job's own max |w| on the device. NaN or infinity: the CPU's failure and message, from the
// host copy (wquant.h), with `where` unless the job is part of a fused unit.
g4q_status job_amax(g4q_wquant_pipe *p, const pjob *j, bool fused, float *amax)
{
    g4q_ctx *ctx = &p->ctx_q;
    const g4q_wquant_job *job = &j->it.job;
    const size_t n = (size_t)job->rows * (size_t)job->cols;
    g4q_status st = g4q_cuda_amax_bf16(ctx, job->name, static_cast<const uint16_t *>(
                                           p->dslot[j->dslot].p), n, amax, p->s_q);
    if (st == G4Q_ERR_NUMERIC) {
        float host;
        if (g4q_quant_amax_bf16(ctx, job->name, job->w, n, &host) == G4Q_OK)
            g4q_fail(ctx, G4Q_ERR_NUMERIC, "tensor '%s': NaN or infinity on the device only "
                     "(the upload changed the weight?)", job->name ? job->name : "?");
    }
    return fused ? st : with_where(ctx, j, st);
}

// Takes a free output slot holding at least `need` bytes, waiting while all are held.
g4q_status take_out_slot(g4q_wquant_pipe *p, size_t need, out_slot **out)
{
    g4q_ctx *ctx = &p->ctx_q;
    out_slot *s = nullptr;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->stop || p->err != G4Q_OK) break;
        for (int i = 0; i < G4Q_WQUANT_PIPE_OUT_SLOTS && !s; i++)
            if (!p->outs[i].used) s = &p->outs[i];
        if (s) break;
        pthread_cond_wait(&p->cv_q, &p->mu);
    }
    if (s) s->used = true;
    pthread_mutex_unlock(&p->mu);
    if (!s) return g4q_fail(ctx, G4Q_ERR_INTERNAL, "GPU pipe stopped");
    const size_t cap = need > p->o.max_out_bytes ? need : (size_t)p->o.max_out_bytes;
    g4q_status st = wq_host_ensure(ctx, &s->buf, cap, true, "the quantized outputs");
    if (st != G4Q_OK) {
        pthread_mutex_lock(&p->mu);
        s->used = false;
        pthread_mutex_unlock(&p->mu);
        return st;
    }
    *out = s;
    return G4Q_OK;
}

// The offsets of a job's outputs in an output slot (calibrated entries: none); the total size.
size_t out_layout(const g4q_wquant_job *job, uint64_t nbytes[G4Q_LAYOUT_MAX_TENSORS],
                  size_t offs[G4Q_LAYOUT_MAX_TENSORS])
{
    const g4q_layout *l = g4q_layout_get(job->format);
    size_t off = 0;
    for (int k = 0; k < G4Q_LAYOUT_MAX_TENSORS; k++) {
        nbytes[k] = 0;
        offs[k] = 0;
        if (k >= l->n || g4q_layout_role_calibrated(l->t[k].role)) continue;
        off = (off + OUT_ALIGN - 1) / OUT_ALIGN * OUT_ALIGN;
        offs[k] = off;
        nbytes[k] = g4q_layout_nbytes(&l->t[k], job->rows, job->cols, l->group);
        off += nbytes[k];
    }
    return off;
}

// Quantizes job j of a unit (amax: the unit's shared one when fused) into an output slot and
// queues its result; frees its device slot.
g4q_status quantize_job(g4q_wquant_pipe *p, pjob *j, bool fused, float amax)
{
    g4q_ctx *ctx = &p->ctx_q;
    g4q_wquant_job job = j->it.job;
    uint64_t nbytes[G4Q_LAYOUT_MAX_TENSORS];
    size_t offs[G4Q_LAYOUT_MAX_TENSORS];
    const size_t need = out_layout(&job, nbytes, offs);
    out_slot *s = nullptr;
    g4q_status st = take_out_slot(p, need, &s);
    int n_out = 0;
    if (st == G4Q_OK) {
        for (int k = 0; k < G4Q_LAYOUT_MAX_TENSORS; k++) {
            job.out[k] = nbytes[k] ? static_cast<unsigned char *>(s->buf.p) + offs[k] : nullptr;
            n_out += nbytes[k] != 0;
        }
        if (fused) {
            job.fused = 1;
            job.group_amax = amax;
        }
        st = wq_quantize_device(ctx, &p->x, &job,
                                static_cast<const uint16_t *>(p->dslot[j->dslot].p), nullptr);
    }
    pthread_mutex_lock(&p->mu);
    p->dslot_busy[j->dslot] = false; // the kernels are done with it (wq_quantize_device synced)
    pthread_cond_broadcast(&p->cv_up);
    if (st == G4Q_OK) {
        g4q_wquant_pipe_result *r = &p->res[p->res_in++ % RING];
        memset(r, 0, sizeof *r);
        r->tag = j->it.tag;
        for (int k = 0; k < G4Q_LAYOUT_MAX_TENSORS; k++) {
            r->out[k] = job.out[k];
            r->nbytes[k] = nbytes[k];
        }
        r->n_out = n_out;
        r->hold = s;
        s->refs = n_out;
        pthread_cond_broadcast(&p->cv_main);
    } else if (s) {
        s->used = false;
    }
    pthread_mutex_unlock(&p->mu);
    return with_where(ctx, j, st);
}

// The unit of n jobs starting at job `first`, all uploaded.
g4q_status quantize_unit(g4q_wquant_pipe *p, uint64_t first, int n)
{
    g4q_ctx *ctx = &p->ctx_q;
    const bool fused = p->ring[first % RING].fused != 0;
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        const pjob *j = &p->ring[(first + (uint64_t)i) % RING];
        G4Q_CUDA_CHECK(cudaStreamWaitEvent(p->s_q, p->dslot_ev[j->dslot], 0));
        float a;
        G4Q_TRY(job_amax(p, j, fused, &a));
        amax = a > amax ? a : amax;
    }
    for (int i = 0; i < n; i++)
        G4Q_TRY(quantize_job(p, &p->ring[(first + (uint64_t)i) % RING], fused, amax));
    return G4Q_OK;
}

void *quantizer(void *arg)
{
    g4q_wquant_pipe *p = static_cast<g4q_wquant_pipe *>(arg);
    cudaError_t e = cudaSetDevice(p->device);
    pthread_mutex_lock(&p->mu);
    if (e != cudaSuccess)
        set_error(p, g4q_fail(&p->ctx_q, G4Q_ERR_CUDA, "GPU pipe: cannot select device %d: %s",
                              p->device, cudaGetErrorString(e)),
                  &p->ctx_q);
    for (;;) {
        while (!p->stop && p->err == G4Q_OK &&
               !(p->qz < p->up && p->qz + (uint64_t)p->ring[p->qz % RING].unit_n <= p->up))
            pthread_cond_wait(&p->cv_q, &p->mu);
        if (p->stop || p->err != G4Q_OK) break;
        const uint64_t first = p->qz;
        const int n = p->ring[first % RING].unit_n;
        pthread_mutex_unlock(&p->mu);
        g4q_status st = quantize_unit(p, first, n);
        pthread_mutex_lock(&p->mu);
        if (st != G4Q_OK) {
            set_error(p, st, &p->ctx_q);
            break;
        }
        p->qz += (uint64_t)n;
        pthread_cond_broadcast(&p->cv_main);
    }
    pthread_mutex_unlock(&p->mu);
    return nullptr;
}

g4q_status pipe_init(g4q_ctx *ctx, g4q_wquant_pipe *p)
{
    G4Q_CUDA_CHECK(cudaSetDevice(p->device));
    G4Q_CUDA_CHECK(cudaStreamCreateWithFlags(&p->s_up, cudaStreamNonBlocking));
    G4Q_CUDA_CHECK(cudaStreamCreateWithFlags(&p->s_q, cudaStreamNonBlocking));
    for (int d = 0; d < G4Q_WQUANT_PIPE_SLOTS; d++)
        G4Q_CUDA_CHECK(cudaEventCreateWithFlags(&p->dslot_ev[d], cudaEventDisableTiming));
    // the uploader waits on these: blocking sync, so that it sleeps instead of spinning
    for (int r = 0; r < G4Q_WQUANT_PIPE_CHUNKS; r++) {
        G4Q_CUDA_CHECK(cudaEventCreateWithFlags(&p->stage_ev[r], cudaEventDisableTiming |
                                                                     cudaEventBlockingSync));
        G4Q_TRY(wq_host_ensure(ctx, &p->stage[r], p->o.chunk_bytes, true, "the upload staging"));
    }
    p->x.stream = p->s_q;
    p->x.blas = nullptr; // no GPTQ in the pipe
    p->x.mem = &p->mem;
    p->x.hpinned = true;
    return G4Q_OK;
}

} // namespace

extern "C" g4q_status g4q_wquant_pipe_create(g4q_ctx *ctx, g4q_wquant_gpu *gpu,
                                             const g4q_wquant_pipe_opts *opts,
                                             g4q_wquant_pipe **out)
{
    *out = nullptr;
    if (!gpu) return g4q_fail(ctx, G4Q_ERR_INVALID, "GPU pipe: no GPU quantizer");
    g4q_wquant_pipe *p = static_cast<g4q_wquant_pipe *>(calloc(1, sizeof *p));
    if (!p) return g4q_fail(ctx, G4Q_ERR_NOMEM, "GPU pipe: out of memory");
    p->gpu = gpu;
    p->device = wq_gpu_device(gpu);
    if (opts) p->o = *opts;
    if (!p->o.chunk_bytes) p->o.chunk_bytes = DEFAULT_CHUNK;
    if (p->o.copy_threads < 1) p->o.copy_threads = 1;
    p->ctx_up = *ctx;
    p->ctx_q = *ctx;
    pthread_mutex_init(&p->mu, nullptr);
    pthread_mutex_init(&p->mem_mu, nullptr);
    pthread_cond_init(&p->cv_up, nullptr);
    pthread_cond_init(&p->cv_q, nullptr);
    pthread_cond_init(&p->cv_main, nullptr);
    p->mem.mu = &p->mem_mu;
    for (int i = 0; i < G4Q_WQUANT_PIPE_OUT_SLOTS; i++)
        p->outs[i].pipe = p;
    g4q_status st = pipe_init(ctx, p);
    if (st == G4Q_OK) {
        int e = pthread_create(&p->t_up, nullptr, uploader, p);
        p->started_up = e == 0;
        if (e == 0) e = pthread_create(&p->t_q, nullptr, quantizer, p);
        p->started_q = p->started_up && e == 0;
        if (e != 0)
            st = g4q_fail(ctx, G4Q_ERR_INTERNAL, "GPU pipe: cannot start a thread: %s",
                          strerror(e));
    }
    if (st != G4Q_OK) {
        g4q_wquant_pipe_free(p);
        return st;
    }
    *out = p;
    return G4Q_OK;
}

extern "C" g4q_status g4q_wquant_pipe_submit(g4q_ctx *ctx, g4q_wquant_pipe *p,
                                             const g4q_wquant_pipe_item *items, int n, int fused)
{
    if (n < 1 || n > G4Q_WQUANT_PIPE_MAX_UNIT || (n > 1 && !fused))
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "GPU pipe: a unit of %d jobs (1 to %d; more than 1 only fused)", n,
                        G4Q_WQUANT_PIPE_MAX_UNIT);
    for (int i = 0; i < n; i++) {
        const g4q_wquant_job *job = &items[i].job;
        const char *name = job->name ? job->name : "(unnamed)";
        if (!g4q_layout_get(job->format) || !job->w || job->rows < 1 || job->cols < 1)
            return g4q_fail(ctx, G4Q_ERR_INVALID,
                            "tensor '%s': no weight [%lld, %lld] in a quantized format", name,
                            (long long)job->rows, (long long)job->cols);
        if (!g4q_wquant_pipe_accepts(job))
            return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': the GPU pipe does not take this "
                            "%s job (GPTQ, a Hessian, deq, or no kernel)", name,
                            g4q_layout_name(job->format));
    }
    pthread_mutex_lock(&p->mu);
    const uint64_t inflight = p->sub - p->qz;
    g4q_status st = p->err;
    if (st != G4Q_OK) {
        st = g4q_fail(ctx, st, "%s", p->msg);
    } else if (inflight != 0 && inflight + (uint64_t)n > G4Q_WQUANT_PIPE_MAX_JOBS) {
        st = g4q_fail(ctx, G4Q_ERR_INVALID, "GPU pipe: no room for %d more jobs (%llu in flight)",
                      n, (unsigned long long)inflight);
    } else {
        for (int i = 0; i < n; i++) {
            pjob *j = &p->ring[(p->sub + (uint64_t)i) % RING];
            j->it = items[i];
            j->unit_n = i == 0 ? n : 0;
            j->fused = fused != 0;
            j->dslot = -1;
        }
        p->sub += (uint64_t)n;
        pthread_cond_broadcast(&p->cv_up);
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}

extern "C" g4q_status g4q_wquant_pipe_wait(g4q_ctx *ctx, g4q_wquant_pipe *p, int need,
                                           g4q_wquant_pipe_result *res, int *got)
{
    *got = 0;
    g4q_status st = G4Q_OK;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->err != G4Q_OK) {
            st = g4q_fail(ctx, p->err, "%s", p->msg);
            break;
        }
        if (p->res_out < p->res_in) {
            *res = p->res[p->res_out++ % RING];
            *got = 1;
            break;
        }
        if (need < 0) break;
        const uint64_t inflight = p->sub - p->qz;
        if (need == 0 ? inflight == 0
                      : inflight == 0 || inflight + (uint64_t)need <= G4Q_WQUANT_PIPE_MAX_JOBS)
            break;
        pthread_cond_wait(&p->cv_main, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return st;
}

extern "C" void g4q_wquant_pipe_release(void *hold)
{
    out_slot *s = static_cast<out_slot *>(hold);
    g4q_wquant_pipe *p = s->pipe;
    pthread_mutex_lock(&p->mu);
    if (s->refs > 0 && --s->refs == 0) {
        s->used = false;
        pthread_cond_broadcast(&p->cv_q);
    }
    pthread_mutex_unlock(&p->mu);
}

extern "C" void g4q_wquant_pipe_free(g4q_wquant_pipe *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->stop, true, __ATOMIC_RELAXED); // (the uploader polls it between chunks)
    pthread_cond_broadcast(&p->cv_up);
    pthread_cond_broadcast(&p->cv_q);
    pthread_cond_broadcast(&p->cv_main);
    pthread_mutex_unlock(&p->mu);
    if (p->started_up) pthread_join(p->t_up, nullptr);
    if (p->started_q) pthread_join(p->t_q, nullptr);
    for (uint64_t j = p->up; j < p->sub; j++) { // never uploaded: dropped
        const g4q_wquant_pipe_item *it = &p->ring[j % RING].it;
        if (it->input_done) it->input_done(it->input_arg);
    }
    cudaSetDevice(p->device);
    if (p->s_up) cudaStreamSynchronize(p->s_up);
    if (p->s_q) cudaStreamSynchronize(p->s_q);
    for (int d = 0; d < G4Q_WQUANT_PIPE_SLOTS; d++) {
        wq_dev_free(&p->mem, &p->dslot[d]);
        if (p->dslot_ev[d]) cudaEventDestroy(p->dslot_ev[d]);
    }
    for (int r = 0; r < G4Q_WQUANT_PIPE_CHUNKS; r++) {
        wq_host_free(&p->stage[r], true);
        if (p->stage_ev[r]) cudaEventDestroy(p->stage_ev[r]);
    }
    for (int i = 0; i < G4Q_WQUANT_PIPE_OUT_SLOTS; i++)
        wq_host_free(&p->outs[i].buf, true);
    for (int k = 0; k < 2; k++) {
        wq_dev_free(&p->mem, &p->x.dout[k]);
        wq_host_free(&p->x.hscratch[k], true);
    }
    if (p->s_up) cudaStreamDestroy(p->s_up);
    if (p->s_q) cudaStreamDestroy(p->s_q);
    wq_gpu_note_peak(p->gpu, p->mem.peak);
    pthread_cond_destroy(&p->cv_up);
    pthread_cond_destroy(&p->cv_q);
    pthread_cond_destroy(&p->cv_main);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->mem_mu);
    free(p);
}
