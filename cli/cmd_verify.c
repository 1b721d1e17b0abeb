/* tessera verify MODEL.gguf [--base BASE.gguf|BASE.kld] [-f TEXT] [-c N] [--chunks K]
 *                [--max-kld X] [--max-ppl-ratio R] [--min-same-top P] [--require-checksums]
 *                [--json REPORT] [-t N] [-q]
 * Exit 0: every check passed; 1: a check or gate failed; 2: bad input or options.
 * See docs/verify.md. */
#include "cli.h"
#include "verify/verify.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: tessera verify MODEL.gguf [options]\n"
            "\nChecks that a GGUF is fit to publish: it parses, every tensor the architecture needs is\n"
            "there with its shape, every block's scales are finite, the tensor checksums convert and\n"
            "quantize stored match; with --base, mean KLD, PPL ratio and same-top agreement against\n"
            "the base, gated by the limits given. Exit 0: all passed, 1: a check failed, 2: bad input.\n\n"
            "  -b, --base FILE         base model: a GGUF (scored on -f TEXT) or a .kld file\n"
            "                          (tessera perplexity --kld-save, llama-perplexity --kl-divergence-base)\n"
            "  -f, --file TEXT         text to score with a GGUF base (UTF-8)\n"
            "  -c, --ctx-size N        tokens per chunk with a GGUF base (default 512)\n"
            "      --chunks K          score at most K chunks (default: all)\n"
            "      --max-kld X         fail when the mean KL divergence exceeds X\n"
            "      --max-ppl-ratio R   fail when PPL(model) / PPL(base) exceeds R\n"
            "      --min-same-top P    fail when the top token agrees with the base's on less than P %%\n"
            "      --require-checksums fail when the file stores no tensor checksums\n"
            "      --json REPORT       write the JSON report there ('-' = stdout)\n"
            "  -t, --threads N         threads (default: CPU count)\n"
            "  -q, --quiet             no summary and no progress (errors only)\n");
}

static bool parse_num(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "tessera verify: %s %s: expected a number in %g..%g\n", opt, s, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

static void progress(void *ctx, const char *phase, const ts_ppl_progress *p)
{
    (void)ctx;
    if (p->kld)
        fprintf(stderr, "\r%-5s [%lld/%lld] PPL %.4f  KLD %.6f  same top %.2f%%  %.1fs ", phase, (long long)p->chunk,
                (long long)p->n_chunks, p->ppl, p->kld->kld.value, 100.0 * p->kld->same_top.value, p->seconds);
    else
        fprintf(stderr, "\r%-5s [%lld/%lld] PPL %.4f  %.1fs ", phase, (long long)p->chunk, (long long)p->n_chunks,
                p->ppl, p->seconds);
    if (p->chunk == p->n_chunks)
        fputc('\n', stderr);
    fflush(stderr);
}

static void summary(FILE *fp, const char *path, const ts_verify_report *r, int rc)
{
    fprintf(fp, "tessera verify: %s\n", path);
    size_t n_failed = 0;
    for (size_t i = 0; i < r->n_checks; i++) {
        const ts_check *c = &r->checks[i];
        n_failed += c->status == TS_CHECK_FAIL;
        fprintf(fp, "  %-4s  %-12s  %s\n", c->status == TS_CHECK_FAIL ? "FAIL" : ts_check_status_name(c->status),
                c->name, c->detail);
        for (uint64_t k = 1; k < c->n_failures && k < TS_CHECK_MAX_FAILURES; k++)
            fprintf(fp, "                      %s\n", c->failures[k]);
        if (c->n_failures > TS_CHECK_MAX_FAILURES)
            fprintf(fp, "                      ... and %llu more\n",
                    (unsigned long long)(c->n_failures - TS_CHECK_MAX_FAILURES));
    }
    if (rc == 2)
        fprintf(fp, "result: ERROR (the checks could not all run)\n");
    else
        fprintf(fp, "result: %s (%zu of %zu checks failed)\n", rc ? "FAIL" : "PASS", n_failed, r->n_checks);
}

static bool write_json(const char *dest, json_t *j)
{
    if (!j) {
        fprintf(stderr, "tessera verify: cannot build the JSON report\n");
        return false;
    }
    bool ok = true;
    /* 10 significant digits: 0.1 stays 0.1, and no measurement is that precise */
    const size_t flags = JSON_INDENT(2) | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(10);
    if (!strcmp(dest, "-")) {
        ok = json_dumpf(j, stdout, flags) == 0 && fputc('\n', stdout) != EOF && fflush(stdout) == 0;
        if (!ok)
            fprintf(stderr, "tessera verify: cannot write the JSON report to stdout\n");
    } else if (json_dump_file(j, dest, flags) != 0) {
        fprintf(stderr, "tessera verify: cannot write the JSON report to %s\n", dest);
        ok = false;
    }
    json_decref(j);
    return ok;
}

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"base", required_argument, NULL, 'b'},       {"file", required_argument, NULL, 'f'},
        {"ctx-size", required_argument, NULL, 'c'},   {"chunks", required_argument, NULL, 'K'},
        {"max-kld", required_argument, NULL, 'D'},    {"max-ppl-ratio", required_argument, NULL, 'R'},
        {"min-same-top", required_argument, NULL, 'T'}, {"require-checksums", no_argument, NULL, 'C'},
        {"json", required_argument, NULL, 'j'},       {"threads", required_argument, NULL, 't'},
        {"quiet", no_argument, NULL, 'q'},            {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ts_verify_opts o;
    ts_verify_opts_init(&o);
    const char *json_dest = NULL;
    bool quiet = false;
    double v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "b:f:c:t:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'b': o.base = optarg; break;
        case 'f': o.text = optarg; break;
        case 'c': if (!parse_num("-c", optarg, 4, 1 << 20, &v) || v != floor(v)) return 2; o.n_ctx = (int64_t)v; break;
        case 'K': if (!parse_num("--chunks", optarg, 1, INT32_MAX, &v) || v != floor(v)) return 2; o.max_chunks = (int64_t)v; break;
        case 'D': if (!parse_num("--max-kld", optarg, 0, 1e9, &o.max_kld)) return 2; break;
        case 'R': if (!parse_num("--max-ppl-ratio", optarg, 0, 1e9, &o.max_ppl_ratio)) return 2; break;
        case 'T': if (!parse_num("--min-same-top", optarg, 0, 100, &o.min_same_top)) return 2; break;
        case 'C': o.require_checksums = true; break;
        case 'j': json_dest = optarg; break;
        case 't': if (!cli_parse_threads(optarg, &o.n_threads)) return 2; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    const bool gated = !isnan(o.max_kld) || !isnan(o.max_ppl_ratio) || !isnan(o.min_same_top);
    if (gated && !o.base) {
        fprintf(stderr, "tessera verify: --max-kld, --max-ppl-ratio and --min-same-top need --base\n");
        return 2;
    }
    const char *path = argv[optind];
    if (!quiet && isatty(2))
        o.progress = progress;
    ts_verify_report *r = calloc(1, sizeof *r);
    if (!r) {
        fprintf(stderr, "tessera verify: out of memory\n");
        return 2;
    }
    ts_err err = {0};
    ts_status st = ts_verify(path, &o, r, &err);
    int rc = st != TS_OK ? 2 : ts_verify_passed(r) ? 0 : 1;
    if (st != TS_OK)
        fprintf(stderr, "tessera verify: %s\n", err.msg);
    /* the summary goes to stderr when stdout carries the JSON */
    if (!quiet)
        summary(json_dest && !strcmp(json_dest, "-") ? stderr : stdout, path, r, rc);
    if (json_dest && !write_json(json_dest, ts_verify_report_json(r, path, &o, rc, st ? err.msg : NULL)))
        rc = 2;
    free(r);
    return rc;
}
