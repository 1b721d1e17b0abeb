/* libFuzzer target for the GGUF reader (build: tests/fuzz/README.md).
 * Whatever the bytes, ts_gguf_open_memory must return a status without
 * reading outside the buffer; on success every tensor's bytes must lie inside it
 * and every key and name must be found again by lookup. */
#include "formats/gguf.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ts_gguf *g = NULL;
    ts_err err = {0};
    if (ts_gguf_open_memory(data, size, "fuzz", &g, &err) != TS_OK) {
        if (!err.msg[0])
            abort(); /* every refusal must say why */
        return 0;
    }
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (ts_gguf_find_kv(g, g->kv[i].key) != &g->kv[i])
            abort();
        const ts_gguf_value *v = &g->kv[i].value;
        if (v->type == TS_GGUF_STRING && strlen(v->str.s) != v->str.len)
            abort();
        if (v->type == TS_GGUF_ARRAY && v->arr.elem_type == TS_GGUF_STRING)
            for (uint64_t j = 0; j < v->arr.n; j++)
                sink ^= (uint8_t)((const ts_gguf_string *)v->arr.data)[j].s[0];
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ts_tensor *t = &g->tensors[i].t;
        if (ts_gguf_find_tensor(g, t->name) != (int64_t)i)
            abort();
        if (t->nbytes) { /* ASan flags these if the reader let a tensor escape the buffer */
            sink ^= ((const uint8_t *)t->data)[0];
            sink ^= ((const uint8_t *)t->data)[t->nbytes - 1];
        }
    }
    (void)sink;
    ts_gguf_close(g);
    return 0;
}
