/* Added tokens on a SentencePiece-style vocabulary, as llama.cpp's
 * _create_vocab_sentencepiece applies them: added_tokens.json entries become
 * USER_DEFINED; tokenizer_config.json added_tokens_decoder entries become CONTROL
 * when special (or looking special), else USER_DEFINED with U+2581 turned into
 * spaces; all score -1000. tokenizer.json's added_tokens (the same list in
 * models that ship both) are applied between the two, so models that ship only
 * tokenizer.json get them too. */
#include "convert/tokenizer_internal.h"
#include "core/mapped_file.h"

#include <stdlib.h>
#include <string.h>

typedef ts_status (*added_fn)(void *ctx, int64_t id, const char *content, bool special, bool force_user,
                              const char *what, ts_err *err);

static ts_status load_added_tokens_json(const ts_tok_files *f, json_t **out, ts_err *err)
{
    *out = NULL;
    char *path = ts_path_join(f->dir, "added_tokens.json");
    if (!path)
        return ts_fail(err, TS_ERR_NOMEM, "tokenizer: out of memory");
    ts_status st = TS_OK;
    if (ts_file_exists(path)) {
        char *buf = NULL;
        size_t len = 0;
        json_error_t jerr;
        if (!(st = ts_read_small_file(path, TS_TOK_SMALL_MAX_BYTES, &buf, &len, err))) {
            *out = ts_tok_json_load(buf, len, &jerr);
            if (!json_is_object(*out))
                st = ts_fail(err, TS_ERR_FORMAT, "%s: expected a JSON object of token -> id (%s)", path,
                             *out ? "not an object" : jerr.text);
        }
        free(buf);
    }
    free(path);
    return st;
}

static ts_status parse_id(const char *key, int64_t *out)
{
    char *end;
    long long id = strtoll(key, &end, 10);
    if (*key == 0 || *end != 0)
        return TS_ERR_FORMAT;
    *out = id;
    return TS_OK;
}

static ts_status visit(const ts_tok_files *f, added_fn fn, void *ctx, ts_err *err)
{
    ts_status st = TS_OK;
    json_t *added_json, *val;
    const char *key;
    if ((st = load_added_tokens_json(f, &added_json, err)))
        return st;
    json_object_foreach(added_json, key, val) {
        int64_t id;
        if (!ts_tok_json_int(val, &id)) {
            st = ts_fail(err, TS_ERR_FORMAT, "%s/added_tokens.json: the id of '%s' is not an integer", f->dir, key);
            break;
        }
        if ((st = fn(ctx, id, key, false, true, "added_tokens.json", err)))
            break;
    }
    json_decref(added_json);
    if (st)
        return st;
    size_t i;
    json_array_foreach(json_object_get(f->tokenizer, "added_tokens"), i, val) {
        int64_t id;
        if (!ts_tok_json_int(json_object_get(val, "id"), &id))
            return ts_fail(err, TS_ERR_FORMAT, "%s/tokenizer.json: added_tokens[%zu].id is not an integer", f->dir,
                           i);
        if ((st = fn(ctx, id, ts_tok_json_str(val, "content"), json_is_true(json_object_get(val, "special")), false,
                     "tokenizer.json added_tokens", err)))
            return st;
    }
    json_object_foreach(json_object_get(f->tok_config, "added_tokens_decoder"), key, val) {
        int64_t id;
        if (parse_id(key, &id))
            return ts_fail(err, TS_ERR_FORMAT,
                           "%s/tokenizer_config.json: added_tokens_decoder key '%s' is not a token id", f->dir, key);
        if ((st = fn(ctx, id, ts_tok_json_str(val, "content"), json_is_true(json_object_get(val, "special")), false,
                     "tokenizer_config.json added_tokens_decoder", err)))
            return st;
    }
    return TS_OK;
}

static ts_status check_entry(int64_t id, const char *content, const char *what, ts_err *err)
{
    if (!content)
        return ts_fail(err, TS_ERR_FORMAT, "%s: added token %lld has no string content", what, (long long)id);
    if (id < 0 || id >= TS_TOK_MAX_TOKENS)
        return ts_fail(err, TS_ERR_FORMAT, "%s: added token '%s' has id %lld; expected 0 to %lld", what, content,
                       (long long)id, (long long)TS_TOK_MAX_TOKENS - 1);
    return TS_OK;
}

static ts_status max_fn(void *ctx, int64_t id, const char *content, bool special, bool force_user,
                        const char *what, ts_err *err)
{
    int64_t *max = ctx;
    ts_status st = check_entry(id, content, what, err);
    if (!st && id > *max)
        *max = id;
    return st;
}

static ts_status add_fn(void *ctx, int64_t id, const char *content, bool special, bool force_user,
                        const char *what, ts_err *err)
{
    ts_tok_vocab *v = ctx;
    ts_status st = check_entry(id, content, what, err);
    if (st)
        return st;
    if (id >= v->n)
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s: added token %lld ('%s') is outside the model's %lld embedding rows", what,
                       (long long)id, content, (long long)v->n);
    bool control = !force_user && (special || ts_tok_looks_special(content));
    char *text = control ? NULL : ts_tok_unescape_spaces(content);
    if (!control && !text)
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", what);
    const char *s = control ? content : text;
    st = ts_tok_vocab_set(v, id, s, strlen(s), control ? TS_TOK_CONTROL : TS_TOK_USER_DEFINED, -1000.0f, true,
                          what, err);
    free(text);
    return st;
}

ts_status ts_tok_spm_added_max_id(const ts_tok_files *f, int64_t *max_id, ts_err *err)
{
    *max_id = -1;
    return visit(f, max_fn, max_id, err);
}

ts_status ts_tok_spm_added_tokens(const ts_tok_files *f, ts_tok_vocab *v, ts_err *err)
{
    return visit(f, add_fn, v, err);
}
