/* GGUF reader and writer: round trips, writer misuse, and a table of
 * malformed files that must each be refused with a specific message. */
#define _GNU_SOURCE
#include "testutil.h"
#include "formats/gguf.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a byte builder for hand-made files ---- */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} buf;

static void bput(buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->b = realloc(b->b, b->cap);
        ck_assert_ptr_nonnull(b->b);
    }
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void bu8(buf *b, uint8_t v) { bput(b, &v, 1); }

static void bu32(buf *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        bu8(b, (uint8_t)(v >> (8 * i)));
}

static void bu64(buf *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        bu8(b, (uint8_t)(v >> (8 * i)));
}

static void bstr(buf *b, const char *s, size_t len)
{
    bu64(b, len);
    bput(b, s, len);
}

static void bkey(buf *b, const char *k) { bstr(b, k, strlen(k)); }

static void bpad(buf *b, size_t align)
{
    while (b->n % align)
        bu8(b, 0);
}

/* ---- the base file and its mutations ---- */

enum {
    OK_BASE, OK_V2, BAD_MAGIC, BAD_V0, BAD_V1, BAD_V4, BAD_BE, HUGE_NKV, HUGE_NT,
    KEY_PAST_END, STR_LIMIT, STR_PAST_END, ARR_N_OVERFLOW, ARR_STR_N_HUGE, UNKNOWN_TYPE,
    UNKNOWN_ELEM_TYPE, NESTED_ARRAY, DUP_KEY, EMPTY_KEY, KEY_NOT_UTF8, KEY_OVERLONG_UTF8,
    KEY_NUL, VALUE_NUL, ARR_STR_NUL, BAD_BOOL, ALIGN_ZERO, ALIGN_NPOT, ALIGN_TYPE,
    DUP_TENSOR, TNAME_NOT_UTF8, TNAME_LONG, TNAME_EMPTY, NDIMS_0, NDIMS_5, NE_OVERFLOW,
    NE_NEGATIVE, BYTES_OVERFLOW, TYPE_UNKNOWN, TYPE_REMOVED, ROW_NOT_BLOCK,
    OFFSET_MISALIGNED, OFFSET_PAST_END, OFFSET_WRAP, SIZE_PAST_END, OVERLAP,
};

static const float base_a[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* 6 key/values and 2 tensors ("a": f32 [8,2] at 0, "b": q8_0 [32] at 64),
 * alignment 32. *tensor_end: where the last tensor's bytes end. */
static void make(buf *b, int bad, size_t *tensor_end)
{
    memset(b, 0, sizeof *b);
    bput(b, bad == BAD_MAGIC ? "GGUV" : "GGUF", 4);
    bu32(b, bad == BAD_V0 ? 0 : bad == BAD_V1 ? 1 : bad == BAD_V4 ? 4 : bad == BAD_BE ? 0x03000000u
         : bad == OK_V2 ? 2 : 3);
    bu64(b, bad == HUGE_NT ? 1ull << 60 : 2);
    bu64(b, bad == HUGE_NKV ? UINT64_MAX / 2 : 6);

    if (bad == KEY_PAST_END) {
        bu64(b, 1u << 20);
        bput(b, "general.architecture", 20);
    } else if (bad == EMPTY_KEY) bstr(b, "", 0);
    else if (bad == KEY_NOT_UTF8) bstr(b, "general.\xff", 9);
    else if (bad == KEY_OVERLONG_UTF8) bstr(b, "general.\xc0\xaf", 10);
    else if (bad == KEY_NUL) bstr(b, "general.a\0b", 11);
    else bkey(b, "general.architecture");
    bu32(b, bad == UNKNOWN_TYPE ? 13 : TS_GGUF_STRING);
    if (bad == STR_LIMIT) {
        bu64(b, (1ull << 30) + 1);
        bput(b, "llama", 5);
    } else if (bad == STR_PAST_END) {
        bu64(b, 100000);
        bput(b, "llama", 5);
    } else if (bad == VALUE_NUL) bstr(b, "lla\0a", 5);
    else bstr(b, "llama", 5);

    bkey(b, "general.alignment");
    bu32(b, bad == ALIGN_TYPE ? TS_GGUF_INT32 : TS_GGUF_UINT32);
    bu32(b, bad == ALIGN_ZERO ? 0 : bad == ALIGN_NPOT ? 48 : 32);

    bkey(b, "test.arr_u32");
    bu32(b, TS_GGUF_ARRAY);
    if (bad == NESTED_ARRAY) {
        bu32(b, TS_GGUF_ARRAY);
        bu64(b, 1);
    }
    bu32(b, bad == UNKNOWN_ELEM_TYPE ? 99 : TS_GGUF_UINT32);
    bu64(b, bad == ARR_N_OVERFLOW ? (1ull << 62) + 1 : 3);
    bu32(b, 1); bu32(b, 2); bu32(b, 3);

    bkey(b, "test.arr_str");
    bu32(b, TS_GGUF_ARRAY);
    bu32(b, TS_GGUF_STRING);
    bu64(b, bad == ARR_STR_N_HUGE ? 1ull << 40 : 2);
    bstr(b, "a", 1);
    if (bad == ARR_STR_NUL) bstr(b, "b\0c", 3);
    else bstr(b, "bc", 2);

    bkey(b, bad == DUP_KEY ? "test.arr_str" : "test.flag");
    bu32(b, TS_GGUF_BOOL);
    bu8(b, bad == BAD_BOOL ? 2 : 1);

    bkey(b, "test.f");
    bu32(b, TS_GGUF_FLOAT32);
    bu32(b, 0x3f000000u); /* 0.5f */

    /* tensor a */
    char longname[65];
    memset(longname, 'x', 64);
    longname[64] = 0;
    if (bad == TNAME_NOT_UTF8) bstr(b, "\xe2\x82", 2);
    else if (bad == TNAME_LONG) bstr(b, longname, 64);
    else if (bad == TNAME_EMPTY) bstr(b, "", 0);
    else bstr(b, "a", 1);
    bu32(b, bad == NDIMS_0 ? 0 : bad == NDIMS_5 ? 5 : 2);
    if (bad == NE_OVERFLOW) { bu64(b, 1ull << 40); bu64(b, 1ull << 40); }
    else if (bad == NE_NEGATIVE) { bu64(b, 8); bu64(b, (uint64_t)-2); }
    else if (bad == BYTES_OVERFLOW) { bu64(b, 1ull << 62); bu64(b, 1); }
    else { bu64(b, 8); bu64(b, 2); }
    bu32(b, bad == TYPE_UNKNOWN ? 1000 : bad == TYPE_REMOVED ? 4 : TS_F32);
    bu64(b, 0);

    /* tensor b */
    bstr(b, bad == DUP_TENSOR ? "a" : "b", 1);
    bu32(b, 1);
    bu64(b, bad == ROW_NOT_BLOCK ? 16 : 32);
    bu32(b, TS_Q8_0);
    bu64(b, bad == OFFSET_MISALIGNED ? 80 : bad == OFFSET_PAST_END ? 1ull << 40 : bad == OFFSET_WRAP ? UINT64_MAX - 31
         : bad == SIZE_PAST_END ? 96 : bad == OVERLAP ? 32 : 64);

    bpad(b, 32);
    size_t data = b->n;
    bput(b, base_a, sizeof base_a);
    for (int i = 0; i < 34; i++)
        bu8(b, (uint8_t)(100 + i));
    if (tensor_end)
        *tensor_end = b->n;
    bpad(b, 32);
    ck_assert_uint_eq(b->n - data, 128);
}

static const struct {
    int bad;
    const char *want; /* substring of the error message */
} bad_table[] = {
    {BAD_MAGIC, "magic"}, {BAD_V0, "version 0"}, {BAD_V1, "version 1"}, {BAD_V4, "version 4"},
    {BAD_BE, "big-endian"}, {HUGE_NKV, "n_kv"}, {HUGE_NT, "n_tensors"},
    {KEY_PAST_END, "past the end"}, {STR_LIMIT, "1 GiB limit"}, {STR_PAST_END, "past the end"},
    {ARR_N_OVERFLOW, "cannot fit"}, {ARR_STR_N_HUGE, "cannot fit"}, {UNKNOWN_TYPE, "unknown value type 13"},
    {UNKNOWN_ELEM_TYPE, "unknown value type 99"}, {NESTED_ARRAY, "nested array"},
    {DUP_KEY, "duplicate key 'test.arr_str'"}, {EMPTY_KEY, "key is empty"}, {KEY_NOT_UTF8, "UTF-8"},
    {KEY_OVERLONG_UTF8, "UTF-8"}, {KEY_NUL, "NUL"}, {VALUE_NUL, "NUL"}, {ARR_STR_NUL, "NUL"},
    {BAD_BOOL, "neither 0 nor 1"}, {ALIGN_ZERO, "power of two"}, {ALIGN_NPOT, "48 is not a nonzero power"},
    {ALIGN_TYPE, "must be UINT32"}, {DUP_TENSOR, "duplicate tensor name 'a'"}, {TNAME_NOT_UTF8, "UTF-8"},
    {TNAME_LONG, "GGML_MAX_NAME"}, {TNAME_EMPTY, "tensor name is empty"}, {NDIMS_0, "n_dims 0"},
    {NDIMS_5, "n_dims 5"}, {NE_OVERFLOW, "element count overflows"}, {NE_NEGATIVE, "negative"},
    {BYTES_OVERFLOW, "byte size overflows"}, {TYPE_UNKNOWN, "unknown ggml type 1000"},
    {TYPE_REMOVED, "unknown ggml type 4"}, {ROW_NOT_BLOCK, "block size"},
    {OFFSET_MISALIGNED, "not a multiple of the alignment"}, {OFFSET_PAST_END, "past the end"},
    {OFFSET_WRAP, "past the end"}, {SIZE_PAST_END, "past the end"}, {OVERLAP, "overlap"},
};

START_TEST(base_file_reads)
{
    for (int v = OK_BASE; v <= OK_V2; v++) {
        buf b;
        make(&b, v, NULL);
        ts_gguf *g;
        ts_err err = {0};
        ck_assert_msg(ts_gguf_open_memory(b.b, b.n, "base", &g, &err) == TS_OK, "%s", err.msg);
        ck_assert_uint_eq(g->version, v == OK_V2 ? 2 : 3);
        ck_assert_str_eq(ts_gguf_get_str(g, "general.architecture"), "llama");
        ck_assert_uint_eq(g->alignment, 32);
        ck_assert_uint_eq(g->n_kv, 6);
        const ts_gguf_kv *kv = ts_gguf_find_kv(g, "test.arr_str");
        ck_assert_int_eq(kv->value.arr.elem_type, TS_GGUF_STRING);
        const ts_gguf_string *s = kv->value.arr.data;
        ck_assert_str_eq(s[1].s, "bc");
        ck_assert_uint_eq(s[1].len, 2);
        bool flag = false;
        ck_assert(ts_gguf_get_bool(g, "test.flag", &flag) && flag);
        ck_assert_uint_eq(g->n_tensors, 2);
        ck_assert_uint_eq(g->data_offset % 32, 0);
        const ts_tensor *a = &g->tensors[0].t;
        ck_assert_int_eq(a->ne[0], 8);
        ck_assert_int_eq(a->ne[1], 2);
        ck_assert_int_eq(a->ne[2], 1);
        ck_assert_uint_eq(a->nbytes, 64);
        ck_assert_mem_eq(a->data, base_a, 64);
        ck_assert_int_eq(ts_gguf_find_tensor(g, "b"), 1);
        ck_assert_uint_eq(g->tensors[1].t.nbytes, 34);
        ck_assert_uint_eq(((const uint8_t *)g->tensors[1].t.data)[0], 100);
        ts_gguf_close(g);
        free(b.b);
    }
}
END_TEST

START_TEST(bad_input_table)
{
    for (size_t i = 0; i < sizeof bad_table / sizeof bad_table[0]; i++) {
        buf b;
        make(&b, bad_table[i].bad, NULL);
        ts_gguf *g = NULL;
        ts_err err = {0};
        ts_status st = ts_gguf_open_memory(b.b, b.n, "bad.gguf", &g, &err);
        ck_assert_msg(st != TS_OK, "case %d (%s) was accepted", bad_table[i].bad, bad_table[i].want);
        ck_assert_ptr_null(g);
        ck_assert_msg(strstr(err.msg, bad_table[i].want) != NULL, "case %d: expected '%s' in: %s",
                      bad_table[i].bad, bad_table[i].want, err.msg);
        ck_assert_msg(strstr(err.msg, "bad.gguf") != NULL, "message names the file: %s", err.msg);
        free(b.b);
    }
}
END_TEST

/* Every prefix shorter than the end of the last tensor is refused; longer
 * prefixes only lose trailing padding and stay valid. */
START_TEST(truncation_at_every_offset)
{
    buf b;
    size_t end;
    make(&b, OK_BASE, &end);
    for (size_t len = 0; len < b.n; len++) {
        uint8_t *copy = malloc(len + 1); /* exact size so ASan sees any over-read */
        memcpy(copy, b.b, len);
        ts_gguf *g = NULL;
        ts_err err = {0};
        ts_status st = ts_gguf_open_memory(len ? copy : NULL, len, "cut", &g, &err);
        if (len < end) {
            ck_assert_msg(st != TS_OK, "prefix of %zu bytes accepted", len);
            ck_assert(err.msg[0] != 0);
        } else {
            ck_assert_msg(st == TS_OK, "prefix of %zu bytes refused: %s", len, err.msg);
            ts_gguf_close(g);
        }
        free(copy);
    }
    free(b.b);
}
END_TEST

/* Hashing keeps duplicate detection linear; make sure it still finds a late duplicate. */
START_TEST(many_keys_late_duplicate)
{
    for (int dup = 0; dup < 2; dup++) {
        buf b = {0};
        bput(&b, "GGUF", 4);
        bu32(&b, 3);
        bu64(&b, 0);
        bu64(&b, 301);
        char key[32];
        for (int i = 0; i < 301; i++) {
            snprintf(key, sizeof key, "k.%d", i == 300 && dup ? 17 : i);
            bkey(&b, key);
            bu32(&b, TS_GGUF_INT32);
            bu32(&b, (uint32_t)i);
        }
        ts_gguf *g = NULL;
        ts_err err = {0};
        ts_status st = ts_gguf_open_memory(b.b, b.n, "many", &g, &err);
        if (dup) {
            ck_assert_int_ne(st, TS_OK);
            ck_assert_msg(strstr(err.msg, "duplicate key 'k.17'") != NULL, "%s", err.msg);
        } else {
            ck_assert_msg(st == TS_OK, "%s", err.msg);
            int64_t v;
            ck_assert(ts_gguf_get_i64(g, "k.250", &v) && v == 250);
            ck_assert_ptr_null(ts_gguf_find_kv(g, "k.301"));
            ts_gguf_close(g);
        }
        free(b.b);
    }
}
END_TEST

/* ---- writer ---- */

static char *out_path(const char *name)
{
    char *p;
    ck_assert(asprintf(&p, "%s/%s", tu_tmpdir(), name) > 0);
    return p;
}

static int temp_files_left(void)
{
    int n = 0;
    DIR *d = opendir(tu_tmpdir());
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

static void read_all(const char *path, buf *b)
{
    char *data;
    size_t n;
    ts_err err = {0};
    ck_assert_msg(ts_read_small_file(path, 1 << 26, &data, &n, &err) == TS_OK, "%s", err.msg);
    b->b = (uint8_t *)data;
    b->n = n;
}

/* The writer lays out the base file exactly as built by hand from the spec
 * (which is also gguf-py's layout). */
START_TEST(writer_matches_hand_built_layout)
{
    ts_gguf_writer *w;
    ts_err err = {0};
    ck_assert_int_eq(ts_gguf_writer_new(&w, &err), TS_OK);
    uint32_t u[3] = {1, 2, 3};
    const char *strs[2] = {"a", "bc"};
    ck_assert_int_eq(ts_gguf_set_str(w, "general.architecture", "llama"), TS_OK);
    ck_assert_int_eq(ts_gguf_set_u32(w, "general.alignment", 32), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr(w, "test.arr_u32", TS_GGUF_UINT32, u, 3), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr_str(w, "test.arr_str", strs, 2), TS_OK);
    ck_assert_int_eq(ts_gguf_set_bool(w, "test.flag", true), TS_OK);
    ck_assert_int_eq(ts_gguf_set_f32(w, "test.f", 0.5f), TS_OK);
    int64_t ne_a[2] = {8, 2}, ne_b[1] = {32};
    ck_assert_int_eq(ts_gguf_add_tensor(w, "a", TS_F32, 2, ne_a, &err), TS_OK);
    ck_assert_int_eq(ts_gguf_add_tensor(w, "b", TS_Q8_0, 1, ne_b, &err), TS_OK);
    ck_assert_uint_eq(ts_gguf_writer_tensor_bytes(w, 1), 34);
    char *path = out_path("layout.gguf");
    ck_assert_msg(ts_gguf_writer_begin(w, path, NULL, &err) == TS_OK, "%s", err.msg);
    uint8_t qb[34];
    for (int i = 0; i < 34; i++)
        qb[i] = (uint8_t)(100 + i);
    ck_assert_int_eq(ts_gguf_write_tensor_data(w, base_a, sizeof base_a, &err), TS_OK);
    ck_assert_int_eq(ts_gguf_write_tensor_data(w, qb, sizeof qb, &err), TS_OK);
    ck_assert_msg(ts_gguf_writer_finish(w, &err) == TS_OK, "%s", err.msg);
    ts_gguf_writer_free(w);
    buf want, got;
    make(&want, OK_BASE, NULL);
    read_all(path, &got);
    ck_assert_uint_eq(got.n, want.n);
    ck_assert_mem_eq(got.b, want.b, want.n);
    free(want.b);
    free(got.b);
    free(path);
}
END_TEST

static void set_all_types(ts_gguf_writer *w)
{
    ck_assert_int_eq(ts_gguf_set_u8(w, "v.u8", 200), TS_OK);
    ck_assert_int_eq(ts_gguf_set_i8(w, "v.i8", -5), TS_OK);
    ck_assert_int_eq(ts_gguf_set_u16(w, "v.u16", 60000), TS_OK);
    ck_assert_int_eq(ts_gguf_set_i16(w, "v.i16", -300), TS_OK);
    ck_assert_int_eq(ts_gguf_set_u32(w, "v.u32", 4000000000u), TS_OK);
    ck_assert_int_eq(ts_gguf_set_i32(w, "v.i32", -2000000000), TS_OK);
    ck_assert_int_eq(ts_gguf_set_u64(w, "v.u64", (1ull << 63) + 5), TS_OK);
    ck_assert_int_eq(ts_gguf_set_i64(w, "v.i64", INT64_MIN), TS_OK);
    ck_assert_int_eq(ts_gguf_set_f32(w, "v.f32", 1.5f), TS_OK);
    ck_assert_int_eq(ts_gguf_set_f64(w, "v.f64", -2.25), TS_OK);
    ck_assert_int_eq(ts_gguf_set_bool(w, "v.bool", true), TS_OK);
    ck_assert_int_eq(ts_gguf_set_str(w, "v.str", "h\xc3\xa9llo"), TS_OK);
    uint8_t a_u8[3] = {1, 2, 255};
    int8_t a_i8[3] = {-1, 0, 127};
    uint16_t a_u16[3] = {1, 2, 65535};
    int16_t a_i16[3] = {-32768, 0, 32767};
    uint32_t a_u32[3] = {1, 2, 0xFFFFFFFFu};
    int32_t a_i32[3] = {INT32_MIN, 0, INT32_MAX};
    uint64_t a_u64[3] = {1, 2, UINT64_MAX};
    int64_t a_i64[3] = {INT64_MIN, 0, INT64_MAX};
    float a_f32[3] = {0.25f, -1e30f, 3.0f};
    double a_f64[3] = {0.125, -1e300, 3.0};
    bool a_bool[3] = {true, false, true};
    const char *a_str[4] = {"", "x", "\xc3\xbcn\xc3\xaf", "<0x0A>"};
    ck_assert_int_eq(ts_gguf_set_arr(w, "a.u8", TS_GGUF_UINT8, a_u8, 3), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr(w, "a.i8", TS_GGUF_INT8, a_i8, 3), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr(w, "a.u16", TS_GGUF_UINT16, a_u16, 3), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr(w, "a.i16", TS_GGUF_INT16, a_i16, 3), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr(w, "a.u32", TS_GGUF_UINT32, a_u32, 3), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr(w, "a.i32", TS_GGUF_INT32, a_i32, 3), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr(w, "a.u64", TS_GGUF_UINT64, a_u64, 3), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr(w, "a.i64", TS_GGUF_INT64, a_i64, 3), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr(w, "a.f32", TS_GGUF_FLOAT32, a_f32, 3), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr(w, "a.f64", TS_GGUF_FLOAT64, a_f64, 3), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr(w, "a.bool", TS_GGUF_BOOL, a_bool, 3), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr(w, "a.empty", TS_GGUF_INT32, NULL, 0), TS_OK);
    ck_assert_int_eq(ts_gguf_set_arr_str(w, "a.str", a_str, 4), TS_OK);
}

static void check_array(const ts_gguf *g, const char *key, ts_gguf_type et, const void *want, size_t bytes)
{
    const ts_gguf_kv *kv = ts_gguf_find_kv(g, key);
    ck_assert_ptr_nonnull(kv);
    ck_assert_int_eq(kv->value.type, TS_GGUF_ARRAY);
    ck_assert_int_eq(kv->value.arr.elem_type, et);
    ck_assert_uint_eq(kv->value.arr.n, 3);
    ck_assert_mem_eq(kv->value.arr.data, want, bytes);
}

static void check_all_types(const ts_gguf *g)
{
    uint64_t u;
    int64_t i;
    double f;
    bool b;
    ck_assert(ts_gguf_get_u64(g, "v.u8", &u) && u == 200);
    ck_assert(!ts_gguf_get_u64(g, "v.i8", &u)); /* negative does not fit */
    ck_assert(ts_gguf_get_i64(g, "v.i8", &i) && i == -5);
    ck_assert(ts_gguf_get_u64(g, "v.u16", &u) && u == 60000);
    ck_assert(ts_gguf_get_i64(g, "v.i16", &i) && i == -300);
    ck_assert(ts_gguf_get_u64(g, "v.u32", &u) && u == 4000000000u);
    ck_assert(ts_gguf_get_i64(g, "v.i32", &i) && i == -2000000000);
    ck_assert(ts_gguf_get_u64(g, "v.u64", &u) && u == (1ull << 63) + 5);
    ck_assert(!ts_gguf_get_i64(g, "v.u64", &i)); /* too large for int64 */
    ck_assert(ts_gguf_get_i64(g, "v.i64", &i) && i == INT64_MIN);
    ck_assert(ts_gguf_get_f64(g, "v.f32", &f) && f == 1.5);
    ck_assert(ts_gguf_get_f64(g, "v.f64", &f) && f == -2.25);
    ck_assert(!ts_gguf_get_f64(g, "v.u8", &f));
    ck_assert(ts_gguf_get_bool(g, "v.bool", &b) && b);
    ck_assert(!ts_gguf_get_bool(g, "v.u8", &b));
    ck_assert_str_eq(ts_gguf_get_str(g, "v.str"), "h\xc3\xa9llo");
    ck_assert_ptr_null(ts_gguf_get_str(g, "v.u8"));
    ck_assert(!ts_gguf_get_u64(g, "missing", &u));
    ck_assert_str_eq(ts_gguf_type_name(ts_gguf_find_kv(g, "v.f64")->value.type), "f64");

    uint8_t a_u8[3] = {1, 2, 255};
    int16_t a_i16[3] = {-32768, 0, 32767};
    uint64_t a_u64[3] = {1, 2, UINT64_MAX};
    int64_t a_i64[3] = {INT64_MIN, 0, INT64_MAX};
    float a_f32[3] = {0.25f, -1e30f, 3.0f};
    double a_f64[3] = {0.125, -1e300, 3.0};
    int32_t a_i32[3] = {INT32_MIN, 0, INT32_MAX};
    bool a_bool[3] = {true, false, true};
    check_array(g, "a.u8", TS_GGUF_UINT8, a_u8, sizeof a_u8);
    check_array(g, "a.i16", TS_GGUF_INT16, a_i16, sizeof a_i16);
    check_array(g, "a.i32", TS_GGUF_INT32, a_i32, sizeof a_i32);
    check_array(g, "a.u64", TS_GGUF_UINT64, a_u64, sizeof a_u64);
    check_array(g, "a.i64", TS_GGUF_INT64, a_i64, sizeof a_i64);
    check_array(g, "a.f32", TS_GGUF_FLOAT32, a_f32, sizeof a_f32);
    check_array(g, "a.f64", TS_GGUF_FLOAT64, a_f64, sizeof a_f64);
    check_array(g, "a.bool", TS_GGUF_BOOL, a_bool, sizeof a_bool);
    const char *names[] = {"a.i8", "a.u16", "a.u32"};
    for (int k = 0; k < 3; k++)
        ck_assert_uint_eq(ts_gguf_find_kv(g, names[k])->value.arr.n, 3);
    ck_assert_uint_eq(ts_gguf_find_kv(g, "a.empty")->value.arr.n, 0);
    const ts_gguf_kv *s = ts_gguf_find_kv(g, "a.str");
    ck_assert_uint_eq(s->value.arr.n, 4);
    const ts_gguf_string *ss = s->value.arr.data;
    ck_assert_str_eq(ss[0].s, "");
    ck_assert_str_eq(ss[2].s, "\xc3\xbcn\xc3\xaf");
    ck_assert_uint_eq(ss[2].len, 5);
    ck_assert_str_eq(ss[3].s, "<0x0A>");
}

typedef struct {
    const char *name;
    ts_dtype type;
    int n_dims;
    int64_t ne[4];
} tspec;

static const tspec tensors[] = {
    {"t1d.f32", TS_F32, 1, {7}},
    {"t2d.f16", TS_F16, 2, {5, 3}},
    {"empty", TS_F32, 2, {0, 4}},
    {"t3d.q4_K", TS_Q4_K, 3, {256, 2, 2}},
    {"t4d.q8_0", TS_Q8_0, 4, {32, 1, 2, 3}},
    {"bf16", TS_BF16, 1, {3}},
    {"i32", TS_I32, 2, {2, 2}},
    {"experts.mxfp4", TS_MXFP4, 3, {32, 2, 4}},
    {"q6k", TS_Q6_K, 2, {256, 3}},
};
#define N_TENSORS (sizeof tensors / sizeof tensors[0])

static uint8_t pattern(size_t t, uint64_t i) { return (uint8_t)(t * 31 + i * 7 + (i >> 8)); }

/* Writes every value type and the tensors above; tensor 3 in odd-sized chunks. */
static void write_full(const char *path, uint32_t alignment)
{
    ts_gguf_writer *w;
    ts_err err = {0};
    ck_assert_int_eq(ts_gguf_writer_new(&w, &err), TS_OK);
    ck_assert_int_eq(ts_gguf_set_str(w, "general.architecture", "test"), TS_OK);
    set_all_types(w);
    ck_assert_int_eq(ts_gguf_set_alignment(w, alignment), TS_OK);
    for (size_t t = 0; t < N_TENSORS; t++)
        ck_assert_msg(ts_gguf_add_tensor(w, tensors[t].name, tensors[t].type, tensors[t].n_dims, tensors[t].ne,
                                         &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(ts_gguf_writer_n_tensors(w), N_TENSORS);
    ck_assert_msg(ts_gguf_writer_begin(w, path, NULL, &err) == TS_OK, "%s", err.msg);
    for (size_t t = 0; t < N_TENSORS; t++) {
        uint64_t n = ts_gguf_writer_tensor_bytes(w, t);
        uint8_t *d = malloc(n + 1);
        for (uint64_t i = 0; i < n; i++)
            d[i] = pattern(t, i);
        if (t == 3) {
            uint64_t cuts[] = {1, 7, n - 8};
            uint64_t off = 0;
            for (int c = 0; c < 3; c++) {
                ck_assert_msg(ts_gguf_write_tensor_data(w, d + off, cuts[c], &err) == TS_OK, "%s", err.msg);
                off += cuts[c];
            }
        } else {
            ck_assert_msg(ts_gguf_write_tensor_data(w, d, n, &err) == TS_OK, "%s", err.msg);
        }
        free(d);
    }
    ck_assert_msg(ts_gguf_writer_finish(w, &err) == TS_OK, "%s", err.msg);
    ts_gguf_writer_free(w);
}

static void check_full(const ts_gguf *g, uint64_t alignment)
{
    check_all_types(g);
    ck_assert_uint_eq(g->alignment, alignment);
    ck_assert_uint_eq(g->data_offset % alignment, 0);
    ck_assert_uint_eq(g->n_tensors, N_TENSORS);
    for (size_t t = 0; t < N_TENSORS; t++) {
        ck_assert_int_eq(ts_gguf_find_tensor(g, tensors[t].name), (int64_t)t);
        const ts_gguf_tensor *gt = &g->tensors[t];
        ck_assert_uint_eq(gt->offset % alignment, 0);
        ck_assert_int_eq(gt->t.dtype, tensors[t].type);
        ck_assert_int_eq(gt->t.n_dims, tensors[t].n_dims);
        for (int j = 0; j < 4; j++)
            ck_assert_int_eq(gt->t.ne[j], j < tensors[t].n_dims ? tensors[t].ne[j] : 1);
        const uint8_t *d = gt->t.data;
        for (uint64_t i = 0; i < gt->t.nbytes; i++)
            ck_assert_uint_eq(d[i], pattern(t, i));
    }
    ck_assert_uint_eq(g->tensors[3].t.nbytes, 4 * 144);
    ck_assert_uint_eq(g->tensors[7].t.nbytes, 8 * 17);
    ck_assert_int_eq(ts_gguf_find_tensor(g, "nope"), -1);
}

START_TEST(round_trip_all_types)
{
    uint32_t aligns[] = {32, 64, 8};
    for (int a = 0; a < 3; a++) {
        char name[32];
        snprintf(name, sizeof name, "full%u.gguf", aligns[a]);
        char *path = out_path(name);
        write_full(path, aligns[a]);
        ts_gguf *g;
        ts_err err = {0};
        ck_assert_msg(ts_gguf_open(path, &g, &err) == TS_OK, "%s", err.msg);
        check_full(g, aligns[a]);
        ck_assert_int_eq(ts_gguf_find_kv(g, "general.alignment") != NULL, aligns[a] != 32);
        ts_gguf_close(g);
        free(path);
    }
    ck_assert_int_eq(temp_files_left(), 0);
}
END_TEST

/* Copying every key through ts_gguf_set_value and the same tensors reproduces the file. */
START_TEST(copy_through_set_value)
{
    char *p1 = out_path("copy1.gguf"), *p2 = out_path("copy2.gguf");
    write_full(p1, 64);
    ts_gguf *g;
    ts_err err = {0};
    ck_assert_int_eq(ts_gguf_open(p1, &g, &err), TS_OK);
    ts_gguf_writer *w;
    ck_assert_int_eq(ts_gguf_writer_new(&w, &err), TS_OK);
    for (uint64_t i = 0; i < g->n_kv; i++)
        ck_assert_int_eq(ts_gguf_set_value(w, g->kv[i].key, &g->kv[i].value), TS_OK);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        ck_assert_int_eq(ts_gguf_add_tensor(w, g->tensors[i].t.name, g->tensors[i].t.dtype, g->tensors[i].t.n_dims,
                                            g->tensors[i].t.ne, &err), TS_OK);
    const char *inputs[] = {p1, NULL};
    ck_assert_int_ne(ts_gguf_writer_begin(w, p1, inputs, &err), TS_OK); /* never overwrite the input */
    ck_assert(strstr(err.msg, "refusing to overwrite") != NULL);
    ck_assert_msg(ts_gguf_writer_begin(w, p2, inputs, &err) == TS_OK, "%s", err.msg);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        ck_assert_int_eq(ts_gguf_write_tensor_data(w, g->tensors[i].t.data, g->tensors[i].t.nbytes, &err), TS_OK);
    ck_assert_int_eq(ts_gguf_writer_finish(w, &err), TS_OK);
    ts_gguf_writer_free(w);
    ts_gguf_close(g);
    buf a, b;
    read_all(p1, &a);
    read_all(p2, &b);
    ck_assert_uint_eq(a.n, b.n);
    ck_assert_mem_eq(a.b, b.b, a.n);
    free(a.b);
    free(b.b);
    free(p1);
    free(p2);
}
END_TEST

START_TEST(key_replacement_and_alignment)
{
    ts_gguf_writer *w;
    ts_err err = {0};
    ck_assert_int_eq(ts_gguf_writer_new(&w, &err), TS_OK);
    ck_assert_int_eq(ts_gguf_set_u32(w, "k", 1), TS_OK);
    ck_assert_int_eq(ts_gguf_set_str(w, "m", "mid"), TS_OK);
    ck_assert_int_eq(ts_gguf_set_str(w, "z", "last"), TS_OK);
    ck_assert_int_eq(ts_gguf_set_str(w, "k", "two"), TS_OK); /* replaced in place */
    ts_gguf_writer_remove(w, "z");
    ck_assert(!ts_gguf_writer_has_key(w, "z"));
    ck_assert(ts_gguf_writer_has_key(w, "m"));
    ck_assert_int_eq(ts_gguf_set_alignment(w, 3), TS_ERR_ARG);
    ck_assert_int_eq(ts_gguf_set_alignment(w, 0), TS_ERR_ARG);
    ck_assert_int_eq(ts_gguf_set_alignment(w, 128), TS_OK);
    ck_assert(ts_gguf_writer_has_key(w, "general.alignment"));
    ck_assert_int_eq(ts_gguf_set_alignment(w, 32), TS_OK);
    ck_assert(!ts_gguf_writer_has_key(w, "general.alignment"));
    ck_assert_int_eq(ts_gguf_set_alignment(w, 256), TS_OK);
    int64_t ne[1] = {5};
    ck_assert_int_eq(ts_gguf_add_tensor(w, "t", TS_F32, 1, ne, &err), TS_OK);
    char *path = out_path("replace.gguf");
    ck_assert_int_eq(ts_gguf_writer_begin(w, path, NULL, &err), TS_OK);
    ck_assert_int_eq(ts_gguf_set_u8(w, "late", 1), TS_ERR_ARG); /* header already written */
    ck_assert_int_ne(ts_gguf_add_tensor(w, "late", TS_F32, 1, ne, &err), TS_OK);
    ck_assert_int_ne(ts_gguf_writer_begin(w, path, NULL, &err), TS_OK);
    float d[5] = {1, 2, 3, 4, 5};
    ck_assert_int_eq(ts_gguf_write_tensor_data(w, d, sizeof d, &err), TS_OK);
    ck_assert_int_eq(ts_gguf_writer_finish(w, &err), TS_OK);
    ts_gguf_writer_free(w);
    ts_gguf *g;
    ck_assert_int_eq(ts_gguf_open(path, &g, &err), TS_OK);
    ck_assert_uint_eq(g->n_kv, 3);
    ck_assert_str_eq(g->kv[0].key, "k");
    ck_assert_str_eq(ts_gguf_get_str(g, "k"), "two");
    ck_assert_str_eq(g->kv[1].key, "m");
    ck_assert_uint_eq(g->alignment, 256);
    ck_assert_uint_eq(g->data_offset, 256);
    ck_assert_uint_eq(g->file.size, 512);
    ts_gguf_close(g);
    free(path);
}
END_TEST

/* A writer with tensors "x" (f32 [4]) and "y" (f32 [2]), begun on path. */
static ts_gguf_writer *begun(const char *path)
{
    ts_gguf_writer *w;
    ts_err err = {0};
    ck_assert_int_eq(ts_gguf_writer_new(&w, &err), TS_OK);
    int64_t n4[1] = {4}, n2[1] = {2};
    ck_assert_int_eq(ts_gguf_add_tensor(w, "x", TS_F32, 1, n4, &err), TS_OK);
    ck_assert_int_eq(ts_gguf_add_tensor(w, "y", TS_F32, 1, n2, &err), TS_OK);
    ck_assert_int_eq(ts_gguf_writer_begin(w, path, NULL, &err), TS_OK);
    return w;
}

START_TEST(writer_errors_leave_no_file)
{
    char *path = out_path("errors.gguf");
    float d[8] = {0};
    ts_err err = {0};

    ts_gguf_writer *w = begun(path); /* more bytes than the tensor has */
    ck_assert_int_ne(ts_gguf_write_tensor_data(w, d, 20, &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "'x': 20 bytes given but only 16") != NULL, "%s", err.msg);
    ck_assert_int_ne(ts_gguf_write_tensor_data(w, d, 4, &err), TS_OK); /* poisoned */
    ck_assert_int_ne(ts_gguf_writer_finish(w, &err), TS_OK);
    ts_gguf_writer_free(w);
    ck_assert(!ts_file_exists(path));
    ck_assert_int_eq(temp_files_left(), 0);

    w = begun(path); /* one tensor too many */
    ck_assert_int_eq(ts_gguf_write_tensor_data(w, d, 16, &err), TS_OK);
    ck_assert_int_eq(ts_gguf_write_tensor_data(w, d, 8, &err), TS_OK);
    ck_assert_int_ne(ts_gguf_write_tensor_data(w, d, 4, &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "all 2 tensors are already written") != NULL, "%s", err.msg);
    ck_assert_int_ne(ts_gguf_writer_finish(w, &err), TS_OK);
    ts_gguf_writer_free(w);
    ck_assert(!ts_file_exists(path));

    w = begun(path); /* finish before every tensor is written */
    ck_assert_int_eq(ts_gguf_write_tensor_data(w, d, 16, &err), TS_OK);
    ck_assert_int_eq(ts_gguf_write_tensor_data(w, d, 4, &err), TS_OK);
    ck_assert_int_ne(ts_gguf_writer_finish(w, &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "tensor 'y' (2 of 2) has 4 of its 8 bytes written") != NULL, "%s", err.msg);
    ts_gguf_writer_free(w);
    ck_assert(!ts_file_exists(path));

    w = begun(path); /* free without finish */
    ck_assert_int_eq(ts_gguf_write_tensor_data(w, d, 16, &err), TS_OK);
    ck_assert_int_eq(temp_files_left(), 1);
    ts_gguf_writer_free(w);
    ck_assert(!ts_file_exists(path));
    ck_assert_int_eq(temp_files_left(), 0);

    /* a bad general.alignment set by hand stops begin before any file exists */
    ck_assert_int_eq(ts_gguf_writer_new(&w, &err), TS_OK);
    ck_assert_int_eq(ts_gguf_set_i32(w, "general.alignment", 64), TS_OK);
    ck_assert_int_ne(ts_gguf_writer_begin(w, path, NULL, &err), TS_OK);
    ck_assert(strstr(err.msg, "general.alignment must be a UINT32") != NULL);
    ck_assert_int_ne(ts_gguf_write_tensor_data(w, d, 4, &err), TS_OK);
    ts_gguf_writer_free(w);
    ck_assert(!ts_file_exists(path));
    ck_assert_int_eq(temp_files_left(), 0);
    free(path);
}
END_TEST

START_TEST(writer_refuses_bad_arguments)
{
    ts_gguf_writer *w;
    ts_err err = {0};
    ck_assert_int_eq(ts_gguf_writer_new(&w, &err), TS_OK);
    int64_t ne[4] = {32, 2, 1, 1};
    ck_assert_int_eq(ts_gguf_add_tensor(w, "t", TS_Q8_0, 2, ne, &err), TS_OK);
    ck_assert_int_ne(ts_gguf_add_tensor(w, "t", TS_F32, 2, ne, &err), TS_OK);
    ck_assert(strstr(err.msg, "duplicate tensor name 't'") != NULL);
    char name[65];
    memset(name, 'n', 64);
    name[64] = 0;
    ck_assert_int_ne(ts_gguf_add_tensor(w, name, TS_F32, 2, ne, &err), TS_OK);
    ck_assert(strstr(err.msg, "GGML_MAX_NAME") != NULL);
    name[63] = 0; /* 63 bytes is the longest allowed */
    ck_assert_int_eq(ts_gguf_add_tensor(w, name, TS_F32, 2, ne, &err), TS_OK);
    ck_assert_int_ne(ts_gguf_add_tensor(w, "bad\xff", TS_F32, 2, ne, &err), TS_OK);
    ck_assert(strstr(err.msg, "UTF-8") != NULL);
    int64_t row100[2] = {100, 2};
    ck_assert_int_ne(ts_gguf_add_tensor(w, "q", TS_Q4_K, 2, row100, &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "block size 256") != NULL, "%s", err.msg);
    ck_assert_int_ne(ts_gguf_add_tensor(w, "d0", TS_F32, 0, ne, &err), TS_OK);
    ck_assert(strstr(err.msg, "n_dims") != NULL);
    ck_assert_int_ne(ts_gguf_add_tensor(w, "d5", TS_F32, 5, ne, &err), TS_OK);
    int64_t neg[2] = {4, -1};
    ck_assert_int_ne(ts_gguf_add_tensor(w, "neg", TS_F32, 2, neg, &err), TS_OK);
    ck_assert(strstr(err.msg, "negative") != NULL);
    int64_t huge[2] = {INT64_MAX, 2};
    ck_assert_int_ne(ts_gguf_add_tensor(w, "huge", TS_F32, 2, huge, &err), TS_OK);
    ck_assert(strstr(err.msg, "overflows") != NULL);
    int64_t empty_rows_overflow[3] = {0, INT64_MAX, 2}; /* zero elements, but rows overflow */
    ck_assert_int_ne(ts_gguf_add_tensor(w, "zero", TS_F32, 3, empty_rows_overflow, &err), TS_OK);
    ck_assert(strstr(err.msg, "overflows") != NULL);
    ck_assert_int_ne(ts_gguf_add_tensor(w, "u8", TS_U8, 2, ne, &err), TS_OK);
    ck_assert(strstr(err.msg, "unknown ggml type") != NULL);

    ck_assert_int_eq(ts_gguf_set_u8(w, "", 1), TS_ERR_ARG);
    ck_assert_int_eq(ts_gguf_set_u8(w, "k\xc0", 1), TS_ERR_ARG);
    ck_assert_int_eq(ts_gguf_set_str(w, "s", NULL), TS_ERR_ARG);
    ts_gguf_value nul = {.type = TS_GGUF_STRING, .str = {"a\0b", 3}};
    ck_assert_int_eq(ts_gguf_set_value(w, "nul", &nul), TS_ERR_ARG);
    ts_gguf_value nested = {.type = TS_GGUF_ARRAY};
    nested.arr.elem_type = TS_GGUF_ARRAY;
    nested.arr.n = 1;
    nested.arr.data = &nul;
    ck_assert_int_eq(ts_gguf_set_value(w, "nested", &nested), TS_ERR_ARG);
    ck_assert_int_eq(ts_gguf_set_arr(w, "strs", TS_GGUF_STRING, &nul, 1), TS_ERR_ARG);
    const char *with_null[2] = {"a", NULL};
    ck_assert_int_eq(ts_gguf_set_arr_str(w, "strs", with_null, 2), TS_ERR_ARG);
    ck_assert(!ts_gguf_writer_has_key(w, "strs"));
    ck_assert_uint_eq(ts_gguf_writer_n_tensors(w), 2);
    ts_gguf_writer_free(w);

    ts_gguf *g;
    ck_assert_int_eq(ts_gguf_open("/nonexistent/x.gguf", &g, &err), TS_ERR_IO);
    ck_assert_ptr_null(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("gguf");
    tcase_add_test(tc, base_file_reads);
    tcase_add_test(tc, bad_input_table);
    tcase_add_test(tc, truncation_at_every_offset);
    tcase_add_test(tc, many_keys_late_duplicate);
    tcase_add_test(tc, writer_matches_hand_built_layout);
    tcase_add_test(tc, round_trip_all_types);
    tcase_add_test(tc, copy_through_set_value);
    tcase_add_test(tc, key_replacement_and_alignment);
    tcase_add_test(tc, writer_errors_leave_no_file);
    tcase_add_test(tc, writer_refuses_bad_arguments);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
