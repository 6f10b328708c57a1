/* reader_sections.c: reading one section for the reader: checks, codec 1, memory, ancillary bodies,
 * verify (sqkv.h, spec/FORMAT.md §5). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_estimateDCtxSize: the context once it has decoded */
#include <zstd.h>

#include "codec_streams.h"
#include "decode_dense.h"
#include "reader_internal.h"
#include "section_check.h"

sqkv_error sqkv_reader_fail_section(sqkv_reader *r, sqkv_error err, sqkv_diag *d, uint32_t entry) {
    sqkv_diag_section(d, entry, &r->index.entries[entry]);
    return sqkv_reader_fail_diag(r, err, d);
}

void *sqkv_reader_alloc(sqkv_reader *r, uint64_t bytes) {
    if (bytes > r->limits.max_memory - r->memory_used || bytes > SIZE_MAX) {
        char text[200];
        snprintf(text, sizeof text, "%" PRIu64 " more bytes would exceed the configured max_memory %" PRIu64, bytes,
                 r->limits.max_memory);
        sqkv_reader_fail(r, SQKV_ERR_LIMIT, text);
        return NULL;
    }
    void *p = malloc(bytes ? (size_t)bytes : 1);
    if (!p) {
        sqkv_reader_fail(r, SQKV_ERR_OUT_OF_MEMORY, "malloc failed");
        return NULL;
    }
    r->memory_used += bytes;
    return p;
}

void sqkv_reader_free(sqkv_reader *r, void *p, uint64_t bytes) {
    if (!p) return;
    free(p);
    r->memory_used -= bytes;
}

typedef enum body_mode {
    BODY_CHECK_ONLY, /* codec 1: check the stream table, decompress nothing (unknown ancillary kinds) */
    BODY_SCRATCH,    /* codec 1: decode into the reader's scratch buffer */
    BODY_OWNED       /* codec 1: decode into a new allocation returned in *owned */
} body_mode;

/* Undoes codec 1 (§5.1) for a checked section. */
static sqkv_error decode_streams(sqkv_reader *r, uint32_t entry, const sqkv_section_header *h, const uint8_t *stored,
                                 body_mode mode, const uint8_t **body, uint8_t **owned) {
    sqkv_stream_plan plan;
    sqkv_stream_plan_for(h, r->file.head_dim, &plan);
    sqkv_diag d;
    sqkv_error err = sqkv_streams_check(stored, h, &plan, &d);
    if (err) return sqkv_reader_fail_section(r, err, &d, entry);
    if (mode == BODY_CHECK_ONLY) return SQKV_OK;
    if (!r->zstd) {
        /* The context is fixed-size (no file can grow it), but it is memory the reader holds: count it,
         * before creating it, at the size it grows to on first use. */
        const uint64_t held = (uint64_t)ZSTD_estimateDCtxSize();
        if (held > r->limits.max_memory - r->memory_used)
            return sqkv_reader_fail(r, SQKV_ERR_LIMIT, "the zstd decompression context would exceed max_memory");
        if (!(r->zstd = ZSTD_createDCtx())) return sqkv_reader_fail(r, SQKV_ERR_OUT_OF_MEMORY, "ZSTD_createDCtx failed");
        r->memory_used += held;
    }
    uint8_t *out;
    if (mode == BODY_OWNED) {
        if (!(out = sqkv_reader_alloc(r, h->decoded_size))) return r->error;
        *owned = out;
    } else {
        if (r->scratch_size < h->decoded_size) {
            sqkv_reader_free(r, r->scratch, r->scratch_size);
            r->scratch = NULL;
            r->scratch_size = 0;
            if (!(r->scratch = sqkv_reader_alloc(r, h->decoded_size))) return r->error;
            r->scratch_size = h->decoded_size;
        }
        out = r->scratch;
    }
    if ((err = sqkv_streams_decode(stored, &plan, r->zstd, out, &d))) {
        if (mode == BODY_OWNED) {
            sqkv_reader_free(r, out, h->decoded_size);
            *owned = NULL;
        }
        return sqkv_reader_fail_section(r, err, &d, entry);
    }
    *body = out;
    return SQKV_OK;
}

/* read_at sources: the section's bytes (header, body, padding; the extent the index gives) into the
 * reader's section buffer, grown as needed. */
static sqkv_error fetch_section(sqkv_reader *r, uint32_t entry, const uint8_t **bytes) {
    const sqkv_entry *e = &r->index.entries[entry];
    const uint64_t extent = sqkv_section_extent(e->stored_size); /* stored_size <= 2^40: checked with the index */
    if (r->section_buf_size < extent) {
        sqkv_reader_free(r, r->section_buf, r->section_buf_size);
        r->section_buf = NULL;
        r->section_buf_size = 0;
        if (!(r->section_buf = sqkv_reader_alloc(r, extent))) return r->error;
        r->section_buf_size = extent;
    }
    sqkv_diag d;
    sqkv_error err = sqkv_source_read(&r->src, e->offset, r->section_buf, extent, &d);
    if (err) return sqkv_reader_fail_section(r, err, &d, entry);
    *bytes = r->section_buf;
    return SQKV_OK;
}

static sqkv_error load_section(sqkv_reader *r, uint32_t entry, int force_checksum, body_mode mode,
                               sqkv_section_header *h, const uint8_t **body, uint8_t **owned) {
    sqkv_diag d;
    const int checksum = force_checksum || !(r->flags & SQKV_READER_TRUSTED);
    const uint8_t *stored;
    sqkv_error err;
    if (r->data) {
        err = sqkv_check_section(r->data, &r->file, &r->index.entries[entry], &r->limits, checksum, h, &stored, &d);
    } else {
        const uint8_t *bytes = NULL; /* set by fetch_section on success; NULL quiets gcc -O2 -Wmaybe-uninitialized */
        if ((err = fetch_section(r, entry, &bytes))) return err;
        /* The buffer holds the section at its start: check it as a section at offset 0 (the offset is
         * not a rule of the section itself; the index walk already placed it). */
        sqkv_entry at_start = r->index.entries[entry];
        at_start.offset = 0;
        err = sqkv_check_section(bytes, &r->file, &at_start, &r->limits, checksum, h, &stored, &d);
    }
    if (err) return sqkv_reader_fail_section(r, err, &d, entry);
    if (owned) *owned = NULL;
    *body = stored;
    if (h->codec != SQKV_CODEC_NONE) return decode_streams(r, entry, h, stored, mode, body, owned);
    if (mode == BODY_OWNED && !r->data) { /* the section buffer is reused by the next read: keep a copy */
        uint8_t *copy = sqkv_reader_alloc(r, h->decoded_size);
        if (!copy) return r->error;
        if (h->decoded_size) memcpy(copy, stored, (size_t)h->decoded_size);
        *owned = copy;
        *body = copy;
    }
    return SQKV_OK;
}

sqkv_error sqkv_reader_section(sqkv_reader *r, uint32_t entry, int force_checksum, sqkv_section_header *h,
                               const uint8_t **body) {
    return load_section(r, entry, force_checksum, BODY_SCRATCH, h, body, NULL);
}

sqkv_error sqkv_reader_section_stored(sqkv_reader *r, uint32_t entry, int force_checksum, sqkv_section_header *h,
                                      const uint8_t **stored) {
    return load_section(r, entry, force_checksum, BODY_CHECK_ONLY, h, stored, NULL);
}

sqkv_error sqkv_reader_sparse(sqkv_reader *r, uint32_t entry, int force_checksum, sqkv_sparse_view *v) {
    sqkv_section_header h;
    const uint8_t *body;
    sqkv_error err = sqkv_reader_section(r, entry, force_checksum, &h, &body);
    if (err) return err;
    sqkv_diag d;
    err = sqkv_sparse_validate(body, &h, r->file.head_dim, r->file.value_dtype, v, &d);
    return err ? sqkv_reader_fail_section(r, err, &d, entry) : SQKV_OK;
}

/* Parses a checked METADATA body into a new array of entries. */
static sqkv_error parse_metadata(sqkv_reader *r, uint32_t entry, const uint8_t *body, uint64_t size,
                                 sqkv_metadata_entry **out, uint32_t *count) {
    sqkv_diag d;
    uint32_t n;
    sqkv_error err = sqkv_metadata_count(body, size, &n, &d);
    if (err) return sqkv_reader_fail_section(r, err, &d, entry);
    sqkv_metadata_entry *entries = sqkv_reader_alloc(r, (uint64_t)n * sizeof *entries);
    if (!entries) return r->error;
    if ((err = sqkv_metadata_parse(body, size, n, entries, &d))) {
        sqkv_reader_free(r, entries, (uint64_t)n * sizeof *entries);
        return sqkv_reader_fail_section(r, err, &d, entry);
    }
    *out = entries;
    *count = n;
    return SQKV_OK;
}

/* First access to an ancillary section: check it, keep its decoded body (and parse METADATA). */
sqkv_error sqkv_reader_load_ancillary(sqkv_reader *r, uint16_t kind, sqkv_ancillary **out) {
    const uint32_t entry = kind == SQKV_KIND_TOKENS        ? r->index.tokens
                           : kind == SQKV_KIND_FINGERPRINT ? r->index.fingerprint
                                                           : r->index.metadata;
    sqkv_ancillary *a = kind == SQKV_KIND_TOKENS ? &r->tokens
                        : kind == SQKV_KIND_FINGERPRINT ? &r->fingerprint
                                                        : &r->metadata_body;
    *out = a;
    if (entry == SQKV_NO_SECTION || a->checked) return SQKV_OK;
    sqkv_section_header h;
    const uint8_t *body;
    sqkv_error err = load_section(r, entry, 0, BODY_OWNED, &h, &body, &a->owned);
    if (err) return err;
    if (kind == SQKV_KIND_METADATA && (err = parse_metadata(r, entry, body, h.decoded_size, &r->metadata,
                                                            &r->metadata_count)))
        return err;
    a->body = body;
    a->size = h.decoded_size;
    a->checked = 1;
    return SQKV_OK;
}

sqkv_error sqkv_reader_ancillary(sqkv_reader *r, uint16_t kind, const uint8_t **body, uint64_t *size) {
    sqkv_ancillary *a;
    sqkv_error err = sqkv_reader_load_ancillary(r, kind, &a);
    *body = a->checked ? a->body : NULL;
    *size = a->checked ? a->size : 0;
    return err;
}

/* First position in tensors[lo, hi) whose head_start is >= head (or > head when strictly). */
/* ---------------------------------------------------------------------------------------------
 * Verify
 * ------------------------------------------------------------------------------------------- */

/* The first INDEX section of an appended file closes the file as first written, which must be a valid
 * file on its own (§9.1, §2.1 item 5: a streaming decoder reads it as the whole file): its index is
 * parsed and its coverage checked as if the file ended there, and its TOKENS section must hold the
 * header's n_tokens ids. Its sections' own rules are checked by verify anyway. index_body is the
 * section's body (codec 0, so its 64-byte header is just before it). Fuzzing finding 9. */
static sqkv_error verify_first_segment(sqkv_reader *r, uint32_t entry, const uint8_t *index_body) {
    const sqkv_entry *e = &r->index.entries[entry];
    sqkv_file_info first = r->file;
    first.index_offset = e->offset;
    first.file_size = e->offset + SQKV_SECTION_HEADER_SIZE + e->stored_size;
    first.n_tokens = first.header_n_tokens;
    first.dense_window = first.header_dense_window;
    first.sparse_tokens = first.n_tokens - first.dense_window;
    first.previous_index_offset = 0;
    sqkv_index idx;
    sqkv_diag d;
    sqkv_error err = sqkv_parse_index_section(index_body - SQKV_SECTION_HEADER_SIZE, &first, &r->limits,
                                              r->limits.max_memory - r->memory_used, &idx, &d);
    if (err) {
        sqkv_diag_prefix(&d, "the file as first written (before its first append, §9.1): ");
        return sqkv_reader_fail_section(r, err, &d, entry);
    }
    const uint32_t tokens = idx.tokens; /* the same entry number in the current index (checked above) */
    sqkv_index_free(&idx);
    if (tokens == SQKV_NO_SECTION) return SQKV_OK;
    sqkv_section_header th;
    const uint8_t *unused;
    if ((err = load_section(r, tokens, 0, BODY_CHECK_ONLY, &th, &unused, NULL))) return err;
    if (th.decoded_size != 4ull * first.header_n_tokens) {
        sqkv_diag_fail(&d, SQKV_ERR_TOKENS_COUNT, "the file as first written (before its first append, §9.1) has %"
                       PRIu64 " bytes of token ids for the header's n_tokens %" PRIu32 " (§10.1)", th.decoded_size,
                       first.header_n_tokens);
        return sqkv_reader_fail_section(r, SQKV_ERR_TOKENS_COUNT, &d, tokens);
    }
    return SQKV_OK;
}

static sqkv_error verify_section(sqkv_reader *r, uint32_t entry, sqkv_sparse_view *view) {
    const sqkv_entry *e = &r->index.entries[entry];
    if (e->kind == SQKV_KIND_SPARSE) return sqkv_reader_sparse(r, entry, 1, view);
    sqkv_section_header h;
    const uint8_t *body;
    uint8_t *owned = NULL;
    /* Unknown ancillary kinds: checksums, padding and stream table checked, then skipped (§6). */
    const body_mode mode = sqkv_kind_known(e->kind) ? BODY_SCRATCH : BODY_CHECK_ONLY;
    sqkv_error err = load_section(r, entry, 1, mode, &h, &body, &owned);
    if (err) return err;
    sqkv_diag d;
    if (e->kind == SQKV_KIND_DENSE) {
        err = sqkv_dense_validate(body, &h, r->file.head_dim, r->file.value_dtype, &d);
    } else if (e->kind == SQKV_KIND_INDEX) {
        err = sqkv_check_old_index(body, h.decoded_size, entry, e->offset, &r->file, r->index.entries, &d);
        if (!err && sqkv_load_u64(body + 8) == 0) return verify_first_segment(r, entry, body);
    } else if (e->kind == SQKV_KIND_METADATA) {
        sqkv_metadata_entry *entries;
        uint32_t n;
        if ((err = parse_metadata(r, entry, body, h.decoded_size, &entries, &n))) return err;
        sqkv_reader_free(r, entries, (uint64_t)n * sizeof *entries);
    }
    /* TOKENS and FINGERPRINT have no rule beyond their size. */
    return err ? sqkv_reader_fail_section(r, err, &d, entry) : SQKV_OK;
}

sqkv_error sqkv_reader_verify_from(sqkv_reader *r, uint32_t first) {
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    sqkv_error err = sqkv_reader_usable(r, "sqkv_reader_verify");
    if (err) return err;
    sqkv_sparse_view *view = sqkv_reader_alloc(r, sizeof *view); /* ~8 KiB, counted in max_memory */
    if (!view) return r->error;
    for (uint32_t i = first; i < r->index.n_entries && !err; i++) err = verify_section(r, i, view);
    sqkv_reader_free(r, view, sizeof *view);
    return err;
}

sqkv_error sqkv_reader_verify(sqkv_reader *r) { return sqkv_reader_verify_from(r, 0); }
