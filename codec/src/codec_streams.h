/*
 * codec_streams.h: codec 1 of spec/FORMAT.md §5.1: a body cut into streams at boundaries known from
 * the section header, each stored as is or as one zstd frame, behind a table of 16-byte records.
 */
#ifndef SQKV_CODEC_STREAMS_H
#define SQKV_CODEC_STREAMS_H

#include <stdint.h>

#include "diag.h"
#include "section_header.h"
#include "sqkv.h"

#define SQKV_CODEC_STREAMS 1u
#define SQKV_STREAM_RECORD_SIZE 16u
#define SQKV_STREAM_STORED 0u
#define SQKV_STREAM_ZSTD 1u
#define SQKV_MAX_STREAMS 4u

/* Where each stream lies in the decoded body. */
typedef struct sqkv_stream_plan {
    uint32_t count;
    uint64_t at[SQKV_MAX_STREAMS], length[SQKV_MAX_STREAMS];
} sqkv_stream_plan;

/* SPARSE: bitmaps, offsets, scales, payload (the rest); every other kind: the whole body. The header's
 * fields and decoded_size must already be checked (a SPARSE decoded_size at least the first three). */
void sqkv_stream_plan_for(const sqkv_section_header *h, uint32_t head_dim, sqkv_stream_plan *plan);

/* The stream table of a stored body whose checksum was verified: record fields (UNSUPPORTED_CODEC for
 * an unknown method, RESERVED), stored_size = table + padded streams (SIZE_MISMATCH), zero padding after
 * each stream (PADDING), method-0 lengths (COMPRESSED_STREAM), at least one zstd stream
 * (SECTION_FIELD). */
sqkv_error sqkv_streams_check(const uint8_t *stored, const sqkv_section_header *h, const sqkv_stream_plan *plan,
                              sqkv_diag *diag);

/* Decodes a checked stored body into out (decoded_size bytes). Each zstd stream must be exactly one
 * frame declaring the stream's length and producing it (COMPRESSED_STREAM). dctx is a ZSTD_DCtx. */
sqkv_error sqkv_streams_decode(const uint8_t *stored, const sqkv_stream_plan *plan, void *dctx, uint8_t *out,
                               sqkv_diag *diag);

#endif
