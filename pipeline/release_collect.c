/* tessera release's collect step: every variant's files are found, their
 * structure and tensor checksums checked, their sizes and SHA-256 taken,
 * and (with an eval text) their perplexity, KLD and same-top agreement
 * measured by tessera verify's code against the unquantized model's
 * log-probabilities, saved once in .work/base.kld. A split variant is
 * measured on its parts merged into a temporary file in .work (the bytes of
 * the parts, reassembled as gguf-split --merge would).
 *
 * Measurements and hashes are cached in .work, keyed by what they depend
 * on (the files' stored tensor checksums, which the check above has just
 * verified against the data; the eval text, context and chunks), so an
 * interrupted collect does not measure again what it already measured. */
#include "release_internal.h"

#include "core/mapped_file.h"
#include "core/progress.h"
#include "formats/gguf_split.h"
#include "verify/kld.h"
#include "verify/perplexity.h"
#include "verify/tokenize.h"
#include "verify/verify.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- cache files (small JSON objects in .work) ---- */

static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *j = ts_file_exists(path) ? json_load_file(path, 0, &je) : NULL;
    return json_is_object(j) ? j : (json_decref(j), json_object());
}

/* Atomic, like every file Tessera writes: a killed run leaves the old one. */
static ts_status save_json(const char *path, json_t *j, ts_err *err)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_atomic_file f;
    ts_status st = ts_atomic_open(path, NULL, &f, err);
    if (st == TS_OK && (st = ts_atomic_write(&f, text, strlen(text), err)) == TS_OK)
        st = ts_atomic_commit(&f, err);
    else if (st == TS_OK)
        ts_atomic_abort(&f);
    free(text);
    return st;
}

/* What a file's content is known by: the digest of its stored tensor
 * checksums (verified against the data by ts_rel_check_file), or its size
 * and modification time when it has none. */
static void file_identity(const char *path, char *out, size_t n)
{
    ts_gguf *g;
    ts_err ignored = {0};
    const char *why = NULL;
    bool stale = false;
    if (ts_gguf_open(path, &g, &ignored) == TS_OK) {
        const uint64_t *sums = ts_verify_stored_checksums(g, &why, &stale);
        if (sums) {
            snprintf(out, n, "xxh3:%016llx:%llu", (unsigned long long)XXH3_64bits(sums, (size_t)g->n_tensors * 8),
                     (unsigned long long)g->n_tensors);
            ts_gguf_close(g);
            return;
        }
        ts_gguf_close(g);
    }
    struct stat sb;
    if (stat(path, &sb) == 0)
        snprintf(out, n, "stat:%lld:%lld.%09ld", (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
                 (long)sb.st_mtim.tv_nsec);
    else
        snprintf(out, n, "missing");
}

/* SHA-256 of path, from the cache when its size and mtime are unchanged. */
static ts_status sha256_cached(json_t *cache, const char *path, char hex[65], ts_err *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ts_fail(err, TS_ERR_IO, "%s: cannot stat", path);
    char stamp[96];
    snprintf(stamp, sizeof stamp, "%lld:%lld.%09ld", (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
             (long)sb.st_mtim.tv_nsec);
    json_t *e = json_object_get(cache, path);
    const char *s = json_string_value(json_object_get(e, "stamp")), *h = json_string_value(json_object_get(e, "sha256"));
    if (s && h && !strcmp(s, stamp) && strlen(h) == 64) {
        memcpy(hex, h, 65);
        return TS_OK;
    }
    ts_status st = ts_rel_sha256_file(path, hex, err);
    if (st == TS_OK)
        json_object_set_new(cache, path, json_pack("{s:s, s:s}", "stamp", stamp, "sha256", hex));
    return st;
}

/* ---- the base model's log-probabilities ---- */

static ts_status save_base_kld(const ts_release_opts *o, ts_release_result *r, const char *kld, ts_err *err)
{
    char *text = NULL;
    size_t text_len = 0, n_tokens = 0;
    int32_t *tokens = NULL;
    ts_model *m = NULL;
    ts_tokenizer *tok = NULL;
    ts_status st = ts_read_small_file(o->eval, (uint64_t)1 << 31, &text, &text_len, err);
    if (st == TS_OK)
        st = ts_model_load(r->base_path, o->n_threads, &m, err);
    if (st == TS_OK)
        st = ts_tokenizer_from_gguf(ts_model_gguf(m), &tok, err);
    if (st == TS_OK)
        st = ts_tokenize(tok, text, text_len, true, false, &tokens, &n_tokens, err);
    if (st == TS_OK) { /* as tessera perplexity --kld-save and tessera verify's base run */
        const char *keep[] = {r->base_path, o->eval, NULL};
        ts_ppl_params p = {.n_ctx = r->n_ctx, .max_chunks = r->chunks,
                           .n_seq = r->n_ctx >= 2048 ? 1 : 2048 / r->n_ctx, .add_bos = ts_tokenizer_adds_bos(tok),
                           .bos = ts_tokenizer_bos(tok), .kld_save = kld, .kld_save_keep = keep};
        ts_model_set_kv_f16(m, true);
        ts_ppl_result res;
        if ((st = ts_perplexity(m, tokens, (int64_t)n_tokens, &p, NULL, NULL, &res, err)) == TS_OK) {
            r->base_ppl = res.ppl;
            r->base_ppl_err = res.ppl_err;
        }
    }
    if (st != TS_OK)
        ts_err_prefix(err, "base %s on %s", r->base_path, o->eval);
    free(tokens);
    free(text);
    ts_tokenizer_free(tok);
    ts_model_free(m);
    return st;
}

/* .work/base.kld for this eval text, context and chunk count: kept from an
 * earlier run when base.json says it was made from the same. */
static ts_status ensure_base_kld(const ts_release_opts *o, ts_release_result *r, char **kld_out, ts_err *err)
{
    char *kld = ts_rel_work_path(o, "base.kld"), *meta = ts_rel_work_path(o, "base.json");
    if (!kld || !meta) {
        free(kld);
        free(meta);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    char id[128], key[8192];
    file_identity(r->base_path, id, sizeof id);
    snprintf(key, sizeof key, "%s|%s|%s|%lld|%lld", r->base_path, id, o->eval, (long long)r->n_ctx,
             (long long)r->chunks);
    json_t *j = load_json(meta);
    const char *old = json_string_value(json_object_get(j, "key"));
    ts_status st = TS_OK;
    if (old && !strcmp(old, key) && ts_file_exists(kld) && json_is_number(json_object_get(j, "ppl"))) {
        r->base_ppl = json_number_value(json_object_get(j, "ppl"));
        r->base_ppl_err = json_number_value(json_object_get(j, "ppl_err"));
        ts_rel_log(o, "base: log-probabilities %s (kept from an earlier run)", kld);
    } else {
        ts_rel_log(o, "base: perplexity of %s on %s (saving %s)", r->base_path, o->eval, kld);
        st = save_base_kld(o, r, kld, err);
        json_t *nj = json_pack("{s:s, s:f, s:f}", "key", key, "ppl", r->base_ppl, "ppl_err", r->base_ppl_err);
        if (st == TS_OK)
            st = save_json(meta, nj, err);
        json_decref(nj);
    }
    json_decref(j);
    free(meta);
    if (st != TS_OK) {
        free(kld);
        return st;
    }
    *kld_out = kld;
    return TS_OK;
}

/* ---- one variant ---- */

static void take_accuracy(ts_release_variant *v, const ts_ppl_result *a)
{
    const ts_kld_stats *s = &a->kld;
    v->measured = true;
    v->tokens_scored = a->count;
    v->ppl = s->ppl.value;
    v->ppl_err = s->ppl.err;
    v->ppl_ratio = s->ppl_ratio.value;
    v->kld = s->kld.value;
    v->kld_err = s->kld.err;
    v->kld_p99 = s->kld_p99;
    v->same_top = 100.0 * s->same_top.value;
    v->same_top_err = 100.0 * s->same_top.err;
}

static const char *const measure_fields[] = {"ppl", "ppl_err", "ppl_ratio", "kld", "kld_err", "kld_p99",
                                             "same_top", "same_top_err"};

static double *measure_field(ts_release_variant *v, size_t i)
{
    double *f[] = {&v->ppl, &v->ppl_err, &v->ppl_ratio, &v->kld, &v->kld_err, &v->kld_p99, &v->same_top,
                   &v->same_top_err};
    return f[i];
}

/* Perplexity, KLD and same-top of variant i against the base's saved
 * log-probabilities, with tessera verify (on the merged parts when split). */
static ts_status measure(const ts_release_opts *o, ts_release_result *r, size_t i, const char *kld, ts_err *err)
{
    ts_release_variant *v = &r->v[i];
    char key[8192], id[128], base_id[128];
    size_t len = 0;
    file_identity(kld, base_id, sizeof base_id);
    len += (size_t)snprintf(key + len, sizeof key - len, "%s|%s|%lld|%lld|%.17g", base_id, o->eval,
                            (long long)r->n_ctx, (long long)r->chunks, r->base_ppl);
    for (size_t k = 0; k < v->n_files && len < sizeof key; k++) {
        file_identity(v->files[k], id, sizeof id);
        len += (size_t)snprintf(key + len, sizeof key - len, "|%s", id);
    }
    char name[64];
    snprintf(name, sizeof name, "measure-%s.json", v->type);
    char *cache = ts_rel_work_path(o, name);
    snprintf(name, sizeof name, "merged-%s.gguf", v->type);
    char *merged = ts_rel_work_path(o, name);
    if (!cache || !merged) {
        free(cache);
        free(merged);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    json_t *j = load_json(cache);
    const char *old = json_string_value(json_object_get(j, "key"));
    ts_status st = TS_OK;
    if (old && !strcmp(old, key)) {
        v->measured = true;
        v->tokens_scored = (int64_t)json_integer_value(json_object_get(j, "tokens_scored"));
        for (size_t f = 0; f < sizeof measure_fields / sizeof measure_fields[0]; f++)
            *measure_field(v, f) = json_number_value(json_object_get(j, measure_fields[f]));
        ts_rel_log(o, "%s: measurements kept from an earlier run", v->type);
    } else {
        const char *path = v->files[0];
        if (v->n_files > 1) { /* the reference forward pass reads one file */
            ts_rel_log(o, "%s: merging %zu parts into %s to measure them", v->type, v->n_files, merged);
            st = ts_gguf_split_merge(v->files[0], merged, NULL, err);
            path = merged;
        }
        ts_rel_log(o, "%s: measuring %s on %s", v->type, path, o->eval);
        ts_verify_opts vo;
        ts_verify_opts_init(&vo);
        vo.base = kld;
        vo.n_threads = o->n_threads;
        vo.max_chunks = r->chunks;
        vo.require_checksums = true;
        ts_verify_report rep;
        memset(&rep, 0, sizeof rep);
        if (st == TS_OK && (st = ts_verify(path, &vo, &rep, err)) == TS_OK && !rep.has_accuracy)
            st = ts_fail(err, TS_ERR_INTERNAL, "%s: verify gave no accuracy", path);
        for (size_t c = 0; c < rep.n_checks && st == TS_OK; c++)
            if (rep.checks[c].status == TS_CHECK_FAIL)
                st = ts_fail(err, TS_ERR_FORMAT, "%s: check %s failed: %s", path, rep.checks[c].name,
                             rep.checks[c].detail);
        if (v->n_files > 1)
            unlink(merged);
        if (st == TS_OK) {
            take_accuracy(v, &rep.accuracy);
            json_t *nj = json_pack("{s:s, s:I}", "key", key, "tokens_scored", (json_int_t)v->tokens_scored);
            for (size_t f = 0; f < sizeof measure_fields / sizeof measure_fields[0]; f++)
                json_object_set_new(nj, measure_fields[f], json_real(*measure_field(v, f)));
            st = save_json(cache, nj, err);
            json_decref(nj);
        }
        if (st != TS_OK)
            ts_err_prefix(err, "measuring %s", v->type);
    }
    json_decref(j);
    free(cache);
    free(merged);
    return st;
}

/* Files, checks, sizes and hashes of variant i. */
static ts_status inspect(const ts_release_opts *o, ts_release_result *r, size_t i, json_t *sums, ts_err *err)
{
    ts_release_variant *v = &r->v[i];
    ts_rel_free_files(v->files, v->n_files);
    ts_rel_free_files(v->sha256, v->n_files);
    v->files = v->sha256 = NULL;
    v->n_files = 0;
    v->file_bytes = v->tensor_bytes = v->n_elements = 0;
    char **files;
    size_t n;
    ts_status st = ts_rel_find_files(o, r, i, &files, &n, err);
    if (st != TS_OK)
        return ts_err_prefix(err, "variant %s", v->type);
    v->files = files;
    v->n_files = n;
    if (!(v->sha256 = calloc(n, sizeof *v->sha256)))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < n && st == TS_OK; k++) {
        struct stat sb;
        char hex[65];
        if (stat(files[k], &sb) == 0)
            v->file_bytes += (uint64_t)sb.st_size;
        st = ts_rel_check_file(files[k], k, n, o->n_threads, &v->tensor_bytes, &v->n_elements, err);
        if (st == TS_OK && (st = sha256_cached(sums, files[k], hex, err)) == TS_OK && !(v->sha256[k] = strdup(hex)))
            st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    v->bpw = v->n_elements ? (double)v->tensor_bytes * 8.0 / (double)v->n_elements : 0.0;
    if (st == TS_OK && !r->arch[0]) { /* the model's facts from the first file's metadata */
        ts_gguf *g;
        if ((st = ts_gguf_open(files[0], &g, err)) == TS_OK) {
            const char *arch = ts_gguf_get_str(g, "general.architecture");
            snprintf(r->arch, sizeof r->arch, "%s", arch ? arch : "");
            char key[128];
            snprintf(key, sizeof key, "%s.expert_count", r->arch);
            if (!ts_gguf_get_i64(g, key, &r->n_expert))
                r->n_expert = 0;
            ts_gguf_close(g);
        }
    }
    return st;
}

ts_status ts_release_collect(const ts_release_opts *o, ts_release_result *r, ts_err *err)
{
    double t0 = ts_now_seconds();
    char *sums_path = ts_rel_work_path(o, "sha256.json");
    if (!sums_path)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    json_t *sums = load_json(sums_path);
    char *kld = NULL, *work = ts_path_join(o->out_dir, TS_REL_WORK);
    if (work) /* collect's own temp files (merges, base.kld, caches) from a killed run */
        ts_rel_remove_temps(o, work, "");
    free(work);
    ts_status st = TS_OK;
    r->has_base = o->eval != NULL;
    if (o->eval && !r->base_path[0]) { /* collect run on its own: prepare's base */
        char *base = ts_rel_work_path(o, "base.gguf");
        snprintf(r->base_path, sizeof r->base_path, "%s", ts_rel_is_gguf(o->input) ? o->input : base ? base : "");
        free(base);
    }
    if (o->eval && !ts_file_exists(r->base_path))
        st = ts_fail(err, TS_ERR_IO, "%s: the base model is not there (prepare converts it)", r->base_path);
    if (st == TS_OK && o->eval) { /* the base's row of the card */
        struct stat sb;
        ts_gguf *g;
        if (stat(r->base_path, &sb) == 0)
            r->base_bytes = (uint64_t)sb.st_size;
        if ((st = ts_gguf_open(r->base_path, &g, err)) == TS_OK) {
            uint64_t bytes = 0, elements = 0, ne;
            for (uint64_t i = 0; i < g->n_tensors; i++)
                if (ts_shape_nelements(g->tensors[i].t.n_dims, g->tensors[i].t.ne, &ne)) {
                    elements += ne;
                    bytes += g->tensors[i].t.nbytes;
                }
            r->base_bpw = elements ? (double)bytes * 8.0 / (double)elements : 0.0;
            ts_gguf_close(g);
        }
    }
    for (size_t i = 0; i < r->n && st == TS_OK; i++) {
        ts_rel_log(o, "%s: checking files", r->v[i].type);
        st = inspect(o, r, i, sums, err);
    }
    if (st == TS_OK && o->eval)
        st = ensure_base_kld(o, r, &kld, err);
    for (size_t i = 0; i < r->n && st == TS_OK && kld; i++)
        st = measure(o, r, i, kld, err);
    if (st == TS_OK)
        st = save_json(sums_path, sums, err);
    if (st == TS_OK)
        st = ts_rel_write_card(o, r, err);
    json_decref(sums);
    free(sums_path);
    free(kld);
    r->seconds_collect = ts_now_seconds() - t0;
    return st;
}
