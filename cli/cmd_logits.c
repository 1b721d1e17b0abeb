/* tessera logits MODEL.gguf (--ids 1,2,3 | -p TEXT) [-o FILE] [--top K] [--json]:
 * evaluates one sequence with the reference forward pass and writes every
 * position's logits (raw float32 little-endian, positions x n_vocab) or the
 * top K per position. See docs/logits.md. */
#include "cli.h"
#include "core/mapped_file.h"
#include "verify/model.h"
#include "verify/tokenize.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: tessera logits MODEL.gguf (--ids 1,2,3 | -p TEXT) [-o FILE] [--top K] [--json]\n"
            "\nEvaluates one sequence (positions 0..n-1) and writes its logits.\n\n"
            "      --ids LIST     comma-separated token ids\n"
            "  -p, --prompt TEXT  text, tokenized with the model's vocabulary (BOS added when the\n"
            "                     model adds one, special tokens recognized)\n"
            "  -o, --output FILE  raw float32 little-endian logits, positions x n_vocab\n"
            "      --top K        print the K largest logits of every position (default 5 when no -o)\n"
            "      --json         print ids and top-K as JSON on stdout\n"
            "      --kv-f16       round K/V to f16 like llama.cpp's default KV cache (default: f32)\n"
            "      --exact-activations  do not round matmul inputs the way llama.cpp does\n"
            "  -t, --threads N    threads (default: CPU count)\n");
}

static bool parse_ids(const char *s, int32_t **ids, size_t *n)
{
    size_t cap = 16, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v)
        return false;
    for (;;) {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "tessera logits: --ids: expected comma-separated non-negative integers at '%s'\n", s);
            free(v);
            return false;
        }
        if (k == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                return false;
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        if (!*end)
            break;
        s = end + 1;
    }
    *ids = v;
    *n = k;
    return true;
}

/* Indices of the k largest values, largest first (ties: lower id first),
 * by insertion into a sorted list: one pass over the row. */
static void top_k(const float *row, int64_t n, int k, int32_t *out)
{
    int have = 0;
    for (int64_t j = 0; j < n; j++) {
        if (have == k && !(row[j] > row[out[k - 1]]))
            continue;
        int pos = have < k ? have++ : k - 1;
        while (pos > 0 && row[j] > row[out[pos - 1]]) {
            out[pos] = out[pos - 1];
            pos--;
        }
        out[pos] = (int32_t)j;
    }
}

static ts_status write_logits(const char *path, const char *model, const float *logits, size_t n, ts_err *err)
{
    const char *inputs[] = {model, NULL};
    ts_atomic_file f;
    ts_status st = ts_atomic_open(path, inputs, &f, err);
    if (st)
        return st;
    /* The file is little-endian float32; so is every host we build for. */
    if ((st = ts_atomic_write(&f, logits, n * sizeof(float), err)) || (st = ts_atomic_commit(&f, err)))
        ts_atomic_abort(&f);
    return st;
}

static void print_top(const ts_tokenizer *tok, const int32_t *ids, size_t n, const float *logits, int64_t n_vocab,
                      int k, bool json)
{
    int32_t *top = malloc((size_t)k * sizeof *top);
    json_t *root = json ? json_object() : NULL, *ja = json ? json_array() : NULL, *jp = json ? json_array() : NULL;
    for (size_t i = 0; i < n; i++) {
        if (ja)
            json_array_append_new(ja, json_integer(ids[i]));
        if (!top)
            continue;
        const float *row = logits + i * (size_t)n_vocab;
        top_k(row, n_vocab, k, top);
        json_t *jt = json ? json_array() : NULL;
        if (!json)
            printf("%zu [%d]:", i, ids[i]);
        for (int q = 0; q < k; q++) {
            const char *text = tok ? ts_tokenizer_token_text(tok, top[q]) : NULL;
            if (json) {
                json_t *e = json_pack("{s:i, s:f}", "id", (json_int_t)top[q], "logit", (double)row[top[q]]);
                if (text)
                    json_object_set_new(e, "text", json_string(text));
                json_array_append_new(jt, e);
            } else {
                printf(" %d:%.6f", top[q], row[top[q]]);
                if (text)
                    printf("(%s)", text);
            }
        }
        if (json)
            json_array_append_new(jp, json_pack("{s:i, s:i, s:o}", "pos", (json_int_t)i, "id", (json_int_t)ids[i], "top", jt));
        else
            putchar('\n');
    }
    if (json) {
        json_object_set_new(root, "n_vocab", json_integer(n_vocab));
        json_object_set_new(root, "ids", ja);
        json_object_set_new(root, "positions", jp);
        cli_print_json(root);
    }
    free(top);
}

int cmd_logits(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ids", required_argument, NULL, 'i'},   {"prompt", required_argument, NULL, 'p'},
        {"output", required_argument, NULL, 'o'}, {"top", required_argument, NULL, 'k'},
        {"json", no_argument, NULL, 'j'},         {"threads", required_argument, NULL, 't'},
        {"kv-f16", no_argument, NULL, 'F'},       {"exact-activations", no_argument, NULL, 'E'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *ids_arg = NULL, *prompt = NULL, *out = NULL;
    int threads = 0, k = -1, c;
    bool json = false, kv_f16 = false, exact = false;
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:o:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'i': ids_arg = optarg; break;
        case 'p': prompt = optarg; break;
        case 'o': out = optarg; break;
        case 'k': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > 1000000) {
                fprintf(stderr, "tessera logits: --top %s: expected a count from 0\n", optarg);
                return 2;
            }
            k = (int)v;
            break;
        }
        case 'j': json = true; break;
        case 't':
            if (!cli_parse_threads(optarg, &threads))
                return 2;
            break;
        case 'F': kv_f16 = true; break;
        case 'E': exact = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc || !ids_arg == !prompt) {
        usage(stderr);
        return 2;
    }
    const char *path = argv[optind];
    if (k < 0)
        k = out ? 0 : 5;

    ts_err err = {0};
    ts_model *m = NULL;
    ts_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    float *logits = NULL;
    int rc = 1;
    if (ids_arg && !parse_ids(ids_arg, &ids, &n))
        return 2;
    if (ts_model_load(path, threads, &m, &err))
        goto fail;
    ts_model_set_kv_f16(m, kv_f16);
    ts_model_set_ggml_activations(m, !exact);
    /* The tokenizer gives --top its token texts; without -p a file lacking one is fine. */
    if (ts_tokenizer_from_gguf(ts_model_gguf(m), &tok, &err) && prompt)
        goto fail;
    if (prompt && ts_tokenize(tok, prompt, strlen(prompt), true, true, &ids, &n, &err))
        goto fail;
    if (n == 0) {
        fprintf(stderr, "tessera logits: no tokens to evaluate\n");
        rc = 2;
        goto done;
    }
    const int64_t n_vocab = ts_model_n_vocab(m);
    if (k > n_vocab)
        k = (int)n_vocab;
    logits = malloc(n * (size_t)n_vocab * sizeof *logits);
    if (!logits) {
        ts_fail(&err, TS_ERR_NOMEM, "out of memory for %zu x %lld logits", n, (long long)n_vocab);
        goto fail;
    }
    if (ts_model_eval(m, ids, (int64_t)n, logits, &err))
        goto fail;
    if (out && write_logits(out, path, logits, n * (size_t)n_vocab, &err))
        goto fail;
    if (k > 0 || json)
        print_top(tok, ids, n, logits, n_vocab, k, json);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "tessera logits: %s\n", err.msg);
    rc = err.code == TS_ERR_ARG ? 2 : 1;
done:
    free(logits);
    free(ids);
    ts_tokenizer_free(tok);
    ts_model_free(m);
    return rc;
}
