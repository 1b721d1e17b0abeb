/* Private to kernels/gemm*.c: the per-implementation panel kernels behind
 * ts_k_gemm_panel (kernels/gemm.h), each bit-identical to the scalar one. */
#ifndef TS_GEMM_IMPL_H
#define TS_GEMM_IMPL_H

#include "kernels/gemm.h"

typedef void (*ts_k_gemm_panel_fn)(const float *a, int64_t lda, int64_t m, const float *panel, int64_t kc,
                                   int nr, float *c, int64_t ldc, bool accumulate);

void ts_k_gemm_panel_scalar(const float *a, int64_t lda, int64_t m, const float *panel, int64_t kc, int nr,
                            float *c, int64_t ldc, bool accumulate);
#if defined(__x86_64__) || defined(__i386__)
void ts_k_gemm_panel_avx2(const float *a, int64_t lda, int64_t m, const float *panel, int64_t kc, int nr,
                          float *c, int64_t ldc, bool accumulate);
void ts_k_gemm_panel_avx512(const float *a, int64_t lda, int64_t m, const float *panel, int64_t kc, int nr,
                            float *c, int64_t ldc, bool accumulate);
#endif

#endif
