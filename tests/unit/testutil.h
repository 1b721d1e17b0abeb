/* Helpers shared by the Check unit tests. */
#ifndef TS_TESTUTIL_H
#define TS_TESTUTIL_H
#include <check.h>
#include <stddef.h>
#include <stdint.h>

/* ../shared from the repository root, or $TS_SHARED; NULL (with a message) when absent. */
const char *tu_shared_dir(void);
/* A fresh temporary directory for this process (removed at exit). */
const char *tu_tmpdir(void);
/* Write bytes to <tmpdir>/<name>; returns the heap path. */
char *tu_write_file(const char *name, const void *data, size_t n);
/* Run a Check suite, print the summary, return the process exit status. */
int tu_run_suite(Suite *s);
#endif
