/*
 * cli_common.h: conventions shared by every sqkv command: exit codes, messages on stderr (prefixed
 * "sqkv: "), verbosity, and the settings common to all commands.
 */
#ifndef SQKV_CLI_COMMON_H
#define SQKV_CLI_COMMON_H

#include <stdint.h>

#include "sqkv.h"
#include "tools/common/io_error.h"

/* Documented exit codes (README, sqkv --help). */
enum {
    EXIT_OK = 0,        /* success */
    EXIT_DATA = 1,      /* bad or corrupt data (including a failed verify or a limit) */
    EXIT_USAGE = 2,     /* usage error: unknown command or option, bad option value, missing argument */
    EXIT_IO = 3         /* I/O or system error: cannot open/read/write, output exists without -f, no memory */
};

#define SQKV_DEFAULT_STDIN_LIMIT (8ull << 30)

typedef struct cli_ctx {
    int verbosity;             /* 0 with -q, 1 by default, 2 with -v (repeatable: 3...) */
    int force;                 /* -f: overwrite outputs, write binary to a terminal */
    int no_progress;           /* --no-progress */
    uint64_t stdin_limit;      /* bytes read into memory from stdin or a pipe */
} cli_ctx;

void cli_ctx_init(cli_ctx *ctx);

/* "sqkv: " + message + newline on stderr, always (errors). */
void cli_error(const char *fmt, ...) SQT_PRINTF_LIKE(1, 2);
/* Same, only when ctx->verbosity >= level (1 = normal, 2 = -v). */
void cli_note(const cli_ctx *ctx, int level, const char *fmt, ...) SQT_PRINTF_LIKE(3, 4);

/* Exit code for a library error. */
int cli_exit_code(sqkv_error err);
/* Prints "sqkv: <what>: <SQKV_ERR_NAME>: <message>[: <detail>]" and returns the exit code. */
int cli_report(const char *what, sqkv_error err, const char *detail);
/* Prints "sqkv: <what>: <message>" for a tools I/O error and returns its class as exit code. */
int cli_report_io(const char *what, const sqt_error *err);

/* Strict number parsing for option values; print a usage error naming the option on failure and
 * return -1. */
int cli_parse_u32(const char *option, const char *text, uint32_t min, uint32_t max, uint32_t *out);
int cli_parse_u64(const char *option, const char *text, uint64_t *out);
int cli_parse_double(const char *option, const char *text, double min, double max, double *out);

/* A sorted list of distinct indices parsed from "0,2-5,7" and checked against limit (exclusive). */
typedef struct cli_index_list {
    uint32_t *items;
    uint32_t count;
} cli_index_list;
/* Returns 0, or -1 after printing a usage error. */
int cli_parse_index_list(const char *option, const char *text, uint32_t limit, cli_index_list *out);
void cli_index_list_free(cli_index_list *l);

/* Name of a dtype / quantizer / granularity as the CLI spells it. */
const char *cli_dtype_name(sqkv_dtype t);
const char *cli_quantizer_name(unsigned q);
const char *cli_granularity_name(unsigned g);

#endif
