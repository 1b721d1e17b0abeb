/* Panel packing, the scalar reference GEMM kernel and the choice of
 * implementation (kernels/gemm.h). */
#include "kernels/gemm_impl.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

void ts_k_gemm_pack(const float *b, int64_t ldb, int nr, int64_t kc, float *panel)
{
    /* Column by column: the source is read sequentially, the panel (small
     * enough for L1) written with a stride. */
    for (int j = 0; j < nr; j++) {
        const float *src = b + j * ldb;
        for (int64_t k = 0; k < kc; k++)
            panel[k * TS_GEMM_NR + j] = src[k];
    }
    for (int j = nr; j < TS_GEMM_NR; j++)
        for (int64_t k = 0; k < kc; k++)
            panel[k * TS_GEMM_NR + j] = 0.0f;
}

void ts_k_gemm_pack_kmajor(const float *b, int64_t ldb, int nr, int64_t kc, float *panel)
{
    for (int64_t k = 0; k < kc; k++) {
        float *dst = panel + k * TS_GEMM_NR;
        memcpy(dst, b + k * ldb, (size_t)nr * sizeof(float));
        for (int j = nr; j < TS_GEMM_NR; j++)
            dst[j] = 0.0f;
    }
}

/* The reference: one fmaf chain per output, k increasing. Rows are done one
 * at a time with the TS_GEMM_NR chains side by side, which keeps each
 * chain's order and reads the panel sequentially. */
void ts_k_gemm_panel_scalar(const float *a, int64_t lda, int64_t m, const float *panel, int64_t kc, int nr,
                            float *c, int64_t ldc, bool accumulate)
{
    for (int64_t t = 0; t < m; t++) {
        float acc[TS_GEMM_NR];
        const float *at = a + t * lda;
        float *ct = c + t * ldc;
        for (int j = 0; j < TS_GEMM_NR; j++)
            acc[j] = accumulate && j < nr ? ct[j] : 0.0f;
        for (int64_t k = 0; k < kc; k++) {
            const float ak = at[k];
            const float *pk = panel + k * TS_GEMM_NR;
            for (int j = 0; j < TS_GEMM_NR; j++)
                acc[j] = fmaf(ak, pk[j], acc[j]);
        }
        for (int j = 0; j < nr; j++)
            ct[j] = acc[j];
    }
}

#if defined(__x86_64__) || defined(__i386__)
static bool cpu_has_fma(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("fma");
}
#endif

static ts_k_gemm_panel_fn pick(const char **name)
{
    const char *impl = ts_k_impl_name();
#if defined(__x86_64__) || defined(__i386__)
    /* Every AVX-512F CPU has FMA; AVX2 CPUs almost always do. */
    if (!strcmp(impl, "avx512") && cpu_has_fma()) {
        *name = "avx512";
        return ts_k_gemm_panel_avx512;
    }
    if ((!strcmp(impl, "avx2") || !strcmp(impl, "avx512")) && cpu_has_fma()) {
        *name = "avx2";
        return ts_k_gemm_panel_avx2;
    }
#endif
    *name = "scalar";
    return ts_k_gemm_panel_scalar;
}

const char *ts_k_gemm_impl_name(void)
{
    const char *name;
    pick(&name);
    return name;
}

void ts_k_gemm_panel(const float *a, int64_t lda, int64_t m, const float *panel, int64_t kc, int nr, float *c,
                     int64_t ldc, bool accumulate)
{
    const char *name;
    pick(&name)(a, lda, m, panel, kc, nr, c, ldc, accumulate);
}
