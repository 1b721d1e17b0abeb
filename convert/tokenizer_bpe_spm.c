/* SentencePiece-style BPE tokenizer.json (Llama 2, Mistral, Mixtral without a
 * tokenizer.model: model.type BPE with byte_fallback, spaces as U+2581) -> a
 * "llama" vocabulary. llama.cpp's SentencePiece tokenizer merges the adjacent
 * pair whose merged text has the highest score; the tokenizers library merges
 * the pair with the lowest merge rank. Scoring each token by -(rank of the first
 * merge that produces it) makes the two agree, as a tokenizer.model's own BPE
 * scores do. (llama.cpp's LlamaHfVocab gives every token -1000 instead, which
 * leaves llama.cpp to merge in text order.) */
#include "convert/tokenizer_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOK_JSON "tokenizer.json"

static bool is_byte_token(const char *s)
{
    static const char hex[] = "0123456789ABCDEFabcdef";
    return strlen(s) == 6 && strncmp(s, "<0x", 3) == 0 && s[5] == '>' && strchr(hex, s[3]) && strchr(hex, s[4]);
}

/* Spaces become U+2581 somewhere (normalizer Replace or a Metaspace pre-tokenizer);
 * a leading one is added by a Prepend normalizer or Metaspace's prefix option. */
static void space_handling(const json_t *tok, bool *escapes, bool *prefix)
{
    *escapes = *prefix = false;
    const json_t *norm = json_object_get(tok, "normalizer");
    const json_t *list = json_object_get(norm, "normalizers");
    size_t i, n = json_is_array(list) ? json_array_size(list) : 1;
    for (i = 0; i < n; i++) {
        const json_t *x = json_is_array(list) ? json_array_get(list, i) : norm;
        const char *type = ts_tok_json_str(x, "type");
        if (!type)
            continue;
        if (strcmp(type, "Prepend") == 0 && strcmp(ts_tok_json_str(x, "prepend") ? ts_tok_json_str(x, "prepend") : "",
                                                   "\xe2\x96\x81") == 0)
            *prefix = true;
        const char *content = ts_tok_json_str(x, "content");
        if (strcmp(type, "Replace") == 0 && content && strcmp(content, "\xe2\x96\x81") == 0)
            *escapes = true;
    }
    const json_t *pt = json_object_get(tok, "pre_tokenizer");
    list = json_object_get(pt, "pretokenizers");
    n = json_is_array(list) ? json_array_size(list) : 1;
    for (i = 0; i < n; i++) {
        const json_t *x = json_is_array(list) ? json_array_get(list, i) : pt;
        const char *type = ts_tok_json_str(x, "type");
        if (!type || strcmp(type, "Metaspace") != 0)
            continue;
        *escapes = true;
        const char *scheme = ts_tok_json_str(x, "prepend_scheme");
        if (json_is_true(json_object_get(x, "add_prefix_space")) || (scheme && strcmp(scheme, "never") != 0))
            *prefix = true;
    }
}

/* score[id] = -(first merge rank producing id); NAN where no merge produces it. */
static ts_status merge_scores(const ts_tok_files *f, const json_t *merges, const ts_tok_map *map, float *score,
                              int64_t n_base, ts_err *err)
{
    for (int64_t i = 0; i < n_base; i++)
        score[i] = NAN;
    if (!json_is_array(merges))
        return ts_fail(err, TS_ERR_FORMAT, "%s/" TOK_JSON ": model.merges is missing or not an array", f->dir);
    size_t n = json_array_size(merges);
    if (n > (size_t)1 << 24)
        return ts_fail(err, TS_ERR_LIMIT, "%s/" TOK_JSON ": %zu merges; at most %d allowed", f->dir, n, 1 << 24);
    for (size_t i = 0; i < n; i++) {
        const char *a, *b;
        size_t na, nb;
        int64_t id;
        ts_status st;
        if ((st = ts_tok_merge_parts(f, json_array_get(merges, i), i, &a, &na, &b, &nb, err)) ||
            (st = ts_tok_check_merge(f, map, i, a, na, b, nb, &id, err)))
            return st;
        if (isnan(score[id]))
            score[id] = -(float)i; /* exact: i < 2^24 */
    }
    return TS_OK;
}

ts_status ts_tok_read_bpe_spm(const ts_tok_files *f, int64_t rows, ts_tok_vocab *v, ts_err *err)
{
    const json_t *model = json_object_get(f->tokenizer, "model");
    bool escapes, prefix;
    space_handling(f->tokenizer, &escapes, &prefix);
    if (!escapes)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s/" TOK_JSON ": a BPE model with byte_fallback is converted as SentencePiece-style, which "
                       "needs spaces replaced by U+2581 (a Replace normalizer or a Metaspace pre-tokenizer); found "
                       "neither", f->dir);
    const char *unk = ts_tok_json_str(model, "unk_token");
    char **by_id = NULL;
    float *score = NULL;
    int64_t n_base = 0, max_added, max_extra;
    ts_tok_map map = {0};
    ts_status st;
    if ((st = ts_tok_vocab_by_id(f, json_object_get(model, "vocab"), &by_id, &n_base, err)) ||
        (st = ts_tok_added_max_id(f, json_object_get(f->tokenizer, "added_tokens"), &max_added, err)) ||
        (st = ts_tok_spm_added_max_id(f, &max_extra, err)))
        goto done;
    if (max_extra > max_added)
        max_added = max_extra;
    if ((st = ts_tok_vocab_init(v, n_base > max_added + 1 ? n_base : max_added + 1, rows, true, f->dir, err)) ||
        (st = ts_tok_map_init(&map, by_id, n_base, err)))
        goto done;
    for (int64_t i = 0; i < n_base; i++)
        if (by_id[i])
            ts_tok_map_insert(&map, i);
    if (!(score = malloc((size_t)n_base * sizeof *score))) {
        st = ts_fail(err, TS_ERR_NOMEM, "%s/" TOK_JSON ": out of memory", f->dir);
        goto done;
    }
    if ((st = merge_scores(f, json_object_get(model, "merges"), &map, score, n_base, err)))
        goto done;
    int64_t n_merges = (int64_t)json_array_size(json_object_get(model, "merges"));
    char what[600];
    snprintf(what, sizeof what, "%s/" TOK_JSON " model.vocab", f->dir);
    for (int64_t i = 0; i < n_base; i++) {
        if (!by_id[i])
            continue;
        int32_t type = TS_TOK_NORMAL;
        /* Not made by a merge: single characters (their score never matters to
         * llama.cpp) and unreachable tokens, ranked below every merged token. */
        float s = isnan(score[i]) ? -(float)(n_merges + i) : score[i];
        if (is_byte_token(by_id[i]))
            type = TS_TOK_BYTE, s = 0;
        else if (unk && strcmp(by_id[i], unk) == 0)
            type = TS_TOK_UNKNOWN, s = 0;
        if ((st = ts_tok_vocab_set(v, i, by_id[i], strlen(by_id[i]), type, s, false, what, err)))
            goto done;
    }
    if ((st = ts_tok_spm_added_tokens(f, v, err)))
        goto done;
    v->model = "llama";
    v->pre = "default";
    const json_t *aps = json_object_get(f->tok_config, "add_prefix_space");
    v->add_space_prefix = json_is_boolean(aps) ? json_is_true(aps) : prefix;
done:
    ts_tok_map_free(&map);
    free(by_id);
    free(score);
    return st;
}
