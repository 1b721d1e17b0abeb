/* tessera release's pieces on small GGUFs built here: split sizes (K/M/G),
 * the gguf-split layout written from a complete writer (exact part sizes,
 * split keys, metadata only in the first part, one part alone, merging back
 * to the unsplit bytes, a limit below one tensor), ts_quantize_multi against
 * ts_quantize type by type (GGUF input, a checkpoint when ../shared has one,
 * a split output), and ts_release end to end without an eval text: the card
 * files, a second run keeping complete variants, a damaged file and a
 * killed run's temp file cleaned up, and bad options. */
#define _GNU_SOURCE
#include "testutil.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "formats/gguf_split.h"
#include "kernels/kernels.h"
#include "pipeline/release.h"
#include "quant/quantize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { EMBD = 256, FF = 512, VOCAB = 300, LAYERS = 2 };

static char *tmp_path(const char *name)
{
    char *p;
    ck_assert(asprintf(&p, "%s/%s", tu_tmpdir(), name) > 0);
    return p;
}

static bool same_bytes(const char *a, const char *b)
{
    ts_mapped_file fa, fb;
    ts_err err = {0};
    ck_assert_msg(ts_map_file(a, &fa, &err) == TS_OK, "%s", err.msg);
    ck_assert_msg(ts_map_file(b, &fb, &err) == TS_OK, "%s", err.msg);
    bool same = fa.size == fb.size && (!fa.size || !memcmp(fa.data, fb.data, (size_t)fa.size));
    ts_unmap_file(&fa);
    ts_unmap_file(&fb);
    return same;
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    ck_assert_msg(stat(path, &sb) == 0, "%s missing", path);
    return (uint64_t)sb.st_size;
}

/* ---- a small llama-shaped F16 model ---- */

static void add_tensor(ts_gguf_writer *w, const char *name, ts_dtype t, int n_dims, int64_t a, int64_t b)
{
    ts_err err = {0};
    int64_t ne[2] = {a, b};
    ck_assert_msg(ts_gguf_add_tensor(w, name, t, n_dims, ne, &err) == TS_OK, "%s", err.msg);
}

/* Keys and tensor table of the model (F16 weights, F32 norms). */
static ts_gguf_writer *model_writer(uint32_t alignment)
{
    ts_gguf_writer *w;
    ts_err err = {0};
    ck_assert(ts_gguf_writer_new(&w, &err) == TS_OK);
    ts_gguf_set_str(w, "general.architecture", "llama");
    ts_gguf_set_u32(w, "general.file_type", 1);
    ts_gguf_set_u32(w, "llama.block_count", LAYERS);
    ts_gguf_set_u32(w, "llama.attention.head_count", 4);
    ts_gguf_set_u32(w, "llama.attention.head_count_kv", 2);
    const char *toks[] = {"a", "b", "c"};
    ts_gguf_set_arr_str(w, "test.strings", toks, 3);
    if (alignment)
        ck_assert(ts_gguf_set_alignment(w, alignment) == TS_OK);
    add_tensor(w, "token_embd.weight", TS_F16, 2, EMBD, VOCAB);
    for (int l = 0; l < LAYERS; l++) {
        char nm[64];
#define T(suffix, t, nd, a, b) (snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix), add_tensor(w, nm, t, nd, a, b))
        T("attn_norm.weight", TS_F32, 1, EMBD, 1);
        T("attn_q.weight", TS_F16, 2, EMBD, EMBD);
        T("attn_k.weight", TS_F16, 2, EMBD, 128);
        T("attn_v.weight", TS_F16, 2, EMBD, 128);
        T("attn_output.weight", TS_F16, 2, EMBD, EMBD);
        T("ffn_norm.weight", TS_F32, 1, EMBD, 1);
        T("ffn_gate.weight", TS_F16, 2, EMBD, FF);
        T("ffn_up.weight", TS_F16, 2, EMBD, FF);
        T("ffn_down.weight", TS_F16, 2, FF, EMBD);
#undef T
    }
    add_tensor(w, "output_norm.weight", TS_F32, 1, EMBD, 1);
    add_tensor(w, "output.weight", TS_F16, 2, EMBD, VOCAB);
    return w;
}

/* Tensor i's bytes: deterministic values in its type. */
static void *tensor_bytes(uint64_t i, uint64_t nbytes, ts_dtype type, int seed)
{
    uint64_t n = type == TS_F32 ? nbytes / 4 : nbytes / 2;
    float *f = malloc(n * sizeof *f);
    for (uint64_t k = 0; k < n; k++)
        f[k] = sinf((float)((int64_t)i * 7919 + (int64_t)k + seed) * 0.01f) * (1.0f + (float)(i % 5));
    void *buf = malloc(nbytes);
    if (type == TS_F32)
        memcpy(buf, f, nbytes);
    else
        ts_k_f32_to_f16(f, buf, (size_t)n);
    free(f);
    return buf;
}

/* Streams the model's tensor data into out (tensor by tensor, in two pieces each). */
static void stream_model(ts_gguf_writer *w, ts_gguf_out *out)
{
    ts_err err = {0};
    uint64_t n = ts_gguf_writer_n_tensors(w);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t nb = ts_gguf_writer_tensor_bytes(w, i);
        ts_dtype t = nb == EMBD * 4 ? TS_F32 : TS_F16;
        uint8_t *buf = tensor_bytes(i, nb, t, 0);
        if (!ts_gguf_out_wants(out, i)) {
            ck_assert_msg(ts_gguf_out_skip(out, &err) == TS_OK, "%s", err.msg);
        } else {
            ck_assert_msg(ts_gguf_out_write(out, buf, nb / 2, &err) == TS_OK, "%s", err.msg);
            ck_assert_msg(ts_gguf_out_write(out, buf + nb / 2, nb - nb / 2, &err) == TS_OK, "%s", err.msg);
        }
        free(buf);
    }
    ck_assert_msg(ts_gguf_out_finish(out, &err) == TS_OK, "%s", err.msg);
}

/* The model written at path with split options so (NULL: one file). */
static void write_model(const char *path, const ts_gguf_split_opts *so, uint32_t alignment)
{
    ts_gguf_writer *w = model_writer(alignment);
    ts_gguf_writer_enable_checksums(w, true);
    ts_gguf_out *out;
    ts_err err = {0};
    ck_assert_msg(ts_gguf_out_open(w, path, so, NULL, &out, &err) == TS_OK, "%s", err.msg);
    stream_model(w, out);
    ts_gguf_out_free(out);
    ts_gguf_writer_free(w);
}

START_TEST(split_sizes)
{
    uint64_t v;
    ck_assert(ts_release_parse_size("45G", &v) && v == 45000000000ull);
    ck_assert(ts_release_parse_size("500M", &v) && v == 500000000ull);
    ck_assert(ts_release_parse_size("2GiB", &v) && v == 2ull << 30);
    ck_assert(ts_release_parse_size("1234", &v) && v == 1234);
    ck_assert(ts_release_parse_size("3K", &v) && v == 3000);
    ck_assert(!ts_release_parse_size("0", &v));
    ck_assert(!ts_release_parse_size("12X", &v));
    ck_assert(!ts_release_parse_size("-5G", &v));
    ck_assert(!ts_release_parse_size("G", &v));
    ck_assert(!ts_release_parse_size("99999999999999999999G", &v));
    char *p = ts_gguf_split_path("/x/m-Q4_K_M.gguf", 1, 3);
    ck_assert_str_eq(p, "/x/m-Q4_K_M-00002-of-00003.gguf");
    free(p);
}
END_TEST

static void split_roundtrip(uint32_t alignment)
{
    char name[64];
    snprintf(name, sizeof name, "whole-%u.gguf", alignment);
    char *whole = tmp_path(name);
    write_model(whole, NULL, alignment);
    const uint64_t total = file_size(whole), max = total / 3;

    ts_gguf_writer *w = model_writer(alignment);
    ts_gguf_writer_enable_checksums(w, true);
    ck_assert_uint_eq(ts_gguf_writer_file_bytes(w), total);
    ts_gguf_split_plan plan;
    ts_err err = {0};
    ck_assert_msg(ts_gguf_split_plan_build(w, max, &plan, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_ge(plan.n_parts, 3);
    ts_gguf_writer_free(w);

    snprintf(name, sizeof name, "split-%u.gguf", alignment);
    char *split = tmp_path(name);
    ts_gguf_split_opts so = {.max_bytes = max};
    write_model(split, &so, alignment);
    ck_assert(!ts_file_exists(split));
    for (size_t p = 0; p < plan.n_parts; p++) {
        char *part = ts_gguf_split_path(split, p, plan.n_parts);
        ck_assert_uint_eq(file_size(part), plan.bytes[p]); /* exact, header included */
        ck_assert_uint_le(plan.bytes[p], max);
        ts_gguf *g;
        ck_assert_msg(ts_gguf_open(part, &g, &err) == TS_OK, "%s", err.msg);
        bool is_split;
        uint32_t no, count;
        int64_t tensors;
        ck_assert(ts_gguf_split_info(g, part, &is_split, &no, &count, &tensors, &err) == TS_OK);
        ck_assert(is_split && no == p && count == plan.n_parts);
        ck_assert_int_eq(tensors, 1 + LAYERS * 9 + 2);
        ck_assert_uint_eq(g->n_tensors, plan.first_tensor[p + 1] - plan.first_tensor[p]);
        /* gguf-split: the model's keys in the first part only; alignment in all */
        ck_assert_int_eq(ts_gguf_get_str(g, "general.architecture") != NULL, p == 0);
        ck_assert_uint_eq(g->alignment, alignment ? alignment : 32);
        ck_assert(ts_gguf_get_str(g, TS_GGUF_KEY_CHECKSUM_ALGO));
        ts_gguf_close(g);
        free(part);
    }
    /* merged back: the unsplit file, byte for byte */
    snprintf(name, sizeof name, "merged-%u.gguf", alignment);
    char *merged = tmp_path(name), *first = ts_gguf_split_path(split, 0, plan.n_parts);
    ck_assert_msg(ts_gguf_split_merge(first, merged, NULL, &err) == TS_OK, "%s", err.msg);
    ck_assert(same_bytes(merged, whole));

    /* one part alone (a scale-out job): the same bytes as in the full run */
    snprintf(name, sizeof name, "alone-%u.gguf", alignment);
    char *alone = tmp_path(name);
    so.only_part = 2;
    write_model(alone, &so, alignment);
    char *a1 = ts_gguf_split_path(alone, 0, plan.n_parts), *a2 = ts_gguf_split_path(alone, 1, plan.n_parts);
    char *s2 = ts_gguf_split_path(split, 1, plan.n_parts);
    ck_assert(!ts_file_exists(a1));
    ck_assert(same_bytes(a2, s2));
    free(a1);
    free(a2);
    free(s2);
    free(alone);
    free(first);
    free(merged);
    free(split);
    free(whole);
    ts_gguf_split_plan_free(&plan);
}

START_TEST(split_parts)
{
    split_roundtrip(0);
    split_roundtrip(64);
    /* a limit below one tensor's part: refused, naming the tensor; nothing written */
    ts_gguf_writer *w = model_writer(0);
    ts_gguf_out *out;
    ts_err err = {0};
    char *path = tmp_path("toosmall.gguf");
    ts_gguf_split_opts so = {.max_bytes = 100000};
    ck_assert_int_eq(ts_gguf_out_open(w, path, &so, NULL, &out, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "token_embd.weight") && strstr(err.msg, "smaller"), "%s", err.msg);
    so = (ts_gguf_split_opts){.max_bytes = 400000, .only_part = 40};
    ck_assert_int_eq(ts_gguf_out_open(w, path, &so, NULL, &out, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "part 40"), "%s", err.msg);
    /* a part that is not the first cannot be merged from */
    char *split = tmp_path("split-0.gguf"), *second = ts_gguf_split_path(split, 1, 3);
    if (ts_file_exists(second)) {
        ck_assert_int_eq(ts_gguf_split_merge(second, path, NULL, &err), TS_ERR_ARG);
        ck_assert_msg(strstr(err.msg, "not the first part"), "%s", err.msg);
    }
    free(second);
    free(split);
    free(path);
    ts_gguf_writer_free(w);
}
END_TEST

/* ---- quantizing several types in one pass ---- */

static char *f16_model(void)
{
    char *path = tmp_path("tiny-llama.gguf");
    if (!ts_file_exists(path))
        write_model(path, NULL, 0);
    return path;
}

static void multi_vs_single(const char *in, const char *const *types, size_t n, uint64_t split, const char *tag)
{
    ts_quantize_opts *o = calloc(n, sizeof *o);
    ts_quantize_result *r = calloc(n, sizeof *r);
    char **multi = calloc(n, sizeof *multi);
    ts_err err = {0};
    for (size_t k = 0; k < n; k++) {
        char name[96];
        snprintf(name, sizeof name, "%s-multi-%s.gguf", tag, types[k]);
        multi[k] = tmp_path(name);
        o[k] = (ts_quantize_opts){.input = in, .output = multi[k], .ftype = types[k], .n_threads = 2,
                                  .split_max_bytes = k == 0 ? split : 0};
    }
    ck_assert_msg(ts_quantize_multi(o, n, r, &err) == TS_OK, "%s", err.msg);
    for (size_t k = 0; k < n; k++) {
        ts_quantize_result one;
        char name[96];
        snprintf(name, sizeof name, "%s-single-%s.gguf", tag, types[k]);
        char *single = tmp_path(name);
        ts_quantize_opts so = {.input = in, .output = single, .ftype = types[k], .n_threads = 1};
        ck_assert_msg(ts_quantize(&so, &one, &err) == TS_OK, "%s", err.msg);
        if (k == 0 && split && r[k].n_files > 1) { /* compare through a merge */
            char *first = ts_gguf_split_path(multi[k], 0, r[k].n_files), *merged = tmp_path("merged-multi.gguf");
            ck_assert_msg(ts_gguf_split_merge(first, merged, NULL, &err) == TS_OK, "%s", err.msg);
            ck_assert_msg(same_bytes(merged, single), "%s %s: merged parts differ from tessera quantize", tag, types[k]);
            free(first);
            free(merged);
        } else {
            ck_assert_msg(same_bytes(multi[k], single), "%s %s: one pass differs from tessera quantize", tag, types[k]);
            ck_assert_uint_eq(r[k].file_bytes, file_size(single));
        }
        ck_assert_uint_eq(r[k].plan.bytes_out, one.plan.bytes_out);
        ts_quantize_result_free(&one);
        free(single);
    }
    for (size_t k = 0; k < n; k++) {
        ts_quantize_result_free(&r[k]);
        free(multi[k]);
    }
    free(multi);
    free(r);
    free(o);
}

START_TEST(multi_gguf)
{
    char *in = f16_model();
    const char *types[] = {"Q4_K_M", "Q8_0", "Q2_K", "Q6_K", "F16", "Q4_0"};
    multi_vs_single(in, types, 6, 0, "gguf");
    multi_vs_single(in, types, 2, 300000, "gguf-split");
    /* outputs of one pass: one input, distinct outputs */
    ts_quantize_opts o[2] = {{.input = in, .output = "/nonexistent/a.gguf", .ftype = "Q8_0"},
                             {.input = in, .output = "/nonexistent/a.gguf", .ftype = "Q6_K"}};
    ts_quantize_result r[2];
    ts_err err = {0};
    ck_assert_int_eq(ts_quantize_multi(o, 2, r, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "twice"), "%s", err.msg);
    free(in);
}
END_TEST

START_TEST(multi_checkpoint)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return;
    char *dir;
    ck_assert(asprintf(&dir, "%s/models/qwen3moe-spm-9m", shared) > 0);
    const char *types[] = {"Q4_K_M", "Q8_0", "Q3_K_M"};
    multi_vs_single(dir, types, 3, 0, "ckpt");
    multi_vs_single(dir, types, 2, 4000000, "ckpt-split");
    free(dir);
}
END_TEST

/* ---- the whole release, without an eval text ---- */

START_TEST(release_resume)
{
    char *in = f16_model(), *dir = tmp_path("rel");
    const char *types[] = {"q8_0", "Q4_K_M"};
    ts_release_opts o = {.input = in, .out_dir = dir, .types = types, .n_types = 2, .n_threads = 2,
                         .tool_version = "tessera test"};
    ts_release_result r;
    ts_err err = {0};
    ck_assert_msg(ts_release(&o, &r, &err) == TS_OK, "%s", err.msg);
    ck_assert_str_eq(r.name, "tiny-llama");
    ck_assert_str_eq(r.v[0].type, "Q8_0");
    ck_assert(!r.v[0].reused && !r.v[1].reused && !r.v[0].measured);
    ck_assert_uint_eq(r.v[0].n_files, 1);
    ck_assert_str_eq(r.v[0].files[0] + strlen(dir), "/tiny-llama-Q8_0.gguf");
    ck_assert_uint_eq(r.v[1].file_bytes, file_size(r.v[1].files[0]));
    ck_assert(r.v[1].bpw > 4.0 && r.v[1].bpw < 7.0);
    ck_assert_uint_eq(strlen(r.v[1].sha256[0]), 64);
    const char *own[] = {"README.md", "release.json", "SHA256SUMS"};
    for (int i = 0; i < 3; i++) {
        char *p;
        ck_assert(asprintf(&p, "%s/%s", dir, own[i]) > 0);
        ck_assert_msg(ts_file_exists(p), "%s missing", p);
        free(p);
    }
    char *q8 = strdup(r.v[0].files[0]), *q4 = strdup(r.v[1].files[0]);
    ts_release_result_free(&r);

    /* again: both complete, kept */
    ck_assert_msg(ts_release(&o, &r, &err) == TS_OK, "%s", err.msg);
    ck_assert(r.v[0].reused && r.v[1].reused);
    ts_release_result_free(&r);

    /* a damaged tensor and a killed run's temp file: that variant written again */
    ts_mapped_file f;
    ck_assert(ts_map_file(q4, &f, &err) == TS_OK);
    uint8_t *copy = malloc(f.size);
    memcpy(copy, f.data, f.size);
    copy[f.size - 1000] ^= 0x55;
    FILE *fp = fopen(q4, "wb");
    fwrite(copy, 1, (size_t)f.size, fp);
    fclose(fp);
    ts_unmap_file(&f);
    char *stale;
    ck_assert(asprintf(&stale, "%s.tmp.AbC123", q4) > 0);
    fp = fopen(stale, "wb");
    fputs("half a file", fp);
    fclose(fp);
    ck_assert_msg(ts_release(&o, &r, &err) == TS_OK, "%s", err.msg);
    ck_assert(r.v[0].reused && !r.v[1].reused);
    ck_assert(!ts_file_exists(stale));
    ts_release_result_free(&r);
    char *single = tmp_path("rel-single-q4km.gguf");
    ts_quantize_opts so = {.input = in, .output = single, .ftype = "Q4_K_M"};
    ts_quantize_result one;
    ck_assert_msg(ts_quantize(&so, &one, &err) == TS_OK, "%s", err.msg);
    ts_quantize_result_free(&one);
    ck_assert(same_bytes(single, q4));

    /* resplitting: a split size gives parts, and the unsplit file goes */
    o.split_max_bytes = 200000;
    ck_assert_msg(ts_release(&o, &r, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_gt(r.v[0].n_files, 1);
    ck_assert(!ts_file_exists(q8));
    for (size_t k = 0; k < r.v[0].n_files; k++)
        ck_assert_uint_le(file_size(r.v[0].files[k]), 200000);
    ts_release_result_free(&r);

    free(stale);
    free(single);
    free(copy);
    free(q8);
    free(q4);
    free(dir);
    free(in);
}
END_TEST

START_TEST(release_bad_options)
{
    char *in = f16_model(), *dir = tmp_path("rel-bad");
    ts_release_result r;
    ts_err err = {0};
    const char *unknown[] = {"Q4_K_M", "Q7_K"};
    ts_release_opts o = {.input = in, .out_dir = dir, .types = unknown, .n_types = 2};
    ck_assert_int_eq(ts_release(&o, &r, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "Q7_K") && strstr(err.msg, "expected one of"), "%s", err.msg);
    ts_release_result_free(&r);
    const char *twice[] = {"Q8_0", "q8_0"};
    o.types = twice;
    ck_assert_int_eq(ts_release(&o, &r, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "twice"), "%s", err.msg);
    ts_release_result_free(&r);
    const char *one[] = {"Q8_0"};
    o.types = one;
    o.n_types = 1;
    o.imatrix = "auto";
    ck_assert_int_eq(ts_release(&o, &r, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "--calib"), "%s", err.msg);
    ts_release_result_free(&r);
    o.imatrix = NULL;
    o.split_max_bytes = 1000;
    ck_assert_int_eq(ts_release(&o, &r, &err), TS_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "smaller than tensor"), "%s", err.msg);
    ts_release_result_free(&r);
    o.split_max_bytes = 0;
    o.input = "/nonexistent/model";
    ck_assert_int_eq(ts_release(&o, &r, &err), TS_ERR_ARG);
    ts_release_result_free(&r);
    free(dir);
    free(in);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("release");
    TCase *tc = tcase_create("release");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, split_sizes);
    tcase_add_test(tc, split_parts);
    tcase_add_test(tc, multi_gguf);
    tcase_add_test(tc, multi_checkpoint);
    tcase_add_test(tc, release_resume);
    tcase_add_test(tc, release_bad_options);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
