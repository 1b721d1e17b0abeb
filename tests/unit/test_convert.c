/* convert end to end on small checkpoints built here (exact values checked
 * after renaming, permutation, stacking and type conversion), bad inputs that
 * must fail cleanly with no file left behind, and the real models in ../shared. */
#define _GNU_SOURCE
#include "testutil.h"
#include "convert/convert.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a tiny safetensors writer for the tests (F32 tensors) ---- */

typedef struct {
    char name[96];
    int n_dims;
    int64_t shape[3]; /* PyTorch order */
    float *data;
} st_entry;

static float value_at(int k, int64_t row, int64_t col) { return (float)(k * 100000 + row * 100 + col) * 1e-3f; }

static int64_t st_numel(const st_entry *e)
{
    int64_t n = 1;
    for (int d = 0; d < e->n_dims; d++)
        n *= e->shape[d];
    return n;
}

static void add_entry(st_entry *es, int *n, const char *name, int n_dims, int64_t a, int64_t b)
{
    st_entry *e = &es[(*n)++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->n_dims = n_dims;
    e->shape[0] = a;
    e->shape[1] = b;
    int64_t rows = n_dims == 1 ? 1 : a, cols = n_dims == 1 ? a : b;
    e->data = malloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            e->data[r * cols + c] = value_at(*n, r, c);
}

static void write_st(const char *path, st_entry *es, int n)
{
    char *hdr = NULL;
    size_t hlen = 0;
    FILE *h = open_memstream(&hdr, &hlen);
    fprintf(h, "{");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t bytes = (uint64_t)st_numel(&es[i]) * 4;
        fprintf(h, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", i ? "," : "", es[i].name);
        for (int d = 0; d < es[i].n_dims; d++)
            fprintf(h, "%s%lld", d ? "," : "", (long long)es[i].shape[d]);
        fprintf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    fprintf(h, "}");
    fclose(h);
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    uint64_t hl = hlen;
    fwrite(&hl, 8, 1, fp);
    fwrite(hdr, 1, hlen, fp);
    for (int i = 0; i < n; i++)
        fwrite(es[i].data, 4, (size_t)st_numel(&es[i]), fp);
    fclose(fp);
    free(hdr);
}

/* Llama-style model: hidden 64, 2 layers, 4 heads of 16, 2 KV heads, ff 72 (not a multiple of 32). */
enum { HID = 64, LAYERS = 2, HEADS = 4, KV = 2, HD = 16, FF = 72, VOCAB = 4096 };

static char *make_model_dir(const char *name, const char *arch, int config_layers, bool extra_tensor)
{
    const char *shared = tu_shared_dir();
    char *dir;
    ck_assert(asprintf(&dir, "%s/%s", tu_tmpdir(), name) > 0);
    mkdir(dir, 0755);
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *fp = fopen(path, "w");
    fprintf(fp,
            "{\"architectures\":[\"%s\"],\"hidden_size\":%d,\"intermediate_size\":%d,\"num_hidden_layers\":%d,"
            "\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"vocab_size\":%d,\"rms_norm_eps\":1e-5,"
            "\"rope_theta\":10000.0,\"max_position_embeddings\":512,\"tie_word_embeddings\":false}",
            arch, HID, FF, config_layers, HEADS, KV, VOCAB);
    fclose(fp);
    /* the tokenizer comes from ../shared's llama-spm-8m (vocab 4096) */
    snprintf(path, sizeof path, "cp '%s/models/llama-spm-8m/tokenizer.model' '%s/models/llama-spm-8m/tokenizer_config.json' '%s/'",
             shared, shared, dir);
    ck_assert_int_eq(system(path), 0);
    st_entry es[64];
    int n = 0;
    add_entry(es, &n, "model.embed_tokens.weight", 2, VOCAB, HID);
    add_entry(es, &n, "model.norm.weight", 1, HID, 0);
    add_entry(es, &n, "lm_head.weight", 2, VOCAB, HID);
    for (int l = 0; l < LAYERS; l++) {
        char t[96];
#define T(suffix, nd, a, b) (snprintf(t, sizeof t, "model.layers.%d.%s", l, suffix), add_entry(es, &n, t, nd, a, b))
        T("input_layernorm.weight", 1, HID, 0);
        T("self_attn.q_proj.weight", 2, HEADS * HD, HID);
        T("self_attn.k_proj.weight", 2, KV * HD, HID);
        T("self_attn.v_proj.weight", 2, KV * HD, HID);
        T("self_attn.o_proj.weight", 2, HID, HEADS * HD);
        T("post_attention_layernorm.weight", 1, HID, 0);
        T("mlp.gate_proj.weight", 2, FF, HID);
        T("mlp.up_proj.weight", 2, FF, HID);
        T("mlp.down_proj.weight", 2, HID, FF);
#undef T
    }
    if (extra_tensor)
        add_entry(es, &n, "model.mystery.weight", 2, 4, 4);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_st(path, es, n);
    for (int i = 0; i < n; i++)
        free(es[i].data);
    return dir;
}

static char *out_path(const char *name)
{
    char *p;
    ck_assert(asprintf(&p, "%s/%s", tu_tmpdir(), name) > 0);
    return p;
}

/* No file at path and no temp file beside it. */
static void assert_nothing_left(const char *path)
{
    ck_assert_msg(!ts_file_exists(path), "%s exists after a failed convert", path);
    char *dir = strdup(path), *base = strrchr(dir, '/');
    *base++ = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while ((de = readdir(d)))
        ck_assert_msg(strncmp(de->d_name, base, strlen(base)) != 0, "left behind: %s", de->d_name);
    closedir(d);
    free(dir);
}

static ts_status run_convert(const char *in, const char *out, const char *type, ts_err *err)
{
    ts_convert_opts o = {.input = in, .output = out, .outtype = type, .n_threads = 2};
    ts_convert_stats stats;
    return ts_convert(&o, &stats, err);
}

static const float *tensor_f32(const ts_gguf *g, const char *name, ts_dtype want)
{
    int64_t i = ts_gguf_find_tensor(g, name);
    ck_assert_msg(i >= 0, "missing %s", name);
    ck_assert_msg(g->tensors[i].t.dtype == want, "%s: type %s, expected %s", name,
                  ts_dtype_name(g->tensors[i].t.dtype), ts_dtype_name(want));
    return g->tensors[i].t.data;
}

START_TEST(llama_f32_exact)
{
    if (!tu_shared_dir())
        return;
    char *dir = make_model_dir("llama-f32", "LlamaForCausalLM", LAYERS, false);
    char *out = out_path("llama-f32.gguf");
    ts_err err = {0};
    ck_assert_msg(run_convert(dir, out, "f32", &err) == TS_OK, "%s", err.msg);
    ts_gguf *g;
    ck_assert_msg(ts_gguf_open(out, &g, &err) == TS_OK, "%s", err.msg);
    ck_assert_str_eq(ts_gguf_get_str(g, "general.architecture"), "llama");
    uint64_t v;
    ck_assert(ts_gguf_get_u64(g, "llama.block_count", &v) && v == LAYERS);
    ck_assert(ts_gguf_get_u64(g, "llama.attention.head_count_kv", &v) && v == KV);
    ck_assert(ts_gguf_get_u64(g, "llama.rope.dimension_count", &v) && v == HD);
    ck_assert(ts_gguf_get_u64(g, "general.file_type", &v) && v == 0);
    ck_assert_str_eq(ts_gguf_get_str(g, "tokenizer.ggml.model"), "llama");
    ck_assert_uint_eq(g->n_tensors, 3 + 9 * LAYERS);
    /* attn_q rows: within each head, output row 2i+j is source row j*HD/2+i */
    const float *q = tensor_f32(g, "blk.1.attn_q.weight", TS_F32);
    int k_q = 3 + 9 * 1 + 2; /* entry index of layer 1's q_proj (1-based, as add_entry counts) */
    for (int r = 0; r < HEADS * HD; r++) {
        int h = r / HD, i = (r % HD) / 2, j = r % 2;
        int src = h * HD + j * (HD / 2) + i;
        for (int c = 0; c < HID; c++)
            ck_assert_float_eq(q[r * HID + c], value_at(k_q, src, c));
    }
    const float *kk = tensor_f32(g, "blk.0.attn_k.weight", TS_F32);
    for (int r = 0; r < KV * HD; r++) {
        int h = r / HD, i = (r % HD) / 2, j = r % 2;
        ck_assert_float_eq(kk[r * HID + 5], value_at(3 + 3, h * HD + j * (HD / 2) + i, 5));
    }
    const float *vv = tensor_f32(g, "blk.0.attn_v.weight", TS_F32);
    ck_assert_float_eq(vv[7 * HID + 3], value_at(3 + 4, 7, 3));
    const float *norm = tensor_f32(g, "output_norm.weight", TS_F32);
    ck_assert_float_eq(norm[9], value_at(2, 0, 9));
    ts_gguf_close(g);
    free(out);
    free(dir);
}
END_TEST

START_TEST(llama_q8_0_types_and_fallback)
{
    if (!tu_shared_dir())
        return;
    char *dir = make_model_dir("llama-q8", "MistralForCausalLM", LAYERS, false);
    char *out = out_path("llama-q8.gguf");
    ts_err err = {0};
    ck_assert_msg(run_convert(dir, out, "q8_0", &err) == TS_OK, "%s", err.msg);
    ts_gguf *g;
    ck_assert_msg(ts_gguf_open(out, &g, &err) == TS_OK, "%s", err.msg);
    uint64_t v;
    ck_assert(ts_gguf_get_u64(g, "general.file_type", &v) && v == 7);
    tensor_f32(g, "blk.0.attn_norm.weight", TS_F32);
    tensor_f32(g, "blk.0.ffn_up.weight", TS_Q8_0);
    /* ffn_down rows are FF = 72 long: not a multiple of 32, so F16 */
    const uint16_t *down = (const uint16_t *)tensor_f32(g, "blk.0.ffn_down.weight", TS_F16);
    float f;
    ts_k_f16_to_f32(&down[1 * FF + 2], &f, 1);
    ck_assert_float_eq_tol(f, value_at(3 + 9, 1, 2), 1e-3 * fabs(value_at(3 + 9, 1, 2)));
    /* q8_0 bytes equal the reference quantizer on the (permuted) source row */
    int64_t qi = ts_gguf_find_tensor(g, "blk.0.attn_v.weight");
    float row[HID];
    for (int c = 0; c < HID; c++)
        row[c] = value_at(3 + 4, 3, c);
    uint8_t expect[2 * 34];
    ts_k_quantize_row_q8_0(row, expect, HID);
    ck_assert_mem_eq((const uint8_t *)g->tensors[qi].t.data + 3 * 68, expect, 68);
    ts_gguf_close(g);
    free(out);
    free(dir);
}
END_TEST

START_TEST(bad_inputs_leave_nothing)
{
    if (!tu_shared_dir())
        return;
    ts_err err;
    char *out = out_path("bad.gguf");
    /* unknown architecture: names the class and lists the supported ones */
    char *d1 = make_model_dir("bad-arch", "GPTNeoXForCausalLM", LAYERS, false);
    memset(&err, 0, sizeof err);
    ck_assert_int_ne(run_convert(d1, out, "f16", &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "GPTNeoXForCausalLM") && strstr(err.msg, "Qwen3MoeForCausalLM"), "%s", err.msg);
    assert_nothing_left(out);
    /* config says 3 layers, checkpoint has 2 */
    char *d2 = make_model_dir("bad-layers", "LlamaForCausalLM", 3, false);
    ck_assert_int_ne(run_convert(d2, out, "f16", &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "layer 2"), "%s", err.msg);
    assert_nothing_left(out);
    /* a tensor with no mapping is named */
    char *d3 = make_model_dir("bad-extra", "LlamaForCausalLM", LAYERS, true);
    ck_assert_int_ne(run_convert(d3, out, "f16", &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "model.mystery.weight"), "%s", err.msg);
    assert_nothing_left(out);
    /* a truncated checkpoint: the reader's error, no output */
    char *d4 = make_model_dir("bad-trunc", "LlamaForCausalLM", LAYERS, false);
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", d4);
    ck_assert_int_eq(truncate(path, 5000), 0);
    ck_assert_int_ne(run_convert(d4, out, "f16", &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "model.safetensors"), "%s", err.msg);
    assert_nothing_left(out);
    /* unknown outtype */
    ck_assert_int_ne(run_convert(d2, out, "q4_k", &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "--outtype"), "%s", err.msg);
    /* output == input is refused and the input survives */
    char *d5 = make_model_dir("bad-self", "LlamaForCausalLM", LAYERS, false);
    snprintf(path, sizeof path, "%s/model.safetensors", d5);
    struct stat before, after;
    stat(path, &before);
    ck_assert_int_ne(run_convert(d5, path, "f16", &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "refusing to overwrite"), "%s", err.msg);
    stat(path, &after);
    ck_assert_int_eq(before.st_size, after.st_size);
    /* no config.json */
    snprintf(path, sizeof path, "%s/config.json", d5);
    unlink(path);
    ck_assert_int_ne(run_convert(d5, out, "f16", &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "config.json"), "%s", err.msg);
    assert_nothing_left(out);
    free(d1), free(d2), free(d3), free(d4), free(d5), free(out);
}
END_TEST

/* The real models: BF16 passthrough keeps bytes; MoE experts are stacked in order. */
START_TEST(real_models)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/qwen3moe-spm-9m", shared);
    char *out = out_path("moe.gguf");
    ts_err err = {0};
    ck_assert_msg(run_convert(dir, out, "auto", &err) == TS_OK, "%s", err.msg);
    ts_gguf *g;
    ck_assert_msg(ts_gguf_open(out, &g, &err) == TS_OK, "%s", err.msg);
    ck_assert_str_eq(ts_gguf_get_str(g, "general.architecture"), "qwen3moe");
    uint64_t v;
    ck_assert(ts_gguf_get_u64(g, "qwen3moe.expert_count", &v) && v == 8);
    ck_assert(ts_gguf_get_u64(g, "qwen3moe.expert_used_count", &v) && v == 2);
    ck_assert(ts_gguf_get_u64(g, "general.file_type", &v) && v == 32);
    int64_t gi = ts_gguf_find_tensor(g, "blk.1.ffn_gate_exps.weight");
    ck_assert_int_ge(gi, 0);
    const ts_tensor *ge = &g->tensors[gi].t;
    ck_assert_int_eq(ge->n_dims, 3);
    ck_assert_int_eq(ge->ne[2], 8);
    ck_assert_int_eq(ge->dtype, TS_BF16);
    tensor_f32(g, "blk.1.ffn_gate_inp.weight", TS_F32);
    /* expert 5's slice equals the stored bf16 bytes of experts.5.gate_proj */
    snprintf(dir, sizeof dir, "%s/models/qwen3moe-spm-9m/model.safetensors", shared);
    ts_st_model *m;
    ck_assert_msg(ts_st_open(dir, &m, &err) == TS_OK, "%s", err.msg);
    const ts_st_tensor *e5 = ts_st_find(m, "model.layers.1.mlp.experts.5.gate_proj.weight");
    ck_assert_ptr_nonnull(e5);
    ck_assert_uint_eq(ge->nbytes, 8 * e5->t.nbytes);
    ck_assert_mem_eq((const uint8_t *)ge->data + 5 * e5->t.nbytes, e5->t.data, e5->t.nbytes);
    ts_st_close(m);
    ts_gguf_close(g);
    free(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("convert");
    TCase *tc = tcase_create("convert");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, llama_f32_exact);
    tcase_add_test(tc, llama_q8_0_types_and_fallback);
    tcase_add_test(tc, bad_inputs_leave_nothing);
    tcase_add_test(tc, real_models);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
