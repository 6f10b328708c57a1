/*
 * decode_sparse.h: SPARSE section bodies (spec/FORMAT.md §7): header field rules, validation of a
 * whole body, and decoding heads of it into a dense [heads, tokens, head_dim] output.
 */
#ifndef SQKV_DECODE_SPARSE_H
#define SQKV_DECODE_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "format.h"
#include "section_header.h"
#include "sparse_layout.h"
#include "sqkv.h"

/* Bytes 24..31 of a SPARSE header, in the order of §5.2 step 4: payload_bits, offset_interval_log2,
 * flags and each against the file's required features (SECTION_FIELD), then the quantizer / granularity
 * / bits / ALL_KEPT combination of §7.4 and §7.6 (PAYLOAD_PARAMS). */
sqkv_error sqkv_sparse_check_fields(const sqkv_section_header *h, uint32_t features, sqkv_diag *diag);

/* P of an ALL_KEPT section (§7.6): every element of its heads and tokens. */
uint64_t sqkv_sparse_all_kept_count(const sqkv_section_header *h, uint32_t head_dim);

/* decoded_size against what the header alone allows: at least the streams with no kept element, at
 * most with every non-padding element kept (SIZE_MISMATCH). Fields and coordinates already checked. */
sqkv_error sqkv_sparse_check_size_bounds(const sqkv_section_header *h, uint32_t head_dim, sqkv_diag *diag);

/* Stream layout of a SPARSE section with `kept` elements (fields and coordinates already checked, so
 * nothing overflows). */
void sqkv_sparse_layout_of(const sqkv_section_header *h, uint32_t head_dim, uint64_t kept, sqkv_sparse_layout *l);

/* A SPARSE body that passed every rule of §7. */
typedef struct sqkv_sparse_view {
    const uint8_t *body;
    sqkv_section_header h;
    sqkv_dtype e;
    uint32_t head_dim;
    uint64_t tiles_per_head; /* NT */
    sqkv_sparse_layout layout;
    uint64_t head_first[SQKV_MAX_HEADS + 1]; /* kept elements before each head of the section */
} sqkv_sparse_view;

/* Checks the body (decoded_size bytes at body; header, checksum and section padding already checked)
 * in this order: decoded_size against the bitmaps' popcounts (SIZE_MISMATCH), zero padding between
 * streams (PADDING), padding elements' bits (BITMAP_PADDING), the offset table (OFFSET_MISMATCH),
 * the parameter groups (SCALE), the bits after the last code (PADDING), EXACT values (VALUE). */
sqkv_error sqkv_sparse_validate(const uint8_t *body, const sqkv_section_header *h, uint32_t head_dim,
                                sqkv_dtype e, sqkv_sparse_view *v, sqkv_diag *diag);

/* Decodes heads [first, first + count) of the section (relative to its head_start) into out:
 * head j goes to out + j * head_stride as [token_count, head_dim] elements of out_dtype. Pruned
 * elements are +0.0. Fails with VALUE (before writing anything) when an element would overflow to
 * infinity in out_dtype (bf16 files decoded to fp16). */
sqkv_error sqkv_sparse_decode(const sqkv_sparse_view *v, uint32_t first, uint32_t count, sqkv_dtype out_dtype,
                              uint8_t *out, size_t head_stride, sqkv_diag *diag);

/* The bitmap of section tile t: the stored one, or with ALL_KEPT the implied one (§7.6). */
uint64_t sqkv_sparse_tile_bitmap(const sqkv_sparse_view *v, uint64_t t);

/* The kept values of section head j as E bits, in payload order (head_first[j+1] - head_first[j]
 * of them): the level of each code, or the stored value for EXACT. */
void sqkv_sparse_head_values(const sqkv_sparse_view *v, uint32_t j, uint16_t *values);

#endif
