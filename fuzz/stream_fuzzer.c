/*
 * stream_fuzzer: the streaming decoder (sqkv_stream_decoder_*), fed in fuzzer-chosen chunk sizes (single
 * bytes, small and large pieces, everything at once), checked against the random-access reader on the
 * same bytes:
 *   - the result does not depend on the chunking: one push of everything gives the same error, the same
 *     callbacks in the same order and the same delivered bytes;
 *   - a file the reader opens and verifies streams completely (status.complete, every layer completed,
 *     every tensor section delivered), unless it was appended to (§9.1), which must give UNSUPPORTED;
 *     a file that streams completely opens and verifies in the reader;
 *   - every delivered tensor section equals the reader's decode of the same heads and tokens, bit for
 *     bit, and every delivered TOKENS/FINGERPRINT body equals what the reader returns;
 *   - a callback that returns nonzero stops the decoder with ABORTED; after finish, push is STATE;
 *   - status is consistent (bytes received = pushed, bytes verified <= received).
 *
 * Input: byte 0 = output dtype (0 none, 1 fp16, 2 bf16, 3 fp32) and abort choice, bytes 1-4 = chunking
 * seed, then an SQKV file (checksums recomputed).
 */
#include <xxhash.h>

#include "fuzz_common.h"

typedef struct stream_run {
    /* configuration */
    sqkv_dtype dtype;
    uint32_t abort_at;       /* 0: never; else the callback number that returns nonzero */
    sqkv_reader *reference;  /* the reader on the same bytes when it opened and verified, else NULL */
    sqkv_geometry ref_geometry; /* its geometry (n_tokens from the last INDEX: an appended file has more) */
    /* what happened */
    uint32_t callbacks;
    uint64_t digest;         /* running hash of every callback and its bytes */
    uint32_t tensors, layers_completed, headers;
    sqkv_geometry geometry;
    int compared;            /* tensor sections compared with the reader */
} stream_run;

static void mix(stream_run *s, const void *data, size_t size) {
    s->digest = XXH3_64bits_withSeed(data, size, s->digest);
}

static int next_callback(stream_run *s) {
    s->callbacks++;
    return s->abort_at && s->callbacks == s->abort_at;
}

static int on_header(void *ctx, const sqkv_geometry *g) {
    stream_run *s = (stream_run *)ctx;
    s->headers++;
    s->geometry = *g;
    mix(s, g, sizeof *g);
    return next_callback(s);
}

static int on_ancillary(void *ctx, uint16_t kind, const void *body, size_t size) {
    stream_run *s = (stream_run *)ctx;
    FUZZ_CHECK(s->headers == 1, "ancillary section before the header");
    FUZZ_CHECK((kind & SQKV_KIND_ANCILLARY_BIT) && (size == 0 || body), "ancillary callback kind 0x%04x", kind);
    mix(s, &kind, sizeof kind);
    if (size) mix(s, body, size);
    if (s->reference && kind == SQKV_KIND_TOKENS) {
        FUZZ_CHECK(size == 4u * s->geometry.n_tokens || size % 4 == 0, "TOKENS body of %zu bytes", size);
        size_t count = 0;
        if (sqkv_reader_tokens(s->reference, NULL, 0, &count) == SQKV_OK && count * 4 == size && count) {
            int32_t *ids = (int32_t *)malloc(size);
            FUZZ_CHECK(ids, "out of memory");
            FUZZ_CHECK(sqkv_reader_tokens(s->reference, ids, count, &count) == SQKV_OK, "reader tokens failed");
            FUZZ_CHECK(memcmp(ids, body, size) == 0, "streamed TOKENS differ from the reader's");
            free(ids);
        }
    }
    if (s->reference && kind == SQKV_KIND_FINGERPRINT) {
        uint8_t fp[SQKV_MAX_FINGERPRINT];
        size_t n = 0;
        if (sqkv_reader_fingerprint(s->reference, fp, sizeof fp, &n) == SQKV_OK && n)
            FUZZ_CHECK(n == size && memcmp(fp, body, n) == 0, "streamed FINGERPRINT differs from the reader's");
    }
    return next_callback(s);
}

static int on_tensor(void *ctx, const sqkv_stream_tensor *t) {
    stream_run *s = (stream_run *)ctx;
    const sqkv_geometry *g = &s->geometry;
    FUZZ_CHECK(s->headers == 1, "tensor section before the header");
    FUZZ_CHECK(t->layer < g->n_layers && (t->tensor == SQKV_TENSOR_K || t->tensor == SQKV_TENSOR_V) &&
                   t->head_count >= 1 && t->head_start + (uint64_t)t->head_count <= g->n_kv_heads &&
                   t->token_count >= 1 && (t->kind == SQKV_KIND_SPARSE || t->kind == SQKV_KIND_DENSE),
               "delivered section outside the geometry");
    s->tensors++;
    const uint32_t fields[8] = {t->layer, (uint32_t)t->tensor, t->kind,       t->head_start,
                                t->head_count, t->token_start, t->token_count, (uint32_t)t->dtype};
    mix(s, fields, sizeof fields);
    if (s->dtype == 0) {
        FUZZ_CHECK(t->data == NULL, "decoding off, but data delivered");
        return next_callback(s);
    }
    const uint64_t need = sqkv_dense_size(t->head_count, t->token_count, g->head_dim, s->dtype);
    FUZZ_CHECK(t->dtype == s->dtype && t->data && t->size == need, "section of %zu bytes, expected %llu", t->size,
               (unsigned long long)need);
    const long bad = fuzz_find_nonfinite(t->data, t->size / fuzz_dtype_size(s->dtype), s->dtype);
    FUZZ_CHECK(bad < 0, "streamed a non-finite element %ld", bad);
    mix(s, t->data, t->size);
    /* The reader's decode of the same heads, rows [token_start, +token_count). */
    const sqkv_geometry *rg = &s->ref_geometry;
    const uint64_t full = sqkv_dense_size(t->head_count, rg->n_tokens, g->head_dim, s->dtype);
    if (s->reference && full && full <= FUZZ_MAX_OUTPUT && t->token_start + (uint64_t)t->token_count <= rg->n_tokens) {
        uint8_t *out = (uint8_t *)malloc((size_t)full);
        FUZZ_CHECK(out, "out of memory");
        const sqkv_error err =
            sqkv_reader_decode(s->reference, t->layer, t->tensor, t->head_start, t->head_count, s->dtype, out, full);
        /* VALUE: another section of these heads overflows fp16 (bf16 files); the reader is then done. */
        FUZZ_CHECK(err == SQKV_OK || err == SQKV_ERR_VALUE,
                   "the reader verified the file but cannot decode a streamed section: %s", sqkv_error_name(err));
        if (err != SQKV_OK) {
            free(out);
            return next_callback(s);
        }
        const size_t row = (size_t)g->head_dim * fuzz_dtype_size(s->dtype);
        for (uint32_t h = 0; h < t->head_count; h++)
            FUZZ_CHECK(memcmp((const uint8_t *)t->data + (size_t)h * t->token_count * row,
                              out + ((size_t)h * rg->n_tokens + t->token_start) * row, (size_t)t->token_count * row) == 0,
                       "streamed layer %u tensor %d head %u tokens [%u, +%u) differ from the reader's decode",
                       t->layer, (int)t->tensor, t->head_start + h, t->token_start, t->token_count);
        free(out);
        s->compared++;
    }
    return next_callback(s);
}

static int on_layer_complete(void *ctx, uint32_t layer) {
    stream_run *s = (stream_run *)ctx;
    FUZZ_CHECK(layer < s->geometry.n_layers, "layer %u completed of %u", layer, s->geometry.n_layers);
    s->layers_completed++;
    mix(s, &layer, sizeof layer);
    return next_callback(s);
}

/* Pushes data in chunks (seed 0: all at once); returns finish's error. */
static sqkv_error stream(const uint8_t *data, size_t size, uint32_t seed, stream_run *s, sqkv_stream_status *status) {
    sqkv_limits limits;
    fuzz_limits(&limits);
    const sqkv_stream_callbacks cb = {s, on_header, on_ancillary, on_tensor, on_layer_complete};
    sqkv_stream_decoder *d = NULL;
    FUZZ_CHECK(sqkv_stream_decoder_create(&limits, 0, s->dtype, &cb, &d) == SQKV_OK && d, "stream decoder create");
    uint64_t rng = seed;
    size_t pos = 0;
    sqkv_error pushed = SQKV_OK;
    while (pos < size) {
        size_t chunk = size - pos;
        if (seed) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            const uint32_t r = (uint32_t)(rng >> 33);
            chunk = (r & 3) == 0 ? 1 : (r & 3) == 1 ? 1 + (r >> 2) % 16 : (r & 3) == 2 ? 1 + (r >> 2) % 4096 : chunk;
            if (chunk > size - pos) chunk = size - pos;
        }
        pushed = sqkv_stream_decoder_push(d, data + pos, chunk);
        fuzz_check_error_known(pushed);
        pos += chunk;
        if (pushed != SQKV_OK) break;
    }
    if (size == 0 || (seed & 16)) FUZZ_CHECK(sqkv_stream_decoder_push(d, NULL, 0) == pushed, "empty push changed the state");
    memset(status, 0, sizeof *status);
    const sqkv_error err = sqkv_stream_decoder_finish(d, status);
    fuzz_check_error_known(err);
    FUZZ_CHECK(sqkv_stream_decoder_error_detail(d) != NULL, "NULL detail");
    if (pushed != SQKV_OK) FUZZ_CHECK(err == pushed, "push gave %s, finish %s", sqkv_error_name(pushed), sqkv_error_name(err));
    FUZZ_CHECK((err == SQKV_OK) == (status->complete != 0), "finish %s with complete = %d", sqkv_error_name(err),
               status->complete);
    FUZZ_CHECK(status->bytes_verified <= status->bytes_received && status->bytes_received <= size,
               "status: %llu verified, %llu received of %zu", (unsigned long long)status->bytes_verified,
               (unsigned long long)status->bytes_received, size);
    if (pushed == SQKV_OK) FUZZ_CHECK(status->bytes_received == size, "received %llu of %zu bytes",
                                      (unsigned long long)status->bytes_received, size);
    FUZZ_CHECK(status->layers_complete == s->layers_completed, "status says %u layers complete, %u callbacks",
               status->layers_complete, s->layers_completed);
    uint8_t one = 0;
    const sqkv_error after = sqkv_stream_decoder_push(d, &one, 1);
    FUZZ_CHECK(after == SQKV_ERR_STATE || (err != SQKV_OK && after == err), "push after finish gave %s",
               sqkv_error_name(after));
    if (status->header_received) {
        for (uint32_t l = 0; l < status->geometry.n_layers && l < 64; l++) {
            int complete = -1;
            FUZZ_CHECK(sqkv_stream_decoder_layer_complete(d, l, &complete) == SQKV_OK, "layer_complete query failed");
            if (err == SQKV_OK) FUZZ_CHECK(complete == 1, "layer %u not complete after a complete stream", l);
        }
        int complete;
        FUZZ_CHECK(sqkv_stream_decoder_layer_complete(d, status->geometry.n_layers, &complete) ==
                       SQKV_ERR_INVALID_ARGUMENT,
                   "layer_complete past the layers accepted");
    }
    sqkv_stream_decoder_destroy(d);
    return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 5) return 0;
    const uint8_t mode = data[0];
    const uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
    size -= 5;
    uint8_t *file = (uint8_t *)malloc(size ? size : 1);
    if (!file) return 0;
    if (size) memcpy(file, data + 5, size);
    fuzz_repair_checksums(file, size);

    sqkv_limits limits;
    fuzz_limits(&limits);
    sqkv_reader *r = NULL;
    FUZZ_CHECK(sqkv_reader_create(&limits, 0, &r) == SQKV_OK, "reader_create failed");
    sqkv_error reader_err = sqkv_reader_open_memory(r, file, size);
    if (reader_err == SQKV_OK) reader_err = sqkv_reader_verify(r);
    int appended = 0;
    if (reader_err == SQKV_OK) {
        const uint8_t *index = file + sqkv_load_u64(file + size - SQKV_TAIL_SIZE) + SQKV_SECTION_HEADER_SIZE;
        appended = sqkv_load_u64(index + 8) != 0; /* previous_index_offset */
    }

    stream_run a, b;
    memset(&a, 0, sizeof a);
    a.dtype = (sqkv_dtype)(mode & 3);
    a.abort_at = (mode & 0x1C) == 0x1C ? 1u + (mode >> 5) : 0;
    a.reference = reader_err == SQKV_OK ? r : NULL;
    if (a.reference) FUZZ_CHECK(sqkv_reader_geometry(r, &a.ref_geometry) == SQKV_OK, "geometry failed");
    b = a;
    sqkv_stream_status sa, sb;
    const sqkv_error ea = stream(file, size, seed | 1, &a, &sa);
    const sqkv_error eb = stream(file, size, 0, &b, &sb);

    FUZZ_CHECK(ea == eb, "chunked stream gave %s, one push %s", sqkv_error_name(ea), sqkv_error_name(eb));
    FUZZ_CHECK(a.callbacks == b.callbacks && a.digest == b.digest, "chunking changed the callbacks (%u vs %u)",
               a.callbacks, b.callbacks);
    FUZZ_CHECK(sa.bytes_verified == sb.bytes_verified && sa.sections_verified == sb.sections_verified,
               "chunking changed what was verified");
    if (a.abort_at && a.callbacks >= a.abort_at)
        FUZZ_CHECK(ea == SQKV_ERR_ABORTED, "a callback returned nonzero, finish gave %s", sqkv_error_name(ea));
    if (ea == SQKV_OK)
        FUZZ_CHECK(reader_err == SQKV_OK, "streamed completely, but the reader says %s", sqkv_error_name(reader_err));
    if (reader_err == SQKV_OK && !a.abort_at) {
        /* bf16 -> fp16 may be refused (VALUE) by both decoders alike. */
        /* An appended file the reader verifies: its first segment is a valid file on its own (§9.1),
         * so the stream decoder delivers it and then refuses the rest with UNSUPPORTED (§2.1 item 5,
         * §12: never an error that calls the file malformed). */
        if (appended)
            FUZZ_CHECK(ea == SQKV_ERR_UNSUPPORTED || ea == SQKV_ERR_VALUE || ea == SQKV_ERR_LIMIT,
                       "an appended file the reader verified streamed with %s, not UNSUPPORTED", sqkv_error_name(ea));
        else
            FUZZ_CHECK(ea == SQKV_OK || ea == SQKV_ERR_VALUE || ea == SQKV_ERR_LIMIT,
                       "the reader verified the file, the stream decoder says %s", sqkv_error_name(ea));
        if (ea == SQKV_OK) {
            sqkv_geometry g;
            FUZZ_CHECK(sqkv_reader_geometry(r, &g) == SQKV_OK, "geometry failed");
            FUZZ_CHECK(a.layers_completed == g.n_layers, "%u of %u layers completed", a.layers_completed, g.n_layers);
            size_t n = 0, tensors = 0;
            FUZZ_CHECK(sqkv_reader_section_count(r, &n) == SQKV_OK, "section_count failed");
            for (size_t i = 0; i < n; i++) {
                sqkv_section_info info;
                FUZZ_CHECK(sqkv_reader_section_info(r, i, &info) == SQKV_OK, "section_info failed");
                tensors += info.kind == SQKV_KIND_SPARSE || info.kind == SQKV_KIND_DENSE;
            }
            FUZZ_CHECK(a.tensors == tensors, "%u tensor sections streamed, the file has %zu", a.tensors, tensors);
        }
    }
    sqkv_reader_destroy(r);
    free(file);
    return 0;
}
