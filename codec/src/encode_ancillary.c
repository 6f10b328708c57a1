/* encode_ancillary.c: TOKENS, FINGERPRINT and METADATA bodies (spec/FORMAT.md §10). */
#include "encode_ancillary.h"

#include <string.h>

#include "format.h"
#include "utf8.h"

static void set_ancillary_header(sqkv_section_blob *b, uint16_t kind) {
    sqkv_section_header *h = &b->header;
    uint64_t stored = h->stored_size, decoded = h->decoded_size;
    memset(h, 0, sizeof *h);
    h->kind = kind;
    h->stored_size = stored;
    h->decoded_size = decoded;
    sqkv_blob_seal(b);
}

sqkv_error sqkv_encode_tokens(const int32_t *tokens, size_t count, sqkv_section_blob *out) {
    sqkv_error err = sqkv_blob_alloc(out, 4u * (uint64_t)count);
    if (err != SQKV_OK) return err;
    uint8_t *body = sqkv_blob_body(out);
    for (size_t i = 0; i < count; i++) sqkv_store_u32(body + 4 * i, (uint32_t)tokens[i]);
    set_ancillary_header(out, SQKV_KIND_TOKENS);
    return SQKV_OK;
}

sqkv_error sqkv_encode_fingerprint(const uint8_t *bytes, size_t size, sqkv_section_blob *out) {
    sqkv_error err = sqkv_blob_alloc(out, size);
    if (err != SQKV_OK) return err;
    memcpy(sqkv_blob_body(out), bytes, size);
    set_ancillary_header(out, SQKV_KIND_FINGERPRINT);
    return SQKV_OK;
}

sqkv_error sqkv_metadata_entry_check(const uint8_t *key, size_t key_size, const uint8_t *value, size_t value_size,
                                     const char **why) {
    if (key_size < 1 || key_size > SQKV_MAX_METADATA_KEY) {
        *why = "metadata key must be 1..255 bytes";
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if (value_size > SQKV_MAX_METADATA_VALUE) {
        *why = "metadata value must be at most 65535 bytes";
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if (!sqkv_utf8_valid(key, key_size)) {
        *why = "metadata key is not valid UTF-8 or contains a NUL byte";
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if (value_size > 0 && !sqkv_utf8_valid(value, value_size)) {
        *why = "metadata value is not valid UTF-8 or contains a NUL byte";
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    return SQKV_OK;
}

int sqkv_metadata_key_compare(const uint8_t *a, size_t a_size, const uint8_t *b, size_t b_size) {
    const size_t common = a_size < b_size ? a_size : b_size;
    const int c = memcmp(a, b, common);
    if (c != 0) return c;
    return a_size < b_size ? -1 : a_size > b_size ? 1 : 0;
}

sqkv_error sqkv_encode_metadata(const sqkv_metadata_entry *entries, size_t count, sqkv_section_blob *out) {
    uint64_t size = 4;
    for (size_t i = 0; i < count; i++) size += sqkv_metadata_entry_size(entries[i].key_size, entries[i].value_size);
    sqkv_error err = sqkv_blob_alloc(out, size);
    if (err != SQKV_OK) return err;
    uint8_t *p = sqkv_blob_body(out);
    sqkv_store_u32(p, (uint32_t)count);
    p += 4;
    for (size_t i = 0; i < count; i++) {
        *p++ = (uint8_t)entries[i].key_size;
        memcpy(p, entries[i].key, entries[i].key_size);
        p += entries[i].key_size;
        sqkv_store_u16(p, (uint16_t)entries[i].value_size);
        p += 2;
        if (entries[i].value_size) memcpy(p, entries[i].value, entries[i].value_size);
        p += entries[i].value_size;
    }
    set_ancillary_header(out, SQKV_KIND_METADATA);
    return SQKV_OK;
}
