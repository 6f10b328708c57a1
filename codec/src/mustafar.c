/*
 * mustafar.c: export of one head's sparse region in Mustafar's in-memory layout (sqkv.h,
 * sqkv_reader_decode_mustafar): bitmaps as int64, accum_counts as an exclusive prefix sum of
 * ((nnz + 7) & ~7) / 2 32-bit words, values as E bits padded per tile to a multiple of 8, plus 8 zero
 * entries of slack for Mustafar's kernel, which reads 16 bytes past a tile whose count is a multiple of 8.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "element_convert.h"
#include "reader_internal.h"
#include "section_check.h"
#include "tile_layout.h"

/* Checks the arguments and finds the head's SPARSE sections, in token order: [*first, *end) of
 * r->index.tensors. Their tile orders concatenate into the whole region's only when every section
 * starts at a multiple of 64 tokens. */
static sqkv_error head_region(sqkv_reader *r, const char *fn, uint32_t layer, sqkv_tensor tensor, uint32_t head,
                              uint32_t *first, uint32_t *end) {
    char text[256];
    sqkv_error err = sqkv_reader_usable(r, fn);
    if (err) return err;
    if (layer >= r->file.n_layers || (tensor != SQKV_TENSOR_K && tensor != SQKV_TENSOR_V) ||
        head >= r->file.n_kv_heads) {
        snprintf(text, sizeof text, "%s: layer, tensor or head outside the file's geometry", fn);
        return sqkv_reader_fail(r, SQKV_ERR_INVALID_ARGUMENT, text);
    }
    if (r->file.sparse_tokens == 0) {
        snprintf(text, sizeof text, "%s: the sparse region is empty (dense_window = n_tokens)", fn);
        return sqkv_reader_fail(r, SQKV_ERR_UNSUPPORTED, text);
    }
    uint32_t pos, stop;
    sqkv_reader_head_sections(r, layer, (uint32_t)tensor, head, &pos, &stop);
    *first = pos;
    for (; pos < stop; pos++) {
        const sqkv_entry *e = &r->index.entries[r->index.tensors[pos].entry];
        if (e->token_start >= r->file.sparse_tokens) break;
        if (e->token_start % 64 != 0) {
            snprintf(text, sizeof text, "%s: a SPARSE section starts at token %" PRIu32
                     ", not a multiple of 64, so its tiles do not continue Mustafar's order", fn, e->token_start);
            return sqkv_reader_fail(r, SQKV_ERR_UNSUPPORTED, text);
        }
    }
    *end = pos;
    return SQKV_OK;
}

/* Validates the sections [first, end) of a head group and counts their tiles (the same for each head of
 * the group) and the value words of heads [h0, h0 + n) into words[i * stride] (stride 1 for an array of
 * counts, 2 for the value_count fields of sqkv_mustafar_sizes entries). */
static sqkv_error count_heads(sqkv_reader *r, uint32_t first, uint32_t end, uint32_t h0, uint32_t n,
                              sqkv_sparse_view *view, uint64_t *tiles, uint64_t *words, size_t stride) {
    *tiles = 0;
    for (uint32_t i = 0; i < n; i++) words[i * stride] = 0;
    for (uint32_t pos = first; pos < end; pos++) {
        const uint32_t entry = r->index.tensors[pos].entry;
        const sqkv_entry *e = &r->index.entries[entry];
        /* coverage (§6, checked at open) gives all sections of a head range the same heads */
        if (h0 < e->head_start || (uint64_t)h0 + n > (uint64_t)e->head_start + e->head_count)
            return sqkv_reader_fail(r, SQKV_ERR_STATE, "mustafar: a section of the head range holds other heads");
        sqkv_error err = sqkv_reader_sparse(r, entry, 0, view);
        if (err) return err;
        for (uint32_t i = 0; i < n; i++) {
            const uint64_t first_tile = (uint64_t)(h0 + i - e->head_start) * view->tiles_per_head;
            for (uint64_t t = 0; t < view->tiles_per_head; t++)
                words[i * stride] += sqkv_mustafar_tile_words(
                    (uint64_t)__builtin_popcountll(sqkv_sparse_tile_bitmap(view, first_tile + t)));
        }
        *tiles += view->tiles_per_head;
    }
    return SQKV_OK;
}

static sqkv_error check_words(sqkv_reader *r, const char *fn, uint64_t words) {
    if (words <= INT32_MAX) return SQKV_OK;
    char text[200];
    snprintf(text, sizeof text, "%s: %" PRIu64 " value words do not fit Mustafar's int32 accum_counts", fn, words);
    return sqkv_reader_fail(r, SQKV_ERR_UNSUPPORTED, text);
}

/* Validates the head's sections and counts its tiles and value words. */
static sqkv_error count_region(sqkv_reader *r, const char *fn, uint32_t first, uint32_t end, uint32_t head,
                               sqkv_sparse_view *view, uint64_t *tiles, uint64_t *words) {
    sqkv_error err = count_heads(r, first, end, head, 1, view, tiles, words, 1);
    return err ? err : check_words(r, fn, *words);
}

sqkv_error sqkv_reader_mustafar_sizes(sqkv_reader *r, uint32_t layer, sqkv_tensor tensor, uint32_t head,
                                      sqkv_mustafar_sizes *sizes) {
    static const char fn[] = "sqkv_reader_mustafar_sizes";
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    uint32_t first, end;
    sqkv_error err = head_region(r, fn, layer, tensor, head, &first, &end);
    if (err) return err;
    if (!sizes) return sqkv_reader_fail(r, SQKV_ERR_INVALID_ARGUMENT, "sqkv_reader_mustafar_sizes: sizes is NULL");
    sqkv_sparse_view *view = sqkv_reader_alloc(r, sizeof *view); /* ~8 KiB, counted in max_memory */
    if (!view) return r->error;
    uint64_t tiles, words;
    err = count_region(r, fn, first, end, head, view, &tiles, &words);
    sqkv_reader_free(r, view, sizeof *view);
    if (err) return err;
    sizes->n_tiles = tiles;
    sizes->value_count = 2 * words + SQKV_MUSTAFAR_TAIL_SLACK;
    return SQKV_OK;
}

sqkv_error sqkv_reader_mustafar_sizes_shared(sqkv_reader *r, uint32_t layer, sqkv_tensor tensor, uint32_t head,
                                             sqkv_mustafar_sizes *sizes) {
    static const char fn[] = "sqkv_reader_mustafar_sizes";
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    uint32_t first, end;
    sqkv_error err = head_region(r, fn, layer, tensor, head, &first, &end);
    if (err) return err;
    if (!sizes) return sqkv_reader_fail(r, SQKV_ERR_INVALID_ARGUMENT, "sqkv_reader_mustafar_sizes: sizes is NULL");
    for (uint32_t h = 0; h < r->file.n_kv_heads; h++) sizes[h] = (sqkv_mustafar_sizes){0, 0};
    /* The group: the heads of the region's first section (coverage, §6: the head ranges of one layer and
     * tensor partition the heads, and each range's sections hold exactly its heads). Their word counts
     * accumulate in their value_count fields. */
    uint32_t h0 = head, n = 1;
    if (first < end) {
        const sqkv_entry *e = &r->index.entries[r->index.tensors[first].entry];
        h0 = e->head_start;
        n = e->head_count;
    }
    sqkv_sparse_view *view = sqkv_reader_alloc(r, sizeof *view); /* ~8 KiB, counted in max_memory */
    if (!view) return r->error;
    uint64_t tiles;
    err = count_heads(r, first, end, h0, n, view, &tiles, &sizes[h0].value_count,
                      sizeof *sizes / sizeof sizes->value_count);
    sqkv_reader_free(r, view, sizeof *view);
    if (!err) err = check_words(r, fn, sizes[head].value_count);
    if (err) {
        for (uint32_t i = 0; i < n; i++) sizes[h0 + i].value_count = 0;
        return err;
    }
    uint32_t head_first, head_after;
    sqkv_reader_head_sections(r, layer, (uint32_t)tensor, head, &head_first, &head_after);
    for (uint32_t i = 0; i < n; i++) {
        sqkv_mustafar_sizes *z = &sizes[h0 + i];
        uint32_t f, a;
        sqkv_reader_head_sections(r, layer, (uint32_t)tensor, h0 + i, &f, &a);
        if (f == head_first && a == head_after && z->value_count <= INT32_MAX) {
            z->n_tiles = tiles;
            z->value_count = 2 * z->value_count + SQKV_MUSTAFAR_TAIL_SLACK;
        } else {
            z->value_count = 0; /* too many words (or, against coverage, other sections): not reported */
        }
    }
    return SQKV_OK;
}

/* One section's tiles of the head: bitmaps, accum entries after each tile, and values moved from
 * packed to per-tile padded positions. accum[0] (the section's first word) is already set. */
static void export_section(const sqkv_sparse_view *view, uint32_t j, int64_t *bitmaps, int32_t *accum,
                           uint16_t *values) {
    const uint64_t nt = view->tiles_per_head;
    const uint64_t first_tile = (uint64_t)j * nt;
    for (uint64_t n = 0; n < nt; n++) {
        const uint64_t bm = sqkv_sparse_tile_bitmap(view, first_tile + n); /* implied with ALL_KEPT */
        memcpy(&bitmaps[n], &bm, sizeof bm); /* the same 64 bits, as Mustafar's int64 */
        accum[n + 1] = (int32_t)((uint64_t)accum[n] + sqkv_mustafar_tile_words((uint64_t)__builtin_popcountll(bm)));
    }
    /* Write the head's values packed at the section's first padded position, then move each tile to its
     * padded place, last tile first: a tile's padded start is never before its packed start, so every
     * move and zero fill lands on values already moved. */
    uint16_t *base = values + 2 * (uint64_t)accum[0];
    sqkv_sparse_head_values(view, j, base);
    uint64_t packed_end = view->head_first[j + 1] - view->head_first[j];
    for (uint64_t n = nt; n-- > 0;) {
        const uint64_t kept = (uint64_t)__builtin_popcountll(sqkv_sparse_tile_bitmap(view, first_tile + n));
        const uint64_t padded = 2 * sqkv_mustafar_tile_words(kept);
        uint16_t *dst = values + 2 * (uint64_t)accum[n];
        packed_end -= kept;
        memmove(dst, base + packed_end, (size_t)kept * sizeof *dst);
        memset(dst + kept, 0, (size_t)(padded - kept) * sizeof *dst);
    }
}

sqkv_error sqkv_reader_decode_mustafar(sqkv_reader *r, uint32_t layer, sqkv_tensor tensor, uint32_t head,
                                       int64_t *bitmaps, int32_t *accum_counts, uint16_t *values,
                                       const sqkv_mustafar_sizes *sizes) {
    static const char fn[] = "sqkv_reader_decode_mustafar";
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    uint32_t first, end;
    sqkv_error err = head_region(r, fn, layer, tensor, head, &first, &end);
    if (err) return err;
    if (!bitmaps || !accum_counts || !values || !sizes)
        return sqkv_reader_fail(r, SQKV_ERR_INVALID_ARGUMENT, "sqkv_reader_decode_mustafar: a buffer or sizes is NULL");
    sqkv_sparse_view *view = sqkv_reader_alloc(r, sizeof *view); /* ~8 KiB, counted in max_memory */
    if (!view) return r->error;
    uint64_t tiles, words;
    err = count_region(r, fn, first, end, head, view, &tiles, &words);
    if (!err && sizes->n_tiles != tiles)
        err = sqkv_reader_fail(r, SQKV_ERR_INVALID_ARGUMENT, "sqkv_reader_decode_mustafar: sizes->n_tiles differs from"
                               " sqkv_reader_mustafar_sizes for this head");
    if (!err && sizes->value_count < 2 * words + SQKV_MUSTAFAR_TAIL_SLACK)
        err = sqkv_reader_fail(r, SQKV_ERR_BUFFER_TOO_SMALL, "sqkv_reader_decode_mustafar: sizes->value_count is"
                               " smaller than sqkv_reader_mustafar_sizes reports");
    uint64_t tile_base = 0;
    accum_counts[0] = 0;
    for (uint32_t pos = first; pos < end && !err; pos++) {
        const uint32_t entry = r->index.tensors[pos].entry;
        if ((err = sqkv_reader_sparse(r, entry, 0, view))) break;
        export_section(view, head - r->index.entries[entry].head_start, bitmaps + tile_base, accum_counts + tile_base,
                       values);
        tile_base += view->tiles_per_head;
    }
    sqkv_reader_free(r, view, sizeof *view);
    if (err) return err;
    memset(values + 2 * words, 0, SQKV_MUSTAFAR_TAIL_SLACK * sizeof *values);
    return SQKV_OK;
}
