/* AVX2 + F16C kernels; bit-identical to scalar.c. Compiled with a function
 * target attribute so no global -m flag is needed; dispatch.c only calls
 * them after checking the CPU. FMA is deliberately not enabled (see the
 * contraction rule in kernel_impl.h). Tails go through the scalar helpers. */
#include "kernels/kernel_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <float.h>
#include <immintrin.h>

#define TS_AVX2 __attribute__((target("avx2,f16c")))

TS_AVX2 static void avx2_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i h0 = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i h1 = _mm_loadu_si128((const __m128i *)(src + i + 8));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h0));
        _mm256_storeu_ps(dst + i + 8, _mm256_cvtph_ps(h1));
    }
    for (; i < n; i++)
        dst[i] = ts_k_bits_f32(ts_k_f16_bits_to_f32_bits(src[i]));
}

TS_AVX2 static void avx2_f32_to_f16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i h0 = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        __m128i h1 = _mm256_cvtps_ph(_mm256_loadu_ps(src + i + 8), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(dst + i), h0);
        _mm_storeu_si128((__m128i *)(dst + i + 8), h1);
    }
    for (; i < n; i++)
        dst[i] = ts_k_f32_bits_to_f16_bits(ts_k_f32_bits(src[i]));
}

TS_AVX2 static void avx2_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(w, 16));
    }
    for (; i < n; i++)
        dst[i] = ts_k_bits_f32((uint32_t)src[i] << 16);
}

/* ggml's rounding (u + 0x7fff + lsb) >> 16, NaN -> (u >> 16) | 0x40. */
TS_AVX2 static __m256i avx2_bf16_bits(__m256i u)
{
    const __m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    const __m256i is_nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
    const __m256i hi = _mm256_srli_epi32(u, 16);
    const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
    const __m256i bias = _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
    const __m256i quiet = _mm256_or_si256(hi, _mm256_set1_epi32(64));
    return _mm256_blendv_epi8(rounded, quiet, is_nan);
}

TS_AVX2 static void avx2_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i r = avx2_bf16_bits(_mm256_loadu_si256((const __m256i *)(src + i)));
        /* every lane is <= 0xffff, so the unsigned saturating pack is a plain narrow */
        __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storeu_si128((__m128i *)(dst + i), p);
    }
    for (; i < n; i++)
        dst[i] = ts_k_f32_bits_to_bf16_bits(ts_k_f32_bits(src[i]));
}

/* Integer-only (no float multiply) so denormals never depend on MXCSR:
 * normals rebias, the 7 subnormals come from a table, 0x7f is NaN. */
TS_AVX2 static __m256i avx2_e4m3_bits(__m256i x)
{
    const __m256i sub_table = _mm256_setr_epi32(
        (int)ts_k_f8e4m3_bits_to_f32_bits(0), (int)ts_k_f8e4m3_bits_to_f32_bits(1),
        (int)ts_k_f8e4m3_bits_to_f32_bits(2), (int)ts_k_f8e4m3_bits_to_f32_bits(3),
        (int)ts_k_f8e4m3_bits_to_f32_bits(4), (int)ts_k_f8e4m3_bits_to_f32_bits(5),
        (int)ts_k_f8e4m3_bits_to_f32_bits(6), (int)ts_k_f8e4m3_bits_to_f32_bits(7));
    const __m256i nonsign = _mm256_and_si256(x, _mm256_set1_epi32(0x7f));
    const __m256i normal = _mm256_add_epi32(_mm256_slli_epi32(nonsign, 20), _mm256_set1_epi32(120 << 23));
    const __m256i sub = _mm256_permutevar8x32_epi32(sub_table, nonsign);
    const __m256i is_sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(8), nonsign);
    const __m256i is_nan = _mm256_cmpeq_epi32(nonsign, _mm256_set1_epi32(0x7f));
    __m256i r = _mm256_blendv_epi8(normal, sub, is_sub);
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7ff00000), is_nan);
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x80)), 24);
    return _mm256_or_si256(r, sign);
}

TS_AVX2 static void avx2_f8e4m3_to_f32(const uint8_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i x = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(src + i)));
        _mm256_storeu_si256((__m256i *)(dst + i), avx2_e4m3_bits(x));
    }
    for (; i < n; i++)
        dst[i] = ts_k_bits_f32(ts_k_f8e4m3_bits_to_f32_bits(src[i]));
}

TS_AVX2 static void avx2_f8e5m2_to_f32(const uint8_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_slli_epi16(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(src + i))), 8);
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++)
        dst[i] = ts_k_bits_f32(ts_k_f16_bits_to_f32_bits((uint16_t)(src[i] << 8)));
}

TS_AVX2 static void avx2_f64_to_f32(const double *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm_storeu_ps(dst + i, _mm256_cvtpd_ps(_mm256_loadu_pd(src + i)));
        _mm_storeu_ps(dst + i + 4, _mm256_cvtpd_ps(_mm256_loadu_pd(src + i + 4)));
    }
    for (; i < n; i++)
        dst[i] = (float)src[i];
}

/* roundf (half away from zero) of p, |p| < 2^22: truncate, then step away
 * from zero when the dropped fraction is >= 0.5. Compares instead of
 * computing p - trunc(p), which FMA contraction could fuse with p = x*id. */
TS_AVX2 static __m256i avx2_round_away(__m256 p)
{
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 limit = _mm256_add_ps(_mm256_and_ps(t, abs_mask), _mm256_set1_ps(0.5f));
    const __m256 away = _mm256_cmp_ps(_mm256_and_ps(p, abs_mask), limit, _CMP_GE_OQ);
    const __m256 step = _mm256_or_ps(_mm256_andnot_ps(abs_mask, p), _mm256_set1_ps(1.0f));
    return _mm256_cvtps_epi32(_mm256_add_ps(t, _mm256_and_ps(away, step)));
}

TS_AVX2 static void avx2_quantize_row_q8_0(const float *src, void *dst, int64_t n)
{
    uint8_t *out = dst;
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
    for (int64_t b = 0; b < n / TS_QK8_0; b++, src += TS_QK8_0, out += TS_Q8_0_BLOCK_BYTES) {
        __m256 v[4];
        __m256i m = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(src + 8 * k);
            /* |x| bit patterns order like the values, and NaN sorts above inf */
            m = _mm256_max_epu32(m, _mm256_and_si256(_mm256_castps_si256(v[k]), abs_mask));
        }
        m = _mm256_max_epu32(m, _mm256_permute2x128_si256(m, m, 1));
        m = _mm256_max_epu32(m, _mm256_shuffle_epi32(m, 0x4e));
        m = _mm256_max_epu32(m, _mm256_shuffle_epi32(m, 0xb1));
        const uint32_t amax_bits = (uint32_t)_mm256_cvtsi256_si32(m);
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
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = avx2_round_away(_mm256_mul_ps(v[k], vid));
        /* packs interleave 128-bit lanes; the permute puts the 4-byte groups back in order */
        __m256i s01 = _mm256_packs_epi32(q[0], q[1]);
        __m256i s23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i bytes = _mm256_packs_epi16(s01, s23);
        bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(out + 2), bytes);
    }
}

TS_AVX2 static void avx2_dequantize_row_q8_0(const void *src, float *dst, int64_t n)
{
    const uint8_t *in = src;
    for (int64_t b = 0; b < n / TS_QK8_0; b++, in += TS_Q8_0_BLOCK_BYTES, dst += TS_QK8_0) {
        /* with d = inf, 0 * d gives x86's 0xffc00000 here, as the scalar block writes */
        const uint16_t h = (uint16_t)(in[0] | (in[1] << 8));
        const __m256 vd = _mm256_set1_ps(ts_k_bits_f32(ts_k_f16_bits_to_f32_bits(h)));
        for (int k = 0; k < 4; k++) {
            __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(in + 2 + 8 * k)));
            _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(q), vd));
        }
    }
}

const ts_k_impl ts_k_impl_avx2 = {
    .name = "avx2",
    .f16_to_f32 = avx2_f16_to_f32,
    .f32_to_f16 = avx2_f32_to_f16,
    .bf16_to_f32 = avx2_bf16_to_f32,
    .f32_to_bf16 = avx2_f32_to_bf16,
    .f8e4m3_to_f32 = avx2_f8e4m3_to_f32,
    .f8e5m2_to_f32 = avx2_f8e5m2_to_f32,
    .f64_to_f32 = avx2_f64_to_f32,
    .quantize_row_q8_0 = avx2_quantize_row_q8_0,
    .dequantize_row_q8_0 = avx2_dequantize_row_q8_0,
};

#else
/* Not an x86 build: nothing to compile, but keep the unit non-empty. */
typedef int ts_k_avx2_unused;
#endif
