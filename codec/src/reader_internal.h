/*
 * reader_internal.h: the reader object shared by reader*.c, mustafar.c and restore.c.
 */
#ifndef SQKV_READER_INTERNAL_H
#define SQKV_READER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "decode_ancillary.h"
#include "decode_sparse.h"
#include "diag.h"
#include "parse_header.h"
#include "parse_index.h"
#include "source.h"
#include "sqkv.h"

/* An ancillary section's body once checked (first access). */
typedef struct sqkv_ancillary {
    int checked;
    const uint8_t *body; /* into the file (codec 0) or `owned` (codec 1) */
    uint64_t size;
    uint8_t *owned;
} sqkv_ancillary;

struct sqkv_reader {
    sqkv_limits limits; /* effective: configured values capped at the format maxima */
    unsigned flags;
    sqkv_error error;   /* sticky */
    char detail[512];
    int opened;
    const uint8_t *data;  /* the whole file (open_memory, open_file); NULL when read through src.read_at */
    uint64_t size;
    sqkv_source src;
    uint8_t *section_buf; /* read_at sources: the last section read (header, body, padding) */
    uint64_t section_buf_size;
    void *map;          /* open_file's mapping, unmapped by destroy */
    size_t map_size;
    sqkv_file_info file;
    sqkv_index index;
    uint64_t memory_used; /* index tables, scratch, ancillary copies: at most limits.max_memory */
    uint8_t *scratch;     /* decoded body of the last codec-1 tensor section read */
    uint64_t scratch_size;
    void *zstd;           /* ZSTD_DCtx, created on the first codec-1 section */
    sqkv_ancillary tokens, fingerprint, metadata_body;
    sqkv_metadata_entry *metadata;
    uint32_t metadata_count;
};

/* Memory the reader allocates beyond the index tables, counted against max_memory: NULL (and a sticky
 * LIMIT or OUT_OF_MEMORY) when it cannot. */
void *sqkv_reader_alloc(sqkv_reader *r, uint64_t bytes);
void sqkv_reader_free(sqkv_reader *r, void *p, uint64_t bytes);

/* Checks every section from entry `first` on (as sqkv_reader_verify does for all of them). */
sqkv_error sqkv_reader_verify_from(sqkv_reader *r, uint32_t first);

/* Makes err sticky with the detail "<what>" (or d's text when what is NULL) and returns it. */
sqkv_error sqkv_reader_fail(sqkv_reader *r, sqkv_error err, const char *what);
/* Sticky failures with d's message, an argument error of `function`, or a section's error with the
 * section named before d's message. */
sqkv_error sqkv_reader_fail_diag(sqkv_reader *r, sqkv_error err, const sqkv_diag *d);
sqkv_error sqkv_reader_fail_argument(sqkv_reader *r, const char *function, const char *what);
sqkv_error sqkv_reader_fail_section(sqkv_reader *r, sqkv_error err, sqkv_diag *d, uint32_t entry);
/* The sticky error, or STATE (made sticky) when no file is open; OK when calls may proceed. */
sqkv_error sqkv_reader_usable(sqkv_reader *r, const char *function);

/* Checks section `entry` (header, sizes, index agreement, body checksum unless the reader is TRUSTED
 * and force_checksum is 0, padding, codec 1 streams) and gives its decoded body: into the file for
 * codec 0, else the reader's scratch buffer, valid until the next call. Failures are sticky and name
 * the section. */
sqkv_error sqkv_reader_section(sqkv_reader *r, uint32_t entry, int force_checksum, sqkv_section_header *h,
                               const uint8_t **body);
/* sqkv_reader_section without the decompression: for codec 1 the stream table is checked (§5.1) but no
 * frame is decoded, and *stored is the stored body (in the file for memory readers, else the reader's
 * section buffer, valid until the next call); for codec 0 the same as sqkv_reader_section. For callers
 * that decompress elsewhere (the CUDA decoder, several sections at once). */
sqkv_error sqkv_reader_section_stored(sqkv_reader *r, uint32_t entry, int force_checksum, sqkv_section_header *h,
                                      const uint8_t **stored);
/* sqkv_reader_section plus every SPARSE body rule. */
sqkv_error sqkv_reader_sparse(sqkv_reader *r, uint32_t entry, int force_checksum, sqkv_sparse_view *v);

/* The checked body of the TOKENS or FINGERPRINT section that is not superseded; *body = NULL,
 * *size = 0 when the file has none. */
sqkv_error sqkv_reader_ancillary(sqkv_reader *r, uint16_t kind, const uint8_t **body, uint64_t *size);

/* First access to the TOKENS, FINGERPRINT or METADATA section that is not superseded: checks it and
 * keeps its decoded body (and METADATA's parsed entries). *out is the slot, unchecked when absent. */
sqkv_error sqkv_reader_load_ancillary(sqkv_reader *r, uint16_t kind, sqkv_ancillary **out);

/* Mustafar's layout (sqkv.h, sqkv_reader_decode_mustafar), shared with the CUDA decoder's export:
 * 32-bit value words a tile of `kept` values takes (padded to a multiple of 8, two per word), and the
 * zero entries after the last tile (Mustafar's kernel reads 16 bytes past a tile whose count is a
 * multiple of 8). */
#define SQKV_MUSTAFAR_TAIL_SLACK 8u
static inline uint64_t sqkv_mustafar_tile_words(uint64_t kept) { return ((kept + 7) & ~(uint64_t)7) / 2; }

/* sqkv_reader_mustafar_sizes for `head` (the same checks, in the same order, and the same errors), and
 * with it the sizes of every other head whose sections are exactly head's: each section is checked and
 * decoded once for all of them (asking head by head decompressed a zstd section once per head it holds).
 * sizes points to r's n_kv_heads entries; on success sizes[head] is set, so is every head sharing its
 * sections, and the other entries are {0, 0}. */
sqkv_error sqkv_reader_mustafar_sizes_shared(sqkv_reader *r, uint32_t layer, sqkv_tensor tensor, uint32_t head,
                                             sqkv_mustafar_sizes *sizes);

/* Positions in r->index.tensors of the sections of (layer, tensor) whose head range contains `head`
 * (sorted by token_start): [*first, *end). Arguments already checked. */
void sqkv_reader_head_sections(const sqkv_reader *r, uint32_t layer, uint32_t tensor, uint32_t head, uint32_t *first,
                               uint32_t *end);

#endif
