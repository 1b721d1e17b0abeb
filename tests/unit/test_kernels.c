/* Kernels: the scalar reference against slow, independently written
 * references and known values; then every SIMD implementation this CPU has,
 * forced one at a time, against scalar byte for byte (odd lengths for the
 * tails, odd offsets for alignment). */
#include "testutil.h"
#include "kernels/kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* First differing element of two arrays, with both bit patterns. */
static void assert_same(const void *a, const void *b, size_t elsize, size_t n, const char *what)
{
    const uint8_t *pa = a, *pb = b;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(pa + i * elsize, pb + i * elsize, elsize) != 0) {
            uint64_t va = 0, vb = 0;
            memcpy(&va, pa + i * elsize, elsize < 8 ? elsize : 8);
            memcpy(&vb, pb + i * elsize, elsize < 8 ? elsize : 8);
            ck_abort_msg("%s: element %zu of %zu differs: 0x%llx vs 0x%llx", what, i, n,
                         (unsigned long long)va, (unsigned long long)vb);
        }
    }
}

/* ---- slow references ---------------------------------------------------- */

/* Value of a binary16 pattern as a double (NaN for NaNs). */
static double ref_f16_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 31)
        return m ? NAN : s * INFINITY;
    if (e == 0)
        return s * ldexp(m, -24);
    return s * ldexp(1024 + m, e - 25);
}

/* Nearest binary16 by search over all finite magnitudes, ties to the even
 * pattern; beyond the largest finite value the next "value" is 2^16. */
static double f16_mag[0x7c01];
static void init_f16_mag(void)
{
    for (int h = 0; h < 0x7c00; h++)
        f16_mag[h] = ref_f16_value((uint16_t)h);
    f16_mag[0x7c00] = 65536.0;
}

static uint16_t ref_f32_to_f16(float x)
{
    uint32_t u = fbits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    if (isnan(x))
        return sign | 0x7e00 | ((u >> 13) & 0x3ff);
    double a = fabs((double)x);
    if (a >= 65536.0)
        return sign | 0x7c00;
    int lo = 0, hi = 0x7c00; /* f16_mag[lo] <= a < f16_mag[hi] */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (f16_mag[mid] <= a)
            lo = mid;
        else
            hi = mid;
    }
    double dlo = a - f16_mag[lo], dhi = f16_mag[hi] - a;
    int pick = dlo < dhi ? lo : dhi < dlo ? hi : ((lo & 1) ? hi : lo);
    return sign | (uint16_t)pick;
}

/* Nearest bfloat16 by comparing the two neighbours in double. */
static uint16_t ref_f32_to_bf16(float x)
{
    uint32_t u = fbits(x);
    if (isnan(x))
        return (uint16_t)((u >> 16) | 0x40);
    if (isinf(x))
        return (uint16_t)(u >> 16);
    uint32_t mag = u & 0x7fffffff, lo = mag & 0xffff0000u, hi = lo + 0x10000u;
    double a = fabs((double)x);
    double vlo = bitsf(lo), vhi = hi == 0x7f800000u ? ldexp(1.0, 128) : (double)bitsf(hi);
    double dlo = a - vlo, dhi = vhi - a;
    uint32_t pick = dlo < dhi ? lo : dhi < dlo ? hi : (((lo >> 16) & 1) ? hi : lo);
    return (uint16_t)(((u & 0x80000000u) | pick) >> 16);
}

/* OCP E4M3FN / E5M2 values from the formula, NaN bits as documented. */
static uint32_t ref_e4m3(uint8_t b)
{
    int e = (b >> 3) & 15, m = b & 7;
    uint32_t sign = (uint32_t)(b & 0x80) << 24;
    if ((b & 0x7f) == 0x7f)
        return sign | 0x7ff00000u;
    double v = e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);
    return sign | fbits((float)v);
}

static uint32_t ref_e5m2(uint8_t b)
{
    int e = (b >> 2) & 31, m = b & 3;
    uint32_t sign = (uint32_t)(b & 0x80) << 24;
    if (e == 31)
        return sign | (m ? 0x7fc00000u | ((uint32_t)m << 21) : 0x7f800000u);
    double v = e == 0 ? ldexp(m, -16) : ldexp(4 + m, e - 17);
    return sign | fbits((float)v);
}

/* quantize_row_q8_0_ref written out plainly: ggml's MAX(a, b) = a > b ? a : b,
 * d = amax / 127, id = d ? 1/d : 0, scale through GGML_FP32_TO_FP16 (NaN ->
 * 0x7e00), quants stored the way x86 cvttss2si does (NaN/inf -> 0). */
static void ref_q8_0(const float *x, uint8_t *y, int nb)
{
    for (int b = 0; b < nb; b++, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = isnan(d) ? 0x7e00 : ref_f32_to_f16(d);
        y[0] = (uint8_t)h;
        y[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < 32; j++) {
            float r = roundf(x[j] * id);
            y[2 + j] = isfinite(r) && fabsf(r) < 2147483648.0f ? (uint8_t)(int32_t)r : 0;
        }
    }
}

/* ---- inputs ------------------------------------------------------------- */

static const uint32_t special_f32[] = {
    0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007fffff, 0x00800000, 0x3f800000, 0xbf800000,
    0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000, 0x7f800001, 0xff800001, 0x7fc00000, 0xffc00000,
    0x7fbfffff, 0x7fffffff, 0xffa00000, 0x7f802000, 0x477fe000, 0x477fefff, 0x477ff000, 0x477ff001,
    0x47800000, 0x38800000, 0x387fffff, 0x387fc000, 0x33000000, 0x33000001, 0x32ffffff, 0x33800000,
    0x33c00000, 0x3f808000, 0x3f818000, 0x3f80ffff, 0x3f817fff, 0x7f7f8000, 0x7f7f7fff, 0xff7f8000,
};
#define N_SPECIAL (sizeof special_f32 / sizeof special_f32[0])

/* Specials, every f16 value, every f16 midpoint and its neighbours (both
 * signs), then random bit patterns and random values near the f16 range. */
static float *make_f32_inputs(size_t *n_out)
{
    size_t n = N_SPECIAL + 2 * 5 * 0x7c00 + 400000 + 400000, k = 0;
    float *x = malloc(n * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < N_SPECIAL; i++)
        x[k++] = bitsf(special_f32[i]);
    for (int h = 0; h < 0x7c00; h++) {
        float v = (float)f16_mag[h], mid = (float)((f16_mag[h] + f16_mag[h + 1]) / 2);
        float cand[5] = {v, mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY), nextafterf(v, INFINITY)};
        for (int c = 0; c < 5; c++) {
            x[k++] = cand[c];
            x[k++] = -cand[c];
        }
    }
    for (int i = 0; i < 400000; i++)
        x[k++] = bitsf((uint32_t)rng());
    for (int i = 0; i < 400000; i++) { /* exponents 2^-27 .. 2^17 */
        uint32_t u = (uint32_t)rng();
        u = (u & 0x807fffffu) | ((100u + (u >> 8) % 45u) << 23);
        x[k++] = bitsf(u);
    }
    *n_out = k;
    return x;
}

/* ---- scalar against references ----------------------------------------- */

START_TEST(f16_exhaustive)
{
    ck_assert(ts_k_force_impl("scalar"));
    uint16_t *h = malloc(65536 * 2), *back = malloc(65536 * 2);
    float *f = malloc(65536 * 4);
    for (int i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    ts_k_f16_to_f32(h, f, 65536);
    for (int i = 0; i < 65536; i++) {
        double want = ref_f16_value((uint16_t)i);
        uint32_t got = fbits(f[i]);
        if (isnan(want))
            ck_assert_msg(got == (((uint32_t)(i & 0x8000) << 16) | 0x7fc00000u | ((uint32_t)(i & 0x3ff) << 13)),
                          "f16 NaN 0x%04x -> 0x%08x", i, got);
        else
            ck_assert_msg((double)f[i] == want && (got >> 31) == (uint32_t)(i >> 15),
                          "f16 0x%04x -> 0x%08x", i, got);
    }
    /* round trip: exact for numbers, NaNs come back quieted */
    ts_k_f32_to_f16(f, back, 65536);
    for (int i = 0; i < 65536; i++) {
        bool nan = (i & 0x7c00) == 0x7c00 && (i & 0x3ff);
        ck_assert_msg(back[i] == (nan ? (i | 0x200) : i), "f16 round trip 0x%04x -> 0x%04x", i, back[i]);
    }
    /* a few values known by heart */
    const struct { uint16_t h; uint32_t f; } known[] = {
        {0x3c00, 0x3f800000}, {0xc000, 0xc0000000}, {0x7bff, 0x477fe000}, {0x0001, 0x33800000},
        {0x0400, 0x38800000}, {0x03ff, 0x387fc000}, {0x7c00, 0x7f800000}, {0xfc00, 0xff800000},
        {0x7e00, 0x7fc00000}, {0x7c01, 0x7fc02000}, {0x8000, 0x80000000}, {0x3555, 0x3eaaa000},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        float one;
        ts_k_f16_to_f32(&known[i].h, &one, 1);
        ck_assert_uint_eq(fbits(one), known[i].f);
    }
    free(h); free(back); free(f);
}
END_TEST

START_TEST(bf16_exhaustive)
{
    ck_assert(ts_k_force_impl("scalar"));
    uint16_t *h = malloc(65536 * 2), *back = malloc(65536 * 2);
    float *f = malloc(65536 * 4);
    for (int i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    ts_k_bf16_to_f32(h, f, 65536);
    for (int i = 0; i < 65536; i++)
        ck_assert_uint_eq(fbits(f[i]), (uint32_t)i << 16);
    ts_k_f32_to_bf16(f, back, 65536);
    for (int i = 0; i < 65536; i++) {
        bool nan = (i & 0x7f80) == 0x7f80 && (i & 0x7f);
        ck_assert_msg(back[i] == (nan ? (i | 0x40) : i), "bf16 round trip 0x%04x -> 0x%04x", i, back[i]);
    }
    free(h); free(back); free(f);
}
END_TEST

START_TEST(f32_to_f16_and_bf16_vs_reference)
{
    ck_assert(ts_k_force_impl("scalar"));
    size_t n;
    float *x = make_f32_inputs(&n);
    uint16_t *h = malloc(n * 2), *b = malloc(n * 2);
    ts_k_f32_to_f16(x, h, n);
    ts_k_f32_to_bf16(x, b, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(h[i] == ref_f32_to_f16(x[i]), "f16(0x%08x) = 0x%04x, want 0x%04x",
                      fbits(x[i]), h[i], ref_f32_to_f16(x[i]));
        ck_assert_msg(b[i] == ref_f32_to_bf16(x[i]), "bf16(0x%08x) = 0x%04x, want 0x%04x",
                      fbits(x[i]), b[i], ref_f32_to_bf16(x[i]));
    }
    /* hand-checked: ties go to even, 65520 overflows, 2^-25 underflows */
    const struct { uint32_t f; uint16_t h, b; } known[] = {
        {0x3f801000, 0x3c00, 0x3f80}, {0x3f803000, 0x3c02, 0x3f80}, {0x477ff000, 0x7c00, 0x4780},
        {0x477fefff, 0x7bff, 0x4780}, {0x33000000, 0x0000, 0x3300}, {0x33000001, 0x0001, 0x3300},
        {0x3f808000, 0x3c04, 0x3f80}, {0x3f818000, 0x3c0c, 0x3f82}, {0x7f800001, 0x7e00, 0x7fc0},
        {0xffa00000, 0xff00, 0xffe0}, {0x7f7f8000, 0x7c00, 0x7f80}, {0x7f7f7fff, 0x7c00, 0x7f7f},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        float v = bitsf(known[i].f);
        uint16_t oh, ob;
        ts_k_f32_to_f16(&v, &oh, 1);
        ts_k_f32_to_bf16(&v, &ob, 1);
        ck_assert_msg(oh == known[i].h && ob == known[i].b, "0x%08x -> f16 0x%04x bf16 0x%04x",
                      known[i].f, oh, ob);
    }
    free(x); free(h); free(b);
}
END_TEST

START_TEST(f8_all_patterns)
{
    ck_assert(ts_k_force_impl("scalar"));
    uint8_t b[256];
    float e4[256], e5[256];
    for (int i = 0; i < 256; i++)
        b[i] = (uint8_t)i;
    ts_k_f8e4m3_to_f32(b, e4, 256);
    ts_k_f8e5m2_to_f32(b, e5, 256);
    for (int i = 0; i < 256; i++) {
        ck_assert_msg(fbits(e4[i]) == ref_e4m3(b[i]), "e4m3 0x%02x -> 0x%08x", i, fbits(e4[i]));
        ck_assert_msg(fbits(e5[i]) == ref_e5m2(b[i]), "e5m2 0x%02x -> 0x%08x", i, fbits(e5[i]));
    }
    ck_assert_float_eq(e4[0x7e], 448.0f);  /* E4M3FN max */
    ck_assert_float_eq(e4[0x01], 0x1p-9f); /* smallest subnormal */
    ck_assert_float_eq(e5[0x7b], 57344.0f);
    ck_assert(isinf(e5[0x7c]) && isnan(e4[0xff]));
}
END_TEST

START_TEST(f64_known_values)
{
    ck_assert(ts_k_force_impl("scalar"));
    const struct { double d; uint32_t f; } known[] = {
        {1.0, 0x3f800000}, {0x1.000001p0, 0x3f800000}, {0x1.000003p0, 0x3f800002},
        {0x1.0000010000001p0, 0x3f800001}, {1e-46, 0x00000000}, {3.5e38, 0x7f800000},
        {-0.0, 0x80000000}, {0x1p-149, 0x00000001}, {0x1p-150, 0x00000000},
        {0x1.8p-150, 0x00000001}, {-INFINITY, 0xff800000},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        float f;
        ts_k_f64_to_f32(&known[i].d, &f, 1);
        ck_assert_msg(fbits(f) == known[i].f, "f64 %a -> 0x%08x", known[i].d, fbits(f));
    }
    uint64_t nan_bits = 0x7ff0000000000001ull; /* signalling: quieted, payload truncated */
    double nan;
    float f;
    memcpy(&nan, &nan_bits, 8);
    ts_k_f64_to_f32(&nan, &f, 1);
    ck_assert_uint_eq(fbits(f), 0x7fc00000u);
}
END_TEST

/* Blocks that exercise every branch of quantize_row_q8_0_ref. */
static void fill_q8_blocks(float *x, int nb)
{
    for (int b = 0; b < nb; b++) {
        float *blk = x + 32 * b;
        float scale = ldexpf(1.0f, (int)(rng() % 60) - 30);
        for (int j = 0; j < 32; j++)
            blk[j] = ((float)(int64_t)(rng() % 20001) - 10000.0f) / 10000.0f * scale;
        switch (b % 12) {
        case 0: memset(blk, 0, 32 * sizeof *blk); break;          /* all zero */
        case 1: blk[rng() % 32] = NAN; break;                       /* NaN inside */
        case 2: blk[31] = -NAN; break;                              /* NaN last: amax NaN */
        case 3: blk[rng() % 32] = -INFINITY; break;                 /* d = inf */
        case 4: for (int j = 0; j < 32; j++) blk[j] = bitsf((uint32_t)(rng() % 0x800000)); break;
        case 5: for (int j = 0; j < 32; j++) blk[j] = ldexpf((float)j - 16.0f, -128); break;
        case 6: /* exact ties: amax 127 gives d = 1, id = 1 */
            for (int j = 0; j < 32; j++) blk[j] = (float)((int)(rng() % 254) - 127) + 0.5f;
            blk[0] = 127.0f;
            break;
        case 7: blk[5] = 3.0e38f; blk[6] = -3.4e38f; break;         /* huge */
        case 8: blk[3] = -0.0f; blk[4] = 1e-45f; break;
        case 9: /* d denormal but 1/d still finite */
            for (int j = 0; j < 32; j++) blk[j] = ldexpf(blk[j] / scale, -121);
            break;
        default: break;
        }
    }
}

START_TEST(q8_0_vs_reference)
{
    ck_assert(ts_k_force_impl("scalar"));
    const int nb = 240;
    float *x = malloc(32 * nb * sizeof *x), *y = malloc(32 * nb * sizeof *y);
    uint8_t *got = malloc(34 * nb), *want = malloc(34 * nb);
    fill_q8_blocks(x, nb);
    ts_k_quantize_row_q8_0(x, got, 32 * nb);
    ref_q8_0(x, want, nb);
    for (int b = 0; b < nb; b++)
        assert_same(got + 34 * b, want + 34 * b, 1, 34, "q8_0 block vs reference");
    ts_k_dequantize_row_q8_0(got, y, 32 * nb);
    for (int b = 0; b < nb; b++) {
        double d = ref_f16_value((uint16_t)(got[34 * b] | (got[34 * b + 1] << 8)));
        for (int j = 0; j < 32; j++) {
            float w = (float)((int8_t)got[34 * b + 2 + j] * d);
            ck_assert_msg(memcmp(&w, &y[32 * b + j], 4) == 0 || (isnan(w) && isnan(y[32 * b + j])),
                          "dequant block %d elem %d", b, j);
        }
    }
    /* by hand: amax 127 -> d = 1.0 (0x3c00), halves round away from zero */
    float t[32] = {127.0f, 2.5f, -2.5f, 0.5f, -0.5f, 1.49999988f, -126.5f};
    uint8_t q[34];
    ts_k_quantize_row_q8_0(t, q, 32);
    const uint8_t want_q[9] = {0x00, 0x3c, 127, 3, (uint8_t)-3, 1, (uint8_t)-1, 1, (uint8_t)-127};
    ck_assert_mem_eq(q, want_q, 9);
    /* d = inf: 0 * inf is x86's default NaN on every machine */
    uint8_t inf_blk[34] = {0x00, 0x7c, 0, 1, 0xff};
    float dq[32];
    ts_k_dequantize_row_q8_0(inf_blk, dq, 32);
    ck_assert_uint_eq(fbits(dq[0]), 0xffc00000u);
    ck_assert_uint_eq(fbits(dq[1]), 0x7f800000u);
    ck_assert_uint_eq(fbits(dq[2]), 0xff800000u);
    free(x); free(y); free(got); free(want);
}
END_TEST

/* ---- SIMD implementations against scalar -------------------------------- */

typedef struct {
    uint16_t *h16;
    float *f32;
    double *f64;
    uint8_t *u8;
    size_t n;
} inputs;

static inputs make_inputs(void)
{
    inputs in;
    float *fx = make_f32_inputs(&in.n);
    in.f32 = fx;
    in.h16 = malloc(in.n * 2);
    in.f64 = malloc(in.n * 8);
    in.u8 = malloc(in.n);
    for (size_t i = 0; i < in.n; i++) {
        in.h16[i] = (uint16_t)(i < 65536 ? i : rng());
        in.u8[i] = (uint8_t)(i < 256 ? i : rng());
        uint64_t r = rng();
        double d;
        switch (i % 4) {
        case 0: memcpy(&d, &r, 8); break;                           /* any bits */
        case 1: d = (double)fx[i] + ldexp((double)(r % 1024), -40) * fx[i]; break;
        case 2: d = ldexp((double)(r >> 11), (int)(r % 400) - 250); break; /* around f32 limits */
        default: d = (double)fx[i]; break;
        }
        in.f64[i] = d;
    }
    return in;
}

/* Run every element kernel on src[off .. off+n) with the active impl. */
typedef struct { uint8_t *buf[7]; } outputs;
static void run_all(const inputs *in, size_t off, size_t n, outputs *o)
{
    ts_k_f16_to_f32(in->h16 + off, (float *)o->buf[0], n);
    ts_k_f32_to_f16(in->f32 + off, (uint16_t *)o->buf[1], n);
    ts_k_bf16_to_f32(in->h16 + off, (float *)o->buf[2], n);
    ts_k_f32_to_bf16(in->f32 + off, (uint16_t *)o->buf[3], n);
    ts_k_f8e4m3_to_f32(in->u8 + off, (float *)o->buf[4], n);
    ts_k_f8e5m2_to_f32(in->u8 + off, (float *)o->buf[5], n);
    ts_k_f64_to_f32(in->f64 + off, (float *)o->buf[6], n);
}

static const char *const kernel_names[7] = {"f16_to_f32", "f32_to_f16", "bf16_to_f32", "f32_to_bf16",
                                            "f8e4m3_to_f32", "f8e5m2_to_f32", "f64_to_f32"};
static const size_t out_size[7] = {4, 2, 4, 2, 4, 4, 4};

static void compare_impl(const char *impl)
{
    if (!ts_k_force_impl(impl)) {
        fprintf(stderr, "test_kernels: %s not available on this CPU, skipped\n", impl);
        return;
    }
    inputs in = make_inputs();
    outputs want, got;
    for (int k = 0; k < 7; k++) {
        want.buf[k] = malloc(in.n * 4 + 64);
        got.buf[k] = malloc(in.n * 4 + 64);
    }
    /* whole arrays, then short and odd lengths at odd offsets, with a canary */
    size_t lens[80], n_lens = 0;
    lens[n_lens++] = in.n - 3;
    for (size_t l = 0; l <= 70; l++)
        lens[n_lens++] = l;
    lens[n_lens++] = 1000;
    lens[n_lens++] = 4099;
    for (size_t li = 0; li < n_lens; li++) {
        size_t n = lens[li], off = li % 4;
        for (int k = 0; k < 7; k++) {
            memset(want.buf[k], 0xa5, n * out_size[k] + 64);
            memset(got.buf[k], 0xa5, n * out_size[k] + 64);
        }
        ck_assert(ts_k_force_impl("scalar"));
        run_all(&in, off, n, &want);
        ck_assert(ts_k_force_impl(impl));
        ck_assert_str_eq(ts_k_impl_name(), impl);
        run_all(&in, off, n, &got);
        for (int k = 0; k < 7; k++) {
            char what[96];
            snprintf(what, sizeof what, "%s %s n=%zu off=%zu", impl, kernel_names[k], n, off);
            assert_same(got.buf[k], want.buf[k], out_size[k], n, what);
            /* nothing written past the end */
            assert_same(got.buf[k] + n * out_size[k], want.buf[k] + n * out_size[k], 1, 64, what);
        }
    }
    /* q8_0: every block flavour, many block counts */
    const int nb = 300;
    float *x = malloc(32 * nb * sizeof *x);
    uint8_t *qa = malloc(34 * nb), *qb = malloc(34 * nb);
    float *da = malloc(32 * nb * sizeof *da), *db = malloc(32 * nb * sizeof *db);
    fill_q8_blocks(x, nb);
    for (int blocks = 1; blocks <= nb; blocks += blocks < 8 ? 1 : 37) {
        ck_assert(ts_k_force_impl("scalar"));
        ts_k_quantize_row_q8_0(x, qa, 32 * blocks);
        ts_k_dequantize_row_q8_0(qa, da, 32 * blocks);
        ck_assert(ts_k_force_impl(impl));
        ts_k_quantize_row_q8_0(x, qb, 32 * blocks);
        ts_k_dequantize_row_q8_0(qa, db, 32 * blocks);
        assert_same(qb, qa, 1, 34 * (size_t)blocks, "q8_0 quantize vs scalar");
        assert_same(db, da, 4, 32 * (size_t)blocks, "q8_0 dequantize vs scalar");
    }
    free(x); free(qa); free(qb); free(da); free(db);
    for (int k = 0; k < 7; k++) {
        free(want.buf[k]);
        free(got.buf[k]);
    }
    free(in.f32); free(in.h16); free(in.f64); free(in.u8);
}

START_TEST(avx2_matches_scalar) { compare_impl("avx2"); }
END_TEST
START_TEST(avx512_matches_scalar) { compare_impl("avx512"); }
END_TEST
START_TEST(neon_matches_scalar) { compare_impl("neon"); }
END_TEST

START_TEST(dispatch_names)
{
    const char *first = ts_k_impl_name();
    ck_assert(strcmp(first, "scalar") == 0 || strcmp(first, "avx2") == 0 ||
              strcmp(first, "avx512") == 0 || strcmp(first, "neon") == 0);
    ck_assert(!ts_k_force_impl("bogus"));
    ck_assert(!ts_k_force_impl(NULL));
    ck_assert_str_eq(ts_k_impl_name(), first);
    ck_assert(ts_k_force_impl("scalar"));
    ck_assert_str_eq(ts_k_impl_name(), "scalar");
#if defined(__x86_64__)
    ck_assert(!ts_k_force_impl("neon"));
#endif
}
END_TEST

/* First use from several threads at once: everyone sees the same choice. */
static void *first_use(void *arg)
{
    uint16_t h = 0x3c00;
    float f = 0;
    ts_k_f16_to_f32(&h, &f, 1);
    *(const char **)arg = f == 1.0f ? ts_k_impl_name() : NULL;
    return NULL;
}

START_TEST(dispatch_first_use_threads)
{
    pthread_t th[4];
    const char *names[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, first_use, &names[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++)
        ck_assert(names[i] != NULL && names[i] == names[0]);
}
END_TEST

int main(void)
{
    init_f16_mag();
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, dispatch_first_use_threads);
    tcase_add_test(tc, dispatch_names);
    tcase_add_test(tc, f16_exhaustive);
    tcase_add_test(tc, bf16_exhaustive);
    tcase_add_test(tc, f32_to_f16_and_bf16_vs_reference);
    tcase_add_test(tc, f8_all_patterns);
    tcase_add_test(tc, f64_known_values);
    tcase_add_test(tc, q8_0_vs_reference);
    tcase_add_test(tc, avx2_matches_scalar);
    tcase_add_test(tc, avx512_matches_scalar);
    tcase_add_test(tc, neon_matches_scalar);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
