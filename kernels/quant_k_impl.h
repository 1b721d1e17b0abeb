/* Private to kernels/quant_k*.c: helpers shared by the k-quant kernels.
 *
 * Every reduction over a sub-block runs in 8 lanes (element i goes to lane
 * i % 8) and the lanes are summed in the order a 256-bit horizontal add
 * gives, so the SIMD instances (quant_simd.h) reproduce the scalar bytes
 * exactly. Levels are kept as floats. */
#ifndef TS_QUANT_K_IMPL_H
#define TS_QUANT_K_IMPL_H

#include "kernels/kernel_impl.h"
#include "kernels/quant_kernels.h"

#include <math.h>

/* Inputs are clamped to this magnitude before the search: far above what any
 * k-quant block can represent (fp16 d <= 65504 times codes times levels is
 * < 1.3e8), and small enough that squares and sums of 256 squares stay finite. */
#define QK_XMAX 1.0e9f
/* The largest finite binary16. */
#define QK_F16_MAX 65504.0f

static inline float qk_hsum8(const float a[8])
{
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* Nearest integer (ties to even) to v, as a float, for |v| < 2^22: adding
 * 1.5 * 2^23 leaves no fraction bits. Two plain adds, so SIMD matches it.
 * Larger |v| give some value of the same sign and at least 2^21 or so,
 * which the level clamps below still send to the right end. */
static inline float qk_rint(float v)
{
    return (v + 12582912.0f) - 12582912.0f;
}

/* l clamped to [0, top] for an integer-valued l (top a small integer):
 * max(l, 0) = (l + |l|) / 2 and min(l, top) = top - max(top - l, 0) are
 * exact here and have no comparisons, so compilers vectorize them; SIMD code
 * may use max / min instructions instead and get the same values. A huge l
 * (from rounding a huge v) still lands on the right end. */
static inline float qk_clamp_level(float l, float top)
{
    l = (l + fabsf(l)) * 0.5f;
    const float r = top - l;
    return top - (r + fabsf(r)) * 0.5f;
}

/* max then min, each written the way SSE's maxps / minps behave (a NaN
 * becomes lo), so compilers vectorize it and SIMD code can match it. */
static inline float qk_clampf(float v, float lo, float hi)
{
    v = v > lo ? v : lo;
    return v < hi ? v : hi;
}

/* f rounded to binary16 (saturating at +-65504, never inf), as bits; *val
 * gets the value those bits hold. */
static inline uint16_t qk_to_f16(float f, float *val)
{
    f = qk_clampf(f, -QK_F16_MAX, QK_F16_MAX);
    const uint16_t h = ts_k_f32_bits_to_f16_bits(ts_k_f32_bits(f));
    *val = ts_k_bits_f32(ts_k_f16_bits_to_f32_bits(h));
    return h;
}

static inline float qk_load_f16(const uint8_t *p)
{
    return ts_k_bits_f32(ts_k_f16_bits_to_f32_bits((uint16_t)(p[0] | (p[1] << 8))));
}

static inline void qk_store_f16(uint8_t *p, uint16_t h)
{
    p[0] = (uint8_t)(h & 0xff);
    p[1] = (uint8_t)(h >> 8);
}

/* One super-block's inputs, made safe for the search (see qk_prepare). */
typedef struct {
    float x[TS_QK_K];
    float w[TS_QK_K];
} qk_block_in;

/* The weight of a value without an imatrix is QK_W_RMS * rms + |x| (rms over
 * the super-block): between plain squared error and ggml's magnitude-weighted
 * searches (x^2 for q3_K, |x| for q2_K, rms + |x| for q4_K / q5_K). Against
 * llama.cpp's own quantizations of llama-spm-8m and qwen3moe-spm-9m this gave
 * the lowest KL divergence from the F16 model of the weightings tried, and a
 * lower error than ggml's under each of those four weightings. */
#define QK_W_RMS 0.75f

/* Copies a super-block (NaN and +-inf become 0, the rest is clamped to
 * +-QK_XMAX) and builds the error weights: the default weight above, or
 * the imatrix when there is one (NaN, inf and negative entries count as 0;
 * scaled so its largest entry is 1, plus 1e-6 so that columns no calibration
 * token touched still round sensibly; all-zero: the default weights). */
void qk_prepare(const float *x, const float *imatrix, qk_block_in *in);

#define QK_MAX_GRID 32

/* Affine k-quants (q2_K, q4_K, q5_K): value = (d*sc)*l - (dmin*m), with
 * levels l in 0..nmax and per-sub-block codes sc, m in 0..code_max. */
typedef struct {
    int n_sub;    /* sub-blocks per super-block */
    int sub_len;  /* values per sub-block (a multiple of 8) */
    int nmax;     /* largest level */
    int code_max; /* largest scale / min code */
    int n_grid;   /* stage-1 candidate scales per sub-block, at most QK_MAX_GRID */
    float grid_lo, grid_step;
} qk_affine_shape;

typedef struct {
    float d, dmin;         /* as stored (fp16 values) */
    uint16_t d_bits, dmin_bits;
    uint8_t sc[16], mn[16]; /* codes per sub-block */
    uint8_t L[TS_QK_K];     /* levels */
} qk_affine_result;

/* The search for one super-block. */
void qk_affine_quantize(const qk_affine_shape *shape, const qk_block_in *in, qk_affine_result *out);

/* x86 SSE results for the ops a dequantizer does, on any machine: a NaN
 * operand propagates (the first one when both are), and an invalid operation
 * gives x86's default NaN. Only used for blocks whose d or dmin is inf or
 * NaN, so that dequantized garbage never depends on the CPU (ARM's default
 * NaN has the other sign). Operands are already quiet (fp16 loads quiet). */
static inline float qk_x86_mul(float a, float b)
{
    if (a != a)
        return a;
    if (b != b)
        return b;
    const float r = a * b;
    return r != r ? ts_k_bits_f32(0xffc00000u) : r;
}

static inline float qk_x86_sub(float a, float b)
{
    if (a != a)
        return a;
    if (b != b)
        return b;
    const float r = a - b;
    return r != r ? ts_k_bits_f32(0xffc00000u) : r;
}

static inline int qk_f16_nonfinite(const uint8_t *p)
{
    return (p[1] & 0x7c) == 0x7c;
}

#endif
