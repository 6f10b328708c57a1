/* parse_header.c: file header (spec/FORMAT.md §4) and tail (§9). */
#include "parse_header.h"

#include <inttypes.h>
#include <string.h>

#include "format.h"
#include "section_check.h"

/* A geometry count: 0 breaks the field's range; above the format maximum or the configured limit is
 * LIMIT (§3). */
static sqkv_error check_count(uint32_t value, uint32_t format_max, uint32_t configured_max, const char *name,
                              sqkv_diag *diag) {
    if (value == 0)
        return sqkv_diag_fail(diag, SQKV_ERR_HEADER_FIELD, "file header: %s is 0 (§4: at least 1)", name);
    if (value > format_max)
        return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "file header: %s = %" PRIu32 " exceeds the format maximum %" PRIu32
                              " (§3)", name, value, format_max);
    if (value > configured_max)
        return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "file header: %s = %" PRIu32 " exceeds the configured limit %" PRIu32,
                              name, value, configured_max);
    return SQKV_OK;
}

sqkv_error sqkv_parse_file_header(const uint8_t *data, uint64_t size, const sqkv_limits *limits,
                                  sqkv_file_info *info, sqkv_diag *diag) {
    memset(info, 0, sizeof *info);
    info->file_size = size;
    const uint64_t magic_bytes = size < SQKV_MAGIC_SIZE ? size : SQKV_MAGIC_SIZE;
    if (magic_bytes && memcmp(data, sqkv_magic, (size_t)magic_bytes) != 0)
        return sqkv_diag_fail(diag, SQKV_ERR_BAD_MAGIC, "file header: bad magic (§4: 89 53 51 4B 56 0D 0A 1A)");
    if (size < SQKV_HDR_HEADER_SIZE + 4)
        return sqkv_diag_fail(diag, SQKV_ERR_TRUNCATED, "file of %" PRIu64 " bytes ends inside the file header", size);

    info->version_major = sqkv_load_u16(data + SQKV_HDR_VERSION_MAJOR);
    info->version_minor = sqkv_load_u16(data + SQKV_HDR_VERSION_MINOR);
    if (info->version_major != SQKV_FORMAT_VERSION_MAJOR)
        return sqkv_diag_fail(diag, SQKV_ERR_UNSUPPORTED_VERSION, "file header: version_major is %" PRIu32
                              " (§12: this decoder reads 1)", info->version_major);

    const uint32_t header_size = sqkv_load_u32(data + SQKV_HDR_HEADER_SIZE);
    if (header_size < SQKV_HEADER_SIZE_V1 || header_size > SQKV_HEADER_SIZE_MAX || header_size % 8 != 0)
        return sqkv_diag_fail(diag, SQKV_ERR_HEADER_SIZE, "file header: header_size %" PRIu32
                              " is not a multiple of 8 in 64..4096 (§4)", header_size);
    info->header_size = header_size;
    if (size < (uint64_t)header_size + SQKV_SECTION_HEADER_SIZE + SQKV_INDEX_MIN_BODY)
        return sqkv_diag_fail(diag, SQKV_ERR_TRUNCATED, "file of %" PRIu64 " bytes is shorter than header_size + 64 + 32"
                              " (§9)", size);

    if (!sqkv_checksum_ok(sqkv_load_u64(data + header_size - 8), data, header_size - 8))
        return sqkv_diag_fail(diag, SQKV_ERR_HEADER_CHECKSUM, "file header: checksum mismatch (§4)");

    const uint32_t required = sqkv_load_u32(data + SQKV_HDR_REQUIRED_FEATURES);
    if (required & ~SQKV_FEATURES_KNOWN)
        return sqkv_diag_fail(diag, SQKV_ERR_UNSUPPORTED_FEATURE, "file header: required_features 0x%08" PRIx32
                              " has bits this decoder does not implement: 0x%08" PRIx32 " (§4.1, §12)", required,
                              required & ~SQKV_FEATURES_KNOWN);
    info->required_features = required;
    info->optional_features = sqkv_load_u32(data + SQKV_HDR_OPTIONAL_FEATURES);
    if (!sqkv_all_zero(data + SQKV_HDR_RESERVED, 8))
        return sqkv_diag_fail(diag, SQKV_ERR_RESERVED, "file header: reserved bytes 48..55 are not zero (§4)");

    sqkv_error err;
    info->n_layers = sqkv_load_u32(data + SQKV_HDR_N_LAYERS);
    if ((err = check_count(info->n_layers, SQKV_MAX_LAYERS, limits->max_layers, "n_layers", diag))) return err;
    info->n_kv_heads = sqkv_load_u32(data + SQKV_HDR_N_KV_HEADS);
    if ((err = check_count(info->n_kv_heads, SQKV_MAX_HEADS, limits->max_heads, "n_kv_heads", diag))) return err;
    info->head_dim = sqkv_load_u32(data + SQKV_HDR_HEAD_DIM);
    if ((err = check_count(info->head_dim, SQKV_MAX_HEAD_DIM, limits->max_head_dim, "head_dim", diag))) return err;
    info->n_tokens = sqkv_load_u32(data + SQKV_HDR_N_TOKENS);
    if ((err = check_count(info->n_tokens, SQKV_MAX_TOKENS, limits->max_tokens, "n_tokens", diag))) return err;
    info->dense_window = sqkv_load_u32(data + SQKV_HDR_DENSE_WINDOW);
    if (info->dense_window > info->n_tokens)
        return sqkv_diag_fail(diag, SQKV_ERR_HEADER_FIELD, "file header: dense_window %" PRIu32
                              " exceeds n_tokens %" PRIu32 " (§4)", info->dense_window, info->n_tokens);
    info->sparse_tokens = info->n_tokens - info->dense_window;
    info->header_n_tokens = info->n_tokens;
    info->header_dense_window = info->dense_window;

    const uint8_t value_dtype = data[SQKV_HDR_VALUE_DTYPE];
    if (value_dtype != SQKV_DTYPE_FP16 && value_dtype != SQKV_DTYPE_BF16)
        return sqkv_diag_fail(diag, SQKV_ERR_HEADER_FIELD, "file header: value_dtype %u (§4: 1 fp16 or 2 bf16)",
                              value_dtype);
    info->value_dtype = (sqkv_dtype)value_dtype;
    const uint8_t source_dtype = data[SQKV_HDR_SOURCE_DTYPE];
    if (source_dtype < SQKV_DTYPE_FP16 || source_dtype > SQKV_DTYPE_FP32)
        return sqkv_diag_fail(diag, SQKV_ERR_HEADER_FIELD, "file header: source_dtype %u (§4: 1, 2 or 3)",
                              source_dtype);
    info->source_dtype = (sqkv_dtype)source_dtype;
    if (data[SQKV_HDR_TILE_SIZE_LOG2] != SQKV_TILE_SIZE_LOG2)
        return sqkv_diag_fail(diag, SQKV_ERR_HEADER_FIELD, "file header: tile_size_log2 %u (§4: 6 in v1)",
                              data[SQKV_HDR_TILE_SIZE_LOG2]);
    if (data[SQKV_HDR_CHECKSUM_KIND] != SQKV_CHECKSUM_XXH3_64)
        return sqkv_diag_fail(diag, SQKV_ERR_HEADER_FIELD, "file header: checksum_kind %u (§4: 1 = XXH3-64)",
                              data[SQKV_HDR_CHECKSUM_KIND]);
    return SQKV_OK;
}

sqkv_error sqkv_parse_tail(const uint8_t *data, sqkv_file_info *info, sqkv_diag *diag) {
    return sqkv_parse_tail_bytes(data + info->file_size - SQKV_TAIL_SIZE, info, diag);
}

sqkv_error sqkv_parse_tail_bytes(const uint8_t tail[16], sqkv_file_info *info, sqkv_diag *diag) {
    if (memcmp(tail + 8, sqkv_end_magic, SQKV_MAGIC_SIZE) != 0)
        return sqkv_diag_fail(diag, SQKV_ERR_BAD_TAIL, "tail: bad end magic (§9: 1A 0A 0D 56 4B 51 53 89)");
    const uint64_t index_offset = sqkv_load_u64(tail);
    const uint64_t last_start = info->file_size - SQKV_INDEX_MIN_BODY - SQKV_SECTION_HEADER_SIZE;
    if (index_offset < info->header_size || index_offset > last_start || index_offset % 8 != 0)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_LAYOUT, "tail: index offset %" PRIu64
                              " cannot start an INDEX section after the file header (§9)", index_offset);
    info->index_offset = index_offset;
    return SQKV_OK;
}
