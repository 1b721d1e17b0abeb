/* The quantize driver: options -> plan -> metadata -> streamed tensors. A GGUF
 * input is read here; a checkpoint goes through convert with a plan hook, so
 * it is converted and quantized in the same pass. */
#include "quantize.h"
#include "quant.h"
#include "convert/convert.h"
#include "core/progress.h"
#include "core/threads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Everything ts_quantize parsed from its options. */
typedef struct {
    const ts_quantize_opts *o;
    ts_qplan_opts plan_opts;
    ts_qoverrides *overrides;
    ts_imatrix *imatrix;
    bool owns_imatrix;   /* false: an earlier output of the same run loaded it */
    ts_quantize_result *res;
} qctx;

/* earlier: the outputs parsed before this one, whose imatrix it may share. */
static ts_status parse_opts(qctx *q, const qctx *earlier, size_t n_earlier, ts_err *err)
{
    const ts_quantize_opts *o = q->o;
    ts_qplan_opts *po = &q->plan_opts;
    po->output_tensor_type = po->token_embedding_type = TS_DTYPE_INVALID;
    const ts_ftype_info *f = o->ftype ? ts_ftype_find(o->ftype) : NULL;
    if (!f) {
        char list[512] = "";
        for (size_t i = 0; ts_ftype_at(i); i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", ts_ftype_at(i)->name);
        return ts_fail(err, TS_ERR_ARG, "file type %s: expected one of %s", o->ftype ? o->ftype : "(none)", list);
    }
    q->res->ftype = f;
    po->ftype = f->ftype;
    po->pure = o->pure;
    po->allow_requantize = o->allow_requantize;
    po->dry_run = o->dry_run;
    ts_status st;
    if (o->output_tensor_type &&
        (st = ts_quant_parse_type("--output-tensor-type", o->output_tensor_type, &po->output_tensor_type, err)))
        return st;
    if (o->token_embedding_type &&
        (st = ts_quant_parse_type("--token-embedding-type", o->token_embedding_type, &po->token_embedding_type, err)))
        return st;
    for (size_t i = 0; i < o->n_tensor_types; i++)
        if ((st = ts_qoverrides_add(&q->overrides, o->tensor_types[i], err)))
            return st;
    po->overrides = q->overrides;
    if (o->imatrix) {
        for (size_t i = 0; i < n_earlier && !q->imatrix; i++)
            if (earlier[i].imatrix && !strcmp(earlier[i].o->imatrix, o->imatrix))
                q->imatrix = earlier[i].imatrix;
        if (!q->imatrix) {
            if ((st = ts_imatrix_load(o->imatrix, &q->imatrix, err)))
                return st;
            q->owns_imatrix = true;
        }
        po->imatrix = q->imatrix;
        q->res->imatrix_entries = q->imatrix->n_entries;
    }
    return TS_OK;
}

/* ---- metadata ---- */

static bool stale_key(const char *key)
{
    static const char *const exact[] = {"general.alignment", "general.file_type", "general.quantization_version",
                                        "split.no", "split.count", "split.tensors.count"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (!strcmp(key, exact[i]))
            return true;
    /* a previous quantization's record does not describe this one */
    return !strncmp(key, "tessera.quantize.", 17) || !strncmp(key, "quantize.imatrix.", 17);
}

/* general.file_type and quantization_version as llama-quantize sets them,
 * llama-quantize's quantize.imatrix.* record, and ours. */
static ts_status set_quant_kvs(const qctx *q, ts_gguf_writer *w)
{
    const ts_quantize_opts *o = q->o;
    const ts_qplan_opts *po = &q->plan_opts;
    ts_status st = ts_gguf_set_u32(w, "general.file_type", (uint32_t)po->ftype);
    st = st ? st : ts_gguf_set_u32(w, "general.quantization_version", 2);
    st = st ? st : ts_gguf_set_str(w, "tessera.quantize.ftype", q->res->ftype->name);
    if (po->pure)
        st = st ? st : ts_gguf_set_bool(w, "tessera.quantize.pure", true);
    if (po->output_tensor_type != TS_DTYPE_INVALID)
        st = st ? st : ts_gguf_set_str(w, "tessera.quantize.output_tensor_type", ts_dtype_name(po->output_tensor_type));
    if (po->token_embedding_type != TS_DTYPE_INVALID)
        st = st ? st : ts_gguf_set_str(w, "tessera.quantize.token_embedding_type", ts_dtype_name(po->token_embedding_type));
    size_t n_ov = ts_qoverrides_count(q->overrides);
    if (n_ov) {
        const char **specs = malloc(n_ov * sizeof *specs);
        if (!specs)
            return TS_ERR_NOMEM;
        for (size_t i = 0; i < n_ov; i++)
            specs[i] = ts_qoverrides_spec(q->overrides, i);
        st = st ? st : ts_gguf_set_arr_str(w, "tessera.quantize.tensor_types", specs, n_ov);
        free(specs);
    }
    if (o->allow_requantize)
        st = st ? st : ts_gguf_set_bool(w, "tessera.quantize.allow_requantize", true);
    const ts_imatrix *im = q->imatrix;
    if (im) {
        st = st ? st : ts_gguf_set_str(w, "quantize.imatrix.file", im->path);
        st = st ? st : ts_gguf_set_str(w, "tessera.quantize.imatrix.file", im->path);
        st = st ? st : ts_gguf_set_str(w, "tessera.quantize.imatrix.format", im->legacy ? "dat" : "gguf");
        if (im->n_datasets) {
            st = st ? st : ts_gguf_set_str(w, "quantize.imatrix.dataset", im->datasets[0]);
            st = st ? st : ts_gguf_set_arr_str(w, "tessera.quantize.imatrix.datasets",
                                               (const char *const *)im->datasets, im->n_datasets);
        }
        st = st ? st : ts_gguf_set_u32(w, "quantize.imatrix.entries_count", (uint32_t)im->n_entries);
        st = st ? st : ts_gguf_set_u32(w, "tessera.quantize.imatrix.entries_count", (uint32_t)im->n_entries);
        if (im->chunk_count > 0) {
            st = st ? st : ts_gguf_set_u32(w, "quantize.imatrix.chunks_count", (uint32_t)im->chunk_count);
            st = st ? st : ts_gguf_set_u32(w, "tessera.quantize.imatrix.chunks_count", (uint32_t)im->chunk_count);
        }
        if (im->chunk_size > 0)
            st = st ? st : ts_gguf_set_u32(w, "tessera.quantize.imatrix.chunk_size", (uint32_t)im->chunk_size);
    }
    return st;
}

/* ---- GGUF input ---- */

/* An integer key, or the first element of an integer array (per-layer values). */
static bool get_int(const ts_gguf *g, const char *key, int64_t *out)
{
    if (ts_gguf_get_i64(g, key, out))
        return true;
    const ts_gguf_kv *kv = ts_gguf_find_kv(g, key);
    if (!kv || kv->value.type != TS_GGUF_ARRAY || kv->value.arr.n == 0)
        return false;
    const void *d = kv->value.arr.data;
    switch (kv->value.arr.elem_type) {
    case TS_GGUF_UINT32: *out = ((const uint32_t *)d)[0]; return true;
    case TS_GGUF_INT32: *out = ((const int32_t *)d)[0]; return true;
    case TS_GGUF_UINT64: *out = (int64_t)((const uint64_t *)d)[0]; return true;
    case TS_GGUF_INT64: *out = ((const int64_t *)d)[0]; return true;
    case TS_GGUF_UINT16: *out = ((const uint16_t *)d)[0]; return true;
    case TS_GGUF_UINT8: *out = ((const uint8_t *)d)[0]; return true;
    default: return false;
    }
}

static ts_status read_model(const ts_gguf *g, const char *path, ts_qmodel *m, ts_err *err)
{
    memset(m, 0, sizeof *m);
    const char *arch = ts_gguf_get_str(g, "general.architecture");
    if (!arch || !*arch || strlen(arch) >= sizeof m->arch)
        return ts_fail(err, TS_ERR_FORMAT, "%s: no general.architecture; expected a model GGUF", path);
    snprintf(m->arch, sizeof m->arch, "%s", arch);
    char key[128];
    snprintf(key, sizeof key, "%s.block_count", arch);
    if (!get_int(g, key, &m->n_layer) || m->n_layer < 1 || m->n_layer > 100000)
        return ts_fail(err, TS_ERR_FORMAT, "%s: %s missing or out of range (expected the layer count)", path, key);
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    if (!get_int(g, key, &m->n_head))
        m->n_head = 0;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    if (!get_int(g, key, &m->n_head_kv))
        m->n_head_kv = m->n_head;
    snprintf(key, sizeof key, "%s.expert_count", arch);
    if (!get_int(g, key, &m->n_expert))
        m->n_expert = 0;
    snprintf(key, sizeof key, "%s.nextn_predict_layers", arch);
    if (!get_int(g, key, &m->n_layer_nextn))
        m->n_layer_nextn = 0;
    return TS_OK;
}

static ts_status check_kernels(const ts_qplan *plan, ts_err *err)
{
    for (size_t i = 0; i < plan->n; i++) {
        const ts_qplan_tensor *t = &plan->t[i];
        if (t->type == t->src_type)
            continue;
        if (!ts_quant_type_get(t->type))
            return ts_fail(err, TS_ERR_UNSUPPORTED, "tensor %s: type %s not implemented", t->name, ts_dtype_name(t->type));
        bool plain = t->src_type == TS_F32 || t->src_type == TS_F16 || t->src_type == TS_BF16;
        if (!plain && !ts_quant_type_get(t->src_type))
            return ts_fail(err, TS_ERR_UNSUPPORTED, "tensor %s: dequantizing type %s not implemented", t->name,
                           ts_dtype_name(t->src_type));
    }
    return TS_OK;
}

/* The output's key/values (the input's, less stale ones, then ours) and tensor table. */
static ts_status set_header(qctx *q, const ts_gguf *g, ts_gguf_writer *w, ts_err *err)
{
    const ts_qplan *plan = &q->res->plan;
    ts_status st = TS_OK;
    for (uint64_t i = 0; i < g->n_kv && st == TS_OK; i++)
        if (!stale_key(g->kv[i].key))
            st = ts_gguf_set_value(w, g->kv[i].key, &g->kv[i].value);
    if (st == TS_OK && g->alignment != TS_GGUF_DEFAULT_ALIGNMENT)
        st = ts_gguf_set_alignment(w, (uint32_t)g->alignment);
    if (st == TS_OK)
        st = set_quant_kvs(q, w);
    if (st != TS_OK)
        return ts_fail(err, st, "%s: cannot record metadata", q->o->output);
    for (size_t i = 0; i < plan->n && st == TS_OK; i++)
        st = ts_gguf_add_tensor(w, plan->t[i].name, plan->t[i].type, plan->t[i].n_dims, plan->t[i].ne, err);
    return st;
}

/* Sizes of the files an output wrote. */
static void record_files(const ts_gguf_out *out, ts_quantize_result *res)
{
    res->n_files = ts_gguf_out_n_files(out);
    res->file_bytes = 0;
    for (size_t f = 0; f < res->n_files; f++) {
        struct stat sb;
        if (stat(ts_gguf_out_path(out, f), &sb) == 0)
            res->file_bytes += (uint64_t)sb.st_size;
    }
}

static ts_status write_outputs(qctx *qs, size_t n, const ts_gguf *g, ts_err *err)
{
    ts_gguf_writer **ws = calloc(n, sizeof *ws);
    ts_gguf_out **outs = calloc(n, sizeof *outs);
    const ts_qplan **plans = calloc(n, sizeof *plans);
    ts_status st = ws && outs && plans ? TS_OK : ts_fail(err, TS_ERR_NOMEM, "out of memory");
    const char *const inputs[] = {qs[0].o->input, NULL}; /* outlives outs: parts begin late */
    for (size_t k = 0; k < n && st == TS_OK; k++) {
        const ts_quantize_opts *o = qs[k].o;
        plans[k] = &qs[k].res->plan;
        st = ts_gguf_writer_new(&ws[k], err);
        if (st == TS_OK)
            ts_gguf_writer_enable_checksums(ws[k], true); /* verify re-checks them */
        if (st == TS_OK)
            st = set_header(&qs[k], g, ws[k], err);
        ts_gguf_split_opts so = {.max_bytes = o->split_max_bytes, .only_part = o->split_part};
        if (st == TS_OK)
            st = ts_gguf_out_open(ws[k], o->output, &so, inputs, &outs[k], err);
    }
    int n_threads = qs[0].o->n_threads > 0 ? qs[0].o->n_threads : ts_cpu_count();
    if (st == TS_OK)
        st = ts_quantize_stream(g, plans, outs, n, n_threads, err);
    for (size_t k = 0; k < n && st == TS_OK; k++) {
        st = ts_gguf_out_finish(outs[k], err);
        if (st == TS_OK)
            record_files(outs[k], qs[k].res);
    }
    for (size_t k = 0; outs && k < n; k++)
        ts_gguf_out_free(outs[k]);
    for (size_t k = 0; ws && k < n; k++)
        ts_gguf_writer_free(ws[k]); /* removes the temp file unless finished */
    free(ws);
    free(outs);
    free(plans);
    return st;
}

static ts_status quantize_gguf(qctx *qs, size_t n, ts_err *err)
{
    const ts_quantize_opts *o = qs[0].o;
    ts_gguf *g;
    ts_status st = ts_gguf_open(o->input, &g, err);
    if (st != TS_OK)
        return st;
    ts_qmodel m;
    const ts_tensor **tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *tensors);
    if (!tensors)
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (st == TS_OK)
        st = read_model(g, o->input, &m, err);
    for (uint64_t i = 0; st == TS_OK && i < g->n_tensors; i++)
        tensors[i] = &g->tensors[i].t;
    for (size_t k = 0; k < n && st == TS_OK; k++) {
        snprintf(qs[k].res->arch, sizeof qs[k].res->arch, "%s", m.arch);
        st = ts_qplan_build(&m, tensors, (size_t)g->n_tensors, &qs[k].plan_opts, &qs[k].res->plan, err);
        if (st == TS_OK && !o->dry_run)
            st = check_kernels(&qs[k].res->plan, err);
    }
    free(tensors);
    if (st == TS_OK && !o->dry_run)
        st = write_outputs(qs, n, g, err);
    ts_gguf_close(g);
    return st;
}

/* ---- checkpoint input: convert with a plan hook ---- */

static ts_status plan_hook(void *ctx, const ts_convert_model *cm, ts_convert_tensor *ct, size_t n, ts_gguf_writer *w,
                           ts_err *err)
{
    qctx *q = ctx;
    ts_qmodel m = {.n_layer = cm->n_layer, .n_head = cm->n_head, .n_head_kv = cm->n_head_kv, .n_expert = cm->n_expert};
    snprintf(m.arch, sizeof m.arch, "%s", cm->arch);
    snprintf(q->res->arch, sizeof q->res->arch, "%s", cm->arch);
    ts_tensor *ts = calloc(n ? n : 1, sizeof *ts);
    const ts_tensor **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    ts_status st = ts && ptrs ? TS_OK : ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n && st == TS_OK; i++) {
        /* llama.cpp counts ffn layers out of block_count, which includes NextN / MTP layers
         * (DeepSeek-V3, GLM-4.5) that a config's num_hidden_layers leaves out */
        int layer;
        if (sscanf(ct[i].name, "blk.%d.", &layer) == 1 && layer >= m.n_layer && layer < 100000) {
            m.n_layer_nextn += layer + 1 - m.n_layer;
            m.n_layer = layer + 1;
        }
        snprintf(ts[i].name, sizeof ts[i].name, "%s", ct[i].name);
        ts[i].dtype = ct[i].type;
        ts[i].n_dims = ct[i].n_dims;
        memcpy(ts[i].ne, ct[i].ne, sizeof ts[i].ne);
        uint64_t row;
        if (ts_dtype_row_bytes(ct[i].type, (uint64_t)ct[i].ne[0], &row))
            ts[i].nbytes = row * (uint64_t)(ct[i].ne[1] * ct[i].ne[2] * ct[i].ne[3]);
        ptrs[i] = &ts[i];
    }
    if (st == TS_OK)
        st = ts_qplan_build(&m, ptrs, n, &q->plan_opts, &q->res->plan, err);
    if (st == TS_OK && !q->o->dry_run)
        st = check_kernels(&q->res->plan, err);
    for (size_t i = 0; i < n && st == TS_OK; i++) {
        ct[i].type = q->res->plan.t[i].type;
        ct[i].imatrix = q->res->plan.t[i].imatrix;
    }
    if (st == TS_OK && set_quant_kvs(q, w) != TS_OK)
        st = ts_fail(err, TS_ERR_NOMEM, "cannot record the quantization metadata");
    free(ts);
    free(ptrs);
    return st;
}

static ts_status quantize_checkpoint(qctx *qs, size_t n, ts_err *err)
{
    const ts_quantize_opts *o = qs[0].o;
    ts_convert_opts co = {.input = o->input, .output = o->output, .outtype = "auto", .n_threads = o->n_threads,
                          .dry_run = o->dry_run, .plan_fn = plan_hook, .plan_ctx = &qs[0], .progress_label = "quantize"};
    ts_convert_output *outs = NULL;
    if (n > 1 || o->split_max_bytes) { /* several outputs, or parts: convert's fan-out */
        if (!(outs = calloc(n, sizeof *outs)))
            return ts_fail(err, TS_ERR_NOMEM, "out of memory");
        for (size_t k = 0; k < n; k++)
            outs[k] = (ts_convert_output){.output = qs[k].o->output, .plan_fn = plan_hook, .plan_ctx = &qs[k],
                                          .split = {qs[k].o->split_max_bytes, qs[k].o->split_part}};
        co.output = NULL;
        co.plan_fn = NULL;
        co.outputs = outs;
        co.n_outputs = n;
    }
    ts_convert_stats stats;
    for (size_t k = 0; k < n; k++)
        qs[k].res->from_checkpoint = true;
    ts_status st = ts_convert(&co, &stats, err);
    for (size_t k = 0; k < n && st == TS_OK && !o->dry_run; k++) {
        qs[k].res->file_bytes = outs ? outs[k].bytes_out : stats.bytes_out;
        qs[k].res->n_files = outs ? outs[k].n_files : 1;
    }
    free(outs);
    return st;
}

static bool is_gguf_file(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return false;
    FILE *fp = fopen(path, "rb");
    char magic[4] = {0};
    size_t got = fp ? fread(magic, 1, 4, fp) : 0;
    if (fp)
        fclose(fp);
    return got == 4 && !memcmp(magic, "GGUF", 4);
}

/* What the outputs of one run must share. */
static ts_status check_outputs(const ts_quantize_opts *opts, size_t n, ts_err *err)
{
    if (n == 0)
        return ts_fail(err, TS_ERR_ARG, "no output asked for");
    for (size_t k = 0; k < n; k++) {
        const ts_quantize_opts *o = &opts[k];
        if (!o->dry_run && !o->output)
            return ts_fail(err, TS_ERR_ARG, "no output file given");
        if (k == 0)
            continue;
        if (!o->input || !opts[0].input || strcmp(o->input, opts[0].input) || o->dry_run != opts[0].dry_run)
            return ts_fail(err, TS_ERR_ARG, "outputs of one pass must share the input and dry_run");
        for (size_t j = 0; j < k && !o->dry_run; j++)
            if (!strcmp(o->output, opts[j].output))
                return ts_fail(err, TS_ERR_ARG, "%s: named as the output twice", o->output);
    }
    return TS_OK;
}

ts_status ts_quantize_multi(const ts_quantize_opts *opts, size_t n, ts_quantize_result *res, ts_err *err)
{
    double t0 = ts_now_seconds();
    for (size_t k = 0; k < n; k++)
        memset(&res[k], 0, sizeof res[k]);
    qctx *qs = calloc(n ? n : 1, sizeof *qs);
    if (!qs)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_status st = TS_OK;
    for (size_t k = 0; k < n && st == TS_OK; k++) {
        qs[k] = (qctx){.o = &opts[k], .res = &res[k]};
        st = parse_opts(&qs[k], qs, k, err);
    }
    if (st == TS_OK)
        st = check_outputs(opts, n, err);
    if (st == TS_OK)
        st = is_gguf_file(opts[0].input) ? quantize_gguf(qs, n, err) : quantize_checkpoint(qs, n, err);
    for (size_t k = 0; k < n; k++) {
        ts_qoverrides_free(qs[k].overrides);
        res[k].imatrix = qs[k].owns_imatrix ? qs[k].imatrix : NULL; /* the plan's imatrix pointers point into it */
        res[k].seconds = ts_now_seconds() - t0;
    }
    free(qs);
    if (st != TS_OK)
        for (size_t k = 0; k < n; k++)
            ts_quantize_result_free(&res[k]);
    return st;
}

ts_status ts_quantize(const ts_quantize_opts *o, ts_quantize_result *res, ts_err *err)
{
    return ts_quantize_multi(o, 1, res, err);
}

void ts_quantize_result_free(ts_quantize_result *res)
{
    ts_qplan_free(&res->plan);
    ts_imatrix_free(res->imatrix);
    res->imatrix = NULL;
}
