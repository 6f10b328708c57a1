/*
 * tile_layout.h: where each element of a tile lives (spec/FORMAT.md §7.1).
 * Key tile: 64 tokens of one channel, numbered chunk * D + channel.
 * Value tile: 64 channels of one token, numbered 64*HB*block + channel_block*R + row (Mustafar's order).
 */
#ifndef SQKV_TILE_LAYOUT_H
#define SQKV_TILE_LAYOUT_H

#include <stdint.h>

#include "format.h"
#include "sqkv.h"

/* Tiles of one head for token_count tokens (caller keeps token_count <= 2^28, head_dim <= 1024, so
 * the result fits easily in 64 bits). */
static inline uint64_t sqkv_tiles_per_head(sqkv_tensor tensor, uint32_t token_count, uint32_t head_dim) {
    if (tensor == SQKV_TENSOR_K) return (uint64_t)((token_count + 63u) / 64u) * head_dim;
    return (uint64_t)token_count * ((head_dim + 63u) / 64u);
}

/* Where tile n (0 <= n < tiles_per_head) of a head starts and how its elements advance:
 * element i is at token `token + i * token_step`, channel `channel + i * channel_step`, for i < valid.
 * Elements i >= valid are padding (their bitmap bits must be zero). */
typedef struct sqkv_tile_pos {
    uint32_t token, channel;
    uint32_t token_step, channel_step;
    uint32_t valid;
} sqkv_tile_pos;

static inline sqkv_tile_pos sqkv_tile_position(sqkv_tensor tensor, uint32_t token_count, uint32_t head_dim,
                                               uint64_t n) {
    sqkv_tile_pos p;
    if (tensor == SQKV_TENSOR_K) {
        uint32_t chunk = (uint32_t)(n / head_dim);
        p.channel = (uint32_t)(n % head_dim);
        p.token = chunk * 64u;
        p.token_step = 1;
        p.channel_step = 0;
        uint32_t left = token_count - p.token;
        p.valid = left < 64u ? left : 64u;
    } else {
        uint32_t hb = (head_dim + 63u) / 64u;
        uint64_t per_block = (uint64_t)64u * hb;
        uint32_t block = (uint32_t)(n / per_block);
        uint32_t rem = (uint32_t)(n % per_block);
        uint32_t left_tokens = token_count - block * 64u;
        uint32_t rows = left_tokens < 64u ? left_tokens : 64u;
        uint32_t channel_block = rem / rows;
        p.token = block * 64u + rem % rows;
        p.channel = channel_block * 64u;
        p.token_step = 0;
        p.channel_step = 1;
        uint32_t left = head_dim - p.channel;
        p.valid = left < 64u ? left : 64u;
    }
    return p;
}

/* Bits of a tile's bitmap that may be set: elements 0..valid-1 are bits 63..64-valid. */
static inline uint64_t sqkv_valid_mask(uint32_t valid) {
    return valid >= 64u ? ~(uint64_t)0 : (valid == 0 ? 0 : ~(uint64_t)0 << (64u - valid));
}

#endif /* SQKV_TILE_LAYOUT_H */
