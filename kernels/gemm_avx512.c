/* AVX-512 panel kernel: micro-tiles of up to 12 rows of A by the panel's 32
 * columns (two zmm per row, 24 accumulators). Bit-identical to
 * ts_k_gemm_panel_scalar: each lane is one output's fmaf chain over k. */
#include "kernels/gemm_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#define TS_AVX512 __attribute__((target("avx512f,fma")))
#define MR 12

/* rows x 32 outputs, rows <= MR a compile-time constant after inlining. */
TS_AVX512 static inline __attribute__((always_inline)) void tile(const float *a, int64_t lda, const float *p,
                                                                 int64_t kc, float *c, int64_t ldc, bool acc,
                                                                 const int rows)
{
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i < rows) {
            c0[i] = acc ? _mm512_loadu_ps(c + i * ldc) : _mm512_setzero_ps();
            c1[i] = acc ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps();
        }
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(p + k * TS_GEMM_NR);
        const __m512 b1 = _mm512_loadu_ps(p + k * TS_GEMM_NR + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            if (i < rows) {
                const __m512 ai = _mm512_set1_ps(a[i * lda + k]);
                c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
                c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
            }
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i < rows) {
            _mm512_storeu_ps(c + i * ldc, c0[i]);
            _mm512_storeu_ps(c + i * ldc + 16, c1[i]);
        }
    }
}

#define TILE_FN(R)                                                                                      \
    TS_AVX512 static void tile##R(const float *a, int64_t lda, const float *p, int64_t kc, float *c,   \
                                  int64_t ldc, bool acc)                                                \
    {                                                                                                   \
        tile(a, lda, p, kc, c, ldc, acc, R);                                                            \
    }
TILE_FN(1) TILE_FN(2) TILE_FN(3) TILE_FN(4) TILE_FN(5) TILE_FN(6)
TILE_FN(7) TILE_FN(8) TILE_FN(9) TILE_FN(10) TILE_FN(11) TILE_FN(12)

typedef void (*tile_fn)(const float *, int64_t, const float *, int64_t, float *, int64_t, bool);
static const tile_fn tiles[MR + 1] = {NULL,   tile1, tile2, tile3,  tile4,  tile5, tile6,
                                      tile7, tile8, tile9, tile10, tile11, tile12};

void ts_k_gemm_panel_avx512(const float *a, int64_t lda, int64_t m, const float *panel, int64_t kc, int nr,
                            float *c, int64_t ldc, bool accumulate)
{
    for (int64_t t = 0; t < m; t += MR) {
        const int rows = m - t < MR ? (int)(m - t) : MR;
        const float *at = a + t * lda;
        float *ct = c + t * ldc;
        if (nr == TS_GEMM_NR) {
            tiles[rows](at, lda, panel, kc, ct, ldc, accumulate);
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
        for (int i = 0; i < rows; i++)
            memcpy(ct + i * ldc, tmp + i * TS_GEMM_NR, sizeof(float) * (size_t)nr);
    }
}
#endif
