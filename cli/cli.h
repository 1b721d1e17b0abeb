#ifndef TS_CLI_H
#define TS_CLI_H
#include <stdbool.h>
#define TS_VERSION_STRING "0.1.0"
int cmd_convert(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_release(int argc, char **argv);
/* -t N: 1..4096; prints the error itself. */
#include <jansson.h>
/* Prints j (indented) and a newline to stdout, then releases it. */
void cli_print_json(json_t *j);
bool cli_parse_threads(const char *s, int *out);
/* An integer option value in lo..hi; prints "tessera CMD: OPT S: ..." itself. */
bool cli_parse_count(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
#endif
