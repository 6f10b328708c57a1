/* main.c: `sqkv`, the command-line tool of the SQKV format: dispatch, --help, --version. */
#include <stdio.h>
#include <string.h>

#include "sqkv.h"
#include "tools/sqkv/cli_args.h"
#include "tools/sqkv/commands.h"
#include "tools/sqkv/output_file.h"

#define SQKV_TOOL_VERSION "1.0.0"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv, cli_ctx *ctx);
    const char *summary;
} command;

static const command commands[] = {
    {"demo", cmd_demo, "build a synthetic Llama-3-8B-sized KV cache, save, restore, verify, report"},
    {"info", cmd_info, "describe an .sqkv file (--json for scripts)"},
    {"verify", cmd_verify, "check the structure and every checksum of .sqkv files"},
    {"encode", cmd_encode, "compress a dense cache (.npy, .safetensors) into an .sqkv file"},
    {"decode", cmd_decode, "decode an .sqkv file into .npy or .safetensors"},
    {"bench", cmd_bench, "throughput and size against memcpy and zstd (like zstd -b)"},
    {"compare", cmd_compare, "error of an .sqkv file against the dense original"},
    {"append", cmd_append, "add the tokens of a dense cache to an .sqkv file in place"},
    {"repair", cmd_repair, "cut an interrupted append back to the last valid file"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_usage(FILE *out) {
    fprintf(out,
            "Usage: sqkv [options] COMMAND [ARGS]\n"
            "\n"
            "SQKV stores LLM KV caches pruned per token (64-element bitmap tiles) and quantized, with token\n"
            "ids, a model fingerprint, metadata and checksums on every byte.\n"
            "\n"
            "Commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n"
            "Try `sqkv demo` first. `sqkv COMMAND --help` (or `sqkv help COMMAND`) describes a command.\n"
            "\"-\" as a file name is stdin or stdout: sqkv encode in.safetensors - | ssh host sqkv decode - out.npy\n"
            "(`verify -` and `decode - FILE` stream; other commands read stdin into memory, up to --stdin-limit).\n"
            "\n"
            "Options (also accepted after COMMAND):\n"
            "  -h, --help       this help\n"
            "  -V, --version    tool and format versions\n"
            "  -q, --quiet      print only errors on stderr\n"
            "  -v, --verbose    more detail on stderr\n"
            "  -f, --force      overwrite existing outputs; write binary data to a terminal\n"
            "      --no-progress    never show the progress line\n"
            "      --stdin-limit N  most bytes read into memory from stdin or a pipe (default 8G)\n"
            "\n"
            "Data goes to stdout, messages to stderr (prefixed \"sqkv: \"). A progress line appears on stderr\n"
            "for work longer than about a second, only when stderr is a terminal. Outputs are written\n"
            "crash-safe (temporary file, fsync, rename) and never replace an existing file without -f.\n"
            "\n"
            "Exit status: 0 success; 1 bad or corrupt data (also: a file fails verify); 2 usage error;\n"
            "3 I/O or system error (cannot read or write, output exists without -f, out of memory).\n");
}

static void print_version(void) {
    printf("sqkv %s (library %s, SQKV format %u.%u)\n", SQKV_TOOL_VERSION, SQKV_LIBRARY_VERSION_STRING,
           SQKV_FORMAT_VERSION_MAJOR, SQKV_FORMAT_VERSION_MINOR);
}

static const command *find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static int unknown_command(const char *name) {
    cli_error("'%s' is not a command; commands: demo, info, verify, encode, decode, bench, compare, "
              "append, repair "
              "(see 'sqkv --help')", name);
    return EXIT_USAGE;
}

int main(int argc, char **argv) {
    cli_ctx ctx;
    cli_ctx_init(&ctx);
    cli_output_install_signal_handlers();
    /* Options before the command. */
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            print_usage(stdout);
            return EXIT_OK;
        }
        if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            print_version();
            return EXIT_OK;
        }
        if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) ctx.verbosity = 0;
        else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) ctx.verbosity++;
        else if (strcmp(a, "-f") == 0 || strcmp(a, "--force") == 0) ctx.force = 1;
        else if (strcmp(a, "--no-progress") == 0) ctx.no_progress = 1;
        else if (strncmp(a, "--stdin-limit", 13) == 0 && (a[13] == '=' || a[13] == '\0')) {
            if (a[13] == '\0' && i + 1 == argc) {
                cli_error("option '--stdin-limit' needs a value");
                return EXIT_USAGE;
            }
            if (cli_apply_common(&ctx, CLI_OPT_STDIN_LIMIT, a[13] == '=' ? a + 14 : argv[++i]) < 0) return EXIT_USAGE;
        } else {
            cli_error("unknown option '%s' before the command (see 'sqkv --help')", a);
            return EXIT_USAGE;
        }
    }
    if (i == argc) {
        print_usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[i], "help") == 0) {
        if (i + 1 == argc) {
            print_usage(stdout);
            return EXIT_OK;
        }
        const command *c = find_command(argv[i + 1]);
        if (c == NULL) return unknown_command(argv[i + 1]);
        char *help_argv[] = {argv[i + 1], "--help", NULL};
        return c->run(2, help_argv, &ctx);
    }
    const command *c = find_command(argv[i]);
    if (c == NULL) return unknown_command(argv[i]);
    int rc = c->run(argc - i, argv + i, &ctx);
    if (fflush(stdout) != 0 && rc == EXIT_OK) {
        cli_error("cannot write to stdout");
        rc = EXIT_IO;
    }
    return rc;
}
