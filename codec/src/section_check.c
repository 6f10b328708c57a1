/* section_check.c: kind-independent section rules (spec/FORMAT.md §5, §6, §9). */
#include "section_check.h"

#include <inttypes.h>

#include "codec_streams.h"
#include "decode_sparse.h"
#include "format.h"

int sqkv_checksum_ok(uint64_t stored, const void *data, size_t size) {
#if defined(SQKV_FUZZING) && SQKV_FUZZING
    (void)stored;
    (void)data;
    (void)size;
    return 1;
#else
    return sqkv_checksum(data, size) == stored;
#endif
}

int sqkv_kind_is_tensor(uint16_t kind) { return kind == SQKV_KIND_SPARSE || kind == SQKV_KIND_DENSE; }

int sqkv_kind_known(uint16_t kind) {
    switch (kind) {
    case SQKV_KIND_SPARSE:
    case SQKV_KIND_DENSE:
    case SQKV_KIND_INDEX:
    case SQKV_KIND_TOKENS:
    case SQKV_KIND_FINGERPRINT:
    case SQKV_KIND_METADATA: return 1;
    default: return 0;
    }
}

const char *sqkv_kind_name(uint16_t kind) {
    switch (kind) {
    case SQKV_KIND_SPARSE: return "SPARSE";
    case SQKV_KIND_DENSE: return "DENSE";
    case SQKV_KIND_INDEX: return "INDEX";
    case SQKV_KIND_TOKENS: return "TOKENS";
    case SQKV_KIND_FINGERPRINT: return "FINGERPRINT";
    case SQKV_KIND_METADATA: return "METADATA";
    default: return (kind & SQKV_KIND_ANCILLARY_BIT) ? "ANCILLARY" : "CRITICAL";
    }
}

void sqkv_diag_section(sqkv_diag *d, uint64_t number, const sqkv_entry *e) {
    if (sqkv_kind_is_tensor(e->kind))
        sqkv_diag_prefix(d, "section %" PRIu64 " (%s, layer %" PRIu32 ", tensor %s, heads [%" PRIu32 ", %" PRIu64
                         "), tokens [%" PRIu32 ", %" PRIu64 ")): ", number, sqkv_kind_name(e->kind), e->layer,
                         e->tensor == 0 ? "K" : e->tensor == 1 ? "V" : "?", e->head_start,
                         (uint64_t)e->head_start + e->head_count, e->token_start,
                         (uint64_t)e->token_start + e->token_count);
    else if (sqkv_kind_known(e->kind))
        sqkv_diag_prefix(d, "section %" PRIu64 " (%s): ", number, sqkv_kind_name(e->kind));
    else
        sqkv_diag_prefix(d, "section %" PRIu64 " (kind 0x%04x): ", number, e->kind);
}

sqkv_error sqkv_check_coordinates(const sqkv_entry *e, const sqkv_file_info *f, sqkv_diag *diag) {
    if (!sqkv_kind_known(e->kind)) return SQKV_OK;
    if (!sqkv_kind_is_tensor(e->kind)) {
        if (e->tensor || e->layer || e->head_start || e->head_count || e->token_start || e->token_count)
            return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD,
                                  "coordinate fields must be zero for a %s section (§5)", sqkv_kind_name(e->kind));
        return SQKV_OK;
    }
    if (e->tensor > SQKV_TENSOR_V)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "tensor %u is neither K (0) nor V (1) (§5)", e->tensor);
    if (e->layer >= f->n_layers)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_RANGE, "layer %" PRIu32 " >= n_layers %" PRIu32 " (§5)",
                              e->layer, f->n_layers);
    if (e->head_count == 0)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "head_count is 0 (§5: at least 1)");
    if ((uint64_t)e->head_start + e->head_count > f->n_kv_heads)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_RANGE, "heads %" PRIu32 "+%" PRIu32 " exceed n_kv_heads %" PRIu32
                              " (§5)", e->head_start, e->head_count, f->n_kv_heads);
    if (e->token_count == 0)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "token_count is 0 (§5: at least 1)");
    if ((uint64_t)e->token_start + e->token_count > f->n_tokens)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_RANGE, "tokens %" PRIu32 "+%" PRIu32 " exceed n_tokens %" PRIu32
                              " (§5)", e->token_start, e->token_count, f->n_tokens);
    return SQKV_OK;
}

sqkv_error sqkv_check_entry_size(const sqkv_entry *e, const sqkv_file_info *f, const sqkv_limits *limits,
                                 sqkv_diag *diag) {
    const uint64_t stored = e->stored_size;
    if (stored > SQKV_MAX_BODY_SIZE)
        return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "stored_size %" PRIu64 " exceeds the format maximum 2^40 (§3)",
                              stored);
    if (stored > limits->max_section_size)
        return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "stored_size %" PRIu64 " exceeds the configured limit %" PRIu64,
                              stored, limits->max_section_size);
    if (sqkv_kind_is_tensor(e->kind)) {
        /* Coordinates are checked, so the product is at most 2^10 * 2^28 * 2^10. */
        const uint64_t elements = (uint64_t)e->head_count * e->token_count * f->head_dim;
        if (elements > SQKV_MAX_SECTION_ELEMENTS)
            return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "%" PRIu64 " elements exceed 2^32 - 1 per tensor section (§3)",
                                  elements);
    }
    if (e->kind == SQKV_KIND_INDEX && (stored < SQKV_INDEX_MIN_BODY ||
                                       (stored - SQKV_INDEX_MIN_BODY) % SQKV_INDEX_ENTRY_SIZE != 0))
        return sqkv_diag_fail(diag, SQKV_ERR_SIZE_MISMATCH, "INDEX body of %" PRIu64 " bytes is not 32 + 40 * entries"
                              " (§9)", stored);
    return SQKV_OK;
}

/* decoded_size rules of each kind (§3, §7.2, §8, §10); the TOKENS count is the cache's only for a
 * TOKENS section that is not superseded. */
static sqkv_error check_decoded_size(const sqkv_section_header *h, int superseded, const sqkv_file_info *f,
                                     const sqkv_limits *limits, sqkv_diag *diag) {
    const uint64_t decoded = h->decoded_size;
    if (decoded > SQKV_MAX_BODY_SIZE)
        return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "decoded_size %" PRIu64 " exceeds the format maximum 2^40 (§3)",
                              decoded);
    if (decoded > limits->max_section_size)
        return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "decoded_size %" PRIu64 " exceeds the configured limit %" PRIu64,
                              decoded, limits->max_section_size);
    switch (h->kind) {
    case SQKV_KIND_SPARSE: return sqkv_sparse_check_size_bounds(h, f->head_dim, diag);
    case SQKV_KIND_DENSE: {
        const uint64_t elements = (uint64_t)h->head_count * h->token_count * f->head_dim;
        if (decoded != sqkv_align8(2 * elements))
            return sqkv_diag_fail(diag, SQKV_ERR_SIZE_MISMATCH, "DENSE body of %" PRIu64 " bytes, expected align8(2 * %"
                                  PRIu64 ") (§8)", decoded, elements);
        return SQKV_OK;
    }
    case SQKV_KIND_TOKENS:
        if (superseded) {
            if (decoded % 4 != 0 || decoded > 4 * (uint64_t)SQKV_MAX_TOKENS)
                return sqkv_diag_fail(diag, SQKV_ERR_TOKENS_COUNT, "superseded TOKENS body of %" PRIu64
                                      " bytes is not a whole number of ids (§10.1)", decoded);
        } else if (decoded != 4 * (uint64_t)f->n_tokens) {
            return sqkv_diag_fail(diag, SQKV_ERR_TOKENS_COUNT, "TOKENS body of %" PRIu64 " bytes, expected 4 * n_tokens = %"
                                  PRIu64 " (§10.1)", decoded, 4 * (uint64_t)f->n_tokens);
        }
        return SQKV_OK;
    case SQKV_KIND_FINGERPRINT:
        if (decoded < 1 || decoded > SQKV_MAX_FINGERPRINT)
            return sqkv_diag_fail(diag, SQKV_ERR_FINGERPRINT_SIZE, "FINGERPRINT body of %" PRIu64
                                  " bytes (§10.2: 1 to 4096)", decoded);
        return SQKV_OK;
    case SQKV_KIND_METADATA:
        if (decoded > SQKV_MAX_METADATA_BODY)
            return sqkv_diag_fail(diag, SQKV_ERR_LIMIT, "METADATA body of %" PRIu64 " bytes exceeds 1 MiB (§3)", decoded);
        return SQKV_OK;
    default: return SQKV_OK;
    }
}

/* Payload fields (bytes 24..27) and flags (§5). */
static sqkv_error check_payload_fields(const sqkv_section_header *h, uint32_t features, sqkv_diag *diag) {
    if (h->kind == SQKV_KIND_SPARSE) return sqkv_sparse_check_fields(h, features, diag); /* flags too */
    if (sqkv_kind_known(h->kind)) {
        if (h->payload_bits || h->quantizer || h->scale_granularity || h->offset_interval_log2)
            return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD,
                                  "payload_bits, quantizer, scale_granularity and offset_interval_log2 must be zero"
                                  " for a %s section (§5)", sqkv_kind_name(h->kind));
    }
    if (h->flags != 0)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "flags 0x%08" PRIx32 " (§5: no flag is defined for a"
                              " %s section)", h->flags, sqkv_kind_name(h->kind));
    return SQKV_OK;
}

static sqkv_entry entry_of_header(const sqkv_section_header *h, uint64_t offset) {
    sqkv_entry e;
    e.offset = offset;
    e.superseded = 0;
    e.stored_size = h->stored_size;
    e.kind = h->kind;
    e.tensor = h->tensor;
    e.layer = h->layer;
    e.head_start = h->head_start;
    e.head_count = h->head_count;
    e.token_start = h->token_start;
    e.token_count = h->token_count;
    return e;
}

static sqkv_error check_index_agreement(const sqkv_entry *got, const sqkv_entry *want, sqkv_diag *diag) {
    const char *field = NULL;
    if (got->kind != want->kind)
        field = "kind";
    else if (got->tensor != want->tensor)
        field = "tensor";
    else if (got->layer != want->layer)
        field = "layer";
    else if (got->head_start != want->head_start)
        field = "head_start";
    else if (got->head_count != want->head_count)
        field = "head_count";
    else if (got->token_start != want->token_start)
        field = "token_start";
    else if (got->token_count != want->token_count)
        field = "token_count";
    else if (got->stored_size != want->stored_size)
        field = "stored_size";
    if (field)
        return sqkv_diag_fail(diag, SQKV_ERR_INDEX_MISMATCH, "the section header's %s differs from its index entry (§9)",
                              field);
    return SQKV_OK;
}

sqkv_error sqkv_check_section_header(const uint8_t *p, const sqkv_file_info *f, const sqkv_entry *e,
                                     const sqkv_limits *limits, sqkv_section_header *h, sqkv_diag *diag) {
    sqkv_section_header_unpack(p, h);
    if (!sqkv_checksum_ok(sqkv_load_u64(p + SQKV_SEC_HEADER_CHECKSUM), p, SQKV_SEC_HEADER_CHECKSUM))
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_HEADER_CHECKSUM, "section header checksum mismatch (§5)");
    if (!sqkv_kind_known(h->kind) && !(h->kind & SQKV_KIND_ANCILLARY_BIT))
        return sqkv_diag_fail(diag, SQKV_ERR_UNKNOWN_SECTION, "unknown critical section kind 0x%04x (§6)", h->kind);
    if (h->codec != SQKV_CODEC_NONE && h->codec != SQKV_CODEC_STREAMS)
        return sqkv_diag_fail(diag, SQKV_ERR_UNSUPPORTED_CODEC, "codec %u (§5.1: 0 none, 1 streams)", h->codec);

    /* §5.2 step 4: field values (SECTION_FIELD, PAYLOAD_PARAMS), then coordinates (SECTION_RANGE). */
    const sqkv_entry got = entry_of_header(h, e->offset);
    sqkv_error err = check_payload_fields(h, f->required_features, diag);
    if (err) return err;
    if ((err = sqkv_check_coordinates(&got, f, diag))) return err;
    if (h->kind == SQKV_KIND_INDEX && h->codec != SQKV_CODEC_NONE)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "an INDEX section with codec %u (§5.1: INDEX uses codec 0)",
                              h->codec);

    if (h->codec == SQKV_CODEC_NONE && h->decoded_size != h->stored_size)
        return sqkv_diag_fail(diag, SQKV_ERR_SIZE_MISMATCH, "decoded_size %" PRIu64 " != stored_size %" PRIu64
                              " with codec 0 (§5.1)", h->decoded_size, h->stored_size);
    if ((err = sqkv_check_entry_size(&got, f, limits, diag))) return err;
    if ((err = check_decoded_size(h, e->superseded, f, limits, diag))) return err;

    return check_index_agreement(&got, e, diag);
}

sqkv_error sqkv_check_section(const uint8_t *file, const sqkv_file_info *f, const sqkv_entry *e,
                              const sqkv_limits *limits, int check_body_checksum, sqkv_section_header *h,
                              const uint8_t **stored, sqkv_diag *diag) {
    /* The index walk guarantees that e->offset + 64 + align8(e->stored_size) lies inside the file. */
    const uint8_t *p = file + e->offset;
    sqkv_error err = sqkv_check_section_header(p, f, e, limits, h, diag);
    if (err) return err;
    const uint8_t *b = p + SQKV_SECTION_HEADER_SIZE;
    if (check_body_checksum && !sqkv_checksum_ok(h->body_checksum, b, (size_t)h->stored_size))
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_CHECKSUM, "body checksum mismatch (§5)");
    if (!sqkv_all_zero(b + h->stored_size, sqkv_align8(h->stored_size) - h->stored_size))
        return sqkv_diag_fail(diag, SQKV_ERR_PADDING, "padding after the body is not zero (§5)");
    *stored = b;
    return SQKV_OK;
}
