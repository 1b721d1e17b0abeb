#ifndef TS_CLI_H
#define TS_CLI_H
#define TS_VERSION_STRING "0.1.0"
int cmd_convert(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
#endif
