/* Hugging Face JSON side files: config.json, generation_config.json,
 * tokenizer_config.json. Parsed with jansson; typed getters that fail with a
 * message naming the file and key. */
#ifndef TS_HF_CONFIG_H
#define TS_HF_CONFIG_H

#include "core/ts.h"
#include <jansson.h>

#define TS_HF_JSON_MAX_BYTES (64u << 20)

typedef struct {
    char *path;   /* for messages */
    json_t *root; /* an object; NULL when the file was absent and optional */
} ts_json_file;

/* Loads path; refuses files over TS_HF_JSON_MAX_BYTES, invalid JSON (with line
 * and column), duplicate keys and a non-object top level. When optional and
 * the file does not exist, succeeds with root == NULL. */
ts_status ts_json_load(const char *path, bool optional, ts_json_file *out, ts_err *err);
void ts_json_free(ts_json_file *f);

/* The files of a model directory. config.json is required unless vocab_only. */
typedef struct {
    char *dir;
    ts_json_file config;
    ts_json_file generation_config;
    ts_json_file tokenizer_config;
} ts_hf_files;

ts_status ts_hf_files_load(const char *dir, bool config_required, ts_hf_files *out, ts_err *err);
void ts_hf_files_free(ts_hf_files *f);

/* Getters on an object of a file. "Has" = present and not null.
 * The _req variants fail with "<file>: <key>: expected ..." when missing or of the wrong type. */
bool ts_json_has(const ts_json_file *f, const char *key);
ts_status ts_json_int_req(const ts_json_file *f, const char *key, int64_t min, int64_t *out, ts_err *err);
/* Missing or null -> *out = def. Wrong type or < min -> error. */
ts_status ts_json_int_opt(const ts_json_file *f, const char *key, int64_t def, int64_t min, int64_t *out, ts_err *err);
ts_status ts_json_num_opt(const ts_json_file *f, const char *key, double def, double *out, ts_err *err);
ts_status ts_json_bool_opt(const ts_json_file *f, const char *key, bool def, bool *out, ts_err *err);
/* NULL when missing; error when present with another type. */
ts_status ts_json_str_opt(const ts_json_file *f, const char *key, const char **out, ts_err *err);
/* First of several alternative keys that is present (returns its name) or NULL. */
const char *ts_json_first_key(const ts_json_file *f, const char *const *keys);
/* Same getters on a nested object (e.g. rope_scaling); where names the object in messages. */
ts_status ts_json_obj_num(json_t *obj, const char *where, const char *key, double def, double *out, ts_err *err);
ts_status ts_json_obj_int(json_t *obj, const char *where, const char *key, int64_t def, int64_t *out, ts_err *err);

#endif
