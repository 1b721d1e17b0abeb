// ts_llama: a small driver over llama.cpp's C API that interop tests use to
// ask llama.cpp itself what it makes of a GGUF we wrote (tokens, logits,
// metadata). It is compiled against the exact llama.h of the prebuilt
// libraries fetched by scripts/deps.sh, never against a guess of the ABI.
//
//   ts_llama tokenize MODEL.gguf TEXTFILE [--add-special 0|1] [--parse-special 0|1]
//   ts_llama logits   MODEL.gguf --ids 1,2,3 -o OUT.f32 [-t N]
//   ts_llama meta     MODEL.gguf
//
// Errors go to stderr with exit status 1. llama.cpp's own logging is
// silenced (errors excepted) unless TS_LLAMA_VERBOSE=1.
#define _GNU_SOURCE // dladdr
#include <dlfcn.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llama.h"

static int g_verbose;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("ts_llama: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void log_cb(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    // GGML_LOG_LEVEL_CONT continues the previous line, whose level we do not
    // track; dropping continuations of error lines only loses their tails.
    if (g_verbose || level == GGML_LOG_LEVEL_ERROR)
        fputs(text, stderr);
}

// The CPU backend is built as one shared object per ISA level
// (libggml-cpu-haswell.so, ...-skylakex.so, ...) and is not linked in: it has
// to be loaded from the directory libllama lives in, which ggml scores and
// picks the best variant from.
static void load_backends(void) {
    Dl_info info;
    if (!dladdr((void *)&llama_backend_init, &info) || !info.dli_fname)
        die("cannot locate libllama (dladdr failed)");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", info.dli_fname);
    const char *dir = dirname(path);
    ggml_backend_load_all_from_path(dir);
    if (ggml_backend_dev_count() == 0)
        die("no ggml backend could be loaded from %s", dir);
    llama_backend_init();
}

enum load_what { LOAD_VOCAB, LOAD_HPARAMS, LOAD_WEIGHTS };

static struct llama_model *load_model(const char *file, enum load_what what) {
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    // vocab_only skips the hyperparameters too; no_alloc reads them (and
    // checks the tensor list) without reading any tensor data.
    mp.vocab_only = what == LOAD_VOCAB;
    mp.no_alloc = what == LOAD_HPARAMS;
    // Repacked CPU weight layouts change the order of accumulation; the
    // comparisons want the plain kernels for the stored types.
    mp.use_extra_bufts = false;
    mp.load_mode = LLAMA_LOAD_MODE_NONE;
    mp.lazy_mode = LLAMA_LAZY_MODE_OFF;
    struct llama_model *model = llama_model_load_from_file(file, mp);
    if (!model)
        die("llama.cpp could not load %s (TS_LLAMA_VERBOSE=1 shows its full log)", file);
    return model;
}

static char *read_file(const char *file, size_t *len) {
    FILE *f = fopen(file, "rb");
    if (!f)
        die("%s: %s", file, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf)
            die("out of memory reading %s", file);
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        buf = realloc(buf, cap + 1);
    }
    if (ferror(f))
        die("%s: read error", file);
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int parse_bool(const char *opt, const char *v) {
    if (!v || (strcmp(v, "0") && strcmp(v, "1")))
        die("%s expects 0 or 1", opt);
    return v[0] == '1';
}

static int cmd_tokenize(int argc, char **argv) {
    if (argc < 4)
        die("usage: ts_llama tokenize MODEL.gguf TEXTFILE [--add-special 0|1] [--parse-special 0|1]");
    int add_special = 0, parse_special = 0;
    for (int i = 4; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--add-special"))
            add_special = parse_bool(argv[i], v), i++;
        else if (!strcmp(argv[i], "--parse-special"))
            parse_special = parse_bool(argv[i], v), i++;
        else
            die("tokenize: unknown option %s", argv[i]);
    }
    size_t len;
    char *text = read_file(argv[3], &len);
    if (len > INT32_MAX)
        die("%s: too large to tokenize (%zu bytes)", argv[3], len);

    struct llama_model *model = load_model(argv[2], LOAD_VOCAB);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int32_t cap = (int32_t)(len / 2 + 16);
    llama_token *ids = malloc(sizeof *ids * (size_t)cap);
    int32_t n = ids ? llama_tokenize(vocab, text, (int32_t)len, ids, cap, add_special, parse_special) : 0;
    if (n < 0 && n != INT32_MIN) { // buffer too small: -n is the size needed
        cap = -n;
        free(ids);
        ids = malloc(sizeof *ids * (size_t)cap);
        n = ids ? llama_tokenize(vocab, text, (int32_t)len, ids, cap, add_special, parse_special) : 0;
    }
    if (!ids)
        die("out of memory");
    if (n < 0)
        die("llama_tokenize failed on %s (returned %d)", argv[3], n);
    for (int32_t i = 0; i < n; i++)
        printf("%d\n", ids[i]);
    free(ids);
    free(text);
    llama_model_free(model);
    return fflush(stdout) ? 1 : 0;
}

static llama_token *parse_ids(const char *s, int32_t *n_out) {
    size_t cap = 16, n = 0;
    llama_token *ids = malloc(sizeof *ids * cap);
    while (ids && *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX)
            die("--ids: bad token id at \"%s\"", s);
        if (n == cap)
            ids = realloc(ids, sizeof *ids * (cap *= 2));
        if (!ids)
            break;
        ids[n++] = (llama_token)v;
        s = end + strspn(end, ", \t\n");
    }
    if (!ids)
        die("out of memory");
    if (n == 0 || n > INT32_MAX / 2)
        die("--ids: expected a comma-separated list of token ids");
    *n_out = (int32_t)n;
    return ids;
}

static int cmd_logits(int argc, char **argv) {
    if (argc < 3)
        die("usage: ts_llama logits MODEL.gguf --ids 1,2,3 -o OUT.f32 [-t N]");
    const char *ids_arg = NULL, *out = NULL;
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 3; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            die("logits: %s needs a value", argv[i]);
        if (!strcmp(argv[i], "--ids"))
            ids_arg = v;
        else if (!strcmp(argv[i], "-o"))
            out = v;
        else if (!strcmp(argv[i], "-t"))
            threads = strtol(v, NULL, 10);
        else
            die("logits: unknown option %s", argv[i]);
        i++;
    }
    if (!ids_arg || !out)
        die("logits: --ids and -o are required");
    if (threads < 1 || threads > 512)
        threads = 1;
    int32_t n_ids;
    llama_token *ids = parse_ids(ids_arg, &n_ids);

    struct llama_model *model = load_model(argv[2], LOAD_WEIGHTS);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    for (int32_t i = 0; i < n_ids; i++)
        if (ids[i] >= n_vocab)
            die("token id %d at position %d is outside the vocabulary (%d tokens)", ids[i], i, n_vocab);

    // One batch holding every position, F32 KV cache and no flash attention:
    // the logits then differ from a float32 PyTorch forward only by rounding.
    uint32_t n_ctx = ((uint32_t)n_ids + 255) / 256 * 256;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_ctx;
    cp.n_ubatch = n_ctx;
    cp.n_seq_max = 1;
    cp.n_outputs_max = 0;
    cp.n_outputs_max_per_seq = 0;
    cp.n_threads = cp.n_threads_batch = (int32_t)threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    cp.offload_kqv = false;
    cp.op_offload = false;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx)
        die("llama_init_from_model failed for %s (n_ctx %u)", argv[2], n_ctx);

    struct llama_batch batch = llama_batch_init(n_ids, 0, 1);
    for (int32_t i = 0; i < n_ids; i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n_ids;
    int32_t rc = llama_decode(ctx, batch);
    if (rc != 0)
        die("llama_decode failed (%d) on %d tokens", rc, n_ids);

    FILE *f = fopen(out, "wb");
    if (!f)
        die("%s: %s", out, strerror(errno));
    for (int32_t i = 0; i < n_ids; i++) {
        const float *row = llama_get_logits_ith(ctx, i);
        if (!row)
            die("no logits for position %d", i);
        if (fwrite(row, sizeof *row, (size_t)n_vocab, f) != (size_t)n_vocab)
            die("%s: write failed", out);
    }
    if (fclose(f))
        die("%s: %s", out, strerror(errno));
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    free(ids);
    return 0;
}

// "meta.KEY=VALUE" on one line: newlines escaped, long values (arrays) cut.
static char *meta_line(const char *key, const char *v) {
    size_t cap = strlen(key) + 2 * 240 + 16, n;
    char *line = malloc(cap);
    if (!line)
        return NULL;
    n = (size_t)snprintf(line, cap, "meta.%s=", key);
    for (size_t i = 0; *v && i < 240; v++, i++) {
        if (*v == '\n')
            line[n++] = '\\', line[n++] = 'n';
        else
            line[n++] = *v;
    }
    if (*v)
        memcpy(line + n, "...", 3), n += 3;
    line[n] = '\0';
    return line;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_meta(int argc, char **argv) {
    if (argc != 3)
        die("usage: ts_llama meta MODEL.gguf");
    struct llama_model *model = load_model(argv[2], LOAD_HPARAMS);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    char buf[1024];
    if (llama_model_meta_val_str(model, "general.architecture", buf, sizeof buf) < 0)
        snprintf(buf, sizeof buf, "?");
    printf("arch=%s\n", buf);
    printf("n_vocab=%d\n", llama_vocab_n_tokens(vocab));
    printf("vocab_type=%d\n", (int)llama_vocab_type(vocab));
    printf("bos=%d\n", llama_vocab_bos(vocab));
    printf("eos=%d\n", llama_vocab_eos(vocab));
    printf("add_bos=%d\n", llama_vocab_get_add_bos(vocab));
    printf("add_eos=%d\n", llama_vocab_get_add_eos(vocab));
    printf("n_embd=%d\n", llama_model_n_embd(model));
    printf("n_layer=%d\n", llama_model_n_layer(model));
    printf("n_head=%d\n", llama_model_n_head(model));
    printf("n_head_kv=%d\n", llama_model_n_head_kv(model));
    printf("n_ctx_train=%d\n", llama_model_n_ctx_train(model));
    llama_model_desc(model, buf, sizeof buf);
    printf("desc=%s\n", buf);
    int32_t n_meta = llama_model_meta_count(model);
    printf("n_meta=%d\n", n_meta);
    // Sorted by key so two files' listings can be diffed; values longer than
    // val come back truncated, which is fine for display.
    char **lines = calloc((size_t)(n_meta > 0 ? n_meta : 1), sizeof *lines);
    static char val[1 << 14];
    int32_t n_lines = 0;
    for (int32_t i = 0; lines && i < n_meta; i++) {
        if (llama_model_meta_key_by_index(model, i, buf, sizeof buf) < 0)
            continue;
        if (llama_model_meta_val_str_by_index(model, i, val, sizeof val) < 0)
            val[0] = '\0';
        lines[n_lines] = meta_line(buf, val);
        if (!lines[n_lines++])
            die("out of memory");
    }
    if (!lines)
        die("out of memory");
    qsort(lines, (size_t)n_lines, sizeof *lines, cmp_str);
    for (int32_t i = 0; i < n_lines; i++) {
        puts(lines[i]);
        free(lines[i]);
    }
    free(lines);
    llama_model_free(model);
    return fflush(stdout) ? 1 : 0;
}

int main(int argc, char **argv) {
    const char *v = getenv("TS_LLAMA_VERBOSE");
    g_verbose = v && !strcmp(v, "1");
    llama_log_set(log_cb, NULL);
    if (argc < 2)
        die("usage: ts_llama tokenize|logits|meta MODEL.gguf ...");
    load_backends();
    int rc;
    if (!strcmp(argv[1], "tokenize"))
        rc = cmd_tokenize(argc, argv);
    else if (!strcmp(argv[1], "logits"))
        rc = cmd_logits(argc, argv);
    else if (!strcmp(argv[1], "meta"))
        rc = cmd_meta(argc, argv);
    else
        die("unknown command %s (expected tokenize, logits or meta)", argv[1]);
    llama_backend_free();
    return rc;
}
