/*
 * parse_index.h: the INDEX section (spec/FORMAT.md §9) and every structure rule that the index alone
 * decides: layout (§2), entry fields (§5), sizes (§3), duplicates (§6) and coverage (§6).
 */
#ifndef SQKV_PARSE_INDEX_H
#define SQKV_PARSE_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "parse_header.h"
#include "section_check.h"
#include "sqkv.h"

/* A tensor section in coverage order: key = (layer, tensor, head_start, token_start, head_count). */
typedef struct sqkv_tensor_ref {
    uint64_t key;
    uint32_t entry;
} sqkv_tensor_ref;

#define SQKV_NO_SECTION UINT32_MAX

typedef struct sqkv_index {
    sqkv_entry *entries;  /* the sections before the index, in file order */
    uint32_t n_entries;
    sqkv_entry self;      /* the INDEX section */
    sqkv_tensor_ref *tensors; /* tensor sections not superseded, sorted by key */
    uint32_t n_tensors;
    /* tensors[lt_first[2*layer + tensor] .. lt_first[2*layer + tensor + 1]) are one (layer, tensor). */
    uint32_t *lt_first;
    /* entry numbers of the sections not superseded, SQKV_NO_SECTION when absent */
    uint32_t tokens, fingerprint, metadata;
    uint64_t memory;      /* bytes allocated for the tables above */
} sqkv_index;

static inline uint32_t sqkv_ref_head_start(const sqkv_tensor_ref *t) { return (uint32_t)(t->key >> 40) & 0x7FFu; }
static inline uint32_t sqkv_ref_head_count(const sqkv_tensor_ref *t) { return (uint32_t)t->key & 0x7FFu; }

/* Reads and checks the INDEX section that info->index_offset points to (header, body checksum, the
 * current n_tokens / dense_window, which it stores in *info, entries, the append chain of §9.1) and the
 * coverage of §6 by the sections not superseded. The tables' memory is counted against memory_budget
 * (LIMIT when it would be exceeded). On failure *idx owns nothing. */
sqkv_error sqkv_parse_index(const uint8_t *file, sqkv_file_info *info, const sqkv_limits *limits,
                            uint64_t memory_budget, sqkv_index *idx, sqkv_diag *diag);
/* The same, given only the INDEX section's bytes: index_section[0 .. file_size - index_offset) is the
 * section at info->index_offset (readers that do not hold the whole file). */
sqkv_error sqkv_parse_index_section(const uint8_t *index_section, sqkv_file_info *info, const sqkv_limits *limits,
                                    uint64_t memory_budget, sqkv_index *idx, sqkv_diag *diag);
/* Body rules of a superseded INDEX section (its section already checked) at entry `position`, file
 * offset `offset`: its tail (BAD_TAIL, SECTION_LAYOUT), its entry count equal to the sections before it
 * and an earlier previous_index_offset (SECTION_LAYOUT), an earlier cache length (SECTION_FIELD), and
 * entries that describe the same sections as the current index's first `position` entries `current`
 * (INDEX_MISMATCH; only the SUPERSEDED flag may differ, since later appends set it). */
sqkv_error sqkv_check_old_index(const uint8_t *body, uint64_t size, uint32_t position, uint64_t offset,
                                const sqkv_file_info *f, const sqkv_entry *current, sqkv_diag *diag);
void sqkv_index_free(sqkv_index *idx);

#endif
