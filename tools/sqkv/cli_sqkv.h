/*
 * cli_sqkv.h: an .sqkv file opened for reading by the commands: its bytes (mapped, or read fully
 * from stdin within --stdin-limit) and a library reader over them, plus the encoder options the file
 * was written with, read from its SPARSE section headers (the public API does not report them).
 */
#ifndef SQKV_CLI_SQKV_H
#define SQKV_CLI_SQKV_H

#include <stddef.h>
#include <stdint.h>

#include "sqkv.h"
#include "tools/common/blob.h"
#include "tools/sqkv/cli_common.h"

typedef struct cli_sqkv {
    const char *name;          /* for messages: the path or "(stdin)" */
    sqt_blob blob;
    sqkv_reader *reader;
    sqkv_geometry geometry;
    size_t n_sections;         /* including the INDEX section */
} cli_sqkv;

/* Opens and validates the structure; prints the error and returns its exit code on failure. */
int cli_sqkv_open(const char *path, const cli_ctx *ctx, unsigned reader_flags, cli_sqkv *in);
void cli_sqkv_close(cli_sqkv *in);

/* Encoding parameters of one section, from its header (0 when the header checksum fails). */
typedef struct section_params {
    int valid;
    unsigned codec;            /* 0 = stored as is, 1 = streams, some zstd-compressed (spec §5.1) */
    unsigned payload_bits, quantizer, granularity, offset_interval_log2;
    unsigned flags;            /* SPARSE: SQKV_SECTION_FLAG_ALL_KEPT (spec §7.6) */
} section_params;
section_params cli_sqkv_section_params(const cli_sqkv *in, const sqkv_section_info *info);

/* What the encoder options were, summarized over the tensor sections. */
struct file_options;
typedef struct file_options {
    uint64_t n_sparse, n_dense;
    uint64_t n_zstd;           /* sections of any kind with codec 1 */
    int mixed;                 /* SPARSE sections disagree on their parameters */
    section_params sparse;     /* of the first SPARSE section (valid = 0 when there is none) */
    uint32_t heads_per_section;
    uint32_t tokens_per_section; /* 0 when each head range has one SPARSE section */
} file_options;
void cli_sqkv_options(const cli_sqkv *in, file_options *out);

/* Name of a section kind ("SPARSE", ..., "UNKNOWN"). */
const char *cli_kind_name(uint16_t kind);

/* Names of the SQKV_FEATURE_* bits of mask, comma-separated ("CODE_WIDTHS, ALL_KEPT"), unknown bits as
 * "bit N"; "none" for 0. */
void cli_feature_names(uint32_t mask, char *buf, size_t cap);

#endif
