/* tessera release MODEL -o DIR --types T,T,... [options]: every variant in one
 * pass, measured, with a model card and checksums; see docs/release.md. */
#include "cli.h"
#include "core/progress.h"
#include "pipeline/release.h"
#include "quant/mix.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: tessera release MODEL -o DIR --types TYPE[,TYPE...] [options]\n"
            "\n"
            "Every quantized variant of MODEL (a checkpoint folder or a GGUF) from one pass over it:\n"
            "each tensor is read once and quantized to every type, each file byte for byte what\n"
            "`tessera quantize MODEL FILE TYPE` writes. Then every file is checked and measured and\n"
            "DIR/README.md (the model card), DIR/release.json and DIR/SHA256SUMS are written.\n"
            "Run again after an interruption: complete variants are kept, the rest written.\n"
            "\n"
            "  -o, --output DIR          output folder (created); work files go to DIR/.work\n"
            "      --types LIST          comma-separated types, e.g. Q2_K,Q3_K_M,Q4_K_M,Q5_K_M,Q6_K,Q8_0\n"
            "      --imatrix FILE|auto   importance matrix for every type; auto: collected once from\n"
            "                            --calib on the unquantized model into DIR/imatrix.gguf\n"
            "      --calib TEXT          calibration text for --imatrix auto\n"
            "      --calib-chunks K      use at most K chunks of it (default: all)\n"
            "      --eval TEXT           measure perplexity, KLD and same-top on this text\n"
            "  -c, --ctx-size N          tokens per chunk for --eval and --calib (default 512)\n"
            "      --chunks K            score at most K chunks of --eval (default: all)\n"
            "      --split-max-size SIZE split files larger than SIZE into gguf-split parts\n"
            "                            (K, M, G, T: powers of 1000; KiB, MiB, GiB: of 1024)\n"
            "  -t, --threads N           threads (default: CPU count)\n"
            "      --json                print release.json on stdout\n"
            "  -q, --quiet               no progress\n"
            "\n"
            "Scale-out (docs/release.md): the same release as independent jobs for GNU parallel,\n"
            "Slurm job arrays or Kubernetes Indexed Jobs, on a filesystem every job sees:\n"
            "      --plan FILE           with the options above: write FILE, one shell command per\n"
            "                            line: line 1 prepare, lines 2..N-1 one variant each (run\n"
            "                            in any order, in parallel), line N collect; run nothing\n"
            "  tessera release --job K|env --plan FILE [--job-offset B]\n"
            "                            run line K of FILE; env: K from SLURM_ARRAY_TASK_ID or\n"
            "                            JOB_COMPLETION_INDEX, plus B (default 0)\n"
            "  tessera release --collect DIR\n"
            "                            check every variant's files of the plan in DIR, measure\n"
            "                            them, write the card, release.json and SHA256SUMS\n"
            "  tessera release --step prepare|TYPE[:PART] DIR\n"
            "                            one step of the plan in DIR (what the job lines run)\n"
            "\n"
            "Exit 0: every variant written and measured; 1: a failure; 2: bad options.\n");
}

static void log_line(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "tessera release: %s\n", msg);
}

/* The command line as it was typed, quoted where a shell would need it. */
static char *command_line(int argc, char **argv)
{
    size_t cap = 32;
    for (int i = 0; i < argc; i++)
        cap += strlen(argv[i]) * 4 + 3;
    char *s = malloc(cap), *p = s;
    if (!s)
        return NULL;
    p += sprintf(p, "tessera");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool plain = *a != 0;
        for (const char *c = a; *c && plain; c++)
            plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./,=:+@%", *c) != NULL;
        *p++ = ' ';
        if (plain) {
            p += sprintf(p, "%s", a);
            continue;
        }
        *p++ = '\'';
        for (const char *c = a; *c; c++)
            p += *c == '\'' ? sprintf(p, "'\\''") : sprintf(p, "%c", *c);
        *p++ = '\'';
        *p = 0;
    }
    return s;
}

/* "Q4_K_M,Q8_0" into a list (pointers into s); 0 when empty or longer than max. */
static size_t split_types(char *s, const char **out, size_t max)
{
    size_t n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ","))
        if (*tok) {
            if (n == max)
                return 0;
            out[n++] = tok;
        }
    return n;
}

static void summary(const ts_release_opts *o, const ts_release_result *r)
{
    fprintf(stderr, "%-8s %10s %6s %12s %10s %9s  %s\n", "type", "MB", "bpw", "PPL", "KLD", "same-top", "file");
    for (size_t i = 0; i < r->n; i++) {
        const ts_release_variant *v = &r->v[i];
        fprintf(stderr, "%-8s %10.1f %6.2f ", v->type, (double)v->file_bytes / 1e6, v->bpw);
        if (v->measured)
            fprintf(stderr, "%12.4f %10.6f %8.2f%%", v->ppl, v->kld, v->same_top);
        else
            fprintf(stderr, "%12s %10s %9s", "-", "-", "-");
        fprintf(stderr, "  %s%s%s\n", v->files[0], v->n_files > 1 ? " (+ parts)" : "", v->reused ? " (kept)" : "");
    }
    fprintf(stderr, "wrote %s/README.md, release.json, SHA256SUMS (prepare %.1f s, write %.1f s, collect %.1f s)\n",
            o->out_dir, r->seconds_prepare, r->seconds_write, r->seconds_collect);
}

/* --job K|env: line K of the plan, run by sh in place of this process. */
static int run_job(const char *job, const char *plan, long offset, bool quiet)
{
    const char *src = job;
    if (!strcmp(job, "env")) {
        const char *names[] = {"SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"};
        src = NULL;
        for (size_t i = 0; i < 2 && !src; i++)
            if ((src = getenv(names[i])) && !*src)
                src = NULL;
        if (!src) {
            fprintf(stderr, "tessera release: --job env: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is "
                            "set\n");
            return 2;
        }
    }
    char *end;
    long k = strtol(src, &end, 10);
    if (*src < '0' || *src > '9' || *end || k + offset < 1) {
        fprintf(stderr, "tessera release: --job %s%s%s (+ offset %ld): expected a job number from 1\n", job,
                src != job ? " = " : "", src != job ? src : "", offset);
        return 2;
    }
    char *line = NULL;
    size_t n = 0;
    ts_err err = {0};
    if (ts_release_plan_line(plan, (size_t)(k + offset), &line, &n, &err) != TS_OK) {
        fprintf(stderr, "tessera release: %s\n", err.msg);
        return 2;
    }
    if (!quiet)
        fprintf(stderr, "tessera release: job %ld of %zu: %s\n", k + offset, n, line);
    fflush(NULL);
    char *q = quiet ? malloc(strlen(line) + 4) : NULL; /* -q for the job too (getopt takes it after DIR) */
    if (q)
        sprintf(q, "%s -q", line);
    execl("/bin/sh", "sh", "-c", q ? q : line, (char *)NULL);
    free(q);
    fprintf(stderr, "tessera release: cannot run /bin/sh\n");
    free(line);
    return 1;
}

/* --step STEP DIR / --collect DIR: one step of the plan in DIR. */
static int run_step(const char *step, const char *dir, const char *id, bool quiet)
{
    ts_release_plan p;
    ts_err err = {0};
    if (ts_release_plan_load(dir, id, "tessera " TS_VERSION_STRING, &p, &err) != TS_OK) {
        fprintf(stderr, "tessera release: %s\n", err.msg);
        return 2;
    }
    if (chdir(p.cwd) != 0) { /* the plan's relative paths */
        fprintf(stderr, "tessera release: %s: cannot enter the plan's folder\n", p.cwd);
        ts_release_plan_free(&p);
        return 1;
    }
    if (!quiet)
        p.o.log = log_line;
    ts_progress_set_quiet(quiet);
    ts_release_result r;
    ts_status st = ts_release_check(&p.o, &r, &err);
    if (st == TS_OK && !strcmp(step, "prepare")) {
        st = ts_release_prepare(&p.o, &r, &err);
    } else if (st == TS_OK && !strcmp(step, "collect")) {
        if ((st = ts_release_attach(&p.o, &r, &err)) == TS_OK)
            st = ts_release_collect(&p.o, &r, &err);
        if (st == TS_OK && !quiet)
            summary(&p.o, &r);
    } else if (st == TS_OK) {
        char type[32];
        snprintf(type, sizeof type, "%s", step);
        char *colon = strchr(type, ':');
        long part = 0;
        if (colon) {
            *colon = 0;
            part = strtol(colon + 1, NULL, 10);
        }
        size_t i = 0;
        while (i < r.n && strcasecmp(r.v[i].type, type))
            i++;
        if (i == r.n || (colon && part < 1))
            st = ts_fail(&err, TS_ERR_ARG, "--step %s: expected prepare, collect or a type of the plan (TYPE or "
                         "TYPE:PART)", step);
        if (st == TS_OK)
            st = ts_release_attach(&p.o, &r, &err);
        if (st == TS_OK && !part && ts_release_variant_complete(&p.o, &r, i)) {
            if (!quiet)
                fprintf(stderr, "tessera release: %s: complete from an earlier run, kept\n", r.v[i].type);
        } else if (st == TS_OK)
            st = ts_release_produce(&p.o, &r, &i, 1, (size_t)part, &err);
    }
    if (st != TS_OK)
        fprintf(stderr, "tessera release: %s\n", err.msg);
    ts_release_result_free(&r);
    ts_release_plan_free(&p);
    return st == TS_OK ? 0 : st == TS_ERR_ARG ? 2 : 1;
}

int cmd_release(int argc, char **argv)
{
    enum { OPT_TYPES = 256, OPT_IMATRIX, OPT_CALIB, OPT_CALIB_CHUNKS, OPT_EVAL, OPT_CHUNKS, OPT_SPLIT, OPT_JSON, OPT_PLAN, OPT_JOB,
           OPT_JOB_OFFSET, OPT_STEP, OPT_COLLECT, OPT_PLAN_ID };
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'},       {"types", required_argument, 0, OPT_TYPES},
        {"imatrix", required_argument, 0, OPT_IMATRIX}, {"calib", required_argument, 0, OPT_CALIB},
        {"calib-chunks", required_argument, 0, OPT_CALIB_CHUNKS}, {"eval", required_argument, 0, OPT_EVAL},
        {"ctx-size", required_argument, 0, 'c'},     {"chunks", required_argument, 0, OPT_CHUNKS},
        {"split-max-size", required_argument, 0, OPT_SPLIT}, {"threads", required_argument, 0, 't'},
        {"json", no_argument, 0, OPT_JSON},          {"quiet", no_argument, 0, 'q'},
        {"plan", required_argument, 0, OPT_PLAN},    {"job", required_argument, 0, OPT_JOB},
        {"job-offset", required_argument, 0, OPT_JOB_OFFSET}, {"step", required_argument, 0, OPT_STEP},
        {"collect", no_argument, 0, OPT_COLLECT},    {"plan-id", required_argument, 0, OPT_PLAN_ID},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0},
    };
    ts_release_opts o = {.tool_version = "tessera " TS_VERSION_STRING};
    char *types_arg = NULL;
    const char *types[64];
    bool json = false, quiet = false;
    const char *plan = NULL, *job = NULL, *step = NULL, *plan_id = NULL;
    long v, job_offset = 0;
    int c, rc = 0;
    char *cmd = command_line(argc, argv); /* before getopt reorders argv */
    optind = 1;
    while (rc == 0 && (c = getopt_long(argc, argv, "o:c:t:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': o.out_dir = optarg; break;
        case OPT_TYPES: free(types_arg); types_arg = strdup(optarg); break;
        case OPT_IMATRIX: o.imatrix = optarg; break;
        case OPT_CALIB: o.calib = optarg; break;
        case OPT_EVAL: o.eval = optarg; break;
        case 'c': rc = cli_parse_count("release", "-c", optarg, 16, 1 << 20, &v) ? 0 : 2; o.n_ctx = v; break;
        case OPT_CHUNKS: rc = cli_parse_count("release", "--chunks", optarg, 1, INT32_MAX, &v) ? 0 : 2; o.eval_chunks = v; break;
        case OPT_CALIB_CHUNKS:
            rc = cli_parse_count("release", "--calib-chunks", optarg, 1, INT32_MAX, &v) ? 0 : 2;
            o.calib_chunks = v;
            break;
        case OPT_SPLIT:
            if (!ts_release_parse_size(optarg, &o.split_max_bytes)) {
                fprintf(stderr, "tessera release: --split-max-size %s: expected a size such as 45G, 500M or "
                                "2GiB\n", optarg);
                rc = 2;
            }
            break;
        case 't': rc = cli_parse_threads(optarg, &o.n_threads) ? 0 : 2; break;
        case OPT_JSON: json = true; break;
        case 'q': quiet = true; break;
        case OPT_PLAN: plan = optarg; break;
        case OPT_JOB: job = optarg; break;
        case OPT_JOB_OFFSET:
            rc = cli_parse_count("release", "--job-offset", optarg, 0, 1 << 20, &v) ? 0 : 2;
            job_offset = v;
            break;
        case OPT_STEP: step = optarg; break;
        case OPT_COLLECT: step = "collect"; break;
        case OPT_PLAN_ID: plan_id = optarg; break;
        case 'h': usage(stdout); free(types_arg); free(cmd); return 0;
        default: rc = 2; break;
        }
    }
    if (rc == 0 && job) {
        free(types_arg);
        free(cmd);
        if (!plan || optind != argc) {
            fprintf(stderr, "tessera release: --job K needs --plan FILE and nothing else\n");
            return 2;
        }
        return run_job(job, plan, job_offset, quiet);
    }
    if (rc == 0 && step) {
        free(types_arg);
        free(cmd);
        if (optind + 1 != argc) {
            fprintf(stderr, "tessera release: --%s needs the release folder DIR\n",
                    strcmp(step, "collect") ? "step STEP" : "collect");
            return 2;
        }
        return run_step(step, argv[optind], plan_id, quiet);
    }
    if (rc == 0 && optind + 1 == argc)
        o.input = argv[optind];
    else if (rc == 0)
        rc = 2;
    if (rc == 0 && (!o.out_dir || !types_arg)) {
        fprintf(stderr, "tessera release: %s is required\n", !o.out_dir ? "-o DIR" : "--types");
        rc = 2;
    }
    if (rc == 0 && (o.n_types = split_types(types_arg, types, sizeof types / sizeof types[0])) == 0) {
        fprintf(stderr, "tessera release: --types: expected a comma-separated list such as Q4_K_M,Q8_0\n");
        rc = 2;
    }
    if (rc != 0) {
        usage(stderr);
        free(types_arg);
        free(cmd);
        return rc;
    }
    o.types = types;
    o.command = cmd;
    if (!quiet) {
        o.log = log_line;
        ts_progress_set_quiet(false);
    } else {
        ts_progress_set_quiet(true);
    }
    ts_err err = {0};
    if (plan) { /* write the jobs, run none */
        char bin[4096];
        ssize_t bl = readlink("/proc/self/exe", bin, sizeof bin - 1);
        bin[bl > 0 ? bl : 0] = 0;
        size_t n = 0;
        ts_status pst = ts_release_plan_write(&o, bl > 0 ? bin : "tessera", plan, &n, &err);
        if (pst != TS_OK) {
            fprintf(stderr, "tessera release: %s\n", err.msg);
            rc = pst == TS_ERR_ARG ? 2 : 1;
        } else if (!quiet) {
            fprintf(stderr, "tessera release: wrote %zu jobs to %s: run line 1 (prepare) first, then lines 2..%zu "
                            "in any order or in parallel, then line %zu (collect)\n", n, plan, n - 1, n);
        }
        free(types_arg);
        free(cmd);
        return rc;
    }
    ts_release_result r;
    ts_status st = ts_release(&o, &r, &err);
    if (st != TS_OK) {
        fprintf(stderr, "tessera release: %s\n", err.msg);
        rc = st == TS_ERR_ARG ? 2 : 1;
    } else {
        if (!quiet)
            summary(&o, &r);
        if (json) {
            char path[4200];
            snprintf(path, sizeof path, "%s/release.json", o.out_dir);
            json_error_t je;
            cli_print_json(json_load_file(path, 0, &je));
        }
    }
    ts_release_result_free(&r);
    free(cmd);
    free(types_arg);
    return rc;
}
