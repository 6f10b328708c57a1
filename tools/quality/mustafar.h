/*
 * mustafar.h: the Mustafar reference point of sqkv_quality: per-token magnitude pruning (the same
 * kept set as SQKV's reference encoder, spec/FORMAT.md §14) stored as Mustafar's fp16 format.
 */
#ifndef SQKV_TOOLS_MUSTAFAR_H
#define SQKV_TOOLS_MUSTAFAR_H

#include <stdint.h>

#include "sqkv.h"

/* out = in with, in each row of dim elements, all but the D - floor(sparsity * D) (at least 1)
 * largest |x| set to zero; ties keep the lower channel; zeros are never kept. rows = heads * tokens. */
void prune_rows(const float *in, float *out, uint64_t rows, uint32_t dim, double sparsity);

/* Bytes of Mustafar's format for one pruned [heads, tokens, dim] tensor: per 64-element tile
 * (spec/FORMAT.md §7.1 layout, which is Mustafar's) an 8-byte bitmap, a 4-byte count and the kept
 * fp16 values padded to a multiple of 8 (16 * ceil(nnz / 8) bytes). */
uint64_t mustafar_bytes(const float *pruned, uint32_t heads, uint32_t tokens, uint32_t dim,
                        sqkv_tensor tensor);

#endif
