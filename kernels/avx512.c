/* AVX-512 (F + BW + VL) kernels; bit-identical to scalar.c. Tails use masked
 * loads and stores, which never touch the masked-off bytes. The avx512f
 * target implies FMA, so the contraction rule in kernel_impl.h matters here:
 * no product ever feeds an addition. */
#include "kernels/kernel_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <float.h>
#include <immintrin.h>

#define TS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,f16c")))

/* Lanes [0, n) of a 16-lane mask, n <= 16. */
static inline __mmask16 tail16(size_t n)
{
    return (__mmask16)((1u << n) - 1u);
}

TS_AVX512 static void avx512_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        const __mmask16 k = tail16(n - i);
        __m256i h = _mm256_maskz_loadu_epi16(k, src + i);
        _mm512_mask_storeu_ps(dst + i, k, _mm512_cvtph_ps(h));
    }
}

TS_AVX512 static void avx512_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_si256((__m256i *)(dst + i), h);
    }
    if (i < n) {
        const __mmask16 k = tail16(n - i);
        __m512 v = _mm512_maskz_loadu_ps(k, src + i);
        __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(dst + i, k, h);
    }
}

TS_AVX512 static void avx512_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_si512(dst + i, _mm512_slli_epi32(w, 16));
    }
    if (i < n) {
        const __mmask16 k = tail16(n - i);
        __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, src + i));
        _mm512_mask_storeu_epi32(dst + i, k, _mm512_slli_epi32(w, 16));
    }
}

/* ggml's rounding (u + 0x7fff + lsb) >> 16, NaN -> (u >> 16) | 0x40. */
TS_AVX512 static __m512i avx512_bf16_bits(__m512i u)
{
    const __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f800000));
    const __m512i hi = _mm512_srli_epi32(u, 16);
    const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    const __m512i bias = _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
    const __m512i quiet = _mm512_or_si512(hi, _mm512_set1_epi32(64));
    return _mm512_mask_blend_epi32(is_nan, rounded, quiet);
}

TS_AVX512 static void avx512_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i r = avx512_bf16_bits(_mm512_loadu_si512(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(r));
    }
    if (i < n) {
        const __mmask16 k = tail16(n - i);
        const __m512i r = avx512_bf16_bits(_mm512_maskz_loadu_epi32(k, src + i));
        _mm512_mask_cvtepi32_storeu_epi16(dst + i, k, r);
    }
}

/* Integer-only, as in avx2.c: rebias normals, table for the subnormals. */
TS_AVX512 static __m512i avx512_e4m3_bits(__m512i x, __m512i sub_table)
{
    const __m512i nonsign = _mm512_and_si512(x, _mm512_set1_epi32(0x7f));
    const __m512i normal = _mm512_add_epi32(_mm512_slli_epi32(nonsign, 20), _mm512_set1_epi32(120 << 23));
    const __mmask16 is_sub = _mm512_cmplt_epu32_mask(nonsign, _mm512_set1_epi32(8));
    const __mmask16 is_nan = _mm512_cmpeq_epu32_mask(nonsign, _mm512_set1_epi32(0x7f));
    __m512i r = _mm512_mask_permutexvar_epi32(normal, is_sub, nonsign, sub_table);
    r = _mm512_mask_mov_epi32(r, is_nan, _mm512_set1_epi32(0x7ff00000));
    const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x80)), 24);
    return _mm512_or_si512(r, sign);
}

TS_AVX512 static void avx512_f8e4m3_to_f32(const uint8_t *src, float *dst, size_t n)
{
    uint32_t table[16] = {0};
    for (unsigned m = 0; m < 8; m++)
        table[m] = ts_k_f8e4m3_bits_to_f32_bits((uint8_t)m);
    const __m512i sub_table = _mm512_loadu_si512(table);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i x = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm512_storeu_si512(dst + i, avx512_e4m3_bits(x, sub_table));
    }
    if (i < n) {
        const __mmask16 k = tail16(n - i);
        const __m512i x = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, src + i));
        _mm512_mask_storeu_epi32(dst + i, k, avx512_e4m3_bits(x, sub_table));
    }
}

TS_AVX512 static void avx512_f8e5m2_to_f32(const uint8_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i h = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(src + i))), 8);
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
    if (i < n) {
        const __mmask16 k = tail16(n - i);
        const __m256i h = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_maskz_loadu_epi8(k, src + i)), 8);
        _mm512_mask_storeu_ps(dst + i, k, _mm512_cvtph_ps(h));
    }
}

TS_AVX512 static void avx512_f64_to_f32(const double *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm256_storeu_ps(dst + i, _mm512_cvtpd_ps(_mm512_loadu_pd(src + i)));
        _mm256_storeu_ps(dst + i + 8, _mm512_cvtpd_ps(_mm512_loadu_pd(src + i + 8)));
    }
    for (; i < n; i += 8) {
        const __mmask8 k = n - i >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (n - i)) - 1u);
        _mm256_mask_storeu_ps(dst + i, k, _mm512_cvtpd_ps(_mm512_maskz_loadu_pd(k, src + i)));
    }
}

/* roundf of p, |p| < 2^22, as in avx2.c: truncate, step away from zero when
 * |p| >= |trunc(p)| + 0.5 (a compare, so nothing can be fused with p = x*id). */
TS_AVX512 static __m512i avx512_round_away(__m512 p)
{
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
    const __m512 t = _mm512_roundscale_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 abs_t = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(t), abs_mask));
    const __m512 abs_p = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(p), abs_mask));
    const __m512 limit = _mm512_add_ps(abs_t, _mm512_set1_ps(0.5f));
    const __mmask16 away = _mm512_cmp_ps_mask(abs_p, limit, _CMP_GE_OQ);
    const __m512i sign = _mm512_andnot_si512(abs_mask, _mm512_castps_si512(p));
    const __m512 step = _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_set1_epi32(0x3f800000)));
    return _mm512_cvtps_epi32(_mm512_mask_add_ps(t, away, t, step));
}

TS_AVX512 static void avx512_quantize_row_q8_0(const float *src, void *dst, int64_t n)
{
    uint8_t *out = dst;
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
    for (int64_t b = 0; b < n / TS_QK8_0; b++, src += TS_QK8_0, out += TS_Q8_0_BLOCK_BYTES) {
        const __m512 v0 = _mm512_loadu_ps(src);
        const __m512 v1 = _mm512_loadu_ps(src + 16);
        /* |x| bit patterns order like the values, and NaN sorts above inf */
        const __m512i m = _mm512_max_epu32(_mm512_and_si512(_mm512_castps_si512(v0), abs_mask),
                                           _mm512_and_si512(_mm512_castps_si512(v1), abs_mask));
        const uint32_t amax_bits = _mm512_reduce_max_epu32(m);
        if (amax_bits >= 0x7f800000u) { /* NaN or inf: ggml's order-dependent max */
            ts_k_scalar_q8_0_block(src, out);
            continue;
        }
        const float d = ts_k_bits_f32(amax_bits) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        if (!(id <= FLT_MAX)) { /* tiny denormal d: x*id is inf/NaN */
            ts_k_scalar_q8_0_block(src, out);
            continue;
        }
        const uint16_t h = ts_k_ggml_f32_to_f16(d);
        out[0] = (uint8_t)(h & 0xff);
        out[1] = (uint8_t)(h >> 8);
        const __m512 vid = _mm512_set1_ps(id);
        /* every value is within [-127, 127], so the saturating narrow is exact */
        const __m128i q0 = _mm512_cvtsepi32_epi8(avx512_round_away(_mm512_mul_ps(v0, vid)));
        const __m128i q1 = _mm512_cvtsepi32_epi8(avx512_round_away(_mm512_mul_ps(v1, vid)));
        _mm_storeu_si128((__m128i *)(out + 2), q0);
        _mm_storeu_si128((__m128i *)(out + 18), q1);
    }
}

TS_AVX512 static void avx512_dequantize_row_q8_0(const void *src, float *dst, int64_t n)
{
    const uint8_t *in = src;
    for (int64_t b = 0; b < n / TS_QK8_0; b++, in += TS_Q8_0_BLOCK_BYTES, dst += TS_QK8_0) {
        /* with d = inf, 0 * d gives x86's 0xffc00000 here, as the scalar block writes */
        const uint16_t h = (uint16_t)(in[0] | (in[1] << 8));
        const __m512 vd = _mm512_set1_ps(ts_k_bits_f32(ts_k_f16_bits_to_f32_bits(h)));
        for (int k = 0; k < 2; k++) {
            const __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(in + 2 + 16 * k)));
            _mm512_storeu_ps(dst + 16 * k, _mm512_mul_ps(_mm512_cvtepi32_ps(q), vd));
        }
    }
}

const ts_k_impl ts_k_impl_avx512 = {
    .name = "avx512",
    .f16_to_f32 = avx512_f16_to_f32,
    .f32_to_f16 = avx512_f32_to_f16,
    .bf16_to_f32 = avx512_bf16_to_f32,
    .f32_to_bf16 = avx512_f32_to_bf16,
    .f8e4m3_to_f32 = avx512_f8e4m3_to_f32,
    .f8e5m2_to_f32 = avx512_f8e5m2_to_f32,
    .f64_to_f32 = avx512_f64_to_f32,
    .quantize_row_q8_0 = avx512_quantize_row_q8_0,
    .dequantize_row_q8_0 = avx512_dequantize_row_q8_0,
};

#else
/* Not an x86 build: nothing to compile, but keep the unit non-empty. */
typedef int ts_k_avx512_unused;
#endif
