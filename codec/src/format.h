/*
 * format.h: the numbers of spec/FORMAT.md, and little-endian field access.
 * Every constant here is a rule of the spec; the section of the spec is named next to it.
 */
#ifndef SQKV_FORMAT_H
#define SQKV_FORMAT_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* §4 file header */
#define SQKV_MAGIC_SIZE 8
extern const uint8_t sqkv_magic[SQKV_MAGIC_SIZE];     /* 89 53 51 4B 56 0D 0A 1A */
extern const uint8_t sqkv_end_magic[SQKV_MAGIC_SIZE]; /* the magic reversed (§9) */
#define SQKV_HEADER_SIZE_V1 64u
#define SQKV_HEADER_SIZE_MAX 4096u
#define SQKV_HDR_MAGIC 0
#define SQKV_HDR_VERSION_MAJOR 8
#define SQKV_HDR_VERSION_MINOR 10
#define SQKV_HDR_HEADER_SIZE 12
#define SQKV_HDR_REQUIRED_FEATURES 16
#define SQKV_HDR_OPTIONAL_FEATURES 20
#define SQKV_HDR_N_LAYERS 24
#define SQKV_HDR_N_KV_HEADS 28
#define SQKV_HDR_HEAD_DIM 32
#define SQKV_HDR_N_TOKENS 36
#define SQKV_HDR_DENSE_WINDOW 40
#define SQKV_HDR_VALUE_DTYPE 44
#define SQKV_HDR_SOURCE_DTYPE 45
#define SQKV_HDR_TILE_SIZE_LOG2 46
#define SQKV_HDR_CHECKSUM_KIND 47
#define SQKV_HDR_RESERVED 48      /* 8 bytes in v1.0 */
/* the header checksum is the last 8 bytes of the header: offset header_size - 8 */

#define SQKV_TILE_SIZE_LOG2 6u
#define SQKV_TILE 64u
#define SQKV_CHECKSUM_XXH3_64 1u

/* §3 format maxima */
#define SQKV_MAX_LAYERS 1024u
#define SQKV_MAX_HEADS 1024u
#define SQKV_MAX_HEAD_DIM 1024u
#define SQKV_MAX_TOKENS (1u << 28)
#define SQKV_MAX_SECTION_ELEMENTS 0xFFFFFFFFull
#define SQKV_MAX_SECTIONS (1u << 20)
#define SQKV_MAX_BODY_SIZE (1ull << 40)
#define SQKV_MAX_FINGERPRINT 4096u
#define SQKV_MAX_METADATA_BODY (1u << 20)
#define SQKV_MAX_METADATA_ENTRIES 1024u
#define SQKV_MAX_METADATA_KEY 255u
#define SQKV_MAX_METADATA_VALUE 65535u
#define SQKV_MAX_OFFSET_INTERVAL_LOG2 20u

/* §5 section header */
#define SQKV_SECTION_HEADER_SIZE 64u
#define SQKV_SEC_KIND 0
#define SQKV_SEC_CODEC 2
#define SQKV_SEC_TENSOR 3
#define SQKV_SEC_LAYER 4
#define SQKV_SEC_HEAD_START 8
#define SQKV_SEC_HEAD_COUNT 12
#define SQKV_SEC_TOKEN_START 16
#define SQKV_SEC_TOKEN_COUNT 20
#define SQKV_SEC_PAYLOAD_BITS 24
#define SQKV_SEC_QUANTIZER 25
#define SQKV_SEC_SCALE_GRANULARITY 26
#define SQKV_SEC_OFFSET_INTERVAL_LOG2 27
#define SQKV_SEC_FLAGS 28
#define SQKV_SEC_STORED_SIZE 32
#define SQKV_SEC_DECODED_SIZE 40
#define SQKV_SEC_BODY_CHECKSUM 48
#define SQKV_SEC_HEADER_CHECKSUM 56

#define SQKV_CODEC_NONE 0u

/* §6 section kinds */
#define SQKV_KIND_ANCILLARY_BIT 0x8000u
#define SQKV_KIND_SPARSE 0x0001u
#define SQKV_KIND_DENSE 0x0002u
#define SQKV_KIND_INDEX 0x0003u
#define SQKV_KIND_TOKENS 0x8001u
#define SQKV_KIND_FINGERPRINT 0x8002u
#define SQKV_KIND_METADATA 0x8003u

/* §9 index entry and tail */
#define SQKV_INDEX_ENTRY_SIZE 40u
#define SQKV_IDX_OFFSET 0
#define SQKV_IDX_STORED_SIZE 8
#define SQKV_IDX_KIND 16
#define SQKV_IDX_TENSOR 18
#define SQKV_IDX_RESERVED 19
#define SQKV_IDX_LAYER 20
#define SQKV_IDX_HEAD_START 24
#define SQKV_IDX_HEAD_COUNT 28
#define SQKV_IDX_TOKEN_START 32
#define SQKV_IDX_TOKEN_COUNT 36
#define SQKV_TAIL_SIZE 16u

/* §4.1: version_minor is 1 exactly when some required feature is declared. */
static inline uint16_t sqkv_version_minor_for(uint32_t required_features) {
    return (uint16_t)(required_features != 0);
}

static inline uint64_t sqkv_align8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

static inline uint16_t sqkv_load_u16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t sqkv_load_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t sqkv_load_u64(const uint8_t *p) {
    return (uint64_t)sqkv_load_u32(p) | ((uint64_t)sqkv_load_u32(p + 4) << 32);
}
static inline void sqkv_store_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void sqkv_store_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void sqkv_store_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* True when every byte of p[0..n) is zero. */
static inline int sqkv_all_zero(const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

#ifdef __cplusplus
}
#endif

#endif /* SQKV_FORMAT_H */
