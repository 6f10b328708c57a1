/* parse_header.h: the file header (spec/FORMAT.md §4) and the tail (§9). */
#ifndef SQKV_PARSE_HEADER_H
#define SQKV_PARSE_HEADER_H

#include <stdint.h>

#include "diag.h"
#include "format.h"
#include "sqkv.h"

/* §9 INDEX body: n_tokens, dense_window, previous_index_offset; entries; the 16-byte tail. */
#define SQKV_INDEX_PREFIX_SIZE 16u
#define SQKV_INDEX_MIN_BODY (SQKV_INDEX_PREFIX_SIZE + SQKV_TAIL_SIZE)
#define SQKV_ENTRY_SUPERSEDED 0x01u /* index entry flags, byte 19 */

/* What the file header says, after every §4 rule was checked; plus where the index is. */
typedef struct sqkv_file_info {
    uint64_t file_size;
    uint32_t version_major, version_minor;
    uint32_t header_size;
    uint32_t required_features; /* §4.1: SQKV_FEATURE_* bits, all known to this decoder */
    uint32_t optional_features; /* ignored, kept for tools */
    uint32_t n_layers, n_kv_heads, head_dim;
    uint32_t header_n_tokens, header_dense_window; /* the file header's: the cache as first written */
    /* The cache as it is now: the INDEX section's values (§9), the header's until the index is read. */
    uint32_t n_tokens, dense_window;
    uint32_t sparse_tokens; /* S = n_tokens - dense_window */
    sqkv_dtype value_dtype, source_dtype;
    uint64_t index_offset;  /* from the tail */
    uint64_t previous_index_offset; /* from the INDEX section (§9.1); 0 when never appended to */
} sqkv_file_info;

/* Checks the file header of data[0..size) in the order of §4 (magic, major version, header_size,
 * checksum, required_features, reserved, field ranges against the format maxima and `limits`) and
 * fills the header fields of *info. A file too short for its header and the smallest INDEX section
 * (64-byte header, 32-byte body) is TRUNCATED. */
sqkv_error sqkv_parse_file_header(const uint8_t *data, uint64_t size, const sqkv_limits *limits,
                                  sqkv_file_info *info, sqkv_diag *diag);

/* Checks the 16-byte tail, the last bytes of the INDEX section's body (end magic: BAD_TAIL), and that
 * the index offset it holds can start an INDEX section (SECTION_LAYOUT); sets info->index_offset. */
sqkv_error sqkv_parse_tail(const uint8_t *data, sqkv_file_info *info, sqkv_diag *diag);
/* The same on the 16 tail bytes alone (readers that do not hold the whole file). */
sqkv_error sqkv_parse_tail_bytes(const uint8_t tail[16], sqkv_file_info *info, sqkv_diag *diag);

#endif
