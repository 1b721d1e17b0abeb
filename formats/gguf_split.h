/* GGUF output that may be split the way llama.cpp's gguf-split splits a
 * model (tools/gguf-split/gguf-split.cpp), and merging such parts back.
 *
 * Layout (docs/release.md, "Split files"): parts NAME-00001-of-0000N.gguf,
 * each a complete GGUF holding a contiguous run of the model's tensors in
 * order. The first part holds every key/value of the model; the others only
 * general.alignment when it is set. Every part carries split.no (u16,
 * 0-based), split.count (u16) and split.tensors.count (i32, the tensors of
 * all parts together), after the other keys. llama.cpp loads the set from
 * the first part and finds the rest by name. Unlike gguf-split, the size
 * limit counts whole files (header and padding included), and each part has
 * its own tessera.checksum.* keys when the model's writer has them. */
#ifndef TS_GGUF_SPLIT_H
#define TS_GGUF_SPLIT_H

#include "gguf.h"

#define TS_GGUF_KEY_SPLIT_NO "split.no"
#define TS_GGUF_KEY_SPLIT_COUNT "split.count"
#define TS_GGUF_KEY_SPLIT_TENSORS "split.tensors.count"
#define TS_GGUF_SPLIT_MAX_PARTS 65535 /* split.count is a u16 */

/* Which parts go where, decided from a complete writer before a byte is written. */
typedef struct {
    size_t n_parts;         /* 1: not split */
    uint64_t *first_tensor; /* n_parts + 1 entries: part p holds tensors first_tensor[p] .. first_tensor[p+1]-1 */
    uint64_t *bytes;        /* exact file size of each part */
} ts_gguf_split_plan;

/* w: key/values and tensor table complete, not begun. max_bytes 0: never
 * split. Otherwise one file when the whole file fits, else as few parts as
 * the greedy rule gives (a tensor goes into the current part while the part
 * stays within max_bytes). Refuses a max_bytes smaller than a part holding a
 * single tensor (that tensor is named). */
ts_status ts_gguf_split_plan_build(const ts_gguf_writer *w, uint64_t max_bytes, ts_gguf_split_plan *p, ts_err *err);
void ts_gguf_split_plan_free(ts_gguf_split_plan *p);
/* The exact size of the file w writes unsplit. */
uint64_t ts_gguf_writer_file_bytes(const ts_gguf_writer *w);

/* Part i (0-based) of n of the file named path: "x.gguf" (or "x") ->
 * "x-0000<i+1>-of-0000<n>.gguf". Heap string, NULL when out of memory. */
char *ts_gguf_split_path(const char *path, size_t i, size_t n);

/* The split keys of an open GGUF: *is_split false when it has none. Refuses
 * keys of the wrong type or out of range (no >= count, count 0). */
ts_status ts_gguf_split_info(const ts_gguf *g, const char *path, bool *is_split, uint32_t *no, uint32_t *count,
                             int64_t *tensors, ts_err *err);

/* Sets every key/value of src on dst in src's order (as ts_gguf_set_value:
 * a key dst already has is replaced in place). Fan-out writers (convert's
 * outputs for tessera release) start as copies of one writer's metadata. */
ts_status ts_gguf_writer_copy_kvs(ts_gguf_writer *dst, const ts_gguf_writer *src);

/* ---- writing ---- */
typedef struct ts_gguf_out ts_gguf_out;

typedef struct {
    uint64_t max_bytes; /* 0: one file whatever its size */
    size_t only_part;   /* 0: write every part; k >= 1: only part k (a scale-out job); the
                           others' tensor bytes are dropped (ts_gguf_out_wants says which) */
} ts_gguf_split_opts;

/* Opens the output for w (complete, not begun; it must outlive out). Not
 * split: w itself is begun at path. Split: a writer per part is built from
 * w (checksums as w has them) and begun when its first bytes arrive; each
 * is renamed into place as soon as its last tensor is written, so an
 * interrupted run leaves only whole parts under final names. inputs: as
 * ts_gguf_writer_begin (files that must not be overwritten). */
ts_status ts_gguf_out_open(ts_gguf_writer *w, const char *path, const ts_gguf_split_opts *o,
                           const char *const *inputs, ts_gguf_out **out, ts_err *err);
/* Tensor bytes in order, in pieces that never cross a tensor's end (as
 * ts_gguf_write_tensor_data). */
ts_status ts_gguf_out_write(ts_gguf_out *o, const void *data, uint64_t nbytes, ts_err *err);
/* Whether tensor i's bytes are written (false in the parts only_part leaves out). */
bool ts_gguf_out_wants(const ts_gguf_out *o, uint64_t i);
/* Steps over the next tensor without its bytes; only for one not wanted. */
ts_status ts_gguf_out_skip(ts_gguf_out *o, ts_err *err);
/* Finishes the last part(s); fails when tensors are missing. */
ts_status ts_gguf_out_finish(ts_gguf_out *o, ts_err *err);
/* Removes the temp file of every part begun and not finished. NULL is fine. */
void ts_gguf_out_free(ts_gguf_out *o);
/* The final file names (all parts, also those only_part leaves out). */
size_t ts_gguf_out_n_files(const ts_gguf_out *o);
const char *ts_gguf_out_path(const ts_gguf_out *o, size_t i);

/* Merges the parts of a split set, given its first part, into one GGUF at
 * out: the first part's key/values without split.*, every part's tensors
 * in order, tensor checksums when the first part has them. For parts
 * tessera wrote, the result is byte for byte the file that was split.
 * Refuses parts that are missing, out of order or from another set. */
ts_status ts_gguf_split_merge(const char *first, const char *out, const char *const *inputs, ts_err *err);

#endif
