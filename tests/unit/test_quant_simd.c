/* The quant kernels' SIMD instances (kernels/quant_simd_*.c) against the
 * scalar reference: for every type and every kernel set this CPU runs,
 * quantize-row bytes and dequantize-row bits identical to scalar's, on the
 * rows of tests/unit/quant_cases.h (random, zeros, constant, subnormal,
 * huge, FLT_MAX, NaN / inf, mixed magnitudes ...) with and without an
 * imatrix (plain, with zeros and garbage, all zero), on real weights from
 * ../shared/models, and on random blocks for the dequantizers (including
 * inf / NaN scales). NEON runs the same comparison under qemu-aarch64 in
 * tests/interop/test_neon_qemu.sh. Also: TS_KERNELS / ts_k_force_impl
 * switch the quant kernels with the element kernels. */
#include "testutil.h"
#include "quant_cases.h"

#include "formats/safetensors.h"
#include "kernels/quant_simd.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const SIMD_IMPLS[] = {"avx2", "avx512", "neon"};

/* Quantizes and dequantizes n values of x with every imatrix variant under
 * the scalar kernels and under impl; fails on the first differing byte. */
static void compare_row(const char *impl, const qc_type *t, const float *x, int n, const char *what)
{
    const size_t nbytes = (size_t)n / t->block * t->block_bytes;
    uint8_t *want = malloc(nbytes + 16), *got = malloc(nbytes + 16);
    float *yw = malloc(sizeof(float) * n), *yg = malloc(sizeof(float) * n), *im = malloc(sizeof(float) * n);
    ck_assert(want && got && yw && yg && im);
    for (int v = 0; v < QC_N_IMATRIX; v++) {
        if (!t->quantize && v > 0)
            break; /* q8_0 takes no imatrix */
        const float *imatrix = qc_imatrix(v, im, n);
        memset(want, 0xa5, nbytes + 16);
        memset(got, 0x5a, nbytes + 16);
        ck_assert(ts_k_force_impl("scalar"));
        qc_quantize(t, x, want, n, imatrix);
        t->dequantize(want, yw, n);
        ck_assert(ts_k_force_impl(impl));
        qc_quantize(t, x, got, n, imatrix);
        /* (one check per row: Check records every passing assertion) */
        if (memcmp(got, want, nbytes) != 0) {
            size_t i = 0;
            while (got[i] == want[i])
                i++;
            ck_abort_msg("%s %s %s imatrix %d: byte %zu (block %zu) is %#x, scalar %#x", impl, t->name, what, v, i,
                         i / t->block_bytes, got[i], want[i]);
        }
        static const uint8_t canary[16] = {0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
                                           0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a};
        ck_assert_msg(memcmp(got + nbytes, canary, 16) == 0, "%s %s wrote past its %zu bytes", impl, t->name, nbytes);
        t->dequantize(want, yg, n);
        ck_assert_msg(memcmp(yg, yw, sizeof(float) * n) == 0, "%s %s %s imatrix %d: dequantized bits differ", impl,
                      t->name, what, v);
    }
    free(want), free(got), free(yw), free(yg), free(im);
}

static void compare_cases(const char *impl, const qc_type *t)
{
    float *x = malloc(sizeof(float) * QC_N);
    ck_assert(x);
    for (int c = 0; c < QC_N_CASES; c++) {
        const char *name = qc_case(c, x);
        compare_row(impl, t, x, QC_N, name);
        /* a single block, and the row starting one block in (another alignment) */
        compare_row(impl, t, x + t->block, t->block, name);
    }
    free(x);
}

/* Random blocks, including inf / NaN scales: identical dequantized bits. */
static void compare_garbage(const char *impl, const qc_type *t)
{
    enum { NB = 40 };
    uint8_t *blk = malloc((size_t)NB * t->block_bytes);
    const int n = NB * t->block;
    float *yw = malloc(sizeof(float) * n), *yg = malloc(sizeof(float) * n);
    ck_assert(blk && yw && yg);
    qc_garbage(t, blk, NB);
    ck_assert(ts_k_force_impl("scalar"));
    t->dequantize(blk, yw, n);
    ck_assert(ts_k_force_impl(impl));
    t->dequantize(blk, yg, n);
    if (memcmp(yw, yg, sizeof(float) * n) != 0) {
        int i = 0;
        while (memcmp(&yw[i], &yg[i], 4) == 0)
            i++;
        uint32_t a, b;
        memcpy(&a, &yw[i], 4);
        memcpy(&b, &yg[i], 4);
        ck_abort_msg("%s %s random block %d value %d: %#x, scalar %#x", impl, t->name, i / t->block, i % t->block, b,
                     a);
    }
    free(blk), free(yw), free(yg);
}

/* Up to max_rows rows of 2-D BF16 tensors of one real model, as f32 rows of
 * n_per_row (a multiple of 256); returns the number of floats. */
static int real_rows(const char *model, float *out, int max_floats)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return 0;
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s/model.safetensors", shared, model);
    ts_st_model *m;
    ts_err err;
    if (ts_st_open(path, &m, &err) != TS_OK) {
        fprintf(stderr, "test_quant_simd: %s: %s (real rows skipped)\n", path, err.msg);
        return 0;
    }
    int got = 0;
    for (size_t i = 0; i < m->n_tensors && got < max_floats; i++) {
        const ts_tensor *t = &m->tensors[i].t;
        if (t->dtype != TS_BF16 || t->n_dims != 2 || t->ne[0] % 256 != 0)
            continue;
        /* two rows of each tensor: its first and its middle one */
        for (int r = 0; r < 2 && got + t->ne[0] <= max_floats; r++) {
            const int64_t row = r == 0 ? 0 : t->ne[1] / 2;
            ts_k_bf16_to_f32((const uint16_t *)t->data + row * t->ne[0], out + got, (size_t)t->ne[0]);
            got += (int)t->ne[0];
        }
    }
    ts_st_close(m);
    return got;
}

static void compare_impl(const char *impl, int type_lo, int type_hi)
{
    if (!ts_k_force_impl(impl)) {
        fprintf(stderr, "test_quant_simd: %s not available on this CPU, skipped\n", impl);
        return;
    }
    enum { MAX_REAL = 1 << 15 };
    float *real = malloc(sizeof(float) * MAX_REAL * 2);
    ck_assert(real);
    int n_real = real_rows("llama-spm-8m", real, MAX_REAL);
    n_real += real_rows("qwen3moe-spm-9m", real + n_real, MAX_REAL);
    n_real -= n_real % 256;
    for (int k = type_lo; k < type_hi; k++) {
        const qc_type *t = &QC_TYPES[k];
        compare_cases(impl, t);
        compare_garbage(impl, t);
        if (n_real > 0)
            compare_row(impl, t, real, n_real, "real rows");
    }
    free(real);
    ck_assert(ts_k_force_impl("scalar"));
}

/* One test per kernel set and half of the types, so each stays short. */
START_TEST(simd_matches_scalar)
{
    const int half = QC_N_TYPES / 2;
    compare_impl(SIMD_IMPLS[_i / 2], _i % 2 ? half : 0, _i % 2 ? QC_N_TYPES : half);
}
END_TEST

/* The quant kernels follow the element kernels' choice. */
START_TEST(dispatch_follows_element_kernels)
{
    const char *names[] = {"scalar", "avx2", "avx512", "neon"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!ts_k_force_impl(names[i]))
            continue;
        ck_assert_str_eq(ts_k_impl_name(), names[i]);
        ck_assert_str_eq(ts_kq_active()->name, names[i]);
    }
    ck_assert(ts_k_force_impl("scalar"));
    ck_assert_str_eq(ts_kq_active()->name, "scalar");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("quant_simd");
    TCase *tc = tcase_create("quant_simd");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, dispatch_follows_element_kernels);
    tcase_add_loop_test(tc, simd_matches_scalar, 0, 2 * (int)(sizeof SIMD_IMPLS / sizeof SIMD_IMPLS[0]));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run_suite(suite());
}
