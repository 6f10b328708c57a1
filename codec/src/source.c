/* source.c: a reader's byte source (source.h). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "source.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* pread takes at most SSIZE_MAX; pieces of 1 GiB keep every count in range on every platform. */
#define PREAD_PIECE ((size_t)1 << 30)

int sqkv_source_pread(void *ctx, uint64_t offset, void *buf, size_t size) {
    const int fd = *(const int *)ctx;
    uint8_t *p = (uint8_t *)buf;
    while (size > 0) {
        if (offset > (uint64_t)INT64_MAX) return -1;
        const size_t piece = size < PREAD_PIECE ? size : PREAD_PIECE;
        const ssize_t n = pread(fd, p, piece, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) return -1;
        p += n;
        size -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

sqkv_error sqkv_source_read(const sqkv_source *s, uint64_t offset, void *buf, uint64_t size, sqkv_diag *diag) {
    if (size == 0) return SQKV_OK;
    if (offset > s->size || size > s->size - offset || size > (uint64_t)SIZE_MAX)
        return sqkv_diag_fail(diag, SQKV_ERR_IO, "read of %" PRIu64 " bytes at %" PRIu64 " outside the file of %" PRIu64
                              " bytes", size, offset, s->size);
    if (s->data) {
        memcpy(buf, s->data + offset, (size_t)size);
        return SQKV_OK;
    }
    errno = 0;
    if (s->read_at(s->ctx, offset, buf, (size_t)size) != 0)
        return sqkv_diag_fail(diag, SQKV_ERR_IO, "reading %" PRIu64 " bytes at offset %" PRIu64 " failed%s%s", size,
                              offset, errno ? ": " : "", errno ? strerror(errno) : "");
    return SQKV_OK;
}
