/* libFuzzer target: any bytes through the safetensors parser. Every tensor it
 * accepts must lie inside the input and be found again by name. Build: README.md. */
#include "formats/safetensors.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ts_st_model *m = NULL;
    ts_err err;
    if (ts_st_open_memory(data, size, "fuzz.safetensors", &m, &err) != TS_OK)
        return 0;
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ts_st_tensor *t = &m->tensors[i];
        const uint8_t *p = t->t.data;
        if (p < data || t->offset + t->t.nbytes > size || ts_st_find(m, t->t.name) != t)
            abort();
        if (t->t.nbytes) /* ASan checks these reads stay inside the input */
            sink ^= p[0] ^ p[t->t.nbytes - 1];
    }
    (void)sink;
    ts_st_close(m);
    return 0;
}
