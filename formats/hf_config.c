#include "hf_config.h"
#include "core/mapped_file.h"

#include <stdlib.h>
#include <string.h>

/* jansson refuses integers beyond int64 ("too big integer"), and HF files
 * contain them (tokenizer_config.json model_max_length = 1e30 written as an
 * integer). Returns a copy where every integer literal of 19+ digits outside
 * strings gets ".0" appended, so it parses as a real; NULL on allocation failure. */
static char *widen_big_ints(const char *buf, size_t len, size_t *out_len)
{
    char *out = malloc(len * 2 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    bool in_str = false;
    for (size_t i = 0; i < len;) {
        char ch = buf[i];
        if (in_str) {
            out[o++] = ch;
            if (ch == '\\' && i + 1 < len)
                out[o++] = buf[++i];
            else if (ch == '"')
                in_str = false;
            i++;
        } else if (ch == '"') {
            in_str = true;
            out[o++] = buf[i++];
        } else if ((ch >= '0' && ch <= '9') || ch == '-') {
            size_t j = i + (ch == '-'), digits = 0;
            while (j < len && buf[j] >= '0' && buf[j] <= '9')
                j++, digits++;
            bool fractional = j < len && (buf[j] == '.' || buf[j] == 'e' || buf[j] == 'E');
            memcpy(out + o, buf + i, j - i);
            o += j - i;
            if (digits >= 19 && !fractional) {
                out[o++] = '.';
                out[o++] = '0';
            }
            i = j;
        } else {
            out[o++] = buf[i++];
        }
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

ts_status ts_json_load(const char *path, bool optional, ts_json_file *out, ts_err *err)
{
    memset(out, 0, sizeof *out);
    out->path = strdup(path);
    if (!out->path)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (optional && !ts_file_exists(path))
        return TS_OK;
    char *buf;
    size_t len;
    ts_status st = ts_read_small_file(path, TS_HF_JSON_MAX_BYTES, &buf, &len, err);
    if (st != TS_OK) {
        ts_json_free(out);
        return st;
    }
    json_error_t jerr;
    out->root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!out->root && strstr(jerr.text, "too big integer")) {
        size_t wlen;
        char *wide = widen_big_ints(buf, len, &wlen);
        if (wide)
            out->root = json_loadb(wide, wlen, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        free(wide);
    }
    free(buf);
    if (!out->root) {
        st = ts_fail(err, TS_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", path, jerr.line,
                     jerr.column, jerr.text);
        ts_json_free(out);
        return st;
    }
    if (!json_is_object(out->root)) {
        st = ts_fail(err, TS_ERR_FORMAT, "%s: expected a JSON object at the top level", path);
        ts_json_free(out);
        return st;
    }
    return TS_OK;
}

void ts_json_free(ts_json_file *f)
{
    if (f->root)
        json_decref(f->root);
    free(f->path);
    memset(f, 0, sizeof *f);
}

static ts_status load_in(const char *dir, const char *name, bool optional, ts_json_file *out, ts_err *err)
{
    char *p = ts_path_join(dir, name);
    if (!p)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (!optional && !ts_file_exists(p)) {
        ts_status st = ts_fail(err, TS_ERR_ARG, "%s: missing (a Hugging Face model directory needs %s)", p, name);
        free(p);
        return st;
    }
    ts_status st = ts_json_load(p, optional, out, err);
    free(p);
    return st;
}

ts_status ts_hf_files_load(const char *dir, bool config_required, ts_hf_files *out, ts_err *err)
{
    memset(out, 0, sizeof *out);
    out->dir = strdup(dir);
    ts_status st = load_in(dir, "config.json", !config_required, &out->config, err);
    if (st == TS_OK)
        st = load_in(dir, "generation_config.json", true, &out->generation_config, err);
    if (st == TS_OK)
        st = load_in(dir, "tokenizer_config.json", true, &out->tokenizer_config, err);
    if (st != TS_OK)
        ts_hf_files_free(out);
    return st;
}

void ts_hf_files_free(ts_hf_files *f)
{
    ts_json_free(&f->config);
    ts_json_free(&f->generation_config);
    ts_json_free(&f->tokenizer_config);
    free(f->dir);
    memset(f, 0, sizeof *f);
}

static json_t *get(const ts_json_file *f, const char *key)
{
    if (!f->root)
        return NULL;
    json_t *v = json_object_get(f->root, key);
    return (v && !json_is_null(v)) ? v : NULL;
}

bool ts_json_has(const ts_json_file *f, const char *key) { return get(f, key) != NULL; }

static ts_status obj_int(json_t *v, const char *where, const char *key, int64_t min, int64_t *out, ts_err *err)
{
    /* Some configs write integers as 4096.0; accept integral reals. */
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == (double)(int64_t)json_real_value(v)) {
        *out = (int64_t)json_real_value(v);
    } else {
        return ts_fail(err, TS_ERR_FORMAT, "%s: %s: expected an integer", where, key);
    }
    if (*out < min)
        return ts_fail(err, TS_ERR_FORMAT, "%s: %s: expected an integer >= %lld, got %lld", where, key,
                       (long long)min, (long long)*out);
    return TS_OK;
}

ts_status ts_json_int_req(const ts_json_file *f, const char *key, int64_t min, int64_t *out, ts_err *err)
{
    json_t *v = get(f, key);
    if (!v)
        return ts_fail(err, TS_ERR_FORMAT, "%s: %s: missing (expected an integer)", f->path, key);
    return obj_int(v, f->path, key, min, out, err);
}

ts_status ts_json_int_opt(const ts_json_file *f, const char *key, int64_t def, int64_t min, int64_t *out, ts_err *err)
{
    json_t *v = get(f, key);
    if (!v) {
        *out = def;
        return TS_OK;
    }
    return obj_int(v, f->path, key, min, out, err);
}

ts_status ts_json_num_opt(const ts_json_file *f, const char *key, double def, double *out, ts_err *err)
{
    json_t *v = get(f, key);
    if (!v) {
        *out = def;
        return TS_OK;
    }
    if (!json_is_number(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: %s: expected a number", f->path, key);
    *out = json_number_value(v);
    return TS_OK;
}

ts_status ts_json_bool_opt(const ts_json_file *f, const char *key, bool def, bool *out, ts_err *err)
{
    json_t *v = get(f, key);
    if (!v) {
        *out = def;
        return TS_OK;
    }
    if (!json_is_boolean(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: %s: expected true or false", f->path, key);
    *out = json_is_true(v);
    return TS_OK;
}

ts_status ts_json_str_opt(const ts_json_file *f, const char *key, const char **out, ts_err *err)
{
    json_t *v = get(f, key);
    *out = NULL;
    if (!v)
        return TS_OK;
    if (!json_is_string(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: %s: expected a string", f->path, key);
    *out = json_string_value(v);
    return TS_OK;
}

const char *ts_json_first_key(const ts_json_file *f, const char *const *keys)
{
    for (size_t i = 0; keys[i]; i++)
        if (get(f, keys[i]))
            return keys[i];
    return NULL;
}

ts_status ts_json_obj_num(json_t *obj, const char *where, const char *key, double def, double *out, ts_err *err)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v || json_is_null(v)) {
        *out = def;
        return TS_OK;
    }
    if (!json_is_number(v))
        return ts_fail(err, TS_ERR_FORMAT, "%s: %s: expected a number", where, key);
    *out = json_number_value(v);
    return TS_OK;
}

ts_status ts_json_obj_int(json_t *obj, const char *where, const char *key, int64_t def, int64_t *out, ts_err *err)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v || json_is_null(v)) {
        *out = def;
        return TS_OK;
    }
    return obj_int(v, where, key, INT64_MIN, out, err);
}
