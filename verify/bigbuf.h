/* Large scratch buffers (activations, logits: hundreds of MB for a big
 * vocabulary) backed by transparent huge pages where the kernel offers them:
 * first touching 600 MB in 4 KB pages costs more than scoring a chunk. */
#ifndef TS_BIGBUF_H
#define TS_BIGBUF_H

#include <stdlib.h>
#include <sys/mman.h>

static inline void *ts_big_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    if (bytes < huge)
        return malloc(bytes);
    void *p = NULL;
    size_t n = (bytes + huge - 1) / huge * huge;
    if (posix_memalign(&p, huge, n))
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE); /* advice only: failure changes nothing */
#endif
    return p;
}

#endif
