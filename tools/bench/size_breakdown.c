/* size_breakdown.c: see size_breakdown.h. */
#include "size_breakdown.h"

#include <string.h>

#include "format.h"
#include "section_header.h"
#include "sparse_layout.h"
#include "tile_layout.h"

#define STREAM_RECORD 16u /* one record of a codec-1 stream table (spec/FORMAT.md §5.1) */

sqkv_error size_breakdown_compute(sqkv_reader *r, const uint8_t *bytes, size_t size, size_breakdown *out) {
    memset(out, 0, sizeof *out);
    sqkv_geometry g;
    size_t count = 0;
    sqkv_error err = sqkv_reader_geometry(r, &g);
    if (err == SQKV_OK) err = sqkv_reader_section_count(r, &count);
    if (err != SQKV_OK) return err;
    uint64_t sections_end = 0, header_size = 0;
    for (size_t i = 0; i < count; i++) {
        sqkv_section_info info;
        if ((err = sqkv_reader_section_info(r, i, &info)) != SQKV_OK) return err;
        if (info.offset + SQKV_SECTION_HEADER_SIZE > size) return SQKV_ERR_SECTION_LAYOUT;
        const uint64_t body = sqkv_align8(info.stored_size);
        if (i == 0) header_size = info.offset; /* sections start right after the file header */
        out->framing += SQKV_SECTION_HEADER_SIZE;
        sections_end = info.offset + sqkv_section_extent(info.stored_size);
        if (info.kind == SQKV_KIND_SPARSE) {
            sqkv_section_header h;
            if (!sqkv_section_header_unpack(bytes + info.offset, &h)) return SQKV_ERR_SECTION_HEADER_CHECKSUM;
            const uint64_t tiles =
                sqkv_tiles_per_head((sqkv_tensor)h.tensor, h.token_count, g.head_dim) * h.head_count;
            sqkv_sparse_layout l;
            sqkv_sparse_layout_compute_flags(tiles, h.offset_interval_log2, h.quantizer, h.scale_granularity,
                                             h.payload_bits, h.head_count, 0,
                                             (h.flags & SQKV_SECTION_FLAG_ALL_KEPT) != 0, &l);
            if (l.payload_at > h.decoded_size || info.offset + SQKV_SECTION_HEADER_SIZE + body > size)
                return SQKV_ERR_SIZE_MISMATCH;
            if (h.codec == SQKV_CODEC_NONE) {
                out->bitmaps += l.offsets_at - l.bitmaps_at;
                out->offsets += l.scales_at - l.offsets_at;
                out->scales += l.payload_at - l.scales_at;
                out->payload += body - l.payload_at;
            } else {
                /* codec 1 (§5.1): a table of four 16-byte records, then each stream's stored bytes
                 * padded to 8; the table and the section's final padding count as framing. */
                const uint8_t *table = bytes + info.offset + SQKV_SECTION_HEADER_SIZE;
                uint64_t *streams[4] = {&out->bitmaps, &out->offsets, &out->scales, &out->payload};
                uint64_t used = 4 * STREAM_RECORD;
                if (info.stored_size < used) return SQKV_ERR_SIZE_MISMATCH;
                for (int st = 0; st < 4; st++) {
                    const uint64_t stored = sqkv_load_u64(table + st * STREAM_RECORD + 8);
                    if (stored > info.stored_size) return SQKV_ERR_SIZE_MISMATCH;
                    *streams[st] += sqkv_align8(stored);
                    used += sqkv_align8(stored);
                }
                if (used > body) return SQKV_ERR_SIZE_MISMATCH;
                out->framing += body - used + 4 * STREAM_RECORD;
            }
        } else if (info.kind == SQKV_KIND_DENSE) {
            out->dense_window += body;
        } else if (info.kind == SQKV_KIND_INDEX) {
            out->framing += body;
        } else {
            out->ancillary += body;
        }
    }
    out->framing += header_size; /* the tail is the end of the INDEX body (§9) */
    out->total = size;
    const uint64_t sum = out->bitmaps + out->offsets + out->scales + out->payload + out->dense_window +
                         out->ancillary + out->framing;
    if (sum != size || sections_end != size) return SQKV_ERR_SECTION_LAYOUT;
    return SQKV_OK;
}
