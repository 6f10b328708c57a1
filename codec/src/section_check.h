/*
 * section_check.h: the section rules that do not depend on the body's kind-specific content:
 * spec/FORMAT.md §5 (header fields, sizes, checksums, padding), §6 (kinds), §9 (index entry
 * agreement). Shared by the index parser (which checks what an index entry alone can tell) and by
 * every reader of a section.
 */
#ifndef SQKV_SECTION_CHECK_H
#define SQKV_SECTION_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "parse_header.h"
#include "section_header.h"
#include "sqkv.h"

/* One row of the index (§9): where a section is and what it holds. */
typedef struct sqkv_entry {
    uint64_t offset, stored_size;
    uint16_t kind;
    uint8_t tensor;
    uint8_t superseded; /* entry flag SUPERSEDED (§9.1): kept in the file, no longer part of the cache */
    uint32_t layer, head_start, head_count, token_start, token_count;
} sqkv_entry;

/* THE one place where checksum mismatches may be ignored: a fuzzing build (-DSQKV_FUZZING=1, never a
 * release build, spec §12) accepts every header and body checksum so that fuzzers reach the checks
 * behind them. Everywhere else: 1 when XXH3(data[0..size)) == stored. */
int sqkv_checksum_ok(uint64_t stored, const void *data, size_t size);

int sqkv_kind_is_tensor(uint16_t kind);
/* A kind this decoder knows (the six of §6). */
int sqkv_kind_known(uint16_t kind);
/* "SPARSE", "DENSE", ..., or "ANCILLARY" / "CRITICAL" for unknown kinds. */
const char *sqkv_kind_name(uint16_t kind);

/* Prefixes d's message with "section <number> (<kind>, layer .., tensor .., heads a..b, tokens c..d): ",
 * the fields that apply to the kind. */
void sqkv_diag_section(sqkv_diag *d, uint64_t number, const sqkv_entry *e);

/* Coordinate fields (tensor, layer, heads, tokens) of a section of known kind `e->kind` against the
 * geometry: SECTION_FIELD for a value the kind forbids, SECTION_RANGE outside the geometry.
 * Unknown ancillary kinds are not checked (a later minor version may give them coordinates). */
sqkv_error sqkv_check_coordinates(const sqkv_entry *e, const sqkv_file_info *f, sqkv_diag *diag);

/* What an index entry alone says about sizes (coordinates already checked): stored_size within the
 * format maximum and the configured one (LIMIT), tensor section elements (LIMIT), and the form
 * 32 + 40 n of an INDEX body (SIZE_MISMATCH). */
sqkv_error sqkv_check_entry_size(const sqkv_entry *e, const sqkv_file_info *f, const sqkv_limits *limits,
                                 sqkv_diag *diag);

/* Checks the section that index entry e points to, in the order of §5.2: header checksum, kind, codec,
 * fields, sizes (stored and decoded), agreement with e (INDEX_MISMATCH), body checksum (when
 * check_body_checksum), the padding after the stored body. On success *h is the header and *stored its
 * stored body; undoing the codec and the kind-specific body rules are left to the caller. */
sqkv_error sqkv_check_section(const uint8_t *file, const sqkv_file_info *f, const sqkv_entry *e,
                              const sqkv_limits *limits, int check_body_checksum, sqkv_section_header *h,
                              const uint8_t **stored, sqkv_diag *diag);

/* Steps 1-6 of §5.2 on a 64-byte section header at p, against entry e (kind, coordinates, stored size;
 * e->offset is only reported): everything sqkv_check_section checks before the body. Streaming readers
 * use it to refuse a section (and bound its memory) before its body arrives. */
sqkv_error sqkv_check_section_header(const uint8_t *p, const sqkv_file_info *f, const sqkv_entry *e,
                                     const sqkv_limits *limits, sqkv_section_header *h, sqkv_diag *diag);

#endif
