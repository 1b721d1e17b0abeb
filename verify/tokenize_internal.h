/* Shared by verify/tokenize*.c only. The flow of ts_tokenize: split the text
 * around special tokens (tokenize.c), then encode each plain fragment with
 * SentencePiece (tokenize_spm.c) or byte-level BPE (tokenize_bpe.c, whose
 * pre-tokenizer lives in tokenize_pre.c and tokenize_split.c). */
#ifndef TS_TOKENIZE_INTERNAL_H
#define TS_TOKENIZE_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "verify/tokenize.h"

/* ---- string -> int32 hash map (tokenize_map.c) ---- */
typedef struct {
    uint64_t hash;
    size_t off; /* key bytes in arena */
    uint32_t len;
    int32_t val;
} ts_tmap_entry;

typedef struct {
    uint32_t *slots; /* entry index + 1; 0 = empty */
    size_t mask;
    ts_tmap_entry *e;
    size_t n, cap;
    char *arena;
    size_t arena_len, arena_cap;
} ts_tmap;

bool ts_tmap_init(ts_tmap *m, size_t expected);
void ts_tmap_free(ts_tmap *m);
/* Inserts key -> val. An existing key keeps its value unless replace. Returns
 * false only when out of memory. */
bool ts_tmap_put(ts_tmap *m, const char *key, size_t len, int32_t val, bool replace);
/* -1 when absent. */
int32_t ts_tmap_get(const ts_tmap *m, const char *key, size_t len);

/* ---- growable arrays ---- */
typedef struct {
    int32_t *v;
    size_t n, cap;
} ts_i32vec;
typedef struct {
    size_t *v;
    size_t n, cap;
} ts_szvec;
bool ts_i32vec_push(ts_i32vec *a, int32_t x);
bool ts_szvec_push(ts_szvec *a, size_t x);

/* ---- Unicode (tokenize_split.c) ----
 * llama.cpp's code point classes: the general category group, plus its fixed
 * White_Space set. Every code point below 0x110000 has a nonzero class. */
enum {
    TS_UC_NUMBER = 1,
    TS_UC_LETTER = 2,
    TS_UC_MARK = 4,
    TS_UC_PUNCT = 8,
    TS_UC_SYMBOL = 16,
    TS_UC_SPACE = 32, /* White_Space */
    TS_UC_OTHER = 64, /* separators, controls, unassigned: in range but none of the above */
};
/* Builds the class table once per process; false if PCRE2 lacks Unicode support. */
bool ts_unicode_init(void);
uint8_t ts_unicode_class(uint32_t cpt);
/* llama.cpp's lenient decoder: invalid sequences become U+FFFD one byte at a
 * time. Returns the number of code points written to cpts (capacity len). */
size_t ts_utf8_decode(const char *s, size_t len, uint32_t *cpts);
/* Writes 1-4 bytes, returns the count. cpt must be <= 0x10FFFF. */
int ts_utf8_encode(uint32_t cpt, char *out);

/* ---- pre-tokenizer ---- */
typedef enum {
    TS_SPLIT_GPT2,   /* llama.cpp's hand-written matchers of these four regexes */
    TS_SPLIT_LLAMA3,
    TS_SPLIT_QWEN2,
    TS_SPLIT_QWEN35,
    TS_SPLIT_COLLAPSED, /* a regex with \p{..}: PCRE2 over one byte per code point */
    TS_SPLIT_WIDE,      /* a regex without \p{..}: PCRE2 (UTF) over the code points */
} ts_split_kind;

#define TS_PRE_MAX_REGEX 4

typedef struct {
    ts_split_kind kind;
    pcre2_code *re; /* NULL for the hand-written kinds */
} ts_split_regex;

typedef struct {
    ts_split_regex re[TS_PRE_MAX_REGEX];
    int n_re;
} ts_pretok;

/* Per-call scratch of the splitter (never shared between threads). */
typedef struct {
    ts_szvec a, b;     /* piece lengths in code points */
    char *collapsed;   /* one byte per code point (TS_SPLIT_COLLAPSED) */
    char *utf8;        /* the code points as UTF-8 (TS_SPLIT_WIDE) */
    size_t *byte_cpt;  /* UTF-8 byte offset -> code point index */
    size_t cap;        /* code points the buffers hold */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
} ts_split_scratch;

/* Facts about one tokenizer.ggml.pre name (tokenize_pre.c). */
typedef struct {
    bool ignore_merges;
    bool add_bos;    /* llama.cpp's default when tokenizer.ggml.add_bos_token is absent */
    bool no_bos;     /* the name disables the default BOS id */
} ts_pre_flags;

/* Compiles the regexes of a pre-tokenizer name; TS_ERR_UNSUPPORTED for an unknown name. */
ts_status ts_pretok_init(ts_pretok *p, const char *name, ts_pre_flags *flags, ts_err *err);
void ts_pretok_free(ts_pretok *p);
void ts_split_scratch_free(ts_split_scratch *s);
/* Splits cpts[0..n) into pieces: on success *pieces holds their lengths in
 * code points (pointing into s). */
ts_status ts_pretok_split(const ts_pretok *p, const uint32_t *cpts, size_t n, ts_split_scratch *s,
                          const ts_szvec **pieces, ts_err *err);
/* The hand-written matchers: append the lengths of the pieces of cpts[start..end). */
bool ts_split_custom(ts_split_kind kind, const uint32_t *cpts, size_t start, size_t end, ts_szvec *out);

/* ---- the tokenizer ---- */
enum {
    TS_ATTR_UNKNOWN = 1 << 0,
    TS_ATTR_UNUSED = 1 << 1,
    TS_ATTR_NORMAL = 1 << 2,
    TS_ATTR_CONTROL = 1 << 3,
    TS_ATTR_USER_DEFINED = 1 << 4,
    TS_ATTR_BYTE = 1 << 5,
    TS_ATTR_LSTRIP = 1 << 7,
    TS_ATTR_RSTRIP = 1 << 8,
};

typedef enum { TS_VOCAB_SPM, TS_VOCAB_BPE } ts_vocab_type;

struct ts_tokenizer {
    ts_vocab_type type;
    int32_t n_vocab;
    char **text;       /* NUL-terminated, into text_arena */
    uint32_t *text_len;
    char *text_arena;
    float *score;
    uint16_t *attr;
    ts_tmap token_ids; /* text -> id; the last id wins for duplicate texts, as in llama.cpp */
    ts_tmap merges;    /* "left right" -> rank; the first rank wins */
    int32_t *special;  /* control/user-defined/unknown ids, longest text first */
    int32_t n_special;
    int32_t bos, eos, unk;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;
    int32_t spm_byte[256]; /* SentencePiece byte fallback: <0xXX>, else the raw byte; -1 */
    int32_t bpe_byte[256]; /* BPE fallback: the one-byte text; -1 */
    char byte_enc[256][3]; /* GPT-2 byte -> code point, UTF-8, NUL-terminated */
    ts_pretok pre;
};

/* Encode one plain-text fragment, appending ids. */
ts_status ts_spm_encode(const ts_tokenizer *t, const char *text, size_t len, bool space_prefix, ts_i32vec *out,
                        ts_err *err);

typedef struct ts_bpe_session ts_bpe_session;
ts_status ts_bpe_session_new(const ts_tokenizer *t, ts_bpe_session **out, ts_err *err);
void ts_bpe_session_free(ts_bpe_session *s);
ts_status ts_bpe_encode(ts_bpe_session *s, const char *text, size_t len, ts_i32vec *out, ts_err *err);

#endif
