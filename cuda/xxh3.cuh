/*
 * xxh3.cuh: XXH3-64 with seed 0 and the default secret (xxHash 0.8, XXH3_64bits), for host and device.
 *
 * Inputs of more than 240 bytes are hashed in parallel: XXH3 adds every 64-byte stripe's contribution
 * into eight accumulators, and only the scramble at the end of each 1024-byte block depends on the
 * order. So a first kernel sums the contributions of each block independently (hash.cu: a warp reads
 * a few blocks, coalesced) and a second runs the short chain of scrambles per buffer from those sums;
 * the stripes after the last full block are again plain sums, so the finish reads them in parallel
 * too. Shorter inputs (section headers, tiny bodies) take the sequential short paths in one thread.
 */
#ifndef SQKV_CUDA_XXH3_CUH
#define SQKV_CUDA_XXH3_CUH

#include <stdint.h>

#include "numeric.cuh"

namespace sqkv_cuda {

#define SQKV_XXH_P32_1 0x9E3779B1u
#define SQKV_XXH_P32_2 0x85EBCA77u
#define SQKV_XXH_P32_3 0xC2B2AE3Du
#define SQKV_XXH_P64_1 0x9E3779B185EBCA87ull
#define SQKV_XXH_P64_2 0xC2B2AE3D27D4EB4Full
#define SQKV_XXH_P64_3 0x165667B19E3779F9ull
#define SQKV_XXH_P64_4 0x85EBCA77C2B2AE63ull
#define SQKV_XXH_P64_5 0x27D4EB2F165667C5ull

constexpr uint32_t kXxhBlock = 1024;  /* 16 stripes of 64 bytes with the 192-byte default secret */
constexpr uint32_t kXxhStripe = 64;

/* The default secret is a constant of the algorithm (xxhash.h XXH3_kSecret). Host and device each get
 * a copy: device code reads it from constant memory. */
#define SQKV_XXH_SECRET_BYTES \
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c, \
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f, \
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21, \
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c, \
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3, \
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8, \
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d, \
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64, \
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb, \
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e, \
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce, \
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e

static const uint8_t kXxhSecretHost[192] = {SQKV_XXH_SECRET_BYTES};

/* The secret's little-endian 64-bit word at any byte offset, at compile time: the parallel kernels
 * keep the words they need in constant tables instead of assembling them from bytes at run time. */
constexpr uint8_t kXxhSecretBytes[192] = {SQKV_XXH_SECRET_BYTES};
constexpr uint64_t xxh_secret_word_at(uint32_t off) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | kXxhSecretBytes[off + (uint32_t)i];
    return v;
}
/* Eight consecutive words from byte off (a table row for the eight accumulators). */
#define SQKV_XXH_SECRET_ROW(off)                                                                          \
    xxh_secret_word_at((off)), xxh_secret_word_at((off) + 8), xxh_secret_word_at((off) + 16),               \
        xxh_secret_word_at((off) + 24), xxh_secret_word_at((off) + 32), xxh_secret_word_at((off) + 40),     \
        xxh_secret_word_at((off) + 48), xxh_secret_word_at((off) + 56)
#ifdef __CUDACC__
static __constant__ uint8_t kXxhSecretDev[192] = {SQKV_XXH_SECRET_BYTES};
#endif

SQKV_HD uint64_t xxh_rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
SQKV_HD uint32_t xxh_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
SQKV_HD const uint8_t *xxh_secret() {
#ifdef __CUDA_ARCH__
    return kXxhSecretDev;
#else
    return kXxhSecretHost;
#endif
}
SQKV_HD uint64_t secret64(uint32_t off) { return xxh_rd64(xxh_secret() + off); }

SQKV_HD uint64_t xxh_mul128_fold64(uint64_t a, uint64_t b) {
#ifdef __CUDA_ARCH__
    return (a * b) ^ __umul64hi(a, b);
#else
    const unsigned __int128 p = (unsigned __int128)a * b;
    return (uint64_t)p ^ (uint64_t)(p >> 64);
#endif
}
SQKV_HD uint64_t xxh_rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
SQKV_HD uint64_t xxh_swap64(uint64_t x) {
    uint64_t r = 0;
    for (int i = 0; i < 8; i++) r |= ((x >> (8 * i)) & 0xFFu) << (56 - 8 * i);
    return r;
}
SQKV_HD uint64_t xxh64_avalanche(uint64_t h) {
    h ^= h >> 33;
    h *= SQKV_XXH_P64_2;
    h ^= h >> 29;
    h *= SQKV_XXH_P64_3;
    h ^= h >> 32;
    return h;
}
SQKV_HD uint64_t xxh3_avalanche(uint64_t h) {
    h ^= h >> 37;
    h *= 0x165667919E3779F9ull;
    h ^= h >> 32;
    return h;
}
SQKV_HD uint64_t xxh3_rrmxmx(uint64_t h, uint64_t len) {
    h ^= xxh_rotl64(h, 49) ^ xxh_rotl64(h, 24);
    h *= 0x9FB21C651E98DF25ull;
    h ^= (h >> 35) + len;
    h *= 0x9FB21C651E98DF25ull;
    return h ^ (h >> 28);
}
SQKV_HD uint64_t xxh3_mix16(const uint8_t *in, uint32_t secret_off) {
    return xxh_mul128_fold64(xxh_rd64(in) ^ secret64(secret_off), xxh_rd64(in + 8) ^ secret64(secret_off + 8));
}

/* XXH3-64 of inputs of at most 240 bytes (seed 0). */
SQKV_HD uint64_t xxh3_short(const uint8_t *in, uint64_t len) {
    if (len == 0) return xxh64_avalanche(secret64(56) ^ secret64(64));
    if (len <= 3) {
        const uint32_t combined = ((uint32_t)in[0] << 16) | ((uint32_t)in[len >> 1] << 24) | in[len - 1] |
                                  ((uint32_t)len << 8);
        const uint64_t bitflip = (uint64_t)(xxh_rd32(xxh_secret()) ^ xxh_rd32(xxh_secret() + 4));
        return xxh64_avalanche((uint64_t)combined ^ bitflip);
    }
    if (len <= 8) {
        const uint32_t in1 = xxh_rd32(in), in2 = xxh_rd32(in + len - 4);
        const uint64_t bitflip = secret64(8) ^ secret64(16);
        const uint64_t in64 = in2 + ((uint64_t)in1 << 32);
        return xxh3_rrmxmx(in64 ^ bitflip, len);
    }
    if (len <= 16) {
        const uint64_t lo = xxh_rd64(in) ^ (secret64(24) ^ secret64(32));
        const uint64_t hi = xxh_rd64(in + len - 8) ^ (secret64(40) ^ secret64(48));
        return xxh3_avalanche(len + xxh_swap64(lo) + hi + xxh_mul128_fold64(lo, hi));
    }
    uint64_t acc = len * SQKV_XXH_P64_1;
    if (len <= 128) {
        if (len > 32) {
            if (len > 64) {
                if (len > 96) {
                    acc += xxh3_mix16(in + 48, 96);
                    acc += xxh3_mix16(in + len - 64, 112);
                }
                acc += xxh3_mix16(in + 32, 64);
                acc += xxh3_mix16(in + len - 48, 80);
            }
            acc += xxh3_mix16(in + 16, 32);
            acc += xxh3_mix16(in + len - 32, 48);
        }
        acc += xxh3_mix16(in, 0);
        acc += xxh3_mix16(in + len - 16, 16);
        return xxh3_avalanche(acc);
    }
    const int rounds = (int)len / 16;
    for (int i = 0; i < 8; i++) acc += xxh3_mix16(in + 16 * i, 16 * i);
    acc = xxh3_avalanche(acc);
    for (int i = 8; i < rounds; i++) acc += xxh3_mix16(in + 16 * i, 16 * (i - 8) + 3);
    acc += xxh3_mix16(in + len - 16, 136 - 17);
    return xxh3_avalanche(acc);
}

/* One 64-byte stripe's contribution into acc[8] with the secret at byte secret_off. */
SQKV_HD void xxh3_stripe(uint64_t acc[8], const uint8_t *in, uint32_t secret_off) {
    for (int i = 0; i < 8; i++) {
        const uint64_t v = xxh_rd64(in + 8 * i);
        const uint64_t k = v ^ secret64(secret_off + 8 * i);
        acc[i ^ 1] += v;
        acc[i] += (k & 0xFFFFFFFFull) * (k >> 32);
    }
}

SQKV_HD void xxh3_scramble(uint64_t acc[8]) {
    for (int i = 0; i < 8; i++) {
        uint64_t a = acc[i];
        a ^= a >> 47;
        a ^= secret64(192 - 64 + 8 * i);
        a *= SQKV_XXH_P32_1;
        acc[i] = a;
    }
}

SQKV_HD void xxh3_init_acc(uint64_t acc[8]) {
    acc[0] = SQKV_XXH_P32_3;
    acc[1] = SQKV_XXH_P64_1;
    acc[2] = SQKV_XXH_P64_2;
    acc[3] = SQKV_XXH_P64_3;
    acc[4] = SQKV_XXH_P64_4;
    acc[5] = SQKV_XXH_P32_2;
    acc[6] = SQKV_XXH_P64_5;
    acc[7] = SQKV_XXH_P32_1;
}

/* Number of full blocks that are followed by a scramble, for len > 240. */
SQKV_HD uint64_t xxh3_full_blocks(uint64_t len) { return (len - 1) / kXxhBlock; }

/* The end of a long hash: given the accumulators after the full blocks (block_sums[b] added then
 * scrambled for each), the last partial block, last stripe and merge. */
SQKV_HD uint64_t xxh3_long_finish(uint64_t acc[8], const uint8_t *in, uint64_t len) {
    const uint64_t nb = xxh3_full_blocks(len);
    const uint64_t stripes = ((len - 1) - kXxhBlock * nb) / kXxhStripe;
    for (uint64_t s = 0; s < stripes; s++) xxh3_stripe(acc, in + nb * kXxhBlock + s * kXxhStripe, (uint32_t)(8 * s));
    xxh3_stripe(acc, in + len - kXxhStripe, 192 - 64 - 7);
    uint64_t r = len * SQKV_XXH_P64_1;
    for (int i = 0; i < 4; i++)
        r += xxh_mul128_fold64(acc[2 * i] ^ secret64(11 + 16 * i), acc[2 * i + 1] ^ secret64(11 + 16 * i + 8));
    return xxh3_avalanche(r);
}

/* Sequential XXH3-64 (host reference and small inputs). */
SQKV_HD uint64_t xxh3_64(const uint8_t *in, uint64_t len) {
    if (len <= 240) return xxh3_short(in, len);
    uint64_t acc[8];
    xxh3_init_acc(acc);
    const uint64_t nb = xxh3_full_blocks(len);
    for (uint64_t b = 0; b < nb; b++) {
        for (uint32_t s = 0; s < 16; s++) xxh3_stripe(acc, in + b * kXxhBlock + s * kXxhStripe, 8 * s);
        xxh3_scramble(acc);
    }
    return xxh3_long_finish(acc, in, len);
}

}  // namespace sqkv_cuda

#endif /* SQKV_CUDA_XXH3_CUH */
