/* SentencePiece tokenizer.model -> a "llama" vocabulary. The file is a
 * protobuf ModelProto (sentencepiece_model.proto), decoded here by hand:
 *   ModelProto      1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
 *   SentencePiece   1 piece (string), 2 score (float), 3 type (enum, default NORMAL)
 *   TrainerSpec     3 model_type (1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR), 24 treat_whitespace_as_suffix,
 *                   35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id
 *   NormalizerSpec  1 name, 3 add_dummy_prefix (default true), 4 remove_extra_whitespaces (default true)
 * Every length is checked against the bytes that remain; errors give the byte offset. */
#include "convert/tokenizer_internal.h"
#include "core/mapped_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *base, *p, *end;
    const char *path;
} pb_reader;

typedef struct {
    uint32_t field;
    uint32_t wire;
    uint64_t value;      /* varint / fixed values */
    const uint8_t *data; /* length-delimited payload */
    uint64_t len;
} pb_field;

static ts_status pb_varint(pb_reader *r, uint64_t *out, ts_err *err)
{
    uint64_t v = 0;
    size_t off = (size_t)(r->p - r->base);
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end)
            return ts_fail(err, TS_ERR_FORMAT, "%s: truncated varint at byte %zu", r->path, off);
        uint8_t b = *r->p++;
        if (shift == 63 && b > 1)
            return ts_fail(err, TS_ERR_FORMAT, "%s: varint at byte %zu overflows 64 bits", r->path, off);
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return TS_OK;
        }
    }
    return ts_fail(err, TS_ERR_FORMAT, "%s: varint at byte %zu is longer than 10 bytes", r->path, off);
}

/* Next field of the message in r; *done when r is exhausted. */
static ts_status pb_next(pb_reader *r, pb_field *f, bool *done, ts_err *err)
{
    ts_status st;
    *done = r->p >= r->end;
    if (*done)
        return TS_OK;
    size_t off = (size_t)(r->p - r->base);
    uint64_t key;
    if ((st = pb_varint(r, &key, err)))
        return st;
    f->field = (uint32_t)(key >> 3);
    f->wire = key & 7;
    if (f->field == 0 || key >> 32)
        return ts_fail(err, TS_ERR_FORMAT, "%s: invalid protobuf field number at byte %zu", r->path, off);
    size_t left = (size_t)(r->end - r->p);
    switch (f->wire) {
    case 0:
        return pb_varint(r, &f->value, err);
    case 1:
    case 5: {
        size_t n = f->wire == 1 ? 8 : 4;
        if (left < n)
            return ts_fail(err, TS_ERR_FORMAT, "%s: truncated fixed%zu field %u at byte %zu", r->path, n * 8,
                           f->field, off);
        f->value = 0;
        for (size_t i = 0; i < n; i++)
            f->value |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        return TS_OK;
    }
    case 2:
        if ((st = pb_varint(r, &f->len, err)))
            return st;
        left = (size_t)(r->end - r->p);
        if (f->len > left)
            return ts_fail(err, TS_ERR_FORMAT,
                           "%s: field %u at byte %zu claims %llu bytes but only %zu remain in its message",
                           r->path, f->field, off, (unsigned long long)f->len, left);
        f->data = r->p;
        r->p += f->len;
        return TS_OK;
    default:
        return ts_fail(err, TS_ERR_FORMAT, "%s: unsupported protobuf wire type %u (field %u) at byte %zu",
                       r->path, f->wire, f->field, off);
    }
}

static pb_reader pb_sub(const pb_reader *parent, const pb_field *f)
{
    return (pb_reader){.base = parent->base, .p = f->data, .end = f->data + f->len, .path = parent->path};
}

static ts_status expect_wire(const pb_reader *r, const pb_field *f, uint32_t wire, const char *name, ts_err *err)
{
    if (f->wire == wire)
        return TS_OK;
    return ts_fail(err, TS_ERR_FORMAT, "%s: %s (field %u) near byte %zu has wire type %u; expected %u", r->path,
                   name, f->field, (size_t)(r->p - r->base), f->wire, wire);
}

typedef struct {
    const uint8_t *text; /* points into the file */
    uint64_t len;
    float score;
    int32_t type;
    size_t offset;
} spm_piece;

typedef struct {
    spm_piece *pieces;
    int64_t n, cap;
    int64_t model_type;
    bool byte_fallback, ws_suffix;
    int64_t ids[4]; /* unk bos eos pad */
    bool add_dummy_prefix, remove_extra_ws;
} spm_model;

static ts_status parse_piece(pb_reader *r, spm_piece *out, ts_err *err)
{
    ts_status st;
    pb_field f;
    bool done, have_text = false;
    *out = (spm_piece){.type = TS_TOK_NORMAL, .offset = (size_t)(r->p - r->base)};
    while (!(st = pb_next(r, &f, &done, err)) && !done) {
        if (f.field == 1) {
            if ((st = expect_wire(r, &f, 2, "SentencePiece.piece", err)))
                return st;
            out->text = f.data, out->len = f.len, have_text = true;
        } else if (f.field == 2) {
            if ((st = expect_wire(r, &f, 5, "SentencePiece.score", err)))
                return st;
            uint32_t bits = (uint32_t)f.value;
            memcpy(&out->score, &bits, 4);
        } else if (f.field == 3) {
            if ((st = expect_wire(r, &f, 0, "SentencePiece.type", err)))
                return st;
            if (f.value < 1 || f.value > 6)
                return ts_fail(err, TS_ERR_FORMAT, "%s: piece at byte %zu has type %llu; expected 1 to 6",
                               r->path, out->offset, (unsigned long long)f.value);
            out->type = (int32_t)f.value;
        }
    }
    if (st)
        return st;
    if (!have_text || out->len == 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: piece at byte %zu has no text (SentencePiece.piece)", r->path,
                       out->offset);
    return TS_OK;
}

static ts_status parse_trainer(pb_reader *r, spm_model *m, ts_err *err)
{
    ts_status st;
    pb_field f;
    bool done;
    while (!(st = pb_next(r, &f, &done, err)) && !done) {
        if (f.wire != 0)
            continue; /* all the fields we read are varints */
        if (f.field == 3)
            m->model_type = (int64_t)f.value;
        else if (f.field == 24)
            m->ws_suffix = f.value != 0;
        else if (f.field == 35)
            m->byte_fallback = f.value != 0;
        else if (f.field >= 40 && f.field <= 43)
            m->ids[f.field - 40] = (int32_t)(uint32_t)f.value; /* int32: negatives are 10-byte varints */
    }
    return st;
}

static ts_status parse_normalizer(pb_reader *r, spm_model *m, ts_err *err)
{
    ts_status st;
    pb_field f;
    bool done;
    while (!(st = pb_next(r, &f, &done, err)) && !done) {
        if (f.wire == 0 && f.field == 3)
            m->add_dummy_prefix = f.value != 0;
        else if (f.wire == 0 && f.field == 4)
            m->remove_extra_ws = f.value != 0;
    }
    return st;
}

static ts_status parse_model(pb_reader *r, spm_model *m, ts_err *err)
{
    ts_status st;
    pb_field f;
    bool done;
    while (!(st = pb_next(r, &f, &done, err)) && !done) {
        if (f.field < 1 || f.field > 3)
            continue; /* self_test_data, denormalizer_spec */
        static const char *const names[] = {"", "ModelProto.pieces", "ModelProto.trainer_spec",
                                            "ModelProto.normalizer_spec"};
        if ((st = expect_wire(r, &f, 2, names[f.field], err)))
            return st;
        pb_reader sub = pb_sub(r, &f);
        if (f.field == 1) {
            if (m->n == m->cap) {
                if (m->n >= TS_TOK_MAX_TOKENS)
                    return ts_fail(err, TS_ERR_LIMIT, "%s: more than %lld pieces", r->path,
                                   (long long)TS_TOK_MAX_TOKENS);
                int64_t cap = m->cap ? m->cap * 2 : 1024;
                spm_piece *p = realloc(m->pieces, (size_t)cap * sizeof *p);
                if (!p)
                    return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", r->path);
                m->pieces = p, m->cap = cap;
            }
            if ((st = parse_piece(&sub, &m->pieces[m->n], err)))
                return st;
            m->n++;
        } else if (f.field == 2) {
            if ((st = parse_trainer(&sub, m, err)))
                return st;
        } else if ((st = parse_normalizer(&sub, m, err))) {
            return st;
        }
    }
    return st;
}

static bool is_byte_piece(const spm_piece *p)
{
    static const char hex[] = "0123456789ABCDEFabcdef";
    return p->len == 6 && memcmp(p->text, "<0x", 3) == 0 && p->text[5] == '>' && p->text[3] &&
           strchr(hex, p->text[3]) && p->text[4] && strchr(hex, p->text[4]);
}

static ts_status check_model(const char *path, const spm_model *m, ts_err *err)
{
    if (m->n == 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: no pieces; expected a SentencePiece ModelProto", path);
    if (m->model_type != 1 && m->model_type != 2)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s: trainer_spec.model_type %lld is not supported; expected 1 (UNIGRAM) or 2 (BPE), "
                       "which llama.cpp's SentencePiece tokenizer can reproduce", path, (long long)m->model_type);
    if (m->ws_suffix)
        return ts_fail(err, TS_ERR_UNSUPPORTED,
                       "%s: trainer_spec.treat_whitespace_as_suffix is set; llama.cpp's \"llama\" tokenizer "
                       "only supports a whitespace prefix", path);
    for (int64_t i = 0; i < m->n; i++)
        if (m->pieces[i].type == TS_TOK_BYTE && !is_byte_piece(&m->pieces[i]))
            return ts_fail(err, TS_ERR_FORMAT, "%s: piece %lld (byte %zu) has type BYTE but is not <0xHH>", path,
                           (long long)i, m->pieces[i].offset);
    return TS_OK;
}

static ts_status fill_vocab(const ts_tok_files *f, const char *path, const spm_model *m, int64_t rows,
                            ts_tok_vocab *v, ts_err *err)
{
    ts_status st;
    int64_t max_added;
    if ((st = ts_tok_spm_added_max_id(f, &max_added, err)) ||
        (st = ts_tok_vocab_init(v, m->n > max_added + 1 ? m->n : max_added + 1, rows, true, path, err)))
        return st;
    for (int64_t i = 0; i < m->n; i++) {
        const spm_piece *p = &m->pieces[i];
        int32_t type = p->type;
        char *text = NULL;
        const char *s = (const char *)p->text;
        size_t len = (size_t)p->len;
        if (type == TS_TOK_USER_DEFINED) {
            /* llama.cpp matches user-defined tokens on raw text, so their U+2581 must be a space */
            char *tmp = malloc(len + 1);
            if (!tmp)
                return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", path);
            memcpy(tmp, s, len);
            tmp[len] = 0;
            text = ts_tok_unescape_spaces(tmp);
            free(tmp);
            if (!text)
                return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", path);
            s = text, len = strlen(text);
        }
        char what[600];
        snprintf(what, sizeof what, "%s: piece at byte %zu", path, p->offset);
        st = ts_tok_vocab_set(v, i, s, len, type, p->score, false, what, err);
        free(text);
        if (st)
            return st;
    }
    for (int k = 0; k < 4; k++)
        v->spm_ids[k] = m->ids[k] >= 0 && m->ids[k] < m->n ? m->ids[k] : -1;
    return TS_OK;
}

ts_status ts_tok_read_spm(const ts_tok_files *f, const char *model_path, int64_t rows, ts_tok_vocab *v,
                          ts_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    ts_status st = ts_read_small_file(model_path, TS_TOK_MODEL_MAX_BYTES, &buf, &len, err);
    if (st)
        return st;
    spm_model m = {.model_type = 1, .ids = {0, 1, 2, -1}, .add_dummy_prefix = true, .remove_extra_ws = true};
    pb_reader r = {.base = (const uint8_t *)buf, .p = (const uint8_t *)buf, .end = (const uint8_t *)buf + len,
                   .path = model_path};
    if (!(st = parse_model(&r, &m, err)) && !(st = check_model(model_path, &m, err)) &&
        !(st = fill_vocab(f, model_path, &m, rows, v, err)))
        st = ts_tok_spm_added_tokens(f, v, err);
    free(m.pieces);
    free(buf);
    if (st)
        return st;
    v->model = "llama";
    v->pre = "default";
    /* llama.cpp's converter writes add_space_prefix only from tokenizer_config.json's
     * add_prefix_space; without it llama.cpp assumes true, so the model's own
     * add_dummy_prefix is written too (it is what SentencePiece does). */
    const json_t *aps = json_object_get(f->tok_config, "add_prefix_space");
    v->add_space_prefix = json_is_boolean(aps) ? json_is_true(aps) : m.add_dummy_prefix;
    /* llama.cpp's SentencePiece tokenizer ignores this key; written only when set, for readers */
    v->remove_extra_ws = m.remove_extra_ws ? 1 : -1;
    return TS_OK;
}
