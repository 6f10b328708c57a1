/*
 * source.h: where a reader's bytes come from. Either the whole file in memory (open_memory, open_file's
 * mapping: sections are used in place, zero-copy), or a read_at function (open_callback, open_fd's
 * pread) from which the reader fetches exactly the ranges it needs into buffers of its own.
 */
#ifndef SQKV_SOURCE_H
#define SQKV_SOURCE_H

#include <stdint.h>

#include "diag.h"
#include "sqkv.h"

typedef struct sqkv_source {
    const uint8_t *data;     /* the whole file, or NULL when bytes come through read_at */
    uint64_t size;           /* file size */
    sqkv_read_at_fn read_at;
    void *ctx;
    int fd;                  /* open_fd: read_at is sqkv_source_pread with ctx = &fd */
} sqkv_source;

/* Copies [offset, offset + size) into buf; the range must lie inside the file. IO (with the offset in
 * the message) when read_at fails. */
sqkv_error sqkv_source_read(const sqkv_source *s, uint64_t offset, void *buf, uint64_t size, sqkv_diag *diag);

/* read_at over pread(2): ctx is an int * holding the descriptor. Retries EINTR and short reads; a read
 * that returns 0 (the file shrank) is a failure. */
int sqkv_source_pread(void *ctx, uint64_t offset, void *buf, size_t size);

#endif
