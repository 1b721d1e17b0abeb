/* Shared by convert/tokenizer_*.c only; the public API is convert/tokenizer.h.
 * The flow: load the JSON files once (ts_tok_files), let one reader fill a
 * ts_tok_vocab (tokens by id, types, scores or merges), then common code pads,
 * de-duplicates and validates it, adds the special tokens and writes the keys. */
#ifndef TS_TOKENIZER_INTERNAL_H
#define TS_TOKENIZER_INTERNAL_H

#include "convert/tokenizer.h"

#include <jansson.h>

/* llama.cpp's token types (gguf-py TokenType); SentencePiece uses the same numbers. */
enum {
    TS_TOK_NORMAL = 1,
    TS_TOK_UNKNOWN = 2,
    TS_TOK_CONTROL = 3,
    TS_TOK_USER_DEFINED = 4,
    TS_TOK_UNUSED = 5,
    TS_TOK_BYTE = 6,
};

/* Limits on untrusted input. Real vocabularies stay under 300k tokens. */
#define TS_TOK_MAX_TOKENS ((int64_t)1 << 24)
#define TS_TOK_MAX_TOKEN_BYTES (64u << 10)
#define TS_TOK_JSON_MAX_BYTES ((uint64_t)128 << 20)  /* tokenizer.json */
#define TS_TOK_SMALL_MAX_BYTES ((uint64_t)16 << 20)  /* config files, chat templates */
#define TS_TOK_MODEL_MAX_BYTES ((uint64_t)64 << 20)  /* tokenizer.model */

/* The JSON files of a model folder; NULL members are absent files. */
typedef struct {
    const char *dir;
    json_t *tokenizer;   /* tokenizer.json */
    json_t *tok_config;  /* tokenizer_config.json */
    json_t *special_map; /* special_tokens_map.json */
    json_t *config;      /* config.json */
    json_t *gen_config;  /* generation_config.json */
} ts_tok_files;

typedef struct {
    int64_t n;        /* tokens, after padding: the model's embedding rows */
    char **text;      /* heap strings; NULL = id not defined (becomes [PAD<i>]) */
    int32_t *type;    /* TS_TOK_* */
    float *score;     /* SentencePiece-style vocabularies only, else NULL */
    uint8_t *added;   /* 1 = came from an added-token list; wins a duplicate */
    char **merges;    /* byte-level BPE only: "left right" */
    int64_t n_merges;
    const char *model;    /* tokenizer.ggml.model: "llama" or "gpt2" */
    const char *pre;      /* tokenizer.ggml.pre (static string) */
    int add_space_prefix; /* -1 = do not write the key */
    int remove_extra_ws;  /* -1 = do not write the key */
    int64_t spm_ids[4];   /* unk, bos, eos, pad from tokenizer.model's trainer_spec; -1 = none */
} ts_tok_vocab;

/* ---- tokenizer_common.c ---- */
/* Size the vocabulary: own = the tokenizer's tokens (max id + 1), rows = the
 * model's embedding rows (0 = own). Errors when the model has fewer rows. */
ts_status ts_tok_vocab_init(ts_tok_vocab *v, int64_t own, int64_t rows, bool with_scores, const char *what,
                            ts_err *err);
void ts_tok_vocab_free(ts_tok_vocab *v);
/* Set token id to s[0..len) (replacing what was there). Refuses an id out of range,
 * an embedded NUL, invalid UTF-8 and over-long tokens; what names the file and field. */
ts_status ts_tok_vocab_set(ts_tok_vocab *v, int64_t id, const char *s, size_t len, int32_t type, float score,
                           bool added, const char *what, ts_err *err);
bool ts_tok_utf8_valid(const char *s, size_t len);
/* llama.cpp's converter treats these added tokens as CONTROL even when not marked special. */
bool ts_tok_looks_special(const char *s);
/* Heap copy of s with every U+2581 (SentencePiece's space) replaced by ' '. */
char *ts_tok_unescape_spaces(const char *s);
/* Parse JSON text. Integers are decoded as doubles because config files carry
 * integers beyond 64 bits (model_max_length 1e30), which jansson refuses. */
json_t *ts_tok_json_load(const char *buf, size_t len, json_error_t *jerr);
/* An integral number that fits in int64 (exactly representable), else false. */
bool ts_tok_json_int(const json_t *v, int64_t *out);
/* A string member of an object, or NULL. */
const char *ts_tok_json_str(const json_t *obj, const char *key);
/* Content of an added-token value: a plain string or an {"content": ...} object; NULL otherwise. */
const char *ts_tok_token_content(const json_t *v);

/* ---- tokenizer_map.c: string -> index over a caller-owned string array ---- */
typedef struct {
    int64_t *slot; /* -1 empty, else an index into keys */
    uint64_t mask;
    char *const *keys;
} ts_tok_map;

ts_status ts_tok_map_init(ts_tok_map *m, char *const *keys, int64_t capacity_hint, ts_err *err);
/* Insert keys[i] (not NULL); returns the index already holding an equal key, or -1. */
int64_t ts_tok_map_insert(ts_tok_map *m, int64_t i);
int64_t ts_tok_map_find(const ts_tok_map *m, const char *s, size_t len);
/* The slot holding index from (found by keys[from]) now holds to; keys[to] must equal keys[from]. */
void ts_tok_map_repoint(ts_tok_map *m, int64_t from, int64_t to);
void ts_tok_map_free(ts_tok_map *m);

/* ---- readers: each fills v (init + tokens + model/pre) ---- */
ts_status ts_tok_read_spm(const ts_tok_files *f, const char *model_path, int64_t rows, ts_tok_vocab *v,
                          ts_err *err);
ts_status ts_tok_read_bpe(const ts_tok_files *f, int64_t rows, ts_tok_vocab *v, ts_err *err);
ts_status ts_tok_read_bpe_spm(const ts_tok_files *f, int64_t rows, ts_tok_vocab *v, ts_err *err);
/* tokenizer_tiktoken.c: Kimi K2's tiktoken.model (no tokenizer.json). */
ts_status ts_tok_read_tiktoken(const ts_tok_files *f, const char *model_path, int64_t rows, ts_tok_vocab *v,
                               ts_err *err);
/* tokenizer_added.c: added tokens from added_tokens.json, tokenizer.json and
 * tokenizer_config.json (added_tokens_decoder) onto a SentencePiece-style vocabulary,
 * as llama.cpp's converter does; max_id sizes the vocabulary first (-1: none). */
ts_status ts_tok_spm_added_max_id(const ts_tok_files *f, int64_t *max_id, ts_err *err);
ts_status ts_tok_spm_added_tokens(const ts_tok_files *f, ts_tok_vocab *v, ts_err *err);

/* tokenizer_bpe.c helpers shared with the SentencePiece-style reader. */
/* model.vocab (text -> id) into an id-indexed array (NULL holes) pointing into the JSON tree. */
ts_status ts_tok_vocab_by_id(const ts_tok_files *f, const json_t *vocab, char ***out, int64_t *n_out, ts_err *err);
/* Validates added_tokens entries; *max_id = -1 when there are none. */
ts_status ts_tok_added_max_id(const ts_tok_files *f, const json_t *added, int64_t *max_id, ts_err *err);
/* The two parts of merge i, from either "a b" or ["a", "b"]. */
ts_status ts_tok_merge_parts(const ts_tok_files *f, const json_t *m, size_t i, const char **a, size_t *na,
                             const char **b, size_t *nb, ts_err *err);
/* Both parts and their concatenation must be in map (model.vocab); *result = the merged token's id. */
ts_status ts_tok_check_merge(const ts_tok_files *f, const ts_tok_map *map, size_t idx, const char *a, size_t na,
                             const char *b, size_t nb, int64_t *result, ts_err *err);

/* ---- tokenizer_pre.c ---- */
/* Name llama.cpp uses for the pre-tokenizer of tokenizer.json (its "pre_tokenizer"). */
ts_status ts_tok_detect_pre(const json_t *tokenizer, bool ignore_merges, const char **name, ts_err *err);
/* A model class's own vocabulary conventions (config.json architectures[0]),
 * as llama.cpp's converter hard-codes them for that class. */
typedef struct {
    const char *hf_arch;
    const char *from_pre[2]; /* detected names it replaces ... */
    const char *pre;         /* ... with this one */
    const char *special[4][2]; /* {type ("bos", "eot", ...), token text}: fills types still unset */
} ts_tok_family;
const ts_tok_family *ts_tok_family_of(const ts_tok_files *f); /* NULL: none */
/* detected, or the family's name for it. */
const char *ts_tok_family_pre(const ts_tok_files *f, const char *detected);

/* ---- tokenizer_special.c ---- */
/* Special token ids, add_*_token flags, chat template and normalizer flags (gguf-py SpecialVocab). */
ts_status ts_tok_write_special(const ts_tok_files *f, const ts_tok_vocab *v, const ts_tok_map *vocab_map,
                               ts_gguf_writer *w, ts_err *err);
/* tokenizer_chat.c: tokenizer.chat_template (and named templates). */
ts_status ts_tok_chat_templates(const ts_tok_files *f, ts_gguf_writer *w, ts_err *err);

#endif
