/* Text -> token ids with the vocabulary stored in a GGUF, giving llama.cpp's
 * ids exactly (its src/llama-vocab.cpp is the reference; the differences
 * that remain are listed in docs/tokenizers.md, "Encoding (verify/)").
 * A tokenizer is immutable once built: ts_tokenize may run on one tokenizer
 * from several threads at once. */
#ifndef TS_TOKENIZE_H
#define TS_TOKENIZE_H

#include "formats/gguf.h"

typedef struct ts_tokenizer ts_tokenizer;

/* Builds the tokenizer from the tokenizer.ggml.* keys of an open GGUF (model "llama" = SentencePiece
 * with byte fallback, "gpt2" = byte-level BPE with tokenizer.ggml.pre selecting the pre-tokenizer regexes).
 * The GGUF may be closed afterwards: everything needed is copied. */
ts_status ts_tokenizer_from_gguf(const ts_gguf *g, ts_tokenizer **out, ts_err *err);
void ts_tokenizer_free(ts_tokenizer *t);

/* Encodes len bytes of UTF-8 text. add_special: add BOS/EOS as the model's add_bos/add_eos keys say;
 * parse_special: recognize control/user-defined token texts in the input. Ids are malloc'ed.
 * Invalid UTF-8 is not an error: SentencePiece falls back to byte tokens, BPE encodes each bad
 * byte as U+FFFD, as llama.cpp does. */
ts_status ts_tokenize(const ts_tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                      int32_t **ids, size_t *n_ids, ts_err *err);

int32_t ts_tokenizer_n_vocab(const ts_tokenizer *t);
int32_t ts_tokenizer_bos(const ts_tokenizer *t); /* -1 if none */
int32_t ts_tokenizer_eos(const ts_tokenizer *t);
bool ts_tokenizer_adds_bos(const ts_tokenizer *t);
/* The text of a token (for --top output); NULL if out of range. */
const char *ts_tokenizer_token_text(const ts_tokenizer *t, int32_t id);

#endif
