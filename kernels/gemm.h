/* Blocked f32 matrix multiply for the reference forward pass (verify/):
 * C[t][j] (+)= sum_k A[t][k] * B[j][k], with B packed into k-major panels of
 * TS_GEMM_NR columns.
 *
 * Bit rule: every output is one fused multiply-add chain over k in
 * increasing order, c = fmaf(a[k], b[k], c), starting from 0 (or from the
 * value already in C when accumulating). SIMD lanes span output columns,
 * never k, so the scalar, AVX2 and AVX-512 implementations give identical
 * bits for every input, and a product split into several k-blocks (each
 * accumulating onto the last) equals the unsplit one.
 *
 * Pure functions over arrays: no allocation, I/O or threads. The
 * implementation follows the one kernels/dispatch.c picked (TS_KERNELS,
 * ts_k_force_impl); AVX2 additionally needs FMA, else scalar runs. */
#ifndef TS_GEMM_H
#define TS_GEMM_H

#include <stdbool.h>
#include <stdint.h>

/* Columns in one packed panel. */
#define TS_GEMM_NR 32

/* Packs columns j0 .. j0+nr-1 (nr <= TS_GEMM_NR) of B, given as nr rows of
 * kc floats (row j at b + j * ldb), into panel[k * TS_GEMM_NR + j];
 * columns nr .. TS_GEMM_NR-1 are zero-filled. */
void ts_k_gemm_pack(const float *b, int64_t ldb, int nr, int64_t kc, float *panel);

/* The same from a k-major source: panel[k * TS_GEMM_NR + j] = b[k * ldb + j]
 * (e.g. attention's V rows, whose columns are the head dimensions). */
void ts_k_gemm_pack_kmajor(const float *b, int64_t ldb, int nr, int64_t kc, float *panel);

/* For t in [0, m) and j in [0, nr): C[t * ldc + j] = chain over k in
 * [0, kc) of A[t * lda + k] * panel[k * TS_GEMM_NR + j], starting from 0,
 * or from C[t * ldc + j] when accumulate. Columns >= nr are not touched. */
void ts_k_gemm_panel(const float *a, int64_t lda, int64_t m, const float *panel, int64_t kc, int nr,
                     float *c, int64_t ldc, bool accumulate);

/* The implementation ts_k_gemm_panel uses now: "scalar", "avx2" or "avx512". */
const char *ts_k_gemm_impl_name(void);

#endif
