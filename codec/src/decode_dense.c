/* decode_dense.c: DENSE section bodies (spec/FORMAT.md §8). */
#include "decode_dense.h"

#include <inttypes.h>
#include <string.h>

#include "element_convert.h"
#include "format.h"

sqkv_error sqkv_dense_validate(const uint8_t *body, const sqkv_section_header *h, uint32_t head_dim, sqkv_dtype e,
                               sqkv_diag *diag) {
    const uint64_t n = (uint64_t)h->head_count * h->token_count * head_dim;
    if (!sqkv_all_zero(body + 2 * n, h->decoded_size - 2 * n))
        return sqkv_diag_fail(diag, SQKV_ERR_PADDING, "bytes after the last value are not zero (§8)");
    /* Exponent all ones is NaN or infinity in both types; a branch-free OR over the body first. */
    const uint16_t exponent = e == SQKV_DTYPE_BF16 ? 0x7F80u : 0x7C00u;
    unsigned bad = 0;
    for (uint64_t i = 0; i < n; i++) bad |= (sqkv_rd16(body + 2 * i) & exponent) == exponent;
    if (!bad) return SQKV_OK;
    for (uint64_t i = 0; i < n; i++) {
        const uint16_t x = sqkv_rd16(body + 2 * i);
        if ((x & exponent) == exponent)
            return sqkv_diag_fail(diag, SQKV_ERR_VALUE, "value %" PRIu64 " is 0x%04x: the dense window holds only finite"
                                  " values (§8)", i, x);
    }
    return SQKV_OK;
}

static void convert_run(const uint8_t *src, uint64_t n, sqkv_conversion conv, uint8_t *dst) {
    switch (conv) {
    case SQKV_CONV_COPY16: memcpy(dst, src, (size_t)n * 2); return;
    case SQKV_CONV_FP16_TO_F32:
        for (uint64_t i = 0; i < n; i++) {
            const uint32_t v = sqkv_cvt_fp16_to_f32(sqkv_rd16(src + 2 * i));
            memcpy(dst + 4 * i, &v, 4);
        }
        return;
    case SQKV_CONV_BF16_TO_F32:
        for (uint64_t i = 0; i < n; i++) {
            const uint32_t v = (uint32_t)sqkv_rd16(src + 2 * i) << 16;
            memcpy(dst + 4 * i, &v, 4);
        }
        return;
    case SQKV_CONV_FP16_TO_BF16:
    case SQKV_CONV_BF16_TO_FP16:
        for (uint64_t i = 0; i < n; i++) {
            const uint16_t v = (uint16_t)sqkv_convert_element(sqkv_rd16(src + 2 * i), conv);
            memcpy(dst + 2 * i, &v, 2);
        }
        return;
    }
}

sqkv_error sqkv_dense_decode(const uint8_t *body, const sqkv_section_header *h, uint32_t head_dim, sqkv_dtype e,
                             uint32_t first, uint32_t count, sqkv_dtype out_dtype, uint8_t *out, size_t head_stride,
                             sqkv_diag *diag) {
    const uint64_t per_head = (uint64_t)h->token_count * head_dim;
    const sqkv_conversion conv = sqkv_conversion_for(e, out_dtype);
    const uint8_t *src = body + 2 * per_head * first;
    if (conv == SQKV_CONV_BF16_TO_FP16) {
        for (uint64_t i = 0; i < per_head * count; i++)
            if (sqkv_bf16_overflows_fp16(sqkv_rd16(src + 2 * i)))
                return sqkv_diag_fail(diag, SQKV_ERR_VALUE, "a bf16 value exceeds the fp16 range (§11: the reference"
                                      " decoder reports VALUE rather than produce infinity)");
    }
    for (uint32_t j = 0; j < count; j++) convert_run(src + 2 * per_head * j, per_head, conv, out + (size_t)j * head_stride);
    return SQKV_OK;
}
