/*
 * blob.h: the whole content of an input as one read-only byte range. Regular files are mapped (no
 * copy, no memory cost); stdin ("-"), pipes and other non-seekable inputs are read fully into memory,
 * up to a caller-given limit, because the formats read here need random access.
 */
#ifndef SQKV_TOOLS_BLOB_H
#define SQKV_TOOLS_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "tools/common/io_error.h"

typedef struct sqt_blob {
    const uint8_t *data;   /* NULL when size is 0 */
    size_t size;
    void *heap;            /* owned copy (stdin, pipes), or NULL */
    void *map;             /* mmap'ed region, or NULL */
    size_t map_size;
} sqt_blob;

/* path "-" is stdin. max_memory bounds what is read into memory (stdin, pipes); a larger input fails
 * with SQT_BAD_DATA naming the limit. Errors: SQT_SYSTEM for open/read/mmap failures. */
int sqt_blob_load(const char *path, uint64_t max_memory, sqt_blob *out, sqt_error *err);
void sqt_blob_free(sqt_blob *b);

#endif
