/*
 * writer_internal.h: the writer object, shared by writer.c (whole-file output), stream_writer.c
 * (streaming output) and append.c (which drives a writer to encode the sections of an append).
 */
#ifndef SQKV_WRITER_INTERNAL_H
#define SQKV_WRITER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "encode_ancillary.h"
#include "encode_sparse.h"
#include "format.h"
#include "section_blob.h"
#include "sqkv.h"
#include "stream_out.h"

#define SQKV_WRITER_ANCILLARY_MAX 3

struct sqkv_writer {
    sqkv_geometry geo;
    sqkv_writer_options opt;
    uint32_t keep;           /* elements kept per row */
    uint32_t sparse_tokens;  /* S: tokens of the sparse region */
    uint32_t head_groups;    /* ceil(n_kv_heads / heads_per_section) */
    uint32_t token_chunks;   /* SPARSE sections per head group */
    uint32_t per_group;      /* tensor sections per head group: token_chunks + (dense window ? 1 : 0) */
    uint64_t tensor_sections;
    uint32_t token_base;     /* added to every tensor section's token_start (appends: the old S) */

    sqkv_error error;
    char detail[SQKV_WRITER_DETAIL_SIZE];

    int have_source;
    sqkv_dtype source_dtype;
    uint32_t layers_added;
    uint8_t *layer_done;        /* per layer: 1 once added */
    sqkv_section_blob **layers; /* per layer: 2 * head_groups * per_group sections, NULL until added (and
                                   again after a streaming writer wrote them) */

    int32_t *tokens;
    uint8_t *fingerprint;
    size_t fingerprint_size;
    sqkv_metadata_entry *meta; /* sorted by key */
    size_t meta_count, meta_cap;
    uint64_t meta_body_size;

    uint16_t *converted;
    size_t converted_cap;
    sqkv_sparse_scratch sparse;
    void *zstd;                 /* ZSTD_CCtx, created on the first compressed section */

    int finalized;
    sqkv_section_blob ancillary[SQKV_WRITER_ANCILLARY_MAX];
    size_t ancillary_count;
    sqkv_section_blob index;
    uint8_t file_header[SQKV_HEADER_SIZE_V1];
    uint64_t file_size;

    /* Streaming: sections go out through `stream` as each layer is added. */
    sqkv_stream_out *stream;
    int stream_owned;        /* stream_begin's own sink, freed by destroy; else the caller's (append) */
    int stream_finished;
};

/* Sticky failure with a formatted detail; returns the (first) error. */
sqkv_error sqkv_writer_fail(sqkv_writer *w, sqkv_error err, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
size_t sqkv_writer_sections_per_layer(const sqkv_writer *w);
void sqkv_writer_free_layer(sqkv_writer *w, uint32_t layer);
/* TOKENS, FINGERPRINT and METADATA sections of what was set, into w->ancillary (compressed per
 * opt.zstd_level). */
sqkv_error sqkv_writer_build_ancillary(sqkv_writer *w);
void sqkv_writer_build_file_header(sqkv_writer *w);
/* Called by add_layer in streaming mode: writes the layer's sections through w->stream and frees them. */
sqkv_error sqkv_writer_stream_layer(sqkv_writer *w, uint32_t layer);

#endif
