/* tessera verify's checks in order: the file parses, its tensors (types,
 * block data, checksums: verify_tensors.c), the model loads (every tensor
 * the architecture needs, with its shape), then the accuracy gates, which
 * run `tessera perplexity --kld-save` on the base and `--kld` on the model
 * (verify/perplexity.c) and compare mean KLD, PPL ratio and same-top
 * agreement with the limits. docs/verify.md describes every check. */
#include "verify/verify.h"
#include "verify/verify_internal.h"

#include "core/mapped_file.h"
#include "verify/model.h"
#include "verify/tokenize.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- report building ---- */

const char *ts_check_status_name(ts_check_status s)
{
    static const char *const names[] = {"pass", "fail", "skip", "info"};
    return (unsigned)s < 4 ? names[s] : "?";
}

ts_check *ts_verify_add(ts_verify_report *r, const char *name)
{
    static _Thread_local ts_check scratch;
    ts_check *c = r->n_checks < TS_VERIFY_MAX_CHECKS ? &r->checks[r->n_checks++] : &scratch;
    memset(c, 0, sizeof *c);
    c->name = name;
    c->status = TS_CHECK_PASS;
    c->value = NAN;
    c->limit = NAN;
    return c;
}

void ts_verify_set(ts_check *c, ts_check_status st, const char *fmt, ...)
{
    c->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof c->detail, fmt, ap);
    va_end(ap);
}

void ts_verify_failure(ts_check *c, const char *fmt, ...)
{
    if (c->n_failures < TS_CHECK_MAX_FAILURES) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->failures[c->n_failures], sizeof c->failures[0], fmt, ap);
        va_end(ap);
    }
    c->n_failures++;
    c->status = TS_CHECK_FAIL;
}

void ts_verify_count_gate(ts_check *c, const char *what)
{
    c->value = (double)c->n_failures;
    c->limit = 0.0;
    c->compare = "<=";
    if (c->n_failures) {
        c->status = TS_CHECK_FAIL;
        snprintf(c->detail, sizeof c->detail, "%llu %s, first: %s", (unsigned long long)c->n_failures, what,
                 c->failures[0]);
    }
}

bool ts_verify_passed(const ts_verify_report *r)
{
    for (size_t i = 0; i < r->n_checks; i++)
        if (r->checks[i].status == TS_CHECK_FAIL)
            return false;
    return true;
}

const ts_check *ts_verify_find(const ts_verify_report *r, const char *name)
{
    for (size_t i = 0; i < r->n_checks; i++)
        if (!strcmp(r->checks[i].name, name))
            return &r->checks[i];
    return NULL;
}

void ts_verify_opts_init(ts_verify_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_ctx = 512;
    o->max_kld = NAN;
    o->max_ppl_ratio = NAN;
    o->min_same_top = NAN;
}

/* ---- accuracy ---- */

typedef struct {
    const ts_verify_opts *o;
    const char *phase;
} progress_ctx;

static void on_progress(void *ctx, const ts_ppl_progress *p)
{
    const progress_ctx *pc = ctx;
    pc->o->progress(pc->o->progress_ctx, pc->phase, p);
}

/* llama-perplexity's batching (n_batch 2048 / n_ctx sequences at once). */
static int64_t seqs_per_batch(int64_t n_ctx) { return n_ctx >= 2048 ? 1 : 2048 / n_ctx; }

/* What the file at path starts with: 'g' GGUF, 'k' a .kld file, 0 other. */
static ts_status sniff(const char *path, char *kind, ts_err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return ts_fail(err, TS_ERR_IO, "%s: cannot open the base: %s", path, strerror(errno));
    char magic[8] = {0};
    size_t n = fread(magic, 1, sizeof magic, fp);
    fclose(fp);
    *kind = n >= 4 && !memcmp(magic, "GGUF", 4) ? 'g' : n == 8 && !memcmp(magic, "_logits_", 8) ? 'k' : 0;
    if (!*kind)
        return ts_fail(err, TS_ERR_ARG, "%s: the base is neither a GGUF nor a .kld file (tessera perplexity --kld-save)",
                       path);
    return TS_OK;
}

/* Runs the base GGUF over the text and saves its log-probabilities in a
 * temporary .kld file (*kld_path, to be removed by the caller). */
static ts_status save_base(const ts_verify_opts *o, char *tmp_dir, char **kld_path, ts_err *err)
{
    if (!o->text)
        return ts_fail(err, TS_ERR_ARG, "a GGUF base needs a text to score (-f TEXT)");
    char *text = NULL;
    size_t text_len = 0, n_tokens = 0;
    int32_t *tokens = NULL;
    ts_model *base = NULL;
    ts_tokenizer *tok = NULL;
    ts_status st = ts_read_small_file(o->text, (uint64_t)1 << 31, &text, &text_len, err);
    if (!st && (st = ts_model_load(o->base, o->n_threads, &base, err)))
        ts_err_prefix(err, "base");
    if (!st)
        st = ts_tokenizer_from_gguf(ts_model_gguf(base), &tok, err);
    if (!st)
        st = ts_tokenize(tok, text, text_len, true, false, &tokens, &n_tokens, err);
    if (!st && !mkdtemp(tmp_dir))
        st = ts_fail(err, TS_ERR_IO, "%s: cannot create a temporary directory: %s", tmp_dir, strerror(errno));
    if (!st && !(*kld_path = ts_path_join(tmp_dir, "base.kld")))
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (!st) {
        const int64_t n_ctx = o->n_ctx >= 4 ? o->n_ctx : 512;
        const char *keep[] = {o->base, o->text, NULL};
        ts_ppl_params p = {.n_ctx = n_ctx, .max_chunks = o->max_chunks, .n_seq = seqs_per_batch(n_ctx),
                           .add_bos = ts_tokenizer_adds_bos(tok), .bos = ts_tokenizer_bos(tok),
                           .kld_save = *kld_path, .kld_save_keep = keep};
        ts_model_set_kv_f16(base, true);
        progress_ctx pc = {o, "base"};
        ts_ppl_result r;
        st = ts_perplexity(base, tokens, (int64_t)n_tokens, &p, o->progress ? on_progress : NULL, &pc, &r, err);
        if (st)
            ts_err_prefix(err, "base %s", o->base);
    }
    free(tokens);
    free(text);
    ts_tokenizer_free(tok);
    ts_model_free(base);
    return st;
}

/* The model against the base's saved log-probabilities. */
static ts_status measure(ts_model *m, const ts_verify_opts *o, const char *kld_path, ts_verify_report *r, ts_err *err)
{
    ts_kld_file base;
    ts_tokenizer *tok = NULL;
    ts_status st = ts_kld_open(kld_path, &base, err);
    if (st)
        return st;
    if (!(st = ts_tokenizer_from_gguf(ts_model_gguf(m), &tok, err))) {
        ts_ppl_params p = {.n_ctx = base.n_ctx, .max_chunks = o->max_chunks, .n_seq = seqs_per_batch(base.n_ctx),
                           .add_bos = ts_tokenizer_adds_bos(tok), .bos = ts_tokenizer_bos(tok), .kld_base = &base};
        ts_model_set_kv_f16(m, true);
        progress_ctx pc = {o, "model"};
        st = ts_perplexity(m, NULL, 0, &p, o->progress ? on_progress : NULL, &pc, &r->accuracy, err);
        r->has_accuracy = st == TS_OK && r->accuracy.has_kld;
    }
    ts_tokenizer_free(tok);
    ts_kld_close(&base);
    return st;
}

static void gate(ts_check *c, double value, double limit, const char *compare, const char *what)
{
    c->value = value;
    if (isnan(limit)) {
        ts_verify_set(c, TS_CHECK_INFO, "%s %.6g (no limit given)", what, value);
        return;
    }
    c->limit = limit;
    c->compare = compare;
    const bool ok = compare[0] == '<' ? value <= limit : value >= limit;
    ts_verify_set(c, ok ? TS_CHECK_PASS : TS_CHECK_FAIL, "%s %.6g, limit %s %.6g", what, value, compare, limit);
}

static void set_gates(ts_verify_report *r, ts_check *kld, ts_check *ratio, ts_check *top, const ts_verify_opts *o)
{
    const ts_kld_stats *s = &r->accuracy.kld;
    gate(kld, s->kld.value, o->max_kld, "<=", "mean KLD");
    gate(ratio, s->ppl_ratio.value, o->max_ppl_ratio, "<=", "PPL(model)/PPL(base)");
    gate(top, 100.0 * s->same_top.value, o->min_same_top, ">=", "same top token (%)");
    size_t len = strlen(kld->detail);
    snprintf(kld->detail + len, sizeof kld->detail - len, " (+/- %.2g, 99th percentile %.4g, %lld tokens)",
             s->kld.err, s->kld_p99, (long long)s->count);
    len = strlen(ratio->detail);
    snprintf(ratio->detail + len, sizeof ratio->detail - len, " (PPL %.4f vs base %.4f)", s->ppl.value,
             s->ppl_base.value);
}

static void set_all(ts_check *const *cs, ts_check_status st, const char *msg)
{
    for (int i = 0; i < 3; i++)
        ts_verify_set(cs[i], st, "%s", msg);
}

static ts_status accuracy(ts_model *m, const char *model_err, const ts_verify_opts *o, ts_verify_report *r,
                          ts_err *err)
{
    ts_check *kld = ts_verify_add(r, "kld"), *ratio = ts_verify_add(r, "ppl_ratio"), *top = ts_verify_add(r, "same_top");
    ts_check *const cs[] = {kld, ratio, top};
    if (!o->base) {
        set_all(cs, TS_CHECK_SKIP, "no base given (--base)");
        return TS_OK;
    }
    if (!m) {
        char msg[1100];
        snprintf(msg, sizeof msg, "cannot be measured: %s", model_err);
        set_all(cs, TS_CHECK_FAIL, msg);
        return TS_OK;
    }
    char kind;
    ts_status st = sniff(o->base, &kind, err);
    char tmp_dir[4096];
    char *kld_path = NULL;
    const char *tmp = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/tessera-verify.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    bool made_dir = false;
    if (!st && kind == 'g') {
        st = save_base(o, tmp_dir, &kld_path, err);
        made_dir = strstr(tmp_dir, "XXXXXX") == NULL;
    }
    if (!st)
        st = measure(m, o, kind == 'g' ? kld_path : o->base, r, err);
    if (kld_path)
        unlink(kld_path);
    if (made_dir)
        rmdir(tmp_dir);
    free(kld_path);
    if (st) {
        char msg[1100];
        snprintf(msg, sizeof msg, "cannot be measured: %s", err->msg);
        set_all(cs, TS_CHECK_FAIL, msg);
        return st;
    }
    set_gates(r, kld, ratio, top, o);
    return TS_OK;
}

/* ---- the whole run ---- */

ts_status ts_verify(const char *path, const ts_verify_opts *o, ts_verify_report *r, ts_err *err)
{
    ts_check *parse = ts_verify_add(r, "gguf");
    ts_gguf *g = NULL;
    ts_status st = ts_gguf_open(path, &g, err);
    if (st) {
        ts_verify_set(parse, TS_CHECK_FAIL, "%s", err->msg);
        return st;
    }
    ts_verify_set(parse, TS_CHECK_PASS, "GGUF v%u, %llu tensors, %llu keys", g->version,
                  (unsigned long long)g->n_tensors, (unsigned long long)g->n_kv);
    ts_verify_tensors(g, o, r);
    ts_gguf_close(g);

    ts_check *mc = ts_verify_add(r, "model");
    ts_model *m = NULL;
    ts_err merr = {0};
    ts_status mst = ts_model_load(path, o->n_threads, &m, &merr);
    if (mst == TS_OK)
        ts_verify_set(mc, TS_CHECK_PASS, "%s: every tensor the architecture needs is present with its shape and a "
                      "readable type", ts_model_arch(m));
    else if (mst == TS_ERR_UNSUPPORTED) /* not known to be broken: Tessera cannot say */
        ts_verify_set(mc, TS_CHECK_SKIP, "not checked: %s", merr.msg);
    else
        ts_verify_set(mc, TS_CHECK_FAIL, "%s", merr.msg);
    st = accuracy(m, merr.msg, o, r, err);
    ts_model_free(m);
    return st;
}

/* ---- JSON ---- */

static json_t *num_or_null(double v) { return isnan(v) || isinf(v) ? json_null() : json_real(v); }
static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *check_json(const ts_check *c)
{
    json_t *fails = json_array();
    for (uint64_t i = 0; i < c->n_failures && i < TS_CHECK_MAX_FAILURES; i++)
        json_array_append_new(fails, json_string(c->failures[i]));
    return json_pack("{s:s, s:s, s:o, s:o, s:o, s:s, s:I, s:o}", "name", c->name, "status",
                     ts_check_status_name(c->status), "value", num_or_null(c->value), "limit", num_or_null(c->limit),
                     "compare", str_or_null(c->compare), "detail", c->detail, "failure_count",
                     (json_int_t)c->n_failures, "failures", fails);
}

static json_t *accuracy_json(const ts_verify_report *r)
{
    if (!r->has_accuracy)
        return json_null();
    const ts_ppl_result *a = &r->accuracy;
    const ts_kld_stats *s = &a->kld;
    return json_pack("{s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "n_ctx",
                     (json_int_t)a->n_ctx, "chunks", (json_int_t)a->n_chunks, "tokens_scored", (json_int_t)a->count,
                     "ppl", num_or_null(s->ppl.value), "ppl_err", num_or_null(s->ppl.err), "ppl_base",
                     num_or_null(s->ppl_base.value), "ppl_ratio", num_or_null(s->ppl_ratio.value), "ppl_ratio_err",
                     num_or_null(s->ppl_ratio.err), "kld", num_or_null(s->kld.value), "kld_err",
                     num_or_null(s->kld.err), "kld_p99", num_or_null(s->kld_p99), "kld_max", num_or_null(s->kld_max),
                     "same_top_percent", num_or_null(100.0 * s->same_top.value), "same_top_err_percent",
                     num_or_null(100.0 * s->same_top.err), "p_diff_rms_percent",
                     num_or_null(100.0 * s->p_diff_rms.value), "seconds", num_or_null(a->seconds));
}

json_t *ts_verify_report_json(const ts_verify_report *r, const char *model, const ts_verify_opts *o, int exit_code,
                              const char *error)
{
    json_t *checks = json_array();
    for (size_t i = 0; i < r->n_checks; i++)
        json_array_append_new(checks, check_json(&r->checks[i]));
    const char *result = exit_code == 0 ? "pass" : exit_code == 1 ? "fail" : "error";
    return json_pack("{s:s, s:i, s:s, s:o, s:o, s:s, s:i, s:o, s:I, s:I, s:o, s:o}", "tool", "tessera verify",
                     "schema_version", 1, "model", model, "base", str_or_null(o->base), "text",
                     str_or_null(o->base ? o->text : NULL), "result", result, "exit_code", exit_code, "error",
                     str_or_null(error), "tensors", (json_int_t)r->n_tensors, "tensor_bytes",
                     (json_int_t)r->tensor_bytes, "checks", checks, "accuracy", accuracy_json(r));
}
