/* config.json / generation_config.json / tokenizer_config.json readers. */
#define _GNU_SOURCE
#include "testutil.h"
#include "formats/hf_config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *write_json(const char *name, const char *text) { return tu_write_file(name, text, strlen(text)); }

START_TEST(typed_getters)
{
    char *p = write_json("ok.json", "{\"a\": 4096, \"b\": 4096.0, \"c\": 1e-5, \"d\": true, \"e\": \"x\", \"n\": null}");
    ts_json_file f;
    ts_err err = {0};
    ck_assert_int_eq(ts_json_load(p, false, &f, &err), TS_OK);
    int64_t i;
    double d;
    bool b;
    const char *s;
    ck_assert_int_eq(ts_json_int_req(&f, "a", 1, &i, &err), TS_OK);
    ck_assert_int_eq(i, 4096);
    ck_assert_int_eq(ts_json_int_req(&f, "b", 1, &i, &err), TS_OK); /* integral reals accepted */
    ck_assert_int_eq(ts_json_num_opt(&f, "c", 0, &d, &err), TS_OK);
    ck_assert_double_eq(d, 1e-5);
    ck_assert_int_eq(ts_json_bool_opt(&f, "d", false, &b, &err), TS_OK);
    ck_assert(b);
    ck_assert_int_eq(ts_json_str_opt(&f, "e", &s, &err), TS_OK);
    ck_assert_str_eq(s, "x");
    /* null counts as absent */
    ck_assert_int_eq(ts_json_int_opt(&f, "n", 7, 0, &i, &err), TS_OK);
    ck_assert_int_eq(i, 7);
    ck_assert(!ts_json_has(&f, "n"));
    /* wrong types and ranges name the file and key */
    ck_assert_int_ne(ts_json_int_req(&f, "c", 1, &i, &err), TS_OK);
    ck_assert(strstr(err.msg, "ok.json") && strstr(err.msg, "c: expected an integer"));
    ck_assert_int_ne(ts_json_int_req(&f, "a", 5000, &i, &err), TS_OK);
    ck_assert(strstr(err.msg, ">= 5000"));
    ck_assert_int_ne(ts_json_int_req(&f, "zz", 1, &i, &err), TS_OK);
    ck_assert(strstr(err.msg, "zz: missing"));
    ck_assert_int_ne(ts_json_bool_opt(&f, "e", false, &b, &err), TS_OK);
    ck_assert_int_ne(ts_json_str_opt(&f, "a", &s, &err), TS_OK);
    ts_json_free(&f);
    free(p);
    /* integers beyond int64 (HF writes model_max_length = 1e30 as one) are read as reals */
    p = write_json("big.json", "{\"m\": 1000000000000000019884624838656, \"s\": \"12345678901234567890\", \"k\": -99999999999999999999}");
    ck_assert_msg(ts_json_load(p, false, &f, &err) == TS_OK, "%s", err.msg);
    ck_assert_int_eq(ts_json_num_opt(&f, "m", 0, &d, &err), TS_OK);
    ck_assert_double_eq_tol(d, 1e30, 1e16);
    ck_assert_int_eq(ts_json_str_opt(&f, "s", &s, &err), TS_OK);
    ck_assert_str_eq(s, "12345678901234567890");
    ck_assert_int_eq(ts_json_num_opt(&f, "k", 0, &d, &err), TS_OK);
    ck_assert_double_lt(d, -9e19);
    ts_json_free(&f);
    free(p);
    p = write_json("ok2.json", "{\"n\": null, \"d\": true}");
    ck_assert_int_eq(ts_json_load(p, false, &f, &err), TS_OK);
    static const char *const keys[] = {"nope", "n", "d", NULL};
    ck_assert_str_eq(ts_json_first_key(&f, keys), "d");
    ts_json_free(&f);
    free(p);
}
END_TEST

START_TEST(bad_files)
{
    static const struct {
        const char *text;
        const char *expect;
    } cases[] = {
        {"{\"a\": 1,}", "invalid JSON at line 1"},
        {"{\"a\": 1, \"a\": 2}", "duplicate"},
        {"[1, 2]", "expected a JSON object"},
        {"", "invalid JSON"},
        {"{\"a\": \"\xff\xfe\"}", "invalid JSON"},
        {"{\"a\": 1} trailing", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.json", i);
        char *p = write_json(name, cases[i].text);
        ts_json_file f;
        ts_err err = {0};
        ck_assert_int_ne(ts_json_load(p, false, &f, &err), TS_OK);
        ck_assert_msg(strstr(err.msg, name) && strstr(err.msg, cases[i].expect), "case %zu: %s", i, err.msg);
        ck_assert_ptr_null(f.root);
        free(p);
    }
}
END_TEST

START_TEST(model_dir_files)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/model", tu_tmpdir());
    mkdir(dir, 0755);
    ts_hf_files hf;
    ts_err err = {0};
    /* config.json required */
    ck_assert_int_ne(ts_hf_files_load(dir, true, &hf, &err), TS_OK);
    ck_assert(strstr(err.msg, "config.json"));
    /* optional when asked: everything absent is fine */
    ck_assert_int_eq(ts_hf_files_load(dir, false, &hf, &err), TS_OK);
    ck_assert_ptr_null(hf.config.root);
    ck_assert_ptr_null(hf.tokenizer_config.root);
    ts_hf_files_free(&hf);
    free(write_json("model/config.json", "{\"architectures\": [\"LlamaForCausalLM\"]}"));
    free(write_json("model/generation_config.json", "{\"bos_token_id\": 1}"));
    free(write_json("model/tokenizer_config.json", "{\"add_bos_token\": true"));
    ck_assert_int_ne(ts_hf_files_load(dir, true, &hf, &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "tokenizer_config.json"), "%s", err.msg);
    free(write_json("model/tokenizer_config.json", "{\"add_bos_token\": true}"));
    ck_assert_int_eq(ts_hf_files_load(dir, true, &hf, &err), TS_OK);
    ck_assert_ptr_nonnull(hf.config.root);
    ck_assert_ptr_nonnull(hf.generation_config.root);
    bool b = false;
    ck_assert_int_eq(ts_json_bool_opt(&hf.tokenizer_config, "add_bos_token", false, &b, &err), TS_OK);
    ck_assert(b);
    ts_hf_files_free(&hf);
}
END_TEST

START_TEST(real_configs)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return;
    const char *models[] = {"llama-spm-8m", "qwen3-tok-small", "qwen3moe-tok-small", "qwen3moe-spm-9m"};
    for (size_t i = 0; i < 4; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/models/%s", shared, models[i]);
        ts_hf_files hf;
        ts_err err = {0};
        ck_assert_msg(ts_hf_files_load(dir, true, &hf, &err) == TS_OK, "%s", err.msg);
        int64_t v;
        ck_assert_int_eq(ts_json_int_req(&hf.config, "hidden_size", 1, &v, &err), TS_OK);
        ck_assert(v == 128 || v == 256);
        ck_assert_ptr_nonnull(hf.generation_config.root);
        ck_assert_ptr_nonnull(hf.tokenizer_config.root);
        ts_hf_files_free(&hf);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hf_config");
    TCase *tc = tcase_create("hf_config");
    tcase_add_test(tc, typed_getters);
    tcase_add_test(tc, bad_files);
    tcase_add_test(tc, model_dir_files);
    tcase_add_test(tc, real_configs);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
