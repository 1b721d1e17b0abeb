/* The quantization planner on synthetic tensor lists: llama.cpp's mix rules
 * (expected types worked out by hand from src/llama-quant.cpp of llama.cpp
 * v0.5.0, with the reasoning next to each check), overrides, fallbacks, the
 * imatrix requirement, and the imatrix readers (GGUF and legacy .dat, good
 * and bad files). */
#define _GNU_SOURCE
#include "testutil.h"
#include "quant_plan_util.h"
#include "formats/gguf.h"
#include "quant/imatrix.h"
#include "quant/planner.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- synthetic tensor lists (helpers in quant_plan_util.h) ---- */

/* A llama-like model in the order llama.cpp's converter writes it. */
static tlist *llama_list(int n_layer, int64_t embd, int64_t ff, int64_t kv_dim, int64_t vocab, bool tied)
{
    tlist *l = calloc(1, sizeof *l);
    add(l, TS_F16, embd, vocab, 1, "token_embd.weight");
    for (int i = 0; i < n_layer; i++) {
        add(l, TS_F32, embd, 1, 1, "blk.%d.attn_norm.weight", i);
        add(l, TS_F16, embd, embd, 1, "blk.%d.attn_q.weight", i);
        add(l, TS_F16, embd, kv_dim, 1, "blk.%d.attn_k.weight", i);
        add(l, TS_F16, embd, kv_dim, 1, "blk.%d.attn_v.weight", i);
        add(l, TS_F16, embd, embd, 1, "blk.%d.attn_output.weight", i);
        add(l, TS_F32, embd, 1, 1, "blk.%d.ffn_norm.weight", i);
        add(l, TS_F16, embd, ff, 1, "blk.%d.ffn_gate.weight", i);
        add(l, TS_F16, embd, ff, 1, "blk.%d.ffn_up.weight", i);
        add(l, TS_F16, ff, embd, 1, "blk.%d.ffn_down.weight", i);
    }
    add(l, TS_F32, embd, 1, 1, "output_norm.weight");
    if (!tied)
        add(l, TS_F16, embd, vocab, 1, "output.weight");
    return l;
}

/* A qwen3moe-like model: stacked experts, router, q/k norms. */
static tlist *moe_list(int n_layer, int64_t embd, int64_t ff_exp, int n_expert)
{
    tlist *l = calloc(1, sizeof *l);
    add(l, TS_BF16, embd, 151936, 1, "token_embd.weight");
    for (int i = 0; i < n_layer; i++) {
        add(l, TS_F32, embd, 1, 1, "blk.%d.attn_norm.weight", i);
        add(l, TS_BF16, embd, 4096, 1, "blk.%d.attn_q.weight", i);
        add(l, TS_F32, 128, 1, 1, "blk.%d.attn_q_norm.weight", i);
        add(l, TS_BF16, embd, 512, 1, "blk.%d.attn_k.weight", i);
        add(l, TS_F32, 128, 1, 1, "blk.%d.attn_k_norm.weight", i);
        add(l, TS_BF16, embd, 512, 1, "blk.%d.attn_v.weight", i);
        add(l, TS_BF16, 4096, embd, 1, "blk.%d.attn_output.weight", i);
        add(l, TS_F32, embd, 1, 1, "blk.%d.ffn_norm.weight", i);
        add(l, TS_F32, embd, n_expert, 1, "blk.%d.ffn_gate_inp.weight", i);
        add(l, TS_BF16, embd, ff_exp, n_expert, "blk.%d.ffn_gate_exps.weight", i);
        add(l, TS_BF16, embd, ff_exp, n_expert, "blk.%d.ffn_up_exps.weight", i);
        add(l, TS_BF16, ff_exp, embd, n_expert, "blk.%d.ffn_down_exps.weight", i);
    }
    add(l, TS_F32, embd, 1, 1, "output_norm.weight");
    add(l, TS_BF16, embd, 151936, 1, "output.weight");
    return l;
}

/* llama.cpp's use_more_bits for 32 layers: i < 4, i >= 28, or (i - 4) % 3 == 2. */
static bool more_bits_32(int i) { return i < 4 || i >= 28 || (i - 4) % 3 == 2; }

/* ---- dense 32-layer llama (GQA 4: 32 heads, 8 KV heads) ---- */

START_TEST(llama32_q4_k_m)
{
    tlist *l = llama_list(32, 4096, 11008, 1024, 32000, false);
    ts_qmodel m = model("llama", 32, 32, 8, 0);
    ts_qplan_opts o = opts(TS_FTYPE_Q4_K_M);
    ts_qplan p = build(&m, l, &o);
    EXPECT(&p, TS_Q6_K, "output.weight");       /* output rule: Q6_K */
    EXPECT(&p, TS_Q4_K, "token_embd.weight");   /* untied: the mix's default */
    EXPECT(&p, TS_F32, "output_norm.weight");   /* 1-D */
    for (int i = 0; i < 32; i++) {
        /* attn_v counter == layer; ffn_down counter == layer (one per layer, sorted by layer) */
        EXPECT(&p, more_bits_32(i) ? TS_Q6_K : TS_Q4_K, "blk.%d.attn_v.weight", i);
        EXPECT(&p, more_bits_32(i) ? TS_Q6_K : TS_Q4_K, "blk.%d.ffn_down.weight", i);
        EXPECT(&p, TS_Q4_K, "blk.%d.attn_q.weight", i);
        EXPECT(&p, TS_Q4_K, "blk.%d.attn_k.weight", i);
        EXPECT(&p, TS_Q4_K, "blk.%d.attn_output.weight", i);
        EXPECT(&p, TS_Q4_K, "blk.%d.ffn_gate.weight", i);
        EXPECT(&p, TS_Q4_K, "blk.%d.ffn_up.weight", i);
        EXPECT(&p, TS_F32, "blk.%d.attn_norm.weight", i);
    }
    /* spot checks of the pattern itself */
    EXPECT(&p, TS_Q6_K, "blk.6.attn_v.weight");
    EXPECT(&p, TS_Q4_K, "blk.7.attn_v.weight");
    EXPECT(&p, TS_Q6_K, "blk.27.ffn_down.weight");
    EXPECT(&p, TS_Q4_K, "blk.26.ffn_down.weight");
    ck_assert_int_eq(p.n_fallback, 0);
    ck_assert(!p.needs_imatrix);
    ts_qplan_free(&p);
    free(l);
}
END_TEST

START_TEST(llama32_other_mixes)
{
    tlist *l = llama_list(32, 4096, 11008, 1024, 32000, false);
    ts_qmodel m = model("llama", 32, 32, 8, 0);
    ts_qplan_opts o = opts(TS_FTYPE_Q3_K_M);
    ts_qplan p = build(&m, l, &o);
    /* Q3_K_M: attn_v Q5_K for the first two, Q4_K after; ffn_down Q5_K below n/16 = 2, else Q4_K; attn_output Q4_K */
    EXPECT(&p, TS_Q5_K, "blk.1.attn_v.weight");
    EXPECT(&p, TS_Q4_K, "blk.2.attn_v.weight");
    EXPECT(&p, TS_Q5_K, "blk.1.ffn_down.weight");
    EXPECT(&p, TS_Q4_K, "blk.2.ffn_down.weight");
    EXPECT(&p, TS_Q4_K, "blk.9.attn_output.weight");
    EXPECT(&p, TS_Q3_K, "blk.9.attn_q.weight");
    EXPECT(&p, TS_Q3_K, "token_embd.weight");
    EXPECT(&p, TS_Q6_K, "output.weight");
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_Q2_K); /* GQA 4: attn_v Q4_K; ffn_down Q3_K; attn_output Q3_K */
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q4_K, "blk.5.attn_v.weight");
    EXPECT(&p, TS_Q3_K, "blk.5.ffn_down.weight");
    EXPECT(&p, TS_Q3_K, "blk.5.attn_output.weight");
    EXPECT(&p, TS_Q2_K, "blk.5.ffn_up.weight");
    ck_assert(!p.needs_imatrix); /* Q2_K only requires one inside Q2_K_S */
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_Q2_K_S); /* attn_v Q4_K (GQA 4); ffn_down Q4_K below n/8 = 4 */
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q4_K, "blk.5.attn_v.weight");
    EXPECT(&p, TS_Q4_K, "blk.3.ffn_down.weight");
    EXPECT(&p, TS_Q2_K, "blk.4.ffn_down.weight");
    EXPECT(&p, TS_Q2_K, "blk.4.attn_output.weight");
    ck_assert(p.needs_imatrix); /* its Q2_K tensors need an imatrix */
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_Q4_K_S); /* attn_v Q5_K for the first 4; ffn_down Q5_K below 4 */
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q5_K, "blk.3.attn_v.weight");
    EXPECT(&p, TS_Q4_K, "blk.4.attn_v.weight");
    EXPECT(&p, TS_Q5_K, "blk.3.ffn_down.weight");
    EXPECT(&p, TS_Q4_K, "blk.31.ffn_down.weight");
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_Q5_K_M);
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q6_K, "blk.9.attn_v.weight");
    EXPECT(&p, TS_Q5_K, "blk.10.attn_v.weight");
    EXPECT(&p, TS_Q6_K, "blk.30.ffn_down.weight");
    EXPECT(&p, TS_Q5_K, "blk.10.ffn_down.weight");
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_IQ4_XS); /* no imatrix: ffn_down Q5_K below 4; GQA 4: attn_v Q5_K */
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q5_K, "blk.0.ffn_down.weight");
    EXPECT(&p, TS_IQ4_XS, "blk.4.ffn_down.weight");
    EXPECT(&p, TS_Q5_K, "blk.20.attn_v.weight");
    EXPECT(&p, TS_IQ4_XS, "token_embd.weight");
    EXPECT(&p, TS_Q6_K, "output.weight");
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_Q8_0); /* everything Q8_0, output too */
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q8_0, "output.weight");
    EXPECT(&p, TS_Q8_0, "blk.0.attn_v.weight");
    EXPECT(&p, TS_Q8_0, "blk.0.ffn_down.weight");
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_Q4_0); /* no imatrix: no ffn_down bump; output Q6_K */
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q4_0, "blk.0.ffn_down.weight");
    EXPECT(&p, TS_Q6_K, "output.weight");
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_F16); /* not a quantized mix: no rules at all */
    p = build(&m, l, &o);
    EXPECT(&p, TS_F16, "output.weight");
    EXPECT(&p, TS_F16, "blk.0.attn_v.weight");
    EXPECT(&p, TS_F32, "blk.0.ffn_norm.weight");
    ts_qplan_free(&p);
    free(l);
}
END_TEST

START_TEST(llama_gqa1_and_70b)
{
    tlist *l = llama_list(32, 4096, 11008, 4096, 32000, false);
    ts_qmodel m = model("llama", 32, 32, 32, 0); /* no GQA */
    ts_qplan_opts o = opts(TS_FTYPE_Q2_K);
    ts_qplan p = build(&m, l, &o);
    EXPECT(&p, TS_Q3_K, "blk.5.attn_v.weight"); /* GQA < 4: Q3_K */
    ts_qplan_free(&p);
    o = opts(TS_FTYPE_IQ4_NL);
    p = build(&m, l, &o);
    EXPECT(&p, TS_IQ4_NL, "blk.5.attn_v.weight"); /* GQA < 4: no bump */
    ts_qplan_free(&p);
    free(l);

    /* 70B (llama, 80 layers, 64 heads, 8 KV heads): attn_v Q3_K/Q4_K -> Q5_K */
    l = llama_list(80, 8192, 28672, 1024, 128, false);
    m = model("llama", 80, 64, 8, 0);
    o = opts(TS_FTYPE_Q4_K_S);
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q5_K, "blk.3.attn_v.weight");
    EXPECT(&p, TS_Q5_K, "blk.40.attn_v.weight"); /* Q4_K bumped */
    EXPECT(&p, TS_Q4_K, "blk.40.attn_q.weight");
    ts_qplan_free(&p);
    o = opts(TS_FTYPE_Q4_K_M);
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q6_K, "blk.0.attn_v.weight"); /* Q6_K is not bumped */
    EXPECT(&p, TS_Q5_K, "blk.11.attn_v.weight"); /* 80 layers: 11-10 = 1, not more bits -> Q4_K -> Q5_K */
    ts_qplan_free(&p);
    free(l);
}
END_TEST

/* ---- 8-expert MoE ---- */

START_TEST(moe8_mixes)
{
    tlist *l = moe_list(8, 2048, 768, 8);
    ts_qmodel m = model("qwen3moe", 8, 32, 4, 8);
    ts_qplan_opts o = opts(TS_FTYPE_Q4_K_M);
    ts_qplan p = build(&m, l, &o);
    /* n_expert == 8: attn_v and attn_k Q8_0, attn_output Q5_K (Q4_K_M is in that list) */
    EXPECT(&p, TS_Q8_0, "blk.2.attn_v.weight");
    EXPECT(&p, TS_Q8_0, "blk.2.attn_k.weight");
    EXPECT(&p, TS_Q5_K, "blk.2.attn_output.weight");
    EXPECT(&p, TS_Q4_K, "blk.2.attn_q.weight");
    /* ffn_down_exps: layer from the name; use_more_bits(l, 8): l < 1, l >= 7, (l - 1) % 3 == 2 */
    EXPECT(&p, TS_Q6_K, "blk.0.ffn_down_exps.weight");
    EXPECT(&p, TS_Q4_K, "blk.1.ffn_down_exps.weight");
    EXPECT(&p, TS_Q6_K, "blk.3.ffn_down_exps.weight");
    EXPECT(&p, TS_Q6_K, "blk.6.ffn_down_exps.weight");
    EXPECT(&p, TS_Q6_K, "blk.7.ffn_down_exps.weight");
    EXPECT(&p, TS_Q4_K, "blk.5.ffn_gate_exps.weight");
    /* router and norms stay as stored */
    EXPECT(&p, TS_F32, "blk.0.ffn_gate_inp.weight");
    EXPECT(&p, TS_F32, "blk.0.attn_q_norm.weight");
    EXPECT(&p, TS_Q6_K, "output.weight");
    EXPECT(&p, TS_Q4_K, "token_embd.weight");
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_Q3_K_L); /* not in the 8-expert attn_output list: default Q3_K */
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q3_K, "blk.1.attn_output.weight");
    EXPECT(&p, TS_Q8_0, "blk.1.attn_v.weight");
    EXPECT(&p, TS_Q5_K, "blk.1.ffn_down_exps.weight");
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_Q5_K_M);
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q5_K, "blk.1.attn_output.weight");
    EXPECT(&p, TS_Q8_0, "blk.1.attn_k.weight");
    ts_qplan_free(&p);

    /* the bytes of a stacked tensor count every expert */
    o = opts(TS_FTYPE_Q8_0);
    p = build(&m, l, &o);
    for (size_t i = 0; i < p.n; i++)
        if (!strcmp(p.t[i].name, "blk.0.ffn_up_exps.weight"))
            ck_assert_uint_eq(p.t[i].bytes, (uint64_t)2048 / 32 * 34 * 768 * 8);
    ts_qplan_free(&p);
    free(l);
}
END_TEST

/* ---- rows that do not fit: qwen3-tok-small's shapes (embd 128, ff 384, tied) ---- */

START_TEST(fallbacks)
{
    tlist *l = llama_list(4, 128, 384, 64, 151936, true);
    ts_qmodel m = model("qwen3", 4, 4, 2, 0);
    ts_qplan_opts o = opts(TS_FTYPE_Q4_K_M);
    ts_qplan p = build(&m, l, &o);
    /* tied: token_embd takes the output rule; 128 % 256 != 0 -> Q8_0 (fits: no fallback) */
    EXPECT(&p, TS_Q8_0, "token_embd.weight");
    /* Q4_K on 128 columns -> Q5_0 */
    EXPECT(&p, TS_Q5_0, "blk.0.attn_q.weight");
    /* attn_v, 4 layers: use_more_bits(i, 4) for i = 2, 3 -> Q6_K -> (fallback) Q8_0 */
    EXPECT(&p, TS_Q5_0, "blk.1.attn_v.weight");
    EXPECT(&p, TS_Q8_0, "blk.2.attn_v.weight");
    EXPECT(&p, TS_Q8_0, "blk.3.ffn_down.weight"); /* 384 columns: Q6_K -> Q8_0 */
    EXPECT(&p, TS_Q5_0, "blk.0.ffn_down.weight");
    ck_assert_int_eq(p.n_fallback, 7 * 4);
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_Q4_0); /* token_embd: output rule Q6_K, then 128 % 256 -> Q8_0 (one fallback) */
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q8_0, "token_embd.weight");
    EXPECT(&p, TS_Q4_0, "blk.0.attn_q.weight");
    ck_assert_int_eq(p.n_fallback, 1);
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_Q5_K_S); /* Q5_K -> Q5_1 */
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q5_1, "blk.0.attn_q.weight");
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_Q3_K_S); /* Q3_K -> Q4_0 */
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q4_0, "blk.0.attn_q.weight");
    ts_qplan_free(&p);

    o = opts(TS_FTYPE_IQ4_XS); /* IQ4_XS -> IQ4_NL */
    p = build(&m, l, &o);
    EXPECT(&p, TS_IQ4_NL, "blk.0.ffn_up.weight");
    ts_qplan_free(&p);
    free(l);

    /* a row that not even 32 divides: F16 */
    l = llama_list(1, 64, 72, 64, 256, false);
    m = model("llama", 1, 4, 4, 0);
    o = opts(TS_FTYPE_Q4_K_S);
    p = build(&m, l, &o);
    EXPECT(&p, TS_F16, "blk.0.ffn_down.weight"); /* 72 columns: Q4_K -> Q5_0 does not fit -> F16 */
    EXPECT(&p, TS_Q5_0, "blk.0.attn_q.weight");
    EXPECT(&p, TS_Q8_0, "output.weight"); /* 64 % 256 -> Q8_0 by the output rule */
    ts_qplan_free(&p);
    free(l);
}
END_TEST

/* ---- controls ---- */

START_TEST(overrides_and_counters)
{
    tlist *l = llama_list(32, 4096, 11008, 1024, 32000, false);
    ts_qmodel m = model("llama", 32, 32, 8, 0);
    ts_qoverrides *ov = NULL;
    ts_err err = {0};
    ck_assert_msg(ts_qoverrides_add(&ov, "blk\\.[01]\\.attn_v=Q8_0", &err) == TS_OK, "%s", err.msg);
    ck_assert_msg(ts_qoverrides_add(&ov, "ffn_up=q5_k", &err) == TS_OK, "%s", err.msg);
    ck_assert_msg(ts_qoverrides_add(&ov, "FFN_=q6_K", &err) == TS_OK, "%s", err.msg); /* case-insensitive */
    ck_assert_msg(ts_qoverrides_add(&ov, "ffn_up=q4_0", &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(ts_qoverrides_count(ov), 4);
    ck_assert_str_eq(ts_qoverrides_spec(ov, 0), "blk\\.[01]\\.attn_v=q8_0");
    ts_qplan_opts o = opts(TS_FTYPE_Q4_K_M);
    o.overrides = ov;
    ts_qplan p = build(&m, l, &o);
    EXPECT(&p, TS_Q8_0, "blk.0.attn_v.weight");
    EXPECT(&p, TS_Q8_0, "blk.1.attn_v.weight");
    /* overridden tensors do not advance the attn_v counter: layer 2 is index 0, layer 6 is index 4 */
    EXPECT(&p, TS_Q6_K, "blk.2.attn_v.weight");
    EXPECT(&p, TS_Q6_K, "blk.5.attn_v.weight");
    EXPECT(&p, TS_Q4_K, "blk.6.attn_v.weight");
    EXPECT(&p, TS_Q6_K, "blk.8.attn_v.weight");
    /* first match wins: ffn_up -> q5_K, not q4_0; other ffn_ tensors -> q6_K */
    EXPECT(&p, TS_Q5_K, "blk.3.ffn_up.weight");
    EXPECT(&p, TS_Q6_K, "blk.3.ffn_gate.weight");
    EXPECT(&p, TS_Q6_K, "blk.10.ffn_down.weight");
    EXPECT(&p, TS_F32, "blk.10.ffn_norm.weight"); /* never quantized, whatever matches */
    ts_qplan_free(&p);

    /* --pure: the base type everywhere, output and token_embd included */
    o = opts(TS_FTYPE_Q4_K_M);
    o.pure = true;
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q4_K, "output.weight");
    EXPECT(&p, TS_Q4_K, "blk.0.attn_v.weight");
    EXPECT(&p, TS_Q4_K, "blk.0.ffn_down.weight");
    ts_qplan_free(&p);

    /* --output-tensor-type / --token-embedding-type */
    o = opts(TS_FTYPE_Q4_K_M);
    o.output_tensor_type = TS_Q8_0;
    o.token_embedding_type = TS_Q5_K;
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q8_0, "output.weight");
    EXPECT(&p, TS_Q5_K, "token_embd.weight");
    ts_qplan_free(&p);
    free(l);

    /* tied embeddings follow --output-tensor-type through the output rule */
    l = llama_list(2, 256, 512, 256, 1000, true);
    m = model("llama", 2, 8, 8, 0);
    o = opts(TS_FTYPE_Q4_K_M);
    o.output_tensor_type = TS_Q5_K;
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q5_K, "token_embd.weight");
    ts_qplan_free(&p);
    free(l);

    /* overrides are ignored for the F16 ftype, as llama.cpp only applies them to quantized mixes */
    l = llama_list(2, 256, 512, 256, 1000, false);
    o = opts(TS_FTYPE_F16);
    o.overrides = ov;
    p = build(&m, l, &o);
    EXPECT(&p, TS_F16, "blk.0.attn_v.weight");
    ts_qplan_free(&p);
    free(l);
    ts_qoverrides_free(ov);
}
END_TEST

START_TEST(bad_overrides)
{
    ts_qoverrides *ov = NULL;
    ts_err err = {0};
    ck_assert_int_eq(ts_qoverrides_add(&ov, "attn_(=q4_K", &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "does not compile") && strstr(err.msg, "attn_("), "%s", err.msg);
    ck_assert_int_eq(ts_qoverrides_add(&ov, "attn_v=q9_9", &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "q9_9"), "%s", err.msg);
    ck_assert_int_eq(ts_qoverrides_add(&ov, "attn_v=iq2_xxs", &err), TS_ERR_ARG); /* a ggml type we do not write */
    ck_assert_msg(strstr(err.msg, "does not write"), "%s", err.msg);
    ck_assert_int_eq(ts_qoverrides_add(&ov, "attn_v", &err), TS_ERR_ARG);
    ck_assert_int_eq(ts_qoverrides_add(&ov, "=q8_0", &err), TS_ERR_ARG);
    ck_assert_ptr_null(ov);
    ts_dtype t;
    ck_assert_int_eq(ts_quant_parse_type("--output-tensor-type", "q4_k", &t, &err), TS_OK);
    ck_assert_int_eq(t, TS_Q4_K);
}
END_TEST

START_TEST(requirements_and_refusals)
{
    tlist *l = llama_list(8, 256, 512, 256, 1000, false);
    ts_qmodel m = model("llama", 8, 8, 8, 0);
    ts_qplan_opts o = opts(TS_FTYPE_Q2_K_S);
    o.dry_run = false;
    ts_qplan p;
    ts_err err = {0};
    ck_assert_int_eq(ts_qplan_build(&m, l->p, l->n, &o, &p, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "importance matrix") && strstr(err.msg, "blk."), "%s", err.msg);

    /* a quantized input is refused without allow_requantize */
    l->t[1 + 1].dtype = TS_Q8_0; /* blk.0.attn_q */
    o = opts(TS_FTYPE_Q4_0);
    ck_assert_int_eq(ts_qplan_build(&m, l->p, l->n, &o, &p, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "blk.0.attn_q.weight") && strstr(err.msg, "--allow-requantize"), "%s", err.msg);
    o.allow_requantize = true;
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q4_0, "blk.0.attn_q.weight");
    ts_qplan_free(&p);

    /* --output-tensor-type skips the fallback: a type whose block does not fit is an error */
    free(l);
    l = llama_list(1, 128, 256, 128, 1000, false);
    o = opts(TS_FTYPE_Q8_0);
    o.output_tensor_type = TS_Q4_K;
    ck_assert_int_eq(ts_qplan_build(&m, l->p, l->n, &o, &p, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "output.weight") && strstr(err.msg, "q4_K"), "%s", err.msg);

    /* MoE ffn tensors must name their layer */
    free(l);
    l = calloc(1, sizeof *l);
    add(l, TS_F16, 256, 256, 8, "ffn_down_exps.weight");
    m = model("qwen3moe", 2, 8, 8, 8);
    o = opts(TS_FTYPE_Q4_K_M);
    ck_assert_int_eq(ts_qplan_build(&m, l->p, l->n, &o, &p, &err), TS_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "ffn_down_exps.weight"), "%s", err.msg);
    free(l);

    ck_assert(!ts_quant_tensor_allowed("blk.0.ffn_gate_inp.weight", 2));
    ck_assert(!ts_quant_tensor_allowed("blk.0.attn_norm.weight", 2));
    ck_assert(!ts_quant_tensor_allowed("position_embd.weight", 2));
    ck_assert(!ts_quant_tensor_allowed("blk.0.attn_q.bias", 2));
    ck_assert(!ts_quant_tensor_allowed("blk.0.attn_q.weight", 1));
    ck_assert(ts_quant_tensor_allowed("blk.0.ffn_up_exps.weight", 3));
}
END_TEST

/* ---- imatrix files ---- */

static char *write_imatrix_gguf(const char *file, const char *const *names, const int64_t *n_per_row,
                                const int64_t *n_mat, size_t n, const float *counts_override, bool drop_counts)
{
    ts_gguf_writer *w;
    ts_err err = {0};
    ck_assert(ts_gguf_writer_new(&w, &err) == TS_OK);
    ts_gguf_set_str(w, "general.type", "imatrix");
    const char *ds[] = {"wiki.train.raw"};
    ts_gguf_set_arr_str(w, "imatrix.datasets", ds, 1);
    ts_gguf_set_u32(w, "imatrix.chunk_count", 100);
    ts_gguf_set_u32(w, "imatrix.chunk_size", 512);
    for (size_t i = 0; i < n; i++) {
        char nm[TS_MAX_NAME];
        int64_t ne[2] = {n_per_row[i], n_mat[i]};
        snprintf(nm, sizeof nm, "%s.in_sum2", names[i]);
        ck_assert(ts_gguf_add_tensor(w, nm, TS_F32, 2, ne, &err) == TS_OK);
        if (drop_counts && i == n - 1)
            continue;
        int64_t ce[2] = {1, n_mat[i]};
        snprintf(nm, sizeof nm, "%s.counts", names[i]);
        ck_assert(ts_gguf_add_tensor(w, nm, TS_F32, 2, ce, &err) == TS_OK);
    }
    char *path;
    ck_assert(asprintf(&path, "%s/%s", tu_tmpdir(), file) > 0);
    ck_assert_msg(ts_gguf_writer_begin(w, path, NULL, &err) == TS_OK, "%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        int64_t nv = n_per_row[i] * n_mat[i];
        float *s = malloc((size_t)nv * sizeof *s);
        for (int64_t k = 0; k < nv; k++)
            s[k] = (float)(k % n_per_row[i] + 1) * 10.0f; /* sum of squares over `count` tokens */
        ck_assert(ts_gguf_write_tensor_data(w, s, (uint64_t)nv * 4, &err) == TS_OK);
        free(s);
        if (drop_counts && i == n - 1)
            continue;
        float *c = malloc((size_t)n_mat[i] * sizeof *c);
        for (int64_t k = 0; k < n_mat[i]; k++)
            c[k] = counts_override ? counts_override[k] : 5.0f;
        ck_assert(ts_gguf_write_tensor_data(w, c, (uint64_t)n_mat[i] * 4, &err) == TS_OK);
        free(c);
    }
    ck_assert_msg(ts_gguf_writer_finish(w, &err) == TS_OK, "%s", err.msg);
    ts_gguf_writer_free(w);
    return path;
}

START_TEST(imatrix_gguf)
{
    const char *names[] = {"blk.0.attn_q.weight", "blk.0.ffn_down_exps.weight"};
    int64_t npr[] = {256, 64}, nmat[] = {1, 8};
    float counts[8] = {5, 5, 5, 0, 5, 5, 5, 10}; /* expert 3 saw no tokens */
    char *path = write_imatrix_gguf("im.gguf", names, npr, nmat, 1, NULL, false);
    ts_imatrix *im;
    ts_err err = {0};
    ck_assert_msg(ts_imatrix_load(path, &im, &err) == TS_OK, "%s", err.msg);
    ck_assert(!im->legacy);
    ck_assert_uint_eq(im->n_entries, 1);
    ck_assert_int_eq(im->chunk_count, 100);
    ck_assert_int_eq(im->chunk_size, 512);
    ck_assert_uint_eq(im->n_datasets, 1);
    ck_assert_str_eq(im->datasets[0], "wiki.train.raw");
    const ts_imatrix_entry *e = ts_imatrix_find(im, "blk.0.attn_q.weight");
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->n_values, 256);
    ck_assert_float_eq(e->weights[3], 40.0f / 5.0f); /* sums / count */
    ts_imatrix_free(im);
    free(path);

    /* per-expert counts, one of them zero: that expert's weights are 1 */
    const char *moe[] = {"blk.0.ffn_down_exps.weight"};
    path = write_imatrix_gguf("im-moe.gguf", moe, npr + 1, nmat + 1, 1, counts, false);
    ck_assert_msg(ts_imatrix_load(path, &im, &err) == TS_OK, "%s", err.msg);
    e = ts_imatrix_find(im, moe[0]);
    ck_assert_int_eq(e->n_mat, 8);
    ck_assert_int_eq(e->n_mat_unseen, 1);
    ck_assert_float_eq(e->weights[0 * 64 + 1], 20.0f / 5.0f);
    ck_assert_float_eq(e->weights[3 * 64 + 1], 1.0f);
    ck_assert_float_eq(e->weights[7 * 64 + 1], 20.0f / 10.0f);

    /* against a model: matching sizes are accepted, and the plan uses the weights */
    tlist *l = moe_list(2, 256, 64, 8);
    ts_qmodel m = model("qwen3moe", 2, 8, 8, 8);
    ts_qplan_opts o = opts(TS_FTYPE_Q8_0);
    o.imatrix = im;
    ts_qplan p = build(&m, l, &o);
    for (size_t i = 0; i < p.n; i++)
        ck_assert(p.t[i].imatrix == (strcmp(p.t[i].name, moe[0]) ? NULL : e->weights));
    ck_assert_uint_eq(p.n_imatrix_used, 1);
    ts_qplan_free(&p);
    free(l);

    /* an imatrix for another model: sizes differ */
    l = moe_list(2, 256, 128, 8);
    ts_qplan_opts o2 = opts(TS_FTYPE_Q8_0);
    o2.imatrix = im;
    ck_assert_int_eq(ts_qplan_build(&m, l->p, l->n, &o2, &p, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, moe[0]) && strstr(err.msg, "512") && strstr(err.msg, "1024"), "%s", err.msg);
    free(l);
    /* ... or names differ */
    l = llama_list(2, 256, 512, 256, 1000, false);
    m = model("llama", 2, 8, 8, 0);
    ck_assert_int_eq(ts_qplan_build(&m, l->p, l->n, &o2, &p, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "names no tensor") && strstr(err.msg, moe[0]), "%s", err.msg);
    free(l);
    ts_imatrix_free(im);
    free(path);

    /* imatrix presence changes the mix: Q4_0 ffn_down below n/8 -> Q4_1; IQ4_NL keeps ffn_down */
    const char *q[] = {"blk.0.ffn_down.weight"};
    int64_t qn[] = {512}, qm[] = {1};
    path = write_imatrix_gguf("im-q.gguf", q, qn, qm, 1, NULL, false);
    ck_assert_msg(ts_imatrix_load(path, &im, &err) == TS_OK, "%s", err.msg);
    l = llama_list(8, 256, 512, 256, 1000, false);
    m = model("llama", 8, 8, 8, 0);
    o = opts(TS_FTYPE_Q4_0);
    o.imatrix = im;
    p = build(&m, l, &o);
    EXPECT(&p, TS_Q4_1, "blk.0.ffn_down.weight");
    EXPECT(&p, TS_Q4_0, "blk.1.ffn_down.weight");
    ts_qplan_free(&p);
    o.ftype = TS_FTYPE_IQ4_NL;
    p = build(&m, l, &o);
    EXPECT(&p, TS_IQ4_NL, "blk.0.ffn_down.weight");
    ts_qplan_free(&p);
    /* Q2_K_S with an imatrix lacking an entry its Q2_K tensors need */
    o.ftype = TS_FTYPE_Q2_K_S;
    o.dry_run = false;
    ck_assert_int_eq(ts_qplan_build(&m, l->p, l->n, &o, &p, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "no entry"), "%s", err.msg);
    free(l);
    ts_imatrix_free(im);
    free(path);
}
END_TEST

START_TEST(imatrix_bad_gguf)
{
    const char *names[] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight"};
    int64_t npr[] = {256, 256}, nmat[] = {1, 1};
    char *path = write_imatrix_gguf("im-nocounts.gguf", names, npr, nmat, 2, NULL, true);
    ts_imatrix *im;
    ts_err err = {0};
    ck_assert_int_eq(ts_imatrix_load(path, &im, &err), TS_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "blk.0.attn_k.weight") && strstr(err.msg, "counts"), "%s", err.msg);
    free(path);
    float neg[1] = {-1};
    path = write_imatrix_gguf("im-neg.gguf", names, npr, nmat, 1, neg, false);
    ck_assert_int_eq(ts_imatrix_load(path, &im, &err), TS_ERR_FORMAT);
    free(path);
    ck_assert_int_eq(ts_imatrix_load("/nonexistent/im.gguf", &im, &err), TS_ERR_IO);
}
END_TEST

static void put_i32(FILE *fp, int32_t v) { fwrite(&v, 4, 1, fp); }

static char *write_dat(const char *file, int variant)
{
    char *path;
    ck_assert(asprintf(&path, "%s/%s", tu_tmpdir(), file) > 0);
    FILE *fp = fopen(path, "wb");
    put_i32(fp, 2);
    const char *names[] = {"blk.0.attn_q.weight", "blk.0.ffn_down_exps.weight"};
    int32_t nvals[] = {256, 64 * 8};
    for (int i = 0; i < 2; i++) {
        put_i32(fp, (int32_t)strlen(names[i]));
        fwrite(names[i], 1, strlen(names[i]), fp);
        put_i32(fp, 4); /* ncall */
        put_i32(fp, nvals[i]);
        for (int k = 0; k < nvals[i]; k++) {
            float v = variant == 2 && k == 7 ? NAN : (float)(k + 1);
            if (variant == 1 && i == 1 && k == 10)
                break; /* truncated */
            fwrite(&v, 4, 1, fp);
        }
        if (variant == 1 && i == 1)
            break;
    }
    if (variant == 0) {
        put_i32(fp, 123);
        put_i32(fp, 9);
        fwrite("calib.txt", 1, 9, fp);
    }
    fclose(fp);
    return path;
}

START_TEST(imatrix_dat)
{
    char *path = write_dat("im.dat", 0);
    ts_imatrix *im;
    ts_err err = {0};
    ck_assert_msg(ts_imatrix_load(path, &im, &err) == TS_OK, "%s", err.msg);
    ck_assert(im->legacy);
    ck_assert_uint_eq(im->n_entries, 2);
    ck_assert_int_eq(im->chunk_count, 123);
    ck_assert_uint_eq(im->n_datasets, 1);
    ck_assert_str_eq(im->datasets[0], "calib.txt");
    const ts_imatrix_entry *e = ts_imatrix_find(im, "blk.0.attn_q.weight");
    ck_assert_float_eq(e->weights[5], 6.0f / 4.0f); /* sums / ncall */
    e = ts_imatrix_find(im, "blk.0.ffn_down_exps.weight");
    ck_assert_int_eq(e->n_values, 512); /* all experts in one entry */
    ts_imatrix_free(im);
    free(path);

    path = write_dat("im-trunc.dat", 1);
    ck_assert_int_eq(ts_imatrix_load(path, &im, &err), TS_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "blk.0.ffn_down_exps.weight"), "%s", err.msg);
    free(path);
    path = write_dat("im-nan.dat", 2);
    ck_assert_int_eq(ts_imatrix_load(path, &im, &err), TS_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "value 7"), "%s", err.msg);
    free(path);
    path = tu_write_file("im-empty.dat", "\0\0\0\0", 4);
    ck_assert_int_eq(ts_imatrix_load(path, &im, &err), TS_ERR_FORMAT);
    free(path);
}
END_TEST

START_TEST(ftype_names)
{
    ck_assert_int_eq(ts_ftype_find("q4_k_m")->ftype, TS_FTYPE_Q4_K_M);
    ck_assert_int_eq(ts_ftype_find("Q4_K")->ftype, TS_FTYPE_Q4_K_M);
    ck_assert_int_eq(ts_ftype_find("iq4_xs")->ftype, TS_FTYPE_IQ4_XS);
    ck_assert_int_eq(ts_ftype_find("BF16")->ftype, 32);
    ck_assert_ptr_null(ts_ftype_find("Q4_K_X"));
    size_t n = 0;
    while (ts_ftype_at(n))
        n++;
    ck_assert_uint_eq(n, 20);
    ck_assert_int_eq(ts_tensor_category("blk.0.attn_k_norm.weight"), TS_CAT_OTHER);
    ck_assert_int_eq(ts_tensor_category("blk.0.ffn_gate_inp.weight"), TS_CAT_FFN_GATE);
    ck_assert_int_eq(ts_tensor_category("blk.0.attn_qkv.weight"), TS_CAT_ATTN_QKV);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("quant_plan");
    TCase *tc = tcase_create("rules");
    tcase_add_test(tc, llama32_q4_k_m);
    tcase_add_test(tc, llama32_other_mixes);
    tcase_add_test(tc, llama_gqa1_and_70b);
    tcase_add_test(tc, moe8_mixes);
    tcase_add_test(tc, fallbacks);
    tcase_add_test(tc, overrides_and_counters);
    tcase_add_test(tc, bad_overrides);
    tcase_add_test(tc, requirements_and_refusals);
    tcase_add_test(tc, ftype_names);
    suite_add_tcase(s, tc);
    TCase *ti = tcase_create("imatrix");
    tcase_add_test(ti, imatrix_gguf);
    tcase_add_test(ti, imatrix_bad_gguf);
    tcase_add_test(ti, imatrix_dat);
    suite_add_tcase(s, ti);
    return tu_run_suite(s);
}
