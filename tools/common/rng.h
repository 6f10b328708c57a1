/*
 * rng.h: a small, fast, seedable generator (xoshiro256** seeded through splitmix64) for synthetic data
 * and random queries. Not for anything security-related.
 */
#ifndef SQKV_TOOLS_RNG_H
#define SQKV_TOOLS_RNG_H

#include <stdint.h>

typedef struct sqt_rng {
    uint64_t s[4];
} sqt_rng;

static inline uint64_t sqt_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Seeds from a list of words (e.g. seed, layer, head, stream id) so that every stream is independent
 * and can be generated in any order. */
static inline void sqt_rng_seed(sqt_rng *r, uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t x = seed;
    x = sqt_splitmix64(&x) ^ a;
    x = sqt_splitmix64(&x) ^ b;
    x = sqt_splitmix64(&x) ^ c;
    for (int i = 0; i < 4; i++) r->s[i] = sqt_splitmix64(&x);
}

static inline uint64_t sqt_rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t sqt_rng_next(sqt_rng *r) {
    uint64_t *s = r->s;
    const uint64_t result = sqt_rng_rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = sqt_rng_rotl(s[3], 45);
    return result;
}

/* Uniform in the open interval (0, 1). */
static inline double sqt_rng_uniform(sqt_rng *r) {
    return ((double)(sqt_rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Exact standard normal (Marsaglia's polar method); for small amounts of randomness. */
double sqt_rng_gaussian(sqt_rng *r);

#endif
