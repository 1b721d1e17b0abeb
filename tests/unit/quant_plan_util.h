/* Synthetic tensor lists and plan look-ups shared by the planner tests
 * (test_quant_plan.c, test_quant_plan_moe.c). Header-only: static inline, so
 * a test that leaves one unused still builds with -Werror. */
#ifndef TS_QUANT_PLAN_UTIL_H
#define TS_QUANT_PLAN_UTIL_H

#include "testutil.h"
#include "quant/planner.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t n;
    ts_tensor t[1024];
    const ts_tensor *p[1024];
} tlist;

/* Appends a tensor of ne0 x ne1 x ne2 (ggml order; 1-D when ne1 = ne2 = 1). */
static inline void add(tlist *l, ts_dtype dt, int64_t ne0, int64_t ne1, int64_t ne2, const char *fmt, ...)
    TS_PRINTF(6, 7);
static inline void add(tlist *l, ts_dtype dt, int64_t ne0, int64_t ne1, int64_t ne2, const char *fmt, ...)
{
    ck_assert_uint_lt(l->n, 1024);
    ts_tensor *t = &l->t[l->n];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->dtype = dt;
    t->n_dims = ne2 > 1 ? 3 : ne1 > 1 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->ne[3] = 1;
    uint64_t row = 0;
    ck_assert(ts_dtype_row_bytes(dt, (uint64_t)ne0, &row));
    t->nbytes = row * (uint64_t)(ne1 * ne2);
    l->p[l->n] = t;
    l->n++;
}

static inline ts_qmodel model(const char *arch, int64_t n_layer, int64_t n_head, int64_t n_head_kv, int64_t n_expert)
{
    ts_qmodel m = {.n_layer = n_layer, .n_head = n_head, .n_head_kv = n_head_kv, .n_expert = n_expert};
    snprintf(m.arch, sizeof m.arch, "%s", arch);
    return m;
}

static inline ts_qplan_opts opts(ts_ftype f)
{
    return (ts_qplan_opts){.ftype = f, .output_tensor_type = TS_DTYPE_INVALID,
                           .token_embedding_type = TS_DTYPE_INVALID, .dry_run = true};
}

static inline ts_qplan build(const ts_qmodel *m, const tlist *l, const ts_qplan_opts *o)
{
    ts_qplan p;
    ts_err err = {0};
    ck_assert_msg(ts_qplan_build(m, l->p, l->n, o, &p, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(p.n, l->n);
    return p;
}

/* The planned tensor of that name (aborts the test when there is none). */
static inline const ts_qplan_tensor *planned(const ts_qplan *p, const char *fmt, ...) TS_PRINTF(2, 3);
static inline const ts_qplan_tensor *planned(const ts_qplan *p, const char *fmt, ...)
{
    char name[TS_MAX_NAME];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->t[i].name, name))
            return &p->t[i];
    ck_abort_msg("no tensor %s in the plan", name);
    return NULL;
}

#define type_of(p, ...) (planned(p, __VA_ARGS__)->type)

#define EXPECT(p, want, ...)                                                                                           \
    do {                                                                                                               \
        ts_dtype got_ = type_of(p, __VA_ARGS__);                                                                      \
        ck_assert_msg(got_ == (want), "%s: %s, expected %s", #__VA_ARGS__, ts_dtype_name(got_), ts_dtype_name(want)); \
    } while (0)

#endif
