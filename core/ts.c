/* Status codes, error messages, dtype table and shape helpers. */
#include "ts.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

ts_status ts_fail(ts_err *err, ts_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

ts_status ts_err_prefix(ts_err *err, const char *fmt, ...)
{
    if (!err)
        return TS_ERR_INTERNAL;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t rest = sizeof err->msg - n - 3;
    size_t olen = strnlen(old, sizeof old);
    if (olen > rest)
        olen = rest;
    memcpy(err->msg + n + 2, old, olen);
    err->msg[n + 2 + olen] = 0;
    return err->code;
}

const char *ts_status_name(ts_status s)
{
    switch (s) {
    case TS_OK: return "ok";
    case TS_ERR_IO: return "I/O error";
    case TS_ERR_FORMAT: return "format error";
    case TS_ERR_UNSUPPORTED: return "unsupported";
    case TS_ERR_ARG: return "invalid argument";
    case TS_ERR_NOMEM: return "out of memory";
    case TS_ERR_LIMIT: return "limit exceeded";
    case TS_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}

/* Block sizes and bytes follow ggml-common.h (see docs/formats.md). */
static const ts_dtype_info dtype_table[] = {
    {TS_F32, "f32", 1, 4, true, true},
    {TS_F16, "f16", 1, 2, true, true},
    {TS_Q4_0, "q4_0", 32, 18, true, false},
    {TS_Q4_1, "q4_1", 32, 20, true, false},
    {TS_Q5_0, "q5_0", 32, 22, true, false},
    {TS_Q5_1, "q5_1", 32, 24, true, false},
    {TS_Q8_0, "q8_0", 32, 34, true, false},
    {TS_Q8_1, "q8_1", 32, 36, true, false},
    {TS_Q2_K, "q2_K", 256, 84, true, false},
    {TS_Q3_K, "q3_K", 256, 110, true, false},
    {TS_Q4_K, "q4_K", 256, 144, true, false},
    {TS_Q5_K, "q5_K", 256, 176, true, false},
    {TS_Q6_K, "q6_K", 256, 210, true, false},
    {TS_Q8_K, "q8_K", 256, 292, true, false},
    {TS_IQ2_XXS, "iq2_xxs", 256, 66, true, false},
    {TS_IQ2_XS, "iq2_xs", 256, 74, true, false},
    {TS_IQ3_XXS, "iq3_xxs", 256, 98, true, false},
    {TS_IQ1_S, "iq1_s", 256, 50, true, false},
    {TS_IQ4_NL, "iq4_nl", 32, 18, true, false},
    {TS_IQ3_S, "iq3_s", 256, 110, true, false},
    {TS_IQ2_S, "iq2_s", 256, 82, true, false},
    {TS_IQ4_XS, "iq4_xs", 256, 136, true, false},
    {TS_I8, "i8", 1, 1, true, false},
    {TS_I16, "i16", 1, 2, true, false},
    {TS_I32, "i32", 1, 4, true, false},
    {TS_I64, "i64", 1, 8, true, false},
    {TS_F64, "f64", 1, 8, true, true},
    {TS_IQ1_M, "iq1_m", 256, 56, true, false},
    {TS_BF16, "bf16", 1, 2, true, true},
    {TS_TQ1_0, "tq1_0", 256, 54, true, false},
    {TS_TQ2_0, "tq2_0", 256, 66, true, false},
    {TS_MXFP4, "mxfp4", 32, 17, true, false},
    {TS_U8, "u8", 1, 1, false, false},
    {TS_BOOL, "bool", 1, 1, false, false},
    {TS_F8_E4M3, "f8_e4m3", 1, 1, false, true},
    {TS_F8_E5M2, "f8_e5m2", 1, 1, false, true},
    {TS_U16, "u16", 1, 2, false, false},
    {TS_U32, "u32", 1, 4, false, false},
    {TS_U64, "u64", 1, 8, false, false},
};

const ts_dtype_info *ts_dtype_get(ts_dtype t)
{
    for (size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; i++)
        if (dtype_table[i].type == t)
            return &dtype_table[i];
    return NULL;
}

const char *ts_dtype_name(ts_dtype t)
{
    const ts_dtype_info *info = ts_dtype_get(t);
    return info ? info->name : "invalid";
}

ts_dtype ts_dtype_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; i++)
        if (strcasecmp(dtype_table[i].name, name) == 0)
            return dtype_table[i].type;
    return TS_DTYPE_INVALID;
}

bool ts_dtype_row_bytes(ts_dtype t, uint64_t n, uint64_t *out_bytes)
{
    const ts_dtype_info *info = ts_dtype_get(t);
    if (!info || n % info->block_size != 0)
        return false;
    return ts_mul_u64(n / info->block_size, info->block_bytes, out_bytes);
}

bool ts_shape_nelements(int n_dims, const int64_t *ne, uint64_t *out)
{
    uint64_t n = 1;
    if (n_dims < 0 || n_dims > TS_MAX_DIMS)
        return false;
    for (int i = 0; i < n_dims; i++) {
        if (ne[i] < 0 || !ts_mul_u64(n, (uint64_t)ne[i], &n))
            return false;
    }
    *out = n;
    return true;
}

const char *ts_shape_str(int n_dims, const int64_t *ne, char *buf, size_t n)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "[");
    for (int i = 0; i < n_dims && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (off < n)
        snprintf(buf + off, n - off, "]");
    return buf;
}
