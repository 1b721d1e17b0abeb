/* Inputs that the SIMD-vs-scalar quant tests run every kernel on: shared by
 * tests/unit/test_quant_simd.c (x86, Check) and tests/interop/ts_quant_hash.c
 * (the standalone program test_neon_qemu.sh runs under qemu-aarch64), so
 * both see the same rows. Deterministic: a fixed xorshift generator, no libc
 * rand. Header-only (static functions) so the standalone build needs no
 * other file. */
#ifndef TS_QUANT_CASES_H
#define TS_QUANT_CASES_H

#include "kernels/kernels.h"
#include "kernels/quant_kernels.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef void (*qc_quant_fn)(const float *, void *, int64_t, const float *);
typedef void (*qc_deq_fn)(const void *, float *, int64_t);

typedef struct {
    const char *name;
    qc_quant_fn quantize;
    qc_deq_fn dequantize;
    int block;        /* elements per block */
    int block_bytes;
    int f16_at;       /* byte offset of an fp16 scale in a block (for garbage blocks) */
} qc_type;

#define QC_N_TYPES 12
static const qc_type QC_TYPES[QC_N_TYPES] = {
    {"q4_0", ts_k_quantize_row_q4_0, ts_k_dequantize_row_q4_0, 32, TS_Q4_0_BLOCK_BYTES, 0},
    {"q4_1", ts_k_quantize_row_q4_1, ts_k_dequantize_row_q4_1, 32, TS_Q4_1_BLOCK_BYTES, 0},
    {"q5_0", ts_k_quantize_row_q5_0, ts_k_dequantize_row_q5_0, 32, TS_Q5_0_BLOCK_BYTES, 0},
    {"q5_1", ts_k_quantize_row_q5_1, ts_k_dequantize_row_q5_1, 32, TS_Q5_1_BLOCK_BYTES, 0},
    {"q8_0", NULL, ts_k_dequantize_row_q8_0, 32, TS_Q8_0_BLOCK_BYTES, 0},
    {"q2_K", ts_k_quantize_row_q2_k, ts_k_dequantize_row_q2_k, 256, TS_Q2_K_BLOCK_BYTES, 80},
    {"q3_K", ts_k_quantize_row_q3_k, ts_k_dequantize_row_q3_k, 256, TS_Q3_K_BLOCK_BYTES, 108},
    {"q4_K", ts_k_quantize_row_q4_k, ts_k_dequantize_row_q4_k, 256, TS_Q4_K_BLOCK_BYTES, 0},
    {"q5_K", ts_k_quantize_row_q5_k, ts_k_dequantize_row_q5_k, 256, TS_Q5_K_BLOCK_BYTES, 0},
    {"q6_K", ts_k_quantize_row_q6_k, ts_k_dequantize_row_q6_k, 256, TS_Q6_K_BLOCK_BYTES, 208},
    {"iq4_nl", ts_k_quantize_row_iq4_nl, ts_k_dequantize_row_iq4_nl, 32, TS_IQ4_NL_BLOCK_BYTES, 0},
    {"iq4_xs", ts_k_quantize_row_iq4_xs, ts_k_dequantize_row_iq4_xs, 256, TS_IQ4_XS_BLOCK_BYTES, 0},
};

/* q8_0 has no imatrix parameter; the table calls it through this. */
static inline void qc_quantize(const qc_type *t, const float *x, void *dst, int64_t n, const float *imatrix)
{
    if (t->quantize)
        t->quantize(x, dst, n, imatrix);
    else
        ts_k_quantize_row_q8_0(x, dst, n);
}

static uint64_t qc_rng_state;
static inline uint64_t qc_rng(void)
{
    qc_rng_state ^= qc_rng_state >> 12;
    qc_rng_state ^= qc_rng_state << 25;
    qc_rng_state ^= qc_rng_state >> 27;
    return qc_rng_state * 0x2545f4914f6cdd1dull;
}
static inline double qc_unif(void) { return (double)(qc_rng() >> 11) / 9007199254740992.0; }
/* Roughly normal (mean 0, variance 1: six uniforms, Irwin-Hall), with
 * plain arithmetic only, so that x86 and AArch64 make the same floats
 * (libm's log and cos need not agree to the last bit). */
static inline float qc_gauss(void)
{
    double s = 0.0;
    for (int k = 0; k < 6; k++)
        s += qc_unif();
    return (float)((s - 3.0) * 1.4142135623730951);
}

/* Elements per case row: four super-blocks. */
#define QC_N 1024
#define QC_N_CASES 20

/* Fills case c (0 <= c < QC_N_CASES) into x[QC_N]; returns its name. */
static const char *qc_case(int c, float *x)
{
    qc_rng_state = 0x9e3779b97f4a7c15ull ^ (uint64_t)(c + 1) * 0x100000001b3ull;
    const int n = QC_N;
    switch (c) {
    case 0:
        for (int i = 0; i < n; i++)
            x[i] = qc_gauss();
        return "gauss";
    case 1:
        for (int i = 0; i < n; i++)
            x[i] = 0.02f * qc_gauss() * (qc_rng() % 100 == 0 ? 20.0f : 1.0f);
        return "weights with outliers";
    case 2:
        for (int i = 0; i < n; i++)
            x[i] = 1e-3f * qc_gauss();
        return "small";
    case 3:
        for (int i = 0; i < n; i++)
            x[i] = (float)(2e4 * qc_unif() - 1e4);
        return "uniform 1e4";
    case 4:
        memset(x, 0, sizeof(float) * n);
        return "zeros";
    case 5:
        for (int i = 0; i < n; i++)
            x[i] = i < n / 2 ? 0.5f : -3.0f;
        return "constant";
    case 6:
        for (int i = 0; i < n; i++)
            x[i] = 1e-38f * qc_gauss();
        return "tiny (subnormal)";
    case 7:
        for (int i = 0; i < n; i++)
            x[i] = (qc_rng() & 1 ? 1 : -1) * 1e-42f * (float)(qc_rng() % 8);
        return "subnormal only";
    case 8:
        for (int i = 0; i < n; i++)
            x[i] = 1e30f * qc_gauss();
        return "huge";
    case 9:
        for (int i = 0; i < n; i++)
            x[i] = i % 7 == 0 ? (i % 14 ? FLT_MAX : -FLT_MAX) : qc_gauss();
        return "FLT_MAX";
    case 10:
        for (int i = 0; i < n; i++)
            x[i] = i % 17 == 3 ? NAN : i % 29 == 5 ? INFINITY : i % 31 == 7 ? -INFINITY : qc_gauss();
        return "NaN and inf";
    case 11:
        for (int i = 0; i < n; i += 16) {
            const float s = ldexpf(1.0f, (int)(qc_rng() % 231) - 130); /* 2^-130 .. 2^100 */
            for (int k = 0; k < 16; k++)
                x[i + k] = s * qc_gauss();
        }
        return "sub-blocks of mixed magnitude";
    case 12:
        for (int i = 0; i < n; i++)
            x[i] = fabsf(qc_gauss());
        return "positive";
    case 13:
        for (int i = 0; i < n; i++)
            x[i] = -fabsf(qc_gauss()) - 1.0f;
        return "negative";
    case 14:
        for (int i = 0; i < n; i++)
            x[i] = (float)((int)(qc_rng() % 16) - 8);
        return "small integers";
    case 15:
        for (int i = 0; i < n; i++)
            x[i] = qc_rng() % 23 == 0 ? qc_gauss() : 0.0f;
        return "sparse";
    case 16:
        for (int i = 0; i < n; i++)
            x[i] = i < 256 ? NAN : i < 512 ? INFINITY : i < 768 ? -0.0f : qc_gauss();
        return "NaN, inf and -0 blocks";
    case 17:
        for (int i = 0; i < n; i++)
            x[i] = (i & 1 ? -1.0f : 1.0f) * (float)(i % 64) / 8.0f;
        return "alternating ramp";
    case 18:
        for (int i = 0; i < n; i++)
            x[i] = (i / 16) % 3 == 1 ? 1e-35f * qc_gauss() : qc_gauss();
        return "tiny sub-blocks among normal ones";
    default:
        for (int i = 0; i < n; i++)
            x[i] = 7e4f * qc_gauss();
        return "past the fp16 range";
    }
}

#define QC_N_IMATRIX 4
/* Imatrix variant v for a row of n: NULL (v == 0), random positive,
 * with zeros and garbage (NaN, inf, negative), all zero. */
static const float *qc_imatrix(int v, float *im, int n)
{
    qc_rng_state = 0x243f6a8885a308d3ull + (uint64_t)v;
    switch (v) {
    case 0:
        return NULL;
    case 1:
        for (int i = 0; i < n; i++)
            im[i] = (float)(qc_unif() * qc_unif() * 100.0) + 1e-3f;
        return im;
    case 2:
        for (int i = 0; i < n; i++) {
            const uint64_t r = qc_rng() % 12;
            im[i] = r == 0 ? 0.0f : r == 1 ? NAN : r == 2 ? INFINITY : r == 3 ? -1.0f : (float)qc_unif();
        }
        return im;
    default:
        memset(im, 0, sizeof(float) * n);
        return im;
    }
}

/* Random blocks for the dequantizers, every 5th with an inf or NaN fp16
 * scale at t->f16_at. */
static void qc_garbage(const qc_type *t, uint8_t *blk, int n_blocks)
{
    qc_rng_state = 0xdeadbeefcafef00dull;
    for (int b = 0; b < n_blocks; b++) {
        uint8_t *p = blk + (size_t)b * t->block_bytes;
        for (int i = 0; i < t->block_bytes; i++)
            p[i] = (uint8_t)qc_rng();
        if (b % 5 == 0) {
            p[t->f16_at] = (uint8_t)(b % 10 ? 0x00 : 0x01); /* inf or NaN */
            p[t->f16_at + 1] = (uint8_t)(b % 3 ? 0x7c : 0xfc);
        }
    }
}

#endif
