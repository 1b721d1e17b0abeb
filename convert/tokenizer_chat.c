/* Chat templates, as gguf-py SpecialVocab + GGUFWriter.add_chat_template write them:
 * tokenizer_config.json "chat_template" (a string, or a list of {name, template})
 * wins when the key is present; otherwise chat_template.jinja (plus
 * additional_chat_templates/<name>.jinja), otherwise chat_template.json.
 * A list becomes tokenizer.chat_template (the "default" entry),
 * tokenizer.chat_template.<name> for the others and tokenizer.chat_templates
 * listing those names. */
#include "convert/tokenizer_internal.h"
#include "core/mapped_file.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    char *text;
} named_template;

static ts_status read_text(const char *path, char **out, ts_err *err)
{
    size_t len = 0;
    ts_status st = ts_read_small_file(path, TS_TOK_SMALL_MAX_BYTES, out, &len, err);
    if (st)
        return st;
    if (memchr(*out, 0, len) || !ts_tok_utf8_valid(*out, len)) {
        free(*out);
        *out = NULL;
        return ts_fail(err, TS_ERR_FORMAT, "%s: expected UTF-8 text without NUL bytes", path);
    }
    return TS_OK;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(((const named_template *)a)->name, ((const named_template *)b)->name);
}

/* additional_chat_templates/<name>.jinja, sorted by name so the output is reproducible. */
static ts_status read_additional(const char *dir, named_template **out, size_t *n_out, ts_err *err)
{
    *out = NULL;
    *n_out = 0;
    char *sub = ts_path_join(dir, "additional_chat_templates");
    if (!sub)
        return ts_fail(err, TS_ERR_NOMEM, "tokenizer: out of memory");
    DIR *d = opendir(sub);
    ts_status st = TS_OK;
    struct dirent *e;
    size_t n = 0, cap = 0;
    named_template *list = NULL;
    while (d && !st && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= 6 || strcmp(e->d_name + len - 6, ".jinja") != 0 || e->d_name[0] == '.')
            continue;
        if (n == 256) {
            st = ts_fail(err, TS_ERR_LIMIT, "%s: more than 256 templates", sub);
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            named_template *p = realloc(list, cap * sizeof *p);
            if (!p) {
                st = ts_fail(err, TS_ERR_NOMEM, "tokenizer: out of memory");
                break;
            }
            list = p;
        }
        char *path = ts_path_join(sub, e->d_name);
        list[n].name = strndup(e->d_name, len - 6);
        list[n].text = NULL;
        if (!path || !list[n].name)
            st = ts_fail(err, TS_ERR_NOMEM, "tokenizer: out of memory");
        else
            st = read_text(path, &list[n].text, err);
        n++;
        free(path);
    }
    if (d)
        closedir(d);
    free(sub);
    if (n)
        qsort(list, n, sizeof *list, cmp_names);
    *out = list;
    *n_out = n;
    return st;
}

/* Template names become key suffixes: anything but [A-Za-z0-9] turns into '_'. */
static void clean_name(char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            *s = '_';
}

static ts_status write_list(ts_gguf_writer *w, named_template *list, size_t n, const char *what, ts_err *err)
{
    const char *def = NULL;
    const char **names = calloc(n ? n : 1, sizeof *names);
    size_t n_names = 0;
    ts_status st = TS_OK;
    if (!names)
        return ts_fail(err, TS_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < n && !st; i++) {
        if (!list[i].name || !list[i].text || !list[i].name[0])
            continue;
        clean_name(list[i].name);
        if (strcmp(list[i].name, "default") == 0) {
            def = list[i].text;
            continue;
        }
        char key[320];
        snprintf(key, sizeof key, "tokenizer.chat_template.%.256s", list[i].name);
        bool dup = false;
        for (size_t k = 0; k < n_names; k++)
            dup |= strcmp(names[k], list[i].name) == 0;
        if (!dup)
            names[n_names++] = list[i].name;
        if ((st = ts_gguf_set_str(w, key, list[i].text)))
            st = ts_fail(err, st, "%s: cannot set GGUF key %s", what, key);
    }
    if (!st && n_names && (st = ts_gguf_set_arr_str(w, "tokenizer.chat_templates", names, n_names)))
        st = ts_fail(err, st, "%s: cannot set GGUF key tokenizer.chat_templates", what);
    if (!st && def && (st = ts_gguf_set_str(w, "tokenizer.chat_template", def)))
        st = ts_fail(err, st, "%s: cannot set GGUF key tokenizer.chat_template", what);
    free(names);
    return st;
}

static void free_list(named_template *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(list[i].name);
        free(list[i].text);
    }
    free(list);
}

/* A chat_template JSON value: a string, or a list of {name, template}. */
static ts_status write_json_value(ts_gguf_writer *w, const json_t *ct, const char *what, ts_err *err)
{
    if (json_is_string(ct)) {
        ts_status st = ts_gguf_set_str(w, "tokenizer.chat_template", json_string_value(ct));
        return st ? ts_fail(err, st, "%s: cannot set GGUF key tokenizer.chat_template", what) : TS_OK;
    }
    if (!json_is_array(ct))
        return TS_OK; /* SpecialVocab ignores other types (with a warning) */
    size_t n = json_array_size(ct), i;
    named_template *list = calloc(n ? n : 1, sizeof *list);
    if (!list)
        return ts_fail(err, TS_ERR_NOMEM, "tokenizer: out of memory");
    const json_t *x;
    json_array_foreach(ct, i, x) {
        const char *name = ts_tok_json_str(x, "name"), *text = ts_tok_json_str(x, "template");
        list[i].name = name ? strdup(name) : NULL;
        list[i].text = text ? strdup(text) : NULL;
    }
    ts_status st = write_list(w, list, n, what, err);
    free_list(list, n);
    return st;
}

static ts_status load_chat_json(const char *path, json_t **out, ts_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    json_error_t jerr;
    ts_status st = ts_read_small_file(path, TS_TOK_SMALL_MAX_BYTES, &buf, &len, err);
    if (st)
        return st;
    *out = ts_tok_json_load(buf, len, &jerr);
    free(buf);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return ts_fail(err, TS_ERR_FORMAT, "%s: expected a JSON object (%s)", path, jerr.text);
    }
    return TS_OK;
}

ts_status ts_tok_chat_templates(const ts_tok_files *f, ts_gguf_writer *w, ts_err *err)
{
    const json_t *ct = json_object_get(f->tok_config, "chat_template");
    if (ct)
        return write_json_value(w, ct, "tokenizer_config.json", err);
    char *jinja = ts_path_join(f->dir, "chat_template.jinja");
    char *cjson = ts_path_join(f->dir, "chat_template.json");
    ts_status st = TS_OK;
    if (!jinja || !cjson) {
        st = ts_fail(err, TS_ERR_NOMEM, "tokenizer: out of memory");
    } else if (ts_file_exists(jinja)) {
        named_template *extra = NULL;
        size_t n_extra = 0;
        char *text = NULL;
        if (!(st = read_text(jinja, &text, err)) && !(st = read_additional(f->dir, &extra, &n_extra, err))) {
            if (!n_extra) {
                if ((st = ts_gguf_set_str(w, "tokenizer.chat_template", text)))
                    st = ts_fail(err, st, "%s: cannot set GGUF key tokenizer.chat_template", jinja);
            } else {
                named_template *all = realloc(extra, (n_extra + 1) * sizeof *all);
                if (!all) {
                    st = ts_fail(err, TS_ERR_NOMEM, "tokenizer: out of memory");
                } else {
                    extra = all;
                    memmove(extra + 1, extra, n_extra * sizeof *extra);
                    extra[0] = (named_template){.name = strdup("default"), .text = text};
                    text = NULL;
                    n_extra++;
                    st = write_list(w, extra, n_extra, jinja, err);
                }
            }
        }
        free(text);
        free_list(extra, n_extra);
    } else if (ts_file_exists(cjson)) {
        json_t *root = NULL;
        if (!(st = load_chat_json(cjson, &root, err)))
            st = write_json_value(w, json_object_get(root, "chat_template"), cjson, err);
        json_decref(root);
    }
    free(jinja);
    free(cjson);
    return st;
}
