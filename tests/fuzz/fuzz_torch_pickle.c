/* libFuzzer target for the restricted pickle VM. The input is one pickle.
 * It runs twice: as a plain pickle file (tensors only through
 * _load_from_bytes), and as the object pickle of a legacy torch.save file
 * that this harness completes around it (magic, protocol, sys_info before;
 * the storage key list and zero-filled storages after), so persistent ids,
 * storage views and tensor rebuilds are reached too. Every accepted tensor's
 * bytes are read in C order. Build and runs: docs/security.md. */
#include "formats/torch.h"
#include "formats/torch_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STORAGE_BYTES (1u << 20)

static void read_all(const uint8_t *file, size_t n, const char *name)
{
    ts_torch_model *m = NULL;
    ts_err err;
    err.msg[0] = 0;
    if (ts_torch_open_memory(file, n, name, &m, &err) != TS_OK) {
        if (!err.msg[0])
            abort(); /* every refusal says why */
        return;
    }
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const void *p;
        void *owned = NULL;
        if (ts_torch_data(m, &m->tensors[i], &p, &owned, &err) == TS_OK && m->tensors[i].t.nbytes)
            sink ^= ((const uint8_t *)p)[0] ^ ((const uint8_t *)p)[m->tensors[i].t.nbytes - 1];
        free(owned);
    }
    (void)sink;
    ts_torch_close(m);
}

static void append(uint8_t **buf, size_t *n, size_t *cap, const void *p, size_t k)
{
    if (*n + k > *cap) {
        *cap = (*n + k) * 2;
        *buf = realloc(*buf, *cap);
        if (!*buf)
            abort();
    }
    memcpy(*buf + *n, p, k);
    *n += k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    read_all(data, size, "fuzz.pkl");
    /* learn the storages the pickle declares, then wrap it as a legacy file */
    tp_vm vm;
    tp_vm_init(&vm, "fuzz", true, true);
    tp_obj *root;
    size_t used;
    ts_err err;
    if (tp_run(&vm, data, size, &used, &root, &err) != TS_OK) {
        tp_vm_free(&vm);
        return 0;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < vm.n_storages; i++)
        total += vm.storages[i].root < 0 ? vm.storages[i].nbytes : 0;
    if (total > MAX_STORAGE_BYTES || vm.n_storages > 4096) {
        tp_vm_free(&vm);
        return 0;
    }
    static const uint8_t head[] = {
        0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.', /* magic */
        0x80, 0x02, 'M', 0xe9, 0x03, '.',                                                       /* 1001 */
        0x80, 0x02, '}', 'X', 13, 0, 0, 0, 'l', 'i', 't', 't', 'l', 'e', '_', 'e', 'n', 'd', 'i', 'a', 'n', 0x88, 's', '.'};
    uint8_t *f = NULL;
    size_t n = 0, cap = 0;
    append(&f, &n, &cap, head, sizeof head);
    append(&f, &n, &cap, data, used);
    append(&f, &n, &cap, "\x80\x02]", 3);
    for (size_t i = 0; i < vm.n_storages; i++) {
        if (vm.storages[i].root >= 0)
            continue;
        uint32_t len = (uint32_t)strlen(vm.storages[i].key);
        uint8_t x[5] = {'X', (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)};
        append(&f, &n, &cap, x, 5);
        append(&f, &n, &cap, vm.storages[i].key, len);
        append(&f, &n, &cap, "a", 1);
    }
    append(&f, &n, &cap, ".", 1);
    for (size_t i = 0; i < vm.n_storages; i++) {
        if (vm.storages[i].root >= 0)
            continue;
        uint8_t le[8];
        for (int k = 0; k < 8; k++)
            le[k] = (uint8_t)(vm.storages[i].numel >> (8 * k));
        append(&f, &n, &cap, le, 8);
        static uint8_t fill[4096];
        memset(fill, 0x5a, sizeof fill);
        for (uint64_t k = 0; k < vm.storages[i].nbytes; k += sizeof fill)
            append(&f, &n, &cap, fill, vm.storages[i].nbytes - k < sizeof fill ? vm.storages[i].nbytes - k : sizeof fill);
    }
    tp_vm_free(&vm);
    read_all(f, n, "fuzz-legacy.pt");
    free(f);
    return 0;
}
