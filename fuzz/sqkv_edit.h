/*
 * sqkv_edit.h: takes a valid SQKV file apart into its sections and puts a (possibly changed) list of
 * sections back together with a fresh INDEX (with the tail at its end) and checksums. The corpus generator uses it to add
 * sections the writer never writes (unknown ancillary kinds) and to build hostile files whose
 * checksums are right, so that they test the rule behind the checksum.
 * Only for trusted input (files this program just wrote): it checks nothing.
 */
#ifndef SQKV_FUZZ_EDIT_H
#define SQKV_FUZZ_EDIT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "format.h"
#include "section_header.h"
#include "sparse_layout.h"
#include "tile_layout.h"

#define EDIT_MAX_SECTIONS 4096

typedef struct edit_section {
    uint8_t header[SQKV_SECTION_HEADER_SIZE];
    const uint8_t *body; /* stored_size bytes (field of header) */
} edit_section;

typedef struct edit_file {
    uint8_t header[SQKV_HEADER_SIZE_MAX];
    uint32_t header_size;
    edit_section sec[EDIT_MAX_SECTIONS]; /* every section before the INDEX */
    size_t n;
} edit_file;

static inline uint64_t edit_stored_size(const edit_section *s) { return sqkv_load_u64(s->header + SQKV_SEC_STORED_SIZE); }

/* Splits a valid file; bodies point into file. Returns 0 on a file it cannot walk. */
static inline int edit_parse(const uint8_t *file, size_t size, edit_file *f) {
    if (size < SQKV_HEADER_SIZE_V1) return 0;
    f->header_size = sqkv_load_u32(file + SQKV_HDR_HEADER_SIZE);
    if (f->header_size > SQKV_HEADER_SIZE_MAX || f->header_size > size) return 0;
    memcpy(f->header, file, f->header_size);
    f->n = 0;
    uint64_t off = f->header_size;
    while (off + SQKV_SECTION_HEADER_SIZE <= size) {
        const uint8_t *h = file + off;
        if (sqkv_load_u16(h + SQKV_SEC_KIND) == SQKV_KIND_INDEX) return 1;
        if (f->n == EDIT_MAX_SECTIONS) return 0;
        memcpy(f->sec[f->n].header, h, SQKV_SECTION_HEADER_SIZE);
        f->sec[f->n].body = h + SQKV_SECTION_HEADER_SIZE;
        off += sqkv_section_extent(edit_stored_size(&f->sec[f->n]));
        f->n++;
    }
    return 0;
}

/* §9: INDEX body = n_tokens u32, dense_window u32, previous_index_offset u64, the entries, the tail. */
#define EDIT_INDEX_PREFIX 16u

static inline uint64_t edit_index_stored(const edit_file *f) {
    return EDIT_INDEX_PREFIX + (uint64_t)SQKV_INDEX_ENTRY_SIZE * f->n + SQKV_TAIL_SIZE;
}

/* Bytes edit_build needs. */
static inline uint64_t edit_size(const edit_file *f) {
    uint64_t size = f->header_size;
    for (size_t i = 0; i < f->n; i++) size += sqkv_section_extent(edit_stored_size(&f->sec[i]));
    return size + sqkv_section_extent(edit_index_stored(f));
}

/* What the INDEX of a built file says beyond its entries (§9, §9.1). */
typedef struct edit_index_opts {
    const uint8_t *superseded;   /* per section of f: 1 sets the entry's SUPERSEDED flag; NULL: none */
    int override;                /* 0: n_tokens and dense_window from the file header, no previous index */
    uint32_t n_tokens, dense_window;
    uint64_t previous_index_offset;
} edit_index_opts;

/* Serializes f: sections with their headers as given except the body checksum and header checksum
 * (recomputed), then an INDEX listing them that ends with the tail, and the file header checksum.
 * Returns malloc'ed bytes (caller frees) and sets *size. */
static inline uint8_t *edit_build_ex(const edit_file *f, const edit_index_opts *o, size_t *size) {
    *size = (size_t)edit_size(f);
    uint8_t *out = (uint8_t *)calloc(1, *size);
    if (!out) return NULL;
    memcpy(out, f->header, f->header_size);
    sqkv_store_u64(out + f->header_size - 8, sqkv_checksum(out, f->header_size - 8));
    const uint64_t index_stored = edit_index_stored(f);
    const uint64_t index_at = *size - sqkv_section_extent(index_stored);
    uint8_t *index_body = out + index_at + SQKV_SECTION_HEADER_SIZE;
    if (o && o->override) {
        sqkv_store_u32(index_body, o->n_tokens);
        sqkv_store_u32(index_body + 4, o->dense_window);
        sqkv_store_u64(index_body + 8, o->previous_index_offset);
    } else {
        memcpy(index_body, f->header + SQKV_HDR_N_TOKENS, 4);
        memcpy(index_body + 4, f->header + SQKV_HDR_DENSE_WINDOW, 4);
    }
    uint64_t off = f->header_size;
    for (size_t i = 0; i < f->n; i++) {
        uint8_t *h = out + off;
        const uint64_t stored = edit_stored_size(&f->sec[i]);
        memcpy(h, f->sec[i].header, SQKV_SECTION_HEADER_SIZE);
        if (stored) memcpy(h + SQKV_SECTION_HEADER_SIZE, f->sec[i].body, (size_t)stored);
        sqkv_store_u64(h + SQKV_SEC_BODY_CHECKSUM, sqkv_checksum(h + SQKV_SECTION_HEADER_SIZE, (size_t)stored));
        sqkv_store_u64(h + SQKV_SEC_HEADER_CHECKSUM, sqkv_checksum(h, SQKV_SEC_HEADER_CHECKSUM));
        sqkv_section_header parsed;
        sqkv_section_header_unpack(h, &parsed);
        uint8_t *entry = index_body + EDIT_INDEX_PREFIX + (size_t)SQKV_INDEX_ENTRY_SIZE * i;
        sqkv_index_entry_pack(&parsed, off, entry);
        if (o && o->superseded && o->superseded[i]) entry[SQKV_IDX_RESERVED] = 1; /* SUPERSEDED */
        off += sqkv_section_extent(stored);
    }
    uint8_t *tail = index_body + index_stored - SQKV_TAIL_SIZE;
    sqkv_store_u64(tail, index_at);
    memcpy(tail + 8, sqkv_end_magic, 8);
    sqkv_section_header ih;
    memset(&ih, 0, sizeof ih);
    ih.kind = SQKV_KIND_INDEX;
    ih.stored_size = ih.decoded_size = index_stored;
    ih.body_checksum = sqkv_checksum(index_body, (size_t)index_stored);
    sqkv_section_header_pack(&ih, out + index_at);
    return out;
}

static inline uint8_t *edit_build(const edit_file *f, size_t *size) { return edit_build_ex(f, NULL, size); }

/* A section header with the given kind and body, all coordinates zero (an ancillary section). */
static inline void edit_ancillary(edit_section *s, uint16_t kind, const uint8_t *body, uint64_t size) {
    sqkv_section_header h;
    memset(&h, 0, sizeof h);
    h.kind = kind;
    h.stored_size = h.decoded_size = size;
    sqkv_section_header_pack(&h, s->header);
    s->body = body;
}

/* ---- codec 1 (§5.1): the body cut into streams, some zstd-compressed ------------------------ */

#define EDIT_MAX_STREAMS 4

/* Stream boundaries of a section's body (SPARSE: bitmaps, offsets, scales, payload; else one). */
static inline uint32_t edit_stream_plan(const edit_section *s, uint32_t head_dim, uint64_t at[EDIT_MAX_STREAMS],
                                        uint64_t len[EDIT_MAX_STREAMS]) {
    const uint8_t *h = s->header;
    const uint64_t body = sqkv_load_u64(h + SQKV_SEC_DECODED_SIZE);
    if (sqkv_load_u16(h + SQKV_SEC_KIND) != SQKV_KIND_SPARSE) {
        at[0] = 0;
        len[0] = body;
        return 1;
    }
    const uint32_t hc = sqkv_load_u32(h + SQKV_SEC_HEAD_COUNT), tc = sqkv_load_u32(h + SQKV_SEC_TOKEN_COUNT);
    const uint64_t n_tiles = hc * sqkv_tiles_per_head((sqkv_tensor)h[SQKV_SEC_TENSOR], tc, head_dim);
    sqkv_sparse_layout l;
    sqkv_sparse_layout_compute_flags(n_tiles, h[SQKV_SEC_OFFSET_INTERVAL_LOG2], h[SQKV_SEC_QUANTIZER],
                                     h[SQKV_SEC_SCALE_GRANULARITY], h[SQKV_SEC_PAYLOAD_BITS], hc, 0,
                                     (sqkv_load_u32(h + SQKV_SEC_FLAGS) & SQKV_SECTION_FLAG_ALL_KEPT) != 0, &l);
    const uint64_t starts[5] = {l.bitmaps_at, l.offsets_at, l.scales_at, l.payload_at, body};
    for (int i = 0; i < 4; i++) {
        at[i] = starts[i];
        len[i] = starts[i + 1] - starts[i];
    }
    return 4;
}

/* Rewrites a codec-0 section as codec 1: stream i is zstd-compressed (level 3, content size in the
 * frame header) when bit i of zstd_mask is set, stored as is otherwise. Returns the new stored body
 * (malloc'ed; s->body points to it) or NULL when zstd fails. The body checksum is left to edit_build. */
static inline uint8_t *edit_compress(edit_section *s, uint32_t head_dim, unsigned zstd_mask) {
    uint64_t at[EDIT_MAX_STREAMS], len[EDIT_MAX_STREAMS];
    const uint32_t n = edit_stream_plan(s, head_dim, at, len);
    uint64_t cap = 16u * n;
    for (uint32_t i = 0; i < n; i++) cap += sqkv_align8(ZSTD_compressBound((size_t)len[i]) + len[i]);
    uint8_t *out = (uint8_t *)calloc(1, (size_t)cap);
    if (!out) return NULL;
    if (n == 1 || (zstd_mask & ((1u << n) - 1)) == 0) zstd_mask |= 1; /* §5.1: at least one zstd stream */
    uint64_t pos = 16u * n;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t stored = len[i];
        if (zstd_mask >> i & 1) {
            const size_t z = ZSTD_compress(out + pos, (size_t)(cap - pos), s->body + at[i], (size_t)len[i], 3);
            if (ZSTD_isError(z)) {
                free(out);
                return NULL;
            }
            stored = z;
            out[16 * i] = 1;
        } else if (len[i]) {
            memcpy(out + pos, s->body + at[i], (size_t)len[i]);
        }
        sqkv_store_u64(out + 16 * i + 8, stored);
        /* zstd may have used the rest of the buffer as scratch: the padding must be zero. */
        memset(out + pos + stored, 0, (size_t)(sqkv_align8(stored) - stored));
        pos += sqkv_align8(stored);
    }
    s->header[SQKV_SEC_CODEC] = 1;
    sqkv_store_u64(s->header + SQKV_SEC_STORED_SIZE, pos);
    s->body = out;
    return out;
}

#endif /* SQKV_FUZZ_EDIT_H */
