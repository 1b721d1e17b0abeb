/* imatrix collection and its GGUF file (verify/imatrix_collect.h): the
 * writer's layout read back by quant/imatrix.h (the reader tessera quantize
 * uses) and by the plain GGUF reader (keys, types, shapes as llama-imatrix
 * writes them); collection on tiny random models checked against sums
 * computed here from the weights (layer 0's attention input is the normed
 * embedding of each token, BOS at every chunk start) and against invariants
 * of routing (gate/up of all experts together see every token n_used times). */
#include "testutil.h"

#include "formats/gguf.h"
#include "quant/imatrix.h"
#include "verify/imatrix_collect.h"
#include "verify/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- the file ---- */

static ts_imatrix_data sample(void)
{
    static float dense_sums[4] = {4, 8, 0, 2};
    static int64_t dense_counts[1] = {2};
    static float exp_sums[3 * 4] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0};
    static int64_t exp_counts[3] = {1, 2, 0}; /* expert 2 saw no token */
    static ts_imatrix_stat stats[2];
    static char *datasets[1];
    stats[0] = (ts_imatrix_stat){"blk.0.attn_q.weight", 4, 1, dense_sums, dense_counts};
    stats[1] = (ts_imatrix_stat){"blk.0.ffn_up_exps.weight", 4, 3, exp_sums, exp_counts};
    datasets[0] = "calib.txt";
    return (ts_imatrix_data){.n_stats = 2, .stats = stats, .n_datasets = 1, .datasets = datasets, .chunk_count = 7,
                             .chunk_size = 512};
}

START_TEST(write_read_round_trip)
{
    ts_imatrix_data d = sample();
    char path[512];
    snprintf(path, sizeof path, "%s/rt.imatrix.gguf", tu_tmpdir());
    ts_err err = {0};
    ck_assert_msg(ts_imatrix_write(&d, path, NULL, &err) == TS_OK, "%s", err.msg);

    /* what tessera quantize --imatrix makes of it */
    ts_imatrix *im;
    ck_assert_msg(ts_imatrix_load(path, &im, &err) == TS_OK, "%s", err.msg);
    ck_assert(!im->legacy);
    ck_assert_int_eq(im->n_entries, 2);
    ck_assert_int_eq(im->chunk_count, 7);
    ck_assert_int_eq(im->chunk_size, 512);
    ck_assert_int_eq(im->n_datasets, 1);
    ck_assert_str_eq(im->datasets[0], "calib.txt");
    const ts_imatrix_entry *e = ts_imatrix_find(im, "blk.0.attn_q.weight");
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->n_mat, 1);
    ck_assert_int_eq(e->n_values, 4);
    const float want_dense[4] = {2, 4, 0, 1}; /* sums / count */
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq(e->weights[i], want_dense[i]);
    e = ts_imatrix_find(im, "blk.0.ffn_up_exps.weight");
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->n_mat, 3);
    ck_assert_int_eq(e->n_mat_unseen, 1);
    const float want_exp[12] = {1, 2, 3, 4, 2.5f, 3, 3.5f, 4, 1, 1, 1, 1}; /* unseen expert: 1 */
    for (int i = 0; i < 12; i++)
        ck_assert_float_eq(e->weights[i], want_exp[i]);
    ts_imatrix_free(im);

    /* the layout itself: keys, their types and order, tensor shapes (ggml drops trailing 1s) */
    ts_gguf *g;
    ck_assert_msg(ts_gguf_open(path, &g, &err) == TS_OK, "%s", err.msg);
    ck_assert_int_eq(g->n_kv, 4);
    const char *keys[4] = {"general.type", "imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"};
    const ts_gguf_type types[4] = {TS_GGUF_STRING, TS_GGUF_ARRAY, TS_GGUF_UINT32, TS_GGUF_UINT32};
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(g->kv[i].key, keys[i]);
        ck_assert_int_eq(g->kv[i].value.type, types[i]);
    }
    ck_assert_str_eq(ts_gguf_get_str(g, "general.type"), "imatrix");
    ck_assert_int_eq(g->kv[1].value.arr.elem_type, TS_GGUF_STRING);
    ck_assert_int_eq(g->n_tensors, 4);
    const struct {
        const char *name;
        int n_dims;
        int64_t ne0, ne1;
    } want[4] = {{"blk.0.attn_q.weight.in_sum2", 1, 4, 1}, {"blk.0.attn_q.weight.counts", 1, 1, 1},
                 {"blk.0.ffn_up_exps.weight.in_sum2", 2, 4, 3}, {"blk.0.ffn_up_exps.weight.counts", 2, 1, 3}};
    for (int i = 0; i < 4; i++) {
        const ts_tensor *t = &g->tensors[i].t;
        ck_assert_str_eq(t->name, want[i].name);
        ck_assert_int_eq(t->dtype, TS_F32);
        ck_assert_int_eq(t->n_dims, want[i].n_dims);
        ck_assert_int_eq(t->ne[0], want[i].ne0);
        ck_assert_int_eq(t->ne[1], want[i].ne1);
    }
    float c[3];
    memcpy(c, g->tensors[3].t.data, sizeof c);
    ck_assert(c[0] == 1 && c[1] == 2 && c[2] == 0);
    ts_gguf_close(g);
}
END_TEST

START_TEST(write_refuses)
{
    ts_imatrix_data d = sample();
    ts_err err = {0};
    char path[512], dir[512];
    /* an input is never overwritten */
    char *input = tu_write_file("model.gguf", "x", 1);
    const char *keep[] = {input, NULL};
    ck_assert_int_ne(ts_imatrix_write(&d, input, keep, &err), TS_OK);
    FILE *fp = fopen(input, "rb");
    ck_assert(fp && fgetc(fp) == 'x');
    fclose(fp);
    /* nothing to write */
    ts_imatrix_data empty = d;
    empty.n_stats = 0;
    snprintf(path, sizeof path, "%s/empty.gguf", tu_tmpdir());
    ck_assert_int_eq(ts_imatrix_write(&empty, path, NULL, &err), TS_ERR_ARG);
    ck_assert(!exists(path));
    /* a directory that does not exist: an error, no file */
    snprintf(dir, sizeof dir, "%s/no/such/dir/out.gguf", tu_tmpdir());
    ck_assert_int_ne(ts_imatrix_write(&d, dir, NULL, &err), TS_OK);
    ck_assert(!exists(dir));
    free(input);
}
END_TEST

/* ---- collection on tiny models ---- */

typedef struct {
    const char *arch;
    int n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_layer, n_expert, n_used, n_ff_exp;
    bool tied;
    float norm_gain; /* attn_norm values (1e30: activations overflow) */
} spec;

static const spec LLAMA = {"llama", 32, 2, 1, 16, 64, 50, 2, 0, 0, 0, false, 1.0f};
static const spec MOE = {"qwen3moe", 32, 2, 1, 16, 64, 50, 2, 4, 2, 32, true, 1.0f};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static void put(ts_gguf_writer *w, float **data, int *n, const char *name, int n_dims, int64_t ne0, int64_t ne1,
                int64_t ne2, float scale, float offset)
{
    const int64_t ne[3] = {ne0, ne1, ne2};
    ts_err err = {0};
    ck_assert_msg(ts_gguf_add_tensor(w, name, TS_F32, n_dims, ne, &err) == TS_OK, "%s", err.msg);
    const int64_t count = ne0 * ne1 * ne2;
    float *v = malloc((size_t)count * sizeof *v);
    for (int64_t i = 0; i < count; i++)
        v[i] = offset + scale * frand();
    data[(*n)++] = v;
}

static char *write_model(const spec *s, const char *file)
{
    ts_gguf_writer *w;
    ts_err err = {0};
    ck_assert_int_eq(ts_gguf_writer_new(&w, &err), TS_OK);
    char k[128], t[96];
#define KEY(x) (snprintf(k, sizeof k, "%s." x, s->arch), k)
    ts_gguf_set_str(w, "general.architecture", s->arch);
    ts_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)s->n_embd);
    ts_gguf_set_u32(w, KEY("block_count"), (uint32_t)s->n_layer);
    ts_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)s->n_ff);
    ts_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)s->n_head);
    ts_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)s->n_head_kv);
    ts_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)s->head_dim);
    ts_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)s->head_dim);
    ts_gguf_set_u32(w, KEY("context_length"), 256);
    ts_gguf_set_f32(w, KEY("rope.freq_base"), 10000.0f);
    ts_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f);
    if (s->n_expert) {
        ts_gguf_set_u32(w, KEY("expert_count"), (uint32_t)s->n_expert);
        ts_gguf_set_u32(w, KEY("expert_used_count"), (uint32_t)s->n_used);
        ts_gguf_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)s->n_ff_exp);
    }
#undef KEY
    float *data[64];
    int n = 0;
    const int nq = s->n_head * s->head_dim, nkv = s->n_head_kv * s->head_dim;
    put(w, data, &n, "token_embd.weight", 2, s->n_embd, s->n_vocab, 1, 1.0f, 0);
    put(w, data, &n, "output_norm.weight", 1, s->n_embd, 1, 1, 0.2f, 1.0f);
    if (!s->tied)
        put(w, data, &n, "output.weight", 2, s->n_embd, s->n_vocab, 1, 0.3f, 0);
    for (int l = 0; l < s->n_layer; l++) {
#define T(x) (snprintf(t, sizeof t, "blk.%d." x, l), t)
        put(w, data, &n, T("attn_norm.weight"), 1, s->n_embd, 1, 1, 0.2f * s->norm_gain, s->norm_gain);
        put(w, data, &n, T("attn_q.weight"), 2, s->n_embd, nq, 1, 0.3f, 0);
        put(w, data, &n, T("attn_k.weight"), 2, s->n_embd, nkv, 1, 0.3f, 0);
        put(w, data, &n, T("attn_v.weight"), 2, s->n_embd, nkv, 1, 0.3f, 0);
        put(w, data, &n, T("attn_output.weight"), 2, nq, s->n_embd, 1, 0.3f, 0);
        if (s->n_expert) {
            put(w, data, &n, T("attn_q_norm.weight"), 1, s->head_dim, 1, 1, 0.2f, 1.0f);
            put(w, data, &n, T("attn_k_norm.weight"), 1, s->head_dim, 1, 1, 0.2f, 1.0f);
        }
        put(w, data, &n, T("ffn_norm.weight"), 1, s->n_embd, 1, 1, 0.2f, 1.0f);
        if (s->n_expert) {
            put(w, data, &n, T("ffn_gate_inp.weight"), 2, s->n_embd, s->n_expert, 1, 1.0f, 0);
            put(w, data, &n, T("ffn_gate_exps.weight"), 3, s->n_embd, s->n_ff_exp, s->n_expert, 0.3f, 0);
            put(w, data, &n, T("ffn_up_exps.weight"), 3, s->n_embd, s->n_ff_exp, s->n_expert, 0.3f, 0);
            put(w, data, &n, T("ffn_down_exps.weight"), 3, s->n_ff_exp, s->n_embd, s->n_expert, 0.3f, 0);
        } else {
            put(w, data, &n, T("ffn_gate.weight"), 2, s->n_embd, s->n_ff, 1, 0.3f, 0);
            put(w, data, &n, T("ffn_up.weight"), 2, s->n_embd, s->n_ff, 1, 0.3f, 0);
            put(w, data, &n, T("ffn_down.weight"), 2, s->n_ff, s->n_embd, 1, 0.2f, 0);
        }
#undef T
    }
    char *path = tu_write_file(file, "", 0);
    ck_assert_msg(ts_gguf_writer_begin(w, path, NULL, &err) == TS_OK, "%s", err.msg);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(ts_gguf_write_tensor_data(w, data[i], ts_gguf_writer_tensor_bytes(w, (uint64_t)i), &err) == TS_OK,
                      "%s", err.msg);
        free(data[i]);
    }
    ck_assert_msg(ts_gguf_writer_finish(w, &err) == TS_OK, "%s", err.msg);
    ts_gguf_writer_free(w);
    return path;
}

#define CTX 24
#define BOS 1

static int32_t *make_tokens(int64_t n, int n_vocab)
{
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int64_t i = 0; i < n; i++)
        ids[i] = (int32_t)((i * 7919 + 13) % n_vocab);
    return ids;
}

static ts_model *load(const char *path)
{
    ts_model *m;
    ts_err err = {0};
    ck_assert_msg(ts_model_load(path, 2, &m, &err) == TS_OK, "%s", err.msg);
    ts_model_set_kv_f16(m, true);
    return m;
}

static const ts_imatrix_stat *stat_of(const ts_imatrix_data *d, const char *name)
{
    for (size_t i = 0; i < d->n_stats; i++)
        if (!strcmp(d->stats[i].name, name))
            return &d->stats[i];
    return NULL;
}

/* Layer 0's Q/K/V input per column, summed over the evaluated tokens: the
 * RMS-normed embedding times attn_norm, in double. */
static double *layer0_sums(const char *path, const int32_t *tok, int64_t n_chunks)
{
    ts_gguf *g;
    ts_err err = {0};
    ck_assert_msg(ts_gguf_open(path, &g, &err) == TS_OK, "%s", err.msg);
    const ts_tensor *emb = &g->tensors[ts_gguf_find_tensor(g, "token_embd.weight")].t;
    const ts_tensor *nw = &g->tensors[ts_gguf_find_tensor(g, "blk.0.attn_norm.weight")].t;
    const int64_t n = emb->ne[0];
    double *sums = calloc((size_t)n, sizeof *sums);
    for (int64_t i = 0; i < n_chunks * CTX; i++) {
        const int32_t id = i % CTX == 0 ? BOS : tok[i];
        const float *x = (const float *)emb->data + id * n;
        double ss = 0;
        for (int64_t j = 0; j < n; j++)
            ss += (double)x[j] * x[j];
        const double scale = 1.0 / sqrt(ss / (double)n + 1e-5);
        for (int64_t j = 0; j < n; j++) {
            const double v = x[j] * scale * ((const float *)nw->data)[j];
            sums[j] += v * v;
        }
    }
    ts_gguf_close(g);
    return sums;
}

START_TEST(collect_dense)
{
    char *path = write_model(&LLAMA, "llama.gguf");
    ts_model *m = load(path);
    const int64_t n_tok = 5 * CTX + 7; /* 5 whole chunks and a partial one, which is not used */
    int32_t *tok = make_tokens(n_tok, LLAMA.n_vocab);
    ts_imatrix_params p = {.n_ctx = CTX, .max_chunks = 4, .n_seq = 3, .add_bos = true, .bos = BOS, .dataset = "c.txt"};
    ts_imatrix_data d;
    ts_err err = {0};
    ck_assert_msg(ts_imatrix_collect(m, tok, n_tok, &p, NULL, NULL, &d, &err) == TS_OK, "%s", err.msg);
    ck_assert_int_eq(d.n_stats, 7 * LLAMA.n_layer); /* q k v o gate up down; no output, no token_embd */
    ck_assert_int_eq(d.chunk_count, 4);
    ck_assert_int_eq(d.chunk_size, CTX);
    ck_assert_str_eq(d.datasets[0], "c.txt");
    for (size_t i = 1; i < d.n_stats; i++)
        ck_assert_int_lt(strcmp(d.stats[i - 1].name, d.stats[i].name), 0);
    for (size_t i = 0; i < d.n_stats; i++) {
        ck_assert_int_eq(d.stats[i].n_mat, 1);
        ck_assert_int_eq(d.stats[i].counts[0], 4 * CTX);
        ck_assert(strncmp(d.stats[i].name, "blk.", 4) == 0);
    }
    const ts_imatrix_stat *q = stat_of(&d, "blk.0.attn_q.weight"), *k = stat_of(&d, "blk.0.attn_k.weight");
    const ts_imatrix_stat *down = stat_of(&d, "blk.1.ffn_down.weight");
    ck_assert(q && k && down);
    ck_assert_int_eq(q->n_per_row, LLAMA.n_embd);
    ck_assert_int_eq(down->n_per_row, LLAMA.n_ff);
    ck_assert_mem_eq(q->sums, k->sums, (size_t)LLAMA.n_embd * sizeof(float));
    double *want = layer0_sums(path, tok, 4);
    for (int j = 0; j < LLAMA.n_embd; j++)
        ck_assert_msg(fabs(q->sums[j] / want[j] - 1) < 1e-5, "column %d: %g, expected %g", j, (double)q->sums[j], want[j]);
    free(want);

    /* One chunk per batch, and output.weight on request: the same sums. */
    ts_imatrix_data d1;
    p.n_seq = 1;
    p.process_output = true;
    ck_assert_msg(ts_imatrix_collect(m, tok, n_tok, &p, NULL, NULL, &d1, &err) == TS_OK, "%s", err.msg);
    ck_assert_int_eq(d1.n_stats, d.n_stats + 1);
    const ts_imatrix_stat *out = stat_of(&d1, "output.weight");
    ck_assert(out && out->counts[0] == 4 * CTX);
    for (size_t i = 0; i < d.n_stats; i++) {
        const ts_imatrix_stat *a = &d.stats[i], *b = stat_of(&d1, a->name);
        ck_assert(b && b->counts[0] == a->counts[0]);
        for (int64_t j = 0; j < a->n_per_row; j++)
            ck_assert_msg(fabsf(a->sums[j] - b->sums[j]) <= 1e-5f * fabsf(a->sums[j]), "%s[%lld]", a->name, (long long)j);
    }
    ts_imatrix_data_free(&d1);
    ts_imatrix_data_free(&d);
    free(tok);
    ts_model_free(m);
    free(path);
}
END_TEST

START_TEST(collect_experts)
{
    char *path = write_model(&MOE, "moe.gguf");
    ts_model *m = load(path);
    const int64_t n_chunks = 3, n_tok = n_chunks * CTX;
    int32_t *tok = make_tokens(n_tok, MOE.n_vocab);
    ts_imatrix_params p = {.n_ctx = CTX, .n_seq = 2, .add_bos = true, .bos = BOS, .process_output = true};
    ts_imatrix_data d;
    ts_err err = {0};
    ck_assert_msg(ts_imatrix_collect(m, tok, n_tok, &p, NULL, NULL, &d, &err) == TS_OK, "%s", err.msg);
    /* q k v o, router, 3 stacked; the tied output is token_embd: never collected */
    ck_assert_int_eq(d.n_stats, 8 * MOE.n_layer);
    ck_assert_int_eq(d.n_datasets, 0);
    ck_assert_int_eq(d.chunk_count, n_chunks);
    for (int l = 0; l < MOE.n_layer; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", l);
        const ts_imatrix_stat *router = stat_of(&d, name);
        ck_assert(router && router->n_mat == 1 && router->counts[0] == n_tok);
        const char *exps[3] = {"gate", "up", "down"};
        const ts_imatrix_stat *s[3];
        for (int e = 0; e < 3; e++) {
            snprintf(name, sizeof name, "blk.%d.ffn_%s_exps.weight", l, exps[e]);
            s[e] = stat_of(&d, name);
            ck_assert_msg(s[e] && s[e]->n_mat == MOE.n_expert, "%s", name);
            int64_t total = 0;
            for (int x = 0; x < MOE.n_expert; x++)
                total += s[e]->counts[x];
            ck_assert_int_eq(total, n_tok * MOE.n_used); /* every token reaches n_used experts */
        }
        ck_assert_int_eq(s[2]->n_per_row, MOE.n_ff_exp);
        ck_assert_mem_eq(s[0]->sums, s[1]->sums, (size_t)(MOE.n_embd * MOE.n_expert) * sizeof(float));
        ck_assert_mem_eq(s[0]->counts, s[2]->counts, (size_t)MOE.n_expert * sizeof(int64_t));
        /* gate/up over all experts saw each token's router input n_used times */
        for (int j = 0; j < MOE.n_embd; j++) {
            double sum = 0;
            for (int x = 0; x < MOE.n_expert; x++)
                sum += s[0]->sums[x * MOE.n_embd + j];
            ck_assert_msg(fabs(sum / (MOE.n_used * (double)router->sums[j]) - 1) < 1e-5, "layer %d column %d", l, j);
        }
        for (int x = 0; x < MOE.n_expert; x++)
            if (s[0]->counts[x] == 0)
                for (int j = 0; j < MOE.n_embd; j++)
                    ck_assert(s[0]->sums[x * MOE.n_embd + j] == 0.0f);
    }
    char out[512];
    snprintf(out, sizeof out, "%s/moe.imatrix.gguf", tu_tmpdir());
    ck_assert_msg(ts_imatrix_write(&d, out, NULL, &err) == TS_OK, "%s", err.msg);
    ts_imatrix *im;
    ck_assert_msg(ts_imatrix_load(out, &im, &err) == TS_OK, "%s", err.msg);
    ck_assert_int_eq(im->n_entries, d.n_stats);
    ts_imatrix_free(im);
    ts_imatrix_data_free(&d);
    free(tok);
    ts_model_free(m);
    free(path);
}
END_TEST

START_TEST(collect_refuses)
{
    char *path = write_model(&LLAMA, "bad.gguf");
    ts_model *m = load(path);
    int32_t *tok = make_tokens(4 * CTX, LLAMA.n_vocab);
    ts_imatrix_data d;
    ts_err err = {0};
    ts_imatrix_params p = {.n_ctx = CTX, .add_bos = true, .bos = BOS};
    /* shorter than two chunks (llama-imatrix's minimum) */
    ck_assert_int_eq(ts_imatrix_collect(m, tok, 2 * CTX - 1, &p, NULL, NULL, &d, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "tokenizes to only"), "%s", err.msg);
    ck_assert_int_eq(d.n_stats, 0);
    p.n_ctx = 8; /* llama-imatrix skips dense products under 16 tokens */
    ck_assert_int_eq(ts_imatrix_collect(m, tok, 4 * CTX, &p, NULL, NULL, &d, &err), TS_ERR_ARG);
    p.n_ctx = CTX;
    p.bos = 1000;
    ck_assert_int_eq(ts_imatrix_collect(m, tok, 4 * CTX, &p, NULL, NULL, &d, &err), TS_ERR_ARG);
    ts_model_free(m);
    free(path);

    /* activations too large for float: a clear error, not inf in the file */
    spec huge = LLAMA;
    huge.norm_gain = 1e30f;
    path = write_model(&huge, "huge.gguf");
    m = load(path);
    p.bos = BOS;
    ck_assert_int_eq(ts_imatrix_collect(m, tok, 4 * CTX, &p, NULL, NULL, &d, &err), TS_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "non-finite") && strstr(err.msg, "blk.0.attn_"), "%s", err.msg);
    ck_assert_int_eq(d.n_stats, 0);
    ts_model_free(m);
    free(path);
    free(tok);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("imatrix");
    TCase *tc = tcase_create("imatrix");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, write_read_round_trip);
    tcase_add_test(tc, write_refuses);
    tcase_add_test(tc, collect_dense);
    tcase_add_test(tc, collect_experts);
    tcase_add_test(tc, collect_refuses);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
