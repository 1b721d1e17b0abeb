// ts_quant_rows: Tessera's quant type table (quant/quant.h) on raw arrays, the
// twin of ts_ggml, so interop tests can compare the two byte for byte.
//
//   ts_quant_rows quantize TYPE IN.f32 N_PER_ROW OUT.bin [--imatrix W.f32]
//   ts_quant_rows dequant  TYPE IN.bin N_PER_ROW OUT.f32
//   ts_quant_rows types                 (the types Tessera quantizes, one a line)
//
// TYPE is ggml's name (q4_0, q6_K, iq4_xs, ...). Errors go to stderr, exit 1.
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ts_quant_rows: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *read_all(const char *path, size_t *len)
{
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

static void write_all(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        die("cannot create %s", path);
    if (fwrite(buf, 1, len, f) != len || fclose(f) != 0)
        die("write to %s failed", path);
}

static const ts_quant_type *lookup(const char *name, int64_t n_per_row, size_t *row_bytes)
{
    ts_dtype t = ts_dtype_from_name(name);
    const ts_quant_type *q = t == TS_DTYPE_INVALID ? NULL : ts_quant_type_get(t);
    if (!q)
        die("Tessera cannot quantize to '%s'", name);
    uint64_t rb;
    if (!ts_dtype_row_bytes(t, (uint64_t)n_per_row, &rb))
        die("N_PER_ROW %lld is not a multiple of %s's block", (long long)n_per_row, name);
    *row_bytes = (size_t)rb;
    return q;
}

static int64_t parse_n(const char *s)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || v <= 0)
        die("N_PER_ROW must be a positive integer, got '%s'", s);
    return (int64_t)v;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "types") == 0) {
        for (int t = 0; t < TS_GGML_TYPE_COUNT; t++)
            if (ts_quant_type_get((ts_dtype)t))
                printf("%s\n", ts_dtype_name((ts_dtype)t));
        return 0;
    }
    bool quant = argc >= 2 && strcmp(argv[1], "quantize") == 0;
    bool deq = argc >= 2 && strcmp(argv[1], "dequant") == 0;
    if (!(quant && (argc == 6 || (argc == 8 && strcmp(argv[6], "--imatrix") == 0))) && !(deq && argc == 6))
        die("usage: ts_quant_rows quantize TYPE IN.f32 N_PER_ROW OUT.bin [--imatrix W.f32]\n"
            "       ts_quant_rows dequant TYPE IN.bin N_PER_ROW OUT.f32\n"
            "       ts_quant_rows types");
    int64_t n_per_row = parse_n(argv[4]);
    size_t row_bytes;
    const ts_quant_type *q = lookup(argv[2], n_per_row, &row_bytes);
    size_t row_f32 = (size_t)n_per_row * sizeof(float);
    size_t len;
    uint8_t *in = read_all(argv[3], &len);
    size_t in_row = quant ? row_f32 : row_bytes;
    if (len % in_row)
        die("%s: %zu bytes is not a whole number of %zu-byte rows", argv[3], len, in_row);
    size_t n_rows = len / in_row;
    size_t out_len = n_rows * (quant ? row_bytes : row_f32);
    uint8_t *out = malloc(out_len + 1);
    if (!out)
        die("out of memory");
    if (quant) {
        float *imatrix = NULL;
        if (argc == 8) {
            size_t wlen;
            imatrix = read_all(argv[7], &wlen);
            if (wlen != row_f32)
                die("%s: imatrix has %zu bytes, expected %zu (N_PER_ROW floats)", argv[7], wlen, row_f32);
        }
        size_t written = q->quantize_rows((const float *)in, out, (int64_t)n_rows, n_per_row, imatrix);
        if (written != out_len)
            die("quantize_rows wrote %zu bytes, expected %zu", written, out_len);
        free(imatrix);
    } else {
        for (size_t r = 0; r < n_rows; r++)
            q->dequantize_row(in + r * row_bytes, (float *)(out + r * row_f32), n_per_row);
    }
    write_all(argv[5], out, out_len);
    free(in);
    free(out);
    return 0;
}
