/* half.c: see half.h. */
#include "tools/common/half.h"

uint16_t sqt_f32_to_half(float f) {
    uint32_t u = sqt_f32_to_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7FFFFFFFu;
    if (u > 0x7F800000u) return (uint16_t)(sign | 0x7E00u);
    /* 65520 = 2^16 - 2^4 and above round to infinity */
    if (u >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);
    if (u >= 0x38800000u) {
        /* Normal result: rebias the exponent from 127 to 15 and round the 13 dropped bits to nearest,
         * ties to the even result; a carry out of the mantissa correctly bumps the exponent. */
        const uint32_t odd = (u >> 13) & 1u;
        u += 0xC8000000u + 0xFFFu + odd;
        return (uint16_t)(sign | (u >> 13));
    }
    /* Subnormal or zero result: adding 0.5 aligns the value so that the fp32 addition itself (round
     * to nearest even, the default mode) rounds at the fp16 subnormal quantum 2^-24; the low bits of
     * the sum are then the fp16 bits. */
    const float magic = 0.5f;
    float sum = sqt_bits_to_f32(u) + magic;
    return (uint16_t)(sign | (uint16_t)(sqt_f32_to_bits(sum) - sqt_f32_to_bits(magic)));
}

void sqt_convert_to_f32(sqt_dtype src_type, const void *src, size_t n, float *dst) {
    const unsigned char *p = (const unsigned char *)src;
    if (src_type == SQT_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
        dst[i] = src_type == SQT_BF16 ? sqt_bf16_to_f32(h) : sqt_half_to_f32(h);
    }
}

void sqt_convert_from_f32(const float *src, size_t n, sqt_dtype dst_type, void *dst) {
    unsigned char *p = (unsigned char *)dst;
    if (dst_type == SQT_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h = dst_type == SQT_BF16 ? sqt_f32_to_bf16(src[i]) : sqt_f32_to_half(src[i]);
        p[2 * i] = (uint8_t)h;
        p[2 * i + 1] = (uint8_t)(h >> 8);
    }
}
