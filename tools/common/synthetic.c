/* synthetic.c: see synthetic.h for the data model. */
#include "tools/common/synthetic.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/half.h"
#include "tools/common/rng.h"

#define QUANTILES 4096u
#define FP16_MAX 65504.0f
#define LLAMA3_VOCAB 128256u

/* Stream ids, so that keys, values, channel parameters and tokens never share random numbers. */
enum { STREAM_KEYS = 1, STREAM_VALUES = 2, STREAM_CHANNELS = 3, STREAM_TOKENS = 4 };

struct sqkv_synth {
    sqkv_synth_config cfg;
    float quantile[QUANTILES + 1]; /* quantile[i] = Phi^-1(i / QUANTILES), 1 <= i < QUANTILES */
    float tail_start;              /* quantile[QUANTILES - 1] */
    float *cos_table, *sin_table;  /* [n_tokens][head_dim / 2] */
    float *row;                    /* head_dim scratch */
    float *scale, *bias;           /* head_dim per-channel parameters of the current head */
};

void sqkv_synth_default(sqkv_synth_config *cfg) {
    cfg->n_layers = 32;
    cfg->n_kv_heads = 8;
    cfg->head_dim = 128;
    cfg->n_tokens = 4096;
    cfg->seed = 1;
    cfg->heavy_tailed_values = 0;
}

static double normal_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

static double inverse_normal_cdf(double p) {
    double lo = -40.0, hi = 40.0;
    for (int i = 0; i < 200 && hi - lo > 1e-15; i++) {
        double mid = 0.5 * (lo + hi);
        if (normal_cdf(mid) < p) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* A normal variate beyond `a` > 0 (Marsaglia's exact tail method), with the given sign. */
static float tail_normal(sqt_rng *r, float a, int negative) {
    double x, y;
    do {
        x = -log(sqt_rng_uniform(r)) / a;
        y = -log(sqt_rng_uniform(r));
    } while (2.0 * y < x * x);
    float v = (float)(a + x);
    return negative ? -v : v;
}

static inline float fast_normal(const sqkv_synth *g, sqt_rng *r) {
    const uint64_t x = sqt_rng_next(r);
    const uint32_t idx = (uint32_t)(x >> 52);
    if (idx == 0 || idx == QUANTILES - 1) return tail_normal(r, g->tail_start, idx == 0);
    const float frac = (float)((x >> 28) & 0xFFFFFFu) * (1.0f / 16777216.0f);
    return g->quantile[idx] + (g->quantile[idx + 1] - g->quantile[idx]) * frac;
}

static inline uint16_t to_fp16(float x) {
    if (x > FP16_MAX) x = FP16_MAX;
    if (x < -FP16_MAX) x = -FP16_MAX;
    return sqt_f32_to_half(x);
}

sqkv_synth *sqkv_synth_create(const sqkv_synth_config *cfg) {
    if (cfg->n_layers == 0 || cfg->n_kv_heads == 0 || cfg->head_dim == 0 || cfg->n_tokens == 0) return NULL;
    sqkv_synth *g = calloc(1, sizeof *g);
    if (g == NULL) return NULL;
    g->cfg = *cfg;
    const uint32_t half = cfg->head_dim / 2;
    const size_t table = (size_t)cfg->n_tokens * (half ? half : 1);
    g->cos_table = malloc(table * sizeof(float));
    g->sin_table = malloc(table * sizeof(float));
    g->row = malloc(cfg->head_dim * sizeof(float));
    g->scale = malloc(cfg->head_dim * sizeof(float));
    g->bias = malloc(cfg->head_dim * sizeof(float));
    if (!g->cos_table || !g->sin_table || !g->row || !g->scale || !g->bias) {
        sqkv_synth_destroy(g);
        return NULL;
    }
    for (uint32_t i = 1; i < QUANTILES; i++) g->quantile[i] = (float)inverse_normal_cdf((double)i / QUANTILES);
    g->tail_start = g->quantile[QUANTILES - 1];
    for (uint32_t i = 0; i < half; i++) {
        const double inv_freq = pow(10000.0, -2.0 * i / cfg->head_dim);
        for (uint32_t t = 0; t < cfg->n_tokens; t++) {
            const double angle = (double)t * inv_freq;
            g->cos_table[(size_t)t * half + i] = (float)cos(angle);
            g->sin_table[(size_t)t * half + i] = (float)sin(angle);
        }
    }
    return g;
}

void sqkv_synth_destroy(sqkv_synth *g) {
    if (g == NULL) return;
    free(g->cos_table);
    free(g->sin_table);
    free(g->row);
    free(g->scale);
    free(g->bias);
    free(g);
}

/* Per-channel scale and bias of one (layer, head), outliers included. */
static void channel_params(sqkv_synth *g, uint32_t layer, uint32_t head) {
    const uint32_t d_all = g->cfg.head_dim, half = d_all / 2;
    sqt_rng r;
    sqt_rng_seed(&r, g->cfg.seed, STREAM_CHANNELS, layer, head);
    for (uint32_t d = 0; d < d_all; d++) {
        const double spread = exp(0.3 * sqt_rng_gaussian(&r));
        g->scale[d] = (float)(spread < 3.0 ? spread : 3.0); /* below every outlier scale */
        g->bias[d] = (float)sqt_rng_gaussian(&r);
    }
    uint32_t outliers = d_all / 32 ? d_all / 32 : 1;
    /* Candidates: both channels of the low-frequency pairs, or every channel for tiny heads. */
    const uint32_t first_pair = half / 2, pairs = half - first_pair;
    const uint32_t candidates = pairs ? 2 * pairs : d_all;
    if (outliers > candidates) outliers = candidates;
    for (uint32_t n = 0; n < outliers;) {
        uint32_t c = (uint32_t)(sqt_rng_next(&r) % candidates);
        uint32_t d = pairs ? (c < pairs ? first_pair + c : half + first_pair + (c - pairs)) : c;
        if (g->scale[d] >= 5.0f) continue; /* already an outlier */
        g->scale[d] = (float)(5.0 + 5.0 * sqt_rng_uniform(&r));
        n++;
    }
}

static void generate_keys(sqkv_synth *g, uint32_t layer, uint32_t head, uint16_t *out) {
    const uint32_t d_all = g->cfg.head_dim, half = d_all / 2;
    float *x = g->row;
    sqt_rng r;
    channel_params(g, layer, head);
    sqt_rng_seed(&r, g->cfg.seed, STREAM_KEYS, layer, head);
    for (uint32_t t = 0; t < g->cfg.n_tokens; t++) {
        for (uint32_t d = 0; d < d_all; d++) x[d] = g->scale[d] * (g->bias[d] + fast_normal(g, &r));
        const float *c = g->cos_table + (size_t)t * half, *s = g->sin_table + (size_t)t * half;
        uint16_t *o = out + (size_t)t * d_all;
        for (uint32_t i = 0; i < half; i++) {
            const float a = x[i], b = x[i + half];
            o[i] = to_fp16(a * c[i] - b * s[i]);
            o[i + half] = to_fp16(b * c[i] + a * s[i]);
        }
        if (d_all % 2) o[d_all - 1] = to_fp16(x[d_all - 1]);
    }
}

static void generate_values(sqkv_synth *g, uint32_t layer, uint32_t head, uint16_t *out) {
    sqt_rng r;
    sqt_rng_seed(&r, g->cfg.seed, STREAM_VALUES, layer, head);
    const float sigma = (float)exp(0.25 * sqt_rng_gaussian(&r));
    const size_t n = (size_t)g->cfg.n_tokens * g->cfg.head_dim;
    if (!g->cfg.heavy_tailed_values) {
        for (size_t i = 0; i < n; i++) out[i] = to_fp16(sigma * fast_normal(g, &r));
        return;
    }
    const float unit_variance = 1.0f / sqrtf(3.0f);
    for (size_t i = 0; i < n; i++) {
        const float z = fast_normal(g, &r);
        const float a = fast_normal(g, &r), b = fast_normal(g, &r), c = fast_normal(g, &r);
        const float chi2 = a * a + b * b + c * c;
        const float t = chi2 > 0.0f ? z / sqrtf(chi2 / 3.0f) : 0.0f;
        out[i] = to_fp16(sigma * unit_variance * t);
    }
}

void sqkv_synth_generate(sqkv_synth *g, uint32_t layer, uint16_t *k_fp16, uint16_t *v_fp16) {
    const size_t per_head = (size_t)g->cfg.n_tokens * g->cfg.head_dim;
    for (uint32_t h = 0; h < g->cfg.n_kv_heads; h++) {
        if (k_fp16) generate_keys(g, layer, h, k_fp16 + h * per_head);
        if (v_fp16) generate_values(g, layer, h, v_fp16 + h * per_head);
    }
}

int sqkv_synth_layer(const sqkv_synth_config *cfg, uint32_t layer, uint16_t *k_fp16, uint16_t *v_fp16) {
    sqkv_synth *g = sqkv_synth_create(cfg);
    if (g == NULL) return -1;
    sqkv_synth_generate(g, layer, k_fp16, v_fp16);
    sqkv_synth_destroy(g);
    return 0;
}

void sqkv_synth_tokens(const sqkv_synth_config *cfg, int32_t *tokens) {
    sqt_rng r;
    sqt_rng_seed(&r, cfg->seed, STREAM_TOKENS, 0, 0);
    for (uint32_t t = 0; t < cfg->n_tokens; t++) tokens[t] = (int32_t)(sqt_rng_next(&r) % LLAMA3_VOCAB);
}
