/* tessera inspect FILE [--json]: metadata and the tensor table of a GGUF file,
 * a safetensors file / index, or a model directory. */
#include "cli.h"
#include "formats/checkpoint.h"
#include "formats/gguf.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *fp)
{
    fprintf(fp, "usage: tessera inspect FILE|DIR [--json] [--no-tensors]\n"
                "\nPrints the metadata and tensor table (name, type, shape, bytes) of a GGUF file,\n"
                "a safetensors file or index, a PyTorch checkpoint (.bin/.pt/.pth, sharded index,\n"
                "consolidated.NN.pth), or a model directory.\n");
}

static json_t *scalar_json(ts_gguf_type t, const void *p)
{
    switch (t) {
    case TS_GGUF_UINT8: return json_integer(*(const uint8_t *)p);
    case TS_GGUF_INT8: return json_integer(*(const int8_t *)p);
    case TS_GGUF_UINT16: return json_integer(*(const uint16_t *)p);
    case TS_GGUF_INT16: return json_integer(*(const int16_t *)p);
    case TS_GGUF_UINT32: return json_integer(*(const uint32_t *)p);
    case TS_GGUF_INT32: return json_integer(*(const int32_t *)p);
    case TS_GGUF_UINT64: return json_integer((json_int_t) * (const uint64_t *)p);
    case TS_GGUF_INT64: return json_integer(*(const int64_t *)p);
    case TS_GGUF_FLOAT32: return json_real(*(const float *)p);
    case TS_GGUF_FLOAT64: return json_real(*(const double *)p);
    case TS_GGUF_BOOL: return json_boolean(*(const uint8_t *)p);
    case TS_GGUF_STRING: return json_stringn(((const ts_gguf_string *)p)->s, ((const ts_gguf_string *)p)->len);
    default: return json_null();
    }
}

static size_t gguf_elem_size(ts_gguf_type t)
{
    switch (t) {
    case TS_GGUF_UINT8: case TS_GGUF_INT8: case TS_GGUF_BOOL: return 1;
    case TS_GGUF_UINT16: case TS_GGUF_INT16: return 2;
    case TS_GGUF_UINT32: case TS_GGUF_INT32: case TS_GGUF_FLOAT32: return 4;
    case TS_GGUF_STRING: return sizeof(ts_gguf_string);
    default: return 8;
    }
}

/* Arrays longer than this are summarized in text output. */
#define SHOW_ARRAY 8

static json_t *value_json(const ts_gguf_value *v, bool full_arrays)
{
    if (v->type != TS_GGUF_ARRAY) {
        if (v->type == TS_GGUF_BOOL)
            return json_boolean(v->b);
        return scalar_json(v->type, &v->u8);
    }
    json_t *a = json_array();
    uint64_t n = full_arrays ? v->arr.n : (v->arr.n < SHOW_ARRAY ? v->arr.n : SHOW_ARRAY);
    size_t es = gguf_elem_size(v->arr.elem_type);
    for (uint64_t i = 0; i < n; i++)
        json_array_append_new(a, scalar_json(v->arr.elem_type, (const uint8_t *)v->arr.data + i * es));
    return a;
}

static json_t *shape_json(const ts_tensor *t)
{
    json_t *a = json_array();
    for (int d = 0; d < t->n_dims; d++)
        json_array_append_new(a, json_integer(t->ne[d]));
    return a;
}

static void print_tensor_row(const ts_tensor *t, uint64_t offset)
{
    char shape[96];
    printf("  %-48s %-8s %-24s %12" PRIu64 " %12" PRIu64 "\n", t->name, ts_dtype_name(t->dtype),
           ts_shape_str(t->n_dims, t->ne, shape, sizeof shape), t->nbytes, offset);
}

static int inspect_gguf(const char *path, bool json, bool tensors)
{
    ts_gguf *g;
    ts_err err = {0};
    if (ts_gguf_open(path, &g, &err) != TS_OK) {
        fprintf(stderr, "tessera inspect: %s\n", err.msg);
        return 1;
    }
    uint64_t total = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        total += g->tensors[i].t.nbytes;
    if (json) {
        json_t *root = json_pack("{s:s, s:s, s:i, s:I, s:I, s:I}", "file", path, "format", "gguf", "version",
                                 (int)g->version, "alignment", (json_int_t)g->alignment, "data_offset",
                                 (json_int_t)g->data_offset, "tensor_bytes", (json_int_t)total);
        json_t *md = json_object();
        for (uint64_t i = 0; i < g->n_kv; i++) {
            const ts_gguf_kv *kv = &g->kv[i];
            bool big = kv->value.type == TS_GGUF_ARRAY && kv->value.arr.n > 64;
            if (big)
                json_object_set_new(md, kv->key,
                                    json_pack("{s:s, s:s, s:I}", "type", "array", "elem_type",
                                              ts_gguf_type_name(kv->value.arr.elem_type), "n",
                                              (json_int_t)kv->value.arr.n));
            else
                json_object_set_new(md, kv->key, value_json(&kv->value, true));
        }
        json_object_set_new(root, "metadata", md);
        json_t *ts = json_array();
        for (uint64_t i = 0; tensors && i < g->n_tensors; i++) {
            const ts_tensor *t = &g->tensors[i].t;
            json_array_append_new(ts, json_pack("{s:s, s:s, s:o, s:I, s:I}", "name", t->name, "type",
                                                ts_dtype_name(t->dtype), "shape", shape_json(t), "bytes",
                                                (json_int_t)t->nbytes, "offset",
                                                (json_int_t)(g->data_offset + g->tensors[i].offset)));
        }
        json_object_set_new(root, "tensors", ts);
        cli_print_json(root);
    } else {
        printf("%s: GGUF v%u, %" PRIu64 " metadata keys, %" PRIu64 " tensors, %.2f MB of tensor data\n", path,
               g->version, g->n_kv, g->n_tensors, (double)total / 1e6);
        printf("\nmetadata:\n");
        for (uint64_t i = 0; i < g->n_kv; i++) {
            const ts_gguf_kv *kv = &g->kv[i];
            json_t *v = value_json(&kv->value, false);
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            if (kv->value.type == TS_GGUF_ARRAY) {
                printf("  %-44s [%s x %" PRIu64 "] %s%s\n", kv->key, ts_gguf_type_name(kv->value.arr.elem_type),
                       kv->value.arr.n, text ? text : "", kv->value.arr.n > SHOW_ARRAY ? " ..." : "");
            } else {
                size_t len = text ? strlen(text) : 0;
                printf("  %-44s %-8s %.*s%s\n", kv->key, ts_gguf_type_name(kv->value.type), len > 120 ? 120 : (int)len,
                       text ? text : "", len > 120 ? "..." : "");
            }
            free(text);
            json_decref(v);
        }
        if (tensors) {
            printf("\ntensors:\n  %-48s %-8s %-24s %12s %12s\n", "name", "type", "shape", "bytes", "offset");
            for (uint64_t i = 0; i < g->n_tensors; i++)
                print_tensor_row(&g->tensors[i].t, g->data_offset + g->tensors[i].offset);
        }
    }
    ts_gguf_close(g);
    return 0;
}

static int inspect_checkpoint(const char *path, bool json, bool tensors)
{
    ts_checkpoint *c;
    ts_err err = {0};
    if (ts_checkpoint_open(path, &c, &err) != TS_OK) {
        fprintf(stderr, "tessera inspect: %s\n", err.msg);
        return 1;
    }
    size_t n = ts_checkpoint_n_tensors(c);
    const char *const *files = ts_checkpoint_files(c);
    size_t n_files = 0;
    while (files[n_files])
        n_files++;
    if (json) {
        const char *format = ts_checkpoint_kind_of(c) == TS_CKPT_TORCH ? "pytorch" : "safetensors";
        json_t *root = json_pack("{s:s, s:s, s:I, s:I}", "file", path, "format", format, "files",
                                 (json_int_t)n_files, "tensor_bytes", (json_int_t)ts_checkpoint_data_bytes(c));
        json_t *ts = json_array();
        for (size_t i = 0; tensors && i < n; i++) {
            const ts_tensor *t = ts_checkpoint_tensor(c, i);
            json_array_append_new(ts, json_pack("{s:s, s:s, s:o, s:I}", "name", t->name, "type",
                                                ts_dtype_name(t->dtype), "shape", shape_json(t), "bytes",
                                                (json_int_t)t->nbytes));
        }
        json_object_set_new(root, "tensors", ts);
        cli_print_json(root);
    } else {
        printf("%s: %s, %zu file(s), %zu tensors, %.2f MB of tensor data\n", path,
               ts_checkpoint_kind_of(c) == TS_CKPT_TORCH ? "pytorch" : "safetensors", n_files, n,
               (double)ts_checkpoint_data_bytes(c) / 1e6);
        printf("shapes are in GGUF order (innermost first), the reverse of PyTorch's\n");
        if (tensors) {
            printf("\ntensors:\n  %-48s %-8s %-24s %12s\n", "name", "type", "shape", "bytes");
            for (size_t i = 0; i < n; i++) {
                const ts_tensor *t = ts_checkpoint_tensor(c, i);
                char shape[96];
                printf("  %-48s %-8s %-24s %12" PRIu64 "\n", t->name, ts_dtype_name(t->dtype),
                       ts_shape_str(t->n_dims, t->ne, shape, sizeof shape), t->nbytes);
            }
        }
    }
    ts_checkpoint_close(c);
    return 0;
}

static bool is_gguf(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    FILE *fp = fopen(path, "rb");
    char magic[4] = {0};
    bool yes = fp && fread(magic, 1, 4, fp) == 4 && !memcmp(magic, "GGUF", 4);
    if (fp)
        fclose(fp);
    return yes;
}

int cmd_inspect(int argc, char **argv)
{
    bool json = false, tensors = true;
    static const struct option longopts[] = {
        {"json", no_argument, 0, 'j'}, {"no-tensors", no_argument, 0, 'n'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 'n': tensors = false; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *path = argv[optind];
    return is_gguf(path) ? inspect_gguf(path, json, tensors) : inspect_checkpoint(path, json, tensors);
}
