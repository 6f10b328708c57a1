/* datasets.c: see datasets.h. */
#include "datasets.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mustafar.h"
#include "tools/common/half.h"
#include "tools/common/kv_npy_cache.h"
#include "tools/common/rng.h"
#include "tools/common/synthetic.h"

static uint64_t head_count(const dataset *d) {
    return (uint64_t)d->cache.n_layers * d->cache.n_kv_heads;
}

/* Kurtosis of every (layer, head) block of `block` values, averaged. */
static double mean_kurtosis(const float *x, uint64_t blocks, uint64_t block) {
    double total = 0.0;
    for (uint64_t b = 0; b < blocks; b++) {
        const float *p = x + b * block;
        double mean = 0.0, m2 = 0.0, m4 = 0.0;
        for (uint64_t i = 0; i < block; i++) mean += p[i];
        mean /= (double)block;
        for (uint64_t i = 0; i < block; i++) {
            const double c = p[i] - mean, c2 = c * c;
            m2 += c2;
            m4 += c2 * c2;
        }
        m2 /= (double)block;
        m4 /= (double)block;
        total += m2 > 0.0 ? m4 / (m2 * m2) : 0.0;
    }
    return total / (double)blocks;
}

static int ascending_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Largest over median channel mean |x| of each (layer, head), averaged. */
static double mean_outlier_ratio(const dataset *d) {
    const quality_cache *c = &d->cache;
    double channel[1024], total = 0.0;
    for (uint64_t b = 0; b < head_count(d); b++) {
        const float *p = d->k + b * c->n_tokens * c->head_dim;
        for (uint32_t ch = 0; ch < c->head_dim; ch++) {
            double s = 0.0;
            for (uint32_t t = 0; t < c->n_tokens; t++) s += fabsf(p[(uint64_t)t * c->head_dim + ch]);
            channel[ch] = s / c->n_tokens;
        }
        qsort(channel, c->head_dim, sizeof channel[0], ascending_double);
        const double median = c->head_dim % 2 ? channel[c->head_dim / 2]
                                              : 0.5 * (channel[c->head_dim / 2 - 1] + channel[c->head_dim / 2]);
        total += median > 0.0 ? channel[c->head_dim - 1] / median : 0.0;
    }
    return total / (double)head_count(d);
}

static double energy_pruned(const float *x, uint64_t rows, uint32_t dim, double sparsity) {
    float *pruned = malloc(rows * dim * sizeof *pruned);
    if (!pruned) return NAN;
    prune_rows(x, pruned, rows, dim, sparsity);
    double all = 0.0, kept = 0.0;
    for (uint64_t i = 0; i < rows * dim; i++) {
        all += (double)x[i] * x[i];
        kept += (double)pruned[i] * pruned[i];
    }
    free(pruned);
    return all > 0.0 ? 1.0 - kept / all : 0.0;
}

/* Everything after the fp16 bits and the key-like queries are in place. */
static int finish(dataset *d, uint64_t seed, char *msg, size_t msg_cap) {
    quality_cache *c = &d->cache;
    const uint64_t n = quality_cache_elements(c);
    const uint64_t per_head = (uint64_t)c->n_tokens * c->head_dim;
    const uint64_t per_queries = (uint64_t)d->n_queries * c->head_dim;
    c->k = d->k_bits;
    c->v = d->v_bits;
    d->k = malloc(n * sizeof(float));
    d->v = malloc(n * sizeof(float));
    d->queries[QUERY_RANDOM] = malloc(head_count(d) * per_queries * sizeof(float));
    for (int q = 0; q < QUERY_KINDS; q++) {
        d->ref_out[q] = malloc(head_count(d) * per_queries * sizeof(float));
        d->ref_top[q] = malloc((head_count(d) * d->n_queries * d->top_k + 1) * sizeof(uint32_t));
    }
    attn_scratch s;
    if (!d->k || !d->v || !d->queries[0] || !d->ref_out[0] || !d->ref_out[1] || !d->ref_top[0] ||
        !d->ref_top[1] || attn_scratch_init(&s, d->n_queries, c->n_tokens, c->head_dim, d->top_k)) {
        snprintf(msg, msg_cap, "%s: out of memory", d->name);
        return -1;
    }
    d->top_k = s.top_k;
    for (uint64_t i = 0; i < n; i++) {
        d->k[i] = sqt_half_to_f32(d->k_bits[i]);
        d->v[i] = sqt_half_to_f32(d->v_bits[i]);
    }
    sqt_rng r;
    sqt_rng_seed(&r, seed, 0x9E3, 0, 0);
    for (uint64_t i = 0; i < head_count(d) * per_queries; i++)
        d->queries[QUERY_RANDOM][i] = (float)sqt_rng_gaussian(&r);
    for (int q = 0; q < QUERY_KINDS; q++) {
        double span = 0.0;
        for (uint64_t b = 0; b < head_count(d); b++) {
            attn_run(&s, d->queries[q] + b * per_queries, d->k + b * per_head, d->v + b * per_head, &span);
            memcpy(d->ref_out[q] + b * per_queries, s.out, per_queries * sizeof(float));
            memcpy(d->ref_top[q] + b * d->n_queries * d->top_k, s.top,
                   (size_t)d->n_queries * d->top_k * sizeof(uint32_t));
        }
        d->stats.span[q] = span / (double)(head_count(d) * d->n_queries);
    }
    attn_scratch_free(&s);
    d->stats.k_kurtosis = mean_kurtosis(d->k, head_count(d), per_head);
    d->stats.v_kurtosis = mean_kurtosis(d->v, head_count(d), per_head);
    d->stats.k_outlier_ratio = mean_outlier_ratio(d);
    d->stats.k_energy_pruned = energy_pruned(d->k, head_count(d) * c->n_tokens, c->head_dim, 0.7);
    d->stats.v_energy_pruned = energy_pruned(d->v, head_count(d) * c->n_tokens, c->head_dim, 0.7);
    return 0;
}

int dataset_synthetic(dataset *d, uint32_t layers, uint32_t heads, uint32_t tokens, uint32_t head_dim,
                      int heavy_tailed, uint64_t seed, uint32_t n_queries, uint32_t top_k, char *msg,
                      size_t msg_cap) {
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "synthetic-%s", heavy_tailed ? "heavy" : "gaussian");
    snprintf(d->description, sizeof d->description,
             "tools/common/synthetic.h, seed %llu, %u layers x %u KV heads x %u tokens x %u, %s values",
             (unsigned long long)seed, layers, heads, tokens, head_dim,
             heavy_tailed ? "Student-t (3 d.o.f., unit variance)" : "Gaussian");
    d->cache = (quality_cache){layers, heads, head_dim, tokens, NULL, NULL};
    d->n_queries = n_queries;
    d->top_k = top_k;
    /* The generator runs n_queries tokens past the cache: their keys are the key-like queries. */
    const sqkv_synth_config cfg = {layers, heads, head_dim, tokens + n_queries, seed, heavy_tailed};
    const uint64_t long_head = (uint64_t)(tokens + n_queries) * head_dim;
    const uint64_t per_head = (uint64_t)tokens * head_dim, per_queries = (uint64_t)n_queries * head_dim;
    const uint64_t blocks = (uint64_t)layers * heads;
    uint16_t *k_long = malloc(heads * long_head * sizeof(uint16_t));
    uint16_t *v_long = malloc(heads * long_head * sizeof(uint16_t));
    d->k_bits = malloc(blocks * per_head * sizeof(uint16_t));
    d->v_bits = malloc(blocks * per_head * sizeof(uint16_t));
    d->queries[QUERY_KEYLIKE] = malloc(blocks * per_queries * sizeof(float));
    sqkv_synth *g = sqkv_synth_create(&cfg);
    int rc = -1;
    if (!k_long || !v_long || !d->k_bits || !d->v_bits || !d->queries[QUERY_KEYLIKE] || !g) {
        snprintf(msg, msg_cap, "%s: out of memory", d->name);
        goto done;
    }
    for (uint32_t l = 0; l < layers; l++) {
        sqkv_synth_generate(g, l, k_long, v_long);
        for (uint32_t h = 0; h < heads; h++) {
            const uint64_t b = (uint64_t)l * heads + h;
            memcpy(d->k_bits + b * per_head, k_long + h * long_head, per_head * sizeof(uint16_t));
            memcpy(d->v_bits + b * per_head, v_long + h * long_head, per_head * sizeof(uint16_t));
            for (uint64_t i = 0; i < per_queries; i++)
                d->queries[QUERY_KEYLIKE][b * per_queries + i] = sqt_half_to_f32(k_long[h * long_head + per_head + i]);
        }
    }
    rc = finish(d, seed, msg, msg_cap);
done:
    sqkv_synth_destroy(g);
    free(k_long);
    free(v_long);
    return rc;
}

int dataset_real(dataset *d, const char *dir, const char *name, const char *other, uint64_t seed,
                 uint32_t n_queries, uint32_t top_k, char *msg, size_t msg_cap) {
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "real-%s", name);
    sqkv_npy_cache main_cache, other_cache;
    sqt_error err;
    if (sqkv_npy_cache_load(dir, name, &main_cache, &err)) {
        snprintf(msg, msg_cap, "%s", err.message);
        return -1;
    }
    if (sqkv_npy_cache_load(dir, other, &other_cache, &err)) {
        snprintf(msg, msg_cap, "%s", err.message);
        sqkv_npy_cache_free(&main_cache);
        return -1;
    }
    int rc = -1;
    const quality_cache geometry = {main_cache.n_layers, main_cache.n_kv_heads, main_cache.head_dim,
                                    main_cache.n_tokens, NULL, NULL};
    if (other_cache.n_layers != geometry.n_layers || other_cache.n_kv_heads != geometry.n_kv_heads ||
        other_cache.head_dim != geometry.head_dim || geometry.head_dim > 1024) {
        snprintf(msg, msg_cap, "%s and %s: different layers, heads or head_dim", name, other);
        goto done;
    }
    snprintf(d->description, sizeof d->description,
             "%s/%s.{k,v}.npy, %u layers x %u KV heads x %u tokens x %u, key-like queries from %s.k.npy",
             dir, name, geometry.n_layers, geometry.n_kv_heads, geometry.n_tokens, geometry.head_dim, other);
    d->cache = geometry;
    d->n_queries = n_queries;
    d->top_k = top_k;
    d->k_bits = main_cache.k;
    d->v_bits = main_cache.v;
    main_cache.k = main_cache.v = NULL;
    const uint64_t blocks = (uint64_t)geometry.n_layers * geometry.n_kv_heads;
    const uint32_t D = geometry.head_dim;
    d->queries[QUERY_KEYLIKE] = malloc(blocks * n_queries * D * sizeof(float));
    if (!d->queries[QUERY_KEYLIKE]) {
        snprintf(msg, msg_cap, "out of memory");
        goto done;
    }
    sqt_rng r;
    sqt_rng_seed(&r, seed, 0x0DD, 0, 0);
    for (uint64_t b = 0; b < blocks; b++)
        for (uint32_t n = 0; n < n_queries; n++) {
            const uint64_t t = sqt_rng_next(&r) % other_cache.n_tokens;
            const uint16_t *row = other_cache.k + (b * other_cache.n_tokens + t) * D;
            float *q = d->queries[QUERY_KEYLIKE] + (b * n_queries + n) * D;
            for (uint32_t i = 0; i < D; i++) q[i] = sqt_half_to_f32(row[i]);
        }
    rc = finish(d, seed, msg, msg_cap);
done:
    sqkv_npy_cache_free(&main_cache);
    sqkv_npy_cache_free(&other_cache);
    return rc;
}

void dataset_free(dataset *d) {
    free(d->k_bits);
    free(d->v_bits);
    free(d->k);
    free(d->v);
    for (int q = 0; q < QUERY_KINDS; q++) {
        free(d->queries[q]);
        free(d->ref_out[q]);
        free(d->ref_top[q]);
    }
    memset(d, 0, sizeof *d);
}
