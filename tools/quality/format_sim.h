/*
 * format_sim.h: a model of SQKV's reference encoder that can also express settings the format cannot
 * (parameter groups finer than half a tile), so that sqkv_quality can put numbers on proposed format
 * additions, and that serves as an independent cross-check of the library on the settings both
 * express (every width 1..8, PER_HEAD, PER_TILE, PER_HALF_TILE, ALL_KEPT, the zstd stream codec). It
 * follows spec/FORMAT.md §5.1, §7 and §14 with the codec's own pruning and quantizer functions and
 * builds the section bodies byte for byte; sqkv_quality checks that the bodies, file sizes and
 * restored values equal the library's on a list of settings.
 */
#ifndef SQKV_TOOLS_FORMAT_SIM_H
#define SQKV_TOOLS_FORMAT_SIM_H

#include <stdint.h>

#include "sqkv.h"

typedef struct sim_setting {
    double sparsity;           /* per-token magnitude pruning; 0 keeps every nonzero element */
    uint32_t bits;             /* 1..8, or 16 (EXACT) */
    sqkv_quantizer quantizer;
    uint32_t group;            /* kept elements share parameters per `group` consecutive tile elements
                                  (64 = PER_TILE, 32 = PER_HALF_TILE; 16 is not in the format); 0 = one
                                  group per head */
    int keep_all;              /* ALL_KEPT sections (§7.6): every element kept (zeros too), no bitmap and
                                  no offset table; sparsity must be 0 */
    int zstd_level;            /* 0: codec 0; else codec 1 with each stream compressed at this level
                                  when that makes it smaller (§5.1) */
} sim_setting;

/* Restores one tensor [heads, tokens, dim] of fp16 bits into out (fp32) and returns the bytes its
 * sections would take: one SPARSE section per head with offset interval 2^4, each with its 64-byte
 * header and 40-byte index entry. 0 for a setting it cannot model or when out of memory. */
uint64_t sim_tensor(const uint16_t *in, float *out, uint32_t heads, uint32_t tokens, uint32_t dim,
                    sqkv_tensor tensor, const sim_setting *s);

/* The codec-0 body of the section of one head ([tokens, dim] fp16 bits at in), malloc'ed into *body
 * (*size bytes), and its restored values into out. Returns 0, or -1 (bad setting, out of memory). */
int sim_head_body(const uint16_t *in, float *out, uint32_t tokens, uint32_t dim, sqkv_tensor tensor,
                  const sim_setting *s, uint8_t **body, uint64_t *size);

/* Bytes of a file beyond its tensor sections: file header, INDEX section header, and the INDEX body's
 * 16-byte prefix and 16-byte tail (spec/FORMAT.md §9; each section adds a 40-byte entry). */
#define SIM_FILE_FRAMING_BYTES (64u + 64u + 32u)

#endif
