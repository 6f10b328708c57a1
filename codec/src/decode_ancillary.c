/* decode_ancillary.c: TOKENS and METADATA bodies (spec/FORMAT.md §10). */
#include "decode_ancillary.h"

#include <inttypes.h>

#include "format.h"
#include "utf8.h"

void sqkv_tokens_copy(const uint8_t *body, size_t count, int32_t *tokens) {
    for (size_t i = 0; i < count; i++) tokens[i] = sqkv_token_at(body, i);
}

sqkv_error sqkv_metadata_count(const uint8_t *body, uint64_t size, uint32_t *count, sqkv_diag *diag) {
    if (size < 4) return sqkv_diag_fail(diag, SQKV_ERR_METADATA, "body of %" PRIu64 " bytes has no entry count (§10.3)", size);
    const uint32_t n = sqkv_load_u32(body);
    if (n < 1 || n > SQKV_MAX_METADATA_ENTRIES)
        return sqkv_diag_fail(diag, SQKV_ERR_METADATA, "entry count %" PRIu32 " (§10.3: 1 to 1024)", n);
    *count = n;
    return SQKV_OK;
}

/* Bytewise order of two byte strings; a proper prefix sorts first. */
static int compare_keys(const uint8_t *a, size_t na, const uint8_t *b, size_t nb) {
    const int c = memcmp(a, b, na < nb ? na : nb);
    if (c) return c;
    return na < nb ? -1 : na > nb;
}

sqkv_error sqkv_metadata_parse(const uint8_t *body, uint64_t size, uint32_t count, sqkv_metadata_entry *entries,
                               sqkv_diag *diag) {
    uint64_t pos = 4;
    for (uint32_t i = 0; i < count; i++) {
        if (size - pos < 1)
            return sqkv_diag_fail(diag, SQKV_ERR_METADATA, "entry %" PRIu32 ": the body ends before its key length (§10.3)", i);
        const size_t key_size = body[pos++];
        if (key_size == 0) return sqkv_diag_fail(diag, SQKV_ERR_METADATA, "entry %" PRIu32 ": empty key (§10.3: 1 to 255 bytes)", i);
        if (size - pos < key_size + 2)
            return sqkv_diag_fail(diag, SQKV_ERR_METADATA, "entry %" PRIu32 ": the body ends inside its key or value length (§10.3)", i);
        const uint8_t *key = body + pos;
        pos += key_size;
        const size_t value_size = sqkv_load_u16(body + pos);
        pos += 2;
        if (size - pos < value_size)
            return sqkv_diag_fail(diag, SQKV_ERR_METADATA, "entry %" PRIu32 ": the body ends inside its value (§10.3)", i);
        const uint8_t *value = body + pos;
        pos += value_size;
        if (!sqkv_utf8_valid(key, key_size))
            return sqkv_diag_fail(diag, SQKV_ERR_METADATA, "entry %" PRIu32 ": the key is not UTF-8 without NUL (§10.3)", i);
        if (!sqkv_utf8_valid(value, value_size))
            return sqkv_diag_fail(diag, SQKV_ERR_METADATA, "entry %" PRIu32 ": the value is not UTF-8 without NUL (§10.3)", i);
        if (i > 0 && compare_keys(entries[i - 1].key, entries[i - 1].key_size, key, key_size) >= 0)
            return sqkv_diag_fail(diag, SQKV_ERR_METADATA, "entry %" PRIu32 ": keys are not strictly ascending (§10.3)", i);
        entries[i].key = key;
        entries[i].key_size = key_size;
        entries[i].value = value;
        entries[i].value_size = value_size;
    }
    if (pos != size)
        return sqkv_diag_fail(diag, SQKV_ERR_METADATA, "%" PRIu64 " bytes after the last entry (§10.3: the entries fill the"
                              " body exactly)", size - pos);
    return SQKV_OK;
}
