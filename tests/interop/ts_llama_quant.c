// ts_llama quantize: llama.cpp's own quantizer (see the top of ts_llama.c).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ts_llama.h"

// -- quantize -----------------------------------------------------------------
// llama.cpp's own llama_model_quantize on IN.gguf, then the type of every
// tensor of OUT.gguf as "name type" lines (what test_quant_mixes.sh compares
// with tessera quantize --dry-run). An imatrix (llama-imatrix's GGUF format)
// becomes per-column weights the way llama-quantize makes them: sums / count
// per expert, 1 where an expert's count is 0.

static const struct { const char *name; enum llama_ftype ftype; } quant_ftypes[] = {
    {"F32", LLAMA_FTYPE_ALL_F32}, {"F16", LLAMA_FTYPE_MOSTLY_F16}, {"BF16", LLAMA_FTYPE_MOSTLY_BF16},
    {"Q4_0", LLAMA_FTYPE_MOSTLY_Q4_0}, {"Q4_1", LLAMA_FTYPE_MOSTLY_Q4_1}, {"Q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},
    {"Q5_1", LLAMA_FTYPE_MOSTLY_Q5_1}, {"Q8_0", LLAMA_FTYPE_MOSTLY_Q8_0}, {"Q2_K", LLAMA_FTYPE_MOSTLY_Q2_K},
    {"Q2_K_S", LLAMA_FTYPE_MOSTLY_Q2_K_S}, {"Q3_K_S", LLAMA_FTYPE_MOSTLY_Q3_K_S},
    {"Q3_K_M", LLAMA_FTYPE_MOSTLY_Q3_K_M}, {"Q3_K_L", LLAMA_FTYPE_MOSTLY_Q3_K_L},
    {"Q4_K_S", LLAMA_FTYPE_MOSTLY_Q4_K_S}, {"Q4_K_M", LLAMA_FTYPE_MOSTLY_Q4_K_M},
    {"Q5_K_S", LLAMA_FTYPE_MOSTLY_Q5_K_S}, {"Q5_K_M", LLAMA_FTYPE_MOSTLY_Q5_K_M},
    {"Q6_K", LLAMA_FTYPE_MOSTLY_Q6_K}, {"IQ4_NL", LLAMA_FTYPE_MOSTLY_IQ4_NL}, {"IQ4_XS", LLAMA_FTYPE_MOSTLY_IQ4_XS},
};

static size_t load_imatrix_gguf(const char *file, struct llama_model_imatrix_data **out, struct ggml_context **ctx_out) {
    struct ggml_context *ctx = NULL;
    struct gguf_init_params gp = {.no_alloc = false, .ctx = &ctx};
    struct gguf_context *g = gguf_init_from_file(file, gp);
    if (!g)
        die("%s: not a GGUF imatrix", file);
    size_t n = 0, cap = 16;
    struct llama_model_imatrix_data *d = malloc(sizeof *d * (cap + 1));
    for (struct ggml_tensor *t = ggml_get_first_tensor(ctx); t && d; t = ggml_get_next_tensor(ctx, t)) {
        const char *name = ggml_get_name(t);
        size_t len = strlen(name);
        if (len <= 8 || strcmp(name + len - 8, ".in_sum2"))
            continue;
        char base[GGML_MAX_NAME], counts_name[GGML_MAX_NAME + 8];
        snprintf(base, sizeof base, "%.*s", (int)(len - 8), name);
        snprintf(counts_name, sizeof counts_name, "%s.counts", base);
        struct ggml_tensor *c = ggml_get_tensor(ctx, counts_name);
        if (!c || t->type != GGML_TYPE_F32 || c->type != GGML_TYPE_F32)
            die("%s: %s needs F32 sums and counts", file, base);
        int64_t nval = ggml_nelements(t), nmat = ggml_nelements(c), per = nval / nmat;
        float *w = malloc(sizeof *w * (size_t)nval);
        if (!w)
            die("out of memory");
        for (int64_t m = 0; m < nmat; m++) {
            float count = (float)lroundf(((const float *)c->data)[m]);
            for (int64_t i = 0; i < per; i++)
                w[m * per + i] = count > 0 ? ((const float *)t->data)[m * per + i] / count : 1.0f;
        }
        if (n == cap)
            d = realloc(d, sizeof *d * ((cap *= 2) + 1));
        if (!d)
            break;
        d[n++] = (struct llama_model_imatrix_data){strdup(base), w, (size_t)nval};
    }
    if (!d)
        die("out of memory");
    d[n] = (struct llama_model_imatrix_data){NULL, NULL, 0};
    gguf_free(g);
    *out = d;
    *ctx_out = ctx;
    return n;
}

// llama.cpp's --dry-run writes nothing; its log says each tensor's type:
// "[  3/ 291] NAME - [SHAPE], type = CUR, " then "size = A MiB -> B MiB (NEW)\n"
// for a tensor it would convert, or "size = A MiB\n" for one it keeps.
typedef struct {
    char name[GGML_MAX_NAME + 64];
    char cur[32];
    int n;
} dry_log;

static void dry_log_cb(enum ggml_log_level level, const char *text, void *user) {
    dry_log *d = user;
    const char *p;
    if (level == GGML_LOG_LEVEL_ERROR)
        fputs(text, stderr);
    if (text[0] == '[' && (p = strstr(text, "] ")) && strstr(text, "type = ")) {
        if (sscanf(p + 2, "%127s", d->name) != 1)
            d->name[0] = 0;
        const char *t = strstr(text, "type = ") + 7;
        t += strspn(t, " ");
        size_t n = strcspn(t, ",");
        snprintf(d->cur, sizeof d->cur, "%.*s", (int)n, t);
    } else if (d->name[0] && !strncmp(text, "size = ", 7)) {
        const char *open = strstr(text, "-> ") ? strrchr(text, '(') : NULL;
        if (open)
            printf("%s %.*s\n", d->name, (int)strcspn(open + 1, ")"), open + 1);
        else
            printf("%s %s\n", d->name, d->cur);
        d->name[0] = 0;
        d->n++;
    }
}

static enum ggml_type parse_ggml_type(const char *s) {
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char *name = ggml_type_name((enum ggml_type)t);
        if (name && !strcasecmp(name, s))
            return (enum ggml_type)t;
    }
    die("quantize: unknown ggml type %s", s);
    return GGML_TYPE_COUNT;
}

int cmd_quantize(int argc, char **argv) {
    if (argc < 5)
        die("usage: ts_llama quantize IN.gguf OUT.gguf FTYPE [--imatrix FILE] [-t N] [--pure] [--dry-run]\n"
            "       [--tensor-type REGEX=TYPE]... [--output-tensor-type T] [--token-embedding-type T]");
    struct llama_model_quantize_params qp = llama_model_quantize_default_params();
    int found = 0;
    for (size_t i = 0; i < sizeof quant_ftypes / sizeof quant_ftypes[0]; i++)
        if (!strcasecmp(argv[4], quant_ftypes[i].name))
            qp.ftype = quant_ftypes[i].ftype, found = 1;
    if (!found)
        die("quantize: unknown ftype %s", argv[4]);
    const char *imatrix = NULL;
    qp.nthread = 1;
    struct llama_model_tensor_override *tt = calloc((size_t)argc, sizeof *tt);
    size_t n_tt = 0;
    for (int i = 5; tt && i < argc; i++) {
        if (!strcmp(argv[i], "--pure")) {
            qp.pure = true;
            continue;
        }
        if (!strcmp(argv[i], "--dry-run")) {
            qp.dry_run = true;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            die("quantize: %s needs a value", argv[i]);
        if (!strcmp(argv[i], "--imatrix"))
            imatrix = v;
        else if (!strcmp(argv[i], "-t"))
            qp.nthread = (int32_t)strtol(v, NULL, 10);
        else if (!strcmp(argv[i], "--output-tensor-type"))
            qp.output_tensor_type = parse_ggml_type(v);
        else if (!strcmp(argv[i], "--token-embedding-type"))
            qp.token_embedding_type = parse_ggml_type(v);
        else if (!strcmp(argv[i], "--tensor-type")) {
            const char *eq = strrchr(v, '=');
            if (!eq)
                die("quantize: --tensor-type %s: expected REGEX=TYPE", v);
            tt[n_tt++] = (struct llama_model_tensor_override){strndup(v, (size_t)(eq - v)), parse_ggml_type(eq + 1)};
        } else
            die("quantize: unknown option %s", argv[i]);
        i++;
    }
    if (!tt)
        die("out of memory");
    tt[n_tt] = (struct llama_model_tensor_override){NULL, GGML_TYPE_COUNT};
    if (n_tt)
        qp.tt_overrides = tt;
    struct llama_model_imatrix_data *im = NULL;
    struct ggml_context *im_ctx = NULL;
    size_t n_im = imatrix ? load_imatrix_gguf(imatrix, &im, &im_ctx) : 0;
    if (n_im)
        qp.imatrix = im;
    dry_log dl = {0};
    if (qp.dry_run)
        llama_log_set(dry_log_cb, &dl);
    uint32_t qrc = llama_model_quantize(argv[2], argv[3], &qp);
    llama_log_set(log_cb, NULL);
    if (qrc != 0)
        die("llama_model_quantize failed on %s (TS_LLAMA_VERBOSE=1 shows its log)", argv[2]);
    if (qp.dry_run && dl.n == 0)
        die("llama.cpp's dry-run log named no tensor (has its format changed?)");
    if (!qp.dry_run) {
        struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
        struct gguf_context *g = gguf_init_from_file(argv[3], gp);
        if (!g)
            die("%s: cannot read the quantized file back", argv[3]);
        for (int64_t i = 0; i < gguf_get_n_tensors(g); i++)
            printf("%s %s\n", gguf_get_tensor_name(g, i), ggml_type_name(gguf_get_tensor_type(g, i)));
        gguf_free(g);
    }
    for (size_t i = 0; i < n_im; i++) {
        free((void *)im[i].name);
        free((void *)im[i].data);
    }
    free(im);
    for (size_t i = 0; i < n_tt; i++)
        free((void *)tt[i].pattern);
    free(tt);
    if (im_ctx)
        ggml_free(im_ctx);
    return fflush(stdout) ? 1 : 0;
}
