/* tessera release's outputs for people and tools: DIR/release.json (every
 * number, machine-readable), DIR/README.md (the model card: the same
 * numbers as a table, and the commands that reproduce each file), and
 * DIR/SHA256SUMS (sha256sum -c format, over every file of the release).
 * SHA-256 comes from nettle (Debian nettle-dev). */
#include "release_internal.h"

#include "core/mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ts_status ts_rel_sha256_file(const char *path, char hex[65], ts_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ts_fail(err, TS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    enum { BUF = 1 << 20 };
    uint8_t *buf = malloc(BUF);
    ts_status st = buf ? TS_OK : ts_fail(err, TS_ERR_NOMEM, "out of memory");
    for (ssize_t n; st == TS_OK && (n = read(fd, buf, BUF)) != 0;) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            st = ts_fail(err, TS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        else
            sha256_update(&ctx, (size_t)n, buf);
    }
    close(fd);
    free(buf);
    if (st != TS_OK)
        return st;
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256_digest(&ctx, sizeof digest, digest);
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return TS_OK;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static json_t *num(double v, bool have) { return have ? json_real(v) : json_null(); }

/* ---- release.json ---- */

static json_t *variant_json(const ts_release_variant *v)
{
    json_t *files = json_array();
    for (size_t k = 0; k < v->n_files; k++)
        json_array_append_new(files, json_pack("{s:s, s:s}", "name", base_name(v->files[k]), "sha256", v->sha256[k]));
    bool m = v->measured;
    return json_pack("{s:s, s:o, s:I, s:I, s:I, s:f, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:n}", "type",
                     v->type, "files", files, "file_bytes", (json_int_t)v->file_bytes, "tensor_bytes",
                     (json_int_t)v->tensor_bytes, "n_elements", (json_int_t)v->n_elements, "bits_per_weight", v->bpw,
                     "reused", v->reused, "ppl", num(v->ppl, m), "ppl_err", num(v->ppl_err, m), "ppl_ratio",
                     num(v->ppl_ratio, m), "kld", num(v->kld, m), "kld_err", num(v->kld_err, m), "kld_p99",
                     num(v->kld_p99, m), "same_top_percent", num(v->same_top, m), "same_top_err_percent",
                     num(v->same_top_err, m), "tokens_scored", m ? json_integer(v->tokens_scored) : json_null(),
                     "routing_agreement_percent");
}

static json_t *release_json(const ts_release_opts *o, const ts_release_result *r)
{
    json_t *variants = json_array();
    for (size_t i = 0; i < r->n; i++)
        json_array_append_new(variants, variant_json(&r->v[i]));
    json_t *im = json_null();
    if (r->imatrix[0])
        im = json_pack("{s:s, s:s?, s:I, s:I}", "file", r->imatrix, "calibration", o->calib, "entries",
                       (json_int_t)r->imatrix_entries, "chunks", (json_int_t)r->imatrix_chunks);
    json_t *ev = json_null();
    if (r->has_base)
        ev = json_pack("{s:s, s:I, s:o, s:s, s:I, s:f, s:f, s:f}", "text", o->eval, "n_ctx", (json_int_t)r->n_ctx,
                       "chunks", r->chunks > 0 ? json_integer(r->chunks) : json_null(), "base", r->base_path,
                       "base_file_bytes", (json_int_t)r->base_bytes, "base_bits_per_weight", r->base_bpw, "base_ppl",
                       r->base_ppl, "base_ppl_err", r->base_ppl_err);
    return json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:I, s:s?, s:o, s:o, s:o, s:o, s:o}", "tool", "tessera release",
                     "schema_version", 1, "version", o->tool_version ? o->tool_version : "", "model", r->name, "input",
                     o->input, "arch", r->arch, "expert_count", (json_int_t)r->n_expert, "command", o->command,
                     "imatrix", im, "eval", ev, "split_max_bytes",
                     o->split_max_bytes ? json_integer((json_int_t)o->split_max_bytes) : json_null(),
                     "routing_agreement", json_string("not measured: tessera verify has no router comparison yet"),
                     "variants", variants);
}

/* ---- README.md ---- */

static void size_str(uint64_t b, char *out, size_t n)
{
    if (b >= 1000000000ull)
        snprintf(out, n, "%.2f GB", (double)b / 1e9);
    else
        snprintf(out, n, "%.1f MB", (double)b / 1e6);
}

/* The commands that make the same files one at a time. */
static void commands(FILE *fp, const ts_release_opts *o, const ts_release_result *r)
{
    bool ckpt = !ts_rel_is_gguf(o->input), automatic = o->imatrix && !strcmp(o->imatrix, "auto");
    fprintf(fp, "## Commands\n\nThis release:\n\n```\n%s\n```\n\n", o->command ? o->command : "tessera release ...");
    fprintf(fp, "The same files one at a time (each quantized file is byte for byte what this writes):\n\n```\n");
    if (ckpt && (r->has_base || automatic))
        fprintf(fp, "tessera convert %s -o %s\n", o->input, r->base_path);
    if (automatic) {
        fprintf(fp, "tessera imatrix %s -f %s -o %s -c %lld", r->base_path, o->calib, r->imatrix, (long long)r->n_ctx);
        if (o->calib_chunks > 0)
            fprintf(fp, " --chunks %lld", (long long)o->calib_chunks);
        fputc('\n', fp);
    }
    for (size_t i = 0; i < r->n; i++) {
        char *path = ts_release_variant_path(o, r, i);
        fprintf(fp, "tessera quantize %s %s %s%s%s\n", o->input, path ? path : "?", r->v[i].type,
                r->imatrix[0] ? " --imatrix " : "", r->imatrix);
        free(path);
    }
    if (r->has_base) {
        fprintf(fp, "tessera perplexity %s -f %s -c %lld", r->base_path, o->eval, (long long)r->n_ctx);
        if (r->chunks > 0)
            fprintf(fp, " --chunks %lld", (long long)r->chunks);
        fprintf(fp, " --kld-save base.kld\ntessera verify FILE.gguf --base base.kld --require-checksums\n");
    }
    fprintf(fp, "```\n\n");
    if (o->split_max_bytes)
        fprintf(fp, "Files over %llu bytes are split in llama.cpp's gguf-split layout "
                    "(`NAME-00001-of-0000N.gguf`); llama.cpp loads them from the first part.\n\n",
                (unsigned long long)o->split_max_bytes);
}

static void card(FILE *fp, const ts_release_opts *o, const ts_release_result *r)
{
    fprintf(fp, "# %s: GGUF quantizations\n\n", r->name);
    fprintf(fp, "Made by `tessera release` (%s) from `%s`, architecture `%s`%s", o->tool_version ? o->tool_version : "tessera",
            o->input, r->arch, r->n_expert > 0 ? "" : ".\n\n");
    if (r->n_expert > 0)
        fprintf(fp, ", a mixture of experts with %lld experts.\n\n", (long long)r->n_expert);
    fprintf(fp, "| Type | File | Size | Bits per weight | Perplexity | PPL ratio | Mean KLD | Same top token |\n");
    fprintf(fp, "|---|---|---:|---:|---:|---:|---:|---:|\n");
    if (r->has_base) {
        char size[32];
        size_str(r->base_bytes, size, sizeof size);
        fprintf(fp, "| unquantized | `%s` | %s | %.2f | %.4f ± %.4f | 1 | 0 | 100 %% |\n", base_name(r->base_path), size,
                r->base_bpw, r->base_ppl, r->base_ppl_err);
    }
    for (size_t i = 0; i < r->n; i++) {
        const ts_release_variant *v = &r->v[i];
        char size[32];
        size_str(v->file_bytes, size, sizeof size);
        fprintf(fp, "| %s | `%s`%s | %s | %.2f |", v->type, base_name(v->files[0]),
                v->n_files > 1 ? " (first of the parts)" : "", size, v->bpw);
        if (v->measured)
            fprintf(fp, " %.4f ± %.4f | %.4f | %.6f ± %.6f | %.2f ± %.2f %% |\n", v->ppl, v->ppl_err, v->ppl_ratio,
                    v->kld, v->kld_err, v->same_top, v->same_top_err);
        else
            fprintf(fp, " | | | |\n");
    }
    fputc('\n', fp);
    if (r->has_base)
        fprintf(fp, "Measured on the written files by `tessera verify` against the unquantized model's "
                    "log-probabilities (llama-perplexity's method: chunks of %lld tokens of `%s`, the second half of "
                    "each scored, %lld tokens in all; ± is one standard error). Bits per weight count the tensor "
                    "data.\n\n", (long long)r->n_ctx, o->eval, (long long)(r->n ? r->v[0].tokens_scored : 0));
    else
        fprintf(fp, "No evaluation text was given (`--eval`): perplexity and KLD were not measured.\n\n");
    if (r->n_expert > 0)
        fprintf(fp, "Routing agreement (how often each variant routes tokens to the same experts as the "
                    "unquantized model) is not measured: tessera verify has no router comparison yet.\n\n");
    if (r->imatrix[0])
        fprintf(fp, "Importance matrix: `%s`%s%s%s.\n\n", base_name(r->imatrix), o->calib ? ", collected from `" : "",
                o->calib ? o->calib : "", o->calib ? "`" : "");
    commands(fp, o, r);
    fprintf(fp, "## Checking the files\n\n`sha256sum -c SHA256SUMS` in this folder; `tessera verify FILE.gguf "
                "--require-checksums` also checks every tensor against the XXH3 checksums stored in the file.\n");
}

/* ---- writing ---- */

static ts_status write_text(const char *path, const char *text, size_t len, ts_err *err)
{
    ts_atomic_file f;
    ts_status st = ts_atomic_open(path, NULL, &f, err);
    if (st != TS_OK)
        return st;
    if ((st = ts_atomic_write(&f, text, len, err)) != TS_OK) {
        ts_atomic_abort(&f);
        return st;
    }
    return ts_atomic_commit(&f, err);
}

/* SHA256SUMS lines by file name (after the 64 hex digits and two spaces). */
static int cmp_str_by_name(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    return x && y ? strcmp(x + 66, y + 66) : (x != NULL) - (y != NULL);
}

/* "<sha256>  <name>" per file, sorted by name: the variants' files (their
 * hashes from collect), the imatrix when it lives here, the card and JSON. */
static ts_status write_sums(const ts_release_opts *o, const ts_release_result *r, ts_err *err)
{
    size_t n = 0, cap = 3;
    for (size_t i = 0; i < r->n; i++)
        cap += r->v[i].n_files;
    char **lines = calloc(cap, sizeof *lines);
    if (!lines)
        return ts_fail(err, TS_ERR_NOMEM, "out of memory");
    ts_status st = TS_OK;
    char line[4096 + 80];
    for (size_t i = 0; i < r->n; i++)
        for (size_t k = 0; k < r->v[i].n_files; k++) {
            snprintf(line, sizeof line, "%s  %s\n", r->v[i].sha256[k], base_name(r->v[i].files[k]));
            lines[n++] = strdup(line);
        }
    const char *own[] = {"release.json", "README.md", o->imatrix && !strcmp(o->imatrix, "auto") ? "imatrix.gguf" : NULL};
    for (size_t i = 0; i < 3 && st == TS_OK; i++) {
        if (!own[i])
            continue;
        char *path = ts_path_join(o->out_dir, own[i]), hex[65];
        st = path ? ts_rel_sha256_file(path, hex, err) : ts_fail(err, TS_ERR_NOMEM, "out of memory");
        snprintf(line, sizeof line, "%s  %s\n", hex, own[i]);
        if (st == TS_OK)
            lines[n++] = strdup(line);
        free(path);
    }
    qsort(lines, n, sizeof *lines, cmp_str_by_name);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += lines[i] ? strlen(lines[i]) : 0;
    char *text = malloc(len + 1), *p = text;
    for (size_t i = 0; text && i < n; i++)
        if (lines[i])
            p += sprintf(p, "%s", lines[i]);
    char *path = ts_path_join(o->out_dir, "SHA256SUMS");
    if (st == TS_OK)
        st = text && path ? write_text(path, text, len, err) : ts_fail(err, TS_ERR_NOMEM, "out of memory");
    free(path);
    free(text);
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
    return st;
}

ts_status ts_rel_write_card(const ts_release_opts *o, const ts_release_result *r, ts_err *err)
{
    json_t *j = release_json(o, r);
    char *json_text = j ? json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII) : NULL;
    json_decref(j);
    char *card_text = NULL;
    size_t card_len = 0;
    FILE *fp = open_memstream(&card_text, &card_len);
    if (fp) {
        card(fp, o, r);
        fclose(fp);
    }
    char *json_path = ts_path_join(o->out_dir, "release.json"), *card_path = ts_path_join(o->out_dir, "README.md");
    ts_status st = json_text && card_text && json_path && card_path ? TS_OK : ts_fail(err, TS_ERR_NOMEM, "out of memory");
    if (st == TS_OK) {
        size_t jl = strlen(json_text);
        json_text[jl] = '\n'; /* json_dumps leaves no final newline; its NUL makes room */
        st = write_text(json_path, json_text, jl + 1, err);
    }
    if (st == TS_OK)
        st = write_text(card_path, card_text, card_len, err);
    if (st == TS_OK)
        st = write_sums(o, r, err);
    free(json_text);
    free(card_text);
    free(json_path);
    free(card_path);
    return st;
}
