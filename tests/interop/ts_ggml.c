// ts_ggml: ggml's own quantizers and dequantizers (libggml-base from the npm
// package scripts/deps.sh fetches), so interop tests can compare Tessera's
// quant kernels with ggml's on the same rows. Built against the ggml.h that
// matches the prebuilt library.
//
//   ts_ggml dequant  TYPE IN.bin  N_PER_ROW OUT.f32   (type traits' to_float, row by row)
//   ts_ggml quantize TYPE IN.f32  N_PER_ROW OUT.bin [--imatrix W.f32]
//                                                     (ggml_quantize_init + ggml_quantize_chunk)
//   ts_ggml types                                     (ggml's type names, one a line)
//
// TYPE is ggml's name (q4_0, q6_K, iq4_xs, ...). Raw little-endian arrays,
// no headers. Errors go to stderr with exit status 1.
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml.h"

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("ts_ggml: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static enum ggml_type type_by_name(const char *name) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        // Removed types keep their numbers but have no traits (NULL name).
        const char *n = ggml_type_name((enum ggml_type)t);
        if (n && strcmp(n, name) == 0)
            return (enum ggml_type)t;
    }
    die("unknown ggml type '%s' (see `ts_ggml types`)", name);
    return GGML_TYPE_COUNT;
}

static void *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open %s", path);
    if (fseek(f, 0, SEEK_END) != 0)
        die("cannot seek %s", path);
    long n = ftell(f);
    if (n < 0)
        die("cannot size %s", path);
    rewind(f);
    void *buf = malloc((size_t)n + 1);
    if (!buf)
        die("out of memory reading %s", path);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        die("short read on %s", path);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_all(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f)
        die("cannot create %s", path);
    if (fwrite(buf, 1, len, f) != len || fclose(f) != 0)
        die("write to %s failed", path);
}

static int64_t parse_n(const char *s) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || v <= 0)
        die("N_PER_ROW must be a positive integer, got '%s'", s);
    return (int64_t)v;
}

static int cmd_dequant(int argc, char **argv) {
    if (argc != 6)
        die("usage: ts_ggml dequant TYPE IN.bin N_PER_ROW OUT.f32");
    enum ggml_type type = type_by_name(argv[2]);
    int64_t n_per_row = parse_n(argv[4]);
    const struct ggml_type_traits *tr = ggml_get_type_traits(type);
    if (!tr->to_float)
        die("ggml has no to_float for %s", argv[2]);
    if (n_per_row % tr->blck_size)
        die("N_PER_ROW %lld is not a multiple of %s's block of %lld", (long long)n_per_row, argv[2],
            (long long)tr->blck_size);
    size_t row_bytes = ggml_row_size(type, n_per_row);
    size_t len;
    uint8_t *in = read_all(argv[3], &len);
    if (len % row_bytes)
        die("%s: %zu bytes is not a whole number of %zu-byte rows", argv[3], len, row_bytes);
    size_t n_rows = len / row_bytes;
    float *out = malloc(n_rows * (size_t)n_per_row * sizeof(float) + 1);
    if (!out)
        die("out of memory");
    for (size_t r = 0; r < n_rows; r++)
        tr->to_float(in + r * row_bytes, out + r * (size_t)n_per_row, n_per_row);
    write_all(argv[5], out, n_rows * (size_t)n_per_row * sizeof(float));
    free(in);
    free(out);
    return 0;
}

static int cmd_quantize(int argc, char **argv) {
    if (argc != 6 && !(argc == 8 && strcmp(argv[6], "--imatrix") == 0))
        die("usage: ts_ggml quantize TYPE IN.f32 N_PER_ROW OUT.bin [--imatrix W.f32]");
    enum ggml_type type = type_by_name(argv[2]);
    int64_t n_per_row = parse_n(argv[4]);
    if (n_per_row % ggml_blck_size(type))
        die("N_PER_ROW %lld is not a multiple of %s's block of %lld", (long long)n_per_row, argv[2],
            (long long)ggml_blck_size(type));
    size_t len;
    float *in = read_all(argv[3], &len);
    size_t row_in = (size_t)n_per_row * sizeof(float);
    if (len % row_in)
        die("%s: %zu bytes is not a whole number of rows of %lld floats", argv[3], len, (long long)n_per_row);
    int64_t n_rows = (int64_t)(len / row_in);
    float *imatrix = NULL;
    if (argc == 8) {
        size_t wlen;
        imatrix = read_all(argv[7], &wlen);
        if (wlen != row_in)
            die("%s: imatrix has %zu bytes, expected %zu (N_PER_ROW floats)", argv[7], wlen, row_in);
    }
    if (!imatrix && ggml_quantize_requires_imatrix(type))
        die("ggml requires an imatrix for %s", argv[2]);
    size_t row_bytes = ggml_row_size(type, n_per_row);
    void *out = malloc((size_t)n_rows * row_bytes + 1);
    if (!out)
        die("out of memory");
    ggml_quantize_init(type);
    size_t written = ggml_quantize_chunk(type, in, out, 0, n_rows, n_per_row, imatrix);
    if (written != (size_t)n_rows * row_bytes)
        die("ggml_quantize_chunk wrote %zu bytes, expected %zu", written, (size_t)n_rows * row_bytes);
    write_all(argv[5], out, written);
    ggml_quantize_free();
    free(in);
    free(imatrix);
    free(out);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "dequant") == 0)
        return cmd_dequant(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "quantize") == 0)
        return cmd_quantize(argc, argv);
    if (argc == 2 && strcmp(argv[1], "types") == 0) {
        for (int t = 0; t < GGML_TYPE_COUNT; t++) {
            const char *n = ggml_type_name((enum ggml_type)t);
            if (n)
                printf("%s\n", n);
        }
        return 0;
    }
    die("usage: ts_ggml dequant|quantize|types ... (see the comment at the top of ts_ggml.c)");
    return 1;
}
