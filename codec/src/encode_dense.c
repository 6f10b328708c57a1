/* encode_dense.c: DENSE section bodies (see encode_dense.h). */
#include "encode_dense.h"

#include <string.h>

#include "format.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "DENSE bodies are copied in machine byte order, which must be the file's little-endian order"
#endif

sqkv_error sqkv_encode_dense(sqkv_tensor tensor, const uint16_t *rows, uint64_t head_stride, uint32_t head_count,
                             uint32_t token_count, uint32_t head_dim, sqkv_section_blob *out) {
    const uint64_t head_elements = (uint64_t)token_count * head_dim;
    /* §8: decoded_size = align8(2 * HC * TC * D); the zeroed tail is part of the body. */
    sqkv_error err = sqkv_blob_alloc(out, sqkv_align8(2u * head_elements * head_count));
    if (err != SQKV_OK) return err;
    uint8_t *body = sqkv_blob_body(out);
    /* A head's window is contiguous in the input: one copy per head. */
    for (uint32_t j = 0; j < head_count; j++)
        memcpy(body + 2u * head_elements * j, rows + j * head_stride, (size_t)(2u * head_elements));
    sqkv_section_header *h = &out->header;
    h->kind = SQKV_KIND_DENSE;
    h->tensor = (uint8_t)tensor;
    h->head_count = head_count;
    h->token_count = token_count;
    h->payload_bits = h->quantizer = h->scale_granularity = h->offset_interval_log2 = 0;
    return SQKV_OK;
}
