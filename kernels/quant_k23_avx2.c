/* kernels/quant_k23.c compiled for AVX2 (see quant_simd_names.h). */
#if defined(__x86_64__) || defined(__i386__)
#define QK_ISA avx2
#define QK_TARGET "avx2,f16c"
#include "kernels/quant_simd_names.h"
#include "kernels/quant_k23.c"
QK_END_TARGET
#else
typedef int ts_kq_k23_avx2_unused;
#endif
