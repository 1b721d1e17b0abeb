/* The reference forward pass (verify/model.h) against a naive float64
 * transformer written here from the papers' formulas, on tiny random GGUFs
 * of every architecture; the GEMM kernels' bit-identity across
 * implementations; perplexity and KL divergence bookkeeping. */
#include "testutil.h"

#include "formats/gguf.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "quant/quant.h"
#include "verify/kld.h"
#include "verify/model.h"
#include "verify/perplexity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a tiny model ---- */

typedef struct {
    const char *arch;
    int n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_layer, n_expert, n_used, n_ff_exp;
    bool biases, qk_norm, rope_freqs, tied;
    const char *rope_type; /* NULL, "linear", "yarn" */
    float rope_factor;
    ts_dtype wtype; /* matrices; vectors stay F32 */
} spec;

static const spec SPECS[] = {
    {"llama", 64, 4, 2, 16, 320, 100, 2, 0, 0, 0, false, false, true, false, "linear", 2.0f, TS_F32},
    {"qwen2", 64, 4, 4, 16, 96, 90, 2, 0, 0, 0, true, false, false, true, NULL, 0, TS_F32},
    {"qwen3", 64, 2, 1, 32, 96, 100, 2, 0, 0, 0, false, true, false, true, "yarn", 4.0f, TS_F32},
    {"qwen3moe", 64, 4, 2, 16, 96, 100, 2, 4, 2, 64, false, true, false, false, NULL, 0, TS_F32},
    {"qwen3moe", 64, 4, 2, 16, 96, 100, 2, 4, 2, 64, false, true, false, false, NULL, 0, TS_Q8_0},
};

static uint64_t rng = 88172645463325252ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

/* Tensors queued for writing, with their float values. */
typedef struct {
    ts_gguf_writer *w;
    float *data[128];
    ts_dtype type[128];
    int n;
} builder;

static void add(builder *b, const char *name, int n_dims, int64_t ne0, int64_t ne1, int64_t ne2, ts_dtype type,
                float scale, float offset)
{
    int64_t ne[3] = {ne0, ne1, ne2};
    ts_err err = {0};
    ck_assert_msg(ts_gguf_add_tensor(b->w, name, type, n_dims, ne, &err) == TS_OK, "%s", err.msg);
    int64_t count = ne0 * (n_dims > 1 ? ne1 : 1) * (n_dims > 2 ? ne2 : 1);
    float *v = malloc((size_t)count * sizeof *v);
    for (int64_t i = 0; i < count; i++)
        v[i] = offset + scale * frand();
    ck_assert_int_lt(b->n, 128);
    b->type[b->n] = type;
    b->data[b->n++] = v;
}

/* Writes the model; returns the path. Matrices are N(0, 1/n_in)-ish so activations stay O(1). */
static char *write_model(const spec *s, const char *name)
{
    builder b = {0};
    ts_err err = {0};
    ck_assert_int_eq(ts_gguf_writer_new(&b.w, &err), TS_OK);
    ts_gguf_writer *w = b.w;
    char k[128];
#define KEY(x) (snprintf(k, sizeof k, "%s." x, s->arch), k)
    ts_gguf_set_str(w, "general.architecture", s->arch);
    ts_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)s->n_embd);
    ts_gguf_set_u32(w, KEY("block_count"), (uint32_t)s->n_layer);
    ts_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)s->n_ff);
    ts_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)s->n_head);
    ts_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)s->n_head_kv);
    ts_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)s->head_dim);
    ts_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)s->head_dim);
    ts_gguf_set_u32(w, KEY("context_length"), 64);
    ts_gguf_set_f32(w, KEY("rope.freq_base"), 10000.0f);
    ts_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    if (s->rope_type) {
        ts_gguf_set_str(w, KEY("rope.scaling.type"), s->rope_type);
        ts_gguf_set_f32(w, KEY("rope.scaling.factor"), s->rope_factor);
        ts_gguf_set_u32(w, KEY("rope.scaling.original_context_length"), 16);
    }
    if (s->n_expert) {
        ts_gguf_set_u32(w, KEY("expert_count"), (uint32_t)s->n_expert);
        ts_gguf_set_u32(w, KEY("expert_used_count"), (uint32_t)s->n_used);
        ts_gguf_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)s->n_ff_exp);
    }
    const int nq = s->n_head * s->head_dim, nkv = s->n_head_kv * s->head_dim;
    add(&b, "token_embd.weight", 2, s->n_embd, s->n_vocab, 1, s->wtype, 1.0f, 0);
    add(&b, "output_norm.weight", 1, s->n_embd, 1, 1, TS_F32, 0.2f, 1.0f);
    if (!s->tied)
        add(&b, "output.weight", 2, s->n_embd, s->n_vocab, 1, s->wtype, 0.3f, 0);
    if (s->rope_freqs)
        add(&b, "rope_freqs.weight", 1, s->head_dim / 2, 1, 1, TS_F32, 1.0f, 2.0f);
    for (int l = 0; l < s->n_layer; l++) {
        char t[96];
#define T(x) (snprintf(t, sizeof t, "blk.%d." x, l), t)
        add(&b, T("attn_norm.weight"), 1, s->n_embd, 1, 1, TS_F32, 0.2f, 1.0f);
        add(&b, T("attn_q.weight"), 2, s->n_embd, nq, 1, s->wtype, 0.25f, 0);
        add(&b, T("attn_k.weight"), 2, s->n_embd, nkv, 1, s->wtype, 0.25f, 0);
        add(&b, T("attn_v.weight"), 2, s->n_embd, nkv, 1, s->wtype, 0.25f, 0);
        add(&b, T("attn_output.weight"), 2, nq, s->n_embd, 1, s->wtype, 0.25f, 0);
        if (s->biases) {
            add(&b, T("attn_q.bias"), 1, nq, 1, 1, TS_F32, 0.5f, 0);
            add(&b, T("attn_k.bias"), 1, nkv, 1, 1, TS_F32, 0.5f, 0);
            add(&b, T("attn_v.bias"), 1, nkv, 1, 1, TS_F32, 0.5f, 0);
        }
        if (s->qk_norm) {
            add(&b, T("attn_q_norm.weight"), 1, s->head_dim, 1, 1, TS_F32, 0.2f, 1.0f);
            add(&b, T("attn_k_norm.weight"), 1, s->head_dim, 1, 1, TS_F32, 0.2f, 1.0f);
        }
        add(&b, T("ffn_norm.weight"), 1, s->n_embd, 1, 1, TS_F32, 0.2f, 1.0f);
        if (s->n_expert) {
            add(&b, T("ffn_gate_inp.weight"), 2, s->n_embd, s->n_expert, 1, TS_F32, 0.5f, 0);
            add(&b, T("ffn_gate_exps.weight"), 3, s->n_embd, s->n_ff_exp, s->n_expert, s->wtype, 0.25f, 0);
            add(&b, T("ffn_up_exps.weight"), 3, s->n_embd, s->n_ff_exp, s->n_expert, s->wtype, 0.25f, 0);
            add(&b, T("ffn_down_exps.weight"), 3, s->n_ff_exp, s->n_embd, s->n_expert, s->wtype, 0.25f, 0);
        } else {
            add(&b, T("ffn_gate.weight"), 2, s->n_embd, s->n_ff, 1, s->wtype, 0.25f, 0);
            add(&b, T("ffn_up.weight"), 2, s->n_embd, s->n_ff, 1, s->wtype, 0.25f, 0);
            add(&b, T("ffn_down.weight"), 2, s->n_ff, s->n_embd, 1, s->wtype, 0.1f, 0);
        }
#undef T
    }
#undef KEY
    char *path = tu_write_file(name, "", 0);
    ck_assert_msg(ts_gguf_writer_begin(w, path, NULL, &err) == TS_OK, "%s", err.msg);
    for (int i = 0; i < b.n; i++) {
        uint64_t bytes = ts_gguf_writer_tensor_bytes(w, (uint64_t)i);
        uint8_t *buf = malloc(bytes);
        if (b.type[i] == TS_F32)
            memcpy(buf, b.data[i], bytes);
        else /* q8_0: rows of any length, so quantize as rows of one block */
            ts_quant_type_get(b.type[i])->quantize_rows(b.data[i], buf, (int64_t)(bytes / 34), 32, NULL);
        ck_assert_msg(ts_gguf_write_tensor_data(w, buf, bytes, &err) == TS_OK, "%s", err.msg);
        free(buf);
        free(b.data[i]);
    }
    ck_assert_msg(ts_gguf_writer_finish(w, &err) == TS_OK, "%s", err.msg);
    ts_gguf_writer_free(w);
    return path;
}

/* ---- the float64 reference ---- */

/* A tensor dequantized to doubles, or NULL when absent. */
static double *tensor(const ts_gguf *g, const char *name)
{
    int64_t i = ts_gguf_find_tensor(g, name);
    if (i < 0)
        return NULL;
    const ts_tensor *t = &g->tensors[i].t;
    uint64_t count;
    ck_assert(ts_shape_nelements(t->n_dims, t->ne, &count));
    float *f = malloc(count * sizeof *f);
    uint64_t rb;
    ck_assert(ts_dtype_row_bytes(t->dtype, (uint64_t)t->ne[0], &rb));
    for (uint64_t r = 0; r < count / (uint64_t)t->ne[0]; r++)
        ts_quant_type_get(t->dtype)->dequantize_row((const uint8_t *)t->data + r * rb, f + r * (uint64_t)t->ne[0],
                                                    t->ne[0]);
    double *d = malloc(count * sizeof *d);
    for (uint64_t j = 0; j < count; j++)
        d[j] = f[j];
    free(f);
    return d;
}

static double *layer_tensor(const ts_gguf *g, int l, const char *suffix)
{
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", l, suffix);
    return tensor(g, name);
}

/* y[o] = sum_i W[o][i] x[i] (+ b[o]) */
static void matvec(double *y, const double *W, const double *x, int n_in, int n_out, const double *b)
{
    for (int o = 0; o < n_out; o++) {
        double s = b ? b[o] : 0.0;
        for (int i = 0; i < n_in; i++)
            s += W[(size_t)o * n_in + i] * x[i];
        y[o] = s;
    }
}

static void rmsnorm_d(double *y, const double *x, const double *w, int n)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double sc = 1.0 / sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++)
        y[i] = x[i] * sc * w[i];
}

/* RoPE from its definition, with ggml's linear and YaRN scaling. */
static void rope_d(const spec *s, double *v, int pos, const double *ff)
{
    const int hd = s->head_dim, half = hd / 2;
    double fs = 1.0, ext = 0.0, mscale = 1.0, lo = 0, hi = 0;
    if (s->rope_type) {
        fs = 1.0 / s->rope_factor;
        if (!strcmp(s->rope_type, "yarn")) {
            ext = 1.0;
            mscale = 1.0 + 0.1 * log(s->rope_factor);
            double base = 10000.0, orig = 16;
            lo = fmax(0, floor(hd * log(orig / (32 * 2 * M_PI)) / (2 * log(base))));
            hi = fmin(hd - 1, ceil(hd * log(orig / (1 * 2 * M_PI)) / (2 * log(base))));
        }
    }
    for (int i = 0; i < half; i++) {
        double th_ex = pos * pow(10000.0, -2.0 * i / hd) / (ff ? ff[i] : 1.0), th = fs * th_ex;
        if (ext != 0) {
            double ramp = (1 - fmin(1, fmax(0, (i - lo) / fmax(0.001, hi - lo)))) * ext;
            th = th * (1 - ramp) + th_ex * ramp;
        }
        int a = strcmp(s->arch, "llama") ? i : 2 * i, b = strcmp(s->arch, "llama") ? i + half : 2 * i + 1;
        double x0 = v[a], x1 = v[b], c = cos(th) * mscale, sn = sin(th) * mscale;
        v[a] = x0 * c - x1 * sn;
        v[b] = x0 * sn + x1 * c;
    }
}

static double silu(double x) { return x / (1 + exp(-x)); }

/* logits[n][n_vocab] for ids at positions 0..n-1. */
static double *reference(const spec *s, const char *path, const int32_t *ids, int n)
{
    ts_gguf *g;
    ts_err err = {0};
    ck_assert_msg(ts_gguf_open(path, &g, &err) == TS_OK, "%s", err.msg);
    const int E = s->n_embd, hd = s->head_dim, nq = s->n_head * hd, nkv = s->n_head_kv * hd, V = s->n_vocab;
    double *x = calloc((size_t)n * E, sizeof *x), *h = malloc(sizeof *h * E), *q = malloc(sizeof *q * (size_t)n * nq);
    double *k = malloc(sizeof *k * (size_t)n * nkv), *v = malloc(sizeof *v * (size_t)n * nkv);
    double *o = malloc(sizeof *o * nq), *t1 = malloc(sizeof *t1 * 1024), *t2 = malloc(sizeof *t2 * 1024);
    double *att = malloc(sizeof *att * n), *acc = malloc(sizeof *acc * E);
    double *emb = tensor(g, "token_embd.weight"), *ff = tensor(g, "rope_freqs.weight");
    for (int t = 0; t < n; t++)
        memcpy(x + (size_t)t * E, emb + (size_t)ids[t] * E, sizeof *x * E);
    for (int l = 0; l < s->n_layer; l++) {
        double *an = layer_tensor(g, l, "attn_norm.weight"), *wq = layer_tensor(g, l, "attn_q.weight");
        double *wk = layer_tensor(g, l, "attn_k.weight"), *wv = layer_tensor(g, l, "attn_v.weight");
        double *wo = layer_tensor(g, l, "attn_output.weight"), *bq = layer_tensor(g, l, "attn_q.bias");
        double *bk = layer_tensor(g, l, "attn_k.bias"), *bv = layer_tensor(g, l, "attn_v.bias");
        double *qn = layer_tensor(g, l, "attn_q_norm.weight"), *kn = layer_tensor(g, l, "attn_k_norm.weight");
        for (int t = 0; t < n; t++) {
            rmsnorm_d(h, x + (size_t)t * E, an, E);
            matvec(q + (size_t)t * nq, wq, h, E, nq, bq);
            matvec(k + (size_t)t * nkv, wk, h, E, nkv, bk);
            matvec(v + (size_t)t * nkv, wv, h, E, nkv, bv);
            for (int hh = 0; hh < s->n_head; hh++) {
                if (qn)
                    rmsnorm_d(q + (size_t)t * nq + hh * hd, q + (size_t)t * nq + hh * hd, qn, hd);
                rope_d(s, q + (size_t)t * nq + hh * hd, t, ff);
            }
            for (int hh = 0; hh < s->n_head_kv; hh++) {
                if (kn)
                    rmsnorm_d(k + (size_t)t * nkv + hh * hd, k + (size_t)t * nkv + hh * hd, kn, hd);
                rope_d(s, k + (size_t)t * nkv + hh * hd, t, ff);
            }
        }
        for (int t = 0; t < n; t++) {
            for (int hh = 0; hh < s->n_head; hh++) {
                const int kvh = hh / (s->n_head / s->n_head_kv);
                double max = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++)
                        d += q[(size_t)t * nq + hh * hd + i] * k[(size_t)j * nkv + kvh * hd + i];
                    att[j] = d / sqrt(hd);
                    max = fmax(max, att[j]);
                }
                for (int j = 0; j <= t; j++)
                    sum += att[j] = exp(att[j] - max);
                for (int i = 0; i < hd; i++) {
                    double a = 0;
                    for (int j = 0; j <= t; j++)
                        a += att[j] / sum * v[(size_t)j * nkv + kvh * hd + i];
                    o[hh * hd + i] = a;
                }
            }
            matvec(h, wo, o, nq, E, NULL);
            for (int i = 0; i < E; i++)
                x[(size_t)t * E + i] += h[i];
        }
        double *fn = layer_tensor(g, l, "ffn_norm.weight");
        for (int t = 0; t < n; t++) {
            rmsnorm_d(h, x + (size_t)t * E, fn, E);
            if (!s->n_expert) {
                double *wg = layer_tensor(g, l, "ffn_gate.weight"), *wu = layer_tensor(g, l, "ffn_up.weight");
                double *wd = layer_tensor(g, l, "ffn_down.weight");
                matvec(t1, wg, h, E, s->n_ff, NULL);
                matvec(t2, wu, h, E, s->n_ff, NULL);
                for (int i = 0; i < s->n_ff; i++)
                    t1[i] = silu(t1[i]) * t2[i];
                matvec(acc, wd, t1, s->n_ff, E, NULL);
                free(wg), free(wu), free(wd);
            } else {
                double *wr = layer_tensor(g, l, "ffn_gate_inp.weight"), *wg = layer_tensor(g, l, "ffn_gate_exps.weight");
                double *wu = layer_tensor(g, l, "ffn_up_exps.weight"), *wd = layer_tensor(g, l, "ffn_down_exps.weight");
                double p[16], max = -INFINITY, sum = 0, wsum = 0;
                int sel[16];
                matvec(p, wr, h, E, s->n_expert, NULL);
                for (int e = 0; e < s->n_expert; e++)
                    max = fmax(max, p[e]);
                for (int e = 0; e < s->n_expert; e++)
                    sum += p[e] = exp(p[e] - max);
                for (int kk = 0; kk < s->n_used; kk++) {
                    int best = -1;
                    for (int e = 0; e < s->n_expert; e++) {
                        bool used = false;
                        for (int u = 0; u < kk; u++)
                            used |= sel[u] == e;
                        if (!used && (best < 0 || p[e] > p[best]))
                            best = e;
                    }
                    sel[kk] = best;
                    wsum += p[best] / sum;
                }
                memset(acc, 0, sizeof *acc * E);
                const int F = s->n_ff_exp;
                for (int kk = 0; kk < s->n_used; kk++) {
                    const int e = sel[kk];
                    matvec(t1, wg + (size_t)e * F * E, h, E, F, NULL);
                    matvec(t2, wu + (size_t)e * F * E, h, E, F, NULL);
                    for (int i = 0; i < F; i++)
                        t1[i] = silu(t1[i]) * t2[i];
                    matvec(t2, wd + (size_t)e * E * F, t1, F, E, NULL);
                    for (int i = 0; i < E; i++)
                        acc[i] += p[e] / sum / wsum * t2[i];
                }
                free(wr), free(wg), free(wu), free(wd);
            }
            for (int i = 0; i < E; i++)
                x[(size_t)t * E + i] += acc[i];
        }
        free(an), free(wq), free(wk), free(wv), free(wo), free(bq), free(bk), free(bv), free(qn), free(kn), free(fn);
    }
    double *onorm = tensor(g, "output_norm.weight"), *wout = tensor(g, "output.weight");
    double *logits = malloc(sizeof *logits * (size_t)n * V);
    for (int t = 0; t < n; t++) {
        rmsnorm_d(h, x + (size_t)t * E, onorm, E);
        matvec(logits + (size_t)t * V, wout ? wout : emb, h, E, V, NULL);
    }
    free(x), free(h), free(q), free(k), free(v), free(o), free(t1), free(t2), free(att), free(acc), free(emb), free(ff);
    free(onorm), free(wout);
    ts_gguf_close(g);
    return logits;
}

/* ---- tests ---- */

#define N_TOK 37

static void make_ids(int32_t *ids, int n, int n_vocab)
{
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)((i * 7919 + 13) % n_vocab);
}

static ts_model *load(const char *path, int threads)
{
    ts_model *m;
    ts_err err = {0};
    ck_assert_msg(ts_model_load(path, threads, &m, &err) == TS_OK, "%s", err.msg);
    return m;
}

/* Max |a - b| over the max |b|. */
static double rel_err(const float *a, const double *b, size_t n)
{
    double d = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        mx = fmax(mx, fabs(b[i]));
    }
    return d / mx;
}

START_TEST(matches_reference)
{
    const spec *s = &SPECS[_i];
    char name[64];
    snprintf(name, sizeof name, "ref%d.gguf", (int)_i);
    char *path = write_model(s, name);
    int32_t ids[N_TOK];
    make_ids(ids, N_TOK, s->n_vocab);
    double *want = reference(s, path, ids, N_TOK);
    ts_model *m = load(path, 3);
    ts_model_set_ggml_activations(m, false);
    float *got = malloc(sizeof *got * N_TOK * (size_t)s->n_vocab);
    ts_err err = {0};
    ck_assert_msg(ts_model_eval(m, ids, N_TOK, got, &err) == TS_OK, "%s", err.msg);
    double e = rel_err(got, want, (size_t)N_TOK * s->n_vocab);
    ck_assert_msg(e < 2e-5, "%s (%s): relative error %g against the float64 reference", s->arch,
                  ts_dtype_name(s->wtype), e);
    /* llama.cpp's rounding of matmul inputs and of the KV cache moves logits only slightly. */
    ts_model_set_ggml_activations(m, true);
    ts_model_set_kv_f16(m, true);
    ck_assert_msg(ts_model_eval(m, ids, N_TOK, got, &err) == TS_OK, "%s", err.msg);
    e = rel_err(got, want, (size_t)N_TOK * s->n_vocab);
    ck_assert_msg(e < 0.08, "%s (%s): relative error %g with ggml rounding", s->arch, ts_dtype_name(s->wtype), e);
    free(got);
    free(want);
    ts_model_free(m);
    free(path);
}
END_TEST

/* Threads, the SIMD implementation and computing only the tail change no bit. */
START_TEST(deterministic)
{
    const spec *s = &SPECS[_i];
    char name[64];
    snprintf(name, sizeof name, "det%d.gguf", (int)_i);
    char *path = write_model(s, name);
    int32_t ids[N_TOK];
    make_ids(ids, N_TOK, s->n_vocab);
    const size_t nv = (size_t)s->n_vocab;
    float *a = malloc(sizeof *a * N_TOK * nv), *b = malloc(sizeof *b * N_TOK * nv);
    ts_err err = {0};
    ts_model *m1 = load(path, 1), *m4 = load(path, 4);
    ts_model_set_kv_f16(m1, true);
    ts_model_set_kv_f16(m4, true);
    ck_assert_msg(ts_model_eval(m1, ids, N_TOK, a, &err) == TS_OK, "%s", err.msg);
    ck_assert_msg(ts_model_eval(m4, ids, N_TOK, b, &err) == TS_OK, "%s", err.msg);
    ck_assert_msg(!memcmp(a, b, sizeof *a * N_TOK * nv), "1 and 4 threads differ");
    ck_assert_msg(ts_model_eval_tail(m4, ids, N_TOK, 20, b, &err) == TS_OK, "%s", err.msg);
    ck_assert_msg(!memcmp(a + 20 * nv, b, sizeof *a * (N_TOK - 20) * nv), "the tail differs from the full pass");
    /* three sequences in one batch: each as if alone */
    int32_t ids3[3 * N_TOK];
    float *c3 = malloc(sizeof *c3 * 3 * (N_TOK - 5) * nv), *c1 = malloc(sizeof *c1 * (N_TOK - 5) * nv);
    for (int q = 0; q < 3; q++)
        make_ids(ids3 + q * N_TOK, N_TOK, s->n_vocab - q);
    ck_assert_msg(ts_model_eval_seqs(m4, ids3, 3, N_TOK, 5, c3, &err) == TS_OK, "%s", err.msg);
    for (int q = 0; q < 3; q++) {
        ck_assert_msg(ts_model_eval_tail(m1, ids3 + q * N_TOK, N_TOK, 5, c1, &err) == TS_OK, "%s", err.msg);
        ck_assert_msg(!memcmp(c1, c3 + q * (N_TOK - 5) * nv, sizeof *c1 * (N_TOK - 5) * nv), "sequence %d differs", q);
    }
    free(c1);
    free(c3);
    const char *impls[] = {"scalar", "avx2", "avx512"};
    const char *was = ts_k_impl_name();
    for (size_t i = 0; i < 3; i++) {
        if (!ts_k_force_impl(impls[i]))
            continue;
        ck_assert_msg(ts_model_eval(m4, ids, N_TOK, b, &err) == TS_OK, "%s", err.msg);
        ck_assert_msg(!memcmp(a, b, sizeof *a * N_TOK * nv), "gemm %s differs", ts_k_gemm_impl_name());
    }
    ts_k_force_impl(was);
    ts_model_free(m1);
    ts_model_free(m4);
    free(a);
    free(b);
    free(path);
}
END_TEST

START_TEST(gemm_bit_identical)
{
    enum { M = 29, K = 300 };
    float *a = malloc(sizeof *a * M * K), *bt = malloc(sizeof *bt * 32 * K), *panel = malloc(sizeof *panel * 32 * K);
    float ref[M * 40], got[M * 40];
    for (int i = 0; i < M * K; i++)
        a[i] = frand() * (i % 7 == 0 ? 1e3f : 1.0f);
    for (int i = 0; i < 32 * K; i++)
        bt[i] = frand();
    const char *was = ts_k_impl_name();
    const char *impls[] = {"scalar", "avx2", "avx512"};
    for (int nr = 32; nr >= 13; nr -= 19) {
        ts_k_gemm_pack(bt, K, nr, K, panel);
        ck_assert(ts_k_force_impl("scalar"));
        for (int i = 0; i < M * 40; i++)
            ref[i] = got[i] = -7.0f;
        ts_k_gemm_panel(a, K, M, panel, K, nr, ref, 40, false);
        for (int t = 0; t < M; t++) /* the definition: one fmaf chain per output */
            for (int j = 0; j < 40; j++) {
                float c = 0.0f;
                for (int k = 0; k < K && j < nr; k++)
                    c = fmaf(a[t * K + k], bt[j * K + k], c);
                float want = j < nr ? c : -7.0f;
                ck_assert_msg(!memcmp(&ref[t * 40 + j], &want, 4), "scalar (%d,%d): %a vs %a", t, j, ref[t * 40 + j], want);
            }
        for (size_t i = 0; i < 3; i++) {
            if (!ts_k_force_impl(impls[i]))
                continue;
            /* in two k-blocks, the second accumulating */
            float p2[32 * K];
            ts_k_gemm_pack(bt, K, nr, 256, p2);
            for (int q = 0; q < M * 40; q++)
                got[q] = -7.0f;
            ts_k_gemm_panel(a, K, M, p2, 256, nr, got, 40, false);
            ts_k_gemm_pack(bt + 256, K, nr, K - 256, p2);
            ts_k_gemm_panel(a + 256, K, M, p2, K - 256, nr, got, 40, true);
            ck_assert_msg(!memcmp(ref, got, sizeof ref), "%s (nr %d) differs from scalar", ts_k_gemm_impl_name(), nr);
        }
    }
    ts_k_force_impl(was);
    free(a);
    free(bt);
    free(panel);
}
END_TEST

typedef struct {
    int calls, expert_calls;
    bool saw_output;
} hook_log;

static void hook(void *ctx, const char *name, int expert, const float *x, int64_t n_tokens, int64_t n_in)
{
    hook_log *h = ctx;
    h->calls++;
    h->expert_calls += expert >= 0;
    h->saw_output |= !strcmp(name, "output.weight");
    ck_assert(x && n_tokens > 0 && n_in > 0);
}

START_TEST(matmul_hook)
{
    char *path = write_model(&SPECS[3], "hook.gguf");
    ts_model *m = load(path, 2);
    hook_log h = {0};
    ts_model_set_matmul_hook(m, hook, &h);
    int32_t ids[N_TOK];
    make_ids(ids, N_TOK, SPECS[3].n_vocab);
    ts_err err = {0};
    ck_assert_msg(ts_model_eval(m, ids, N_TOK, NULL, &err) == TS_OK, "%s", err.msg);
    ck_assert(h.saw_output);
    ck_assert_int_gt(h.expert_calls, 0);
    ck_assert_int_eq(h.calls - h.expert_calls, 2 * 5 + 1); /* q k v o router per layer, output */
    ts_model_free(m);
    free(path);
}
END_TEST

START_TEST(bad_inputs)
{
    char *path = write_model(&SPECS[1], "bad.gguf");
    ts_model *m = load(path, 1);
    int32_t ids[3] = {1, 2, 90};
    ts_err err = {0};
    ck_assert_int_eq(ts_model_eval(m, ids, 3, NULL, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "outside the vocabulary"), "%s", err.msg);
    ts_model_free(m);
    spec s = SPECS[1];
    s.arch = "gpt2";
    char *p2 = write_model(&s, "arch.gguf");
    ck_assert_int_eq(ts_model_load(p2, 1, &m, &err), TS_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "gpt2"), "%s", err.msg);
    s = SPECS[1];
    s.biases = false; /* qwen2 requires its Q/K/V biases */
    char *p3 = write_model(&s, "nobias.gguf");
    ck_assert_int_eq(ts_model_load(p3, 1, &m, &err), TS_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "blk.0.attn_q.bias"), "%s", err.msg);
    free(path);
    free(p2);
    free(p3);
}
END_TEST

/* Perplexity from the reference logits; KLD of a model against itself. */
START_TEST(perplexity_and_kld)
{
    const spec *s = &SPECS[0];
    char *path = write_model(s, "ppl.gguf");
    enum { CTX = 16, CHUNKS = 3 };
    int32_t toks[CTX * CHUNKS + 5];
    make_ids(toks, CTX * CHUNKS + 5, s->n_vocab);
    ts_model *m = load(path, 2);
    ts_model_set_ggml_activations(m, false);
    ts_ppl_params p = {.n_ctx = CTX, .add_bos = true, .bos = 1};
    ts_ppl_result r;
    ts_err err = {0};
    ck_assert_msg(ts_perplexity(m, toks, CTX * CHUNKS + 5, &p, NULL, NULL, &r, &err) == TS_OK, "%s", err.msg);
    ck_assert_int_eq(r.n_chunks, CHUNKS);
    ck_assert_int_eq(r.count, CHUNKS * (CTX - 1 - CTX / 2));
    double nll = 0;
    for (int c = 0; c < CHUNKS; c++) {
        int32_t ids[CTX];
        memcpy(ids, toks + c * CTX, sizeof ids);
        ids[0] = 1;
        double *lg = reference(s, path, ids, CTX);
        for (int k = CTX / 2; k < CTX - 1; k++) {
            const double *row = lg + (size_t)k * s->n_vocab;
            double mx = -INFINITY, se = 0;
            for (int i = 0; i < s->n_vocab; i++)
                mx = fmax(mx, row[i]);
            for (int i = 0; i < s->n_vocab; i++)
                se += exp(row[i] - mx);
            nll += -(row[toks[c * CTX + k + 1]] - mx - log(se));
        }
        free(lg);
    }
    double want = exp(nll / (double)r.count);
    ck_assert_msg(fabs(r.ppl / want - 1) < 1e-5, "ppl %.8f, reference %.8f", r.ppl, want);
    /* two chunks per batch: the same bits */
    ts_ppl_result r2;
    p.n_seq = 2;
    ck_assert_msg(ts_perplexity(m, toks, CTX * CHUNKS + 5, &p, NULL, NULL, &r2, &err) == TS_OK, "%s", err.msg);
    ck_assert_msg(r2.ppl == r.ppl && r2.ppl_err == r.ppl_err, "n_seq 2: %.10f vs %.10f", r2.ppl, r.ppl);
    /* too short a text */
    ck_assert_int_eq(ts_perplexity(m, toks, CTX + 3, &p, NULL, NULL, &r, &err), TS_ERR_ARG);

    char *kld = tu_write_file("base.kld", "", 0);
    p.kld_save = kld;
    ck_assert_msg(ts_perplexity(m, toks, CTX * CHUNKS + 5, &p, NULL, NULL, &r, &err) == TS_OK, "%s", err.msg);
    ck_assert_msg(fabs(r.ppl / want - 1) < 1e-5, "ppl while saving %.8f", r.ppl);
    ts_kld_file base;
    ck_assert_msg(ts_kld_open(kld, &base, &err) == TS_OK, "%s", err.msg);
    ck_assert_int_eq(base.n_chunk, CHUNKS);
    ck_assert_int_eq(ts_kld_token(&base, 5), toks[5]);
    ts_ppl_params q = {.add_bos = true, .bos = 1, .kld_base = &base};
    ck_assert_msg(ts_perplexity(m, NULL, 0, &q, NULL, NULL, &r, &err) == TS_OK, "%s", err.msg);
    ck_assert(r.has_kld);
    ck_assert_msg(r.kld.kld.value < 1e-5 && r.kld.kld.value > -1e-5, "self KLD %g", r.kld.kld.value);
    ck_assert_msg(r.kld.same_top.value == 1.0, "same top %g", r.kld.same_top.value);
    ck_assert_msg(fabs(r.kld.ppl_ratio.value - 1) < 1e-3, "ppl ratio %g", r.kld.ppl_ratio.value);
    ck_assert(r.kld.kld_max >= r.kld.kld_p99 && r.kld.kld_p99 >= r.kld.kld_median);
    ts_kld_close(&base);
    /* a truncated file is refused */
    FILE *fp = fopen(kld, "r+b");
    ck_assert(fp && ftruncate(fileno(fp), 100) == 0);
    fclose(fp);
    ck_assert_int_eq(ts_kld_open(kld, &base, &err), TS_ERR_FORMAT);
    ts_model_free(m);
    free(kld);
    free(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("forward");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, gemm_bit_identical);
    tcase_add_loop_test(tc, matches_reference, 0, (int)(sizeof SPECS / sizeof SPECS[0]));
    tcase_add_loop_test(tc, deterministic, 0, (int)(sizeof SPECS / sizeof SPECS[0]));
    tcase_add_test(tc, matmul_hook);
    tcase_add_test(tc, bad_inputs);
    tcase_add_test(tc, perplexity_and_kld);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
