/* A checkpoint of any input format seen as one flat list of named tensors.
 * convert/ and quantize read models through this and never through a format
 * reader directly, so adding an input format touches only formats/. */
#ifndef TS_CHECKPOINT_H
#define TS_CHECKPOINT_H

#include "core/ts.h"

typedef enum { TS_CKPT_SAFETENSORS, TS_CKPT_GGUF, TS_CKPT_TORCH } ts_checkpoint_kind;

typedef struct ts_checkpoint ts_checkpoint;

/* path: a model directory, a .safetensors file or a safetensors index, or a
 * PyTorch checkpoint: a .bin/.pt/.pth file (zip or legacy torch.save, a
 * state dict at the top level or under "state_dict", "model_state_dict",
 * "model" or "module"), a pytorch_model.bin.index.json, or a directory with
 * pytorch_model.bin[.index.json] or Meta/Mistral consolidated.NN.pth shards
 * (merged). A directory with safetensors files is read as safetensors, like
 * Hugging Face does; name the .bin file to read it instead. */
ts_status ts_checkpoint_open(const char *path, ts_checkpoint **out, ts_err *err);
void ts_checkpoint_close(ts_checkpoint *c);

ts_checkpoint_kind ts_checkpoint_kind_of(const ts_checkpoint *c);
size_t ts_checkpoint_n_tensors(const ts_checkpoint *c);
/* Tensors in the order that reads the files sequentially. t->data is mapped. */
const ts_tensor *ts_checkpoint_tensor(const ts_checkpoint *c, size_t i);
const ts_tensor *ts_checkpoint_find(const ts_checkpoint *c, const char *name);
/* Paths of the files that hold tensor data (NULL-terminated), e.g. to refuse overwriting them. */
const char *const *ts_checkpoint_files(const ts_checkpoint *c);
/* Total bytes of tensor data. */
uint64_t ts_checkpoint_data_bytes(const ts_checkpoint *c);
/* The bytes of tensor t in C order (row-major, as its shape says). Mapped when
 * the stored layout is contiguous; otherwise materialized into a buffer owned
 * by the checkpoint. Valid until ts_checkpoint_release(c, t). Thread-safe for
 * different tensors. */
ts_status ts_checkpoint_data(const ts_checkpoint *c, const ts_tensor *t, const void **data, ts_err *err);
/* Done with this tensor's bytes: drop its pages so RSS stays bounded while streaming. */
void ts_checkpoint_release(const ts_checkpoint *c, const ts_tensor *t);
/* Done with bytes [offset, offset + len) of t's data while the rest is still in
 * use: drops the mapped pages that range touches (a page it shares with other
 * data is read back from the file if touched again). */
void ts_checkpoint_release_range(const ts_checkpoint *c, const ts_tensor *t, uint64_t offset, uint64_t len);
/* Drops every mapped page of the checkpoint's files. Reading a small tensor
 * (an FP8 scale) maps the pages around it too (the kernel's fault-around),
 * parts of tensors released long ago; without this they stay resident and RSS
 * grows with the layer count. Call between tensors, with no data in use.
 * Both are no-ops for materialized (PyTorch) tensors, which
 * ts_checkpoint_release frees. */
void ts_checkpoint_release_all(const ts_checkpoint *c);

#endif
