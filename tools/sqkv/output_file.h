/*
 * output_file.h: crash-safe outputs. A file is written as "<path>.tmp.<random>" in the same directory,
 * fsynced, then moved into place and the directory fsynced, so a crash never leaves a half-written file
 * under the final name. Without -f an existing file is never replaced (the final step is link(2), which
 * fails when the name exists, so even a file that appears meanwhile is safe; on filesystems without
 * hard links it falls back to a check and rename(2)). "-" is stdout, written directly. If the process
 * is interrupted (SIGINT, SIGTERM, SIGHUP) the temporary files are removed.
 */
#ifndef SQKV_CLI_OUTPUT_FILE_H
#define SQKV_CLI_OUTPUT_FILE_H

#include <stddef.h>

#include "tools/common/io_error.h"
#include "tools/sqkv/cli_common.h"

typedef struct cli_output {
    int fd;
    int is_stdout;
    int force;
    char *path;         /* final name (NULL for stdout) */
    char *tmp_path;
    int slot;           /* in the signal handler's table, or -1 */
} cli_output;

/* Checks, before any work is done, that path may be written: "-" is refused when stdout is a terminal
 * (unless ctx->force), and an existing path without ctx->force is an I/O error (exit 3). */
int cli_output_check(const char *path, const cli_ctx *ctx, sqt_error *err);
/* Opens the output (runs cli_output_check first). */
int cli_output_open(cli_output *o, const char *path, const cli_ctx *ctx, sqt_error *err);
int cli_output_write(cli_output *o, const void *data, size_t size, sqt_error *err);
/* fsync + move into place (files), or nothing more (stdout). */
int cli_output_commit(cli_output *o, sqt_error *err);
/* Removes the temporary file; safe after commit and on a zeroed struct. */
void cli_output_abort(cli_output *o);

/* Installs the signal handlers (once, from main) and ignores SIGPIPE so that a closed pipe is a write
 * error (exit 3) rather than a silent death. */
void cli_output_install_signal_handlers(void);

/* Human name of a path for messages ("(stdout)" for "-"). */
const char *cli_output_name(const char *path);

#endif
