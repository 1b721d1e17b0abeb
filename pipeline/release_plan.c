/* tessera release --plan / --job / --collect: the release cut into
 * independent jobs for a scheduler the user already runs (GNU parallel,
 * Slurm job arrays, Kubernetes Indexed Jobs; docs/release.md "Scale-out").
 * The options are frozen in DIR/.work/plan.json so every job, on whatever
 * machine, runs the same release; each job line names the plan's id so a
 * jobs file of another plan is refused instead of mixing two releases. */
#include "release_internal.h"

#include "core/mapped_file.h"
#include "quant/imatrix.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PLAN_NAME "plan.json"

static json_t *opt_str(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* The options that decide the release's bytes and numbers. */
static json_t *options_json(const ts_release_opts *o, const ts_release_result *r)
{
    json_t *types = json_array();
    for (size_t i = 0; i < r->n; i++)
        json_array_append_new(types, json_string(r->v[i].type));
    return json_pack("{s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:i}", "input", opt_str(o->input),
                     "out_dir", o->out_dir, "types", types, "imatrix", opt_str(o->imatrix), "calib", opt_str(o->calib),
                     "eval", opt_str(o->eval), "command", opt_str(o->command), "split_max_bytes",
                     (json_int_t)o->split_max_bytes, "n_ctx", (json_int_t)o->n_ctx, "eval_chunks",
                     (json_int_t)o->eval_chunks, "calib_chunks", (json_int_t)o->calib_chunks, "n_threads", o->n_threads);
}

static void plan_id(json_t *opts, const char *version, char out[17])
{
    char *text = json_dumps(opts, JSON_COMPACT | JSON_SORT_KEYS);
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (const char *s = text ? text : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    for (const char *s = version ? version : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    snprintf(out, 17, "%016llx", (unsigned long long)h);
    free(text);
}

/* s in single quotes for sh. */
static void quote(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t need = *len + strlen(s) * 4 + 4;
    if (need > *cap) {
        *cap = need * 2;
        *buf = realloc(*buf, *cap);
    }
    if (!*buf)
        return;
    char *p = *buf + *len;
    *p++ = '\'';
    for (; *s; s++)
        p += *s == '\'' ? sprintf(p, "'\\''") : sprintf(p, "%c", *s);
    *p++ = '\'';
    *p = 0;
    *len = (size_t)(p - *buf);
}

static void append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = realloc(*buf, *cap);
    }
    if (!*buf)
        return;
    memcpy(*buf + *len, s, n + 1);
    *len += n;
}

/* cd CWD && BIN release --step STEP --plan-id ID DIR */
static char *job_line(const char *cwd, const char *bin, const char *step, const char *id, const char *dir)
{
    char *b = NULL;
    size_t len = 0, cap = 0;
    append(&b, &len, &cap, "cd ");
    quote(&b, &len, &cap, cwd);
    append(&b, &len, &cap, " && ");
    quote(&b, &len, &cap, bin);
    append(&b, &len, &cap, " release ");
    if (strcmp(step, "collect")) {
        append(&b, &len, &cap, "--step ");
        append(&b, &len, &cap, step);
    } else {
        append(&b, &len, &cap, "--collect");
    }
    append(&b, &len, &cap, " --plan-id ");
    append(&b, &len, &cap, id);
    append(&b, &len, &cap, " ");
    quote(&b, &len, &cap, dir);
    return b;
}

static ts_status write_text(const char *path, const char *text, ts_err *err)
{
    ts_atomic_file f;
    ts_status st = ts_atomic_open(path, NULL, &f, err);
    if (st == TS_OK && (st = ts_atomic_write(&f, text, strlen(text), err)) == TS_OK)
        st = ts_atomic_commit(&f, err);
    else if (st == TS_OK)
        ts_atomic_abort(&f);
    return st;
}

static ts_status make_dir(const char *path, ts_err *err)
{
    struct stat sb;
    if (mkdir(path, 0777) == 0 || (errno == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)))
        return TS_OK;
    return ts_fail(err, TS_ERR_IO, "%s: cannot create the folder: %s", path, strerror(errno));
}

ts_status ts_release_plan_write(const ts_release_opts *o, const char *tessera_bin, const char *jobs_path,
                                size_t *n_jobs, ts_err *err)
{
    ts_release_result r;
    ts_status st = ts_release_check(o, &r, err);
    char cwd[4096];
    if (st == TS_OK && !getcwd(cwd, sizeof cwd))
        st = ts_fail(err, TS_ERR_IO, "cannot read the current folder: %s", strerror(errno));
    char *work = st == TS_OK ? ts_path_join(o->out_dir, TS_REL_WORK) : NULL;
    if (st == TS_OK)
        st = make_dir(o->out_dir, err);
    if (st == TS_OK)
        st = make_dir(work, err);
    json_t *opts = st == TS_OK ? options_json(o, &r) : NULL;
    if (st == TS_OK && !opts)
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    char id[17] = "";
    json_t *jobs = json_array();
    char *text = NULL;
    size_t len = 0, cap = 0;
    if (st == TS_OK) {
        plan_id(opts, o->tool_version, id);
        for (size_t k = 0; k < r.n + 2; k++) {
            char *line = job_line(cwd, tessera_bin, k == 0 ? "prepare" : k <= r.n ? r.v[k - 1].type : "collect", id,
                                  o->out_dir);
            if (!line)
                break;
            json_array_append_new(jobs, json_string(line));
            append(&text, &len, &cap, line);
            append(&text, &len, &cap, "\n");
            free(line);
        }
        if (!text || json_array_size(jobs) != r.n + 2)
            st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    if (st == TS_OK) {
        json_t *plan = json_pack("{s:i, s:s, s:s, s:s, s:O, s:O}", "schema_version", 1, "version",
                                 o->tool_version ? o->tool_version : "", "id", id, "cwd", cwd, "options", opts,
                                 "jobs", jobs);
        char *path = ts_path_join(work, PLAN_NAME);
        char *pj = plan ? json_dumps(plan, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        st = pj && path ? write_text(path, pj, err) : ts_fail(err, TS_ERR_NOMEM, "out of memory");
        if (st == TS_OK) /* the plan first: a job of the new jobs file finds its id */
            st = write_text(jobs_path, text, err);
        if (st == TS_OK)
            *n_jobs = r.n + 2;
        free(pj);
        free(path);
        json_decref(plan);
    }
    json_decref(opts);
    json_decref(jobs);
    free(text);
    free(work);
    ts_release_result_free(&r);
    return st;
}

static const char *get_str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int64_t get_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

ts_status ts_release_plan_load(const char *out_dir, const char *id, const char *tool_version, ts_release_plan *p,
                               ts_err *err)
{
    memset(p, 0, sizeof *p);
    char *work = ts_path_join(out_dir, TS_REL_WORK), *path = work ? ts_path_join(work, PLAN_NAME) : NULL;
    free(work);
    if (!path)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    ts_status st = TS_OK;
    if (!j)
        st = ts_fail(err, TS_ERR_ARG, "%s: no plan (%s); write one with tessera release MODEL -o %s --types ... "
                     "--plan jobs.txt", path, je.text, out_dir);
    json_t *opts = j ? json_object_get(j, "options") : NULL;
    json_t *types = opts ? json_object_get(opts, "types") : NULL;
    const char *version = j ? get_str(j, "version") : NULL, *pid = j ? get_str(j, "id") : NULL;
    if (st == TS_OK && (!json_is_object(opts) || !json_is_array(types) || !version || !pid || !get_str(j, "cwd") ||
                        json_array_size(types) == 0 || json_array_size(types) > 64))
        st = ts_fail(err, TS_ERR_FORMAT, "%s: not a tessera release plan (options, types, version, id expected)", path);
    if (st == TS_OK && tool_version && strcmp(version, tool_version))
        st = ts_fail(err, TS_ERR_ARG, "%s: the plan was written by %s, this is %s; write the plan again", path,
                     version, tool_version);
    if (st == TS_OK && id && strcmp(id, pid))
        st = ts_fail(err, TS_ERR_ARG, "%s: this job belongs to plan %s, the folder holds plan %s (another model or "
                     "other options); run the jobs of the current plan", path, id, pid);
    if (st != TS_OK) {
        json_decref(j);
        free(path);
        return st;
    }
    p->json = j;
    snprintf(p->id, sizeof p->id, "%s", pid);
    p->cwd = get_str(j, "cwd");
    p->n_jobs = json_array_size(json_object_get(j, "jobs"));
    for (size_t i = 0; i < json_array_size(types); i++)
        p->types[i] = json_string_value(json_array_get(types, i));
    p->o = (ts_release_opts){.input = get_str(opts, "input"), .out_dir = get_str(opts, "out_dir"),
                             .types = p->types, .n_types = json_array_size(types),
                             .imatrix = get_str(opts, "imatrix"), .calib = get_str(opts, "calib"),
                             .eval = get_str(opts, "eval"), .command = get_str(opts, "command"),
                             .split_max_bytes = (uint64_t)get_int(opts, "split_max_bytes"),
                             .n_ctx = get_int(opts, "n_ctx"), .eval_chunks = get_int(opts, "eval_chunks"),
                             .calib_chunks = get_int(opts, "calib_chunks"), .n_threads = (int)get_int(opts, "n_threads"),
                             .tool_version = version};
    for (size_t i = 0; i < p->o.n_types; i++)
        if (!p->types[i])
            st = ts_fail(err, TS_ERR_FORMAT, "%s: type %zu is not a string", path, i + 1);
    if (st == TS_OK && (!p->o.input || !p->o.out_dir))
        st = ts_fail(err, TS_ERR_FORMAT, "%s: the plan names no input or output folder", path);
    free(path);
    if (st != TS_OK)
        ts_release_plan_free(p);
    return st;
}

void ts_release_plan_free(ts_release_plan *p)
{
    json_decref(p->json);
    memset(p, 0, sizeof *p);
}

ts_status ts_release_plan_line(const char *jobs_path, size_t k, char **line, size_t *n_lines, ts_err *err)
{
    char *text = NULL;
    size_t len = 0;
    *line = NULL;
    ts_status st = ts_read_small_file(jobs_path, (uint64_t)1 << 24, &text, &len, err);
    if (st != TS_OK)
        return st;
    size_t n = 0;
    const char *start = text, *want = NULL, *want_end = NULL;
    for (const char *s = text; s < text + len; s++)
        if (*s == '\n' || s + 1 == text + len) {
            const char *end = *s == '\n' ? s : s + 1;
            if (end > start && ++n == k) {
                want = start;
                want_end = end;
            }
            start = s + 1;
        }
    *n_lines = n;
    if (!want)
        st = ts_fail(err, TS_ERR_ARG, "job %zu: %s has %zu jobs (1..%zu)", k, jobs_path, n, n);
    else if (!(*line = strndup(want, (size_t)(want_end - want))))
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory");
    free(text);
    return st;
}

ts_status ts_release_attach(const ts_release_opts *o, ts_release_result *r, ts_err *err)
{
    (void)o;
    if (!r->imatrix[0])
        return TS_OK;
    if (!ts_file_exists(r->imatrix))
        return ts_fail(err, TS_ERR_IO, "%s: the imatrix is not there; run the prepare job (line 1 of the plan) first",
                       r->imatrix);
    ts_imatrix *im = NULL;
    ts_status st = ts_imatrix_load(r->imatrix, &im, err);
    if (st == TS_OK) {
        r->imatrix_entries = im->n_entries;
        r->imatrix_chunks = im->chunk_count;
    }
    ts_imatrix_free(im);
    return st;
}
