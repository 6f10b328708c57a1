/* format_sim.c: see format_sim.h. */
#include "format_sim.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "float16.h"
#include "format.h"
#include "prune.h"
#include "quantize.h"
#include "tile_layout.h"

#define SIM_OFFSET_INTERVAL_LOG2 4u
#define STREAMS 4
#define STREAM_RECORD 16u

enum { BITMAPS = 0, OFFSETS = 1, SCALES = 2, PAYLOAD = 3 };

typedef struct stream {
    uint8_t *data;
    uint64_t size, cap;
} stream;

/* The state of one head's section while its tiles are walked. */
typedef struct head_encoder {
    const sim_setting *s;
    stream st[STREAMS];
    uint64_t payload_elements;   /* codes written so far */
    uint16_t *values;            /* kept values of the open group (fp16 bits) */
    uint64_t *where;             /* their element index in the head */
    uint64_t count;
} head_encoder;

static void put_bytes(stream *st, const void *p, uint64_t n) {
    memcpy(st->data + st->size, p, n);
    st->size += n;
}

/* Code e at bit e * b, least significant bits first (§7.5); widths other than 2, 4, 8 may straddle
 * a byte boundary. */
static void put_code(head_encoder *e, uint32_t code) {
    const uint64_t bit = e->payload_elements++ * e->s->bits;
    const uint32_t shifted = code << (bit % 8);
    e->st[PAYLOAD].data[bit / 8] |= (uint8_t)shifted;
    if (shifted >> 8) e->st[PAYLOAD].data[bit / 8 + 1] |= (uint8_t)(shifted >> 8);
    e->st[PAYLOAD].size = (bit + e->s->bits + 7) / 8;
}

static void put_u16(stream *st, uint16_t v) {
    uint8_t b[2];
    sqkv_store_u16(b, v);
    put_bytes(st, b, 2);
}

/* Quantizes the open group, writes its parameters and codes, restores into out. */
static void close_group(head_encoder *e, float *out, int has_slot) {
    const sim_setting *s = e->s;
    if (s->bits == 16) {
        for (uint64_t i = 0; i < e->count; i++) {
            put_u16(&e->st[PAYLOAD], e->values[i]);
            out[e->where[i]] = sqkv_fp16_to_float(e->values[i]);
        }
        e->count = 0;
        return;
    }
    const uint32_t n_levels = 1u << s->bits;
    uint16_t scale, zero, levels[SQKV_MAX_LEVELS];
    double levels_d[SQKV_MAX_LEVELS];
    sqkv_quant_choose_params(s->quantizer, s->bits, SQKV_DTYPE_FP16, e->values, e->count, &scale, &zero);
    if (has_slot) {
        put_u16(&e->st[SCALES], scale);
        if (s->quantizer == SQKV_QUANT_ASYMMETRIC) put_u16(&e->st[SCALES], zero);
    }
    if (e->count == 0) return;
    if (sqkv_quant_levels(s->quantizer, s->bits, SQKV_DTYPE_FP16, scale, zero, levels) != SQKV_OK) abort();
    sqkv_quant_levels_to_double(levels, n_levels, SQKV_DTYPE_FP16, levels_d);
    for (uint64_t i = 0; i < e->count; i++) {
        const uint32_t code = sqkv_quant_nearest_double(levels_d, n_levels, sqkv_fp16_to_double(e->values[i]));
        put_code(e, code);
        out[e->where[i]] = (float)levels_d[code];
    }
    e->count = 0;
}

static int setting_ok(const sim_setting *s, uint32_t dim) {
    if (dim == 0 || dim > 1024 || (s->keep_all && s->sparsity != 0.0)) return 0;
    if (s->bits == 16) return s->quantizer == SQKV_QUANT_EXACT && s->group == 0 && !s->keep_all;
    return s->bits >= 1 && s->bits <= 8 && s->quantizer != SQKV_QUANT_EXACT &&
           s->group <= 64 && (s->group == 0 || 64 % s->group == 0);
}

/* Builds the four streams of one head; returns 0 or -1. */
static int encode_head(const uint16_t *in, float *out, uint32_t tokens, uint32_t dim, sqkv_tensor tensor,
                       const sim_setting *s, head_encoder *e) {
    memset(e, 0, sizeof *e);
    e->s = s;
    if (!setting_ok(s, dim)) return -1;
    const uint64_t elems = (uint64_t)tokens * dim;
    const uint64_t tiles = sqkv_tiles_per_head(tensor, tokens, dim);
    const uint64_t groups = s->group ? tiles * (64u / s->group) : 1;
    /* Room for each stream's zero padding to 8 too: codec 1 compresses the padded streams (§5.1). */
    const uint64_t caps[STREAMS] = {8 * tiles + 8, sqkv_align8(4 * ((tiles >> SIM_OFFSET_INTERVAL_LOG2) + 2)) + 8,
                                    sqkv_align8(4 * groups) + 8, sqkv_align8((elems * s->bits + 7) / 8) + 8};
    uint8_t *kept = malloc(elems);
    e->values = malloc(elems * sizeof *e->values);
    e->where = malloc(elems * sizeof *e->where);
    int ok = kept && e->values && e->where;
    for (int i = 0; i < STREAMS && ok; i++) ok = (e->st[i].data = calloc(caps[i], 1)) != NULL;
    if (!ok) {
        free(kept);
        return -1;
    }
    const sqkv_prune_mode mode = s->sparsity > 0.0 ? SQKV_PRUNE_MAGNITUDE : SQKV_PRUNE_NONE;
    const uint32_t keep = sqkv_prune_keep_count(dim, mode, s->sparsity);
    for (uint32_t t = 0; t < tokens; t++) {
        uint64_t mask[16];
        if (s->keep_all)
            memset(mask, 0xFF, sizeof mask);
        else
            sqkv_prune_row(in + (uint64_t)t * dim, dim, keep, mask);
        for (uint32_t d = 0; d < dim; d++)
            kept[(uint64_t)t * dim + d] = (uint8_t)((mask[d / 64] >> (63u - d % 64)) & 1u);
    }
    memset(out, 0, elems * sizeof *out);
    uint64_t n_kept = 0;
    uint8_t word[8];
    sqkv_store_u32(word, 0);
    put_bytes(&e->st[OFFSETS], word, 4);
    for (uint64_t n = 0; n < tiles; n++) {
        const sqkv_tile_pos p = sqkv_tile_position(tensor, tokens, dim, n);
        uint64_t bitmap = 0;
        for (uint32_t i = 0; i < 64; i++) {
            const uint64_t at = (uint64_t)(p.token + i * p.token_step) * dim + p.channel + i * p.channel_step;
            if (i < p.valid && kept[at]) {
                bitmap |= (uint64_t)1 << (63u - i);
                e->values[e->count] = in[at];
                e->where[e->count++] = at;
                n_kept++;
            }
            if (s->group && (i + 1) % s->group == 0) close_group(e, out, 1);
        }
        sqkv_store_u64(word, bitmap);
        put_bytes(&e->st[BITMAPS], word, 8);
        if ((n + 1) % (1u << SIM_OFFSET_INTERVAL_LOG2) == 0 || n + 1 == tiles) {
            sqkv_store_u32(word, (uint32_t)n_kept);
            put_bytes(&e->st[OFFSETS], word, 4);
        }
    }
    if (!s->group) close_group(e, out, s->bits != 16);
    if (s->keep_all) e->st[BITMAPS].size = e->st[OFFSETS].size = 0;
    free(kept);
    return 0;
}

static void free_head(head_encoder *e) {
    for (int i = 0; i < STREAMS; i++) free(e->st[i].data);
    free(e->values);
    free(e->where);
}

int sim_head_body(const uint16_t *in, float *out, uint32_t tokens, uint32_t dim, sqkv_tensor tensor,
                  const sim_setting *s, uint8_t **body, uint64_t *size) {
    head_encoder e;
    *body = NULL;
    *size = 0;
    if (encode_head(in, out, tokens, dim, tensor, s, &e)) {
        free_head(&e);
        return -1;
    }
    uint64_t total = 0;
    for (int i = 0; i < STREAMS; i++) total += sqkv_align8(e.st[i].size);
    *body = calloc(total ? total : 1, 1);
    if (*body) {
        for (int i = 0; i < STREAMS; i++) {
            memcpy(*body + *size, e.st[i].data, e.st[i].size);
            *size += sqkv_align8(e.st[i].size);
        }
    }
    free_head(&e);
    return *body ? 0 : -1;
}

/* Stored body size under codec 1 (§5.1) when it is smaller than codec 0's, else codec 0's. Each stream
 * is compressed with its padding, as the spec cuts the body. */
static uint64_t stored_size(const head_encoder *e, int level) {
    uint64_t plain = 0;
    for (int i = 0; i < STREAMS; i++) plain += sqkv_align8(e->st[i].size);
    if (level == 0) return plain;
    uint64_t packed = STREAMS * STREAM_RECORD;
    int any = 0;
    for (int i = 0; i < STREAMS; i++) {
        const uint64_t raw = sqkv_align8(e->st[i].size);
        uint64_t best = raw;
        if (raw) {
            const size_t cap = ZSTD_compressBound(raw);
            void *dst = malloc(cap);
            const size_t z = dst ? ZSTD_compress(dst, cap, e->st[i].data, raw, level) : 0;
            if (dst && !ZSTD_isError(z) && sqkv_align8(z) < raw) {
                best = sqkv_align8(z);
                any = 1;
            }
            free(dst);
        }
        packed += best;
    }
    return any && packed < plain ? packed : plain;
}

uint64_t sim_tensor(const uint16_t *in, float *out, uint32_t heads, uint32_t tokens, uint32_t dim,
                    sqkv_tensor tensor, const sim_setting *s) {
    const uint64_t head_elems = (uint64_t)tokens * dim;
    uint64_t bytes = 0;
    for (uint32_t h = 0; h < heads; h++) {
        head_encoder e;
        if (encode_head(in + h * head_elems, out + h * head_elems, tokens, dim, tensor, s, &e)) {
            free_head(&e);
            return 0;
        }
        bytes += SQKV_SECTION_HEADER_SIZE + SQKV_INDEX_ENTRY_SIZE + stored_size(&e, s->zstd_level);
        free_head(&e);
    }
    return bytes;
}
