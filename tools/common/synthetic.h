/*
 * synthetic.h: a synthetic KV cache with the statistics that matter to SQKV, deterministic from a seed.
 *
 * The data model (also in the README and `sqkv demo --help`), for every layer and KV head:
 * - Keys, as an inference engine caches them (after the rotary embedding). Before rotation, channel d of
 *   token t is s_d * (b_d + z), z ~ N(0, 1): a per-channel bias b_d ~ N(0, 1) and a per-channel scale
 *   s_d ~ exp(N(0, 0.3^2)), except for max(1, head_dim / 32) outlier channels (4 of 128) whose scale
 *   is uniform in [5, 10]. Outliers are drawn among the low-frequency rotary pairs (channels d and
 *   d + head_dim/2 for d in [head_dim/4, head_dim/2)), where real models have theirs and where the
 *   rotation keeps them in place. Then the rotary embedding, rotate-half convention, theta 10000,
 *   position = token index: for i < head_dim/2, angle = t * 10000^(-2i/head_dim),
 *   (x_i, x_{i+h}) -> (x_i cos - x_{i+h} sin, x_{i+h} cos + x_i sin). An odd last channel is not rotated.
 * - Values: sigma * z with a per-head sigma ~ exp(N(0, 0.25^2)) and z ~ N(0, 1), or, with
 *   heavy_tailed_values, z ~ Student-t with 3 degrees of freedom divided by sqrt(3) (unit variance).
 * - Everything is clamped to the fp16 range and rounded to nearest fp16.
 * - Token ids: uniform in [0, 128256) (the Llama-3 vocabulary).
 * Each (layer, head, tensor) has its own random stream, so layers can be generated in any order and a
 * layer is the same whatever else was generated. The normal variates come from a 4096-entry inverse
 * CDF table with linear interpolation and exact tails: cheap, and close enough to Gaussian for a
 * compression benchmark. The same seed gives the same data on the same platform (libm's erfc, sin and
 * cos feed the tables).
 */
#ifndef SQKV_TOOLS_SYNTHETIC_H
#define SQKV_TOOLS_SYNTHETIC_H

#include <stdint.h>

typedef struct sqkv_synth_config {
    uint32_t n_layers, n_kv_heads, head_dim, n_tokens;
    uint64_t seed;
    int heavy_tailed_values;
} sqkv_synth_config;

/* Llama-3-8B: 32 layers, 8 KV heads, head_dim 128, 4096 tokens; seed 1; Gaussian values. */
void sqkv_synth_default(sqkv_synth_config *cfg);

typedef struct sqkv_synth sqkv_synth;

/* Returns NULL when out of memory or when a dimension is 0. Tables are built once here. */
sqkv_synth *sqkv_synth_create(const sqkv_synth_config *cfg);
void sqkv_synth_destroy(sqkv_synth *g);
/* Fills k and v, each [n_kv_heads, n_tokens, head_dim] fp16 bits, for layer (< n_layers). */
void sqkv_synth_generate(sqkv_synth *g, uint32_t layer, uint16_t *k_fp16, uint16_t *v_fp16);

/* One-shot convenience (builds and frees the tables); returns 0, or -1 on failure. */
int sqkv_synth_layer(const sqkv_synth_config *cfg, uint32_t layer, uint16_t *k_fp16, uint16_t *v_fp16);
/* cfg->n_tokens token ids. */
void sqkv_synth_tokens(const sqkv_synth_config *cfg, int32_t *tokens);

#endif
