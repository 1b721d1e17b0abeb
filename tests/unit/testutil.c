#define _GNU_SOURCE
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tu_shared_dir(void)
{
    static char buf[4096];
    const char *env = getenv("TS_SHARED");
    const char *cands[] = {env, "../shared", "../../shared", "../../../shared", NULL};
    for (int i = 0; i < 4; i++) {
        if (!cands[i])
            continue;
        snprintf(buf, sizeof buf, "%s/DESIGN.md", cands[i]);
        struct stat st;
        if (stat(buf, &st) == 0) {
            snprintf(buf, sizeof buf, "%s", cands[i]);
            return buf;
        }
    }
    fprintf(stderr, "note: ../shared is absent; tests that need its models and fixtures are skipped\n");
    return NULL;
}

static char tmpdir[256];

static void rm_tmpdir(void)
{
    if (tmpdir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    }
}

const char *tu_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/tessera-test-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(rm_tmpdir);
    }
    return tmpdir;
}

char *tu_write_file(const char *name, const void *data, size_t n)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", tu_tmpdir(), name) < 0)
        abort();
    FILE *fp = fopen(path, "wb");
    if (!fp || (n && fwrite(data, 1, n, fp) != n)) {
        perror(path);
        abort();
    }
    fclose(fp);
    return path;
}

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    /* no fork: ASan sees everything and failures keep their stack */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
