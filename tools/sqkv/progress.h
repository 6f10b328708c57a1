/*
 * progress.h: a one-line progress indicator on stderr for work that takes longer than about a second.
 * Shown only when stderr is a terminal, the user did not ask for -q or --no-progress; never written
 * into logs or pipes.
 */
#ifndef SQKV_CLI_PROGRESS_H
#define SQKV_CLI_PROGRESS_H

#include <stdint.h>

#include "tools/sqkv/cli_common.h"

typedef struct cli_progress {
    int enabled, shown;
    double start, last;
    const char *label;
} cli_progress;

void cli_progress_start(cli_progress *p, const cli_ctx *ctx, const char *label);
void cli_progress_update(cli_progress *p, uint64_t done, uint64_t total);
/* Erases the line if it was shown. */
void cli_progress_end(cli_progress *p);

#endif
