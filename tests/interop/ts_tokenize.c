// ts_tokenize: Tessera's tokenizer (verify/tokenize.h) on a file, printing one
// id per line like `ts_llama tokenize`, so the interop tests can compare the
// two with cmp. A test tool, not part of the tessera CLI.
//
//   ts_tokenize MODEL.gguf TEXTFILE [--add-special 0|1] [--parse-special 0|1] [--time]
//
// --time reports the encoding time (tokenizer construction excluded) on stderr.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "verify/tokenize.h"

static void die(const char *fmt, const char *a, const char *b)
{
    fputs("ts_tokenize: ", stderr);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    exit(1);
}

static int parse_bool(const char *opt, const char *v)
{
    if (!v || (strcmp(v, "0") && strcmp(v, "1")))
        die("%s expects 0 or 1%s", opt, "");
    return v[0] == '1';
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            die("out of memory reading %s%s", path, "");
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    if (ferror(f))
        die("%s: read error%s", path, "");
    fclose(f);
    *len = n;
    return buf;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        die("usage: ts_tokenize MODEL.gguf TEXTFILE [--add-special 0|1] [--parse-special 0|1] [--time]%s%s", "", "");
    int add_special = 0, parse_special = 0, timing = 0;
    for (int i = 3; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--add-special"))
            add_special = parse_bool(argv[i], v), i++;
        else if (!strcmp(argv[i], "--parse-special"))
            parse_special = parse_bool(argv[i], v), i++;
        else if (!strcmp(argv[i], "--time"))
            timing = 1;
        else
            die("unknown option %s%s", argv[i], "");
    }
    size_t len;
    char *text = read_all(argv[2], &len);
    ts_err err = {0};
    ts_gguf *g;
    ts_tokenizer *tok;
    double t0 = now();
    if (ts_gguf_open(argv[1], &g, &err) != TS_OK)
        die("%s%s", err.msg, "");
    if (ts_tokenizer_from_gguf(g, &tok, &err) != TS_OK)
        die("%s: %s", argv[1], err.msg);
    ts_gguf_close(g);
    double t1 = now();
    int32_t *ids;
    size_t n;
    if (ts_tokenize(tok, text, len, add_special, parse_special, &ids, &n, &err) != TS_OK)
        die("%s: %s", argv[2], err.msg);
    double t2 = now();
    if (timing)
        fprintf(stderr, "ts_tokenize: %zu bytes -> %zu tokens: load %.3f s, encode %.3f s (%.1f MB/s)\n", len, n,
                t1 - t0, t2 - t1, (double)len / 1e6 / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
    // one buffered write; printf per id would dominate the run time
    char *buf = malloc(n * 12 + 1);
    size_t w = 0;
    for (size_t i = 0; buf && i < n; i++)
        w += (size_t)sprintf(buf + w, "%d\n", ids[i]);
    if (!buf || fwrite(buf, 1, w, stdout) != w || fflush(stdout))
        die("writing the ids failed%s%s", "", "");
    free(buf);
    free(ids);
    free(text);
    ts_tokenizer_free(tok);
    return 0;
}
