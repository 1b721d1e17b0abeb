/* The tokenizer as llama.cpp loads it (llama_vocab::impl::load) and its
 * entry point (llama_vocab::impl::tokenize): special tokens are cut out of
 * the text first (tokenizer_st_partition), then each plain fragment goes to
 * SentencePiece or BPE. Token attributes follow llama.cpp's adjustments too,
 * since they decide which texts count as special: end-of-generation and FIM
 * texts become control tokens, gpt-oss's <|channel|> etc. user-defined. */
#define _GNU_SOURCE /* memmem */
#include "verify/tokenize_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY "tokenizer.ggml."

/* ---- loading ---- */

static const ts_gguf_value *get_arr(const ts_gguf *g, const char *key)
{
    const ts_gguf_kv *kv = ts_gguf_find_kv(g, key);
    return kv && kv->value.type == TS_GGUF_ARRAY ? &kv->value : NULL;
}

static ts_status load_tokens(ts_tokenizer *t, const ts_gguf *g, ts_err *err)
{
    const ts_gguf_value *tok = get_arr(g, KEY "tokens");
    if (!tok || tok->arr.elem_type != TS_GGUF_STRING)
        return ts_fail(err, TS_ERR_FORMAT, "GGUF: " KEY "tokens is missing or not an array of strings");
    if (tok->arr.n == 0 || tok->arr.n > INT32_MAX / 2)
        return ts_fail(err, TS_ERR_LIMIT, "GGUF: " KEY "tokens has %llu entries (expected 1 to 2^30)",
                       (unsigned long long)tok->arr.n);
    const int32_t n = (int32_t)tok->arr.n;
    const ts_gguf_string *s = tok->arr.data;
    const ts_gguf_value *sc = get_arr(g, KEY "scores"), *ty = get_arr(g, KEY "token_type");
    if (sc && ((sc->arr.elem_type != TS_GGUF_FLOAT32 && sc->arr.elem_type != TS_GGUF_INT32) || sc->arr.n < tok->arr.n))
        return ts_fail(err, TS_ERR_FORMAT, "GGUF: " KEY "scores must be f32 or i32 with at least %d entries", n);
    if (ty && (ty->arr.elem_type != TS_GGUF_INT32 || ty->arr.n < tok->arr.n))
        return ts_fail(err, TS_ERR_FORMAT, "GGUF: " KEY "token_type must be i32 with at least %d entries", n);

    size_t bytes = 0;
    for (int32_t i = 0; i < n; i++)
        bytes += (s[i].len ? s[i].len : 24) + 1;
    t->n_vocab = n;
    t->text = malloc((size_t)n * sizeof *t->text);
    t->text_len = malloc((size_t)n * sizeof *t->text_len);
    t->text_arena = malloc(bytes);
    t->score = malloc((size_t)n * sizeof *t->score);
    t->attr = malloc((size_t)n * sizeof *t->attr);
    if (!t->text || !t->text_len || !t->text_arena || !t->score || !t->attr || !ts_tmap_init(&t->token_ids, (size_t)n))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory loading %d tokens", n);
    char *p = t->text_arena;
    for (int32_t i = 0; i < n; i++) {
        if (s[i].len > UINT32_MAX / 2)
            return ts_fail(err, TS_ERR_LIMIT, "GGUF: token %d is %llu bytes long", i, (unsigned long long)s[i].len);
        t->text[i] = p;
        if (s[i].len) {
            memcpy(p, s[i].s, s[i].len);
            p[s[i].len] = '\0';
        } else {
            snprintf(p, 25, "[EMPTY_%d]", i); /* llama.cpp's name for an empty token */
        }
        t->text_len[i] = (uint32_t)strlen(p);
        p += t->text_len[i] + 1;
        /* a text given twice maps to its last id, as llama.cpp's token_to_id */
        if (!ts_tmap_put(&t->token_ids, t->text[i], t->text_len[i], i, true))
            return ts_fail(err, TS_ERR_NOMEM, "out of memory loading %d tokens", n);
        t->score[i] = !sc ? 0.0f : sc->arr.elem_type == TS_GGUF_FLOAT32 ? ((const float *)sc->arr.data)[i]
                                                                         : (float)((const int32_t *)sc->arr.data)[i];
        static const uint16_t ATTR[] = {0, TS_ATTR_NORMAL, TS_ATTR_UNKNOWN, TS_ATTR_CONTROL,
                                        TS_ATTR_USER_DEFINED, TS_ATTR_UNUSED, TS_ATTR_BYTE};
        int32_t type = ty ? ((const int32_t *)ty->arr.data)[i] : 1;
        t->attr[i] = type >= 0 && type <= 6 ? ATTR[type] : 0;
    }
    return TS_OK;
}

static ts_status load_merges(ts_tokenizer *t, const ts_gguf *g, ts_err *err)
{
    const ts_gguf_value *m = get_arr(g, KEY "merges");
    if (!m || m->arr.elem_type != TS_GGUF_STRING)
        return ts_fail(err, TS_ERR_FORMAT, "GGUF: a gpt2 tokenizer needs " KEY "merges (an array of strings)");
    if (m->arr.n > INT32_MAX / 2)
        return ts_fail(err, TS_ERR_LIMIT, "GGUF: %llu merges", (unsigned long long)m->arr.n);
    if (!ts_tmap_init(&t->merges, (size_t)m->arr.n))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory loading %llu merges", (unsigned long long)m->arr.n);
    const ts_gguf_string *s = m->arr.data;
    for (uint64_t i = 0; i < m->arr.n; i++) {
        /* "left right", split at the first space after the first byte; the
         * key is the string itself, looked up as left + ' ' + right. A
         * repeated merge keeps its first rank. */
        if (s[i].len < 2 || !memchr(s[i].s + 1, ' ', s[i].len - 1))
            continue;
        if (!ts_tmap_put(&t->merges, s[i].s, s[i].len, (int32_t)i, false))
            return ts_fail(err, TS_ERR_NOMEM, "out of memory loading merges");
    }
    return TS_OK;
}

static int32_t find_text(const ts_tokenizer *t, const char *s)
{
    return ts_tmap_get(&t->token_ids, s, strlen(s));
}

/* A special id from its key, kept only when inside the vocabulary. */
static void read_id(const ts_gguf *g, const char *key, int32_t n_vocab, int32_t *id)
{
    int64_t v;
    if (*id >= n_vocab)
        *id = -1;
    if (ts_gguf_get_i64(g, key, &v) && v >= 0 && v < n_vocab)
        *id = (int32_t)v;
}

enum { EOT, EOM, FIM_PRE, FIM_SUF, FIM_MID, FIM_PAD, FIM_REP, FIM_SEP, N_AUTO };

/* Texts llama.cpp recognizes when the GGUF names no id (llama-vocab.cpp). */
static const char *const AUTO_TEXTS[N_AUTO][12] = {
    [EOT] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
             "_<EOT>", "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
             "<end_of_utterance>"},
    [EOM] = {"<|eom_id|>"},
    [FIM_PRE] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>",
                 "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"},
    [FIM_SUF] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>",
                 "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"},
    [FIM_MID] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>",
                 "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"},
    [FIM_PAD] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"},
    [FIM_REP] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"},
    [FIM_SEP] = {"<|file_sep|>"},
};

static const char *const EOG_TEXTS[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[",
};

static bool in_ids(const int32_t *ids, int n, int32_t id)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

/* The attribute changes llama.cpp makes after reading token_type. */
static void adjust_attrs(ts_tokenizer *t, const ts_gguf *g, int32_t auto_id[N_AUTO])
{
    static const char *const AUTO_KEYS[N_AUTO][2] = {
        [EOT] = {KEY "eot_token_id"},          [EOM] = {KEY "eom_token_id"},
        [FIM_PRE] = {KEY "fim_pre_token_id", KEY "prefix_token_id"},
        [FIM_SUF] = {KEY "fim_suf_token_id", KEY "suffix_token_id"},
        [FIM_MID] = {KEY "fim_mid_token_id", KEY "middle_token_id"},
        [FIM_PAD] = {KEY "fim_pad_token_id"},  [FIM_REP] = {KEY "fim_rep_token_id"},
        [FIM_SEP] = {KEY "fim_sep_token_id"},
    };
    for (int k = 0; k < N_AUTO; k++) {
        auto_id[k] = -1;
        for (int j = 0; j < 2 && AUTO_KEYS[k][j]; j++)
            read_id(g, AUTO_KEYS[k][j], t->n_vocab, &auto_id[k]);
        /* llama.cpp takes the first match in hash order; we take list order */
        for (int j = 0; auto_id[k] < 0 && j < 12 && AUTO_TEXTS[k][j]; j++) {
            int32_t id = find_text(t, AUTO_TEXTS[k][j]);
            if (id >= 0) {
                auto_id[k] = id;
                t->attr[id] |= TS_ATTR_CONTROL;
            }
        }
    }
    int32_t eog[64];
    int n_eog = 0;
    for (int k = FIM_PAD; k <= FIM_SEP; k++)
        if (auto_id[k] >= 0 && !in_ids(eog, n_eog, auto_id[k]))
            eog[n_eog++] = auto_id[k];
    for (size_t i = 0; i < sizeof EOG_TEXTS / sizeof *EOG_TEXTS; i++) {
        int32_t id = find_text(t, EOG_TEXTS[i]);
        if (id >= 0) {
            if (!in_ids(eog, n_eog, id))
                eog[n_eog++] = id;
            t->attr[id] |= TS_ATTR_CONTROL;
        }
    }
    /* gpt-oss: these are always rendered, so llama.cpp makes them user-defined */
    static const char *const HARMONY[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};
    for (size_t i = 0; i < 4; i++) {
        int32_t id = find_text(t, HARMONY[i]);
        if (id >= 0)
            t->attr[id] = TS_ATTR_USER_DEFINED;
    }
    int32_t more[3] = {t->eos, auto_id[EOT], auto_id[EOM]};
    for (int i = 0; i < 3; i++)
        if (more[i] >= 0 && !in_ids(eog, n_eog, more[i]))
            eog[n_eog++] = more[i];
    bool ret = false, call = false, flush = false, tool = false;
    int32_t end = -1, eos_s = -1;
    for (int i = 0; i < n_eog; i++) {
        const char *s = t->text[eog[i]];
        ret |= !strcmp(s, "<|return|>");
        call |= !strcmp(s, "<|call|>") || !strcmp(s, "<|calls|>");
        flush |= !strcmp(s, "<|flush|>");
        tool |= !strcmp(s, "<|tool_response>");
        if (!strcmp(s, "<|end|>"))
            end = eog[i];
        if (!strcmp(s, "</s>"))
            eos_s = eog[i];
    }
    if (end >= 0 && call && (ret || flush))
        t->attr[end] = TS_ATTR_USER_DEFINED; /* o200k_harmony's <|end|> is not end-of-generation */
    if (tool && eos_s >= 0)
        t->attr[eos_s] = TS_ATTR_NORMAL; /* gemma4 */
}

typedef struct {
    uint32_t len;
    int32_t id;
} by_len;

static int cmp_special(const void *a, const void *b)
{
    const by_len *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static bool contains(const char *s, const char *sub)
{
    return s && strstr(s, sub);
}

/* Special-token list, longest first, then the per-model strip flags. */
static ts_status build_specials(ts_tokenizer *t, const ts_gguf *g, const char *pre, ts_err *err)
{
    by_len *sorted = malloc((size_t)t->n_vocab * sizeof *sorted);
    t->special = malloc((size_t)t->n_vocab * sizeof *t->special);
    if (!sorted || !t->special) {
        free(sorted);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & (TS_ATTR_CONTROL | TS_ATTR_USER_DEFINED | TS_ATTR_UNKNOWN))
            sorted[t->n_special++] = (by_len){t->text_len[i], i};
    /* llama.cpp's std::sort leaves equal lengths in no defined order; ours is by id */
    qsort(sorted, (size_t)t->n_special, sizeof *sorted, cmp_special);
    for (int32_t i = 0; i < t->n_special; i++)
        t->special[i] = sorted[i].id;
    free(sorted);

    char name[256] = "";
    const char *gname = ts_gguf_get_str(g, "general.name"), *arch = ts_gguf_get_str(g, "general.architecture");
    for (size_t i = 0; gname && gname[i] && i + 1 < sizeof name; i++)
        name[i] = (char)(gname[i] >= 'A' && gname[i] <= 'Z' ? gname[i] + 32 : gname[i]), name[i + 1] = '\0';
    if (contains(pre, "jina-v2-de") || contains(pre, "jina-v2-es") || contains(pre, "jina-v2-code") ||
        contains(arch, "nomic-bert-moe") || contains(arch, "jina-bert-v3")) {
        int32_t id = find_text(t, "<mask>");
        if (id >= 0)
            t->attr[id] |= TS_ATTR_LSTRIP;
    } else if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        for (int32_t i = 0; i < t->n_special; i++)
            t->attr[t->special[i]] |= TS_ATTR_RSTRIP;
        int32_t id = find_text(t, "</s>");
        if (id >= 0)
            t->attr[id] |= TS_ATTR_RSTRIP;
        static const char *const KEEP[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (int i = 0; i < 3; i++)
            if ((id = find_text(t, KEEP[i])) >= 0)
                t->attr[id] &= (uint16_t)~TS_ATTR_RSTRIP;
    } else if (strstr(name, "modern-bert")) {
        int32_t id = find_text(t, "[MASK]");
        if (id >= 0)
            t->attr[id] |= TS_ATTR_LSTRIP;
    }
    return TS_OK;
}

static void build_byte_tables(ts_tokenizer *t)
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        char hex[8], raw[1] = {(char)b};
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = find_text(t, hex);
        t->bpe_byte[b] = ts_tmap_get(&t->token_ids, raw, 1);
        t->spm_byte[b] = id >= 0 ? id : t->bpe_byte[b];
        /* GPT-2: printable Latin-1 bytes stand for themselves, the others for 256 + n */
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)n++;
        int k = ts_utf8_encode(cp, t->byte_enc[b]);
        t->byte_enc[b][k] = '\0';
    }
}

ts_status ts_tokenizer_from_gguf(const ts_gguf *g, ts_tokenizer **out, ts_err *err)
{
    *out = NULL;
    const char *model = ts_gguf_get_str(g, KEY "model");
    if (!model)
        return ts_fail(err, TS_ERR_FORMAT, "GGUF: " KEY "model is missing (no tokenizer in this file)");
    ts_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    const char *pre = ts_gguf_get_str(g, KEY "pre");
    ts_pre_flags pf = {0};
    ts_status st = TS_OK;
    if (!strcmp(model, "llama")) {
        t->type = TS_VOCAB_SPM;
        t->bos = 1, t->eos = 2, t->unk = 0;
        t->add_bos = true, t->add_space_prefix = true;
    } else if (!strcmp(model, "gpt2")) {
        t->type = TS_VOCAB_BPE;
        t->bos = 11, t->eos = 11, t->unk = -1; /* llama.cpp's defaults */
        if (!pre || !*pre)
            pre = "default";
        st = ts_pretok_init(&t->pre, pre, &pf, err);
        t->add_bos = pf.add_bos;
        t->ignore_merges = pf.ignore_merges;
        if (pf.no_bos)
            t->bos = -1;
    } else {
        st = ts_fail(err, TS_ERR_UNSUPPORTED, "GGUF: tokenizer model \"%s\" is not supported (llama and gpt2 are)",
                     model);
    }
    if (st == TS_OK)
        st = load_tokens(t, g, err);
    if (st == TS_OK && t->type == TS_VOCAB_BPE)
        st = load_merges(t, g, err);
    if (st != TS_OK) {
        ts_tokenizer_free(t);
        return st;
    }
    bool b;
    if (ts_gguf_get_bool(g, KEY "add_space_prefix", &b))
        t->add_space_prefix = b;
    read_id(g, KEY "bos_token_id", t->n_vocab, &t->bos);
    read_id(g, KEY "eos_token_id", t->n_vocab, &t->eos);
    read_id(g, KEY "unknown_token_id", t->n_vocab, &t->unk);
    if (ts_gguf_get_bool(g, KEY "add_bos_token", &b))
        t->add_bos = b;
    if (ts_gguf_get_bool(g, KEY "add_eos_token", &b))
        t->add_eos = b;
    int32_t auto_id[N_AUTO];
    adjust_attrs(t, g, auto_id);
    st = build_specials(t, g, pre, err);
    if (st != TS_OK) {
        ts_tokenizer_free(t);
        return st;
    }
    build_byte_tables(t);
    *out = t;
    return TS_OK;
}

void ts_tokenizer_free(ts_tokenizer *t)
{
    if (!t)
        return;
    free(t->text);
    free(t->text_len);
    free(t->text_arena);
    free(t->score);
    free(t->attr);
    free(t->special);
    ts_tmap_free(&t->token_ids);
    ts_tmap_free(&t->merges);
    ts_pretok_free(&t->pre);
    free(t);
}

int32_t ts_tokenizer_n_vocab(const ts_tokenizer *t) { return t->n_vocab; }
int32_t ts_tokenizer_bos(const ts_tokenizer *t) { return t->bos; }
int32_t ts_tokenizer_eos(const ts_tokenizer *t) { return t->eos; }
bool ts_tokenizer_adds_bos(const ts_tokenizer *t) { return t->add_bos && t->bos >= 0; }

const char *ts_tokenizer_token_text(const ts_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab ? t->text[id] : NULL;
}

/* ---- encoding ---- */

typedef struct {
    size_t off, len;
    int32_t tok; /* -1: plain text */
} fragment;

typedef struct {
    fragment *v;
    size_t n, cap;
} frag_list;

static bool frag_push(frag_list *l, fragment f)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        fragment *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return false;
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = f;
    return true;
}

static bool is_space(char c) /* isspace() in the C locale, as llama.cpp strips */
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Cuts one special token out of every plain fragment (leftmost occurrences
 * first), stripping spaces beside it where its attributes say. */
static bool cut_special(const ts_tokenizer *t, const char *text, int32_t id, const frag_list *in, frag_list *out)
{
    const char *s = t->text[id];
    size_t sl = t->text_len[id];
    uint16_t attr = t->attr[id];
    out->n = 0;
    for (size_t i = 0; i < in->n; i++) {
        fragment f = in->v[i];
        if (f.tok >= 0) {
            if (!frag_push(out, f))
                return false;
            continue;
        }
        size_t off = f.off, len = f.len;
        while (len > 0) {
            const char *m = memmem(text + off, len, s, sl);
            if (!m) {
                if (!frag_push(out, (fragment){off, len, -1}))
                    return false;
                break;
            }
            size_t at = (size_t)(m - text), left = at - off;
            if (attr & TS_ATTR_LSTRIP)
                while (left > 0 && is_space(text[off + left - 1]))
                    left--;
            if ((left > 0 && !frag_push(out, (fragment){off, left, -1})) || !frag_push(out, (fragment){0, 0, id}))
                return false;
            size_t end = off + len;
            off = at + sl;
            len = end - off;
            if (attr & TS_ATTR_RSTRIP)
                while (len > 0 && is_space(text[off]))
                    off++, len--;
        }
    }
    return true;
}

static ts_status partition(const ts_tokenizer *t, const char *text, size_t len, bool parse_special, frag_list *l,
                           ts_err *err)
{
    frag_list other = {0};
    ts_status st = TS_OK;
    if (len > 0 && !frag_push(l, (fragment){0, len, -1}))
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; st == TS_OK && len > 0 && i < t->n_special; i++) {
        int32_t id = t->special[i];
        /* without parse_special only user-defined texts are matched */
        if (!parse_special && (t->attr[id] & (TS_ATTR_CONTROL | TS_ATTR_UNKNOWN)))
            continue;
        if (!memmem(text, len, t->text[id], t->text_len[id]))
            continue; /* absent from the whole text, so from every fragment */
        if (!cut_special(t, text, id, l, &other)) {
            st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
            break;
        }
        frag_list tmp = *l;
        *l = other;
        other = tmp;
    }
    free(other.v);
    return st;
}

ts_status ts_tokenize(const ts_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                      int32_t **ids, size_t *n_ids, ts_err *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (!t || (!text && len))
        return ts_fail(err, TS_ERR_ARG, "ts_tokenize: no tokenizer or no text");
    /* symbols are indexed with 32 bits, and a fragment grows up to 8x on the way */
    if (len > (size_t)INT32_MAX / 8)
        return ts_fail(err, TS_ERR_LIMIT, "ts_tokenize: %zu bytes of text (at most %d in one call)", len,
                       INT32_MAX / 8);
    frag_list frags = {0};
    ts_i32vec out = {0};
    ts_bpe_session *bpe = NULL;
    ts_status st = partition(t, text, len, parse_special, &frags, err);
    if (st == TS_OK && t->type == TS_VOCAB_BPE)
        st = ts_bpe_session_new(t, &bpe, err);
    if (st == TS_OK && add_special && t->add_bos) {
        if (t->bos < 0)
            st = ts_fail(err, TS_ERR_FORMAT, "the model adds a BOS token but has no " KEY "bos_token_id");
        else if (!ts_i32vec_push(&out, t->bos))
            st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    bool prev_special = true; /* SentencePiece: a space prefix at the start and after special tokens */
    for (size_t i = 0; st == TS_OK && i < frags.n; i++) {
        const fragment *f = &frags.v[i];
        if (f->tok >= 0) {
            if (!ts_i32vec_push(&out, f->tok))
                st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
            prev_special = true;
        } else if (t->type == TS_VOCAB_SPM) {
            st = ts_spm_encode(t, text + f->off, f->len, t->add_space_prefix && prev_special, &out, err);
            prev_special = false;
        } else {
            st = ts_bpe_encode(bpe, text + f->off, f->len, &out, err);
        }
    }
    if (st == TS_OK && add_special && t->add_eos) {
        if (t->eos < 0)
            st = ts_fail(err, TS_ERR_FORMAT, "the model adds an EOS token but has no " KEY "eos_token_id");
        else if (!ts_i32vec_push(&out, t->eos))
            st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    if (st == TS_OK && !out.v && !(out.v = malloc(sizeof *out.v)))
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory"); /* success always returns an array */
    ts_bpe_session_free(bpe);
    free(frags.v);
    if (st != TS_OK) {
        free(out.v);
        return st;
    }
    *ids = out.v;
    *n_ids = out.n;
    return TS_OK;
}
