/* Progress on stderr: shown only when stderr is a terminal and not quiet. */
#ifndef TS_PROGRESS_H
#define TS_PROGRESS_H
#include "ts.h"

typedef struct {
    const char *label;
    uint64_t total;
    uint64_t done;
    double start_s;
    double last_draw_s;
    bool enabled;
} ts_progress;

/* Global quiet switch set by the CLI (-q). */
void ts_progress_set_quiet(bool quiet);
void ts_progress_begin(ts_progress *p, const char *label, uint64_t total);
/* Thread-safe enough for one producer; call from the thread that owns the loop. */
void ts_progress_update(ts_progress *p, uint64_t done);
void ts_progress_end(ts_progress *p);
double ts_now_seconds(void);

#endif
