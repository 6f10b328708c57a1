/* decode_ancillary.h: bodies of the ancillary sections TOKENS, FINGERPRINT, METADATA
 * (spec/FORMAT.md §10). Their sizes are checked with the section (section_check.h). */
#ifndef SQKV_DECODE_ANCILLARY_H
#define SQKV_DECODE_ANCILLARY_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "diag.h"
#include "sqkv.h"

/* TOKENS: ids 0..count of a checked body, as host int32. */
void sqkv_tokens_copy(const uint8_t *body, size_t count, int32_t *tokens);
static inline int32_t sqkv_token_at(const uint8_t *body, size_t i) {
    const uint32_t u = (uint32_t)body[4 * i] | ((uint32_t)body[4 * i + 1] << 8) | ((uint32_t)body[4 * i + 2] << 16) |
                       ((uint32_t)body[4 * i + 3] << 24);
    int32_t v;
    memcpy(&v, &u, sizeof v); /* two's complement (§1) */
    return v;
}

typedef struct sqkv_metadata_entry {
    const uint8_t *key;
    size_t key_size;
    const uint8_t *value;
    size_t value_size;
} sqkv_metadata_entry;

/* The entry count of a METADATA body, checked to be 1..1024 (METADATA). */
sqkv_error sqkv_metadata_count(const uint8_t *body, uint64_t size, uint32_t *count, sqkv_diag *diag);
/* Parses all `count` entries (from sqkv_metadata_count) into entries[]: key lengths 1..255, UTF-8
 * without NUL, keys strictly ascending, the body filled exactly; any violation is METADATA. */
sqkv_error sqkv_metadata_parse(const uint8_t *body, uint64_t size, uint32_t count, sqkv_metadata_entry *entries,
                               sqkv_diag *diag);

#endif
