// ts_llama imatrix: llama-imatrix's collection (tools/imatrix/imatrix.cpp in
// llama.cpp v0.5.0: IMatrixCollector::collect_imatrix, compute_imatrix,
// save_imatrix) re-done in C over libllama's public API, so test_imatrix.sh
// can compare `tessera imatrix` with what llama.cpp itself collects. The
// libraries ship no imatrix tool; the scheduler's eval callback (cb_eval)
// shows every MUL_MAT / MUL_MAT_ID node with its f32 input, as it does to
// llama-imatrix. Perplexity is not computed (it does not change the file).
//
//   ts_llama imatrix MODEL.gguf TEXTFILE -o OUT.gguf [-c 512] [-b 2048] [--chunks K] [-t N]
//                    [--process-output] [--kv-f32]
// --kv-f32: F32 KV cache and no flash attention (llama-imatrix's defaults are
// F16 and auto), to compare collection with less rounding in the way.
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ggml-backend.h"
#include "ts_llama.h"

typedef struct {
    char *name;
    float *values; // n_values = n_per_row * n_mat, float sums as llama-imatrix keeps them
    int64_t n_values;
    int64_t *counts; // 1 for dense weights, n_as for MUL_MAT_ID
    int64_t n_counts;
} stat;

typedef struct {
    stat *v;
    size_t n, cap;
    bool process_output;
    char *src1; // copy of a non-host src1 (never on the CPU backend, kept for fidelity)
    size_t src1_cap;
    char *ids;
    size_t ids_cap;
} collector;

// "CUDA0#blk.0.attn_k.weight#0" -> "blk.0.attn_k.weight" (filter_tensor_name).
static void filter_name(const char *name, char *out, size_t n) {
    const char *p = strchr(name, '#');
    if (p) {
        p++;
        const char *q = strchr(p, '#');
        snprintf(out, n, "%.*s", (int)(q ? (size_t)(q - p) : strlen(p)), p);
    } else {
        snprintf(out, n, "%s", name);
    }
}

static stat *get_stat(collector *c, const char *name) {
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->v[i].name, name))
            return &c->v[i];
    if (c->n == c->cap && !(c->v = realloc(c->v, (c->cap = c->cap ? 2 * c->cap : 64) * sizeof *c->v)))
        die("out of memory");
    stat *s = &c->v[c->n++];
    memset(s, 0, sizeof *s);
    if (!(s->name = strdup(name)))
        die("out of memory");
    return s;
}

static void stat_init(stat *s, int64_t n_values, int64_t n_counts) {
    s->values = calloc((size_t)n_values, sizeof *s->values);
    s->counts = calloc((size_t)n_counts, sizeof *s->counts);
    if (!s->values || !s->counts)
        die("out of memory");
    s->n_values = n_values;
    s->n_counts = n_counts;
}

static void grow(char **buf, size_t *cap, size_t n) {
    if (n > *cap) {
        free(*buf);
        if (!(*buf = malloc(n)))
            die("out of memory");
        *cap = n;
    }
}

static void check_finite(const float *v, int64_t n, const char *name) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            die("non-finite values detected in %s", name);
}

static bool collect(struct ggml_tensor *t, bool ask, void *user) {
    collector *c = user;
    if (t->op != GGML_OP_MUL_MAT && t->op != GGML_OP_MUL_MAT_ID)
        return false;
    const struct ggml_tensor *src0 = t->src[0], *src1 = t->src[1];
    char wname[GGML_MAX_NAME + 8];
    filter_name(src0->name, wname, sizeof wname);
    if (ask) {
        if (t->op == GGML_OP_MUL_MAT_ID)
            return true; // every indirect product
        if (src1->ne[1] < 16 || src1->type != GGML_TYPE_F32)
            return false; // llama-imatrix ignores small batches
        return !strncmp(wname, "blk.", 4) || (c->process_output && !strcmp(wname, "output.weight"));
    }
    const char *data = (const char *)src1->data;
    if (!ggml_backend_buffer_is_host(src1->buffer)) {
        grow(&c->src1, &c->src1_cap, ggml_nbytes(src1));
        ggml_backend_tensor_get(src1, c->src1, 0, ggml_nbytes(src1));
        data = c->src1;
    }
    if (src1->nb[0] != ggml_element_size(src1))
        die("%s: non-contiguous rows in src1", wname);
    stat *e = get_stat(c, wname);
    if (t->op == GGML_OP_MUL_MAT_ID) {
        // ids -> [n_expert_used, n_tokens], src1 -> [cols, n_expert_used (or 1, broadcast), n_tokens]
        const struct ggml_tensor *ids = t->src[2];
        const int64_t n_as = src0->ne[2], n_ids = ids->ne[0];
        if (ids->ne[1] != src1->ne[2] || ggml_nrows(src1) != src1->ne[1] * src1->ne[2])
            die("%s: unexpected MUL_MAT_ID shapes", wname);
        grow(&c->ids, &c->ids_cap, ggml_nbytes(ids));
        ggml_backend_tensor_get(ids, c->ids, 0, ggml_nbytes(ids));
        if (!e->values)
            stat_init(e, src1->ne[0] * n_as, n_as);
        else if (e->n_values != src1->ne[0] * n_as || e->n_counts != n_as)
            die("inconsistent size for %s", wname);
        const int64_t ne0 = src1->ne[0], n_tokens = src1->ne[2];
        // The same loop order as llama-imatrix: slot, then token.
        for (int64_t idx = 0; idx < n_ids; idx++)
            for (int64_t row = 0; row < n_tokens; row++) {
                const int32_t ex = *(const int32_t *)(c->ids + row * ids->nb[1] + idx * ids->nb[0]);
                if (ex < 0 || ex >= n_as)
                    die("%s: expert id %d out of range", wname, ex);
                const int64_t i11 = idx % src1->ne[1];
                const float *x = (const float *)(data + i11 * src1->nb[1] + row * src1->nb[2]);
                float *acc = e->values + ex * ne0;
                e->counts[ex]++;
                for (int64_t j = 0; j < ne0; j++)
                    acc[j] += x[j] * x[j];
            }
        check_finite(e->values, e->n_values, wname);
    } else {
        const int64_t n_mat = src0->ne[2] * src0->ne[3], ne0 = src1->ne[0];
        if (!e->values)
            stat_init(e, ne0 * n_mat, 1);
        else if (e->n_values != ne0 * n_mat)
            die("inconsistent size for %s", wname);
        for (int64_t i3 = 0; i3 < src1->ne[3]; i3++)
            for (int64_t i2 = 0; i2 < src1->ne[2]; i2++) {
                const int64_t mat_id = (i3 % src0->ne[3]) * src0->ne[2] + (i2 % src0->ne[2]);
                float *acc = e->values + mat_id * ne0;
                for (int64_t row = 0; row < src1->ne[1]; row++) {
                    const float *x = (const float *)(data + row * src1->nb[1] + i2 * src1->nb[2] + i3 * src1->nb[3]);
                    for (int64_t j = 0; j < ne0; j++)
                        acc[j] += x[j] * x[j];
                }
            }
        check_finite(e->values, e->n_values, wname);
        for (int64_t i = 0; i < e->n_counts; i++)
            e->counts[i] += ggml_nrows(src1) / n_mat;
    }
    return true;
}

static int cmp_stat(const void *a, const void *b) {
    return strcmp(((const stat *)a)->name, ((const stat *)b)->name);
}

// save_imatrix: keys general.type, imatrix.datasets, imatrix.chunk_count,
// imatrix.chunk_size; per entry in name order "<name>.in_sum2" [n/nmat, nmat]
// and "<name>.counts" [1, nmat], F32.
static void save(collector *c, const char *out, const char *dataset, int32_t chunk_size) {
    qsort(c->v, c->n, sizeof *c->v, cmp_stat);
    int64_t max_count = 0;
    size_t mem = 0;
    for (size_t i = 0; i < c->n; i++) {
        for (int64_t k = 0; k < c->v[i].n_counts; k++)
            max_count = c->v[i].counts[k] > max_count ? c->v[i].counts[k] : max_count;
        mem += 2 * ggml_tensor_overhead() + sizeof(float) * (size_t)(c->v[i].n_values + c->v[i].n_counts) + 64;
    }
    struct ggml_init_params ip = {.mem_size = mem + 1024, .mem_buffer = NULL, .no_alloc = false};
    struct ggml_context *ctx = ggml_init(ip);
    struct gguf_context *g = gguf_init_empty();
    if (!ctx || !g)
        die("out of memory");
    gguf_set_val_str(g, "general.type", "imatrix");
    const char *ds[1] = {dataset};
    gguf_set_arr_str(g, "imatrix.datasets", ds, 1);
    gguf_set_val_u32(g, "imatrix.chunk_count", (uint32_t)(max_count / chunk_size));
    gguf_set_val_u32(g, "imatrix.chunk_size", (uint32_t)chunk_size);
    for (size_t i = 0; i < c->n; i++) {
        const stat *s = &c->v[i];
        struct ggml_tensor *sums = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, s->n_values / s->n_counts, s->n_counts);
        struct ggml_tensor *counts = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1, s->n_counts);
        ggml_format_name(sums, "%s.in_sum2", s->name);
        ggml_format_name(counts, "%s.counts", s->name);
        memcpy(sums->data, s->values, sizeof(float) * (size_t)s->n_values);
        for (int64_t k = 0; k < s->n_counts; k++)
            ((float *)counts->data)[k] = (float)s->counts[k];
        gguf_add_tensor(g, sums);
        gguf_add_tensor(g, counts);
    }
    if (!gguf_write_to_file(g, out, false))
        die("%s: cannot write the imatrix", out);
    gguf_free(g);
    ggml_free(ctx);
}

int cmd_imatrix(int argc, char **argv) {
    if (argc < 4)
        die("usage: ts_llama imatrix MODEL.gguf TEXTFILE -o OUT.gguf [-c 512] [-b 2048] [--chunks K] [-t N] "
            "[--process-output] [--kv-f32]");
    long n_ctx = 512, n_batch = 2048, max_chunks = -1, threads = sysconf(_SC_NPROCESSORS_ONLN);
    const char *out = NULL;
    collector c = {0};
    bool kv_f32 = false;
    for (int i = 4; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--process-output"))
            c.process_output = true;
        else if (!strcmp(argv[i], "--kv-f32"))
            kv_f32 = true;
        else if (!strcmp(argv[i], "-o") && v)
            out = v, i++;
        else if (!strcmp(argv[i], "-c"))
            n_ctx = parse_long(argv[i], v, 16, 1 << 20), i++;
        else if (!strcmp(argv[i], "-b"))
            n_batch = parse_long(argv[i], v, 1, 1 << 24), i++;
        else if (!strcmp(argv[i], "--chunks"))
            max_chunks = parse_long(argv[i], v, 1, INT32_MAX), i++;
        else if (!strcmp(argv[i], "-t"))
            threads = parse_long(argv[i], v, 1, 512), i++;
        else
            die("imatrix: unknown option %s", argv[i]);
    }
    if (!out)
        die("imatrix: -o OUT.gguf is required");
    if (threads < 1 || threads > 512)
        threads = 1;
    // main(): n_seq chunks share one context of n_seq * n_ctx cells.
    const long n_seq = n_batch / n_ctx > 1 ? n_batch / n_ctx : 1;
    n_batch = n_batch < n_seq * n_ctx ? n_batch : n_seq * n_ctx;
    if (n_batch < n_ctx)
        die("imatrix: -b below -c (a chunk in several batches) is not implemented here");

    struct llama_model *model = load_model(argv[2], LOAD_WEIGHTS);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const bool add_bos = llama_vocab_get_add_bos(vocab);
    if (llama_vocab_get_add_eos(vocab))
        die("%s: the model adds EOS to every text; llama-imatrix refuses such models too", argv[2]);
    int32_t n_tok;
    llama_token *tokens = tokenize_all(vocab, argv[3], &n_tok);
    if (n_tok < 2 * n_ctx)
        die("%s tokenizes to only %d tokens; a context of %ld needs at least %ld", argv[3], n_tok, n_ctx, 2 * n_ctx);
    long n_chunk = n_tok / n_ctx;
    if (max_chunks > 0 && max_chunks < n_chunk)
        n_chunk = max_chunks;

    // llama-imatrix's context: the defaults (F16 KV cache, flash attention
    // auto, n_ubatch 512), n_seq sequences, the collector as eval callback.
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_seq * n_ctx);
    cp.n_batch = (uint32_t)n_batch;
    cp.n_seq_max = (uint32_t)n_seq;
    cp.n_threads = cp.n_threads_batch = (int32_t)threads;
    cp.cb_eval = collect;
    cp.cb_eval_user_data = &c;
    cp.no_perf = true;
    if (kv_f32) {
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        cp.type_k = cp.type_v = GGML_TYPE_F32;
    }
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx)
        die("llama_init_from_model failed for %s (n_ctx %ld)", argv[2], n_seq * n_ctx);

    struct llama_batch batch = llama_batch_init((int32_t)n_batch, 0, 1);
    for (long i = 0; i < n_chunk; i += n_seq) {
        const long start = i * n_ctx, n_seq_batch = n_seq < n_chunk - i ? n_seq : n_chunk - i;
        llama_memory_clear(llama_get_memory(ctx), true);
        int32_t n = 0;
        for (long seq = 0; seq < n_seq_batch; seq++)
            for (long k = 0; k < n_ctx; k++, n++) {
                const llama_token tok = tokens[start + seq * n_ctx + k];
                batch.token[n] = k == 0 && add_bos ? llama_vocab_bos(vocab) : tok;
                batch.pos[n] = (llama_pos)k;
                batch.n_seq_id[n] = 1;
                batch.seq_id[n][0] = (llama_seq_id)seq;
                batch.logits[n] = 1; // every output, as llama-imatrix asks (the last layer runs on all rows)
            }
        batch.n_tokens = n;
        int32_t rc = llama_decode(ctx, batch);
        if (rc != 0)
            die("llama_decode failed (%d) on chunk %ld", rc, i + 1);
    }
    llama_synchronize(ctx);
    save(&c, out, argv[3], (int32_t)n_ctx);
    printf("{\"chunks\": %ld, \"n_ctx\": %ld, \"n_seq\": %ld, \"entries\": %zu}\n", n_chunk, n_ctx, n_seq, c.n);
    for (size_t i = 0; i < c.n; i++) {
        free(c.v[i].name);
        free(c.v[i].values);
        free(c.v[i].counts);
    }
    free(c.v);
    free(c.src1);
    free(c.ids);
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    free(tokens);
    return fflush(stdout) ? 1 : 0;
}
