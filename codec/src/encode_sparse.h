/*
 * encode_sparse.h: builds one SPARSE section (spec/FORMAT.md §7) from E-typed rows, with the reference
 * encoder's pruning, parameter and code choice (§14).
 */
#ifndef SQKV_ENCODE_SPARSE_H
#define SQKV_ENCODE_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "quantize.h"
#include "section_blob.h"
#include "sqkv.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sqkv_sparse_input {
    sqkv_tensor tensor;
    sqkv_dtype e;                    /* element type of rows and of the file */
    uint32_t head_dim, head_count, token_count;
    const uint16_t *rows;            /* E bits: row t of head j is rows + j * head_stride + t * head_dim */
    uint64_t head_stride;
    uint32_t keep;                   /* per row, from sqkv_prune_keep_count */
    uint32_t payload_bits;           /* a combination sqkv_writer_create accepted (§7.4) */
    sqkv_quantizer quantizer;
    sqkv_scale_granularity granularity;
    uint32_t offset_interval_log2;   /* 0 with all_kept */
    int all_kept;                    /* §7.6: keep every element, zeros too; no bitmaps or offsets stored */
    int range_search;                /* §14: least squared error over SQKV_RANGE_CANDIDATES parameter sets */
} sqkv_sparse_input;

/* Working memory reused from one section to the next (zero-initialize; free with the function below). */
typedef struct sqkv_sparse_scratch {
    uint64_t *bitmaps;
    size_t bitmaps_cap;
    uint16_t *kept;
    size_t kept_cap;
    uint64_t *head_kept;
    size_t head_kept_cap;
    uint8_t *code_lut; /* 65536 codes by order key, for 8-bit groups */
} sqkv_sparse_scratch;

void sqkv_sparse_scratch_free(sqkv_sparse_scratch *s);

/* Encodes the body into out (allocated here) and fills out->header's kind, tensor, head_count,
 * token_count, payload_bits, quantizer, scale_granularity and offset_interval_log2. The caller sets layer,
 * head_start and token_start, then seals. Errors: OUT_OF_MEMORY, LIMIT; SCALE only on an internal
 * inconsistency. On error out->bytes is NULL. */
sqkv_error sqkv_encode_sparse(const sqkv_sparse_input *in, sqkv_sparse_scratch *scratch,
                              sqkv_section_blob *out);

/* The code choice of sqkv_quant_nearest_double as thresholds: for one group's level table, code(x) is the
 * number of c in 1 .. L-1 with key(x) >= threshold[c], where key orders E values as numbers. Because that
 * choice is monotone in x, the thresholds reproduce it exactly (binary64 rounding quirks included) and are
 * found by asking sqkv_quant_nearest_double itself a few times per level. */
#define SQKV_CODE_NEVER 0x10000u /* a threshold above every 16-bit key */
typedef struct sqkv_code_table {
    uint32_t bits;
    uint32_t threshold[SQKV_MAX_LEVELS]; /* [0] = 0, non-decreasing, at most SQKV_CODE_NEVER */
} sqkv_code_table;

/* levels: a valid (finite, non-decreasing) table of 2^bits E values. */
void sqkv_code_table_build(const uint16_t *levels, uint32_t bits, sqkv_dtype e, sqkv_code_table *t);

/* Total order of E values as numbers (-0 just below +0), for finite values. */
static inline uint32_t sqkv_e_order_key(uint16_t h) {
    const uint32_t flip = (h & 0x8000u) ? 0x7FFFu : 0u;
    return ((uint32_t)h ^ flip) ^ 0x8000u;
}

static inline uint32_t sqkv_code_lookup(const sqkv_code_table *t, uint16_t x) {
    const uint32_t key = sqkv_e_order_key(x);
    uint32_t c = 0;
    for (uint32_t step = 1u << (t->bits - 1); step; step >>= 1)
        c += t->threshold[c + step] <= key ? step : 0;
    return c;
}

#ifdef __cplusplus
}
#endif

#endif /* SQKV_ENCODE_SPARSE_H */
