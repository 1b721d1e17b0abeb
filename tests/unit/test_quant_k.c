/* k-quants q2_K q3_K q4_K q5_K (kernels/quant_k*.c): the packed scale
 * fields value by value, hand-built blocks dequantized to known floats,
 * round-trip error bounds, degenerate rows (zero, constant, huge range,
 * tiny, non-finite), imatrix handling. Byte compatibility with ggml itself
 * (its to_float on our bytes, and our error against ggml_quantize_chunk's)
 * is checked by tests/interop/test_quant_types.sh with libggml-base.
 *
 * NaN / inf policy. ggml (v0.5.0, x86-64) has none: a NaN input zeroes its
 * sub-block or, with an imatrix, the whole super-block (sigma2 becomes NaN),
 * and an inf makes d NaN, so q2_K / q4_K / q5_K dequantize the whole
 * super-block to NaN (q3_K gives zeros). Ours: NaN and +-inf are quantized as
 * 0 and the rest of the block normally; scales saturate at the largest
 * finite fp16, so every block we write dequantizes to finite values. */
#include "testutil.h"
#include "kernels/quant_kernels.h"
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*quant_fn)(const float *, void *, int64_t, const float *);
typedef void (*deq_fn)(const void *, float *, int64_t);

typedef struct {
    const char *name;
    ts_dtype type;
    quant_fn q;
    deq_fn d;
    size_t bytes;
    double rms_bound; /* bound on a block's RMS error / its range (max - min) */
} ktype;

/* Bounds: 1.7 to 2 times the worst seen over 80000 random blocks. */
static const ktype K[4] = {
    {"q2_K", TS_Q2_K, ts_k_quantize_row_q2_k, ts_k_dequantize_row_q2_k, TS_Q2_K_BLOCK_BYTES, 0.16},
    {"q3_K", TS_Q3_K, ts_k_quantize_row_q3_k, ts_k_dequantize_row_q3_k, TS_Q3_K_BLOCK_BYTES, 0.12},
    {"q4_K", TS_Q4_K, ts_k_quantize_row_q4_k, ts_k_dequantize_row_q4_k, TS_Q4_K_BLOCK_BYTES, 0.04},
    {"q5_K", TS_Q5_K, ts_k_quantize_row_q5_k, ts_k_dequantize_row_q5_k, TS_Q5_K_BLOCK_BYTES, 0.02},
};

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static double unif(void) { return (double)(rng() >> 11) / 9007199254740992.0; }
static float gauss(void)
{
    double u = unif() + 1e-300, v = unif();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* Quantize and dequantize n values; checks that exactly the row's bytes
 * are written (canary after them). */
static void round_trip(const ktype *t, const float *x, int n, const float *imatrix, uint8_t *blk, float *y)
{
    const size_t nb = (size_t)n / TS_QK_K * t->bytes;
    memset(blk, 0xa5, nb + 16);
    t->q(x, blk, n, imatrix);
    for (int i = 0; i < 16; i++)
        ck_assert_msg(blk[nb + i] == 0xa5, "%s wrote past its %zu bytes", t->name, nb);
    t->d(blk, y, n);
}

/* ---- the packed 6-bit scales -------------------------------------------- */

/* ggml's get_scale_min_k4, written out independently. */
static void ref_scale_min_k4(int j, const uint8_t *q, int *d, int *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

START_TEST(scales_q4k_hand_checked)
{
    /* codes 4..7 split: low nibbles in bytes 8..11, top bits over bytes 0..7 */
    const uint8_t sc[8] = {0, 0, 0, 0, 0x10, 0x20, 0x30, 0x3f};
    const uint8_t mn[8] = {0, 0, 0, 0, 0x01, 0x12, 0x23, 0x34};
    const uint8_t want[12] = {0x40, 0x80, 0xc0, 0xc0, 0x00, 0x40, 0x80, 0xc0, 0x10, 0x20, 0x30, 0x4f};
    uint8_t got[12];
    ts_k_pack_scales_q4_k(sc, mn, got);
    ck_assert_mem_eq(got, want, 12);
    const uint8_t sc2[8] = {63, 1, 2, 3, 63, 0, 0, 0}, mn2[8] = {5, 6, 7, 8, 0, 0, 0, 0};
    const uint8_t want2[12] = {0xff, 0x01, 0x02, 0x03, 0x05, 0x06, 0x07, 0x08, 0x0f, 0x00, 0x00, 0x00};
    ts_k_pack_scales_q4_k(sc2, mn2, got);
    ck_assert_mem_eq(got, want2, 12);
}
END_TEST

START_TEST(scales_q4k_all_values)
{
    for (int pos = 0; pos < 8; pos++)
        for (int v = 0; v < 64; v++) {
            uint8_t sc[8], mn[8], out[12], sc2[8], mn2[8];
            for (int j = 0; j < 8; j++) { /* neighbours hold other values */
                sc[j] = (uint8_t)((v * 7 + j * 13) & 63);
                mn[j] = (uint8_t)((v * 11 + j * 5 + 1) & 63);
            }
            sc[pos] = (uint8_t)v;
            mn[pos] = (uint8_t)(63 - v);
            ts_k_pack_scales_q4_k(sc, mn, out);
            ts_k_unpack_scales_q4_k(out, sc2, mn2);
            ck_assert_mem_eq(sc, sc2, 8);
            ck_assert_mem_eq(mn, mn2, 8);
            for (int j = 0; j < 8; j++) {
                int d, m;
                ref_scale_min_k4(j, out, &d, &m);
                ck_assert_int_eq(d, sc[j]);
                ck_assert_int_eq(m, mn[j]);
            }
        }
}
END_TEST

/* ggml's dequantize_row_q3_K unpacking (32-bit words and masks), written
 * out independently. */
static void ref_q3_scales(const uint8_t in[12], int out[16])
{
    uint32_t a[4];
    memcpy(a, in, 12);
    const uint32_t tmp = a[2], m1 = 0x03030303u, m2 = 0x0f0f0f0fu;
    a[2] = ((a[0] >> 4) & m2) | (((tmp >> 4) & m1) << 4);
    a[3] = ((a[1] >> 4) & m2) | (((tmp >> 6) & m1) << 4);
    a[0] = (a[0] & m2) | (((tmp >> 0) & m1) << 4);
    a[1] = (a[1] & m2) | (((tmp >> 2) & m1) << 4);
    const uint8_t *b = (const uint8_t *)a;
    for (int j = 0; j < 16; j++)
        out[j] = (int)b[j] - 32;
}

START_TEST(scales_q3k_hand_checked)
{
    int8_t sc[16];
    uint8_t got[12];
    memset(sc, -32, sizeof sc); /* stored as 0 */
    ts_k_pack_scales_q3_k(sc, got);
    const uint8_t zero[12] = {0};
    ck_assert_mem_eq(got, zero, 12);
    memset(sc, 31, sizeof sc); /* stored as 63: every bit set */
    ts_k_pack_scales_q3_k(sc, got);
    const uint8_t ones[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    ck_assert_mem_eq(got, ones, 12);
    memset(sc, -32, sizeof sc);
    sc[0] = 0;   /* 32 = 0b10'0000: top bits 2 at byte 8, bits 0-1 */
    sc[15] = -1; /* 31 = 0b01'1111: 0xf in byte 7's high nibble, top bits 1 at byte 11 bits 6-7 */
    sc[9] = 13;  /* 45 = 0b10'1101: 0xd in byte 1's high nibble, top bits 2 at byte 9 bits 4-5 */
    ts_k_pack_scales_q3_k(sc, got);
    const uint8_t want[12] = {0x00, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x02, 0x20, 0x00, 0x40};
    ck_assert_mem_eq(got, want, 12);
}
END_TEST

START_TEST(scales_q3k_all_values)
{
    for (int pos = 0; pos < 16; pos++)
        for (int v = -32; v < 32; v++) {
            int8_t sc[16], back[16];
            uint8_t out[12];
            for (int j = 0; j < 16; j++)
                sc[j] = (int8_t)(((v + 32) * 5 + j * 23) % 64 - 32);
            sc[pos] = (int8_t)v;
            ts_k_pack_scales_q3_k(sc, out);
            ts_k_unpack_scales_q3_k(out, back);
            ck_assert_mem_eq(sc, back, 16);
            int ref[16];
            ref_q3_scales(out, ref);
            for (int j = 0; j < 16; j++)
                ck_assert_int_eq(ref[j], sc[j]);
        }
}
END_TEST

/* ---- hand-built blocks: the layout, element by element ------------------ */

START_TEST(dequant_known_blocks)
{
    float y[TS_QK_K];
    /* q4_K: d = 1, dmin = 0.5; sub-block 1 (high nibbles of bytes 16..47)
     * has scale 2, min 3: y = 2*q - 1.5. */
    uint8_t b4[TS_Q4_K_BLOCK_BYTES] = {0};
    b4[0] = 0x00, b4[1] = 0x3c; /* 1.0 */
    b4[2] = 0x00, b4[3] = 0x38; /* 0.5 */
    b4[4 + 1] = 2, b4[4 + 5] = 3;
    b4[16 + 7] = 0x50; /* element 32 + 7: q = 5 */
    ts_k_dequantize_row_q4_k(b4, y, TS_QK_K);
    ck_assert_float_eq(y[39], 8.5f);
    ck_assert_float_eq(y[38], -1.5f);
    ck_assert_float_eq(y[7], 0.0f);
    /* q5_K: the same, plus qh bit 1 of byte 7 (element 39 gets +16) */
    uint8_t b5[TS_Q5_K_BLOCK_BYTES] = {0};
    memcpy(b5, b4, 16);
    b5[48 + 7] = 0x50;
    b5[16 + 7] = 0x02;
    ts_k_dequantize_row_q5_k(b5, y, TS_QK_K);
    ck_assert_float_eq(y[39], 2.0f * 21.0f - 1.5f);
    /* q2_K: d = 1, dmin = 1; sub-block 5 (elements 80..95) scale 1, min 2;
     * element 81 is in byte 16 + 17, bits 4-5 (81 = 64 + 17). */
    uint8_t b2[TS_Q2_K_BLOCK_BYTES] = {0};
    b2[80] = 0x00, b2[81] = 0x3c, b2[82] = 0x00, b2[83] = 0x3c;
    b2[5] = 0x21;
    b2[16 + 17] = 3 << 4;
    ts_k_dequantize_row_q2_k(b2, y, TS_QK_K);
    ck_assert_float_eq(y[81], 1.0f);
    ck_assert_float_eq(y[80], -2.0f);
    /* q3_K: d = 0.5, scale code of sub-block 2 (elements 32..47) = +2, so
     * dl = 1. Element 33: low bits 3 at byte 32 + 1 bits 2-3, hmask[1] bit 1
     * set -> l = 3. Element 34: low bits 1, hmask clear -> l = 1 - 4 = -3. */
    uint8_t b3[TS_Q3_K_BLOCK_BYTES] = {0};
    int8_t sc[16];
    memset(sc, 0, sizeof sc);
    sc[2] = 2;
    ts_k_pack_scales_q3_k(sc, b3 + 96);
    b3[108] = 0x00, b3[109] = 0x38;
    b3[32 + 1] = 3 << 2;
    b3[1] = 1 << 1;
    b3[32 + 2] = 1 << 2;
    ts_k_dequantize_row_q3_k(b3, y, TS_QK_K);
    ck_assert_float_eq(y[33], 3.0f);
    ck_assert_float_eq(y[34], -3.0f);
    ck_assert_float_eq(y[0], 0.0f);
}
END_TEST

/* Blocks with an inf or NaN scale (never written by us, possible in a
 * damaged file) dequantize as ggml does on x86-64, on every machine. */
START_TEST(dequant_nonfinite_scale)
{
    float y[TS_QK_K];
    uint8_t b4[TS_Q4_K_BLOCK_BYTES] = {0};
    b4[1] = 0x7c; /* d = +inf, dmin = 0 */
    b4[4] = 1;    /* sub-block 0: scale 1 */
    b4[16] = 0x01;
    ts_k_dequantize_row_q4_k(b4, y, TS_QK_K);
    uint32_t u;
    memcpy(&u, &y[0], 4);
    ck_assert_uint_eq(u, 0x7f800000u); /* inf * 1 * 1 - 0 */
    memcpy(&u, &y[1], 4);
    ck_assert_uint_eq(u, 0xffc00000u); /* inf * 0: x86's default NaN */
    memcpy(&u, &y[32], 4);
    ck_assert_uint_eq(u, 0xffc00000u); /* scale 0: inf * 0 */
    b4[0] = 0x01, b4[1] = 0x7e; /* d = NaN with a payload: propagated, quiet */
    ts_k_dequantize_row_q4_k(b4, y, TS_QK_K);
    memcpy(&u, &y[5], 4);
    ck_assert_uint_eq(u, 0x7fc02000u);
}
END_TEST

/* ---- round trips --------------------------------------------------------- */

static double block_range(const float *x)
{
    float lo = x[0], hi = x[0];
    for (int i = 1; i < TS_QK_K; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    return (double)hi - lo;
}

/* Gaussian, uniform, heavy-tailed and one-sided blocks. */
static void fill_block(float *x, int kind, float scale)
{
    for (int i = 0; i < TS_QK_K; i++) {
        float v = gauss();
        if (kind == 1)
            v = (float)(unif() * 2.0 - 1.0);
        else if (kind == 2)
            v = v * v * v;
        else if (kind == 3)
            v = fabsf(v) + 0.5f;
        x[i] = v * scale;
    }
}

START_TEST(round_trip_error_bounds)
{
    enum { NB = 64 };
    static float x[NB * TS_QK_K], y[NB * TS_QK_K];
    static uint8_t blk[NB * TS_Q5_K_BLOCK_BYTES + 16];
    for (int t = 0; t < 4; t++)
        for (int kind = 0; kind < 4; kind++) {
            for (int b = 0; b < NB; b++)
                fill_block(x + b * TS_QK_K, kind, (float)ldexp(1.0, (int)(rng() % 20) - 10));
            round_trip(&K[t], x, NB * TS_QK_K, NULL, blk, y);
            for (int b = 0; b < NB; b++) {
                const float *xb = x + b * TS_QK_K, *yb = y + b * TS_QK_K;
                double e2 = 0.0;
                for (int i = 0; i < TS_QK_K; i++)
                    e2 += ((double)xb[i] - yb[i]) * ((double)xb[i] - yb[i]);
                const double rel = sqrt(e2 / TS_QK_K) / block_range(xb);
                ck_assert_msg(rel < K[t].rms_bound, "%s kind %d block %d: rms error %.4f of the range", K[t].name,
                              kind, b, rel);
            }
        }
}
END_TEST

START_TEST(zero_rows)
{
    static float x[2 * TS_QK_K], y[2 * TS_QK_K], w[2 * TS_QK_K];
    static uint8_t blk[2 * TS_Q5_K_BLOCK_BYTES + 16];
    for (int i = 0; i < 2 * TS_QK_K; i++) {
        x[i] = i % 3 ? 0.0f : -0.0f;
        w[i] = 1.0f + (float)i;
    }
    for (int t = 0; t < 4; t++)
        for (int im = 0; im < 2; im++) {
            round_trip(&K[t], x, 2 * TS_QK_K, im ? w : NULL, blk, y);
            for (int i = 0; i < 2 * TS_QK_K; i++)
                ck_assert_msg(y[i] == 0.0f, "%s: element %d is %g", K[t].name, i, y[i]);
        }
}
END_TEST

START_TEST(constant_rows)
{
    static float x[TS_QK_K], y[TS_QK_K];
    static uint8_t blk[TS_Q5_K_BLOCK_BYTES + 16];
    const float cs[] = {1.0f, -1.0f, 0.37f, -1234.5f, 3e-3f, 60000.0f};
    for (int t = 0; t < 4; t++)
        for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
            for (int i = 0; i < TS_QK_K; i++)
                x[i] = cs[c];
            round_trip(&K[t], x, TS_QK_K, NULL, blk, y);
            for (int i = 0; i < TS_QK_K; i++)
                /* 5e-3: d may be an fp16 subnormal (0.003 in q5_K: d ~ 1.5e-6) */
                ck_assert_msg(fabsf(y[i] - cs[c]) <= 5e-3f * fabsf(cs[c]), "%s: constant %g came back as %g",
                              K[t].name, cs[c], y[i]);
        }
}
END_TEST

/* One outlier a million times the rest: it sets the scale, survives, and
 * nothing overflows. Then magnitudes beyond what fp16 scales can hold, and
 * values too small for any fp16 scale. */
START_TEST(huge_dynamic_range)
{
    static float x[TS_QK_K], y[TS_QK_K];
    static uint8_t blk[TS_Q5_K_BLOCK_BYTES + 16];
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < TS_QK_K; i++)
            x[i] = 1e-3f * gauss();
        x[77] = 1000.0f;
        round_trip(&K[t], x, TS_QK_K, NULL, blk, y);
        ck_assert_msg(fabsf(y[77] - 1000.0f) < 0.02f * 1000.0f, "%s: outlier 1000 came back as %g", K[t].name, y[77]);
        for (int i = 0; i < TS_QK_K; i++)
            ck_assert_msg(isfinite(y[i]) && fabsf(y[i] - x[i]) <= 0.6 * block_range(x), "%s: element %d: %g -> %g",
                          K[t].name, i, x[i], y[i]);

        for (int i = 0; i < TS_QK_K; i++)
            x[i] = (i % 2 ? 1e30f : -3e28f) * (1.0f + 0.001f * (float)i);
        round_trip(&K[t], x, TS_QK_K, NULL, blk, y);
        for (int i = 0; i < TS_QK_K; i++)
            ck_assert_msg(isfinite(y[i]) && (y[i] > 0) == (i % 2 == 1), "%s: huge element %d: %g -> %g", K[t].name,
                          i, x[i], y[i]);

        for (int i = 0; i < TS_QK_K; i++)
            x[i] = 1e-12f * gauss();
        round_trip(&K[t], x, TS_QK_K, NULL, blk, y);
        for (int i = 0; i < TS_QK_K; i++)
            ck_assert_msg(isfinite(y[i]) && fabsf(y[i]) < 1e-6f, "%s: tiny element %d: %g -> %g", K[t].name, i,
                          x[i], y[i]);
    }
}
END_TEST

START_TEST(nonfinite_inputs)
{
    static float x[TS_QK_K], ref[TS_QK_K], y[TS_QK_K], y0[TS_QK_K];
    static uint8_t blk[TS_Q5_K_BLOCK_BYTES + 16], blk0[TS_Q5_K_BLOCK_BYTES + 16];
    for (int t = 0; t < 4; t++) {
        for (int i = 0; i < TS_QK_K; i++)
            ref[i] = x[i] = gauss();
        x[3] = NAN, x[100] = INFINITY, x[200] = -INFINITY, x[0] = -NAN;
        ref[3] = ref[100] = ref[200] = ref[0] = 0.0f;
        round_trip(&K[t], x, TS_QK_K, NULL, blk, y);
        round_trip(&K[t], ref, TS_QK_K, NULL, blk0, y0);
        /* exactly as if those values were 0 */
        ck_assert_mem_eq(blk, blk0, K[t].bytes);
        for (int i = 0; i < TS_QK_K; i++)
            ck_assert(isfinite(y[i]));
    }
}
END_TEST

/* Zero, negative and NaN imatrix entries count as nothing (their elements
 * may be clipped, but stay within the block's span); an imatrix with no positive entry in a
 * block leaves the default weights; the imatrix-weighted error of the
 * imatrix result beats that of the result without one. */
START_TEST(imatrix_with_zeros)
{
    enum { NB = 32 };
    static float x[NB * TS_QK_K], y[NB * TS_QK_K], y0[NB * TS_QK_K], w[NB * TS_QK_K];
    static uint8_t blk[NB * TS_Q5_K_BLOCK_BYTES + 16], blk0[NB * TS_Q5_K_BLOCK_BYTES + 16];
    for (int i = 0; i < NB * TS_QK_K; i++) {
        x[i] = gauss() * (i % 97 == 0 ? 6.0f : 1.0f);
        const double r = unif();
        w[i] = r < 0.2 ? 0.0f : r < 0.22 ? -1.0f : r < 0.23 ? NAN : (float)exp(3.0 * gauss());
    }
    for (int i = 3 * TS_QK_K; i < 4 * TS_QK_K; i++) /* block 3: nothing active */
        w[i] = i % 2 ? 0.0f : -2.0f;
    for (int t = 0; t < 4; t++) {
        round_trip(&K[t], x, NB * TS_QK_K, w, blk, y);
        round_trip(&K[t], x, NB * TS_QK_K, NULL, blk0, y0);
        ck_assert_mem_eq(blk + 3 * K[t].bytes, blk0 + 3 * K[t].bytes, K[t].bytes);
        double ew = 0.0, ew0 = 0.0;
        for (int i = 0; i < NB * TS_QK_K; i++) {
            const double wi = w[i] > 0.0f ? w[i] : 0.0;
            ew += wi * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
            ew0 += wi * ((double)x[i] - y0[i]) * ((double)x[i] - y0[i]);
            ck_assert(isfinite(y[i]));
            ck_assert_msg(fabs((double)x[i] - y[i]) <= block_range(x + i / TS_QK_K * TS_QK_K),
                          "%s: element %d: %g -> %g", K[t].name, i, x[i], y[i]);
        }
        ck_assert_msg(ew < ew0, "%s: imatrix-weighted error %g with the imatrix, %g without", K[t].name, ew, ew0);
    }
}
END_TEST

/* The type table: every k-quant row goes through quant/types_k.c with its
 * own slice of the imatrix per row (the same imatrix for every row). */
START_TEST(type_table_rows)
{
    enum { ROWS = 3, N = 2 * TS_QK_K };
    static float x[ROWS * N], y[N], yr[N], w[N];
    static uint8_t blk[ROWS * 2 * TS_Q5_K_BLOCK_BYTES], one[2 * TS_Q5_K_BLOCK_BYTES];
    for (int i = 0; i < ROWS * N; i++)
        x[i] = gauss();
    for (int i = 0; i < N; i++)
        w[i] = (float)(1.0 + unif());
    for (int t = 0; t < 4; t++) {
        const ts_quant_type *qt = ts_quant_type_get(K[t].type);
        ck_assert_msg(qt != NULL, "%s missing from the type table", K[t].name);
        const size_t row_bytes = 2 * K[t].bytes;
        ck_assert_uint_eq(qt->quantize_rows(x, blk, ROWS, N, w), ROWS * row_bytes);
        for (int r = 0; r < ROWS; r++) {
            K[t].q(x + r * N, one, N, w);
            ck_assert_mem_eq(blk + r * row_bytes, one, row_bytes);
            qt->dequantize_row(blk + r * row_bytes, y, N);
            K[t].d(one, yr, N);
            ck_assert_mem_eq(y, yr, sizeof y);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("quant_k");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, scales_q4k_hand_checked);
    tcase_add_test(tc, scales_q4k_all_values);
    tcase_add_test(tc, scales_q3k_hand_checked);
    tcase_add_test(tc, scales_q3k_all_values);
    tcase_add_test(tc, dequant_known_blocks);
    tcase_add_test(tc, dequant_nonfinite_scale);
    tcase_add_test(tc, round_trip_error_bounds);
    tcase_add_test(tc, zero_rows);
    tcase_add_test(tc, constant_rows);
    tcase_add_test(tc, huge_dynamic_range);
    tcase_add_test(tc, nonfinite_inputs);
    tcase_add_test(tc, imatrix_with_zeros);
    tcase_add_test(tc, type_table_rows);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
