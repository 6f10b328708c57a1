/* output_file.c: see output_file.h. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, mmap, fsync, isatty, ... */
#endif
#include "tools/sqkv/output_file.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tools/common/rng.h"

/* Temporary files to remove if a signal ends the process; fixed storage so that the handler only
 * reads memory and calls unlink(2), both async-signal-safe. */
#define MAX_PENDING 4
#define PENDING_PATH 4096
static char pending_paths[MAX_PENDING][PENDING_PATH];
static volatile sig_atomic_t pending_used[MAX_PENDING];

static void remove_pending_and_die(int sig) {
    for (int i = 0; i < MAX_PENDING; i++)
        if (pending_used[i]) unlink(pending_paths[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

void cli_output_install_signal_handlers(void) {
    static const int signals[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = remove_pending_and_die;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) sigaction(signals[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int register_pending(const char *path) {
    if (strlen(path) >= PENDING_PATH) return -1;
    for (int i = 0; i < MAX_PENDING; i++)
        if (!pending_used[i]) {
            memcpy(pending_paths[i], path, strlen(path) + 1);
            pending_used[i] = 1;
            return i;
        }
    return -1;
}

static void unregister_pending(int slot) {
    if (slot >= 0) pending_used[slot] = 0;
}

const char *cli_output_name(const char *path) { return strcmp(path, "-") == 0 ? "(stdout)" : path; }

int cli_output_check(const char *path, const cli_ctx *ctx, sqt_error *err) {
    if (strcmp(path, "-") == 0) {
        if (!ctx->force && isatty(STDOUT_FILENO))
            return sqt_fail(err, SQT_USAGE,
                                "(stdout): refusing to write binary data to a terminal (redirect stdout, or use -f)");
        return SQT_OK;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return sqt_fail(err, SQT_SYSTEM, "%s: is a directory", path);
        if (!ctx->force)
            return sqt_fail(err, SQT_SYSTEM, "%s: already exists; not overwritten (use -f to overwrite)", path);
    }
    return SQT_OK;
}

static char *dup_string(const char *s) {
    char *d = malloc(strlen(s) + 1);
    if (d) memcpy(d, s, strlen(s) + 1);
    return d;
}

int cli_output_open(cli_output *o, const char *path, const cli_ctx *ctx, sqt_error *err) {
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->slot = -1;
    if (cli_output_check(path, ctx, err)) return err->cls;
    if (strcmp(path, "-") == 0) {
        o->fd = STDOUT_FILENO;
        o->is_stdout = 1;
        return SQT_OK;
    }
    o->force = ctx->force;
    o->path = dup_string(path);
    o->tmp_path = malloc(strlen(path) + 32);
    if (o->path == NULL || o->tmp_path == NULL) {
        cli_output_abort(o);
        return sqt_fail(err, SQT_SYSTEM, "%s: out of memory", path);
    }
    uint64_t state = (uint64_t)getpid() ^ ((uint64_t)time(NULL) << 20) ^ (uint64_t)(uintptr_t)o;
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(o->tmp_path, strlen(path) + 32, "%s.tmp.%012llx", path,
                 (unsigned long long)(sqt_splitmix64(&state) & 0xFFFFFFFFFFFFull));
        o->fd = open(o->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (o->fd >= 0 || errno != EEXIST) break;
    }
    if (o->fd < 0) {
        int saved = errno;
        free(o->tmp_path);
        o->tmp_path = NULL;
        cli_output_abort(o);
        return sqt_fail(err, SQT_SYSTEM, "%s: cannot create a temporary file next to it: %s", path,
                            strerror(saved));
    }
    o->slot = register_pending(o->tmp_path);
    return SQT_OK;
}

int cli_output_write(cli_output *o, const void *data, size_t size, sqt_error *err) {
    const uint8_t *p = data;
    while (size) {
        size_t chunk = size > (1u << 30) ? (1u << 30) : size;
        ssize_t n = write(o->fd, p, chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            return sqt_fail(err, SQT_SYSTEM, "%s: write failed: %s",
                                o->is_stdout ? "(stdout)" : o->path, strerror(errno));
        }
        p += n;
        size -= (size_t)n;
    }
    return SQT_OK;
}

static void sync_directory(const char *path) {
    char *dir = dup_string(path);
    if (dir == NULL) return;
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    int fd = open(slash ? dir : ".", O_RDONLY);
    if (fd >= 0) {
        fsync(fd); /* best effort: some filesystems refuse fsync on directories */
        close(fd);
    }
    free(dir);
}

static int move_into_place(cli_output *o, sqt_error *err) {
    if (!o->force) {
        if (link(o->tmp_path, o->path) == 0) {
            unlink(o->tmp_path);
            return SQT_OK;
        }
        if (errno == EEXIST)
            return sqt_fail(err, SQT_SYSTEM, "%s: already exists; not overwritten (use -f to overwrite)", o->path);
        struct stat st;
        if (lstat(o->path, &st) == 0)
            return sqt_fail(err, SQT_SYSTEM, "%s: already exists; not overwritten (use -f to overwrite)", o->path);
    }
    if (rename(o->tmp_path, o->path) != 0)
        return sqt_fail(err, SQT_SYSTEM, "%s: cannot rename the temporary file into place: %s", o->path,
                            strerror(errno));
    return SQT_OK;
}

int cli_output_commit(cli_output *o, sqt_error *err) {
    if (o->is_stdout) return SQT_OK;
    if (fsync(o->fd) != 0) {
        int saved = errno;
        cli_output_abort(o);
        return sqt_fail(err, SQT_SYSTEM, "%s: fsync failed: %s", o->path, strerror(saved));
    }
    int rc = close(o->fd);
    o->fd = -1;
    if (rc != 0) {
        int saved = errno;
        cli_output_abort(o);
        return sqt_fail(err, SQT_SYSTEM, "%s: close failed: %s", o->path, strerror(saved));
    }
    if (move_into_place(o, err)) {
        cli_output_abort(o);
        return err->cls;
    }
    unregister_pending(o->slot);
    o->slot = -1;
    sync_directory(o->path);
    free(o->tmp_path);
    free(o->path);
    o->tmp_path = o->path = NULL;
    return SQT_OK;
}

void cli_output_abort(cli_output *o) {
    if (!o->is_stdout && o->fd >= 0) close(o->fd);
    o->fd = -1;
    if (o->tmp_path) unlink(o->tmp_path);
    unregister_pending(o->slot);
    o->slot = -1;
    free(o->tmp_path);
    free(o->path);
    o->tmp_path = o->path = NULL;
}
