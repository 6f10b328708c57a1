/* cmd_verify.c: `sqkv verify FILE...`: structure, every checksum, every body rule. */
#include <stdio.h>
#include <string.h>

#include "tools/common/util.h"
#include "tools/sqkv/cli_args.h"
#include "tools/sqkv/commands.h"
#include "tools/sqkv/cli_sqkv.h"
#include "tools/sqkv/stream_input.h"

static const char help[] =
    "Usage: sqkv verify [options] FILE...\n"
    "\n"
    "Checks each .sqkv FILE (\"-\" = stdin): the file structure (header, index, tail, section layout and\n"
    "coverage) and, for every section, its header and body checksums and every rule of its body.\n"
    "A sound file prints \"FILE: OK (...)\" on stdout (not with -q). For a bad file, stderr says which\n"
    "section failed and why, with the error name of the spec (e.g. SQKV_ERR_SECTION_CHECKSUM).\n"
    "stdin is checked as it arrives with the streaming decoder (any length, one section in memory); a\n"
    "stream cut short says in which section it stopped and what is missing. A file that was appended\n"
    "to (`sqkv append`) cannot be checked in one pass: give it as a path.\n"
    "\n"
    "Exit status: 0 when every file is sound, 1 when a file is bad, 2 usage error, 3 when a file\n"
    "cannot be read.\n"
    "\n";

static int verify_stdin(const cli_ctx *ctx) {
    sqkv_stream_status st;
    int rc = stream_stdin(0, NULL, NULL, &st);
    if (rc == EXIT_OK && ctx->verbosity >= 1) {
        char size[32];
        printf("(stdin): OK (SQKV %u-layer cache, %llu sections, %s, all checksums match)\n", st.geometry.n_layers,
               (unsigned long long)st.sections_verified, sqkv_human_size(st.bytes_received, size, sizeof size));
    }
    return rc;
}

static int verify_one(const char *path, cli_ctx *ctx) {
    if (strcmp(path, "-") == 0) return verify_stdin(ctx);
    cli_sqkv in;
    int rc = cli_sqkv_open(path, ctx, 0, &in);
    if (rc) return rc;
    sqkv_error e = sqkv_reader_verify(in.reader);
    if (e) {
        rc = cli_report(in.name, e, sqkv_reader_error_detail(in.reader));
    } else if (ctx->verbosity >= 1) {
        char size[32];
        printf("%s: OK (SQKV %u-layer cache, %zu sections, %s, all checksums match)\n", in.name,
               in.geometry.n_layers, in.n_sections, sqkv_human_size(in.blob.size, size, sizeof size));
    }
    cli_sqkv_close(&in);
    return rc;
}

int cmd_verify(int argc, char **argv, cli_ctx *ctx) {
    static const cli_option options[] = {{NULL, 0, 0, 0}};
    cli_parser p;
    cli_parser_init(&p, argc - 1, argv + 1, options, "verify");
    const char *files[256];
    int n_files = 0, id;
    const char *value;
    while ((id = cli_next(&p, &value)) != CLI_NEXT_END) {
        if (id == CLI_NEXT_ERROR) return EXIT_USAGE;
        if (id == CLI_OPT_HELP) {
            fputs(help, stdout);
            fputs(cli_common_help, stdout);
            return EXIT_OK;
        }
        if (id == CLI_NEXT_POSITIONAL) {
            if (n_files == 256) {
                cli_error("verify: at most 256 files at once");
                return EXIT_USAGE;
            }
            files[n_files++] = value;
            continue;
        }
        if (cli_apply_common(ctx, id, value) < 0) return EXIT_USAGE;
    }
    if (n_files == 0) {
        cli_error("verify: no FILE given (see 'sqkv verify --help')");
        return EXIT_USAGE;
    }
    int worst = EXIT_OK;
    for (int i = 0; i < n_files; i++) {
        int rc = verify_one(files[i], ctx);
        if (rc > worst) worst = rc;
    }
    fflush(stdout);
    return worst;
}
