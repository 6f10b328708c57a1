/* cmd_repair.c: `sqkv repair FILE`: cuts an interrupted append back to the last valid prefix. */
#include <stdio.h>
#include <string.h>

#include "tools/common/util.h"
#include "tools/sqkv/cli_args.h"
#include "tools/sqkv/commands.h"

static const char help[] =
    "Usage: sqkv repair [options] FILE\n"
    "\n"
    "Finds the longest prefix of the .sqkv FILE that is a complete, valid file (spec 9.1: an append\n"
    "that was interrupted leaves the file as it was before, plus a partial tail) and truncates FILE to\n"
    "it. A sound file is left untouched.\n"
    "\n"
    "Options:\n"
    "  -n, --dry-run      only report the valid prefix; change nothing\n"
    "\n"
    "Exit status: 0 when FILE is valid or was repaired (or, with -n, could be), 1 when no prefix of\n"
    "FILE is a valid file, 2 usage error, 3 when FILE cannot be read or written.\n"
    "\n";

enum { OPT_DRY_RUN = 1 };

int cmd_repair(int argc, char **argv, cli_ctx *ctx) {
    static const cli_option options[] = {{"dry-run", 'n', 0, OPT_DRY_RUN}, {NULL, 0, 0, 0}};
    cli_parser p;
    cli_parser_init(&p, argc - 1, argv + 1, options, "repair");
    const char *path = NULL, *value;
    int dry_run = 0, id;
    while ((id = cli_next(&p, &value)) != CLI_NEXT_END) {
        if (id == CLI_NEXT_ERROR) return EXIT_USAGE;
        if (id == CLI_OPT_HELP) {
            fputs(help, stdout);
            fputs(cli_common_help, stdout);
            return EXIT_OK;
        }
        if (id == OPT_DRY_RUN) {
            dry_run = 1;
        } else if (id == CLI_NEXT_POSITIONAL) {
            if (path) {
                cli_error("repair: too many arguments ('%s'); expected one FILE", value);
                return EXIT_USAGE;
            }
            path = value;
        } else if (cli_apply_common(ctx, id, value) < 0) {
            return EXIT_USAGE;
        }
    }
    if (path == NULL) {
        cli_error("repair: no FILE given (see 'sqkv repair --help')");
        return EXIT_USAGE;
    }
    if (strcmp(path, "-") == 0) {
        cli_error("repair: FILE must be a file on disk, not stdin");
        return EXIT_USAGE;
    }
    char detail[512] = "";
    uint64_t old_size = 0, new_size = 0;
    sqkv_error e = dry_run ? sqkv_find_valid_prefix(path, NULL, &old_size, &new_size, detail, sizeof detail)
                           : sqkv_recover(path, NULL, &old_size, &new_size, detail, sizeof detail);
    if (e) {
        char what[600];
        snprintf(what, sizeof what, "%s: no valid prefix", path);
        return cli_report(what, e, detail);
    }
    if (old_size == new_size) {
        if (ctx->verbosity >= 1) printf("%s: OK (valid, %llu bytes, nothing to repair)\n", path, (unsigned long long)old_size);
    } else if (ctx->verbosity >= 1) {
        printf("%s: valid prefix %llu of %llu bytes; %s %llu trailing bytes%s%s\n", path,
               (unsigned long long)new_size, (unsigned long long)old_size, dry_run ? "would remove" : "removed",
               (unsigned long long)(old_size - new_size), detail[0] ? " (" : "", detail[0] ? ")" : "");
    }
    fflush(stdout);
    return EXIT_OK;
}
