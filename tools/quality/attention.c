/* attention.c: see attention.h. */
#include "attention.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int attn_scratch_init(attn_scratch *s, uint32_t n_queries, uint32_t n_tokens, uint32_t head_dim,
                      uint32_t top_k) {
    memset(s, 0, sizeof *s);
    if (top_k > n_tokens) top_k = n_tokens;
    s->n_queries = n_queries;
    s->n_tokens = n_tokens;
    s->head_dim = head_dim;
    s->top_k = top_k;
    s->keys_t = malloc((size_t)head_dim * n_tokens * sizeof(float));
    s->scores = malloc((size_t)n_queries * n_tokens * sizeof(float));
    s->out = malloc((size_t)n_queries * head_dim * sizeof(float));
    s->top = malloc(((size_t)n_queries * top_k + 1) * sizeof(uint32_t));
    if (s->keys_t && s->scores && s->out && s->top) return 0;
    attn_scratch_free(s);
    return -1;
}

void attn_scratch_free(attn_scratch *s) {
    free(s->keys_t);
    free(s->scores);
    free(s->out);
    free(s->top);
    memset(s, 0, sizeof *s);
}

/* a ranks above b: higher score, or the lower token among equal scores. */
static int ranks_above(const float *scores, uint32_t a, uint32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
}

static int ascending_u32(const void *a, const void *b) {
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The k best tokens by a min-heap on rank (the root is the worst kept), then sorted by index. */
static void top_tokens(const float *scores, uint32_t n, uint32_t k, uint32_t *top) {
    if (k == 0) return;
    for (uint32_t t = 0; t < n; t++) {
        uint32_t i;
        if (t < k) {
            for (i = t; i > 0 && ranks_above(scores, top[(i - 1) / 2], t); i = (i - 1) / 2)
                top[i] = top[(i - 1) / 2];
            top[i] = t;
            continue;
        }
        if (!ranks_above(scores, t, top[0])) continue;
        for (i = 0;;) { /* sift t down from the root */
            uint32_t c = 2 * i + 1;
            if (c >= k) break;
            if (c + 1 < k && ranks_above(scores, top[c], top[c + 1])) c++;
            if (!ranks_above(scores, t, top[c])) break;
            top[i] = top[c];
            i = c;
        }
        top[i] = t;
    }
    qsort(top, k, sizeof *top, ascending_u32);
}

void attn_run(attn_scratch *s, const float *q, const float *k, const float *v, double *span_sum) {
    const uint32_t T = s->n_tokens, D = s->head_dim, Q = s->n_queries;
    /* Keys transposed so that the score loops run over tokens: independent sums that vectorize. */
    for (uint32_t t = 0; t < T; t++)
        for (uint32_t d = 0; d < D; d++) s->keys_t[(size_t)d * T + t] = k[(size_t)t * D + d];
    const float inv_sqrt_d = 1.0f / sqrtf((float)D);
    for (uint32_t n = 0; n < Q; n++) {
        float *sc = s->scores + (size_t)n * T;
        const float *qn = q + (size_t)n * D;
        memset(sc, 0, T * sizeof *sc);
        for (uint32_t d = 0; d < D; d++) {
            const float qd = qn[d] * inv_sqrt_d;
            const float *kd = s->keys_t + (size_t)d * T;
            for (uint32_t t = 0; t < T; t++) sc[t] += qd * kd[t];
        }
        if (s->top_k) top_tokens(sc, T, s->top_k, s->top + (size_t)n * s->top_k);
        float max_score = -INFINITY;
        for (uint32_t t = 0; t < T; t++) max_score = sc[t] > max_score ? sc[t] : max_score;
        double total = 0.0, weighted = 0.0;
        for (uint32_t t = 0; t < T; t++) {
            const float z = sc[t] - max_score;
            sc[t] = expf(z);
            total += sc[t];
            weighted += (double)sc[t] * z;
        }
        /* entropy = log(total) - sum(w z) / total for w = exp(z) */
        if (span_sum) *span_sum += exp(log(total) - weighted / total);
        float *o = s->out + (size_t)n * D;
        memset(o, 0, D * sizeof *o);
        for (uint32_t t = 0; t < T; t++) {
            const float w = sc[t];
            const float *vt = v + (size_t)t * D;
            for (uint32_t d = 0; d < D; d++) o[d] += w * vt[d];
        }
        const float inv_total = (float)(1.0 / total);
        for (uint32_t d = 0; d < D; d++) o[d] *= inv_total;
    }
}

void attn_compare(const attn_scratch *s, const float *ref_out, const uint32_t *ref_top, sqt_attn_stats *stats) {
    const uint32_t D = s->head_dim, K = s->top_k;
    for (uint32_t n = 0; n < s->n_queries; n++) {
        const float *o = s->out + (size_t)n * D, *r = ref_out + (size_t)n * D;
        for (uint32_t d = 0; d < D; d++) {
            const double diff = (double)o[d] - (double)r[d];
            stats->err_sq += diff * diff;
            stats->ref_sq += (double)r[d] * (double)r[d];
        }
        const uint32_t *a = s->top + (size_t)n * K, *b = ref_top + (size_t)n * K;
        for (uint32_t i = 0, j = 0; i < K && j < K;) { /* both sorted ascending */
            if (a[i] == b[j]) {
                stats->topk_hits++;
                i++;
                j++;
            } else if (a[i] < b[j]) {
                i++;
            } else {
                j++;
            }
        }
        stats->topk_total += K;
        stats->queries++;
    }
}
