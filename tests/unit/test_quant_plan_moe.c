/* The planner on the MoE families' tensor lists, in the shapes of the real
 * releases: DeepSeek-V3 (llama.cpp's deepseek2: MLA, dense first layers,
 * shared experts, the NextN layer), gpt-oss (MXFP4 experts, sinks, biases),
 * GLM-4.5-Air (glm4moe) and Mixtral. Expected types are worked out by hand
 * from src/llama-quant.cpp of llama.cpp v0.5.0, the reasoning next to each
 * check; tests/interop/test_quant_mixes.sh compares whole plans with
 * llama.cpp's on the tiny family fixtures. Also the mxfp4 type table row. */
#include "testutil.h"
#include "quant_plan_util.h"
#include "quant/quant.h"

#include <math.h>

/* ---- DeepSeek-V3 / Kimi K2 (deepseek2) ---- */

/* DeepSeek-V3's shapes, 8 layers (first 3 dense) plus the NextN layer 8.
 * kv_b: the older single attn_kv_b instead of attn_k_b / attn_v_b; q_lora:
 * attn_q_a / attn_q_b, else one attn_q (q_lora_rank null, as in V2-Lite). */
static tlist *deepseek_list(bool kv_b, bool q_lora)
{
    const int64_t embd = 7168, q_rank = 1536, kv_rank = 512, rope = 64, nope = 128, v_dim = 128, n_head = 128;
    const int64_t ff = 18432, ff_exp = 2048, n_exp = 256, vocab = 129280;
    tlist *l = calloc(1, sizeof *l);
    add(l, TS_BF16, embd, vocab, 1, "token_embd.weight");
    for (int i = 0; i < 9; i++) {
        add(l, TS_F32, embd, 1, 1, "blk.%d.attn_norm.weight", i);
        if (q_lora) {
            add(l, TS_F32, q_rank, 1, 1, "blk.%d.attn_q_a_norm.weight", i);
            add(l, TS_BF16, embd, q_rank, 1, "blk.%d.attn_q_a.weight", i);
            add(l, TS_BF16, q_rank, n_head * (nope + rope), 1, "blk.%d.attn_q_b.weight", i);
        } else {
            add(l, TS_BF16, embd, n_head * (nope + rope), 1, "blk.%d.attn_q.weight", i);
        }
        add(l, TS_F32, kv_rank, 1, 1, "blk.%d.attn_kv_a_norm.weight", i);
        add(l, TS_BF16, embd, kv_rank + rope, 1, "blk.%d.attn_kv_a_mqa.weight", i);
        if (kv_b) {
            add(l, TS_BF16, kv_rank, n_head * (nope + v_dim), 1, "blk.%d.attn_kv_b.weight", i);
        } else {
            add(l, TS_BF16, nope, kv_rank, n_head, "blk.%d.attn_k_b.weight", i);
            add(l, TS_BF16, kv_rank, v_dim, n_head, "blk.%d.attn_v_b.weight", i);
        }
        add(l, TS_BF16, n_head * v_dim, embd, 1, "blk.%d.attn_output.weight", i);
        add(l, TS_F32, embd, 1, 1, "blk.%d.ffn_norm.weight", i);
        if (i < 3) {
            add(l, TS_BF16, embd, ff, 1, "blk.%d.ffn_gate.weight", i);
            add(l, TS_BF16, embd, ff, 1, "blk.%d.ffn_up.weight", i);
            add(l, TS_BF16, ff, embd, 1, "blk.%d.ffn_down.weight", i);
            continue;
        }
        add(l, TS_F32, embd, n_exp, 1, "blk.%d.ffn_gate_inp.weight", i);
        add(l, TS_F32, n_exp, 1, 1, "blk.%d.exp_probs_b.bias", i);
        add(l, TS_BF16, embd, ff_exp, n_exp, "blk.%d.ffn_gate_exps.weight", i);
        add(l, TS_BF16, embd, ff_exp, n_exp, "blk.%d.ffn_up_exps.weight", i);
        add(l, TS_BF16, ff_exp, embd, n_exp, "blk.%d.ffn_down_exps.weight", i);
        add(l, TS_BF16, embd, ff_exp, 1, "blk.%d.ffn_gate_shexp.weight", i);
        add(l, TS_BF16, embd, ff_exp, 1, "blk.%d.ffn_up_shexp.weight", i);
        add(l, TS_BF16, ff_exp, embd, 1, "blk.%d.ffn_down_shexp.weight", i);
    }
    add(l, TS_BF16, 2 * embd, embd, 1, "blk.8.nextn.eh_proj.weight");
    add(l, TS_BF16, embd, vocab, 1, "blk.8.nextn.embed_tokens.weight");
    add(l, TS_F32, embd, 1, 1, "blk.8.nextn.enorm.weight");
    add(l, TS_F32, embd, 1, 1, "blk.8.nextn.hnorm.weight");
    add(l, TS_BF16, embd, vocab, 1, "blk.8.nextn.shared_head_head.weight");
    add(l, TS_F32, embd, 1, 1, "blk.8.nextn.shared_head_norm.weight");
    add(l, TS_F32, embd, 1, 1, "output_norm.weight");
    add(l, TS_BF16, embd, vocab, 1, "output.weight");
    return l;
}

/* block_count 9 (the NextN layer counts: llama.cpp's n_layer_all), head_count_kv 1 (MLA). */
static ts_qmodel deepseek_model(void)
{
    ts_qmodel m = model("deepseek2", 9, 128, 1, 256);
    m.n_layer_nextn = 1;
    return m;
}

/* use_more_bits(i, 9): i < 1, i >= 7, or (i - 1) % 3 == 2: layers 0, 3, 6, 7, 8. */
static bool more_bits_9(int i) { return i < 1 || i >= 7 || (i - 1) % 3 == 2; }

START_TEST(deepseek_q4_k_m)
{
    tlist *l = deepseek_list(false, true);
    ts_qmodel m = deepseek_model();
    ts_qplan_opts o = opts(TS_FTYPE_Q4_K_M);
    ts_qplan p = build(&m, l, &o);
    for (int i = 0; i < 9; i++) {
        /* MLA projections match none of llama.cpp's categories ("attn_v_b.weight" is not "attn_v.weight"):
         * the default Q4_K; attn_k_b's rows are qk_nope_head_dim = 128 long, so Q4_K falls back to Q5_0 */
        EXPECT(&p, TS_Q4_K, "blk.%d.attn_q_a.weight", i);
        EXPECT(&p, TS_Q4_K, "blk.%d.attn_q_b.weight", i);
        EXPECT(&p, TS_Q4_K, "blk.%d.attn_kv_a_mqa.weight", i);
        EXPECT(&p, TS_Q5_0, "blk.%d.attn_k_b.weight", i);
        EXPECT(&p, TS_Q4_K, "blk.%d.attn_v_b.weight", i);
        EXPECT(&p, TS_Q4_K, "blk.%d.attn_output.weight", i); /* 256 experts: not the 8-expert Q5_K */
        EXPECT(&p, TS_F32, "blk.%d.attn_kv_a_norm.weight", i);
        /* ffn_down of every kind (dense, routed, shared): layer from the name, out of the 9 of block_count */
        ts_dtype down = more_bits_9(i) ? TS_Q6_K : TS_Q4_K;
        if (i < 3) {
            EXPECT(&p, down, "blk.%d.ffn_down.weight", i);
            EXPECT(&p, TS_Q4_K, "blk.%d.ffn_gate.weight", i);
            continue;
        }
        EXPECT(&p, down, "blk.%d.ffn_down_exps.weight", i);
        EXPECT(&p, down, "blk.%d.ffn_down_shexp.weight", i);
        EXPECT(&p, TS_Q4_K, "blk.%d.ffn_gate_exps.weight", i);
        EXPECT(&p, TS_Q4_K, "blk.%d.ffn_up_shexp.weight", i);
        /* the router and its correction bias are never quantized */
        EXPECT(&p, TS_F32, "blk.%d.ffn_gate_inp.weight", i);
        EXPECT(&p, TS_F32, "blk.%d.exp_probs_b.bias", i);
    }
    /* NextN tensors are "other": the default type; only the exact names token_embd / output get their rules */
    EXPECT(&p, TS_Q4_K, "blk.8.nextn.eh_proj.weight");
    EXPECT(&p, TS_Q4_K, "blk.8.nextn.embed_tokens.weight");
    EXPECT(&p, TS_Q4_K, "blk.8.nextn.shared_head_head.weight");
    EXPECT(&p, TS_F32, "blk.8.nextn.enorm.weight");
    EXPECT(&p, TS_Q4_K, "token_embd.weight");
    EXPECT(&p, TS_Q6_K, "output.weight");
    ck_assert_int_eq(p.n_fallback, 9); /* the attn_k_b tensors */
    ts_qplan_free(&p);
    free(l);
}
END_TEST

START_TEST(deepseek_q2_k)
{
    tlist *l = deepseek_list(false, true);
    ts_qmodel m = deepseek_model();
    ts_qplan_opts o = opts(TS_FTYPE_Q2_K);
    ts_qplan p = build(&m, l, &o);
    EXPECT(&p, TS_Q2_K, "blk.0.attn_q_b.weight");
    EXPECT(&p, TS_Q4_0, "blk.0.attn_k_b.weight"); /* Q2_K on 128 columns -> Q4_0 */
    EXPECT(&p, TS_Q2_K, "blk.0.attn_v_b.weight"); /* "other", so not attn_v's Q4_K */
    EXPECT(&p, TS_Q3_K, "blk.1.attn_output.weight");
    EXPECT(&p, TS_Q3_K, "blk.1.ffn_down.weight");
    EXPECT(&p, TS_Q3_K, "blk.4.ffn_down_exps.weight");
    EXPECT(&p, TS_Q3_K, "blk.4.ffn_down_shexp.weight");
    EXPECT(&p, TS_Q2_K, "blk.4.ffn_up_exps.weight");
    EXPECT(&p, TS_Q2_K, "blk.8.nextn.eh_proj.weight");
    EXPECT(&p, TS_Q2_K, "token_embd.weight");
    EXPECT(&p, TS_Q6_K, "output.weight");
    ts_qplan_free(&p);
    free(l);

    /* Older files: one attn_kv_b, attn_v-like (it shares attn_v's rules and counter), and a plain attn_q */
    l = deepseek_list(true, false);
    o = opts(TS_FTYPE_Q2_K);
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q4_K, "blk.0.attn_kv_b.weight"); /* n_gqa = 128 / 1 >= 4 */
    EXPECT(&p, TS_Q2_K, "blk.0.attn_q.weight");
    ts_qplan_free(&p);
    o = opts(TS_FTYPE_Q4_K_M);
    p = build(&m, l, &o);
    for (int i = 0; i < 9; i++) /* use_more_bits(i_attn_v, 9 attn_kv_b tensors) */
        EXPECT(&p, more_bits_9(i) ? TS_Q6_K : TS_Q4_K, "blk.%d.attn_kv_b.weight", i);
    ts_qplan_free(&p);
    free(l);
}
END_TEST

/* ---- gpt-oss ---- */

/* gpt-oss-20b's shapes: embd 2880 (not a multiple of 256), 64 heads of 64, 8 KV heads, 32 MXFP4 experts. */
static tlist *gptoss_list(int n_layer)
{
    const int64_t embd = 2880, q_dim = 4096, kv_dim = 512, ff = 2880, n_exp = 32, vocab = 201088;
    tlist *l = calloc(1, sizeof *l);
    add(l, TS_BF16, embd, vocab, 1, "token_embd.weight");
    for (int i = 0; i < n_layer; i++) {
        add(l, TS_F32, embd, 1, 1, "blk.%d.attn_norm.weight", i);
        add(l, TS_BF16, embd, q_dim, 1, "blk.%d.attn_q.weight", i);
        add(l, TS_F32, q_dim, 1, 1, "blk.%d.attn_q.bias", i);
        add(l, TS_BF16, embd, kv_dim, 1, "blk.%d.attn_k.weight", i);
        add(l, TS_F32, kv_dim, 1, 1, "blk.%d.attn_k.bias", i);
        add(l, TS_BF16, embd, kv_dim, 1, "blk.%d.attn_v.weight", i);
        add(l, TS_F32, kv_dim, 1, 1, "blk.%d.attn_v.bias", i);
        add(l, TS_BF16, q_dim, embd, 1, "blk.%d.attn_output.weight", i);
        add(l, TS_F32, embd, 1, 1, "blk.%d.attn_output.bias", i);
        add(l, TS_F32, 64, 1, 1, "blk.%d.attn_sinks.weight", i);
        add(l, TS_F32, embd, 1, 1, "blk.%d.post_attention_norm.weight", i);
        add(l, TS_BF16, embd, n_exp, 1, "blk.%d.ffn_gate_inp.weight", i);
        add(l, TS_F32, n_exp, 1, 1, "blk.%d.ffn_gate_inp.bias", i);
        add(l, TS_MXFP4, embd, ff, n_exp, "blk.%d.ffn_gate_exps.weight", i);
        add(l, TS_F32, ff, n_exp, 1, "blk.%d.ffn_gate_exps.bias", i); /* 2-D, but not a weight */
        add(l, TS_MXFP4, embd, ff, n_exp, "blk.%d.ffn_up_exps.weight", i);
        add(l, TS_F32, ff, n_exp, 1, "blk.%d.ffn_up_exps.bias", i);
        add(l, TS_MXFP4, ff, embd, n_exp, "blk.%d.ffn_down_exps.weight", i);
        add(l, TS_F32, embd, n_exp, 1, "blk.%d.ffn_down_exps.bias", i);
    }
    add(l, TS_F32, embd, 1, 1, "output_norm.weight");
    add(l, TS_BF16, embd, vocab, 1, "output.weight");
    return l;
}

/* use_more_bits(i, 24): i < 3, i >= 21, or (i - 3) % 3 == 2. */
static bool more_bits_24(int i) { return i < 3 || i >= 21 || (i - 3) % 3 == 2; }

START_TEST(gptoss_q4_k_m)
{
    tlist *l = gptoss_list(24);
    ts_qmodel m = model("gpt-oss", 24, 64, 8, 32);
    ts_qplan_opts o = opts(TS_FTYPE_Q4_K_M);
    ts_qplan p = build(&m, l, &o);
    for (int i = 0; i < 24; i++) {
        /* 2880-long rows: Q4_K -> Q5_0, Q6_K -> Q8_0 */
        EXPECT(&p, TS_Q5_0, "blk.%d.attn_q.weight", i);
        EXPECT(&p, TS_Q5_0, "blk.%d.attn_k.weight", i); /* 32 experts: no 8-expert Q8_0 */
        EXPECT(&p, more_bits_24(i) ? TS_Q8_0 : TS_Q5_0, "blk.%d.attn_v.weight", i);
        EXPECT(&p, TS_Q4_K, "blk.%d.attn_output.weight", i); /* 4096 columns fit */
        /* the release's MXFP4 experts are kept as they are */
        EXPECT(&p, TS_MXFP4, "blk.%d.ffn_gate_exps.weight", i);
        EXPECT(&p, TS_MXFP4, "blk.%d.ffn_down_exps.weight", i);
        ck_assert(!planned(&p, "blk.%d.ffn_up_exps.weight", i)->fallback);
        /* sinks, biases, router: never quantized */
        EXPECT(&p, TS_F32, "blk.%d.attn_sinks.weight", i);
        EXPECT(&p, TS_F32, "blk.%d.ffn_down_exps.bias", i);
        EXPECT(&p, TS_F32, "blk.%d.attn_q.bias", i);
        EXPECT(&p, TS_BF16, "blk.%d.ffn_gate_inp.weight", i);
    }
    EXPECT(&p, TS_Q5_0, "token_embd.weight");
    EXPECT(&p, TS_Q8_0, "output.weight"); /* 2880 % 256: the output rule's Q8_0 */
    const ts_qplan_tensor *e = planned(&p, "blk.3.ffn_up_exps.weight");
    ck_assert_uint_eq(e->bytes, e->src_bytes);
    ck_assert_uint_eq(e->bytes, (uint64_t)2880 / 32 * 17 * 2880 * 32);
    ts_qplan_free(&p);

    /* --allow-requantize: llama.cpp's choice for them, as for any other weight */
    o.allow_requantize = true;
    p = build(&m, l, &o);
    for (int i = 0; i < 24; i++) {
        EXPECT(&p, TS_Q5_0, "blk.%d.ffn_gate_exps.weight", i);
        EXPECT(&p, TS_Q5_0, "blk.%d.ffn_up_exps.weight", i);
        EXPECT(&p, more_bits_24(i) ? TS_Q8_0 : TS_Q5_0, "blk.%d.ffn_down_exps.weight", i);
        EXPECT(&p, more_bits_24(i) ? TS_Q8_0 : TS_Q5_0, "blk.%d.attn_v.weight", i); /* counters unchanged */
    }
    ts_qplan_free(&p);
    free(l);
}
END_TEST

START_TEST(gptoss_q2_k_and_controls)
{
    tlist *l = gptoss_list(24);
    ts_qmodel m = model("gpt-oss", 24, 64, 8, 32);
    ts_qplan_opts o = opts(TS_FTYPE_Q2_K);
    ts_qplan p = build(&m, l, &o);
    EXPECT(&p, TS_Q5_0, "blk.0.attn_v.weight");      /* n_gqa 8 >= 4: Q4_K, then Q5_0 */
    EXPECT(&p, TS_Q4_0, "blk.0.attn_q.weight");      /* Q2_K -> Q4_0 */
    EXPECT(&p, TS_Q3_K, "blk.0.attn_output.weight"); /* 4096 fits Q3_K */
    EXPECT(&p, TS_MXFP4, "blk.0.ffn_down_exps.weight");
    EXPECT(&p, TS_MXFP4, "blk.0.ffn_up_exps.weight");
    EXPECT(&p, TS_Q4_0, "token_embd.weight");
    EXPECT(&p, TS_Q8_0, "output.weight");
    ts_qplan_free(&p);
    o.allow_requantize = true;
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q4_0, "blk.0.ffn_down_exps.weight"); /* Q3_K -> Q4_0 */
    EXPECT(&p, TS_Q4_0, "blk.0.ffn_gate_exps.weight");
    ts_qplan_free(&p);

    /* a --tensor-type rule forces a type without --allow-requantize; the others stay MXFP4; a real (not dry) run */
    ts_qoverrides *ov = NULL;
    ts_err err = {0};
    ck_assert_msg(ts_qoverrides_add(&ov, "ffn_up_exps=q8_0", &err) == TS_OK, "%s", err.msg);
    o = opts(TS_FTYPE_Q2_K);
    o.overrides = ov;
    o.dry_run = false;
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q8_0, "blk.5.ffn_up_exps.weight");
    EXPECT(&p, TS_MXFP4, "blk.5.ffn_gate_exps.weight");
    ts_qplan_free(&p);
    ts_qoverrides_free(ov);

    /* --pure and the float ftypes keep MXFP4 too */
    o = opts(TS_FTYPE_Q4_K_M);
    o.pure = true;
    p = build(&m, l, &o);
    EXPECT(&p, TS_MXFP4, "blk.0.ffn_down_exps.weight");
    EXPECT(&p, TS_Q5_0, "blk.0.attn_v.weight");
    ts_qplan_free(&p);
    o = opts(TS_FTYPE_F16);
    p = build(&m, l, &o);
    EXPECT(&p, TS_MXFP4, "blk.0.ffn_down_exps.weight");
    EXPECT(&p, TS_F16, "blk.0.attn_v.weight");
    ts_qplan_free(&p);
    o.allow_requantize = true;
    p = build(&m, l, &o);
    EXPECT(&p, TS_F16, "blk.0.ffn_down_exps.weight");
    ts_qplan_free(&p);

    /* another quantized input is still refused without --allow-requantize */
    l->t[2].dtype = TS_Q8_0; /* blk.0.attn_q */
    o = opts(TS_FTYPE_Q4_K_M);
    ck_assert_int_eq(ts_qplan_build(&m, l->p, l->n, &o, &p, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "blk.0.attn_q.weight") && strstr(err.msg, "--allow-requantize"), "%s", err.msg);
    free(l);
}
END_TEST

/* ---- GLM-4.5-Air (glm4moe) and Mixtral ---- */

START_TEST(glm4moe_nextn)
{
    /* 46 layers (the first dense) + NextN layer 46; embd 4096, 96 heads of 128, 8 KV heads, 128 experts of
     * 1408 (not a multiple of 256), dense ff 10944 (neither) */
    tlist *l = calloc(1, sizeof *l);
    add(l, TS_BF16, 4096, 151552, 1, "token_embd.weight");
    for (int i = 0; i < 47; i++) {
        add(l, TS_BF16, 4096, 12288, 1, "blk.%d.attn_q.weight", i);
        add(l, TS_F32, 12288, 1, 1, "blk.%d.attn_q.bias", i);
        add(l, TS_BF16, 4096, 1024, 1, "blk.%d.attn_k.weight", i);
        add(l, TS_BF16, 4096, 1024, 1, "blk.%d.attn_v.weight", i);
        add(l, TS_BF16, 12288, 4096, 1, "blk.%d.attn_output.weight", i);
        if (i == 0) {
            add(l, TS_BF16, 4096, 10944, 1, "blk.0.ffn_up.weight");
            add(l, TS_BF16, 10944, 4096, 1, "blk.0.ffn_down.weight");
            continue;
        }
        add(l, TS_F32, 4096, 128, 1, "blk.%d.ffn_gate_inp.weight", i);
        add(l, TS_F32, 128, 1, 1, "blk.%d.exp_probs_b.bias", i);
        add(l, TS_BF16, 4096, 1408, 128, "blk.%d.ffn_up_exps.weight", i);
        add(l, TS_BF16, 1408, 4096, 128, "blk.%d.ffn_down_exps.weight", i);
        add(l, TS_BF16, 1408, 4096, 1, "blk.%d.ffn_down_shexp.weight", i);
    }
    add(l, TS_BF16, 8192, 4096, 1, "blk.46.nextn.eh_proj.weight");
    add(l, TS_BF16, 4096, 151552, 1, "blk.46.nextn.shared_head_head.weight");
    add(l, TS_BF16, 4096, 151552, 1, "output.weight");
    ts_qmodel m = model("glm4moe", 47, 96, 8, 128);
    m.n_layer_nextn = 1;
    ts_qplan_opts o = opts(TS_FTYPE_Q4_K_M);
    ts_qplan p = build(&m, l, &o);
    /* use_more_bits(i, 47): i < 5, i >= 41, or (i - 5) % 3 == 2; the NextN layer's attn_v is the 47th */
    EXPECT(&p, TS_Q6_K, "blk.46.attn_v.weight");
    EXPECT(&p, TS_Q4_K, "blk.6.attn_v.weight");
    EXPECT(&p, TS_Q6_K, "blk.7.attn_v.weight");
    /* ffn_down rows of 1408 / 10944: Q6_K -> Q8_0, Q4_K -> Q5_0 */
    EXPECT(&p, TS_Q8_0, "blk.0.ffn_down.weight");
    EXPECT(&p, TS_Q5_0, "blk.6.ffn_down_exps.weight");
    EXPECT(&p, TS_Q8_0, "blk.7.ffn_down_shexp.weight");
    EXPECT(&p, TS_Q8_0, "blk.46.ffn_down_exps.weight");
    EXPECT(&p, TS_Q4_K, "blk.46.nextn.eh_proj.weight");
    EXPECT(&p, TS_Q4_K, "blk.46.nextn.shared_head_head.weight");
    EXPECT(&p, TS_Q4_K, "blk.3.attn_k.weight");
    EXPECT(&p, TS_F32, "blk.3.exp_probs_b.bias");
    ts_qplan_free(&p);
    free(l);
}
END_TEST

START_TEST(mixtral_8x7b)
{
    /* llama with 8 experts, 32 layers: the 8-expert bumps, and no 70B rule (LLM_TYPE_8x7B) */
    tlist *l = calloc(1, sizeof *l);
    add(l, TS_F16, 4096, 32000, 1, "token_embd.weight");
    for (int i = 0; i < 32; i++) {
        add(l, TS_F16, 4096, 4096, 1, "blk.%d.attn_q.weight", i);
        add(l, TS_F16, 4096, 1024, 1, "blk.%d.attn_k.weight", i);
        add(l, TS_F16, 4096, 1024, 1, "blk.%d.attn_v.weight", i);
        add(l, TS_F16, 4096, 4096, 1, "blk.%d.attn_output.weight", i);
        add(l, TS_F32, 4096, 8, 1, "blk.%d.ffn_gate_inp.weight", i);
        add(l, TS_F16, 4096, 14336, 8, "blk.%d.ffn_gate_exps.weight", i);
        add(l, TS_F16, 14336, 4096, 8, "blk.%d.ffn_down_exps.weight", i);
    }
    add(l, TS_F16, 4096, 32000, 1, "output.weight");
    ts_qmodel m = model("llama", 32, 32, 8, 8);
    ts_qplan_opts o = opts(TS_FTYPE_Q2_K);
    ts_qplan p = build(&m, l, &o);
    EXPECT(&p, TS_Q8_0, "blk.0.attn_v.weight");
    EXPECT(&p, TS_Q8_0, "blk.0.attn_k.weight");
    EXPECT(&p, TS_Q5_K, "blk.0.attn_output.weight");
    EXPECT(&p, TS_Q3_K, "blk.9.ffn_down_exps.weight");
    EXPECT(&p, TS_Q2_K, "blk.9.ffn_gate_exps.weight");
    ts_qplan_free(&p);
    o = opts(TS_FTYPE_Q4_K_M);
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q6_K, "blk.6.ffn_down_exps.weight"); /* (6 - 4) % 3 == 2 */
    EXPECT(&p, TS_Q4_K, "blk.5.ffn_down_exps.weight");
    EXPECT(&p, TS_Q5_K, "blk.5.attn_output.weight");
    ts_qplan_free(&p);
    free(l);
}
END_TEST

/* ---- the mxfp4 row of the type table ---- */

START_TEST(mxfp4_rows)
{
    const ts_quant_type *q = ts_quant_type_get(TS_MXFP4);
    ck_assert_ptr_nonnull(q);
    ck_assert(ts_quant_type_writable(TS_MXFP4));
    /* scale byte 128: d = 2^(128 - 128) = 1 on ggml's doubled values, i.e. the E2M1 values times 2 */
    uint8_t blk[17] = {128};
    for (int j = 0; j < 16; j++)
        blk[1 + j] = (uint8_t)(j | (15 - j) << 4);
    static const float kv[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    float x[32];
    q->dequantize_row(blk, x, 32);
    for (int j = 0; j < 16; j++) {
        ck_assert_float_eq(x[j], kv[j]);
        ck_assert_float_eq(x[16 + j], kv[15 - j]);
    }
    /* values on the grid come back bit for bit; amax 12: e = floor(log2 12) - 2 + 127 = 128 */
    uint8_t back[17];
    ck_assert_uint_eq(q->quantize_rows(x, back, 1, 32, NULL), 17);
    float y[32];
    q->dequantize_row(back, y, 32);
    ck_assert_int_eq(back[0], 128);
    ck_assert_int_eq(memcmp(x, y, sizeof x), 0);
    /* scale 0 and 1 are the subnormals 2^-128 and 2^-127; 0 for an all-zero block */
    blk[0] = 1;
    q->dequantize_row(blk, x, 32);
    ck_assert_float_eq(x[1], ldexpf(1.0f, -127));
    float zero[32] = {0};
    q->quantize_rows(zero, back, 1, 32, NULL);
    ck_assert_int_eq(back[0], 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("quant_plan_moe");
    TCase *tc = tcase_create("families");
    tcase_add_test(tc, deepseek_q4_k_m);
    tcase_add_test(tc, deepseek_q2_k);
    tcase_add_test(tc, gptoss_q4_k_m);
    tcase_add_test(tc, gptoss_q2_k_and_controls);
    tcase_add_test(tc, glm4moe_nextn);
    tcase_add_test(tc, mixtral_8x7b);
    tcase_add_test(tc, mxfp4_rows);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
