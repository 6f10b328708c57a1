/*
 * sparse_layout.h: byte layout of a SPARSE section body (spec/FORMAT.md §7.2), shared by the encoder
 * and the decoder so that both derive the same stream offsets from the same numbers.
 */
#ifndef SQKV_SPARSE_LAYOUT_H
#define SQKV_SPARSE_LAYOUT_H

#include <stdint.h>

#include "format.h"

typedef struct sqkv_sparse_layout {
    uint64_t n_tiles;          /* N */
    uint64_t n_offsets;        /* M + 1; 0 with ALL_KEPT */
    int all_kept;              /* §7.6: bitmaps implied (every non-padding element), none stored */
    uint64_t n_groups;         /* G */
    uint32_t params_per_group; /* Q */
    uint64_t kept;             /* P */
    uint64_t bitmaps_at, offsets_at, scales_at, payload_at; /* body offsets, multiples of 8 */
    uint64_t payload_bytes;    /* ceil(P * b / 8) */
    uint64_t body_size;        /* decoded_size */
} sqkv_sparse_layout;

/* Computes the layout from N (tiles), k, the quantizer, granularity, bits, heads, P and the ALL_KEPT
 * flag (§7.6: no bitmaps, no offset table, n_offsets = 0). All inputs are assumed already range-checked
 * (N <= 2^32 * 2, k <= 20, P <= 64 * N, bits <= 16), so nothing overflows. */
static inline void sqkv_sparse_layout_compute_flags(uint64_t n_tiles, uint32_t k, uint32_t quantizer,
                                                    uint32_t granularity, uint32_t bits, uint32_t head_count,
                                                    uint64_t kept, int all_kept, sqkv_sparse_layout *l) {
    l->n_tiles = n_tiles;
    l->all_kept = all_kept;
    l->n_offsets = all_kept ? 0 : ((n_tiles + ((uint64_t)1 << k) - 1) >> k) + 1;
    l->params_per_group = quantizer == 2 ? 2u : quantizer == 1 ? 1u : 0u;
    l->n_groups = granularity == 1 ? head_count : granularity == 2 ? n_tiles : granularity == 3 ? 2 * n_tiles : 0;
    l->kept = kept;
    l->payload_bytes = (kept * bits + 7) / 8;
    l->bitmaps_at = 0;
    l->offsets_at = l->bitmaps_at + (all_kept ? 0 : 8 * n_tiles);
    l->scales_at = l->offsets_at + sqkv_align8(4 * l->n_offsets);
    l->payload_at = l->scales_at + sqkv_align8(2 * l->n_groups * l->params_per_group);
    l->body_size = l->payload_at + sqkv_align8(l->payload_bytes);
}

/* The 1.0 layout: sections with stored bitmaps. */
static inline void sqkv_sparse_layout_compute(uint64_t n_tiles, uint32_t k, uint32_t quantizer,
                                              uint32_t granularity, uint32_t bits, uint32_t head_count,
                                              uint64_t kept, sqkv_sparse_layout *l) {
    sqkv_sparse_layout_compute_flags(n_tiles, k, quantizer, granularity, bits, head_count, kept, 0, l);
}

#endif
