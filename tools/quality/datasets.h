/*
 * datasets.h: the caches sqkv_quality measures, each with its two query sets and the reference
 * attention outputs of the unmodified cache.
 *
 * Query sets, per (layer, KV head), n_queries each:
 * - random: q ~ N(0, I);
 * - key-like: vectors drawn like the keys. Synthetic data: the keys of the n_queries tokens that follow
 *   the cache (same generator, same layer and head, the next rotary positions). Real data: keys of the
 *   same layer and head of the other real cache (same model, other text), at random positions.
 */
#ifndef SQKV_TOOLS_DATASETS_H
#define SQKV_TOOLS_DATASETS_H

#include <stdint.h>

#include "attention.h"
#include "sqkv_roundtrip.h"

enum { QUERY_RANDOM = 0, QUERY_KEYLIKE = 1, QUERY_KINDS = 2 };

typedef struct dataset_stats {
    double k_kurtosis, v_kurtosis;       /* E[(x-mean)^4] / var^2 per (layer, head), averaged */
    double k_outlier_ratio;              /* largest / median channel mean |x| per (layer, head), averaged */
    double k_energy_pruned, v_energy_pruned; /* fraction of sum x^2 removed by 70% per-token pruning */
    double span[QUERY_KINDS];            /* mean exp(entropy) of the reference attention, in tokens */
} dataset_stats;

typedef struct dataset {
    char name[64];
    char description[256];
    quality_cache cache;                 /* fp16 bits */
    uint16_t *k_bits, *v_bits;           /* owned storage behind cache.k, cache.v */
    float *k, *v;                        /* the same values as fp32 */
    uint32_t n_queries, top_k;
    float *queries[QUERY_KINDS];         /* [layers][heads][n_queries][head_dim] */
    float *ref_out[QUERY_KINDS];         /* [layers][heads][n_queries][head_dim] */
    uint32_t *ref_top[QUERY_KINDS];      /* [layers][heads][n_queries][top_k] */
    dataset_stats stats;
} dataset;

/* Synthetic cache (tools/common/synthetic.h) of the given geometry, Gaussian or heavy-tailed values. */
int dataset_synthetic(dataset *d, uint32_t layers, uint32_t heads, uint32_t tokens, uint32_t head_dim,
                      int heavy_tailed, uint64_t seed, uint32_t n_queries, uint32_t top_k, char *msg,
                      size_t msg_cap);

/* Real cache dir/name.{k,v}.npy; key-like queries from dir/other.k.npy (same geometry). */
int dataset_real(dataset *d, const char *dir, const char *name, const char *other, uint64_t seed,
                 uint32_t n_queries, uint32_t top_k, char *msg, size_t msg_cap);

void dataset_free(dataset *d);

/* Query set `kind` of (layer, head). */
static inline const float *dataset_queries(const dataset *d, int kind, uint32_t layer, uint32_t head) {
    const quality_cache *c = &d->cache;
    return d->queries[kind] + ((uint64_t)layer * c->n_kv_heads + head) * d->n_queries * c->head_dim;
}

#endif
