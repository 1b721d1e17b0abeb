/* Picks the kernel implementation once, at first use: the best one this CPU
 * supports, or the one named by $TS_KERNELS. pthread_once makes the first
 * use thread-safe; the active table is read and replaced atomically so
 * ts_k_force_impl may run while other threads convert. */
#include "kernels/kernel_impl.h"
#include "kernels/quant_simd.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* __builtin_cpu_supports has no "f16c" under clang, so ask CPUID directly;
 * the AVX checks below already cover OS support for the YMM/ZMM state. */
static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    return (c & bit_F16C) != 0;
}
#endif

/* In order of preference, best last. */
static const ts_k_impl *const impls[] = {
    &ts_k_impl_scalar,
#if defined(__x86_64__) || defined(__i386__)
    &ts_k_impl_avx2,
    &ts_k_impl_avx512,
#endif
#if defined(__aarch64__)
    &ts_k_impl_neon,
#endif
};
#define N_IMPLS (sizeof impls / sizeof impls[0])

static bool impl_supported(const ts_k_impl *im)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (im == &ts_k_impl_avx2)
        return __builtin_cpu_supports("avx2") && cpu_has_f16c();
    if (im == &ts_k_impl_avx512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2") && cpu_has_f16c();
#endif
    /* scalar everywhere; NEON is part of base AArch64 */
    (void)im;
    return true;
}

static const ts_k_impl *find(const char *name)
{
    for (size_t i = 0; i < N_IMPLS; i++)
        if (strcmp(impls[i]->name, name) == 0)
            return impl_supported(impls[i]) ? impls[i] : NULL;
    return NULL;
}

static const ts_k_impl *active = &ts_k_impl_scalar;
static pthread_once_t pick_once = PTHREAD_ONCE_INIT;

static void pick(void)
{
    const ts_k_impl *best = &ts_k_impl_scalar;
    for (size_t i = 0; i < N_IMPLS; i++)
        if (impl_supported(impls[i]))
            best = impls[i];
    /* An unknown or unsupported name is ignored rather than fatal: the
     * library never exits, and the automatic choice is always correct. */
    const char *env = getenv("TS_KERNELS");
    if (env && *env && find(env))
        best = find(env);
    __atomic_store_n(&active, best, __ATOMIC_RELEASE);
}

static const ts_k_impl *cur(void)
{
    pthread_once(&pick_once, pick);
    return __atomic_load_n(&active, __ATOMIC_ACQUIRE);
}

const char *ts_k_impl_name(void)
{
    return cur()->name;
}

bool ts_k_force_impl(const char *name)
{
    cur(); /* so a later first use cannot overwrite the forced choice */
    const ts_k_impl *im = name ? find(name) : NULL;
    if (!im)
        return false;
    __atomic_store_n(&active, im, __ATOMIC_RELEASE);
    return true;
}

void ts_k_f16_to_f32(const uint16_t *src, float *dst, size_t n) { cur()->f16_to_f32(src, dst, n); }
void ts_k_f32_to_f16(const float *src, uint16_t *dst, size_t n) { cur()->f32_to_f16(src, dst, n); }
void ts_k_bf16_to_f32(const uint16_t *src, float *dst, size_t n) { cur()->bf16_to_f32(src, dst, n); }
void ts_k_f32_to_bf16(const float *src, uint16_t *dst, size_t n) { cur()->f32_to_bf16(src, dst, n); }
void ts_k_f8e4m3_to_f32(const uint8_t *src, float *dst, size_t n) { cur()->f8e4m3_to_f32(src, dst, n); }
void ts_k_f8e5m2_to_f32(const uint8_t *src, float *dst, size_t n) { cur()->f8e5m2_to_f32(src, dst, n); }
void ts_k_f64_to_f32(const double *src, float *dst, size_t n) { cur()->f64_to_f32(src, dst, n); }

/* Only whole blocks are converted; callers guarantee n % 32 == 0. */
void ts_k_quantize_row_q8_0(const float *src, void *dst, int64_t n)
{
    if (n > 0)
        cur()->quantize_row_q8_0(src, dst, n);
}

void ts_k_dequantize_row_q8_0(const void *src, float *dst, int64_t n)
{
    if (n > 0)
        cur()->dequantize_row_q8_0(src, dst, n);
}

/* The quant kernels follow the element kernels' choice, so TS_KERNELS and
 * ts_k_force_impl switch both. */
const ts_kq_impl *ts_kq_active(void)
{
    const ts_k_impl *im = cur();
#if defined(__x86_64__) || defined(__i386__)
    if (im == &ts_k_impl_avx512)
        return &ts_kq_impl_avx512;
    if (im == &ts_k_impl_avx2)
        return &ts_kq_impl_avx2;
#endif
#if defined(__aarch64__)
    if (im == &ts_k_impl_neon)
        return &ts_kq_impl_neon;
#endif
    (void)im;
    return &ts_kq_impl_scalar;
}

/* The row kernels of the types whose scalar file has per-ISA instances. */
#define TS_KQ_DISPATCH(t)                                                                                              \
    void ts_k_quantize_row_##t(const float *x, void *dst, int64_t n, const float *imatrix)                           \
    {                                                                                                                  \
        ts_kq_active()->quantize_row_##t(x, dst, n, imatrix);                                                         \
    }                                                                                                                  \
    void ts_k_dequantize_row_##t(const void *src, float *dst, int64_t n)                                              \
    {                                                                                                                  \
        ts_kq_active()->dequantize_row_##t(src, dst, n);                                                              \
    }
TS_KQ_FILE_TYPES(TS_KQ_DISPATCH)
