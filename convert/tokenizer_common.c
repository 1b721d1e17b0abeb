/* ts_tokenizer_convert: picks the reader for the files in the folder, then pads,
 * de-duplicates and writes the vocabulary the way llama.cpp's converter
 * (convert_hf_to_gguf.py, gguf-py SpecialVocab) does. See docs/tokenizers.md. */
#include "convert/tokenizer_internal.h"
#include "core/mapped_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---- */

bool ts_tok_utf8_valid(const char *str, size_t len)
{
    static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0)
            n = 1, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0)
            n = 2, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0)
            n = 3, cp = c & 0x07;
        else
            return false;
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false; /* overlong, out of range, surrogate */
        i += n + 1;
    }
    return true;
}

bool ts_tok_looks_special(const char *s)
{
    size_t n = strlen(s);
    static const char *const exact[] = {"<pad>", "<mask>", "<2mass>", "[@BOS@]"};
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        if (strcmp(s, exact[i]) == 0)
            return true;
#define ENDS(str, suf) (n >= strlen(suf) && strcmp((str) + n - strlen(suf), suf) == 0)
    if (strncmp(s, "<|", 2) == 0 && ENDS(s, "|>"))
        return true;
    /* deepseek: fullwidth vertical bars U+FF5C */
    if (strncmp(s, "<\xef\xbd\x9c", 4) == 0 && ENDS(s, "\xef\xbd\x9c>"))
        return true;
    if (strncmp(s, "<unused", 7) == 0 && ENDS(s, ">"))
        return true;
#undef ENDS
    return false;
}

char *ts_tok_unescape_spaces(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
            *o++ = ' ';
            i += 3;
        } else {
            *o++ = s[i++];
        }
    }
    *o = 0;
    return out;
}

json_t *ts_tok_json_load(const char *buf, size_t len, json_error_t *jerr)
{
    /* No JSON_ALLOW_NUL: a \u0000 inside a string is refused here, once. */
    return json_loadb(buf, len, JSON_DECODE_INT_AS_REAL, jerr);
}

bool ts_tok_json_int(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    if (!json_is_real(v))
        return false;
    double d = json_real_value(v);
    if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) || d != (double)(int64_t)d)
        return false;
    *out = (int64_t)d;
    return true;
}

const char *ts_tok_json_str(const json_t *obj, const char *key)
{
    const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

const char *ts_tok_token_content(const json_t *v)
{
    if (json_is_string(v))
        return json_string_value(v);
    return ts_tok_json_str(v, "content");
}

/* ---- the vocabulary ---- */

ts_status ts_tok_vocab_init(ts_tok_vocab *v, int64_t own, int64_t rows, bool with_scores, const char *what,
                            ts_err *err)
{
    if (rows < 0)
        return ts_fail(err, TS_ERR_ARG, "tokenizer: negative vocab_size %lld", (long long)rows);
    if (rows && rows < own)
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: the tokenizer has %lld tokens but the model has only %lld embedding rows "
                       "(config.json vocab_size); expected at least as many rows as tokens",
                       what, (long long)own, (long long)rows);
    int64_t n = rows ? rows : own;
    if (n <= 0 || n > TS_TOK_MAX_TOKENS)
        return ts_fail(err, TS_ERR_LIMIT, "%s: %lld tokens; expected 1 to %lld", what, (long long)n,
                       (long long)TS_TOK_MAX_TOKENS);
    v->n = n;
    v->text = calloc((size_t)n, sizeof *v->text);
    v->type = calloc((size_t)n, sizeof *v->type);
    v->added = calloc((size_t)n, 1);
    v->score = with_scores ? calloc((size_t)n, sizeof *v->score) : NULL;
    if (!v->text || !v->type || !v->added || (with_scores && !v->score))
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory for %lld tokens", what, (long long)n);
    return TS_OK;
}

void ts_tok_vocab_free(ts_tok_vocab *v)
{
    for (int64_t i = 0; v->text && i < v->n; i++)
        free(v->text[i]);
    for (int64_t i = 0; v->merges && i < v->n_merges; i++)
        free(v->merges[i]);
    free(v->text);
    free(v->type);
    free(v->score);
    free(v->added);
    free(v->merges);
    memset(v, 0, sizeof *v);
}

ts_status ts_tok_vocab_set(ts_tok_vocab *v, int64_t id, const char *s, size_t len, int32_t type, float score,
                           bool added, const char *what, ts_err *err)
{
    if (id < 0 || id >= v->n)
        return ts_fail(err, TS_ERR_FORMAT, "%s: token id %lld is out of range; expected 0 to %lld", what,
                       (long long)id, (long long)v->n - 1);
    if (len > TS_TOK_MAX_TOKEN_BYTES)
        return ts_fail(err, TS_ERR_LIMIT, "%s: token %lld is %zu bytes long; at most %u allowed", what,
                       (long long)id, len, TS_TOK_MAX_TOKEN_BYTES);
    if (memchr(s, 0, len))
        return ts_fail(err, TS_ERR_FORMAT, "%s: token %lld contains a NUL byte", what, (long long)id);
    if (!ts_tok_utf8_valid(s, len))
        return ts_fail(err, TS_ERR_FORMAT, "%s: token %lld is not valid UTF-8", what, (long long)id);
    char *copy = malloc(len + 1);
    if (!copy)
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", what);
    memcpy(copy, s, len);
    copy[len] = 0;
    free(v->text[id]);
    v->text[id] = copy;
    v->type[id] = type;
    v->added[id] = added;
    if (v->score)
        v->score[id] = score;
    return TS_OK;
}

static ts_status set_pad(ts_tok_vocab *v, int64_t i, ts_err *err)
{
    char buf[40];
    int n = snprintf(buf, sizeof buf, "[PAD%lld]", (long long)i);
    /* llama.cpp's SentencePiece path pads with score -10000 (convert_hf_to_gguf.py) */
    return ts_tok_vocab_set(v, i, buf, (size_t)n, TS_TOK_UNUSED, -10000.0f, false, "tokenizer", err);
}

/* Ids nobody defined become [PAD<i>]. Then every text must be unique: llama.cpp
 * asserts that (llama-vocab.cpp), and Hugging Face keeps one id per text, added
 * tokens winning, so the losing id becomes a [PAD<i>] as in get_vocab_base(). */
static ts_status finish_vocab(ts_tok_vocab *v, ts_tok_map *map, ts_err *err)
{
    ts_status st;
    for (int64_t i = 0; i < v->n; i++)
        if (!v->text[i] && (st = set_pad(v, i, err)))
            return st;
    if ((st = ts_tok_map_init(map, v->text, v->n, err)))
        return st;
    for (int64_t i = 0; i < v->n; i++) {
        int64_t j = ts_tok_map_insert(map, i);
        if (j < 0)
            continue;
        bool i_wins = v->added[i] && !v->added[j];
        int64_t loser = i_wins ? j : i;
        if (i_wins)
            ts_tok_map_repoint(map, j, i);
        if ((st = set_pad(v, loser, err)))
            return st;
        if ((j = ts_tok_map_insert(map, loser)) >= 0)
            return ts_fail(err, TS_ERR_FORMAT, "tokenizer: padding token '%s' (id %lld) collides with token %lld",
                           v->text[loser], (long long)loser, (long long)j);
    }
    return TS_OK;
}

static ts_status write_vocab(const ts_tok_vocab *v, ts_gguf_writer *w, ts_err *err)
{
    ts_status st = TS_OK;
    const char *key = NULL;
#define TRY(k, call) \
    if (!st && (st = (call)) != TS_OK) \
        key = (k);
    TRY("tokenizer.ggml.model", ts_gguf_set_str(w, "tokenizer.ggml.model", v->model));
    TRY("tokenizer.ggml.pre", ts_gguf_set_str(w, "tokenizer.ggml.pre", v->pre));
    TRY("tokenizer.ggml.tokens",
        ts_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->text, (uint64_t)v->n));
    if (v->score)
        TRY("tokenizer.ggml.scores",
            ts_gguf_set_arr(w, "tokenizer.ggml.scores", TS_GGUF_FLOAT32, v->score, (uint64_t)v->n));
    TRY("tokenizer.ggml.token_type",
        ts_gguf_set_arr(w, "tokenizer.ggml.token_type", TS_GGUF_INT32, v->type, (uint64_t)v->n));
    if (v->merges)
        TRY("tokenizer.ggml.merges", ts_gguf_set_arr_str(w, "tokenizer.ggml.merges",
                                                         (const char *const *)v->merges, (uint64_t)v->n_merges));
    if (v->add_space_prefix >= 0)
        TRY("tokenizer.ggml.add_space_prefix",
            ts_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", v->add_space_prefix));
    if (v->remove_extra_ws >= 0)
        TRY("tokenizer.ggml.remove_extra_whitespaces",
            ts_gguf_set_bool(w, "tokenizer.ggml.remove_extra_whitespaces", v->remove_extra_ws));
#undef TRY
    if (st)
        return ts_fail(err, st, "tokenizer: cannot set GGUF key %s (%s)", key, ts_status_name(st));
    return TS_OK;
}

/* ---- files ---- */

static ts_status load_json(const char *dir, const char *name, uint64_t max_bytes, json_t **out, ts_err *err)
{
    *out = NULL;
    char *path = ts_path_join(dir, name);
    if (!path)
        return ts_fail(err, TS_ERR_NOMEM, "tokenizer: out of memory");
    if (!ts_file_exists(path)) {
        free(path);
        return TS_OK;
    }
    char *buf = NULL;
    size_t len = 0;
    ts_status st = ts_read_small_file(path, max_bytes, &buf, &len, err);
    if (st) {
        free(path);
        return st;
    }
    json_error_t jerr;
    *out = ts_tok_json_load(buf, len, &jerr);
    free(buf);
    if (!*out)
        st = ts_fail(err, TS_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", path, jerr.line,
                     jerr.column, jerr.text);
    else if (!json_is_object(*out))
        st = ts_fail(err, TS_ERR_FORMAT, "%s: expected a JSON object at the top level", path);
    if (st) {
        json_decref(*out);
        *out = NULL;
    }
    free(path);
    return st;
}

static void free_files(ts_tok_files *f)
{
    json_decref(f->tokenizer);
    json_decref(f->tok_config);
    json_decref(f->special_map);
    json_decref(f->config);
    json_decref(f->gen_config);
}

static ts_status load_files(const char *dir, ts_tok_files *f, ts_err *err)
{
    ts_status st;
    f->dir = dir;
    if ((st = load_json(dir, "tokenizer.json", TS_TOK_JSON_MAX_BYTES, &f->tokenizer, err)) ||
        (st = load_json(dir, "tokenizer_config.json", TS_TOK_SMALL_MAX_BYTES, &f->tok_config, err)) ||
        (st = load_json(dir, "special_tokens_map.json", TS_TOK_SMALL_MAX_BYTES, &f->special_map, err)) ||
        (st = load_json(dir, "config.json", TS_TOK_SMALL_MAX_BYTES, &f->config, err)) ||
        (st = load_json(dir, "generation_config.json", TS_TOK_SMALL_MAX_BYTES, &f->gen_config, err)))
        return st;
    return TS_OK;
}

/* Which reader: tokenizer.model first (as llama.cpp's converter tries
 * SentencePiece first), then tokenizer.json by its model and decoder. */
static ts_status read_vocab(const ts_tok_files *f, int64_t rows, ts_tok_vocab *v, ts_err *err)
{
    char *model_path = ts_path_join(f->dir, "tokenizer.model");
    if (!model_path)
        return ts_fail(err, TS_ERR_NOMEM, "tokenizer: out of memory");
    if (ts_file_exists(model_path)) {
        ts_status st = ts_tok_read_spm(f, model_path, rows, v, err);
        free(model_path);
        return st;
    }
    free(model_path);
    if (!f->tokenizer) { /* Kimi K2 ships only tiktoken.model */
        char *tt = ts_path_join(f->dir, "tiktoken.model");
        ts_status st = !tt ? ts_fail(err, TS_ERR_NOMEM, "tokenizer: out of memory")
                     : ts_file_exists(tt) ? ts_tok_read_tiktoken(f, tt, rows, v, err)
                     : ts_fail(err, TS_ERR_UNSUPPORTED, "%s: no tokenizer.model or tokenizer.json (nor Kimi's "
                               "tiktoken.model); expected one of them (vocab.json + merges.txt alone is not "
                               "supported)", f->dir);
        free(tt);
        return st;
    }
    const json_t *model = json_object_get(f->tokenizer, "model");
    const char *type = ts_tok_json_str(model, "type");
    if (!type)
        return ts_fail(err, TS_ERR_FORMAT, "%s/tokenizer.json: model.type is missing; expected \"BPE\"", f->dir);
    if (strcmp(type, "BPE") != 0)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s/tokenizer.json: model.type \"%s\" is not supported; expected \"BPE\"", f->dir, type);
    if (json_is_true(json_object_get(model, "byte_fallback")))
        return ts_tok_read_bpe_spm(f, rows, v, err);
    return ts_tok_read_bpe(f, rows, v, err);
}

ts_status ts_tokenizer_convert(const char *dir, int64_t vocab_size, ts_gguf_writer *w, ts_err *err)
{
    ts_tok_files f = {0};
    ts_tok_vocab v = {0};
    ts_tok_map map = {0};
    v.add_space_prefix = v.remove_extra_ws = -1;
    for (int i = 0; i < 4; i++)
        v.spm_ids[i] = -1;
    ts_status st;
    if (!(st = load_files(dir, &f, err)) && !(st = read_vocab(&f, vocab_size, &v, err)) &&
        !(st = finish_vocab(&v, &map, err)) && !(st = write_vocab(&v, w, err)))
        st = ts_tok_write_special(&f, &v, &map, w, err);
    ts_tok_map_free(&map);
    ts_tok_vocab_free(&v);
    free_files(&f);
    return st;
}
