/* tessera convert MODEL_DIR|FILE -o OUT.gguf [--outtype T] [-t N] [--vocab-only [--arch A]] */
#include "cli.h"
#include "convert/convert.h"
#include "core/progress.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: tessera convert MODEL_DIR|FILE -o OUT.gguf [options]\n"
            "\n"
            "Converts a Hugging Face checkpoint (safetensors or PyTorch .bin, single or sharded) or a\n"
            "Meta/Mistral original (consolidated.NN.pth + params.json) to GGUF. A directory with both\n"
            "safetensors and .bin is read as safetensors; name the .bin file to convert it instead.\n"
            "\n"
            "  -o, --output FILE    output GGUF (written to a temp file, renamed when complete)\n"
            "      --outtype T      auto (keep F32/F16/BF16 as stored, default), f32, f16, bf16, q8_0\n"
            "  -t, --threads N      worker threads (default: CPU count)\n"
            "      --vocab-only     write only the tokenizer (works on a folder of tokenizer files)\n"
            "      --arch NAME      architecture for --vocab-only without config.json (e.g. llama, qwen3)\n"
            "      --name NAME      general.name (default: the directory name)\n"
            "      --dry-run        print the plan, write nothing\n"
            "  -v, --verbose        print one line per tensor\n"
            "      --json           print the result as JSON on stdout\n"
            "  -q, --quiet          no progress on stderr\n");
}

int cmd_convert(int argc, char **argv)
{
    ts_convert_opts o = {.outtype = "auto"};
    bool json = false, quiet = false;
    enum { OPT_OUTTYPE = 256, OPT_VOCAB, OPT_ARCH, OPT_NAME, OPT_DRY, OPT_JSON };
    static const struct option longopts[] = {
        {"output", required_argument, 0, 'o'}, {"outtype", required_argument, 0, OPT_OUTTYPE},
        {"threads", required_argument, 0, 't'}, {"vocab-only", no_argument, 0, OPT_VOCAB},
        {"arch", required_argument, 0, OPT_ARCH}, {"name", required_argument, 0, OPT_NAME},
        {"dry-run", no_argument, 0, OPT_DRY}, {"verbose", no_argument, 0, 'v'},
        {"json", no_argument, 0, OPT_JSON}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:t:vqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'o': o.output = optarg; break;
        case OPT_OUTTYPE: o.outtype = optarg; break;
        case 't':
            if (!cli_parse_threads(optarg, &o.n_threads))
                return 2;
            break;
        case OPT_VOCAB: o.vocab_only = true; break;
        case OPT_ARCH: o.arch = optarg; break;
        case OPT_NAME: o.name = optarg; break;
        case OPT_DRY: o.dry_run = true; break;
        case 'v': o.verbose = true; break;
        case OPT_JSON: json = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || (!o.output && !o.dry_run)) {
        usage(stderr);
        return 2;
    }
    o.input = argv[optind];
    ts_progress_set_quiet(quiet);
    ts_convert_stats stats;
    ts_err err = {0};
    ts_status st = ts_convert(&o, &stats, &err);
    if (st != TS_OK) {
        fprintf(stderr, "tessera convert: %s\n", err.msg);
        return 1;
    }
    if (json) {
        json_t *j = json_pack("{s:s?, s:s, s:s, s:I, s:I, s:I, s:f}", "output", o.output, "arch", stats.arch,
                              "file_type", stats.file_type, "tensors", (json_int_t)stats.n_tensors, "bytes_in",
                              (json_int_t)stats.bytes_in, "bytes_out", (json_int_t)stats.bytes_out, "seconds",
                              stats.seconds);
        cli_print_json(j);
    } else if (!quiet) {
        double mb = (double)stats.bytes_in / 1e6;
        fprintf(stderr, "%s %s: %s, %llu tensors, %.1f MB read, %.1f MB written in %.2f s (%.0f MB/s)\n",
                o.dry_run ? "planned" : "wrote", o.dry_run ? o.input : o.output, stats.arch,
                (unsigned long long)stats.n_tensors, mb, (double)stats.bytes_out / 1e6, stats.seconds,
                stats.seconds > 0 ? mb / stats.seconds : 0.0);
    }
    return 0;
}
