#include "testutil.h"
#include "core/ts.h"
#include "core/mapped_file.h"
#include "core/threads.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

START_TEST(dtype_table)
{
    uint64_t b;
    ck_assert(ts_dtype_row_bytes(TS_Q4_K, 512, &b));
    ck_assert_uint_eq(b, 288);
    ck_assert(!ts_dtype_row_bytes(TS_Q4_K, 100, &b));
    ck_assert(ts_dtype_row_bytes(TS_BF16, 7, &b));
    ck_assert_uint_eq(b, 14);
    ck_assert_int_eq(ts_dtype_from_name("Q8_0"), TS_Q8_0);
    ck_assert_int_eq(ts_dtype_from_name("nope"), TS_DTYPE_INVALID);
    ck_assert_str_eq(ts_dtype_name(TS_MXFP4), "mxfp4");
}
END_TEST

START_TEST(shape_overflow)
{
    int64_t ne[4] = {INT64_MAX, 4, 1, 1};
    uint64_t n;
    ck_assert(!ts_shape_nelements(2, ne, &n));
    int64_t neg[2] = {-1, 2};
    ck_assert(!ts_shape_nelements(2, neg, &n));
}
END_TEST

START_TEST(atomic_file_abort_leaves_nothing)
{
    char *path = tu_write_file("x.placeholder", "", 0);
    strcpy(path + strlen(path) - strlen("placeholder"), "out");
    ts_atomic_file f;
    ts_err err = {0};
    ck_assert_int_eq(ts_atomic_open(path, NULL, &f, &err), TS_OK);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", f.tmp_path);
    ck_assert_int_eq(ts_atomic_write(&f, "abc", 3, &err), TS_OK);
    ts_atomic_abort(&f);
    ck_assert(!ts_file_exists(tmp));
    ck_assert(!ts_file_exists(path));
    ck_assert_int_eq(ts_atomic_open(path, NULL, &f, &err), TS_OK);
    ck_assert_int_eq(ts_atomic_write(&f, "abc", 3, &err), TS_OK);
    ck_assert_int_eq(ts_atomic_commit(&f, &err), TS_OK);
    ck_assert(ts_file_exists(path));
    /* refuses to overwrite an input */
    const char *inputs[] = {path, NULL};
    ck_assert_int_ne(ts_atomic_open(path, inputs, &f, &err), TS_OK);
    ck_assert(strstr(err.msg, "refusing to overwrite") != NULL);
    free(path);
}
END_TEST

static ts_status add_one(void *ctx, int64_t i, int t)
{
    (void)t;
    __atomic_add_fetch((int64_t *)ctx, i, __ATOMIC_RELAXED);
    return TS_OK;
}

START_TEST(parallel_for_sums)
{
    int64_t sum = 0;
    ck_assert_int_eq(ts_parallel_for(4, 1000, add_one, &sum), TS_OK);
    ck_assert_int_eq(sum, 999 * 1000 / 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, dtype_table);
    tcase_add_test(tc, shape_overflow);
    tcase_add_test(tc, atomic_file_abort_leaves_nothing);
    tcase_add_test(tc, parallel_for_sums);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
