/* encode_sparse.c: one SPARSE section body (spec/FORMAT.md §7) with the reference choices of §14.
 *
 * Order of work: prune every row and lay the bitmaps out in section tile order (§7.1), which gives the
 * kept count P and so the exact body size; then gather the kept values in payload order (§7.5), choose
 * each group's parameters, and pack the codes. */
#include "encode_sparse.h"

#include <stdlib.h>
#include <string.h>

#include "elements.h"
#include "float16.h"
#include "format.h"
#include "prune.h"
#include "sparse_layout.h"
#include "tile_layout.h"

#define ROWS_PER_CHUNK 64u
#define MAX_CHANNEL_BLOCKS (SQKV_MAX_HEAD_DIM / 64u)

void sqkv_sparse_scratch_free(sqkv_sparse_scratch *s) {
    free(s->bitmaps);
    free(s->kept);
    free(s->head_kept);
    free(s->code_lut);
    memset(s, 0, sizeof *s);
}

/* Grows *buf to hold count items of item_size bytes; contents are not kept. */
static sqkv_error reserve(void **buf, size_t *cap, uint64_t count, size_t item_size) {
    if (count <= *cap) return SQKV_OK;
    if (count > SIZE_MAX / item_size) return SQKV_ERR_OUT_OF_MEMORY;
    void *p = malloc((size_t)count * item_size);
    if (!p) return SQKV_ERR_OUT_OF_MEMORY;
    free(*buf);
    *buf = p;
    *cap = (size_t)count;
    return SQKV_OK;
}

/* ---- code choice ------------------------------------------------------------------------------- */

static uint16_t order_key_to_bits(uint32_t key) {
    return (uint16_t)((key & 0x8000u) ? key ^ 0x8000u : ~key & 0xFFFFu);
}

/* sqkv_e_to_double through binary32 on bits: the same exact value, without frexp/ldexp. */
static double e_to_double_fast(uint16_t h, sqkv_dtype e) {
    const uint32_t bits = e == SQKV_DTYPE_BF16 ? (uint32_t)h << 16 : sqkv_fp16_to_f32_bits(h);
    float f;
    memcpy(&f, &bits, sizeof f);
    return (double)f;
}

static uint32_t nearest_code_at(const double *levels, uint32_t n_levels, sqkv_dtype e, uint32_t key) {
    return sqkv_quant_nearest_double(levels, n_levels, e_to_double_fast(order_key_to_bits(key), e));
}

/* An E value near x (finite, within the E range): only a starting point for the search. */
static uint16_t near_e(double x, sqkv_dtype e) {
    const float f = (float)x;
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    sqkv_error ignored;
    return e == SQKV_DTYPE_BF16 ? sqkv_f32_bits_to_bf16(bits, &ignored) : sqkv_f32_bits_to_fp16(bits, &ignored);
}

/* Smallest key in (lo, hi] whose code is >= c, knowing code(lo) < c <= code(hi). The first probe is the
 * E value nearest the midpoint of the two levels, where the boundary lies unless binary64 rounding of
 * the distances moved it; the bisection that follows normally ends after one more probe. */
static uint32_t find_threshold(const double *levels, uint32_t n_levels, sqkv_dtype e, uint32_t c,
                               uint32_t lo, uint32_t hi) {
    uint32_t guess = sqkv_e_order_key(near_e(0.5 * (levels[c - 1] + levels[c]), e));
    if (guess <= lo) guess = lo + 1;
    if (guess > hi) guess = hi;
    if (nearest_code_at(levels, n_levels, e, guess) >= c) {
        hi = guess;
        if (hi - 1 > lo && nearest_code_at(levels, n_levels, e, hi - 1) >= c) hi = hi - 1; else lo = hi - 1;
    } else {
        lo = guess;
        if (lo + 1 < hi && nearest_code_at(levels, n_levels, e, lo + 1) < c) lo = lo + 1; else hi = lo + 1;
    }
    while (hi - lo > 1) {
        const uint32_t mid = lo + (hi - lo) / 2;
        if (nearest_code_at(levels, n_levels, e, mid) >= c)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

/* The same threshold for fp16 without probing the reference. fp16 values span 40 binades and 11 bits,
 * so in binary64 the midpoint m of two levels and the distances x - levels[c - 1] and levels[c] - x of
 * an fp16 value x are exact; the reference picks code >= c exactly when levels[c] - x < x - levels[c - 1],
 * i.e. when x > m. The threshold is the smallest key above lo whose value exceeds m. near_e rounds
 * m (through binary32, monotonically) to v0, the largest fp16 value <= m, or v1, the smallest above
 * it: every fp16 value is a binary32 value, so the binary32 rounding cannot pass either. From v0 one or
 * two steps up reach v1 (-0 and +0 have one value and two keys). Not for bf16: its distances round in
 * binary64, and find_threshold asks the reference instead. */
static uint32_t fp16_threshold(const double *levels, uint32_t c, uint32_t lo, uint32_t hi) {
    const double m = 0.5 * (levels[c - 1] + levels[c]);
    uint32_t k = sqkv_e_order_key(near_e(m, SQKV_DTYPE_FP16));
    if (k <= lo) k = lo + 1;
    if (k > hi) k = hi;
    while (k < hi && e_to_double_fast(order_key_to_bits(k), SQKV_DTYPE_FP16) <= m) k++;
    return k;
}

void sqkv_code_table_build(const uint16_t *levels, uint32_t bits, sqkv_dtype e, sqkv_code_table *t) {
    const uint32_t n = 1u << bits;
    double d[SQKV_MAX_LEVELS];
    for (uint32_t c = 0; c < n; c++) d[c] = e_to_double_fast(levels[c], e);
    t->bits = bits;
    t->threshold[0] = 0;
    /* Within a run of equal levels only the first code is ever chosen (ties go to the lower code), so
     * the others share the threshold of the next code that is chosen, or never, at the top. */
    for (uint32_t c = n - 1; c >= 1; c--) {
        if (d[c] == d[c - 1]) {
            t->threshold[c] = c == n - 1 ? SQKV_CODE_NEVER : t->threshold[c + 1];
        } else if (e == SQKV_DTYPE_FP16) {
            t->threshold[c] = fp16_threshold(d, c, sqkv_e_order_key(levels[c - 1]), sqkv_e_order_key(levels[c]));
        } else {
            t->threshold[c] = find_threshold(d, n, e, c, sqkv_e_order_key(levels[c - 1]),
                                             sqkv_e_order_key(levels[c]));
        }
    }
}

/* ---- payload packing --------------------------------------------------------------------------- */

typedef struct bit_packer {
    uint8_t *out;
    uint64_t pos; /* bytes written */
    uint64_t acc;
    uint32_t fill; /* bits in acc, < 64 */
} bit_packer;

/* §7.5: one little-endian bit string. With 3, 5, 6 or 7 bits a code may straddle two words: its high
 * bits start the next one. */
static inline void pack_code(bit_packer *p, uint32_t code, uint32_t bits) {
    p->acc |= (uint64_t)code << p->fill;
    p->fill += bits;
    if (p->fill >= 64) {
        sqkv_store_u64(p->out + p->pos, p->acc);
        p->pos += 8;
        p->fill -= 64;
        p->acc = p->fill ? (uint64_t)code >> (bits - p->fill) : 0;
    }
}

static void pack_flush(bit_packer *p) {
    for (uint32_t i = 0; i * 8 < p->fill; i++) p->out[p->pos + i] = (uint8_t)(p->acc >> (8 * i));
}

#define CODE_CHUNK 256u /* codes computed per pass: a multiple of 64 codes of any width */
#define LUT_MIN_GROUP 16384u

static uint16_t threshold16(const sqkv_code_table *t, uint32_t c) {
    /* A threshold above every key ("never") compares the same as 0xFFFF: no finite value has that key. */
    return (uint16_t)(t->threshold[c] > 0xFFFFu ? 0xFFFFu : t->threshold[c]);
}

/* Order keys of a block of 64 values (sqkv_e_order_key, written so that it vectorizes). */
static void block_keys(const uint16_t *values, uint16_t keys[64]) {
    for (uint32_t k = 0; k < 64; k++) {
        const uint16_t h = values[k];
        keys[k] = (uint16_t)(h ^ ((uint16_t)-(h >> 15) & 0x7FFFu) ^ 0x8000u);
    }
}

/* The byte codes[i] of each value. Code = number of thresholds at or below the key: counted with
 * compares on fixed blocks for 2 and 4 bits (vectorized), looked up in a 64K table (lut, when given) or
 * searched for 8 bits. */
static void codes_from_table(const uint16_t *values, uint32_t n, const sqkv_code_table *t, const uint8_t *lut,
                             uint8_t *codes) {
    uint32_t i = 0;
    if (t->bits == 8 || t->bits == 6 || t->bits == 7) {
        if (lut)
            for (; i < n; i++) codes[i] = lut[sqkv_e_order_key(values[i])];
        for (; i < n; i++) codes[i] = (uint8_t)sqkv_code_lookup(t, values[i]);
        return;
    }
    uint16_t th[32];
    const uint32_t n_thresholds = (1u << t->bits) - 1u;
    for (uint32_t c = 1; c <= n_thresholds; c++) th[c] = threshold16(t, c);
    uint16_t keys[64];
    for (; i + 64 <= n; i += 64) {
        block_keys(values + i, keys);
        uint8_t *out = codes + i;
        if (t->bits == 2) {
            for (uint32_t k = 0; k < 64; k++)
                out[k] = (uint8_t)((keys[k] >= th[1]) + (keys[k] >= th[2]) + (keys[k] >= th[3]));
        } else if (t->bits == 4) {
            for (uint32_t k = 0; k < 64; k++) out[k] = 0;
            for (uint32_t c = 1; c <= 15; c++)
                for (uint32_t k = 0; k < 64; k++) out[k] = (uint8_t)(out[k] + (keys[k] >= th[c]));
        } else { /* 1, 3 or 5 bits */
            for (uint32_t k = 0; k < 64; k++) out[k] = 0;
            for (uint32_t c = 1; c <= n_thresholds; c++)
                for (uint32_t k = 0; k < 64; k++) out[k] = (uint8_t)(out[k] + (keys[k] >= th[c]));
        }
    }
    for (; i < n; i++) codes[i] = (uint8_t)sqkv_code_lookup(t, values[i]);
}

/* code of every order key, from the thresholds (which are non-decreasing). */
static void fill_code_lut(const sqkv_code_table *t, uint8_t *lut) {
    const uint32_t n = 1u << t->bits;
    for (uint32_t c = 0; c < n; c++) {
        const uint32_t from = t->threshold[c] > 0x10000u ? 0x10000u : t->threshold[c];
        const uint32_t next = c + 1 < n ? t->threshold[c + 1] : 0x10000u;
        const uint32_t to = next > 0x10000u ? 0x10000u : next;
        if (to > from) memset(lut + from, (int)c, to - from);
    }
}

/* Eight byte codes (code j in byte j) to 8 * bits bits, code j at bit j * bits. */
static uint64_t compact8(uint64_t x, uint32_t bits) {
    if (bits == 2) {
        x = (x | (x >> 6)) & 0x000F000F000F000Full;
        x = (x | (x >> 12)) & 0x000000FF000000FFull;
        return (x | (x >> 24)) & 0xFFFFull;
    }
    x = (x | (x >> 4)) & 0x00FF00FF00FF00FFull; /* bits == 4 */
    x = (x | (x >> 8)) & 0x0000FFFF0000FFFFull;
    return (x | (x >> 16)) & 0xFFFFFFFFull;
}

static void pack_codes(bit_packer *p, const uint8_t *codes, uint32_t n, uint32_t bits) {
    uint32_t i = 0;
    if (bits != 2 && bits != 4 && bits != 8) { /* compact8 knows 2 and 4; 1, 3, 5, 6, 7 go code by code */
        for (; i < n; i++) pack_code(p, codes[i], bits);
        return;
    }
    while (i < n && p->fill != 0) pack_code(p, codes[i++], bits);
    const uint32_t per_word = 64u / bits;
    for (; i + per_word <= n; i += per_word) {
        uint64_t word = 0;
        if (bits == 8) {
            memcpy(&word, codes + i, sizeof word); /* little-endian machine: byte k = code k */
        } else {
            for (uint32_t q = 0; q < 8; q++) {
                uint64_t x;
                memcpy(&x, codes + i + 8 * q, sizeof x);
                word |= compact8(x, bits) << (8 * bits * q);
                if (8 * (q + 1) == per_word) break;
            }
        }
        sqkv_store_u64(p->out + p->pos, word);
        p->pos += 8;
    }
    for (; i < n; i++) pack_code(p, codes[i], bits);
}

/* Largest magnitude (SYMMETRIC) or smallest and largest value (ASYMMETRIC) of a group, as E bits. */
static uint64_t group_extremes(sqkv_quantizer q, const uint16_t *values, uint64_t n, uint16_t extremes[2]) {
    uint64_t i = 0;
    if (q == SQKV_QUANT_SYMMETRIC) {
        uint16_t max_mag = 0;
        for (; i + 64 <= n; i += 64)
            for (uint32_t k = 0; k < 64; k++) {
                const uint16_t m = values[i + k] & 0x7FFFu;
                max_mag = m > max_mag ? m : max_mag;
            }
        for (; i < n; i++) max_mag = sqkv_e_magnitude(values[i]) > max_mag ? sqkv_e_magnitude(values[i]) : max_mag;
        extremes[0] = max_mag;
        return 1;
    }
    uint16_t lo = 0xFFFFu, hi = 0;
    for (; i + 64 <= n; i += 64)
        for (uint32_t k = 0; k < 64; k++) {
            const uint16_t h = values[i + k];
            const uint16_t key = (uint16_t)(h ^ ((uint16_t)-(h >> 15) & 0x7FFFu) ^ 0x8000u);
            lo = key < lo ? key : lo;
            hi = key > hi ? key : hi;
        }
    for (; i < n; i++) {
        const uint16_t key = (uint16_t)sqkv_e_order_key(values[i]);
        lo = key < lo ? key : lo;
        hi = key > hi ? key : hi;
    }
    extremes[0] = order_key_to_bits(lo);
    extremes[1] = order_key_to_bits(hi);
    return 2;
}

/* Range search (§14): the candidate parameters with the least sum of squared errors over the group,
 * the earlier candidate on ties. Codes are the reference choice for each candidate's levels. */
static void search_range(const sqkv_sparse_input *in, const uint16_t *values, uint64_t n, const uint16_t extremes[2],
                         uint16_t *best_s, uint16_t *best_z) {
    const uint32_t bits = in->payload_bits, n_levels = 1u << bits;
    double best_error = -1.0;
    for (uint32_t i = 0; i < SQKV_RANGE_CANDIDATES; i++) {
        uint16_t s, z, levels[SQKV_MAX_LEVELS];
        sqkv_quant_candidate_params(in->quantizer, bits, in->e, extremes, i, &s, &z);
        if (i == 0) {
            *best_s = s;
            *best_z = z;
        }
        if (sqkv_quant_levels(in->quantizer, bits, in->e, s, z, levels) != SQKV_OK) continue;
        sqkv_code_table table;
        sqkv_code_table_build(levels, bits, in->e, &table);
        double d[SQKV_MAX_LEVELS];
        for (uint32_t c = 0; c < n_levels; c++) d[c] = e_to_double_fast(levels[c], in->e);
        double error = 0.0;
        uint8_t codes[CODE_CHUNK];
        for (uint64_t done = 0; done < n && (best_error < 0 || error < best_error); done += CODE_CHUNK) {
            const uint32_t chunk = n - done < CODE_CHUNK ? (uint32_t)(n - done) : CODE_CHUNK;
            codes_from_table(values + done, chunk, &table, NULL, codes);
            for (uint32_t k = 0; k < chunk; k++) {
                const double diff = e_to_double_fast(values[done + k], in->e) - d[codes[k]];
                error += diff * diff;
            }
        }
        if (best_error < 0 || error < best_error) {
            best_error = error;
            *best_s = s;
            *best_z = z;
        }
    }
}

/* Codes one parameter group: writes its parameters to scales (Q E values) and its codes to the payload. */
static sqkv_error encode_group(const sqkv_sparse_input *in, const uint16_t *values, uint64_t n, uint8_t *scales,
                               sqkv_sparse_scratch *scratch, bit_packer *p) {
    if (n == 0) return SQKV_OK; /* parameters stay +0 (the body is zeroed) */
    const uint32_t bits = in->payload_bits, n_levels = 1u << bits;
    /* sqkv_quant_choose_params depends only on the group's extremes, so those are found here on integer
     * keys and passed alone, instead of converting every value to binary64. */
    uint16_t s, z, extremes[2];
    const uint64_t extreme_count = group_extremes(in->quantizer, values, n, extremes);
    if (in->range_search)
        search_range(in, values, n, extremes, &s, &z);
    else
        sqkv_quant_choose_params(in->quantizer, bits, in->e, extremes, extreme_count, &s, &z);
    sqkv_store_u16(scales, s);
    if (in->quantizer == SQKV_QUANT_ASYMMETRIC) sqkv_store_u16(scales + 2, z);

    uint16_t levels[SQKV_MAX_LEVELS];
    if (sqkv_quant_levels(in->quantizer, bits, in->e, s, z, levels) != SQKV_OK) return SQKV_ERR_SCALE;
    /* bf16 thresholds cost a few reference calls per level, fp16 ones a conversion or two; for small
     * groups asking the reference for each value is cheaper. Both give the same codes. */
    const int use_table = n >= (in->e == SQKV_DTYPE_FP16 ? (n_levels - 1u) / 2u : 3u * (n_levels - 1u));
    sqkv_code_table table;
    double d[SQKV_MAX_LEVELS];
    const uint8_t *lut = NULL;
    if (use_table) {
        sqkv_code_table_build(levels, bits, in->e, &table);
        /* 8-bit codes of a large group: one 64K table beats a search per value. */
        if (bits == 8 && n >= LUT_MIN_GROUP) {
            if (!scratch->code_lut) scratch->code_lut = (uint8_t *)malloc(0x10000u);
            if (scratch->code_lut) {
                fill_code_lut(&table, scratch->code_lut);
                lut = scratch->code_lut;
            }
        }
    } else {
        for (uint32_t c = 0; c < n_levels; c++) d[c] = e_to_double_fast(levels[c], in->e);
    }
    uint8_t codes[CODE_CHUNK];
    for (uint64_t done = 0; done < n; done += CODE_CHUNK) {
        const uint32_t chunk = n - done < CODE_CHUNK ? (uint32_t)(n - done) : CODE_CHUNK;
        if (use_table) {
            codes_from_table(values + done, chunk, &table, lut, codes);
        } else {
            /* A guess from the level formula (exact or off by one), then the reference's choice. */
            const double sd = e_to_double_fast(s, in->e);
            const double base = in->quantizer == SQKV_QUANT_ASYMMETRIC ? e_to_double_fast(z, in->e) : d[0];
            const double per_code = sd > 0 ? (in->quantizer == SQKV_QUANT_ASYMMETRIC ? 1.0 / sd : 0.5 / sd) : 0.0;
            for (uint32_t i = 0; i < chunk; i++) {
                const double x = e_to_double_fast(values[done + i], in->e);
                const double g = (x - base) * per_code + 0.5;
                const uint32_t guess = g > 0 ? (g < (double)n_levels ? (uint32_t)g : n_levels - 1) : 0;
                codes[i] = (uint8_t)sqkv_quant_nearest_double_near(d, n_levels, x, guess);
            }
        }
        pack_codes(p, codes, chunk, bits);
    }
    return SQKV_OK;
}

/* ---- bitmaps ----------------------------------------------------------------------------------- */

/* In-place transpose of a 64x64 bit matrix whose column j is bit 63 - j (row i becomes column i). */
static void transpose64(uint64_t a[64]) {
    uint64_t m = 0x00000000FFFFFFFFull;
    for (unsigned j = 32; j != 0; j >>= 1, m ^= m << j) {
        for (unsigned k = 0; k < 64; k = ((k | j) + 1u) & ~j) {
            const uint64_t t = (a[k] ^ (a[k | j] >> j)) & m;
            a[k] ^= t;
            a[k | j] ^= t << j;
        }
    }
}

/* Prunes the rows of one head and writes its NT tile bitmaps (§7.1 order); returns its kept count. */
static uint64_t head_bitmaps(const sqkv_sparse_input *in, const uint16_t *rows, uint64_t *bm) {
    const uint32_t d = in->head_dim, tc = in->token_count, hb = (d + 63u) / 64u;
    uint64_t kept = 0;
    uint64_t chunk_masks[ROWS_PER_CHUNK * MAX_CHANNEL_BLOCKS];
    for (uint32_t c = 0; c * ROWS_PER_CHUNK < tc; c++) {
        const uint32_t first = c * ROWS_PER_CHUNK;
        const uint32_t rows_here = tc - first < ROWS_PER_CHUNK ? tc - first : ROWS_PER_CHUNK;
        for (uint32_t r = 0; r < rows_here; r++)
            kept += sqkv_prune_row(rows + (uint64_t)(first + r) * d, d, in->keep, chunk_masks + r * hb);
        if (in->tensor == SQKV_TENSOR_V) {
            /* Value tile (chunk c, channel block h, row r) is number 64*HB*c + h*R + r. */
            uint64_t *out = bm + (uint64_t)c * ROWS_PER_CHUNK * hb;
            for (uint32_t h = 0; h < hb; h++)
                for (uint32_t r = 0; r < rows_here; r++) out[h * rows_here + r] = chunk_masks[r * hb + h];
        } else {
            /* Key tile (chunk c, channel ch) is number c*D + ch and holds that channel of the 64 rows:
             * a bit transpose of each 64-row x 64-channel block. Rows past the end stay zero (padding). */
            uint64_t *out = bm + (uint64_t)c * d;
            for (uint32_t h = 0; h < hb; h++) {
                uint64_t block[64];
                for (uint32_t r = 0; r < 64u; r++) block[r] = r < rows_here ? chunk_masks[r * hb + h] : 0;
                transpose64(block);
                const uint32_t channels = d - h * 64u < 64u ? d - h * 64u : 64u;
                memcpy(out + h * 64u, block, channels * sizeof block[0]);
            }
        }
    }
    return kept;
}

/* ALL_KEPT (§7.6): the implied bitmaps of one head, every non-padding element; returns TC * D. */
static uint64_t head_all_kept_bitmaps(const sqkv_sparse_input *in, uint64_t *bm) {
    const uint32_t d = in->head_dim, tc = in->token_count, hb = (d + 63u) / 64u;
    uint64_t t = 0;
    for (uint32_t c0 = 0; c0 < tc; c0 += 64u) {
        const uint32_t rows = tc - c0 < 64u ? tc - c0 : 64u;
        if (in->tensor == SQKV_TENSOR_K) {
            const uint64_t mask = sqkv_valid_mask(rows);
            for (uint32_t ch = 0; ch < d; ch++) bm[t++] = mask;
        } else {
            for (uint32_t h = 0; h < hb; h++) {
                const uint64_t mask = sqkv_valid_mask(d - 64u * h < 64u ? d - 64u * h : 64u);
                for (uint32_t r = 0; r < rows; r++) bm[t++] = mask;
            }
        }
    }
    return (uint64_t)tc * d;
}

/* ---- gather ------------------------------------------------------------------------------------ */

/* Appends the kept values of one head in payload order (tile order, then element index) to out. */
static uint16_t *gather_head(const sqkv_sparse_input *in, const uint16_t *rows, const uint64_t *bm, uint16_t *out) {
    const uint32_t d = in->head_dim, tc = in->token_count, hb = (d + 63u) / 64u;
    for (uint32_t c = 0; c * ROWS_PER_CHUNK < tc; c++) {
        const uint32_t first = c * ROWS_PER_CHUNK;
        const uint32_t rows_here = tc - first < ROWS_PER_CHUNK ? tc - first : ROWS_PER_CHUNK;
        if (in->tensor == SQKV_TENSOR_V) {
            const uint64_t *tiles = bm + (uint64_t)c * ROWS_PER_CHUNK * hb;
            for (uint32_t h = 0; h < hb; h++) {
                for (uint32_t r = 0; r < rows_here; r++) {
                    const uint16_t *base = rows + (uint64_t)(first + r) * d + h * 64u;
                    for (uint64_t word = tiles[h * rows_here + r]; word; ) {
                        const unsigned i = (unsigned)__builtin_clzll(word);
                        *out++ = base[i];
                        word ^= (uint64_t)1 << (63u - i);
                    }
                }
            }
        } else {
            const uint64_t *tiles = bm + (uint64_t)c * d;
            const uint16_t *chunk = rows + (uint64_t)first * d;
            for (uint32_t ch = 0; ch < d; ch++) {
                for (uint64_t word = tiles[ch]; word; ) {
                    const unsigned i = (unsigned)__builtin_clzll(word);
                    *out++ = chunk[(uint64_t)i * d + ch];
                    word ^= (uint64_t)1 << (63u - i);
                }
            }
        }
    }
    return out;
}

/* ---- the section ------------------------------------------------------------------------------- */

sqkv_error sqkv_encode_sparse(const sqkv_sparse_input *in, sqkv_sparse_scratch *scratch, sqkv_section_blob *out) {
    out->bytes = NULL;
    const uint64_t nt = sqkv_tiles_per_head(in->tensor, in->token_count, in->head_dim);
    const uint64_t n_tiles = nt * in->head_count;
    sqkv_error err = reserve((void **)&scratch->bitmaps, &scratch->bitmaps_cap, n_tiles, sizeof(uint64_t));
    if (err == SQKV_OK)
        err = reserve((void **)&scratch->head_kept, &scratch->head_kept_cap, in->head_count, sizeof(uint64_t));
    if (err != SQKV_OK) return err;

    uint64_t total_kept = 0;
    for (uint32_t j = 0; j < in->head_count; j++) {
        scratch->head_kept[j] = in->all_kept ? head_all_kept_bitmaps(in, scratch->bitmaps + j * nt)
                                             : head_bitmaps(in, in->rows + j * in->head_stride, scratch->bitmaps + j * nt);
        total_kept += scratch->head_kept[j];
    }

    sqkv_sparse_layout layout;
    sqkv_sparse_layout_compute_flags(n_tiles, in->offset_interval_log2, (uint32_t)in->quantizer,
                                     (uint32_t)in->granularity, in->payload_bits, in->head_count, total_kept,
                                     in->all_kept, &layout);
    err = sqkv_blob_alloc(out, layout.body_size);
    if (err != SQKV_OK) return err;
    uint8_t *body = sqkv_blob_body(out);

    /* Bitmaps and the offset table (kept counts before every 2^k-th tile, then P); neither is stored
     * with ALL_KEPT. */
    if (!in->all_kept) {
        const uint64_t interval_mask = ((uint64_t)1 << in->offset_interval_log2) - 1u;
        uint64_t running = 0;
        for (uint64_t n = 0; n < n_tiles; n++) {
            const uint64_t bits = scratch->bitmaps[n];
            sqkv_store_u64(body + layout.bitmaps_at + 8 * n, bits);
            if ((n & interval_mask) == 0)
                sqkv_store_u32(body + layout.offsets_at + 4 * (n >> in->offset_interval_log2), (uint32_t)running);
            running += (uint64_t)__builtin_popcountll(bits);
        }
        sqkv_store_u32(body + layout.offsets_at + 4 * (layout.n_offsets - 1), (uint32_t)running);
    }

    /* Kept values in payload order: straight into the payload for EXACT, else into scratch. */
    uint16_t *kept;
    if (in->quantizer == SQKV_QUANT_EXACT) {
        kept = (uint16_t *)(void *)(body + layout.payload_at); /* 8-aligned, little-endian machine */
    } else {
        err = reserve((void **)&scratch->kept, &scratch->kept_cap, total_kept, sizeof(uint16_t));
        if (err != SQKV_OK) {
            sqkv_blob_free(out);
            return err;
        }
        kept = scratch->kept;
    }
    uint16_t *cursor = kept;
    for (uint32_t j = 0; j < in->head_count; j++)
        cursor = gather_head(in, in->rows + j * in->head_stride, scratch->bitmaps + j * nt, cursor);

    if (in->quantizer != SQKV_QUANT_EXACT) {
        bit_packer packer = {body + layout.payload_at, 0, 0, 0};
        const uint64_t group_bytes = 2u * layout.params_per_group;
        uint8_t *scales = body + layout.scales_at;
        const uint16_t *group = kept;
        if (in->granularity == SQKV_SCALE_PER_HEAD) {
            for (uint32_t j = 0; j < in->head_count && err == SQKV_OK; j++) {
                err = encode_group(in, group, scratch->head_kept[j], scales + j * group_bytes, scratch, &packer);
                /* kept is NULL when nothing is kept: advancing it, even by 0, is undefined. */
                if (scratch->head_kept[j]) group += scratch->head_kept[j];
            }
        } else {
            /* PER_TILE: one group per tile; PER_HALF_TILE: elements 0..31 (bits 63..32), then 32..63. */
            const int halves = in->granularity == SQKV_SCALE_PER_HALF_TILE;
            const uint64_t part_masks[2] = {halves ? 0xFFFFFFFF00000000ull : ~0ull, 0x00000000FFFFFFFFull};
            uint8_t *group_scales = scales;
            for (uint64_t n = 0; n < n_tiles && err == SQKV_OK; n++) {
                for (int part = 0; part <= halves && err == SQKV_OK; part++) {
                    const uint64_t count = (uint64_t)__builtin_popcountll(scratch->bitmaps[n] & part_masks[part]);
                    err = encode_group(in, group, count, group_scales, scratch, &packer);
                    group_scales += group_bytes;
                    if (count) group += count;
                }
            }
        }
        if (err != SQKV_OK) {
            sqkv_blob_free(out);
            return err;
        }
        pack_flush(&packer);
    }

    sqkv_section_header *h = &out->header;
    h->kind = SQKV_KIND_SPARSE;
    h->tensor = (uint8_t)in->tensor;
    h->head_count = in->head_count;
    h->token_count = in->token_count;
    h->payload_bits = (uint8_t)in->payload_bits;
    h->quantizer = (uint8_t)in->quantizer;
    h->scale_granularity = (uint8_t)in->granularity;
    h->offset_interval_log2 = (uint8_t)in->offset_interval_log2;
    h->flags = in->all_kept ? SQKV_SECTION_FLAG_ALL_KEPT : 0u;
    return SQKV_OK;
}
