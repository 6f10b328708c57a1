/* kv_metrics.c: see kv_metrics.h. */
#include "tools/common/kv_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/rng.h"

void sqt_diff_init(sqt_diff_stats *s) { memset(s, 0, sizeof *s); }

void sqt_diff_add(sqt_diff_stats *s, const float *original, const float *restored, size_t n) {
    /* Blocks of fp32 partial sums keep the loop vectorizable; the binary64 total keeps the precision. */
    double err = 0.0, ref = 0.0;
    float max_abs = (float)s->max_abs;
    for (size_t i = 0; i < n;) {
        size_t end = n - i > 1024 ? i + 1024 : n;
        float e_block = 0.0f, r_block = 0.0f;
        for (; i < end; i++) {
            const float d = restored[i] - original[i];
            e_block += d * d;
            r_block += original[i] * original[i];
            const float a = fabsf(d);
            if (a > max_abs || a != a) max_abs = a;
        }
        err += e_block;
        ref += r_block;
    }
    s->err_sq += err;
    s->ref_sq += ref;
    s->max_abs = max_abs;
    s->count += n;
}

void sqt_diff_merge(sqt_diff_stats *into, const sqt_diff_stats *from) {
    into->err_sq += from->err_sq;
    into->ref_sq += from->ref_sq;
    if (from->max_abs > into->max_abs || from->max_abs != from->max_abs) into->max_abs = from->max_abs;
    into->count += from->count;
}

double sqt_diff_rel_l2(const sqt_diff_stats *s) {
    if (s->ref_sq == 0.0) return s->err_sq == 0.0 ? 0.0 : INFINITY;
    return sqrt(s->err_sq / s->ref_sq);
}

void sqt_attn_init(sqt_attn_stats *s) { memset(s, 0, sizeof *s); }

void sqt_attn_merge(sqt_attn_stats *into, const sqt_attn_stats *from) {
    into->err_sq += from->err_sq;
    into->ref_sq += from->ref_sq;
    into->topk_hits += from->topk_hits;
    into->topk_total += from->topk_total;
    into->queries += from->queries;
}

double sqt_attn_rel_error(const sqt_attn_stats *s) {
    if (s->ref_sq == 0.0) return s->err_sq == 0.0 ? 0.0 : INFINITY;
    return sqrt(s->err_sq / s->ref_sq);
}

double sqt_attn_topk_agreement(const sqt_attn_stats *s) {
    return s->topk_total ? (double)s->topk_hits / (double)s->topk_total : 1.0;
}

/* scores[t] = q . k_t / sqrt(D); then the softmax-weighted sum of V rows into out[D]. */
static void attend(const float *q, const float *k, const float *v, uint32_t n_tokens, uint32_t head_dim,
                   float *scores, float *out) {
    const float inv_sqrt_d = 1.0f / sqrtf((float)head_dim);
    float max_score = -INFINITY;
    for (uint32_t t = 0; t < n_tokens; t++) {
        const float *kt = k + (size_t)t * head_dim;
        float dot = 0.0f;
        for (uint32_t d = 0; d < head_dim; d++) dot += q[d] * kt[d];
        scores[t] = dot * inv_sqrt_d;
        if (scores[t] > max_score) max_score = scores[t];
    }
    memset(out, 0, head_dim * sizeof *out);
    float total = 0.0f;
    for (uint32_t t = 0; t < n_tokens; t++) {
        const float w = expf(scores[t] - max_score);
        total += w;
        const float *vt = v + (size_t)t * head_dim;
        for (uint32_t d = 0; d < head_dim; d++) out[d] += w * vt[d];
    }
    for (uint32_t d = 0; d < head_dim; d++) out[d] /= total;
}

/* Indices of the k largest scores (ties: lower index) into top[0..k), via a min-heap of size k. */
static void top_indices(const float *scores, uint32_t n, uint32_t k, uint32_t *top) {
    uint32_t size = 0;
    for (uint32_t t = 0; t < n; t++) {
        if (size < k) {
            uint32_t i = size++;
            top[i] = t;
            while (i > 0) { /* sift up: parent must be <= child (ties: larger index is "smaller") */
                uint32_t p = (i - 1) / 2;
                if (scores[top[p]] < scores[top[i]] || (scores[top[p]] == scores[top[i]] && top[p] > top[i])) break;
                uint32_t tmp = top[p];
                top[p] = top[i];
                top[i] = tmp;
                i = p;
            }
            continue;
        }
        if (!(scores[t] > scores[top[0]])) continue;
        top[0] = t;
        for (uint32_t i = 0;;) { /* sift down */
            uint32_t l = 2 * i + 1, r = l + 1, m = i;
            if (l < k && (scores[top[l]] < scores[top[m]] || (scores[top[l]] == scores[top[m]] && top[l] > top[m]))) m = l;
            if (r < k && (scores[top[r]] < scores[top[m]] || (scores[top[r]] == scores[top[m]] && top[r] > top[m]))) m = r;
            if (m == i) break;
            uint32_t tmp = top[m];
            top[m] = top[i];
            top[i] = tmp;
            i = m;
        }
    }
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint32_t overlap(uint32_t *a, uint32_t *b, uint32_t k) {
    qsort(a, k, sizeof *a, cmp_u32);
    qsort(b, k, sizeof *b, cmp_u32);
    uint32_t i = 0, j = 0, hits = 0;
    while (i < k && j < k) {
        if (a[i] == b[j]) {
            hits++;
            i++;
            j++;
        } else if (a[i] < b[j]) {
            i++;
        } else {
            j++;
        }
    }
    return hits;
}

int sqt_attn_compare_head(const float *k_orig, const float *v_orig, const float *k_rest, const float *v_rest,
                           uint32_t n_tokens, uint32_t head_dim, uint32_t n_queries, uint32_t top_k,
                           uint64_t seed, sqt_attn_stats *s) {
    if (top_k > n_tokens) top_k = n_tokens;
    float *q = malloc(head_dim * sizeof *q);
    float *o_ref = malloc(head_dim * sizeof *o_ref), *o_rest = malloc(head_dim * sizeof *o_rest);
    float *s_ref = malloc((size_t)n_tokens * sizeof *s_ref), *s_rest = malloc((size_t)n_tokens * sizeof *s_rest);
    uint32_t *top_ref = malloc((top_k ? top_k : 1) * sizeof *top_ref);
    uint32_t *top_rest = malloc((top_k ? top_k : 1) * sizeof *top_rest);
    int rc = -1;
    if (!q || !o_ref || !o_rest || !s_ref || !s_rest || !top_ref || !top_rest) goto done;
    sqt_rng r;
    sqt_rng_seed(&r, seed, 0x51E5, n_tokens, head_dim);
    for (uint32_t n = 0; n < n_queries; n++) {
        for (uint32_t d = 0; d < head_dim; d++) q[d] = (float)sqt_rng_gaussian(&r);
        attend(q, k_orig, v_orig, n_tokens, head_dim, s_ref, o_ref);
        attend(q, k_rest, v_rest, n_tokens, head_dim, s_rest, o_rest);
        for (uint32_t d = 0; d < head_dim; d++) {
            const double diff = (double)o_rest[d] - (double)o_ref[d];
            s->err_sq += diff * diff;
            s->ref_sq += (double)o_ref[d] * (double)o_ref[d];
        }
        if (top_k) {
            top_indices(s_ref, n_tokens, top_k, top_ref);
            top_indices(s_rest, n_tokens, top_k, top_rest);
            s->topk_hits += overlap(top_ref, top_rest, top_k);
            s->topk_total += top_k;
        }
        s->queries++;
    }
    rc = 0;
done:
    free(q);
    free(o_ref);
    free(o_rest);
    free(s_ref);
    free(s_rest);
    free(top_ref);
    free(top_rest);
    return rc;
}
