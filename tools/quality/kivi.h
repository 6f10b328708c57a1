/*
 * kivi.h: KIVI's quantizer, re-implemented as a reference point for sqkv_quality (not part of SQKV).
 *
 * KIVI (ICML 2024) stores every element with asymmetric min/max levels per group of `group`
 * elements: keys per channel over `group` consecutive tokens, values per token over `group`
 * consecutive channels; each group keeps an fp16 scale and an fp16 zero (its minimum). No pruning.
 * KIVI also keeps an fp16 residual window of recent tokens; this reference uses none.
 */
#ifndef SQKV_TOOLS_KIVI_H
#define SQKV_TOOLS_KIVI_H

#include <stdint.h>

typedef enum kivi_axis {
    KIVI_PER_CHANNEL = 0, /* keys: a group is `group` tokens of one channel */
    KIVI_PER_TOKEN = 1    /* values: a group is `group` channels of one token */
} kivi_axis;

/* Quantizes and restores one [heads, tokens, dim] tensor of fp16 values held as floats.
 * tokens (per channel) or dim (per token) must be a multiple of group. Returns the stored size in
 * bits: `bits` per element plus 32 bits (fp16 scale + fp16 zero) per group; 0 on bad arguments. */
uint64_t kivi_roundtrip(const float *in, float *out, uint32_t heads, uint32_t tokens, uint32_t dim,
                        kivi_axis axis, uint32_t bits, uint32_t group);

#endif
