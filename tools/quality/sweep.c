/* sweep.c: see sweep.h. */
#include "sweep.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format_sim.h"
#include "kivi.h"
#include "mustafar.h"
#include "sqkv_roundtrip.h"
#include "tools/common/kv_metrics.h"

#define KIVI_GROUP 32u

static const double SPARSITIES[] = {0.0, 0.3, 0.5, 0.6, 0.7, 0.8};
#define N_SPARSITIES (sizeof SPARSITIES / sizeof SPARSITIES[0])

int point_is_v10(const point *p) {
    return p->kind == POINT_SQKV && !p->keep_all && (p->group == 0 || p->group == 64) &&
           (p->bits == 2 || p->bits == 4 || p->bits == 8 || p->bits == 16);
}

void point_label(const point *p, char *buf, size_t cap) {
    const char *q = p->quantizer == SQKV_QUANT_SYMMETRIC ? "sym" : p->quantizer == SQKV_QUANT_ASYMMETRIC ? "asym" : "exact";
    char group[32];
    if (p->bits == 16) snprintf(group, sizeof group, "-");
    else if (p->group == 0) snprintf(group, sizeof group, "head");
    else if (p->group == 64) snprintf(group, sizeof group, "tile");
    else if (p->group == 32) snprintf(group, sizeof group, "half-tile");
    else snprintf(group, sizeof group, "g%u", p->group);
    const char *keep_all = p->keep_all ? (p->range_search ? " keep-all rs" : " keep-all") : p->range_search ? " rs" : "";
    switch (p->kind) {
    case POINT_SQKV:
        snprintf(buf, cap, "SQKV%s s=%.1f b=%u %s %s%s", point_is_v10(p) ? "" : " 1.1", p->sparsity, p->bits, q, group,
                 keep_all);
        break;
    case POINT_MUSTAFAR:
        snprintf(buf, cap, "Mustafar s=%.1f fp16", p->sparsity);
        break;
    case POINT_KIVI:
        snprintf(buf, cap, "KIVI-%u g%u", p->bits, p->group);
        break;
    case POINT_PROPOSED:
        snprintf(buf, cap, "proposed s=%.1f b=%u %s %s%s", p->sparsity, p->bits, q, group, keep_all);
        break;
    }
}

static point make(point_kind kind, double sparsity, uint32_t bits, sqkv_quantizer q, uint32_t group,
                  int keep_all) {
    point p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    p.sparsity = sparsity;
    p.bits = bits;
    p.quantizer = q;
    p.group = group;
    p.keep_all = keep_all;
    return p;
}

#define MAX_POINTS 512

size_t sweep_points(int quick, point **out) {
    static const uint32_t BITS[] = {2, 4, 8};
    static const sqkv_quantizer QUANT[] = {SQKV_QUANT_SYMMETRIC, SQKV_QUANT_ASYMMETRIC};
    static const uint32_t GROUPS[] = {0, 64};
    point *p = malloc(MAX_POINTS * sizeof *p);
    size_t n = 0;
    if (!p) return 0;
    if (quick) {
        p[n++] = make(POINT_SQKV, 0.7, 2, SQKV_QUANT_SYMMETRIC, 0, 0);
        p[n++] = make(POINT_SQKV, 0.7, 16, SQKV_QUANT_EXACT, 0, 0);
        p[n++] = make(POINT_SQKV, 0.0, 4, SQKV_QUANT_ASYMMETRIC, 64, 0);
        p[n++] = make(POINT_SQKV, 0.8, 2, SQKV_QUANT_ASYMMETRIC, 64, 0);
        p[n++] = make(POINT_MUSTAFAR, 0.7, 16, SQKV_QUANT_EXACT, 0, 0);
        p[n++] = make(POINT_MUSTAFAR, 0.5, 16, SQKV_QUANT_EXACT, 0, 0);
        p[n++] = make(POINT_KIVI, 0.0, 2, SQKV_QUANT_ASYMMETRIC, KIVI_GROUP, 0);
        p[n++] = make(POINT_KIVI, 0.0, 4, SQKV_QUANT_ASYMMETRIC, KIVI_GROUP, 0);
        p[n++] = make(POINT_SQKV, 0.0, 4, SQKV_QUANT_ASYMMETRIC, 32, 1);
        p[n++] = make(POINT_SQKV, 0.0, 5, SQKV_QUANT_SYMMETRIC, 64, 1);
        p[n++] = make(POINT_SQKV, 0.0, 1, SQKV_QUANT_ASYMMETRIC, 64, 1);
        p[n++] = make(POINT_SQKV, 0.3, 5, SQKV_QUANT_ASYMMETRIC, 64, 0);
        p[n++] = make(POINT_SQKV, 0.8, 3, SQKV_QUANT_SYMMETRIC, 32, 0);
        p[n++] = make(POINT_PROPOSED, 0.0, 4, SQKV_QUANT_ASYMMETRIC, 16, 1);
        p[n] = make(POINT_SQKV, 0.0, 4, SQKV_QUANT_ASYMMETRIC, 32, 1);
        p[n++].range_search = 1;
        *out = p;
        return n;
    }
    /* Format 1.0: every sparsity x {2, 4, 8} bits x quantizer x {head, tile}, and exact values. */
    for (size_t s = 0; s < N_SPARSITIES; s++) {
        p[n++] = make(POINT_SQKV, SPARSITIES[s], 16, SQKV_QUANT_EXACT, 0, 0);
        for (size_t b = 0; b < 3; b++)
            for (size_t q = 0; q < 2; q++)
                for (size_t g = 0; g < 2; g++) p[n++] = make(POINT_SQKV, SPARSITIES[s], BITS[b], QUANT[q], GROUPS[g], 0);
    }
    for (size_t s = 0; s < N_SPARSITIES; s++) p[n++] = make(POINT_MUSTAFAR, SPARSITIES[s], 16, SQKV_QUANT_EXACT, 0, 0);
    p[n++] = make(POINT_KIVI, 0.0, 2, SQKV_QUANT_ASYMMETRIC, KIVI_GROUP, 0);
    p[n++] = make(POINT_KIVI, 0.0, 4, SQKV_QUANT_ASYMMETRIC, KIVI_GROUP, 0);
    /* Format 1.1, unpruned: keep-all (no bitmaps) at every width 1..8 and granularity, where it
     * competes with KIVI. */
    static const uint32_t GROUPS_11[] = {0, 64, 32};
    for (uint32_t b = 1; b <= 8; b++)
        for (size_t q = 0; q < 2; q++)
            for (size_t g = 0; g < 3; g++) p[n++] = make(POINT_SQKV, 0.0, b, QUANT[q], GROUPS_11[g], 1);
    /* Format 1.1, pruned: half-tile groups at 2 and 4 bits; widths between 2, 4 and 8 (with entropy
     * coding each bit of width halves the error for about one stored bit); and 1- and 3-bit codes at
     * the sparsities that land near the default's window of 1.5 to 2 bits. */
    for (size_t s = 1; s < N_SPARSITIES; s++)
        for (size_t b = 0; b < 2; b++)
            for (size_t q = 0; q < 2; q++) p[n++] = make(POINT_SQKV, SPARSITIES[s], BITS[b], QUANT[q], 32, 0);
    static const uint32_t ODD_BITS[] = {3, 5, 6};
    for (size_t s = 1; s < 5; s += 2) /* 0.3, 0.6 */
        for (size_t b = 0; b < 3; b++)
            for (size_t g = 0; g < 2; g++)
                p[n++] = make(POINT_SQKV, SPARSITIES[s], ODD_BITS[b], SQKV_QUANT_ASYMMETRIC, GROUPS[g], 0);
    static const uint32_t NARROW_BITS[] = {1, 3};
    for (size_t s = 4; s < 6; s++) /* 0.7, 0.8 */
        for (size_t b = 0; b < 2; b++)
            for (size_t q = 0; q < 2; q++)
                for (size_t g = 0; g < 2; g++)
                    p[n++] = make(POINT_SQKV, SPARSITIES[s], NARROW_BITS[b], QUANT[q], GROUPS[g], 0);
    /* The writer's range search (spec/FORMAT.md §14: parameters that clip outliers when that lowers the
     * squared error), on the settings where clipping can matter: keep-all at 2 to 6 bits, and the
     * pruned settings near the default's window and at 4 bits. */
    for (uint32_t b = 2; b <= 6; b++)
        for (size_t q = 0; q < 2; q++)
            for (size_t g = 1; g < 3; g++) {
                p[n] = make(POINT_SQKV, 0.0, b, QUANT[q], GROUPS_11[g], 1);
                p[n++].range_search = 1;
            }
    for (size_t s = 4; s < 6; s++) /* 0.7, 0.8 */
        for (uint32_t b = 2; b <= 3; b++)
            for (size_t q = 0; q < 2; q++)
                for (size_t g = 1; g < 3; g++) {
                    p[n] = make(POINT_SQKV, SPARSITIES[s], b, QUANT[q], GROUPS_11[g], 0);
                    p[n++].range_search = 1;
                }
    for (size_t s = 1; s < 4; s++) /* 0.3, 0.5, 0.6 */
        for (size_t g = 1; g < 3; g++) {
            p[n] = make(POINT_SQKV, SPARSITIES[s], 4, SQKV_QUANT_ASYMMETRIC, GROUPS_11[g], 0);
            p[n++].range_search = 1;
        }
    /* Still not expressible: 16-element parameter groups, modelled. */
    for (size_t b = 0; b < 3; b++)
        for (size_t q = 0; q < 2; q++) p[n++] = make(POINT_PROPOSED, 0.0, BITS[b], QUANT[q], 16, 1);
    for (size_t s = 1; s < 5; s += 2) /* 0.3, 0.6 */
        for (size_t b = 0; b < 2; b++)
            for (size_t q = 0; q < 2; q++) p[n++] = make(POINT_PROPOSED, SPARSITIES[s], BITS[b], QUANT[q], 16, 0);
    *out = p;
    return n;
}

typedef struct worker_buffers {
    float *k, *v;       /* the restored cache that is measured */
    float *k2, *v2;     /* scratch: the zstd file's decode, or format_sim's second run */
    attn_scratch attn;
} worker_buffers;

static void options_for(const point *p, int zstd_level, sqkv_writer_options *o) {
    sqkv_writer_options_default(o);
    o->prune = p->keep_all ? SQKV_PRUNE_KEEP_ALL : p->sparsity > 0.0 ? SQKV_PRUNE_MAGNITUDE : SQKV_PRUNE_NONE;
    o->sparsity = p->sparsity;
    o->payload_bits = p->bits;
    o->quantizer = p->bits == 16 ? SQKV_QUANT_EXACT : p->quantizer;
    o->scales = p->bits == 16   ? SQKV_SCALE_NONE
                : p->group == 0 ? SQKV_SCALE_PER_HEAD
                : p->group == 32 ? SQKV_SCALE_PER_HALF_TILE
                                 : SQKV_SCALE_PER_TILE;
    o->zstd_level = (uint32_t)zstd_level;
    o->range_search = (uint32_t)p->range_search;
}

/* Restores the cache under p's setting with format_sim (zstd_level 0: codec 0) into k_out, v_out and
 * returns the file size it models; 0 on failure. */
static uint64_t simulate(const dataset *d, point *p, int zstd_level, float *k_out, float *v_out) {
    const quality_cache *c = &d->cache;
    const uint64_t per_layer = (uint64_t)c->n_kv_heads * c->n_tokens * c->head_dim;
    const sim_setting s = {p->sparsity, p->bits, p->bits == 16 ? SQKV_QUANT_EXACT : p->quantizer,
                           p->bits == 16 ? 0 : p->group, p->keep_all, zstd_level};
    uint64_t bytes = SIM_FILE_FRAMING_BYTES;
    for (uint32_t l = 0; l < c->n_layers; l++) {
        const uint64_t kb = sim_tensor(c->k + l * per_layer, k_out + l * per_layer, c->n_kv_heads, c->n_tokens,
                                       c->head_dim, SQKV_TENSOR_K, &s);
        const uint64_t vb = sim_tensor(c->v + l * per_layer, v_out + l * per_layer, c->n_kv_heads, c->n_tokens,
                                       c->head_dim, SQKV_TENSOR_V, &s);
        if (!kb || !vb) {
            snprintf(p->message, sizeof p->message, "setting outside the model, or out of memory");
            return 0;
        }
        bytes += kb + vb;
    }
    return bytes;
}

/* The library's file for p's setting with the zstd layer at `level`: its size, and its decode into
 * k_out, v_out. 0 on failure. */
static uint64_t library_file(const dataset *d, point *p, int level, float *k_out, float *v_out) {
    sqkv_writer_options o;
    options_for(p, level, &o);
    uint64_t bytes = 0;
    if (sqkv_roundtrip(&d->cache, &o, k_out, v_out, &bytes, NULL, p->message, sizeof p->message) != SQKV_OK) return 0;
    return bytes;
}

/* Restores the cache under p's setting (codec 0) into w->k, w->v; returns the stored bytes, 0 on
 * failure. */
static uint64_t restore(const dataset *d, point *p, worker_buffers *w) {
    const quality_cache *c = &d->cache;
    const uint64_t heads = (uint64_t)c->n_layers * c->n_kv_heads;
    switch (p->kind) {
    case POINT_SQKV: return library_file(d, p, 0, w->k, w->v);
    case POINT_MUSTAFAR:
        prune_rows(d->k, w->k, heads * c->n_tokens, c->head_dim, p->sparsity);
        prune_rows(d->v, w->v, heads * c->n_tokens, c->head_dim, p->sparsity);
        return mustafar_bytes(w->k, (uint32_t)heads, c->n_tokens, c->head_dim, SQKV_TENSOR_K) +
               mustafar_bytes(w->v, (uint32_t)heads, c->n_tokens, c->head_dim, SQKV_TENSOR_V);
    case POINT_KIVI: {
        const uint64_t k_bits = kivi_roundtrip(d->k, w->k, (uint32_t)heads, c->n_tokens, c->head_dim,
                                               KIVI_PER_CHANNEL, p->bits, p->group);
        const uint64_t v_bits = kivi_roundtrip(d->v, w->v, (uint32_t)heads, c->n_tokens, c->head_dim,
                                               KIVI_PER_TOKEN, p->bits, p->group);
        if (!k_bits || !v_bits) snprintf(p->message, sizeof p->message, "KIVI needs tokens and head_dim in groups of %u", p->group);
        return k_bits && v_bits ? (k_bits + v_bits + 7) / 8 : 0;
    }
    case POINT_PROPOSED:
        return simulate(d, p, 0, w->k, w->v);
    }
    return 0;
}

/* Bytes of p's setting with the zstd layer: the library's real file, whose decode must equal the
 * codec-0 values in w->k, w->v; format_sim's model for a proposed setting. 0 on failure. */
static uint64_t zstd_bytes(const dataset *d, point *p, worker_buffers *w) {
    const uint64_t n = quality_cache_elements(&d->cache);
    if (p->kind == POINT_PROPOSED) return simulate(d, p, SWEEP_ZSTD_LEVEL, w->k2, w->v2);
    const uint64_t bytes = library_file(d, p, SWEEP_ZSTD_LEVEL, w->k2, w->v2);
    if (bytes && (memcmp(w->k, w->k2, n * sizeof(float)) || memcmp(w->v, w->v2, n * sizeof(float)))) {
        snprintf(p->message, sizeof p->message, "the zstd file restores other values than the codec-0 file");
        return 0;
    }
    return bytes;
}

static void evaluate(const dataset *d, point *p, worker_buffers *w) {
    const quality_cache *c = &d->cache;
    const uint64_t n = quality_cache_elements(c);
    p->bytes = restore(d, p, w);
    if (p->bytes == 0) {
        p->failed = 1;
        return;
    }
    p->bits_per_element = 8.0 * (double)p->bytes / (2.0 * (double)n);
    p->bits_zstd = p->bits_per_element;
    if (p->kind == POINT_SQKV || p->kind == POINT_PROPOSED) {
        const uint64_t packed = zstd_bytes(d, p, w);
        if (packed == 0) {
            p->failed = 1;
            return;
        }
        p->bits_zstd = 8.0 * (double)packed / (2.0 * (double)n);
    }
    sqt_diff_stats dk, dv;
    sqt_diff_init(&dk);
    sqt_diff_init(&dv);
    sqt_diff_add(&dk, d->k, w->k, n);
    sqt_diff_add(&dv, d->v, w->v, n);
    p->rel_l2_k = sqt_diff_rel_l2(&dk);
    p->rel_l2_v = sqt_diff_rel_l2(&dv);
    const uint64_t heads = (uint64_t)c->n_layers * c->n_kv_heads;
    const uint64_t per_head = (uint64_t)c->n_tokens * c->head_dim;
    const uint64_t per_queries = (uint64_t)d->n_queries * c->head_dim;
    for (int q = 0; q < QUERY_KINDS; q++) {
        sqt_attn_stats a;
        sqt_attn_init(&a);
        for (uint64_t b = 0; b < heads; b++) {
            attn_run(&w->attn, d->queries[q] + b * per_queries, w->k + b * per_head, w->v + b * per_head, NULL);
            attn_compare(&w->attn, d->ref_out[q] + b * per_queries, d->ref_top[q] + b * d->n_queries * d->top_k, &a);
        }
        p->attn_error[q] = sqt_attn_rel_error(&a);
        p->topk[q] = sqt_attn_topk_agreement(&a);
    }
}

typedef struct shared_queue {
    const dataset *d;
    point *points;
    size_t n, next;
    pthread_mutex_t lock;
} shared_queue;

static void *worker_main(void *arg) {
    shared_queue *sq = arg;
    const quality_cache *c = &sq->d->cache;
    const uint64_t n = quality_cache_elements(c);
    worker_buffers w;
    memset(&w, 0, sizeof w);
    w.k = malloc(n * sizeof(float));
    w.v = malloc(n * sizeof(float));
    w.k2 = malloc(n * sizeof(float));
    w.v2 = malloc(n * sizeof(float));
    const int ok = w.k && w.v && w.k2 && w.v2 &&
                   attn_scratch_init(&w.attn, sq->d->n_queries, c->n_tokens, c->head_dim, sq->d->top_k) == 0;
    for (;;) {
        pthread_mutex_lock(&sq->lock);
        const size_t i = sq->next++;
        pthread_mutex_unlock(&sq->lock);
        if (i >= sq->n) break;
        if (!ok) {
            sq->points[i].failed = 1;
            snprintf(sq->points[i].message, sizeof sq->points[i].message, "out of memory");
            continue;
        }
        evaluate(sq->d, &sq->points[i], &w);
    }
    free(w.k);
    free(w.v);
    free(w.k2);
    free(w.v2);
    if (ok) attn_scratch_free(&w.attn);
    return NULL;
}

int sweep_run(const dataset *d, point *points, size_t n, int threads) {
    shared_queue sq = {d, points, n, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t ids[64];
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    int started = 0;
    for (int t = 1; t < threads; t++)
        if (pthread_create(&ids[started], NULL, worker_main, &sq) == 0) started++;
    worker_main(&sq);
    for (int t = 0; t < started; t++) pthread_join(ids[t], NULL);
    for (size_t i = 0; i < n; i++)
        if (points[i].failed) return -1;
    return 0;
}

static void free_buffers(worker_buffers *w) {
    free(w->k);
    free(w->v);
    free(w->k2);
    free(w->v2);
}

static int alloc_buffers(worker_buffers *w, uint64_t n) {
    memset(w, 0, sizeof *w);
    w->k = malloc(n * sizeof(float));
    w->v = malloc(n * sizeof(float));
    w->k2 = malloc(n * sizeof(float));
    w->v2 = malloc(n * sizeof(float));
    if (w->k && w->v && w->k2 && w->v2) return 0;
    free_buffers(w);
    return -1;
}

/* Restores a and b (each with its own buffers) and compares values, and with compare_bytes their sizes
 * with codec 0 and with the zstd layer. */
static int same_restore(const dataset *d, point a, point b, int compare_bytes, char *msg, size_t msg_cap) {
    const uint64_t n = quality_cache_elements(&d->cache);
    worker_buffers wa, wb;
    int rc = -1;
    uint64_t bytes_a = 0, bytes_b = 0, zstd_a = 0, zstd_b = 0;
    char la[96], lb[96];
    point_label(&a, la, sizeof la);
    point_label(&b, lb, sizeof lb);
    if (alloc_buffers(&wa, n)) {
        snprintf(msg, msg_cap, "out of memory");
        return -1;
    }
    if (alloc_buffers(&wb, n)) {
        free_buffers(&wa);
        snprintf(msg, msg_cap, "out of memory");
        return -1;
    }
    if (!(bytes_a = restore(d, &a, &wa)) || !(bytes_b = restore(d, &b, &wb))) {
        snprintf(msg, msg_cap, "%s / %s: %s%s", la, lb, a.message, b.message);
    } else if (memcmp(wa.k, wb.k, n * sizeof(float)) || memcmp(wa.v, wb.v, n * sizeof(float))) {
        snprintf(msg, msg_cap, "%s and %s restore different values", la, lb);
    } else if (compare_bytes && bytes_a != bytes_b) {
        snprintf(msg, msg_cap, "%s and %s have different sizes (%llu, %llu bytes)", la, lb,
                 (unsigned long long)bytes_a, (unsigned long long)bytes_b);
    } else if (compare_bytes && (!(zstd_a = zstd_bytes(d, &a, &wa)) || !(zstd_b = zstd_bytes(d, &b, &wb)))) {
        snprintf(msg, msg_cap, "%s / %s with zstd: %s%s", la, lb, a.message, b.message);
    } else if (compare_bytes && zstd_a != zstd_b) {
        snprintf(msg, msg_cap, "%s and %s have different sizes with zstd-%d streams (%llu, %llu bytes)", la, lb,
                 SWEEP_ZSTD_LEVEL, (unsigned long long)zstd_a, (unsigned long long)zstd_b);
    } else {
        rc = 0;
    }
    free_buffers(&wa);
    free_buffers(&wb);
    return rc;
}

/* format_sim's section bodies equal the bodies of the library's file for p's setting (codec 0). */
static int same_bodies(const dataset *d, const point *p, char *msg, size_t msg_cap) {
    const quality_cache *c = &d->cache;
    const uint64_t n = quality_cache_elements(c), per_head = (uint64_t)c->n_tokens * c->head_dim;
    float *k = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float));
    uint8_t *file = NULL;
    uint64_t size = 0;
    sqkv_reader *r = NULL;
    char label[96];
    point_label(p, label, sizeof label);
    sqkv_writer_options o;
    options_for(p, 0, &o);
    int rc = -1;
    if (!k || !v || sqkv_roundtrip(c, &o, k, v, &size, &file, msg, msg_cap) != SQKV_OK ||
        sqkv_reader_create(NULL, 0, &r) != SQKV_OK || sqkv_reader_open_memory(r, file, size) != SQKV_OK) {
        snprintf(msg, msg_cap, "%s: the library file could not be made or opened", label);
        goto done;
    }
    size_t count = 0, compared = 0;
    sqkv_reader_section_count(r, &count);
    const sim_setting s = {p->sparsity, p->bits, o.quantizer, p->bits == 16 ? 0 : p->group, p->keep_all, 0};
    for (size_t i = 0; i < count; i++) {
        sqkv_section_info info;
        if (sqkv_reader_section_info(r, i, &info) != SQKV_OK || info.kind != 0x0001) continue;
        if (info.head_count != 1 || info.token_start != 0 || info.token_count != c->n_tokens ||
            file[info.offset + 2] != 0) {
            snprintf(msg, msg_cap, "%s: section %zu is not one whole head with codec 0", label, i);
            goto done;
        }
        const uint16_t *src = (info.tensor ? c->v : c->k) + ((uint64_t)info.layer * c->n_kv_heads + info.head_start) * per_head;
        uint8_t *body = NULL;
        uint64_t body_size = 0;
        if (sim_head_body(src, k, c->n_tokens, c->head_dim, (sqkv_tensor)info.tensor, &s, &body, &body_size)) {
            snprintf(msg, msg_cap, "%s: format_sim failed", label);
            goto done;
        }
        const int same = body_size == info.stored_size && !memcmp(body, file + info.offset + 64, body_size);
        free(body);
        if (!same) {
            snprintf(msg, msg_cap, "%s: format_sim's body of layer %u tensor %u head %u differs from the library's",
                     label, info.layer, info.tensor, info.head_start);
            goto done;
        }
        compared++;
    }
    if (compared != 2u * c->n_layers * c->n_kv_heads) {
        snprintf(msg, msg_cap, "%s: %zu SPARSE sections compared, expected %u", label, compared,
                 2u * c->n_layers * c->n_kv_heads);
        goto done;
    }
    rc = 0;
done:
    sqkv_reader_destroy(r);
    free(file);
    free(k);
    free(v);
    return rc;
}

/* Settings on which format_sim must equal the library: 1.0 ones, and one of each 1.1 feature. */
static const struct {
    double sparsity;
    uint32_t bits;
    sqkv_quantizer quantizer;
    uint32_t group;
    int keep_all;
} SIM_CHECKS[] = {
    {0.7, 16, SQKV_QUANT_EXACT, 0, 0},
    {0.7, 2, SQKV_QUANT_SYMMETRIC, 0, 0},
    {0.5, 4, SQKV_QUANT_ASYMMETRIC, 64, 0},
    {0.0, 8, SQKV_QUANT_SYMMETRIC, 64, 0},
    {0.0, 5, SQKV_QUANT_SYMMETRIC, 64, 1},
    {0.0, 4, SQKV_QUANT_ASYMMETRIC, 32, 1},
    {0.3, 5, SQKV_QUANT_ASYMMETRIC, 64, 0},
    {0.8, 3, SQKV_QUANT_SYMMETRIC, 32, 0},
};
#define N_SIM_CHECKS (sizeof SIM_CHECKS / sizeof SIM_CHECKS[0])

void sweep_self_check_list(char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_SIM_CHECKS && used < cap; i++) {
        const point p = make(POINT_SQKV, SIM_CHECKS[i].sparsity, SIM_CHECKS[i].bits, SIM_CHECKS[i].quantizer,
                             SIM_CHECKS[i].group, SIM_CHECKS[i].keep_all);
        char label[96];
        point_label(&p, label, sizeof label);
        const size_t len = strlen(label);
        if (len > 2 && !strcmp(label + len - 2, " -")) label[len - 2] = 0; /* "exact -": no scales */
        const int w = snprintf(buf + used, cap - used, "%s%s", i ? (i + 1 == N_SIM_CHECKS ? " and " : ", ") : "",
                               label + 5 /* without "SQKV " */);
        if (w < 0) break;
        used += (size_t)w;
    }
}

int sweep_self_check(const dataset *d, char *msg, size_t msg_cap) {
    if (same_restore(d, make(POINT_MUSTAFAR, 0.7, 16, SQKV_QUANT_EXACT, 0, 0),
                     make(POINT_SQKV, 0.7, 16, SQKV_QUANT_EXACT, 0, 0), 0, msg, msg_cap))
        return -1;
    for (size_t i = 0; i < N_SIM_CHECKS; i++) {
        const point sim = make(POINT_PROPOSED, SIM_CHECKS[i].sparsity, SIM_CHECKS[i].bits, SIM_CHECKS[i].quantizer,
                               SIM_CHECKS[i].group, SIM_CHECKS[i].keep_all);
        point lib = sim;
        lib.kind = POINT_SQKV;
        if (same_restore(d, sim, lib, 1, msg, msg_cap) || same_bodies(d, &lib, msg, msg_cap)) return -1;
    }
    return 0;
}
