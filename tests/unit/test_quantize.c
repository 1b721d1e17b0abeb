/* tessera quantize end to end on small GGUFs built here: types, bytes and
 * metadata of the output, the one-pass checkpoint path against the GGUF path,
 * MoE experts quantized with their own imatrix slice, and bad inputs (a
 * truncated tensor, an unknown tensor type, a regex that does not compile, an
 * imatrix for another model, a quantized input, NaN weights) that must fail
 * with a clear message and leave no file behind. */
#define _GNU_SOURCE
#include "testutil.h"
#include "convert/convert.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "quant/quant.h"
#include "quant/quantize.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EMBD = 64, FF = 96, VOCAB = 100, LAYERS = 2 };

static float value_at(int k, int64_t i) { return sinf((float)(k * 7919 + i) * 0.01f) * (1.0f + (float)(k % 5)); }

typedef struct {
    char name[64];
    ts_dtype type;
    int n_dims;
    int64_t ne[3];
} spec;

/* A GGUF with the tensors in specs (values from value_at) and llama-style keys. */
static char *write_model(const char *file, const char *arch, int64_t n_expert, const spec *s, int n, float poison)
{
    ts_gguf_writer *w;
    ts_err err = {0};
    ck_assert(ts_gguf_writer_new(&w, &err) == TS_OK);
    char key[96];
    ts_gguf_set_str(w, "general.architecture", arch);
    ts_gguf_set_str(w, "test.custom", "kept");
    ts_gguf_set_u32(w, "general.file_type", 1);
    snprintf(key, sizeof key, "%s.block_count", arch);
    ts_gguf_set_u32(w, key, LAYERS);
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    ts_gguf_set_u32(w, key, 4);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    ts_gguf_set_u32(w, key, 2);
    if (n_expert) {
        snprintf(key, sizeof key, "%s.expert_count", arch);
        ts_gguf_set_u32(w, key, (uint32_t)n_expert);
    }
    for (int i = 0; i < n; i++)
        ck_assert_msg(ts_gguf_add_tensor(w, s[i].name, s[i].type, s[i].n_dims, s[i].ne, &err) == TS_OK, "%s", err.msg);
    char *path;
    ck_assert(asprintf(&path, "%s/%s", tu_tmpdir(), file) > 0);
    ck_assert_msg(ts_gguf_writer_begin(w, path, NULL, &err) == TS_OK, "%s", err.msg);
    for (int i = 0; i < n; i++) {
        int64_t nel = s[i].ne[0] * (s[i].n_dims > 1 ? s[i].ne[1] : 1) * (s[i].n_dims > 2 ? s[i].ne[2] : 1);
        float *f = malloc((size_t)nel * sizeof *f);
        for (int64_t k = 0; k < nel; k++)
            f[k] = value_at(i, k);
        if (i == n - 1 && poison != 0)
            f[nel / 2] = poison;
        uint64_t bytes;
        ck_assert(ts_dtype_row_bytes(s[i].type, (uint64_t)nel, &bytes));
        void *buf = malloc(bytes);
        if (s[i].type == TS_F32)
            memcpy(buf, f, bytes);
        else if (s[i].type == TS_F16)
            ts_k_f32_to_f16(f, buf, (size_t)nel);
        else
            ts_quant_type_get(s[i].type)->quantize_rows(f, buf, nel / s[i].ne[0], s[i].ne[0], NULL);
        ck_assert(ts_gguf_write_tensor_data(w, buf, bytes, &err) == TS_OK);
        free(buf);
        free(f);
    }
    ck_assert_msg(ts_gguf_writer_finish(w, &err) == TS_OK, "%s", err.msg);
    ts_gguf_writer_free(w);
    return path;
}

static int llama_specs(spec *s, ts_dtype wt)
{
    int n = 0;
#define S(nm, t, nd, a, b) (s[n] = (spec){"", t, nd, {a, b, 1}}, snprintf(s[n].name, sizeof s[n].name, "%s", nm), n++)
    S("token_embd.weight", wt, 2, EMBD, VOCAB);
    for (int l = 0; l < LAYERS; l++) {
        char nm[64];
#define L(suffix, t, nd, a, b) (snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix), S(nm, t, nd, a, b))
        L("attn_norm.weight", TS_F32, 1, EMBD, 1);
        L("attn_q.weight", wt, 2, EMBD, EMBD);
        L("attn_k.weight", wt, 2, EMBD, 32);
        L("attn_v.weight", wt, 2, EMBD, 32);
        L("attn_output.weight", wt, 2, EMBD, EMBD);
        L("ffn_norm.weight", TS_F32, 1, EMBD, 1);
        L("ffn_gate.weight", wt, 2, EMBD, FF);
        L("ffn_up.weight", wt, 2, EMBD, FF);
        L("ffn_down.weight", wt, 2, FF, EMBD);
#undef L
    }
    S("output_norm.weight", TS_F32, 1, EMBD, 1);
    S("output.weight", wt, 2, EMBD, VOCAB);
#undef S
    return n;
}

static char *out_path(const char *name)
{
    char *p;
    ck_assert(asprintf(&p, "%s/%s", tu_tmpdir(), name) > 0);
    return p;
}

static void assert_nothing_left(const char *path)
{
    ck_assert_msg(!ts_file_exists(path), "%s exists after a failed quantize", path);
    char *dir = strdup(path), *base = strrchr(dir, '/');
    *base++ = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while ((de = readdir(d)))
        ck_assert_msg(strncmp(de->d_name, base, strlen(base)) != 0, "left behind: %s", de->d_name);
    closedir(d);
    free(dir);
}

static ts_status run(const char *in, const char *out, const char *ftype, ts_quantize_result *r, ts_err *err)
{
    ts_quantize_opts o = {.input = in, .output = out, .ftype = ftype, .n_threads = 2};
    return ts_quantize(&o, r, err);
}

START_TEST(q8_0_bytes_and_metadata)
{
    spec s[32];
    int n = llama_specs(s, TS_F16);
    char *in = write_model("m-f16.gguf", "llama", 0, s, n, 0);
    char *out = out_path("m-q8.gguf");
    ts_quantize_result r;
    ts_err err = {0};
    ck_assert_msg(run(in, out, "q8_0", &r, &err) == TS_OK, "%s", err.msg);
    ck_assert_str_eq(r.ftype->name, "Q8_0");
    ck_assert_str_eq(r.arch, "llama");
    ts_gguf *g;
    ck_assert_msg(ts_gguf_open(out, &g, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(g->n_tensors, (uint64_t)n);
    uint64_t v;
    ck_assert(ts_gguf_get_u64(g, "general.file_type", &v) && v == 7);
    ck_assert(ts_gguf_get_u64(g, "general.quantization_version", &v) && v == 2);
    ck_assert(ts_gguf_get_u64(g, "llama.block_count", &v) && v == LAYERS);
    ck_assert_str_eq(ts_gguf_get_str(g, "test.custom"), "kept");
    ck_assert_str_eq(ts_gguf_get_str(g, "tessera.quantize.ftype"), "Q8_0");
    for (int i = 0; i < n; i++) {
        /* same order as the input, 2-D Q8_0, 1-D F32 */
        ck_assert_str_eq(g->tensors[i].t.name, s[i].name);
        ck_assert_int_eq(g->tensors[i].t.dtype, s[i].n_dims == 2 ? TS_Q8_0 : TS_F32);
        ck_assert_uint_eq(g->tensors[i].t.nbytes, r.plan.t[i].bytes);
    }
    /* bytes: the F16 values, widened, through the Q8_0 kernel */
    int k = 2; /* blk.0.attn_q */
    float row[EMBD];
    uint16_t h[EMBD];
    uint8_t q[EMBD / 32 * 34];
    for (int rr = 0; rr < EMBD; rr++) {
        for (int c = 0; c < EMBD; c++)
            row[c] = value_at(k, (int64_t)rr * EMBD + c);
        ts_k_f32_to_f16(row, h, EMBD);
        ts_k_f16_to_f32(h, row, EMBD);
        ts_k_quantize_row_q8_0(row, q, EMBD);
        ck_assert_mem_eq((const uint8_t *)g->tensors[k].t.data + rr * sizeof q, q, sizeof q);
    }
    ts_gguf_close(g);
    ts_quantize_result_free(&r);

    /* a quantized input: refused, then dequantized with allow_requantize */
    char *out2 = out_path("m-f16-again.gguf");
    ck_assert_int_eq(run(out, out2, "F16", &r, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "--allow-requantize"), "%s", err.msg);
    assert_nothing_left(out2);
    ts_quantize_opts o = {.input = out, .output = out2, .ftype = "F16", .allow_requantize = true};
    ck_assert_msg(ts_quantize(&o, &r, &err) == TS_OK, "%s", err.msg);
    ck_assert_int_eq(r.plan.t[2].src_type, TS_Q8_0);
    ck_assert_int_eq(r.plan.t[2].type, TS_F16);
    ts_quantize_result_free(&r);
    free(out2);
    free(out);
    free(in);
}
END_TEST

START_TEST(dry_run_and_missing_kernels)
{
    spec s[32];
    int n = llama_specs(s, TS_F16);
    char *in = write_model("m2-f16.gguf", "llama", 0, s, n, 0);
    char *out = out_path("m2-q4km.gguf");
    ts_quantize_opts o = {.input = in, .ftype = "Q4_K_M", .dry_run = true};
    ts_quantize_result r;
    ts_err err = {0};
    ck_assert_msg(ts_quantize(&o, &r, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(r.plan.n, (uint64_t)n);
    /* 64-wide rows do not fit Q4_K: Q5_0 (and Q6_K -> Q8_0) */
    ck_assert_int_eq(r.plan.t[2].type, TS_Q5_0);
    ck_assert_int_eq(r.plan.t[n - 1].type, TS_Q8_0);
    ck_assert_int_gt(r.plan.n_fallback, 0);
    ts_quantize_result_free(&r);
    /* a real run needs the kernels: Q5_0 and Q8_0 here */
    ts_status st = run(in, out, "Q4_K_M", &r, &err);
    if (ts_quant_type_get(TS_Q5_0)) {
        ck_assert_msg(st == TS_OK, "%s", err.msg);
        ts_quantize_result_free(&r);
    } else {
        ck_assert_int_eq(st, TS_ERR_UNSUPPORTED);
        ck_assert_msg(strstr(err.msg, "q5_0 not implemented"), "%s", err.msg);
        assert_nothing_left(out);
    }
    free(out);
    free(in);
}
END_TEST

START_TEST(bad_inputs)
{
    spec s[32];
    int n = llama_specs(s, TS_F16);
    char *in = write_model("m3-f16.gguf", "llama", 0, s, n, 0);
    char *out = out_path("m3-out.gguf");
    ts_quantize_result r;
    ts_err err = {0};

    /* a tensor cut short */
    ts_mapped_file f;
    ck_assert(ts_map_file(in, &f, &err) == TS_OK);
    char *trunc = tu_write_file("m3-trunc.gguf", f.data, (size_t)f.size - 100);
    ck_assert_int_eq(run(trunc, out, "Q8_0", &r, &err), TS_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "output.weight") && strstr(err.msg, "past the end"), "%s", err.msg);
    assert_nothing_left(out);

    /* a tensor type we do not know: patch blk.0.attn_q's type field */
    uint8_t *copy = malloc(f.size);
    memcpy(copy, f.data, f.size);
    const char *nm = "blk.0.attn_q.weight";
    uint8_t *p = memmem(copy, f.size, nm, strlen(nm));
    ck_assert_ptr_nonnull(p);
    uint32_t bad_type = 77;
    memcpy(p + strlen(nm) + 4 + 2 * 8, &bad_type, 4); /* after n_dims and two ne */
    char *unknown = tu_write_file("m3-unknown.gguf", copy, (size_t)f.size);
    ck_assert_int_eq(run(unknown, out, "Q8_0", &r, &err), TS_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, nm) && strstr(err.msg, "unknown ggml type 77"), "%s", err.msg);
    assert_nothing_left(out);
    free(copy);
    ts_unmap_file(&f);

    /* a regex that does not compile */
    const char *tt[] = {"attn_[=q8_0"};
    ts_quantize_opts o = {.input = in, .output = out, .ftype = "Q8_0", .tensor_types = tt, .n_tensor_types = 1};
    ck_assert_int_eq(ts_quantize(&o, &r, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "attn_[") && strstr(err.msg, "does not compile"), "%s", err.msg);
    assert_nothing_left(out);

    /* an unknown file type, output type, and the input as output */
    ck_assert_int_eq(run(in, out, "Q4_K_X", &r, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "Q4_K_M"), "%s", err.msg);
    o = (ts_quantize_opts){.input = in, .output = out, .ftype = "Q8_0", .output_tensor_type = "q9"};
    ck_assert_int_eq(ts_quantize(&o, &r, &err), TS_ERR_ARG);
    ck_assert_int_ne(run(in, in, "Q8_0", &r, &err), TS_OK);
    ck_assert(ts_file_exists(in));
    assert_nothing_left(out);

    /* NaN weights */
    char *nan_in = write_model("m3-nan.gguf", "llama", 0, s, n, NAN);
    ck_assert_int_eq(run(nan_in, out, "Q8_0", &r, &err), TS_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "output.weight") && strstr(err.msg, "NaN"), "%s", err.msg);
    assert_nothing_left(out);

    /* a GGUF that is not a model */
    spec one = {"x.weight", TS_F32, 2, {32, 2, 1}};
    ts_gguf_writer *w;
    ck_assert(ts_gguf_writer_new(&w, &err) == TS_OK);
    ts_gguf_add_tensor(w, one.name, one.type, 2, one.ne, &err);
    char *nomodel = out_path("m3-nomodel.gguf");
    ck_assert(ts_gguf_writer_begin(w, nomodel, NULL, &err) == TS_OK);
    float zeros[64] = {0};
    ts_gguf_write_tensor_data(w, zeros, sizeof zeros, &err);
    ck_assert(ts_gguf_writer_finish(w, &err) == TS_OK);
    ts_gguf_writer_free(w);
    ck_assert_int_eq(run(nomodel, out, "Q8_0", &r, &err), TS_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "general.architecture"), "%s", err.msg);
    assert_nothing_left(out);

    free(nomodel);
    free(nan_in);
    free(unknown);
    free(trunc);
    free(out);
    free(in);
}
END_TEST

/* An imatrix GGUF with one entry of n_mat experts, sums distinct per expert. */
static char *write_imatrix(const char *file, const char *name, int64_t n_per_row, int64_t n_mat)
{
    ts_gguf_writer *w;
    ts_err err = {0};
    ck_assert(ts_gguf_writer_new(&w, &err) == TS_OK);
    const char *ds[] = {"calib.txt"};
    ts_gguf_set_arr_str(w, "imatrix.datasets", ds, 1);
    ts_gguf_set_u32(w, "imatrix.chunk_count", 7);
    ts_gguf_set_u32(w, "imatrix.chunk_size", 512);
    char nm[TS_MAX_NAME];
    int64_t ne[2] = {n_per_row, n_mat}, ce[2] = {1, n_mat};
    snprintf(nm, sizeof nm, "%s.in_sum2", name);
    ts_gguf_add_tensor(w, nm, TS_F32, 2, ne, &err);
    snprintf(nm, sizeof nm, "%s.counts", name);
    ts_gguf_add_tensor(w, nm, TS_F32, 2, ce, &err);
    char *path = out_path(file);
    ck_assert(ts_gguf_writer_begin(w, path, NULL, &err) == TS_OK);
    float *sums = malloc((size_t)(n_per_row * n_mat) * sizeof *sums), counts[16];
    for (int64_t e = 0; e < n_mat; e++) {
        counts[e] = e == 1 ? 0.0f : 4.0f; /* expert 1 saw no tokens */
        for (int64_t i = 0; i < n_per_row; i++)
            sums[e * n_per_row + i] = (float)((i * (e + 3)) % 17 + 1);
    }
    ts_gguf_write_tensor_data(w, sums, (uint64_t)(n_per_row * n_mat) * 4, &err);
    ts_gguf_write_tensor_data(w, counts, (uint64_t)n_mat * 4, &err);
    ck_assert(ts_gguf_writer_finish(w, &err) == TS_OK);
    ts_gguf_writer_free(w);
    free(sums);
    return path;
}

START_TEST(moe_expert_slices)
{
    enum { NE = 3, ROWS = 4, COLS = 64 };
    spec s[] = {
        {"token_embd.weight", TS_F32, 2, {COLS, 8, 1}},
        {"blk.0.ffn_gate_inp.weight", TS_F32, 2, {COLS, NE, 1}},
        {"blk.0.ffn_down_exps.weight", TS_F32, 3, {COLS, ROWS, NE}},
        {"blk.1.ffn_down_exps.weight", TS_F32, 3, {COLS, ROWS, NE}},
    };
    char *in = write_model("moe-f32.gguf", "qwen3moe", NE, s, 4, 0);
    char *im = write_imatrix("moe-im.gguf", "blk.0.ffn_down_exps.weight", COLS, NE);
    char *out = out_path("moe-q.gguf");
    /* Q4_0 uses the imatrix when its kernel is there; Q8_0 (always there) ignores it */
    const char *qt = ts_quant_type_get(TS_Q4_0) ? "Q4_0" : "Q8_0";
    ts_quantize_opts o = {.input = in, .output = out, .ftype = qt, .pure = true, .imatrix = im, .n_threads = 3};
    ts_quantize_result r;
    ts_err err = {0};
    ck_assert_msg(ts_quantize(&o, &r, &err) == TS_OK, "%s", err.msg);
    ck_assert_int_eq(r.plan.t[1].type, TS_F32); /* the router stays F32 */
    ck_assert_uint_eq(r.plan.n_imatrix_used, 1);
    const ts_imatrix_entry *e = ts_imatrix_find(r.imatrix, "blk.0.ffn_down_exps.weight");
    ck_assert_int_eq(e->n_mat_unseen, 1);
    ts_gguf *g;
    ck_assert_msg(ts_gguf_open(out, &g, &err) == TS_OK, "%s", err.msg);
    ck_assert_str_eq(ts_gguf_get_str(g, "quantize.imatrix.file"), im);
    ck_assert_str_eq(ts_gguf_get_str(g, "quantize.imatrix.dataset"), "calib.txt");
    uint64_t v;
    ck_assert(ts_gguf_get_u64(g, "quantize.imatrix.chunks_count", &v) && v == 7);
    const ts_quant_type *q = ts_quant_type_get(g->tensors[2].t.dtype);
    uint64_t row_bytes;
    ck_assert(ts_dtype_row_bytes(g->tensors[2].t.dtype, COLS, &row_bytes));
    uint8_t want[ROWS * 128];
    float rows[ROWS * COLS];
    for (int x = 0; x < NE; x++) {
        for (int k = 0; k < ROWS * COLS; k++)
            rows[k] = value_at(2, (int64_t)x * ROWS * COLS + k);
        /* expert x with its own slice of the weights (expert 1: all ones) */
        q->quantize_rows(rows, want, ROWS, COLS, e->weights + x * COLS);
        ck_assert_mem_eq((const uint8_t *)g->tensors[2].t.data + x * ROWS * row_bytes, want, ROWS * row_bytes);
    }
    ts_gguf_close(g);
    ts_quantize_result_free(&r);

    /* an imatrix whose entry has the wrong size for this model */
    char *im2 = write_imatrix("moe-im2.gguf", "blk.0.ffn_down_exps.weight", COLS, NE + 1);
    o.imatrix = im2;
    char *out2 = out_path("moe-q2.gguf");
    o.output = out2;
    ck_assert_int_eq(ts_quantize(&o, &r, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "blk.0.ffn_down_exps.weight") && strstr(err.msg, "256") && strstr(err.msg, "192"),
                  "%s", err.msg);
    assert_nothing_left(out2);
    free(out2);
    free(im2);
    free(out);
    free(im);
    free(in);
}
END_TEST

/* The one-pass checkpoint path plans and writes what the GGUF path does. */
START_TEST(checkpoint_one_pass)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return;
    char *dir, *f16 = out_path("ck-f16.gguf"), *a = out_path("ck-a.gguf"), *b = out_path("ck-b.gguf");
    ck_assert(asprintf(&dir, "%s/models/qwen3moe-spm-9m", shared) > 0);
    ts_convert_opts co = {.input = dir, .output = f16, .outtype = "f16", .n_threads = 2};
    ts_convert_stats cs;
    ts_err err = {0};
    ck_assert_msg(ts_convert(&co, &cs, &err) == TS_OK, "%s", err.msg);
    ts_quantize_result ra, rb;
    ck_assert_msg(run(dir, a, "Q8_0", &ra, &err) == TS_OK, "%s", err.msg);
    ck_assert(ra.from_checkpoint);
    ck_assert_msg(run(f16, b, "Q8_0", &rb, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(ra.plan.n, rb.plan.n);
    ts_gguf *ga, *gb;
    ck_assert(ts_gguf_open(a, &ga, &err) == TS_OK);
    ck_assert(ts_gguf_open(b, &gb, &err) == TS_OK);
    ck_assert_uint_eq(ga->n_tensors, gb->n_tensors);
    uint64_t v;
    ck_assert(ts_gguf_get_u64(ga, "general.file_type", &v) && v == 7);
    ck_assert_str_eq(ts_gguf_get_str(ga, "tessera.quantize.ftype"), "Q8_0");
    for (uint64_t i = 0; i < ga->n_tensors; i++) {
        const ts_tensor *x = &ga->tensors[i].t, *y = &gb->tensors[i].t;
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->dtype, y->dtype);
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        if (x->dtype == TS_Q8_0) /* the checkpoint's F16-exact weights give the same blocks */
            ck_assert_msg(!memcmp(x->data, y->data, x->nbytes), "%s differs", x->name);
    }
    ts_gguf_close(ga);
    ts_gguf_close(gb);
    ts_quantize_result_free(&ra);
    ts_quantize_result_free(&rb);
    free(dir);
    free(f16);
    free(a);
    free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("quantize");
    TCase *tc = tcase_create("driver");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, q8_0_bytes_and_metadata);
    tcase_add_test(tc, dry_run_and_missing_kernels);
    tcase_add_test(tc, bad_inputs);
    tcase_add_test(tc, moe_expert_slices);
    tcase_add_test(tc, checkpoint_one_pass);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
