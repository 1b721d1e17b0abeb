/* q4_0 q4_1 q5_0 q5_1 iq4_nl iq4_xs q6_K: layouts against independently
 * written decoders, hand-computed blocks, error bounds, and the documented
 * policies for zeros, constants, NaN/inf, extreme ranges and imatrices (see
 * kernels/quant_kernels.h). Bit-exactness against ggml itself is
 * tests/interop/test_quant_types.sh. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off") /* the reference decoders must round like ggml */
#endif
#include "testutil.h"
#include "kernels/kernels.h"
#include "kernels/quant_kernels.h"
#include "quant/quant.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ts_dtype type;
    const char *name;
    int block;       /* elements per block */
    int bytes;       /* bytes per block */
    double max_rrmse; /* RMSE / RMS bound on Gaussian rows */
} qt;

/* Bounds: measured 0.104 0.087 0.051 0.042 0.098 0.100 0.025 (plain RMSE
 * relative to the row's RMS on N(0,1) rows), plus ~15%. */
static const qt TYPES[] = {
    {TS_Q4_0, "q4_0", 32, 18, 0.12},    {TS_Q4_1, "q4_1", 32, 20, 0.10},    {TS_Q5_0, "q5_0", 32, 22, 0.06},
    {TS_Q5_1, "q5_1", 32, 24, 0.05},    {TS_IQ4_NL, "iq4_nl", 32, 18, 0.115}, {TS_IQ4_XS, "iq4_xs", 256, 136, 0.115},
    {TS_Q6_K, "q6_K", 256, 210, 0.03},
};
#define NTYPES (sizeof TYPES / sizeof TYPES[0])

static const float KV[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static double urand(void) { return ((double)(rng() >> 11) + 0.5) / 9007199254740992.0; }
static float gauss(void) { return (float)(sqrt(-2.0 * log(urand())) * cos(6.283185307179586 * urand())); }

static void fill_gauss(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = gauss() * scale;
}

/* ---- independent decoders (from docs/formats/quant-types.md) ------------ */

static float f16v(const uint8_t *p)
{
    unsigned h = (unsigned)p[0] | (unsigned)p[1] << 8;
    int e = (h >> 10) & 31, m = h & 1023;
    float s = (h & 0x8000) ? -1.f : 1.f;
    if (e == 0)
        return s * ldexpf((float)m, -24);
    return s * ldexpf((float)(1024 + m), e - 25); /* finite only: tests mask inf/NaN */
}

/* Code of element j of a 32-element nibble block (low nibbles first). */
static int nib(const uint8_t *qs, int j) { return j < 16 ? qs[j] & 15 : qs[j - 16] >> 4; }
static int bit5(const uint8_t *qh, int j) { return (qh[j / 8] >> (j % 8)) & 1; }

static void ref_dequant(ts_dtype t, const uint8_t *b, float *y)
{
    switch (t) {
    case TS_Q4_0:
        for (int j = 0; j < 32; j++)
            y[j] = (float)(nib(b + 2, j) - 8) * f16v(b);
        break;
    case TS_Q4_1:
        for (int j = 0; j < 32; j++)
            y[j] = (float)nib(b + 4, j) * f16v(b) + f16v(b + 2);
        break;
    case TS_Q5_0:
        for (int j = 0; j < 32; j++)
            y[j] = (float)((nib(b + 6, j) | bit5(b + 2, j) << 4) - 16) * f16v(b);
        break;
    case TS_Q5_1:
        for (int j = 0; j < 32; j++)
            y[j] = (float)(nib(b + 8, j) | bit5(b + 4, j) << 4) * f16v(b) + f16v(b + 2);
        break;
    case TS_IQ4_NL:
        for (int j = 0; j < 32; j++)
            y[j] = f16v(b) * KV[nib(b + 2, j)];
        break;
    case TS_IQ4_XS:
        for (int ib = 0; ib < 8; ib++) {
            int ls = ((b[4 + ib / 2] >> (4 * (ib & 1))) & 15) | ((((b[2] | b[3] << 8) >> (2 * ib)) & 3) << 4);
            float dl = f16v(b) * (float)(ls - 32);
            for (int j = 0; j < 32; j++)
                y[32 * ib + j] = dl * KV[nib(b + 8 + 16 * ib, j)];
        }
        break;
    case TS_Q6_K:
        for (int i = 0; i < 256; i++) {
            /* half h = i / 128; within it, quarter q = (i % 128) / 32, l = i % 32 */
            int h = i / 128, q = (i % 128) / 32, l = i % 32;
            uint8_t lo = b[64 * h + l + 32 * (q & 1)];
            int low = q < 2 ? lo & 15 : lo >> 4;
            int high = (b[128 + 32 * h + l] >> (2 * q)) & 3;
            int code = (low | high << 4) - 32;
            float sc = (float)(int8_t)b[192 + i / 16];
            y[i] = f16v(b + 208) * sc * (float)code;
        }
        break;
    default:
        ck_abort_msg("no reference decoder");
    }
}

/* Random blocks with finite fp16 scales/mins (exponent 31 masked off). */
static void random_blocks(const qt *q, uint8_t *buf, int nblocks)
{
    for (int i = 0; i < nblocks * q->bytes; i++)
        buf[i] = (uint8_t)rng();
    for (int b = 0; b < nblocks; b++) {
        uint8_t *p = buf + b * q->bytes;
        int pos[2] = {q->type == TS_Q6_K ? 208 : 0, q->type == TS_Q4_1 || q->type == TS_Q5_1 ? 2 : -1};
        for (int k = 0; k < 2; k++)
            if (pos[k] >= 0 && (p[pos[k] + 1] & 0x7c) == 0x7c)
                p[pos[k] + 1] &= 0xbf;
    }
}

START_TEST(dequant_matches_reference_decoder)
{
    for (size_t k = 0; k < NTYPES; k++) {
        const qt *q = &TYPES[k];
        const ts_quant_type *tt = ts_quant_type_get(q->type);
        ck_assert_msg(tt != NULL, "%s missing from the type table", q->name);
        enum { NB = 64 };
        uint8_t *buf = malloc((size_t)NB * q->bytes);
        float *y = malloc(sizeof(float) * NB * q->block), ref[256];
        random_blocks(q, buf, NB);
        tt->dequantize_row(buf, y, (int64_t)NB * q->block);
        for (int b = 0; b < NB; b++) {
            ref_dequant(q->type, buf + b * q->bytes, ref);
            for (int j = 0; j < q->block; j++)
                ck_assert_msg(memcmp(&ref[j], &y[b * q->block + j], 4) == 0, "%s block %d element %d: %a vs %a",
                              q->name, b, j, (double)ref[j], (double)y[b * q->block + j]);
        }
        free(buf);
        free(y);
    }
}
END_TEST

/* ---- hand-computed blocks ---------------------------------------------- */

static void quant_one(ts_dtype t, const float *x, int64_t n, uint8_t *out, const float *im)
{
    const ts_quant_type *tt = ts_quant_type_get(t);
    ck_assert_ptr_nonnull(tt);
    tt->quantize_rows(x, out, 1, n, im);
}

static void expect_bytes(const char *what, const uint8_t *got, const uint8_t *want, int n)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "%s: byte %d is 0x%02x, expected 0x%02x", what, i, got[i], want[i]);
}

/* Blocks that the format represents exactly: the search must find the
 * exact scale, and the bytes are fixed by the layout. */
START_TEST(exact_known_blocks)
{
    float x[256];
    uint8_t out[256], want[256];
    /* q4_0: x_j = (j % 16 - 8) / 4: d = 0.25 (fp16 0x3400), code j % 16. */
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j % 16 - 8) * 0.25f;
    quant_one(TS_Q4_0, x, 32, out, NULL);
    want[0] = 0x00, want[1] = 0x34;
    for (int j = 0; j < 16; j++)
        want[2 + j] = (uint8_t)(j * 0x11);
    expect_bytes("q4_0", out, want, 18);
    /* q4_1: x_j = 1 + (j % 16) / 2: d = 0.5 (0x3800), m = 1 (0x3c00). */
    for (int j = 0; j < 32; j++)
        x[j] = 1.f + (float)(j % 16) * 0.5f;
    quant_one(TS_Q4_1, x, 32, out, NULL);
    want[0] = 0x00, want[1] = 0x38, want[2] = 0x00, want[3] = 0x3c;
    for (int j = 0; j < 16; j++)
        want[4 + j] = (uint8_t)(j * 0x11);
    expect_bytes("q4_1", out, want, 20);
    /* q5_0: x_j = (j - 16) / 8: d = 0.125 (0x3000), code j; the fifth bits
     * (set for j >= 16) make qh = 0xffff0000 little-endian. */
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16) * 0.125f;
    quant_one(TS_Q5_0, x, 32, out, NULL);
    uint8_t q50[22] = {0x00, 0x30, 0x00, 0x00, 0xff, 0xff};
    for (int j = 0; j < 16; j++)
        q50[6 + j] = (uint8_t)(j * 0x11);
    expect_bytes("q5_0", out, q50, 22);
    /* q5_1: x_j = -1 + j / 4: d = 0.25 (0x3400), m = -1 (0xbc00). */
    for (int j = 0; j < 32; j++)
        x[j] = -1.f + (float)j * 0.25f;
    quant_one(TS_Q5_1, x, 32, out, NULL);
    uint8_t q51[24] = {0x00, 0x34, 0x00, 0xbc, 0x00, 0x00, 0xff, 0xff};
    for (int j = 0; j < 16; j++)
        q51[8 + j] = (uint8_t)(j * 0x11);
    expect_bytes("q5_1", out, q51, 24);
    /* iq4_nl: x_j = table[j % 16] / 64: d = 2^-6 (0x2400), code j % 16. */
    for (int j = 0; j < 32; j++)
        x[j] = KV[j % 16] / 64.f;
    quant_one(TS_IQ4_NL, x, 32, out, NULL);
    want[0] = 0x00, want[1] = 0x24;
    for (int j = 0; j < 16; j++)
        want[2 + j] = (uint8_t)(j * 0x11);
    expect_bytes("iq4_nl", out, want, 18);
    /* iq4_xs: sub-block ib scaled by d * (4 ib - 32), d = 2^-8 (0x1c00):
     * 6-bit codes 4 ib, i.e. low nibbles 0 4 8 12 0 4 8 12 and high bits
     * 0 0 0 0 1 1 1 1 (scales_h 0x5500). */
    for (int ib = 0; ib < 8; ib++)
        for (int j = 0; j < 32; j++)
            x[32 * ib + j] = KV[(j + ib) % 16] * ldexpf((float)(4 * ib - 32), -8);
    quant_one(TS_IQ4_XS, x, 256, out, NULL);
    uint8_t xs[8] = {0x00, 0x1c, 0x00, 0x55, 0x40, 0xc8, 0x40, 0xc8};
    expect_bytes("iq4_xs header", out, xs, 8);
    for (int ib = 0; ib < 8; ib++)
        for (int j = 0; j < 16; j++) {
            uint8_t c = (uint8_t)(((j + ib) % 16) | (((j + 16 + ib) % 16) << 4));
            ck_assert_msg(out[8 + 16 * ib + j] == c, "iq4_xs sub-block %d byte %d", ib, j);
        }
    /* q6_K: sub-block ib scaled by d * (8 ib - 128), d = 2^-10 (0x1400), code
     * 0 then (7 i) % 64 at element i (value code - 32). Checked through the
     * reference decoder: the values must come back exactly. */
    for (int i = 0; i < 256; i++) /* code 0 (value -32) leads each sub-block */
        x[i] = (float)((i % 16 ? (7 * i) % 64 : 0) - 32) * ldexpf((float)(8 * (i / 16) - 128), -10);
    quant_one(TS_Q6_K, x, 256, out, NULL);
    ck_assert_uint_eq(out[208], 0x00);
    ck_assert_uint_eq(out[209], 0x14);
    for (int ib = 0; ib < 16; ib++)
        ck_assert_int_eq((int8_t)out[192 + ib], 8 * ib - 128);
    float y[256];
    ref_dequant(TS_Q6_K, out, y);
    for (int i = 0; i < 256; i++)
        ck_assert_msg(y[i] == x[i], "q6_K element %d: %g vs %g", i, (double)y[i], (double)x[i]);
}
END_TEST

/* ---- error bounds ------------------------------------------------------ */

static double rmse(const float *a, const float *b, size_t n, const float *w, size_t period)
{
    double s = 0, sw = 0;
    for (size_t i = 0; i < n; i++) {
        double wi = w ? w[i % period] : 1.0, d = (double)a[i] - b[i];
        s += wi * d * d;
        sw += wi;
    }
    return sqrt(s / sw);
}

static void round_trip(const qt *q, const float *x, int64_t rows, int64_t n, const float *im, float *y)
{
    const ts_quant_type *tt = ts_quant_type_get(q->type);
    size_t row_bytes = (size_t)(n / q->block) * (size_t)q->bytes;
    uint8_t *buf = malloc(row_bytes * (size_t)rows);
    ck_assert_uint_eq(tt->quantize_rows(x, buf, rows, n, im), row_bytes * (size_t)rows);
    for (int64_t r = 0; r < rows; r++)
        tt->dequantize_row(buf + (size_t)r * row_bytes, y + r * n, n);
    free(buf);
}

/* ggml's reference quantizers for q4_0 / q5_0 (largest |x| at level -nmax)
 * and q4_1 / q5_1 (min and max at the end levels), written from the format:
 * our search must never do worse on a row. */
static void naive_round_trip(ts_dtype t, const float *x, int n, float *y)
{
    int nmax = t == TS_Q4_0 ? 8 : t == TS_Q5_0 ? 16 : t == TS_Q4_1 ? 15 : 31;
    int affine = t == TS_Q4_1 || t == TS_Q5_1;
    for (int b = 0; b < n; b += 32) {
        float amax = 0, max = 0, mn = x[b], mx = x[b];
        for (int j = b; j < b + 32; j++) {
            if (fabsf(x[j]) > amax)
                amax = fabsf(x[j]), max = x[j];
            mn = fminf(mn, x[j]), mx = fmaxf(mx, x[j]);
        }
        uint8_t h[2];
        float d = affine ? (mx - mn) / (float)nmax : max / (float)-nmax;
        float id = d != 0.f ? 1.f / d : 0.f;
        ts_k_f32_to_f16(&d, (uint16_t *)h, 1);
        float dq = f16v(h), m = 0.f;
        if (affine) {
            ts_k_f32_to_f16(&mn, (uint16_t *)h, 1);
            m = f16v(h);
        }
        for (int j = b; j < b + 32; j++) {
            int l = affine ? (int)((x[j] - mn) * id + 0.5f) : (int)(x[j] * id + (float)nmax + 0.5f);
            l = l < 0 ? 0 : l > (affine ? nmax : 2 * nmax - 1) ? (affine ? nmax : 2 * nmax - 1) : l;
            y[j] = affine ? (float)l * dq + m : (float)(l - nmax) * dq;
        }
    }
}

START_TEST(gaussian_error_bounds)
{
    enum { ROWS = 16, N = 512 };
    float *x = malloc(sizeof(float) * ROWS * N), *y = malloc(sizeof(float) * ROWS * N), im[N];
    fill_gauss(x, (size_t)ROWS * N, 0.02f);
    for (int j = 0; j < N; j++)
        im[j] = expf(2.f * gauss());
    for (size_t k = 0; k < NTYPES; k++) {
        const qt *q = &TYPES[k];
        round_trip(q, x, ROWS, N, NULL, y);
        double e0 = rmse(x, y, (size_t)ROWS * N, NULL, N) / 0.02;
        ck_assert_msg(e0 < q->max_rrmse, "%s: relative RMSE %.4f >= %.4f", q->name, e0, q->max_rrmse);
        /* With an imatrix: its weighted error must drop below the one of
         * the quantization that ignored it. */
        double w0 = rmse(x, y, (size_t)ROWS * N, im, N);
        round_trip(q, x, ROWS, N, im, y);
        double w1 = rmse(x, y, (size_t)ROWS * N, im, N);
        ck_assert_msg(w1 < w0, "%s: imatrix-weighted RMSE %.4g with the imatrix, %.4g without", q->name, w1, w0);
        for (size_t i = 0; i < (size_t)ROWS * N; i++)
            ck_assert(isfinite(y[i]));
    }
    /* Never worse than ggml's reference rounding on a row. */
    const ts_dtype legacy[] = {TS_Q4_0, TS_Q4_1, TS_Q5_0, TS_Q5_1};
    for (int k = 0; k < 4; k++) {
        round_trip(&TYPES[k], x, ROWS, N, NULL, y);
        for (int r = 0; r < ROWS; r++) {
            float ny[N];
            naive_round_trip(legacy[k], x + r * N, N, ny);
            double ours = rmse(x + r * N, y + r * N, N, NULL, N), naive = rmse(x + r * N, ny, N, NULL, N);
            ck_assert_msg(ours <= naive, "%s row %d: RMSE %.6g > reference rounding's %.6g", TYPES[k].name, r,
                          ours, naive);
        }
    }
    free(x);
    free(y);
}
END_TEST

/* ---- policies ---------------------------------------------------------- */

START_TEST(zero_and_constant_rows)
{
    float x[512], y[512];
    uint8_t buf[512];
    for (size_t k = 0; k < NTYPES; k++) {
        const qt *q = &TYPES[k];
        const ts_quant_type *tt = ts_quant_type_get(q->type);
        memset(x, 0, sizeof x);
        tt->quantize_rows(x, buf, 1, 256, NULL);
        /* Scales all zero: every value comes back 0 (+0, except q6_K's
         * all-zero-bytes block, whose code 0 is -32: -0, as in ggml). */
        tt->dequantize_row(buf, y, 256);
        for (int i = 0; i < 256; i++)
            ck_assert_msg(y[i] == 0.f && !signbit(y[i]) == (q->type != TS_Q6_K), "%s: zero row element %d is %g",
                          q->name, i, (double)y[i]);
        if (q->type == TS_Q6_K)
            for (int i = 0; i < 210; i++)
                ck_assert_msg(buf[i] == 0, "q6_K zero block byte %d", i); /* as ggml writes it */
        /* Constants come back to fp16 precision of the scale (2^-11), but
         * q6_K at 1e-4 needs d ~ 2.4e-8, below fp16's normal range: about 1%
         * is the best that format can do there. */
        const float consts[] = {1.f, -3.5f, 0.1f, 7777.f, 1e-4f};
        for (size_t c = 0; c < sizeof consts / sizeof consts[0]; c++) {
            float tol = consts[c] == 1e-4f ? 0.02f : 1e-3f;
            for (int i = 0; i < 256; i++)
                x[i] = consts[c];
            tt->quantize_rows(x, buf, 1, 256, NULL);
            tt->dequantize_row(buf, y, 256);
            for (int i = 0; i < 256; i++)
                ck_assert_msg(fabsf(y[i] - x[i]) <= tol * fabsf(x[i]), "%s: constant %g comes back %g", q->name,
                              (double)x[i], (double)y[i]);
        }
    }
}
END_TEST

/* NaN and +-inf are quantized as 0; the rest of their block as usual. */
START_TEST(nonfinite_inputs_are_zero)
{
    float x[512], z[512];
    uint8_t a[512], b[512];
    fill_gauss(x, 512, 1.f);
    const int pos[] = {0, 5, 31, 40, 100, 255, 256, 300};
    const float bad[] = {NAN, INFINITY, -INFINITY, -NAN, NAN, INFINITY, -INFINITY, NAN};
    memcpy(z, x, sizeof x);
    for (int i = 0; i < 8; i++)
        x[pos[i]] = bad[i], z[pos[i]] = 0.f;
    for (size_t k = 0; k < NTYPES; k++) {
        const ts_quant_type *tt = ts_quant_type_get(TYPES[k].type);
        for (int with_im = 0; with_im < 2; with_im++) {
            float im[512];
            for (int i = 0; i < 512; i++)
                im[i] = 1.f + (float)(i % 7);
            size_t na = tt->quantize_rows(x, a, 1, 512, with_im ? im : NULL);
            size_t nb = tt->quantize_rows(z, b, 1, 512, with_im ? im : NULL);
            ck_assert_uint_eq(na, nb);
            ck_assert_msg(memcmp(a, b, na) == 0, "%s: NaN/inf not quantized as 0", TYPES[k].name);
        }
    }
}
END_TEST

START_TEST(extreme_ranges)
{
    float x[1024], y[1024];
    uint8_t buf[1024];
    for (size_t k = 0; k < NTYPES; k++) {
        const qt *q = &TYPES[k];
        const ts_quant_type *tt = ts_quant_type_get(q->type);
        /* 256-element blocks of: 1e-3 scale, 1e3 scale, tiny (below 2^-30:
         * stored as zero), huge (1e30 and FLT_MAX: the scale saturates at
         * 65504, values stay finite). */
        fill_gauss(x, 256, 1e-3f);
        fill_gauss(x + 256, 256, 1e3f);
        fill_gauss(x + 512, 256, 1e-12f);
        x[512] = 1e-38f; /* subnormal */
        x[513] = -1e-45f;
        fill_gauss(x + 768, 256, 1e30f);
        x[768] = FLT_MAX;
        x[769] = -FLT_MAX;
        tt->quantize_rows(x, buf, 1, 1024, NULL);
        tt->dequantize_row(buf, y, 1024);
        for (int i = 0; i < 1024; i++)
            ck_assert_msg(isfinite(y[i]), "%s: element %d not finite", q->name, i);
        double r0 = rmse(x, y, 256, NULL, 256) / 1e-3, r1 = rmse(x + 256, y + 256, 256, NULL, 256) / 1e3;
        ck_assert_msg(r0 < q->max_rrmse * 1.5 && r1 < q->max_rrmse * 1.5, "%s: %g %g", q->name, r0, r1);
        for (int i = 512; i < 768; i++)
            ck_assert_msg(y[i] == 0.f, "%s: tiny element %d -> %g", q->name, i, (double)y[i]);
        /* Saturated: the largest values come back as large as the format allows. */
        float big = 0;
        for (int i = 768; i < 1024; i++)
            big = fmaxf(big, fabsf(y[i]));
        ck_assert_msg(big > 65504.f, "%s: saturated block peaks at %g", q->name, (double)big);
    }
}
END_TEST

START_TEST(imatrix_zeros_and_garbage)
{
    enum { N = 512 };
    float x[N], y[N], y0[N], im[N], im2[N];
    uint8_t a[N * 2], b[N * 2];
    fill_gauss(x, N, 0.05f);
    for (size_t k = 0; k < NTYPES; k++) {
        const qt *q = &TYPES[k];
        const ts_quant_type *tt = ts_quant_type_get(q->type);
        /* All zero: quantized like no imatrix (default weights), so about as good. */
        memset(im, 0, sizeof im);
        tt->quantize_rows(x, a, 1, N, im);
        tt->dequantize_row(a, y, N);
        tt->quantize_rows(x, b, 1, N, NULL);
        tt->dequantize_row(b, y0, N);
        ck_assert_msg(rmse(x, y, N, NULL, N) < 1.1 * rmse(x, y0, N, NULL, N), "%s: all-zero imatrix", q->name);
        /* Zero columns still round sensibly: their error stays within a
         * few quantization steps of the type's typical error. */
        for (int i = 0; i < N; i++)
            im[i] = i % 4 == 0 ? 0.f : 1.f + (float)(i % 5);
        tt->quantize_rows(x, a, 1, N, im);
        tt->dequantize_row(a, y, N);
        double worst = 0;
        for (int i = 0; i < N; i += 4)
            worst = fmax(worst, fabs((double)x[i] - y[i]));
        ck_assert_msg(worst < 0.05 * 4 * 4 * q->max_rrmse, "%s: zero-weight column error %g", q->name, worst);
        /* Negative, NaN and inf entries count as 0. */
        memcpy(im2, im, sizeof im);
        im2[0] = -1.f, im2[4] = NAN, im2[8] = INFINITY, im2[12] = -INFINITY;
        tt->quantize_rows(x, b, 1, N, im2);
        ck_assert_msg(memcmp(a, b, (size_t)(N / q->block) * q->bytes) == 0, "%s: bad imatrix entries", q->name);
    }
}
END_TEST

/* quantize_rows on several rows == row by row; sizes from the layout. */
START_TEST(rows_and_sizes)
{
    enum { ROWS = 3, N = 512 };
    float x[ROWS * N], im[N];
    fill_gauss(x, ROWS * N, 1.f);
    for (int i = 0; i < N; i++)
        im[i] = (float)(1 + i % 3);
    for (size_t k = 0; k < NTYPES; k++) {
        const qt *q = &TYPES[k];
        const ts_quant_type *tt = ts_quant_type_get(q->type);
        size_t row_bytes = (size_t)(N / q->block) * q->bytes;
        uint64_t rb = 0;
        ck_assert(ts_dtype_row_bytes(q->type, N, &rb));
        ck_assert_uint_eq(rb, row_bytes);
        uint8_t all[ROWS * N], one[N];
        ck_assert_uint_eq(tt->quantize_rows(x, all, ROWS, N, im), ROWS * row_bytes);
        for (int r = 0; r < ROWS; r++) {
            tt->quantize_rows(x + r * N, one, 1, N, im);
            ck_assert_msg(memcmp(one, all + r * row_bytes, row_bytes) == 0, "%s row %d", q->name, r);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("quant_legacy");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, dequant_matches_reference_decoder);
    tcase_add_test(tc, exact_known_blocks);
    tcase_add_test(tc, gaussian_error_bounds);
    tcase_add_test(tc, zero_and_constant_rows);
    tcase_add_test(tc, nonfinite_inputs_are_zero);
    tcase_add_test(tc, extreme_ranges);
    tcase_add_test(tc, imatrix_zeros_and_garbage);
    tcase_add_test(tc, rows_and_sizes);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
