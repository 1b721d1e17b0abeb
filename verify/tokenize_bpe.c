/* Byte-level BPE (tokenizer.ggml.model "gpt2"), as llama.cpp's
 * llm_tokenizer_bpe_session: pre-tokenize into words, map every byte of a
 * word to GPT-2's printable code point, then merge adjacent symbols lowest
 * merge rank first (the leftmost pair among equal ranks), one word at a time.
 * A word that is already a token stays whole when the pre-tokenizer says to
 * ignore merges (Llama 3). A final symbol that is not a token falls back to
 * the tokens of its single bytes, skipping bytes that have none.
 * Words repeat, so each word's ids are cached for the call. */
#include "verify/tokenize_internal.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_MAX_WORDS (1u << 20) /* beyond this the cache stops growing */

typedef struct {
    int32_t prev, next;
    uint32_t off, n; /* bytes of the word; n == 0 once merged into its left neighbour */
} bpe_sym;

typedef struct {
    int32_t rank, left, right;
    uint32_t size;
} bpe_pair;

struct ts_bpe_session {
    const ts_tokenizer *t;
    ts_split_scratch split;
    uint32_t *cpts;
    size_t cpts_cap;
    char *word, *key;
    size_t word_cap, key_cap;
    bpe_sym *sym;
    size_t sym_cap;
    bpe_pair *heap;
    size_t heap_n, heap_cap;
    ts_tmap cache;     /* word -> index into cache_at */
    ts_szvec cache_at; /* start of the word's ids in cache_ids, then their count */
    ts_i32vec cache_ids;
};

ts_status ts_bpe_session_new(const ts_tokenizer *t, ts_bpe_session **out, ts_err *err)
{
    ts_bpe_session *s = calloc(1, sizeof *s);
    if (!s || !ts_tmap_init(&s->cache, 4096)) {
        free(s);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory starting a BPE session");
    }
    s->t = t;
    *out = s;
    return TS_OK;
}

void ts_bpe_session_free(ts_bpe_session *s)
{
    if (!s)
        return;
    ts_split_scratch_free(&s->split);
    ts_tmap_free(&s->cache);
    free(s->cache_at.v);
    free(s->cache_ids.v);
    free(s->cpts);
    free(s->word);
    free(s->key);
    free(s->sym);
    free(s->heap);
    free(s);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q)
        return false;
    *p = q, *cap = c;
    return true;
}

static bool pair_before(const bpe_pair *a, const bpe_pair *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static bool heap_push(ts_bpe_session *s, bpe_pair p)
{
    if (!grow((void **)&s->heap, &s->heap_cap, s->heap_n + 1, sizeof *s->heap))
        return false;
    size_t i = s->heap_n++;
    while (i > 0 && pair_before(&p, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = p;
    return true;
}

static bpe_pair heap_pop(ts_bpe_session *s)
{
    bpe_pair top = s->heap[0], last = s->heap[--s->heap_n];
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

/* Queues the merge of symbols l and r if "l r" is a merge. */
static bool add_pair(ts_bpe_session *s, const char *word, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return true;
    const bpe_sym *a = &s->sym[l], *b = &s->sym[r];
    size_t klen = (size_t)a->n + 1 + b->n;
    if (!grow((void **)&s->key, &s->key_cap, klen, 1))
        return false;
    memcpy(s->key, word + a->off, a->n);
    s->key[a->n] = ' ';
    memcpy(s->key + a->n + 1, word + b->off, b->n);
    int32_t rank = ts_tmap_get(&s->t->merges, s->key, klen);
    if (rank < 0)
        return true;
    return heap_push(s, (bpe_pair){.rank = rank, .left = l, .right = r, .size = a->n + b->n});
}

static size_t utf8_unit_len(unsigned char b)
{
    static const unsigned char LEN[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return LEN[b >> 4];
}

/* The ids of one byte-encoded word, appended to out. */
static bool encode_word(ts_bpe_session *s, const char *word, size_t len, ts_i32vec *out)
{
    const ts_tokenizer *t = s->t;
    if (t->ignore_merges) {
        int32_t id = ts_tmap_get(&t->token_ids, word, len);
        if (id >= 0)
            return ts_i32vec_push(out, id);
    }
    if (!grow((void **)&s->sym, &s->sym_cap, len, sizeof *s->sym))
        return false;
    int32_t n = 0;
    for (size_t off = 0; off < len; n++) {
        size_t k = utf8_unit_len((unsigned char)word[off]);
        if (k > len - off)
            k = len - off;
        s->sym[n] = (bpe_sym){.prev = n - 1, .next = off + k == len ? -1 : n + 1, .off = (uint32_t)off,
                              .n = (uint32_t)k};
        off += k;
    }
    s->heap_n = 0;
    for (int32_t i = 1; i < n; i++)
        if (!add_pair(s, word, i - 1, i))
            return false;
    while (s->heap_n > 0) {
        bpe_pair p = heap_pop(s);
        bpe_sym *l = &s->sym[p.left], *r = &s->sym[p.right];
        /* sizes only grow, so an unchanged total means both sides are as queued */
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            s->sym[r->next].prev = p.left;
        if (!add_pair(s, word, l->prev, p.left) || !add_pair(s, word, p.left, l->next))
            return false;
    }
    for (int32_t i = 0; i < n; i++) {
        const bpe_sym *y = &s->sym[i];
        if (y->n == 0)
            continue;
        int32_t id = ts_tmap_get(&t->token_ids, word + y->off, y->n);
        if (id >= 0) {
            if (!ts_i32vec_push(out, id))
                return false;
            continue;
        }
        for (uint32_t j = 0; j < y->n; j++) {
            int32_t b = t->bpe_byte[(unsigned char)word[y->off + j]];
            if (b >= 0 && !ts_i32vec_push(out, b))
                return false;
        }
    }
    return true;
}

/* Cached encode_word. */
static bool word_ids(ts_bpe_session *s, const char *word, size_t len, ts_i32vec *out)
{
    int32_t e = ts_tmap_get(&s->cache, word, len);
    if (e >= 0) {
        size_t at = s->cache_at.v[2 * (size_t)e], n = s->cache_at.v[2 * (size_t)e + 1];
        for (size_t i = 0; i < n; i++)
            if (!ts_i32vec_push(out, s->cache_ids.v[at + i]))
                return false;
        return true;
    }
    size_t first = out->n;
    if (!encode_word(s, word, len, out))
        return false;
    if (s->cache.n >= CACHE_MAX_WORDS)
        return true;
    size_t at = s->cache_ids.n;
    for (size_t i = first; i < out->n; i++)
        if (!ts_i32vec_push(&s->cache_ids, out->v[i]))
            return false;
    return ts_szvec_push(&s->cache_at, at) && ts_szvec_push(&s->cache_at, out->n - first) &&
           ts_tmap_put(&s->cache, word, len, (int32_t)s->cache.n, false);
}

ts_status ts_bpe_encode(ts_bpe_session *s, const char *text, size_t len, ts_i32vec *out, ts_err *err)
{
    const ts_tokenizer *t = s->t;
    if (!grow((void **)&s->cpts, &s->cpts_cap, len + 1, sizeof *s->cpts))
        return ts_fail(err, TS_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
    size_t n = ts_utf8_decode(text, len, s->cpts);
    const ts_szvec *pieces;
    ts_status st = ts_pretok_split(&t->pre, s->cpts, n, &s->split, &pieces, err);
    if (st != TS_OK)
        return st;
    size_t start = 0;
    for (size_t i = 0; i < pieces->n; i++) {
        size_t plen = pieces->v[i];
        /* each code point is at most 4 bytes, each byte at most 2 once mapped */
        if (!grow((void **)&s->word, &s->word_cap, plen * 8, 1))
            return ts_fail(err, TS_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
        size_t wlen = 0;
        for (size_t j = start; j < start + plen; j++) {
            char u[4];
            int k = ts_utf8_encode(s->cpts[j], u);
            for (int b = 0; b < k; b++) {
                const char *m = t->byte_enc[(unsigned char)u[b]];
                while (*m)
                    s->word[wlen++] = *m++;
            }
        }
        if (!word_ids(s, s->word, wlen, out))
            return ts_fail(err, TS_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
        start += plen;
    }
    return TS_OK;
}
