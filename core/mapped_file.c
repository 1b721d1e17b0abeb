#define _GNU_SOURCE
#include "mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

ts_status ts_map_file(const char *path, ts_mapped_file *out, ts_err *err)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ts_fail(err, TS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ts_fail(err, TS_ERR_IO, "%s: not a regular file", path);
    }
    out->size = (uint64_t)st.st_size;
    if (out->size > 0) {
        void *p = mmap(NULL, (size_t)out->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return ts_fail(err, TS_ERR_IO, "%s: cannot map %llu bytes: %s", path,
                           (unsigned long long)out->size, strerror(errno));
        }
        out->data = p;
    }
    out->fd = fd;
    out->path = strdup(path);
    if (!out->path) {
        ts_unmap_file(out);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    return TS_OK;
}

void ts_unmap_file(ts_mapped_file *f)
{
    if (f->data)
        munmap((void *)f->data, (size_t)f->size);
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

void ts_mapped_release(const ts_mapped_file *f, uint64_t offset, uint64_t len)
{
    if (!f->data || offset >= f->size)
        return;
    long page = sysconf(_SC_PAGESIZE);
    uint64_t start = (offset + (uint64_t)page - 1) / (uint64_t)page * (uint64_t)page;
    uint64_t end = offset + len > f->size ? f->size : offset + len;
    end = end / (uint64_t)page * (uint64_t)page;
    if (end > start)
        madvise((void *)(f->data + start), (size_t)(end - start), MADV_DONTNEED);
}

bool ts_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool ts_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

char *ts_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t off = a;
    if (a && dir[a - 1] != '/')
        p[off++] = '/';
    memcpy(p + off, name, b + 1);
    return p;
}

ts_status ts_atomic_open(const char *path, const char *const *inputs, ts_atomic_file *out, ts_err *err)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; inputs && inputs[i]; i++)
        if (ts_same_file(path, inputs[i]))
            return ts_fail(err, TS_ERR_ARG, "%s: refusing to overwrite the input file %s", path, inputs[i]);
    size_t n = strlen(path) + 16;
    out->tmp_path = malloc(n);
    out->path = strdup(path);
    if (!out->tmp_path || !out->path) {
        ts_atomic_abort(out);
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    }
    snprintf(out->tmp_path, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(out->tmp_path);
    if (fd < 0) {
        ts_status st = ts_fail(err, TS_ERR_IO, "%s: cannot create temporary file: %s", path, strerror(errno));
        free(out->tmp_path);
        out->tmp_path = NULL;
        ts_atomic_abort(out);
        return st;
    }
    fchmod(fd, 0644);
    out->fp = fdopen(fd, "wb");
    if (!out->fp) {
        close(fd);
        ts_atomic_abort(out);
        return ts_fail(err, TS_ERR_IO, "%s: fdopen failed", path);
    }
    setvbuf(out->fp, NULL, _IOFBF, 1 << 20);
    return TS_OK;
}

ts_status ts_atomic_write(ts_atomic_file *f, const void *buf, size_t n, ts_err *err)
{
    if (f->failed)
        return ts_fail(err, TS_ERR_IO, "%s: earlier write failed", f->path);
    if (n && fwrite(buf, 1, n, f->fp) != n) {
        f->failed = true;
        return ts_fail(err, TS_ERR_IO, "%s: write failed at offset %llu: %s", f->path,
                       (unsigned long long)f->written, strerror(errno));
    }
    f->written += n;
    return TS_OK;
}

ts_status ts_atomic_commit(ts_atomic_file *f, ts_err *err)
{
    ts_status st = TS_OK;
    if (f->failed)
        st = ts_fail(err, TS_ERR_IO, "%s: earlier write failed", f->path);
    else if (fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0)
        st = ts_fail(err, TS_ERR_IO, "%s: flush failed: %s", f->path, strerror(errno));
    if (fclose(f->fp) != 0 && st == TS_OK)
        st = ts_fail(err, TS_ERR_IO, "%s: close failed: %s", f->path, strerror(errno));
    f->fp = NULL;
    if (st == TS_OK && rename(f->tmp_path, f->path) != 0)
        st = ts_fail(err, TS_ERR_IO, "%s: rename from %s failed: %s", f->path, f->tmp_path, strerror(errno));
    if (st != TS_OK) {
        ts_atomic_abort(f);
        return st;
    }
    free(f->tmp_path);
    free(f->path);
    memset(f, 0, sizeof *f);
    return TS_OK;
}

void ts_atomic_abort(ts_atomic_file *f)
{
    if (f->fp)
        fclose(f->fp);
    if (f->tmp_path)
        unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->path);
    memset(f, 0, sizeof *f);
}

ts_status ts_read_small_file(const char *path, uint64_t max_bytes, char **out, size_t *out_len, ts_err *err)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return ts_fail(err, TS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return ts_fail(err, TS_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(fp);
        return ts_fail(err, TS_ERR_LIMIT, "%s: %llu bytes, more than the %llu allowed for this kind of file",
                       path, (unsigned long long)st.st_size, (unsigned long long)max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(fp);
        return ts_fail(err, TS_ERR_NOMEM, "%s: out of memory", path);
    }
    if (n && fread(buf, 1, n, fp) != n) {
        free(buf);
        fclose(fp);
        return ts_fail(err, TS_ERR_IO, "%s: short read", path);
    }
    fclose(fp);
    buf[n] = 0;
    *out = buf;
    if (out_len)
        *out_len = n;
    return TS_OK;
}
