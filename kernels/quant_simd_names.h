/* Private to kernels/: compiles a scalar quant kernel file (quant_legacy.c,
 * quant_iq4.c, quant_k23.c) once more for one ISA. The per-ISA files
 * (quant_<file>_<isa>.c) define QK_ISA and, on x86, QK_TARGET, include this
 * header FIRST (before any other header, so that declarations and
 * definitions are renamed alike), then the scalar file itself, then
 * QK_END_TARGET:
 * - the external functions get ISA names (ts_kq_scalar_quantize_row_q4_0 ->
 *   ts_kq_avx2_quantize_row_q4_0, ts_kq_load -> ts_kq_avx2_load, ...), so
 *   that each instance calls its own helpers and dispatch.c can select it
 *   (quant_simd.h lists the types: TS_KQ_FILE_TYPES);
 * - the whole file is compiled for the ISA (auto-vectorized lane loops)
 *   with contraction off and no trapping math, which changes no result:
 *   the files are written in IEEE operations in a fixed order (eight-lane
 *   sums, see quant_kernels.h), so the bytes are the scalar ones.
 * The instances are compared with scalar by test_quant_simd.c and
 * test_neon_qemu.sh. */
#ifndef TS_QUANT_SIMD_NAMES_H
#define TS_QUANT_SIMD_NAMES_H

#define QK_CAT3_(a, b, c) a##b##c
#define QK_CAT3(a, b, c) QK_CAT3_(a, b, c)
#define QK_ISA_NAME(name) QK_CAT3(ts_kq_, QK_ISA, _##name)

/* quant_legacy.c: the shared search helpers (defined by the legacy
 * instance, called by the iq4 one) and the legacy rows */
#define ts_kq_f16_scaled QK_ISA_NAME(f16_scaled)
#define ts_kq_f16_scaled_super QK_ISA_NAME(f16_scaled_super)
#define ts_kq_load QK_ISA_NAME(load)
#define ts_kq_weights QK_ISA_NAME(weights)
#define ts_kq_search_sym QK_ISA_NAME(search_sym)
#define ts_kq_err_sym QK_ISA_NAME(err_sym)
#define ts_kq_scalar_quantize_row_q4_0 QK_ISA_NAME(quantize_row_q4_0)
#define ts_kq_scalar_quantize_row_q4_1 QK_ISA_NAME(quantize_row_q4_1)
#define ts_kq_scalar_quantize_row_q5_0 QK_ISA_NAME(quantize_row_q5_0)
#define ts_kq_scalar_quantize_row_q5_1 QK_ISA_NAME(quantize_row_q5_1)
#define ts_kq_scalar_dequantize_row_q4_0 QK_ISA_NAME(dequantize_row_q4_0)
#define ts_kq_scalar_dequantize_row_q4_1 QK_ISA_NAME(dequantize_row_q4_1)
#define ts_kq_scalar_dequantize_row_q5_0 QK_ISA_NAME(dequantize_row_q5_0)
#define ts_kq_scalar_dequantize_row_q5_1 QK_ISA_NAME(dequantize_row_q5_1)
/* quant_iq4.c */
#define ts_kq_scalar_quantize_row_iq4_nl QK_ISA_NAME(quantize_row_iq4_nl)
#define ts_kq_scalar_quantize_row_iq4_xs QK_ISA_NAME(quantize_row_iq4_xs)
#define ts_kq_scalar_dequantize_row_iq4_nl QK_ISA_NAME(dequantize_row_iq4_nl)
#define ts_kq_scalar_dequantize_row_iq4_xs QK_ISA_NAME(dequantize_row_iq4_xs)
/* quant_k23.c (its q2_K search is quant_k.c's, dispatched on its own) */
#define ts_kq_scalar_quantize_row_q2_k QK_ISA_NAME(quantize_row_q2_k)
#define ts_kq_scalar_quantize_row_q3_k QK_ISA_NAME(quantize_row_q3_k)
#define ts_kq_scalar_dequantize_row_q2_k QK_ISA_NAME(dequantize_row_q2_k)
#define ts_kq_scalar_dequantize_row_q3_k QK_ISA_NAME(dequantize_row_q3_k)
#define ts_k_pack_scales_q3_k QK_ISA_NAME(pack_scales_q3_k)
#define ts_k_unpack_scales_q3_k QK_ISA_NAME(unpack_scales_q3_k)

/* The target region; the per-ISA file ends it with QK_END_TARGET. */
#define QK_PRAGMA_(x) _Pragma(#x)
#if defined(__clang__)
#ifdef QK_TARGET
#define QK_PRAGMA_PUSH(t) QK_PRAGMA_(clang attribute push(__attribute__((target(t))), apply_to = function))
QK_PRAGMA_PUSH(QK_TARGET)
#define QK_END_TARGET _Pragma("clang attribute pop")
#endif
#pragma STDC FP_CONTRACT OFF
#else
#ifdef QK_TARGET
#define QK_PRAGMA_TARGET(t) QK_PRAGMA_(GCC target(t))
QK_PRAGMA_TARGET(QK_TARGET)
#endif
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#endif
#ifndef QK_END_TARGET
#define QK_END_TARGET
#endif

#endif
