/*
 * encode_ancillary.h: TOKENS, FINGERPRINT and METADATA sections (spec/FORMAT.md §10). Each function
 * builds a complete, sealed section; its coordinate fields are all zero.
 */
#ifndef SQKV_ENCODE_ANCILLARY_H
#define SQKV_ENCODE_ANCILLARY_H

#include <stddef.h>
#include <stdint.h>

#include "section_blob.h"
#include "sqkv.h"

/* count token ids (count >= 1, as n_tokens). Errors: OUT_OF_MEMORY. */
sqkv_error sqkv_encode_tokens(const int32_t *tokens, size_t count, sqkv_section_blob *out);
/* 1 .. 4096 bytes. Errors: OUT_OF_MEMORY. */
sqkv_error sqkv_encode_fingerprint(const uint8_t *bytes, size_t size, sqkv_section_blob *out);

typedef struct sqkv_metadata_entry {
    uint8_t *key;   /* key_size bytes, 1 .. 255 */
    size_t key_size;
    uint8_t *value; /* value_size bytes, 0 .. 65535; may be NULL when value_size is 0 */
    size_t value_size;
} sqkv_metadata_entry;

/* Checks one entry against §10.3 (sizes, UTF-8, no NUL). Returns SQKV_OK, or SQKV_ERR_INVALID_ARGUMENT
 * with the reason in *why. */
sqkv_error sqkv_metadata_entry_check(const uint8_t *key, size_t key_size, const uint8_t *value, size_t value_size,
                                     const char **why);
/* Body bytes an entry adds. */
static inline uint64_t sqkv_metadata_entry_size(size_t key_size, size_t value_size) {
    return 1u + (uint64_t)key_size + 2u + (uint64_t)value_size;
}
/* Bytewise key order (shorter prefix first), as §10.3 requires. */
int sqkv_metadata_key_compare(const uint8_t *a, size_t a_size, const uint8_t *b, size_t b_size);

/* entries must already be valid, unique and sorted by key; 1 .. 1024 of them, body <= 1 MiB.
 * Errors: OUT_OF_MEMORY. */
sqkv_error sqkv_encode_metadata(const sqkv_metadata_entry *entries, size_t count, sqkv_section_blob *out);

#endif /* SQKV_ENCODE_ANCILLARY_H */
