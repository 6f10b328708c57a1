/* reader_ancillary.c: token ids, fingerprint and metadata of an open file (sqkv.h, spec/FORMAT.md §10). */
#include <string.h>

#include "reader_internal.h"
#include "section_check.h"

sqkv_error sqkv_reader_tokens(sqkv_reader *r, int32_t *tokens, size_t cap, size_t *count) {
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    sqkv_error err = sqkv_reader_usable(r, "sqkv_reader_tokens");
    if (err) return err;
    if (!count) return sqkv_reader_fail_argument(r, "sqkv_reader_tokens", "count is NULL");
    const uint8_t *body;
    uint64_t size;
    if ((err = sqkv_reader_ancillary(r, SQKV_KIND_TOKENS, &body, &size))) return err;
    const size_t n = (size_t)(size / 4);
    *count = n;
    if (!tokens) return SQKV_OK;
    if (cap < n) return sqkv_reader_fail(r, SQKV_ERR_BUFFER_TOO_SMALL, "sqkv_reader_tokens: cap < token count");
    sqkv_tokens_copy(body, n, tokens);
    return SQKV_OK;
}

sqkv_error sqkv_reader_fingerprint(sqkv_reader *r, void *buf, size_t cap, size_t *size) {
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    sqkv_error err = sqkv_reader_usable(r, "sqkv_reader_fingerprint");
    if (err) return err;
    if (!size) return sqkv_reader_fail_argument(r, "sqkv_reader_fingerprint", "size is NULL");
    const uint8_t *body;
    uint64_t n;
    if ((err = sqkv_reader_ancillary(r, SQKV_KIND_FINGERPRINT, &body, &n))) return err;
    *size = (size_t)n;
    if (!buf) return SQKV_OK;
    if (cap < n) return sqkv_reader_fail(r, SQKV_ERR_BUFFER_TOO_SMALL, "sqkv_reader_fingerprint: cap < fingerprint size");
    if (n) memcpy(buf, body, (size_t)n);
    return SQKV_OK;
}

sqkv_error sqkv_reader_metadata_count(sqkv_reader *r, size_t *count) {
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    sqkv_error err = sqkv_reader_usable(r, "sqkv_reader_metadata_count");
    if (err) return err;
    if (!count) return sqkv_reader_fail_argument(r, "sqkv_reader_metadata_count", "count is NULL");
    sqkv_ancillary *a;
    if ((err = sqkv_reader_load_ancillary(r, SQKV_KIND_METADATA, &a))) return err;
    *count = r->metadata_count;
    return SQKV_OK;
}

sqkv_error sqkv_reader_metadata_entry(sqkv_reader *r, size_t i, const char **key, size_t *key_size,
                                      const char **value, size_t *value_size) {
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    sqkv_error err = sqkv_reader_usable(r, "sqkv_reader_metadata_entry");
    if (err) return err;
    if (!key || !key_size || !value || !value_size)
        return sqkv_reader_fail_argument(r, "sqkv_reader_metadata_entry", "an output pointer is NULL");
    sqkv_ancillary *a;
    if ((err = sqkv_reader_load_ancillary(r, SQKV_KIND_METADATA, &a))) return err;
    if (i >= r->metadata_count) return sqkv_reader_fail_argument(r, "sqkv_reader_metadata_entry", "entry number out of range");
    const sqkv_metadata_entry *m = &r->metadata[i];
    *key = (const char *)m->key;
    *key_size = m->key_size;
    *value = (const char *)m->value;
    *value_size = m->value_size;
    return SQKV_OK;
}
