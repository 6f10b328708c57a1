/* parse_index.c: the INDEX section and the file structure it describes (spec/FORMAT.md §2, §6, §9). */
#include "parse_index.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "codec_streams.h"
#include "format.h"

/* An index entry (§9), flags included. */
static sqkv_entry unpack_entry(const uint8_t *p, uint8_t *flags) {
    sqkv_section_header h;
    uint64_t offset;
    (void)sqkv_index_entry_unpack(p, &h, &offset);
    *flags = p[SQKV_IDX_RESERVED];
    sqkv_entry e;
    e.offset = offset;
    e.stored_size = h.stored_size;
    e.kind = h.kind;
    e.tensor = h.tensor;
    e.superseded = (*flags & SQKV_ENTRY_SUPERSEDED) != 0;
    e.layer = h.layer;
    e.head_start = h.head_start;
    e.head_count = h.head_count;
    e.token_start = h.token_start;
    e.token_count = h.token_count;
    return e;
}

/* The current cache length and window from the INDEX body's first 16 bytes (§9): LIMIT beyond the
 * maxima, SECTION_FIELD when shorter than the file header's or a window longer than the cache. */
static sqkv_error read_index_prefix(const uint8_t *body, const sqkv_limits *limits, sqkv_file_info *f,
                                    sqkv_diag *diag) {
    const uint32_t n_tokens = sqkv_load_u32(body), dense_window = sqkv_load_u32(body + 4);
    if (n_tokens > SQKV_MAX_TOKENS)
        return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "INDEX n_tokens %" PRIu32 " exceeds the format maximum 2^28 (§3)",
                              n_tokens);
    if (n_tokens > limits->max_tokens)
        return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "INDEX n_tokens %" PRIu32 " exceeds the configured limit %" PRIu32,
                              n_tokens, limits->max_tokens);
    if (n_tokens < f->header_n_tokens)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "INDEX n_tokens %" PRIu32 " is less than the file header's %"
                              PRIu32 " (§9)", n_tokens, f->header_n_tokens);
    if (dense_window > n_tokens)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "INDEX dense_window %" PRIu32 " exceeds its n_tokens %" PRIu32
                              " (§9)", dense_window, n_tokens);
    f->n_tokens = n_tokens;
    f->dense_window = dense_window;
    f->sparse_tokens = n_tokens - dense_window;
    f->previous_index_offset = sqkv_load_u64(body + 8);
    return SQKV_OK;
}

/* The INDEX section's own header, in the order of §5.2, plus §9: kind, codec 0, zero fields, the body
 * size 32 + 40 n, the file ending with it, the body checksum, then the body's prefix. */
static sqkv_error check_index_header(const uint8_t *p, sqkv_file_info *f, const sqkv_limits *limits,
                                     sqkv_entry *self, uint32_t *entries, sqkv_diag *diag) {
    sqkv_section_header h;
    sqkv_section_header_unpack(p, &h);
    if (!sqkv_checksum_ok(sqkv_load_u64(p + SQKV_SEC_HEADER_CHECKSUM), p, SQKV_SEC_HEADER_CHECKSUM))
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_HEADER_CHECKSUM, "section header checksum mismatch (§5)");
    if (h.kind != SQKV_KIND_INDEX)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_LAYOUT, "the tail points at a section of kind 0x%04x, not an"
                              " INDEX section (§9)", h.kind);
    if (h.codec != SQKV_CODEC_NONE && h.codec != SQKV_CODEC_STREAMS)
        return sqkv_diag_fail(diag, SQKV_ERR_UNSUPPORTED_CODEC, "codec %u (§5.1: 0 none, 1 streams)", h.codec);
    memset(self, 0, sizeof *self);
    self->offset = f->index_offset;
    self->stored_size = h.stored_size;
    self->kind = h.kind;
    if (h.tensor || h.layer || h.head_start || h.head_count || h.token_start || h.token_count)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "coordinate fields must be zero for an INDEX section (§9)");
    if (h.payload_bits || h.quantizer || h.scale_granularity || h.offset_interval_log2)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "SPARSE fields must be zero for an INDEX section (§9)");
    if (h.flags != 0)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "flags 0x%08" PRIx32 " (§5: v1.0 defines none)", h.flags);
    if (h.codec != SQKV_CODEC_NONE)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "an INDEX section with codec %u (§5.1: INDEX uses codec 0)",
                              h.codec);
    if (h.decoded_size != h.stored_size)
        return sqkv_diag_fail(diag, SQKV_ERR_SIZE_MISMATCH, "decoded_size %" PRIu64 " != stored_size %" PRIu64
                              " with codec 0 (§5.1)", h.decoded_size, h.stored_size);
    sqkv_error err = sqkv_check_entry_size(self, f, limits, diag);
    if (err) return err;
    const uint64_t n = (h.stored_size - SQKV_INDEX_MIN_BODY) / SQKV_INDEX_ENTRY_SIZE;
    if (n + 1 > SQKV_MAX_SECTIONS)
        return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "%" PRIu64 " sections exceed the format maximum 2^20 (§3)", n + 1);
    if (n + 1 > limits->max_sections)
        return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "%" PRIu64 " sections exceed the configured limit %" PRIu32, n + 1,
                              limits->max_sections);
    /* index_offset < file_size and stored_size <= 2^40: no overflow. */
    if (f->index_offset + SQKV_SECTION_HEADER_SIZE + h.stored_size != f->file_size)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_LAYOUT, "the INDEX body (%" PRIu64 " bytes) does not end the file"
                              " (§9: file_size = index offset + 64 + stored_size)", h.stored_size);
    const uint8_t *body = p + SQKV_SECTION_HEADER_SIZE;
    if (!sqkv_checksum_ok(h.body_checksum, body, (size_t)h.stored_size))
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_CHECKSUM, "body checksum mismatch (§5)");
    /* The body's last 16 bytes are the tail the index was found through, so its offset field is this
     * section's offset and its end magic was checked. */
    if ((err = read_index_prefix(body, limits, f, diag))) return err;
    *entries = (uint32_t)n;
    return SQKV_OK;
}

/* Rules of one entry that need nothing but the entry, the previous ones and the geometry. *next is the
 * offset where the entry's section must start; it becomes the offset where the next one must. */
static sqkv_error check_entry(const uint8_t *raw, const sqkv_file_info *f, const sqkv_limits *limits,
                              uint64_t *next, sqkv_entry *e, sqkv_diag *diag) {
    uint8_t flags;
    *e = unpack_entry(raw, &flags);
    if (flags & ~SQKV_ENTRY_SUPERSEDED)
        return sqkv_diag_fail(diag, SQKV_ERR_RESERVED, "index entry flags 0x%02x: bits 1-7 are reserved (§9)", flags);
    if (e->offset != *next)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_LAYOUT, "index entry offset %" PRIu64 ", expected %" PRIu64
                              " (§9: sections are contiguous from header_size)", e->offset, *next);
    if (!sqkv_kind_known(e->kind) && !(e->kind & SQKV_KIND_ANCILLARY_BIT))
        return sqkv_diag_fail(diag, SQKV_ERR_UNKNOWN_SECTION, "unknown critical section kind 0x%04x (§6)", e->kind);
    if (e->kind == SQKV_KIND_INDEX && !e->superseded)
        return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "an INDEX section before the last one is not superseded (§9.1)");
    sqkv_error err = sqkv_check_coordinates(e, f, diag);
    if (err) return err;
    if ((err = sqkv_check_entry_size(e, f, limits, diag))) return err;
    const uint64_t end = e->offset + sqkv_section_extent(e->stored_size); /* offset < 2^64 - 2^41: no overflow */
    if (end > f->index_offset)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_LAYOUT, "the section ends at %" PRIu64 ", past the INDEX section at %"
                              PRIu64 " (§2)", end, f->index_offset);
    *next = end;
    return SQKV_OK;
}

/* §9.1: previous_index_offset is 0 or an earlier INDEX section's offset; a file never appended to has
 * no superseded entry and the header's n_tokens and dense_window. */
static sqkv_error check_append_chain(const sqkv_index *idx, const sqkv_file_info *f, uint32_t superseded,
                                     sqkv_diag *diag) {
    const uint64_t prev = f->previous_index_offset;
    if (prev == 0) {
        if (superseded)
            return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "%" PRIu32 " superseded entries in an index with no previous"
                                  " INDEX section (§9.1)", superseded);
        if (f->n_tokens != f->header_n_tokens || f->dense_window != f->header_dense_window)
            return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "INDEX n_tokens %" PRIu32 " / dense_window %" PRIu32
                                  " differ from the file header's with no previous INDEX section (§9.1)",
                                  f->n_tokens, f->dense_window);
        return SQKV_OK;
    }
    /* Entries are sorted by offset (contiguous): binary search. */
    uint32_t lo = 0, hi = idx->n_entries;
    while (lo < hi) {
        const uint32_t mid = lo + (hi - lo) / 2;
        if (idx->entries[mid].offset < prev)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == idx->n_entries || idx->entries[lo].offset != prev || idx->entries[lo].kind != SQKV_KIND_INDEX)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_LAYOUT, "previous_index_offset %" PRIu64
                              " is not the offset of an INDEX section listed in the index (§9.1)", prev);
    return SQKV_OK;
}

sqkv_error sqkv_check_old_index(const uint8_t *body, uint64_t size, uint32_t position, uint64_t offset,
                                const sqkv_file_info *f, const sqkv_entry *current, sqkv_diag *diag) {
    /* size = 32 + 40 n was checked with the section. */
    const uint8_t *tail = body + size - SQKV_TAIL_SIZE;
    if (memcmp(tail + 8, sqkv_end_magic, SQKV_MAGIC_SIZE) != 0)
        return sqkv_diag_fail(diag, SQKV_ERR_BAD_TAIL, "its tail has a bad end magic (§9)");
    if (sqkv_load_u64(tail) != offset)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_LAYOUT, "its tail's offset %" PRIu64 " is not its own offset %"
                              PRIu64 " (§9)", sqkv_load_u64(tail), offset);
    if ((size - SQKV_INDEX_MIN_BODY) / SQKV_INDEX_ENTRY_SIZE != position)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_LAYOUT, "it lists %" PRIu64 " sections but %" PRIu32
                              " precede it (§9)", (size - SQKV_INDEX_MIN_BODY) / SQKV_INDEX_ENTRY_SIZE, position);
    const uint32_t n_tokens = sqkv_load_u32(body), dense_window = sqkv_load_u32(body + 4);
    if (n_tokens < f->header_n_tokens || n_tokens > f->n_tokens || dense_window > n_tokens)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "its n_tokens %" PRIu32 " / dense_window %" PRIu32
                              " do not describe an earlier state of the cache (§9.1)", n_tokens, dense_window);
    const uint64_t prev = sqkv_load_u64(body + 8);
    if (prev >= offset)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_LAYOUT, "its previous_index_offset %" PRIu64
                              " is not before it (§9.1)", prev);
    /* The chain of indexes ends at the first INDEX section, the one with 0: pointing anywhere else earlier
     * would leave the first segment without a valid index of its own, which a streaming decoder meets as
     * the whole file (§2.1 item 5; fuzzing finding 8). current[0, position) are the sections before this
     * one, sorted by offset. */
    if (prev != 0) {
        uint32_t lo = 0, hi = position;
        while (lo < hi) {
            const uint32_t mid = lo + (hi - lo) / 2;
            if (current[mid].offset < prev)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == position || current[lo].offset != prev || current[lo].kind != SQKV_KIND_INDEX)
            return sqkv_diag_fail(diag, SQKV_ERR_SECTION_LAYOUT, "its previous_index_offset %" PRIu64
                                  " is not the offset of an earlier INDEX section (§9.1)", prev);
    }
    /* The first INDEX closes the file as first written, which must be valid on its own (§9.1, §2.1 item
     * 5: a streaming decoder reads it as the whole file): the rules of a never-appended index. */
    if (prev == 0 && (n_tokens != f->header_n_tokens || dense_window != f->header_dense_window))
        return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "it is the first INDEX but its n_tokens %" PRIu32 " / dense_window"
                              " %" PRIu32 " differ from the file header's (§9.1)", n_tokens, dense_window);
    for (uint32_t i = 0; i < position; i++) {
        uint8_t flags;
        const sqkv_entry old = unpack_entry(body + SQKV_INDEX_PREFIX_SIZE + (size_t)i * SQKV_INDEX_ENTRY_SIZE, &flags);
        const sqkv_entry *now = &current[i];
        if (prev == 0 && (flags & SQKV_ENTRY_SUPERSEDED))
            return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "it is the first INDEX but its entry %" PRIu32 " is"
                                  " superseded (§9.1: no superseded entries without a previous INDEX)", i);
        if ((flags & ~SQKV_ENTRY_SUPERSEDED) || old.offset != now->offset || old.stored_size != now->stored_size ||
            old.kind != now->kind || old.tensor != now->tensor || old.layer != now->layer ||
            old.head_start != now->head_start || old.head_count != now->head_count ||
            old.token_start != now->token_start || old.token_count != now->token_count)
            return sqkv_diag_fail(diag, SQKV_ERR_INDEX_MISMATCH, "its entry %" PRIu32 " does not describe the section"
                                  " the current index lists there (§9, §9.1)", i);
    }
    return SQKV_OK;
}

static int compare_refs(const void *a, const void *b) {
    const sqkv_tensor_ref *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->entry < y->entry ? -1 : x->entry > y->entry;
}

/* Coordinates are range-checked before this is called, so every field fits its bits. */
static uint64_t coverage_key(const sqkv_entry *e) {
    return ((uint64_t)e->layer << 52) | ((uint64_t)e->tensor << 51) | ((uint64_t)e->head_start << 40) |
           ((uint64_t)e->token_start << 11) | (uint64_t)e->head_count;
}

static const char *tensor_name(uint32_t t) { return t == 0 ? "K" : "V"; }

/* §6 coverage: for each (layer, tensor) the sorted sections must form a grid that partitions
 * [0, n_kv_heads) x [0, n_tokens), SPARSE inside [0, S) and DENSE inside [S, n_tokens). One pass over
 * the sorted refs; fills lt_first. */
static sqkv_error check_coverage(const sqkv_index *idx, const sqkv_file_info *f, uint32_t *lt_first,
                                 sqkv_diag *diag) {
    const sqkv_tensor_ref *refs = idx->tensors;
    const uint32_t n = idx->n_tensors, S = f->sparse_tokens;
    uint32_t pos = 0;
    for (uint32_t layer = 0; layer < f->n_layers; layer++) {
        for (uint32_t t = 0; t < 2; t++) {
            const uint64_t lt_key = ((uint64_t)layer << 52) | ((uint64_t)t << 51);
            lt_first[2 * layer + t] = pos;
#define SAME_LT(r) (((r)->key >> 51) == (lt_key >> 51))
            uint32_t head = 0;
            while (head < f->n_kv_heads) {
                if (pos == n || !SAME_LT(&refs[pos]) || sqkv_ref_head_start(&refs[pos]) > head)
                    return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "layer %" PRIu32 " tensor %s: no section holds head %"
                                          PRIu32 " (§6: a gap)", layer, tensor_name(t), head);
                const sqkv_entry *first = &idx->entries[refs[pos].entry];
                if (first->head_start < head) {
                    sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "its heads overlap another section's (§6)");
                    sqkv_diag_section(diag, first - idx->entries, first);
                    return SQKV_ERR_COVERAGE;
                }
                const uint32_t head_count = first->head_count;
                uint32_t token = 0;
                while (token < f->n_tokens) {
                    if (pos == n || !SAME_LT(&refs[pos]) || sqkv_ref_head_start(&refs[pos]) != head)
                        return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "layer %" PRIu32 " tensor %s heads [%" PRIu32
                                              ", %" PRIu64 "): no section holds token %" PRIu32 " (§6: a gap)", layer,
                                              tensor_name(t), head, (uint64_t)head + head_count, token);
                    const sqkv_entry *e = &idx->entries[refs[pos].entry];
                    const uint64_t end = (uint64_t)e->token_start + e->token_count;
                    const char *rule = NULL;
                    if (e->head_count != head_count)
                        rule = "its head range differs from the other sections of its heads (§6: a grid)";
                    else if (e->token_start > token)
                        rule = "a gap in the tokens before it (§6)";
                    else if (e->token_start < token)
                        rule = "its tokens overlap another section's (§6)";
                    else if (e->token_start < S && end > S)
                        rule = "it crosses the start of the dense window (§6)";
                    else if (end <= S && e->kind != SQKV_KIND_SPARSE)
                        rule = "a section inside the sparse region must be SPARSE (§6)";
                    else if (e->token_start >= S && e->kind != SQKV_KIND_DENSE)
                        rule = "a section inside the dense window must be DENSE (§6)";
                    if (rule) {
                        sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "%s", rule);
                        sqkv_diag_section(diag, e - idx->entries, e);
                        return SQKV_ERR_COVERAGE;
                    }
                    token = (uint32_t)end;
                    pos++;
                }
                head += head_count;
            }
            if (pos < n && SAME_LT(&refs[pos])) {
                const sqkv_entry *e = &idx->entries[refs[pos].entry];
                sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "it overlaps other sections of its layer and tensor (§6)");
                sqkv_diag_section(diag, e - idx->entries, e);
                return SQKV_ERR_COVERAGE;
            }
#undef SAME_LT
        }
    }
    lt_first[2 * f->n_layers] = pos;
    return SQKV_OK; /* every ref has layer < n_layers, so pos == n here */
}

void sqkv_index_free(sqkv_index *idx) {
    free(idx->entries);
    free(idx->tensors);
    free(idx->lt_first);
    memset(idx, 0, sizeof *idx);
}

static uint32_t *ancillary_slot(sqkv_index *idx, uint16_t kind) {
    switch (kind) {
    case SQKV_KIND_TOKENS: return &idx->tokens;
    case SQKV_KIND_FINGERPRINT: return &idx->fingerprint;
    case SQKV_KIND_METADATA: return &idx->metadata;
    default: return NULL;
    }
}

sqkv_error sqkv_parse_index(const uint8_t *file, sqkv_file_info *info, const sqkv_limits *limits,
                            uint64_t memory_budget, sqkv_index *idx, sqkv_diag *diag) {
    return sqkv_parse_index_section(file + info->index_offset, info, limits, memory_budget, idx, diag);
}

sqkv_error sqkv_parse_index_section(const uint8_t *index_section, sqkv_file_info *info, const sqkv_limits *limits,
                                    uint64_t memory_budget, sqkv_index *idx, sqkv_diag *diag) {
    memset(idx, 0, sizeof *idx);
    idx->tokens = idx->fingerprint = idx->metadata = SQKV_NO_SECTION;
    uint32_t n = 0;
    sqkv_error err = check_index_header(index_section, info, limits, &idx->self, &n, diag);
    if (err) {
        sqkv_diag_prefix(diag, "INDEX section at %" PRIu64 ": ", info->index_offset);
        return err;
    }

    /* Every table is sized by n (<= 2^20) or n_layers (<= 1024): at most ~70 MiB, checked first. */
    const uint64_t need = (uint64_t)n * sizeof(sqkv_entry) + (uint64_t)n * sizeof(sqkv_tensor_ref) +
                          (2 * (uint64_t)info->n_layers + 1) * sizeof(uint32_t);
    if (need > memory_budget)
        return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "the index of %" PRIu32 " sections needs %" PRIu64
                              " bytes of tables, more than the memory limit allows (%" PRIu64 ")", n, need, memory_budget);
    idx->entries = malloc(n ? (size_t)n * sizeof(sqkv_entry) : 1);
    idx->tensors = malloc(n ? (size_t)n * sizeof(sqkv_tensor_ref) : 1);
    idx->lt_first = malloc((2 * (size_t)info->n_layers + 1) * sizeof(uint32_t));
    if (!idx->entries || !idx->tensors || !idx->lt_first) {
        sqkv_index_free(idx);
        return sqkv_diag_fail(diag, SQKV_ERR_OUT_OF_MEMORY, "out of memory for the index tables");
    }
    idx->memory = need;
    idx->n_entries = n;

    const uint8_t *body = index_section + SQKV_SECTION_HEADER_SIZE + SQKV_INDEX_PREFIX_SIZE;
    uint64_t next = info->header_size;
    uint32_t superseded = 0;
    int first_segment = 1; /* before the first INDEX section: the file as first written (§2.1 item 5) */
    for (uint32_t i = 0; i < n; i++) {
        sqkv_entry *e = &idx->entries[i];
        err = check_entry(body + (size_t)i * SQKV_INDEX_ENTRY_SIZE, info, limits, &next, e, diag);
        if (!err && e->kind == SQKV_KIND_INDEX) first_segment = 0;
        /* The first segment must be a valid file on its own, so its tensor sections lie within the
         * header's n_tokens, not merely within the grown length. */
        if (!err && first_segment && info->previous_index_offset && sqkv_kind_is_tensor(e->kind) &&
            (uint64_t)e->token_start + e->token_count > info->header_n_tokens)
            err = sqkv_diag_fail(diag, SQKV_ERR_SECTION_RANGE, "tokens %" PRIu32 "+%" PRIu32 " of a section written"
                                 " before the first INDEX exceed the header's n_tokens %" PRIu32 " (§9.1)",
                                 e->token_start, e->token_count, info->header_n_tokens);
        if (!err && !e->superseded) {
            uint32_t *slot = ancillary_slot(idx, e->kind);
            if (slot && *slot != SQKV_NO_SECTION)
                err = sqkv_diag_fail(diag, SQKV_ERR_DUPLICATE_SECTION, "a second %s section that is not superseded (§6)",
                                     sqkv_kind_name(e->kind));
            else if (slot)
                *slot = i;
        }
        if (err) {
            sqkv_diag_section(diag, i, e);
            sqkv_index_free(idx);
            return err;
        }
        superseded += e->superseded;
        if (sqkv_kind_is_tensor(e->kind) && !e->superseded) {
            idx->tensors[idx->n_tensors].key = coverage_key(e);
            idx->tensors[idx->n_tensors].entry = i;
            idx->n_tensors++;
        }
    }
    if (next != info->index_offset) {
        sqkv_index_free(idx);
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_LAYOUT, "the sections end at %" PRIu64 " but the INDEX section"
                              " starts at %" PRIu64 " (§2: no holes)", next, info->index_offset);
    }
    if ((err = check_append_chain(idx, info, superseded, diag))) {
        sqkv_diag_prefix(diag, "INDEX section at %" PRIu64 ": ", info->index_offset);
        sqkv_index_free(idx);
        return err;
    }

    qsort(idx->tensors, idx->n_tensors, sizeof(sqkv_tensor_ref), compare_refs);
    if ((err = check_coverage(idx, info, idx->lt_first, diag))) {
        sqkv_index_free(idx);
        return err;
    }
    return SQKV_OK;
}
