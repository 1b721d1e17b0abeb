/* Pieces of the PyTorch reader shared by formats/torch_*.c: the restricted
 * pickle VM, the zip directory and the legacy container. Layouts and the
 * security rules: docs/formats/pytorch.md and docs/security.md. */
#ifndef TS_TORCH_INTERNAL_H
#define TS_TORCH_INTERNAL_H

#include "torch.h"

/* ---- restricted pickle VM (torch_pickle.c) ------------------------------- */

/* Limits on what one pickle may build. Real state-dict pickles stay far below
 * them (a 405B model's data.pkl is a few MB); they exist so hostile input
 * fails fast instead of exhausting memory. */
#define TP_MAX_STACK (1u << 17)     /* items on the VM stack */
#define TP_MAX_MARKS 4096u          /* open MARKs (container nesting while building) */
#define TP_MAX_MEMO (1u << 22)      /* memo slots */
#define TP_MAX_OBJECTS (1u << 24)   /* objects created by one file */
#define TP_MAX_ALLOC (1ull << 30)   /* bytes the VM may allocate for one file */
#define TP_MAX_DEPTH 64             /* nesting depth when walking the result */
#define TP_MAX_TENSOR_DIMS 8        /* dims a pickled tensor may declare */
/* A view whose elements overlap (stride 0, as from expand()) can be far larger
 * in C order than its storage; such tensors are materialized only up to this
 * size, so a small file cannot ask for terabytes. */
#define TP_MAX_EXPANDED (256ull << 20)
#define TP_MAX_NESTED 1             /* torch.storage._load_from_bytes inside a pickle, not deeper */

typedef enum {
    TP_NONE, TP_BOOL, TP_INT, TP_BIGINT, TP_FLOAT, TP_STR, TP_BYTES,
    TP_TUPLE, TP_LIST, TP_DICT, TP_SET, TP_GLOBAL, TP_STORAGE, TP_TENSOR,
} tp_kind;

/* The callables and classes a pickle may name (the allow-list). */
typedef enum {
    TG_REBUILD_V2, TG_REBUILD_V3, TG_REBUILD_PARAM, TG_REBUILD_PARAM_STATE,
    TG_LOAD_FROM_BYTES, TG_ORDERED_DICT, TG_SET, TG_FROZENSET, TG_CODECS_ENCODE,
    TG_SIZE, TG_STORAGE_CLASS, TG_DTYPE,
} tp_global_id;

typedef struct tp_obj tp_obj;

typedef struct {
    tp_obj **v;
    size_t n, cap;
} tp_vec;

typedef struct {
    uint32_t storage;   /* index into tp_vm.storages */
    ts_dtype dtype;
    int n_dims;         /* torch order below */
    int64_t size[TP_MAX_TENSOR_DIMS];
    int64_t stride[TP_MAX_TENSOR_DIMS]; /* in elements */
    uint64_t offset;    /* storage offset in elements */
} tp_tensor;

struct tp_obj {
    uint8_t kind;       /* tp_kind */
    uint8_t visited;    /* walk: container already seen */
    union {
        bool b;
        int64_t i;
        double f;
        struct { const uint8_t *p; uint64_t n; } s; /* str (UTF-8), bytes, bigint (LE two's complement) */
        tp_vec seq;     /* tuple, list, set; dict: key, value, key, value ... */
        struct { uint16_t id; uint16_t entry; ts_dtype dtype; } g; /* entry: allow-list row, for messages */
        uint32_t storage;
        tp_tensor *tensor;
    } u;
};

/* A storage named by a persistent id. Views (legacy format only) point into a root. */
typedef struct {
    char *key;
    ts_dtype dtype;
    uint32_t elsize;
    uint64_t numel;
    uint64_t nbytes;
    int64_t root;         /* -1, or the storage this one is a view of */
    uint64_t view_offset; /* bytes into the root */
    const uint8_t *data;  /* set for storages that came with their bytes (_load_from_bytes) */
} tp_storage;

typedef struct tp_chunk tp_chunk;

typedef struct tp_vm {
    const char *what;      /* file (and entry) named in messages */
    uint64_t base_offset;  /* where the current pickle starts in that file, for messages */
    int nested;            /* how deep inside _load_from_bytes this VM runs */
    bool legacy;           /* persistent ids may carry legacy view metadata */
    bool allow_pids;       /* false for plain pickles: there is nothing to resolve them against */
    /* allocation accounting (arena, freed at once) */
    tp_chunk *chunks;
    uint64_t allocated, n_objects;
    /* storages named by persistent ids, with a hash index by key */
    tp_storage *storages;
    size_t n_storages, cap_storages;
    uint32_t *hash;        /* 0 = empty, else index + 1 */
    size_t hash_cap;
    size_t n_nested;       /* _load_from_bytes blobs seen */
    /* per-run state */
    tp_obj **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t n_marks, marks_cap;
    tp_obj **memo;
    size_t memo_cap, memo_count;
} tp_vm;

void tp_vm_init(tp_vm *vm, const char *what, bool legacy, bool allow_pids);
void tp_vm_free(tp_vm *vm);
/* Runs one pickle from data[0] to its STOP; *used = bytes consumed. The result
 * lives until tp_vm_free. Never calls anything the pickle names. */
ts_status tp_run(tp_vm *vm, const uint8_t *data, size_t size, size_t *used, tp_obj **result, ts_err *err);
/* "torch._utils._rebuild_tensor_v2" for a global object. */
const char *tp_global_name(const tp_obj *g, char *buf, size_t n);
const char *tp_kind_name(const tp_obj *o);
/* Lookup in a dict by string key (the last one wins, like Python); NULL when absent. */
tp_obj *tp_dict_get(const tp_obj *dict, const char *key);
/* Registers a storage that already has its bytes (from a nested blob). */
ts_status tp_add_bound_storage(tp_vm *vm, ts_dtype dtype, uint64_t numel, const uint8_t *data, uint32_t *index,
                               ts_err *err);
uint32_t tp_dtype_size(ts_dtype t);
/* Index of the storage with this key, -1 when none. */
int64_t tp_storage_find(const tp_vm *vm, const char *key);

/* VM internals shared by torch_pickle.c (opcodes) and torch_pickle_calls.c (globals). */
typedef struct {
    tp_vm *vm;
    const uint8_t *d;
    size_t n, pos, op_pos;
    ts_err *err;
} tp_run_ctx;

/* Every message names the file, the byte offset of the opcode and what was wrong. */
ts_status tp_fail_at(tp_run_ctx *r, ts_status code, const char *fmt, ...) TS_PRINTF(3, 4);
void *tp_alloc(tp_vm *vm, size_t n);
bool tp_grow(tp_vm *vm, void **p, size_t *cap, size_t need, size_t elsize, size_t limit);
tp_obj *tp_new(tp_run_ctx *r, tp_kind kind);
ts_status tp_oom(tp_run_ctx *r);
ts_status tp_push(tp_run_ctx *r, tp_obj *o);
ts_status tp_pop(tp_run_ctx *r, tp_obj **o);
ts_status tp_vec_push(tp_run_ctx *r, tp_vec *v, tp_obj *o);
bool tp_is_text(const tp_obj *o);
bool tp_text_eq(const tp_obj *o, const char *s);
ts_status tp_persistent_load(tp_run_ctx *r, tp_obj *pid);
ts_status tp_reduce(tp_run_ctx *r);
ts_status tp_op_global(tp_run_ctx *r);
ts_status tp_op_stack_global(tp_run_ctx *r);

/* ---- legacy container (torch_legacy.c) ----------------------------------- */

/* Parses a legacy torch.save blob held in memory whose object is a single
 * storage (what torch.storage._load_from_bytes receives) and registers that
 * storage, with its bytes, in the outer VM. */
ts_status tl_load_nested(tp_vm *outer, const uint8_t *blob, uint64_t n, uint32_t *storage, ts_err *err);

/* ---- zip directory (torch_zip.c) ------------------------------------------ */

typedef struct {
    char *name;
    uint64_t header_offset; /* local file header */
    uint64_t data_offset;   /* first byte of the (possibly compressed) data */
    uint64_t csize, usize;
    uint32_t crc;
    uint16_t method;        /* 0 stored, 8 deflated, ... */
} tz_entry;

typedef struct {
    const char *path;
    const uint8_t *base;
    uint64_t size;
    size_t n;
    tz_entry *e;            /* in directory order */
    size_t *by_name;        /* indices sorted by name */
} tz_archive;

/* Reads the central directory (ours, for data offsets) and cross-checks it
 * with libarchive's seekable zip reader; refuses traversal names, duplicates,
 * overlapping entries and sizes beyond the file. */
ts_status tz_open(const uint8_t *base, uint64_t size, const char *path, tz_archive *out, ts_err *err);
void tz_close(tz_archive *z);
const tz_entry *tz_find(const tz_archive *z, const char *name);
/* The whole entry into a heap buffer (NUL-terminated), via libarchive for
 * compressed entries; CRC-32 checked. max_bytes bounds the allocation. */
ts_status tz_read(const tz_archive *z, const tz_entry *e, uint64_t max_bytes, uint8_t **out, ts_err *err);
/* CRC-32 of a stored entry's mapped bytes against the directory. */
ts_status tz_check_crc(const tz_archive *z, const tz_entry *e, ts_err *err);

/* Reads a legacy container or a plain pickle at base (the whole file):
 * sets m->format, returns the unpickled object and binds m->storages. */
ts_status tl_read(ts_torch_model *m, tp_vm *vm, const uint8_t *base, uint64_t size, tp_obj **root, ts_err *err);

/* ---- model building (torch_model.c) ---------------------------------------- */

#include <stdatomic.h>

/* What a ts_torch_model keeps besides its public fields. */
struct ts_torch_private {
    ts_mapped_file file;
    bool mapped;
    const uint8_t *base;
    uint64_t size;
    tz_archive zip;
    bool has_zip;
    uint8_t *pickle;      /* data.pkl: strings and nested blobs point into it */
    tp_vm vm;             /* kept: bytes decoded by the VM live in its arena */
    size_t *by_name;
    atomic_int *crc_ok;   /* per storage: its zip CRC-32 was verified */
    size_t n_alloc;       /* capacity of m->tensors while collecting */
};

/* m->storages from the VM's storage table (dtype, size; data left NULL
 * except for storages that came with their bytes). */
ts_status tm_bind_storages(ts_torch_model *m, const tp_vm *vm, ts_err *err);
/* Walks the unpickled object, picks the state dict and fills m->tensors. */
ts_status tm_collect(ts_torch_model *m, tp_vm *vm, tp_obj *root, ts_err *err);

/* ---- multi-file checkpoints (torch_set.c) ------------------------------------- */

/* Opens path and appends it to s->shards / s->files. */
ts_status tset_add_shard(ts_torch_set *s, const char *path, ts_err *err);
/* One entry per tensor of every shard (names without the state-dict prefix), then the name index. */
ts_status tset_plain_entries(ts_torch_set *s, ts_err *err);
/* Sorts s->by_name; refuses a name that appears twice. */
ts_status tset_index_names(ts_torch_set *s, ts_err *err);

#endif
