/* AVX2 + FMA panel kernel: the 32 panel columns as two halves of 16 (two
 * ymm), micro-tiles of up to 6 rows (12 accumulators of the 16 ymm).
 * Bit-identical to ts_k_gemm_panel_scalar: each lane is one output's fmaf
 * chain over k, and splitting the columns does not touch any chain. */
#include "kernels/gemm_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#define TS_AVX2 __attribute__((target("avx2,fma")))
#define MR 6

/* rows x 16 outputs starting at panel column h. */
TS_AVX2 static inline __attribute__((always_inline)) void tile(const float *a, int64_t lda, const float *p,
                                                               int64_t kc, float *c, int64_t ldc, bool acc,
                                                               const int rows)
{
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        if (i < rows) {
            c0[i] = acc ? _mm256_loadu_ps(c + i * ldc) : _mm256_setzero_ps();
            c1[i] = acc ? _mm256_loadu_ps(c + i * ldc + 8) : _mm256_setzero_ps();
        }
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(p + k * TS_GEMM_NR);
        const __m256 b1 = _mm256_loadu_ps(p + k * TS_GEMM_NR + 8);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            if (i < rows) {
                const __m256 ai = _mm256_broadcast_ss(a + i * lda + k);
                c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
                c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
            }
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        if (i < rows) {
            _mm256_storeu_ps(c + i * ldc, c0[i]);
            _mm256_storeu_ps(c + i * ldc + 8, c1[i]);
        }
    }
}

#define TILE_FN(R)                                                                                      \
    TS_AVX2 static void tile##R(const float *a, int64_t lda, const float *p, int64_t kc, float *c,     \
                                int64_t ldc, bool acc)                                                  \
    {                                                                                                   \
        tile(a, lda, p, kc, c, ldc, acc, R);                                                            \
    }
TILE_FN(1) TILE_FN(2) TILE_FN(3) TILE_FN(4) TILE_FN(5) TILE_FN(6)

typedef void (*tile_fn)(const float *, int64_t, const float *, int64_t, float *, int64_t, bool);
static const tile_fn tiles[MR + 1] = {NULL, tile1, tile2, tile3, tile4, tile5, tile6};

void ts_k_gemm_panel_avx2(const float *a, int64_t lda, int64_t m, const float *panel, int64_t kc, int nr,
                          float *c, int64_t ldc, bool accumulate)
{
    for (int64_t t = 0; t < m; t += MR) {
        const int rows = m - t < MR ? (int)(m - t) : MR;
        const float *at = a + t * lda;
        float *ct = c + t * ldc;
        if (nr == TS_GEMM_NR) {
            tiles[rows](at, lda, panel, kc, ct, ldc, accumulate);
            tiles[rows](at, lda, panel + 16, kc, ct + 16, ldc, accumulate);
            continue;
        }
        /* A partial panel: run on a full-width copy so columns >= nr of C
         * are never read or written. */
        float tmp[MR * TS_GEMM_NR];
        for (int i = 0; i < rows; i++) {
            memset(tmp + i * TS_GEMM_NR, 0, sizeof(float) * TS_GEMM_NR);
            if (accumulate)
                memcpy(tmp + i * TS_GEMM_NR, ct + i * ldc, sizeof(float) * (size_t)nr);
        }
        tiles[rows](at, lda, panel, kc, tmp, TS_GEMM_NR, accumulate);
        tiles[rows](at, lda, panel + 16, kc, tmp + 16, TS_GEMM_NR, accumulate);
        for (int i = 0; i < rows; i++)
            memcpy(ct + i * ldc, tmp + i * TS_GEMM_NR, sizeof(float) * (size_t)nr);
    }
}
#endif
