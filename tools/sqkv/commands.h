/* commands.h: the sqkv commands; each takes argv from its own name on and returns the exit code. */
#ifndef SQKV_CLI_COMMANDS_H
#define SQKV_CLI_COMMANDS_H

#include "tools/sqkv/cli_common.h"

int cmd_demo(int argc, char **argv, cli_ctx *ctx);
int cmd_info(int argc, char **argv, cli_ctx *ctx);
int cmd_verify(int argc, char **argv, cli_ctx *ctx);
int cmd_encode(int argc, char **argv, cli_ctx *ctx);
int cmd_decode(int argc, char **argv, cli_ctx *ctx);
int cmd_bench(int argc, char **argv, cli_ctx *ctx);
int cmd_compare(int argc, char **argv, cli_ctx *ctx);
int cmd_append(int argc, char **argv, cli_ctx *ctx);
int cmd_repair(int argc, char **argv, cli_ctx *ctx);

#endif
