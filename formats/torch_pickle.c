/* A pickle VM for protocols 2-5 that builds plain data only (the opcode loop
 * and its stack/memo; the allow-list and what "calling" an allowed global
 * means are in torch_pickle_calls.c). It knows an
 * allow-list of globals (tensor and storage rebuilds, OrderedDict, a few
 * harmless builtins) and refuses every other global, every class
 * instantiation (INST, OBJ, NEWOBJ), BUILD on anything but a dict, extension
 * codes and out-of-band buffers, naming what it refused. Nothing the pickle
 * names is ever called: "calling" an allowed global is interpreted here. */
#include "torch_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(r, code, ...) tp_fail_at(r, code, __VA_ARGS__)

/* ---- allocation: an arena with a byte and an object budget ------------------ */

struct tp_chunk {
    tp_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

#define CHUNK_BYTES (64u << 10)

void *tp_alloc(tp_vm *vm, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (vm->allocated + n > TP_MAX_ALLOC)
        return NULL;
    tp_chunk *c = vm->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > CHUNK_BYTES ? n : CHUNK_BYTES;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = vm->chunks;
        c->used = 0;
        c->cap = cap;
        vm->chunks = c;
    }
    void *p = (uint8_t *)c->data + c->used;
    c->used += n;
    vm->allocated += n;
    return p;
}

/* Heap arrays that grow (stack, memo, storages) are charged to the same budget. */
bool tp_grow(tp_vm *vm, void **p, size_t *cap, size_t need, size_t elsize, size_t limit)
{
    if (need <= *cap)
        return true;
    if (need > limit)
        return false;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need)
        ncap *= 2;
    if (ncap > limit)
        ncap = limit;
    uint64_t extra = (uint64_t)(ncap - *cap) * elsize;
    if (vm->allocated + extra > TP_MAX_ALLOC)
        return false;
    void *np = realloc(*p, ncap * elsize);
    if (!np)
        return false;
    memset((uint8_t *)np + *cap * elsize, 0, (ncap - *cap) * elsize);
    vm->allocated += extra;
    *p = np;
    *cap = ncap;
    return true;
}

void tp_vm_init(tp_vm *vm, const char *what, bool legacy, bool allow_pids)
{
    memset(vm, 0, sizeof *vm);
    vm->what = what;
    vm->legacy = legacy;
    vm->allow_pids = allow_pids;
}

void tp_vm_free(tp_vm *vm)
{
    for (tp_chunk *c = vm->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    for (size_t i = 0; i < vm->n_storages; i++)
        free(vm->storages[i].key);
    free(vm->storages);
    free(vm->hash);
    free(vm->stack);
    free(vm->marks);
    free(vm->memo);
    memset(vm, 0, sizeof *vm);
}

/* ---- run state and helpers -------------------------------------------------------- */

ts_status tp_fail_at(tp_run_ctx *r, ts_status code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ts_fail(r->err, code, "%s: pickle byte %llu: %s", r->vm->what,
                   (unsigned long long)(r->vm->base_offset + r->op_pos), msg);
}

tp_obj *tp_new(tp_run_ctx *r, tp_kind kind)
{
    if (r->vm->n_objects >= TP_MAX_OBJECTS)
        return NULL;
    tp_obj *o = tp_alloc(r->vm, sizeof *o);
    if (!o)
        return NULL;
    memset(o, 0, sizeof *o);
    o->kind = (uint8_t)kind;
    r->vm->n_objects++;
    return o;
}

ts_status tp_oom(tp_run_ctx *r)
{
    return FAIL(r, TS_ERR_LIMIT, "object budget exhausted (%llu objects, %llu bytes; limits %u objects, %llu bytes)",
                (unsigned long long)r->vm->n_objects, (unsigned long long)r->vm->allocated, TP_MAX_OBJECTS,
                (unsigned long long)TP_MAX_ALLOC);
}

static ts_status need(tp_run_ctx *r, uint64_t k)
{
    if (k > r->n - r->pos)
        return FAIL(r, TS_ERR_FORMAT, "truncated: opcode 0x%02x needs %llu more bytes, %zu left", r->d[r->op_pos],
                    (unsigned long long)k, r->n - r->pos);
    return TS_OK;
}

static uint64_t rd_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static size_t frame_base(const tp_run_ctx *r)
{
    return r->vm->n_marks ? r->vm->marks[r->vm->n_marks - 1] : 0;
}

ts_status tp_push(tp_run_ctx *r, tp_obj *o)
{
    tp_vm *vm = r->vm;
    if (!o)
        return tp_oom(r);
    if (vm->sp >= TP_MAX_STACK)
        return FAIL(r, TS_ERR_LIMIT, "stack holds more than %u items (nesting or size limit)", TP_MAX_STACK);
    if (!tp_grow(vm, (void **)&vm->stack, &vm->stack_cap, vm->sp + 1, sizeof *vm->stack, TP_MAX_STACK))
        return tp_oom(r);
    vm->stack[vm->sp++] = o;
    return TS_OK;
}

ts_status tp_pop(tp_run_ctx *r, tp_obj **o)
{
    if (r->vm->sp <= frame_base(r))
        return FAIL(r, TS_ERR_FORMAT, "stack underflow (opcode 0x%02x)", r->d[r->op_pos]);
    *o = r->vm->stack[--r->vm->sp];
    return TS_OK;
}

static ts_status top(tp_run_ctx *r, tp_obj **o)
{
    if (r->vm->sp <= frame_base(r))
        return FAIL(r, TS_ERR_FORMAT, "stack underflow (opcode 0x%02x)", r->d[r->op_pos]);
    *o = r->vm->stack[r->vm->sp - 1];
    return TS_OK;
}

/* Pops the items above the last MARK and the MARK: items are stack[*first .. sp). */
static ts_status pop_mark(tp_run_ctx *r, size_t *first)
{
    tp_vm *vm = r->vm;
    if (!vm->n_marks)
        return FAIL(r, TS_ERR_FORMAT, "opcode 0x%02x without a MARK", r->d[r->op_pos]);
    *first = vm->marks[--vm->n_marks];
    return TS_OK;
}

ts_status tp_vec_push(tp_run_ctx *r, tp_vec *v, tp_obj *o)
{
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 4;
        tp_obj **nv = tp_alloc(r->vm, ncap * sizeof *nv);
        if (!nv)
            return tp_oom(r);
        if (v->n)
            memcpy(nv, v->v, v->n * sizeof *nv);
        v->v = nv;
        v->cap = ncap;
    }
    v->v[v->n++] = o;
    return TS_OK;
}

/* A tuple/list/set/frozenset from stack[first .. sp). */
static ts_status seq_from_stack(tp_run_ctx *r, tp_kind kind, size_t first)
{
    tp_vm *vm = r->vm;
    tp_obj *o = tp_new(r, kind);
    if (!o)
        return tp_oom(r);
    size_t n = vm->sp - first;
    if (n) {
        o->u.seq.v = tp_alloc(vm, n * sizeof *o->u.seq.v);
        if (!o->u.seq.v)
            return tp_oom(r);
        memcpy(o->u.seq.v, vm->stack + first, n * sizeof *o->u.seq.v);
        o->u.seq.n = o->u.seq.cap = n;
    }
    vm->sp = first;
    return tp_push(r, o);
}

bool tp_is_text(const tp_obj *o) { return o && (o->kind == TP_STR || o->kind == TP_BYTES); }

bool tp_text_eq(const tp_obj *o, const char *s)
{
    size_t n = strlen(s);
    return tp_is_text(o) && o->u.s.n == n && memcmp(o->u.s.p, s, n) == 0;
}

tp_obj *tp_dict_get(const tp_obj *dict, const char *key)
{
    if (!dict || dict->kind != TP_DICT)
        return NULL;
    for (size_t i = dict->u.seq.n; i >= 2; i -= 2)
        if (dict->u.seq.v[i - 2]->kind == TP_STR && tp_text_eq(dict->u.seq.v[i - 2], key))
            return dict->u.seq.v[i - 1];
    return NULL;
}

/* ---- memo ---------------------------------------------------------------------------- */

static ts_status memo_put(tp_run_ctx *r, uint64_t idx)
{
    tp_vm *vm = r->vm;
    tp_obj *o = NULL;
    ts_status st = top(r, &o);
    if (st)
        return st;
    if (idx >= TP_MAX_MEMO)
        return FAIL(r, TS_ERR_LIMIT, "memo index %llu is beyond the limit of %u", (unsigned long long)idx, TP_MAX_MEMO);
    if (!tp_grow(vm, (void **)&vm->memo, &vm->memo_cap, (size_t)idx + 1, sizeof *vm->memo, TP_MAX_MEMO))
        return tp_oom(r);
    if (!vm->memo[idx])
        vm->memo_count++;
    vm->memo[idx] = o;
    return TS_OK;
}

static ts_status memo_get(tp_run_ctx *r, uint64_t idx)
{
    tp_vm *vm = r->vm;
    if (idx >= vm->memo_cap || !vm->memo[idx])
        return FAIL(r, TS_ERR_FORMAT, "memo key %llu was never stored", (unsigned long long)idx);
    return tp_push(r, vm->memo[idx]);
}


/* ---- the opcode loop --------------------------------------------------------------------- */

static ts_status push_int(tp_run_ctx *r, int64_t v)
{
    tp_obj *o = tp_new(r, TP_INT);
    if (o)
        o->u.i = v;
    return tp_push(r, o);
}

static ts_status push_simple(tp_run_ctx *r, tp_kind kind, bool b)
{
    tp_obj *o = tp_new(r, kind);
    if (o)
        o->u.b = b;
    return tp_push(r, o);
}

/* str/bytes/bigint: the object points into the pickle bytes (no copy). */
static ts_status push_text(tp_run_ctx *r, tp_kind kind, int len_bytes)
{
    ts_status st = need(r, (uint64_t)len_bytes);
    if (st)
        return st;
    uint64_t n = rd_le(r->d + r->pos, len_bytes);
    if (len_bytes == 4 && kind == TP_STR && r->d[r->op_pos] == 'T' && (n >> 31))
        return FAIL(r, TS_ERR_FORMAT, "BINSTRING with a negative length");
    r->pos += (size_t)len_bytes;
    if ((st = need(r, n)))
        return st;
    tp_obj *o = tp_new(r, kind);
    if (!o)
        return tp_oom(r);
    o->u.s.p = r->d + r->pos;
    o->u.s.n = n;
    r->pos += (size_t)n;
    return tp_push(r, o);
}

/* LONG1/LONG4: little-endian two's complement; up to 8 bytes become an int. */
static ts_status push_long(tp_run_ctx *r, int len_bytes)
{
    ts_status st = need(r, (uint64_t)len_bytes);
    if (st)
        return st;
    uint64_t n = rd_le(r->d + r->pos, len_bytes);
    if (len_bytes == 4 && (n >> 31))
        return FAIL(r, TS_ERR_FORMAT, "LONG4 with a negative length");
    r->pos += (size_t)len_bytes;
    if ((st = need(r, n)))
        return st;
    const uint8_t *p = r->d + r->pos;
    r->pos += (size_t)n;
    if (n <= 8) {
        uint64_t v = n ? rd_le(p, (int)n) : 0;
        if (n && n < 8 && (p[n - 1] & 0x80))
            v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        return push_int(r, (int64_t)v);
    }
    tp_obj *o = tp_new(r, TP_BIGINT);
    if (!o)
        return tp_oom(r);
    o->u.s.p = p;
    o->u.s.n = n;
    return tp_push(r, o);
}

static ts_status push_float(tp_run_ctx *r)
{
    ts_status st = need(r, 8);
    if (st)
        return st;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++)
        bits = bits << 8 | r->d[r->pos + (size_t)i]; /* big-endian */
    r->pos += 8;
    tp_obj *o = tp_new(r, TP_FLOAT);
    if (o)
        memcpy(&o->u.f, &bits, sizeof o->u.f);
    return tp_push(r, o);
}

static ts_status op_tuple_n(tp_run_ctx *r, size_t n)
{
    if (r->vm->sp - frame_base(r) < n)
        return FAIL(r, TS_ERR_FORMAT, "stack underflow building a %zu-tuple", n);
    return seq_from_stack(r, TP_TUPLE, r->vm->sp - n);
}

static ts_status op_mark(tp_run_ctx *r)
{
    tp_vm *vm = r->vm;
    if (vm->n_marks >= TP_MAX_MARKS)
        return FAIL(r, TS_ERR_LIMIT, "more than %u nested MARKs", TP_MAX_MARKS);
    if (!tp_grow(vm, (void **)&vm->marks, &vm->marks_cap, vm->n_marks + 1, sizeof *vm->marks, TP_MAX_MARKS))
        return tp_oom(r);
    vm->marks[vm->n_marks++] = vm->sp;
    return TS_OK;
}

static ts_status op_append(tp_run_ctx *r)
{
    tp_obj *v = NULL, *list = NULL;
    ts_status st;
    if ((st = tp_pop(r, &v)) || (st = top(r, &list)))
        return st;
    if (list->kind != TP_LIST)
        return FAIL(r, TS_ERR_FORMAT, "APPEND to a %s", tp_kind_name(list));
    return tp_vec_push(r, &list->u.seq, v);
}

/* APPENDS, SETITEMS, ADDITEMS: items above the mark go into the object below it. */
static ts_status op_extend(tp_run_ctx *r, tp_kind want, const char *op)
{
    size_t first = 0;
    ts_status st = pop_mark(r, &first);
    if (st)
        return st;
    tp_vm *vm = r->vm;
    if (first <= frame_base(r) || first == 0)
        return FAIL(r, TS_ERR_FORMAT, "%s with nothing below its MARK", op);
    tp_obj *target = vm->stack[first - 1];
    if (target->kind != want)
        return FAIL(r, TS_ERR_FORMAT, "%s on a %s", op, tp_kind_name(target));
    if (want == TP_DICT && (vm->sp - first) % 2)
        return FAIL(r, TS_ERR_FORMAT, "SETITEMS with an odd number of items");
    for (size_t i = first; i < vm->sp && st == TS_OK; i++)
        st = tp_vec_push(r, &target->u.seq, vm->stack[i]);
    vm->sp = first;
    return st;
}

static ts_status op_setitem(tp_run_ctx *r)
{
    tp_obj *v = NULL, *k = NULL, *d = NULL;
    ts_status st;
    if ((st = tp_pop(r, &v)) || (st = tp_pop(r, &k)) || (st = top(r, &d)))
        return st;
    if (d->kind != TP_DICT)
        return FAIL(r, TS_ERR_FORMAT, "SETITEM on a %s", tp_kind_name(d));
    if ((st = tp_vec_push(r, &d->u.seq, k)))
        return st;
    return tp_vec_push(r, &d->u.seq, v);
}

/* DICT: a dict from the (key, value) items above the mark. */
static ts_status op_dict(tp_run_ctx *r)
{
    size_t first = 0;
    ts_status st = pop_mark(r, &first);
    if (st)
        return st;
    if ((r->vm->sp - first) % 2)
        return FAIL(r, TS_ERR_FORMAT, "DICT with an odd number of items");
    st = seq_from_stack(r, TP_DICT, first);
    return st;
}

/* BUILD sets an object's state. OrderedDict pickles carry their __dict__ that
 * way (state_dict()._metadata); on anything else BUILD would run __setstate__. */
static ts_status op_build(tp_run_ctx *r)
{
    tp_obj *state = NULL, *obj = NULL;
    ts_status st;
    if ((st = tp_pop(r, &state)) || (st = top(r, &obj)))
        return st;
    if (obj->kind != TP_DICT)
        return FAIL(r, TS_ERR_UNSUPPORTED, "BUILD (object state) on a %s is not allowed", tp_kind_name(obj));
    if (state->kind != TP_DICT && state->kind != TP_NONE && state->kind != TP_TUPLE)
        return FAIL(r, TS_ERR_FORMAT, "BUILD: state is a %s", tp_kind_name(state));
    return TS_OK; /* attributes of a dict (e.g. _metadata) carry no tensors we read */
}

static ts_status op_pop(tp_run_ctx *r)
{
    tp_vm *vm = r->vm;
    if (vm->n_marks && vm->sp == vm->marks[vm->n_marks - 1]) {
        vm->n_marks--; /* Python pops the mark when its frame is empty */
        return TS_OK;
    }
    tp_obj *o = NULL;
    return tp_pop(r, &o);
}

static ts_status op_memo(tp_run_ctx *r, int len_bytes)
{
    ts_status st = need(r, (uint64_t)len_bytes);
    if (st)
        return st;
    uint64_t idx = rd_le(r->d + r->pos, len_bytes);
    r->pos += (size_t)len_bytes;
    return r->d[r->op_pos] == 'q' || r->d[r->op_pos] == 'r' ? memo_put(r, idx) : memo_get(r, idx);
}

static const char *refused_op(uint8_t op)
{
    switch (op) {
    case 'i': return "INST (instantiates a class)";
    case 'o': return "OBJ (instantiates a class)";
    case 0x81: return "NEWOBJ (instantiates a class)";
    case 0x92: return "NEWOBJ_EX (instantiates a class)";
    case 0x82: case 0x83: case 0x84: return "EXT1/EXT2/EXT4 (extension registry)";
    case 0x97: return "NEXT_BUFFER (out-of-band buffer)";
    case 'P': return "PERSID (text persistent id)";
    case 'I': case 'L': case 'F': case 'S': case 'V': case 'p': case 'g':
        return "a protocol-0 text opcode";
    default: return NULL;
    }
}

static ts_status step(tp_run_ctx *r, uint8_t op)
{
    tp_obj *o = NULL;
    ts_status st;
    switch (op) {
    case '(': return op_mark(r);
    case '0': return op_pop(r);
    case '1': { size_t first = 0; st = pop_mark(r, &first); if (!st) r->vm->sp = first; return st; }
    case '2': if ((st = top(r, &o))) return st; return tp_push(r, o);
    case 'N': return push_simple(r, TP_NONE, false);
    case 0x88: return push_simple(r, TP_BOOL, true);
    case 0x89: return push_simple(r, TP_BOOL, false);
    case 'J':
        if ((st = need(r, 4))) return st;
        r->pos += 4;
        return push_int(r, (int32_t)(uint32_t)rd_le(r->d + r->pos - 4, 4));
    case 'K':
        if ((st = need(r, 1))) return st;
        return push_int(r, r->d[r->pos++]);
    case 'M':
        if ((st = need(r, 2))) return st;
        r->pos += 2;
        return push_int(r, (int64_t)rd_le(r->d + r->pos - 2, 2));
    case 0x8a: return push_long(r, 1);
    case 0x8b: return push_long(r, 4);
    case 'G': return push_float(r);
    case 'X': return push_text(r, TP_STR, 4);
    case 0x8c: return push_text(r, TP_STR, 1);
    case 0x8d: return push_text(r, TP_STR, 8);
    case 'T': return push_text(r, TP_STR, 4);
    case 'U': return push_text(r, TP_STR, 1);
    case 'B': return push_text(r, TP_BYTES, 4);
    case 'C': return push_text(r, TP_BYTES, 1);
    case 0x8e: case 0x96: return push_text(r, TP_BYTES, 8);
    case 0x98: return top(r, &o); /* READONLY_BUFFER: no-op on an in-band object */
    case ')': return seq_from_stack(r, TP_TUPLE, r->vm->sp);
    case 0x85: return op_tuple_n(r, 1);
    case 0x86: return op_tuple_n(r, 2);
    case 0x87: return op_tuple_n(r, 3);
    case 't': { size_t first = 0; if ((st = pop_mark(r, &first))) return st; return seq_from_stack(r, TP_TUPLE, first); }
    case ']': return tp_push(r, tp_new(r, TP_LIST));
    case 'l': { size_t first = 0; if ((st = pop_mark(r, &first))) return st; return seq_from_stack(r, TP_LIST, first); }
    case '}': return tp_push(r, tp_new(r, TP_DICT));
    case 'd': return op_dict(r);
    case 0x8f: return tp_push(r, tp_new(r, TP_SET));
    case 0x91: { size_t first = 0; if ((st = pop_mark(r, &first))) return st; return seq_from_stack(r, TP_SET, first); }
    case 'a': return op_append(r);
    case 'e': return op_extend(r, TP_LIST, "APPENDS");
    case 's': return op_setitem(r);
    case 'u': return op_extend(r, TP_DICT, "SETITEMS");
    case 0x90: return op_extend(r, TP_SET, "ADDITEMS");
    case 'q': case 'h': return op_memo(r, 1);
    case 'r': case 'j': return op_memo(r, 4);
    case 0x94: return memo_put(r, r->vm->memo_count);
    case 'c': return tp_op_global(r);
    case 0x93: return tp_op_stack_global(r);
    case 'R': return tp_reduce(r);
    case 'b': return op_build(r);
    case 'Q': if ((st = tp_pop(r, &o))) return st; return tp_persistent_load(r, o);
    case 0x95: /* FRAME: a length hint; frames only group opcodes */
        if ((st = need(r, 8))) return st;
        if (rd_le(r->d + r->pos, 8) > r->n - r->pos - 8)
            return FAIL(r, TS_ERR_FORMAT, "FRAME longer than the rest of the pickle");
        r->pos += 8;
        return TS_OK;
    case 0x80:
        return FAIL(r, TS_ERR_FORMAT, "PROTO after the start of the pickle");
    default: {
        const char *what = refused_op(op);
        if (what)
            return FAIL(r, TS_ERR_UNSUPPORTED, "opcode 0x%02x is %s: not allowed in a checkpoint", op, what);
        return FAIL(r, TS_ERR_FORMAT, "unknown opcode 0x%02x", op);
    }
    }
}

ts_status tp_run(tp_vm *vm, const uint8_t *data, size_t size, size_t *used, tp_obj **result, ts_err *err)
{
    tp_run_ctx r = {.vm = vm, .d = data, .n = size, .err = err};
    vm->sp = vm->n_marks = vm->memo_count = 0;
    if (vm->memo)
        memset(vm->memo, 0, vm->memo_cap * sizeof *vm->memo);
    *result = NULL;
    if (size < 2 || data[0] != 0x80)
        return FAIL(&r, TS_ERR_FORMAT, "not a pickle of protocol 2 or later (no PROTO opcode at the start)");
    if (data[1] < 2 || data[1] > 5)
        return FAIL(&r, TS_ERR_UNSUPPORTED, "pickle protocol %u (2 to 5 are supported)", data[1]);
    r.pos = 2;
    for (;;) {
        if (r.pos >= r.n) {
            r.op_pos = r.pos;
            return FAIL(&r, TS_ERR_FORMAT, "truncated: no STOP opcode");
        }
        r.op_pos = r.pos;
        uint8_t op = data[r.pos++];
        if (op == '.') {
            if (vm->sp == 0)
                return FAIL(&r, TS_ERR_FORMAT, "STOP with an empty stack");
            *result = vm->stack[vm->sp - 1];
            *used = r.pos;
            return TS_OK;
        }
        ts_status st = step(&r, op);
        if (st)
            return st;
    }
}
