/*
 * hostile_files.h: hand-made hostile SQKV files for tests/crashers/sqkv/, each with the error the spec
 * says it must give (make_corpus --crashers DIR writes them and DIR/sqkv.expected). Every one has
 * correct checksums (unless the checksum is the point), so that it tests the rule behind the checksum
 * in a normal build: the classes of bugs KV-cache loaders have shipped (counts that overflow a size
 * computation, offsets past the end, lengths that run past a body), and one file per error the spec
 * names. Where the spec lets more than one error apply, the manifest lists each ("A|B").
 */
#ifndef SQKV_FUZZ_HOSTILE_FILES_H
#define SQKV_FUZZ_HOSTILE_FILES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "sparse_layout.h"
#include "sqkv_edit.h"
#include "tile_layout.h"

typedef struct hostile_ctx {
    const char *dir;
    FILE *manifest;
    int count;
    void *owned[256]; /* bodies made here, freed at the end */
    int n_owned;
} hostile_ctx;

static inline void hostile_emit(hostile_ctx *c, const char *name, const char *expected, const char *why,
                                const uint8_t *bytes, size_t size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/sqkv/%s.sqkv", c->dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(bytes, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
        exit(1);
    }
    fprintf(c->manifest, "%-34s %-60s %s\n", name, expected, why);
    c->count++;
}

static inline uint8_t *hostile_body_copy(hostile_ctx *c, edit_section *s, uint64_t extra) {
    const uint64_t n = edit_stored_size(s);
    uint8_t *b = (uint8_t *)calloc(1, (size_t)(n + extra + 8));
    if (!b || c->n_owned == (int)(sizeof c->owned / sizeof c->owned[0])) exit(1);
    if (n) memcpy(b, s->body, (size_t)n);
    c->owned[c->n_owned++] = b;
    s->body = b;
    return b;
}

static inline void hostile_set_body_size(edit_section *s, uint64_t n) {
    sqkv_store_u64(s->header + SQKV_SEC_STORED_SIZE, n);
    sqkv_store_u64(s->header + SQKV_SEC_DECODED_SIZE, n);
}

/* Index of the first section of this kind (and tensor, head_start for tensor kinds), or -1. */
static inline int hostile_find(const edit_file *f, uint16_t kind, int tensor, uint32_t head_start) {
    for (size_t i = 0; i < f->n; i++) {
        const uint8_t *h = f->sec[i].header;
        if (sqkv_load_u16(h + SQKV_SEC_KIND) != kind) continue;
        if (tensor >= 0 && (h[SQKV_SEC_TENSOR] != tensor || sqkv_load_u32(h + SQKV_SEC_HEAD_START) != head_start))
            continue;
        return (int)i;
    }
    return -1;
}

/* Builds f, optionally patches the serialized bytes, repairs every checksum, emits. */
typedef void (*hostile_patch)(uint8_t *file, size_t size, const void *arg);

static inline void hostile_build_emit(hostile_ctx *c, const edit_file *f, hostile_patch patch, const void *arg,
                                      int repair, const char *name, const char *expected, const char *why) {
    size_t size = 0;
    uint8_t *file = edit_build(f, &size);
    if (!file) exit(1);
    if (patch) patch(file, size, arg);
    if (repair) fuzz_repair_checksums(file, size);
    hostile_emit(c, name, expected, why, file, size);
    free(file);
}

/* ---- patches of serialized files ----------------------------------------------------------- */

typedef struct patch_at {
    size_t offset; /* from the start (or, with from_end, back from the end) */
    int from_end;
    int width;     /* 1, 2, 4, 8 */
    uint64_t value;
} patch_at;

static inline void patch_field(uint8_t *file, size_t size, const void *arg) {
    const patch_at *p = (const patch_at *)arg;
    const size_t at = p->from_end ? size - p->offset : p->offset;
    for (int b = 0; b < p->width; b++) file[at + (size_t)b] = (uint8_t)(p->value >> (8 * b));
}

/* The INDEX section's header offset, from the tail. */
static inline size_t hostile_index_at(const uint8_t *file, size_t size) {
    return (size_t)sqkv_load_u64(file + size - SQKV_TAIL_SIZE);
}

typedef struct patch_index {
    size_t body_offset; /* within the INDEX body */
    int width;
    uint64_t value;
} patch_index;

static inline void patch_index_field(uint8_t *file, size_t size, const void *arg) {
    const patch_index *p = (const patch_index *)arg;
    uint8_t *body = file + hostile_index_at(file, size) + SQKV_SECTION_HEADER_SIZE;
    for (int b = 0; b < p->width; b++) body[p->body_offset + (size_t)b] = (uint8_t)(p->value >> (8 * b));
}

static inline void patch_header_checksum(uint8_t *file, size_t size, const void *arg) {
    (void)size;
    (void)arg;
    file[56] ^= 1;
}

/* ---- the SPARSE body of a section ----------------------------------------------------------- */

static inline void hostile_sparse_layout(const edit_file *f, const edit_section *s, sqkv_sparse_layout *l) {
    const uint8_t *h = s->header;
    const uint32_t D = sqkv_load_u32(f->header + SQKV_HDR_HEAD_DIM);
    const uint32_t hc = sqkv_load_u32(h + SQKV_SEC_HEAD_COUNT), tc = sqkv_load_u32(h + SQKV_SEC_TOKEN_COUNT);
    const uint64_t n_tiles = hc * sqkv_tiles_per_head((sqkv_tensor)h[SQKV_SEC_TENSOR], tc, D);
    uint64_t kept = 0;
    for (uint64_t n = 0; n < n_tiles; n++) kept += (uint64_t)__builtin_popcountll(sqkv_load_u64(s->body + 8 * n));
    sqkv_sparse_layout_compute(n_tiles, h[SQKV_SEC_OFFSET_INTERVAL_LOG2], h[SQKV_SEC_QUANTIZER],
                               h[SQKV_SEC_SCALE_GRANULARITY], h[SQKV_SEC_PAYLOAD_BITS], hc, kept, l);
}

#endif /* SQKV_FUZZ_HOSTILE_FILES_H */
