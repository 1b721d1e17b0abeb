// ts_llama: a small driver over llama.cpp's C API that interop tests use to
// ask llama.cpp itself what it makes of a GGUF we wrote (tokens, logits,
// metadata). It is compiled against the exact llama.h of the prebuilt
// libraries fetched by scripts/deps.sh, never against a guess of the ABI.
//
//   ts_llama tokenize MODEL.gguf TEXTFILE [--add-special 0|1] [--parse-special 0|1]
//   ts_llama logits   MODEL.gguf --ids 1,2,3 -o OUT.f32 [-t N]
//   ts_llama meta     MODEL.gguf
//   ts_llama quantize IN.gguf OUT.gguf FTYPE [--imatrix FILE] [-t N] [--pure] [--dry-run]
//                     [--tensor-type RE=T]... [--output-tensor-type T] [--token-embedding-type T]
//                     (prints "name type" for every tensor llama.cpp writes or would write)
//   ts_llama perplexity MODEL.gguf TEXTFILE [-c 512] [--chunks K] [-t N] [--json]
//   ts_llama rmse     REF.gguf QUANT.gguf [--json] [-v]   (ggml's to_float on both)
//   ts_llama imatrix  MODEL.gguf TEXTFILE -o OUT.gguf [-c 512] [-b 2048] [--chunks K] [-t N]
//                     [--process-output] [--kv-f32]   (llama-imatrix's collection, ts_llama_imatrix.c)
//
// Errors go to stderr with exit status 1. llama.cpp's own logging is
// silenced (errors excepted) unless TS_LLAMA_VERBOSE=1.
#define _GNU_SOURCE // dladdr
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ts_llama.h"

int g_verbose;

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("ts_llama: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void log_cb(enum ggml_log_level level, const char *text, void *user) {
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

struct llama_model *load_model(const char *file, enum load_what what) {
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

char *read_file(const char *file, size_t *len) {
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

// -- perplexity ---------------------------------------------------------------
// llama-perplexity's method (tools/perplexity/perplexity.cpp, perplexity()),
// so the numbers compare with its output and with published tables: the whole
// text is tokenized once (BOS added when the model adds one), cut into chunks
// of n_ctx tokens whose first token becomes BOS, each chunk is decoded in one
// batch from an empty cache, and only the second half of each chunk is scored.

llama_token *tokenize_all(const struct llama_vocab *vocab, const char *file, int32_t *n_out) {
    size_t len;
    char *text = read_file(file, &len);
    if (len > INT32_MAX)
        die("%s: too large to tokenize (%zu bytes)", file, len);
    // add_special as common_tokenize(ctx, text, true) does, special tokens
    // not parsed (llama-perplexity's default).
    int32_t cap = (int32_t)(len / 2 + 16);
    llama_token *ids = malloc(sizeof *ids * (size_t)cap);
    int32_t n = ids ? llama_tokenize(vocab, text, (int32_t)len, ids, cap, true, false) : 0;
    if (n < 0 && n != INT32_MIN) { // buffer too small: -n is the size needed
        cap = -n;
        free(ids);
        ids = malloc(sizeof *ids * (size_t)cap);
        n = ids ? llama_tokenize(vocab, text, (int32_t)len, ids, cap, true, false) : 0;
    }
    if (!ids)
        die("out of memory");
    if (n < 0)
        die("llama_tokenize failed on %s (returned %d)", file, n);
    free(text);
    *n_out = n;
    return ids;
}

// -log p(tok) as llama-perplexity's log_softmax computes it: float max,
// float exponentials summed in double.
static double token_nll(const float *logits, int32_t n_vocab, llama_token tok) {
    float max_logit = logits[0];
    for (int32_t i = 1; i < n_vocab; i++)
        if (logits[i] > max_logit)
            max_logit = logits[i];
    double sum_exp = 0.0;
    for (int32_t i = 0; i < n_vocab; i++)
        sum_exp += expf(logits[i] - max_logit);
    return -(logits[tok] - max_logit - log(sum_exp));
}

long parse_long(const char *opt, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || errno || x < lo || x > hi)
        die("%s expects an integer in [%ld, %ld]", opt, lo, hi);
    return x;
}

static int cmd_perplexity(int argc, char **argv) {
    if (argc < 4)
        die("usage: ts_llama perplexity MODEL.gguf TEXTFILE [-c 512] [--chunks K] [-t N] [--json]");
    long n_ctx = 512, max_chunks = -1, threads = sysconf(_SC_NPROCESSORS_ONLN);
    int json = 0;
    for (int i = 4; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "-c"))
            n_ctx = parse_long(argv[i], v, 4, 1 << 20), i++;
        else if (!strcmp(argv[i], "--chunks"))
            max_chunks = parse_long(argv[i], v, 1, INT32_MAX), i++;
        else if (!strcmp(argv[i], "-t"))
            threads = parse_long(argv[i], v, 1, 512), i++;
        else
            die("perplexity: unknown option %s", argv[i]);
    }
    if (threads < 1 || threads > 512)
        threads = 1;

    // llama-perplexity's model defaults (common_params): mmap, repacked CPU
    // weight layouts allowed; only the GPU is ruled out.
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[2], mp);
    if (!model)
        die("llama.cpp could not load %s (TS_LLAMA_VERBOSE=1 shows its full log)", argv[2]);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    const bool add_bos = llama_vocab_get_add_bos(vocab);
    if (llama_vocab_get_add_eos(vocab))
        die("%s: the model adds EOS to every text; llama-perplexity refuses such models too", argv[2]);

    int32_t n_tok;
    llama_token *tokens = tokenize_all(vocab, argv[3], &n_tok);
    if (n_tok < 2 * n_ctx)
        die("%s tokenizes to %d tokens; a context of %ld needs at least %ld", argv[3], n_tok, n_ctx,
            2 * n_ctx);
    long n_chunk = n_tok / n_ctx;
    if (max_chunks > 0 && max_chunks < n_chunk)
        n_chunk = max_chunks;

    // One sequence per context and batch = n_ctx: each chunk is one decode.
    // KV cache type and flash attention stay at llama.cpp's defaults (F16,
    // auto), which are llama-perplexity's.
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)n_ctx;
    cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = (int32_t)threads;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx)
        die("llama_init_from_model failed for %s (n_ctx %ld)", argv[2], n_ctx);

    const long first = n_ctx / 2;
    struct llama_batch batch = llama_batch_init((int32_t)n_ctx, 0, 1);
    double nll = 0.0, nll2 = 0.0;
    long count = 0;
    for (long c = 0; c < n_chunk; c++) {
        const llama_token *chunk = tokens + c * n_ctx;
        llama_memory_clear(llama_get_memory(ctx), true);
        for (long k = 0; k < n_ctx; k++) {
            batch.token[k] = k == 0 && add_bos ? llama_vocab_bos(vocab) : chunk[k];
            batch.pos[k] = (llama_pos)k;
            batch.n_seq_id[k] = 1;
            batch.seq_id[k][0] = 0;
            batch.logits[k] = k >= first;
        }
        batch.n_tokens = (int32_t)n_ctx;
        int32_t rc = llama_decode(ctx, batch);
        if (rc != 0)
            die("llama_decode failed (%d) on chunk %ld", rc, c + 1);
        // Logits at position k predict token k + 1: the last position of a
        // chunk predicts nothing inside it and is not scored.
        for (long k = first; k < n_ctx - 1; k++) {
            const float *row = llama_get_logits_ith(ctx, (int32_t)k);
            if (!row)
                die("no logits for position %ld of chunk %ld", k, c + 1);
            double v = token_nll(row, n_vocab, chunk[k + 1]);
            nll += v;
            nll2 += v * v;
        }
        count += n_ctx - first - 1;
        if (g_verbose)
            fprintf(stderr, "[%ld]%.4f,", c + 1, exp(nll / (double)count));
    }
    if (g_verbose)
        fputc('\n', stderr);

    // The +/- is llama-perplexity's: the standard error of the mean nll,
    // carried to the perplexity to first order.
    double mean = nll / (double)count;
    double var = nll2 / (double)count - mean * mean;
    double ppl = exp(mean);
    double ppl_err = var > 0 && count > 1 ? sqrt(var / (double)(count - 1)) * ppl : 0.0;
    if (json)
        printf("{\"ppl\": %.6f, \"ppl_err\": %.6f, \"chunks\": %ld, \"tokens_scored\": %ld, "
               "\"n_ctx\": %ld}\n",
               ppl, ppl_err, n_chunk, count, n_ctx);
    else
        printf("PPL = %.4f +/- %.5f\n", ppl, ppl_err);
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    free(tokens);
    return fflush(stdout) ? 1 : 0;
}

// -- rmse ---------------------------------------------------------------------
// How far a quantized GGUF is from its reference (the F16 file it was made
// from), with ggml's own to_float for both sides, so the number does not
// depend on our dequantizers. Only tensors whose type differs from the
// reference count: norms and other tensors copied as they were would add
// zeros and hide the error of the quantized ones. Besides the plain error,
// the error weighted by w^2 (ggml's default importance without an imatrix,
// which favours the large weights that matter most to perplexity).

struct gguf_file {
    const char *path;
    struct gguf_context *gguf;
    struct ggml_context *meta; // tensor shapes (no data)
    const uint8_t *data;       // the mapped file
    size_t size;
};

static void gguf_file_open(struct gguf_file *g, const char *path) {
    g->path = path;
    g->meta = NULL;
    struct gguf_init_params ip = {.no_alloc = true, .ctx = &g->meta};
    g->gguf = gguf_init_from_file(path, ip);
    if (!g->gguf)
        die("%s: not a GGUF file ggml can read", path);
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st))
        die("%s: %s", path, strerror(errno));
    g->size = (size_t)st.st_size;
    g->data = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (g->data == MAP_FAILED)
        die("%s: mmap: %s", path, strerror(errno));
    close(fd);
}

static void gguf_file_close(struct gguf_file *g) {
    munmap((void *)g->data, g->size);
    ggml_free(g->meta);
    gguf_free(g->gguf);
}

// The bytes of tensor t, checked to lie inside the file.
static const uint8_t *tensor_bytes(const struct gguf_file *g, const struct ggml_tensor *t) {
    int64_t id = gguf_find_tensor(g->gguf, t->name);
    if (id < 0)
        die("%s: tensor %s has no data entry", g->path, t->name);
    size_t off = gguf_get_data_offset(g->gguf) + gguf_get_tensor_offset(g->gguf, id);
    size_t n = ggml_nbytes(t);
    if (off > g->size || n > g->size - off)
        die("%s: tensor %s (%zu bytes at %zu) lies outside the file", g->path, t->name, n, off);
    return g->data + off;
}

static void dequant_row(const struct ggml_tensor *t, const uint8_t *bytes, int64_t row, float *out) {
    const struct ggml_type_traits *tr = ggml_get_type_traits(t->type);
    const int64_t n = t->ne[0];
    const uint8_t *src = bytes + (size_t)row * ggml_row_size(t->type, n);
    if (t->type == GGML_TYPE_F32)
        memcpy(out, src, sizeof *out * (size_t)n);
    else if (tr->to_float)
        tr->to_float(src, out, n);
    else
        die("tensor %s: ggml has no to_float for type %s", t->name, ggml_type_name(t->type));
}

static int cmd_rmse(int argc, char **argv) {
    if (argc < 4)
        die("usage: ts_llama rmse REF.gguf QUANT.gguf [--json] [-v]");
    int json = 0, verbose = 0;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "-v"))
            verbose = 1;
        else
            die("rmse: unknown option %s", argv[i]);
    }
    struct gguf_file ref, q;
    gguf_file_open(&ref, argv[2]);
    gguf_file_open(&q, argv[3]);
    double sse = 0, ssw = 0, sse_w2 = 0, ssw_w2 = 0, n_weights = 0;
    size_t n_bytes = 0;
    int n_tensors = 0;
    float *a = NULL, *b = NULL;
    for (struct ggml_tensor *tq = ggml_get_first_tensor(q.meta); tq; tq = ggml_get_next_tensor(q.meta, tq)) {
        struct ggml_tensor *tr = ggml_get_tensor(ref.meta, tq->name);
        if (!tr)
            die("%s: tensor %s is not in %s", q.path, tq->name, ref.path);
        if (!ggml_are_same_shape(tr, tq))
            die("tensor %s: shape differs between %s and %s", tq->name, ref.path, q.path);
        if (tr->type == tq->type)
            continue;
        const uint8_t *br = tensor_bytes(&ref, tr), *bq = tensor_bytes(&q, tq);
        a = realloc(a, sizeof *a * (size_t)tq->ne[0]);
        b = realloc(b, sizeof *b * (size_t)tq->ne[0]);
        if (!a || !b)
            die("out of memory");
        double t_sse = 0, t_ssw = 0, t_sse_w2 = 0, t_ssw_w2 = 0;
        const int64_t rows = ggml_nrows(tq);
        for (int64_t r = 0; r < rows; r++) {
            dequant_row(tr, br, r, a);
            dequant_row(tq, bq, r, b);
            for (int64_t k = 0; k < tq->ne[0]; k++) {
                double d = (double)b[k] - a[k];
                double w2 = (double)a[k] * a[k];
                t_sse += d * d;
                t_ssw += w2;
                t_sse_w2 += w2 * d * d;
                t_ssw_w2 += w2 * w2;
            }
        }
        if (verbose)
            fprintf(stderr, "%-40s %-8s rmse %.6g rel %.6g rel_w2 %.6g\n", tq->name, ggml_type_name(tq->type),
                    sqrt(t_sse / (double)ggml_nelements(tq)), t_ssw > 0 ? sqrt(t_sse / t_ssw) : 0.0,
                    t_ssw_w2 > 0 ? sqrt(t_sse_w2 / t_ssw_w2) : 0.0);
        sse += t_sse;
        ssw += t_ssw;
        sse_w2 += t_sse_w2;
        ssw_w2 += t_ssw_w2;
        n_weights += (double)ggml_nelements(tq);
        n_bytes += ggml_nbytes(tq);
        n_tensors++;
    }
    free(a);
    free(b);
    if (n_tensors == 0)
        die("%s: no tensor's type differs from %s; nothing was quantized", q.path, ref.path);
    double rmse = sqrt(sse / n_weights), rel = ssw > 0 ? sqrt(sse / ssw) : 0.0;
    double rel_w2 = ssw_w2 > 0 ? sqrt(sse_w2 / ssw_w2) : 0.0;
    double bpw = 8.0 * (double)n_bytes / n_weights;
    if (json)
        printf("{\"rmse\": %.9g, \"rel_rmse\": %.9g, \"rel_rmse_w2\": %.9g, \"tensors\": %d, "
               "\"weights\": %.0f, \"bpw\": %.4f}\n",
               rmse, rel, rel_w2, n_tensors, n_weights, bpw);
    else
        printf("RMSE = %.6g (relative %.6g, w^2-weighted %.6g) over %d tensors, %.0f weights, "
               "%.4f bits per weight\n",
               rmse, rel, rel_w2, n_tensors, n_weights, bpw);
    gguf_file_close(&q);
    gguf_file_close(&ref);
    return fflush(stdout) ? 1 : 0;
}

int main(int argc, char **argv) {
    const char *v = getenv("TS_LLAMA_VERBOSE");
    g_verbose = v && !strcmp(v, "1");
    llama_log_set(log_cb, NULL);
    if (argc < 2)
        die("usage: ts_llama tokenize|logits|meta|quantize|perplexity|rmse|imatrix ... (see the top of ts_llama.c)");
    load_backends();
    int rc;
    if (!strcmp(argv[1], "tokenize"))
        rc = cmd_tokenize(argc, argv);
    else if (!strcmp(argv[1], "logits"))
        rc = cmd_logits(argc, argv);
    else if (!strcmp(argv[1], "meta"))
        rc = cmd_meta(argc, argv);
    else if (!strcmp(argv[1], "quantize"))
        rc = cmd_quantize(argc, argv);
    else if (!strcmp(argv[1], "perplexity"))
        rc = cmd_perplexity(argc, argv);
    else if (!strcmp(argv[1], "rmse"))
        rc = cmd_rmse(argc, argv);
    else if (!strcmp(argv[1], "imatrix"))
        rc = cmd_imatrix(argc, argv);
    else
        die("unknown command %s (expected tokenize, logits, meta, quantize, perplexity, rmse or imatrix)", argv[1]);
    llama_backend_free();
    return rc;
}
