/* libFuzzer target: any bytes through the PyTorch zip reader (our central
 * directory parse, libarchive's cross-check, data.pkl through the pickle VM,
 * storages bound to records) and every accepted tensor's bytes read in C
 * order. Built with -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION so a wrong
 * CRC-32 does not stop mutations at the door. Build and runs: docs/security.md. */
#include "formats/torch.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ts_torch_model *m = NULL;
    ts_err err;
    err.msg[0] = 0;
    if (ts_torch_open_memory(data, size, "fuzz.pt", &m, &err) != TS_OK) {
        if (!err.msg[0])
            abort(); /* every refusal says why */
        return 0;
    }
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ts_torch_tensor *t = &m->tensors[i];
        if (ts_torch_find(m, t->t.name) != t)
            abort();
        const void *p;
        void *owned = NULL;
        if (ts_torch_data(m, t, &p, &owned, &err) != TS_OK)
            continue;
        if (t->t.nbytes) /* ASan checks these reads stay inside the input or the buffer */
            sink ^= ((const uint8_t *)p)[0] ^ ((const uint8_t *)p)[t->t.nbytes - 1];
        if (!owned && t->t.nbytes && ((const uint8_t *)p < data || (const uint8_t *)p + t->t.nbytes > data + size))
            abort(); /* mapped bytes must lie in the file */
        free(owned);
    }
    (void)sink;
    ts_torch_close(m);
    return 0;
}
