#define _POSIX_C_SOURCE 200809L
#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static bool progress_quiet;

void ts_progress_set_quiet(bool quiet) { progress_quiet = quiet; }

double ts_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void ts_progress_begin(ts_progress *p, const char *label, uint64_t total)
{
    p->label = label;
    p->total = total;
    p->done = 0;
    p->start_s = ts_now_seconds();
    p->last_draw_s = 0;
    p->enabled = !progress_quiet && isatty(STDERR_FILENO);
}

static void draw(ts_progress *p, double now)
{
    double pct = p->total ? 100.0 * (double)p->done / (double)p->total : 100.0;
    double el = now - p->start_s;
    fprintf(stderr, "\r%s: %5.1f%% (%llu/%llu) %.1fs   ", p->label, pct, (unsigned long long)p->done,
            (unsigned long long)p->total, el);
    fflush(stderr);
    p->last_draw_s = now;
}

void ts_progress_update(ts_progress *p, uint64_t done)
{
    p->done = done;
    if (!p->enabled)
        return;
    double now = ts_now_seconds();
    if (now - p->last_draw_s >= 0.2)
        draw(p, now);
}

void ts_progress_end(ts_progress *p)
{
    if (!p->enabled)
        return;
    p->done = p->total;
    draw(p, ts_now_seconds());
    fputc('\n', stderr);
}
