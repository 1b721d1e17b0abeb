/* Streaming a planned GGUF -> GGUF quantization: each tensor in file order,
 * row chunks of about 4 MiB of output quantized on n threads and written in
 * order; a tensor that keeps its type is copied from the mapping in slabs.
 * Input pages are released as soon as their rows are written, so memory stays
 * at one output chunk plus one row per thread whatever the model size. */
#include "quantize.h"
#include "quant.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "core/threads.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_TARGET_BYTES (4u << 20)
#define COPY_SLAB_BYTES (16u << 20)

typedef struct {
    const ts_qplan_tensor *t;
    const uint8_t *src;          /* the tensor's mapped bytes */
    uint64_t src_row_bytes, dst_row_bytes;
    int64_t row0, row_len, rows_per_mat;
    uint8_t *out;
    float **f32;                 /* per thread: row_len floats */
    uint8_t **raw;               /* per thread: one source row, for misaligned rows */
    const ts_quant_type *q;      /* the output type */
    const ts_quant_type *deq;    /* a quantized input type */
    bool check_finite;
    atomic_llong bad_row;        /* first row with a non-finite value, or -1 */
} chunk_job;

static void source_row(chunk_job *job, int64_t r, int thread, float *f)
{
    const uint8_t *src = job->src + (uint64_t)r * job->src_row_bytes;
    ts_dtype st = job->t->src_type;
    size_t n = (size_t)job->row_len;
    if ((st == TS_F32 && (uintptr_t)src % 4) || ((st == TS_F16 || st == TS_BF16) && (uintptr_t)src % 2)) {
        memcpy(job->raw[thread], src, job->src_row_bytes); /* general.alignment may be 1 */
        src = job->raw[thread];
    }
    switch (st) {
    case TS_F32: memcpy(f, src, n * 4); break;
    case TS_F16: ts_k_f16_to_f32((const uint16_t *)src, f, n); break;
    case TS_BF16: ts_k_bf16_to_f32((const uint16_t *)src, f, n); break;
    default: job->deq->dequantize_row(src, f, job->row_len); break;
    }
}

static ts_status quantize_row(void *ctx, int64_t i, int thread)
{
    chunk_job *job = ctx;
    int64_t r = job->row0 + i;
    float *f = job->f32[thread];
    source_row(job, r, thread, f);
    if (job->check_finite)
        for (int64_t c = 0; c < job->row_len; c++)
            if (!isfinite(f[c])) {
                long long expected = -1;
                atomic_compare_exchange_strong(&job->bad_row, &expected, (long long)r);
                return TS_ERR_FORMAT;
            }
    const float *im = job->t->imatrix ? job->t->imatrix + (r / job->rows_per_mat) * job->row_len : NULL;
    size_t n = job->q->quantize_rows(f, job->out + (uint64_t)i * job->dst_row_bytes, 1, job->row_len, im);
    return n == job->dst_row_bytes ? TS_OK : TS_ERR_INTERNAL;
}

typedef struct {
    ts_progress progress;
    uint64_t done;
} stream_state;

static ts_status copy_tensor(const ts_gguf *g, const ts_gguf_tensor *gt, ts_gguf_writer *w, stream_state *ss, ts_err *err)
{
    const uint8_t *p = gt->t.data;
    ts_status st = TS_OK;
    for (uint64_t off = 0; off < gt->t.nbytes && st == TS_OK; off += COPY_SLAB_BYTES) {
        uint64_t n = gt->t.nbytes - off < COPY_SLAB_BYTES ? gt->t.nbytes - off : COPY_SLAB_BYTES;
        st = ts_gguf_write_tensor_data(w, p + off, n, err);
        ts_mapped_release(&g->file, g->data_offset + gt->offset + off, n);
        ss->done += n;
        ts_progress_update(&ss->progress, ss->done);
    }
    return st;
}

static void free_scratch(chunk_job *job, int n_threads)
{
    for (int i = 0; i < n_threads; i++) {
        if (job->f32)
            free(job->f32[i]);
        if (job->raw)
            free(job->raw[i]);
    }
    free(job->f32);
    free(job->raw);
    free(job->out);
}

static ts_status convert_tensor(const ts_gguf *g, const ts_gguf_tensor *gt, const ts_qplan_tensor *t, ts_gguf_writer *w,
                                int n_threads, stream_state *ss, ts_err *err)
{
    chunk_job job = {.t = t, .src = gt->t.data, .row_len = t->ne[0], .rows_per_mat = t->ne[1] > 0 ? t->ne[1] : 1,
                     .q = ts_quant_type_get(t->type), .check_finite = t->type != TS_F32};
    atomic_init(&job.bad_row, -1);
    if (t->src_type != TS_F32 && t->src_type != TS_F16 && t->src_type != TS_BF16)
        job.deq = ts_quant_type_get(t->src_type);
    if (!job.q || (t->src_type != TS_F32 && t->src_type != TS_F16 && t->src_type != TS_BF16 && !job.deq))
        return ts_fail(err, TS_ERR_UNSUPPORTED, "tensor %s: type %s not implemented", t->name,
                       ts_dtype_name(job.q ? t->src_type : t->type));
    int64_t n_rows = t->ne[1] * t->ne[2] * t->ne[3];
    if (!ts_dtype_row_bytes(t->src_type, (uint64_t)t->ne[0], &job.src_row_bytes) ||
        !ts_dtype_row_bytes(t->type, (uint64_t)t->ne[0], &job.dst_row_bytes) || !job.dst_row_bytes)
        return ts_fail(err, TS_ERR_INTERNAL, "tensor %s: bad row size", t->name);
    int64_t chunk_rows = (int64_t)(CHUNK_TARGET_BYTES / job.dst_row_bytes);
    chunk_rows = chunk_rows < 1 ? 1 : chunk_rows > n_rows ? n_rows : chunk_rows;
    ts_status st = TS_OK;
    job.out = malloc((size_t)(job.dst_row_bytes * (uint64_t)(chunk_rows ? chunk_rows : 1)));
    job.f32 = calloc((size_t)n_threads, sizeof *job.f32);
    job.raw = calloc((size_t)n_threads, sizeof *job.raw);
    if (!job.out || !job.f32 || !job.raw)
        st = ts_fail(err, TS_ERR_NOMEM, "tensor %s: out of memory for a %lld-row chunk", t->name, (long long)chunk_rows);
    for (int i = 0; i < n_threads && st == TS_OK; i++) {
        job.f32[i] = malloc((size_t)t->ne[0] * sizeof(float));
        job.raw[i] = malloc((size_t)job.src_row_bytes);
        if (!job.f32[i] || !job.raw[i])
            st = ts_fail(err, TS_ERR_NOMEM, "tensor %s: out of memory", t->name);
    }
    for (int64_t r0 = 0; r0 < n_rows && st == TS_OK; r0 += chunk_rows) {
        int64_t n = n_rows - r0 < chunk_rows ? n_rows - r0 : chunk_rows;
        job.row0 = r0;
        st = ts_parallel_for(n_threads, n, quantize_row, &job);
        if (st != TS_OK) {
            long long bad = atomic_load(&job.bad_row);
            if (bad >= 0)
                ts_fail(err, TS_ERR_FORMAT, "tensor %s: row %lld holds a NaN or infinite value; refusing to quantize it",
                        t->name, bad);
            else
                ts_fail(err, st, "tensor %s: quantizing to %s failed", t->name, ts_dtype_name(t->type));
            break;
        }
        uint64_t bytes = job.dst_row_bytes * (uint64_t)n;
        st = ts_gguf_write_tensor_data(w, job.out, bytes, err);
        ts_mapped_release(&g->file, g->data_offset + gt->offset + (uint64_t)r0 * job.src_row_bytes,
                          (uint64_t)n * job.src_row_bytes);
        ss->done += bytes;
        ts_progress_update(&ss->progress, ss->done);
    }
    free_scratch(&job, n_threads);
    return st;
}

ts_status ts_quantize_stream(const ts_gguf *g, const ts_qplan *plan, ts_gguf_writer *w, int n_threads, ts_err *err)
{
    stream_state ss = {0};
    ts_progress_begin(&ss.progress, "quantize", plan->bytes_out);
    ts_status st = TS_OK;
    for (size_t i = 0; i < plan->n && st == TS_OK; i++) {
        const ts_gguf_tensor *gt = &g->tensors[i];
        const ts_qplan_tensor *t = &plan->t[i];
        if (t->type == t->src_type)
            st = copy_tensor(g, gt, w, &ss, err);
        else
            st = convert_tensor(g, gt, t, w, n_threads, &ss, err);
    }
    ts_progress_end(&ss.progress);
    return st;
}
