/* encode_dense.h: one DENSE section (spec/FORMAT.md §8): the dense window stored exactly. */
#ifndef SQKV_ENCODE_DENSE_H
#define SQKV_ENCODE_DENSE_H

#include <stdint.h>

#include "section_blob.h"
#include "sqkv.h"

/* Copies head_count x token_count rows of head_dim E values (already checked finite) into a new body:
 * row t of head j is rows + j * head_stride + t * head_dim. Fills out->header's kind, tensor, head_count
 * and token_count; the caller sets layer, head_start and token_start, then seals.
 * Errors: OUT_OF_MEMORY, LIMIT. */
sqkv_error sqkv_encode_dense(sqkv_tensor tensor, const uint16_t *rows, uint64_t head_stride, uint32_t head_count,
                             uint32_t token_count, uint32_t head_dim, sqkv_section_blob *out);

#endif /* SQKV_ENCODE_DENSE_H */
