/* codec_streams.c: codec 1, streams with optional zstd (spec/FORMAT.md §5.1). */
#include "codec_streams.h"

#include <inttypes.h>
#include <string.h>
#include <zstd.h>

#include "decode_sparse.h"
#include "format.h"

static const char *const sparse_stream_names[SQKV_MAX_STREAMS] = {"bitmaps", "offsets", "scales", "payload"};

static const char *stream_name(const sqkv_stream_plan *plan, uint32_t i) {
    return plan->count == 1 ? "body" : sparse_stream_names[i];
}

void sqkv_stream_plan_for(const sqkv_section_header *h, uint32_t head_dim, sqkv_stream_plan *plan) {
    memset(plan, 0, sizeof *plan);
    if (h->kind != SQKV_KIND_SPARSE) {
        plan->count = 1;
        plan->length[0] = h->decoded_size;
        return;
    }
    sqkv_sparse_layout l;
    sqkv_sparse_layout_of(h, head_dim, 0, &l); /* stream starts do not depend on the kept count */
    plan->count = 4;
    const uint64_t starts[5] = {l.bitmaps_at, l.offsets_at, l.scales_at, l.payload_at, h->decoded_size};
    for (uint32_t i = 0; i < 4; i++) {
        plan->at[i] = starts[i];
        plan->length[i] = starts[i + 1] - starts[i];
    }
}

sqkv_error sqkv_streams_check(const uint8_t *stored, const sqkv_section_header *h, const sqkv_stream_plan *plan,
                              sqkv_diag *diag) {
    const uint64_t table = (uint64_t)SQKV_STREAM_RECORD_SIZE * plan->count;
    if (h->stored_size < table)
        return sqkv_diag_fail(diag, SQKV_ERR_SIZE_MISMATCH, "stored_size %" PRIu64 " is shorter than the stream table of %"
                              PRIu64 " bytes (§5.1)", h->stored_size, table);
    for (uint32_t i = 0; i < plan->count; i++) {
        const uint8_t *rec = stored + SQKV_STREAM_RECORD_SIZE * i;
        if (rec[0] != SQKV_STREAM_STORED && rec[0] != SQKV_STREAM_ZSTD)
            return sqkv_diag_fail(diag, SQKV_ERR_UNSUPPORTED_CODEC, "%s stream: method %u (§5.1: 0 stored, 1 zstd)",
                                  stream_name(plan, i), rec[0]);
        if (!sqkv_all_zero(rec + 1, 7))
            return sqkv_diag_fail(diag, SQKV_ERR_RESERVED, "%s stream: reserved bytes of its record are not zero (§5.1)",
                                  stream_name(plan, i));
    }
    uint64_t pos = table;
    for (uint32_t i = 0; i < plan->count; i++) {
        const uint64_t len = sqkv_load_u64(stored + SQKV_STREAM_RECORD_SIZE * i + 8);
        /* pos <= stored_size <= 2^40, so the comparisons below cannot overflow. */
        if (len > h->stored_size - pos || sqkv_align8(len) > h->stored_size - pos)
            return sqkv_diag_fail(diag, SQKV_ERR_SIZE_MISMATCH, "%s stream: stored length %" PRIu64
                                  " runs past stored_size (§5.1)", stream_name(plan, i), len);
        pos += sqkv_align8(len);
    }
    if (pos != h->stored_size)
        return sqkv_diag_fail(diag, SQKV_ERR_SIZE_MISMATCH, "stored_size %" PRIu64 " != %" PRIu64
                              ", the stream table plus the padded streams (§5.1)", h->stored_size, pos);
    pos = table;
    int any_zstd = 0;
    for (uint32_t i = 0; i < plan->count; i++) {
        const uint64_t len = sqkv_load_u64(stored + SQKV_STREAM_RECORD_SIZE * i + 8);
        if (!sqkv_all_zero(stored + pos + len, sqkv_align8(len) - len))
            return sqkv_diag_fail(diag, SQKV_ERR_PADDING, "%s stream: padding after it is not zero (§5.1)",
                                  stream_name(plan, i));
        pos += sqkv_align8(len);
    }
    for (uint32_t i = 0; i < plan->count; i++) {
        const uint8_t method = stored[SQKV_STREAM_RECORD_SIZE * i];
        const uint64_t len = sqkv_load_u64(stored + SQKV_STREAM_RECORD_SIZE * i + 8);
        if (method == SQKV_STREAM_STORED && len != plan->length[i])
            return sqkv_diag_fail(diag, SQKV_ERR_COMPRESSED_STREAM, "%s stream: stored as is with length %" PRIu64
                                  ", its decoded length is %" PRIu64 " (§5.1)", stream_name(plan, i), len, plan->length[i]);
        any_zstd |= method == SQKV_STREAM_ZSTD;
    }
    if (!any_zstd)
        return sqkv_diag_fail(diag, SQKV_ERR_SECTION_FIELD, "codec 1 with no zstd stream (§5.1: such a section uses"
                              " codec 0)");
    return SQKV_OK;
}

static sqkv_error decode_frame(const uint8_t *src, uint64_t len, uint64_t want, void *dctx, uint8_t *dst,
                               const char *name, sqkv_diag *diag) {
    /* Only a zstd frame: a skippable frame would decode to nothing whatever its declared size. */
    if (len < 4 || sqkv_load_u32(src) != ZSTD_MAGICNUMBER)
        return sqkv_diag_fail(diag, SQKV_ERR_COMPRESSED_STREAM, "%s stream: not a zstd frame (§5.1)", name);
    const unsigned long long declared = ZSTD_getFrameContentSize(src, (size_t)len);
    if (declared == ZSTD_CONTENTSIZE_UNKNOWN || declared == ZSTD_CONTENTSIZE_ERROR || declared != want)
        return sqkv_diag_fail(diag, SQKV_ERR_COMPRESSED_STREAM, "%s stream: the frame does not declare the stream's"
                              " length %" PRIu64 " (§5.1)", name, want);
    const size_t frame = ZSTD_findFrameCompressedSize(src, (size_t)len);
    if (ZSTD_isError(frame) || frame != len)
        return sqkv_diag_fail(diag, SQKV_ERR_COMPRESSED_STREAM, "%s stream: the zstd frame is not exactly the stored"
                              " %" PRIu64 " bytes (§5.1)", name, len);
    const size_t got = ZSTD_decompressDCtx((ZSTD_DCtx *)dctx, dst, (size_t)want, src, (size_t)len);
    if (ZSTD_isError(got) || got != want)
        return sqkv_diag_fail(diag, SQKV_ERR_COMPRESSED_STREAM, "%s stream: zstd decompression failed (%s) (§5.1)",
                              name, ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong length");
    return SQKV_OK;
}

sqkv_error sqkv_streams_decode(const uint8_t *stored, const sqkv_stream_plan *plan, void *dctx, uint8_t *out,
                               sqkv_diag *diag) {
    uint64_t pos = (uint64_t)SQKV_STREAM_RECORD_SIZE * plan->count;
    for (uint32_t i = 0; i < plan->count; i++) {
        const uint8_t method = stored[SQKV_STREAM_RECORD_SIZE * i];
        const uint64_t len = sqkv_load_u64(stored + SQKV_STREAM_RECORD_SIZE * i + 8);
        if (method == SQKV_STREAM_STORED) {
            if (len) memcpy(out + plan->at[i], stored + pos, (size_t)len);
        } else {
            sqkv_error err = decode_frame(stored + pos, len, plan->length[i], dctx, out + plan->at[i],
                                          stream_name(plan, i), diag);
            if (err) return err;
        }
        pos += sqkv_align8(len);
    }
    return SQKV_OK;
}
