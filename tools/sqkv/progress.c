/* progress.c: see progress.h. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, mmap, fsync, isatty, ... */
#endif
#include "tools/sqkv/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "tools/common/util.h"

#define PROGRESS_DELAY_S 1.0
#define PROGRESS_PERIOD_S 0.1

void cli_progress_start(cli_progress *p, const cli_ctx *ctx, const char *label) {
    p->enabled = ctx->verbosity >= 1 && !ctx->no_progress && isatty(STDERR_FILENO);
    p->shown = 0;
    p->start = sqkv_now();
    p->last = p->start;
    p->label = label;
}

void cli_progress_update(cli_progress *p, uint64_t done, uint64_t total) {
    if (!p->enabled) return;
    const double now = sqkv_now();
    if (now - p->start < PROGRESS_DELAY_S || now - p->last < PROGRESS_PERIOD_S) return;
    p->last = now;
    p->shown = 1;
    const double pct = total ? 100.0 * (double)done / (double)total : 0.0;
    fprintf(stderr, "\rsqkv: %s %5.1f%% (%llu/%llu)  ", p->label, pct, (unsigned long long)done,
            (unsigned long long)total);
    fflush(stderr);
}

void cli_progress_end(cli_progress *p) {
    if (p->shown) {
        fprintf(stderr, "\r%*s\r", 60, "");
        fflush(stderr);
    }
    p->shown = 0;
}
