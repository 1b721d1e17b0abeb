/* Special tokens, add_*_token flags, chat templates and normalizer flags, in the
 * order and with the precedence of gguf-py's SpecialVocab (vocab.py):
 *   1. tokenizer.json post_processor (TemplateProcessing / RobertaProcessing) sets
 *      add_bos/add_eos/add_sep and may rename the bos/eos/cls/sep tokens;
 *   2. tokenizer_config.json: add_<type>_token, <type>_token (a string or an
 *      AddedToken object), chat_template (else chat_template.jinja / .json);
 *   3. config.json <type>_token_id (or text_config.<type>_token_id).
 * The first id found for a type wins. Beyond SpecialVocab, a token text is also
 * looked up in the vocabulary (not only in added_tokens), special_tokens_map.json
 * is read after tokenizer_config.json, generation_config.json after config.json,
 * and a tokenizer.model's own unk/bos/eos/pad ids come last. */
#include "convert/tokenizer_internal.h"
#include "core/mapped_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SP_BOS, SP_EOS, SP_UNK, SP_SEP, SP_PAD, SP_CLS, SP_MASK, SP_EOT, SP_EOM, SP_COUNT };
static const char *const SP_NAME[SP_COUNT] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask", "eot", "eom"};
/* GGUF keys; cls has no key in gguf-py (SpecialVocab skips it). Note llama.cpp's spelling "seperator". */
static const char *const SP_KEY[SP_COUNT] = {
    "tokenizer.ggml.bos_token_id",     "tokenizer.ggml.eos_token_id",     "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", NULL,
    "tokenizer.ggml.mask_token_id",    "tokenizer.ggml.eot_token_id",     "tokenizer.ggml.eom_token_id",
};

typedef struct {
    const ts_tok_files *f;
    const ts_tok_vocab *v;
    const ts_tok_map *map;
    bool enabled[SP_COUNT];
    const char *text[SP_COUNT]; /* token texts from tokenizer_config.json, as amended by step 1 */
    int64_t id[SP_COUNT];       /* -1 unset */
    int add[SP_COUNT];          /* -1 unset */
    bool has_config;            /* tokenizer_config.json present and not empty */
} special_state;

static void set_id(special_state *s, int t, int64_t id)
{
    /* Negative ids ("pad_token_id": -1) mean none; ids past the vocabulary are skipped, as SpecialVocab does. */
    if (s->id[t] < 0 && id >= 0 && id < s->v->n)
        s->id[t] = id;
}

static const char *sp_id_of(const json_t *item)
{
    return ts_tok_json_str(json_object_get(item, "SpecialToken"), "id");
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static void template_pair(special_state *s, const json_t *pair, const char *first, const char *last)
{
    size_t n = json_array_size(pair);
    if (!n)
        return;
    size_t start = (first && str_eq(sp_id_of(json_array_get(pair, 0)), first)) ? 1 : 0;
    size_t stop = (last && str_eq(sp_id_of(json_array_get(pair, n - 1)), last)) ? n - 1 : n;
    if (stop < start + 3)
        return; /* need A, at least one separator, B */
    const char *a = ts_tok_json_str(json_object_get(json_array_get(pair, start), "Sequence"), "id");
    const char *b = ts_tok_json_str(json_object_get(json_array_get(pair, stop - 1), "Sequence"), "id");
    if (!str_eq(a, "A") || !str_eq(b, "B"))
        return;
    bool add_sep = false;
    const char *e1 = sp_id_of(json_array_get(pair, start + 1));
    if (e1 && (str_eq(e1, s->text[SP_SEP]) || str_eq(e1, s->text[SP_EOS])) && !last)
        add_sep = true;
    if (stop - start - 2 == 2) {
        const char *e2 = sp_id_of(json_array_get(pair, start + 2));
        if (e2 && (str_eq(e2, s->text[SP_SEP]) || str_eq(e2, s->text[SP_EOS])))
            add_sep = true;
    }
    s->add[SP_SEP] = add_sep;
    if (add_sep && !s->text[SP_SEP] && s->has_config)
        s->text[SP_SEP] = s->text[SP_EOS];
}

static void template_single(special_state *s, const json_t *proc)
{
    const json_t *single = json_object_get(proc, "single");
    const char *first = NULL, *last = NULL;
    size_t n = json_array_size(single);
    if (n > 1) {
        if ((first = sp_id_of(json_array_get(single, 0)))) {
            if (!s->has_config) {
                s->text[SP_BOS] = first;
            } else if (!str_eq(first, s->text[SP_BOS]) && !str_eq(first, s->text[SP_CLS])) {
                if (!s->text[SP_BOS])
                    s->text[SP_BOS] = first;
                if (!s->text[SP_CLS])
                    s->text[SP_CLS] = first;
            }
            s->add[SP_BOS] = str_eq(first, s->text[SP_BOS]) || str_eq(first, s->text[SP_CLS]);
        }
        if ((last = sp_id_of(json_array_get(single, n - 1)))) {
            if (!s->has_config) {
                s->text[SP_EOS] = last;
            } else if (!str_eq(last, s->text[SP_EOS])) {
                /* the old eos stays reachable as eot (Llama 3 style), else eom */
                int t = !s->enabled[SP_EOT] ? SP_EOT : !s->enabled[SP_EOM] ? SP_EOM : -1;
                if (t >= 0) {
                    s->enabled[t] = true;
                    s->text[t] = s->text[SP_EOS];
                }
                s->text[SP_EOS] = last;
            }
            s->add[SP_EOS] = str_eq(last, s->text[SP_EOS]);
        }
    }
    template_pair(s, json_object_get(proc, "pair"), first, last);
}

static void post_processor(special_state *s, const json_t *post)
{
    const json_t *procs = json_object_get(post, "processors");
    size_t n = json_is_array(procs) ? json_array_size(procs) : (post ? 1 : 0);
    for (size_t i = 0; i < n; i++) {
        const json_t *p = json_is_array(procs) ? json_array_get(procs, i) : post;
        const char *type = ts_tok_json_str(p, "type");
        if (str_eq(type, "RobertaProcessing")) {
            s->add[SP_BOS] = s->add[SP_EOS] = s->add[SP_SEP] = 1;
            if (!s->text[SP_CLS] && s->has_config) {
                const char *c = json_string_value(json_array_get(json_object_get(p, "cls"), 0));
                s->text[SP_CLS] = c ? c : s->text[SP_BOS];
            }
            if (!s->text[SP_SEP] && s->has_config) {
                const char *c = json_string_value(json_array_get(json_object_get(p, "sep"), 0));
                s->text[SP_SEP] = c ? c : s->text[SP_EOS];
            }
        } else if (str_eq(type, "TemplateProcessing")) {
            template_single(s, p);
        }
    }
}

/* A token text -> id: the first added_tokens entry with that content, else the vocabulary. */
static int64_t resolve(const special_state *s, const char *text)
{
    if (!text)
        return -1;
    size_t i;
    const json_t *a;
    json_array_foreach(json_object_get(s->f->tokenizer, "added_tokens"), i, a) {
        int64_t id;
        if (str_eq(ts_tok_json_str(a, "content"), text) && ts_tok_json_int(json_object_get(a, "id"), &id))
            return id;
    }
    return ts_tok_map_find(s->map, text, strlen(text));
}

static void ids_from_config(special_state *s, const json_t *cfg)
{
    char key[32];
    for (int t = 0; t < SP_COUNT; t++) {
        if (!s->enabled[t])
            continue;
        snprintf(key, sizeof key, "%s_token_id", SP_NAME[t]);
        const json_t *v = json_object_get(cfg, key);
        if (!v)
            v = json_object_get(json_object_get(cfg, "text_config"), key);
        int64_t id;
        if (ts_tok_json_int(v, &id))
            set_id(s, t, id);
    }
}

/* The model class's hard-coded special tokens (ts_tok_family_of), after what
 * gguf-py's SpecialVocab reads from the files, as llama.cpp's converter calls
 * _set_special_token after building it. */
static void family_specials(special_state *s)
{
    const ts_tok_family *fam = ts_tok_family_of(s->f);
    for (size_t i = 0; fam && i < sizeof fam->special / sizeof *fam->special && fam->special[i][0]; i++)
        for (int t = 0; t < SP_COUNT; t++)
            if (strcmp(SP_NAME[t], fam->special[i][0]) == 0)
                set_id(s, t, resolve(s, fam->special[i][1]));
}

static void parse_normalizer(const json_t *n, int *lower, int *strip, int depth)
{
    const char *type = ts_tok_json_str(n, "type");
    if (!type || depth > 8)
        return;
    if (strcmp(type, "Lowercase") == 0) {
        *lower = 1;
    } else if (strcmp(type, "StripAccents") == 0) {
        *strip = 1;
    } else if (strcmp(type, "BertNormalizer") == 0) {
        const json_t *l = json_object_get(n, "lowercase"), *sa = json_object_get(n, "strip_accents");
        if (json_is_boolean(l))
            *lower = json_is_true(l);
        if (json_is_boolean(sa))
            *strip = json_is_true(sa);
    } else if (strcmp(type, "Sequence") == 0) {
        size_t i;
        const json_t *x;
        json_array_foreach(json_object_get(n, "normalizers"), i, x)
            parse_normalizer(x, lower, strip, depth + 1);
    }
}

ts_status ts_tok_write_special(const ts_tok_files *f, const ts_tok_vocab *v, const ts_tok_map *vocab_map,
                               ts_gguf_writer *w, ts_err *err)
{
    special_state s = {.f = f, .v = v, .map = vocab_map};
    for (int t = 0; t < SP_COUNT; t++) {
        s.enabled[t] = t < SP_EOT;
        s.id[t] = -1;
        s.add[t] = -1;
    }
    const json_t *cfg = f->tok_config;
    s.has_config = cfg && json_object_size(cfg) > 0;
    for (int t = 0; t < SP_COUNT; t++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token", SP_NAME[t]);
        s.text[t] = ts_tok_token_content(json_object_get(cfg, key));
    }
    int lower = -1, strip = -1;
    if (f->tokenizer) {
        parse_normalizer(json_object_get(f->tokenizer, "normalizer"), &lower, &strip, 0);
        if (!s.text[SP_BOS] && s.text[SP_CLS] && s.has_config)
            s.text[SP_BOS] = s.text[SP_CLS];
        if (!s.text[SP_EOS] && s.text[SP_SEP] && s.has_config)
            s.text[SP_EOS] = s.text[SP_SEP];
        post_processor(&s, json_object_get(f->tokenizer, "post_processor"));
    }
    if (s.has_config) {
        for (int t = 0; t < SP_COUNT; t++) {
            if (!s.enabled[t])
                continue;
            char key[32];
            snprintf(key, sizeof key, "add_%s_token", SP_NAME[t]);
            const json_t *a = json_object_get(cfg, key);
            if (json_is_boolean(a))
                s.add[t] = json_is_true(a);
            set_id(&s, t, resolve(&s, s.text[t]));
        }
    }
    for (int t = 0; t < SP_COUNT; t++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token", SP_NAME[t]);
        if (s.enabled[t])
            set_id(&s, t, resolve(&s, ts_tok_token_content(json_object_get(f->special_map, key))));
    }
    ids_from_config(&s, f->config);
    family_specials(&s);
    ids_from_config(&s, f->gen_config);
    static const int spm_type[4] = {SP_UNK, SP_BOS, SP_EOS, SP_PAD};
    for (int k = 0; k < 4; k++)
        if (v->spm_ids[k] >= 0)
            set_id(&s, spm_type[k], v->spm_ids[k]);

    ts_status st = TS_OK;
    const char *key = NULL;
    for (int t = 0; t < SP_COUNT && !st; t++)
        if (s.id[t] >= 0 && SP_KEY[t] && (st = ts_gguf_set_u32(w, key = SP_KEY[t], (uint32_t)s.id[t])))
            break;
    static const char *const add_key[3] = {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                                           "tokenizer.ggml.add_sep_token"};
    static const int add_type[3] = {SP_BOS, SP_EOS, SP_SEP};
    for (int k = 0; k < 3 && !st; k++)
        if (s.add[add_type[k]] >= 0)
            st = ts_gguf_set_bool(w, key = add_key[k], s.add[add_type[k]]);
    if (!st && lower >= 0)
        st = ts_gguf_set_bool(w, key = "tokenizer.ggml.normalizer.lowercase", lower);
    if (!st && strip >= 0)
        st = ts_gguf_set_bool(w, key = "tokenizer.ggml.normalizer.strip_accents", strip);
    if (st)
        return ts_fail(err, st, "tokenizer: cannot set GGUF key %s (%s)", key, ts_status_name(st));
    return s.has_config ? ts_tok_chat_templates(f, w, err) : TS_OK;
}
