/* The zip container of torch.save (torch >= 1.6). libarchive's seekable zip
 * reader walks the central directory and inflates compressed entries; we also
 * read the directory ourselves, because libarchive does not report where an
 * entry's data starts and stored entries are mapped in place. Both views must
 * agree. Layout and checks: docs/formats/pytorch.md. */
#define _GNU_SOURCE
#include "torch_internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u
#define LOCAL_HDR 30u
#define CENTRAL_HDR 46u
#define EOCD_LEN 22u
#define MAX_ENTRIES (1u << 20)
#define MAX_NAME 4096u

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int by_name_cmp(const void *a, const void *b, void *ctx)
{
    const tz_archive *z = ctx;
    return strcmp(z->e[*(const size_t *)a].name, z->e[*(const size_t *)b].name);
}

static int by_offset_cmp(const void *a, const void *b, void *ctx)
{
    const tz_archive *z = ctx;
    uint64_t x = z->e[*(const size_t *)a].header_offset, y = z->e[*(const size_t *)b].header_offset;
    return x < y ? -1 : x > y;
}

/* Names come from the file: refuse anything that could address outside an
 * extraction directory, even though we never extract. */
static bool safe_name(const char *s)
{
    if (!*s || s[0] == '/' || strchr(s, '\\') || strchr(s, ':'))
        return false;
    for (const char *p = s; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return false;
        if (!slash)
            break;
        p = slash + 1;
    }
    return true;
}

static ts_status find_eocd(const tz_archive *z, uint64_t *n_entries, uint64_t *cd_off, uint64_t *cd_size,
                           uint64_t *cd_end, ts_err *err)
{
    if (z->size < EOCD_LEN)
        return ts_fail(err, TS_ERR_FORMAT, "%s: %llu bytes is too small for a zip archive", z->path,
                       (unsigned long long)z->size);
    uint64_t lo = z->size > EOCD_LEN + 65535u ? z->size - EOCD_LEN - 65535u : 0, pos = z->size - EOCD_LEN;
    for (;; pos--) {
        if (le(z->base + pos, 4) == SIG_EOCD && pos + EOCD_LEN + le(z->base + pos + 20, 2) == z->size)
            break;
        if (pos == lo)
            return ts_fail(err, TS_ERR_FORMAT, "%s: no zip end-of-central-directory record (truncated file?)",
                           z->path);
    }
    const uint8_t *e = z->base + pos;
    if (le(e + 4, 2) != 0 || le(e + 6, 2) != 0 || le(e + 8, 2) != le(e + 10, 2))
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: multi-volume zip archives are not supported", z->path);
    *n_entries = le(e + 10, 2);
    *cd_size = le(e + 12, 4);
    *cd_off = le(e + 16, 4);
    *cd_end = pos;
    if (pos >= 20 && le(z->base + pos - 20, 4) == SIG_LOC64) {
        const uint8_t *l = z->base + pos - 20;
        uint64_t off64 = le(l + 8, 8);
        if (le(l + 4, 4) != 0 || le(l + 16, 4) > 1)
            return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: multi-volume zip64 archives are not supported", z->path);
        if (off64 > pos - 20 || pos - 20 - off64 < 56 || le(z->base + off64, 4) != SIG_EOCD64)
            return ts_fail(err, TS_ERR_FORMAT, "%s: zip64 end-of-central-directory record at %llu is invalid",
                           z->path, (unsigned long long)off64);
        const uint8_t *e64 = z->base + off64;
        if (le(e64 + 16, 4) != 0 || le(e64 + 20, 4) != 0 || le(e64 + 24, 8) != le(e64 + 32, 8))
            return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: multi-volume zip64 archives are not supported", z->path);
        *n_entries = le(e64 + 32, 8);
        *cd_size = le(e64 + 40, 8);
        *cd_off = le(e64 + 48, 8);
        *cd_end = off64;
    }
    if (*cd_off > *cd_end || *cd_size != *cd_end - *cd_off)
        return ts_fail(err, TS_ERR_FORMAT, "%s: central directory [%llu, +%llu) does not end where the end record "
                       "starts (%llu)", z->path, (unsigned long long)*cd_off, (unsigned long long)*cd_size,
                       (unsigned long long)*cd_end);
    if (*n_entries > MAX_ENTRIES || *n_entries > *cd_size / CENTRAL_HDR)
        return ts_fail(err, TS_ERR_FORMAT, "%s: %llu entries do not fit a %llu-byte central directory (limit %u)",
                       z->path, (unsigned long long)*n_entries, (unsigned long long)*cd_size, MAX_ENTRIES);
    return TS_OK;
}

/* zip64 extended information: the fields saturated in the fixed header, in order. */
static ts_status zip64_extra(const tz_archive *z, const uint8_t *x, uint64_t n, tz_entry *e, bool need_u, bool need_c,
                             bool need_o, ts_err *err)
{
    for (uint64_t p = 0; p + 4 <= n;) {
        uint64_t id = le(x + p, 2), len = le(x + p + 2, 2);
        if (p + 4 + len > n)
            break;
        if (id == 1) {
            const uint8_t *f = x + p + 4;
            uint64_t need = 8u * ((uint64_t)need_u + need_c + need_o);
            if (len < need)
                return ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s': zip64 extra field too short", z->path, e->name);
            if (need_u) { e->usize = le(f, 8); f += 8; }
            if (need_c) { e->csize = le(f, 8); f += 8; }
            if (need_o) e->header_offset = le(f, 8);
            return TS_OK;
        }
        p += 4 + len;
    }
    if (need_u || need_c || need_o)
        return ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s': sizes need a zip64 extra field, none found", z->path,
                       e->name);
    return TS_OK;
}

static ts_status read_central(tz_archive *z, uint64_t pos, uint64_t cd_end, tz_entry *e, uint64_t *next, ts_err *err)
{
    const uint8_t *c = z->base + pos;
    if (cd_end - pos < CENTRAL_HDR || le(c, 4) != SIG_CENTRAL)
        return ts_fail(err, TS_ERR_FORMAT, "%s: central directory entry at %llu is damaged", z->path,
                       (unsigned long long)pos);
    uint64_t nlen = le(c + 28, 2), xlen = le(c + 30, 2), clen = le(c + 32, 2);
    if (CENTRAL_HDR + nlen + xlen + clen > cd_end - pos)
        return ts_fail(err, TS_ERR_FORMAT, "%s: central directory entry at %llu runs past the directory", z->path,
                       (unsigned long long)pos);
    if (nlen == 0 || nlen > MAX_NAME || memchr(c + CENTRAL_HDR, 0, nlen))
        return ts_fail(err, TS_ERR_FORMAT, "%s: entry at %llu has an empty, long or NUL-containing name", z->path,
                       (unsigned long long)pos);
    e->name = strndup((const char *)c + CENTRAL_HDR, nlen);
    if (!e->name)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (!safe_name(e->name))
        return ts_fail(err, TS_ERR_FORMAT, "%s: entry name '%s' is absolute or escapes the archive (\"..\")",
                       z->path, e->name);
    if (le(c + 8, 2) & 1)
        return ts_fail(err, TS_ERR_UNSUPPORTED, "%s: entry '%s' is encrypted", z->path, e->name);
    e->method = (uint16_t)le(c + 10, 2);
    e->crc = (uint32_t)le(c + 16, 4);
    e->csize = le(c + 20, 4);
    e->usize = le(c + 24, 4);
    e->header_offset = le(c + 42, 4);
    ts_status st = zip64_extra(z, c + CENTRAL_HDR + nlen, xlen, e, e->usize == 0xffffffffu, e->csize == 0xffffffffu,
                               e->header_offset == 0xffffffffu, err);
    if (st)
        return st;
    *next = pos + CENTRAL_HDR + nlen + xlen + clen;
    return TS_OK;
}

/* The local header gives where the data starts; it must agree with the directory. */
static ts_status read_local(tz_archive *z, tz_entry *e, uint64_t cd_off, ts_err *err)
{
    if (e->header_offset > cd_off || cd_off - e->header_offset < LOCAL_HDR)
        return ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s': local header offset %llu is outside the data area",
                       z->path, e->name, (unsigned long long)e->header_offset);
    const uint8_t *l = z->base + e->header_offset;
    if (le(l, 4) != SIG_LOCAL)
        return ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s': no local header at %llu", z->path, e->name,
                       (unsigned long long)e->header_offset);
    uint64_t nlen = le(l + 26, 2), xlen = le(l + 28, 2);
    e->data_offset = e->header_offset + LOCAL_HDR + nlen + xlen;
    if (e->data_offset > cd_off || nlen != strlen(e->name) || memcmp(l + LOCAL_HDR, e->name, nlen) != 0)
        return ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s': local header disagrees with the central directory",
                       z->path, e->name);
    if (le(l + 8, 2) != e->method)
        return ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s': compression method differs between headers", z->path,
                       e->name);
    if (e->csize > cd_off - e->data_offset)
        return ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s': %llu bytes at %llu run past the data area (%llu)",
                       z->path, e->name, (unsigned long long)e->csize, (unsigned long long)e->data_offset,
                       (unsigned long long)cd_off);
    if (e->method == 0 && e->csize != e->usize)
        return ts_fail(err, TS_ERR_FORMAT, "%s: stored entry '%s' has compressed size %llu != size %llu", z->path,
                       e->name, (unsigned long long)e->csize, (unsigned long long)e->usize);
    return TS_OK;
}

/* libarchive reads the same directory; names and sizes must match ours. */
static ts_status cross_check(const tz_archive *z, ts_err *err)
{
    struct archive *a = archive_read_new();
    if (!a)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    archive_read_support_format_zip_seekable(a);
    ts_status st = TS_OK;
    size_t seen = 0;
    if (archive_read_open_memory(a, z->base, (size_t)z->size) != ARCHIVE_OK) {
        st = ts_fail(err, TS_ERR_FORMAT, "%s: libarchive: %s", z->path, archive_error_string(a));
        goto done;
    }
    struct archive_entry *ae;
    int rc;
    while ((rc = archive_read_next_header(a, &ae)) == ARCHIVE_OK || rc == ARCHIVE_WARN) {
        const char *name = archive_entry_pathname(ae);
        const tz_entry *e = name ? tz_find(z, name) : NULL;
        if (!e || (archive_entry_size_is_set(ae) && (uint64_t)archive_entry_size(ae) != e->usize)) {
            st = ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s' reads differently through libarchive", z->path,
                         name ? name : "?");
            goto done;
        }
        seen++;
    }
    if (rc != ARCHIVE_EOF)
        st = ts_fail(err, TS_ERR_FORMAT, "%s: libarchive: %s", z->path, archive_error_string(a));
    else if (seen != z->n)
        st = ts_fail(err, TS_ERR_FORMAT, "%s: libarchive lists %zu entries, the central directory %zu", z->path, seen,
                     z->n);
done:
    archive_read_free(a);
    return st;
}

ts_status tz_open(const uint8_t *base, uint64_t size, const char *path, tz_archive *z, ts_err *err)
{
    memset(z, 0, sizeof *z);
    z->path = path;
    z->base = base;
    z->size = size;
    uint64_t n = 0, cd_off = 0, cd_size = 0, cd_end = 0;
    ts_status st = find_eocd(z, &n, &cd_off, &cd_size, &cd_end, err);
    if (st)
        return st;
    z->e = calloc(n ? n : 1, sizeof *z->e);
    z->by_name = calloc(n ? n : 1, sizeof *z->by_name);
    if (!z->e || !z->by_name)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory for %llu zip entries", (unsigned long long)n);
    uint64_t pos = cd_off;
    for (uint64_t i = 0; i < n; i++) {
        z->n = i + 1; /* so tz_close frees the name on failure */
        if ((st = read_central(z, pos, cd_end, &z->e[i], &pos, err)) || (st = read_local(z, &z->e[i], cd_off, err)))
            return st;
    }
    if (pos != cd_end)
        return ts_fail(err, TS_ERR_FORMAT, "%s: %llu unexplained bytes in the central directory", z->path,
                       (unsigned long long)(cd_end - pos));
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        order[i] = z->by_name[i] = i;
    qsort_r(z->by_name, n, sizeof *z->by_name, by_name_cmp, z);
    qsort_r(order, n, sizeof *order, by_offset_cmp, z);
    for (size_t i = 0; i + 1 < n && st == TS_OK; i++) {
        const tz_entry *a = &z->e[z->by_name[i]], *b = &z->e[z->by_name[i + 1]];
        if (!strcmp(a->name, b->name))
            st = ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s' appears twice", z->path, a->name);
        const tz_entry *x = &z->e[order[i]], *y = &z->e[order[i + 1]];
        if (st == TS_OK && x->data_offset + x->csize > y->header_offset)
            st = ts_fail(err, TS_ERR_FORMAT, "%s: entries '%s' and '%s' overlap", z->path, x->name, y->name);
    }
    free(order);
    if (st)
        return st;
    return cross_check(z, err);
}

void tz_close(tz_archive *z)
{
    for (size_t i = 0; z->e && i < z->n; i++)
        free(z->e[i].name);
    free(z->e);
    free(z->by_name);
    memset(z, 0, sizeof *z);
}

const tz_entry *tz_find(const tz_archive *z, const char *name)
{
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(z->e[z->by_name[mid]].name, name);
        if (!c)
            return &z->e[z->by_name[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static uint32_t crc_of(const uint8_t *p, uint64_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)crc;
}

/* Fuzzing builds accept wrong CRCs so mutations reach the parsers behind them. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CRC_BAD(got, want) ((void)(got), (void)(want), false)
#else
#define CRC_BAD(got, want) ((got) != (want))
#endif

ts_status tz_check_crc(const tz_archive *z, const tz_entry *e, ts_err *err)
{
    uint32_t crc = crc_of(z->base + e->data_offset, e->usize);
    if (CRC_BAD(crc, e->crc))
        return ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s': CRC-32 %08x, the directory says %08x (corrupt file)",
                       z->path, e->name, crc, e->crc);
    return TS_OK;
}

/* A compressed entry through libarchive (which knows the methods). */
static ts_status inflate_entry(const tz_archive *z, const tz_entry *e, uint8_t *buf, ts_err *err)
{
    struct archive *a = archive_read_new();
    if (!a)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    archive_read_support_format_zip_seekable(a);
    ts_status st = TS_OK;
    struct archive_entry *ae;
    int rc = archive_read_open_memory(a, z->base, (size_t)z->size);
    while (rc == ARCHIVE_OK && (rc = archive_read_next_header(a, &ae)) >= ARCHIVE_WARN) {
        if (strcmp(archive_entry_pathname(ae) ? archive_entry_pathname(ae) : "", e->name) != 0)
            continue;
        uint64_t got = 0;
        la_ssize_t k;
        while (got < e->usize && (k = archive_read_data(a, buf + got, (size_t)(e->usize - got))) > 0)
            got += (uint64_t)k;
        if (got != e->usize)
            st = ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s': %llu of %llu bytes decoded: %s", z->path, e->name,
                         (unsigned long long)got, (unsigned long long)e->usize,
                         archive_error_string(a) ? archive_error_string(a) : "short entry");
        archive_read_free(a);
        return st;
    }
    st = ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s': libarchive: %s", z->path, e->name,
                 archive_error_string(a) ? archive_error_string(a) : "not found");
    archive_read_free(a);
    return st;
}

ts_status tz_read(const tz_archive *z, const tz_entry *e, uint64_t max_bytes, uint8_t **out, ts_err *err)
{
    *out = NULL;
    if (e->usize > max_bytes)
        return ts_fail(err, TS_ERR_LIMIT, "%s: entry '%s' holds %llu bytes (limit %llu)", z->path, e->name,
                       (unsigned long long)e->usize, (unsigned long long)max_bytes);
    uint8_t *buf = malloc((size_t)e->usize + 1);
    if (!buf)
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory for entry '%s' (%llu bytes)", z->path, e->name,
                       (unsigned long long)e->usize);
    ts_status st = TS_OK;
    if (e->method == 0)
        memcpy(buf, z->base + e->data_offset, (size_t)e->usize);
    else
        st = inflate_entry(z, e, buf, err);
    if (st == TS_OK && CRC_BAD(crc_of(buf, e->usize), e->crc))
        st = ts_fail(err, TS_ERR_FORMAT, "%s: entry '%s': CRC-32 mismatch (corrupt file)", z->path, e->name);
    if (st) {
        free(buf);
        return st;
    }
    buf[e->usize] = 0;
    *out = buf;
    return TS_OK;
}
