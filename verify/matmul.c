/* matmul: Y = X W^T for a batch of tokens, straight from the stored weight
 * type. A work item is a tile of TS_MM_ROWS weight rows: it dequantizes
 * them TS_MM_KC columns at a time into a per-thread buffer, packs that into
 * a panel and multiplies it against every token of the batch (kernels/gemm.h),
 * so each weight is dequantized once per batch and never as a whole tensor.
 *
 * Before the product the input is rounded the way llama.cpp's CPU backend
 * rounds it for the weight's type (its vec_dot_type: f16, bf16, q8_0 or
 * q8_K), which is what makes our perplexities agree with llama.cpp's on
 * quantized files (docs/perplexity.md, "Numerics"). */
#include "verify/model_internal.h"

#include "core/threads.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "verify/bigbuf.h"

#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef enum { ACT_NONE, ACT_F16, ACT_BF16, ACT_Q8_0, ACT_Q8_K } act_kind;

/* ggml-cpu's type_traits_cpu[type].vec_dot_type (q8_1 rounds like q8_0;
 * MXFP4's is q8_0 too). */
static act_kind act_kind_of(ts_dtype t)
{
    switch (t) {
    case TS_F16: return ACT_F16;
    case TS_BF16: return ACT_BF16;
    case TS_Q4_0: case TS_Q4_1: case TS_Q5_0: case TS_Q5_1: case TS_Q8_0: case TS_IQ4_NL: case TS_MXFP4:
        return ACT_Q8_0;
    case TS_Q2_K: case TS_Q3_K: case TS_Q4_K: case TS_Q5_K: case TS_Q6_K: case TS_IQ4_XS: return ACT_Q8_K;
    default: return ACT_NONE;
    }
}

/* Round to nearest, ties to even, for |v| < 2^22 (ggml's nearest_int; the
 * same as the SIMD rounding ggml-cpu's x86 q8_0 quantizer uses). */
static inline float nearest(float v)
{
    return (v + 12582912.f) - 12582912.f;
}

/* One q8_0 block as ggml-cpu's x86 quantize_row_q8_0 makes it: scale
 * max|x| / 127 stored as f16, quants x * (127 / max|x|) rounded to nearest
 * even. The values the dot product sees are quant * f16 scale. */
static void round_q8_0(const float *x, float *y)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    uint16_t dh;
    float d = amax / 127.f;
    ts_k_f32_to_f16(&d, &dh, 1);
    float dq;
    ts_k_f16_to_f32(&dh, &dq, 1);
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    for (int j = 0; j < 32; j++)
        y[j] = nearest(x[j] * id) * dq;
}

/* One q8_K block as ggml's quantize_row_q8_K_ref (used by ggml-cpu on x86):
 * the signed value of largest magnitude maps to -127, scale stays f32. */
static void round_q8_k(const float *x, float *y)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 256; j++) {
        float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    if (amax == 0.0f) {
        memset(y, 0, 256 * sizeof *y);
        return;
    }
    const float iscale = -127.f / max, d = 1 / iscale;
    for (int j = 0; j < 256; j++) {
        float v = nearest(iscale * x[j]);
        y[j] = (v > 127.f ? 127.f : v) * d;
    }
}

bool ts_mm_round_activations(ts_dtype t, const float *x, float *out, int64_t n)
{
    switch (act_kind_of(t)) {
    case ACT_F16:
        for (int64_t i = 0; i < n; i += 256) {
            uint16_t h[256];
            size_t c = (size_t)(n - i < 256 ? n - i : 256);
            ts_k_f32_to_f16(x + i, h, c);
            ts_k_f16_to_f32(h, out + i, c);
        }
        return true;
    case ACT_BF16:
        for (int64_t i = 0; i < n; i += 256) {
            uint16_t h[256];
            size_t c = (size_t)(n - i < 256 ? n - i : 256);
            ts_k_f32_to_bf16(x + i, h, c);
            ts_k_bf16_to_f32(h, out + i, c);
        }
        return true;
    case ACT_Q8_0:
        for (int64_t i = 0; i + 32 <= n; i += 32)
            round_q8_0(x + i, out + i);
        return true;
    case ACT_Q8_K:
        for (int64_t i = 0; i + 256 <= n; i += 256)
            round_q8_k(x + i, out + i);
        return true;
    case ACT_NONE:
        break;
    }
    return false;
}

/* Rows of input rounded per work item of the first phase. */
#define ROUND_ROWS 16

typedef struct {
    const float *x; /* what the gemm reads: job x or its rounded copy */
    const float *src;
    float *rounded; /* NULL: no rounding, or shared with an earlier job */
    int64_t first_item, n_tiles;
} job_plan;

typedef struct {
    ts_model *m;
    ts_mm_job *jobs;
    job_plan *plan;
    int n_jobs;
    int64_t n_round_items, n_items;
    atomic_llong rounded_done;
} mm_ctx;

static ts_status round_item(mm_ctx *c, int64_t item)
{
    for (int j = 0; j < c->n_jobs; j++) {
        job_plan *p = &c->plan[j];
        const ts_mm_job *job = &c->jobs[j];
        int64_t blocks = p->rounded ? (job->n_tok + ROUND_ROWS - 1) / ROUND_ROWS : 0;
        if (item >= blocks) {
            item -= blocks;
            continue;
        }
        const int64_t n_in = job->w->n_in, t0 = item * ROUND_ROWS;
        const int64_t rows = job->n_tok - t0 < ROUND_ROWS ? job->n_tok - t0 : ROUND_ROWS;
        for (int64_t t = t0; t < t0 + rows; t++)
            ts_mm_round_activations(job->w->type, p->src + t * n_in, p->rounded + t * n_in, n_in);
        return TS_OK;
    }
    return TS_ERR_INTERNAL;
}

static ts_status tile_item(mm_ctx *c, int64_t item, int thread)
{
    int lo = 0, hi = c->n_jobs - 1; /* the last job whose first item is <= item */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (c->plan[mid].first_item <= item)
            lo = mid;
        else
            hi = mid - 1;
    }
    const int j = lo;
    const ts_mm_job *job = &c->jobs[j];
    const ts_weight *w = job->w;
    const int64_t r0 = (item - c->plan[j].first_item) * TS_MM_ROWS;
    const int nr = (int)(w->n_out - r0 < TS_MM_ROWS ? w->n_out - r0 : TS_MM_ROWS);
    const ts_dtype_info *ti = ts_dtype_get(w->type);
    const uint8_t *base = w->data + ((uint64_t)job->expert * (uint64_t)w->n_out + (uint64_t)r0) * w->row_bytes;
    float *tile = c->m->s.tile + (int64_t)thread * TS_MM_ROWS * TS_MM_KC;
    float *panel = c->m->s.panel + (int64_t)thread * TS_MM_KC * TS_GEMM_NR;
    for (int64_t k0 = 0; k0 < w->n_in; k0 += TS_MM_KC) {
        const int64_t kc = w->n_in - k0 < TS_MM_KC ? w->n_in - k0 : TS_MM_KC;
        const uint64_t off = (uint64_t)(k0 / ti->block_size) * ti->block_bytes;
        if (w->type == TS_F32) {
            ts_k_gemm_pack((const float *)(base + off), (int64_t)(w->row_bytes / sizeof(float)), nr, kc, panel);
        } else {
            for (int r = 0; r < nr; r++)
                w->qt->dequantize_row(base + (uint64_t)r * w->row_bytes + off, tile + r * TS_MM_KC, kc);
            ts_k_gemm_pack(tile, TS_MM_KC, nr, kc, panel);
        }
        ts_k_gemm_panel(c->plan[j].x + k0, w->n_in, job->n_tok, panel, kc, nr, job->y + r0, w->n_out, k0 > 0);
    }
    return TS_OK;
}

static ts_status mm_item(void *ctx, int64_t item, int thread)
{
    mm_ctx *c = ctx;
    if (item < c->n_round_items) {
        ts_status st = round_item(c, item);
        atomic_fetch_add(&c->rounded_done, 1);
        return st;
    }
    /* Items are handed out in order, so every rounding item has been taken
     * by now; wait for the ones still running on other threads. */
    while (atomic_load(&c->rounded_done) < c->n_round_items)
        sched_yield();
    return tile_item(c, item - c->n_round_items, thread);
}

ts_status ts_mm_run(ts_model *m, ts_mm_job *jobs, int n_jobs, ts_err *err)
{
    if (n_jobs < 1)
        return TS_OK;
    job_plan *plan = malloc((size_t)n_jobs * sizeof *plan);
    int *owner = malloc((size_t)n_jobs * sizeof *owner); /* job whose rounded copy job j reads; -1: none */
    int64_t *offset = malloc((size_t)n_jobs * sizeof *offset);
    if (!plan || !owner || !offset) {
        free(plan);
        free(owner);
        free(offset);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    /* Each distinct (input, rounding) pair gets one rounded copy. */
    int64_t need = 0;
    for (int j = 0; j < n_jobs; j++) {
        const ts_mm_job *job = &jobs[j];
        if (m->hook)
            m->hook(m->hook_ctx, job->w->name, job->w->n_mat > 1 ? job->expert : -1, job->x, job->n_tok, job->w->n_in);
        plan[j] = (job_plan){.x = job->x, .src = job->x};
        owner[j] = -1;
        act_kind kind = m->ggml_act ? act_kind_of(job->w->type) : ACT_NONE;
        if (kind == ACT_NONE || job->n_tok == 0)
            continue;
        owner[j] = j;
        for (int i = 0; i < j; i++)
            if (owner[i] == i && jobs[i].x == job->x && jobs[i].n_tok == job->n_tok &&
                act_kind_of(jobs[i].w->type) == kind) {
                owner[j] = i;
                break;
            }
        if (owner[j] == j) {
            offset[j] = need;
            need += job->n_tok * job->w->n_in;
        }
    }
    if (need > m->s.act_cap) {
        free(m->s.act);
        m->s.act = ts_big_alloc((size_t)need * sizeof(float));
        m->s.act_cap = m->s.act ? need : 0;
        if (!m->s.act) {
            free(plan);
            free(owner);
            free(offset);
            return ts_fail(err, TS_ERR_NOMEM, "out of memory for %lld rounded activations", (long long)need);
        }
    }
    mm_ctx c = {.m = m, .jobs = jobs, .plan = plan, .n_jobs = n_jobs};
    int64_t items = 0;
    for (int j = 0; j < n_jobs; j++) {
        if (owner[j] == j) {
            plan[j].rounded = m->s.act + offset[j];
            c.n_round_items += (jobs[j].n_tok + ROUND_ROWS - 1) / ROUND_ROWS;
        }
        if (owner[j] >= 0)
            plan[j].x = m->s.act + offset[owner[j]];
        plan[j].first_item = items;
        plan[j].n_tiles = jobs[j].n_tok > 0 ? (jobs[j].w->n_out + TS_MM_ROWS - 1) / TS_MM_ROWS : 0;
        items += plan[j].n_tiles;
    }
    c.n_items = c.n_round_items + items;
    atomic_init(&c.rounded_done, 0);
    ts_status st = c.n_items ? ts_parallel_for(m->n_threads, c.n_items, mm_item, &c) : TS_OK;
    free(plan);
    free(owner);
    free(offset);
    if (st)
        return ts_fail(err, st, "matmul failed (%s)", ts_status_name(st));
    return TS_OK;
}
