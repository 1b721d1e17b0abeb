/* kernels/quant_k23.c compiled for AVX-512 (see quant_simd_names.h). */
#if defined(__x86_64__) || defined(__i386__)
#define QK_ISA avx512
#define QK_TARGET "avx512f,avx512bw,avx512vl,avx2,f16c"
#include "kernels/quant_simd_names.h"
#include "kernels/quant_k23.c"
QK_END_TARGET
#else
typedef int ts_kq_k23_avx512_unused;
#endif
