/* tiktoken.model (Kimi K2) -> a "gpt2" BPE vocabulary with pre-tokenizer
 * "kimi-k2", as llama.cpp's converter builds it (DeepseekV2Model.set_vocab):
 *
 *   - tiktoken.model: one "<base64 token bytes> <rank>" per line; the rank is
 *     the token id. Ranks must be 0..n-1, each once.
 *   - each token's bytes become text through GPT-2's byte -> character table
 *     (the "Ġ" convention of byte-level BPE files);
 *   - merges, in file order: a token of two or more bytes gives the merge
 *     "left right" when BPE of its bytes, using only tokens of lower rank,
 *     ends in exactly two parts (tiktoken has no merge list; this recovers it);
 *   - ids n .. n+255 are the special tokens of tokenization_kimi.py: their
 *     text from tokenizer_config.json added_tokens_decoder, else
 *     <|reserved_token_ID|>, all CONTROL; ids past them up to the model's
 *     vocab_size are padding.
 * Only Kimi's tokenizer (tokenization_kimi.TikTokenTokenizer) is accepted: a
 * tiktoken file does not carry its pre-tokenizer regex, so the name could not
 * be checked otherwise. See docs/tokenizers.md. */
#include "convert/tokenizer_internal.h"
#include "core/mapped_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KIMI_SPECIAL 256 /* tokenization_kimi.py num_reserved_special_tokens */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * others to U+0100 onwards in byte order. Writes 1-2 UTF-8 bytes. */
static size_t byte_char(unsigned b, char *out)
{
    unsigned cp = b;
    if (!((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae))) {
        unsigned n = 0;
        for (unsigned k = 0; k < b; k++)
            n += !((k >= 0x21 && k <= 0x7e) || (k >= 0xa1 && k <= 0xac) || (k >= 0xae));
        cp = 0x100 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

static int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Standard base64 with padding; false on any other input. */
static bool b64_decode(const char *s, size_t n, unsigned char *out, size_t *out_len)
{
    if (n == 0 || n % 4 != 0)
        return false;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = (s[i + k] == '=' && i + 4 == n && k >= 2) ? -2 : b64_value((unsigned char)s[i + k]);
        if (v[0] < 0 || v[1] < 0 || v[2] == -1 || v[3] == -1 || (v[2] == -2 && v[3] != -2))
            return false;
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)(v[2] < 0 ? 0 : v[2]) << 6 |
                     (uint32_t)(v[3] < 0 ? 0 : v[3]);
        out[o++] = (unsigned char)(x >> 16);
        if (v[2] >= 0)
            out[o++] = (unsigned char)(x >> 8);
        if (v[3] >= 0)
            out[o++] = (unsigned char)x;
    }
    *out_len = o;
    return true;
}

typedef struct {
    int64_t rank;  /* = token id */
    size_t bytes;  /* length of the raw token */
} tt_line;

static bool is_kimi(const ts_tok_files *f)
{
    const json_t *am = json_object_get(json_object_get(f->tok_config, "auto_map"), "AutoTokenizer");
    const char *cls = json_is_array(am) ? json_string_value(json_array_get(am, 0)) : json_string_value(am);
    return cls && strstr(cls, "tokenization_kimi") != NULL;
}

/* Real vocabularies stay far below this; it bounds the quadratic merge recovery. */
#define TT_MAX_TOKEN_BYTES 1024

/* Parses every non-empty line into (rank, text) and sets the base tokens of v. */
static ts_status read_lines(const char *path, const char *buf, size_t len, int64_t rows, ts_tok_vocab *v,
                            tt_line **lines_out, int64_t *n_out, ts_err *err)
{
    int64_t n = 0;
    for (size_t p = 0; p < len;) { /* tiktoken's loader skips empty lines */
        const char *eol = memchr(buf + p, '\n', len - p);
        size_t end = eol ? (size_t)(eol - buf) : len;
        n += end > p;
        p = end + 1;
    }
    *lines_out = NULL;
    *n_out = 0;
    if (n == 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: no tokens", path);
    tt_line *lines = calloc((size_t)n, sizeof *lines);
    unsigned char raw[TT_MAX_TOKEN_BYTES + 3];
    char text[2 * sizeof raw];
    if (!lines)
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", path);
    *lines_out = lines;
    ts_status st = ts_tok_vocab_init(v, n + KIMI_SPECIAL, rows, false, path, err);
    int64_t k = 0, line_no = 0;
    for (size_t p = 0; p < len && st == TS_OK; line_no++) {
        const char *eol = memchr(buf + p, '\n', len - p);
        size_t end = eol ? (size_t)(eol - buf) : len, sp = p;
        if (end == p) {
            p++;
            continue;
        }
        while (sp < end && buf[sp] != ' ')
            sp++;
        size_t raw_len = 0;
        char *num_end = NULL;
        long long rank = sp + 1 < end ? strtoll(buf + sp + 1, &num_end, 10) : -1;
        if (sp - p > 4 * (TT_MAX_TOKEN_BYTES / 3 + 1) || !b64_decode(buf + p, sp - p, raw, &raw_len) ||
            raw_len == 0 || raw_len > TT_MAX_TOKEN_BYTES || !num_end || num_end != buf + end || rank < 0 ||
            rank >= n)
            return ts_fail(err, TS_ERR_FORMAT, "%s: line %lld: expected \"<base64 token of 1 to %d bytes> <rank>\" "
                           "with a rank from 0 to %lld", path, (long long)line_no + 1, TT_MAX_TOKEN_BYTES, (long long)n - 1);
        if (v->text[rank])
            return ts_fail(err, TS_ERR_FORMAT, "%s: line %lld: rank %lld appears twice (ranks must be 0..%lld, each "
                           "once)", path, (long long)line_no + 1, rank, (long long)n - 1);
        size_t tl = 0;
        for (size_t b = 0; b < raw_len; b++)
            tl += byte_char(raw[b], text + tl);
        st = ts_tok_vocab_set(v, rank, text, tl, TS_TOK_NORMAL, 0, false, path, err);
        lines[k++] = (tt_line){rank, raw_len};
        p = end + 1;
    }
    *n_out = k;
    return st;
}

/* BPE of a token's text (chars bytes) using only tokens below max_rank,
 * llama.cpp's QwenModel.bpe: merge the adjacent pair of lowest rank (the
 * leftmost on a tie) until none is left. Returns the number of parts (capped
 * at 3) and, when 2, where the second starts in *split. start and pair hold
 * chars + 1 entries. */
static int bpe_parts(const ts_tok_map *map, const char *s, size_t chars, int64_t max_rank, size_t *start,
                     int64_t *pair, size_t *split)
{
    size_t n = chars, off = 0;
    for (size_t i = 0; i < n; i++) { /* one part per byte: 1 or 2 UTF-8 bytes each */
        start[i] = off;
        off += ((unsigned char)s[off] & 0x80) ? 2 : 1;
    }
    start[n] = off;
#define PAIR_RANK(i) \
    ((pair[i] = ts_tok_map_find(map, s + start[i], start[(i) + 2] - start[i])) >= max_rank ? (pair[i] = -1) : pair[i])
    for (size_t i = 0; i + 1 < n; i++)
        PAIR_RANK(i);
    while (n > 1) {
        size_t at = 0;
        int64_t best = -1;
        for (size_t i = 0; i + 1 < n; i++)
            if (pair[i] >= 0 && (best < 0 || pair[i] < best)) {
                best = pair[i];
                at = i;
            }
        if (best < 0)
            break;
        memmove(start + at + 1, start + at + 2, (n - at - 1) * sizeof *start);
        memmove(pair + at + 1, pair + at + 2, (n > at + 3 ? n - at - 3 : 0) * sizeof *pair);
        n--;
        if (at > 0)
            PAIR_RANK(at - 1);
        if (at + 1 < n)
            PAIR_RANK(at);
    }
#undef PAIR_RANK
    *split = start[1];
    return n > 3 ? 3 : (int)n;
}

static ts_status build_merges(const char *path, const tt_line *lines, int64_t n, ts_tok_vocab *v, ts_err *err)
{
    ts_tok_map map = {0};
    ts_status st = ts_tok_map_init(&map, v->text, n, err);
    size_t *start = malloc((TT_MAX_TOKEN_BYTES + 2) * sizeof *start);
    int64_t *pair = malloc((TT_MAX_TOKEN_BYTES + 2) * sizeof *pair);
    v->merges = calloc((size_t)n + 1, sizeof *v->merges);
    if (st == TS_OK && (!start || !pair || !v->merges))
        st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", path);
    for (int64_t i = 0; i < n && st == TS_OK; i++)
        if (ts_tok_map_insert(&map, lines[i].rank) >= 0)
            st = ts_fail(err, TS_ERR_FORMAT, "%s: token of rank %lld appears twice", path, (long long)lines[i].rank);
    for (int64_t i = 0; i < n && st == TS_OK; i++) {
        const tt_line *l = &lines[i];
        if (l->bytes < 2)
            continue;
        const char *s = v->text[l->rank];
        size_t split;
        if (bpe_parts(&map, s, l->bytes, l->rank, start, pair, &split) != 2)
            continue;
        size_t len = strlen(s);
        char *m = malloc(len + 2);
        if (!m) {
            st = ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        memcpy(m, s, split);
        m[split] = ' ';
        memcpy(m + split + 1, s + split, len - split + 1);
        v->merges[v->n_merges++] = m;
    }
    free(start);
    free(pair);
    ts_tok_map_free(&map);
    return st;
}

/* Ids n .. n+255: Kimi's special tokens, named in added_tokens_decoder or reserved. */
static ts_status set_specials(const ts_tok_files *f, int64_t n_base, ts_tok_vocab *v, ts_err *err)
{
    const json_t *dec = json_object_get(f->tok_config, "added_tokens_decoder");
    ts_status st = TS_OK;
    for (int64_t i = n_base; i < n_base + KIMI_SPECIAL && st == TS_OK; i++) {
        char key[32], buf[64];
        snprintf(key, sizeof key, "%lld", (long long)i);
        const char *name = ts_tok_token_content(json_object_get(dec, key));
        if (!name) {
            snprintf(buf, sizeof buf, "<|reserved_token_%lld|>", (long long)i);
            name = buf;
        }
        st = ts_tok_vocab_set(v, i, name, strlen(name), TS_TOK_CONTROL, 0, true,
                              "tokenizer_config.json added_tokens_decoder", err);
    }
    return st;
}

ts_status ts_tok_read_tiktoken(const ts_tok_files *f, const char *model_path, int64_t rows, ts_tok_vocab *v,
                               ts_err *err)
{
    if (!is_kimi(f))
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s: a tiktoken vocabulary without its pre-tokenizer: tiktoken files keep the split regex in "
                       "the model's Python tokenizer; only Kimi K2's (tokenizer_config.json auto_map "
                       "tokenization_kimi.TikTokenTokenizer, llama.cpp's \"kimi-k2\") is known", model_path);
    char *buf = NULL;
    size_t len = 0;
    tt_line *lines = NULL;
    int64_t n = 0;
    ts_status st = ts_read_small_file(model_path, TS_TOK_MODEL_MAX_BYTES, &buf, &len, err);
    if (st == TS_OK)
        st = read_lines(model_path, buf, len, rows, v, &lines, &n, err);
    free(buf);
    if (st == TS_OK)
        st = build_merges(model_path, lines, n, v, err);
    free(lines);
    if (st == TS_OK)
        st = set_specials(f, n, v, err);
    v->model = "gpt2";
    v->pre = "kimi-k2";
    return st;
}
