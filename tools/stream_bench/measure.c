/* measure.c: see measure.h. */
#include "measure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "codec_streams.h"
#include "encode_streams.h"
#include "format.h"
#include "section_blob.h"
#include "section_header.h"
#include "tools/common/util.h"

const char *const sb_kind_names[SB_KINDS] = {"bitmaps", "offsets", "scales", "payload", "dense window", "token ids",
                                             "fingerprint + metadata", "index"};

static uint64_t tensor_elems(const sb_cache *c) { return (uint64_t)c->n_kv_heads * c->n_tokens * c->head_dim; }

static int encode_once(const sb_cache *c, const sqkv_writer_options *opts, uint8_t **file, size_t *size) {
    const sqkv_geometry g = {c->n_layers, c->n_kv_heads, c->head_dim, c->n_tokens, c->dense_window, SQKV_DTYPE_FP16,
                             SQKV_DTYPE_FP16, 0};
    sqkv_writer *w = NULL;
    sqkv_error err = sqkv_writer_create(&g, opts, &w);
    if (!err && c->tokens) err = sqkv_writer_set_tokens(w, c->tokens, c->n_tokens);
    if (!err) err = sqkv_writer_set_fingerprint(w, "stream-bench", 12);
    for (uint32_t l = 0; l < c->n_layers && !err; l++)
        err = sqkv_writer_add_layer(w, l, SQKV_DTYPE_FP16, c->k + l * tensor_elems(c), c->v + l * tensor_elems(c));
    uint64_t n = 0;
    if (!err) err = sqkv_writer_file_size(w, &n);
    if (!err && !(*file = malloc((size_t)n))) err = SQKV_ERR_OUT_OF_MEMORY;
    if (!err) err = sqkv_writer_write_buffer(w, *file, (size_t)n, size);
    if (err) fprintf(stderr, "sqkv_stream_bench: encode %s: %s %s\n", c->name, sqkv_error_name(err),
                     w ? sqkv_writer_error_detail(w) : "");
    sqkv_writer_destroy(w);
    return err ? -1 : 0;
}

int sb_encode(const sb_cache *c, const sqkv_writer_options *opts, int reps, uint8_t **file, size_t *size,
              double *seconds) {
    double t[16];
    *file = NULL;
    for (int r = 0; r < reps && r < 16; r++) {
        free(*file);
        *file = NULL;
        const double t0 = sqkv_now();
        if (encode_once(c, opts, file, size)) return -1;
        t[r] = sqkv_now() - t0;
    }
    *seconds = sqkv_median(t, (size_t)(reps < 16 ? reps : 16));
    return 0;
}

static int category(uint16_t kind, uint32_t stream) {
    switch (kind) {
    case SQKV_KIND_SPARSE: return SB_BITMAPS + (int)stream;
    case SQKV_KIND_DENSE: return SB_DENSE;
    case SQKV_KIND_TOKENS: return SB_TOKENS;
    case SQKV_KIND_INDEX: return SB_INDEX;
    default: return SB_OTHER;
    }
}

int sb_streams_at(const uint8_t *file, size_t size, uint32_t level, sb_streams *out) {
    memset(out, 0, sizeof *out);
    const uint32_t head_dim = sqkv_load_u32(file + SQKV_HDR_HEAD_DIM);
    void *cctx = NULL;
    uint64_t at = sqkv_load_u32(file + SQKV_HDR_HEADER_SIZE);
    int rc = 0;
    while (at + SQKV_SECTION_HEADER_SIZE <= size && !rc) {
        sqkv_section_blob b;
        sqkv_section_header_unpack(file + at, &b.header);
        const uint64_t extent = sqkv_section_extent(b.header.stored_size);
        if (b.header.kind == SQKV_KIND_INDEX) {
            out->raw[SB_INDEX] += extent;
            out->zstd[SB_INDEX] += extent;
            out->stored[SB_INDEX] += extent;
            break;
        }
        if (b.header.codec != 0 || !(b.bytes = malloc((size_t)extent))) {
            rc = -1;
            break;
        }
        memcpy(b.bytes, file + at, (size_t)extent);
        sqkv_stream_sizes s;
        if (sqkv_blob_compress_streams(&b, head_dim, level, &cctx, &s) != SQKV_OK) rc = -1;
        for (uint32_t i = 0; i < s.count && !rc; i++) {
            const int k = category(b.header.kind, i);
            out->raw[k] += s.decoded[i];
            out->zstd[k] += s.compressed[i];
            out->stored[k] += s.kept_zstd[i] ? s.compressed[i] : s.decoded[i];
        }
        /* Section headers are counted with the payload (or the body of single-stream kinds), and so is the
         * codec-1 stream table. */
        const int main_kind = category(b.header.kind, b.header.kind == SQKV_KIND_SPARSE ? 3 : 0);
        out->raw[main_kind] += SQKV_SECTION_HEADER_SIZE + sqkv_align8(b.header.decoded_size) - b.header.decoded_size;
        out->zstd[main_kind] += SQKV_SECTION_HEADER_SIZE + (uint64_t)SQKV_STREAM_RECORD_SIZE * s.count;
        out->stored[main_kind] += SQKV_SECTION_HEADER_SIZE + (s.codec1 ? (uint64_t)SQKV_STREAM_RECORD_SIZE * s.count
                                                                        : sqkv_align8(b.header.decoded_size) -
                                                                              b.header.decoded_size);
        sqkv_blob_free(&b);
        at += extent;
    }
    ZSTD_freeCCtx((ZSTD_CCtx *)cctx);
    return rc;
}

int sb_decode_whole(const uint8_t *file, size_t size, uint16_t *out, int reps, double *seconds) {
    double t[16];
    for (int r = 0; r < reps && r < 16; r++) {
        const double t0 = sqkv_now();
        sqkv_reader *rd = NULL;
        sqkv_error err = sqkv_reader_create(NULL, 0, &rd);
        if (!err) err = sqkv_reader_open_memory(rd, file, size);
        sqkv_geometry g;
        if (!err) err = sqkv_reader_geometry(rd, &g);
        const uint64_t elems = err ? 0 : (uint64_t)g.n_kv_heads * g.n_tokens * g.head_dim;
        for (uint32_t l = 0; !err && l < g.n_layers; l++)
            for (int k = 0; k < 2 && !err; k++)
                err = sqkv_reader_decode(rd, l, (sqkv_tensor)k, 0, g.n_kv_heads, SQKV_DTYPE_FP16,
                                         out + (2 * (uint64_t)l + k) * elems, (size_t)elems * 2);
        if (err) fprintf(stderr, "sqkv_stream_bench: decode: %s\n", sqkv_reader_error_detail(rd));
        sqkv_reader_destroy(rd);
        if (err) return -1;
        t[r] = sqkv_now() - t0;
    }
    *seconds = sqkv_median(t, (size_t)(reps < 16 ? reps : 16));
    return 0;
}

/* The streaming receiver: each section's heads copied into the full output, as a real one would. */
typedef struct receiver {
    uint16_t *out;
    sqkv_geometry g;
} receiver;

static int on_header(void *ctx, const sqkv_geometry *g) {
    ((receiver *)ctx)->g = *g;
    return 0;
}

/* Decoding straight into the full output (sqkv_stream_decoder_set_destination): no copy. */
static void *destination(void *ctx, const sqkv_stream_tensor *t, size_t *head_stride) {
    const receiver *rc = (const receiver *)ctx;
    const uint64_t T = rc->g.n_tokens, D = rc->g.head_dim, H = rc->g.n_kv_heads;
    *head_stride = (size_t)(T * D * 2);
    return rc->out + (2 * (uint64_t)t->layer + t->tensor) * H * T * D + ((uint64_t)t->head_start * T + t->token_start) * D;
}

/* The other way: each section's heads copied from the decoder's buffer into the full output. */
static int on_tensor_copy(void *ctx, const sqkv_stream_tensor *t) {
    const receiver *rc = (const receiver *)ctx;
    const uint64_t T = rc->g.n_tokens, D = rc->g.head_dim, H = rc->g.n_kv_heads;
    uint16_t *base = rc->out + (2 * (uint64_t)t->layer + t->tensor) * H * T * D;
    for (uint32_t h = 0; h < t->head_count; h++)
        memcpy(base + ((t->head_start + h) * T + t->token_start) * D, (const uint8_t *)t->data + h * t->head_stride,
               (size_t)(t->token_count * D * 2));
    return 0;
}

int sb_decode_stream(const uint8_t *file, size_t size, size_t chunk, int copy, uint16_t *out, int reps,
                     double *seconds) {
    double t[16];
    for (int r = 0; r < reps && r < 16; r++) {
        receiver rc = {out, {0}};
        const sqkv_stream_callbacks cb = {&rc, on_header, NULL, copy ? on_tensor_copy : NULL, NULL};
        const double t0 = sqkv_now();
        sqkv_stream_decoder *d = NULL;
        sqkv_error err = sqkv_stream_decoder_create(NULL, 0, SQKV_DTYPE_FP16, &cb, &d);
        if (!err && !copy) err = sqkv_stream_decoder_set_destination(d, destination);
        for (size_t at = 0; at < size && !err; at += chunk)
            err = sqkv_stream_decoder_push(d, file + at, size - at < chunk ? size - at : chunk);
        sqkv_stream_status st;
        if (!err) err = sqkv_stream_decoder_finish(d, &st);
        if (err) fprintf(stderr, "sqkv_stream_bench: stream decode: %s\n", sqkv_stream_decoder_error_detail(d));
        sqkv_stream_decoder_destroy(d);
        if (err) return -1;
        t[r] = sqkv_now() - t0;
    }
    *seconds = sqkv_median(t, (size_t)(reps < 16 ? reps : 16));
    return 0;
}

typedef struct counting {
    const uint8_t *file;
    uint64_t bytes;
} counting;

static int read_at(void *ctx, uint64_t offset, void *buf, size_t size) {
    counting *c = (counting *)ctx;
    memcpy(buf, c->file + offset, size);
    c->bytes += size;
    return 0;
}

int sb_random_access(const uint8_t *file, size_t size, uint32_t layer, uint64_t *bytes_read, uint64_t *index_size) {
    counting c = {file, 0};
    sqkv_reader *rd = NULL;
    sqkv_error err = sqkv_reader_create(NULL, 0, &rd);
    if (!err) err = sqkv_reader_open_callback(rd, read_at, &c, size);
    sqkv_geometry g;
    if (!err) err = sqkv_reader_geometry(rd, &g);
    uint16_t *out = NULL;
    const uint64_t elems = err ? 0 : (uint64_t)g.n_kv_heads * g.n_tokens * g.head_dim;
    if (!err && !(out = malloc((size_t)elems * 2))) err = SQKV_ERR_OUT_OF_MEMORY;
    for (int k = 0; k < 2 && !err; k++)
        err = sqkv_reader_decode(rd, layer, (sqkv_tensor)k, 0, g.n_kv_heads, SQKV_DTYPE_FP16, out, (size_t)elems * 2);
    size_t n = 0;
    sqkv_section_info idx;
    if (!err) err = sqkv_reader_section_count(rd, &n);
    if (!err) err = sqkv_reader_section_info(rd, n - 1, &idx);
    if (err) fprintf(stderr, "sqkv_stream_bench: random access: %s\n", sqkv_reader_error_detail(rd));
    *bytes_read = c.bytes;
    *index_size = err ? 0 : size - idx.offset;
    free(out);
    sqkv_reader_destroy(rd);
    return err ? -1 : 0;
}
