/* Read-only memory-mapped input files, and atomic output files (temp + rename). */
#ifndef TS_MAPPED_FILE_H
#define TS_MAPPED_FILE_H

#include "ts.h"
#include <stdio.h>

typedef struct {
    char *path;
    const uint8_t *data; /* NULL when size == 0 */
    uint64_t size;
    int fd;
} ts_mapped_file;

ts_status ts_map_file(const char *path, ts_mapped_file *out, ts_err *err);
void ts_unmap_file(ts_mapped_file *f);
/* Tell the kernel we are done with a byte range (streaming: keeps RSS bounded). */
void ts_mapped_release(const ts_mapped_file *f, uint64_t offset, uint64_t len);

/* An output file written to "<path>.tmp.XXXXXX" beside the target and renamed
 * on commit; abort (or a failed commit) removes the temp file. */
typedef struct {
    char *path;
    char *tmp_path;
    FILE *fp;
    uint64_t written;
    bool failed;
} ts_atomic_file;

/* Refuses when path names the same file as any of the (NULL-terminated) inputs. */
ts_status ts_atomic_open(const char *path, const char *const *inputs, ts_atomic_file *out, ts_err *err);
ts_status ts_atomic_write(ts_atomic_file *f, const void *buf, size_t n, ts_err *err);
ts_status ts_atomic_commit(ts_atomic_file *f, ts_err *err);
void ts_atomic_abort(ts_atomic_file *f);

/* True when a and b name the same existing file (same device and inode). */
bool ts_same_file(const char *a, const char *b);
/* Read a whole (small) file into a NUL-terminated heap buffer; refuses files over max_bytes. */
ts_status ts_read_small_file(const char *path, uint64_t max_bytes, char **out, size_t *out_len, ts_err *err);
bool ts_file_exists(const char *path);
/* Join dir and name into a heap string. */
char *ts_path_join(const char *dir, const char *name);

#endif
