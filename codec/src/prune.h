/*
 * prune.h: the reference encoder's per-token magnitude pruning (spec/FORMAT.md §14).
 * A row is the head_dim E values of one token of one head. Its selection is written as a mask of
 * ceil(head_dim / 64) words, channel 64w + i in bit 63 - i of word w: the bit order of §7.2 bitmaps,
 * so a value tile's bitmap is one mask word.
 */
#ifndef SQKV_PRUNE_H
#define SQKV_PRUNE_H

#include <stdint.h>

#include "sqkv.h"

/* Elements kept per row: head_dim - floor(sparsity * head_dim) in binary64, at least 1; head_dim for
 * SQKV_PRUNE_NONE (every nonzero element). sparsity must be in [0, 1). */
uint32_t sqkv_prune_keep_count(uint32_t head_dim, sqkv_prune_mode mode, double sparsity);

/* Selects the min(keep, nonzeros) elements of largest magnitude of row[0 .. head_dim) (E bits), lower
 * channel first among equal magnitudes, never ±0. Writes mask[0 .. ceil(head_dim / 64)) (bits beyond
 * head_dim zero) and returns the number of elements kept. head_dim <= 1024. */
uint32_t sqkv_prune_row(const uint16_t *row, uint32_t head_dim, uint32_t keep, uint64_t *mask);

#endif /* SQKV_PRUNE_H */
