/* A minimal parallel-for over [0, n) and the default thread count. */
#ifndef TS_THREADS_H
#define TS_THREADS_H
#include "ts.h"

/* Number of online CPUs (at least 1). */
int ts_cpu_count(void);

/* Calls fn(ctx, i, thread_index) for every i in [0, n) using n_threads
 * threads (work is handed out dynamically). Returns the first non-OK status
 * any call returned; remaining items are skipped after a failure. */
typedef ts_status (*ts_par_fn)(void *ctx, int64_t i, int thread_index);
ts_status ts_parallel_for(int n_threads, int64_t n, ts_par_fn fn, void *ctx);

#endif
