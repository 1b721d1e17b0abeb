/* The pickle VM's allow-list and what "calling" an allowed global means:
 * tensor and storage rebuilds become tp_tensor / tp_storage records,
 * OrderedDict/set/torch.Size become plain containers, _codecs.encode becomes
 * bytes and _load_from_bytes a nested legacy read. Anything else is refused
 * by name. Nothing is ever executed. */
#include "torch_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(r, code, ...) tp_fail_at(r, code, __VA_ARGS__)

/* ---- the allow-list ------------------------------------------------------------ */

static const struct {
    const char *module, *name;
    tp_global_id id;
    ts_dtype dtype;
} allowed[] = {
    {"torch._utils", "_rebuild_tensor_v2", TG_REBUILD_V2, TS_DTYPE_INVALID},
    {"torch._utils", "_rebuild_tensor_v3", TG_REBUILD_V3, TS_DTYPE_INVALID},
    {"torch._utils", "_rebuild_parameter", TG_REBUILD_PARAM, TS_DTYPE_INVALID},
    {"torch._utils", "_rebuild_parameter_with_state", TG_REBUILD_PARAM_STATE, TS_DTYPE_INVALID},
    {"torch.storage", "_load_from_bytes", TG_LOAD_FROM_BYTES, TS_DTYPE_INVALID},
    {"collections", "OrderedDict", TG_ORDERED_DICT, TS_DTYPE_INVALID},
    {"builtins", "set", TG_SET, TS_DTYPE_INVALID},
    {"__builtin__", "set", TG_SET, TS_DTYPE_INVALID},
    {"builtins", "frozenset", TG_FROZENSET, TS_DTYPE_INVALID},
    {"__builtin__", "frozenset", TG_FROZENSET, TS_DTYPE_INVALID},
    {"_codecs", "encode", TG_CODECS_ENCODE, TS_DTYPE_INVALID},
    {"torch", "Size", TG_SIZE, TS_DTYPE_INVALID},
    /* storage classes, as persistent ids name them */
    {"torch", "FloatStorage", TG_STORAGE_CLASS, TS_F32},
    {"torch", "DoubleStorage", TG_STORAGE_CLASS, TS_F64},
    {"torch", "HalfStorage", TG_STORAGE_CLASS, TS_F16},
    {"torch", "BFloat16Storage", TG_STORAGE_CLASS, TS_BF16},
    {"torch", "CharStorage", TG_STORAGE_CLASS, TS_I8},
    {"torch", "ShortStorage", TG_STORAGE_CLASS, TS_I16},
    {"torch", "IntStorage", TG_STORAGE_CLASS, TS_I32},
    {"torch", "LongStorage", TG_STORAGE_CLASS, TS_I64},
    {"torch", "ByteStorage", TG_STORAGE_CLASS, TS_U8},
    {"torch", "BoolStorage", TG_STORAGE_CLASS, TS_BOOL},
    {"torch", "UntypedStorage", TG_STORAGE_CLASS, TS_U8},
    /* dtypes, as _rebuild_tensor_v3 names them */
    {"torch", "float32", TG_DTYPE, TS_F32},
    {"torch", "float64", TG_DTYPE, TS_F64},
    {"torch", "float16", TG_DTYPE, TS_F16},
    {"torch", "bfloat16", TG_DTYPE, TS_BF16},
    {"torch", "int8", TG_DTYPE, TS_I8},
    {"torch", "int16", TG_DTYPE, TS_I16},
    {"torch", "int32", TG_DTYPE, TS_I32},
    {"torch", "int64", TG_DTYPE, TS_I64},
    {"torch", "uint8", TG_DTYPE, TS_U8},
    {"torch", "bool", TG_DTYPE, TS_BOOL},
    {"torch", "uint16", TG_DTYPE, TS_U16},
    {"torch", "uint32", TG_DTYPE, TS_U32},
    {"torch", "uint64", TG_DTYPE, TS_U64},
    {"torch", "float8_e4m3fn", TG_DTYPE, TS_F8_E4M3},
    {"torch", "float8_e5m2", TG_DTYPE, TS_F8_E5M2},
};

#define N_ALLOWED (sizeof allowed / sizeof allowed[0])

uint32_t tp_dtype_size(ts_dtype t)
{
    const ts_dtype_info *i = ts_dtype_get(t);
    return i && i->block_size == 1 ? i->block_bytes : 0;
}

const char *tp_global_name(const tp_obj *g, char *buf, size_t n)
{
    snprintf(buf, n, "%s.%s", allowed[g->u.g.entry].module, allowed[g->u.g.entry].name);
    return buf;
}

const char *tp_kind_name(const tp_obj *o)
{
    static const char *const names[] = {"None", "bool", "int", "int", "float", "str", "bytes", "tuple", "list",
                                        "dict", "set", "global", "storage", "tensor"};
    return o && o->kind < sizeof names / sizeof names[0] ? names[o->kind] : "?";
}

/* ---- storages (persistent ids) --------------------------------------------------------- */

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

int64_t tp_storage_find(const tp_vm *vm, const char *key)
{
    if (!vm->hash_cap)
        return -1;
    for (size_t i = hash_key(key) & (vm->hash_cap - 1);; i = (i + 1) & (vm->hash_cap - 1)) {
        uint32_t slot = vm->hash[i];
        if (!slot)
            return -1;
        if (!strcmp(vm->storages[slot - 1].key, key))
            return slot - 1;
    }
}

static bool storage_add(tp_vm *vm, const tp_storage *s, uint32_t *index)
{
    if (vm->n_storages >= TP_MAX_MEMO)
        return false;
    if (!tp_grow(vm, (void **)&vm->storages, &vm->cap_storages, vm->n_storages + 1, sizeof *vm->storages, TP_MAX_MEMO))
        return false;
    if ((vm->n_storages + 1) * 2 > vm->hash_cap) {
        size_t ncap = vm->hash_cap ? vm->hash_cap * 2 : 64;
        uint32_t *nh = calloc(ncap, sizeof *nh);
        if (!nh || vm->allocated + ncap * sizeof *nh > TP_MAX_ALLOC) {
            free(nh);
            return false;
        }
        vm->allocated += ncap * sizeof *nh;
        free(vm->hash);
        vm->hash = nh;
        vm->hash_cap = ncap;
        for (size_t k = 0; k < vm->n_storages; k++)
            for (size_t i = hash_key(vm->storages[k].key) & (ncap - 1);; i = (i + 1) & (ncap - 1))
                if (!nh[i]) {
                    nh[i] = (uint32_t)k + 1;
                    break;
                }
    }
    *index = (uint32_t)vm->n_storages;
    vm->storages[vm->n_storages++] = *s;
    for (size_t i = hash_key(s->key) & (vm->hash_cap - 1);; i = (i + 1) & (vm->hash_cap - 1))
        if (!vm->hash[i]) {
            vm->hash[i] = *index + 1;
            break;
        }
    return true;
}

ts_status tp_add_bound_storage(tp_vm *vm, ts_dtype dtype, uint64_t numel, const uint8_t *data, uint32_t *index,
                               ts_err *err)
{
    char key[48];
    snprintf(key, sizeof key, "<bytes %zu>", vm->n_nested); /* '<' never starts a real key */
    tp_storage s = {.dtype = dtype, .elsize = tp_dtype_size(dtype), .numel = numel, .root = -1, .data = data};
    s.nbytes = numel * s.elsize; /* checked by the caller against the blob */
    s.key = strdup(key);
    if (!s.key || !storage_add(vm, &s, index)) {
        free(s.key);
        return ts_fail(err, TS_ERR_LIMIT, "%s: too many storages", vm->what);
    }
    return TS_OK;
}

/* Copies a str/bytes key into a C string; refuses NULs and long keys. */
static ts_status key_text(tp_run_ctx *r, const tp_obj *o, const char *what, char *buf, size_t n)
{
    if (!tp_is_text(o))
        return FAIL(r, TS_ERR_FORMAT, "%s: expected a string, got %s", what, tp_kind_name(o));
    if (o->u.s.n >= n || memchr(o->u.s.p, 0, o->u.s.n))
        return FAIL(r, TS_ERR_FORMAT, "%s: %llu bytes or embedded NUL", what, (unsigned long long)o->u.s.n);
    memcpy(buf, o->u.s.p, o->u.s.n);
    buf[o->u.s.n] = 0;
    return TS_OK;
}

static ts_status declare_storage(tp_run_ctx *r, const char *key, ts_dtype dtype, uint64_t numel, int64_t root,
                                 uint64_t view_offset, uint32_t *index)
{
    tp_vm *vm = r->vm;
    int64_t found = tp_storage_find(vm, key);
    uint32_t es = tp_dtype_size(dtype);
    if (found >= 0) {
        const tp_storage *s = &vm->storages[found];
        if (s->dtype != dtype || s->numel != numel || s->root != root || s->view_offset != view_offset)
            return FAIL(r, TS_ERR_FORMAT, "storage '%s' is declared twice differently (%s x %llu, then %s x %llu)",
                        key, ts_dtype_name(s->dtype), (unsigned long long)s->numel, ts_dtype_name(dtype),
                        (unsigned long long)numel);
        *index = (uint32_t)found;
        return TS_OK;
    }
    tp_storage s = {.dtype = dtype, .elsize = es, .numel = numel, .root = root, .view_offset = view_offset};
    if (!ts_mul_u64(numel, es, &s.nbytes))
        return FAIL(r, TS_ERR_FORMAT, "storage '%s': %llu elements overflow", key, (unsigned long long)numel);
    s.key = strdup(key);
    if (!s.key || !storage_add(vm, &s, index)) {
        free(s.key);
        return tp_oom(r);
    }
    return TS_OK;
}

static ts_status int_arg(tp_run_ctx *r, const tp_obj *o, const char *what, int64_t min, int64_t *out)
{
    if (!o || (o->kind != TP_INT && o->kind != TP_BOOL))
        return FAIL(r, TS_ERR_FORMAT, "%s: expected an int, got %s", what, tp_kind_name(o));
    *out = o->kind == TP_BOOL ? o->u.b : o->u.i;
    if (*out < min)
        return FAIL(r, TS_ERR_FORMAT, "%s: %lld is below %lld", what, (long long)*out, (long long)min);
    return TS_OK;
}

/* BINPERSID: ('storage', StorageClass, key, location, numel[, view_metadata]). */
ts_status tp_persistent_load(tp_run_ctx *r, tp_obj *pid)
{
    if (!r->vm->allow_pids)
        return FAIL(r, TS_ERR_FORMAT, "persistent id in a plain pickle (nothing to resolve it against)");
    if (pid->kind != TP_TUPLE || pid->u.seq.n < 1)
        return FAIL(r, TS_ERR_FORMAT, "persistent id: expected a tuple, got %s", tp_kind_name(pid));
    tp_obj **a = pid->u.seq.v;
    size_t n = pid->u.seq.n;
    if (tp_text_eq(a[0], "module")) {
        return FAIL(r, TS_ERR_UNSUPPORTED, "the file stores a whole nn.Module, not a state dict; "
                    "save model.state_dict() instead");
    }
    if (!tp_text_eq(a[0], "storage"))
        return FAIL(r, TS_ERR_UNSUPPORTED, "persistent id of an unknown type (expected 'storage')");
    if (n != 5 && n != 6)
        return FAIL(r, TS_ERR_FORMAT, "storage persistent id has %zu fields, expected 5 or 6", n);
    if (a[1]->kind != TP_GLOBAL || a[1]->u.g.id != TG_STORAGE_CLASS)
        return FAIL(r, TS_ERR_FORMAT, "storage persistent id: expected a storage class, got %s", tp_kind_name(a[1]));
    char key[256];
    ts_status st = key_text(r, a[2], "storage key", key, sizeof key);
    if (st)
        return st;
    if (!tp_is_text(a[3]))
        return FAIL(r, TS_ERR_FORMAT, "storage '%s': location is not a string", key);
    int64_t numel = 0;
    if ((st = int_arg(r, a[4], "storage numel", 0, &numel)))
        return st;
    ts_dtype dt = a[1]->u.g.dtype;
    uint32_t index;
    if ((st = declare_storage(r, key, dt, (uint64_t)numel, -1, 0, &index)))
        return st;
    if (n == 6 && a[5]->kind != TP_NONE) {
        /* legacy view: (view_key, offset, size) in elements of the root */
        if (!r->vm->legacy)
            return FAIL(r, TS_ERR_FORMAT, "storage '%s': view metadata outside the legacy format", key);
        tp_obj *v = a[5];
        if (v->kind != TP_TUPLE || v->u.seq.n != 3)
            return FAIL(r, TS_ERR_FORMAT, "storage '%s': view metadata is not a 3-tuple", key);
        char vkey[256];
        int64_t off = 0, size = 0;
        if ((st = key_text(r, v->u.seq.v[0], "view key", vkey, sizeof vkey)) ||
            (st = int_arg(r, v->u.seq.v[1], "view offset", 0, &off)) ||
            (st = int_arg(r, v->u.seq.v[2], "view size", 0, &size)))
            return st;
        if ((uint64_t)off > (uint64_t)numel || (uint64_t)size > (uint64_t)numel - (uint64_t)off)
            return FAIL(r, TS_ERR_FORMAT, "storage view '%s': [%lld, +%lld) lies outside its root '%s' of %lld elements",
                        vkey, (long long)off, (long long)size, key, (long long)numel);
        uint32_t root = index;
        if ((st = declare_storage(r, vkey, dt, (uint64_t)size, root, (uint64_t)off * tp_dtype_size(dt), &index)))
            return st;
    }
    tp_obj *o = tp_new(r, TP_STORAGE);
    if (!o)
        return tp_oom(r);
    o->u.storage = index;
    return tp_push(r, o);
}

/* ---- REDUCE of allowed callables --------------------------------------------------------- */

static ts_status int_tuple(tp_run_ctx *r, const tp_obj *o, const char *what, int64_t *out, int *n)
{
    if (!o || o->kind != TP_TUPLE)
        return FAIL(r, TS_ERR_FORMAT, "tensor %s: expected a tuple, got %s", what, tp_kind_name(o));
    if (o->u.seq.n > TP_MAX_TENSOR_DIMS)
        return FAIL(r, TS_ERR_UNSUPPORTED, "tensor %s: %zu dimensions (at most %d)", what, o->u.seq.n,
                    TP_MAX_TENSOR_DIMS);
    *n = (int)o->u.seq.n;
    for (int i = 0; i < *n; i++) {
        ts_status st = int_arg(r, o->u.seq.v[i], what, 0, &out[i]);
        if (st)
            return st;
    }
    return TS_OK;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
 * _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata]) */
static ts_status rebuild_tensor(tp_run_ctx *r, const tp_obj *args, bool v3, tp_obj **out)
{
    size_t n = args->u.seq.n;
    if (v3 ? (n != 7 && n != 8) : (n != 6 && n != 7))
        return FAIL(r, TS_ERR_FORMAT, "_rebuild_tensor_%s: %zu arguments", v3 ? "v3" : "v2", n);
    tp_obj **a = args->u.seq.v;
    if (a[0]->kind != TP_STORAGE)
        return FAIL(r, TS_ERR_FORMAT, "_rebuild_tensor: first argument is a %s, not a storage", tp_kind_name(a[0]));
    tp_tensor *t = tp_alloc(r->vm, sizeof *t);
    if (!t)
        return tp_oom(r);
    memset(t, 0, sizeof *t);
    const tp_storage *s = &r->vm->storages[a[0]->u.storage];
    t->storage = a[0]->u.storage;
    t->dtype = s->dtype;
    if (v3) {
        if (a[6]->kind != TP_GLOBAL || a[6]->u.g.id != TG_DTYPE)
            return FAIL(r, TS_ERR_FORMAT, "_rebuild_tensor_v3: dtype argument is a %s", tp_kind_name(a[6]));
        t->dtype = a[6]->u.g.dtype;
    }
    int64_t off = 0;
    int nd_stride;
    ts_status st;
    if ((st = int_arg(r, a[1], "storage offset", 0, &off)) ||
        (st = int_tuple(r, a[2], "size", t->size, &t->n_dims)) ||
        (st = int_tuple(r, a[3], "stride", t->stride, &nd_stride)))
        return st;
    if (nd_stride != t->n_dims)
        return FAIL(r, TS_ERR_FORMAT, "tensor has %d sizes but %d strides", t->n_dims, nd_stride);
    if (a[4]->kind != TP_BOOL && a[4]->kind != TP_INT)
        return FAIL(r, TS_ERR_FORMAT, "tensor requires_grad is a %s", tp_kind_name(a[4]));
    t->offset = (uint64_t)off;
    /* bounds: the last element must lie inside the storage (empty tensors touch nothing) */
    uint64_t es = tp_dtype_size(t->dtype), numel = 1, last = t->offset;
    for (int i = 0; i < t->n_dims; i++) {
        uint64_t span;
        if (!ts_mul_u64(numel, (uint64_t)t->size[i], &numel) ||
            (t->size[i] && (!ts_mul_u64((uint64_t)t->size[i] - 1, (uint64_t)t->stride[i], &span) ||
                            !ts_add_u64(last, span, &last))))
            return FAIL(r, TS_ERR_FORMAT, "tensor sizes/strides overflow");
    }
    uint64_t end;
    if (numel && (!ts_add_u64(last, 1, &end) || !ts_mul_u64(end, es, &end) || end > s->nbytes))
        return FAIL(r, TS_ERR_FORMAT, "tensor reaches element %llu of storage '%s', which holds %llu bytes of %s",
                    (unsigned long long)last, s->key, (unsigned long long)s->nbytes, ts_dtype_name(s->dtype));
    tp_obj *o = tp_new(r, TP_TENSOR);
    if (!o)
        return tp_oom(r);
    o->u.tensor = t;
    *out = o;
    return TS_OK;
}

/* _codecs.encode(str, 'latin1'): how protocol 2 carries bytes. Code points
 * above 255 are refused, as Python would. */
static ts_status latin1_bytes(tp_run_ctx *r, const tp_obj *args, tp_obj **out)
{
    if (args->u.seq.n != 2 || args->u.seq.v[0]->kind != TP_STR ||
        !(tp_text_eq(args->u.seq.v[1], "latin1") || tp_text_eq(args->u.seq.v[1], "latin-1")))
        return FAIL(r, TS_ERR_UNSUPPORTED, "_codecs.encode: only (str, 'latin1') is allowed");
    const uint8_t *p = args->u.seq.v[0]->u.s.p;
    uint64_t n = args->u.seq.v[0]->u.s.n, k = 0;
    uint8_t *b = tp_alloc(r->vm, n + 1);
    tp_obj *o = tp_new(r, TP_BYTES);
    if (!b || !o)
        return tp_oom(r);
    for (uint64_t i = 0; i < n; k++) {
        if (p[i] < 0x80) {
            b[k] = p[i++];
        } else if ((p[i] & 0xfe) == 0xc2 && i + 1 < n && (p[i + 1] & 0xc0) == 0x80) {
            b[k] = (uint8_t)((p[i] & 0x03) << 6 | (p[i + 1] & 0x3f));
            i += 2;
        } else {
            return FAIL(r, TS_ERR_FORMAT, "_codecs.encode: string is not latin-1 text");
        }
    }
    o->u.s.p = b;
    o->u.s.n = k;
    *out = o;
    return TS_OK;
}

ts_status tp_reduce(tp_run_ctx *r)
{
    tp_obj *args = NULL, *fn = NULL, *res = NULL;
    ts_status st;
    if ((st = tp_pop(r, &args)) || (st = tp_pop(r, &fn)))
        return st;
    if (fn->kind != TP_GLOBAL)
        return FAIL(r, TS_ERR_UNSUPPORTED, "REDUCE calls a %s, not an allowed global", tp_kind_name(fn));
    char name[160];
    tp_global_name(fn, name, sizeof name);
    if (args->kind != TP_TUPLE)
        return FAIL(r, TS_ERR_FORMAT, "REDUCE %s: arguments are a %s, not a tuple", name, tp_kind_name(args));
    size_t n = args->u.seq.n;
    tp_obj **a = args->u.seq.v;
    switch ((tp_global_id)fn->u.g.id) {
    case TG_REBUILD_V2:
    case TG_REBUILD_V3:
        st = rebuild_tensor(r, args, fn->u.g.id == TG_REBUILD_V3, &res);
        break;
    case TG_REBUILD_PARAM:
    case TG_REBUILD_PARAM_STATE:
        if (n != (fn->u.g.id == TG_REBUILD_PARAM ? 3u : 4u) || a[0]->kind != TP_TENSOR)
            return FAIL(r, TS_ERR_FORMAT, "%s: expected (tensor, requires_grad, hooks%s)", name,
                        fn->u.g.id == TG_REBUILD_PARAM ? "" : ", state");
        res = a[0];
        break;
    case TG_ORDERED_DICT:
        res = tp_new(r, TP_DICT);
        if (!res)
            return tp_oom(r);
        if (n == 1 && (a[0]->kind == TP_LIST || a[0]->kind == TP_TUPLE)) {
            for (size_t i = 0; i < a[0]->u.seq.n && st == TS_OK; i++) {
                tp_obj *kv = a[0]->u.seq.v[i];
                if (kv->kind != TP_TUPLE || kv->u.seq.n != 2)
                    return FAIL(r, TS_ERR_FORMAT, "OrderedDict: item %zu is not a (key, value) pair", i);
                if (!(st = tp_vec_push(r, &res->u.seq, kv->u.seq.v[0])))
                    st = tp_vec_push(r, &res->u.seq, kv->u.seq.v[1]);
            }
        } else if (n != 0) {
            return FAIL(r, TS_ERR_FORMAT, "OrderedDict: %zu arguments", n);
        }
        break;
    case TG_SET:
    case TG_FROZENSET:
        res = tp_new(r, TP_SET);
        if (!res)
            return tp_oom(r);
        if (n == 1 && (a[0]->kind == TP_LIST || a[0]->kind == TP_TUPLE || a[0]->kind == TP_SET)) {
            res->u.seq = a[0]->u.seq;
            res->u.seq.cap = res->u.seq.n; /* a later ADDITEMS reallocates instead of writing into the list */
        } else if (n != 0) {
            return FAIL(r, TS_ERR_FORMAT, "%s: expected () or (list,)", name);
        }
        break;
    case TG_SIZE:
        if (n != 1 || a[0]->kind != TP_TUPLE)
            return FAIL(r, TS_ERR_FORMAT, "torch.Size: expected (tuple,)");
        res = a[0];
        break;
    case TG_CODECS_ENCODE:
        st = latin1_bytes(r, args, &res);
        break;
    case TG_LOAD_FROM_BYTES: {
        if (n != 1 || a[0]->kind != TP_BYTES)
            return FAIL(r, TS_ERR_FORMAT, "%s: expected (bytes,)", name);
        if (r->vm->nested >= TP_MAX_NESTED)
            return FAIL(r, TS_ERR_UNSUPPORTED, "%s inside a nested blob is refused (nesting limit %d)", name,
                        TP_MAX_NESTED);
        uint32_t index;
        if ((st = tl_load_nested(r->vm, a[0]->u.s.p, a[0]->u.s.n, &index, r->err)))
            return ts_err_prefix(r->err, "%s: pickle byte %llu: torch.storage._load_from_bytes (nested blob)",
                                 r->vm->what, (unsigned long long)(r->vm->base_offset + r->op_pos));
        res = tp_new(r, TP_STORAGE);
        if (!res)
            return tp_oom(r);
        res->u.storage = index;
        break;
    }
    case TG_STORAGE_CLASS:
    case TG_DTYPE:
    default:
        return FAIL(r, TS_ERR_UNSUPPORTED, "calling %s is not allowed", name);
    }
    if (st)
        return st;
    return tp_push(r, res);
}

/* ---- GLOBAL / STACK_GLOBAL ------------------------------------------------------------------ */

static ts_status push_global(tp_run_ctx *r, const uint8_t *mod, size_t nmod, const uint8_t *name, size_t nname)
{
    for (size_t i = 0; i < N_ALLOWED; i++) {
        if (strlen(allowed[i].module) == nmod && !memcmp(allowed[i].module, mod, nmod) &&
            strlen(allowed[i].name) == nname && !memcmp(allowed[i].name, name, nname)) {
            tp_obj *o = tp_new(r, TP_GLOBAL);
            if (!o)
                return tp_oom(r);
            o->u.g.id = (uint16_t)allowed[i].id;
            o->u.g.entry = (uint16_t)i;
            o->u.g.dtype = allowed[i].dtype;
            return tp_push(r, o);
        }
    }
    /* print the name with control bytes escaped: it comes from the file */
    char shown[200];
    size_t k = 0;
    for (size_t i = 0; i < nmod + 1 + nname && k + 5 < sizeof shown; i++) {
        uint8_t c = i < nmod ? mod[i] : i == nmod ? '.' : name[i - nmod - 1];
        k += (size_t)snprintf(shown + k, sizeof shown - k, c >= 0x20 && c < 0x7f ? "%c" : "\\x%02x", c);
    }
    shown[k] = 0;
    return FAIL(r, TS_ERR_UNSUPPORTED, "global '%s' is not on the allow-list; refusing the checkpoint "
                "(loading it with torch.load would import and possibly run it)", shown);
}

ts_status tp_op_global(tp_run_ctx *r)
{
    const uint8_t *p = r->d + r->pos, *end = r->d + r->n;
    const uint8_t *nl1 = memchr(p, '\n', (size_t)(end - p) < 256 ? (size_t)(end - p) : 256);
    if (!nl1)
        return FAIL(r, TS_ERR_FORMAT, "GLOBAL: module name not terminated within 256 bytes");
    const uint8_t *q = nl1 + 1;
    const uint8_t *nl2 = memchr(q, '\n', (size_t)(end - q) < 256 ? (size_t)(end - q) : 256);
    if (!nl2)
        return FAIL(r, TS_ERR_FORMAT, "GLOBAL: name not terminated within 256 bytes");
    r->pos = (size_t)(nl2 + 1 - r->d);
    return push_global(r, p, (size_t)(nl1 - p), q, (size_t)(nl2 - q));
}

ts_status tp_op_stack_global(tp_run_ctx *r)
{
    tp_obj *name = NULL, *mod = NULL;
    ts_status st;
    if ((st = tp_pop(r, &name)) || (st = tp_pop(r, &mod)))
        return st;
    if (mod->kind != TP_STR || name->kind != TP_STR || mod->u.s.n > 256 || name->u.s.n > 256)
        return FAIL(r, TS_ERR_FORMAT, "STACK_GLOBAL: module and name must be short strings");
    return push_global(r, mod->u.s.p, mod->u.s.n, name->u.s.p, name->u.s.n);
}


