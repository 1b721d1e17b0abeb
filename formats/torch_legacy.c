/* The legacy torch.save container (before torch 1.6, and with
 * _use_new_zipfile_serialization=False), and plain pickles of tensors:
 *
 *   pickle(MAGIC_NUMBER) pickle(PROTOCOL_VERSION=1001) pickle(sys_info)
 *   pickle(object, storages as persistent ids) pickle([storage keys])
 *   for each key in that list: u64 numel (little-endian), numel * elsize bytes
 *
 * Storages are mapped in place. docs/formats/pytorch.md has the details. */
#include "torch_internal.h"

#include <stdlib.h>
#include <string.h>

/* 0x1950a86a20f9469cfc6c as pickle's LONG1 writes it: little-endian two's complement. */
static const uint8_t MAGIC[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
#define LEGACY_PROTOCOL 1001

static bool is_magic(const tp_obj *o)
{
    return o && o->kind == TP_BIGINT && o->u.s.n == sizeof MAGIC && !memcmp(o->u.s.p, MAGIC, sizeof MAGIC);
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static ts_status run_at(tp_vm *vm, const uint8_t *base, uint64_t size, uint64_t *pos, tp_obj **o, ts_err *err)
{
    size_t used;
    vm->base_offset = *pos;
    ts_status st = tp_run(vm, base + *pos, (size_t)(size - *pos), &used, o, err);
    if (st)
        return st;
    *pos += used;
    return TS_OK;
}

/* Everything after the magic number: the pickles and the raw storages. On
 * success data[i] points at the bytes of vm storage i (views included). */
static ts_status parse_after_magic(tp_vm *vm, const uint8_t *base, uint64_t size, uint64_t pos, tp_obj **root,
                                   const uint8_t ***data_out, ts_err *err)
{
    *data_out = NULL;
    tp_obj *o = NULL;
    ts_status st;
    if ((st = run_at(vm, base, size, &pos, &o, err)))
        return st;
    if (o->kind != TP_INT || o->u.i != LEGACY_PROTOCOL)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: legacy protocol version is not %d", vm->what, LEGACY_PROTOCOL);
    if ((st = run_at(vm, base, size, &pos, &o, err)))
        return st;
    tp_obj *le = tp_dict_get(o, "little_endian");
    if (o->kind != TP_DICT || !le || le->kind != TP_BOOL)
        return ts_fail(err, TS_ERR_FORMAT, "%s: legacy sys_info is not a dict with little_endian", vm->what);
    if (!le->u.b)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: written on a big-endian machine; only little-endian "
                       "checkpoints are supported", vm->what);
    vm->allow_pids = true;
    if ((st = run_at(vm, base, size, &pos, root, err)))
        return st;
    vm->allow_pids = false;
    tp_obj *keys = NULL;
    if ((st = run_at(vm, base, size, &pos, &keys, err)))
        return st;
    if (keys->kind != TP_LIST)
        return ts_fail(err, TS_ERR_FORMAT, "%s: storage key list is a %s", vm->what, tp_kind_name(keys));
    const uint8_t **data = calloc(vm->n_storages ? vm->n_storages : 1, sizeof *data);
    if (!data)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    *data_out = data;
    for (size_t k = 0; k < keys->u.seq.n; k++) {
        const tp_obj *ko = keys->u.seq.v[k];
        char key[256];
        if (!tp_is_text(ko) || ko->u.s.n >= sizeof key)
            return ts_fail(err, TS_ERR_FORMAT, "%s: storage key %zu is not a short string", vm->what, k);
        memcpy(key, ko->u.s.p, ko->u.s.n);
        key[ko->u.s.n] = 0;
        int64_t found = tp_storage_find(vm, key);
        size_t i = (size_t)found;
        if (found < 0 || vm->storages[i].root >= 0)
            return ts_fail(err, TS_ERR_FORMAT, "%s: storage key '%s' is listed but no tensor uses it", vm->what, key);
        if (data[i])
            return ts_fail(err, TS_ERR_FORMAT, "%s: storage key '%s' is listed twice", vm->what, key);
        const tp_storage *s = &vm->storages[i];
        if (size - pos < 8 || le64(base + pos) != s->numel || size - pos - 8 < s->nbytes)
            return ts_fail(err, TS_ERR_FORMAT, "%s: storage '%s' at byte %llu: expected %llu elements of %s (%llu "
                           "bytes) in the file", vm->what, key, (unsigned long long)pos, (unsigned long long)s->numel,
                           ts_dtype_name(s->dtype), (unsigned long long)s->nbytes);
        data[i] = base + pos + 8;
        pos += 8 + s->nbytes;
    }
    for (size_t i = 0; i < vm->n_storages; i++) {
        const tp_storage *s = &vm->storages[i];
        if (s->root >= 0) {
            if (!data[s->root])
                return ts_fail(err, TS_ERR_FORMAT, "%s: storage '%s' has no data in the file", vm->what,
                               vm->storages[s->root].key);
            data[i] = data[s->root] + s->view_offset;
        } else if (!data[i] && !s->data) {
            return ts_fail(err, TS_ERR_FORMAT, "%s: storage '%s' has no data in the file", vm->what, s->key);
        }
    }
    return TS_OK;
}

ts_status tl_read(ts_torch_model *m, tp_vm *vm, const uint8_t *base, uint64_t size, tp_obj **root, ts_err *err)
{
    uint64_t pos = 0;
    tp_obj *first = NULL;
    vm->allow_pids = false;
    ts_status st = run_at(vm, base, size, &pos, &first, err);
    if (st)
        return st;
    if (!is_magic(first)) {
        /* a plain pickle: tensors can only come with their bytes (_load_from_bytes) */
        m->format = TS_TORCH_PICKLE;
        *root = first;
    } else {
        m->format = TS_TORCH_LEGACY;
        vm->legacy = true;
        const uint8_t **data;
        if ((st = parse_after_magic(vm, base, size, pos, root, &data, err))) {
            free(data);
            return st;
        }
        if ((st = tm_bind_storages(m, vm, err))) {
            free(data);
            return st;
        }
        for (size_t i = 0; i < vm->n_storages; i++) {
            if (!data[i])
                continue;
            m->storages[i].data = data[i];
            m->storages[i].in_file = true;
            m->storages[i].file_offset = (uint64_t)(data[i] - base);
        }
        free(data);
        return TS_OK;
    }
    return tm_bind_storages(m, vm, err);
}

ts_status tl_load_nested(tp_vm *outer, const uint8_t *blob, uint64_t n, uint32_t *storage, ts_err *err)
{
    tp_vm vm;
    tp_vm_init(&vm, outer->what, true, false);
    vm.nested = outer->nested + 1;
    tp_obj *o, *root = NULL;
    uint64_t pos = 0;
    const uint8_t **data = NULL;
    ts_status st = run_at(&vm, blob, n, &pos, &o, err);
    if (st == TS_OK && !is_magic(o))
        st = ts_fail(err, TS_ERR_UNSUPPORTED, "nested blob is not a legacy torch.save stream");
    if (st == TS_OK)
        st = parse_after_magic(&vm, blob, n, pos, &root, &data, err);
    if (st == TS_OK && (root->kind != TP_STORAGE))
        st = ts_fail(err, TS_ERR_FORMAT, "nested blob holds a %s, expected a storage", tp_kind_name(root));
    if (st == TS_OK) {
        const tp_storage *s = &vm.storages[root->u.storage];
        const uint8_t *p = s->data ? s->data : data[root->u.storage];
        outer->n_nested++;
        st = tp_add_bound_storage(outer, s->dtype, s->numel, p, storage, err);
    }
    free(data);
    tp_vm_free(&vm);
    return st;
}
