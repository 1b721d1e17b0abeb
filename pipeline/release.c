/* tessera release: options, the output folder, the base model and imatrix
 * (prepare), which variants are already complete, and producing the rest in
 * one pass (ts_quantize_multi). Measuring and the card: release_collect.c
 * and release_card.c. See release.h and docs/release.md. */
#include "release_internal.h"

#include "convert/convert.h"
#include "core/mapped_file.h"
#include "core/progress.h"
#include "formats/gguf_split.h"
#include "quant/quantize.h"
#include "verify/imatrix_collect.h"
#include "verify/model.h"
#include "verify/tokenize.h"
#include "verify/verify.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- small helpers ---- */

void ts_rel_log(const ts_release_opts *o, const char *fmt, ...)
{
    if (!o->log)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    o->log(o->log_ctx, msg);
}

char *ts_rel_work_path(const ts_release_opts *o, const char *name)
{
    char *work = ts_path_join(o->out_dir, TS_REL_WORK);
    char *p = work ? ts_path_join(work, name) : NULL;
    free(work);
    return p;
}

char *ts_rel_imatrix_path(const ts_release_opts *o)
{
    if (!o->imatrix)
        return NULL;
    return !strcmp(o->imatrix, "auto") ? ts_path_join(o->out_dir, "imatrix.gguf") : strdup(o->imatrix);
}

bool ts_rel_is_gguf(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return false;
    FILE *fp = fopen(path, "rb");
    char magic[4] = {0};
    size_t got = fp ? fread(magic, 1, 4, fp) : 0;
    if (fp)
        fclose(fp);
    return got == 4 && !memcmp(magic, "GGUF", 4);
}

bool ts_release_parse_size(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    static const struct {
        const char *suffix;
        uint64_t mul;
    } units[] = {{"", 1},
                 {"K", 1000ull}, {"M", 1000000ull}, {"G", 1000000000ull}, {"T", 1000000000000ull},
                 {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!errno && !strcmp(end, units[i].suffix)) {
            uint64_t r;
            if (v == 0 || !ts_mul_u64(v, units[i].mul, &r))
                return false;
            *out = r;
            return true;
        }
    return false;
}

/* The model's name in file names: the checkpoint folder's name, or a
 * GGUF's file name without .gguf (a checkpoint file: its folder's name). */
static void model_name(const char *input, char *out, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", input);
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        path[--len] = 0;
    struct stat sb;
    bool dir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
    bool gguf = !dir && len > 5 && !strcmp(path + len - 5, ".gguf");
    char *slash = strrchr(path, '/');
    if (gguf)
        path[len - 5] = 0;
    else if (!dir) /* model.safetensors: its folder */
        snprintf(path, sizeof path, "%.*s", slash ? (int)(slash - path) : 1, slash ? input : ".");
    slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char cwd[4096];
    if (!*base || !strcmp(base, ".") || !strcmp(base, "..")) { /* "." : the current folder's name */
        const char *c = getcwd(cwd, sizeof cwd) ? strrchr(cwd, '/') : NULL;
        base = c && c[1] ? c + 1 : "model";
    }
    snprintf(out, n, "%s", base);
}

/* ---- check ---- */

ts_status ts_release_check(const ts_release_opts *o, ts_release_result *r, ts_err *err)
{
    memset(r, 0, sizeof *r);
    if (!o->input || !ts_file_exists(o->input))
        return ts_fail(err, TS_ERR_ARG, "%s: no such model (expected a checkpoint folder or a GGUF)",
                       o->input ? o->input : "(none)");
    if (!o->out_dir || !*o->out_dir)
        return ts_fail(err, TS_ERR_ARG, "no output folder given (-o DIR)");
    if (o->n_types == 0)
        return ts_fail(err, TS_ERR_ARG, "no types given (--types Q4_K_M,Q8_0,...)");
    if (!(r->v = calloc(o->n_types, sizeof *r->v)))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    r->n = o->n_types;
    for (size_t i = 0; i < o->n_types; i++) {
        const ts_ftype_info *f = ts_ftype_find(o->types[i]);
        if (!f) {
            char list[512] = "";
            for (size_t k = 0; ts_ftype_at(k); k++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", ts_ftype_at(k)->name);
            return ts_fail(err, TS_ERR_ARG, "type %s: expected one of %s", o->types[i], list);
        }
        snprintf(r->v[i].type, sizeof r->v[i].type, "%s", f->name);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(r->v[k].type, f->name))
                return ts_fail(err, TS_ERR_ARG, "type %s is given twice", f->name);
    }
    bool automatic = o->imatrix && !strcmp(o->imatrix, "auto");
    if (automatic && !o->calib)
        return ts_fail(err, TS_ERR_ARG, "--imatrix auto needs --calib TEXT (the calibration text)");
    if (o->calib && !automatic)
        return ts_fail(err, TS_ERR_ARG, "--calib is only used with --imatrix auto");
    if (o->imatrix && !automatic && !ts_file_exists(o->imatrix))
        return ts_fail(err, TS_ERR_ARG, "--imatrix %s: no such file", o->imatrix);
    if (o->calib && !ts_file_exists(o->calib))
        return ts_fail(err, TS_ERR_ARG, "--calib %s: no such file", o->calib);
    if (o->eval && !ts_file_exists(o->eval))
        return ts_fail(err, TS_ERR_ARG, "--eval %s: no such file", o->eval);
    model_name(o->input, r->name, sizeof r->name);
    r->n_ctx = o->n_ctx >= 16 ? o->n_ctx : 512;
    r->chunks = o->eval_chunks > 0 ? o->eval_chunks : 0;
    char *im = ts_rel_imatrix_path(o);
    snprintf(r->imatrix, sizeof r->imatrix, "%s", im ? im : "");
    free(im);
    return TS_OK;
}

/* ---- prepare ---- */

static ts_status make_dir(const char *path, ts_err *err)
{
    struct stat sb;
    if (mkdir(path, 0777) == 0 || (errno == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)))
        return TS_OK;
    return ts_fail(err, TS_ERR_IO, "%s: cannot create the folder: %s", path, strerror(errno));
}

/* The unquantized GGUF the imatrix and the measurements run on: the input
 * itself, or the checkpoint converted (types as stored) into .work. */
static ts_status ensure_base(const ts_release_opts *o, ts_release_result *r, ts_err *err)
{
    if (ts_rel_is_gguf(o->input)) {
        snprintf(r->base_path, sizeof r->base_path, "%s", o->input);
        return TS_OK;
    }
    char *path = ts_rel_work_path(o, "base.gguf");
    if (!path)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    snprintf(r->base_path, sizeof r->base_path, "%s", path);
    ts_err ignored = {0};
    uint64_t tb = 0, ne = 0;
    ts_status st = TS_OK;
    if (ts_file_exists(path) && ts_rel_check_file(path, 0, 1, o->n_threads, &tb, &ne, &ignored) == TS_OK) {
        ts_rel_log(o, "base: %s (kept from an earlier run)", path);
    } else {
        ts_rel_log(o, "base: converting %s to %s for the measurements", o->input, path);
        ts_convert_opts co = {.input = o->input, .output = path, .outtype = "auto", .n_threads = o->n_threads,
                              .progress_label = "base"};
        ts_convert_stats stats;
        if ((st = ts_convert(&co, &stats, err)))
            ts_err_prefix(err, "converting the base model");
    }
    free(path);
    return st;
}

/* The imatrix as `tessera imatrix BASE -f CALIB -c N [--chunks K]` collects it. */
static ts_status collect_imatrix(const ts_release_opts *o, const ts_release_result *r, const char *out, ts_err *err)
{
    char *text = NULL;
    size_t text_len = 0, n_tokens = 0;
    int32_t *tokens = NULL;
    ts_model *m = NULL;
    ts_tokenizer *tok = NULL;
    ts_imatrix_data d = {0};
    bool add_eos = false;
    ts_status st = ts_read_small_file(o->calib, (uint64_t)1 << 31, &text, &text_len, err);
    if (st == TS_OK && text_len == 0)
        st = ts_fail(err, TS_ERR_ARG, "%s: the calibration file is empty", o->calib);
    if (st == TS_OK)
        st = ts_model_load(r->base_path, o->n_threads, &m, err);
    if (st == TS_OK) { /* llama-imatrix's context defaults, as tessera imatrix */
        ts_model_set_kv_f16(m, true);
        ts_model_set_ggml_activations(m, true);
        st = ts_tokenizer_from_gguf(ts_model_gguf(m), &tok, err);
    }
    if (st == TS_OK && ts_gguf_get_bool(ts_model_gguf(m), "tokenizer.ggml.add_eos_token", &add_eos) && add_eos)
        st = ts_fail(err, TS_ERR_UNSUPPORTED, "%s: the model adds EOS to every text; llama-imatrix refuses such "
                     "models too", r->base_path);
    if (st == TS_OK)
        st = ts_tokenize(tok, text, text_len, true, false, &tokens, &n_tokens, err);
    if (st == TS_OK) {
        ts_imatrix_params p = {.n_ctx = r->n_ctx, .max_chunks = o->calib_chunks,
                               .n_seq = 2048 / r->n_ctx > 0 ? 2048 / r->n_ctx : 1,
                               .add_bos = ts_tokenizer_adds_bos(tok), .bos = ts_tokenizer_bos(tok),
                               .dataset = o->calib};
        st = ts_imatrix_collect(m, tokens, (int64_t)n_tokens, &p, NULL, NULL, &d, err);
    }
    const char *keep[] = {r->base_path, o->calib, NULL};
    if (st == TS_OK)
        st = ts_imatrix_write(&d, out, keep, err);
    if (st != TS_OK)
        ts_err_prefix(err, "imatrix from %s", o->calib);
    ts_imatrix_data_free(&d);
    free(tokens);
    free(text);
    ts_tokenizer_free(tok);
    ts_model_free(m);
    return st;
}

/* An imatrix "auto" left by an earlier run of the same options. */
static bool imatrix_reusable(const ts_release_opts *o, const ts_release_result *r, const char *path)
{
    ts_imatrix *im = NULL;
    ts_err ignored = {0};
    if (!ts_file_exists(path) || ts_imatrix_load(path, &im, &ignored) != TS_OK)
        return false;
    bool ok = im->n_datasets >= 1 && !strcmp(im->datasets[0], o->calib) && im->chunk_size == r->n_ctx &&
              (o->calib_chunks <= 0 || im->chunk_count == o->calib_chunks);
    ts_imatrix_free(im);
    return ok;
}

void ts_rel_remove_temps(const ts_release_opts *o, const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    size_t pl = strlen(prefix);
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, pl) && strstr(e->d_name + pl, ".tmp.")) {
            char *path = ts_path_join(dir, e->d_name);
            if (path && unlink(path) == 0)
                ts_rel_log(o, "removed %s (left by an interrupted run)", path);
            free(path);
        }
    closedir(d);
}

ts_status ts_release_prepare(const ts_release_opts *o, ts_release_result *r, ts_err *err)
{
    double t0 = ts_now_seconds();
    char *work = ts_path_join(o->out_dir, TS_REL_WORK);
    if (!work)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_status st = make_dir(o->out_dir, err);
    if (st == TS_OK)
        st = make_dir(work, err);
    if (st == TS_OK) { /* what prepare itself writes, should a killed run have left it half done */
        ts_rel_remove_temps(o, work, "base.gguf");
        ts_rel_remove_temps(o, o->out_dir, "imatrix.gguf");
    }
    free(work);
    bool automatic = o->imatrix && !strcmp(o->imatrix, "auto");
    bool compute = st == TS_OK && automatic && !imatrix_reusable(o, r, r->imatrix);
    if (st == TS_OK && (o->eval || compute))
        st = ensure_base(o, r, err);
    if (st == TS_OK && compute) {
        ts_rel_log(o, "imatrix: collecting %s from %s on %s", r->imatrix, o->calib, r->base_path);
        st = collect_imatrix(o, r, r->imatrix, err);
        r->imatrix_written = st == TS_OK;
    } else if (st == TS_OK && automatic) {
        ts_rel_log(o, "imatrix: %s (kept from an earlier run)", r->imatrix);
    }
    if (st == TS_OK && r->imatrix[0]) { /* read it now: a bad file shows before the long pass */
        ts_imatrix *im = NULL;
        if ((st = ts_imatrix_load(r->imatrix, &im, err)) == TS_OK) {
            r->imatrix_entries = im->n_entries;
            r->imatrix_chunks = im->chunk_count;
        }
        ts_imatrix_free(im);
    }
    r->seconds_prepare = ts_now_seconds() - t0;
    return st;
}

/* ---- the variants' files ---- */

char *ts_release_variant_path(const ts_release_opts *o, const ts_release_result *r, size_t i)
{
    char name[sizeof r->name + 32];
    snprintf(name, sizeof name, "%s-%s.gguf", r->name, r->v[i].type);
    return ts_path_join(o->out_dir, name);
}

/* What a directory entry is to variant prefix P: 1 for "P.gguf", 2 for a
 * part "P-0000k-of-0000n.gguf" (*part = k, *count = n), 0 for neither;
 * *tmp when a temp-file suffix ".tmp.XXXXXX" follows. */
static int classify(const char *name, const char *prefix, unsigned *part, unsigned *count, bool *tmp)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl))
        return 0;
    const char *rest = name + pl, *after = NULL;
    int kind = 0;
    if (!strncmp(rest, ".gguf", 5)) {
        kind = 1;
        after = rest + 5;
    } else if (strlen(rest) >= 20 && rest[0] == '-' && !strncmp(rest + 6, "-of-", 4) && !strncmp(rest + 15, ".gguf", 5)) {
        for (int k = 0; k < 5; k++)
            if (rest[1 + k] < '0' || rest[1 + k] > '9' || rest[10 + k] < '0' || rest[10 + k] > '9')
                return 0;
        *part = (unsigned)atoi(rest + 1);
        *count = (unsigned)atoi(rest + 10);
        kind = 2;
        after = rest + 20;
    } else {
        return 0;
    }
    *tmp = !strncmp(after, ".tmp.", 5);
    return *after == 0 || *tmp ? kind : 0;
}

void ts_rel_free_files(char **files, size_t n)
{
    for (size_t i = 0; files && i < n; i++)
        free(files[i]);
    free(files);
}

ts_status ts_rel_find_files(const ts_release_opts *o, const ts_release_result *r, size_t i, char ***files,
                            size_t *n_files, ts_err *err)
{
    *files = NULL;
    *n_files = 0;
    char prefix[sizeof r->name + 32];
    snprintf(prefix, sizeof prefix, "%s-%s", r->name, r->v[i].type);
    DIR *d = opendir(o->out_dir);
    if (!d)
        return ts_fail(err, TS_ERR_IO, "%s: cannot read the folder: %s", o->out_dir, strerror(errno));
    bool single = false;
    unsigned count = 0;
    ts_status st = TS_OK;
    struct dirent *e;
    while ((e = readdir(d)) && st == TS_OK) {
        unsigned part = 0, cnt = 0;
        bool tmp;
        int kind = classify(e->d_name, prefix, &part, &cnt, &tmp);
        if (kind == 1 && !tmp)
            single = true;
        if (kind == 2 && !tmp) {
            if (count && cnt != count)
                st = ts_fail(err, TS_ERR_FORMAT, "%s: parts of two split sets (of %u and of %u) for %s", o->out_dir,
                             count, cnt, r->v[i].type);
            count = cnt;
        }
    }
    closedir(d);
    if (st != TS_OK)
        return st;
    char *path = ts_release_variant_path(o, r, i);
    if (!path)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (single && count)
        st = ts_fail(err, TS_ERR_FORMAT, "%s: both the file and split parts of it are there", path);
    else if (!single && !count)
        st = ts_fail(err, TS_ERR_IO, "%s: not written (nor split parts of it)", path);
    size_t n = single ? 1 : count;
    char **list = st == TS_OK ? calloc(n, sizeof *list) : NULL;
    if (st == TS_OK && !list)
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < n && st == TS_OK; k++) {
        list[k] = single ? strdup(path) : ts_gguf_split_path(path, k, n);
        if (!list[k])
            st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
        else if (!ts_file_exists(list[k]))
            st = ts_fail(err, TS_ERR_IO, "%s: missing (part %zu of %zu)", list[k], k + 1, n);
    }
    free(path);
    if (st != TS_OK) {
        ts_rel_free_files(list, n);
        return st;
    }
    *files = list;
    *n_files = n;
    return TS_OK;
}

ts_status ts_rel_check_file(const char *path, size_t part, size_t n_parts, int n_threads, uint64_t *tensor_bytes,
                            uint64_t *n_elements, ts_err *err)
{
    ts_gguf *g;
    ts_status st = ts_gguf_open(path, &g, err);
    if (st != TS_OK)
        return st;
    bool is_split;
    uint32_t no, count;
    int64_t total;
    st = ts_gguf_split_info(g, path, &is_split, &no, &count, &total, err);
    if (st == TS_OK && (n_parts > 1 ? !is_split || no != part || count != n_parts : is_split))
        st = ts_fail(err, TS_ERR_FORMAT, "%s: expected %s; split keys say part %u of %u", path,
                     n_parts > 1 ? "a split part" : "an unsplit file", no + 1, count);
    ts_verify_opts vo;
    ts_verify_opts_init(&vo);
    vo.n_threads = n_threads;
    vo.require_checksums = true;
    ts_verify_report rep;
    memset(&rep, 0, sizeof rep);
    if (st == TS_OK)
        ts_verify_tensors(g, &vo, &rep);
    for (size_t c = 0; c < rep.n_checks && st == TS_OK; c++)
        if (rep.checks[c].status == TS_CHECK_FAIL)
            st = ts_fail(err, TS_ERR_FORMAT, "%s: check %s failed: %s", path, rep.checks[c].name, rep.checks[c].detail);
    for (uint64_t i = 0; i < g->n_tensors && st == TS_OK; i++) {
        uint64_t ne;
        if (ts_shape_nelements(g->tensors[i].t.n_dims, g->tensors[i].t.ne, &ne))
            *n_elements += ne;
        *tensor_bytes += g->tensors[i].t.nbytes;
    }
    ts_gguf_close(g);
    return st;
}

/* The first file's record of how it was made, against this run's options. */
static bool same_options(const ts_release_result *r, size_t i, const char *path)
{
    ts_gguf *g;
    ts_err ignored = {0};
    if (ts_gguf_open(path, &g, &ignored) != TS_OK)
        return false;
    const char *ft = ts_gguf_get_str(g, "tessera.quantize.ftype"), *im = ts_gguf_get_str(g, "quantize.imatrix.file");
    int64_t entries = -1, chunks = -1;
    ts_gguf_get_i64(g, "quantize.imatrix.entries_count", &entries);
    ts_gguf_get_i64(g, "quantize.imatrix.chunks_count", &chunks);
    bool ok = ft && !strcasecmp(ft, r->v[i].type);
    if (r->imatrix[0])
        ok = ok && im && !strcmp(im, r->imatrix) && !r->imatrix_written && entries == (int64_t)r->imatrix_entries &&
             (r->imatrix_chunks <= 0 || chunks == r->imatrix_chunks);
    else
        ok = ok && !im;
    ts_gguf_close(g);
    return ok;
}

bool ts_release_variant_complete(const ts_release_opts *o, const ts_release_result *r, size_t i)
{
    char **files;
    size_t n;
    ts_err ignored = {0};
    if (ts_rel_find_files(o, r, i, &files, &n, &ignored) != TS_OK)
        return false;
    bool ok = (o->split_max_bytes || n == 1) && same_options(r, i, files[0]);
    for (size_t k = 0; k < n && ok; k++) {
        struct stat sb;
        uint64_t tb = 0, ne = 0;
        ok = stat(files[k], &sb) == 0 && (!o->split_max_bytes || (uint64_t)sb.st_size <= o->split_max_bytes) &&
             ts_rel_check_file(files[k], k, n, o->n_threads, &tb, &ne, &ignored) == TS_OK;
    }
    ts_rel_free_files(files, n);
    return ok;
}

/* ---- produce ---- */

/* Before variant i is written again: its temp files left by a killed run,
 * and (whole variant) its final files of any layout. A part-only job removes
 * only that part's temp files: other jobs may be writing the others. */
static void remove_stale(const ts_release_opts *o, const ts_release_result *r, size_t i, size_t only_part)
{
    char prefix[sizeof r->name + 32];
    snprintf(prefix, sizeof prefix, "%s-%s", r->name, r->v[i].type);
    DIR *d = opendir(o->out_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned part = 0, count = 0;
        bool tmp = false;
        int kind = classify(e->d_name, prefix, &part, &count, &tmp);
        if (!kind || (only_part && !(kind == 2 && tmp && part == only_part)))
            continue;
        char *path = ts_path_join(o->out_dir, e->d_name);
        if (path && unlink(path) == 0)
            ts_rel_log(o, "removed %s (%s)", path, tmp ? "left by an interrupted run" : "written again");
        free(path);
    }
    closedir(d);
}

ts_status ts_release_produce(const ts_release_opts *o, const ts_release_result *r, const size_t *which, size_t n,
                             size_t part, ts_err *err)
{
    if (n == 0)
        return TS_OK;
    if (part && n != 1)
        return ts_fail(err, TS_ERR_ARG, "one part at a time is written for one variant, not %zu", n);
    if (r->imatrix[0] && !ts_file_exists(r->imatrix))
        return ts_fail(err, TS_ERR_IO, "%s: the imatrix is not there yet (prepare collects it)", r->imatrix);
    ts_quantize_opts *qo = calloc(n, sizeof *qo);
    ts_quantize_result *res = calloc(n, sizeof *res);
    char **paths = calloc(n, sizeof *paths);
    ts_status st = qo && res && paths ? TS_OK : ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < n && st == TS_OK; k++) {
        if (which[k] >= r->n || !(paths[k] = ts_release_variant_path(o, r, which[k]))) {
            st = ts_fail(err, which[k] >= r->n ? TS_ERR_ARG : TS_ERR_NOMEM, "variant %zu: out of range", which[k]);
            break;
        }
        remove_stale(o, r, which[k], part);
        qo[k] = (ts_quantize_opts){.input = o->input, .output = paths[k], .ftype = r->v[which[k]].type,
                                   .n_threads = o->n_threads, .imatrix = r->imatrix[0] ? r->imatrix : NULL,
                                   .split_max_bytes = o->split_max_bytes, .split_part = part};
    }
    if (st == TS_OK) {
        char list[512] = "";
        for (size_t k = 0; k < n; k++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", qo[k].ftype);
        ts_rel_log(o, "writing %s in one pass over %s", list, o->input);
        st = ts_quantize_multi(qo, n, res, err);
    }
    for (size_t k = 0; k < n && st == TS_OK; k++)
        ts_quantize_result_free(&res[k]);
    for (size_t k = 0; paths && k < n; k++)
        free(paths[k]);
    free(paths);
    free(qo);
    free(res);
    return st;
}

/* ---- the whole release ---- */

ts_status ts_release(const ts_release_opts *o, ts_release_result *r, ts_err *err)
{
    ts_status st = ts_release_check(o, r, err);
    if (st == TS_OK)
        st = ts_release_prepare(o, r, err);
    size_t *pending = st == TS_OK ? calloc(r->n, sizeof *pending) : NULL;
    size_t n_pending = 0;
    if (st == TS_OK && !pending)
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; st == TS_OK && i < r->n; i++) {
        r->v[i].reused = ts_release_variant_complete(o, r, i);
        if (r->v[i].reused)
            ts_rel_log(o, "%s: complete from an earlier run, kept", r->v[i].type);
        else
            pending[n_pending++] = i;
    }
    double t0 = ts_now_seconds();
    if (st == TS_OK)
        st = ts_release_produce(o, r, pending, n_pending, 0, err);
    r->seconds_write = ts_now_seconds() - t0;
    free(pending);
    if (st == TS_OK)
        st = ts_release_collect(o, r, err);
    return st;
}

void ts_release_result_free(ts_release_result *r)
{
    for (size_t i = 0; r->v && i < r->n; i++) {
        ts_rel_free_files(r->v[i].files, r->v[i].n_files);
        ts_rel_free_files(r->v[i].sha256, r->v[i].n_files);
    }
    free(r->v);
    r->v = NULL;
    r->n = 0;
}
