/* A string -> index hash set over a caller-owned array of strings: finds token
 * ids by text (merges, special tokens) and duplicate tokens. Open addressing,
 * linear probing, at most half full. */
#include "convert/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

ts_status ts_tok_map_init(ts_tok_map *m, char *const *keys, int64_t capacity_hint, ts_err *err)
{
    uint64_t cap = 64;
    while (cap < (uint64_t)capacity_hint * 2)
        cap <<= 1;
    m->slot = malloc(cap * sizeof *m->slot);
    if (!m->slot)
        return ts_fail(err, TS_ERR_NOMEM, "tokenizer: out of memory for a %llu-slot token map",
                       (unsigned long long)cap);
    memset(m->slot, 0xff, cap * sizeof *m->slot); /* all -1 */
    m->mask = cap - 1;
    m->keys = keys;
    return TS_OK;
}

void ts_tok_map_free(ts_tok_map *m)
{
    free(m->slot);
    m->slot = NULL;
}

static bool key_equal(const char *key, const char *s, size_t len)
{
    return strncmp(key, s, len) == 0 && key[len] == 0;
}

int64_t ts_tok_map_find(const ts_tok_map *m, const char *s, size_t len)
{
    for (uint64_t h = XXH3_64bits(s, len) & m->mask;; h = (h + 1) & m->mask) {
        int64_t i = m->slot[h];
        if (i < 0)
            return -1;
        if (key_equal(m->keys[i], s, len))
            return i;
    }
}

int64_t ts_tok_map_insert(ts_tok_map *m, int64_t i)
{
    const char *s = m->keys[i];
    size_t len = strlen(s);
    uint64_t h = XXH3_64bits(s, len) & m->mask;
    for (;; h = (h + 1) & m->mask) {
        int64_t j = m->slot[h];
        if (j < 0)
            break;
        if (key_equal(m->keys[j], s, len))
            return j;
    }
    m->slot[h] = i;
    return -1;
}

void ts_tok_map_repoint(ts_tok_map *m, int64_t from, int64_t to)
{
    const char *s = m->keys[from];
    for (uint64_t h = XXH3_64bits(s, strlen(s)) & m->mask; m->slot[h] >= 0; h = (h + 1) & m->mask)
        if (m->slot[h] == from) {
            m->slot[h] = to;
            return;
        }
}
