/* decode_dense.h: DENSE section bodies (spec/FORMAT.md §8): the dense window, stored exactly. */
#ifndef SQKV_DECODE_DENSE_H
#define SQKV_DECODE_DENSE_H

#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "section_header.h"
#include "sqkv.h"

/* Body rules of §8 (size already checked): the bytes after the last value up to decoded_size are zero
 * (PADDING), every value is finite (VALUE). */
sqkv_error sqkv_dense_validate(const uint8_t *body, const sqkv_section_header *h, uint32_t head_dim, sqkv_dtype e,
                               sqkv_diag *diag);

/* Copies heads [first, first + count) of a validated body (relative to its head_start) to
 * out + j * head_stride as [token_count, head_dim] of out_dtype. A bf16 value beyond the fp16 range
 * is VALUE (checked before anything is written). */
sqkv_error sqkv_dense_decode(const uint8_t *body, const sqkv_section_header *h, uint32_t head_dim, sqkv_dtype e,
                             uint32_t first, uint32_t count, sqkv_dtype out_dtype, uint8_t *out, size_t head_stride,
                             sqkv_diag *diag);

#endif
