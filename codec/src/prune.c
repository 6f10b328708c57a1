/* prune.c: per-row magnitude selection (see prune.h).
 *
 * The magnitude of an E value orders exactly as its low 15 bits, so the selection works on 15-bit
 * integers, without a sort: the threshold T (the keep-th largest magnitude) is found bit by bit from the
 * top, each step counting the elements at or above a candidate. Elements above T are kept, and at T the
 * lowest channels until the count is reached, which is the tie rule of §14. Every count and mask is a
 * loop over a fixed block of 64 magnitudes, which compilers turn into SIMD compares at -O2; a row
 * is zero-padded to whole blocks first (padding has magnitude 0, which is never kept). */
#include "prune.h"

#include <math.h>
#include <string.h>

#include "format.h"

#define BLOCK 64u
#define MAX_BLOCKS (SQKV_MAX_HEAD_DIM / BLOCK)

uint32_t sqkv_prune_keep_count(uint32_t head_dim, sqkv_prune_mode mode, double sparsity) {
    if (mode == SQKV_PRUNE_NONE) return head_dim;
    const double dropped = floor(sparsity * (double)head_dim);
    uint32_t keep = head_dim - (uint32_t)dropped;
    return keep < 1 ? 1 : keep;
}

static uint32_t count_at_least(const uint16_t *mag, uint32_t blocks, uint16_t t) {
    uint32_t total = 0;
    for (uint32_t b = 0; b < blocks; b++) {
        const uint16_t *m = mag + b * BLOCK;
        uint16_t c = 0;
        for (uint32_t i = 0; i < BLOCK; i++) c = (uint16_t)(c + (m[i] >= t));
        total += c;
    }
    return total;
}

static uint16_t max_magnitude(const uint16_t *mag, uint32_t blocks) {
    uint16_t best = 0;
    for (uint32_t b = 0; b < blocks; b++) {
        const uint16_t *m = mag + b * BLOCK;
        for (uint32_t i = 0; i < BLOCK; i++) best = m[i] > best ? m[i] : best;
    }
    return best;
}

/* Eight 0/1 bytes (element j in byte j) to eight bits, element j in bit 7 - j: the multiplier places
 * byte j's bit at bit 63 - j of the product, with no two partial products on the same bit. */
static uint64_t byte_flags_to_bits(const uint8_t *flags) {
    uint64_t x;
    memcpy(&x, flags, sizeof x);
    return (x * 0x8040201008040201ull) >> 56;
}

static uint64_t flags_to_word(const uint8_t flags[BLOCK]) {
    uint64_t bits = 0;
    for (uint32_t k = 0; k < BLOCK / 8; k++) bits |= byte_flags_to_bits(flags + 8 * k) << (56 - 8 * k);
    return bits;
}

/* Mask word of a block: element i in bit 63 - i when its magnitude is >= t (above) or == t (equal). */
static uint64_t word_at_least(const uint16_t *m, uint16_t t) {
    uint8_t flags[BLOCK];
    for (uint32_t i = 0; i < BLOCK; i++) flags[i] = m[i] >= t;
    return flags_to_word(flags);
}

static uint64_t word_equal(const uint16_t *m, uint16_t t) {
    uint8_t flags[BLOCK];
    for (uint32_t i = 0; i < BLOCK; i++) flags[i] = m[i] == t;
    return flags_to_word(flags);
}

uint32_t sqkv_prune_row(const uint16_t *row, uint32_t head_dim, uint32_t keep, uint64_t *mask) {
    const uint32_t blocks = (head_dim + BLOCK - 1) / BLOCK;
    uint16_t mag[MAX_BLOCKS * BLOCK];
    const uint32_t whole = head_dim / BLOCK * BLOCK;
    for (uint32_t b = 0; b < whole / BLOCK; b++)
        for (uint32_t i = 0; i < BLOCK; i++) mag[b * BLOCK + i] = row[b * BLOCK + i] & 0x7FFFu;
    if (whole < head_dim) {
        for (uint32_t i = whole; i < head_dim; i++) mag[i] = row[i] & 0x7FFFu;
        memset(mag + head_dim, 0, (blocks * BLOCK - head_dim) * sizeof mag[0]);
    }

    const uint32_t nonzero = count_at_least(mag, blocks, 1);
    uint16_t at_least = 1; /* kept: magnitudes >= at_least, plus the lowest channels equal to tie */
    if (nonzero > keep) {
        /* Largest t with count(>= t) >= keep, built from the top bit of the largest magnitude down. If a
         * candidate is reached by exactly keep elements, those are the answer and no tie is left. */
        const uint16_t max = max_magnitude(mag, blocks);
        uint32_t bit = 15;
        while (bit > 0 && !((max >> (bit - 1)) & 1u)) bit--;
        uint16_t t = 0;
        uint32_t exact = 0;
        while (bit-- > 0) {
            const uint16_t candidate = (uint16_t)(t | (1u << bit));
            const uint32_t c = count_at_least(mag, blocks, candidate);
            if (c >= keep) t = candidate;
            if (c == keep) {
                exact = 1;
                break;
            }
        }
        if (!exact) {
            /* Everything above t is kept; `need` of the elements equal to t, lowest channels first. */
            uint32_t need = keep - count_at_least(mag, blocks, (uint16_t)(t + 1));
            for (uint32_t w = 0; w < blocks; w++) {
                uint64_t bits = word_at_least(mag + w * BLOCK, (uint16_t)(t + 1));
                uint64_t ties = word_equal(mag + w * BLOCK, t);
                for (; ties && need; need--) {
                    const uint64_t top = (uint64_t)1 << (63u - (unsigned)__builtin_clzll(ties));
                    bits |= top;
                    ties ^= top;
                }
                mask[w] = bits;
            }
            return keep;
        }
        at_least = t;
    }
    uint32_t kept = 0;
    for (uint32_t w = 0; w < blocks; w++) {
        mask[w] = word_at_least(mag + w * BLOCK, at_least);
        kept += (uint32_t)__builtin_popcountll(mask[w]);
    }
    return kept;
}
