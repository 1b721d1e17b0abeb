// Shared by the ts_llama sources (ts_llama.c: main, tokenize, logits, meta,
// perplexity, rmse; ts_llama_quant.c: quantize; ts_llama_imatrix.c: imatrix).
#ifndef TS_LLAMA_H
#define TS_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "llama.h"

extern int g_verbose; // TS_LLAMA_VERBOSE=1: llama.cpp's own log on stderr

// Prints "ts_llama: ..." and exits with status 1.
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);
// llama.cpp's log: errors only unless g_verbose.
void log_cb(enum ggml_log_level level, const char *text, void *user);

enum load_what { LOAD_VOCAB, LOAD_HPARAMS, LOAD_WEIGHTS };
// The plain CPU kernels, no repacked layouts; dies when llama.cpp refuses the file.
struct llama_model *load_model(const char *file, enum load_what what);
char *read_file(const char *file, size_t *len);
// The whole file's ids as common_tokenize(ctx, text, true) gives them.
llama_token *tokenize_all(const struct llama_vocab *vocab, const char *file, int32_t *n_out);
long parse_long(const char *opt, const char *v, long lo, long hi);

int cmd_quantize(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);

#endif
