/* Tokenizer conversion: real tokenizers from ../shared (written to a GGUF and
 * read back), small synthetic tokenizers for each rule, and a table of bad inputs
 * that must fail with a message naming the problem. */
#define _GNU_SOURCE /* asprintf */
#include "testutil.h"
#include "convert/tokenizer.h"
#include "formats/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- helpers ---- */

static int g_counter;

/* A fresh folder under the test tmpdir; returns its path (static buffer per call site is not enough: heap). */
static char *make_dir(void)
{
    char *path = NULL;
    if (asprintf(&path, "%s/tok%d", tu_tmpdir(), g_counter++) < 0)
        abort();
    ck_assert_int_eq(mkdir(path, 0755), 0);
    return path;
}

static void put(const char *dir, const char *name, const void *data, size_t n)
{
    char rel[512];
    snprintf(rel, sizeof rel, "%s/%s", strrchr(dir, '/') + 1, name);
    free(tu_write_file(rel, data, n));
}

static void put_str(const char *dir, const char *name, const char *text)
{
    put(dir, name, text, strlen(text));
}

/* Convert dir into a GGUF file and open it; returns the status of the conversion. */
static ts_status convert(const char *dir, int64_t rows, ts_gguf **out, ts_err *err)
{
    ts_gguf_writer *w = NULL;
    *out = NULL;
    ck_assert_int_eq(ts_gguf_writer_new(&w, err), TS_OK);
    ts_gguf_set_str(w, "general.architecture", "llama");
    ts_status st = ts_tokenizer_convert(dir, rows, w, err);
    if (st == TS_OK) {
        char path[600];
        snprintf(path, sizeof path, "%s/out%d.gguf", tu_tmpdir(), g_counter++);
        ck_assert_msg(ts_gguf_writer_begin(w, path, NULL, err) == TS_OK, "%s", err->msg);
        ck_assert_msg(ts_gguf_writer_finish(w, err) == TS_OK, "%s", err->msg);
        ck_assert_msg(ts_gguf_open(path, out, err) == TS_OK, "%s", err->msg);
    }
    ts_gguf_writer_free(w);
    return st;
}

static const ts_gguf_value *arr(const ts_gguf *g, const char *key, ts_gguf_type elem)
{
    const ts_gguf_kv *kv = ts_gguf_find_kv(g, key);
    ck_assert_msg(kv != NULL, "missing %s", key);
    ck_assert_int_eq(kv->value.type, TS_GGUF_ARRAY);
    ck_assert_int_eq(kv->value.arr.elem_type, elem);
    return &kv->value;
}

static const char *token(const ts_gguf *g, uint64_t i)
{
    const ts_gguf_value *v = arr(g, "tokenizer.ggml.tokens", TS_GGUF_STRING);
    ck_assert_uint_lt(i, v->arr.n);
    return ((const ts_gguf_string *)v->arr.data)[i].s;
}

static int32_t token_type(const ts_gguf *g, uint64_t i)
{
    const ts_gguf_value *v = arr(g, "tokenizer.ggml.token_type", TS_GGUF_INT32);
    ck_assert_uint_lt(i, v->arr.n);
    return ((const int32_t *)v->arr.data)[i];
}

static float score(const ts_gguf *g, uint64_t i)
{
    const ts_gguf_value *v = arr(g, "tokenizer.ggml.scores", TS_GGUF_FLOAT32);
    ck_assert_uint_lt(i, v->arr.n);
    return ((const float *)v->arr.data)[i];
}

static uint64_t get_u(const ts_gguf *g, const char *key)
{
    uint64_t v = 0;
    ck_assert_msg(ts_gguf_get_u64(g, key, &v), "missing %s", key);
    return v;
}

static bool get_b(const ts_gguf *g, const char *key)
{
    bool v = false;
    ck_assert_msg(ts_gguf_get_bool(g, key, &v), "missing %s", key);
    return v;
}

/* ---- a tiny protobuf writer for synthetic tokenizer.model files ---- */

typedef struct {
    uint8_t b[8192];
    size_t n;
} pbuf;

static void pb_varint(pbuf *p, uint64_t v)
{
    do {
        p->b[p->n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
}

static void pb_bytes(pbuf *p, unsigned field, const void *data, size_t n)
{
    pb_varint(p, (uint64_t)field << 3 | 2);
    pb_varint(p, n);
    memcpy(p->b + p->n, data, n);
    p->n += n;
}

static void pb_piece(pbuf *p, const char *text, float sc, int type)
{
    pbuf s = {.n = 0};
    pb_bytes(&s, 1, text, strlen(text));
    s.b[s.n++] = 2 << 3 | 5;
    memcpy(s.b + s.n, &sc, 4);
    s.n += 4;
    pb_varint(&s, 3 << 3);
    pb_varint(&s, (uint64_t)type);
    pb_bytes(p, 1, s.b, s.n);
}

/* <unk> <s> </s>, the 256 byte pieces would be long: a handful are enough. */
static void pb_small_model(pbuf *p, int model_type)
{
    p->n = 0;
    pb_piece(p, "<unk>", 0, 2);
    pb_piece(p, "<s>", 0, 3);
    pb_piece(p, "</s>", 0, 3);
    pb_piece(p, "<0x0A>", 0, 6);
    pb_piece(p, "\xe2\x96\x81t", -1, 1);
    pb_piece(p, "\xe2\x96\x81", -2, 1);
    pb_piece(p, "t", -3, 1);
    pbuf t = {.n = 0};
    pb_varint(&t, 3 << 3);
    pb_varint(&t, (uint64_t)model_type);
    pb_varint(&t, 35 << 3);
    pb_varint(&t, 1);
    pb_bytes(p, 2, t.b, t.n);
    pbuf nspec = {.n = 0};
    pb_varint(&nspec, 4 << 3); /* remove_extra_whitespaces = false */
    pb_varint(&nspec, 0);
    pb_bytes(p, 3, nspec.b, nspec.n);
}

/* ---- real tokenizers ---- */

START_TEST(real_spm)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/models/llama-spm-8m", shared);
    ts_gguf *g;
    ts_err err = {0};
    ck_assert_msg(convert(dir, 4096, &g, &err) == TS_OK, "%s", err.msg);
    ck_assert_str_eq(ts_gguf_get_str(g, "tokenizer.ggml.model"), "llama");
    ck_assert_str_eq(ts_gguf_get_str(g, "tokenizer.ggml.pre"), "default");
    ck_assert_uint_eq(arr(g, "tokenizer.ggml.tokens", TS_GGUF_STRING)->arr.n, 4096);
    ck_assert_uint_eq(arr(g, "tokenizer.ggml.scores", TS_GGUF_FLOAT32)->arr.n, 4096);
    ck_assert_str_eq(token(g, 1), "<s>");
    ck_assert_int_eq(token_type(g, 1), 3);      /* CONTROL */
    ck_assert_str_eq(token(g, 3), "<0x00>");
    ck_assert_int_eq(token_type(g, 3), 6);      /* BYTE */
    ck_assert_str_eq(token(g, 259), "\xe2\x96\x81\xe2\x96\x81");
    ck_assert_int_eq(token_type(g, 259), 1);
    ck_assert(score(g, 261) == -2.0f);          /* the model's own scores */
    ck_assert(score(g, 0) == -1000.0f);         /* added_tokens_decoder entries, as llama.cpp */
    ck_assert_uint_eq(get_u(g, "tokenizer.ggml.bos_token_id"), 1);
    ck_assert_uint_eq(get_u(g, "tokenizer.ggml.eos_token_id"), 2);
    ck_assert_uint_eq(get_u(g, "tokenizer.ggml.unknown_token_id"), 0);
    ck_assert(get_b(g, "tokenizer.ggml.add_bos_token"));
    ck_assert(!get_b(g, "tokenizer.ggml.add_eos_token"));
    ck_assert(get_b(g, "tokenizer.ggml.add_space_prefix"));
    ck_assert(ts_gguf_find_kv(g, "tokenizer.ggml.merges") == NULL);
    ts_gguf_close(g);
    /* more rows than pieces: [PAD<i>] UNUSED with llama.cpp's -10000 score */
    ck_assert_msg(convert(dir, 4100, &g, &err) == TS_OK, "%s", err.msg);
    ck_assert_str_eq(token(g, 4099), "[PAD4099]");
    ck_assert_int_eq(token_type(g, 4099), 5);
    ck_assert(score(g, 4099) == -10000.0f);
    ts_gguf_close(g);
    ck_assert_int_ne(convert(dir, 4000, &g, &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "4096 tokens") && strstr(err.msg, "4000"), "%s", err.msg);
}
END_TEST

START_TEST(real_bpe)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/models/qwen3-tok-small", shared);
    ts_gguf *g;
    ts_err err = {0};
    ck_assert_msg(convert(dir, 151936, &g, &err) == TS_OK, "%s", err.msg);
    ck_assert_str_eq(ts_gguf_get_str(g, "tokenizer.ggml.model"), "gpt2");
    ck_assert_str_eq(ts_gguf_get_str(g, "tokenizer.ggml.pre"), "qwen2");
    ck_assert_uint_eq(arr(g, "tokenizer.ggml.tokens", TS_GGUF_STRING)->arr.n, 151936);
    const ts_gguf_value *m = arr(g, "tokenizer.ggml.merges", TS_GGUF_STRING);
    ck_assert_uint_eq(m->arr.n, 151387);
    ck_assert_str_eq(((const ts_gguf_string *)m->arr.data)[0].s, "\xc4\xa0 \xc4\xa0"); /* "Ġ Ġ" */
    ck_assert_str_eq(token(g, 0), "!");
    ck_assert_str_eq(token(g, 151643), "<|endoftext|>");
    ck_assert_int_eq(token_type(g, 151643), 3);
    ck_assert_str_eq(token(g, 151657), "<tool_call>"); /* added, not special */
    ck_assert_int_eq(token_type(g, 151657), 4);
    ck_assert_str_eq(token(g, 151659), "<|fim_prefix|>"); /* not special but looks it */
    ck_assert_int_eq(token_type(g, 151659), 3);
    ck_assert_str_eq(token(g, 151935), "[PAD151935]");
    ck_assert_int_eq(token_type(g, 151935), 5);
    ck_assert(ts_gguf_find_kv(g, "tokenizer.ggml.scores") == NULL);
    ck_assert_uint_eq(get_u(g, "tokenizer.ggml.eos_token_id"), 151645);    /* tokenizer_config <|im_end|> */
    ck_assert_uint_eq(get_u(g, "tokenizer.ggml.bos_token_id"), 151643);    /* config.json */
    ck_assert_uint_eq(get_u(g, "tokenizer.ggml.padding_token_id"), 151643);
    ck_assert(!get_b(g, "tokenizer.ggml.add_bos_token"));
    ck_assert(strstr(ts_gguf_get_str(g, "tokenizer.chat_template"), "<|im_start|>") != NULL);
    ts_gguf_close(g);
}
END_TEST

/* ---- synthetic tokenizers ---- */

/* Byte-level BPE: vocab ids 0..5; merges in the list form (one part holds a space). */
static const char *BPE_JSON_FMT =
    "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": false, \"ignore_merges\": %s,"
    "  \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \" \": 3, \" a\": 4, \"x\": 5},"
    "  \"merges\": [[\"a\", \"b\"], [\" \", \"a\"]]},"
    " \"pre_tokenizer\": %s,"
    " \"decoder\": {\"type\": \"ByteLevel\"},"
    " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}},"
    "   {\"Sequence\": {\"id\": \"A\"}}], \"pair\": []},"
    " \"added_tokens\": [{\"id\": 6, \"content\": \"<s>\", \"special\": true},"
    "   {\"id\": 7, \"content\": \"x\", \"special\": false},"
    "   {\"id\": 9, \"content\": \"my\xe2\x96\x81word\", \"special\": false}]}";

static const char *LLAMA3_PRE =
    "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+"
    "[\\r\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false},"
    " {\"type\": \"ByteLevel\", \"use_regex\": false}]}";

static char *bpe_json(const char *ignore_merges, const char *pre)
{
    char *s = NULL;
    if (asprintf(&s, BPE_JSON_FMT, ignore_merges, pre) < 0)
        abort();
    return s;
}

START_TEST(synthetic_bpe)
{
    char *dir = make_dir();
    char *js = bpe_json("true", LLAMA3_PRE);
    put_str(dir, "tokenizer.json", js);
    put_str(dir, "tokenizer_config.json", "{\"bos_token\": {\"content\": \"<s>\"}, \"model_max_length\": "
                                          "1000000000000000019884624838656}");
    put_str(dir, "chat_template.jinja", "{{ messages }}");
    ts_gguf *g;
    ts_err err = {0};
    ck_assert_msg(convert(dir, 0, &g, &err) == TS_OK, "%s", err.msg);
    /* the raw \r\n inside the regex normalize to escapes: llama-bpe, since ignore_merges */
    ck_assert_str_eq(ts_gguf_get_str(g, "tokenizer.ggml.pre"), "llama-bpe");
    ck_assert_uint_eq(arr(g, "tokenizer.ggml.tokens", TS_GGUF_STRING)->arr.n, 10);
    const ts_gguf_value *m = arr(g, "tokenizer.ggml.merges", TS_GGUF_STRING);
    ck_assert_str_eq(((const ts_gguf_string *)m->arr.data)[0].s, "a b");
    ck_assert_str_eq(((const ts_gguf_string *)m->arr.data)[1].s, "\xc4\xa0 a"); /* space -> U+0120 */
    ck_assert_str_eq(token(g, 6), "<s>");
    ck_assert_int_eq(token_type(g, 6), 3);
    /* "x" is both vocab id 5 and added id 7: the added token wins, 5 becomes a pad */
    ck_assert_str_eq(token(g, 7), "x");
    ck_assert_int_eq(token_type(g, 7), 4);
    ck_assert_str_eq(token(g, 5), "[PAD5]");
    ck_assert_int_eq(token_type(g, 5), 5);
    ck_assert_str_eq(token(g, 8), "[PAD8]"); /* nobody defines 8 */
    ck_assert_str_eq(token(g, 9), "my word"); /* user-defined U+2581 -> space */
    ck_assert_uint_eq(get_u(g, "tokenizer.ggml.bos_token_id"), 6);
    ck_assert(get_b(g, "tokenizer.ggml.add_bos_token")); /* from TemplateProcessing */
    ck_assert_str_eq(ts_gguf_get_str(g, "tokenizer.chat_template"), "{{ messages }}");
    ts_gguf_close(g);
    /* same regex without ignore_merges is llama.cpp's smaug-bpe */
    free(js);
    js = bpe_json("false", LLAMA3_PRE);
    put_str(dir, "tokenizer.json", js);
    ck_assert_msg(convert(dir, 0, &g, &err) == TS_OK, "%s", err.msg);
    ck_assert_str_eq(ts_gguf_get_str(g, "tokenizer.ggml.pre"), "smaug-bpe");
    ts_gguf_close(g);
    /* a lone ByteLevel pre-tokenizer uses GPT-2's regex */
    free(js);
    js = bpe_json("false", "{\"type\": \"ByteLevel\", \"add_prefix_space\": false}");
    put_str(dir, "tokenizer.json", js);
    ck_assert_msg(convert(dir, 0, &g, &err) == TS_OK, "%s", err.msg);
    ck_assert_str_eq(ts_gguf_get_str(g, "tokenizer.ggml.pre"), "gpt-2");
    ts_gguf_close(g);
    free(js);
    free(dir);
}
END_TEST

START_TEST(synthetic_spm)
{
    char *dir = make_dir();
    pbuf p;
    pb_small_model(&p, 2);
    put(dir, "tokenizer.model", p.b, p.n);
    put_str(dir, "added_tokens.json", "{\"<extra>\": 7}");
    put_str(dir, "special_tokens_map.json", "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}");
    put_str(dir, "config.json", "{\"pad_token_id\": -1, \"unk_token_id\": 0}");
    ts_gguf *g;
    ts_err err = {0};
    ck_assert_msg(convert(dir, 0, &g, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(arr(g, "tokenizer.ggml.tokens", TS_GGUF_STRING)->arr.n, 8);
    ck_assert_str_eq(token(g, 7), "<extra>");
    ck_assert_int_eq(token_type(g, 7), 4);
    ck_assert(score(g, 7) == -1000.0f);
    ck_assert_int_eq(token_type(g, 0), 2); /* UNKNOWN stays: no added_tokens_decoder here */
    ck_assert(score(g, 4) == -1.0f);
    ck_assert_uint_eq(get_u(g, "tokenizer.ggml.bos_token_id"), 1);
    ck_assert_uint_eq(get_u(g, "tokenizer.ggml.eos_token_id"), 2);
    ck_assert(ts_gguf_find_kv(g, "tokenizer.ggml.padding_token_id") == NULL);
    ck_assert(ts_gguf_find_kv(g, "tokenizer.ggml.remove_extra_whitespaces") == NULL);
    ts_gguf_close(g);
    free(dir);
}
END_TEST

/* SentencePiece-style BPE tokenizer.json: scores follow merge ranks. */
START_TEST(synthetic_bpe_spm)
{
    char *dir = make_dir();
    put_str(dir, "tokenizer.json",
            "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": \"<unk>\","
            "  \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"<0x0A>\": 2, \"\xe2\x96\x81\": 3, \"a\": 4, \"b\": 5,"
            "    \"ab\": 6, \"\xe2\x96\x81" "ab\": 7, \"zz\": 8},"
            "  \"merges\": [\"a b\", \"\xe2\x96\x81 ab\"]},"
            " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "
            "\"\xe2\x96\x81\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\xe2\x96\x81\"}]},"
            " \"pre_tokenizer\": null, \"decoder\": {\"type\": \"Sequence\"},"
            " \"added_tokens\": [{\"id\": 1, \"content\": \"<s>\", \"special\": true}]}");
    ts_gguf *g;
    ts_err err = {0};
    ck_assert_msg(convert(dir, 0, &g, &err) == TS_OK, "%s", err.msg);
    ck_assert_str_eq(ts_gguf_get_str(g, "tokenizer.ggml.model"), "llama");
    ck_assert(ts_gguf_find_kv(g, "tokenizer.ggml.merges") == NULL);
    ck_assert(score(g, 6) == 0.0f);   /* merge 0 */
    ck_assert(score(g, 7) == -1.0f);  /* merge 1 */
    ck_assert(score(g, 8) < score(g, 7)); /* made by no merge: below all merged tokens */
    ck_assert_int_eq(token_type(g, 2), 6);
    ck_assert_int_eq(token_type(g, 0), 2);
    ck_assert_int_eq(token_type(g, 1), 3);
    ck_assert(get_b(g, "tokenizer.ggml.add_space_prefix"));
    ts_gguf_close(g);
    free(dir);
}
END_TEST

/* ---- bad input ---- */

typedef struct {
    const char *file;    /* NULL: write nothing */
    const char *content; /* NULL: binary from build_bad_model */
    const char *expect;  /* substring of the error message */
} bad_case;

static const bad_case BAD_JSON[] = {
    {"tokenizer.json", "{\"model\": {\"type\": \"BPE\"", "invalid JSON"},
    {"tokenizer.json", "[1, 2]", "top level"},
    {"tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "WordPiece"},
    {"tokenizer.json", "{\"model\": {\"vocab\": {}}}", "model.type"},
    /* unknown pre-tokenizer regex: the message quotes it and lists the known names */
    {"tokenizer.json",
     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"},"
     " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
     "{\"Regex\": \"\\\\p{L}+|zzz-unknown\"}, \"behavior\": \"Isolated\", \"invert\": false}]}}",
     "\\p{L}+|zzz-unknown"},
    {"tokenizer.json",
     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"},"
     " \"pre_tokenizer\": {\"type\": \"Digits\"}}",
     "llama-bpe, smaug-bpe, qwen2"},
    {"tokenizer.json",
     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"decoder\": {\"type\": \"ByteLevel\"}}",
     "pre_tokenizer is missing"},
    /* merges referencing unknown tokens */
    {"tokenizer.json",
     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]},"
     " \"decoder\": {\"type\": \"ByteLevel\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
     "merges[0] uses 'ab'"},
    {"tokenizer.json",
     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\", \"q\"]]},"
     " \"decoder\": {\"type\": \"ByteLevel\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
     "uses 'q'"},
    {"tokenizer.json",
     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]},"
     " \"decoder\": {\"type\": \"ByteLevel\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
     "separated by one space"},
    {"tokenizer.json",
     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []},"
     " \"decoder\": {\"type\": \"ByteLevel\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
     "gives id 0"},
    {"tokenizer.json",
     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []},"
     " \"decoder\": {\"type\": \"ByteLevel\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
     "model.vocab['a']"},
    {"tokenizer.json",
     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999999}, \"merges\": []},"
     " \"decoder\": {\"type\": \"ByteLevel\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
     "model.vocab['a']"},
    {"tokenizer.json",
     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
     " \"decoder\": {\"type\": \"ByteLevel\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"},"
     " \"added_tokens\": [{\"id\": \"x\", \"content\": \"<s>\"}]}",
     "added_tokens[0].id"},
    {"tokenizer.json",
     "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"decoder\": {\"type\": \"Metaspace\"}}",
     "ByteLevel decoder"},
    {"tokenizer.json",
     "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"a\": 0}, \"merges\": []}}",
     "U+2581"},
    {NULL, NULL, "no tokenizer.model or tokenizer.json"},
};

START_TEST(bad_json)
{
    for (size_t i = 0; i < sizeof BAD_JSON / sizeof *BAD_JSON; i++) {
        char *dir = make_dir();
        if (BAD_JSON[i].file)
            put_str(dir, BAD_JSON[i].file, BAD_JSON[i].content);
        ts_gguf *g;
        ts_err err = {0};
        ck_assert_msg(convert(dir, 0, &g, &err) != TS_OK, "case %zu converted", i);
        ck_assert_msg(strstr(err.msg, BAD_JSON[i].expect) != NULL, "case %zu: expected '%s' in: %s", i,
                      BAD_JSON[i].expect, err.msg);
        free(dir);
    }
}
END_TEST

static void expect_bad_model(const void *data, size_t n, const char *expect)
{
    char *dir = make_dir();
    put(dir, "tokenizer.model", data, n);
    ts_gguf *g;
    ts_err err = {0};
    ck_assert_msg(convert(dir, 0, &g, &err) != TS_OK, "converted, expected '%s'", expect);
    ck_assert_msg(strstr(err.msg, expect) != NULL, "expected '%s' in: %s", expect, err.msg);
    ck_assert_msg(strstr(err.msg, "tokenizer.model") != NULL, "no file name in: %s", err.msg);
    free(dir);
}

START_TEST(bad_protobuf)
{
    pbuf p;
    pb_small_model(&p, 2);
    for (size_t cut = 1; cut < p.n; cut += 7) { /* every truncation fails cleanly */
        char *dir = make_dir();
        put(dir, "tokenizer.model", p.b, cut);
        ts_gguf *g;
        ts_err err = {0};
        ck_assert_msg(convert(dir, 0, &g, &err) != TS_OK, "truncated at %zu converted", cut);
        free(dir);
    }
    expect_bad_model(p.b, 3, "claims");
    static const uint8_t long_varint[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    expect_bad_model(long_varint, sizeof long_varint, "varint");
    static const uint8_t cut_varint[] = {0x0a, 0xff};
    expect_bad_model(cut_varint, sizeof cut_varint, "truncated varint");
    static const uint8_t group[] = {0x0b, 0x00};
    expect_bad_model(group, sizeof group, "wire type");
    static const uint8_t wrong_wire[] = {0x08, 0x01};
    expect_bad_model(wrong_wire, sizeof wrong_wire, "ModelProto.pieces");
    expect_bad_model("", 0, "no pieces");
    pb_small_model(&p, 3);
    expect_bad_model(p.b, p.n, "model_type 3");
    p.n = 0;
    pb_piece(&p, "<0xZZ>", 0, 6);
    expect_bad_model(p.b, p.n, "BYTE");
    p.n = 0;
    pb_piece(&p, "\xff\xfe", 0, 1);
    expect_bad_model(p.b, p.n, "UTF-8");
    p.n = 0;
    pb_piece(&p, "ok", 0, 9);
    expect_bad_model(p.b, p.n, "type 9");
    p.n = 0;
    pb_piece(&p, "", 0, 1);
    expect_bad_model(p.b, p.n, "no text");
}
END_TEST

START_TEST(bad_added_tokens)
{
    char *dir = make_dir();
    pbuf p;
    pb_small_model(&p, 1);
    put(dir, "tokenizer.model", p.b, p.n);
    put_str(dir, "added_tokens.json", "{\"<extra>\": 70}");
    ts_gguf *g;
    ts_err err = {0};
    ck_assert_int_ne(convert(dir, 8, &g, &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "71 tokens") && strstr(err.msg, "8 embedding rows"), "%s", err.msg);
    put_str(dir, "added_tokens.json", "{\"<extra>\": \"seven\"}");
    ck_assert_int_ne(convert(dir, 0, &g, &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "not an integer"), "%s", err.msg);
    put_str(dir, "added_tokens.json", "{}");
    put_str(dir, "tokenizer_config.json", "{\"added_tokens_decoder\": {\"x1\": {\"content\": \"a\"}}}");
    ck_assert_int_ne(convert(dir, 0, &g, &err), TS_OK);
    ck_assert_msg(strstr(err.msg, "added_tokens_decoder key 'x1'"), "%s", err.msg);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("tokenizer");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, real_spm);
    tcase_add_test(tc, real_bpe);
    tcase_add_test(tc, synthetic_bpe);
    tcase_add_test(tc, synthetic_spm);
    tcase_add_test(tc, synthetic_bpe_spm);
    tcase_add_test(tc, bad_json);
    tcase_add_test(tc, bad_protobuf);
    tcase_add_test(tc, bad_added_tokens);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
