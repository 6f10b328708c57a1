/* kivi.c: see kivi.h. */
#include "kivi.h"

#include <math.h>

#include "float16.h"

/* KIVI's PyTorch code computes in fp16 tensors: every arithmetic step rounds to fp16. */
static double fp16_round(double x) { return sqkv_fp16_to_double(sqkv_double_to_fp16(x)); }

/* One group of n elements at in[0], in[stride], ... */
static void quantize_group(const float *in, float *out, uint32_t n, uint32_t stride, uint32_t levels) {
    double lo = in[0], hi = in[0];
    for (uint32_t i = 1; i < n; i++) {
        double x = in[(uint64_t)i * stride];
        if (x < lo) lo = x;
        if (x > hi) hi = x;
    }
    const double max_code = (double)(levels - 1);
    const double scale = fp16_round(fp16_round(hi - lo) / max_code);
    for (uint32_t i = 0; i < n; i++) {
        const uint64_t at = (uint64_t)i * stride;
        double code = 0.0;
        /* KIVI has no guard for a constant group (scale 0 gives NaN codes); the minimum is exact. */
        if (scale > 0.0) {
            code = fp16_round(fp16_round((double)in[at] - lo) / scale);
            code = nearbyint(fmin(fmax(code, 0.0), max_code));
        }
        out[at] = (float)fp16_round(fp16_round(code * scale) + lo);
    }
}

uint64_t kivi_roundtrip(const float *in, float *out, uint32_t heads, uint32_t tokens, uint32_t dim,
                        kivi_axis axis, uint32_t bits, uint32_t group) {
    if (bits < 1 || bits > 8 || group == 0) return 0;
    const uint32_t along = axis == KIVI_PER_CHANNEL ? tokens : dim;
    if (along % group) return 0;
    const uint32_t levels = 1u << bits;
    uint64_t groups = 0;
    for (uint32_t h = 0; h < heads; h++) {
        const uint64_t head_at = (uint64_t)h * tokens * dim;
        if (axis == KIVI_PER_CHANNEL) {
            for (uint32_t t0 = 0; t0 < tokens; t0 += group)
                for (uint32_t d = 0; d < dim; d++, groups++) {
                    const uint64_t at = head_at + (uint64_t)t0 * dim + d;
                    quantize_group(in + at, out + at, group, dim, levels);
                }
        } else {
            for (uint32_t t = 0; t < tokens; t++)
                for (uint32_t d0 = 0; d0 < dim; d0 += group, groups++) {
                    const uint64_t at = head_at + (uint64_t)t * dim + d0;
                    quantize_group(in + at, out + at, group, 1, levels);
                }
        }
    }
    return (uint64_t)heads * tokens * dim * bits + groups * 32u;
}
