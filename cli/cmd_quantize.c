/* tessera quantize INPUT OUTPUT.gguf TYPE [options] */
#include "cli.h"
#include "core/progress.h"
#include "quant/quantize.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: tessera quantize INPUT OUTPUT.gguf TYPE [options]\n"
            "       tessera quantize INPUT TYPE --dry-run [options]\n"
            "\n"
            "Quantizes a GGUF (F32/F16/BF16) or a Hugging Face checkpoint (converted on the way,\n"
            "no intermediate file) to one of llama.cpp's mixes, with llama.cpp's per-tensor rules.\n"
            "\n"
            "TYPE (case-insensitive):\n");
    for (size_t i = 0; ts_ftype_at(i); i++)
        fprintf(fp, "  %-8s %s\n", ts_ftype_at(i)->name, ts_ftype_at(i)->summary);
    fprintf(fp,
            "\n"
            "  -t, --threads N               worker threads (default: CPU count)\n"
            "      --tensor-type REGEX=TYPE  type for tensors whose name matches (PCRE2, repeatable,\n"
            "                                first match wins), e.g. 'attn_v=q8_0'\n"
            "      --output-tensor-type T    type of output.weight\n"
            "      --token-embedding-type T  type of token_embd.weight\n"
            "      --pure                    no mix rules: every quantizable tensor gets TYPE's base type\n"
            "      --imatrix FILE            importance matrix (llama-imatrix GGUF or legacy .dat)\n"
            "      --allow-requantize        accept an already quantized input\n"
            "      --dry-run                 print the plan (tensor, shape, type, bytes), write nothing\n"
            "      --json                    print the plan and result as JSON on stdout\n"
            "  -q, --quiet                   no progress or summary on stderr\n");
}

static json_t *plan_json(const ts_quantize_opts *o, const ts_quantize_result *r)
{
    const ts_qplan *p = &r->plan;
    json_t *tensors = json_array();
    for (size_t i = 0; i < p->n; i++) {
        const ts_qplan_tensor *t = &p->t[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->n_dims; d++)
            json_array_append_new(shape, json_integer(t->ne[d]));
        json_array_append_new(tensors, json_pack("{s:s, s:o, s:s, s:s, s:I, s:b, s:b, s:b}", "name", t->name, "shape",
                                                 shape, "src_type", ts_dtype_name(t->src_type), "type",
                                                 ts_dtype_name(t->type), "bytes", (json_int_t)t->bytes, "fallback",
                                                 t->fallback, "override", t->overridden, "imatrix", t->imatrix != NULL));
    }
    double bpw = p->n_elements ? (double)p->bytes_out * 8.0 / (double)p->n_elements : 0.0;
    return json_pack("{s:s, s:s?, s:s, s:i, s:s, s:b, s:b, s:I, s:I, s:I, s:I, s:f, s:i, s:b, s:s?, s:I, s:I, s:f, s:o}",
                     "input", o->input, "output", o->dry_run ? NULL : o->output, "ftype", r->ftype->name,
                     "file_type", (int)r->ftype->ftype, "arch", r->arch, "from_checkpoint", r->from_checkpoint,
                     "dry_run", o->dry_run, "n_tensors", (json_int_t)p->n, "n_elements", (json_int_t)p->n_elements,
                     "bytes_in", (json_int_t)p->bytes_in, "bytes_out", (json_int_t)p->bytes_out, "bpw", bpw,
                     "n_fallback", p->n_fallback, "imatrix_required", p->needs_imatrix, "imatrix", o->imatrix,
                     "imatrix_tensors", (json_int_t)p->n_imatrix_used, "file_bytes", (json_int_t)r->file_bytes,
                     "seconds", r->seconds, "tensors", tensors);
}

static void print_plan(const ts_quantize_result *r)
{
    const ts_qplan *p = &r->plan;
    printf("%-40s %-22s %-7s %-7s %12s\n", "tensor", "shape", "from", "type", "bytes");
    for (size_t i = 0; i < p->n; i++) {
        const ts_qplan_tensor *t = &p->t[i];
        char shape[96];
        printf("%-40s %-22s %-7s %-7s %12llu%s%s\n", t->name, ts_shape_str(t->n_dims, t->ne, shape, sizeof shape),
               ts_dtype_name(t->src_type), ts_dtype_name(t->type), (unsigned long long)t->bytes,
               t->overridden ? "  (override)" : "", t->fallback ? "  (fallback: row length)" : "");
    }
    double bpw = p->n_elements ? (double)p->bytes_out * 8.0 / (double)p->n_elements : 0.0;
    printf("total: %zu tensors, %llu elements, %.2f MiB -> %.2f MiB, %.2f bits per weight (%s)\n", p->n,
           (unsigned long long)p->n_elements, (double)p->bytes_in / 1048576.0, (double)p->bytes_out / 1048576.0, bpw,
           r->ftype->name);
    if (p->n_fallback)
        printf("%d tensor(s) fell back to another type: their rows do not fit the mix's block size\n", p->n_fallback);
}

int cmd_quantize(int argc, char **argv)
{
    ts_quantize_opts o = {0};
    bool json = false, quiet = false;
    const char **tensor_types = calloc((size_t)argc + 1, sizeof *tensor_types);
    if (!tensor_types)
        return 1;
    enum { OPT_TT = 256, OPT_OUT_T, OPT_EMB_T, OPT_PURE, OPT_IMATRIX, OPT_REQ, OPT_DRY, OPT_JSON };
    static const struct option longopts[] = {
        {"threads", required_argument, 0, 't'}, {"tensor-type", required_argument, 0, OPT_TT},
        {"output-tensor-type", required_argument, 0, OPT_OUT_T},
        {"token-embedding-type", required_argument, 0, OPT_EMB_T}, {"pure", no_argument, 0, OPT_PURE},
        {"imatrix", required_argument, 0, OPT_IMATRIX}, {"allow-requantize", no_argument, 0, OPT_REQ},
        {"dry-run", no_argument, 0, OPT_DRY}, {"json", no_argument, 0, OPT_JSON},
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int c, rc = 0;
    optind = 1;
    while (rc == 0 && (c = getopt_long(argc, argv, "t:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (!cli_parse_threads(optarg, &o.n_threads))
                rc = 2;
            break;
        case OPT_TT: tensor_types[o.n_tensor_types++] = optarg; break;
        case OPT_OUT_T: o.output_tensor_type = optarg; break;
        case OPT_EMB_T: o.token_embedding_type = optarg; break;
        case OPT_PURE: o.pure = true; break;
        case OPT_IMATRIX: o.imatrix = optarg; break;
        case OPT_REQ: o.allow_requantize = true; break;
        case OPT_DRY: o.dry_run = true; break;
        case OPT_JSON: json = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); free(tensor_types); return 0;
        default: rc = 2; break;
        }
    }
    int npos = argc - optind;
    if (rc == 0 && npos == 3) {
        o.input = argv[optind];
        o.output = argv[optind + 1];
        o.ftype = argv[optind + 2];
    } else if (rc == 0 && npos == 2 && o.dry_run) {
        o.input = argv[optind];
        o.ftype = argv[optind + 1];
    } else if (rc == 0) {
        rc = 2;
    }
    if (rc != 0) {
        usage(stderr);
        free(tensor_types);
        return rc;
    }
    o.tensor_types = tensor_types;
    ts_progress_set_quiet(quiet || json);
    ts_quantize_result r;
    ts_err err = {0};
    ts_status st = ts_quantize(&o, &r, &err);
    free(tensor_types);
    if (st != TS_OK) {
        fprintf(stderr, "tessera quantize: %s\n", err.msg);
        return 1;
    }
    if (json)
        cli_print_json(plan_json(&o, &r));
    else if (o.dry_run)
        print_plan(&r);
    if (!quiet && r.plan.needs_imatrix)
        fprintf(stderr, "tessera quantize: note: the real run needs --imatrix (%s gives tensors Q2_K that llama.cpp "
                        "only quantizes with an importance matrix)\n", r.ftype->name);
    if (!quiet && !json && !o.dry_run) {
        const ts_qplan *p = &r.plan;
        fprintf(stderr, "wrote %s: %s, %zu tensors, %.1f MB -> %.1f MB (%.2f bpw) in %.2f s\n", o.output, r.ftype->name,
                p->n, (double)p->bytes_in / 1e6, (double)r.file_bytes / 1e6,
                p->n_elements ? (double)p->bytes_out * 8.0 / (double)p->n_elements : 0.0, r.seconds);
    }
    ts_quantize_result_free(&r);
    return 0;
}
