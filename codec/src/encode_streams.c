/* encode_streams.c: codec 1, encoder side (spec/FORMAT.md §5.1; rule in encode_streams.h). */
#include "encode_streams.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "codec_streams.h"
#include "format.h"

/* Rewrites the header for codec 1 and checksums the new stored body. */
static void seal_codec1(sqkv_section_blob *b, uint64_t stored_size) {
    b->header.codec = SQKV_CODEC_STREAMS;
    b->header.stored_size = stored_size;
    b->header.body_checksum = sqkv_checksum(sqkv_blob_body(b), (size_t)stored_size);
    sqkv_section_header_pack(&b->header, b->bytes);
}

sqkv_error sqkv_blob_compress_streams(sqkv_section_blob *b, uint32_t head_dim, uint32_t level, void **cctx,
                                      sqkv_stream_sizes *sizes) {
    sqkv_stream_plan plan;
    sqkv_stream_plan_for(&b->header, head_dim, &plan);
    if (sizes) {
        memset(sizes, 0, sizeof *sizes);
        sizes->count = plan.count;
    }
    const uint64_t decoded = b->header.decoded_size;
    /* Room for the table and every stream at its worst (zstd's bound), each padded to 8. */
    uint64_t room = (uint64_t)SQKV_STREAM_RECORD_SIZE * plan.count;
    for (uint32_t i = 0; i < plan.count; i++) {
        if (plan.length[i] > (uint64_t)SIZE_MAX / 2) return SQKV_ERR_LIMIT;
        const size_t bound = ZSTD_compressBound((size_t)plan.length[i]);
        if (ZSTD_isError(bound)) return SQKV_ERR_LIMIT;
        room += sqkv_align8(bound);
    }
    if (room > SQKV_MAX_BODY_SIZE || SQKV_SECTION_HEADER_SIZE + room > (uint64_t)SIZE_MAX) return SQKV_ERR_LIMIT;
    if (!*cctx && !(*cctx = ZSTD_createCCtx())) return SQKV_ERR_OUT_OF_MEMORY;

    uint8_t *out = (uint8_t *)calloc(1, (size_t)(SQKV_SECTION_HEADER_SIZE + room));
    if (!out) return SQKV_ERR_OUT_OF_MEMORY;
    const uint8_t *body = sqkv_blob_body(b);
    uint8_t *stored = out + SQKV_SECTION_HEADER_SIZE;
    uint64_t pos = (uint64_t)SQKV_STREAM_RECORD_SIZE * plan.count;
    int any_zstd = 0;
    for (uint32_t i = 0; i < plan.count; i++) {
        const uint64_t len = plan.length[i];
        const size_t cap = (size_t)(room - pos);
        const size_t c = ZSTD_compressCCtx((ZSTD_CCtx *)*cctx, stored + pos, cap, body + plan.at[i], (size_t)len,
                                           (int)level);
        if (ZSTD_isError(c)) { /* only allocation failures are possible with a bound-sized buffer */
            free(out);
            return SQKV_ERR_OUT_OF_MEMORY;
        }
        const int keep = sqkv_align8(c) < sqkv_align8(len);
        const uint64_t kept_len = keep ? c : len;
        if (!keep && len) memcpy(stored + pos, body + plan.at[i], (size_t)len);
        /* zstd may have written past what is kept; padding must be zero. */
        const uint64_t written = keep ? c : (c > len ? c : len);
        memset(stored + pos + kept_len, 0, (size_t)(written - kept_len));
        memset(stored + pos + kept_len, 0, (size_t)(sqkv_align8(kept_len) - kept_len));
        uint8_t *rec = stored + (size_t)SQKV_STREAM_RECORD_SIZE * i;
        rec[0] = keep ? SQKV_STREAM_ZSTD : SQKV_STREAM_STORED;
        sqkv_store_u64(rec + 8, kept_len);
        any_zstd |= keep;
        if (sizes) {
            sizes->decoded[i] = len;
            sizes->compressed[i] = sqkv_align8(c);
            sizes->kept_zstd[i] = (uint8_t)keep;
        }
        pos += sqkv_align8(kept_len);
    }
    if (!any_zstd || pos >= sqkv_align8(decoded)) {
        if (sizes) memset(sizes->kept_zstd, 0, sizeof sizes->kept_zstd);
        free(out);
        return SQKV_OK;
    }
    uint8_t *shrunk = (uint8_t *)realloc(out, (size_t)(SQKV_SECTION_HEADER_SIZE + pos));
    if (shrunk) out = shrunk;
    free(b->bytes);
    b->bytes = out;
    seal_codec1(b, pos);
    if (sizes) sizes->codec1 = 1;
    return SQKV_OK;
}
