/* tessera imatrix MODEL.gguf -f CALIB [-o imatrix.gguf] [-c 512] [-b N] [--chunks K] [-t N]
 *                [--process-output] [-q] [--json]
 * llama-imatrix's collection on the reference forward pass; see docs/imatrix.md. */
#include "cli.h"
#include "core/mapped_file.h"
#include "verify/imatrix_collect.h"
#include "verify/model.h"
#include "verify/tokenize.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: tessera imatrix MODEL.gguf -f CALIB [-o imatrix.gguf] [options]\n"
            "\nImportance matrix as llama-imatrix collects it: the calibration text cut into chunks of\n"
            "-c tokens (each starting with BOS when the model adds one), and for every weight matrix\n"
            "of the blocks the sum of squared input activations per column and the token count\n"
            "(per expert for stacked expert tensors). Written in llama.cpp's GGUF imatrix format,\n"
            "for `tessera quantize --imatrix` and llama-quantize --imatrix.\n\n"
            "  -f, --file CALIB     calibration text (UTF-8); never the text you evaluate on\n"
            "  -o, --output FILE    where to write (default imatrix.gguf)\n"
            "  -c, --ctx-size N     tokens per chunk (default 512, at least 16)\n"
            "  -b, --batch-size N   tokens per batch (default 2048): max(1, N / ctx-size) chunks are\n"
            "                       evaluated together, as llama-imatrix does\n"
            "      --chunks K       use at most K chunks (default: all)\n"
            "      --process-output also collect output.weight (llama-imatrix --process-output)\n"
            "      --kv-f32         keep K/V in f32 (default: f16, as llama.cpp's default KV cache)\n"
            "  -t, --threads N      threads (default: CPU count)\n"
            "      --json           print a summary as JSON on stdout\n"
            "  -q, --quiet          no progress\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress(void *ctx, const ts_imatrix_progress *p)
{
    (void)ctx;
    const double eta = p->chunk > 0 ? p->seconds / (double)p->chunk * (double)(p->n_chunks - p->chunk) : 0.0;
    fprintf(stderr, "\r[%lld/%lld] chunks  %.1fs  ETA %.0fs ", (long long)p->chunk, (long long)p->n_chunks, p->seconds,
            eta);
    fflush(stderr);
}

int cmd_imatrix(int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},       {"output", required_argument, NULL, 'o'},
        {"ctx-size", required_argument, NULL, 'c'},   {"batch-size", required_argument, NULL, 'b'},
        {"chunks", required_argument, NULL, 'K'},     {"threads", required_argument, NULL, 't'},
        {"process-output", no_argument, NULL, 'P'},   {"json", no_argument, NULL, 'j'},
        {"kv-f32", no_argument, NULL, 'F'},
        {"quiet", no_argument, NULL, 'q'},            {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *text_path = NULL, *out_path = "imatrix.gguf";
    long n_ctx = 512, batch = 2048, chunks = -1;
    int threads = 0, c;
    bool json = false, quiet = false, process_output = false, kv_f32 = false;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:o:c:b:t:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'f': text_path = optarg; break;
        case 'o': out_path = optarg; break;
        case 'c': if (!cli_parse_count("imatrix", "-c", optarg, 16, 1 << 20, &n_ctx)) return 2; break;
        case 'b': if (!cli_parse_count("imatrix", "-b", optarg, 1, 1 << 24, &batch)) return 2; break;
        case 'K': if (!cli_parse_count("imatrix", "--chunks", optarg, 1, INT32_MAX, &chunks)) return 2; break;
        case 't': if (!cli_parse_threads(optarg, &threads)) return 2; break;
        case 'P': process_output = true; break;
        case 'F': kv_f32 = true; break;
        case 'j': json = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc || !text_path || !*out_path) {
        if (!text_path)
            fprintf(stderr, "tessera imatrix: -f CALIB is required\n");
        usage(stderr);
        return 2;
    }
    const char *path = argv[optind];
    ts_err err = {0};
    ts_model *m = NULL;
    ts_tokenizer *tok = NULL;
    char *text = NULL;
    size_t text_len = 0, n_tokens = 0;
    int32_t *tokens = NULL;
    ts_imatrix_data d = {0};
    int rc = 1;
    /* The text first: a missing or empty file is the cheapest mistake to report. */
    if (ts_read_small_file(text_path, (uint64_t)1 << 31, &text, &text_len, &err))
        goto fail;
    if (text_len == 0) {
        ts_fail(&err, TS_ERR_ARG, "%s: the calibration file is empty", text_path);
        goto fail;
    }
    if (ts_model_load(path, threads, &m, &err))
        goto fail;
    /* llama-imatrix's context defaults: F16 KV cache, ggml's rounding of matmul inputs. */
    ts_model_set_kv_f16(m, !kv_f32);
    ts_model_set_ggml_activations(m, true);
    if (ts_tokenizer_from_gguf(ts_model_gguf(m), &tok, &err))
        goto fail;
    bool add_eos = false;
    if (ts_gguf_get_bool(ts_model_gguf(m), "tokenizer.ggml.add_eos_token", &add_eos) && add_eos) {
        ts_fail(&err, TS_ERR_UNSUPPORTED, "%s: the model adds EOS to every text; llama-imatrix refuses such models too", path);
        goto fail;
    }
    if (ts_tokenize(tok, text, text_len, true, false, &tokens, &n_tokens, &err))
        goto fail;
    ts_imatrix_params p = {.n_ctx = n_ctx, .max_chunks = chunks, .n_seq = batch / n_ctx,
                           .add_bos = ts_tokenizer_adds_bos(tok), .bos = ts_tokenizer_bos(tok),
                           .process_output = process_output, .dataset = text_path};
    const bool show = !quiet && isatty(2);
    const double t0 = now_s();
    if (ts_imatrix_collect(m, tokens, (int64_t)n_tokens, &p, show ? progress : NULL, NULL, &d, &err))
        goto fail;
    const double seconds = now_s() - t0;
    if (show)
        fputc('\n', stderr);
    const char *keep[] = {path, text_path, NULL};
    if (ts_imatrix_write(&d, out_path, keep, &err))
        goto fail;
    int64_t n_mats = 0, n_unseen = 0;
    for (size_t i = 0; i < d.n_stats; i++)
        for (int64_t e = 0; e < d.stats[i].n_mat; e++) {
            n_mats++;
            n_unseen += d.stats[i].counts[e] == 0;
        }
    const int64_t n_chunks = d.chunk_count, n_eval = n_chunks * n_ctx;
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f}", "model", path, "output", out_path,
                              "dataset", text_path, "n_ctx", (json_int_t)n_ctx, "chunks", (json_int_t)n_chunks,
                              "tokens_in_text", (json_int_t)n_tokens, "tokens_evaluated", (json_int_t)n_eval,
                              "entries", (json_int_t)d.n_stats, "matrices_without_tokens", (json_int_t)n_unseen,
                              "threads", (json_int_t)ts_model_n_threads(m), "seconds", seconds,
                              "tokens_per_second", seconds > 0 ? (double)n_eval / seconds : 0.0);
        cli_print_json(j);
    }
    if (!quiet) {
        fprintf(stderr, "%s: %zu entries (%lld matrices", out_path, d.n_stats, (long long)n_mats);
        if (n_unseen)
            fprintf(stderr, ", %lld experts saw no token", (long long)n_unseen);
        fprintf(stderr, ") from %lld chunks of %ld tokens in %.2f s\n", (long long)n_chunks, n_ctx, seconds);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "tessera imatrix: %s\n", err.msg);
    rc = err.code == TS_ERR_ARG ? 2 : 1;
done:
    ts_imatrix_data_free(&d);
    free(tokens);
    free(text);
    ts_tokenizer_free(tok);
    ts_model_free(m);
    return rc;
}
