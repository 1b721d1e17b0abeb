/* ts_quant_hash: quantizes and dequantizes the rows of tests/unit/quant_cases.h
 * (and optionally real rows from a raw little-endian f32 file) with every
 * quant type under one kernel set, and prints one FNV-1a hash per type of
 * all bytes and float bits produced. Standalone (kernels/ sources only, no
 * Check, no other library) so that test_neon_qemu.sh can cross-compile it
 * for AArch64 and compare the NEON kernels under qemu with the scalar
 * kernels on x86.
 *
 *   ts_quant_hash IMPL [ROWS.f32]     IMPL: scalar, avx2, avx512 or neon
 * Exit status 2 when IMPL is not available on this CPU. */
#include "quant_cases.h"

#include <stdio.h>
#include <stdlib.h>

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Hash of quantizing x (n values) with every imatrix variant and of
 * dequantizing the result. */
static uint64_t run_row(const qc_type *t, const float *x, int n, uint64_t h)
{
    const size_t nbytes = (size_t)n / t->block * t->block_bytes;
    uint8_t *q = malloc(nbytes);
    float *y = malloc(sizeof(float) * n), *im = malloc(sizeof(float) * n);
    if (!q || !y || !im) {
        fprintf(stderr, "ts_quant_hash: out of memory\n");
        exit(1);
    }
    for (int v = 0; v < (t->quantize ? QC_N_IMATRIX : 1); v++) {
        qc_quantize(t, x, q, n, qc_imatrix(v, im, n));
        t->dequantize(q, y, n);
        h = fnv(h, q, nbytes);
        h = fnv(h, y, sizeof(float) * n);
    }
    free(q), free(y), free(im);
    return h;
}

static float *read_rows(const char *path, int *n_out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    int n = (int)(size / 4);
    n -= n % 256;
    float *x = malloc(sizeof(float) * (n > 0 ? n : 1));
    if (!x || fread(x, 4, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "ts_quant_hash: cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    *n_out = n;
    return x;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ts_quant_hash IMPL [ROWS.f32]\n");
        return 1;
    }
    if (!ts_k_force_impl(argv[1])) {
        fprintf(stderr, "ts_quant_hash: kernel set %s not available here\n", argv[1]);
        return 2;
    }
    int n_real = 0;
    float *real = argc > 2 ? read_rows(argv[2], &n_real) : NULL;
    float x[QC_N];
    uint8_t blk[64 * 256];
    float y[64 * 256];
    for (int k = 0; k < QC_N_TYPES; k++) {
        const qc_type *t = &QC_TYPES[k];
        uint64_t h = 0xcbf29ce484222325ull;
        for (int c = 0; c < QC_N_CASES; c++) {
            qc_case(c, x);
            h = run_row(t, x, QC_N, h);
        }
        if (n_real > 0)
            h = run_row(t, real, n_real, h);
        const int nb = 64; /* blk and y hold 64 blocks of any type */
        qc_garbage(t, blk, nb);
        t->dequantize(blk, y, (int64_t)nb * t->block);
        h = fnv(h, y, sizeof(float) * (size_t)nb * t->block);
        printf("%-7s %016llx\n", t->name, (unsigned long long)h);
    }
    free(real);
    return 0;
}
