/*
 * section_blob.h: one encoded section as the encoder keeps it in memory: the exact bytes it occupies in
 * the file (64-byte header, body, zero padding to a multiple of 8), so that writing a file is a plain
 * concatenation. The header is sealed (sizes, checksums) once the body is final.
 */
#ifndef SQKV_SECTION_BLOB_H
#define SQKV_SECTION_BLOB_H

#include <stdint.h>
#include <stdlib.h>

#include "format.h"
#include "section_header.h"
#include "sqkv.h"

typedef struct sqkv_section_blob {
    uint8_t *bytes;             /* header, body, padding; NULL when empty */
    sqkv_section_header header; /* coordinates set by the encoder; sizes and checksum by seal */
} sqkv_section_blob;

static inline uint8_t *sqkv_blob_body(const sqkv_section_blob *b) { return b->bytes + SQKV_SECTION_HEADER_SIZE; }
static inline uint64_t sqkv_blob_extent(const sqkv_section_blob *b) {
    return sqkv_section_extent(b->header.stored_size);
}

/* Zeroed room for a body of body_size bytes (<= SQKV_MAX_BODY_SIZE); sets stored and decoded size.
 * Zeroing provides every padding byte the spec requires. */
static inline sqkv_error sqkv_blob_alloc(sqkv_section_blob *b, uint64_t body_size) {
    const uint64_t extent = sqkv_section_extent(body_size);
    b->bytes = NULL;
    if (body_size > SQKV_MAX_BODY_SIZE || extent > (uint64_t)SIZE_MAX) return SQKV_ERR_LIMIT;
    b->bytes = (uint8_t *)calloc(1, (size_t)extent);
    if (!b->bytes) return SQKV_ERR_OUT_OF_MEMORY;
    b->header.stored_size = body_size;
    b->header.decoded_size = body_size;
    b->header.flags = 0; /* the SPARSE encoder sets ALL_KEPT after this (§7.6); no other kind has flags */
    return SQKV_OK;
}

/* Computes the body checksum and writes the packed header in front of the body. */
static inline void sqkv_blob_seal(sqkv_section_blob *b) {
    b->header.codec = SQKV_CODEC_NONE;
    b->header.body_checksum = sqkv_checksum(sqkv_blob_body(b), (size_t)b->header.stored_size);
    sqkv_section_header_pack(&b->header, b->bytes);
}

static inline void sqkv_blob_free(sqkv_section_blob *b) {
    free(b->bytes);
    b->bytes = NULL;
}

#endif /* SQKV_SECTION_BLOB_H */
