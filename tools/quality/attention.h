/*
 * attention.h: attention outputs softmax(q K^T / sqrt(head_dim)) V of one head for a given set of
 * queries, over all cached tokens (the next token's attention: no mask), and their comparison with a
 * reference computed once. The error and top-k definitions are those of tools/common/kv_metrics.h
 * (whose sqt_attn_stats accumulates them); this module takes the queries from the caller, so that
 * queries shaped like the keys can be used as well as N(0, I) ones, and reuses the reference.
 */
#ifndef SQKV_TOOLS_ATTENTION_H
#define SQKV_TOOLS_ATTENTION_H

#include <stdint.h>

#include "tools/common/kv_metrics.h"

typedef struct attn_scratch {
    float *keys_t;   /* [head_dim][n_tokens] */
    float *scores;   /* [n_queries][n_tokens] */
    float *out;      /* [n_queries][head_dim] */
    uint32_t *top;   /* [n_queries][top_k] */
    uint32_t n_queries, n_tokens, head_dim, top_k;
} attn_scratch;

int attn_scratch_init(attn_scratch *s, uint32_t n_queries, uint32_t n_tokens, uint32_t head_dim,
                      uint32_t top_k);
void attn_scratch_free(attn_scratch *s);

/* Attention of the n_queries queries q [n_queries][head_dim] over k, v [n_tokens][head_dim]: outputs
 * into s->out, the top_k highest-score tokens of each query into s->top (sorted ascending), and the
 * sum over queries of the effective number of attended tokens exp(entropy) into *span_sum (may be
 * NULL). */
void attn_run(attn_scratch *s, const float *q, const float *k, const float *v, double *span_sum);

/* Adds the comparison of s's outputs and top-k sets with a reference run's to stats. */
void attn_compare(const attn_scratch *s, const float *ref_out, const uint32_t *ref_top, sqt_attn_stats *stats);

#endif
