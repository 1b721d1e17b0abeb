#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

bool cli_parse_threads(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1 || v > 4096) {
        fprintf(stderr, "tessera: -t %s: expected a thread count from 1 to 4096\n", s);
        return false;
    }
    *out = (int)v;
    return true;
}

bool cli_parse_count(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !*s || *end || v < lo || v > hi) {
        fprintf(stderr, "tessera %s: %s %s: expected an integer in %ld..%ld\n", cmd, opt, s, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

void cli_print_json(json_t *j)
{
    if (!j)
        return;
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    if (text) {
        puts(text);
        free(text);
    }
    json_decref(j);
}
