/* Pieces shared by pipeline/release*.c; not a public header. */
#ifndef TS_RELEASE_INTERNAL_H
#define TS_RELEASE_INTERNAL_H

#include "release.h"
#include "formats/gguf.h"

#define TS_REL_WORK ".work"

void ts_rel_log(const ts_release_opts *o, const char *fmt, ...) TS_PRINTF(2, 3);
/* out_dir/.work/name (heap). */
char *ts_rel_work_path(const ts_release_opts *o, const char *name);
/* The imatrix file this run uses: the one given, DIR/imatrix.gguf for
 * "auto", NULL without one (heap). */
char *ts_rel_imatrix_path(const ts_release_opts *o);
bool ts_rel_is_gguf(const char *path);
/* Removes dir's temp files (".tmp." in the name) whose names start with prefix. */
void ts_rel_remove_temps(const ts_release_opts *o, const char *dir, const char *prefix);

/* Variant i's files as they lie in out_dir: the unsplit file, or every part
 * of one split set. TS_ERR_IO names what is missing; TS_ERR_FORMAT when both
 * layouts (or parts of two sets) are there. */
ts_status ts_rel_find_files(const ts_release_opts *o, const ts_release_result *r, size_t i, char ***files,
                            size_t *n_files, ts_err *err);
void ts_rel_free_files(char **files, size_t n);

/* Structure, tensor types, block data and tensor checksums of a file
 * (checksums required), and its split keys against part (0-based) of n
 * (n == 1: unsplit). Sums its tensor bytes and elements into the counters. */
ts_status ts_rel_check_file(const char *path, size_t part, size_t n_parts, int n_threads, uint64_t *tensor_bytes,
                            uint64_t *n_elements, ts_err *err);

/* Lower-case hex SHA-256 of a file (nettle). */
ts_status ts_rel_sha256_file(const char *path, char hex[65], ts_err *err);

/* DIR/release.json, DIR/README.md, then DIR/SHA256SUMS over every file
 * in the release (release_card.c). */
ts_status ts_rel_write_card(const ts_release_opts *o, const ts_release_result *r, ts_err *err);

#endif
