/*
 * size_breakdown.h: where the bytes of an SQKV file go, from its section table: the streams of the
 * SPARSE sections (spec/FORMAT.md §7.2), the dense window, the ancillary sections, and the framing
 * (file header, section headers, the INDEX body, which ends with the tail).
 */
#ifndef SQKV_TOOLS_SIZE_BREAKDOWN_H
#define SQKV_TOOLS_SIZE_BREAKDOWN_H

#include <stddef.h>
#include <stdint.h>

#include "sqkv.h"

typedef struct size_breakdown {
    uint64_t bitmaps, offsets, scales, payload; /* SPARSE streams, each with its padding to 8 */
    uint64_t dense_window;                      /* DENSE bodies with padding */
    uint64_t ancillary;                         /* TOKENS, FINGERPRINT, METADATA bodies with padding */
    uint64_t framing;                           /* file header, section headers, INDEX body (with the tail) */
    uint64_t total;                             /* the file size; the fields above add up to it */
} size_breakdown;

/* Fills *out for the file that r has open (bytes: the same file's bytes, used to read the SPARSE
 * section headers). Returns SQKV_OK, or an error when the table does not add up to the file size. */
sqkv_error size_breakdown_compute(sqkv_reader *r, const uint8_t *bytes, size_t size, size_breakdown *out);

#endif
