/* safetensors reader: images built here byte by byte, a table of bad inputs,
 * sharded directories, and the real checkpoints under ../shared. */
#define _GNU_SOURCE
#include "testutil.h"
#include "formats/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* u64 little-endian header length, the header text, then data_len bytes 0,1,2,... */
static uint8_t *st_image(const char *header, size_t data_len, size_t *out_len)
{
    size_t h = strlen(header);
    uint8_t *p = malloc(8 + h + data_len + 1);
    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(p + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        p[8 + h + i] = (uint8_t)i;
    *out_len = 8 + h + data_len;
    return p;
}

static ts_status open_mem(const char *header, size_t data_len, ts_st_model **m, ts_err *err)
{
    size_t n;
    uint8_t *img = st_image(header, data_len, &n);
    /* the model borrows the bytes, so keep them for the model's lifetime: leak-free via a static slot */
    static uint8_t *keep;
    free(keep);
    keep = img;
    return ts_st_open_memory(img, n, "mem.safetensors", m, err);
}

static void write_image(const char *rel, const char *header, size_t data_len)
{
    size_t n;
    uint8_t *img = st_image(header, data_len, &n);
    free(tu_write_file(rel, img, n));
    free(img);
}

static const char *mkdir_tmp(const char *rel)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tu_tmpdir(), rel);
    mkdir(path, 0755);
    return path;
}

START_TEST(basic_layout)
{
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,32]},"
                      "\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]}}    ";
    ts_st_model *m;
    ts_err err = {0};
    ck_assert_msg(open_mem(hdr, 32, &m, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(m->n_tensors, 2);
    uint64_t area = 8 + strlen(hdr);
    ck_assert_str_eq(m->tensors[0].t.name, "a"); /* sorted by offset, not by header order */
    ck_assert_uint_eq(m->tensors[0].offset, area);
    ck_assert_int_eq(m->tensors[0].t.dtype, TS_BF16);
    const ts_st_tensor *b = ts_st_find(m, "b");
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(b->t.n_dims, 2);
    ck_assert_int_eq(b->t.ne[0], 3);
    ck_assert_int_eq(b->t.ne[1], 2);
    ck_assert_int_eq(b->t.ne[2], 1);
    ck_assert_uint_eq(b->t.nbytes, 24);
    ck_assert_ptr_eq(b->t.data, m->files[0].data + area + 8);
    ck_assert_int_eq(((const uint8_t *)b->t.data)[0], 8);
    ck_assert_ptr_null(ts_st_find(m, "c"));
    ck_assert_uint_eq(m->n_meta, 1);
    ck_assert_str_eq(m->meta[0].key, "format");
    ck_assert_str_eq(m->meta[0].value, "pt");
    ts_st_close(m);
}
END_TEST

START_TEST(every_dtype)
{
    static const struct { const char *s; ts_dtype t; unsigned size; } dt[] = {
        {"F64", TS_F64, 8}, {"F32", TS_F32, 4}, {"F16", TS_F16, 2}, {"BF16", TS_BF16, 2},
        {"I64", TS_I64, 8}, {"I32", TS_I32, 4}, {"I16", TS_I16, 2}, {"I8", TS_I8, 1},
        {"U64", TS_U64, 8}, {"U32", TS_U32, 4}, {"U16", TS_U16, 2}, {"U8", TS_U8, 1},
        {"BOOL", TS_BOOL, 1}, {"F8_E4M3", TS_F8_E4M3, 1}, {"F8_E5M2", TS_F8_E5M2, 1},
    };
    size_t n = sizeof dt / sizeof dt[0];
    char hdr[4096] = "{";
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(hdr);
        snprintf(hdr + len, sizeof hdr - len, "%s\"t%zu\":{\"dtype\":\"%s\",\"shape\":[2,3],\"data_offsets\":[%zu,%zu]}",
                 i ? "," : "", i, dt[i].s, off, off + 6 * dt[i].size);
        off += 6 * dt[i].size;
    }
    strcat(hdr, "}");
    ts_st_model *m;
    ts_err err = {0};
    ck_assert_msg(open_mem(hdr, off, &m, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(m->n_tensors, n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(ts_st_dtype_from_string(dt[i].s), dt[i].t);
        ck_assert_int_eq(m->tensors[i].t.dtype, dt[i].t);
        ck_assert_uint_eq(m->tensors[i].t.nbytes, 6 * dt[i].size);
    }
    ck_assert_int_eq(ts_st_dtype_from_string("F4"), TS_DTYPE_INVALID);
    ts_st_close(m);
}
END_TEST

START_TEST(scalar_empty_4d_and_holes)
{
    const char *hdr = "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                      "\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
                      "\"q\":{\"dtype\":\"I8\",\"shape\":[2,3,4,5],\"data_offsets\":[16,136]}}";
    ts_st_model *m;
    ts_err err = {0};
    ck_assert_msg(open_mem(hdr, 140, &m, &err) == TS_OK, "%s", err.msg); /* 4..16 and 136..140 are holes */
    const ts_st_tensor *s = ts_st_find(m, "s"), *z = ts_st_find(m, "z"), *q = ts_st_find(m, "q");
    ck_assert_int_eq(s->t.n_dims, 1);
    ck_assert_int_eq(s->t.ne[0], 1);
    ck_assert_uint_eq(s->t.nbytes, 4);
    ck_assert_int_eq(z->t.n_dims, 2);
    ck_assert_int_eq(z->t.ne[0], 5);
    ck_assert_int_eq(z->t.ne[1], 0);
    ck_assert_uint_eq(z->t.nbytes, 0);
    ck_assert_int_eq(q->t.n_dims, 4);
    ck_assert_int_eq(q->t.ne[0], 5);
    ck_assert_int_eq(q->t.ne[3], 2);
    ts_st_close(m);
}
END_TEST

#define T(name, dtype, shape, offs) "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

static const struct {
    const char *what;
    const char *header; /* NULL: raw bytes below */
    const char *raw;
    size_t raw_len;
    size_t data_len;
    const char *expect;
} bad[] = {
    {"4 bytes", NULL, "\x10\0\0\0", 4, 0, "too short for the 8-byte header length"},
    {"header cut", NULL, "\x40\0\0\0\0\0\0\0{\"a\":", 13, 0, "header length 64 at offset 0 goes beyond the end"},
    {"huge header length", NULL, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10, 0, "goes beyond the end of the file"},
    {"invalid JSON", "{\"a\":", NULL, 0, 0, "header JSON is invalid at file offset"},
    {"trailing garbage", "{} x", NULL, 0, 0, "header JSON is invalid"},
    {"non-object", "[1,2]", NULL, 0, 0, "header at offset 8 is not a JSON object"},
    {"duplicate", "{" T("a", "U8", "[1]", "[0,1]") "," T("a", "U8", "[1]", "[1,2]") "}", NULL, 0, 2,
     "duplicate tensor name"},
    {"non-UTF-8 name", "{" T("a\xff", "U8", "[1]", "[0,1]") "}", NULL, 0, 1, "not valid UTF-8"},
    {"NUL in name", "{" T("a\\u0000b", "U8", "[1]", "[0,1]") "}", NULL, 0, 1, "NUL byte"},
    {"empty name", "{" T("", "U8", "[1]", "[0,1]") "}", NULL, 0, 1, "a tensor has an empty name"},
    {"unknown dtype", "{" T("w", "F4", "[2]", "[0,1]") "}", NULL, 0, 1, "tensor 'w': unknown dtype \"F4\""},
    {"dtype not string", "{\"w\":{\"dtype\":1,\"shape\":[1],\"data_offsets\":[0,1]}}", NULL, 0, 1,
     "tensor 'w': \"dtype\" is missing"},
    {"wrong size", "{" T("w", "F32", "[2]", "[0,4]") "}", NULL, 0, 4, "tensor 'w': F32 [2] needs 8 bytes"},
    {"negative dim", "{" T("w", "U8", "[-1]", "[0,0]") "}", NULL, 0, 0, "tensor 'w': shape[0] is not a non-negative"},
    {"float dim", "{" T("w", "U8", "[1,2.0]", "[0,2]") "}", NULL, 0, 2, "tensor 'w': shape[1] is not a non-negative"},
    {"huge dim", "{" T("w", "U8", "[99999999999999999999]", "[0,0]") "}", NULL, 0, 0, "too big integer"},
    {"shape overflow", "{" T("w", "U8", "[4294967296,4294967296]", "[0,0]") "}", NULL, 0, 0,
     "tensor 'w': shape [4294967296, 4294967296] overflows"},
    {"bytes overflow", "{" T("w", "F64", "[4611686018427387904]", "[0,0]") "}", NULL, 0, 0, "overflows 64 bits"},
    {"5 dims", "{" T("w", "U8", "[1,1,1,1,1]", "[0,1]") "}", NULL, 0, 1,
     "tensor 'w' has 5 dimensions; at most 4 are supported"},
    {"shape not array", "{" T("w", "U8", "3", "[0,3]") "}", NULL, 0, 3, "tensor 'w': \"shape\" is not an array"},
    {"begin > end", "{" T("w", "U8", "[0]", "[8,4]") "}", NULL, 0, 8, "tensor 'w': data_offsets begin 8 > end 4"},
    {"end beyond file", "{" T("w", "U8", "[400]", "[0,400]") "}", NULL, 0, 8, "tensor 'w': data_offsets end 400"},
    {"overlap", "{" T("a", "U8", "[8]", "[0,8]") "," T("b", "U8", "[8]", "[4,12]") "}", NULL, 0, 12,
     "tensors 'a' (bytes"},
    {"empty inside other", "{" T("a", "U8", "[8]", "[0,8]") "," T("b", "U8", "[0]", "[4,4]") "}", NULL, 0, 8,
     "overlap"},
    {"offsets arity", "{" T("w", "U8", "[1]", "[0]") "}", NULL, 0, 1, "tensor 'w': \"data_offsets\" is not an array of 2"},
    {"offsets arity 3", "{" T("w", "U8", "[1]", "[0,1,2]") "}", NULL, 0, 2, "not an array of 2 integers"},
    {"negative offset", "{" T("w", "U8", "[1]", "[-1,0]") "}", NULL, 0, 1, "data_offsets are not non-negative"},
    {"metadata non-string", "{\"__metadata__\":{\"k\":1}}", NULL, 0, 0, "\"__metadata__\" key \"k\" is not a string"},
    {"metadata non-object", "{\"__metadata__\":[]}", NULL, 0, 0, "\"__metadata__\" is not a JSON object"},
    {"entry not object", "{\"w\":1}", NULL, 0, 0, "tensor 'w': entry is not a JSON object"},
    {"unknown key", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", NULL, 0, 1,
     "tensor 'w': unexpected key \"x\""},
    {"name too long",
     "{" T("nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
           "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
           "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
           "U8", "[1]", "[0,1]") "}",
     NULL, 0, 1, "at most 255 are supported"},
};

START_TEST(bad_input)
{
    ts_st_model *m = (ts_st_model *)1;
    ts_err err = {0};
    ts_status st;
    if (bad[_i].header)
        st = open_mem(bad[_i].header, bad[_i].data_len, &m, &err);
    else
        st = ts_st_open_memory(bad[_i].raw, bad[_i].raw_len, "mem.safetensors", &m, &err);
    ck_assert_msg(st != TS_OK, "%s: accepted", bad[_i].what);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, bad[_i].expect) != NULL, "%s: message \"%s\" lacks \"%s\"", bad[_i].what,
                  err.msg, bad[_i].expect);
    ck_assert_msg(strncmp(err.msg, "mem.safetensors: ", 17) == 0, "%s: message \"%s\" does not name the file",
                  bad[_i].what, err.msg);
}
END_TEST

START_TEST(header_limit)
{
    /* A header over 100 MB inside a file that really is that long: calloc'd pages cost nothing. */
    size_t h = 100000001, n = 8 + h;
    uint8_t *img = calloc(1, n);
    ck_assert_ptr_nonnull(img);
    for (int i = 0; i < 8; i++)
        img[i] = (uint8_t)((uint64_t)h >> (8 * i));
    ts_st_model *m;
    ts_err err = {0};
    ck_assert_int_eq(ts_st_open_memory(img, n, "big", &m, &err), TS_ERR_LIMIT);
    ck_assert_ptr_nonnull(strstr(err.msg, "exceeds the limit"));
    free(img);
}
END_TEST

/* ---- sharded --------------------------------------------------------------- */

#define S1 "model-00001-of-00002.safetensors"
#define S2 "model-00002-of-00002.safetensors"
#define H1 "{\"__metadata__\":{\"format\":\"pt\"}," T("a", "F16", "[2,2]", "[0,8]") "," T("b", "U8", "[3]", "[8,11]") "}"
#define H2 "{" T("c", "F32", "[2]", "[0,8]") "}"
#define IDX "{\"metadata\":{\"total_size\":19},\"weight_map\":{\"a\":\"" S1 "\",\"b\":\"" S1 "\",\"c\":\"" S2 "\"}}"

static const char *make_sharded(const char *dir, const char *index, const char *h1, const char *h2)
{
    const char *path = mkdir_tmp(dir);
    char rel[256];
    snprintf(rel, sizeof rel, "%s/model.safetensors.index.json", dir);
    if (index)
        free(tu_write_file(rel, index, strlen(index)));
    snprintf(rel, sizeof rel, "%s/" S1, dir);
    if (h1)
        write_image(rel, h1, 16);
    snprintf(rel, sizeof rel, "%s/" S2, dir);
    if (h2)
        write_image(rel, h2, 8);
    return path;
}

START_TEST(sharded_ok)
{
    const char *dir = make_sharded("good", IDX, H1, H2);
    ts_st_model *m;
    ts_err err = {0};
    ck_assert_msg(ts_st_open(dir, &m, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(m->n_files, 2);
    ck_assert_uint_eq(m->n_tensors, 3);
    ck_assert_ptr_nonnull(strstr(m->files[0].path, S1));
    ck_assert_str_eq(m->tensors[2].t.name, "c");
    ck_assert_uint_eq(m->tensors[2].file_index, 1);
    ck_assert_ptr_eq(ts_st_find(m, "c")->t.data, m->files[1].data + m->tensors[2].offset);
    ck_assert_uint_eq(m->n_meta, 1);
    ts_st_close(m);
    /* the index named directly, and one shard on its own */
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    ck_assert_msg(ts_st_open(path, &m, &err) == TS_OK, "%s", err.msg);
    ts_st_close(m);
    snprintf(path, sizeof path, "%s/" S2, dir);
    ck_assert_msg(ts_st_open(path, &m, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(m->n_tensors, 1);
    ts_st_close(m);
}
END_TEST

static void expect_open_fails(const char *path, const char *expect)
{
    ts_st_model *m = (ts_st_model *)1;
    ts_err err = {0};
    ck_assert_msg(ts_st_open(path, &m, &err) != TS_OK, "%s: accepted", path);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(err.msg, expect) != NULL, "message \"%s\" lacks \"%s\"", err.msg, expect);
}

START_TEST(sharded_bad)
{
    expect_open_fails(make_sharded("missing", IDX, H1, NULL), "shard");
    expect_open_fails(make_sharded("missing", IDX, H1, NULL), S2 " named by the index does not exist");
    expect_open_fails(make_sharded("lacks", IDX, H1, "{}"),
                      "the index assigns tensor 'c' to shard " S2 ", which does not hold it");
    expect_open_fails(make_sharded("extra", IDX, H1, "{" T("c", "F32", "[1]", "[0,4]") "," T("x", "F32", "[1]", "[4,8]") "}"),
                      "tensor 'x' is in shard " S2 " but not in the index");
    expect_open_fails(make_sharded("wrong", IDX, H1, "{" T("c", "F32", "[1]", "[0,4]") "," T("b", "F32", "[1]", "[4,8]") "}"),
                      "tensor 'b' is in shard " S2 " but the index assigns it to " S1);
    expect_open_fails(make_sharded("dotdot", "{\"weight_map\":{\"a\":\"../" S1 "\"}}", NULL, NULL),
                      "tensor 'a' is assigned to shard \"../" S1 "\"; a shard must be a plain file name");
    expect_open_fails(make_sharded("badjson", "{\"weight_map\":", NULL, NULL), "index JSON is invalid");
    expect_open_fails(make_sharded("nomap", "{\"metadata\":{}}", NULL, NULL), "non-empty \"weight_map\"");
    expect_open_fails(make_sharded("badshard", IDX, H1, "{\"c\":1}"), "tensor 'c': entry is not a JSON object");

    /* a third file of the same series that the index does not name */
    const char *dir = make_sharded("extrafile", IDX, H1, H2);
    write_image("extrafile/model-00003-of-00002.safetensors", H2, 8);
    expect_open_fails(dir, "model-00003-of-00002.safetensors belongs to the same series");

    /* no index: several files are ambiguous, none is an error */
    expect_open_fails(make_sharded("noindex", NULL, H1, H2), "no model.safetensors.index.json saying");
    expect_open_fails(mkdir_tmp("empty"), "no model.safetensors.index.json and no *.safetensors");
    expect_open_fails("/nonexistent/x.safetensors", "cannot open");
}
END_TEST

START_TEST(directory_single_file)
{
    const char *dir = make_sharded("single", NULL, H1, NULL);
    ts_st_model *m;
    ts_err err = {0};
    ck_assert_msg(ts_st_open(dir, &m, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(m->n_tensors, 2);
    ts_st_close(m);
}
END_TEST

/* ---- the real checkpoints ------------------------------------------------ */

static void check_sorted_and_mapped(const ts_st_model *m)
{
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ts_st_tensor *t = &m->tensors[i];
        ck_assert_uint_lt(t->file_index, m->n_files);
        ck_assert_uint_le(t->offset + t->t.nbytes, m->files[t->file_index].size);
        ck_assert_ptr_eq(t->t.data, m->files[t->file_index].data + t->offset);
        ck_assert_ptr_eq(ts_st_find(m, t->t.name), t);
        if (i) {
            const ts_st_tensor *p = &m->tensors[i - 1];
            ck_assert(p->file_index < t->file_index ||
                      (p->file_index == t->file_index && p->offset + p->t.nbytes <= t->offset));
        }
    }
}

START_TEST(real_models)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return;
    static const char *models[] = {"llama-spm-8m", "qwen3-tok-small", "qwen3moe-spm-9m", "qwen3moe-tok-small"};
    for (size_t i = 0; i < 4; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/models/%s", shared, models[i]);
        ts_st_model *m;
        ts_err err = {0};
        ck_assert_msg(ts_st_open(path, &m, &err) == TS_OK, "%s", err.msg);
        ck_assert_uint_gt(m->n_tensors, 40);
        check_sorted_and_mapped(m);
        if (i == 0) {
            ck_assert_uint_eq(m->n_tensors, 75);
            const ts_st_tensor *e = ts_st_find(m, "model.embed_tokens.weight");
            ck_assert_ptr_nonnull(e);
            ck_assert_int_eq(e->t.dtype, TS_BF16);
            ck_assert_int_eq(e->t.n_dims, 2);
            ck_assert_int_eq(e->t.ne[0], 256);
            ck_assert_int_eq(e->t.ne[1], 4096);
            ck_assert_uint_eq(e->t.nbytes, 4096 * 256 * 2);
            ck_assert_str_eq(m->meta[0].key, "format");
        }
        ts_st_close(m);
    }
}
END_TEST

START_TEST(real_sharded_families)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return;
    static const char *fams[] = {"deepseek_v3", "glm4_moe", "gpt_oss", "mixtral"};
    for (size_t i = 0; i < 4; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/fixtures/families/%s", shared, fams[i]);
        ts_st_model *m;
        ts_err err = {0};
        ck_assert_msg(ts_st_open(path, &m, &err) == TS_OK, "%s", err.msg);
        ck_assert_uint_eq(m->n_files, 2);
        check_sorted_and_mapped(m);
        /* every byte the index's total_size promises is accounted for */
        snprintf(path, sizeof path, "%s/fixtures/families/%s/model.safetensors.index.json", shared, fams[i]);
        json_t *idx = json_load_file(path, 0, NULL);
        ck_assert_ptr_nonnull(idx);
        uint64_t total = 0;
        size_t n_f8 = 0, n_4d = 0;
        for (size_t k = 0; k < m->n_tensors; k++) {
            total += m->tensors[k].t.nbytes;
            n_f8 += m->tensors[k].t.dtype == TS_F8_E4M3;
            n_4d += m->tensors[k].t.n_dims == 4;
        }
        ck_assert_uint_eq(m->n_tensors, json_object_size(json_object_get(idx, "weight_map")));
        ck_assert_uint_eq(total, (uint64_t)json_integer_value(json_object_get(json_object_get(idx, "metadata"), "total_size")));
        json_decref(idx);
        if (i == 0)
            ck_assert_uint_eq(n_f8, 176);
        if (i == 2) {
            ck_assert_uint_gt(n_4d, 0);
            const ts_st_tensor *t = ts_st_find(m, "model.layers.0.mlp.experts.down_proj_blocks");
            ck_assert_ptr_nonnull(t);
            ck_assert_int_eq(t->t.dtype, TS_U8);
            ck_assert_int_eq(t->t.ne[0], 16);
            ck_assert_int_eq(t->t.ne[1], 2);
            ck_assert_int_eq(t->t.ne[2], 64);
            ck_assert_int_eq(t->t.ne[3], 8);
        }
        ts_st_close(m);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_test(tc, basic_layout);
    tcase_add_test(tc, every_dtype);
    tcase_add_test(tc, scalar_empty_4d_and_holes);
    tcase_add_loop_test(tc, bad_input, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(tc, header_limit);
    tcase_add_test(tc, sharded_ok);
    tcase_add_test(tc, sharded_bad);
    tcase_add_test(tc, directory_single_file);
    tcase_add_test(tc, real_models);
    tcase_add_test(tc, real_sharded_families);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
