/*
 * cli_args.h: command-line option parsing in the getopt_long style: "--name value", "--name=value",
 * "-x value", "-xvalue", clustered short flags ("-qf"), "--" to end options, "-" as a positional (stdin
 * or stdout). Options and positionals may be mixed, as with git and zstd. Every command accepts the
 * common options (-h/--help, -q, -v, -f, --no-progress, --stdin-limit).
 */
#ifndef SQKV_CLI_ARGS_H
#define SQKV_CLI_ARGS_H

#include "tools/sqkv/cli_common.h"

typedef struct cli_option {
    const char *name;      /* long name without "--" */
    char short_name;       /* 0 when none */
    int takes_value;
    int id;                /* > 0, below CLI_OPT_COMMON_BASE */
} cli_option;

enum {
    CLI_NEXT_END = 0,          /* no more arguments */
    CLI_NEXT_POSITIONAL = -1,  /* *value is the positional argument */
    CLI_NEXT_ERROR = -2        /* a usage error was printed */
};

/* Ids of the common options. */
enum {
    CLI_OPT_COMMON_BASE = 1000,
    CLI_OPT_HELP,
    CLI_OPT_QUIET,
    CLI_OPT_VERBOSE,
    CLI_OPT_FORCE,
    CLI_OPT_NO_PROGRESS,
    CLI_OPT_STDIN_LIMIT
};

typedef struct cli_parser {
    int argc;
    char **argv;
    int index;
    const char *cluster;       /* rest of a short-option cluster being read */
    int options_done;          /* after "--" */
    const cli_option *tables[3]; /* each terminated by an entry with name NULL; unused are NULL */
    const char *command;       /* for messages */
} cli_parser;

void cli_parser_init(cli_parser *p, int argc, char **argv, const cli_option *table, const char *command);
/* Adds a second table of options (e.g. the encoder options shared by encode, demo and bench). */
void cli_parser_add_table(cli_parser *p, const cli_option *table);
/* Returns an option id (> 0) with *value set for options that take one, or a CLI_NEXT_ code. */
int cli_next(cli_parser *p, const char **value);
/* Applies a common option to ctx. Returns 1 when id was a common option other than --help, 0 when it
 * was not a common option, -1 after a usage error. */
int cli_apply_common(cli_ctx *ctx, int id, const char *value);

/* Help text of the common options, appended to every command's --help. */
extern const char cli_common_help[];

#endif
