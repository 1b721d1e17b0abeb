/* PyTorch reader: the fixtures under ../shared (names, shapes, dtypes and
 * sha256 of every tensor's C-order bytes against MANIFEST.json, written by
 * PyTorch), the hostile fixtures, checkpoints python3-torch writes at test
 * time, hand-made pickles for each refused opcode and zips built here byte by
 * byte for each container check.
 *
 *   test_torch                      the Check suite
 *   test_torch --manifest M.json    check every file M.json lists (used by
 *                                   tests/interop/test_torch_checkpoints.sh) */
#define _GNU_SOURCE
#include "testutil.h"
#include "formats/checkpoint.h"
#include "formats/torch.h"

#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- sha256 (FIPS 180-4), test-only ---------------------------------------------- */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64], v[8];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++)
        w[i] = w[i - 16] + (ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3)) + w[i - 7] +
               (ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10));
    memcpy(v, h, sizeof v);
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = v[7] + (ROR(v[4], 6) ^ ROR(v[4], 11) ^ ROR(v[4], 25)) + ((v[4] & v[5]) ^ (~v[4] & v[6])) +
                      K256[i] + w[i];
        uint32_t t2 = (ROR(v[0], 2) ^ ROR(v[0], 13) ^ ROR(v[0], 22)) + ((v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]));
        memmove(v + 1, v, 7 * sizeof *v);
        v[4] += t1;
        v[0] = t1 + t2;
    }
    for (int i = 0; i < 8; i++)
        h[i] += v[i];
}

static void sha256_hex(const void *data, uint64_t n, char out[65])
{
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const uint8_t *p = data;
    uint64_t left = n;
    for (; left >= 64; p += 64, left -= 64)
        sha256_block(h, p);
    uint8_t tail[128] = {0};
    memcpy(tail, p, (size_t)left);
    tail[left] = 0x80;
    size_t tl = left < 56 ? 64 : 128;
    for (int i = 0; i < 8; i++)
        tail[tl - 1 - i] = (uint8_t)((n * 8) >> (8 * i));
    sha256_block(h, tail);
    if (tl == 128)
        sha256_block(h, tail + 64);
    for (int i = 0; i < 8; i++)
        snprintf(out + 8 * i, 9, "%08x", h[i]);
}

/* ---- manifest checks ---------------------------------------------------------------- */

static const char *torch_dtype_name(ts_dtype t)
{
    switch (t) {
    case TS_F32: return "float32";
    case TS_F16: return "float16";
    case TS_BF16: return "bfloat16";
    case TS_F64: return "float64";
    case TS_I8: return "int8";
    case TS_I16: return "int16";
    case TS_I32: return "int32";
    case TS_I64: return "int64";
    case TS_U8: return "uint8";
    case TS_BOOL: return "bool";
    default: return "?";
    }
}

/* Compares one tensor with its manifest row; returns a message or NULL. */
static char *check_row(json_t *row, const ts_tensor *t, const void *data)
{
    char *msg = NULL, sha[65];
    json_t *shape = json_object_get(row, "shape");
    size_t nd = json_array_size(shape);
    bool ok = (int)(nd ? nd : 1) == t->n_dims;
    for (size_t d = 0; ok && d < nd; d++) /* manifest: torch order; ne: ggml order */
        ok = json_integer_value(json_array_get(shape, d)) == t->ne[nd - 1 - d];
    if (!ok || strcmp(json_string_value(json_object_get(row, "dtype")), torch_dtype_name(t->dtype)))
        return asprintf(&msg, "%s: dtype/shape differ (got %s, %d dims)", t->name, torch_dtype_name(t->dtype),
                        t->n_dims) < 0 ? NULL : msg;
    sha256_hex(data, t->nbytes, sha);
    if (strcmp(sha, json_string_value(json_object_get(row, "sha256"))))
        return asprintf(&msg, "%s: sha256 %s, manifest %s", t->name, sha,
                        json_string_value(json_object_get(row, "sha256"))) < 0 ? NULL : msg;
    return NULL;
}

/* Checks the files a manifest lists; a file key is read with ts_torch_open
 * (names from the top-level object), an index or a directory with
 * ts_torch_set_open (names without the state-dict prefix). Returns the number
 * of problems, each printed. */
static int check_manifest(const char *manifest_path, int *n_files)
{
    json_error_t je;
    json_t *root = json_load_file(manifest_path, 0, &je);
    if (!root) {
        fprintf(stderr, "%s: %s\n", manifest_path, je.text);
        return 1;
    }
    char *dir_copy = strdup(manifest_path), *dir = dirname(dir_copy);
    int bad = 0;
    const char *key;
    json_t *entry;
    *n_files = 0;
    json_object_foreach(root, key, entry) {
        if (!strcmp(key, "hostile"))
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, key);
        json_t *rows = json_object_get(entry, "tensors");
        struct stat sb;
        bool set = (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) || strstr(key, ".index.json");
        ts_err err = {0};
        ts_torch_model *m = NULL;
        ts_torch_set *s = NULL;
        ts_status st = set ? ts_torch_set_open(path, &s, &err) : ts_torch_open(path, &m, &err);
        (*n_files)++;
        if (st) {
            fprintf(stderr, "FAIL %s: %s\n", key, err.msg);
            bad++;
            continue;
        }
        size_t n = set ? s->n_tensors : m->n_tensors;
        if (n != json_object_size(rows)) {
            fprintf(stderr, "FAIL %s: %zu tensors, manifest %zu\n", key, n, json_object_size(rows));
            bad++;
        }
        for (size_t i = 0; i < n; i++) {
            const ts_tensor *t = set ? &s->tensors[i].t : &m->tensors[i].t;
            json_t *row = json_object_get(rows, t->name);
            const void *data;
            void *owned = NULL;
            st = set ? ts_torch_set_data(s, &s->tensors[i], &data, &owned, &err)
                     : ts_torch_data(m, &m->tensors[i], &data, &owned, &err);
            char *msg = NULL;
            if (!row && asprintf(&msg, "%s: not in the manifest", t->name) < 0)
                msg = NULL;
            else if (row && st && asprintf(&msg, "%s", err.msg) < 0)
                msg = NULL;
            else if (row && !st)
                msg = check_row(row, t, data);
            if (msg) {
                fprintf(stderr, "FAIL %s: %s\n", key, msg);
                bad++;
                free(msg);
            }
            free(owned);
        }
        ts_torch_set_close(s);
        ts_torch_close(m);
    }
    free(dir_copy);
    json_decref(root);
    return bad;
}

START_TEST(shared_fixtures_match_manifest)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return;
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/torch/MANIFEST.json", shared);
    int n_files;
    ck_assert_int_eq(check_manifest(path, &n_files), 0);
    ck_assert_int_eq(n_files, 6);
}
END_TEST

/* Checkpoints python3-torch writes now (tests/interop/make_torch_ckpt.py). */
START_TEST(generated_checkpoints_match_manifest)
{
    char script[1024], cmd[4096];
    snprintf(script, sizeof script, "%s/../interop/make_torch_ckpt.py", dirname(strdupa(__FILE__)));
    if (access(script, R_OK) || system("/usr/bin/python3 -c 'import torch' 2>/dev/null")) {
        fprintf(stderr, "note: python3-torch or %s missing; generated checkpoints not checked\n", script);
        return;
    }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' random '%s/gen' --seed 7", script, tu_tmpdir());
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/gen/MANIFEST.json", tu_tmpdir());
    int n_files;
    ck_assert_int_eq(check_manifest(cmd, &n_files), 0);
    ck_assert_int_ge(n_files, 13);
}
END_TEST

/* ---- hostile fixtures ------------------------------------------------------------------ */

static const struct {
    const char *file, *says;
} hostile[] = {
    {"deep_nesting.pkl", "stack holds more than"},
    {"global_eval.pkl", "global 'builtins.eval' is not on the allow-list"},
    {"path_traversal.pt", "'../../etc/evil'"},
    {"reduce_os_system.pt", "global 'posix.system' is not on the allow-list"},
    {"storage_too_short.pt", "holds 3 bytes"},
    {"truncated.pt", "end-of-central-directory"},
};

START_TEST(hostile_fixtures_refused)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return;
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/fixtures/torch/hostile/%s", shared, hostile[i].file);
        ts_checkpoint *c = NULL;
        ts_err err = {0};
        ck_assert_msg(ts_checkpoint_open(path, &c, &err) != TS_OK, "%s was accepted", hostile[i].file);
        ck_assert_ptr_null(c);
        ck_assert_msg(strstr(err.msg, hostile[i].says) && strstr(err.msg, hostile[i].file), "%s: message '%s'",
                      hostile[i].file, err.msg);
    }
    ck_assert_msg(access("/tmp/pwned-by-checkpoint", F_OK) != 0, "/tmp/pwned-by-checkpoint exists");
}
END_TEST

/* ---- hand-made pickles ----------------------------------------------------------------- */

/* Split after \x escapes followed by a hex digit: "\x89" "c..." */
static const struct {
    const char *bytes;
    size_t len;
    const char *says; /* NULL: accepted */
} pickles[] = {
#define P(s, says) {s, sizeof s - 1, says}
    P("\x80\x02" "cos\nsystem\n.", "global 'os.system'"),
    P("\x80\x04\x8c\x05posix\x8c\x06system\x93.", "global 'posix.system'"),
    P("\x80\x02(iposix\nsystem\n.", "INST"),
    P("\x80\x02(ccollections\nOrderedDict\no.", "OBJ"),
    P("\x80\x02" "ccollections\nOrderedDict\n)\x81.", "NEWOBJ"),
    P("\x80\x02\x82\x01.", "EXT1"),
    P("\x80\x05\x97.", "NEXT_BUFFER"),
    P("\x80\x02X\x01\x00\x00\x00" "aQ.", "persistent id in a plain pickle"),
    P("\x80\x02]}b.", "BUILD (object state) on a list"),
    P("\x80\x02])R.", "REDUCE calls a list"),
    P("\x80\x02h\x05.", "memo key 5"),
    P("\x80\x02\xff.", "unknown opcode 0xff"),
    P("\x80\x01}.", "protocol 1"),
    P("\x80\x02X\x10\x00\x00\x00" "ab", "truncated"),
    P("\x80\x02}", "no STOP"),
    P("\x80\x02].", "top-level object is a list"),
    P("\x80\x02" "ctorch\nFloatStorage\n)R.", "calling torch.FloatStorage"),
    P("\x80\x02}r\xff\xff\xff\x7f.", "memo index"),
    P("\x80\x02I1\n.", "protocol-0 text opcode"),
    P("\x80\x02" "c_codecs\nencode\nX\x01\x00\x00\x00" "aX\x05\x00\x00\x00" "utf-8\x86R.", "(str, 'latin1')"),
    P("\x80\x02" "ctorch.storage\n_load_from_bytes\nC\x02" "ab\x85R.", "nested"),
    P("\x80\x02}K\x01" "a.", "APPEND to a dict"),
    P("\x80\x02}(K\x01u.", "odd number"),
    P("\x80\x02\x80\x02}.", "PROTO after the start"),
    P("\x80\x02" "0.", "stack underflow"),
    P("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\x7f.", "truncated"),
    P("\x80\x02" "cbuiltins\nset\n)R.", "top-level object is a set"),
    P("\x80\x02}X\x01\x00\x00\x00" "k]q\x00h\x00" "as.", NULL), /* a list that contains itself */
    P("\x80\x02}(X\x01\x00\x00\x00" "a\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09" "X\x01\x00\x00\x00" "bG?\xf0\x00"
      "\x00\x00\x00\x00\x00" "u.", NULL),
    P("\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01k\x94\x88s.", NULL),
#undef P
};

static ts_status open_bytes(const void *p, size_t n, ts_torch_model **m, ts_err *err)
{
    return ts_torch_open_memory(p, n, "mem.pt", m, err);
}

START_TEST(pickle_table)
{
    ts_torch_model *m = NULL;
    ts_err err = {0};
    ts_status st = open_bytes(pickles[_i].bytes, pickles[_i].len, &m, &err);
    if (!pickles[_i].says) {
        ck_assert_msg(st == TS_OK, "case %d: %s", _i, err.msg);
        ck_assert_uint_eq(m->n_tensors, 0);
        ts_torch_close(m);
    } else {
        ck_assert_msg(st != TS_OK, "case %d accepted", _i);
        ck_assert_msg(strstr(err.msg, pickles[_i].says), "case %d: '%s' lacks '%s'", _i, err.msg, pickles[_i].says);
    }
}
END_TEST

START_TEST(pickle_limits)
{
    /* 5000 open MARKs */
    char buf[6000];
    buf[0] = (char)0x80;
    buf[1] = 2;
    memset(buf + 2, '(', 5000);
    buf[5002] = '.';
    ts_torch_model *m = NULL;
    ts_err err = {0};
    ck_assert(open_bytes(buf, 5003, &m, &err) != TS_OK);
    ck_assert_msg(strstr(err.msg, "nested MARKs"), "%s", err.msg);
    /* lists nested 100 deep through the memo (constant stack), under a dict key */
    char deep[2000];
    size_t n = 0;
    memcpy(deep, "\x80\x02]q\x00", 5);
    n = 5;
    for (int i = 0; i < 100; i++) {
        memcpy(deep + n, "0]h\x00" "aq\x00", 7);
        n += 7;
    }
    memcpy(deep + n, "0}X\x01\x00\x00\x00" "kh\x00" "s.", 13);
    n += 13;
    ck_assert(open_bytes(deep, n, &m, &err) != TS_OK);
    ck_assert_msg(strstr(err.msg, "nested deeper than"), "%s", err.msg);
}
END_TEST

/* ---- zips built here ----------------------------------------------------------------------- */

typedef struct {
    const char *name;
    const void *data;
    size_t len;
    int method; /* 0 stored, 8 deflated */
} zentry;

static void put16(uint8_t **p, unsigned v) { (*p)[0] = (uint8_t)v; (*p)[1] = (uint8_t)(v >> 8); *p += 2; }
static void put32(uint8_t **p, uint32_t v) { put16(p, v & 0xffff); put16(p, v >> 16); }

/* A plain zip (no zip64, no descriptors) of the entries, in order. */
static uint8_t *build_zip(const zentry *e, size_t n, size_t *out_len)
{
    uint8_t *buf = calloc(1, 1 << 16), *p = buf;
    uint32_t offs[16], crcs[16], csz[16];
    for (size_t i = 0; i < n; i++) {
        uint8_t packed[4096];
        const void *body = e[i].data;
        uLongf clen = (uLongf)e[i].len;
        if (e[i].method == 8) { /* raw deflate */
            z_stream zs = {0};
            deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
            zs.next_in = (Bytef *)e[i].data;
            zs.avail_in = (uInt)e[i].len;
            zs.next_out = packed;
            zs.avail_out = sizeof packed;
            deflate(&zs, Z_FINISH);
            clen = zs.total_out;
            deflateEnd(&zs);
            body = packed;
        }
        offs[i] = (uint32_t)(p - buf);
        crcs[i] = (uint32_t)crc32(0, e[i].data, (uInt)e[i].len);
        csz[i] = (uint32_t)clen;
        put32(&p, 0x04034b50); put16(&p, 20); put16(&p, 0); put16(&p, (unsigned)e[i].method);
        put32(&p, 0); put32(&p, crcs[i]); put32(&p, csz[i]); put32(&p, (uint32_t)e[i].len);
        put16(&p, (unsigned)strlen(e[i].name)); put16(&p, 0);
        memcpy(p, e[i].name, strlen(e[i].name));
        p += strlen(e[i].name);
        memcpy(p, body, clen);
        p += clen;
    }
    uint8_t *cd = p;
    for (size_t i = 0; i < n; i++) {
        put32(&p, 0x02014b50); put16(&p, 20); put16(&p, 20); put16(&p, 0); put16(&p, (unsigned)e[i].method);
        put32(&p, 0); put32(&p, crcs[i]); put32(&p, csz[i]); put32(&p, (uint32_t)e[i].len);
        put16(&p, (unsigned)strlen(e[i].name)); put16(&p, 0); put16(&p, 0); put16(&p, 0); put16(&p, 0);
        put32(&p, 0); put32(&p, offs[i]);
        memcpy(p, e[i].name, strlen(e[i].name));
        p += strlen(e[i].name);
    }
    uint32_t cd_len = (uint32_t)(p - cd);
    put32(&p, 0x06054b50); put16(&p, 0); put16(&p, 0); put16(&p, (unsigned)n); put16(&p, (unsigned)n);
    put32(&p, cd_len); put32(&p, (uint32_t)(cd - buf)); put16(&p, 0);
    *out_len = (size_t)(p - buf);
    return buf;
}

/* {'w': tensor of 2x2 float32 over storage '0' of 4 elements, offset 0, strides (2, 1)} */
static const char one_tensor_pkl[] =
    "\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
    "X\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x04tQK\x00K\x02K\x02\x86K\x02K\x01\x86\x89"
    "ccollections\nOrderedDict\n)RtRs.";
static const float four[4] = {1, 2, 3, 4};

static ts_status open_zip(const zentry *e, size_t n, ts_torch_model **m, ts_err *err)
{
    size_t len;
    static uint8_t *keep; /* the model borrows the bytes */
    free(keep);
    keep = build_zip(e, n, &len);
    return open_bytes(keep, len, m, err);
}

START_TEST(zip_good_and_deflated)
{
    for (int method = 0; method <= 8; method += 8) {
        zentry e[] = {{"a/data.pkl", one_tensor_pkl, sizeof one_tensor_pkl - 1, method},
                      {"a/data/0", four, sizeof four, method},
                      {"a/byteorder", "little", 6, 0},
                      {"a/version", "3\n", 2, 0}};
        ts_torch_model *m = NULL;
        ts_err err = {0};
        ck_assert_msg(open_zip(e, 4, &m, &err) == TS_OK, "%s", err.msg);
        ck_assert_uint_eq(m->n_tensors, 1);
        const ts_torch_tensor *t = ts_torch_find(m, "w");
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(t->t.dtype, TS_F32);
        ck_assert_int_eq(t->t.ne[0], 2);
        ck_assert_int_eq(t->t.ne[1], 2);
        ck_assert(method ? t->t.data == NULL : t->t.data != NULL); /* stored entries are mapped */
        const void *d;
        void *owned;
        ck_assert_msg(ts_torch_data(m, t, &d, &owned, &err) == TS_OK, "%s", err.msg);
        ck_assert(!memcmp(d, four, sizeof four));
        free(owned);
        ts_torch_close(m);
    }
}
END_TEST

/* {'w': a 2^20 x 2^20 float32 tensor with strides (0, 0) over storage '0' of 4 elements} */
static const char expand_bomb_pkl[] =
    "\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
    "X\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x04tQK\x00J\x00\x00\x10\x00J\x00\x00\x10\x00\x86K\x00K\x00\x86\x89"
    "ccollections\nOrderedDict\n)RtRs.";

START_TEST(zip_refusals)
{
    static const char pkl_short[] = "\x80\x02}.";
    struct {
        zentry e[4];
        size_t n;
        const char *says;
    } cases[] = {
        {{{"a/data.pkl", one_tensor_pkl, sizeof one_tensor_pkl - 1, 0}, {"a/data/0", four, sizeof four, 0},
          {"a/byteorder", "big", 3, 0}}, 3, "byteorder is 'big'"},
        {{{"a/data.pkl", one_tensor_pkl, sizeof one_tensor_pkl - 1, 0}}, 1, "has no record a/data/0"},
        {{{"a/data.pkl", one_tensor_pkl, sizeof one_tensor_pkl - 1, 0}, {"a/data/0", four, 12, 0}}, 2, "holds 12 bytes"},
        {{{"a/data.pkl", pkl_short, 4, 0}, {"a/data.pkl", pkl_short, 4, 0}}, 2, "appears twice"},
        {{{"a/data.pkl", pkl_short, 4, 0}, {"/etc/passwd", "x", 1, 0}}, 2, "'/etc/passwd' is absolute"},
        {{{"a/data.pkl", pkl_short, 4, 0}, {"a/../../x", "x", 1, 0}}, 2, "escapes"},
        {{{"a/other", pkl_short, 4, 0}}, 1, "without a <name>/data.pkl"},
        {{{"a/data.pkl", pkl_short, 4, 0}, {"a/constants.pkl", "x", 1, 0}, {"a/code/x.py", "x", 1, 0}}, 3, "?"},
        {{{"a/data.pkl", pkl_short, 4, 0}, {"a/version", "abc", 3, 0}}, 2, "expected a format number"},
        {{{"a/data.pkl", expand_bomb_pkl, sizeof expand_bomb_pkl - 1, 0}, {"a/data/0", four, sizeof four, 0}}, 2,
         "refusing to materialize"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ts_torch_model *m = NULL;
        ts_err err = {0};
        ts_status st = open_zip(cases[i].e, cases[i].n, &m, &err);
        if (!strcmp(cases[i].says, "?")) { /* data.pkl present: a TorchScript-like zip still reads as torch.save */
            ck_assert_msg(st == TS_OK, "%s", err.msg);
            ts_torch_close(m);
            continue;
        }
        ck_assert_msg(st != TS_OK, "case %zu accepted", i);
        ck_assert_msg(strstr(err.msg, cases[i].says), "case %zu: '%s'", i, err.msg);
    }
}
END_TEST

/* A flipped byte: in data.pkl at open, in a storage on first read (lazy CRC). */
START_TEST(zip_crc)
{
    zentry e[] = {{"a/data.pkl", one_tensor_pkl, sizeof one_tensor_pkl - 1, 0}, {"a/data/0", four, sizeof four, 0}};
    size_t len;
    uint8_t *z = build_zip(e, 2, &len);
    uint8_t *storage = memmem(z, len, four, sizeof four);
    ck_assert_ptr_nonnull(storage);
    storage[1] ^= 1;
    ts_torch_model *m = NULL;
    ts_err err = {0};
    ck_assert_msg(open_bytes(z, len, &m, &err) == TS_OK, "%s", err.msg);
    const void *d;
    void *owned;
    ck_assert(ts_torch_data(m, &m->tensors[0], &d, &owned, &err) != TS_OK);
    ck_assert_msg(strstr(err.msg, "CRC-32"), "%s", err.msg);
    ts_torch_close(m);
    storage[1] ^= 1;
    uint8_t *pkl = memmem(z, len, "storage", 7);
    pkl[0] = 'S';
    ck_assert(open_bytes(z, len, &m, &err) != TS_OK);
    ck_assert_msg(strstr(err.msg, "CRC-32"), "%s", err.msg);
    free(z);
}
END_TEST

/* ---- checkpoint API over PyTorch layouts ----------------------------------------------------- */

START_TEST(checkpoint_layouts)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return;
    char path[1024];
    ts_checkpoint *c;
    ts_err err = {0};
    /* a training checkpoint: the state dict under "model", named without the prefix */
    snprintf(path, sizeof path, "%s/fixtures/torch/training_ckpt.pt", shared);
    ck_assert_msg(ts_checkpoint_open(path, &c, &err) == TS_OK, "%s", err.msg);
    ck_assert_int_eq(ts_checkpoint_kind_of(c), TS_CKPT_TORCH);
    ck_assert_uint_eq(ts_checkpoint_n_tensors(c), 2);
    const ts_tensor *t = ts_checkpoint_find(c, "tok_embeddings.weight");
    ck_assert_ptr_nonnull(t);
    const void *d;
    ck_assert_msg(ts_checkpoint_data(c, t, &d, &err) == TS_OK, "%s", err.msg);
    ts_checkpoint_release(c, t);
    ts_checkpoint_close(c);
    /* a non-contiguous view is materialized and freed on release */
    snprintf(path, sizeof path, "%s/fixtures/torch/zip_views.pt", shared);
    ck_assert_msg(ts_checkpoint_open(path, &c, &err) == TS_OK, "%s", err.msg);
    t = ts_checkpoint_find(c, "transposed");
    ck_assert_ptr_null(t->data);
    ck_assert_msg(ts_checkpoint_data(c, t, &d, &err) == TS_OK, "%s", err.msg);
    ck_assert_ptr_nonnull(d);
    ts_checkpoint_release(c, t);
    ck_assert_msg(ts_checkpoint_data(c, t, &d, &err) == TS_OK, "%s", err.msg); /* kept until close */
    ts_checkpoint_close(c);
    /* sharded .bin via the directory and via the index */
    snprintf(path, sizeof path, "%s/fixtures/torch/sharded", shared);
    ck_assert_msg(ts_checkpoint_open(path, &c, &err) == TS_OK, "%s", err.msg);
    ck_assert_uint_eq(ts_checkpoint_n_tensors(c), 4);
    ck_assert_ptr_nonnull(ts_checkpoint_files(c)[1]);
    ck_assert_ptr_null(ts_checkpoint_files(c)[2]);
    ts_checkpoint_close(c);
    /* a model directory with both: safetensors wins; the .bin is read when named */
    snprintf(path, sizeof path, "%s/models/llama-spm-8m", shared);
    ck_assert_msg(ts_checkpoint_open(path, &c, &err) == TS_OK, "%s", err.msg);
    ck_assert_int_eq(ts_checkpoint_kind_of(c), TS_CKPT_SAFETENSORS);
    ts_checkpoint_close(c);
    snprintf(path, sizeof path, "%s/models/llama-spm-8m/pytorch_model.bin", shared);
    ck_assert_msg(ts_checkpoint_open(path, &c, &err) == TS_OK, "%s", err.msg);
    ck_assert_int_eq(ts_checkpoint_kind_of(c), TS_CKPT_TORCH);
    ck_assert_uint_eq(ts_checkpoint_n_tensors(c), 75);
    ts_checkpoint_close(c);
}
END_TEST

START_TEST(bad_index_and_lone_shard)
{
    const char *shared = tu_shared_dir();
    if (!shared)
        return;
    const char *dir = tu_tmpdir();
    char path[1024], cmd[2048];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/idx %s/cons && cp %s/fixtures/torch/sharded/*.bin %s/idx/ && "
             "cp %s/fixtures/torch/zip_f32.pt %s/cons/consolidated.00.pth && "
             "cp %s/fixtures/torch/zip_f32.pt %s/cons/consolidated.01.pth", dir, dir, shared, dir, shared, dir, shared,
             dir);
    ck_assert_int_eq(system(cmd), 0);
    static const char idx[] = "{\"weight_map\": {\"model.embed_tokens.weight\": \"pytorch_model-00002-of-00002.bin\"}}";
    snprintf(path, sizeof path, "%s/idx/pytorch_model.bin.index.json", dir);
    FILE *f = fopen(path, "w");
    fputs(idx, f);
    fclose(f);
    ts_checkpoint *c;
    ts_err err = {0};
    ck_assert(ts_checkpoint_open(path, &c, &err) != TS_OK);
    ck_assert_msg(strstr(err.msg, "model.layers.0.mlp.down_proj.weight"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/cons/consolidated.00.pth", dir);
    ck_assert(ts_checkpoint_open(path, &c, &err) != TS_OK);
    ck_assert_msg(strstr(err.msg, "pass the directory"), "%s", err.msg);
    /* zip_f32 has a tensor with no split rule: merging refuses it by name */
    snprintf(path, sizeof path, "%s/cons", dir);
    ck_assert(ts_checkpoint_open(path, &c, &err) != TS_OK);
    ck_assert_msg(strstr(err.msg, "unknown how tensor-parallel shards split it"), "%s", err.msg);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--manifest")) {
        int n_files, bad = check_manifest(argv[2], &n_files);
        printf("%s: %d files, %d problems\n", argv[2], n_files, bad);
        return bad || !n_files ? 1 : 0;
    }
    Suite *s = suite_create("torch");
    TCase *tc = tcase_create("torch");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, shared_fixtures_match_manifest);
    tcase_add_test(tc, generated_checkpoints_match_manifest);
    tcase_add_test(tc, hostile_fixtures_refused);
    tcase_add_loop_test(tc, pickle_table, 0, (int)(sizeof pickles / sizeof pickles[0]));
    tcase_add_test(tc, pickle_limits);
    tcase_add_test(tc, zip_good_and_deflated);
    tcase_add_test(tc, zip_refusals);
    tcase_add_test(tc, zip_crc);
    tcase_add_test(tc, checkpoint_layouts);
    tcase_add_test(tc, bad_index_and_lone_shard);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
