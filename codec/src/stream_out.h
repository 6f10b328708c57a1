/*
 * stream_out.h: sections written as they are made, with the index bookkeeping that streaming writers
 * and appends share, and the few writer hooks an append needs (the writer object itself is private to
 * writer_internal.h, whose encoder-side types clash with the reader's).
 */
#ifndef SQKV_STREAM_OUT_H
#define SQKV_STREAM_OUT_H

#include <stddef.h>
#include <stdint.h>

#include "section_blob.h"
#include "section_header.h"
#include "sqkv.h"

#define SQKV_WRITER_DETAIL_SIZE 320

/* Sections leaving through a write function as they are made, and the index entries (40 bytes each,
 * file order) of everything written so far. Used by streaming writers and by appends. */
typedef struct sqkv_stream_out {
    sqkv_write_fn fn;
    void *ctx;
    uint8_t *entries;  /* count packed index entries, room for cap */
    uint64_t count, cap;
    uint64_t offset;   /* file offset of the next byte written */
    int failed_rc;     /* the nonzero return of fn that failed, 0 when none */
} sqkv_stream_out;

/* Room for cap entries; the first byte written will be at file offset `offset`. OUT_OF_MEMORY, LIMIT. */
sqkv_error sqkv_stream_out_init(sqkv_stream_out *s, sqkv_write_fn fn, void *ctx, uint64_t offset, uint64_t cap);
void sqkv_stream_out_free(sqkv_stream_out *s);
/* Writes raw bytes that are not a section (the file header). IO on a write failure. */
sqkv_error sqkv_stream_out_bytes(sqkv_stream_out *s, const void *data, uint64_t size);
/* Writes a sealed section and records its index entry (flags 0). IO, LIMIT (more than cap entries). */
sqkv_error sqkv_stream_out_section(sqkv_stream_out *s, const sqkv_section_blob *b);
/* Records an entry for a section already in the file (appends): its fields, offset and entry flags. */
sqkv_error sqkv_stream_out_entry(sqkv_stream_out *s, const sqkv_section_header *h, uint64_t offset, uint8_t flags);
/* Builds the INDEX section listing every recorded entry (§9: n_tokens, dense_window,
 * previous_index_offset, entries, tail with its own offset) and writes it. OUT_OF_MEMORY, IO. */
sqkv_error sqkv_stream_out_index(sqkv_stream_out *s, uint32_t n_tokens, uint32_t dense_window,
                                 uint64_t previous_index_offset);

/* Writer hooks for appends. */
/* The option rules of sqkv_writer_create; the reason goes to why. */
sqkv_error sqkv_writer_check_options(const sqkv_writer_options *o, char *why, size_t why_size);
/* The required features (spec/FORMAT.md §4.1) that files written with valid options o use. */
uint32_t sqkv_features_of_options(const sqkv_writer_options *o);
/* Applies the zstd layer of opt.zstd_level (nothing at 0) to a sealed section. */
sqkv_error sqkv_writer_compress(sqkv_writer *w, sqkv_section_blob *b);
/* Tensor sections the writer makes for the whole cache. */
uint64_t sqkv_writer_tensor_section_count(const sqkv_writer *w);
/* Adds base to every tensor section's token_start (an append encodes tokens [S_old, ...) of the file). */
void sqkv_writer_set_token_base(sqkv_writer *w, uint32_t base);
/* From now on add_layer writes its sections through s (owned by the caller; NULL detaches it). */
void sqkv_writer_attach_stream(sqkv_writer *w, sqkv_stream_out *s);
/* sqkv_encode_tokens (encode_ancillary.h), for code that cannot include the encoder's headers. */
sqkv_error sqkv_encode_tokens_section(const int32_t *tokens, size_t count, sqkv_section_blob *out);

#endif
