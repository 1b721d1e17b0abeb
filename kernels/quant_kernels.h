/* Quantize / dequantize kernels for ggml's block types (layouts in
 * docs/formats/quant-types.md, byte for byte ggml-common.h). Pure functions
 * over arrays: no allocation, I/O or threads.
 *
 * Conventions shared by the quantize kernels here (the k-quants section
 * notes where its kernels differ):
 * - n is a multiple of the type's block size; dst receives n / block_size
 *   blocks.
 * - imatrix is NULL or n importance weights (one per element of the row,
 *   i.e. the row's slice of an imatrix). With an imatrix the kernel
 *   minimizes the imatrix-weighted squared error (the expected squared
 *   error of the layer's output under the imatrix's activation
 *   statistics), with the imatrix shaped as ggml shapes it for the type:
 *   times sqrt(sigma^2 + x^2) for q4_0..q5_1 and iq4_*, as is for q6_K
 *   (see ts_kq_weights). We aim where ggml aims, and search harder.
 *   Without one: the plain squared error for q4_0..q5_1 (as ggml), and for
 *   q6_K and iq4_* the squared error weighted by x^2 + mean(x^2) (ggml
 *   weights by x^2; the constant keeps small values from being ignored,
 *   and the result beats ggml both on its x^2-weighted error and on the
 *   plain one).
 *   Negative or non-finite imatrix entries count as 0; zero entries get a
 *   tiny floor so their elements still round sensibly, and a block whose
 *   imatrix is all zero is quantized as without one.
 * - Non-finite inputs (NaN, +-inf) are quantized as 0; the rest of their
 *   block is quantized normally. Callers that care must check first.
 * - Scales saturate at the largest finite fp16 (65504), so every block
 *   dequantizes to finite values.
 * - Dequantize kernels give exactly ggml's dequantize_row_* floats.
 * - Results do not depend on the architecture: the kernels are compiled
 *   without FMA contraction and reduce sums in a fixed order (eight
 *   interleaved lanes, see ts_kq_hsum8) that SIMD versions can reproduce. */
#ifndef TS_QUANT_KERNELS_H
#define TS_QUANT_KERNELS_H

#include <stdint.h>
#include <string.h>

/* ---- q4_0 q4_1 q5_0 q5_1 (kernels/quant_legacy.c), blocks of 32 ---- */
#define TS_Q4_0_BLOCK_BYTES 18
#define TS_Q4_1_BLOCK_BYTES 20
#define TS_Q5_0_BLOCK_BYTES 22
#define TS_Q5_1_BLOCK_BYTES 24
void ts_k_quantize_row_q4_0(const float *x, void *dst, int64_t n, const float *imatrix);
void ts_k_quantize_row_q4_1(const float *x, void *dst, int64_t n, const float *imatrix);
void ts_k_quantize_row_q5_0(const float *x, void *dst, int64_t n, const float *imatrix);
void ts_k_quantize_row_q5_1(const float *x, void *dst, int64_t n, const float *imatrix);
void ts_k_dequantize_row_q4_0(const void *src, float *dst, int64_t n);
void ts_k_dequantize_row_q4_1(const void *src, float *dst, int64_t n);
void ts_k_dequantize_row_q5_0(const void *src, float *dst, int64_t n);
void ts_k_dequantize_row_q5_1(const void *src, float *dst, int64_t n);

/* ---- iq4_nl (blocks of 32), iq4_xs (blocks of 256) (kernels/quant_iq4.c) ---- */
#define TS_IQ4_NL_BLOCK_BYTES 18
#define TS_IQ4_XS_BLOCK_BYTES 136
void ts_k_quantize_row_iq4_nl(const float *x, void *dst, int64_t n, const float *imatrix);
void ts_k_quantize_row_iq4_xs(const float *x, void *dst, int64_t n, const float *imatrix);
void ts_k_dequantize_row_iq4_nl(const void *src, float *dst, int64_t n);
void ts_k_dequantize_row_iq4_xs(const void *src, float *dst, int64_t n);

/* ---- q6_K, blocks of 256 (kernels/quant_q6k.c) ---- */
#define TS_QK_K 256
#define TS_Q6_K_BLOCK_BYTES 210
void ts_k_quantize_row_q6_k(const float *x, void *dst, int64_t n, const float *imatrix);
void ts_k_dequantize_row_q6_k(const void *src, float *dst, int64_t n);

/* ---- q2_K q3_K q4_K q5_K, blocks of 256 (kernels/quant_k*.c) ---- */
#define TS_Q2_K_BLOCK_BYTES 84
#define TS_Q3_K_BLOCK_BYTES 110
#define TS_Q4_K_BLOCK_BYTES 144
#define TS_Q5_K_BLOCK_BYTES 176
void ts_k_quantize_row_q2_k(const float *x, void *dst, int64_t n, const float *imatrix);
void ts_k_quantize_row_q3_k(const float *x, void *dst, int64_t n, const float *imatrix);
void ts_k_quantize_row_q4_k(const float *x, void *dst, int64_t n, const float *imatrix);
void ts_k_quantize_row_q5_k(const float *x, void *dst, int64_t n, const float *imatrix);
void ts_k_dequantize_row_q2_k(const void *src, float *dst, int64_t n);
void ts_k_dequantize_row_q3_k(const void *src, float *dst, int64_t n);
void ts_k_dequantize_row_q4_k(const void *src, float *dst, int64_t n);
void ts_k_dequantize_row_q5_k(const void *src, float *dst, int64_t n);
/* Objective of the k-quants above: with an imatrix, the imatrix-weighted
 * squared error (the imatrix alone); without one, weights 0.75 * rms + |x|
 * (rms over the super-block), see docs/formats/quant-types.md. */
/* The packed 6-bit fields (12 bytes) of q4_K / q5_K: 8 scales and 8 mins,
 * each 0..63; and of q3_K: 16 signed scales, each -32..31 (stored + 32). */
void ts_k_pack_scales_q4_k(const uint8_t scales[8], const uint8_t mins[8], uint8_t out[12]);
void ts_k_unpack_scales_q4_k(const uint8_t in[12], uint8_t scales[8], uint8_t mins[8]);
void ts_k_pack_scales_q3_k(const int8_t scales[16], uint8_t out[12]);
void ts_k_unpack_scales_q3_k(const uint8_t in[12], int8_t scales[16]);

/* ---- helpers shared by the quant kernels (not part of the public API) ---- */

/* Round to nearest, ties to even, for |v| < 2^22: the float-add trick, which
 * SIMD code reproduces with its round-to-nearest conversion. */
static inline int ts_kq_nearest(float v)
{
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int ts_kq_clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Clamps before rounding, so any finite v (and +-inf) is safe. */
static inline int ts_kq_round_clamp(float v, int lo, int hi)
{
    if (!(v > (float)lo)) /* also NaN */
        return lo;
    if (v > (float)hi)
        return hi;
    return ts_kq_clampi(ts_kq_nearest(v), lo, hi);
}

/* The fixed reduction order of eight lane sums (lane k holds elements
 * k, k+8, k+16, ...): the order of a 256-bit horizontal add
 * (high half + low half, then the 64-bit halves, then the pair). */
static inline float ts_kq_hsum8(const float a[8])
{
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* x86 SSE results for a dequantizer's multiply and add on any machine: a
 * NaN operand propagates (the first one when both are) and an invalid
 * operation gives x86's default NaN (0xffc00000). Used only for blocks whose
 * fp16 scale or min is inf or NaN (corrupt input: our quantizers never write
 * one), so that even those dequantize to the same bits as ggml's x86 build
 * everywhere. Operands are already quiet (fp16 loads quiet NaNs). */
static inline float ts_kq_x86_fix(float a, float b, float r)
{
    if (a != a)
        return a;
    if (b != b)
        return b;
    if (r != r) {
        uint32_t u = 0xffc00000u;
        memcpy(&r, &u, sizeof r);
    }
    return r;
}
static inline float ts_kq_x86_mul(float a, float b) { return ts_kq_x86_fix(a, b, a * b); }
static inline float ts_kq_x86_add(float a, float b) { return ts_kq_x86_fix(a, b, a + b); }
/* True when the little-endian fp16 at p is inf or NaN. */
static inline int ts_kq_f16_nonfinite(const uint8_t *p) { return (p[1] & 0x7c) == 0x7c; }

/* fp16 of f * 2^e for one scale (ggml's GGML_FP32_TO_FP16 rounding,
 * saturating at +-65504 so that dequantized blocks stay finite), and the
 * value those bits hold times 2^-e. */
uint16_t ts_kq_f16_scaled(float f, int e, float *val_scaled);
/* The same for a super-block scale that sub-block codes multiply: where
 * fp16 is subnormal (or zero) and nearest rounding would shrink it, the next
 * value up instead, so that the largest sub-block still fits its code range
 * (ggml writes an all-zero block there). */
uint16_t ts_kq_f16_scaled_super(float f, int e, float *val_scaled);

/* The quantizers search on a normalized copy of each block: non-finite
 * values become 0, then everything is multiplied by 2^-e so the largest
 * magnitude lies in [0.5, 1) (exact, and it keeps squares and sums far from
 * overflow whatever the input's range). Returns 0 (and *e = 0) for a block
 * whose largest magnitude is below 2^-30: no fp16 scale can represent it, so
 * it is stored as zeros. n <= 256. */
int ts_kq_load(const float *src, int n, float *x, int *e);
/* Weights for one block (x as ts_kq_load made it, n a multiple of 8).
 * Without an imatrix (or with an all-zero slice): 1 (sq == 0), or
 * x^2 + mean(x^2) over the block (sq == 1). With one: the imatrix scaled
 * to max 1 plus a 1e-6 floor, times sqrt(sigma2 + x^2) when sigma2 >= 0
 * (ggml's shape for the legacy and iq4 types; sigma2 in the block's
 * normalized units). */
void ts_kq_weights(const float *x, const float *imatrix, int n, int sq, float sigma2, float *w);

/* A grid of trial inverse scales: the largest |x| lands at level
 * -(nmax + step * t) for t in [lo, hi]. */
typedef struct {
    int lo, hi;
    float step;
} ts_kq_grid;

/* Best scale d for x ~ d * q, q in [-nmax, nmax-1], weights w (n a multiple
 * of 8, at most 256): each grid point's rounding gets its least-squares
 * scale, and the one with the least error wins. Returns 0 for a zero
 * block. Not yet rounded to fp16. */
float ts_kq_search_sym(const float *x, const float *w, int n, int nmax, const ts_kq_grid *grid);
/* Weighted squared error of x against d * clamp(round(x / d)) (q in
 * [-nmax, nmax-1]); fills q (offset by +nmax) when not NULL. */
float ts_kq_err_sym(const float *x, const float *w, int n, int nmax, float d, uint8_t *q);

#endif
