/* Streaming a planned GGUF -> GGUF quantization to one or more outputs
 * (tessera release writes several types in one pass): each tensor in file
 * order, row chunks quantized on n threads and written in order; each
 * source row is widened to f32 once and quantized to every output's type.
 * A tensor that keeps its type in every output is copied from the mapping
 * in slabs. Input pages are released as soon as their rows are written, so
 * memory stays at one output chunk per output plus one row per thread
 * whatever the model size. Chunk sizes only change how bytes are handed to
 * the writer, never the bytes. */
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

/* One output's view of the tensor being streamed. */
typedef struct {
    const ts_qplan_tensor *t;
    const ts_quant_type *q;      /* the output type; NULL when it is the source type (copied) */
    uint64_t dst_row_bytes;
    uint8_t *out;                /* chunk buffer */
} out_job;

typedef struct {
    const ts_qplan_tensor *t;    /* output 0's plan entry (name, shape, source type) */
    const uint8_t *src;          /* the tensor's mapped bytes */
    uint64_t src_row_bytes;
    int64_t row0, row_len, rows_per_mat;
    size_t n_out;
    out_job *outs;
    float **f32;                 /* per thread: row_len floats */
    uint8_t **raw;               /* per thread: one source row, for misaligned rows */
    const ts_quant_type *deq;    /* a quantized input type */
    bool check_finite;
    atomic_llong bad_row;        /* first row with a non-finite value, or -1 */
} chunk_job;

static void source_row(chunk_job *job, const uint8_t *src, int thread, float *f)
{
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
    const uint8_t *src = job->src + (uint64_t)r * job->src_row_bytes;
    float *f = job->f32[thread];
    bool widened = false;
    for (size_t k = 0; k < job->n_out; k++) {
        const out_job *oj = &job->outs[k];
        uint8_t *dst = oj->out + (uint64_t)i * oj->dst_row_bytes;
        if (!oj->q) { /* this output keeps the source type */
            memcpy(dst, src, job->src_row_bytes);
            continue;
        }
        if (!widened) {
            source_row(job, src, thread, f);
            widened = true;
            if (job->check_finite)
                for (int64_t c = 0; c < job->row_len; c++)
                    if (!isfinite(f[c])) {
                        long long expected = -1;
                        atomic_compare_exchange_strong(&job->bad_row, &expected, (long long)r);
                        return TS_ERR_FORMAT;
                    }
        }
        const float *im = oj->t->imatrix ? oj->t->imatrix + (r / job->rows_per_mat) * job->row_len : NULL;
        if (oj->q->quantize_rows(f, dst, 1, job->row_len, im) != oj->dst_row_bytes)
            return TS_ERR_INTERNAL;
    }
    return TS_OK;
}

typedef struct {
    ts_progress progress;
    uint64_t done;
} stream_state;

/* Every output keeps the source type: slabs straight from the mapping. */
static ts_status copy_tensor(const ts_gguf *g, const ts_gguf_tensor *gt, ts_gguf_out *const *outs, size_t n_out,
                             stream_state *ss, ts_err *err)
{
    const uint8_t *p = gt->t.data;
    ts_status st = TS_OK;
    for (uint64_t off = 0; off < gt->t.nbytes && st == TS_OK; off += COPY_SLAB_BYTES) {
        uint64_t n = gt->t.nbytes - off < COPY_SLAB_BYTES ? gt->t.nbytes - off : COPY_SLAB_BYTES;
        for (size_t k = 0; k < n_out && st == TS_OK; k++)
            st = ts_gguf_out_write(outs[k], p + off, n, err);
        ts_mapped_release(&g->file, g->data_offset + gt->offset + off, n);
        ss->done += n * n_out;
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
    for (size_t k = 0; k < job->n_out; k++)
        free(job->outs[k].out);
    free(job->f32);
    free(job->raw);
    free(job->outs);
}

/* The outputs' types for this tensor, and a chunk of rows whose largest
 * output row fits CHUNK_TARGET_BYTES. */
static ts_status setup_outputs(chunk_job *job, const ts_qplan *const *plans, size_t i, int64_t n_rows,
                               int64_t *chunk_rows, ts_err *err)
{
    const ts_qplan_tensor *t = job->t;
    uint64_t max_row = 1;
    for (size_t k = 0; k < job->n_out; k++) {
        out_job *oj = &job->outs[k];
        oj->t = &plans[k]->t[i];
        if (oj->t->type != t->src_type && !(oj->q = ts_quant_type_get(oj->t->type)))
            return ts_fail(err, TS_ERR_UNSUPPORTED, "tensor %s: type %s not implemented", t->name,
                           ts_dtype_name(oj->t->type));
        if (oj->q && oj->t->type != TS_F32)
            job->check_finite = true;
        if (!ts_dtype_row_bytes(oj->t->type, (uint64_t)t->ne[0], &oj->dst_row_bytes) || !oj->dst_row_bytes)
            return ts_fail(err, TS_ERR_INTERNAL, "tensor %s: bad row size", t->name);
        max_row = oj->dst_row_bytes > max_row ? oj->dst_row_bytes : max_row;
    }
    *chunk_rows = (int64_t)(CHUNK_TARGET_BYTES / max_row);
    *chunk_rows = *chunk_rows < 1 ? 1 : *chunk_rows > n_rows ? n_rows : *chunk_rows;
    for (size_t k = 0; k < job->n_out; k++)
        if (!(job->outs[k].out = malloc((size_t)(job->outs[k].dst_row_bytes * (uint64_t)(*chunk_rows ? *chunk_rows : 1)))))
            return ts_fail(err, TS_ERR_NOMEM, "tensor %s: out of memory for a %lld-row chunk", t->name,
                           (long long)*chunk_rows);
    return TS_OK;
}

static ts_status convert_tensor(const ts_gguf *g, size_t i, const ts_qplan *const *plans, ts_gguf_out *const *outs,
                                size_t n_out, int n_threads, stream_state *ss, ts_err *err)
{
    const ts_gguf_tensor *gt = &g->tensors[i];
    const ts_qplan_tensor *t = &plans[0]->t[i];
    out_job *oj = calloc(n_out, sizeof *oj);
    if (!oj)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    chunk_job job = {.t = t, .src = gt->t.data, .row_len = t->ne[0], .rows_per_mat = t->ne[1] > 0 ? t->ne[1] : 1,
                     .n_out = n_out, .outs = oj};
    atomic_init(&job.bad_row, -1);
    bool plain_src = t->src_type == TS_F32 || t->src_type == TS_F16 || t->src_type == TS_BF16;
    int64_t n_rows = t->ne[1] * t->ne[2] * t->ne[3], chunk_rows = 1;
    ts_status st = TS_OK;
    if (!plain_src && !(job.deq = ts_quant_type_get(t->src_type)))
        st = ts_fail(err, TS_ERR_UNSUPPORTED, "tensor %s: type %s not implemented", t->name, ts_dtype_name(t->src_type));
    else if (!ts_dtype_row_bytes(t->src_type, (uint64_t)t->ne[0], &job.src_row_bytes))
        st = ts_fail(err, TS_ERR_INTERNAL, "tensor %s: bad row size", t->name);
    if (st == TS_OK)
        st = setup_outputs(&job, plans, i, n_rows, &chunk_rows, err);
    job.f32 = calloc((size_t)n_threads, sizeof *job.f32);
    job.raw = calloc((size_t)n_threads, sizeof *job.raw);
    if (st == TS_OK && (!job.f32 || !job.raw))
        st = ts_fail(err, TS_ERR_NOMEM, "tensor %s: out of memory", t->name);
    for (int th = 0; th < n_threads && st == TS_OK; th++) {
        job.f32[th] = malloc((size_t)t->ne[0] * sizeof(float));
        job.raw[th] = malloc((size_t)job.src_row_bytes);
        if (!job.f32[th] || !job.raw[th])
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
        for (size_t k = 0; k < n_out && st == TS_OK; k++) {
            uint64_t bytes = oj[k].dst_row_bytes * (uint64_t)n;
            st = ts_gguf_out_write(outs[k], oj[k].out, bytes, err);
            ss->done += bytes;
        }
        ts_mapped_release(&g->file, g->data_offset + gt->offset + (uint64_t)r0 * job.src_row_bytes,
                          (uint64_t)n * job.src_row_bytes);
        ts_progress_update(&ss->progress, ss->done);
    }
    free_scratch(&job, n_threads);
    return st;
}

ts_status ts_quantize_stream(const ts_gguf *g, const ts_qplan *const *plans, ts_gguf_out *const *outs, size_t n_out,
                             int n_threads, ts_err *err)
{
    stream_state ss = {0};
    uint64_t total = 0;
    for (size_t k = 0; k < n_out; k++)
        total += plans[k]->bytes_out;
    ts_progress_begin(&ss.progress, "quantize", total);
    ts_status st = TS_OK;
    for (size_t i = 0; i < plans[0]->n && st == TS_OK; i++) {
        bool wanted = false, all_copy = true;
        for (size_t k = 0; k < n_out; k++) {
            wanted |= ts_gguf_out_wants(outs[k], i);
            all_copy &= plans[k]->t[i].type == plans[k]->t[i].src_type;
        }
        if (!wanted) /* a scale-out job writing other tensors' part */
            for (size_t k = 0; k < n_out && st == TS_OK; k++)
                st = ts_gguf_out_skip(outs[k], err);
        else if (all_copy)
            st = copy_tensor(g, &g->tensors[i], outs, n_out, &ss, err);
        else
            st = convert_tensor(g, i, plans, outs, n_out, n_threads, &ss, err);
    }
    ts_progress_end(&ss.progress);
    return st;
}
