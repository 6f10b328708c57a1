/*
 * section_header.h: the 64-byte section header of spec/FORMAT.md §5, its index entry (§9), and the
 * checksum (XXH3-64, seed 0) used everywhere in the format.
 */
#ifndef SQKV_SECTION_HEADER_H
#define SQKV_SECTION_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "format.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sqkv_section_header {
    uint16_t kind;
    uint8_t codec;
    uint8_t tensor;
    uint32_t layer;
    uint32_t head_start, head_count;
    uint32_t token_start, token_count;
    uint8_t payload_bits, quantizer, scale_granularity, offset_interval_log2;
    uint32_t flags;
    uint64_t stored_size, decoded_size;
    uint64_t body_checksum;
} sqkv_section_header;

uint64_t sqkv_checksum(const void *data, size_t size);

/* Serializes h into out[64], computing the header checksum (body_checksum is taken from h). */
void sqkv_section_header_pack(const sqkv_section_header *h, uint8_t out[SQKV_SECTION_HEADER_SIZE]);
/* Parses in[64] into h without any validation; returns 1 when the header checksum matches. */
int sqkv_section_header_unpack(const uint8_t in[SQKV_SECTION_HEADER_SIZE], sqkv_section_header *h);

/* Index entry (§9) from/to a header and its file offset. */
void sqkv_index_entry_pack(const sqkv_section_header *h, uint64_t offset, uint8_t out[SQKV_INDEX_ENTRY_SIZE]);
/* Parses an entry; h receives the coordinate fields and stored_size, *offset the section offset;
 * returns 0 when the reserved byte is not zero. */
int sqkv_index_entry_unpack(const uint8_t in[SQKV_INDEX_ENTRY_SIZE], sqkv_section_header *h, uint64_t *offset);

/* File extent of a section with this stored size: header + body + padding to 8 (no overflow for
 * stored_size <= 2^40). */
static inline uint64_t sqkv_section_extent(uint64_t stored_size) {
    return SQKV_SECTION_HEADER_SIZE + sqkv_align8(stored_size);
}

#ifdef __cplusplus
}
#endif

#endif
