#include "threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

int ts_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

typedef struct {
    ts_par_fn fn;
    void *ctx;
    int64_t n;
    atomic_llong next;
    atomic_int status;
} par_job;

typedef struct {
    par_job *job;
    int index;
} par_worker;

static void *par_run(void *arg)
{
    par_worker *w = arg;
    par_job *job = w->job;
    for (;;) {
        if (atomic_load(&job->status) != TS_OK)
            break;
        int64_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->n)
            break;
        ts_status st = job->fn(job->ctx, i, w->index);
        if (st != TS_OK) {
            int expected = TS_OK;
            atomic_compare_exchange_strong(&job->status, &expected, (int)st);
        }
    }
    return NULL;
}

ts_status ts_parallel_for(int n_threads, int64_t n, ts_par_fn fn, void *ctx)
{
    par_job job = {.fn = fn, .ctx = ctx, .n = n};
    atomic_init(&job.next, 0);
    atomic_init(&job.status, TS_OK);
    if (n_threads < 1)
        n_threads = 1;
    if (n_threads > n)
        n_threads = n > 0 ? (int)n : 1;
    pthread_t *tids = calloc((size_t)n_threads, sizeof *tids);
    par_worker *workers = calloc((size_t)n_threads, sizeof *workers);
    if (!tids || !workers) {
        free(tids);
        free(workers);
        return TS_ERR_NOMEM;
    }
    int started = 0;
    for (int t = 1; t < n_threads; t++) {
        workers[t] = (par_worker){&job, t};
        if (pthread_create(&tids[t], NULL, par_run, &workers[t]) != 0)
            break;
        started = t;
    }
    workers[0] = (par_worker){&job, 0};
    par_run(&workers[0]);
    for (int t = 1; t <= started; t++)
        pthread_join(tids[t], NULL);
    free(tids);
    free(workers);
    return (ts_status)atomic_load(&job.status);
}
