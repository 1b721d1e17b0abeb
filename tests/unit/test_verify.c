/* tessera verify's structural checks on GGUFs built here: the writer's
 * tensor checksums (round trip, partial writes, stale keys dropped), a
 * flipped byte caught by the checksum check, non-finite scales caught in
 * every block layout, absent and malformed checksum keys, and ts_verify's
 * error paths. The accuracy gates run end to end in
 * tests/interop/test_verify.sh. */
#define _GNU_SOURCE
#include "testutil.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "verify/verify.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct {
    const char *name;
    ts_dtype type;
    int64_t ne[2];
} tspec;

/* Three tensors: f32 [40, 3], q8_0 [64, 2], q4_K [256, 3]. */
static const tspec specs[] = {{"a.weight", TS_F32, {40, 3}}, {"b.weight", TS_Q8_0, {64, 2}}, {"c.weight", TS_Q4_K, {256, 3}}};
enum { N_SPECS = 3 };

/* Tensor bytes: finite values everywhere (f16 scales 1.0 = 0x3C00). */
static uint8_t *tensor_bytes(int k, uint64_t n)
{
    uint8_t *b = malloc(n);
    for (uint64_t i = 0; i < n; i++)
        b[i] = (uint8_t)(i * 31 + (uint64_t)k * 7);
    const ts_dtype_info *info = ts_dtype_get(specs[k].type);
    if (specs[k].type == TS_F32)
        for (uint64_t i = 0; i < n / 4; i++) {
            float f = (float)i * 0.25f - 3.0f;
            memcpy(b + 4 * i, &f, 4);
        }
    else
        for (uint64_t o = 0; o < n; o += info->block_bytes) {
            b[o] = 0x00, b[o + 1] = 0x3C;                  /* d */
            if (specs[k].type == TS_Q4_K)
                b[o + 2] = 0x00, b[o + 3] = 0x38;          /* dmin 0.5 */
        }
    return b;
}

/* Writes the three tensors (each in pieces of `piece` bytes); extra keys
 * copied first when stale is set. Returns the path. */
static char *write_file(const char *file, bool checksums, bool stale, size_t piece, uint8_t **data_out)
{
    ts_gguf_writer *w;
    ts_err err = {0};
    ck_assert(ts_gguf_writer_new(&w, &err) == TS_OK);
    ts_gguf_set_str(w, "general.architecture", "none");
    if (stale) { /* as if copied from another file: must not survive */
        uint64_t bogus[2] = {1, 2};
        ts_gguf_set_str(w, TS_GGUF_KEY_CHECKSUM_ALGO, "xxh3_64");
        ts_gguf_set_arr(w, TS_GGUF_KEY_CHECKSUM_TENSORS, TS_GGUF_UINT64, bogus, 2);
    }
    ts_gguf_set_u32(w, "test.after", 7);
    ts_gguf_writer_enable_checksums(w, checksums);
    for (int k = 0; k < N_SPECS; k++)
        ck_assert_msg(ts_gguf_add_tensor(w, specs[k].name, specs[k].type, 2, specs[k].ne, &err) == TS_OK, "%s", err.msg);
    char *path;
    ck_assert(asprintf(&path, "%s/%s", tu_tmpdir(), file) > 0);
    ck_assert_msg(ts_gguf_writer_begin(w, path, NULL, &err) == TS_OK, "%s", err.msg);
    for (int k = 0; k < N_SPECS; k++) {
        uint64_t n = ts_gguf_writer_tensor_bytes(w, (uint64_t)k);
        uint8_t *b = tensor_bytes(k, n);
        for (uint64_t o = 0; o < n; o += piece) {
            uint64_t len = n - o < piece ? n - o : piece;
            ck_assert_msg(ts_gguf_write_tensor_data(w, b + o, len, &err) == TS_OK, "%s", err.msg);
        }
        if (data_out)
            data_out[k] = b;
        else
            free(b);
    }
    ck_assert_msg(ts_gguf_writer_finish(w, &err) == TS_OK, "%s", err.msg);
    ts_gguf_writer_free(w);
    return path;
}

static ts_gguf *open_ok(const char *path)
{
    ts_gguf *g;
    ts_err err = {0};
    ck_assert_msg(ts_gguf_open(path, &g, &err) == TS_OK, "%s", err.msg);
    return g;
}

static void run_tensors(const ts_gguf *g, bool require, ts_verify_report *r)
{
    ts_verify_opts o;
    ts_verify_opts_init(&o);
    o.n_threads = 2;
    o.require_checksums = require;
    memset(r, 0, sizeof *r);
    ts_verify_tensors(g, &o, r);
}

START_TEST(checksum_round_trip)
{
    static const size_t pieces[] = {1 << 20, 7, 34};
    for (size_t p = 0; p < 3; p++) {
        uint8_t *data[N_SPECS];
        char *path = write_file("sums.gguf", true, p == 2, pieces[p], data);
        ts_gguf *g = open_ok(path);
        const char *why;
        bool stale;
        const uint64_t *stored = ts_verify_stored_checksums(g, &why, &stale);
        ck_assert_msg(stored != NULL, "no checksums: %s", why ? why : "absent");
        for (int k = 0; k < N_SPECS; k++) {
            ck_assert_uint_eq(stored[k], XXH3_64bits(data[k], g->tensors[k].t.nbytes));
            ck_assert_mem_eq(g->tensors[k].t.data, data[k], g->tensors[k].t.nbytes);
            free(data[k]);
        }
        /* stale copied keys are replaced, not kept, and go last */
        ck_assert_str_eq(g->kv[g->n_kv - 1].key, TS_GGUF_KEY_CHECKSUM_TENSORS);
        ck_assert_str_eq(ts_gguf_get_str(g, TS_GGUF_KEY_CHECKSUM_ALGO), "xxh3_64");
        uint64_t after;
        ck_assert(ts_gguf_get_u64(g, "test.after", &after) && after == 7);
        ts_verify_report r;
        run_tensors(g, true, &r);
        ck_assert_msg(ts_verify_passed(&r), "%s", r.checks[r.n_checks - 1].detail);
        ck_assert_int_eq(ts_verify_find(&r, "checksums")->status, TS_CHECK_PASS);
        ck_assert_int_eq(ts_verify_find(&r, "block_data")->status, TS_CHECK_PASS);
        ck_assert_uint_eq(r.n_tensors, 3);
        ts_gguf_close(g);
        free(path);
    }
}
END_TEST

/* Off, the writer writes no checksum keys and drops copied ones. */
START_TEST(checksums_off_and_absent)
{
    char *path = write_file("plain.gguf", false, true, 1 << 20, NULL);
    ts_gguf *g = open_ok(path);
    ck_assert_ptr_null(ts_gguf_find_kv(g, TS_GGUF_KEY_CHECKSUM_ALGO));
    ck_assert_ptr_null(ts_gguf_find_kv(g, TS_GGUF_KEY_CHECKSUM_TENSORS));
    ts_verify_report r;
    run_tensors(g, false, &r);
    ck_assert(ts_verify_passed(&r));
    ck_assert_int_eq(ts_verify_find(&r, "checksums")->status, TS_CHECK_SKIP);
    ck_assert(strstr(ts_verify_find(&r, "checksums")->detail, "not present"));
    run_tensors(g, true, &r);
    ck_assert(!ts_verify_passed(&r));
    ck_assert_int_eq(ts_verify_find(&r, "checksums")->status, TS_CHECK_FAIL);
    ts_gguf_close(g);
    free(path);
}
END_TEST

/* A copy of path with one byte changed (XOR mask) at tensor k's byte `at`. */
static char *damaged_copy(const char *path, const char *file, int k, uint64_t at, uint8_t mask)
{
    ts_gguf *g = open_ok(path);
    uint64_t off = g->data_offset + g->tensors[k].offset + at;
    ts_gguf_close(g);
    char *data;
    size_t n;
    ts_err err = {0};
    ck_assert(ts_read_small_file(path, 1 << 26, &data, &n, &err) == TS_OK);
    ck_assert_uint_lt(off, n);
    data[off] = (char)(data[off] ^ mask);
    char *out = tu_write_file(file, data, n);
    free(data);
    return out;
}

START_TEST(flipped_byte_detected)
{
    char *path = write_file("good.gguf", true, false, 1 << 20, NULL);
    char *bad = damaged_copy(path, "flipped.gguf", 2, 200, 0x04); /* q4_K quants, not a scale */
    ts_gguf *g = open_ok(bad);
    ts_verify_report r;
    run_tensors(g, false, &r);
    ck_assert(!ts_verify_passed(&r));
    const ts_check *c = ts_verify_find(&r, "checksums");
    ck_assert_int_eq(c->status, TS_CHECK_FAIL);
    ck_assert_uint_eq(c->n_failures, 1);
    ck_assert_msg(strstr(c->failures[0], "c.weight") != NULL, "%s", c->failures[0]);
    ck_assert(c->value == 1.0 && c->limit == 0.0);
    ck_assert_int_eq(ts_verify_find(&r, "block_data")->status, TS_CHECK_PASS);
    ts_gguf_close(g);
    free(bad);
    free(path);
}
END_TEST

/* A NaN d in block 1 of the q8_0 tensor and an infinite dmin in block 2 of
 * the q4_K one: block_data names both. */
START_TEST(nan_scale_detected)
{
    char *path = write_file("good.gguf", true, false, 1 << 20, NULL);
    char *p1 = damaged_copy(path, "nan1.gguf", 1, 34 + 1, 0x7E ^ 0x3C);      /* d 0x3C00 -> 0x7E00 */
    char *p2 = damaged_copy(p1, "nan2.gguf", 2, 2 * 144 + 3, 0x7C ^ 0x38); /* dmin 0x3800 -> 0x7C00 */
    ts_gguf *g = open_ok(p2);
    ts_verify_report r;
    run_tensors(g, false, &r);
    const ts_check *c = ts_verify_find(&r, "block_data");
    ck_assert_int_eq(c->status, TS_CHECK_FAIL);
    ck_assert_uint_eq(c->n_failures, 2);
    ck_assert_msg(strstr(c->failures[0], "b.weight (q8_0): block 1 d is NaN") != NULL, "%s", c->failures[0]);
    ck_assert_msg(strstr(c->failures[1], "c.weight (q4_K): block 2 dmin is infinite") != NULL, "%s", c->failures[1]);
    ck_assert_int_eq(ts_verify_find(&r, "checksums")->n_failures, 2);
    json_t *j = ts_verify_report_json(&r, p2, &(ts_verify_opts){.max_kld = NAN}, 1, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "result")), "fail");
    json_decref(j);
    ts_gguf_close(g);
    free(p1);
    free(p2);
    free(path);
}
END_TEST

/* Every block layout: a non-finite scale at its offset is found, finite ones are not. */
START_TEST(block_layouts)
{
    static const struct { ts_dtype type; uint16_t off; const char *field; } cases[] = {
        {TS_Q4_0, 0, "d"},     {TS_Q4_1, 2, "m"},      {TS_Q5_0, 0, "d"},     {TS_Q5_1, 0, "d"},
        {TS_Q8_0, 0, "d"},     {TS_Q2_K, 80, "d"},     {TS_Q2_K, 82, "dmin"}, {TS_Q3_K, 108, "d"},
        {TS_Q4_K, 2, "dmin"},  {TS_Q5_K, 0, "d"},      {TS_Q6_K, 208, "d"},   {TS_IQ4_NL, 0, "d"},
        {TS_IQ4_XS, 0, "d"},   {TS_IQ2_XXS, 0, "d"},   {TS_TQ1_0, 52, "d"},   {TS_TQ2_0, 64, "d"},
    };
    uint8_t buf[4 * 292];
    const char *field;
    bool nan;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ts_dtype_info *info = ts_dtype_get(cases[i].type);
        memset(buf, 0, sizeof buf);
        const uint64_t n = 3 * info->block_bytes;
        ck_assert_int_eq(ts_verify_block_data(cases[i].type, buf, n, &field, &nan), -1);
        buf[2 * info->block_bytes + cases[i].off + 1] = 0x7C; /* +Inf in block 2 */
        ck_assert_int_eq(ts_verify_block_data(cases[i].type, buf, n, &field, &nan), 2);
        ck_assert_str_eq(field, cases[i].field);
        ck_assert(!nan);
    }
    /* q8_K's d is an f32 */
    memset(buf, 0, sizeof buf);
    float f = NAN;
    memcpy(buf + 292, &f, 4);
    ck_assert_int_eq(ts_verify_block_data(TS_Q8_K, buf, 2 * 292, &field, &nan), 1);
    ck_assert(nan);
    /* mxfp4: E8M0 0xFF is NaN */
    memset(buf, 0, sizeof buf);
    buf[17] = 0xFF;
    ck_assert_int_eq(ts_verify_block_data(TS_MXFP4, buf, 34, &field, &nan), 1);
    ck_assert_str_eq(field, "e");
    /* iq1_m: the f16 scale is spread over the top nibbles of four u16 */
    memset(buf, 0, sizeof buf);
    ck_assert_int_eq(ts_verify_block_data(TS_IQ1_M, buf, 56, &field, &nan), -1);
    buf[48 + 5] = 0xC0; /* scales[2]'s top nibble: bits 8-11 of the scale (0x0C00) */
    buf[48 + 7] = 0x70; /* scales[3]'s top nibble: bits 12-15 (0x7000) -> 0x7C00, +Inf */
    ck_assert_int_eq(ts_verify_block_data(TS_IQ1_M, buf, 56, &field, &nan), 0);
    ck_assert(!nan);
    /* plain floats: each element */
    uint16_t h[4] = {0x3C00, 0xFC00, 0, 0};
    ck_assert_int_eq(ts_verify_block_data(TS_F16, h, sizeof h, &field, &nan), 1);
    ck_assert(!nan);
    ck_assert_str_eq(field, "value");
    uint16_t bf[3] = {0x3F80, 0, 0x7FC0};
    ck_assert_int_eq(ts_verify_block_data(TS_BF16, bf, sizeof bf, &field, &nan), 2);
    ck_assert(nan);
    float fl[3] = {1.0f, INFINITY, 0.0f};
    ck_assert_int_eq(ts_verify_block_data(TS_F32, fl, sizeof fl, &field, &nan), 1);
    int32_t ints[2] = {-1, 0x7FC00000};
    ck_assert_int_eq(ts_verify_block_data(TS_I32, ints, sizeof ints, &field, &nan), -1);
}
END_TEST

/* A copy of path with the first occurrence of `find` (n bytes) replaced by `repl`. */
static char *patched_copy(const char *path, const char *file, const void *find, const void *repl, size_t n)
{
    char *data;
    size_t size;
    ts_err err = {0};
    ck_assert(ts_read_small_file(path, 1 << 26, &data, &size, &err) == TS_OK);
    char *at = memmem(data, size, find, n);
    ck_assert_ptr_nonnull(at);
    memcpy(at, repl, n);
    char *out = tu_write_file(file, data, size);
    free(data);
    return out;
}

/* Keys present but wrong: fail, whatever --require-checksums says; keys
 * for another tensor table: stale, skipped unless --require-checksums. */
START_TEST(malformed_checksum_keys)
{
    char *path = write_file("good.gguf", true, false, 1 << 20, NULL);
    /* another algorithm name */
    char *p1 = patched_copy(path, "algo.gguf", "xxh3_64", "xxh3_32", 7);
    /* the array's element type UINT64 (10) -> INT64 (11): same size, file stays valid */
    const char key[] = TS_GGUF_KEY_CHECKSUM_TENSORS;
    uint8_t find[sizeof key - 1 + 8], repl[sizeof find];
    memcpy(find, key, sizeof key - 1);
    memcpy(find + sizeof key - 1, "\x09\0\0\0\x0a\0\0\0", 8);
    memcpy(repl, find, sizeof find);
    repl[sizeof key - 1 + 4] = 11;
    char *p2 = patched_copy(path, "elem.gguf", find, repl, sizeof find);
    const char *paths[] = {p1, p2}, *want[] = {"is not the string", "is not an array of UINT64"};
    for (int i = 0; i < 2; i++) {
        ts_gguf *g = open_ok(paths[i]);
        const char *why;
        bool stale;
        ck_assert_ptr_null(ts_verify_stored_checksums(g, &why, &stale));
        ck_assert_ptr_nonnull(why);
        ck_assert(!stale);
        ts_verify_report r;
        run_tensors(g, false, &r);
        const ts_check *c = ts_verify_find(&r, "checksums");
        ck_assert_int_eq(c->status, TS_CHECK_FAIL);
        ck_assert_msg(strstr(c->detail, want[i]) != NULL, "%s", c->detail);
        ts_gguf_close(g);
    }
    /* a renamed tensor: the checksums describe another tensor table (stale), not damaged data */
    char *p3 = patched_copy(path, "renamed.gguf", "a.weight", "z.weight", 8);
    ts_gguf *g = open_ok(p3);
    const char *why;
    bool stale;
    ck_assert_ptr_null(ts_verify_stored_checksums(g, &why, &stale));
    ck_assert(stale && !why);
    ts_verify_report r;
    run_tensors(g, false, &r);
    ck_assert_int_eq(ts_verify_find(&r, "checksums")->status, TS_CHECK_SKIP);
    ck_assert(strstr(ts_verify_find(&r, "checksums")->detail, "stale") != NULL);
    run_tensors(g, true, &r);
    ck_assert_int_eq(ts_verify_find(&r, "checksums")->status, TS_CHECK_FAIL);
    ts_gguf_close(g);
    free(p1);
    free(p2);
    free(p3);
    free(path);
}
END_TEST

/* ts_verify on inputs that are not models: a missing file and a truncated
 * one are errors (exit 2); a valid GGUF that is no model fails "model". */
START_TEST(verify_errors)
{
    ts_verify_opts o;
    ts_verify_opts_init(&o);
    ts_verify_report r = {0};
    ts_err err = {0};
    ck_assert_int_eq(ts_verify("/nonexistent/m.gguf", &o, &r, &err), TS_ERR_IO);
    ck_assert_uint_eq(r.n_checks, 1);
    ck_assert_int_eq(r.checks[0].status, TS_CHECK_FAIL);

    char *path = write_file("nomodel.gguf", true, false, 1 << 20, NULL);
    char *data;
    size_t n;
    ck_assert(ts_read_small_file(path, 1 << 26, &data, &n, &err) == TS_OK);
    char *cut = tu_write_file("cut.gguf", data, n - 100);
    free(data);
    memset(&r, 0, sizeof r);
    ck_assert_int_eq(ts_verify(cut, &o, &r, &err), TS_ERR_FORMAT);
    ck_assert_str_eq(r.checks[0].name, "gguf");

    memset(&r, 0, sizeof r);
    ck_assert_int_eq(ts_verify(path, &o, &r, &err), TS_OK);
    ck_assert_uint_eq(r.n_checks, 8);
    ck_assert_int_eq(ts_verify_find(&r, "checksums")->status, TS_CHECK_PASS);
    /* an architecture Tessera does not know: not checked, not failed */
    ck_assert_int_eq(ts_verify_find(&r, "model")->status, TS_CHECK_SKIP);
    ck_assert_int_eq(ts_verify_find(&r, "kld")->status, TS_CHECK_SKIP);
    ck_assert(ts_verify_passed(&r));

    /* gates asked for on a model that cannot run: they fail (not an input error) */
    o.base = tu_write_file("junk.kld", "not a base", 10);
    o.max_kld = 0.1;
    memset(&r, 0, sizeof r);
    ck_assert_int_eq(ts_verify(path, &o, &r, &err), TS_OK);
    ck_assert_int_eq(ts_verify_find(&r, "kld")->status, TS_CHECK_FAIL);
    ck_assert(!ts_verify_passed(&r));
    free((char *)o.base);
    free(cut);
    free(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("verify");
    TCase *tc = tcase_create("verify");
    tcase_add_test(tc, checksum_round_trip);
    tcase_add_test(tc, checksums_off_and_absent);
    tcase_add_test(tc, flipped_byte_detected);
    tcase_add_test(tc, nan_scale_detected);
    tcase_add_test(tc, block_layouts);
    tcase_add_test(tc, malformed_checksum_keys);
    tcase_add_test(tc, verify_errors);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
