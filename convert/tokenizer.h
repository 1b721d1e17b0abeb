/* Tokenizer conversion: Hugging Face tokenizer files -> tokenizer.ggml.* GGUF keys.
 * What is written, and how the pre-tokenizer name is chosen: docs/tokenizers.md. */
#ifndef TS_TOKENIZER_H
#define TS_TOKENIZER_H

#include "formats/gguf.h"

/* Reads the tokenizer files in dir (tokenizer.model | tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json, config.json and generation_config.json when present) and sets the
 * tokenizer.ggml.* keys on w. vocab_size: the model's embedding rows (config.json vocab_size);
 * 0 = the tokenizer's own size. When the model has more rows than the tokenizer has tokens,
 * pad as llama.cpp's converter does ([PAD<i>] tokens of the right type); when fewer, error. */
ts_status ts_tokenizer_convert(const char *dir, int64_t vocab_size, ts_gguf_writer *w, ts_err *err);

#endif
