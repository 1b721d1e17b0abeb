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

typedef struct {
    const ts_out_tensor *o;
    int64_t row_len;       /* elements per row */
    int64_t rows_per_src;  /* rows in one source (one expert) */
    int64_t row0;          /* first row of this chunk */
    uint8_t *out;          /* chunk buffer */
    uint64_t out_row_bytes;
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

static ts_status convert_row(void *ctx, int64_t i, int thread)
{
    chunk_job *job = ctx;
    const ts_out_tensor *o = job->o;
    int64_t r = job->row0 + i;
    uint8_t *dst = job->out + (uint64_t)i * job->out_row_bytes;
    float *f = job->f32[thread];
    if (o->gen) {
        f32_to_out(o->type, o->gen->data + r * job->row_len, dst, job->row_len, NULL);
        return TS_OK;
    }
    if (o->custom) {
        if (!o->custom->row(o->custom, o->src_data, r, o->type, dst, f))
            f32_to_out(o->type, f, dst, job->row_len, o->imatrix ? o->imatrix + (r / o->ne[1]) * job->row_len : NULL);
        return TS_OK;
    }
    int64_t e = r / job->rows_per_src, sr = r % job->rows_per_src;
    if (o->xform == TS_XF_PERMUTE_Q || o->xform == TS_XF_PERMUTE_K)
        sr = permuted_row(sr, job->rows_per_src, o->xform_groups);
    if (ts_xform_custom(o)) { /* FP8 block scales, MLA split: convert/xform.c */
        ts_xform_row(o, (size_t)e, sr, job->row_len, f, job->raw[thread]);
        f32_to_out(o->type, f, dst, job->row_len, o->imatrix ? o->imatrix + e * job->row_len : NULL);
        return TS_OK;
    }
    const ts_tensor *s = o->src[e];
    uint32_t esize = ts_dtype_get(s->dtype)->block_bytes;
    uint64_t src_row_bytes = (uint64_t)job->row_len * esize;
    const uint8_t *src = (const uint8_t *)o->src_data[e] + (uint64_t)sr * src_row_bytes;
    if (s->dtype == o->type) {
        memcpy(dst, src, src_row_bytes);
        return TS_OK;
    }
    if ((uintptr_t)src % esize != 0) { /* safetensors does not promise aligned data */
        memcpy(job->raw[thread], src, src_row_bytes);
        src = job->raw[thread];
    }
    src_to_f32(s->dtype, src, f, job->row_len);
    f32_to_out(o->type, f, dst, job->row_len, o->imatrix ? o->imatrix + e * job->row_len : NULL);
    return TS_OK;
}

typedef struct {
    ts_progress progress;
    uint64_t done_bytes;
} stream_state;

static ts_status stream_tensor(ts_out_tensor *o, ts_gguf_writer *w, const ts_checkpoint *ckpt, int n_threads,
                               stream_state *ss, ts_err *err)
{
    int64_t row_len, n_rows;
    if (o->n_dims == 1 && o->xform != TS_XF_NONE) { /* a permuted bias: every element is a row */
        row_len = 1;
        n_rows = o->ne[0];
    } else {
        row_len = o->ne[0];
        n_rows = o->ne[1] * o->ne[2] * o->ne[3];
    }
    uint64_t out_row_bytes;
    if (!ts_dtype_row_bytes(o->type, (uint64_t)row_len, &out_row_bytes))
        return ts_fail(err, TS_ERR_INTERNAL, "%s: row of %lld elements does not fit type %s", o->name,
                       (long long)row_len, ts_dtype_name(o->type));
    int64_t chunk_rows = (int64_t)(CHUNK_TARGET_BYTES / (out_row_bytes ? out_row_bytes : 1));
    if (chunk_rows < 1)
        chunk_rows = 1;
    if (chunk_rows > n_rows)
        chunk_rows = n_rows;
    for (size_t e = 0; e < o->n_src && o->src; e++) {
        ts_status ds = ts_checkpoint_data(ckpt, o->src[e], &o->src_data[e], err);
        if (ds != TS_OK) {
            for (size_t k = 0; k < e; k++)
                ts_checkpoint_release(ckpt, o->src[k]);
            return ds;
        }
    }
    chunk_job job = {.o = o, .row_len = row_len, .rows_per_src = n_rows / (int64_t)o->n_src,
                     .out_row_bytes = out_row_bytes};
    ts_status st = ts_fp8_acquire(o, ckpt, err);
    job.out = malloc((size_t)(out_row_bytes * (uint64_t)(chunk_rows ? chunk_rows : 1)));
    job.f32 = calloc((size_t)n_threads, sizeof *job.f32);
    job.raw = calloc((size_t)n_threads, sizeof *job.raw);
    if (!job.out || !job.f32 || !job.raw)
        st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory for a %lld-row chunk", o->name, (long long)chunk_rows);
    for (int t = 0; t < n_threads && st == TS_OK; t++) {
        job.f32[t] = malloc((size_t)row_len * sizeof(float));
        job.raw[t] = malloc((size_t)row_len * 8);
        if (!job.f32[t] || !job.raw[t])
            st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", o->name);
    }
    for (int64_t r0 = 0; r0 < n_rows && st == TS_OK; r0 += chunk_rows) {
        int64_t n = n_rows - r0 < chunk_rows ? n_rows - r0 : chunk_rows;
        job.row0 = r0;
        st = ts_parallel_for(n_threads, n, convert_row, &job);
        if (st != TS_OK) {
            ts_fail(err, st, "%s: conversion failed", o->name);
            break;
        }
        st = ts_gguf_write_tensor_data(w, job.out, out_row_bytes * (uint64_t)n, err);
        ss->done_bytes += out_row_bytes * (uint64_t)n;
        ts_progress_update(&ss->progress, ss->done_bytes);
    }
    for (int t = 0; t < n_threads && job.f32; t++) {
        free(job.f32[t]);
        if (job.raw)
            free(job.raw[t]);
    }
    free(job.f32);
    free(job.raw);
    free(job.out);
    for (size_t e = 0; e < o->n_src && o->src; e++)
        if (o->src[e])
            ts_checkpoint_release(ckpt, o->src[e]);
    ts_fp8_release(o, ckpt);
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

/* Hands the plan to opts->plan_fn and takes back its types and imatrix weights. */
static ts_status run_plan_hook(const ts_convert_opts *o, const ts_conv *conv, const char *gguf_arch, ts_plan *plan,
                               ts_gguf_writer *w, ts_err *err)
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
    ts_status st = o->plan_fn(o->plan_ctx, &m, ts, plan->n, w, err);
    for (size_t i = 0; i < plan->n && st == TS_OK; i++) {
        ts_out_tensor *t = &plan->t[i];
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
        t->type = ts[i].type;
        t->imatrix = ts[i].imatrix;
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
} convert_state;

static void state_free(convert_state *s)
{
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
        if (o->plan_fn && (st = run_plan_hook(o, &s->conv, gguf_arch, &s->plan, s->w, err)))
            return st;
    }
    snprintf(stats->file_type, sizeof stats->file_type, "%s", o->vocab_only ? "vocab" : ft_name);
    if ((st = ts_tokenizer_convert(s->dir, vocab_size, s->w, err)))
        return st;
#ifdef __GLIBC__
    /* Parsing a 150k-token tokenizer.json leaves tens of MB of freed heap
     * resident; hand it back before streaming so peak RSS is the larger of
     * the two phases, not their sum. */
    malloc_trim(0);
#endif
    for (size_t i = 0; i < s->plan.n; i++) {
        const ts_out_tensor *t = &s->plan.t[i];
        if ((st = ts_gguf_add_tensor(s->w, t->name, t->type, t->n_dims, t->ne, err)))
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
    const char *const *inputs = s->ckpt ? ts_checkpoint_files(s->ckpt) : NULL;
    if ((st = ts_gguf_writer_begin(s->w, o->output, inputs, err)))
        return st;
    int n_threads = o->n_threads > 0 ? o->n_threads : ts_cpu_count();
    stream_state ss = {0};
    uint64_t total = 0;
    for (size_t i = 0; i < s->plan.n; i++)
        total += ts_gguf_writer_tensor_bytes(s->w, i);
    ts_progress_begin(&ss.progress, o->progress_label ? o->progress_label : "convert", total);
    for (size_t i = 0; i < s->plan.n && st == TS_OK; i++)
        st = stream_tensor(&s->plan.t[i], s->w, s->ckpt, n_threads, &ss, err);
    ts_progress_end(&ss.progress);
    if (st == TS_OK)
        st = ts_gguf_writer_finish(s->w, err);
    if (st == TS_OK) {
        struct stat sb;
        if (stat(o->output, &sb) == 0)
            stats->bytes_out = (uint64_t)sb.st_size;
    }
    return st;
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
