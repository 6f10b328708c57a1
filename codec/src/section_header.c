/* section_header.c: section header and index entry serialization (spec/FORMAT.md §5, §9). */
#include "section_header.h"

#include <xxhash.h>

uint64_t sqkv_checksum(const void *data, size_t size) { return (uint64_t)XXH3_64bits(data, size); }

void sqkv_section_header_pack(const sqkv_section_header *h, uint8_t out[SQKV_SECTION_HEADER_SIZE]) {
    sqkv_store_u16(out + SQKV_SEC_KIND, h->kind);
    out[SQKV_SEC_CODEC] = h->codec;
    out[SQKV_SEC_TENSOR] = h->tensor;
    sqkv_store_u32(out + SQKV_SEC_LAYER, h->layer);
    sqkv_store_u32(out + SQKV_SEC_HEAD_START, h->head_start);
    sqkv_store_u32(out + SQKV_SEC_HEAD_COUNT, h->head_count);
    sqkv_store_u32(out + SQKV_SEC_TOKEN_START, h->token_start);
    sqkv_store_u32(out + SQKV_SEC_TOKEN_COUNT, h->token_count);
    out[SQKV_SEC_PAYLOAD_BITS] = h->payload_bits;
    out[SQKV_SEC_QUANTIZER] = h->quantizer;
    out[SQKV_SEC_SCALE_GRANULARITY] = h->scale_granularity;
    out[SQKV_SEC_OFFSET_INTERVAL_LOG2] = h->offset_interval_log2;
    sqkv_store_u32(out + SQKV_SEC_FLAGS, h->flags);
    sqkv_store_u64(out + SQKV_SEC_STORED_SIZE, h->stored_size);
    sqkv_store_u64(out + SQKV_SEC_DECODED_SIZE, h->decoded_size);
    sqkv_store_u64(out + SQKV_SEC_BODY_CHECKSUM, h->body_checksum);
    sqkv_store_u64(out + SQKV_SEC_HEADER_CHECKSUM, sqkv_checksum(out, SQKV_SEC_HEADER_CHECKSUM));
}

int sqkv_section_header_unpack(const uint8_t in[SQKV_SECTION_HEADER_SIZE], sqkv_section_header *h) {
    h->kind = sqkv_load_u16(in + SQKV_SEC_KIND);
    h->codec = in[SQKV_SEC_CODEC];
    h->tensor = in[SQKV_SEC_TENSOR];
    h->layer = sqkv_load_u32(in + SQKV_SEC_LAYER);
    h->head_start = sqkv_load_u32(in + SQKV_SEC_HEAD_START);
    h->head_count = sqkv_load_u32(in + SQKV_SEC_HEAD_COUNT);
    h->token_start = sqkv_load_u32(in + SQKV_SEC_TOKEN_START);
    h->token_count = sqkv_load_u32(in + SQKV_SEC_TOKEN_COUNT);
    h->payload_bits = in[SQKV_SEC_PAYLOAD_BITS];
    h->quantizer = in[SQKV_SEC_QUANTIZER];
    h->scale_granularity = in[SQKV_SEC_SCALE_GRANULARITY];
    h->offset_interval_log2 = in[SQKV_SEC_OFFSET_INTERVAL_LOG2];
    h->flags = sqkv_load_u32(in + SQKV_SEC_FLAGS);
    h->stored_size = sqkv_load_u64(in + SQKV_SEC_STORED_SIZE);
    h->decoded_size = sqkv_load_u64(in + SQKV_SEC_DECODED_SIZE);
    h->body_checksum = sqkv_load_u64(in + SQKV_SEC_BODY_CHECKSUM);
    return sqkv_load_u64(in + SQKV_SEC_HEADER_CHECKSUM) == sqkv_checksum(in, SQKV_SEC_HEADER_CHECKSUM);
}

void sqkv_index_entry_pack(const sqkv_section_header *h, uint64_t offset, uint8_t out[SQKV_INDEX_ENTRY_SIZE]) {
    sqkv_store_u64(out + SQKV_IDX_OFFSET, offset);
    sqkv_store_u64(out + SQKV_IDX_STORED_SIZE, h->stored_size);
    sqkv_store_u16(out + SQKV_IDX_KIND, h->kind);
    out[SQKV_IDX_TENSOR] = h->tensor;
    out[SQKV_IDX_RESERVED] = 0;
    sqkv_store_u32(out + SQKV_IDX_LAYER, h->layer);
    sqkv_store_u32(out + SQKV_IDX_HEAD_START, h->head_start);
    sqkv_store_u32(out + SQKV_IDX_HEAD_COUNT, h->head_count);
    sqkv_store_u32(out + SQKV_IDX_TOKEN_START, h->token_start);
    sqkv_store_u32(out + SQKV_IDX_TOKEN_COUNT, h->token_count);
}

int sqkv_index_entry_unpack(const uint8_t in[SQKV_INDEX_ENTRY_SIZE], sqkv_section_header *h, uint64_t *offset) {
    *offset = sqkv_load_u64(in + SQKV_IDX_OFFSET);
    h->stored_size = sqkv_load_u64(in + SQKV_IDX_STORED_SIZE);
    h->kind = sqkv_load_u16(in + SQKV_IDX_KIND);
    h->tensor = in[SQKV_IDX_TENSOR];
    h->layer = sqkv_load_u32(in + SQKV_IDX_LAYER);
    h->head_start = sqkv_load_u32(in + SQKV_IDX_HEAD_START);
    h->head_count = sqkv_load_u32(in + SQKV_IDX_HEAD_COUNT);
    h->token_start = sqkv_load_u32(in + SQKV_IDX_TOKEN_START);
    h->token_count = sqkv_load_u32(in + SQKV_IDX_TOKEN_COUNT);
    return in[SQKV_IDX_RESERVED] == 0;
}
