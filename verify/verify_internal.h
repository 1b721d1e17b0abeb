/* Report building shared by verify/verify.c and verify/verify_tensors.c. */
#ifndef TS_VERIFY_INTERNAL_H
#define TS_VERIFY_INTERNAL_H

#include "verify/verify.h"

/* Appends a check (status pass, no value, no limit). When the report is
 * full, a scratch check that is never reported. */
ts_check *ts_verify_add(ts_verify_report *r, const char *name);
/* Sets status and detail. */
void ts_verify_set(ts_check *c, ts_check_status st, const char *fmt, ...) TS_PRINTF(3, 4);
/* Counts one failing item and keeps its description while there is room. */
void ts_verify_failure(ts_check *c, const char *fmt, ...) TS_PRINTF(2, 3);
/* A check whose value is its failure count and whose limit is 0: fails
 * (detail "N <what>") when anything failed. */
void ts_verify_count_gate(ts_check *c, const char *what);

#endif
