/*
 * make_crashers.h: the cases of `make_corpus --crashers DIR` (see hostile_files.h). Included once, by
 * make_corpus.c, after its encoder helpers.
 */
#ifndef SQKV_FUZZ_MAKE_CRASHERS_H
#define SQKV_FUZZ_MAKE_CRASHERS_H

static edit_file *crash_base(const uint8_t *file, size_t size) {
    edit_file *f = (edit_file *)malloc(sizeof *f);
    if (!f || !edit_parse(file, size, f)) {
        fprintf(stderr, "make_corpus: cannot take a base file apart\n");
        exit(1);
    }
    return f;
}

static void header_cases(hostile_ctx *c, const edit_file *base) {
    static const struct {
        const char *name, *expected, *why;
        size_t offset;
        int width;
        uint64_t value;
    } fields[] = {
        {"hdr-tokens-over-max", "SQKV_ERR_LIMIT", "n_tokens 2^28+1 (format maximum 2^28)", SQKV_HDR_N_TOKENS, 4,
         (1u << 28) + 1},
        {"hdr-layers-zero", "SQKV_ERR_HEADER_FIELD|SQKV_ERR_LIMIT", "n_layers 0", SQKV_HDR_N_LAYERS, 4, 0},
        {"hdr-layers-1025", "SQKV_ERR_LIMIT", "n_layers 1025", SQKV_HDR_N_LAYERS, 4, 1025},
        {"hdr-head-dim-u32max", "SQKV_ERR_LIMIT", "head_dim 2^32-1", SQKV_HDR_HEAD_DIM, 4, 0xFFFFFFFFu},
        {"hdr-heads-2^31", "SQKV_ERR_LIMIT", "n_kv_heads 2^31", SQKV_HDR_N_KV_HEADS, 4, 0x80000000u},
        {"hdr-window-past-tokens", "SQKV_ERR_HEADER_FIELD", "dense_window = n_tokens + 1", SQKV_HDR_DENSE_WINDOW, 4,
         71},
        {"hdr-size-huge", "SQKV_ERR_HEADER_SIZE", "header_size 0xFFFFFFF8", SQKV_HDR_HEADER_SIZE, 4, 0xFFFFFFF8u},
        {"hdr-size-60", "SQKV_ERR_HEADER_SIZE", "header_size 60", SQKV_HDR_HEADER_SIZE, 4, 60},
        {"hdr-size-unaligned", "SQKV_ERR_HEADER_SIZE", "header_size 68", SQKV_HDR_HEADER_SIZE, 4, 68},
        {"hdr-major-2", "SQKV_ERR_UNSUPPORTED_VERSION", "version_major 2", SQKV_HDR_VERSION_MAJOR, 2, 2},
        {"hdr-minor-9", "SQKV_OK", "version_minor 9 must be accepted (§12)", SQKV_HDR_VERSION_MINOR, 2, 9},
        {"hdr-required-feature", "SQKV_OK", "required_features bit 0 (CODE_WIDTHS) declared, unused: valid (§4.1)",
         SQKV_HDR_REQUIRED_FEATURES, 4, 1},
        {"hdr-required-feature-3", "SQKV_ERR_UNSUPPORTED_FEATURE", "required_features bit 3 (unknown in 1.1)",
         SQKV_HDR_REQUIRED_FEATURES, 4, 8},
        {"hdr-optional-feature", "SQKV_OK", "optional_features bit 31 must be ignored", SQKV_HDR_OPTIONAL_FEATURES, 4,
         0x80000000u},
        {"hdr-reserved", "SQKV_ERR_RESERVED", "reserved header byte 50 = 1", SQKV_HDR_RESERVED + 2, 1, 1},
        {"hdr-tile-log2-7", "SQKV_ERR_HEADER_FIELD", "tile_size_log2 7", SQKV_HDR_TILE_SIZE_LOG2, 1, 7},
        {"hdr-checksum-kind-2", "SQKV_ERR_HEADER_FIELD", "checksum_kind 2", SQKV_HDR_CHECKSUM_KIND, 1, 2},
        {"hdr-value-dtype-3", "SQKV_ERR_HEADER_FIELD", "value_dtype 3 (fp32 is no element type)",
         SQKV_HDR_VALUE_DTYPE, 1, 3},
        {"hdr-value-dtype-0", "SQKV_ERR_HEADER_FIELD", "value_dtype 0", SQKV_HDR_VALUE_DTYPE, 1, 0},
        {"hdr-bad-magic", "SQKV_ERR_BAD_MAGIC", "magic byte 4 changed", 4, 1, 'v'},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const patch_at p = {fields[i].offset, 0, fields[i].width, fields[i].value};
        hostile_build_emit(c, base, patch_field, &p, 1, fields[i].name, fields[i].expected, fields[i].why);
    }
    hostile_build_emit(c, base, patch_header_checksum, NULL, 0, "hdr-checksum", "SQKV_ERR_HEADER_CHECKSUM",
                       "one bit of the header checksum flipped");
    /* A later minor version's header: 72 bytes, 8 bytes of a field this decoder does not know. */
    edit_file *f = (edit_file *)malloc(sizeof *f);
    memcpy(f, base, sizeof *f);
    f->header_size = 72;
    sqkv_store_u32(f->header + SQKV_HDR_HEADER_SIZE, 72);
    sqkv_store_u16(f->header + SQKV_HDR_VERSION_MINOR, 1);
    memcpy(f->header + 56, "newfield", 8);
    hostile_build_emit(c, f, NULL, NULL, 1, "hdr-size-72-unknown-field", "SQKV_OK",
                       "header_size 72 with an unknown 8-byte field: skipped (§4)");
    free(f);
}

static void tail_and_index_cases(hostile_ctx *c, const edit_file *base) {
    const size_t idx_tail = SQKV_TAIL_SIZE;
    struct {
        const char *name, *expected, *why;
        patch_at p;
        int repair;
    } tails[] = {
        {"tail-offset-u64max", "SQKV_ERR_SECTION_LAYOUT|SQKV_ERR_BAD_TAIL|SQKV_ERR_TRUNCATED",
         "tail index offset 2^64-8 (offset + 64 wraps)", {idx_tail, 1, 8, ~(uint64_t)7}, 0},
        {"tail-offset-zero", "SQKV_ERR_SECTION_LAYOUT|SQKV_ERR_BAD_TAIL", "tail index offset 0", {idx_tail, 1, 8, 0},
         0},
        {"tail-offset-past-end", "SQKV_ERR_SECTION_LAYOUT|SQKV_ERR_BAD_TAIL|SQKV_ERR_TRUNCATED",
         "tail index offset = file size", {idx_tail, 1, 8, 0}, 0},
        {"tail-magic", "SQKV_ERR_BAD_TAIL", "last byte of the end magic changed", {1, 1, 1, 0x88}, 0},
    };
    size_t size = 0;
    uint8_t *file = edit_build(base, &size);
    tails[2].p.value = size;
    free(file);
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++)
        hostile_build_emit(c, base, patch_field, &tails[i].p, tails[i].repair, tails[i].name, tails[i].expected,
                           tails[i].why);

    /* INDEX body fields (checksums repaired, so the rule itself is tested). */
    const size_t e0 = EDIT_INDEX_PREFIX; /* first entry */
    const struct {
        const char *name, *expected, *why;
        patch_index p;
    } index_fields[] = {
        {"index-tokens-below-header", "SQKV_ERR_SECTION_FIELD|SQKV_ERR_SECTION_LAYOUT|SQKV_ERR_COVERAGE",
         "INDEX n_tokens 69 < header n_tokens 70", {0, 4, 69}},
        {"index-window-past-tokens", "SQKV_ERR_SECTION_FIELD|SQKV_ERR_SECTION_LAYOUT|SQKV_ERR_COVERAGE",
         "INDEX dense_window 71 > n_tokens", {4, 4, 71}},
        {"index-previous-bogus", "SQKV_ERR_SECTION_LAYOUT", "previous_index_offset 12345", {8, 8, 12345}},
        {"index-entry-offset", "SQKV_ERR_SECTION_LAYOUT", "entry 0 offset + 8", {e0 + SQKV_IDX_OFFSET, 8, 72}},
        {"index-entry-stored-size-huge", "SQKV_ERR_SECTION_LAYOUT|SQKV_ERR_INDEX_MISMATCH|SQKV_ERR_LIMIT",
         "entry 0 stored_size 2^64-8 (64 + align8 of it wraps)", {e0 + SQKV_IDX_STORED_SIZE, 8, ~(uint64_t)7}},
        {"index-entry-kind", "SQKV_ERR_INDEX_MISMATCH|SQKV_ERR_COVERAGE|SQKV_ERR_DUPLICATE_SECTION",
         "entry 0 kind TOKENS -> FINGERPRINT", {e0 + SQKV_IDX_KIND, 2, SQKV_KIND_FINGERPRINT}},
        {"index-entry-flags-reserved", "SQKV_ERR_RESERVED|SQKV_ERR_SECTION_LAYOUT|SQKV_ERR_INDEX_MISMATCH",
         "entry 0 flags bit 1 (reserved)", {e0 + SQKV_IDX_RESERVED, 1, 2}},
        {"index-entry-superseded", "SQKV_ERR_COVERAGE",
         "entry 0 SUPERSEDED in a file with no previous index (§9.1)", {e0 + SQKV_IDX_RESERVED, 1, 1}},
    };
    for (size_t i = 0; i < sizeof index_fields / sizeof index_fields[0]; i++)
        hostile_build_emit(c, base, patch_index_field, &index_fields[i].p, 1, index_fields[i].name,
                           index_fields[i].expected, index_fields[i].why);

    /* A tensor entry whose coordinates differ from its section header. */
    const int sparse = hostile_find(base, SQKV_KIND_SPARSE, 1, 0);
    const patch_index layer = {e0 + (size_t)sparse * SQKV_INDEX_ENTRY_SIZE + SQKV_IDX_TOKEN_COUNT, 4, 66};
    hostile_build_emit(c, base, patch_index_field, &layer, 1, "index-entry-token-count",
                       "SQKV_ERR_INDEX_MISMATCH|SQKV_ERR_COVERAGE", "a SPARSE entry's token_count 67 -> 66");

    /* Truncations: below the minimum size, and at the first byte of the INDEX. */
    file = edit_build(base, &size);
    hostile_emit(c, "trunc-empty", "SQKV_ERR_TRUNCATED|SQKV_ERR_BAD_MAGIC", "0 bytes", file, 0);
    hostile_emit(c, "trunc-magic-only", "SQKV_ERR_TRUNCATED", "the 8-byte magic alone", file, 8);
    hostile_emit(c, "trunc-below-minimum", "SQKV_ERR_TRUNCATED", "header_size + 64 + 31 bytes", file,
                 SQKV_HEADER_SIZE_V1 + 64 + 31);
    hostile_emit(c, "trunc-before-index", "SQKV_ERR_BAD_TAIL|SQKV_ERR_SECTION_LAYOUT|SQKV_ERR_TRUNCATED",
                 "cut where the INDEX section starts", file, hostile_index_at(file, size));
    hostile_emit(c, "trunc-last-byte", "SQKV_ERR_BAD_TAIL|SQKV_ERR_SECTION_LAYOUT", "last byte missing", file,
                 size - 1);
    free(file);
}

static void section_header_cases(hostile_ctx *c, const edit_file *base) {
    const int sparse = hostile_find(base, SQKV_KIND_SPARSE, 0, 0);
    const int meta = hostile_find(base, SQKV_KIND_METADATA, -1, 0);
    const struct {
        const char *name, *expected, *why;
        int section;
        size_t offset;
        int width;
        uint64_t value;
    } fields[] = {
        {"sec-codec-2", "SQKV_ERR_UNSUPPORTED_CODEC", "SPARSE codec 2", sparse, SQKV_SEC_CODEC, 1, 2},
        {"sec-flags", "SQKV_ERR_SECTION_FIELD", "SPARSE flags bit 0", sparse, SQKV_SEC_FLAGS, 4, 1},
        {"sec-tensor-2", "SQKV_ERR_SECTION_FIELD", "SPARSE tensor 2", sparse, SQKV_SEC_TENSOR, 1, 2},
        {"sec-layer-past", "SQKV_ERR_SECTION_RANGE", "SPARSE layer 1 of 1", sparse, SQKV_SEC_LAYER, 4, 1},
        {"sec-heads-wrap", "SQKV_ERR_SECTION_RANGE",
         "SPARSE head_start 2^32-1 (head_start + head_count wraps 32 bits)", sparse, SQKV_SEC_HEAD_START, 4,
         0xFFFFFFFFu},
        {"sec-head-count-zero", "SQKV_ERR_SECTION_FIELD|SQKV_ERR_SECTION_RANGE", "SPARSE head_count 0", sparse,
         SQKV_SEC_HEAD_COUNT, 4, 0},
        {"sec-tokens-wrap", "SQKV_ERR_SECTION_RANGE", "SPARSE token_count 2^32-1", sparse, SQKV_SEC_TOKEN_COUNT, 4,
         0xFFFFFFFFu},
        {"sec-bits-3", "SQKV_ERR_SECTION_FIELD|SQKV_ERR_PAYLOAD_PARAMS", "SPARSE payload_bits 3", sparse,
         SQKV_SEC_PAYLOAD_BITS, 1, 3},
        {"sec-exact-4-bits", "SQKV_ERR_PAYLOAD_PARAMS", "SPARSE quantizer EXACT with 4 bits", sparse,
         SQKV_SEC_QUANTIZER, 1, 0},
        {"sec-granularity-3", "SQKV_ERR_SECTION_FIELD|SQKV_ERR_PAYLOAD_PARAMS", "SPARSE scale_granularity 3", sparse,
         SQKV_SEC_SCALE_GRANULARITY, 1, 3},
        {"sec-k-21", "SQKV_ERR_SECTION_FIELD", "SPARSE offset_interval_log2 21", sparse,
         SQKV_SEC_OFFSET_INTERVAL_LOG2, 1, 21},
        {"sec-unknown-critical", "SQKV_ERR_UNKNOWN_SECTION", "METADATA kind -> 0x0044 (critical, unknown)", meta,
         SQKV_SEC_KIND, 2, 0x0044},
        {"sec-ancillary-layer", "SQKV_ERR_SECTION_FIELD", "METADATA layer 1 (must be 0)", meta, SQKV_SEC_LAYER, 4, 1},
        {"sec-decoded-ne-stored", "SQKV_ERR_SIZE_MISMATCH", "METADATA decoded_size != stored_size with codec 0", meta,
         SQKV_SEC_DECODED_SIZE, 8, 1},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        edit_file *f = (edit_file *)malloc(sizeof *f);
        memcpy(f, base, sizeof *f);
        uint8_t *h = f->sec[fields[i].section].header;
        for (int b = 0; b < fields[i].width; b++) h[fields[i].offset + (size_t)b] = (uint8_t)(fields[i].value >> (8 * b));
        if (fields[i].offset == SQKV_SEC_DECODED_SIZE)
            sqkv_store_u64(h + SQKV_SEC_DECODED_SIZE, sqkv_load_u64(h + SQKV_SEC_STORED_SIZE) + 8);
        hostile_build_emit(c, f, NULL, NULL, 0, fields[i].name, fields[i].expected, fields[i].why);
        free(f);
    }
    /* Checksums themselves. */
    size_t size = 0;
    uint8_t *file = edit_build(base, &size);
    const size_t first = SQKV_HEADER_SIZE_V1;
    file[first + SQKV_SEC_HEADER_CHECKSUM] ^= 0x10;
    hostile_emit(c, "sec-header-checksum", "SQKV_ERR_SECTION_HEADER_CHECKSUM", "first section's header checksum",
                 file, size);
    file[first + SQKV_SEC_HEADER_CHECKSUM] ^= 0x10;
    file[first + SQKV_SECTION_HEADER_SIZE] ^= 0x01;
    hostile_emit(c, "sec-body-checksum", "SQKV_ERR_SECTION_CHECKSUM", "one bit of the first section's body", file,
                 size);
    free(file);
}

static void structure_cases(hostile_ctx *c, const edit_file *base) {
    edit_file *f = (edit_file *)malloc(sizeof *f);
    const int tokens = hostile_find(base, SQKV_KIND_TOKENS, -1, 0);
    const int sparse = hostile_find(base, SQKV_KIND_SPARSE, 1, 0);
    const int dense = hostile_find(base, SQKV_KIND_DENSE, 0, 0);

    memcpy(f, base, sizeof *f);
    f->sec[f->n++] = base->sec[tokens];
    hostile_build_emit(c, f, NULL, NULL, 0, "dup-tokens", "SQKV_ERR_DUPLICATE_SECTION", "a second TOKENS section");

    memcpy(f, base, sizeof *f);
    f->sec[f->n++] = base->sec[sparse];
    hostile_build_emit(c, f, NULL, NULL, 0, "overlap-sparse", "SQKV_ERR_COVERAGE", "a SPARSE section twice");

    memcpy(f, base, sizeof *f);
    memmove(&f->sec[dense], &f->sec[dense + 1], (f->n - (size_t)dense - 1) * sizeof f->sec[0]);
    f->n--;
    hostile_build_emit(c, f, NULL, NULL, 0, "gap-no-dense", "SQKV_ERR_COVERAGE", "a DENSE section left out");

    /* An INDEX section in the middle, not superseded. */
    memcpy(f, base, sizeof *f);
    edit_section mid;
    static const uint8_t empty_index[32];
    edit_ancillary(&mid, SQKV_KIND_INDEX, empty_index, sizeof empty_index);
    memmove(&f->sec[1], &f->sec[0], f->n * sizeof f->sec[0]);
    f->sec[0] = mid;
    f->n++;
    hostile_build_emit(c, f, NULL, NULL, 0, "index-in-middle",
                       "SQKV_ERR_SECTION_LAYOUT|SQKV_ERR_COVERAGE|SQKV_ERR_DUPLICATE_SECTION",
                       "a second INDEX section first in the file, not superseded");

    /* An unknown ancillary section whose body checksum is wrong: verify must still check it. */
    memcpy(f, base, sizeof *f);
    static const uint8_t body[8] = "ancilla";
    edit_ancillary(&f->sec[f->n++], 0x8ABC, body, sizeof body);
    size_t size = 0;
    uint8_t *file = edit_build(f, &size);
    for (size_t off = SQKV_HEADER_SIZE_V1, i = 0; i < f->n; i++) {
        if (i + 1 == f->n) file[off + SQKV_SECTION_HEADER_SIZE] ^= 0x20;
        off += sqkv_section_extent(edit_stored_size(&f->sec[i]));
    }
    hostile_emit(c, "unknown-ancillary-bad-checksum", "SQKV_ERR_SECTION_CHECKSUM",
                 "an unknown ancillary kind with a wrong body checksum (§6: verify, then skip)", file, size);
    free(file);
    free(f);
}

/* Body rules, on the base file's first SPARSE sections (SYMMETRIC 4-bit, PER_TILE, k = 2). */
static void sparse_body_cases(hostile_ctx *c, const edit_file *base) {
    edit_file *f = (edit_file *)malloc(sizeof *f);
    sqkv_sparse_layout l;
    const uint32_t T = sqkv_load_u32(base->header + SQKV_HDR_N_TOKENS);
    const uint32_t S = T - sqkv_load_u32(base->header + SQKV_HDR_DENSE_WINDOW);
    const uint32_t D = sqkv_load_u32(base->header + SQKV_HDR_HEAD_DIM);
    const int k_sec = hostile_find(base, SQKV_KIND_SPARSE, 0, 0), v_sec = hostile_find(base, SQKV_KIND_SPARSE, 1, 0);

    /* Keys: the last token chunk holds S % 64 tokens; move one kept bit of such a tile into padding. */
    memcpy(f, base, sizeof *f);
    uint8_t *b = hostile_body_copy(c, &f->sec[k_sec], 0);
    hostile_sparse_layout(f, &f->sec[k_sec], &l);
    const uint64_t last_chunk_tile = (uint64_t)(S / 64) * D + 1; /* chunk S/64, channel 1 */
    uint64_t bits = sqkv_load_u64(b + 8 * last_chunk_tile);
    const uint32_t valid = S % 64;
    if (valid && bits) {
        const int top = 63 - __builtin_ctzll(bits); /* its last kept element */
        bits &= ~((uint64_t)1 << (63 - top));
        bits |= (uint64_t)1 << (63 - valid); /* element `valid`: the first padding element */
        sqkv_store_u64(b + 8 * last_chunk_tile, bits);
        hostile_build_emit(c, f, NULL, NULL, 0, "sparse-bitmap-padding", "SQKV_ERR_BITMAP_PADDING",
                           "a key tile of the partial last chunk with a padding bit set (same popcount)");
    }

    memcpy(f, base, sizeof *f);
    b = hostile_body_copy(c, &f->sec[k_sec], 0);
    hostile_sparse_layout(f, &f->sec[k_sec], &l);
    sqkv_store_u32(b + l.offsets_at + 4, sqkv_load_u32(b + l.offsets_at + 4) + 1);
    hostile_build_emit(c, f, NULL, NULL, 0, "sparse-offset-entry", "SQKV_ERR_OFFSET_MISMATCH",
                       "offset table entry 1 one too large");

    memcpy(f, base, sizeof *f);
    b = hostile_body_copy(c, &f->sec[k_sec], 0);
    sqkv_store_u32(b + l.offsets_at + 4 * (l.n_offsets - 1), 0xFFFFFFFFu);
    hostile_build_emit(c, f, NULL, NULL, 0, "sparse-offset-last-huge", "SQKV_ERR_OFFSET_MISMATCH",
                       "offset table entry M = 2^32-1 instead of P");

    memcpy(f, base, sizeof *f);
    b = hostile_body_copy(c, &f->sec[k_sec], 0);
    sqkv_store_u32(b + l.offsets_at, 1);
    hostile_build_emit(c, f, NULL, NULL, 0, "sparse-offset-first", "SQKV_ERR_OFFSET_MISMATCH",
                       "offset table entry 0 = 1");

    /* Scales: tile D (chunk 1, channel 0) of the keys; channel 0 is all zero in the base input, so tiles
     * of channel 0 are empty and tile 1 (channel 1) is not. */
    const struct {
        const char *name, *why;
        uint64_t tile;
        uint16_t value;
    } scales[] = {
        {"scale-negative", "a scale with its sign bit set", 1, 0x8001},
        {"scale-nan", "a NaN scale", 1, 0x7E00},
        {"scale-inf", "an infinite scale", 1, 0x7C00},
        {"scale-top-level-overflows", "s = 65504: level (L-1)s overflows fp16", 1, 0x7BFF},
        {"scale-empty-group-nonzero", "an empty tile's scale 1 (must be +0)", 0, 0x0001},
        {"scale-empty-group-minus-zero", "an empty tile's scale -0 (must be +0)", 0, 0x8000},
    };
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++) {
        memcpy(f, base, sizeof *f);
        b = hostile_body_copy(c, &f->sec[k_sec], 0);
        if (scales[i].tile == 0 && sqkv_load_u64(b) != 0) continue; /* tile 0 must be empty for this case */
        sqkv_store_u16(b + l.scales_at + 2 * scales[i].tile, scales[i].value);
        hostile_build_emit(c, f, NULL, NULL, 0, scales[i].name, "SQKV_ERR_SCALE", scales[i].why);
    }

    /* Payload: the bits after the last code. */
    memcpy(f, base, sizeof *f);
    b = hostile_body_copy(c, &f->sec[v_sec], 0);
    hostile_sparse_layout(f, &f->sec[v_sec], &l);
    if ((l.kept * 4) % 8) {
        b[l.payload_at + l.payload_bytes - 1] |= 0x80;
        hostile_build_emit(c, f, NULL, NULL, 0, "payload-trailing-bits", "SQKV_ERR_PADDING",
                           "nonzero bits after the last 4-bit code");
    }
    memcpy(f, base, sizeof *f);
    b = hostile_body_copy(c, &f->sec[v_sec], 0);
    if (l.payload_bytes % 8) {
        b[l.payload_at + l.payload_bytes] = 1;
        hostile_build_emit(c, f, NULL, NULL, 0, "payload-padding-byte", "SQKV_ERR_PADDING",
                           "nonzero byte in the payload stream's alignment padding");
    }
    memcpy(f, base, sizeof *f);
    b = hostile_body_copy(c, &f->sec[v_sec], 0);
    if ((4 * l.n_offsets) % 8) {
        b[l.offsets_at + 4 * l.n_offsets] = 1;
        hostile_build_emit(c, f, NULL, NULL, 0, "offsets-padding-byte", "SQKV_ERR_PADDING",
                           "nonzero byte between the offset table and the scales");
    }
    /* The body one stream longer than the layout says. */
    memcpy(f, base, sizeof *f);
    hostile_body_copy(c, &f->sec[v_sec], 8);
    hostile_set_body_size(&f->sec[v_sec], edit_stored_size(&f->sec[v_sec]) + 8);
    hostile_build_emit(c, f, NULL, NULL, 0, "sparse-body-8-longer", "SQKV_ERR_SIZE_MISMATCH",
                       "decoded_size = the layout's + 8");
    memcpy(f, base, sizeof *f);
    hostile_set_body_size(&f->sec[v_sec], edit_stored_size(&f->sec[v_sec]) - 8);
    hostile_build_emit(c, f, NULL, NULL, 0, "sparse-body-8-shorter", "SQKV_ERR_SIZE_MISMATCH",
                       "decoded_size = the layout's - 8");
    free(f);
}

/* Body rules of EXACT payloads, DENSE values and the ancillary sections, on the second base file. */
static void value_and_ancillary_cases(hostile_ctx *c, const edit_file *base) {
    edit_file *f = (edit_file *)malloc(sizeof *f);
    sqkv_sparse_layout l;
    const int sparse = hostile_find(base, SQKV_KIND_SPARSE, 0, 0), dense = hostile_find(base, SQKV_KIND_DENSE, 1, 0);
    const int tokens = hostile_find(base, SQKV_KIND_TOKENS, -1, 0), fp = hostile_find(base, SQKV_KIND_FINGERPRINT, -1, 0);
    const int meta = hostile_find(base, SQKV_KIND_METADATA, -1, 0);
    const struct {
        const char *name, *why;
        int dense;
        uint16_t value;
    } values[] = {
        {"exact-plus-zero", "an EXACT kept value +0 (§7.5)", 0, 0x0000},
        {"exact-minus-zero", "an EXACT kept value -0 (§7.5)", 0, 0x8000},
        {"exact-nan", "an EXACT kept value NaN", 0, 0x7E01},
        {"exact-inf", "an EXACT kept value -inf", 0, 0xFC00},
        {"dense-inf", "a DENSE value +inf (§8)", 1, 0x7C00},
        {"dense-nan", "a DENSE value NaN", 1, 0xFFFF},
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        memcpy(f, base, sizeof *f);
        const int s = values[i].dense ? dense : sparse;
        uint8_t *b = hostile_body_copy(c, &f->sec[s], 0);
        size_t at = 2;
        if (!values[i].dense) {
            hostile_sparse_layout(f, &f->sec[s], &l);
            at = (size_t)l.payload_at + 2 * (size_t)(l.kept - 1); /* the last kept value */
        }
        sqkv_store_u16(b + at, values[i].value);
        hostile_build_emit(c, f, NULL, NULL, 0, values[i].name, "SQKV_ERR_VALUE", values[i].why);
    }

    memcpy(f, base, sizeof *f);
    hostile_set_body_size(&f->sec[tokens], edit_stored_size(&f->sec[tokens]) - 8);
    hostile_build_emit(c, f, NULL, NULL, 0, "tokens-two-short", "SQKV_ERR_TOKENS_COUNT", "TOKENS body 8 bytes short");
    memcpy(f, base, sizeof *f);
    hostile_set_body_size(&f->sec[fp], 0);
    hostile_build_emit(c, f, NULL, NULL, 0, "fingerprint-empty", "SQKV_ERR_FINGERPRINT_SIZE", "FINGERPRINT of 0 bytes");
    memcpy(f, base, sizeof *f);
    static uint8_t big[4097 + 7];
    memset(big, 0x5A, 4097);
    f->sec[fp].body = big;
    hostile_set_body_size(&f->sec[fp], 4097);
    hostile_build_emit(c, f, NULL, NULL, 0, "fingerprint-4097", "SQKV_ERR_FINGERPRINT_SIZE",
                       "FINGERPRINT of 4097 bytes");

    /* METADATA bodies written by hand: u32 count, then (u8 kl, key, u16 vl, value) entries. */
    static const struct {
        const char *name, *expected, *why;
        size_t size;
        const char *bytes;
    } metas[] = {
        {"meta-count-u32max", "SQKV_ERR_METADATA|SQKV_ERR_LIMIT", "entry count 2^32-1 in a 12-byte body", 12,
         "\xFF\xFF\xFF\xFF\x01" "a\x01\x00" "b\x00\x00\x00"},
        {"meta-count-zero", "SQKV_ERR_METADATA", "entry count 0", 4, "\x00\x00\x00\x00"},
        {"meta-key-past-body", "SQKV_ERR_METADATA", "key length 200 in a 9-byte body", 9,
         "\x01\x00\x00\x00\xC8" "abcd"},
        {"meta-value-past-body", "SQKV_ERR_METADATA", "value length 65535 runs past the body", 10,
         "\x01\x00\x00\x00\x01" "k\xFF\xFF" "vv"},
        {"meta-key-empty", "SQKV_ERR_METADATA", "key length 0", 8, "\x01\x00\x00\x00\x00\x00\x00\x00"},
        {"meta-overlong-utf8", "SQKV_ERR_METADATA", "overlong UTF-8 C0 AF in a key", 10,
         "\x01\x00\x00\x00\x02\xC0\xAF\x00\x00\x00"},
        {"meta-surrogate", "SQKV_ERR_METADATA", "UTF-16 surrogate ED A0 80 in a value", 11,
         "\x01\x00\x00\x00\x01k\x03\x00\xED\xA0\x80"},
        {"meta-nul-in-value", "SQKV_ERR_METADATA", "a NUL byte in a value", 9, "\x01\x00\x00\x00\x01k\x01\x00\x00"},
        {"meta-above-10ffff", "SQKV_ERR_METADATA", "F4 90 80 80 (above U+10FFFF)", 12,
         "\x01\x00\x00\x00\x01k\x04\x00\xF4\x90\x80\x80"},
        {"meta-unsorted", "SQKV_ERR_METADATA", "keys b then a", 14,
         "\x02\x00\x00\x00\x01" "b\x00\x00\x01" "a\x00\x00\x00\x00"},
        {"meta-duplicate", "SQKV_ERR_METADATA", "key a twice", 14,
         "\x02\x00\x00\x00\x01" "a\x00\x00\x01" "a\x00\x00\x00\x00"},
        {"meta-trailing-byte", "SQKV_ERR_METADATA", "one byte after the last entry", 9,
         "\x01\x00\x00\x00\x01k\x00\x00\x07"},
        {"meta-count-1025", "SQKV_ERR_METADATA|SQKV_ERR_LIMIT", "entry count 1025", 8, "\x01\x04\x00\x00\x01k\x00\x00"},
    };
    for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++) {
        memcpy(f, base, sizeof *f);
        f->sec[meta].body = (const uint8_t *)metas[i].bytes;
        hostile_set_body_size(&f->sec[meta], metas[i].size);
        hostile_build_emit(c, f, NULL, NULL, 0, metas[i].name, metas[i].expected, metas[i].why);
    }
    /* Section padding after an unaligned METADATA body. */
    memcpy(f, base, sizeof *f);
    f->sec[meta].body = (const uint8_t *)"\x01\x00\x00\x00\x01k\x00\x00\x00";
    hostile_set_body_size(&f->sec[meta], 8);
    size_t size = 0;
    uint8_t *file = edit_build(f, &size);
    hostile_emit(c, "meta-ok-8-bytes", "SQKV_OK", "a valid one-entry METADATA body (control case)", file, size);
    free(file);
    f->sec[meta].body = (const uint8_t *)"\x01\x00\x00\x00\x01k\x01\x00v";
    hostile_set_body_size(&f->sec[meta], 9);
    file = edit_build(f, &size);
    size_t off = f->header_size;
    for (int i = 0; i < meta; i++) off += sqkv_section_extent(edit_stored_size(&f->sec[i]));
    file[off + SQKV_SECTION_HEADER_SIZE + 9] = 0xAA; /* first padding byte */
    hostile_emit(c, "section-padding", "SQKV_ERR_PADDING", "nonzero padding after a 9-byte METADATA body (§5)",
                 file, size);
    free(file);
    free(f);
}

/* A geometry whose tensor section claims 2^32 elements (format maximum 2^32-1), K and V alike, with
 * small bodies: the decoder must refuse it without sizing anything from the claim. */
static void huge_claim_case(hostile_ctx *c, const edit_file *base) {
    edit_file *f = (edit_file *)malloc(sizeof *f);
    memcpy(f, base, sizeof *f);
    sqkv_store_u32(f->header + SQKV_HDR_N_LAYERS, 1);
    sqkv_store_u32(f->header + SQKV_HDR_N_KV_HEADS, 1024);
    sqkv_store_u32(f->header + SQKV_HDR_HEAD_DIM, 1024);
    sqkv_store_u32(f->header + SQKV_HDR_N_TOKENS, 4096);
    sqkv_store_u32(f->header + SQKV_HDR_DENSE_WINDOW, 0);
    const int sparse = hostile_find(base, SQKV_KIND_SPARSE, 0, 0);
    f->n = 0;
    for (int t = 0; t < 2; t++) {
        edit_section s = base->sec[sparse];
        s.header[SQKV_SEC_TENSOR] = (uint8_t)t;
        sqkv_store_u32(s.header + SQKV_SEC_HEAD_START, 0);
        sqkv_store_u32(s.header + SQKV_SEC_HEAD_COUNT, 1024);
        sqkv_store_u32(s.header + SQKV_SEC_TOKEN_START, 0);
        sqkv_store_u32(s.header + SQKV_SEC_TOKEN_COUNT, 4096);
        f->sec[f->n++] = s;
    }
    hostile_build_emit(c, f, NULL, NULL, 0, "claim-2^32-elements", "SQKV_ERR_LIMIT|SQKV_ERR_SIZE_MISMATCH",
                       "SPARSE sections of 1024 heads x 4096 tokens x 1024 channels = 2^32 elements");
    sqkv_store_u32(f->header + SQKV_HDR_N_TOKENS, 4095);
    for (int t = 0; t < 2; t++) sqkv_store_u32(f->sec[t].header + SQKV_SEC_TOKEN_COUNT, 4095);
    hostile_build_emit(c, f, NULL, NULL, 0, "claim-2^32-minus-2^20-elements", "SQKV_ERR_SIZE_MISMATCH|SQKV_ERR_LIMIT",
                       "4095 tokens (allowed element count, 32 GiB of fp32 output) with a tiny body");
    free(f);
}

/* ---- codec 1 (§5.1) ------------------------------------------------------------------------- */

typedef struct stream_spec {
    uint8_t method;
    const uint8_t *bytes;
    uint64_t len;
} stream_spec;

/* A codec-1 stored body from stream specs (table + padded streams + `extra` zero bytes). */
static void set_streams(hostile_ctx *c, edit_section *s, const stream_spec *sp, uint32_t n, uint64_t extra) {
    uint64_t size = 16u * n + extra;
    for (uint32_t i = 0; i < n; i++) size += sqkv_align8(sp[i].len);
    uint8_t *b = (uint8_t *)calloc(1, (size_t)size + 8);
    if (!b || c->n_owned == (int)(sizeof c->owned / sizeof c->owned[0])) exit(1);
    c->owned[c->n_owned++] = b;
    uint64_t pos = 16u * n;
    for (uint32_t i = 0; i < n; i++) {
        b[16 * i] = sp[i].method;
        sqkv_store_u64(b + 16 * i + 8, sp[i].len);
        if (sp[i].len) memcpy(b + pos, sp[i].bytes, (size_t)sp[i].len);
        pos += sqkv_align8(sp[i].len);
    }
    s->header[SQKV_SEC_CODEC] = 1;
    sqkv_store_u64(s->header + SQKV_SEC_STORED_SIZE, size);
    s->body = b;
}

/* One zstd frame of src (level 3); with_size 0 leaves the content size out of the frame header. */
static uint64_t zstd_frame(const uint8_t *src, uint64_t len, uint8_t *dst, uint64_t cap, int with_size) {
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, with_size);
    const size_t z = ZSTD_compress2(cc, dst, (size_t)cap, src, (size_t)len);
    ZSTD_freeCCtx(cc);
    if (ZSTD_isError(z)) exit(1);
    return z;
}

static void codec_cases(hostile_ctx *c, const edit_file *base) {
    edit_file *f = (edit_file *)malloc(sizeof *f);
    const uint32_t D = sqkv_load_u32(base->header + SQKV_HDR_HEAD_DIM);
    const int k_sec = hostile_find(base, SQKV_KIND_SPARSE, 0, 0);
    uint64_t at[4], len[4];
    const uint32_t n = edit_stream_plan(&base->sec[k_sec], D, at, len);
    const uint8_t *body = base->sec[k_sec].body;
    static uint8_t frames[4][1 << 16];
    uint64_t flen[4];
    for (uint32_t i = 0; i < n; i++) flen[i] = zstd_frame(body + at[i], len[i], frames[i], sizeof frames[i], 1);
    stream_spec sp[4];
#define ALL_ZSTD() \
    for (uint32_t i = 0; i < n; i++) sp[i] = (stream_spec){1, frames[i], flen[i]}
#define EMIT(name, expected, why, extra)                                        \
    do {                                                                       \
        memcpy(f, base, sizeof *f);                                            \
        set_streams(c, &f->sec[k_sec], sp, n, extra);                          \
        hostile_build_emit(c, f, NULL, NULL, 0, name, expected, why);           \
    } while (0)

    ALL_ZSTD();
    EMIT("zstd-ok", "SQKV_OK", "a SPARSE section with its four streams zstd-compressed (control case)", 0);
    ALL_ZSTD();
    sp[1] = (stream_spec){0, body + at[1], len[1]};
    EMIT("zstd-mixed-ok", "SQKV_OK", "offsets stored as is, the other streams zstd (control case)", 0);
    ALL_ZSTD();
    sp[0].method = 2;
    EMIT("zstd-method-2", "SQKV_ERR_UNSUPPORTED_CODEC", "stream method 2", 0);
    for (uint32_t i = 0; i < n; i++) sp[i] = (stream_spec){0, body + at[i], len[i]};
    EMIT("zstd-no-zstd-stream", "SQKV_ERR_SECTION_FIELD", "codec 1 with every stream stored as is", 0);
    ALL_ZSTD();
    sp[3] = (stream_spec){0, body + at[3], len[3] - 8};
    EMIT("zstd-stored-length-short", "SQKV_ERR_COMPRESSED_STREAM", "a stored-as-is stream 8 bytes shorter than its"
         " decoded length", 0);
    ALL_ZSTD();
    EMIT("zstd-stored-size-plus-8", "SQKV_ERR_SIZE_MISMATCH", "stored_size = table + padded streams + 8", 8);

    static uint8_t alt[1 << 16];
    ALL_ZSTD();
    sp[0].len = zstd_frame(body + at[0], len[0] - 8, alt, sizeof alt, 1);
    sp[0].bytes = alt;
    EMIT("zstd-content-size-short", "SQKV_ERR_COMPRESSED_STREAM", "bitmaps frame declares 8 bytes fewer", 0);
    ALL_ZSTD();
    sp[0].len = zstd_frame(body + at[0], len[0], alt, sizeof alt, 0);
    sp[0].bytes = alt;
    EMIT("zstd-no-content-size", "SQKV_ERR_COMPRESSED_STREAM", "bitmaps frame without a content size", 0);
    ALL_ZSTD();
    memcpy(alt, frames[0], (size_t)flen[0]);
    memset(alt + flen[0], 0, 8);
    sp[0] = (stream_spec){1, alt, flen[0] + 8};
    EMIT("zstd-trailing-bytes", "SQKV_ERR_COMPRESSED_STREAM", "8 zero bytes after the bitmaps frame", 0);
    ALL_ZSTD();
    memcpy(alt, frames[0], (size_t)flen[0]);
    memcpy(alt + flen[0], frames[0], (size_t)flen[0]);
    sp[0] = (stream_spec){1, alt, 2 * flen[0]};
    EMIT("zstd-two-frames", "SQKV_ERR_COMPRESSED_STREAM", "the bitmaps frame twice", 0);
    ALL_ZSTD();
    static const uint8_t skippable[16] = {0x50, 0x2A, 0x4D, 0x18, 8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    sp[0] = (stream_spec){1, skippable, sizeof skippable};
    EMIT("zstd-skippable-frame", "SQKV_ERR_COMPRESSED_STREAM", "a skippable frame as the bitmaps stream", 0);
    ALL_ZSTD();
    sp[0] = (stream_spec){1, frames[0], 3};
    EMIT("zstd-frame-cut", "SQKV_ERR_COMPRESSED_STREAM", "the bitmaps frame cut to 3 bytes", 0);
    /* A frame that declares the right size but stops early: the last block cut off. */
    ALL_ZSTD();
    sp[2] = (stream_spec){1, frames[2], flen[2] - 1};
    EMIT("zstd-last-byte-missing", "SQKV_ERR_COMPRESSED_STREAM", "the scales frame without its last byte", 0);
    ALL_ZSTD();
    memcpy(f, base, sizeof *f);
    set_streams(c, &f->sec[k_sec], sp, n, 0);
    uint8_t *b = (uint8_t *)(uintptr_t)f->sec[k_sec].body;
    b[16 + 3] = 1;
    hostile_build_emit(c, f, NULL, NULL, 0, "zstd-record-reserved", "SQKV_ERR_RESERVED",
                       "a reserved byte of the offsets stream's record");
    memcpy(f, base, sizeof *f);
    size_t size = 0;
    uint8_t *file = edit_build(f, &size);
    file[hostile_index_at(file, size) + SQKV_SEC_CODEC] = 1;
    fuzz_repair_checksums(file, size);
    hostile_emit(c, "zstd-index-codec-1", "SQKV_ERR_SECTION_FIELD|SQKV_ERR_UNSUPPORTED_CODEC|SQKV_ERR_SIZE_MISMATCH",
                 "the INDEX section with codec 1 (§5.1: INDEX MUST use codec 0)", file, size);
    free(file);
#undef ALL_ZSTD
#undef EMIT
    free(f);
}

/* Appended files (§9.1), each with one rule broken (appended_bytes in make_corpus.c). */
static void append_cases(hostile_ctx *c) {
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    const geometry_case g = {1, 1, 9, 64, 0};
    static const struct {
        int defect;
        const char *name, *expected, *why;
    } cases[] = {
        {0, "append-ok", "SQKV_OK", "64 tokens appended to 20 more (control case)"},
        {1, "append-old-index-live", "SQKV_ERR_COVERAGE", "the previous INDEX section not superseded"},
        {2, "append-old-tokens-live", "SQKV_ERR_DUPLICATE_SECTION", "the old TOKENS section not superseded"},
        {3, "append-previous-not-index", "SQKV_ERR_SECTION_LAYOUT", "previous_index_offset points at a SPARSE section"},
        {4, "append-needed-section-superseded", "SQKV_ERR_COVERAGE", "a tensor section still needed marked superseded"},
        {5, "append-tokens-past-sections", "SQKV_ERR_COVERAGE|SQKV_ERR_TOKENS_COUNT",
         "INDEX n_tokens one more than the sections cover"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t size = 0;
        uint8_t *file = appended_bytes(&g, 20, &o, SQKV_DTYPE_FP16, cases[i].defect, &size);
        hostile_emit(c, cases[i].name, cases[i].expected, cases[i].why, file, size);
        if (cases[i].defect == 0) /* an append that stopped half way: the old file is a valid prefix */
            hostile_emit(c, "append-interrupted", "SQKV_ERR_BAD_TAIL|SQKV_ERR_TRUNCATED",
                         "an appended file cut 100 bytes before its end (§9.1: no guessing)", file, size - 100);
        free(file);
    }
}

static int make_crashers(const char *dir) {
    hostile_ctx c;
    memset(&c, 0, sizeof c);
    c.dir = dir;
    char path[4096];
    make_dir(dir);
    snprintf(path, sizeof path, "%s/sqkv", dir);
    make_dir(path);
    snprintf(path, sizeof path, "%s/sqkv.expected", dir);
    c.manifest = fopen(path, "w");
    if (!c.manifest) return 2;
    fprintf(c.manifest,
            "# Regression inputs of tests/crashers/sqkv/: NAME.sqkv, the error it must give (alternatives split by\n"
            "# '|' where the spec lets more than one rule apply) and why. crashers_test.cc runs each through\n"
            "# open, verify, every decode and the ancillary queries; the first error counts.\n"
            "# Hand-made files: `make_corpus --crashers tests/crashers` rewrites them and this file; fuzzer finds are in sqkv.found.\n");

    const geometry_case ga = {1, 1, 65, 70, 3};
    sqkv_writer_options o;
    sqkv_writer_options_default(&o);
    o.payload_bits = 4;
    o.scales = SQKV_SCALE_PER_TILE;
    o.offset_interval_log2 = 2;
    size_t size_a = 0, size_b = 0;
    uint8_t *file_a = encode(&ga, SQKV_DTYPE_FP16, &o, 7, 3, 42, &size_a);
    edit_file *a = crash_base(file_a, size_a);
    hostile_emit(&c, "base-sym4-tile", "SQKV_OK", "the valid file most cases are made from (control case)", file_a,
                 size_a);
    header_cases(&c, a);
    tail_and_index_cases(&c, a);
    section_header_cases(&c, a);
    structure_cases(&c, a);
    sparse_body_cases(&c, a);
    huge_claim_case(&c, a);
    codec_cases(&c, a);
    append_cases(&c);

    const geometry_case gb = {1, 1, 8, 10, 2};
    sqkv_writer_options_default(&o);
    o.payload_bits = 16;
    o.quantizer = SQKV_QUANT_EXACT;
    o.scales = SQKV_SCALE_NONE;
    uint8_t *file_b = encode(&gb, SQKV_DTYPE_FP16, &o, 7, 0, 43, &size_b);
    edit_file *b = crash_base(file_b, size_b);
    hostile_emit(&c, "base-exact", "SQKV_OK", "the valid EXACT file of the value cases (control case)", file_b, size_b);
    value_and_ancillary_cases(&c, b);

    fclose(c.manifest);
    for (int i = 0; i < c.n_owned; i++) free(c.owned[i]);
    free(a);
    free(b);
    free(file_a);
    free(file_b);
    fprintf(stderr, "make_corpus: %d hostile files in %s/sqkv\n", c.count, dir);
    return 0;
}

#endif /* SQKV_FUZZ_MAKE_CRASHERS_H */
