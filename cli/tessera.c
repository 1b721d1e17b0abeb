/* tessera: one binary, one cmd_<name>.c per subcommand. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"convert", cmd_convert, "safetensors / PyTorch checkpoint -> GGUF"},
    {"inspect", cmd_inspect, "print metadata and the tensor table of a GGUF or safetensors file"},
    {"quantize", cmd_quantize, "GGUF or checkpoint -> quantized GGUF (Q4_K_M, Q8_0, ...)"},
    {"perplexity", cmd_perplexity, "perplexity (and KL divergence against a base) of a GGUF on a text"},
    {"logits", cmd_logits, "logits of one token sequence (raw float32 or top-K)"},
    {"imatrix", cmd_imatrix, "importance matrix from a calibration text (llama.cpp's GGUF imatrix format)"},
    {"verify", cmd_verify, "check a GGUF before publishing: structure, checksums, accuracy gates"},
    {"release", cmd_release, "every quantized variant in one pass, measured, with a model card and checksums"},
};

static void usage(FILE *fp)
{
    fprintf(fp, "usage: tessera <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(fp, "\n'tessera <command> --help' shows a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("tessera %s\n", TS_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "tessera: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
