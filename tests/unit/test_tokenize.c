/* verify/tokenize: SentencePiece and byte-level BPE on small hand-made
 * vocabularies written with the GGUF writer, so every expected id can be
 * worked out by hand from llama.cpp's rules. (tests/interop/
 * test_tokenize_vs_llama.sh compares real tokenizers with llama.cpp.) */
#include "testutil.h"
#include "formats/gguf.h"
#include "verify/tokenize.h"
#include "verify/tokenize_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *model, *pre;
    const char **tokens; /* NULL-terminated */
    const float *scores;
    const int32_t *types;
    const char **merges; /* NULL-terminated */
    int bos, eos;        /* -1: key not written */
    int add_bos, add_eos, add_space_prefix; /* -1: key not written */
} vocab_spec;

static int count(const char **v)
{
    int n = 0;
    while (v && v[n])
        n++;
    return n;
}

static ts_status try_build(const vocab_spec *v, ts_tokenizer **out, ts_err *err)
{
    static int seq;
    char name[64];
    snprintf(name, sizeof name, "tok%d.gguf", seq++);
    char *path = tu_write_file(name, "", 0);
    ts_gguf_writer *w;
    ck_assert_int_eq(ts_gguf_writer_new(&w, err), TS_OK);
    ts_gguf_set_str(w, "general.architecture", "llama");
    if (v->model)
        ts_gguf_set_str(w, "tokenizer.ggml.model", v->model);
    if (v->pre)
        ts_gguf_set_str(w, "tokenizer.ggml.pre", v->pre);
    int n = count(v->tokens);
    ts_gguf_set_arr_str(w, "tokenizer.ggml.tokens", v->tokens, (uint64_t)n);
    if (v->scores)
        ts_gguf_set_arr(w, "tokenizer.ggml.scores", TS_GGUF_FLOAT32, v->scores, (uint64_t)n);
    if (v->types)
        ts_gguf_set_arr(w, "tokenizer.ggml.token_type", TS_GGUF_INT32, v->types, (uint64_t)n);
    if (v->merges)
        ts_gguf_set_arr_str(w, "tokenizer.ggml.merges", v->merges, (uint64_t)count(v->merges));
    if (v->bos >= 0)
        ts_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    if (v->eos >= 0)
        ts_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
    if (v->add_bos >= 0)
        ts_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos);
    if (v->add_eos >= 0)
        ts_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", v->add_eos);
    if (v->add_space_prefix >= 0)
        ts_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", v->add_space_prefix);
    ck_assert_msg(ts_gguf_writer_begin(w, path, NULL, err) == TS_OK, "%s", err->msg);
    ck_assert_msg(ts_gguf_writer_finish(w, err) == TS_OK, "%s", err->msg);
    ts_gguf_writer_free(w);
    ts_gguf *g;
    ck_assert_msg(ts_gguf_open(path, &g, err) == TS_OK, "%s", err->msg);
    ts_status st = ts_tokenizer_from_gguf(g, out, err);
    ts_gguf_close(g);
    free(path);
    return st;
}

static ts_tokenizer *build(const vocab_spec *v)
{
    ts_tokenizer *t;
    ts_err err = {0};
    ck_assert_msg(try_build(v, &t, &err) == TS_OK, "%s", err.msg);
    return t;
}

static int32_t id_of(const ts_tokenizer *t, const char *s)
{
    for (int32_t i = 0; i < ts_tokenizer_n_vocab(t); i++)
        if (!strcmp(ts_tokenizer_token_text(t, i), s))
            return i;
    ck_abort_msg("no token \"%s\" in the test vocabulary", s);
    return -1;
}

/* Tokenizes text and compares with the expected token texts. */
static void expect_n(const ts_tokenizer *t, const char *text, size_t len, bool add, bool parse, const char **want)
{
    int32_t *ids;
    size_t n;
    ts_err err = {0};
    ck_assert_msg(ts_tokenize(t, text, len, add, parse, &ids, &n, &err) == TS_OK, "%s", err.msg);
    ck_assert_ptr_nonnull(ids);
    char got[2048] = "", exp[2048] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "[%s]", ts_tokenizer_token_text(t, ids[i]));
    for (int i = 0; want[i]; i++)
        snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "[%s]", want[i]);
    ck_assert_msg(!strcmp(got, exp), "\"%s\": got %s, expected %s", text, got, exp);
    for (int i = 0; want[i]; i++)
        ck_assert_int_eq(ids[i], id_of(t, want[i]));
    free(ids);
}

static void expect(const ts_tokenizer *t, const char *text, bool add, bool parse, const char **want)
{
    expect_n(t, text, strlen(text), add, parse, want);
}

#define T(...) ((const char *[]){__VA_ARGS__, NULL})
#define NONE ((const char *[]){NULL})

/* ---- SentencePiece ---- */

enum { SPM_PIECES = 40 };
static const char *spm_tokens[3 + 256 + SPM_PIECES + 1];
static float spm_scores[3 + 256 + SPM_PIECES];
static int32_t spm_types[3 + 256 + SPM_PIECES];
static char spm_bytes[256][8];

/* <unk> <s> </s>, the 256 byte tokens, then pieces with their scores. */
static vocab_spec spm_vocab(bool with_bytes)
{
    static const struct {
        const char *s;
        float score;
        int32_t type;
    } P[] = {
        {"\xe2\x96\x81", -5, 1}, {"h", -6, 1},   {"e", -6, 1},     {"l", -6, 1},      {"o", -6, 1},
        {"w", -6, 1},            {"r", -6, 1},   {"d", -6, 1},     {"a", -6, 1},      {"b", -6, 1},
        {"c", -6, 1},            {"i", -6, 1},   {"ll", -1, 1},    {"he", -2, 1},     {"llo", -1.5f, 1},
        {"hello", -0.5f, 1},     {"\xe2\x96\x81hello", -0.1f, 1},  {"ab", -3, 1},     {"bc", -3, 1},
        {"<tag>", 0, 4},
    };
    int n = 0;
    spm_tokens[n] = "<unk>", spm_types[n++] = 2;
    spm_tokens[n] = "<s>", spm_types[n++] = 3;
    spm_tokens[n] = "</s>", spm_types[n++] = 3;
    for (int b = 0; with_bytes && b < 256; b++) {
        snprintf(spm_bytes[b], sizeof spm_bytes[b], "<0x%02X>", b);
        spm_tokens[n] = spm_bytes[b], spm_scores[n] = 0, spm_types[n++] = 6;
    }
    for (size_t i = 0; i < sizeof P / sizeof *P; i++)
        spm_tokens[n] = P[i].s, spm_scores[n] = P[i].score, spm_types[n++] = P[i].type;
    spm_tokens[n] = NULL;
    return (vocab_spec){.model = "llama", .pre = "default", .tokens = spm_tokens, .scores = spm_scores,
                        .types = spm_types, .bos = 1, .eos = 2, .add_bos = -1, .add_eos = -1,
                        .add_space_prefix = -1};
}

#define SP "\xe2\x96\x81"

START_TEST(spm_merges_by_score)
{
    vocab_spec v = spm_vocab(true);
    ts_tokenizer *t = build(&v);
    /* ll(-1) > llo(-1.5) > he(-2), then hello, then ▁hello; "world" has no pairs */
    expect(t, "hello world", false, false, T(SP "hello", SP, "w", "o", "r", "l", "d"));
    /* equal scores: the leftmost pair first */
    expect(t, "abc", false, false, T(SP, "ab", "c"));
    ck_assert_int_eq(ts_tokenizer_bos(t), 1);
    ck_assert_int_eq(ts_tokenizer_eos(t), 2);
    ck_assert(ts_tokenizer_adds_bos(t)); /* SentencePiece's default */
    ck_assert_int_eq(ts_tokenizer_n_vocab(t), 3 + 256 + 20);
    ck_assert_ptr_null(ts_tokenizer_token_text(t, -1));
    ck_assert_ptr_null(ts_tokenizer_token_text(t, ts_tokenizer_n_vocab(t)));
    ck_assert_str_eq(ts_tokenizer_token_text(t, 1), "<s>");
    ts_tokenizer_free(t);
}
END_TEST

START_TEST(spm_byte_fallback)
{
    vocab_spec v = spm_vocab(true);
    ts_tokenizer *t = build(&v);
    expect(t, "h\xc3\xa9", false, false, T(SP, "h", "<0xC3>", "<0xA9>"));
    /* invalid UTF-8: units go by the lead byte, unchecked, so 0xE2 takes "ab" along */
    expect(t, "\xe2" "ab", false, false, T(SP, "<0xE2>", "<0x61>", "<0x62>"));
    expect(t, "a\xff", false, false, T(SP, "a", "<0xFF>"));
    ts_tokenizer_free(t);

    /* no byte tokens at all: llama.cpp throws; we report which byte */
    v = spm_vocab(false);
    t = build(&v);
    int32_t *ids;
    size_t n;
    ts_err err = {0};
    ck_assert_int_eq(ts_tokenize(t, "hz", 2, false, false, &ids, &n, &err), TS_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "0x7A"));
    ck_assert_ptr_null(ids);
    ts_tokenizer_free(t);
}
END_TEST

START_TEST(spm_special_tokens)
{
    vocab_spec v = spm_vocab(true);
    v.add_eos = 1;
    ts_tokenizer *t = build(&v);
    /* control tokens only with parse_special; a space prefix follows them */
    expect(t, "hello</s>hello", false, true, T(SP "hello", "</s>", SP "hello"));
    expect(t, "hello</s>", false, false,
           T(SP "hello", "<0x3C>", "<0x2F>", "<0x73>", "<0x3E>"));
    /* user-defined tokens always */
    expect(t, "a<tag>a", false, false, T(SP, "a", "<tag>", SP, "a"));
    /* add_special: BOS, and EOS since add_eos_token is set */
    expect(t, "hello", true, false, T("<s>", SP "hello", "</s>"));
    ts_tokenizer_free(t);

    v = spm_vocab(true);
    v.add_space_prefix = 0;
    t = build(&v);
    expect(t, "hello world", false, false, T("hello", SP, "w", "o", "r", "l", "d"));
    ts_tokenizer_free(t);
}
END_TEST

START_TEST(empty_input)
{
    vocab_spec v = spm_vocab(true);
    ts_tokenizer *t = build(&v);
    expect_n(t, "", 0, false, false, NONE);
    expect_n(t, NULL, 0, true, true, T("<s>"));
    ts_tokenizer_free(t);
}
END_TEST

/* ---- byte-level BPE ---- */

#define G "\xc4\xa0" /* Ġ: the byte-level form of a space */
static const char *bpe_tokens[] = {"h", "e", "l", "o", G, "w", "r", "d", "he", "ll", "hell", "hello", G "w", "or",
                                   G "wor", "ld", G "world", "hel", "a", "aa", "\xc3\xaf", "\xc2\xbf", "\xc2\xbd",
                                   "\xc3\xaf\xc2\xbf", "\xc3\xaf\xc2\xbf\xc2\xbd", "<|bos|>", "<|end|>", "<think>",
                                   "!", NULL};
static const int32_t bpe_types[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                    1, 1, 1, 1, 1, 3, 3, 4, 1};
static const char *bpe_merges[] = {"h e", "l l", "he ll", "hell o", G " w", "o r", G "w or", "l d", G "wor ld",
                                   "a a", "\xc3\xaf \xc2\xbf", "\xc3\xaf\xc2\xbf \xc2\xbd", NULL};

static vocab_spec bpe_vocab(const char *pre)
{
    return (vocab_spec){.model = "gpt2", .pre = pre, .tokens = bpe_tokens, .types = bpe_types,
                        .merges = bpe_merges, .bos = 25, .eos = 26, .add_bos = -1, .add_eos = -1,
                        .add_space_prefix = -1};
}

START_TEST(bpe_merges_by_rank)
{
    vocab_spec v = bpe_vocab("gpt-2");
    ts_tokenizer *t = build(&v);
    expect(t, "hello world", false, false, T("hello", G "world"));
    /* "hel" is a token but no merge makes it; x has no token and no byte token: dropped, as llama.cpp does */
    expect(t, "hel", false, false, T("he", "l"));
    expect(t, "hex", false, false, T("he"));
    /* invalid UTF-8 becomes U+FFFD, whose byte-level form ï¿½ the merges build */
    expect(t, "a\xff" "a", false, false, T("a", "\xc3\xaf\xc2\xbf\xc2\xbd", "a"));
    /* special tokens; gpt-2 adds no BOS unless the GGUF says so */
    expect(t, "he<|end|>he", true, true, T("he", "<|end|>", "he"));
    expect(t, "<think>hello", false, false, T("<think>", "hello"));
    ck_assert(!ts_tokenizer_adds_bos(t));
    ts_tokenizer_free(t);

    v.add_bos = 1;
    t = build(&v);
    expect(t, "he", true, false, T("<|bos|>", "he"));
    expect_n(t, "", 0, false, false, NONE);
    ts_tokenizer_free(t);

    /* llama-bpe: a word that is a token is taken whole (ignore_merges), and BOS is added by default */
    v = bpe_vocab("llama-bpe");
    t = build(&v);
    expect(t, "hel", true, false, T("<|bos|>", "hel"));
    ts_tokenizer_free(t);
}
END_TEST

/* Splits text with a pre-tokenizer and joins the pieces with '|'. */
static void expect_pieces(const char *pre, const char *text, const char *want)
{
    ts_pretok p;
    ts_pre_flags f;
    ts_err err = {0};
    ck_assert_msg(ts_pretok_init(&p, pre, &f, &err) == TS_OK, "%s", err.msg);
    size_t len = strlen(text);
    uint32_t *cpts = malloc((len + 1) * sizeof *cpts);
    size_t n = ts_utf8_decode(text, len, cpts);
    ts_split_scratch s = {0};
    const ts_szvec *pieces;
    ck_assert_msg(ts_pretok_split(&p, cpts, n, &s, &pieces, &err) == TS_OK, "%s", err.msg);
    char got[1024];
    size_t at = 0, g = 0;
    for (size_t i = 0; i < pieces->n; i++) {
        if (i)
            got[g++] = '|';
        for (size_t j = at; j < at + pieces->v[i]; j++)
            g += (size_t)ts_utf8_encode(cpts[j], got + g);
        at += pieces->v[i];
    }
    got[g] = '\0';
    ck_assert_msg(!strcmp(got, want), "%s on \"%s\": got \"%s\", expected \"%s\"", pre, text, got, want);
    ts_split_scratch_free(&s);
    ts_pretok_free(&p);
    free(cpts);
}

START_TEST(pretokenizer_pieces)
{
    /* llama.cpp's hand-written Llama 3 matcher */
    expect_pieces("llama-bpe", "Hello  world's 12345\r\n\r\n  x",
                  "Hello| | world|'s| |123|45|\r\n\r\n| | x");
    expect_pieces("qwen2", "ab12 x'LL '", "ab|1|2| x|'LL| '");
    expect_pieces("gpt-2", "it's  ok!!", "it|'s| | ok|!!");
    /* gpt-4o runs on the collapsed text, where any non-ASCII letter is both
     * "not a-z" and "not A-Z": llama.cpp cuts aÉcole whole and ÉCOLE after É
     * (a Unicode-aware engine would give a|École and ÉCOLE) */
    expect_pieces("gpt-4o", "aÉcole ÉCOLE don't", "aÉcole| É|COLE| don't");
    /* deepseek-v3: digits by three, then CJK runs, then the rest */
    expect_pieces("deepseek-v3", "12345中文abc", "123|45|中文|abc");
    /* U+0085 is white space for llama.cpp (not for PCRE2's \s) */
    expect_pieces("qwen2", "a\xc2\x85\xc2\x85" "b", "a|\xc2\x85|\xc2\x85" "b");
}
END_TEST

START_TEST(errors)
{
    ts_tokenizer *t;
    ts_err err = {0};
    vocab_spec v = bpe_vocab("no-such-pre");
    ck_assert_int_eq(try_build(&v, &t, &err), TS_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "no-such-pre"));
    ck_assert_ptr_nonnull(strstr(err.msg, "llama-bpe"));
    v = bpe_vocab("qwen2");
    v.merges = NULL;
    ck_assert_int_eq(try_build(&v, &t, &err), TS_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "merges"));
    v = bpe_vocab("qwen2");
    v.model = "bert";
    ck_assert_int_eq(try_build(&v, &t, &err), TS_ERR_UNSUPPORTED);
    v.model = NULL;
    ck_assert_int_eq(try_build(&v, &t, &err), TS_ERR_FORMAT);

    /* the same text twice: the later id wins, as in llama.cpp */
    static const char *dup[] = {"<unk>", "<s>", "</s>", "x", "x", NULL};
    v = (vocab_spec){.model = "llama", .tokens = dup, .bos = -1, .eos = -1, .add_bos = -1, .add_eos = -1,
                     .add_space_prefix = 0};
    t = build(&v);
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(ts_tokenize(t, "x", 1, false, false, &ids, &n, &err), TS_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ids[0], 4);
    free(ids);
    ts_tokenizer_free(t);
}
END_TEST

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

START_TEST(huge_input)
{
    /* 4 MB through SentencePiece's single merge queue */
    vocab_spec v = spm_vocab(true);
    ts_tokenizer *t = build(&v);
    const char *rep = "hello world ";
    size_t reps = (4u << 20) / strlen(rep), len = reps * strlen(rep);
    char *text = malloc(len + 1);
    for (size_t i = 0; i < reps; i++)
        memcpy(text + i * strlen(rep), rep, strlen(rep));
    int32_t *ids;
    size_t n;
    ts_err err = {0};
    double t0 = seconds();
    ck_assert_msg(ts_tokenize(t, text, len, false, false, &ids, &n, &err) == TS_OK, "%s", err.msg);
    double spm_s = seconds() - t0;
    ck_assert_uint_eq(n, 7 * reps + 1); /* ▁hello ▁ w o r l d, ..., and the last ▁ */
    ck_assert_int_eq(ids[7], id_of(t, SP "hello"));
    free(ids);
    ts_tokenizer_free(t);

    /* one word of a million letters through gpt-4o's lookahead regex (JIT
     * stack or interpreter), then 500k merges in one word */
    v = bpe_vocab("gpt-4o");
    t = build(&v);
    memset(text, 'a', 1000000);
    t0 = seconds();
    ck_assert_msg(ts_tokenize(t, text, 1000000, false, false, &ids, &n, &err) == TS_OK, "%s", err.msg);
    double bpe_s = seconds() - t0;
    ck_assert_uint_eq(n, 500000);
    ck_assert_int_eq(ids[0], id_of(t, "aa"));
    free(ids);
    /* and a megabyte of punctuation */
    memset(text, '!', 1000000);
    ck_assert_msg(ts_tokenize(t, text, 1000000, false, false, &ids, &n, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(n, 1000000);
    free(ids);
    ts_tokenizer_free(t);
    free(text);
    fprintf(stderr, "huge_input: SentencePiece %.2f s for 4 MB, BPE %.2f s for a 1M-letter word\n", spm_s, bpe_s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tokenize");
    TCase *tc = tcase_create("tokenize");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, spm_merges_by_score);
    tcase_add_test(tc, spm_byte_fallback);
    tcase_add_test(tc, spm_special_tokens);
    tcase_add_test(tc, empty_input);
    tcase_add_test(tc, bpe_merges_by_rank);
    tcase_add_test(tc, pretokenizer_pieces);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, huge_input);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
