/* decode_sparse.c: SPARSE section bodies (spec/FORMAT.md §7). */
#include "decode_sparse.h"

#include <inttypes.h>
#include <string.h>

#include "element_convert.h"
#include "fp16_levels.h"
#include "float16.h"
#include "quantize.h"
#include "tile_layout.h"

#define TOP_BIT 0x8000000000000000ull
#define FIRST_HALF 0xFFFFFFFF00000000ull  /* elements 0..31 of a tile (§7.4 PER_HALF_TILE) */
#define SECOND_HALF 0x00000000FFFFFFFFull /* elements 32..63 */

/* The bitmap of section tile t: stored, or with ALL_KEPT (§7.6) its non-padding elements. */
static uint64_t tile_bitmap(const sqkv_sparse_view *v, uint64_t t) {
    if (!v->layout.all_kept) return sqkv_rd64(v->body + v->layout.bitmaps_at + 8 * t);
    const sqkv_tile_pos p = sqkv_tile_position((sqkv_tensor)v->h.tensor, v->h.token_count, v->head_dim,
                                               t % v->tiles_per_head);
    return sqkv_valid_mask(p.valid);
}

/* Parameter groups per tile: 0 (PER_HEAD), 1 (PER_TILE) or 2 (PER_HALF_TILE). */
static uint32_t groups_per_tile(uint32_t granularity) {
    return granularity == SQKV_SCALE_PER_TILE ? 1u : granularity == SQKV_SCALE_PER_HALF_TILE ? 2u : 0u;
}

/* Kept elements of group g (numbered in the section) of a per-tile or per-half-tile section. */
static uint64_t group_count(const sqkv_sparse_view *v, uint64_t g, uint32_t per_tile) {
    if (per_tile == 1) return (uint64_t)__builtin_popcountll(tile_bitmap(v, g));
    return (uint64_t)__builtin_popcountll(tile_bitmap(v, g / 2) & (g % 2 ? SECOND_HALF : FIRST_HALF));
}

/* ---------------------------------------------------------------------------------------------
 * Header-level rules
 * ------------------------------------------------------------------------------------------- */

sqkv_error sqkv_sparse_check_fields(const sqkv_section_header *h, uint32_t features, sqkv_diag *diag) {
    const uint32_t b = h->payload_bits;
    if (!((b >= 1 && b <= 8) || b == 16))
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "payload_bits %" PRIu32 " (§5: 1 to 8 or 16)", b);
    if (b != 2 && b != 4 && b != 8 && b != 16 && !(features & SQKV_FEATURE_CODE_WIDTHS))
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "payload_bits %" PRIu32 " needs the CODE_WIDTHS feature,"
                              " which the file header does not declare (§4.1)", b);
    if (h->offset_interval_log2 > SQKV_MAX_OFFSET_INTERVAL_LOG2)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "offset_interval_log2 %u (§5: 0 to 20)",
                              h->offset_interval_log2);
    if (h->flags & ~(uint32_t)SQKV_SECTION_FLAG_ALL_KEPT)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "flags 0x%08" PRIx32 " (§5: only bit 0, ALL_KEPT, is"
                              " defined)", h->flags);
    const int all_kept = (h->flags & SQKV_SECTION_FLAG_ALL_KEPT) != 0;
    if (all_kept && !(features & SQKV_FEATURE_ALL_KEPT))
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "flag ALL_KEPT needs the ALL_KEPT feature, which the"
                              " file header does not declare (§4.1)");
    if (all_kept && h->offset_interval_log2 != 0)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "offset_interval_log2 %u with ALL_KEPT (§7.6: must be"
                              " 0, there is no offset table)", h->offset_interval_log2);
    if (h->scale_granularity == SQKV_SCALE_PER_HALF_TILE && !(features & SQKV_FEATURE_HALF_TILE_SCALES))
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "scale_granularity 3 (PER_HALF_TILE) needs the"
                              " HALF_TILE_SCALES feature, which the file header does not declare (§4.1)");
    const int exact_ok = h->quantizer == SQKV_QUANT_EXACT && h->scale_granularity == SQKV_SCALE_NONE && b == 16 &&
                         !all_kept;
    const int quant_ok = (h->quantizer == SQKV_QUANT_SYMMETRIC || h->quantizer == SQKV_QUANT_ASYMMETRIC) &&
                         (h->scale_granularity == SQKV_SCALE_PER_HEAD || h->scale_granularity == SQKV_SCALE_PER_TILE ||
                          h->scale_granularity == SQKV_SCALE_PER_HALF_TILE) &&
                         b != 16;
    if (!exact_ok && !quant_ok)
        return sqkv_diag_fail(diag, SQKV_ERR_PAYLOAD_PARAMS, "quantizer %u, scale_granularity %u, payload_bits %" PRIu32
                              "%s is not a valid combination (§7.4, §7.6)", h->quantizer, h->scale_granularity, b,
                              all_kept ? " with ALL_KEPT" : "");
    return SQKV_OK;
}

void sqkv_sparse_layout_of(const sqkv_section_header *h, uint32_t head_dim, uint64_t kept, sqkv_sparse_layout *l) {
    const uint64_t nt = sqkv_tiles_per_head((sqkv_tensor)h->tensor, h->token_count, head_dim);
    sqkv_sparse_layout_compute_flags(nt * h->head_count, h->offset_interval_log2, h->quantizer, h->scale_granularity,
                                     h->payload_bits, h->head_count, kept,
                                     (h->flags & SQKV_SECTION_FLAG_ALL_KEPT) != 0, l);
}

uint64_t sqkv_sparse_all_kept_count(const sqkv_section_header *h, uint32_t head_dim) {
    return (uint64_t)h->head_count * h->token_count * head_dim;
}

sqkv_error sqkv_sparse_check_size_bounds(const sqkv_section_header *h, uint32_t head_dim, sqkv_diag *diag) {
    sqkv_sparse_layout lo, hi;
    /* With ALL_KEPT the kept count is known, so the size is exact. */
    const int all_kept = (h->flags & SQKV_SECTION_FLAG_ALL_KEPT) != 0;
    sqkv_sparse_layout_of(h, head_dim, all_kept ? sqkv_sparse_all_kept_count(h, head_dim) : 0, &lo);
    sqkv_sparse_layout_of(h, head_dim, sqkv_sparse_all_kept_count(h, head_dim), &hi);
    if (h->decoded_size < lo.body_size || h->decoded_size > hi.body_size || h->decoded_size % 8 != 0)
        return sqkv_diag_fail(diag, SQKV_ERR_SIZE_MISMATCH, "decoded_size %" PRIu64 " is not a multiple of 8 in %" PRIu64 "..%" PRIu64
                              ", the sizes of this section with no or every element kept (§7.2)",
                              h->decoded_size, lo.body_size, hi.body_size);
    return SQKV_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Levels (§7.4): the formula of quantize.c's sqkv_quant_levels, split so that validation computes one
 * level per group, SYMMETRIC tables half of theirs, and 8-bit PER_TILE decoding only the levels used.
 * ------------------------------------------------------------------------------------------- */

typedef struct group_params {
    sqkv_quantizer q;
    uint32_t bits;
    sqkv_dtype e;
} group_params;

static SQKV_ALWAYS_INLINE uint16_t level_of(const group_params *g, double s, double z, uint32_t c) {
    if (g->q == SQKV_QUANT_SYMMETRIC)
        return sqkv_double_to_e((double)((int32_t)(2 * c + 1) - (int32_t)(1u << g->bits)) * s, g->e);
    /* c * s is exact, so a fused multiply-add would round the same single time. */
    const double product = (double)c * s;
    return sqkv_double_to_e(product + z, g->e);
}

/* §7.4 SCALE rules for a group with kept elements: s finite with a clear sign bit, z finite, every
 * level finite. Levels are non-decreasing in c (s >= 0, both roundings monotonic) and level(0) is
 * -level(L-1) (SYMMETRIC) or z (ASYMMETRIC), so every level is finite iff the top one is. */
static int group_valid(const group_params *g, uint16_t s, uint16_t z) {
    if (!sqkv_e_is_finite(s, g->e) || (s & 0x8000u)) return 0;
    if (g->q == SQKV_QUANT_ASYMMETRIC && !sqkv_e_is_finite(z, g->e)) return 0;
    const double sd = sqkv_e_to_double(s, g->e);
    const double zd = g->q == SQKV_QUANT_ASYMMETRIC ? sqkv_e_to_double(z, g->e) : 0.0;
    return sqkv_e_is_finite(level_of(g, sd, zd, (1u << g->bits) - 1), g->e);
}

/* Output bits of every level of a valid group. SYMMETRIC levels are odd multiples of s and RNE is
 * symmetric, so the lower half is the upper half with the sign bit flipped. */
static void build_table(const group_params *g, uint16_t s, uint16_t z, sqkv_conversion conv, uint32_t *table) {
    const double sd = sqkv_e_to_double(s, g->e);
    const uint32_t n = 1u << g->bits;
    if (g->e == SQKV_DTYPE_FP16) { /* the whole table in one vector pass where the processor has one */
        uint16_t all[SQKV_MAX_LEVELS];
        const int symmetric = g->q == SQKV_QUANT_SYMMETRIC;
        if (sqkv_fp16_affine_levels()(sd, symmetric ? 0.0 : sqkv_e_to_double(z, g->e), symmetric, n, all)) {
            if (conv == SQKV_CONV_COPY16) {
                for (uint32_t c = 0; c < n; c++) table[c] = all[c];
            } else {
                for (uint32_t c = 0; c < n; c++) table[c] = sqkv_convert_element(all[c], conv);
            }
            return;
        }
    }
    /* The exact binary64 values of §7.4 first (products of an integer of at most 9 bits and an E value,
     * and for ASYMMETRIC one addition), then one rounding each: in hardware for fp16 when it can
     * (fp16_levels.h), else in software. */
    double x[SQKV_MAX_LEVELS];
    uint16_t levels[SQKV_MAX_LEVELS];
    const int symmetric = g->q == SQKV_QUANT_SYMMETRIC;
    const uint32_t first = symmetric ? n / 2 : 0, count = n - first;
    const double zd = symmetric ? 0.0 : sqkv_e_to_double(z, g->e);
    for (uint32_t c = first; c < n; c++)
        x[c - first] = symmetric ? (double)((int32_t)(2 * c + 1) - (int32_t)n) * sd : (double)c * sd + zd;
    if (!(g->e == SQKV_DTYPE_FP16 && sqkv_fp16_levels()(x, count, levels)))
        for (uint32_t i = 0; i < count; i++) levels[i] = sqkv_double_to_e(x[i], g->e);
    for (uint32_t c = first; c < n; c++) {
        table[c] = sqkv_convert_element(levels[c - first], conv);
        /* SYMMETRIC levels are odd multiples of s and RNE is symmetric: the lower half mirrors. */
        if (symmetric) table[n - 1 - c] = sqkv_convert_element((uint16_t)(levels[c - first] ^ 0x8000u), conv);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Validation
 * ------------------------------------------------------------------------------------------- */

/* What one pass over the bitmaps finds: P, kept elements per head, and the first tile whose padding
 * bits are set and the first offset entry that disagrees (reported later, in the spec's order). */
typedef struct bitmap_scan {
    uint64_t kept;
    uint64_t bad_padding_tile; /* UINT64_MAX: none */
    uint64_t bad_offset_entry; /* UINT64_MAX: none */
    uint64_t bad_offset_value, bad_offset_expected;
} bitmap_scan;

/* Tiles in section order, one head after the other, each with the mask of its non-padding bits
 * (§7.1). Keys: padding only in the last token chunk; values: only in the last channel block. */
static void scan_bitmaps(const uint8_t *body, const sqkv_section_header *h, uint32_t D, const sqkv_sparse_layout *l,
                         uint64_t *head_first, bitmap_scan *s) {
    const uint8_t *bitmaps = body + l->bitmaps_at, *offsets = body + l->offsets_at;
    const uint32_t k = h->offset_interval_log2, TC = h->token_count;
    const uint64_t interval_mask = ((uint64_t)1 << k) - 1;
    uint64_t t = 0, running = 0;
    s->bad_padding_tile = s->bad_offset_entry = UINT64_MAX;
#define VISIT_TILE(mask)                                                                                   \
    do {                                                                                                   \
        const uint64_t bm = sqkv_rd64(bitmaps + 8 * t);                                                    \
        if ((t & interval_mask) == 0 && s->bad_offset_entry == UINT64_MAX) {                               \
            const uint32_t entry = sqkv_rd32(offsets + 4 * (t >> k));                                      \
            if (entry != running) {                                                                        \
                s->bad_offset_entry = t >> k;                                                              \
                s->bad_offset_value = entry;                                                               \
                s->bad_offset_expected = running;                                                          \
            }                                                                                              \
        }                                                                                                  \
        if ((bm & ~(mask)) && s->bad_padding_tile == UINT64_MAX) s->bad_padding_tile = t;                  \
        running += (uint64_t)__builtin_popcountll(bm);                                                     \
        t++;                                                                                               \
    } while (0)
    for (uint32_t j = 0; j < h->head_count; j++) {
        head_first[j] = running;
        if (h->tensor == SQKV_TENSOR_K) {
            for (uint32_t c0 = 0; c0 < TC; c0 += 64) {
                const uint64_t mask = sqkv_valid_mask(TC - c0 < 64 ? TC - c0 : 64);
                for (uint32_t d = 0; d < D; d++) VISIT_TILE(mask);
            }
        } else {
            const uint32_t hb = (D + 63) / 64;
            for (uint32_t q0 = 0; q0 < TC; q0 += 64) {
                const uint32_t rows = TC - q0 < 64 ? TC - q0 : 64;
                for (uint32_t cb = 0; cb < hb; cb++) {
                    const uint64_t mask = sqkv_valid_mask(D - 64 * cb < 64 ? D - 64 * cb : 64);
                    for (uint32_t r = 0; r < rows; r++) VISIT_TILE(mask);
                }
            }
        }
    }
#undef VISIT_TILE
    head_first[h->head_count] = running;
    s->kept = running;
    /* Entry M counts every tile: it must be P (no tile index reaches M * 2^k). */
    const uint64_t m = l->n_offsets - 1;
    if (s->bad_offset_entry == UINT64_MAX) {
        const uint32_t last = sqkv_rd32(offsets + 4 * m);
        if (last != running) {
            s->bad_offset_entry = m;
            s->bad_offset_value = last;
            s->bad_offset_expected = running;
        }
    }
}

static sqkv_error check_zero(const uint8_t *body, uint64_t from, uint64_t to, const char *what, sqkv_diag *diag) {
    if (!sqkv_all_zero(body + from, to - from))
        return sqkv_diag_fail(diag, SQKV_ERR_PADDING, "padding after the %s stream is not zero (§7.2)", what);
    return SQKV_OK;
}

/* Non-padding elements of each tile of a head, in section order (§7.1), without a division per tile:
 * keys have 64 except in the last token chunk, values 64 except in the last channel block. */
typedef struct tile_walk {
    sqkv_tensor tensor;
    uint32_t token_count, head_dim, channel_blocks;
    uint32_t a, b, c; /* keys: channel d, chunk; values: row r, channel block, token block */
} tile_walk;

static void tile_walk_start(tile_walk *w, sqkv_tensor tensor, uint32_t token_count, uint32_t head_dim) {
    w->tensor = tensor;
    w->token_count = token_count;
    w->head_dim = head_dim;
    w->channel_blocks = (head_dim + 63) / 64;
    w->a = w->b = w->c = 0;
}

/* The current tile's count; then on to the next tile (past the head's last one, the next head's first). */
static uint32_t tile_walk_next(tile_walk *w) {
    if (w->tensor == SQKV_TENSOR_K) {
        const uint32_t left = w->token_count - 64 * w->b, valid = left < 64 ? left : 64;
        if (++w->a == w->head_dim) {
            w->a = 0;
            if (++w->b * 64 >= w->token_count) w->b = 0;
        }
        return valid;
    }
    const uint32_t left = w->head_dim - 64 * w->b, valid = left < 64 ? left : 64;
    const uint32_t rows_left = w->token_count - 64 * w->c, rows = rows_left < 64 ? rows_left : 64;
    if (++w->a == rows) {
        w->a = 0;
        if (++w->b == w->channel_blocks) {
            w->b = 0;
            if (++w->c * 64 >= w->token_count) w->c = 0;
        }
    }
    return valid;
}

static sqkv_error check_scales(const sqkv_sparse_view *v, sqkv_diag *diag) {
    const sqkv_section_header *h = &v->h;
    const group_params g = {(sqkv_quantizer)h->quantizer, h->payload_bits, v->e};
    const uint32_t q = v->layout.params_per_group;
    const uint8_t *scales = v->body + v->layout.scales_at;
    const uint32_t per_tile = groups_per_tile(h->scale_granularity);
    /* ALL_KEPT: each tile's implied bitmap from a running walk (tile_bitmap would divide per group) */
    tile_walk walk;
    tile_walk_start(&walk, (sqkv_tensor)h->tensor, h->token_count, v->head_dim);
    uint64_t implied = 0;
    for (uint64_t group = 0; group < v->layout.n_groups; group++) {
        const uint8_t *p = scales + 2 * q * group;
        const uint16_t s = sqkv_rd16(p), z = q == 2 ? sqkv_rd16(p + 2) : 0;
        if (v->layout.all_kept && per_tile && group % per_tile == 0) implied = sqkv_valid_mask(tile_walk_next(&walk));
        const uint64_t half = group % 2 ? SECOND_HALF : FIRST_HALF;
        const int empty = per_tile == 0                ? v->head_first[group + 1] == v->head_first[group]
                          : v->layout.all_kept      ? (per_tile == 1 ? implied : implied & half) == 0
                                                    : group_count(v, group, per_tile) == 0;
        if (empty ? (s != 0 || z != 0) : !group_valid(&g, s, z)) {
            const char *unit = per_tile == 0 ? "head" : per_tile == 1 ? "tile" : "half tile";
            const char *rule = empty ? "must be +0 in a group without kept elements"
                                     : "must be finite, s not negative, and give finite levels";
            if (q == 2)
                return sqkv_diag_fail(diag, SQKV_ERR_SCALE, "%s %" PRIu64 ": parameters s = 0x%04x, z = 0x%04x %s (§7.4)",
                                      unit, group, s, z, rule);
            return sqkv_diag_fail(diag, SQKV_ERR_SCALE, "%s %" PRIu64 ": parameter s = 0x%04x %s (§7.4)", unit, group, s,
                                  rule);
        }
    }
    return SQKV_OK;
}

sqkv_error sqkv_sparse_validate(const uint8_t *body, const sqkv_section_header *h, uint32_t head_dim,
                                sqkv_dtype e, sqkv_sparse_view *v, sqkv_diag *diag) {
    v->body = body;
    v->h = *h;
    v->e = e;
    v->head_dim = head_dim;
    v->tiles_per_head = sqkv_tiles_per_head((sqkv_tensor)h->tensor, h->token_count, head_dim);
    sqkv_sparse_layout *l = &v->layout;
    sqkv_sparse_layout_of(h, head_dim, 0, l); /* stream offsets before the payload do not depend on P */

    bitmap_scan scan = {0, UINT64_MAX, UINT64_MAX, 0, 0};
    if (l->all_kept) { /* §7.6: nothing to scan, every head holds TC * D elements */
        const uint64_t per_head = (uint64_t)h->token_count * head_dim;
        for (uint32_t j = 0; j <= h->head_count; j++) v->head_first[j] = j * per_head;
        scan.kept = sqkv_sparse_all_kept_count(h, head_dim);
    } else {
        scan_bitmaps(body, h, head_dim, l, v->head_first, &scan);
    }
    sqkv_sparse_layout_of(h, head_dim, scan.kept, l);
    if (l->body_size != h->decoded_size)
        return sqkv_diag_fail(diag, SQKV_ERR_SIZE_MISMATCH, "decoded_size %" PRIu64 ", but %" PRIu64
                              " kept elements make the body %" PRIu64 " bytes (§7.2)", h->decoded_size, scan.kept,
                              l->body_size);
    sqkv_error err;
    if ((err = check_zero(body, l->offsets_at + 4 * l->n_offsets, l->scales_at, "offsets", diag))) return err;
    if ((err = check_zero(body, l->scales_at + 2 * l->n_groups * l->params_per_group, l->payload_at, "scales", diag)))
        return err;
    if ((err = check_zero(body, l->payload_at + l->payload_bytes, l->body_size, "payload", diag))) return err;
    if (scan.bad_padding_tile != UINT64_MAX)
        return sqkv_diag_fail(diag, SQKV_ERR_BITMAP_PADDING, "tile %" PRIu64 " marks a padding element as kept (§7.2)",
                              scan.bad_padding_tile);
    if (scan.bad_offset_entry != UINT64_MAX)
        return sqkv_diag_fail(diag, SQKV_ERR_OFFSET_MISMATCH, "offset entry %" PRIu64 " is %" PRIu64
                              ", the bitmaps give %" PRIu64 " (§7.3)", scan.bad_offset_entry, scan.bad_offset_value,
                              scan.bad_offset_expected);
    if ((err = check_scales(v, diag))) return err;

    const uint8_t *payload = body + l->payload_at;
    const uint64_t used_bits = scan.kept * h->payload_bits;
    if (used_bits % 8 && (payload[l->payload_bytes - 1] >> (used_bits % 8)) != 0)
        return sqkv_diag_fail(diag, SQKV_ERR_PADDING, "bits after the last code are not zero (§7.5)");
    if (h->quantizer == SQKV_QUANT_EXACT) {
        for (uint64_t i = 0; i < scan.kept; i++) {
            const uint16_t x = sqkv_rd16(payload + 2 * i);
            if (sqkv_e_magnitude(x) == 0 || !sqkv_e_is_finite(x, e))
                return sqkv_diag_fail(diag, SQKV_ERR_VALUE, "kept element %" PRIu64 " is 0x%04x: EXACT values must be"
                                      " finite and nonzero (§7.5)", i, x);
        }
    }
    return SQKV_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Payload codes
 * ------------------------------------------------------------------------------------------- */

/* Sequential reader of b-bit codes from the payload's little-endian bit string (§7.5). With b = 2, 4
 * or 8 a code never straddles a 64-bit word; with 1, 3, 5, 6 or 7 one may, and its high bits come from
 * the next word. A word is read only when a code needs bits from it, so the reader never reads past
 * align8(payload_bytes). */
typedef struct code_reader {
    const uint8_t *payload;
    uint64_t next_word;
    uint64_t buf;   /* unread bits, lowest first */
    uint32_t avail; /* valid bits in buf */
    uint32_t skip;  /* bits of the first word before the first code (until that word is read) */
} code_reader;

static inline void code_reader_init(code_reader *cr, const uint8_t *payload, uint64_t element, uint32_t bits) {
    const uint64_t bit = element * bits;
    cr->payload = payload;
    cr->next_word = bit >> 6;
    cr->skip = (uint32_t)(bit & 63);
    cr->avail = 0;
    cr->buf = 0;
}

static SQKV_ALWAYS_INLINE uint32_t code_reader_next(code_reader *cr, const uint32_t bits) {
    const uint32_t mask = (1u << bits) - 1;
    if (cr->avail >= bits) {
        const uint32_t code = (uint32_t)cr->buf & mask;
        cr->buf >>= bits;
        cr->avail -= bits;
        return code;
    }
    uint64_t word = sqkv_rd64(cr->payload + 8 * cr->next_word++);
    uint32_t fresh = 64;
    if (cr->skip) { /* the reader's first word: its first code starts at bit skip */
        word >>= cr->skip;
        fresh = 64 - cr->skip;
        cr->skip = 0;
        if (fresh < bits) { /* that code straddles into the next word */
            const uint64_t next = sqkv_rd64(cr->payload + 8 * cr->next_word++);
            const uint32_t code = (uint32_t)(word | (next << fresh)) & mask;
            cr->buf = next >> (bits - fresh);
            cr->avail = 64 - (bits - fresh);
            return code;
        }
    }
    /* avail < bits <= 8 and fresh >= bits: the code is the old bits, then the new word's low bits. */
    const uint32_t code = (uint32_t)(cr->buf | (word << cr->avail)) & mask;
    const uint32_t used = bits - cr->avail;
    cr->buf = word >> used;
    cr->avail = fresh - used;
    return code;
}

/* ---------------------------------------------------------------------------------------------
 * Decoding kernels: one head of one section into its [token_count, head_dim] output block. Each is
 * instantiated for constant (bits, output size, parameter groups per tile, conversion) so the inner
 * loop has no branches but the bitmap's; widths 1, 3, 5, 6, 7 share one kernel with the width read at
 * run time (bits == 0 below).
 * ------------------------------------------------------------------------------------------- */

typedef struct head_job {
    const uint8_t *bitmaps;  /* the head's first tile; NULL with ALL_KEPT (bitmaps implied) */
    const uint8_t *scales;   /* per-tile groups: the parameters of the head's first group */
    const uint8_t *payload;
    uint64_t first_element;  /* the head's first kept element */
    uint32_t token_count, head_dim;
    uint8_t *out;
    const uint32_t *table;   /* PER_HEAD: output bits of the head's levels */
    group_params g;          /* per-tile groups: how to build each group's table */
    uint32_t params_per_group;
    sqkv_conversion conv;
} head_job;

static SQKV_ALWAYS_INLINE void store(uint8_t *p, uint32_t value, const size_t osz) {
    if (osz == 2) {
        const uint16_t v16 = (uint16_t)value;
        memcpy(p, &v16, 2);
    } else {
        memcpy(p, &value, 4);
    }
}

/* The state a kernel carries from one kept element to the next. */
typedef struct element_source {
    code_reader cr;
    uint64_t element; /* EXACT: next element */
    const uint8_t *payload;
} element_source;

static SQKV_ALWAYS_INLINE uint32_t next_value(element_source *src, const uint32_t *table, const uint32_t bits,
                                              const sqkv_conversion conv) {
    if (bits == 16) return sqkv_convert_element(sqkv_rd16(src->payload + 2 * src->element++), conv);
    return table[code_reader_next(&src->cr, bits)];
}

static SQKV_ALWAYS_INLINE const uint32_t *group_table(const head_job *j, uint64_t group, uint32_t *buf) {
    const uint8_t *p = j->scales + 2 * (uint64_t)j->params_per_group * group;
    build_table(&j->g, sqkv_rd16(p), j->params_per_group == 2 ? sqkv_rd16(p + 2) : 0, j->conv, buf);
    return buf;
}

/* 8-bit per-tile groups: a group uses at most 64 of 256 levels, so levels are computed per element. */
typedef struct lazy_levels {
    double s, z;
} lazy_levels;

static SQKV_ALWAYS_INLINE lazy_levels group_params_of(const head_job *j, uint64_t group) {
    const uint8_t *p = j->scales + 2 * (uint64_t)j->params_per_group * group;
    lazy_levels l;
    l.s = sqkv_e_to_double(sqkv_rd16(p), j->g.e);
    l.z = j->params_per_group == 2 ? sqkv_e_to_double(sqkv_rd16(p + 2), j->g.e) : 0.0;
    return l;
}

static SQKV_ALWAYS_INLINE void init_source(element_source *src, const head_job *j, const uint32_t bits) {
    src->payload = j->payload;
    src->element = j->first_element;
    code_reader_init(&src->cr, j->payload, j->first_element, bits); /* reads nothing; unused for 16 bits */
}

/* The kept elements of one group (bm: their bits, in element order) to dst + i * stride. */
static SQKV_ALWAYS_INLINE void emit_group(const head_job *j, uint64_t group, uint64_t bm, uint8_t *dst, size_t stride,
                                          element_source *src, uint32_t *buf, const uint32_t bits, const size_t osz,
                                          const uint32_t per_tile, const sqkv_conversion conv) {
    if (per_tile && bits == 8) {
        const lazy_levels l = group_params_of(j, group);
        do {
            const unsigned i = (unsigned)__builtin_clzll(bm);
            bm &= ~(TOP_BIT >> i);
            const uint32_t code = code_reader_next(&src->cr, 8);
            store(dst + i * stride, sqkv_convert_element(level_of(&j->g, l.s, l.z, code), j->conv), osz);
        } while (bm);
        return;
    }
    const uint32_t *table = per_tile ? group_table(j, group, buf) : j->table;
    if (!j->bitmaps) { /* ALL_KEPT (§7.6): the implied bitmap is one run of elements, a plain loop */
        const unsigned end = 64u - (unsigned)__builtin_ctzll(bm);
        for (unsigned i = (unsigned)__builtin_clzll(bm); i < end; i++)
            store(dst + i * stride, next_value(src, table, bits, conv), osz);
        return;
    }
    do {
        const unsigned i = (unsigned)__builtin_clzll(bm);
        bm &= ~(TOP_BIT >> i);
        store(dst + i * stride, next_value(src, table, bits, conv), osz);
    } while (bm);
}

/* Tile t of the head (bitmap bm, not zero): one group, or its two halves with PER_HALF_TILE. */
static SQKV_ALWAYS_INLINE void emit_tile(const head_job *j, uint64_t t, uint64_t bm, uint8_t *dst, size_t stride,
                                         element_source *src, uint32_t *buf, const uint32_t bits, const size_t osz,
                                         const uint32_t per_tile, const sqkv_conversion conv) {
    if (per_tile == 2) {
        if (bm & FIRST_HALF) emit_group(j, 2 * t, bm & FIRST_HALF, dst, stride, src, buf, bits, osz, 2, conv);
        if (bm & SECOND_HALF) emit_group(j, 2 * t + 1, bm & SECOND_HALF, dst, stride, src, buf, bits, osz, 2, conv);
        return;
    }
    emit_group(j, t, bm, dst, stride, src, buf, bits, osz, per_tile, conv);
}

/* Keys: a 64-token chunk is a [64, D] block of the output (cache-sized); tile (chunk, d) scatters down
 * column d of it. */
static SQKV_ALWAYS_INLINE void key_head(const head_job *j, const uint32_t bits, const size_t osz,
                                        const uint32_t per_tile, const sqkv_conversion conv) {
    const uint32_t D = j->head_dim, TC = j->token_count;
    const size_t row = (size_t)D * osz;
    element_source src;
    init_source(&src, j, bits);
    uint32_t buf[SQKV_MAX_LEVELS];
    uint64_t t = 0;
    for (uint32_t c0 = 0; c0 < TC; c0 += 64) {
        const uint32_t rows = TC - c0 < 64 ? TC - c0 : 64;
        const uint64_t implied = sqkv_valid_mask(rows);
        uint8_t *block = j->out + (size_t)c0 * row;
        memset(block, 0, rows * row);
        for (uint32_t d = 0; d < D; d++, t++) {
            const uint64_t bm = j->bitmaps ? sqkv_rd64(j->bitmaps + 8 * t) : implied;
            if (bm) emit_tile(j, t, bm, block + (size_t)d * osz, row, &src, buf, bits, osz, per_tile, conv);
        }
    }
}

/* Values: a 64-token block of the output is filled by its tiles, each one run of a token's row. */
static SQKV_ALWAYS_INLINE void value_head(const head_job *j, const uint32_t bits, const size_t osz,
                                          const uint32_t per_tile, const sqkv_conversion conv) {
    const uint32_t D = j->head_dim, TC = j->token_count, hb = (D + 63) / 64;
    const size_t row = (size_t)D * osz;
    element_source src;
    init_source(&src, j, bits);
    uint32_t buf[SQKV_MAX_LEVELS];
    uint64_t t = 0;
    for (uint32_t q0 = 0; q0 < TC; q0 += 64) {
        const uint32_t rows = TC - q0 < 64 ? TC - q0 : 64;
        uint8_t *block = j->out + (size_t)q0 * row;
        memset(block, 0, rows * row);
        for (uint32_t cb = 0; cb < hb; cb++) {
            const uint64_t implied = sqkv_valid_mask(D - 64 * cb < 64 ? D - 64 * cb : 64);
            for (uint32_t r = 0; r < rows; r++, t++) {
                const uint64_t bm = j->bitmaps ? sqkv_rd64(j->bitmaps + 8 * t) : implied;
                if (bm) emit_tile(j, t, bm, block + r * row + (size_t)cb * 64 * osz, osz, &src, buf, bits, osz, per_tile,
                                  conv);
            }
        }
    }
}

typedef void (*head_kernel)(const head_job *);

/* B = 0: the width is read from the job (1, 3, 5, 6, 7 bits). */
#define QUANT_KERNELS(B, O, PT)                                                                           \
    static void key_##B##_##O##_##PT(const head_job *j) {                                                 \
        key_head(j, B ? B : j->g.bits, O, PT, SQKV_CONV_COPY16);                                          \
    }                                                                                                     \
    static void value_##B##_##O##_##PT(const head_job *j) {                                               \
        value_head(j, B ? B : j->g.bits, O, PT, SQKV_CONV_COPY16);                                        \
    }
#define QUANT_KERNELS_GRANULARITIES(B, O) QUANT_KERNELS(B, O, 0) QUANT_KERNELS(B, O, 1) QUANT_KERNELS(B, O, 2)
#define QUANT_KERNELS_OUTPUTS(B) QUANT_KERNELS_GRANULARITIES(B, 2) QUANT_KERNELS_GRANULARITIES(B, 4)
QUANT_KERNELS_OUTPUTS(2)
QUANT_KERNELS_OUTPUTS(4)
QUANT_KERNELS_OUTPUTS(8)
QUANT_KERNELS_OUTPUTS(0)
#undef QUANT_KERNELS_OUTPUTS
#undef QUANT_KERNELS_GRANULARITIES
#undef QUANT_KERNELS

#define EXACT_KERNELS(C, O)                                                                       \
    static void key_exact_##C(const head_job *j) { key_head(j, 16, O, 0, C); }                    \
    static void value_exact_##C(const head_job *j) { value_head(j, 16, O, 0, C); }
EXACT_KERNELS(SQKV_CONV_COPY16, 2)
EXACT_KERNELS(SQKV_CONV_FP16_TO_F32, 4)
EXACT_KERNELS(SQKV_CONV_BF16_TO_F32, 4)
EXACT_KERNELS(SQKV_CONV_FP16_TO_BF16, 2)
EXACT_KERNELS(SQKV_CONV_BF16_TO_FP16, 2)
#undef EXACT_KERNELS

#define KERNEL_ROW(T, B) {{T##_##B##_2_0, T##_##B##_2_1, T##_##B##_2_2}, {T##_##B##_4_0, T##_##B##_4_1, T##_##B##_4_2}}
/* [tensor][width: 2, 4, 8, other][output size 2/4][parameter groups per tile 0/1/2] */
static const head_kernel quant_kernels[2][4][2][3] = {
    {KERNEL_ROW(key, 2), KERNEL_ROW(key, 4), KERNEL_ROW(key, 8), KERNEL_ROW(key, 0)},
    {KERNEL_ROW(value, 2), KERNEL_ROW(value, 4), KERNEL_ROW(value, 8), KERNEL_ROW(value, 0)},
};
#undef KERNEL_ROW
/* [tensor][conversion] */
static const head_kernel exact_kernels[2][5] = {
    {key_exact_SQKV_CONV_COPY16, key_exact_SQKV_CONV_FP16_TO_F32, key_exact_SQKV_CONV_BF16_TO_F32,
     key_exact_SQKV_CONV_FP16_TO_BF16, key_exact_SQKV_CONV_BF16_TO_FP16},
    {value_exact_SQKV_CONV_COPY16, value_exact_SQKV_CONV_FP16_TO_F32, value_exact_SQKV_CONV_BF16_TO_F32,
     value_exact_SQKV_CONV_FP16_TO_BF16, value_exact_SQKV_CONV_BF16_TO_FP16},
};

static int width_index(uint32_t bits) { return bits == 2 ? 0 : bits == 4 ? 1 : bits == 8 ? 2 : 3; }

/* ---------------------------------------------------------------------------------------------
 * Walking the parameter groups of one head in payload order, for the two slow paths below.
 * ------------------------------------------------------------------------------------------- */

/* Calls visit(ctx, table, count) for each group of head j that has kept elements, in payload order,
 * with the E bits of its levels. */
typedef void (*group_visitor)(void *ctx, const uint32_t *table, uint32_t bits, uint64_t count, code_reader *cr);

static void for_each_group(const sqkv_sparse_view *v, uint32_t j, group_visitor visit, void *ctx) {
    const sqkv_section_header *h = &v->h;
    const sqkv_sparse_layout *l = &v->layout;
    const group_params g = {(sqkv_quantizer)h->quantizer, h->payload_bits, v->e};
    const uint32_t q = l->params_per_group, per_tile = groups_per_tile(h->scale_granularity);
    const uint8_t *scales = v->body + l->scales_at;
    uint32_t table[SQKV_MAX_LEVELS];
    code_reader cr;
    code_reader_init(&cr, v->body + l->payload_at, v->head_first[j], g.bits);
    const uint64_t groups = per_tile ? per_tile * v->tiles_per_head : 1;
    for (uint64_t n = 0; n < groups; n++) {
        const uint64_t group = per_tile ? j * groups + n : j;
        const uint64_t count = per_tile ? group_count(v, group, per_tile) : v->head_first[j + 1] - v->head_first[j];
        if (!count) continue;
        const uint8_t *p = scales + 2 * q * group;
        build_table(&g, sqkv_rd16(p), q == 2 ? sqkv_rd16(p + 2) : 0, SQKV_CONV_COPY16, table);
        visit(ctx, table, g.bits, count, &cr);
    }
}

/* ---------------------------------------------------------------------------------------------
 * bf16 files decoded to fp16: §11 lets that overflow; the reference decoder reports VALUE instead.
 * Checked for the requested heads before anything is written.
 * ------------------------------------------------------------------------------------------- */

static void find_fp16_overflow(void *ctx, const uint32_t *table, uint32_t bits, uint64_t count, code_reader *cr) {
    int *overflow = (int *)ctx;
    int any = 0;
    for (uint32_t c = 0; c < (1u << bits); c++) any |= sqkv_bf16_overflows_fp16((uint16_t)table[c]);
    for (uint64_t i = 0; i < count; i++) {
        const uint32_t code = code_reader_next(cr, bits);
        if (any && sqkv_bf16_overflows_fp16((uint16_t)table[code])) *overflow = 1;
    }
}

static sqkv_error check_fp16_range(const sqkv_sparse_view *v, uint32_t first, uint32_t count, sqkv_diag *diag) {
    const uint8_t *payload = v->body + v->layout.payload_at;
    int overflow = 0;
    for (uint32_t j = first; j < first + count && !overflow; j++) {
        if (v->h.quantizer == SQKV_QUANT_EXACT) {
            for (uint64_t i = v->head_first[j]; i < v->head_first[j + 1]; i++)
                overflow |= sqkv_bf16_overflows_fp16(sqkv_rd16(payload + 2 * i));
        } else {
            for_each_group(v, j, find_fp16_overflow, &overflow);
        }
    }
    if (overflow)
        return sqkv_diag_fail(diag, SQKV_ERR_VALUE, "a bf16 element exceeds the fp16 range (§11: the reference decoder"
                              " reports VALUE rather than produce infinity)");
    return SQKV_OK;
}

sqkv_error sqkv_sparse_decode(const sqkv_sparse_view *v, uint32_t first, uint32_t count, sqkv_dtype out_dtype,
                              uint8_t *out, size_t head_stride, sqkv_diag *diag) {
    const sqkv_section_header *h = &v->h;
    const sqkv_sparse_layout *l = &v->layout;
    const sqkv_conversion conv = sqkv_conversion_for(v->e, out_dtype);
    const size_t osz = sqkv_dtype_size(out_dtype);
    if (conv == SQKV_CONV_BF16_TO_FP16) {
        sqkv_error err = check_fp16_range(v, first, count, diag);
        if (err) return err;
    }
    const int tensor = h->tensor == SQKV_TENSOR_K ? 0 : 1;
    const uint32_t per_tile = groups_per_tile(h->scale_granularity);
    head_kernel kernel;
    if (h->quantizer == SQKV_QUANT_EXACT)
        kernel = exact_kernels[tensor][conv];
    else
        kernel = quant_kernels[tensor][width_index(h->payload_bits)][osz == 4][per_tile];

    head_job job;
    job.payload = v->body + l->payload_at;
    job.token_count = h->token_count;
    job.head_dim = v->head_dim;
    job.g.q = (sqkv_quantizer)h->quantizer;
    job.g.bits = h->payload_bits;
    job.g.e = v->e;
    job.params_per_group = l->params_per_group;
    job.conv = conv;
    uint32_t head_table[SQKV_MAX_LEVELS];
    for (uint32_t j = first; j < first + count; j++) {
        job.bitmaps = l->all_kept ? NULL : v->body + l->bitmaps_at + 8 * (uint64_t)j * v->tiles_per_head;
        job.scales = v->body + l->scales_at + 2 * (uint64_t)l->params_per_group * j * v->tiles_per_head * per_tile;
        job.first_element = v->head_first[j];
        job.out = out + (size_t)(j - first) * head_stride;
        job.table = head_table;
        if (per_tile == 0 && h->quantizer != SQKV_QUANT_EXACT) {
            const uint8_t *p = v->body + l->scales_at + 2 * (uint64_t)l->params_per_group * j;
            build_table(&job.g, sqkv_rd16(p), l->params_per_group == 2 ? sqkv_rd16(p + 2) : 0, conv, head_table);
        }
        kernel(&job);
    }
    return SQKV_OK;
}

typedef struct value_sink {
    uint16_t *values;
    uint64_t written;
} value_sink;

static void collect_values(void *ctx, const uint32_t *table, uint32_t bits, uint64_t count, code_reader *cr) {
    value_sink *sink = (value_sink *)ctx;
    for (uint64_t i = 0; i < count; i++) sink->values[sink->written++] = (uint16_t)table[code_reader_next(cr, bits)];
}

void sqkv_sparse_head_values(const sqkv_sparse_view *v, uint32_t j, uint16_t *values) {
    if (v->h.quantizer == SQKV_QUANT_EXACT) {
        const uint8_t *payload = v->body + v->layout.payload_at;
        for (uint64_t i = v->head_first[j]; i < v->head_first[j + 1]; i++)
            values[i - v->head_first[j]] = sqkv_rd16(payload + 2 * i);
        return;
    }
    value_sink sink = {values, 0};
    for_each_group(v, j, collect_values, &sink);
}

uint64_t sqkv_sparse_tile_bitmap(const sqkv_sparse_view *v, uint64_t t) { return tile_bitmap(v, t); }
