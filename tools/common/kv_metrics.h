/*
 * kv_metrics.h: how far a restored KV cache is from the original, in fp32 arithmetic (sums of squares
 * accumulated in binary64 so that half a billion terms do not lose the small ones).
 *
 * - Relative L2 error ||restored - original|| / ||original|| and maximum absolute error, over any set
 *   of elements (accumulate layer by layer, merge for totals).
 * - Attention-output error for random queries q ~ N(0, I): with
 *   O = softmax(q K^T / sqrt(head_dim)) V over all tokens, the relative error ||O' - O|| / ||O||
 *   accumulated over queries (sums of squares), where O' uses the restored K and V; and the top-k
 *   agreement: the fraction of the k tokens with the highest original attention scores that are also
 *   among the k highest restored scores.
 */
#ifndef SQKV_TOOLS_KV_METRICS_H
#define SQKV_TOOLS_KV_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct sqt_diff_stats {
    double err_sq, ref_sq, max_abs;
    uint64_t count;
} sqt_diff_stats;

void sqt_diff_init(sqt_diff_stats *s);
void sqt_diff_add(sqt_diff_stats *s, const float *original, const float *restored, size_t n);
void sqt_diff_merge(sqt_diff_stats *into, const sqt_diff_stats *from);
/* 0 when both norms are 0; infinity when only the original is all zero. */
double sqt_diff_rel_l2(const sqt_diff_stats *s);

typedef struct sqt_attn_stats {
    double err_sq, ref_sq;
    uint64_t topk_hits, topk_total;
    uint64_t queries;
} sqt_attn_stats;

void sqt_attn_init(sqt_attn_stats *s);
void sqt_attn_merge(sqt_attn_stats *into, const sqt_attn_stats *from);
double sqt_attn_rel_error(const sqt_attn_stats *s);
/* In [0, 1]; 1 when no query was evaluated. */
double sqt_attn_topk_agreement(const sqt_attn_stats *s);

/* One head: k_* and v_* are [n_tokens, head_dim] fp32. n_queries random queries drawn from seed;
 * top_k is clamped to n_tokens. Returns 0, or -1 when out of memory. */
int sqt_attn_compare_head(const float *k_orig, const float *v_orig, const float *k_rest, const float *v_rest,
                           uint32_t n_tokens, uint32_t head_dim, uint32_t n_queries, uint32_t top_k,
                           uint64_t seed, sqt_attn_stats *s);

#endif
