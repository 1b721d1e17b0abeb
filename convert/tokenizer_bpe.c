/* Byte-level BPE tokenizer.json -> a "gpt2" vocabulary, as llama.cpp's
 * get_vocab_base() + SpecialVocab(load_merges=True) build it: tokens by id
 * (added tokens as CONTROL or USER_DEFINED, ids nobody defines as [PAD<i>]
 * UNUSED), merges as "left right" strings, and the pre-tokenizer name. */
#include "convert/tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOK_JSON "tokenizer.json"

/* model.vocab (text -> id) into an id-indexed array; ids must be unique. */
ts_status ts_tok_vocab_by_id(const ts_tok_files *f, const json_t *vocab, char ***out, int64_t *n_out, ts_err *err)
{
    *out = NULL;
    *n_out = 0;
    if (!json_is_object(vocab))
        return ts_fail(err, TS_ERR_FORMAT, "%s/" TOK_JSON ": model.vocab is missing or not an object", f->dir);
    int64_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        int64_t id;
        if (!ts_tok_json_int(val, &id) || id < 0 || id >= TS_TOK_MAX_TOKENS)
            return ts_fail(err, TS_ERR_FORMAT, "%s/" TOK_JSON ": model.vocab['%s'] is not an id from 0 to %lld",
                           f->dir, key, (long long)TS_TOK_MAX_TOKENS - 1);
        if (id >= n)
            n = id + 1;
    }
    char **by_id = calloc((size_t)n + 1, sizeof *by_id);
    if (!by_id)
        return ts_fail(err, TS_ERR_NOMEM, "%s/" TOK_JSON ": out of memory", f->dir);
    json_object_foreach((json_t *)vocab, key, val) {
        int64_t id = 0;
        ts_tok_json_int(val, &id);
        if (by_id[id]) {
            ts_status st = ts_fail(err, TS_ERR_FORMAT, "%s/" TOK_JSON ": model.vocab gives id %lld to both '%s' and '%s'",
                                   f->dir, (long long)id, by_id[id], key);
            free(by_id);
            return st;
        }
        by_id[id] = (char *)key; /* owned by the JSON tree */
    }
    *out = by_id;
    *n_out = n;
    return TS_OK;
}

/* The largest id among added_tokens, checking each entry's shape. */
ts_status ts_tok_added_max_id(const ts_tok_files *f, const json_t *added, int64_t *max_id, ts_err *err)
{
    size_t i;
    json_t *val;
    *max_id = -1;
    if (added && !json_is_array(added))
        return ts_fail(err, TS_ERR_FORMAT, "%s/" TOK_JSON ": added_tokens is not an array", f->dir);
    json_array_foreach(added, i, val) {
        int64_t id;
        if (!ts_tok_json_int(json_object_get(val, "id"), &id) || id < 0 || id >= TS_TOK_MAX_TOKENS)
            return ts_fail(err, TS_ERR_FORMAT, "%s/" TOK_JSON ": added_tokens[%zu].id is not an id from 0 to %lld",
                           f->dir, i, (long long)TS_TOK_MAX_TOKENS - 1);
        if (!ts_tok_json_str(val, "content"))
            return ts_fail(err, TS_ERR_FORMAT, "%s/" TOK_JSON ": added_tokens[%zu].content is not a string", f->dir,
                           i);
        if (id > *max_id)
            *max_id = id;
    }
    return TS_OK;
}

static ts_status set_tokens(const ts_tok_files *f, char **by_id, int64_t n_base, const json_t *added,
                            ts_tok_vocab *v, ts_err *err)
{
    ts_status st;
    char what[600];
    snprintf(what, sizeof what, "%s/" TOK_JSON " model.vocab", f->dir);
    for (int64_t i = 0; i < n_base; i++)
        if (by_id[i] && (st = ts_tok_vocab_set(v, i, by_id[i], strlen(by_id[i]), TS_TOK_NORMAL, 0, false, what, err)))
            return st;
    snprintf(what, sizeof what, "%s/" TOK_JSON " added_tokens", f->dir);
    size_t i;
    json_t *val;
    json_array_foreach(added, i, val) {
        int64_t id = 0;
        ts_tok_json_int(json_object_get(val, "id"), &id);
        const char *content = ts_tok_json_str(val, "content");
        bool control = json_is_true(json_object_get(val, "special")) || ts_tok_looks_special(content);
        char *text = control ? NULL : ts_tok_unescape_spaces(content); /* llama.cpp: pre-normalize spaces */
        if (!control && !text)
            return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", what);
        const char *s = control ? content : text;
        st = ts_tok_vocab_set(v, id, s, strlen(s), control ? TS_TOK_CONTROL : TS_TOK_USER_DEFINED, 0, true, what,
                              err);
        free(text);
        if (st)
            return st;
    }
    return TS_OK;
}

/* One merge into "left right". The list form may hold spaces inside a part;
 * like gguf-py they become U+0120 so llama.cpp's split at the first space works. */
static char *merge_string(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b), n = 0;
    char *out = malloc(2 * (na + nb) + 2);
    if (!out)
        return NULL;
    const char *parts[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        if (k)
            out[n++] = ' ';
        for (const char *p = parts[k]; *p; p++) {
            if (*p == ' ') {
                out[n++] = (char)0xc4; /* U+0120 */
                out[n++] = (char)0xa0;
            } else {
                out[n++] = *p;
            }
        }
    }
    out[n] = 0;
    return out;
}

/* Both parts and their concatenation must be tokens of model.vocab, as the
 * tokenizers library requires when it loads the file. */
ts_status ts_tok_check_merge(const ts_tok_files *f, const ts_tok_map *map, size_t idx, const char *a, size_t na,
                            const char *b, size_t nb, int64_t *result, ts_err *err)
{
    char *joined = malloc(na + nb + 1);
    if (!joined)
        return ts_fail(err, TS_ERR_NOMEM, "%s/" TOK_JSON ": out of memory", f->dir);
    memcpy(joined, a, na);
    memcpy(joined + na, b, nb);
    joined[na + nb] = 0;
    const char *bad = NULL;
    size_t bad_len = 0;
    if (ts_tok_map_find(map, a, na) < 0)
        bad = a, bad_len = na;
    else if (ts_tok_map_find(map, b, nb) < 0)
        bad = b, bad_len = nb;
    else if ((*result = ts_tok_map_find(map, joined, na + nb)) < 0)
        bad = joined, bad_len = na + nb;
    ts_status st = TS_OK;
    if (bad)
        st = ts_fail(err, TS_ERR_FORMAT, "%s/" TOK_JSON ": model.merges[%zu] uses '%.*s', which is not in model.vocab",
                     f->dir, idx, (int)(bad_len > 200 ? 200 : bad_len), bad);
    free(joined);
    return st;
}

ts_status ts_tok_merge_parts(const ts_tok_files *f, const json_t *m, size_t i, const char **pa, size_t *pna,
                             const char **pb, size_t *pnb, ts_err *err)
{
    const char *a, *b;
    size_t na, nb;
    if (json_is_string(m)) {
        a = json_string_value(m);
        const char *sp = strchr(a, ' ');
        if (!sp || sp == a || !sp[1] || strchr(sp + 1, ' '))
            return ts_fail(err, TS_ERR_FORMAT,
                           "%s/" TOK_JSON ": model.merges[%zu] is '%.200s'; expected two tokens separated by one "
                           "space", f->dir, i, a);
        na = (size_t)(sp - a), b = sp + 1, nb = strlen(b);
    } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
               json_is_string(json_array_get(m, 1))) {
        a = json_string_value(json_array_get(m, 0)), na = json_string_length(json_array_get(m, 0));
        b = json_string_value(json_array_get(m, 1)), nb = json_string_length(json_array_get(m, 1));
        if (!na || !nb)
            return ts_fail(err, TS_ERR_FORMAT, "%s/" TOK_JSON ": model.merges[%zu] has an empty part", f->dir, i);
    } else {
        return ts_fail(err, TS_ERR_FORMAT,
                       "%s/" TOK_JSON ": model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", f->dir, i);
    }
    *pa = a, *pna = na, *pb = b, *pnb = nb;
    return TS_OK;
}

static ts_status read_merges(const ts_tok_files *f, const json_t *merges, const ts_tok_map *map, ts_tok_vocab *v,
                             ts_err *err)
{
    if (!json_is_array(merges))
        return ts_fail(err, TS_ERR_FORMAT, "%s/" TOK_JSON ": model.merges is missing or not an array", f->dir);
    size_t n = json_array_size(merges);
    if (n > (size_t)TS_TOK_MAX_TOKENS * 4)
        return ts_fail(err, TS_ERR_LIMIT, "%s/" TOK_JSON ": %zu merges is more than allowed", f->dir, n);
    v->merges = calloc(n ? n : 1, sizeof *v->merges);
    if (!v->merges)
        return ts_fail(err, TS_ERR_NOMEM, "%s/" TOK_JSON ": out of memory for %zu merges", f->dir, n);
    ts_status st;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t na, nb;
        int64_t result;
        if ((st = ts_tok_merge_parts(f, m, i, &a, &na, &b, &nb, err)) ||
            (st = ts_tok_check_merge(f, map, i, a, na, b, nb, &result, err)))
            return st;
        if (json_is_string(m)) {
            v->merges[i] = strdup(a);
        } else {
            v->merges[i] = merge_string(a, b);
        }
        if (!v->merges[i])
            return ts_fail(err, TS_ERR_NOMEM, "%s/" TOK_JSON ": out of memory", f->dir);
        v->n_merges = (int64_t)i + 1;
    }
    return TS_OK;
}

ts_status ts_tok_read_bpe(const ts_tok_files *f, int64_t rows, ts_tok_vocab *v, ts_err *err)
{
    const json_t *model = json_object_get(f->tokenizer, "model");
    const json_t *added = json_object_get(f->tokenizer, "added_tokens");
    const char *dec = ts_tok_json_str(json_object_get(f->tokenizer, "decoder"), "type");
    if (!dec || strcmp(dec, "ByteLevel") != 0)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s/" TOK_JSON ": a BPE model without byte_fallback needs the ByteLevel decoder (byte-level "
                       "BPE); decoder.type is %s%s%s", f->dir, dec ? "\"" : "", dec ? dec : "missing", dec ? "\"" : "");
    const json_t *ign = json_object_get(model, "ignore_merges");
    const char *pre = NULL;
    ts_status st = ts_tok_detect_pre(f->tokenizer, json_is_true(ign), &pre, err);
    if (st)
        return st;
    char **by_id = NULL;
    int64_t n_base = 0, max_added;
    ts_tok_map map = {0};
    if (!(st = ts_tok_vocab_by_id(f, json_object_get(model, "vocab"), &by_id, &n_base, err)) &&
        !(st = ts_tok_added_max_id(f, added, &max_added, err)) &&
        !(st = ts_tok_vocab_init(v, n_base > max_added + 1 ? n_base : max_added + 1, rows, false,
                                 f->dir, err)) &&
        !(st = set_tokens(f, by_id, n_base, added, v, err)) &&
        !(st = ts_tok_map_init(&map, by_id, n_base, err))) {
        for (int64_t i = 0; i < n_base; i++)
            if (by_id[i])
                ts_tok_map_insert(&map, i);
        st = read_merges(f, json_object_get(model, "merges"), &map, v, err);
    }
    ts_tok_map_free(&map);
    free(by_id);
    if (st)
        return st;
    v->model = "gpt2";
    v->pre = ts_tok_family_pre(f, pre);
    return TS_OK;
}
