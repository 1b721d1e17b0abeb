#include "cli.h"
int cmd_convert(int argc, char **argv) { (void)argc; (void)argv; return 1; }
int cmd_inspect(int argc, char **argv) { (void)argc; (void)argv; return 1; }
