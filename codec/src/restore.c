/* restore.c: may a cache file be restored into the caller's model for this prompt? (sqkv.h) */
#include <string.h>

#include "format.h"
#include "reader_internal.h"

sqkv_error sqkv_reader_check_restore(sqkv_reader *r, const sqkv_geometry *expected, const void *fingerprint,
                                     size_t fingerprint_size, const int32_t *prompt, size_t prompt_count,
                                     size_t *reusable_tokens) {
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    sqkv_error err = sqkv_reader_usable(r, "sqkv_reader_check_restore");
    if (err) return err;
    if (!reusable_tokens || (!fingerprint && fingerprint_size) || (!prompt && prompt_count))
        return sqkv_reader_fail(r, SQKV_ERR_INVALID_ARGUMENT,
                                "sqkv_reader_check_restore: reusable_tokens is NULL, or a NULL buffer with a size");
    *reusable_tokens = 0;
    if (expected && (expected->n_layers != r->file.n_layers || expected->n_kv_heads != r->file.n_kv_heads ||
                     expected->head_dim != r->file.head_dim))
        return sqkv_reader_fail(r, SQKV_ERR_GEOMETRY_MISMATCH,
                                "the file's n_layers, n_kv_heads or head_dim differ from the expected geometry");
    const uint8_t *body;
    uint64_t size;
    if (fingerprint && fingerprint_size) {
        if ((err = sqkv_reader_ancillary(r, SQKV_KIND_FINGERPRINT, &body, &size))) return err;
        if (!body) return sqkv_reader_fail(r, SQKV_ERR_NO_FINGERPRINT, "the file has no FINGERPRINT section");
        if (size != fingerprint_size || memcmp(body, fingerprint, fingerprint_size) != 0)
            return sqkv_reader_fail(r, SQKV_ERR_FINGERPRINT_MISMATCH,
                                    "the file's FINGERPRINT differs from the model's: the cache belongs to another model");
    }
    if ((err = sqkv_reader_ancillary(r, SQKV_KIND_TOKENS, &body, &size))) return err;
    if (!body) return sqkv_reader_fail(r, SQKV_ERR_NO_TOKENS, "the file has no TOKENS section");
    const size_t n = (size_t)(size / 4), limit = n < prompt_count ? n : prompt_count;
    size_t same = 0;
    while (same < limit && sqkv_token_at(body, same) == prompt[same]) same++;
    *reusable_tokens = same;
    return SQKV_OK;
}
