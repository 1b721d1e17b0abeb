/* Code point classes, llama.cpp's lenient UTF-8 decoding, and its four
 * hand-written pre-tokenizer matchers (GPT-2, Llama 3, Qwen2, Qwen3.5).
 *
 * llama.cpp does not run these four regexes through a regex engine: it walks
 * the code points with its own category table (general category groups from
 * UnicodeData 15.1, plus a fixed White_Space set that includes U+0085, which
 * PCRE2's \s does not). We walk them the same way with the same classes, so
 * the pieces agree by construction; the classes themselves come from PCRE2's
 * Unicode tables (\p{N} etc.), read once into a flat table. */
#include "verify/tokenize_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TS_N_CPT 0x110000

static uint8_t g_class[TS_N_CPT];
static bool g_class_ok;
static pthread_once_t g_class_once = PTHREAD_ONCE_INIT;

/* Unicode's White_Space property (PropList.txt), which llama.cpp uses for \s. */
static const uint32_t WHITE_SPACE[] = {
    0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005,
    0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
};

int ts_utf8_encode(uint32_t cpt, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cpt <= 0x7F) {
        o[0] = (unsigned char)cpt;
        return 1;
    }
    if (cpt <= 0x7FF) {
        o[0] = (unsigned char)(0xC0 | (cpt >> 6));
        o[1] = (unsigned char)(0x80 | (cpt & 0x3F));
        return 2;
    }
    if (cpt <= 0xFFFF) { /* surrogates too: llama.cpp re-encodes what it decoded */
        o[0] = (unsigned char)(0xE0 | (cpt >> 12));
        o[1] = (unsigned char)(0x80 | ((cpt >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cpt & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cpt >> 18));
    o[1] = (unsigned char)(0x80 | ((cpt >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cpt >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cpt & 0x3F));
    return 4;
}

/* As llama.cpp's unicode_cpts_from_utf8: continuation bytes are checked but
 * not overlongs or surrogates; a bad sequence yields U+FFFD and skips one
 * byte. Beyond llama.cpp, a 4-byte sequence above U+10FFFF is bad too
 * (llama.cpp decodes it and then aborts when re-encoding it). */
size_t ts_utf8_decode(const char *str, size_t len, uint32_t *cpts)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = 0, i = 0;
    while (i < len) {
        unsigned b = s[i];
        uint32_t cp = 0xFFFD;
        size_t k = 1;
        if (b < 0x80) {
            cp = b;
        } else if ((b & 0xE0) == 0xC0) {
            if (i + 1 < len && (s[i + 1] & 0xC0) == 0x80)
                cp = ((b & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu), k = 2;
        } else if ((b & 0xF0) == 0xE0) {
            if (i + 2 < len && (s[i + 1] & 0xC0) == 0x80 && (s[i + 2] & 0xC0) == 0x80)
                cp = ((b & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu), k = 3;
        } else if ((b & 0xF8) == 0xF0) {
            if (i + 3 < len && (s[i + 1] & 0xC0) == 0x80 && (s[i + 2] & 0xC0) == 0x80 && (s[i + 3] & 0xC0) == 0x80) {
                uint32_t v = ((b & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) |
                             (s[i + 3] & 0x3Fu);
                if (v < TS_N_CPT)
                    cp = v, k = 4;
            }
        }
        cpts[n++] = cp;
        i += k;
    }
    return n;
}

/* Marks every code point that pattern (a \p{..}+ run) matches in all. */
static bool mark_class(const char *all, size_t len, const char *pattern, uint8_t cls)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ec, &eo, NULL);
    if (!re)
        return false;
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: the interpreter gives the same answer */
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    bool ok = md != NULL;
    size_t start = 0;
    while (ok && start < len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)all, len, start, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            ok = false;
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        uint32_t cp[1];
        for (size_t i = ov[0]; i < ov[1];) {
            size_t k = (unsigned char)all[i] < 0x80 ? 1 : (unsigned char)all[i] < 0xE0 ? 2
                     : (unsigned char)all[i] < 0xF0 ? 3 : 4;
            ts_utf8_decode(all + i, k, cp);
            g_class[cp[0]] |= cls;
            i += k;
        }
        start = ov[1] > start ? ov[1] : start + 1;
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return ok;
}

static void build_classes(void)
{
    char *all = malloc((size_t)TS_N_CPT * 4);
    if (!all)
        return;
    size_t len = 0;
    for (uint32_t cp = 0; cp < TS_N_CPT; cp++)
        if (cp < 0xD800 || cp > 0xDFFF) /* PCRE2 refuses surrogates; they are Cs (other) */
            len += (size_t)ts_utf8_encode(cp, all + len);
    static const struct {
        const char *re;
        uint8_t cls;
    } CLASSES[] = {
        {"\\p{N}+", TS_UC_NUMBER}, {"\\p{L}+", TS_UC_LETTER}, {"\\p{M}+", TS_UC_MARK},
        {"\\p{P}+", TS_UC_PUNCT},  {"\\p{S}+", TS_UC_SYMBOL},
    };
    bool ok = true;
    for (size_t i = 0; ok && i < sizeof CLASSES / sizeof *CLASSES; i++)
        ok = mark_class(all, len, CLASSES[i].re, CLASSES[i].cls);
    free(all);
    if (!ok)
        return;
    /* llama.cpp's table is Unicode 15.1; PCRE2 10.42 knows 15.0. The code
     * points 15.1 assigned: CJK Extension I (Lo), U+2FFC..2FFF and U+31EF (So). */
    if (!g_class[0x2EBF0]) {
        for (uint32_t cp = 0x2EBF0; cp <= 0x2EE5D; cp++)
            g_class[cp] = TS_UC_LETTER;
        for (uint32_t cp = 0x2FFC; cp <= 0x2FFF; cp++)
            g_class[cp] = TS_UC_SYMBOL;
        g_class[0x31EF] = TS_UC_SYMBOL;
    }
    for (uint32_t cp = 0; cp < TS_N_CPT; cp++)
        if (!g_class[cp])
            g_class[cp] = TS_UC_OTHER;
    for (size_t i = 0; i < sizeof WHITE_SPACE / sizeof *WHITE_SPACE; i++)
        g_class[WHITE_SPACE[i]] |= TS_UC_SPACE;
    g_class_ok = true;
}

bool ts_unicode_init(void)
{
    pthread_once(&g_class_once, build_classes);
    return g_class_ok;
}

uint8_t ts_unicode_class(uint32_t cpt)
{
    return cpt < TS_N_CPT ? g_class[cpt] : TS_UC_OTHER;
}

/* ---- the hand-written matchers ----
 * Each walks one piece [ini, end) and cuts it where the regex in the comment
 * would; positions outside the piece read as "no code point" (class 0). */

#define OUT_OF_RANGE 0xFFFFFFFFu

typedef struct {
    const uint32_t *c;
    size_t ini, end, prev_end;
    ts_szvec *out;
    bool ok;
} walk;

static inline uint32_t cpt_at(const walk *w, size_t pos)
{
    return pos >= w->ini && pos < w->end ? w->c[pos] : OUT_OF_RANGE;
}

static inline uint8_t cls_at(const walk *w, size_t pos)
{
    return pos >= w->ini && pos < w->end ? ts_unicode_class(w->c[pos]) : 0;
}

/* Ends the current piece at end; returns its length. */
static size_t cut(walk *w, size_t end)
{
    size_t len = end - w->prev_end;
    if (len > 0 && !ts_szvec_push(w->out, len))
        w->ok = false;
    w->prev_end = end;
    return len;
}

static inline uint32_t lower_ascii(uint32_t c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's|'t|'re|'ve|'m|'ll|'d (case-insensitive unless gpt2): length matched, or 0. */
static size_t contraction(const walk *w, size_t pos, bool any_case)
{
    if (cpt_at(w, pos) != '\'' || pos + 1 >= w->end)
        return 0;
    uint32_t a = cpt_at(w, pos + 1);
    if (any_case)
        a = lower_ascii(a);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (pos + 2 < w->end) {
        uint32_t b = cpt_at(w, pos + 2);
        if (any_case)
            b = lower_ascii(b);
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
            return 3;
    }
    return 0;
}

/* \s+(?!\S) then \s+ (and, unless gpt2, \s*[\r\n]+ first). */
static size_t whitespace(walk *w, size_t pos, bool newline_rule)
{
    size_t n = 0, last_rn = 0;
    while (cls_at(w, pos + n) & TS_UC_SPACE) {
        uint32_t c = cpt_at(w, pos + n);
        if (c == '\r' || c == '\n')
            last_rn = pos + n + 1;
        n++;
    }
    if (newline_rule && last_rn > 0)
        return last_rn;
    if (n > 1 && cpt_at(w, pos + n) != OUT_OF_RANGE)
        return pos + n - 1;
    if (n > 0)
        return pos + n;
    return pos + 1; /* no alternative matched: one code point alone */
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void walk_gpt2(walk *w)
{
    for (size_t pos = w->ini; pos < w->end && w->ok;) {
        size_t k = contraction(w, pos, false);
        if (k) {
            pos += cut(w, pos + k);
            continue;
        }
        uint32_t cpt = cpt_at(w, pos);
        uint8_t f2 = cpt == ' ' ? cls_at(w, pos + 1) : cls_at(w, pos);
        uint8_t want = f2 & TS_UC_LETTER ? TS_UC_LETTER : f2 & TS_UC_NUMBER ? TS_UC_NUMBER : 0;
        if (want) {
            pos += cpt == ' ';
            while (cls_at(w, pos) & want)
                pos++;
            cut(w, pos);
            continue;
        }
        if (!(f2 & (TS_UC_SPACE | TS_UC_LETTER | TS_UC_NUMBER)) && f2) {
            pos += cpt == ' ';
            while (!(f2 & (TS_UC_SPACE | TS_UC_LETTER | TS_UC_NUMBER)) && f2)
                f2 = cls_at(w, ++pos);
            cut(w, pos);
            continue;
        }
        pos = whitespace(w, pos, false);
        cut(w, pos);
    }
}

/* Llama 3:  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * Qwen2:    the same with \p{N} for \p{N}{1,3}.
 * Qwen3.5:  as Qwen2 with [\p{L}\p{M}]+ for \p{L}+ and \p{M} added to the negated class. */
static void walk_llama3(walk *w, ts_split_kind kind)
{
    const uint8_t word = kind == TS_SPLIT_QWEN35 ? TS_UC_LETTER | TS_UC_MARK : TS_UC_LETTER;
    const size_t max_digits = kind == TS_SPLIT_LLAMA3 ? 3 : 1;
    for (size_t pos = w->ini; pos < w->end && w->ok;) {
        size_t k = contraction(w, pos, true);
        if (k) {
            pos += cut(w, pos + k);
            continue;
        }
        uint32_t cpt = cpt_at(w, pos);
        uint8_t f = cls_at(w, pos);
        if (!(cpt == '\r' || cpt == '\n' || (f & TS_UC_NUMBER)) && ((f & word) || (cls_at(w, pos + 1) & word))) {
            pos++;
            while (cls_at(w, pos) & word)
                pos++;
            cut(w, pos);
            continue;
        }
        if (f & TS_UC_NUMBER) {
            size_t ini = pos;
            while (cls_at(w, pos) & TS_UC_NUMBER) {
                if (++pos - ini >= max_digits) {
                    cut(w, pos);
                    ini = pos;
                }
            }
            cut(w, pos);
            continue;
        }
        const uint8_t stop = TS_UC_SPACE | TS_UC_NUMBER | word;
        uint8_t f2 = cpt == ' ' ? cls_at(w, pos + 1) : f;
        if (!(f2 & stop) && f) {
            pos += cpt == ' ';
            while (!(f2 & stop) && f2)
                f2 = cls_at(w, ++pos);
            for (uint32_t c = cpt_at(w, pos); c == '\r' || c == '\n'; c = cpt_at(w, ++pos))
                ;
            cut(w, pos);
            continue;
        }
        pos = whitespace(w, pos, true);
        cut(w, pos);
    }
}

bool ts_split_custom(ts_split_kind kind, const uint32_t *cpts, size_t start, size_t end, ts_szvec *out)
{
    walk w = {.c = cpts, .ini = start, .end = end, .prev_end = start, .out = out, .ok = true};
    if (kind == TS_SPLIT_GPT2)
        walk_gpt2(&w);
    else
        walk_llama3(&w, kind);
    return w.ok;
}
