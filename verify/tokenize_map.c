/* Open-addressing string -> int32 map for token texts, merges and the BPE
 * word cache, plus the growable arrays the tokenizer appends to. Keys are
 * copied into one arena, so a map of 200k tokens costs two allocations. */
#include "verify/tokenize_internal.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

bool ts_i32vec_push(ts_i32vec *a, int32_t x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return false;
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

bool ts_szvec_push(ts_szvec *a, size_t x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        size_t *v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return false;
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = x;
    return true;
}

bool ts_tmap_init(ts_tmap *m, size_t expected)
{
    memset(m, 0, sizeof *m);
    size_t slots = 16;
    while (slots < expected * 2 + 2) /* load factor <= 1/2 keeps probes short */
        slots *= 2;
    m->slots = calloc(slots, sizeof *m->slots);
    m->cap = expected > 8 ? expected : 8;
    m->e = malloc(m->cap * sizeof *m->e);
    m->arena_cap = m->cap * 8;
    m->arena = malloc(m->arena_cap);
    m->mask = slots - 1;
    if (!m->slots || !m->e || !m->arena) {
        ts_tmap_free(m);
        return false;
    }
    return true;
}

void ts_tmap_free(ts_tmap *m)
{
    free(m->slots);
    free(m->e);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

static bool tmap_grow_slots(ts_tmap *m)
{
    size_t slots = (m->mask + 1) * 2;
    uint32_t *s = calloc(slots, sizeof *s);
    if (!s)
        return false;
    for (size_t i = 0; i < m->n; i++) {
        size_t j = m->e[i].hash & (slots - 1);
        while (s[j])
            j = (j + 1) & (slots - 1);
        s[j] = (uint32_t)(i + 1);
    }
    free(m->slots);
    m->slots = s;
    m->mask = slots - 1;
    return true;
}

/* Slot of key, or of the empty slot where it would go. */
static size_t tmap_probe(const ts_tmap *m, const char *key, size_t len, uint64_t h)
{
    size_t j = h & m->mask;
    for (;;) {
        uint32_t s = m->slots[j];
        if (!s)
            return j;
        const ts_tmap_entry *e = &m->e[s - 1];
        if (e->hash == h && e->len == len && memcmp(m->arena + e->off, key, len) == 0)
            return j;
        j = (j + 1) & m->mask;
    }
}

int32_t ts_tmap_get(const ts_tmap *m, const char *key, size_t len)
{
    if (!m->slots)
        return -1;
    uint32_t s = m->slots[tmap_probe(m, key, len, XXH3_64bits(key, len))];
    return s ? m->e[s - 1].val : -1;
}

bool ts_tmap_put(ts_tmap *m, const char *key, size_t len, int32_t val, bool replace)
{
    if (len > UINT32_MAX || m->n >= UINT32_MAX - 1)
        return false;
    uint64_t h = XXH3_64bits(key, len);
    size_t j = tmap_probe(m, key, len, h);
    if (m->slots[j]) {
        if (replace)
            m->e[m->slots[j] - 1].val = val;
        return true;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap * 2;
        ts_tmap_entry *e = realloc(m->e, cap * sizeof *e);
        if (!e)
            return false;
        m->e = e, m->cap = cap;
    }
    if (m->arena_len + len > m->arena_cap) {
        size_t cap = m->arena_cap * 2;
        while (cap < m->arena_len + len)
            cap *= 2;
        char *a = realloc(m->arena, cap);
        if (!a)
            return false;
        m->arena = a, m->arena_cap = cap;
    }
    memcpy(m->arena + m->arena_len, key, len);
    m->e[m->n] = (ts_tmap_entry){.hash = h, .off = m->arena_len, .len = (uint32_t)len, .val = val};
    m->arena_len += len;
    m->slots[j] = (uint32_t)(++m->n);
    if (m->n * 2 > m->mask + 1)
        return tmap_grow_slots(m);
    return true;
}
