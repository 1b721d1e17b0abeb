/* Element-conversion and q8_0 kernels: pure functions over arrays (no
 * allocation, I/O or threads). kernels/scalar.c is the reference; the SIMD
 * implementations give bit-identical output for every input. The bit rules
 * (NaN payloads, rounding, ggml compatibility) are written down in
 * docs/kernels.md.
 *
 * All kernels assume the default floating-point environment (round to
 * nearest, no flush-to-zero / denormals-are-zero). */
#ifndef TS_KERNELS_H
#define TS_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* IEEE binary16 -> binary32, exact; NaNs are quieted (payload kept), as F16C. */
void ts_k_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/* Round to nearest even, overflow to inf, subnormals kept, as F16C / numpy
 * astype(float16) for every non-NaN input. A NaN becomes sign | 0x7e00 |
 * top 9 payload bits (quieted and truncated, as F16C and ARM FCVT). */
void ts_k_f32_to_f16(const float *src, uint16_t *dst, size_t n);
/* bfloat16 -> binary32: the bits shifted left by 16 (NaNs untouched). */
void ts_k_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/* Exactly ggml_compute_fp32_to_bf16: round to nearest even, NaN -> (bits >> 16) | 0x40. */
void ts_k_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
/* OCP E4M3FN: no infinities; 0x7f / 0xff are NaN and become sign | 0x7ff00000
 * (the bits PyTorch produces). */
void ts_k_f8e4m3_to_f32(const uint8_t *src, float *dst, size_t n);
/* E5M2 is the top byte of a binary16; converted like ts_k_f16_to_f32. */
void ts_k_f8e5m2_to_f32(const uint8_t *src, float *dst, size_t n);
/* C's (float) conversion: round to nearest even, NaN quieted and truncated. */
void ts_k_f64_to_f32(const double *src, float *dst, size_t n);

/* ggml block_q8_0: fp16 scale then 32 int8 quants (34 bytes). */
#define TS_QK8_0 32
#define TS_Q8_0_BLOCK_BYTES 34
/* Byte-identical to ggml's quantize_row_q8_0_ref as built for x86-64
 * (including NaN / inf / denormal blocks, see docs/kernels.md); n % 32 == 0. */
void ts_k_quantize_row_q8_0(const float *src, void *dst, int64_t n);
/* Identical to ggml's dequantize_row_q8_0; n % 32 == 0. */
void ts_k_dequantize_row_q8_0(const void *src, float *dst, int64_t n);

/* The active implementation: "scalar", "avx2", "avx512" or "neon". Chosen at
 * first use from the CPU's features; the environment variable TS_KERNELS
 * (one of those names) overrides the choice when the CPU supports it. */
const char *ts_k_impl_name(void);
/* Force an implementation (tests, benchmarks); false if unknown or the CPU
 * lacks it (the active one is then unchanged). */
bool ts_k_force_impl(const char *name);

#endif
