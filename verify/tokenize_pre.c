/* Byte-level BPE pre-tokenizers: which regexes each tokenizer.ggml.pre name
 * runs (the lists of llama.cpp's llm_tokenizer_bpe, in its spelling), and
 * the splitter that applies them one after the other, each regex cutting
 * every piece the previous one left.
 *
 * How a regex runs decides the ids, so we run each one as llama.cpp does:
 *  - four regexes have hand-written matchers in llama.cpp (tokenize_split.c);
 *  - a regex using \p{..} is matched against a "collapsed" text of one byte
 *    per code point: ASCII stays itself, other white space becomes \v, every
 *    other code point the byte of its category (0xD1 number, 0xD2 letter, 0xD3
 *    punctuation, 0xD4 mark, 0xD5 symbol, 0xD0 anything else), and in the
 *    regex each \p{X} becomes a class of that byte plus X's ASCII members.
 *    So \p{Lu} and \p{Ll} both mean "any letter" beyond ASCII: gpt-4o's
 *    case-split alternatives then cut "aÉ" as one piece where a Unicode-aware
 *    engine would cut "a" and "É". We reproduce that, with PCRE2 in byte mode;
 *  - a regex without \p{..} runs over the code points (PCRE2 in UTF mode, no
 *    UCP), other white space again read as \v. */
#include "verify/tokenize_internal.h"

#include <stdlib.h>
#include <string.h>

#define CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_LLAMA3                                                                                                  \
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                                   \
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN35                                                                                                  \
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"    \
                 "\\s+(?!\\S)|\\s+"
/* gpt-4o / tekken: llama.cpp's rewrite of [\p{Lu}..]*[\p{Ll}..]+ with lookaheads */
#define UPPERS "((?=[\\p{L}])([^a-z]))"
#define LOWERS "((?=[\\p{L}])([^A-Z]))"
#define RE_GPT4O                                                                                                   \
    "[^\\r\\n\\p{L}\\p{N}]?" UPPERS "*" LOWERS "+" CONTRACTIONS "?|[^\\r\\n\\p{L}\\p{N}]?" UPPERS "+" LOWERS       \
    "*" CONTRACTIONS "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_TEKKEN                                                                                                  \
    "[^\\r\\n\\p{L}\\p{N}]?" UPPERS "*" LOWERS "+|[^\\r\\n\\p{L}\\p{N}]?" UPPERS "+" LOWERS                        \
    "*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_DEEPSEEK3                                                                                               \
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "             \
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
#define RE_SEED_CODER                                                                                              \
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_MINICPM5                                                                                                \
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct {
    const char *names; /* '|'-separated aliases llama.cpp treats alike */
    const char *regex[TS_PRE_MAX_REGEX];
    ts_pre_flags flags;
} pre_def;

static const pre_def PRE[] = {
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano", {RE_LLAMA3},
     {.ignore_merges = true, .add_bos = true}},
    {"dbrx|smaug-bpe", {RE_LLAMA3}, {0}},
    {"glm4|chatglm-bpe", {RE_LLAMA3}, {.no_bos = true}},
    {"qwen2|deepseek-r1-qwen|kormo|f2llmv2|megrez|stablelm2|hunyuan|solar-open|grok-2", {RE_QWEN2}, {0}},
    {"qwen35", {RE_QWEN35}, {0}},
    {"deepseek-v3|hunyuan-dense|joyai-llm|hy_v4", {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+", RE_DEEPSEEK3}, {0}},
    {"gpt-4o|llama4|kanana2|talkie|minimax-m2", {RE_GPT4O}, {0}},
    {"tekken", {RE_TEKKEN}, {.ignore_merges = true, .add_bos = true}},
    {"seed-coder", {RE_SEED_CODER}, {0}},
    {"minicpm5", {"\\p{N}{1,3}", RE_MINICPM5}, {.ignore_merges = true}},
    {"gpt-2|phi-2|gigachat|a.x-4.0|mellum|modern-bert|exaone4|mpt|olmo|jais|trillion|granite-docling", {RE_GPT2},
     {0}},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b|mellum2", {"\\p{N}", RE_GPT2}, {0}},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}, {0}},
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, {0}},
};

static bool name_in(const char *names, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = names; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && memcmp(p, name, n) == 0)
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

/* The \p{..} names llama.cpp collapses, the byte each stands for and the
 * ASCII members of its category (as they appear inside a class). */
static const struct {
    const char *name;
    char byte;
    const char *ascii;
} UCAT[] = {
    {"\\p{N}", '\xD1', "0-9"},
    {"\\p{L}", '\xD2', "A-Za-z"},
    {"\\p{P}", '\xD3', "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"},
    {"\\p{M}", '\xD4', ""},
    {"\\p{S}", '\xD5', "\\$\\+<->^`\\|\\~"},
    {"\\p{Lu}", '\xD2', "A-Za-z"},
    {"\\p{Ll}", '\xD2', "A-Za-z"},
    {"\\p{Lt}", '\xD2', "A-Za-z"},
    {"\\p{Lm}", '\xD2', "A-Za-z"},
    {"\\p{Lo}", '\xD2', "A-Za-z"},
};
#define N_UCAT (sizeof UCAT / sizeof *UCAT)

static bool uses_categories(const char *re)
{
    for (size_t i = 0; i < N_UCAT; i++)
        if (strstr(re, UCAT[i].name))
            return true;
    return false;
}

/* The collapsed form of re, rewritten as llama.cpp does (its bracket
 * tracking included: a '[' or ']' after a backslash does not count). */
static char *collapse_regex(const char *re)
{
    size_t len = strlen(re), n = 0;
    char *out = malloc(len * 24 + 1);
    if (!out)
        return NULL;
    bool inside = false;
    for (size_t i = 0; i < len; i++) {
        if (re[i] == '[' && (i == 0 || re[i - 1] != '\\')) {
            out[n++] = '[';
            inside = true;
            continue;
        }
        if (inside && re[i] == ']' && re[i - 1] != '\\') {
            out[n++] = ']';
            inside = false;
            continue;
        }
        if (re[i] == '\\' && i + 3 < len && re[i + 1] == 'p' && re[i + 2] == '{') {
            const char *close = strchr(re + i + 3, '}');
            size_t c = close ? (size_t)(close - re) : 0;
            size_t k = N_UCAT;
            if (close && c <= i + 10)
                for (k = 0; k < N_UCAT; k++)
                    if (strlen(UCAT[k].name) == c - i + 1 && memcmp(UCAT[k].name, re + i, c - i + 1) == 0)
                        break;
            if (k < N_UCAT) {
                if (!inside)
                    out[n++] = '[';
                out[n++] = UCAT[k].byte;
                memcpy(out + n, UCAT[k].ascii, strlen(UCAT[k].ascii));
                n += strlen(UCAT[k].ascii);
                if (!inside)
                    out[n++] = ']';
                i = c;
                continue;
            }
        }
        out[n++] = re[i];
    }
    out[n] = '\0';
    return out;
}

static ts_status compile_regex(ts_split_regex *r, const char *re, const char *name, ts_err *err)
{
    if (!strcmp(re, RE_GPT2) || !strcmp(re, RE_LLAMA3) || !strcmp(re, RE_QWEN2) || !strcmp(re, RE_QWEN35)) {
        r->kind = !strcmp(re, RE_GPT2) ? TS_SPLIT_GPT2 : !strcmp(re, RE_LLAMA3) ? TS_SPLIT_LLAMA3
                : !strcmp(re, RE_QWEN2) ? TS_SPLIT_QWEN2 : TS_SPLIT_QWEN35;
        r->re = NULL;
        return TS_OK;
    }
    /* Plain parentheses only group here: no capture keeps the repeated
     * lookahead groups of gpt-4o cheap. */
    uint32_t opts = PCRE2_NO_AUTO_CAPTURE;
    char *pattern;
    if (uses_categories(re)) {
        r->kind = TS_SPLIT_COLLAPSED;
        pattern = collapse_regex(re);
    } else {
        r->kind = TS_SPLIT_WIDE;
        opts |= PCRE2_UTF;
        pattern = strdup(re);
    }
    if (!pattern)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory compiling the %s pre-tokenizer", name);
    int ec;
    PCRE2_SIZE eo;
    r->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &ec, &eo, NULL);
    free(pattern);
    if (!r->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return ts_fail(err, TS_ERR_INTERNAL, "pre-tokenizer %s: PCRE2 refuses regex \"%s\" at offset %zu: %s", name,
                       re, (size_t)eo, (const char *)msg);
    }
    pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE); /* without JIT the interpreter runs it */
    return TS_OK;
}

ts_status ts_pretok_init(ts_pretok *p, const char *name, ts_pre_flags *flags, ts_err *err)
{
    memset(p, 0, sizeof *p);
    if (!ts_unicode_init())
        return ts_fail(err, TS_ERR_INTERNAL, "PCRE2 was built without Unicode support");
    const pre_def *d = NULL;
    for (size_t i = 0; !d && i < sizeof PRE / sizeof *PRE; i++)
        if (name_in(PRE[i].names, name))
            d = &PRE[i];
    if (!d) {
        char known[1024];
        size_t n = 0;
        for (size_t i = 0; i < sizeof PRE / sizeof *PRE && n + 2 < sizeof known; i++)
            n += (size_t)snprintf(known + n, sizeof known - n, "%s%s", i ? "|" : "", PRE[i].names);
        return ts_fail(err, TS_ERR_UNSUPPORTED, "tokenizer.ggml.pre \"%s\" is not supported; known: %s", name, known);
    }
    *flags = d->flags;
    for (int i = 0; i < TS_PRE_MAX_REGEX && d->regex[i]; i++) {
        ts_status st = compile_regex(&p->re[i], d->regex[i], name, err);
        if (st != TS_OK) {
            ts_pretok_free(p);
            return st;
        }
        p->n_re = i + 1;
    }
    return TS_OK;
}

void ts_pretok_free(ts_pretok *p)
{
    for (int i = 0; i < p->n_re; i++)
        pcre2_code_free(p->re[i].re);
    memset(p, 0, sizeof *p);
}

void ts_split_scratch_free(ts_split_scratch *s)
{
    free(s->a.v);
    free(s->b.v);
    free(s->collapsed);
    free(s->utf8);
    free(s->byte_cpt);
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit);
    memset(s, 0, sizeof *s);
}

static bool scratch_reserve(ts_split_scratch *s, size_t n)
{
    if (!s->md) {
        s->md = pcre2_match_data_create(16, NULL);
        s->mctx = pcre2_match_context_create(NULL);
        /* JIT frames grow with a piece's length (a long run of letters in
         * gpt-4o's repeated lookahead groups); past 64 MB we fall back to the
         * interpreter, which keeps its frames on the heap. */
        s->jit = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
        if (!s->md || !s->mctx || !s->jit)
            return false;
        pcre2_jit_stack_assign(s->mctx, NULL, s->jit);
        pcre2_set_match_limit(s->mctx, UINT32_MAX);
    }
    if (n <= s->cap)
        return true;
    free(s->collapsed);
    free(s->utf8);
    free(s->byte_cpt);
    s->collapsed = malloc(n);
    s->utf8 = malloc(n * 4);
    s->byte_cpt = malloc((n * 4 + 1) * sizeof *s->byte_cpt);
    s->cap = s->collapsed && s->utf8 && s->byte_cpt ? n : 0;
    return s->cap == n;
}

static void build_collapsed(ts_split_scratch *s, const uint32_t *cpts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cpts[i];
        if (c < 128) {
            s->collapsed[i] = (char)c;
            continue;
        }
        uint8_t k = ts_unicode_class(c);
        s->collapsed[i] = k & TS_UC_SPACE ? '\v' : k & TS_UC_NUMBER ? '\xD1' : k & TS_UC_LETTER ? '\xD2'
                        : k & TS_UC_PUNCT ? '\xD3' : k & TS_UC_MARK ? '\xD4' : k & TS_UC_SYMBOL ? '\xD5' : '\xD0';
    }
}

static size_t build_utf8(ts_split_scratch *s, const uint32_t *cpts, size_t n)
{
    size_t b = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cpts[i];
        if (c >= 128 && (ts_unicode_class(c) & TS_UC_SPACE))
            c = '\v';
        else if (c >= 0xD800 && c <= 0xDFFF)
            c = 0xFDD0; /* PCRE2 cannot hold a surrogate; a noncharacter no regex names stands in */
        int k = ts_utf8_encode(c, s->utf8 + b);
        for (int j = 0; j < k; j++)
            s->byte_cpt[b + (size_t)j] = i;
        b += (size_t)k;
    }
    s->byte_cpt[b] = n;
    return b;
}

/* Matches re over subject[0..len), leftmost first, as std::regex_iterator
 * walks it; appends the lengths (in code units) of the matches and of the
 * unmatched text between them. */
static ts_status regex_pieces(const pcre2_code *re, ts_split_scratch *s, const char *subject, size_t len, bool utf,
                              ts_szvec *units, ts_err *err)
{
    size_t pos = 0, prev = 0;
    uint32_t opts = utf ? PCRE2_NO_UTF_CHECK : 0;
    while (pos <= len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)subject, len, pos, opts, s->md, s->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re, (PCRE2_SPTR)subject, len, pos, opts | PCRE2_NO_JIT, s->md, s->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ts_fail(err, TS_ERR_LIMIT, "pre-tokenizer regex failed on a piece of %zu bytes: %s", len,
                           (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        size_t ms = ov[0], me = ov[1];
        if ((ms > prev && !ts_szvec_push(units, ms - prev)) || (me > ms && !ts_szvec_push(units, me - ms)))
            return ts_fail(err, TS_ERR_NOMEM, "out of memory in the pre-tokenizer");
        prev = me;
        if (me > ms) {
            pos = me;
            continue;
        }
        /* An empty match: step one character on, as regex_iterator does. */
        pos = ms + 1;
        while (utf && pos < len && ((unsigned char)subject[pos] & 0xC0) == 0x80)
            pos++;
    }
    if (prev < len && !ts_szvec_push(units, len - prev))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory in the pre-tokenizer");
    return TS_OK;
}

ts_status ts_pretok_split(const ts_pretok *p, const uint32_t *cpts, size_t n, ts_split_scratch *s,
                          const ts_szvec **pieces, ts_err *err)
{
    if (!scratch_reserve(s, n))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory in the pre-tokenizer (%zu code points)", n);
    s->a.n = 0;
    if (n > 0 && !ts_szvec_push(&s->a, n))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory in the pre-tokenizer");
    bool have_collapsed = false, have_utf8 = false;
    for (int r = 0; r < p->n_re; r++) {
        const ts_split_regex *re = &p->re[r];
        if (re->kind == TS_SPLIT_COLLAPSED && !have_collapsed)
            build_collapsed(s, cpts, n), have_collapsed = true;
        if (re->kind == TS_SPLIT_WIDE && !have_utf8)
            build_utf8(s, cpts, n), have_utf8 = true;
        s->b.n = 0;
        size_t start = 0, bstart = 0;
        for (size_t i = 0; i < s->a.n; i++) {
            size_t len = s->a.v[i];
            ts_status st = TS_OK;
            if (re->kind == TS_SPLIT_COLLAPSED) {
                st = regex_pieces(re->re, s, s->collapsed + start, len, false, &s->b, err);
            } else if (re->kind == TS_SPLIT_WIDE) {
                /* The piece is bytes [bstart, bend) of the UTF-8 text; the
                 * lengths found are turned back into code points. */
                size_t bend = bstart, first = s->b.n;
                while (s->byte_cpt[bend] < start + len)
                    bend++;
                st = regex_pieces(re->re, s, s->utf8 + bstart, bend - bstart, true, &s->b, err);
                size_t at = bstart;
                for (size_t j = first; st == TS_OK && j < s->b.n; j++) {
                    size_t c0 = s->byte_cpt[at];
                    at += s->b.v[j];
                    s->b.v[j] = s->byte_cpt[at] - c0;
                }
                bstart = bend;
            } else if (!ts_split_custom(re->kind, cpts, start, start + len, &s->b)) {
                st = ts_fail(err, TS_ERR_NOMEM, "out of memory in the pre-tokenizer");
            }
            if (st != TS_OK)
                return st;
            start += len;
        }
        ts_szvec tmp = s->a;
        s->a = s->b;
        s->b = tmp;
    }
    *pieces = &s->a;
    return TS_OK;
}
