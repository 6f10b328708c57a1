/* cli_args.c: see cli_args.h. */
#include "tools/sqkv/cli_args.h"

#include <string.h>

#include "tools/common/util.h"

static const cli_option common_options[] = {
    {"help", 'h', 0, CLI_OPT_HELP},
    {"quiet", 'q', 0, CLI_OPT_QUIET},
    {"verbose", 'v', 0, CLI_OPT_VERBOSE},
    {"force", 'f', 0, CLI_OPT_FORCE},
    {"no-progress", 0, 0, CLI_OPT_NO_PROGRESS},
    {"stdin-limit", 0, 1, CLI_OPT_STDIN_LIMIT},
    {NULL, 0, 0, 0},
};

const char cli_common_help[] =
    "Common options:\n"
    "  -h, --help           show this help\n"
    "  -q, --quiet          print only errors (and the command's data on stdout)\n"
    "  -v, --verbose        more detail on stderr\n"
    "  -f, --force          overwrite existing outputs; write binary data to a terminal\n"
    "      --no-progress    never show the progress line (shown only when stderr is a terminal)\n"
    "      --stdin-limit N  most bytes read into memory from stdin or a pipe (default 8G; K/M/G/T)\n";

void cli_parser_init(cli_parser *p, int argc, char **argv, const cli_option *table, const char *command) {
    p->argc = argc;
    p->argv = argv;
    p->index = 0;
    p->cluster = NULL;
    p->options_done = 0;
    p->tables[0] = table;
    p->tables[1] = NULL;
    p->tables[2] = NULL;
    p->command = command;
}

void cli_parser_add_table(cli_parser *p, const cli_option *table) {
    if (p->tables[1] == NULL) p->tables[1] = table;
    else p->tables[2] = table;
}

static const cli_option *find_long(const cli_option *table, const char *name, size_t len) {
    for (const cli_option *o = table; o && o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) return o;
    return NULL;
}

static const cli_option *find_short(const cli_option *table, char c) {
    for (const cli_option *o = table; o && o->name; o++)
        if (o->short_name && o->short_name == c) return o;
    return NULL;
}

static const cli_option *lookup_long(const cli_parser *p, const char *name, size_t len) {
    for (int i = 0; i < 3; i++) {
        const cli_option *o = find_long(p->tables[i], name, len);
        if (o) return o;
    }
    return find_long(common_options, name, len);
}

static const cli_option *lookup_short(const cli_parser *p, char c) {
    for (int i = 0; i < 3; i++) {
        const cli_option *o = find_short(p->tables[i], c);
        if (o) return o;
    }
    return find_short(common_options, c);
}

static int short_option(cli_parser *p, const char **value) {
    const char c = *p->cluster++;
    const cli_option *o = lookup_short(p, c);
    if (o == NULL) {
        cli_error("%s: unknown option '-%c' (see 'sqkv %s --help')", p->command, c, p->command);
        return CLI_NEXT_ERROR;
    }
    if (o->takes_value) {
        if (*p->cluster) {
            *value = p->cluster;
        } else if (p->index < p->argc) {
            *value = p->argv[p->index++];
        } else {
            cli_error("%s: option '-%c' needs a value", p->command, c);
            return CLI_NEXT_ERROR;
        }
        p->cluster = NULL;
    } else if (*p->cluster == '\0') {
        p->cluster = NULL;
    }
    return o->id;
}

int cli_next(cli_parser *p, const char **value) {
    *value = NULL;
    if (p->cluster) return short_option(p, value);
    if (p->index >= p->argc) return CLI_NEXT_END;
    const char *arg = p->argv[p->index++];
    if (p->options_done || arg[0] != '-' || arg[1] == '\0') {
        *value = arg;
        return CLI_NEXT_POSITIONAL;
    }
    if (strcmp(arg, "--") == 0) {
        p->options_done = 1;
        return cli_next(p, value);
    }
    if (arg[1] != '-') {
        p->cluster = arg + 1;
        return short_option(p, value);
    }
    const char *name = arg + 2, *eq = strchr(name, '=');
    const size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const cli_option *o = lookup_long(p, name, len);
    if (o == NULL) {
        cli_error("%s: unknown option '--%.*s' (see 'sqkv %s --help')", p->command, (int)len, name, p->command);
        return CLI_NEXT_ERROR;
    }
    if (!o->takes_value) {
        if (eq) {
            cli_error("%s: option '--%s' takes no value", p->command, o->name);
            return CLI_NEXT_ERROR;
        }
        return o->id;
    }
    if (eq) {
        *value = eq + 1;
    } else if (p->index < p->argc) {
        *value = p->argv[p->index++];
    } else {
        cli_error("%s: option '--%s' needs a value", p->command, o->name);
        return CLI_NEXT_ERROR;
    }
    return o->id;
}

int cli_apply_common(cli_ctx *ctx, int id, const char *value) {
    switch (id) {
    case CLI_OPT_QUIET: ctx->verbosity = 0; return 1;
    case CLI_OPT_VERBOSE: ctx->verbosity++; return 1;
    case CLI_OPT_FORCE: ctx->force = 1; return 1;
    case CLI_OPT_NO_PROGRESS: ctx->no_progress = 1; return 1;
    case CLI_OPT_STDIN_LIMIT:
        if (sqkv_parse_size(value, &ctx->stdin_limit) != 0 || ctx->stdin_limit == 0) {
            cli_error("--stdin-limit: '%s' is not a size such as 512M or 8G", value);
            return -1;
        }
        return 1;
    }
    return 0;
}
