/*
 * kv_npy_cache.h: a KV cache stored as three NumPy files, as in shared/data/kv: NAME.k.npy and
 * NAME.v.npy (fp16, [layers, kv_heads, tokens, head_dim]) and optionally NAME.tokens.npy (int32,
 * [tokens]). Used by the benchmark and quality programs. (Written for sqkv_bench and sqkv_quality.)
 */
#ifndef SQKV_TOOLS_KV_NPY_CACHE_H
#define SQKV_TOOLS_KV_NPY_CACHE_H

#include <stdint.h>

#include "tools/common/io_error.h"

typedef struct sqkv_npy_cache {
    uint32_t n_layers, n_kv_heads, n_tokens, head_dim;
    uint16_t *k, *v;  /* fp16 bits, [layers][heads][tokens][head_dim], owned */
    int32_t *tokens;  /* n_tokens ids, owned; NULL when NAME.tokens.npy does not exist */
} sqkv_npy_cache;

/* Loads dir/NAME.{k,v,tokens}.npy. K and V must be fp16 with the same 4-d shape, each dimension in
 * 1 .. 2^28 and at most 2^32 elements; the tokens file, when present, int32 of shape [tokens]. */
int sqkv_npy_cache_load(const char *dir, const char *name, sqkv_npy_cache *out, sqt_error *err);
void sqkv_npy_cache_free(sqkv_npy_cache *c);

#endif
