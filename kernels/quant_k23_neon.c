/* kernels/quant_k23.c compiled for AArch64 NEON (see quant_simd_names.h). */
#if defined(__aarch64__)
#define QK_ISA neon
#include "kernels/quant_simd_names.h"
#include "kernels/quant_k23.c"
QK_END_TARGET
#else
typedef int ts_kq_k23_neon_unused;
#endif
