/* atomic_file.c: temporary file + fsync + rename + directory fsync (see atomic_file.h). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TEMP_SUFFIX ".tmp."
#define RANDOM_HEX_DIGITS 16
#define CREATE_ATTEMPTS 16

/* Unpredictable enough that concurrent savers and leftovers of a crashed one do not collide; O_EXCL
 * makes a collision a retry rather than a clobber, so the fallback need not be cryptographic. It mixes
 * the time, the process, the caller's stack address (distinct per thread) and the attempt number, and
 * keeps no state of its own, so that savers on different threads share nothing. */
static uint64_t random_suffix(const void *caller, int attempt) {
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t got = read(fd, &r, sizeof r);
        close(fd);
        if (got == (ssize_t)sizeof r) return r;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 17) ^ (uint64_t)(uintptr_t)caller ^
        ((uint64_t)attempt << 56);
    /* splitmix64 finalizer: spreads the few changing bits over all digits */
    r ^= r >> 30;
    r *= 0xBF58476D1CE4E5B9ull;
    r ^= r >> 27;
    r *= 0x94D049BB133111EBull;
    return r ^ (r >> 31);
}

static sqkv_error io_error(char *detail, size_t detail_size, const char *what, const char *name, int errnum) {
    snprintf(detail, detail_size, "%s %s: %s", what, name, strerror(errnum));
    return SQKV_ERR_IO;
}

static int fsync_retry(int fd) {
    int rc;
    do rc = fsync(fd);
    while (rc != 0 && errno == EINTR);
    return rc;
}

/* The directory holding path ("." for a bare name), fsynced so that the rename is durable. */
static sqkv_error fsync_directory(const char *path, char *detail, size_t detail_size) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = strdup(".");
    } else {
        size_t len = slash == path ? 1 : (size_t)(slash - path);
        dir = (char *)malloc(len + 1);
        if (dir) {
            memcpy(dir, path, len);
            dir[len] = '\0';
        }
    }
    if (!dir) {
        snprintf(detail, detail_size, "out of memory after renaming into %s", path);
        return SQKV_ERR_OUT_OF_MEMORY;
    }
    sqkv_error err = SQKV_OK;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = io_error(detail, detail_size, "cannot open directory", dir, errno);
    } else {
        /* Some file systems cannot fsync a directory (EINVAL); the rename is then as durable as it gets. */
        if (fsync_retry(fd) != 0 && errno != EINVAL) err = io_error(detail, detail_size, "fsync of directory", dir, errno);
        close(fd);
    }
    free(dir);
    return err;
}

sqkv_error sqkv_atomic_file_write(const char *path, sqkv_atomic_fill_fn fill, void *ctx, char *detail,
                                  size_t detail_size) {
    const size_t path_len = strlen(path);
    if (path_len == 0 || path[path_len - 1] == '/') {
        snprintf(detail, detail_size, "save path \"%s\" does not name a file", path);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    const size_t temp_size = path_len + sizeof TEMP_SUFFIX - 1 + RANDOM_HEX_DIGITS + 1;
    char *temp = (char *)malloc(temp_size);
    if (!temp) {
        snprintf(detail, detail_size, "out of memory for the temporary file name");
        return SQKV_ERR_OUT_OF_MEMORY;
    }
    int fd = -1;
    for (int attempt = 0; attempt < CREATE_ATTEMPTS && fd < 0; attempt++) {
        snprintf(temp, temp_size, "%s" TEMP_SUFFIX "%016llx", path, (unsigned long long)random_suffix(&fd, attempt));
        fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST && errno != EINTR) break;
    }
    if (fd < 0) {
        sqkv_error err = io_error(detail, detail_size, "cannot create temporary file", temp, errno);
        free(temp);
        return err;
    }

    sqkv_error err = fill(ctx, fd, detail, detail_size);
    if (err == SQKV_OK && fsync_retry(fd) != 0) err = io_error(detail, detail_size, "fsync of", temp, errno);
    if (close(fd) != 0 && err == SQKV_OK) err = io_error(detail, detail_size, "close of", temp, errno);
    if (err == SQKV_OK && rename(temp, path) != 0) err = io_error(detail, detail_size, "cannot rename temporary file onto", path, errno);
    if (err != SQKV_OK) {
        unlink(temp);
        free(temp);
        return err;
    }
    free(temp);
    return fsync_directory(path, detail, detail_size);
}
