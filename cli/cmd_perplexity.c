/* tessera perplexity MODEL.gguf -f TEXT [-c 512] [-b N] [-t N] [--chunks K] [--json]
 *                   [--kld-save BASE.kld] [--kld BASE.kld]
 * llama-perplexity's method on the reference forward pass; see docs/perplexity.md. */
#include "cli.h"
#include "core/mapped_file.h"
#include "verify/model.h"
#include "verify/perplexity.h"
#include "verify/tokenize.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: tessera perplexity MODEL.gguf -f TEXT [options]\n"
            "       tessera perplexity MODEL.gguf -f TEXT --kld-save BASE.kld [options]\n"
            "       tessera perplexity MODEL.gguf --kld BASE.kld [options]\n"
            "\nPerplexity as llama-perplexity computes it: the text cut into chunks of -c tokens,\n"
            "each starting with BOS when the model adds one, the second half of each scored.\n"
            "Prints \"PPL = x +/- y\" on stdout and a running estimate on stderr (on a terminal).\n\n"
            "  -f, --file TEXT      text to score (UTF-8)\n"
            "  -c, --ctx-size N     tokens per chunk (default 512)\n"
            "  -b, --batch-size N   tokens per batch (default 2048): max(1, N / ctx-size) chunks are\n"
            "                       evaluated together, as llama-perplexity does (results do not change)\n"
            "      --chunks K       score at most K chunks (default: all)\n"
            "  -t, --threads N      threads (default: CPU count)\n"
            "      --kld-save FILE  save the log-probabilities (llama.cpp's --kl-divergence-base file)\n"
            "      --kld FILE       KL divergence against a saved base (its tokens and -c are used)\n"
            "      --kv-f32         keep K/V in f32 (default: f16, as llama.cpp's default KV cache)\n"
            "      --exact-activations  do not round matmul inputs the way llama.cpp does\n"
            "      --json           print the result as JSON on stdout\n"
            "  -q, --quiet          no running estimate\n");
}

static void progress(void *ctx, const ts_ppl_progress *p)
{
    (void)ctx;
    if (p->kld)
        fprintf(stderr, "\r[%lld/%lld] PPL %.4f +/- %.4f  KLD %.6f +/- %.6f  same top %.2f%%  %.1fs ", (long long)p->chunk,
                (long long)p->n_chunks, p->ppl, p->ppl_err, p->kld->kld.value, p->kld->kld.err,
                100.0 * p->kld->same_top.value, p->seconds);
    else
        fprintf(stderr, "\r[%lld/%lld] PPL %.4f +/- %.5f  %.1fs ", (long long)p->chunk, (long long)p->n_chunks, p->ppl,
                p->ppl_err, p->seconds);
    fflush(stderr);
}

static json_t *est(ts_kld_est e) { return json_pack("{s:f, s:f}", "value", e.value, "err", e.err); }

static void print_kld(const ts_kld_stats *s)
{
    printf("====== Perplexity statistics ======\n");
    printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", s->ppl.value, s->ppl.err);
    printf("Mean PPL(base)                : %10.6f ± %10.6f\n", s->ppl_base.value, s->ppl_base.err);
    printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * s->ppl_cor);
    printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", s->ln_ppl_ratio.value, s->ln_ppl_ratio.err);
    printf("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", s->ppl_ratio.value, s->ppl_ratio.err);
    printf("Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n", s->ppl_diff.value, s->ppl_diff.err);
    printf("\n====== KL divergence statistics ======\n");
    printf("Mean    KLD: %10.6f ± %10.6f\n", s->kld.value, s->kld.err);
    printf("Maximum KLD: %10.6f\n99.9%%   KLD: %10.6f\n99.0%%   KLD: %10.6f\n95.0%%   KLD: %10.6f\n"
           "90.0%%   KLD: %10.6f\nMedian  KLD: %10.6f\n10.0%%   KLD: %10.6f\n 5.0%%   KLD: %10.6f\n"
           " 1.0%%   KLD: %10.6f\n 0.1%%   KLD: %10.6f\nMinimum KLD: %10.6f\n",
           s->kld_max, s->kld_p999, s->kld_p99, s->kld_p95, s->kld_p90, s->kld_median, s->kld_p10, s->kld_p5,
           s->kld_p1, s->kld_p01, s->kld_min);
    printf("\n====== Token probability statistics ======\n");
    printf("Mean    Δp: %6.3f ± %5.3f %%\n", 100.0 * s->p_diff.value, 100.0 * s->p_diff.err);
    printf("Maximum Δp: %6.3f%%\n99.9%%   Δp: %6.3f%%\n99.0%%   Δp: %6.3f%%\n95.0%%   Δp: %6.3f%%\n"
           "90.0%%   Δp: %6.3f%%\n75.0%%   Δp: %6.3f%%\nMedian  Δp: %6.3f%%\n25.0%%   Δp: %6.3f%%\n"
           "10.0%%   Δp: %6.3f%%\n 5.0%%   Δp: %6.3f%%\n 1.0%%   Δp: %6.3f%%\n 0.1%%   Δp: %6.3f%%\n"
           "Minimum Δp: %6.3f%%\n",
           100 * s->dp_max, 100 * s->dp_p999, 100 * s->dp_p99, 100 * s->dp_p95, 100 * s->dp_p90, 100 * s->dp_p75,
           100 * s->dp_median, 100 * s->dp_p25, 100 * s->dp_p10, 100 * s->dp_p5, 100 * s->dp_p1, 100 * s->dp_p01,
           100 * s->dp_min);
    printf("RMS Δp    : %6.3f ± %5.3f %%\n", 100.0 * s->p_diff_rms.value, 100.0 * s->p_diff_rms.err);
    printf("Same top p: %6.3f ± %5.3f %%\n", 100.0 * s->same_top.value, 100.0 * s->same_top.err);
}

static json_t *kld_json(const ts_kld_stats *s)
{
    json_t *pc = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "max", s->kld_max, "99.9",
                           s->kld_p999, "99", s->kld_p99, "95", s->kld_p95, "90", s->kld_p90, "median", s->kld_median,
                           "10", s->kld_p10, "5", s->kld_p5, "1", s->kld_p1, "0.1", s->kld_p01, "min", s->kld_min);
    json_t *dp = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "max", s->dp_max,
                           "99.9", s->dp_p999, "99", s->dp_p99, "95", s->dp_p95, "90", s->dp_p90, "75", s->dp_p75,
                           "median", s->dp_median, "25", s->dp_p25, "10", s->dp_p10, "5", s->dp_p5, "1", s->dp_p1,
                           "0.1", s->dp_p01, "min", s->dp_min);
    return json_pack("{s:o, s:o, s:f, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "ppl", est(s->ppl),
                     "ppl_base", est(s->ppl_base), "ppl_cor", s->ppl_cor, "ln_ppl_ratio", est(s->ln_ppl_ratio),
                     "ppl_ratio", est(s->ppl_ratio), "ppl_diff", est(s->ppl_diff), "kld", est(s->kld),
                     "kld_percentiles", pc, "p_diff", est(s->p_diff), "p_diff_percentiles", dp, "p_diff_rms",
                     est(s->p_diff_rms), "same_top", est(s->same_top), "max_abs_p_diff",
                     json_real(fmax(fabs(s->dp_max), fabs(s->dp_min))));
}

int cmd_perplexity(int argc, char **argv)
{
    static const struct option opts[] = {
        {"file", required_argument, NULL, 'f'},     {"ctx-size", required_argument, NULL, 'c'},
        {"batch-size", required_argument, NULL, 'b'}, {"chunks", required_argument, NULL, 'K'},
        {"threads", required_argument, NULL, 't'},  {"kld-save", required_argument, NULL, 'S'},
        {"kld", required_argument, NULL, 'L'},      {"kv-f32", no_argument, NULL, 'F'},
        {"exact-activations", no_argument, NULL, 'E'}, {"json", no_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},          {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *text_path = NULL, *kld_save = NULL, *kld_base = NULL;
    long n_ctx = 512, batch = 2048, chunks = -1;
    int threads = 0, c;
    bool json = false, quiet = false, kv_f32 = false, exact = false;
    optind = 1;
    while ((c = getopt_long(argc, argv, "f:c:b:t:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'f': text_path = optarg; break;
        case 'c': if (!cli_parse_count("perplexity", "-c", optarg, 4, 1 << 20, &n_ctx)) return 2; break;
        case 'b': if (!cli_parse_count("perplexity", "-b", optarg, 1, 1 << 24, &batch)) return 2; break;
        case 'K': if (!cli_parse_count("perplexity", "--chunks", optarg, 1, INT32_MAX, &chunks)) return 2; break;
        case 't': if (!cli_parse_threads(optarg, &threads)) return 2; break;
        case 'S': kld_save = optarg; break;
        case 'L': kld_base = optarg; break;
        case 'F': kv_f32 = true; break;
        case 'E': exact = true; break;
        case 'j': json = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc || (!text_path && !kld_base) || (kld_save && kld_base)) {
        if (kld_save && kld_base)
            fprintf(stderr, "tessera perplexity: --kld-save and --kld cannot be used together\n");
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
    ts_kld_file base;
    bool have_base = false;
    int rc = 1;
    if (ts_model_load(path, threads, &m, &err))
        goto fail;
    ts_model_set_kv_f16(m, !kv_f32);
    ts_model_set_ggml_activations(m, !exact);
    if (ts_tokenizer_from_gguf(ts_model_gguf(m), &tok, &err))
        goto fail;
    bool add_eos = false;
    if (ts_gguf_get_bool(ts_model_gguf(m), "tokenizer.ggml.add_eos_token", &add_eos) && add_eos) {
        ts_fail(&err, TS_ERR_UNSUPPORTED, "%s: the model adds EOS to every text; llama-perplexity refuses such models too", path);
        goto fail;
    }
    ts_ppl_params p = {.n_ctx = n_ctx, .max_chunks = chunks, .n_seq = batch / n_ctx, .add_bos = ts_tokenizer_adds_bos(tok),
                       .bos = ts_tokenizer_bos(tok), .kld_save = kld_save};
    const char *keep[] = {path, text_path, NULL};
    p.kld_save_keep = keep;
    if (kld_base) {
        if (ts_kld_open(kld_base, &base, &err))
            goto fail;
        have_base = true;
        p.kld_base = &base;
        if (text_path && !quiet)
            fprintf(stderr, "tessera perplexity: -f ignored: --kld evaluates the base file's tokens\n");
    } else {
        if (ts_read_small_file(text_path, (uint64_t)1 << 31, &text, &text_len, &err) ||
            ts_tokenize(tok, text, text_len, true, false, &tokens, &n_tokens, &err))
            goto fail;
    }
    ts_ppl_result r;
    bool show = !quiet && isatty(2);
    if (ts_perplexity(m, tokens, (int64_t)n_tokens, &p, show ? progress : NULL, NULL, &r, &err))
        goto fail;
    if (show)
        fputc('\n', stderr);
    const double tps = r.seconds > 0 ? (double)(r.n_chunks * r.n_ctx) / r.seconds : 0.0;
    if (json) {
        json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:i}", "model", path, "n_ctx",
                              (json_int_t)r.n_ctx, "chunks", (json_int_t)r.n_chunks, "tokens_scored",
                              (json_int_t)r.count, "ppl", r.ppl, "ppl_err", r.ppl_err, "seconds", r.seconds,
                              "tokens_per_second", tps, "threads", (json_int_t)ts_model_n_threads(m));
        if (r.has_kld)
            json_object_set_new(j, "kld", kld_json(&r.kld));
        cli_print_json(j);
    } else if (r.has_kld) {
        print_kld(&r.kld);
    } else {
        printf("PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
    }
    if (!quiet && !json)
        fprintf(stderr, "%lld chunks of %lld tokens in %.2f s (%.1f tokens/s, %d threads)\n", (long long)r.n_chunks,
                (long long)r.n_ctx, r.seconds, tps, ts_model_n_threads(m));
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "tessera perplexity: %s\n", err.msg);
    rc = err.code == TS_ERR_ARG ? 2 : 1;
done:
    if (have_base)
        ts_kld_close(&base);
    free(tokens);
    free(text);
    ts_tokenizer_free(tok);
    ts_model_free(m);
    return rc;
}
