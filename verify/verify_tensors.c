/* The structural checks that read tensor bytes: block data (every scale
 * finite) and the tessera.checksum.* checksums, one pass over each tensor,
 * tensors in parallel. Block layouts are ggml's (ggml-common.h; see
 * docs/formats/quant-types.md). */
#include "verify/verify.h"
#include "verify/verify_internal.h"

#include "core/threads.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Where a block keeps its float scales. Every ggml type Tessera knows is
 * listed; a type with no entry has no floats to check (integers). */
typedef enum { SC_F16, SC_F32, SC_E8M0, SC_IQ1_M } scale_kind;
typedef struct {
    ts_dtype type;
    scale_kind kind;
    uint8_t n;         /* scales per block */
    uint16_t off[2];   /* their byte offsets in the block */
    const char *name[2];
} block_scales;

static const block_scales scales_table[] = {
    {TS_Q4_0, SC_F16, 1, {0}, {"d"}},            {TS_Q4_1, SC_F16, 2, {0, 2}, {"d", "m"}},
    {TS_Q5_0, SC_F16, 1, {0}, {"d"}},            {TS_Q5_1, SC_F16, 2, {0, 2}, {"d", "m"}},
    {TS_Q8_0, SC_F16, 1, {0}, {"d"}},            {TS_Q8_1, SC_F16, 2, {0, 2}, {"d", "s"}},
    {TS_Q2_K, SC_F16, 2, {80, 82}, {"d", "dmin"}}, {TS_Q3_K, SC_F16, 1, {108}, {"d"}},
    {TS_Q4_K, SC_F16, 2, {0, 2}, {"d", "dmin"}},   {TS_Q5_K, SC_F16, 2, {0, 2}, {"d", "dmin"}},
    {TS_Q6_K, SC_F16, 1, {208}, {"d"}},          {TS_Q8_K, SC_F32, 1, {0}, {"d"}},
    {TS_IQ2_XXS, SC_F16, 1, {0}, {"d"}},         {TS_IQ2_XS, SC_F16, 1, {0}, {"d"}},
    {TS_IQ2_S, SC_F16, 1, {0}, {"d"}},           {TS_IQ3_XXS, SC_F16, 1, {0}, {"d"}},
    {TS_IQ3_S, SC_F16, 1, {0}, {"d"}},           {TS_IQ1_S, SC_F16, 1, {0}, {"d"}},
    {TS_IQ1_M, SC_IQ1_M, 1, {48}, {"d"}},        {TS_IQ4_NL, SC_F16, 1, {0}, {"d"}},
    {TS_IQ4_XS, SC_F16, 1, {0}, {"d"}},          {TS_TQ1_0, SC_F16, 1, {52}, {"d"}},
    {TS_TQ2_0, SC_F16, 1, {64}, {"d"}},          {TS_MXFP4, SC_E8M0, 1, {0}, {"e"}},
};

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* An IEEE half, float or double is not finite when its exponent is all ones;
 * the mantissa then tells NaN (nonzero) from infinity. */
static bool f16_bad(uint16_t h, bool *nan)
{
    *nan = (h & 0x3FF) != 0;
    return (h & 0x7C00) == 0x7C00;
}

static bool bf16_bad(uint16_t h, bool *nan)
{
    *nan = (h & 0x7F) != 0;
    return (h & 0x7F80) == 0x7F80;
}

static bool f32_bad(uint32_t u, bool *nan)
{
    *nan = (u & 0x7FFFFF) != 0;
    return (u & 0x7F800000) == 0x7F800000;
}

/* Plain float tensors: every element. */
static int64_t scan_plain(ts_dtype type, const uint8_t *p, uint64_t nbytes, bool *nan)
{
    switch (type) {
    case TS_F16:
        for (uint64_t i = 0; i + 2 <= nbytes; i += 2)
            if (f16_bad(rd16(p + i), nan))
                return (int64_t)(i / 2);
        return -1;
    case TS_BF16:
        for (uint64_t i = 0; i + 2 <= nbytes; i += 2)
            if (bf16_bad(rd16(p + i), nan))
                return (int64_t)(i / 2);
        return -1;
    case TS_F32:
        for (uint64_t i = 0; i + 4 <= nbytes; i += 4)
            if (f32_bad(rd32(p + i), nan))
                return (int64_t)(i / 4);
        return -1;
    case TS_F64:
        for (uint64_t i = 0; i + 8 <= nbytes; i += 8) {
            uint64_t u = (uint64_t)rd32(p + i) | (uint64_t)rd32(p + i + 4) << 32;
            if ((u & 0x7FF0000000000000ull) == 0x7FF0000000000000ull) {
                *nan = (u & 0x000FFFFFFFFFFFFFull) != 0;
                return (int64_t)(i / 8);
            }
        }
        return -1;
    default:
        return -1;
    }
}

/* IQ1_M has no d field: its f16 scale is spread over the top nibbles of
 * the four u16 scales (dequantize_row_iq1_m in ggml-quants.c). */
static uint16_t iq1_m_scale(const uint8_t *sc)
{
    const uint16_t s0 = rd16(sc), s1 = rd16(sc + 2), s2 = rd16(sc + 4), s3 = rd16(sc + 6);
    return (uint16_t)((s0 >> 12) | ((s1 >> 8) & 0x00F0) | ((s2 >> 4) & 0x0F00) | (s3 & 0xF000));
}

int64_t ts_verify_block_data(ts_dtype type, const void *data, uint64_t nbytes, const char **field, bool *is_nan)
{
    const uint8_t *p = data;
    bool nan = false;
    *field = "value";
    *is_nan = false;
    const ts_dtype_info *info = ts_dtype_get(type);
    if (!info)
        return -1;
    if (info->block_size == 1) {
        int64_t at = scan_plain(type, p, nbytes, &nan);
        *is_nan = nan;
        return at;
    }
    const block_scales *bs = NULL;
    for (size_t i = 0; i < sizeof scales_table / sizeof scales_table[0]; i++)
        if (scales_table[i].type == type)
            bs = &scales_table[i];
    if (!bs)
        return -1;
    const uint64_t bb = info->block_bytes, n_blocks = nbytes / bb;
    for (uint64_t b = 0; b < n_blocks; b++) {
        const uint8_t *blk = p + b * bb;
        for (int k = 0; k < bs->n; k++) {
            const uint8_t *s = blk + bs->off[k];
            bool bad;
            switch (bs->kind) {
            case SC_F16: bad = f16_bad(rd16(s), &nan); break;
            case SC_F32: bad = f32_bad(rd32(s), &nan); break;
            case SC_E8M0: bad = *s == 0xFF; nan = true; break; /* E8M0's only non-finite code is NaN */
            default: bad = f16_bad(iq1_m_scale(s), &nan); break;
            }
            if (bad) {
                *field = bs->name[k];
                *is_nan = nan;
                return (int64_t)b;
            }
        }
    }
    return -1;
}

const uint64_t *ts_verify_stored_checksums(const ts_gguf *g, const char **why, bool *stale)
{
    *why = NULL;
    *stale = false;
    const ts_gguf_kv *algo = ts_gguf_find_kv(g, TS_GGUF_KEY_CHECKSUM_ALGO);
    const ts_gguf_kv *info = ts_gguf_find_kv(g, TS_GGUF_KEY_CHECKSUM_TENSOR_INFO);
    const ts_gguf_kv *sums = ts_gguf_find_kv(g, TS_GGUF_KEY_CHECKSUM_TENSORS);
    if (!algo && !info && !sums)
        return NULL;
    if (!algo || !info || !sums) {
        *why = !algo ? TS_GGUF_KEY_CHECKSUM_ALGO " is missing"
               : !info ? TS_GGUF_KEY_CHECKSUM_TENSOR_INFO " is missing"
                       : TS_GGUF_KEY_CHECKSUM_TENSORS " is missing";
        return NULL;
    }
    if (algo->value.type != TS_GGUF_STRING || strcmp(algo->value.str.s, TS_GGUF_CHECKSUM_ALGO)) {
        *why = TS_GGUF_KEY_CHECKSUM_ALGO " is not the string \"" TS_GGUF_CHECKSUM_ALGO "\"";
        return NULL;
    }
    if (info->value.type != TS_GGUF_UINT64) {
        *why = TS_GGUF_KEY_CHECKSUM_TENSOR_INFO " is not a UINT64";
        return NULL;
    }
    if (sums->value.type != TS_GGUF_ARRAY || sums->value.arr.elem_type != TS_GGUF_UINT64) {
        *why = TS_GGUF_KEY_CHECKSUM_TENSORS " is not an array of UINT64";
        return NULL;
    }
    /* another tensor table: the keys were copied into a rewritten file */
    if (info->value.u64 != ts_gguf_tensor_info_hash(g)) {
        *stale = true;
        return NULL;
    }
    if (sums->value.arr.n != g->n_tensors) {
        *why = TS_GGUF_KEY_CHECKSUM_TENSORS " does not hold one value per tensor";
        return NULL;
    }
    return g->n_tensors ? sums->value.arr.data : NULL;
}

/* ---- one pass over every tensor ---- */

typedef struct {
    const ts_gguf *g;
    bool hash;
    uint64_t *sums;     /* computed, per tensor */
    int64_t *bad_at;    /* first bad block / element, or -1 */
    const char **field; /* per tensor */
    bool *bad_nan;
} scan_ctx;

static ts_status scan_tensor(void *ctx, int64_t i, int thread)
{
    (void)thread;
    scan_ctx *s = ctx;
    const ts_tensor *t = &s->g->tensors[i].t;
    s->bad_at[i] = ts_verify_block_data(t->dtype, t->data, t->nbytes, &s->field[i], &s->bad_nan[i]);
    if (s->hash)
        s->sums[i] = XXH3_64bits(t->nbytes ? t->data : "", (size_t)t->nbytes);
    /* the pages are not needed again: keeps RSS bounded on files larger than memory */
    ts_mapped_release(&s->g->file, s->g->data_offset + s->g->tensors[i].offset, t->nbytes);
    return TS_OK;
}

static void check_types(const ts_gguf *g, ts_verify_report *r)
{
    ts_check *c = ts_verify_add(r, "tensor_types");
    uint64_t count[TS_GGML_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const ts_tensor *t = &g->tensors[i].t;
        const ts_dtype_info *info = ts_dtype_get(t->dtype);
        if (!info || !info->is_ggml || (int)t->dtype >= TS_GGML_TYPE_COUNT)
            ts_verify_failure(c, "%s: type %d is not a GGUF tensor type Tessera knows", t->name, (int)t->dtype);
        else
            count[t->dtype]++;
    }
    size_t len = 0;
    for (int k = 0; k < TS_GGML_TYPE_COUNT && len < sizeof c->detail; k++)
        if (count[k])
            len += (size_t)snprintf(c->detail + len, sizeof c->detail - len, "%s%s x %llu", len ? ", " : "",
                                    ts_dtype_name((ts_dtype)k), (unsigned long long)count[k]);
    ts_verify_count_gate(c, "tensor(s) of unknown types");
}

void ts_verify_tensors(const ts_gguf *g, const ts_verify_opts *o, ts_verify_report *r)
{
    r->n_tensors = g->n_tensors;
    r->tensor_bytes = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        r->tensor_bytes += g->tensors[i].t.nbytes;
    check_types(g, r);

    const char *why;
    bool stale;
    const uint64_t *stored = ts_verify_stored_checksums(g, &why, &stale);
    const size_t n = g->n_tensors ? (size_t)g->n_tensors : 1;
    scan_ctx s = {.g = g, .hash = stored != NULL, .sums = calloc(n, sizeof *s.sums),
                  .bad_at = calloc(n, sizeof *s.bad_at), .field = calloc(n, sizeof *s.field),
                  .bad_nan = calloc(n, sizeof *s.bad_nan)};
    ts_check *blocks = ts_verify_add(r, "block_data");
    ts_check *sums = ts_verify_add(r, "checksums");
    if (!s.sums || !s.bad_at || !s.field || !s.bad_nan) {
        ts_verify_set(blocks, TS_CHECK_FAIL, "out of memory for %llu tensors", (unsigned long long)g->n_tensors);
        ts_verify_set(sums, TS_CHECK_FAIL, "out of memory for %llu tensors", (unsigned long long)g->n_tensors);
    } else {
        ts_parallel_for(o->n_threads > 0 ? o->n_threads : ts_cpu_count(), (int64_t)g->n_tensors, scan_tensor, &s);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const ts_tensor *t = &g->tensors[i].t;
            if (s.bad_at[i] >= 0)
                ts_verify_failure(blocks, "%s (%s): %s %lld %s is %s", t->name, ts_dtype_name(t->dtype),
                                  ts_dtype_get(t->dtype)->block_size > 1 ? "block" : "element",
                                  (long long)s.bad_at[i], s.field[i], s.bad_nan[i] ? "NaN" : "infinite");
        }
        snprintf(blocks->detail, sizeof blocks->detail, "%llu tensors, %.1f MB: every scale and float finite",
                 (unsigned long long)g->n_tensors, (double)r->tensor_bytes / 1e6);
        ts_verify_count_gate(blocks, "tensor(s) with a non-finite scale or value");

        const char *absent = stale ? "stale: they describe another tensor table (a tool rewrote the tensors and "
                                     "copied tessera's keys, as llama-quantize does); not checked"
                                   : "not present (the file was not written by tessera convert/quantize)";
        if (why) {
            ts_verify_set(sums, TS_CHECK_FAIL, "malformed: %s", why);
        } else if (!stored && g->n_tensors && o->require_checksums) {
            ts_verify_set(sums, TS_CHECK_FAIL, "%s, and --require-checksums was given", absent);
        } else if (!stored) {
            ts_verify_set(sums, TS_CHECK_SKIP, "%s", absent);
        } else {
            for (uint64_t i = 0; i < g->n_tensors; i++)
                if (s.sums[i] != stored[i])
                    ts_verify_failure(sums, "%s: stored %016llx, computed %016llx", g->tensors[i].t.name,
                                      (unsigned long long)stored[i], (unsigned long long)s.sums[i]);
            snprintf(sums->detail, sizeof sums->detail, "%s of %llu tensors match", TS_GGUF_CHECKSUM_ALGO,
                     (unsigned long long)g->n_tensors);
            ts_verify_count_gate(sums, "tensor(s) whose bytes do not match their checksum");
        }
    }
    free(s.sums);
    free(s.bad_at);
    free(s.field);
    free(s.bad_nan);
}
