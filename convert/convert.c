/* The convert driver: config -> architecture -> metadata + tokenizer -> plan
 * -> tensors streamed row-chunk by row-chunk into an atomically renamed GGUF. */
#include "convert.h"
#include "arch.h"
#include "arch_meta.h"
#include "fp8.h"
#include "plan.h"
#include "tokenizer.h"
#include "xform.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "core/threads.h"
#include "formats/checkpoint.h"
#include "kernels/kernels.h"
#include "quant/quant.h"

#include <libgen.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CHUNK_TARGET_BYTES (4u << 20)

/* ---- row conversion ---- */

/* One output's side of a chunk: its type and importance weights for the
 * tensor being streamed, and its chunk buffer. */
typedef struct {
    ts_dtype type;
    const float *imatrix;  /* ne[0] per expert / matrix, or NULL */
    uint64_t row_bytes;
    uint8_t *out;
} chunk_out;

typedef struct {
    const ts_out_tensor *o;
    int64_t row_len;       /* elements per row */
    int64_t rows_per_src;  /* rows in one source (one expert) */
    int64_t row0;          /* first row of this chunk */
    size_t n_out;          /* outputs (tessera release writes several at once) */
    chunk_out *outs;
    float **f32;           /* per-thread scratch, row_len floats */
    uint8_t **raw;         /* per-thread scratch for misaligned source rows */
} chunk_job;

/* Llama's permutation: within each of `groups` heads, output row i*2+j comes
 * from source row j*(half)+i (HF rotate-half -> interleaved pairs). */
static int64_t permuted_row(int64_t r, int64_t rows, int64_t groups)
{
    int64_t head_rows = rows / groups, half = head_rows / 2;
    int64_t h = r / head_rows, k = r % head_rows;
    int64_t i = k / 2, j = k % 2;
    return h * head_rows + j * half + i;
}

static void src_to_f32(ts_dtype t, const void *src, float *dst, int64_t n)
{
    switch (t) {
    case TS_F32: memcpy(dst, src, (size_t)n * 4); break;
    case TS_F16: ts_k_f16_to_f32(src, dst, (size_t)n); break;
    case TS_BF16: ts_k_bf16_to_f32(src, dst, (size_t)n); break;
    case TS_F64: ts_k_f64_to_f32(src, dst, (size_t)n); break;
    case TS_F8_E4M3: ts_k_f8e4m3_to_f32(src, dst, (size_t)n); break;
    case TS_F8_E5M2: ts_k_f8e5m2_to_f32(src, dst, (size_t)n); break;
    default: memset(dst, 0, (size_t)n * 4); break; /* refused by the planner */
    }
}

/* imatrix: n importance weights for this row's matrix, or NULL. */
static void f32_to_out(ts_dtype t, const float *src, void *dst, int64_t n, const float *imatrix)
{
    switch (t) {
    case TS_F32: memcpy(dst, src, (size_t)n * 4); break;
    case TS_F16: ts_k_f32_to_f16(src, dst, (size_t)n); break;
    case TS_BF16: ts_k_f32_to_bf16(src, dst, (size_t)n); break;
    case TS_Q8_0: ts_k_quantize_row_q8_0(src, dst, n); break;
    default: { /* a plan hook's type: checked to exist before streaming starts */
        const ts_quant_type *q = ts_quant_type_get(t);
        if (q)
            q->quantize_rows(src, dst, 1, n, imatrix);
        break;
    }
    }
}

/* Row r of every output: the source row is widened to f32 at most once
 * and converted to each output's type (copied when it already is). */
static ts_status convert_row(void *ctx, int64_t i, int thread)
{
    chunk_job *job = ctx;
    const ts_out_tensor *o = job->o;
    int64_t r = job->row0 + i;
    float *f = job->f32[thread];
    if (o->gen) {
        for (size_t k = 0; k < job->n_out; k++)
            f32_to_out(job->outs[k].type, o->gen->data + r * job->row_len,
                       job->outs[k].out + (uint64_t)i * job->outs[k].row_bytes, job->row_len, NULL);
        return TS_OK;
    }
    bool have_f32 = false;
    if (o->custom) {
        for (size_t k = 0; k < job->n_out; k++) {
            const chunk_out *co = &job->outs[k];
            uint8_t *dst = co->out + (uint64_t)i * co->row_bytes;
            /* the row function writes its own type directly; for others it gives floats, the same whatever the type */
            if (!have_f32 || co->type == o->custom->type) {
                if (o->custom->row(o->custom, o->src_data, r, co->type, dst, f))
                    continue;
                have_f32 = true;
            }
            f32_to_out(co->type, f, dst, job->row_len, co->imatrix ? co->imatrix + (r / o->ne[1]) * job->row_len : NULL);
        }
        return TS_OK;
    }
    int64_t e = r / job->rows_per_src, sr = r % job->rows_per_src;
    if (o->xform == TS_XF_PERMUTE_Q || o->xform == TS_XF_PERMUTE_K)
        sr = permuted_row(sr, job->rows_per_src, o->xform_groups);
    const uint8_t *src = NULL;
    uint64_t src_row_bytes = 0;
    const ts_tensor *s = NULL;
    if (ts_xform_custom(o)) { /* FP8 block scales, MLA split: convert/xform.c */
        ts_xform_row(o, (size_t)e, sr, job->row_len, f, job->raw[thread]);
        have_f32 = true;
    } else {
        s = o->src[e];
        src_row_bytes = (uint64_t)job->row_len * ts_dtype_get(s->dtype)->block_bytes;
        src = (const uint8_t *)o->src_data[e] + (uint64_t)sr * src_row_bytes;
    }
    for (size_t k = 0; k < job->n_out; k++) {
        const chunk_out *co = &job->outs[k];
        uint8_t *dst = co->out + (uint64_t)i * co->row_bytes;
        if (s && s->dtype == co->type) {
            memcpy(dst, src, src_row_bytes);
            continue;
        }
        if (!have_f32) {
            uint32_t esize = ts_dtype_get(s->dtype)->block_bytes;
            if ((uintptr_t)src % esize != 0) { /* safetensors does not promise aligned data */
                memcpy(job->raw[thread], src, src_row_bytes);
                src = job->raw[thread];
            }
            src_to_f32(s->dtype, src, f, job->row_len);
            have_f32 = true;
        }
        f32_to_out(co->type, f, dst, job->row_len, co->imatrix ? co->imatrix + e * job->row_len : NULL);
    }
    return TS_OK;
}

/* One output of the run: its writer, where the bytes go, and its type and
 * importance weights for every planned tensor. */
typedef struct {
    ts_gguf_writer *w;     /* the run's own writer for a single output */
    ts_gguf_out *out;
    ts_dtype *types;
    const float **imatrix;
} conv_target;

typedef struct {
    ts_progress progress;
    uint64_t done_bytes;
} stream_state;

/* Drops the pages of source rows that output rows [*released, done) were the
 * last to read, so a large tensor (an embedding, a stack of FP8 experts)
 * keeps about one chunk of its input resident rather than all of it. Only
 * where output rows read their source in order: a Llama Q/K permutation
 * stays within a head, the MLA split and assembled tensors read anywhere
 * (they are small, and released whole at the tensor's end). */
static void release_read_rows(const ts_out_tensor *o, const ts_checkpoint *ckpt, const chunk_job *job,
                              int64_t *released, int64_t done)
{
    bool permuted = o->xform == TS_XF_PERMUTE_Q || o->xform == TS_XF_PERMUTE_K;
    if (o->gen || o->custom || !o->src || (o->xform != TS_XF_NONE && !permuted) || job->row_len != o->ne[0])
        return;
    int64_t rps = job->rows_per_src;
    while (*released < done) {
        int64_t e = *released / rps, first = *released % rps, last = done - e * rps;
        if (last > rps)
            last = rps;
        if (permuted && last < rps) { /* whole heads only */
            int64_t head_rows = rps / o->xform_groups;
            last = last / head_rows * head_rows;
        }
        if (last <= first)
            return;
        const ts_tensor *s = o->src[e];
        uint64_t row_bytes;
        if (s && ts_dtype_row_bytes(s->dtype, (uint64_t)job->row_len, &row_bytes))
            ts_checkpoint_release_range(ckpt, s, (uint64_t)first * row_bytes, (uint64_t)(last - first) * row_bytes);
        *released = e * rps + last;
    }
}

static void free_job(chunk_job *job, int n_threads)
{
    for (int t = 0; t < n_threads && job->f32; t++) {
        free(job->f32[t]);
        if (job->raw)
            free(job->raw[t]);
    }
    for (size_t k = 0; job->outs && k < job->n_out; k++)
        free(job->outs[k].out);
    free(job->outs);
    free(job->f32);
    free(job->raw);
}

/* Planned tensor ti into every target, row chunk by row chunk; a chunk
 * holds as many rows as fit CHUNK_TARGET_BYTES in the widest output. */
static ts_status stream_tensor(ts_out_tensor *o, size_t ti, conv_target *tg, size_t n_out, const ts_checkpoint *ckpt,
                               int n_threads, stream_state *ss, ts_err *err)
{
    bool wanted = false;
    for (size_t k = 0; k < n_out; k++)
        wanted |= ts_gguf_out_wants(tg[k].out, ti);
    ts_status st = TS_OK;
    if (!wanted) { /* a scale-out job writing another part */
        for (size_t k = 0; k < n_out && st == TS_OK; k++)
            st = ts_gguf_out_skip(tg[k].out, err);
        return st;
    }
    int64_t row_len, n_rows;
    if (o->n_dims == 1 && o->xform != TS_XF_NONE) { /* a permuted bias: every element is a row */
        row_len = 1;
        n_rows = o->ne[0];
    } else {
        row_len = o->ne[0];
        n_rows = o->ne[1] * o->ne[2] * o->ne[3];
    }
    chunk_job job = {.o = o, .row_len = row_len, .rows_per_src = n_rows / (int64_t)o->n_src, .n_out = n_out};
    if (!(job.outs = calloc(n_out, sizeof *job.outs)))
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", o->name);
    uint64_t widest = 1;
    for (size_t k = 0; k < n_out; k++) {
        chunk_out *co = &job.outs[k];
        co->type = tg[k].types[ti];
        co->imatrix = tg[k].imatrix[ti];
        if (!ts_dtype_row_bytes(co->type, (uint64_t)row_len, &co->row_bytes)) {
            free_job(&job, 0);
            return ts_fail(err, TS_ERR_INTERNAL, "%s: row of %lld elements does not fit type %s", o->name,
                           (long long)row_len, ts_dtype_name(co->type));
        }
        widest = co->row_bytes > widest ? co->row_bytes : widest;
    }
    int64_t chunk_rows = (int64_t)(CHUNK_TARGET_BYTES / widest);
    if (chunk_rows < 1)
        chunk_rows = 1;
    if (chunk_rows > n_rows)
        chunk_rows = n_rows;
    for (size_t e = 0; e < o->n_src && o->src; e++) {
        ts_status ds = ts_checkpoint_data(ckpt, o->src[e], &o->src_data[e], err);
        if (ds != TS_OK) {
            for (size_t k = 0; k < e; k++)
                ts_checkpoint_release(ckpt, o->src[k]);
            free_job(&job, 0);
            return ds;
        }
    }
    st = ts_fp8_acquire(o, ckpt, err);
    job.f32 = calloc((size_t)n_threads, sizeof *job.f32);
    job.raw = calloc((size_t)n_threads, sizeof *job.raw);
    if (!job.f32 || !job.raw)
        st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory for a %lld-row chunk", o->name, (long long)chunk_rows);
    for (size_t k = 0; k < n_out && st == TS_OK; k++)
        if (!(job.outs[k].out = malloc((size_t)(job.outs[k].row_bytes * (uint64_t)(chunk_rows ? chunk_rows : 1)))))
            st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory for a %lld-row chunk", o->name, (long long)chunk_rows);
    for (int t = 0; t < n_threads && st == TS_OK; t++) {
        job.f32[t] = malloc((size_t)row_len * sizeof(float));
        job.raw[t] = malloc((size_t)row_len * 8);
        if (!job.f32[t] || !job.raw[t])
            st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", o->name);
    }
    int64_t released = 0;
    for (int64_t r0 = 0; r0 < n_rows && st == TS_OK; r0 += chunk_rows) {
        int64_t n = n_rows - r0 < chunk_rows ? n_rows - r0 : chunk_rows;
        job.row0 = r0;
        st = ts_parallel_for(n_threads, n, convert_row, &job);
        if (st != TS_OK) {
            ts_fail(err, st, "%s: conversion failed", o->name);
            break;
        }
        release_read_rows(o, ckpt, &job, &released, r0 + n);
        for (size_t k = 0; k < n_out && st == TS_OK; k++) {
            st = ts_gguf_out_write(tg[k].out, job.outs[k].out, job.outs[k].row_bytes * (uint64_t)n, err);
            ss->done_bytes += job.outs[k].row_bytes * (uint64_t)n;
        }
        ts_progress_update(&ss->progress, ss->done_bytes);
    }
    free_job(&job, n_threads);
    for (size_t e = 0; e < o->n_src && o->src; e++)
        if (o->src[e])
            ts_checkpoint_release(ckpt, o->src[e]);
    ts_fp8_release(o, ckpt);
    ts_checkpoint_release_all(ckpt);
    return st;
}

/* ---- driver ---- */

static ts_dtype parse_outtype(const char *s, bool *ok)
{
    *ok = true;
    if (!s || !strcmp(s, "auto"))
        return TS_DTYPE_INVALID;
    if (!strcmp(s, "f32")) return TS_F32;
    if (!strcmp(s, "f16")) return TS_F16;
    if (!strcmp(s, "bf16")) return TS_BF16;
    if (!strcmp(s, "q8_0")) return TS_Q8_0;
    *ok = false;
    return TS_DTYPE_INVALID;
}

/* llama_ftype values (llama.h): ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32. */
static uint32_t file_type_of(const ts_plan *plan, ts_dtype target, const char **name)
{
    ts_dtype t = target;
    if (t == TS_DTYPE_INVALID) { /* auto: the type of the largest 2-D tensors */
        uint64_t by_type[3] = {0, 0, 0};
        for (size_t i = 0; i < plan->n; i++) {
            if (plan->t[i].n_dims < 2)
                continue;
            uint64_t n = (uint64_t)plan->t[i].ne[0] * (uint64_t)plan->t[i].ne[1] * (uint64_t)plan->t[i].ne[2];
            by_type[plan->t[i].type == TS_F32 ? 0 : plan->t[i].type == TS_F16 ? 1 : 2] += n;
        }
        t = by_type[2] >= by_type[1] && by_type[2] >= by_type[0] ? TS_BF16 : by_type[1] >= by_type[0] ? TS_F16 : TS_F32;
    }
    /* Experts kept in MXFP4 (gpt-oss): llama.cpp's converter then says MOSTLY_MXFP4_MOE (38) unless a
     * quantized --outtype was asked for. */
    for (size_t i = 0; i < plan->n && t != TS_Q8_0; i++)
        if (plan->t[i].type == TS_MXFP4) {
            *name = "mxfp4_moe";
            return 38;
        }
    switch (t) {
    case TS_F32: *name = "f32"; return 0;
    case TS_F16: *name = "f16"; return 1;
    case TS_Q8_0: *name = "q8_0"; return 7;
    default: *name = "bf16"; return 32;
    }
}

static char *model_dir_of(const char *input)
{
    struct stat st;
    if (stat(input, &st) == 0 && S_ISDIR(st.st_mode))
        return strdup(input);
    char *copy = strdup(input);
    if (!copy)
        return NULL;
    char *d = strdup(dirname(copy));
    free(copy);
    return d;
}

static char *base_name_of(const char *dir)
{
    char *copy = strdup(dir);
    if (!copy)
        return NULL;
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = 0;
    char *b = strdup(basename(copy));
    free(copy);
    return b;
}

static bool valid_arch_name(const char *s)
{
    if (!s || !*s || strlen(s) > 48)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
            return false;
    return true;
}

static ts_status pick_arch(const ts_hf_files *hf, const ts_convert_opts *o, const ts_arch **arch, const char **gguf_arch,
                           ts_err *err)
{
    *arch = NULL;
    *gguf_arch = NULL;
    if (hf->config.root) {
        json_t *archs = json_object_get(hf->config.root, "architectures");
        json_t *a0 = json_is_array(archs) ? json_array_get(archs, 0) : NULL;
        if (!a0 || !json_is_string(a0)) {
            if (!o->vocab_only || !o->arch)
                return ts_fail(err, TS_ERR_FORMAT, "%s: architectures: expected a list with the model class name",
                               hf->config.path);
        } else {
            *arch = ts_arch_find(json_string_value(a0));
            if (!*arch && !(o->vocab_only && o->arch))
                return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: architecture %s is not supported (supported: %s)",
                               hf->config.path, json_string_value(a0), ts_arch_list());
            if (*arch)
                *gguf_arch = (*arch)->gguf_arch;
        }
    }
    if (o->vocab_only && o->arch) {
        const ts_arch *by_hf = ts_arch_find(o->arch);
        *gguf_arch = by_hf ? by_hf->gguf_arch : o->arch;
        if (!valid_arch_name(*gguf_arch))
            return ts_fail(err, TS_ERR_ARG, "--arch %s: expected a GGUF architecture name such as llama, qwen3", o->arch);
    }
    if (!*gguf_arch)
        return ts_fail(err, TS_ERR_ARG, "%s: no config.json; --vocab-only needs --arch to name the architecture",
                       hf->dir);
    return TS_OK;
}

/* Hands the plan to a plan hook and takes back its types and imatrix
 * weights into types / imatrix (one per planned tensor). */
static ts_status run_plan_hook(const ts_convert_opts *o, ts_convert_plan_fn fn, void *ctx, const ts_conv *conv,
                               const char *gguf_arch, const ts_plan *plan, ts_gguf_writer *w, ts_dtype *types,
                               const float **imatrix, ts_err *err)
{
    ts_convert_tensor *ts = calloc(plan->n ? plan->n : 1, sizeof *ts);
    if (!ts)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < plan->n; i++) {
        const ts_out_tensor *t = &plan->t[i];
        ts[i] = (ts_convert_tensor){.name = t->name, .n_dims = t->n_dims, .type = t->type};
        memcpy(ts[i].ne, t->ne, sizeof ts[i].ne);
    }
    const ts_hparams *hp = &conv->hp;
    ts_convert_model m = {gguf_arch, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_expert};
    ts_status st = fn(ctx, &m, ts, plan->n, w, err);
    for (size_t i = 0; i < plan->n && st == TS_OK; i++) {
        const ts_out_tensor *t = &plan->t[i];
        uint64_t row;
        bool plain = ts[i].type == TS_F32 || ts[i].type == TS_F16 || ts[i].type == TS_BF16 || ts[i].type == TS_Q8_0;
        if (ts[i].type != t->type && (t->n_dims < 2 || t->gen))
            st = ts_fail(err, TS_ERR_INTERNAL, "%s: only 2-D and 3-D weights may change type", t->name);
        else if (!ts_dtype_row_bytes(ts[i].type, (uint64_t)t->ne[0], &row))
            st = ts_fail(err, TS_ERR_ARG, "%s: rows of %lld do not fit type %s", t->name, (long long)t->ne[0],
                         ts_dtype_name(ts[i].type));
        else if (!o->dry_run && !plain && !ts_quant_type_get(ts[i].type) &&
                 !(t->custom && ts[i].type == t->type)) /* e.g. MXFP4 experts copied as they are */
            st = ts_fail(err, TS_ERR_UNSUPPORTED, "%s: type %s not implemented", t->name, ts_dtype_name(ts[i].type));
        types[i] = ts[i].type;
        imatrix[i] = ts[i].imatrix;
    }
    free(ts);
    return st;
}

typedef struct {
    ts_hf_files hf;
    ts_checkpoint *ckpt;
    ts_gguf_writer *w;
    ts_conv conv;
    ts_plan plan;
    char *dir;
    char *name;
    conv_target *tg;  /* the outputs: one, or opts->n_outputs */
    size_t n_tg;
} convert_state;

static void state_free(convert_state *s)
{
    for (size_t k = 0; s->tg && k < s->n_tg; k++) {
        ts_gguf_out_free(s->tg[k].out);
        if (s->tg[k].w != s->w)
            ts_gguf_writer_free(s->tg[k].w);
        free(s->tg[k].types);
        free(s->tg[k].imatrix);
    }
    free(s->tg);
    ts_plan_free(&s->plan);
    for (size_t i = 0; i < s->conv.n_gen; i++)
        free(s->conv.gen[i].data);
    ts_gguf_writer_free(s->w); /* removes the temp file unless finished */
    ts_checkpoint_close(s->ckpt);
    ts_hf_files_free(&s->hf);
    free(s->dir);
    free(s->name);
}

static ts_status add_general(convert_state *s, const ts_convert_opts *o, const char *gguf_arch)
{
    ts_gguf_set_str(s->w, "general.architecture", gguf_arch);
    ts_gguf_set_str(s->w, "general.type", "model");
    ts_gguf_set_str(s->w, "general.name", o->name ? o->name : s->name);
    return TS_OK;
}

/* The outputs: the run's own writer alone, or (fan-out) one writer per
 * opts->outputs[k] holding a copy of the metadata so far; then each plan
 * hook on its writer, with its own copy of the planned types. */
static ts_status setup_targets(convert_state *s, const ts_convert_opts *o, const char *gguf_arch, ts_err *err)
{
    if (o->n_outputs && o->vocab_only)
        return ts_fail(err, TS_ERR_ARG, "a vocab-only conversion has one output");
    s->n_tg = o->n_outputs ? o->n_outputs : 1;
    if (!(s->tg = calloc(s->n_tg, sizeof *s->tg)))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_status st = TS_OK;
    size_t n = s->plan.n ? s->plan.n : 1;
    for (size_t k = 0; k < s->n_tg && st == TS_OK; k++) {
        conv_target *tg = &s->tg[k];
        if (!(tg->types = calloc(n, sizeof *tg->types)) || !(tg->imatrix = calloc(n, sizeof *tg->imatrix)))
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < s->plan.n; i++)
            tg->types[i] = s->plan.t[i].type;
        if (!o->n_outputs) {
            tg->w = s->w;
        } else if ((st = ts_gguf_writer_new(&tg->w, err)) == TS_OK) {
            ts_gguf_writer_enable_checksums(tg->w, true);
            if (ts_gguf_writer_copy_kvs(tg->w, s->w) != TS_OK)
                st = ts_fail(err, TS_ERR_NOMEM, "out of memory copying metadata");
        }
        ts_convert_plan_fn fn = o->n_outputs ? o->outputs[k].plan_fn : o->plan_fn;
        void *ctx = o->n_outputs ? o->outputs[k].plan_ctx : o->plan_ctx;
        if (st == TS_OK && fn && !o->vocab_only)
            st = run_plan_hook(o, fn, ctx, &s->conv, gguf_arch, &s->plan, tg->w, tg->types, tg->imatrix, err);
    }
    if (st == TS_OK && !o->n_outputs) /* the plan shows what is written (--verbose) */
        for (size_t i = 0; i < s->plan.n; i++)
            s->plan.t[i].type = s->tg[0].types[i];
    return st;
}

/* Tokenizer metadata after the hooks' keys, as in a single conversion. */
static ts_status convert_tokenizer(convert_state *s, const ts_convert_opts *o, int64_t vocab_size, ts_err *err)
{
    if (!o->n_outputs)
        return ts_tokenizer_convert(s->dir, vocab_size, s->w, err);
    ts_gguf_writer *tok;
    ts_status st = ts_gguf_writer_new(&tok, err);
    if (st == TS_OK)
        st = ts_tokenizer_convert(s->dir, vocab_size, tok, err);
    for (size_t k = 0; k < s->n_tg && st == TS_OK; k++)
        if (ts_gguf_writer_copy_kvs(s->tg[k].w, tok) != TS_OK)
            st = ts_fail(err, TS_ERR_NOMEM, "out of memory copying the tokenizer");
    ts_gguf_writer_free(tok);
    return st;
}

/* Opens every output, streams every planned tensor into all of them, finishes them. */
static ts_status write_targets(convert_state *s, const ts_convert_opts *o, ts_err *err)
{
    const char *const *inputs = s->ckpt ? ts_checkpoint_files(s->ckpt) : NULL;
    ts_status st = TS_OK;
    uint64_t total = 0;
    for (size_t k = 0; k < s->n_tg && st == TS_OK; k++) {
        const ts_gguf_split_opts none = {0, 0}, *so = o->n_outputs ? &o->outputs[k].split : &none;
        st = ts_gguf_out_open(s->tg[k].w, o->n_outputs ? o->outputs[k].output : o->output, so, inputs, &s->tg[k].out,
                              err);
        for (size_t i = 0; i < s->plan.n; i++)
            total += ts_gguf_writer_tensor_bytes(s->tg[k].w, i);
    }
    if (st != TS_OK)
        return st;
    int n_threads = o->n_threads > 0 ? o->n_threads : ts_cpu_count();
    stream_state ss = {0};
    ts_progress_begin(&ss.progress, o->progress_label ? o->progress_label : "convert", total);
    for (size_t i = 0; i < s->plan.n && st == TS_OK; i++)
        st = stream_tensor(&s->plan.t[i], i, s->tg, s->n_tg, s->ckpt, n_threads, &ss, err);
    ts_progress_end(&ss.progress);
    for (size_t k = 0; k < s->n_tg && st == TS_OK; k++) {
        if ((st = ts_gguf_out_finish(s->tg[k].out, err)) || !o->n_outputs)
            continue;
        ts_convert_output *co = &o->outputs[k];
        co->n_files = ts_gguf_out_n_files(s->tg[k].out);
        co->bytes_out = 0;
        for (size_t f = 0; f < co->n_files; f++) {
            struct stat sb;
            if (stat(ts_gguf_out_path(s->tg[k].out, f), &sb) == 0)
                co->bytes_out += (uint64_t)sb.st_size;
        }
    }
    return st;
}

static ts_status run(convert_state *s, const ts_convert_opts *o, ts_convert_stats *stats, ts_err *err)
{
    bool ok;
    ts_dtype target = parse_outtype(o->outtype, &ok);
    if (!ok)
        return ts_fail(err, TS_ERR_ARG, "--outtype %s: expected auto, f32, f16, bf16 or q8_0", o->outtype);
    s->dir = model_dir_of(o->input);
    s->name = s->dir ? base_name_of(s->dir) : NULL;
    if (!s->dir || !s->name)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    /* Meta/Mistral originals: params.json instead of config.json */
    bool meta = ts_meta_layout(s->dir);
    ts_status st = ts_hf_files_load(s->dir, !o->vocab_only && !meta, &s->hf, err);
    if (st == TS_OK && meta)
        st = ts_meta_load_params(&s->hf, err);
    if (st != TS_OK)
        return st;
    const ts_arch *arch = &ts_arch_llama_meta;
    const char *gguf_arch = ts_arch_llama_meta.gguf_arch;
    if (!meta && (st = pick_arch(&s->hf, o, &arch, &gguf_arch, err)))
        return st;
    snprintf(stats->arch, sizeof stats->arch, "%s", gguf_arch);
    if ((st = ts_gguf_writer_new(&s->w, err)))
        return st;
    ts_gguf_writer_enable_checksums(s->w, true); /* verify re-checks them */
    add_general(s, o, gguf_arch);
    int64_t vocab_size = 0;
    const char *ft_name = "f32";
    uint32_t ftype = 0;
    if (!o->vocab_only) {
        s->conv = (ts_conv){.arch = arch, .hf = &s->hf, .w = s->w};
        /* Meta's hparams partly come from tensor shapes, so its checkpoint opens first */
        if (meta && ((st = ts_checkpoint_open(o->input, &s->ckpt, err)) ||
                     (st = ts_meta_read_hparams(&s->conv, s->ckpt, err))))
            return st;
        if ((!meta && (st = ts_conv_read_hparams(&s->conv, err))) || (st = ts_conv_write_common_params(&s->conv, err)) ||
            (st = arch->set_params(&s->conv, err)))
            return st;
        vocab_size = s->conv.hp.n_vocab;
        if (!s->ckpt && (st = ts_checkpoint_open(o->input, &s->ckpt, err)))
            return st;
        if ((st = ts_plan_build(&s->conv, s->ckpt, target, &s->plan, err)))
            return st;
        ftype = file_type_of(&s->plan, target, &ft_name);
        ts_gguf_set_u32(s->w, "general.file_type", ftype);
        ts_gguf_set_u32(s->w, "general.quantization_version", 2);
    }
    snprintf(stats->file_type, sizeof stats->file_type, "%s", o->vocab_only ? "vocab" : ft_name);
    if ((st = setup_targets(s, o, gguf_arch, err)) || (st = convert_tokenizer(s, o, vocab_size, err)))
        return st;
#ifdef __GLIBC__
    /* Parsing a 150k-token tokenizer.json leaves tens of MB of freed heap
     * resident; hand it back before streaming so peak RSS is the larger of
     * the two phases, not their sum. */
    malloc_trim(0);
#endif
    for (size_t i = 0; i < s->plan.n; i++) {
        const ts_out_tensor *t = &s->plan.t[i];
        for (size_t k = 0; k < s->n_tg; k++)
            if ((st = ts_gguf_add_tensor(s->tg[k].w, t->name, s->tg[k].types[i], t->n_dims, t->ne, err)))
                return st;
        if (o->verbose) {
            char shape[96];
            fprintf(stderr, "%-40s %-6s %s <- %s%s\n", t->name, ts_dtype_name(t->type),
                    ts_shape_str(t->n_dims, t->ne, shape, sizeof shape),
                    t->gen ? "(generated)" : t->src[0]->name,
                    t->custom ? " (+ assembled by the architecture)" : t->n_src > 1 ? " (+ experts stacked)" : "");
        }
        for (size_t e = 0; e < t->n_src && !t->gen; e++)
            stats->bytes_in += t->src[e]->nbytes;
    }
    stats->n_tensors = s->plan.n;
    if (o->dry_run)
        return TS_OK;
    if ((st = write_targets(s, o, err)))
        return st;
    if (!o->n_outputs) {
        struct stat sb;
        if (stat(o->output, &sb) == 0)
            stats->bytes_out = (uint64_t)sb.st_size;
    }
    return TS_OK;
}

ts_status ts_convert(const ts_convert_opts *opts, ts_convert_stats *stats, ts_err *err)
{
    convert_state s;
    memset(&s, 0, sizeof s);
    memset(stats, 0, sizeof *stats);
    double t0 = ts_now_seconds();
    ts_status st = run(&s, opts, stats, err);
    state_free(&s);
    stats->seconds = ts_now_seconds() - t0;
    return st;
}
