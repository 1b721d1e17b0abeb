/* convert for the MoE families of ../shared/fixtures/families (Mixtral, GLM-4.5,
 * gpt-oss): names, shapes, types and keys as llama.cpp reads them, and the
 * gpt-oss MXFP4 repack byte for byte. Skipped when the fixtures are absent.
 * (tests/interop/test_family_moe.sh checks what llama.cpp computes from them.) */
#include "testutil.h"

#include "convert/convert.h"
#include "formats/checkpoint.h"
#include "formats/gguf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *fixture(const char *name)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return NULL;
    char *p = malloc(1024);
    snprintf(p, 1024, "%s/fixtures/families/%s", shared, name);
    if (access(p, R_OK) != 0) {
        fprintf(stderr, "note: %s not found, skipped\n", p);
        free(p);
        return NULL;
    }
    return p;
}

static ts_gguf *convert(const char *in, const char *type, const char *out_name)
{
    char out[1024];
    snprintf(out, sizeof out, "%s/%s", tu_tmpdir(), out_name);
    ts_convert_opts o = {.input = in, .output = out, .outtype = type, .n_threads = 2};
    ts_convert_stats stats;
    ts_err err = {0};
    ck_assert_msg(ts_convert(&o, &stats, &err) == TS_OK, "%s", err.msg);
    ts_gguf *g;
    ck_assert_msg(ts_gguf_open(out, &g, &err) == TS_OK, "%s", err.msg);
    return g;
}

static const ts_tensor *tensor(const ts_gguf *g, const char *name, ts_dtype type, int64_t ne0, int64_t ne1, int64_t ne2)
{
    int64_t i = ts_gguf_find_tensor(g, name);
    ck_assert_msg(i >= 0, "missing %s", name);
    const ts_tensor *t = &g->tensors[i].t;
    ck_assert_msg(t->dtype == type, "%s: %s, expected %s", name, ts_dtype_name(t->dtype), ts_dtype_name(type));
    ck_assert_msg(t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == ne2, "%s: shape [%lld, %lld, %lld]", name,
                  (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2]);
    return t;
}

static uint64_t u64(const ts_gguf *g, const char *key)
{
    uint64_t v = 0;
    ck_assert_msg(ts_gguf_get_u64(g, key, &v), "missing %s", key);
    return v;
}

START_TEST(mixtral_experts)
{
    char *dir = fixture("mixtral");
    if (!dir)
        return;
    ts_gguf *g = convert(dir, "f16", "mixtral.gguf");
    ck_assert_str_eq(ts_gguf_get_str(g, "general.architecture"), "llama");
    ck_assert_uint_eq(u64(g, "llama.expert_count"), 8);
    ck_assert_uint_eq(u64(g, "llama.expert_used_count"), 2);
    tensor(g, "blk.1.ffn_gate_inp.weight", TS_F32, 64, 8, 1);
    tensor(g, "blk.1.ffn_gate_exps.weight", TS_F16, 64, 128, 8);
    tensor(g, "blk.1.ffn_up_exps.weight", TS_F16, 64, 128, 8);
    tensor(g, "blk.1.ffn_down_exps.weight", TS_F16, 128, 64, 8);
    /* tokenizer.json only: SentencePiece-style scores from the merge ranks, not a constant */
    const ts_gguf_kv *kv = ts_gguf_find_kv(g, "tokenizer.ggml.scores");
    ck_assert(kv && kv->value.arr.elem_type == TS_GGUF_FLOAT32 && kv->value.arr.n == 32000);
    const float *s = kv->value.arr.data;
    ck_assert_msg(s[1000] != s[2000] && s[2000] != s[30000], "scores look constant");
    ts_gguf_close(g);
    free(dir);
}
END_TEST

START_TEST(glm4moe_nextn)
{
    char *src = fixture("glm4_moe");
    if (!src)
        return;
    /* the fixture ships no tokenizer: link its files beside a byte-level tokenizer.json */
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/glm4_moe", tu_tmpdir());
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    static const char *const files[] = {"config.json", "model-00001-of-00002.safetensors",
                                        "model-00002-of-00002.safetensors", "model.safetensors.index.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char from[1200];
        snprintf(from, sizeof from, "%s/%s", src, files[i]);
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        ck_assert_int_eq(symlink(from, path), 0);
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert(f);
    fputs("{\"model\":{\"type\":\"BPE\",\"vocab\":{", f);
    for (int c = 0; c < 94; c++) /* the printable ASCII bytes of GPT-2's table are enough here */
        fprintf(f, "%s\"%s%c\":%d", c ? "," : "", (c + 33 == '"' || c + 33 == '\\') ? "\\" : "", c + 33, c);
    fputs("},\"merges\":[]},\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"use_regex\":true},"
          "\"decoder\":{\"type\":\"ByteLevel\"}}", f);
    ck_assert_int_eq(fclose(f), 0);

    ts_gguf *g = convert(dir, "f32", "glm.gguf");
    ck_assert_str_eq(ts_gguf_get_str(g, "general.architecture"), "glm4moe");
    ck_assert_uint_eq(u64(g, "glm4moe.block_count"), 4); /* 3 layers + the NextN layer */
    ck_assert_uint_eq(u64(g, "glm4moe.nextn_predict_layers"), 1);
    ck_assert_uint_eq(u64(g, "glm4moe.rope.dimension_count"), 16);
    ck_assert_uint_eq(u64(g, "glm4moe.leading_dense_block_count"), 1);
    ck_assert_uint_eq(u64(g, "glm4moe.expert_shared_count"), 1);
    ck_assert_uint_eq(u64(g, "glm4moe.expert_feed_forward_length"), 16);
    ck_assert_uint_eq(u64(g, "glm4moe.expert_gating_func"), 2);
    bool norm = false;
    ck_assert(ts_gguf_get_bool(g, "glm4moe.expert_weights_norm", &norm) && norm);
    tensor(g, "blk.0.ffn_gate.weight", TS_F32, 64, 96, 1);
    tensor(g, "blk.0.post_attention_norm.weight", TS_F32, 64, 1, 1);
    tensor(g, "blk.1.attn_q.bias", TS_F32, 128, 1, 1);
    tensor(g, "blk.1.exp_probs_b.bias", TS_F32, 8, 1, 1);
    tensor(g, "blk.2.ffn_down_exps.weight", TS_F32, 16, 64, 8);
    tensor(g, "blk.2.ffn_up_shexp.weight", TS_F32, 64, 16, 1);
    tensor(g, "blk.3.nextn.eh_proj.weight", TS_F32, 128, 64, 1);
    tensor(g, "blk.3.nextn.embed_tokens.weight", TS_F32, 64, 8192, 1);
    tensor(g, "blk.3.nextn.shared_head_norm.weight", TS_F32, 64, 1, 1);
    tensor(g, "blk.3.ffn_gate_exps.weight", TS_F32, 64, 16, 8);
    ck_assert_int_lt(ts_gguf_find_tensor(g, "blk.0.ffn_norm.weight"), 0);
    ts_gguf_close(g);
    free(src);
}
END_TEST

/* The checkpoint's code k of block b in row (expert e, row r) of a [E, R, nb, 16] blocks tensor. */
static unsigned code_at(const uint8_t *blocks, int64_t nb, int64_t row, int64_t b, int k)
{
    uint8_t byte = blocks[(row * nb + b) * 16 + k / 2];
    return k % 2 ? byte >> 4 : byte & 15u;
}

START_TEST(gptoss_mxfp4)
{
    char *dir = fixture("gpt_oss");
    if (!dir)
        return;
    ts_gguf *g = convert(dir, "q8_0", "gptoss.gguf");
    ck_assert_str_eq(ts_gguf_get_str(g, "general.architecture"), "gpt-oss");
    ck_assert_uint_eq(u64(g, "general.file_type"), 7);
    ck_assert_uint_eq(u64(g, "gpt-oss.attention.sliding_window"), 8);
    ck_assert_uint_eq(u64(g, "gpt-oss.expert_feed_forward_length"), 64);
    ck_assert_ptr_null(ts_gguf_find_kv(g, "gpt-oss.attention.sliding_window_pattern")); /* the default pattern */
    tensor(g, "blk.0.attn_sinks.weight", TS_F32, 4, 1, 1);
    tensor(g, "blk.0.ffn_gate_inp.bias", TS_F32, 8, 1, 1);
    tensor(g, "blk.0.attn_output.bias", TS_F32, 64, 1, 1);
    tensor(g, "blk.1.ffn_down_exps.bias", TS_F32, 64, 8, 1);
    tensor(g, "blk.1.attn_q.weight", TS_Q8_0, 64, 256, 1);

    ts_checkpoint *ck;
    ts_err err = {0};
    ck_assert_msg(ts_checkpoint_open(dir, &ck, &err) == TS_OK, "%s", err.msg);
    static const char *const out_names[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    for (int layer = 0; layer < 2; layer++)
        for (int which = 0; which < 3; which++) {
            char name[128], bname[128], sname[128];
            const char *proj = which < 2 ? "gate_up_proj" : "down_proj";
            snprintf(name, sizeof name, "blk.%d.%s.weight", layer, out_names[which]);
            snprintf(bname, sizeof bname, "model.layers.%d.mlp.experts.%s_blocks", layer, proj);
            snprintf(sname, sizeof sname, "model.layers.%d.mlp.experts.%s_scales", layer, proj);
            const ts_tensor *t = tensor(g, name, TS_MXFP4, 64, 64, 8);
            const ts_tensor *bt = ts_checkpoint_find(ck, bname), *st = ts_checkpoint_find(ck, sname);
            ck_assert(bt && st);
            const void *bd, *sd;
            ck_assert(ts_checkpoint_data(ck, bt, &bd, &err) == TS_OK && ts_checkpoint_data(ck, st, &sd, &err) == TS_OK);
            const uint8_t *blocks = bd, *scales = sd, *out = t->data;
            int64_t nb = 2, src_rows = which < 2 ? 128 : 64;
            for (int64_t e = 0; e < 8; e++)
                for (int64_t r = 0; r < 64; r++) {
                    int64_t row = e * src_rows + (which == 2 ? r : 2 * r + which);
                    for (int64_t b = 0; b < nb; b++) {
                        const uint8_t *blk = out + ((e * 64 + r) * nb + b) * 17;
                        ck_assert_uint_eq(blk[0], scales[row * nb + b]);
                        for (int k = 0; k < 16; k++) {
                            ck_assert_uint_eq(blk[1 + k] & 15u, code_at(blocks, nb, row, b, k));
                            ck_assert_uint_eq(blk[1 + k] >> 4, code_at(blocks, nb, row, b, k + 16));
                        }
                    }
                }
            ts_checkpoint_release(ck, bt);
            ts_checkpoint_release(ck, st);
        }
    ts_checkpoint_close(ck);
    ts_gguf_close(g);

    /* f32 expands the same values: ldexp(E2M1(code), scale - 127) */
    g = convert(dir, "f32", "gptoss-f32.gguf");
    ck_assert_uint_eq(u64(g, "general.file_type"), 0);
    const float *w = tensor(g, "blk.0.ffn_up_exps.weight", TS_F32, 64, 64, 8)->data;
    ts_gguf *q;
    char qpath[1024];
    snprintf(qpath, sizeof qpath, "%s/gptoss.gguf", tu_tmpdir());
    ck_assert(ts_gguf_open(qpath, &q, &err) == TS_OK);
    const uint8_t *m = tensor(q, "blk.0.ffn_up_exps.weight", TS_MXFP4, 64, 64, 8)->data;
    static const float e2m1[16] = {0, .5f, 1, 1.5f, 2, 3, 4, 6, -0.f, -.5f, -1, -1.5f, -2, -3, -4, -6};
    for (int64_t i = 0; i < 64 * 64 * 8; i++) {
        const uint8_t *blk = m + (i / 32) * 17;
        int k = (int)(i % 32);
        unsigned code = k < 16 ? blk[1 + k] & 15u : blk[1 + k - 16] >> 4;
        ck_assert_float_eq(w[i], ldexpf(e2m1[code], (int)blk[0] - 127));
    }
    ts_gguf_close(q);
    ts_gguf_close(g);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("convert_moe");
    TCase *tc = tcase_create("families");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, mixtral_experts);
    tcase_add_test(tc, glm4moe_nextn);
    tcase_add_test(tc, gptoss_mxfp4);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
