/* stream_writer.c: sections written as they are made (sqkv.h "Streaming output"), and the index
 * bookkeeping that streaming writers and appends share (writer_internal.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "section_header.h"
#include "writer_internal.h"

/* ---- sqkv_stream_out ----------------------------------------------------------------------------- */

sqkv_error sqkv_stream_out_init(sqkv_stream_out *s, sqkv_write_fn fn, void *ctx, uint64_t offset, uint64_t cap) {
    memset(s, 0, sizeof *s);
    s->fn = fn;
    s->ctx = ctx;
    s->offset = offset;
    if (cap > SQKV_MAX_SECTIONS) return SQKV_ERR_LIMIT;
    s->entries = (uint8_t *)malloc(cap ? (size_t)cap * SQKV_INDEX_ENTRY_SIZE : 1);
    if (!s->entries) return SQKV_ERR_OUT_OF_MEMORY;
    s->cap = cap;
    return SQKV_OK;
}

void sqkv_stream_out_free(sqkv_stream_out *s) {
    if (!s) return;
    free(s->entries);
    s->entries = NULL;
    s->count = s->cap = 0;
}

sqkv_error sqkv_stream_out_bytes(sqkv_stream_out *s, const void *data, uint64_t size) {
    /* Pieces are whole sections, at most 2^40 + 64 bytes: split so that size_t never truncates. */
    const uint8_t *p = (const uint8_t *)data;
    while (size > 0) {
        const uint64_t piece = size < ((uint64_t)1 << 30) ? size : ((uint64_t)1 << 30);
        const int rc = s->fn(s->ctx, p, (size_t)piece);
        if (rc != 0) {
            s->failed_rc = rc;
            return SQKV_ERR_IO;
        }
        p += piece;
        size -= piece;
        s->offset += piece;
    }
    return SQKV_OK;
}

sqkv_error sqkv_stream_out_entry(sqkv_stream_out *s, const sqkv_section_header *h, uint64_t offset, uint8_t flags) {
    if (s->count == s->cap) return SQKV_ERR_LIMIT;
    uint8_t *e = s->entries + (size_t)s->count * SQKV_INDEX_ENTRY_SIZE;
    sqkv_index_entry_pack(h, offset, e);
    e[SQKV_IDX_RESERVED] = flags;
    s->count++;
    return SQKV_OK;
}

sqkv_error sqkv_stream_out_section(sqkv_stream_out *s, const sqkv_section_blob *b) {
    if (s->count == s->cap) return SQKV_ERR_LIMIT;
    const uint64_t at = s->offset;
    sqkv_error err = sqkv_stream_out_bytes(s, b->bytes, sqkv_blob_extent(b));
    if (err != SQKV_OK) return err;
    return sqkv_stream_out_entry(s, &b->header, at, 0);
}

sqkv_error sqkv_stream_out_index(sqkv_stream_out *s, uint32_t n_tokens, uint32_t dense_window,
                                 uint64_t previous_index_offset) {
    const uint64_t body_size = 16u + SQKV_INDEX_ENTRY_SIZE * s->count + SQKV_TAIL_SIZE;
    sqkv_section_blob index;
    memset(&index, 0, sizeof index);
    sqkv_error err = sqkv_blob_alloc(&index, body_size);
    if (err != SQKV_OK) return err;
    uint8_t *body = sqkv_blob_body(&index);
    sqkv_store_u32(body, n_tokens);
    sqkv_store_u32(body + 4, dense_window);
    sqkv_store_u64(body + 8, previous_index_offset);
    if (s->count) memcpy(body + 16, s->entries, (size_t)s->count * SQKV_INDEX_ENTRY_SIZE);
    uint8_t *tail = body + body_size - SQKV_TAIL_SIZE;
    sqkv_store_u64(tail, s->offset);
    memcpy(tail + 8, sqkv_end_magic, SQKV_MAGIC_SIZE);
    index.header.kind = SQKV_KIND_INDEX; /* every coordinate and SPARSE field stays zero (§9) */
    sqkv_blob_seal(&index);
    err = sqkv_stream_out_bytes(s, index.bytes, sqkv_blob_extent(&index));
    sqkv_blob_free(&index);
    return err;
}

/* ---- the streaming writer ---------------------------------------------------------------------- */

static sqkv_error stream_io_error(sqkv_writer *w, const char *when) {
    return sqkv_writer_fail(w, SQKV_ERR_IO, "%s: the write function returned %d", when, w->stream->failed_rc);
}

sqkv_error sqkv_writer_stream_begin(sqkv_writer *w, sqkv_dtype source_dtype, sqkv_write_fn write_fn, void *ctx) {
    if (!w) return SQKV_ERR_INVALID_ARGUMENT;
    if (w->error != SQKV_OK) return w->error;
    if (w->finalized || w->stream)
        return sqkv_writer_fail(w, SQKV_ERR_STATE, "stream_begin after the file was output or a stream was begun");
    if (w->layers_added > 0)
        return sqkv_writer_fail(w, SQKV_ERR_STATE, "stream_begin after add_layer (layers must follow the header)");
    if (!write_fn) return sqkv_writer_fail(w, SQKV_ERR_INVALID_ARGUMENT, "stream_begin: write_fn is NULL");
    if (source_dtype != SQKV_DTYPE_FP16 && source_dtype != SQKV_DTYPE_BF16 && source_dtype != SQKV_DTYPE_FP32)
        return sqkv_writer_fail(w, SQKV_ERR_INVALID_ARGUMENT, "stream_begin: source_dtype must be FP16, BF16 or FP32"
                                " (got %d)", (int)source_dtype);
    sqkv_stream_out *s = (sqkv_stream_out *)calloc(1, sizeof *s);
    if (!s) return sqkv_writer_fail(w, SQKV_ERR_OUT_OF_MEMORY, "stream_begin: out of memory");
    const uint64_t sections = w->tensor_sections + (w->tokens != NULL) + (w->fingerprint != NULL) + (w->meta_count > 0);
    sqkv_error err = sqkv_stream_out_init(s, write_fn, ctx, 0, sections);
    if (err != SQKV_OK) {
        sqkv_stream_out_free(s);
        free(s);
        return sqkv_writer_fail(w, err, "stream_begin: no room for the index of %" PRIu64 " sections", sections);
    }
    w->stream = s;
    w->stream_owned = 1;
    w->have_source = 1;
    w->source_dtype = source_dtype;
    sqkv_writer_build_file_header(w);
    if ((err = sqkv_stream_out_bytes(s, w->file_header, sizeof w->file_header)) != SQKV_OK)
        return stream_io_error(w, "stream_begin (file header)");
    if ((err = sqkv_writer_build_ancillary(w)) != SQKV_OK) return err;
    for (size_t i = 0; i < w->ancillary_count && err == SQKV_OK; i++) err = sqkv_stream_out_section(s, &w->ancillary[i]);
    for (size_t i = 0; i < w->ancillary_count; i++) sqkv_blob_free(&w->ancillary[i]);
    w->ancillary_count = 0;
    if (err != SQKV_OK) return stream_io_error(w, "stream_begin (ancillary sections)");
    return SQKV_OK;
}

sqkv_error sqkv_writer_stream_layer(sqkv_writer *w, uint32_t layer) {
    sqkv_error err = SQKV_OK;
    const size_t n = sqkv_writer_sections_per_layer(w);
    for (size_t i = 0; i < n && err == SQKV_OK; i++) err = sqkv_stream_out_section(w->stream, &w->layers[layer][i]);
    sqkv_writer_free_layer(w, layer);
    if (err == SQKV_ERR_LIMIT) return sqkv_writer_fail(w, err, "add_layer: more sections than the index has room for");
    if (err != SQKV_OK) {
        char when[64];
        snprintf(when, sizeof when, "add_layer %u", (unsigned)layer);
        return stream_io_error(w, when);
    }
    return SQKV_OK;
}

sqkv_error sqkv_writer_stream_finish(sqkv_writer *w) {
    if (!w) return SQKV_ERR_INVALID_ARGUMENT;
    if (w->error != SQKV_OK) return w->error;
    if (!w->stream || !w->stream_owned || w->stream_finished)
        return sqkv_writer_fail(w, SQKV_ERR_STATE, "stream_finish without stream_begin, or twice");
    if (w->layers_added < w->geo.n_layers) {
        uint32_t missing = 0;
        while (w->layer_done[missing]) missing++;
        return sqkv_writer_fail(w, SQKV_ERR_STATE, "stream_finish before every layer was added (%u of %u added;"
                                " layer %u missing)", (unsigned)w->layers_added, (unsigned)w->geo.n_layers,
                                (unsigned)missing);
    }
    sqkv_error err = sqkv_stream_out_index(w->stream, w->geo.n_tokens, w->geo.dense_window, 0);
    if (err == SQKV_ERR_IO) return stream_io_error(w, "stream_finish (INDEX section)");
    if (err != SQKV_OK) return sqkv_writer_fail(w, err, "stream_finish: out of memory building the INDEX section");
    w->stream_finished = 1;
    w->file_size = w->stream->offset;
    return SQKV_OK;
}

sqkv_error sqkv_encode_tokens_section(const int32_t *tokens, size_t count, sqkv_section_blob *out) {
    return sqkv_encode_tokens(tokens, count, out);
}

uint64_t sqkv_writer_tensor_section_count(const sqkv_writer *w) { return w->tensor_sections; }

void sqkv_writer_set_token_base(sqkv_writer *w, uint32_t base) { w->token_base = base; }

void sqkv_writer_attach_stream(sqkv_writer *w, sqkv_stream_out *s) {
    w->stream = s;
    w->stream_owned = 0;
}

sqkv_error sqkv_writer_stream_bytes(const sqkv_writer *w, uint64_t *bytes) {
    if (!w || !bytes) return SQKV_ERR_INVALID_ARGUMENT;
    if (w->error != SQKV_OK) return w->error;
    *bytes = w->stream ? w->stream->offset : 0;
    return SQKV_OK;
}
