/* tokenizer.json "pre_tokenizer" -> llama.cpp's tokenizer.ggml.pre name.
 * llama.cpp's converter hashes the token ids of a probe text; we compare the
 * split regexes themselves with the originals llama.cpp lists beside each
 * pre-tokenizer type (src/llama-vocab.cpp), which needs no Python tokenizer and
 * says exactly what did not match. Table and rules: docs/tokenizers.md. */
#include "convert/tokenizer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PARTS 8
#define MAX_PART_LEN 4096

/* The regex a ByteLevel pre-tokenizer applies when use_regex is true (GPT-2's). */
static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const char LLAMA3_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct {
    const char *name;
    const char *models;
    int ignore_merges; /* -1 any, else must equal tokenizer.json model.ignore_merges */
    const char *re[4]; /* NULL-terminated */
} pre_entry;

static const pre_entry TABLE[] = {
    {"llama-bpe", "Llama 3", 1, {LLAMA3_RE}},
    /* Same regex, merges not ignored: llama.cpp's "llama-bpe" would ignore them. */
    {"smaug-bpe", "Llama 3 regex without ignore_merges (Smaug, DBRX)", 0, {LLAMA3_RE}},
    {"qwen2", "Qwen2, Qwen2.5, Qwen3, DeepSeek-R1-Distill-Qwen", -1,
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
      "\\s+(?!\\S)|\\s+"}},
    {"qwen35", "Qwen3.5", -1,
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"deepseek-v3", "DeepSeek-V3, DeepSeek-R1", -1,
     {"\\p{N}{1,3}", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
      "?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"gpt-4o", "gpt-oss, GPT-4o, Llama 4", -1,
     {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|"
      "'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|"
      "'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"tekken", "Mistral Nemo (Tekken)", -1,
     {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?"
      "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    {"seed-coder", "Seed-Coder", -1,
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|"
      "\\s+(?!\\S)|\\s+"}},
    {"minicpm5", "MiniCPM5", -1,
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
      "\\s+(?!\\S)|\\s+"}},
    {"gpt-2", "GPT-2 (ByteLevel pre-tokenizer with its own regex)", -1, {GPT2_RE}},
};

/* Raw control characters and their escapes mean the same to a regex engine;
 * tokenizer.json files use both ("[^\r\n..." vs "[^\\r\\n..."). */
static void normalize_regex(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; *in && n + 3 < cap; in++) {
        const char *esc = *in == '\r' ? "\\r" : *in == '\n' ? "\\n" : *in == '\t' ? "\\t" : *in == '\f' ? "\\f" : NULL;
        if (esc) {
            out[n++] = esc[0];
            out[n++] = esc[1];
        } else {
            out[n++] = *in;
        }
    }
    out[n] = 0;
}

typedef struct {
    char part[MAX_PARTS][MAX_PART_LEN];
    int n;
    bool overflow;
} pre_parts;

static void add_part(pre_parts *p, const char *s)
{
    if (p->n == MAX_PARTS) {
        p->overflow = true;
        return;
    }
    normalize_regex(s, p->part[p->n], MAX_PART_LEN);
    if (strlen(s) >= MAX_PART_LEN - 8)
        p->overflow = true;
    p->n++;
}

/* Flatten the pre-tokenizer into the regexes it splits with, in order. Anything
 * else becomes a descriptive part that no table entry matches. */
static void collect(const json_t *pt, pre_parts *p, int depth)
{
    const char *type = ts_tok_json_str(pt, "type");
    char buf[MAX_PART_LEN];
    if (!type || depth > 4) {
        add_part(p, "<pre_tokenizer without a type>");
    } else if (strcmp(type, "Sequence") == 0) {
        size_t i;
        const json_t *sub;
        json_array_foreach(json_object_get(pt, "pretokenizers"), i, sub)
            collect(sub, p, depth + 1);
    } else if (strcmp(type, "Split") == 0) {
        const json_t *pat = json_object_get(pt, "pattern");
        const char *re = ts_tok_json_str(pat, "Regex");
        const char *str = ts_tok_json_str(pat, "String");
        const char *behavior = ts_tok_json_str(pt, "behavior");
        bool invert = json_is_true(json_object_get(pt, "invert"));
        if (re && behavior && strcmp(behavior, "Isolated") == 0 && !invert) {
            add_part(p, re);
        } else {
            snprintf(buf, sizeof buf, "<Split %s=%.3000s behavior=%s invert=%d>", re ? "Regex" : "String",
                     re ? re : str ? str : "?", behavior ? behavior : "?", invert);
            add_part(p, buf);
        }
    } else if (strcmp(type, "ByteLevel") == 0) {
        const json_t *use = json_object_get(pt, "use_regex");
        if (!use || json_is_true(use)) /* the tokenizers library defaults use_regex to true */
            add_part(p, GPT2_RE);
    } else {
        snprintf(buf, sizeof buf, "<%s pre-tokenizer>", type);
        add_part(p, buf);
    }
}

static bool entry_matches(const pre_entry *e, const pre_parts *p, bool ignore_merges)
{
    if (e->ignore_merges >= 0 && e->ignore_merges != (int)ignore_merges)
        return false;
    int n = 0;
    while (n < 4 && e->re[n])
        n++;
    if (n != p->n)
        return false;
    for (int i = 0; i < n; i++)
        if (strcmp(e->re[i], p->part[i]) != 0)
            return false;
    return true;
}

static void list_known(char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    for (size_t i = 0; i < sizeof TABLE / sizeof *TABLE && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? ", " : "", TABLE[i].name);
}

ts_status ts_tok_detect_pre(const json_t *tokenizer, bool ignore_merges, const char **name, ts_err *err)
{
    const json_t *pt = json_object_get(tokenizer, "pre_tokenizer");
    if (!json_is_object(pt))
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "tokenizer.json: pre_tokenizer is missing; a byte-level BPE tokenizer needs one, and llama.cpp "
                       "needs its name (tokenizer.ggml.pre)");
    pre_parts *p = calloc(1, sizeof *p);
    if (!p)
        return ts_fail(err, TS_ERR_NOMEM, "tokenizer.json: out of memory");
    collect(pt, p, 0);
    for (size_t i = 0; i < sizeof TABLE / sizeof *TABLE && !p->overflow; i++)
        if (entry_matches(&TABLE[i], p, ignore_merges)) {
            *name = TABLE[i].name;
            free(p);
            return TS_OK;
        }
    /* err->msg holds 1024 bytes: quote each regex, shortened when needed. */
    char regexes[700] = "", known[256];
    size_t n = 0;
    int each = p->n ? (int)(600 / p->n) : 600;
    for (int i = 0; i < p->n && n < sizeof regexes; i++) {
        int len = (int)strlen(p->part[i]);
        n += (size_t)snprintf(regexes + n, sizeof regexes - n, "%s[%d] %.*s%s", i ? " " : "", i + 1,
                              len > each ? each - 3 : len, p->part[i], len > each ? "..." : "");
    }
    list_known(known, sizeof known);
    free(p);
    return ts_fail(err, TS_ERR_UNSUPPORTED,
                   "tokenizer.json: pre-tokenizer not recognized (ignore_merges=%s), split regex(es): %s -- "
                   "known names: %s; see docs/tokenizers.md",
                   ignore_merges ? "true" : "false", regexes, known);
}

/* Model classes whose vocabulary llama.cpp's converter labels itself instead
 * of by the hash of a probe tokenization: GLM-4.5 (conversion/glm.py,
 * Glm4MoeModel -> _set_vocab_glm). Its split regex is Llama 3's, which the
 * table above can only call llama-bpe / smaug-bpe; llama.cpp's hash list names
 * it "glm4" (same regex, merges not ignored, no default BOS). The special
 * tokens are set after gguf-py's SpecialVocab has read the files, so they only
 * fill types the files left unset. */
static const ts_tok_family FAMILIES[] = {
    {"Glm4MoeForCausalLM", {"llama-bpe", "smaug-bpe"}, "glm4",
     {{"bos", "[gMASK]"}, {"eot", "<|user|>"}, {"unk", "<|endoftext|>"}, {"eom", "<|observation|>"}}},
};

const ts_tok_family *ts_tok_family_of(const ts_tok_files *f)
{
    const char *arch = json_string_value(json_array_get(json_object_get(f->config, "architectures"), 0));
    for (size_t i = 0; arch && i < sizeof FAMILIES / sizeof *FAMILIES; i++)
        if (strcmp(arch, FAMILIES[i].hf_arch) == 0)
            return &FAMILIES[i];
    return NULL;
}

const char *ts_tok_family_pre(const ts_tok_files *f, const char *detected)
{
    const ts_tok_family *fam = ts_tok_family_of(f);
    for (size_t i = 0; fam && i < sizeof fam->from_pre / sizeof *fam->from_pre && fam->from_pre[i]; i++)
        if (strcmp(detected, fam->from_pre[i]) == 0)
            return fam->pre;
    return detected;
}
