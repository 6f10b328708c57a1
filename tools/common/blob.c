/* blob.c: see blob.h. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, mmap, fsync, isatty, ... */
#endif
#include "tools/common/blob.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int read_all(int fd, const char *name, uint64_t max_memory, sqt_blob *out, sqt_error *err) {
    size_t cap = 1u << 20, size = 0;
    uint8_t *buf = malloc(cap);
    if (buf == NULL) return sqt_fail(err, SQT_SYSTEM, "%s: out of memory", name);
    for (;;) {
        if (size == cap) {
            if ((uint64_t)cap >= max_memory || cap > SIZE_MAX / 2) {
                free(buf);
                return sqt_fail(err, SQT_BAD_DATA,
                                    "%s: input is larger than the in-memory limit of %llu bytes "
                                    "(non-seekable inputs are read fully into memory; see --stdin-limit)",
                                    name, (unsigned long long)max_memory);
            }
            size_t next = cap * 2;
            if ((uint64_t)next > max_memory + 1) next = (size_t)max_memory + 1;
            uint8_t *grown = realloc(buf, next);
            if (grown == NULL) {
                free(buf);
                return sqt_fail(err, SQT_SYSTEM, "%s: out of memory after %zu bytes", name, size);
            }
            buf = grown;
            cap = next;
        }
        ssize_t n = read(fd, buf + size, cap - size);
        if (n < 0) {
            if (errno == EINTR) continue;
            int saved = errno;
            free(buf);
            return sqt_fail(err, SQT_SYSTEM, "%s: read failed: %s", name, strerror(saved));
        }
        if (n == 0) break;
        size += (size_t)n;
        if ((uint64_t)size > max_memory) {
            free(buf);
            return sqt_fail(err, SQT_BAD_DATA,
                                "%s: input is larger than the in-memory limit of %llu bytes "
                                "(non-seekable inputs are read fully into memory; see --stdin-limit)",
                                name, (unsigned long long)max_memory);
        }
    }
    out->heap = buf;
    out->data = size ? buf : NULL;
    out->size = size;
    return SQT_OK;
}

int sqt_blob_load(const char *path, uint64_t max_memory, sqt_blob *out, sqt_error *err) {
    memset(out, 0, sizeof *out);
    if (strcmp(path, "-") == 0) return read_all(STDIN_FILENO, "(stdin)", max_memory, out, err);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return sqt_fail(err, SQT_SYSTEM, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int saved = errno;
        close(fd);
        return sqt_fail(err, SQT_SYSTEM, "%s: cannot stat: %s", path, strerror(saved));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return sqt_fail(err, SQT_SYSTEM, "%s: is a directory", path);
    }
    int rc;
    if (!S_ISREG(st.st_mode)) {
        rc = read_all(fd, path, max_memory, out, err);
    } else if (st.st_size == 0) {
        rc = SQT_OK;
    } else if ((uint64_t)st.st_size > SIZE_MAX) {
        rc = sqt_fail(err, SQT_BAD_DATA, "%s: file too large for this machine", path);
    } else {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            rc = sqt_fail(err, SQT_SYSTEM, "%s: mmap failed: %s", path, strerror(errno));
        } else {
            out->map = map;
            out->map_size = (size_t)st.st_size;
            out->data = map;
            out->size = (size_t)st.st_size;
            rc = SQT_OK;
        }
    }
    close(fd);
    return rc;
}

void sqt_blob_free(sqt_blob *b) {
    if (b->map) munmap(b->map, b->map_size);
    free(b->heap);
    memset(b, 0, sizeof *b);
}
