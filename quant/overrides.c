/* --tensor-type REGEX=TYPE rules (PCRE2) and the set of writable types. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "planner.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    pcre2_code *re;
    char *spec;
    ts_dtype type;
} rule;

struct ts_qoverrides {
    size_t n;
    rule *r;
};

bool ts_quant_type_writable(ts_dtype t)
{
    switch (t) {
    case TS_F32: case TS_F16: case TS_BF16: case TS_Q8_0:
    case TS_Q4_0: case TS_Q4_1: case TS_Q5_0: case TS_Q5_1:
    case TS_Q2_K: case TS_Q3_K: case TS_Q4_K: case TS_Q5_K: case TS_Q6_K:
    case TS_IQ4_NL: case TS_IQ4_XS: case TS_MXFP4:
        return true;
    default:
        return false;
    }
}

ts_status ts_quant_parse_type(const char *what, const char *name, ts_dtype *out, ts_err *err)
{
    ts_dtype t = ts_dtype_from_name(name);
    if (t == TS_DTYPE_INVALID || !ts_quant_type_writable(t))
        return ts_fail(err, TS_ERR_ARG,
                       "%s %s: expected one of f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_K, q3_K, q4_K, q5_K, "
                       "q6_K, iq4_nl, iq4_xs, mxfp4%s",
                       what, name, t == TS_DTYPE_INVALID ? "" : " (tessera quantize does not write that type)");
    *out = t;
    return TS_OK;
}

ts_status ts_qoverrides_add(ts_qoverrides **ovp, const char *spec, ts_err *err)
{
    const char *eq = strrchr(spec, '='); /* type names have no '=', patterns may */
    if (!eq)
        return ts_fail(err, TS_ERR_ARG, "--tensor-type %s: expected REGEX=TYPE", spec);
    if (eq == spec)
        return ts_fail(err, TS_ERR_ARG, "--tensor-type %s: the tensor name pattern is empty", spec);
    ts_dtype type = TS_DTYPE_INVALID;
    char what[300];
    snprintf(what, sizeof what, "--tensor-type %.*s=", (int)(eq - spec) > 200 ? 200 : (int)(eq - spec), spec);
    ts_status st = ts_quant_parse_type(what, eq + 1, &type, err);
    if (st != TS_OK)
        return st;
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)spec, (PCRE2_SIZE)(eq - spec), PCRE2_CASELESS, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return ts_fail(err, TS_ERR_ARG, "--tensor-type %s: the pattern does not compile at offset %zu: %s", spec,
                       (size_t)off, (const char *)msg);
    }
    ts_qoverrides *ov = *ovp;
    if (!ov && !(ov = *ovp = calloc(1, sizeof *ov))) {
        pcre2_code_free(re);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    rule *grown = realloc(ov->r, (ov->n + 1) * sizeof *grown);
    size_t len = (size_t)(eq - spec) + strlen(ts_dtype_name(type)) + 2;
    char *norm = malloc(len);
    if (!grown || !norm) {
        if (grown)
            ov->r = grown;
        free(norm);
        pcre2_code_free(re);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    snprintf(norm, len, "%.*s=%s", (int)(eq - spec), spec, ts_dtype_name(type));
    ov->r = grown;
    ov->r[ov->n++] = (rule){re, norm, type};
    return TS_OK;
}

size_t ts_qoverrides_count(const ts_qoverrides *ov) { return ov ? ov->n : 0; }

const char *ts_qoverrides_spec(const ts_qoverrides *ov, size_t i) { return ov && i < ov->n ? ov->r[i].spec : NULL; }

bool ts_qoverrides_match(const ts_qoverrides *ov, const char *name, ts_dtype *type)
{
    if (!ov)
        return false;
    for (size_t i = 0; i < ov->n; i++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(ov->r[i].re, NULL);
        if (!md)
            return false;
        int rc = pcre2_match(ov->r[i].re, (PCRE2_SPTR)name, strlen(name), 0, 0, md, NULL);
        pcre2_match_data_free(md);
        if (rc >= 0) {
            *type = ov->r[i].type;
            return true;
        }
    }
    return false;
}

void ts_qoverrides_free(ts_qoverrides *ov)
{
    if (!ov)
        return;
    for (size_t i = 0; i < ov->n; i++) {
        pcre2_code_free(ov->r[i].re);
        free(ov->r[i].spec);
    }
    free(ov->r);
    free(ov);
}
