/* SentencePiece (tokenizer.ggml.model "llama"), as llama.cpp's
 * llm_tokenizer_spm_session: spaces become U+2581 (a space first when the
 * fragment starts the text or follows a special token and add_space_prefix
 * is set), the fragment is cut into UTF-8 units by their lead byte (no
 * validation: a stray lead byte swallows what follows, up to its length),
 * and adjacent symbols whose concatenation is a token merge, highest token
 * score first (the leftmost pair among equal scores), over the whole
 * fragment at once. A final symbol that is not a token becomes its bytes'
 * <0xXX> tokens (or one-byte tokens where those are missing). */
#include "verify/tokenize_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t prev, next;
    uint32_t off, n; /* n == 0 once merged into the left neighbour */
} spm_sym;

/* The right symbol is the left one's next while the left one is unchanged,
 * so a queued pair needs only its left index and total size (12 bytes keep
 * the heap of a megabyte of text in cache better). */
typedef struct {
    float score;
    int32_t left;
    uint32_t size;
} spm_pair;

typedef struct {
    const ts_tokenizer *t;
    const char *text;
    spm_sym *sym;
    spm_pair *heap;
    size_t heap_n, heap_cap;
    bool nomem;
} spm_state;

static bool pair_before(const spm_pair *a, const spm_pair *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(spm_state *s, spm_pair p)
{
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 1024;
        spm_pair *h = realloc(s->heap, cap * sizeof *h);
        if (!h) {
            s->nomem = true;
            return;
        }
        s->heap = h, s->heap_cap = cap;
    }
    size_t i = s->heap_n++;
    while (i > 0 && pair_before(&p, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = p;
}

static spm_pair heap_pop(spm_state *s)
{
    spm_pair top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && pair_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!pair_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0)
        s->heap[i] = last;
    return top;
}

/* Queues symbols l and r if together they are a token (any token). */
static void try_pair(spm_state *s, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    size_t size = s->sym[l].n + s->sym[r].n; /* r starts where l ends */
    int32_t id = ts_tmap_get(&s->t->token_ids, s->text + s->sym[l].off, size);
    if (id >= 0)
        heap_push(s, (spm_pair){.score = s->t->score[id], .left = l, .size = (uint32_t)size});
}

ts_status ts_spm_encode(const ts_tokenizer *t, const char *text, size_t len, bool space_prefix, ts_i32vec *out,
                        ts_err *err)
{
    /* escape: each space (the prefix included) becomes the 3 bytes of U+2581 */
    size_t cap = (len + 1) * 3;
    char *buf = malloc(cap);
    spm_sym *sym = malloc((len + 1) * sizeof *sym);
    spm_state s = {.t = t, .text = buf, .sym = sym};
    ts_status st = TS_OK;
    if (!buf || !sym) {
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
        goto done;
    }
    size_t n = 0;
    if (space_prefix)
        memcpy(buf, "\xE2\x96\x81", 3), n = 3;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ')
            memcpy(buf + n, "\xE2\x96\x81", 3), n += 3;
        else
            buf[n++] = text[i];
    }

    static const unsigned char UNIT[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    int32_t n_sym = 0;
    for (size_t off = 0; off < n; n_sym++) {
        size_t k = UNIT[(unsigned char)buf[off] >> 4];
        if (k > n - off)
            k = n - off;
        sym[n_sym] = (spm_sym){.prev = n_sym - 1, .next = off + k == n ? -1 : n_sym + 1, .off = (uint32_t)off,
                               .n = (uint32_t)k};
        off += k;
    }
    for (int32_t i = 1; i < n_sym; i++)
        try_pair(&s, i - 1, i);
    while (s.heap_n > 0 && !s.nomem) {
        spm_pair p = heap_pop(&s);
        spm_sym *l = &sym[p.left];
        if (l->n == 0 || l->next < 0)
            continue;
        spm_sym *r = &sym[l->next];
        if (r->n == 0 || l->n + r->n != p.size)
            continue; /* stale: one side has merged since (sizes only grow) */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (l->next >= 0)
            sym[l->next].prev = p.left;
        try_pair(&s, l->prev, p.left);
        try_pair(&s, p.left, l->next);
    }
    if (s.nomem) {
        st = ts_fail(err, TS_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
        goto done;
    }
    for (int32_t i = n_sym > 0 ? 0 : -1; i != -1; i = sym[i].next) {
        int32_t id = ts_tmap_get(&t->token_ids, buf + sym[i].off, sym[i].n);
        if (id >= 0) {
            if (!ts_i32vec_push(out, id))
                goto nomem;
            continue;
        }
        for (size_t j = 0; j < sym[i].n; j++) {
            unsigned char b = (unsigned char)buf[sym[i].off + j];
            if (t->spm_byte[b] < 0) {
                /* llama.cpp throws here (std::out_of_range) */
                st = ts_fail(err, TS_ERR_FORMAT,
                             "the vocabulary has no byte token for 0x%02X (neither <0x%02X> nor the raw byte)", b, b);
                goto done;
            }
            if (!ts_i32vec_push(out, t->spm_byte[b]))
                goto nomem;
        }
    }
    goto done;
nomem:
    st = ts_fail(err, TS_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
done:
    free(buf);
    free(sym);
    free(s.heap);
    return st;
}
