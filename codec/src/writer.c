/* writer.c: the encoder's public API (sqkv.h "Writer"): validation, state, file assembly.
 *
 * State: CONFIG (ancillary setters and add_layer, in any order) until the first output call, which
 * finalizes the file (ancillary sections, the INDEX section with the tail at its end, the file header)
 * and makes the writer read-only; every output call after that emits the same bytes.
 *
 * Errors are sticky without exception: the first failing call records its error and a detail message,
 * and every later call except destroy returns that error. This includes a NULL pointer or an
 * out-of-range argument: after a caller bug the writer's content is no longer what the caller thinks,
 * and refusing to produce a file is the safe answer. (A NULL writer cannot record anything and just
 * gets SQKV_ERR_INVALID_ARGUMENT.)
 *
 * Memory: add_layer converts one head group at a time into a working buffer (unless the input is
 * already in the element type), reuses its buffers across the layer's sections and frees them on
 * return, so that between calls the writer holds only the finished sections, each exactly as it will
 * appear in the file. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "atomic_file.h"
#include "elements.h"
#include "encode_ancillary.h"
#include "encode_dense.h"
#include "encode_sparse.h"
#include "encode_streams.h"
#include "format.h"
#include "prune.h"
#include "section_blob.h"
#include "section_header.h"
#include "sqkv.h"
#include "writer_internal.h"

#define DETAIL_SIZE SQKV_WRITER_DETAIL_SIZE
/* INDEX body (§9): n_tokens u32, dense_window u32, previous_index_offset u64, the entries, then the
 * file's tail (INDEX offset u64, end magic). */
#define INDEX_PREFIX_SIZE 16u
#define INDEX_TAIL_SIZE 16u
/* write(2) transfers at most about 2 GiB at once on Linux; smaller pieces also keep EINTR cheap. */
#define WRITE_CHUNK ((size_t)1 << 30)

/* ---- small helpers ----------------------------------------------------------------------------- */

sqkv_error sqkv_writer_fail(sqkv_writer *w, sqkv_error err, const char *fmt, ...) {
    if (w->error != SQKV_OK) return w->error;
    w->error = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->detail, sizeof w->detail, fmt, ap);
    va_end(ap);
    return err;
}
#define fail sqkv_writer_fail

static const char *dtype_name(sqkv_dtype d) {
    return d == SQKV_DTYPE_FP16 ? "fp16" : d == SQKV_DTYPE_BF16 ? "bf16" : d == SQKV_DTYPE_FP32 ? "fp32" : "?";
}

static size_t dtype_size(sqkv_dtype d) { return d == SQKV_DTYPE_FP32 ? 4 : 2; }

uint64_t sqkv_dense_size(uint32_t head_count, uint32_t n_tokens, uint32_t head_dim, sqkv_dtype dtype) {
    if (dtype != SQKV_DTYPE_FP16 && dtype != SQKV_DTYPE_BF16 && dtype != SQKV_DTYPE_FP32) return 0;
    const uint64_t rows = (uint64_t)head_count * n_tokens;
    if (head_dim != 0 && rows > UINT64_MAX / head_dim) return 0;
    const uint64_t elements = rows * head_dim;
    if (elements > UINT64_MAX / dtype_size(dtype)) return 0;
    return elements * dtype_size(dtype);
}

uint32_t sqkv_features_of_options(const sqkv_writer_options *o) {
    const uint32_t b = o->payload_bits;
    uint32_t f = 0;
    if (b != 2 && b != 4 && b != 8 && b != 16) f |= SQKV_FEATURE_CODE_WIDTHS;
    if (o->scales == SQKV_SCALE_PER_HALF_TILE) f |= SQKV_FEATURE_HALF_TILE_SCALES;
    if (o->prune == SQKV_PRUNE_KEEP_ALL) f |= SQKV_FEATURE_ALL_KEPT;
    return f;
}

void sqkv_writer_options_default(sqkv_writer_options *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->prune = SQKV_PRUNE_MAGNITUDE;
    opts->sparsity = 0.8;
    opts->payload_bits = 2;
    opts->quantizer = SQKV_QUANT_ASYMMETRIC;
    opts->scales = SQKV_SCALE_PER_TILE;
    opts->offset_interval_log2 = 4;
    opts->heads_per_section = 1;
    opts->tokens_per_section = 0;
}

const char *sqkv_writer_error_detail(const sqkv_writer *w) { return w ? w->detail : ""; }

/* ---- create / destroy -------------------------------------------------------------------------- */

/* Writes the reason into why (a create failure has no writer to hold it) and returns the error. */
static sqkv_error check_geometry(const sqkv_geometry *g, char *why, size_t why_size) {
#define RANGE(field, lo, hi)                                                                           \
    if (g->field < (lo) || g->field > (hi)) {                                                          \
        snprintf(why, why_size, "geometry." #field " must be %u..%u (got %u)", (unsigned)(lo),        \
                 (unsigned)(hi), (unsigned)g->field);                                                  \
        return SQKV_ERR_INVALID_ARGUMENT;                                                              \
    }
    RANGE(n_layers, 1u, SQKV_MAX_LAYERS)
    RANGE(n_kv_heads, 1u, SQKV_MAX_HEADS)
    RANGE(head_dim, 1u, SQKV_MAX_HEAD_DIM)
    RANGE(n_tokens, 1u, SQKV_MAX_TOKENS)
#undef RANGE
    if (g->dense_window > g->n_tokens) {
        snprintf(why, why_size, "geometry.dense_window must be at most geometry.n_tokens %u (got %u)",
                 (unsigned)g->n_tokens, (unsigned)g->dense_window);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if (g->value_dtype != SQKV_DTYPE_FP16 && g->value_dtype != SQKV_DTYPE_BF16) {
        snprintf(why, why_size, "geometry.value_dtype must be SQKV_DTYPE_FP16 or SQKV_DTYPE_BF16 (got %d)",
                 (int)g->value_dtype);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    return SQKV_OK;
}

sqkv_error sqkv_writer_check_options(const sqkv_writer_options *o, char *why, size_t why_size) {
    if (o->prune != SQKV_PRUNE_NONE && o->prune != SQKV_PRUNE_MAGNITUDE && o->prune != SQKV_PRUNE_KEEP_ALL) {
        snprintf(why, why_size, "options.prune must be SQKV_PRUNE_NONE, SQKV_PRUNE_MAGNITUDE or SQKV_PRUNE_KEEP_ALL"
                 " (got %d)", (int)o->prune);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if (!(o->sparsity >= 0.0 && o->sparsity < 1.0)) { /* also rejects NaN */
        snprintf(why, why_size, "options.sparsity must be in [0, 1) (got %g)", o->sparsity);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    const uint32_t b = o->payload_bits;
    if (!((b >= 1 && b <= 8) || b == 16)) {
        snprintf(why, why_size, "options.payload_bits must be 1..8 or 16 (got %u)", (unsigned)b);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if (o->quantizer != SQKV_QUANT_EXACT && o->quantizer != SQKV_QUANT_SYMMETRIC &&
        o->quantizer != SQKV_QUANT_ASYMMETRIC) {
        snprintf(why, why_size, "options.quantizer must be EXACT, SYMMETRIC or ASYMMETRIC (got %d)", (int)o->quantizer);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if (o->scales != SQKV_SCALE_NONE && o->scales != SQKV_SCALE_PER_HEAD && o->scales != SQKV_SCALE_PER_TILE &&
        o->scales != SQKV_SCALE_PER_HALF_TILE) {
        snprintf(why, why_size, "options.scales must be NONE, PER_HEAD, PER_TILE or PER_HALF_TILE (got %d)",
                 (int)o->scales);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    /* §7.4: EXACT <=> 16 bits <=> no scales. */
    if ((b == 16) != (o->quantizer == SQKV_QUANT_EXACT)) {
        snprintf(why, why_size, "options.quantizer EXACT goes with options.payload_bits 16 and only with it "
                 "(got quantizer %d, payload_bits %u)", (int)o->quantizer, (unsigned)b);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if ((o->quantizer == SQKV_QUANT_EXACT) != (o->scales == SQKV_SCALE_NONE)) {
        snprintf(why, why_size, "options.scales must be NONE with the EXACT quantizer and PER_HEAD, PER_TILE or "
                 "PER_HALF_TILE otherwise (got scales %d, quantizer %d)", (int)o->scales, (int)o->quantizer);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    /* §7.6: an exact section without pruning is a DENSE section's job. */
    if (o->prune == SQKV_PRUNE_KEEP_ALL && o->quantizer == SQKV_QUANT_EXACT) {
        snprintf(why, why_size, "options.prune SQKV_PRUNE_KEEP_ALL needs a SYMMETRIC or ASYMMETRIC quantizer "
                 "(for exact values without pruning use a dense window)");
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if (o->range_search & ~(SQKV_RANGE_SEARCH_VALUES | SQKV_RANGE_SEARCH_KEYS)) {
        snprintf(why, why_size, "options.range_search must be a combination of SQKV_RANGE_SEARCH_VALUES and "
                 "SQKV_RANGE_SEARCH_KEYS (got %u)", (unsigned)o->range_search);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if (o->offset_interval_log2 > SQKV_MAX_OFFSET_INTERVAL_LOG2) {
        snprintf(why, why_size, "options.offset_interval_log2 must be 0..20 (got %u)", (unsigned)o->offset_interval_log2);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if (o->heads_per_section < 1) {
        snprintf(why, why_size, "options.heads_per_section must be at least 1");
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if (o->tokens_per_section % SQKV_TILE != 0) {
        snprintf(why, why_size, "options.tokens_per_section must be 0 or a multiple of 64 (got %u)",
                 (unsigned)o->tokens_per_section);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    if (o->zstd_level > SQKV_ZSTD_MAX_LEVEL || (int)o->zstd_level > ZSTD_maxCLevel()) {
        snprintf(why, why_size, "options.zstd_level must be 0 (off) .. %d (got %u)", ZSTD_maxCLevel(),
                 (unsigned)o->zstd_level);
        return SQKV_ERR_INVALID_ARGUMENT;
    }
    return SQKV_OK;
}

/* The section plan: counts, and the §3 limits on elements per section and sections per file. */
static sqkv_error plan_sections(sqkv_writer *w, char *why, size_t why_size) {
    const sqkv_geometry *g = &w->geo;
    const uint32_t hps = w->opt.heads_per_section < g->n_kv_heads ? w->opt.heads_per_section : g->n_kv_heads;
    const uint32_t tps = w->opt.tokens_per_section;
    w->sparse_tokens = g->n_tokens - g->dense_window;
    w->head_groups = (g->n_kv_heads + hps - 1) / hps;
    w->token_chunks = w->sparse_tokens == 0 ? 0 : tps == 0 ? 1 : (w->sparse_tokens + tps - 1) / tps;
    w->per_group = w->token_chunks + (g->dense_window > 0 ? 1u : 0u);
    w->tensor_sections = (uint64_t)g->n_layers * 2u * w->head_groups * w->per_group;

    const uint32_t sparse_tc = tps == 0 || tps > w->sparse_tokens ? w->sparse_tokens : tps;
    if ((uint64_t)hps * sparse_tc * g->head_dim > SQKV_MAX_SECTION_ELEMENTS) {
        snprintf(why, why_size, "a SPARSE section of %u heads x %u tokens x %u channels exceeds the format's "
                 "2^32-1 elements per section; set options.tokens_per_section (or a smaller one) or lower "
                 "options.heads_per_section", (unsigned)hps, (unsigned)sparse_tc, (unsigned)g->head_dim);
        return SQKV_ERR_LIMIT;
    }
    if ((uint64_t)hps * g->dense_window * g->head_dim > SQKV_MAX_SECTION_ELEMENTS) {
        snprintf(why, why_size, "a DENSE section of %u heads x %u tokens x %u channels exceeds the format's "
                 "2^32-1 elements per section; lower options.heads_per_section or geometry.dense_window",
                 (unsigned)hps, (unsigned)g->dense_window, (unsigned)g->head_dim);
        return SQKV_ERR_LIMIT;
    }
    if (w->tensor_sections + 1u > SQKV_MAX_SECTIONS) {
        snprintf(why, why_size, "the file would have %llu sections, more than the format's 2^20; raise "
                 "options.heads_per_section or options.tokens_per_section",
                 (unsigned long long)(w->tensor_sections + 1u));
        return SQKV_ERR_LIMIT;
    }
    return SQKV_OK;
}

sqkv_error sqkv_writer_create(const sqkv_geometry *geometry, const sqkv_writer_options *opts, sqkv_writer **out) {
    if (!out) return SQKV_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!geometry) return SQKV_ERR_INVALID_ARGUMENT;
    if (!opts) return SQKV_ERR_INVALID_ARGUMENT;
    char why[DETAIL_SIZE];
    sqkv_error err = check_geometry(geometry, why, sizeof why);
    if (err == SQKV_OK) err = sqkv_writer_check_options(opts, why, sizeof why);
    if (err != SQKV_OK) return err;

    sqkv_writer *w = (sqkv_writer *)calloc(1, sizeof *w);
    if (!w) return SQKV_ERR_OUT_OF_MEMORY;
    w->geo = *geometry;
    w->opt = *opts;
    if (plan_sections(w, why, sizeof why) != SQKV_OK) {
        free(w);
        return SQKV_ERR_LIMIT;
    }
    w->keep = sqkv_prune_keep_count(geometry->head_dim, opts->prune, opts->sparsity);
    w->layers = (sqkv_section_blob **)calloc(geometry->n_layers, sizeof *w->layers);
    w->layer_done = (uint8_t *)calloc(geometry->n_layers, 1);
    if (!w->layers || !w->layer_done) {
        free(w->layers);
        free(w->layer_done);
        free(w);
        return SQKV_ERR_OUT_OF_MEMORY;
    }
    *out = w;
    return SQKV_OK;
}

size_t sqkv_writer_sections_per_layer(const sqkv_writer *w) { return 2u * (size_t)w->head_groups * w->per_group; }
#define sections_per_layer sqkv_writer_sections_per_layer

void sqkv_writer_free_layer(sqkv_writer *w, uint32_t layer) {
    if (!w->layers[layer]) return;
    for (size_t i = 0; i < sections_per_layer(w); i++) sqkv_blob_free(&w->layers[layer][i]);
    free(w->layers[layer]);
    w->layers[layer] = NULL;
}

void sqkv_writer_destroy(sqkv_writer *w) {
    if (!w) return;
    for (uint32_t l = 0; l < w->geo.n_layers; l++) sqkv_writer_free_layer(w, l);
    free(w->layers);
    free(w->layer_done);
    ZSTD_freeCCtx((ZSTD_CCtx *)w->zstd);
    if (w->stream_owned) {
        sqkv_stream_out_free(w->stream);
        free(w->stream);
    }
    free(w->tokens);
    free(w->fingerprint);
    for (size_t i = 0; i < w->meta_count; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->meta);
    free(w->converted);
    sqkv_sparse_scratch_free(&w->sparse);
    for (size_t i = 0; i < w->ancillary_count; i++) sqkv_blob_free(&w->ancillary[i]);
    sqkv_blob_free(&w->index);
    free(w);
}

/* ---- ancillary setters ------------------------------------------------------------------------- */

/* Common preamble of the setters: sticky error, finalized state, room for one more section. */
static sqkv_error setter_allowed(sqkv_writer *w, const char *what) {
    if (w->error != SQKV_OK) return w->error;
    if (w->finalized) return fail(w, SQKV_ERR_STATE, "%s after the file was output", what);
    if (w->stream) return fail(w, SQKV_ERR_STATE, "%s after sqkv_writer_stream_begin (the ancillary sections"
                               " were already written)", what);
    return SQKV_OK;
}

static sqkv_error room_for_section(sqkv_writer *w, const char *what) {
    const uint64_t present = (w->tokens != NULL) + (w->fingerprint != NULL) + (w->meta_count > 0);
    if (w->tensor_sections + 1u + present + 1u > SQKV_MAX_SECTIONS)
        return fail(w, SQKV_ERR_LIMIT, "%s: the file would exceed the format's 2^20 sections", what);
    return SQKV_OK;
}

sqkv_error sqkv_writer_set_tokens(sqkv_writer *w, const int32_t *tokens, size_t count) {
    if (!w) return SQKV_ERR_INVALID_ARGUMENT;
    sqkv_error err = setter_allowed(w, "set_tokens");
    if (err != SQKV_OK) return err;
    if (!tokens) return fail(w, SQKV_ERR_INVALID_ARGUMENT, "set_tokens: tokens is NULL");
    if (count != w->geo.n_tokens)
        return fail(w, SQKV_ERR_INVALID_ARGUMENT, "set_tokens: count %zu differs from geometry.n_tokens %u", count,
                    (unsigned)w->geo.n_tokens);
    if (w->tokens) return fail(w, SQKV_ERR_STATE, "set_tokens called twice");
    if ((err = room_for_section(w, "set_tokens")) != SQKV_OK) return err;
    w->tokens = (int32_t *)malloc(count * sizeof *tokens);
    if (!w->tokens) return fail(w, SQKV_ERR_OUT_OF_MEMORY, "set_tokens: out of memory");
    memcpy(w->tokens, tokens, count * sizeof *tokens);
    return SQKV_OK;
}

sqkv_error sqkv_writer_set_fingerprint(sqkv_writer *w, const void *bytes, size_t size) {
    if (!w) return SQKV_ERR_INVALID_ARGUMENT;
    sqkv_error err = setter_allowed(w, "set_fingerprint");
    if (err != SQKV_OK) return err;
    if (!bytes) return fail(w, SQKV_ERR_INVALID_ARGUMENT, "set_fingerprint: bytes is NULL");
    if (size < 1 || size > SQKV_MAX_FINGERPRINT)
        return fail(w, SQKV_ERR_INVALID_ARGUMENT, "set_fingerprint: size must be 1..4096 bytes (got %zu)", size);
    if (w->fingerprint) return fail(w, SQKV_ERR_STATE, "set_fingerprint called twice");
    if ((err = room_for_section(w, "set_fingerprint")) != SQKV_OK) return err;
    w->fingerprint = (uint8_t *)malloc(size);
    if (!w->fingerprint) return fail(w, SQKV_ERR_OUT_OF_MEMORY, "set_fingerprint: out of memory");
    memcpy(w->fingerprint, bytes, size);
    w->fingerprint_size = size;
    return SQKV_OK;
}

sqkv_error sqkv_writer_add_metadata(sqkv_writer *w, const char *key, size_t key_size, const char *value,
                                    size_t value_size) {
    if (!w) return SQKV_ERR_INVALID_ARGUMENT;
    sqkv_error err = setter_allowed(w, "add_metadata");
    if (err != SQKV_OK) return err;
    if (!key || (!value && value_size > 0))
        return fail(w, SQKV_ERR_INVALID_ARGUMENT, "add_metadata: key or value is NULL");
    const uint8_t *k = (const uint8_t *)key, *v = (const uint8_t *)value;
    const char *why = NULL;
    if ((err = sqkv_metadata_entry_check(k, key_size, v, value_size, &why)) != SQKV_OK)
        return fail(w, err, "add_metadata: %s", why);

    /* Binary search for the insertion point; equal key = duplicate. */
    size_t lo = 0, hi = w->meta_count;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const int c = sqkv_metadata_key_compare(w->meta[mid].key, w->meta[mid].key_size, k, key_size);
        if (c == 0) return fail(w, SQKV_ERR_INVALID_ARGUMENT, "add_metadata: key \"%.*s\" added twice",
                                (int)(key_size < 64 ? key_size : 64), key);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (w->meta_count + 1 > SQKV_MAX_METADATA_ENTRIES)
        return fail(w, SQKV_ERR_LIMIT, "add_metadata: more than 1024 metadata entries");
    const uint64_t body = (w->meta_count == 0 ? 4u : w->meta_body_size) + sqkv_metadata_entry_size(key_size, value_size);
    if (body > SQKV_MAX_METADATA_BODY)
        return fail(w, SQKV_ERR_LIMIT, "add_metadata: the METADATA body would exceed 1 MiB");
    if (w->meta_count == 0 && (err = room_for_section(w, "add_metadata")) != SQKV_OK) return err;

    if (w->meta_count == w->meta_cap) {
        const size_t cap = w->meta_cap ? 2 * w->meta_cap : 8;
        sqkv_metadata_entry *grown = (sqkv_metadata_entry *)realloc(w->meta, cap * sizeof *grown);
        if (!grown) return fail(w, SQKV_ERR_OUT_OF_MEMORY, "add_metadata: out of memory");
        w->meta = grown;
        w->meta_cap = cap;
    }
    sqkv_metadata_entry e = {(uint8_t *)malloc(key_size), key_size, NULL, value_size};
    if (value_size) e.value = (uint8_t *)malloc(value_size);
    if (!e.key || (value_size && !e.value)) {
        free(e.key);
        free(e.value);
        return fail(w, SQKV_ERR_OUT_OF_MEMORY, "add_metadata: out of memory");
    }
    memcpy(e.key, k, key_size);
    if (value_size) memcpy(e.value, v, value_size);
    memmove(w->meta + lo + 1, w->meta + lo, (w->meta_count - lo) * sizeof *w->meta);
    w->meta[lo] = e;
    w->meta_count++;
    w->meta_body_size = body;
    return SQKV_OK;
}

/* ---- add_layer --------------------------------------------------------------------------------- */

/* Reports the first bad input element with its coordinates. */
static sqkv_error input_error(sqkv_writer *w, sqkv_error err, uint32_t layer, sqkv_tensor tensor, uint32_t head0,
                              uint64_t index, sqkv_dtype src) {
    const uint64_t per_head = (uint64_t)w->geo.n_tokens * w->geo.head_dim;
    const uint32_t head = head0 + (uint32_t)(index / per_head);
    const uint32_t token = (uint32_t)(index % per_head / w->geo.head_dim);
    const uint32_t channel = (uint32_t)(index % w->geo.head_dim);
    const char *what = err == SQKV_ERR_NONFINITE_INPUT ? "NaN or infinity in the input"
                                                       : "input value out of range of the element type";
    return fail(w, err, "layer %u %s head %u token %u channel %u: %s (%s input, %s element type)", (unsigned)layer,
                tensor == SQKV_TENSOR_K ? "K" : "V", (unsigned)head, (unsigned)token, (unsigned)channel, what,
                dtype_name(src), dtype_name(w->geo.value_dtype));
}

/* E-typed rows of heads [head0, head0 + hc) of one input tensor: the input itself when it already is in
 * E (and aligned), else a conversion into the working buffer. */
static sqkv_error head_group_rows(sqkv_writer *w, uint32_t layer, sqkv_tensor tensor, sqkv_dtype src,
                                  const void *input, uint32_t head0, uint32_t hc, const uint16_t **rows) {
    const uint64_t per_head = (uint64_t)w->geo.n_tokens * w->geo.head_dim;
    const uint64_t count = per_head * hc;
    const uint8_t *first = (const uint8_t *)input + per_head * head0 * dtype_size(src);
    uint64_t bad = 0;
    sqkv_error err;
    if (src == w->geo.value_dtype && ((uintptr_t)first % sizeof(uint16_t)) == 0) {
        *rows = (const uint16_t *)(const void *)first;
        err = sqkv_elements_check_finite(src, *rows, count, &bad);
    } else {
        if (count > w->converted_cap) {
            if (count > SIZE_MAX / sizeof(uint16_t))
                return fail(w, SQKV_ERR_OUT_OF_MEMORY, "add_layer: conversion buffer too large");
            free(w->converted);
            w->converted = (uint16_t *)malloc((size_t)count * sizeof(uint16_t));
            w->converted_cap = w->converted ? (size_t)count : 0;
            if (!w->converted) return fail(w, SQKV_ERR_OUT_OF_MEMORY, "add_layer: out of memory");
        }
        *rows = w->converted;
        err = sqkv_elements_convert(src, w->geo.value_dtype, first, count, w->converted, &bad);
    }
    if (err != SQKV_OK) return input_error(w, err, layer, tensor, head0, bad, src);
    return SQKV_OK;
}

static sqkv_error encode_tensor(sqkv_writer *w, uint32_t layer, sqkv_tensor tensor, sqkv_dtype src,
                                const void *input, sqkv_section_blob *slots) {
    const sqkv_geometry *g = &w->geo;
    const uint64_t head_stride = (uint64_t)g->n_tokens * g->head_dim;
    const uint32_t hps = w->opt.heads_per_section;
    for (uint32_t group = 0; group < w->head_groups; group++) {
        const uint32_t head0 = group * hps; /* no overflow: head0 < n_kv_heads */
        const uint32_t hc = g->n_kv_heads - head0 < hps ? g->n_kv_heads - head0 : hps;
        const uint16_t *rows = NULL;
        sqkv_error err = head_group_rows(w, layer, tensor, src, input, head0, hc, &rows);
        if (err != SQKV_OK) return err;
        sqkv_section_blob *slot = slots + (size_t)group * w->per_group;
        for (uint32_t chunk = 0; chunk < w->token_chunks; chunk++, slot++) {
            const uint32_t tps = w->opt.tokens_per_section;
            const uint32_t t0 = chunk * tps; /* chunk > 0 only when tps > 0 */
            const uint32_t tc = tps == 0 || w->sparse_tokens - t0 < tps ? w->sparse_tokens - t0 : tps;
            const sqkv_sparse_input in = {
                tensor, g->value_dtype, g->head_dim, hc, tc, rows + (uint64_t)t0 * g->head_dim, head_stride,
                w->keep, w->opt.payload_bits, w->opt.quantizer, w->opt.scales,
                w->opt.prune == SQKV_PRUNE_KEEP_ALL ? 0u : w->opt.offset_interval_log2,
                w->opt.prune == SQKV_PRUNE_KEEP_ALL,
                (w->opt.range_search & (tensor == SQKV_TENSOR_K ? SQKV_RANGE_SEARCH_KEYS : SQKV_RANGE_SEARCH_VALUES)) != 0};
            err = sqkv_encode_sparse(&in, &w->sparse, slot);
            if (err != SQKV_OK)
                return fail(w, err, "layer %u %s heads %u..%u tokens %u..%u: %s while encoding a SPARSE section",
                            (unsigned)layer, tensor == SQKV_TENSOR_K ? "K" : "V", (unsigned)head0,
                            (unsigned)(head0 + hc - 1), (unsigned)t0, (unsigned)(t0 + tc - 1), sqkv_error_name(err));
            slot->header.layer = layer;
            slot->header.head_start = head0;
            slot->header.token_start = w->token_base + t0;
            sqkv_blob_seal(slot);
            if ((err = sqkv_writer_compress(w, slot)) != SQKV_OK) return err;
        }
        if (g->dense_window > 0) {
            err = sqkv_encode_dense(tensor, rows + (uint64_t)w->sparse_tokens * g->head_dim, head_stride, hc,
                                    g->dense_window, g->head_dim, slot);
            if (err != SQKV_OK)
                return fail(w, err, "layer %u %s heads %u..%u: %s while encoding a DENSE section", (unsigned)layer,
                            tensor == SQKV_TENSOR_K ? "K" : "V", (unsigned)head0, (unsigned)(head0 + hc - 1),
                            sqkv_error_name(err));
            slot->header.layer = layer;
            slot->header.head_start = head0;
            slot->header.token_start = w->token_base + w->sparse_tokens;
            sqkv_blob_seal(slot);
            if ((err = sqkv_writer_compress(w, slot)) != SQKV_OK) return err;
        }
    }
    return SQKV_OK;
}

sqkv_error sqkv_writer_add_layer(sqkv_writer *w, uint32_t layer, sqkv_dtype dtype, const void *k, const void *v) {
    if (!w) return SQKV_ERR_INVALID_ARGUMENT;
    if (w->error != SQKV_OK) return w->error;
    if (w->finalized) return fail(w, SQKV_ERR_STATE, "add_layer after the file was output");
    if (layer >= w->geo.n_layers)
        return fail(w, SQKV_ERR_INVALID_ARGUMENT, "add_layer: layer %u out of range (n_layers %u)", (unsigned)layer,
                    (unsigned)w->geo.n_layers);
    if (dtype != SQKV_DTYPE_FP16 && dtype != SQKV_DTYPE_BF16 && dtype != SQKV_DTYPE_FP32)
        return fail(w, SQKV_ERR_INVALID_ARGUMENT, "add_layer: dtype must be FP16, BF16 or FP32 (got %d)", (int)dtype);
    if (!k || !v) return fail(w, SQKV_ERR_INVALID_ARGUMENT, "add_layer: k or v is NULL");
    if (w->layer_done[layer]) return fail(w, SQKV_ERR_STATE, "add_layer: layer %u added twice", (unsigned)layer);
    if (w->stream && w->stream_finished) return fail(w, SQKV_ERR_STATE, "add_layer after sqkv_writer_stream_finish");
    /* The header records one source dtype for the whole file, so mixing them would make it a lie. */
    if (w->have_source && dtype != w->source_dtype)
        return fail(w, SQKV_ERR_INVALID_ARGUMENT, "add_layer: dtype %s differs from the %s of earlier layers",
                    dtype_name(dtype), dtype_name(w->source_dtype));

    sqkv_section_blob *slots = (sqkv_section_blob *)calloc(sections_per_layer(w), sizeof *slots);
    if (!slots) return fail(w, SQKV_ERR_OUT_OF_MEMORY, "add_layer: out of memory");
    w->layers[layer] = slots;
    const size_t per_tensor = (size_t)w->head_groups * w->per_group;
    sqkv_error err = encode_tensor(w, layer, SQKV_TENSOR_K, dtype, k, slots);
    if (err == SQKV_OK) err = encode_tensor(w, layer, SQKV_TENSOR_V, dtype, v, slots + per_tensor);
    free(w->converted);
    w->converted = NULL;
    w->converted_cap = 0;
    sqkv_sparse_scratch_free(&w->sparse);
    if (err != SQKV_OK) {
        sqkv_writer_free_layer(w, layer);
        return err;
    }
    w->have_source = 1;
    w->source_dtype = dtype;
    w->layers_added++;
    w->layer_done[layer] = 1;
    if (w->stream) return sqkv_writer_stream_layer(w, layer);
    return SQKV_OK;
}

/* ---- finalize and output ----------------------------------------------------------------------- */

typedef sqkv_error (*piece_sink)(void *ctx, const uint8_t *data, uint64_t size);

/* Calls sink with every piece of the file in order: header, sections, INDEX (which ends with the tail). */
static sqkv_error emit(const sqkv_writer *w, piece_sink sink, void *ctx) {
    sqkv_error err = sink(ctx, w->file_header, sizeof w->file_header);
    for (size_t i = 0; i < w->ancillary_count && err == SQKV_OK; i++)
        err = sink(ctx, w->ancillary[i].bytes, sqkv_blob_extent(&w->ancillary[i]));
    for (uint32_t l = 0; l < w->geo.n_layers && err == SQKV_OK; l++)
        for (size_t i = 0; i < sections_per_layer(w) && err == SQKV_OK; i++)
            err = sink(ctx, w->layers[l][i].bytes, sqkv_blob_extent(&w->layers[l][i]));
    if (err == SQKV_OK) err = sink(ctx, w->index.bytes, sqkv_blob_extent(&w->index));
    return err;
}

void sqkv_writer_build_file_header(sqkv_writer *w) {
    uint8_t *h = w->file_header;
    memset(h, 0, sizeof w->file_header);
    memcpy(h + SQKV_HDR_MAGIC, sqkv_magic, SQKV_MAGIC_SIZE);
    sqkv_store_u16(h + SQKV_HDR_VERSION_MAJOR, SQKV_FORMAT_VERSION_MAJOR);
    const uint32_t features = sqkv_features_of_options(&w->opt);
    sqkv_store_u16(h + SQKV_HDR_VERSION_MINOR, sqkv_version_minor_for(features));
    sqkv_store_u32(h + SQKV_HDR_HEADER_SIZE, SQKV_HEADER_SIZE_V1);
    sqkv_store_u32(h + SQKV_HDR_REQUIRED_FEATURES, features);
    sqkv_store_u32(h + SQKV_HDR_N_LAYERS, w->geo.n_layers);
    sqkv_store_u32(h + SQKV_HDR_N_KV_HEADS, w->geo.n_kv_heads);
    sqkv_store_u32(h + SQKV_HDR_HEAD_DIM, w->geo.head_dim);
    sqkv_store_u32(h + SQKV_HDR_N_TOKENS, w->geo.n_tokens);
    sqkv_store_u32(h + SQKV_HDR_DENSE_WINDOW, w->geo.dense_window);
    h[SQKV_HDR_VALUE_DTYPE] = (uint8_t)w->geo.value_dtype;
    h[SQKV_HDR_SOURCE_DTYPE] = (uint8_t)w->source_dtype;
    h[SQKV_HDR_TILE_SIZE_LOG2] = (uint8_t)SQKV_TILE_SIZE_LOG2;
    h[SQKV_HDR_CHECKSUM_KIND] = (uint8_t)SQKV_CHECKSUM_XXH3_64;
    sqkv_store_u64(h + SQKV_HEADER_SIZE_V1 - 8, sqkv_checksum(h, SQKV_HEADER_SIZE_V1 - 8));
}

typedef struct index_builder {
    uint8_t *entries;
    uint64_t count;
    uint64_t offset; /* of the next section */
} index_builder;

static void index_add(index_builder *b, const sqkv_section_blob *section) {
    sqkv_index_entry_pack(&section->header, b->offset, b->entries + SQKV_INDEX_ENTRY_SIZE * b->count);
    b->count++;
    b->offset += sqkv_blob_extent(section);
}

/* One entry per section, in the order emit writes them; returns the offset where the index starts. */
static uint64_t fill_index(const sqkv_writer *w, uint8_t *entries) {
    index_builder b = {entries, 0, SQKV_HEADER_SIZE_V1};
    for (size_t i = 0; i < w->ancillary_count; i++) index_add(&b, &w->ancillary[i]);
    for (uint32_t l = 0; l < w->geo.n_layers; l++)
        for (size_t i = 0; i < sections_per_layer(w); i++) index_add(&b, &w->layers[l][i]);
    return b.offset;
}

sqkv_error sqkv_writer_compress(sqkv_writer *w, sqkv_section_blob *b) {
    if (w->opt.zstd_level == 0) return SQKV_OK;
    const sqkv_error err = sqkv_blob_compress_streams(b, w->geo.head_dim, w->opt.zstd_level, &w->zstd, NULL);
    if (err != SQKV_OK)
        return fail(w, err, "%s while compressing a %s section with zstd", sqkv_error_name(err),
                    b->header.kind == SQKV_KIND_SPARSE ? "SPARSE" : b->header.kind == SQKV_KIND_DENSE ? "DENSE"
                                                                                                  : "ancillary");
    return SQKV_OK;
}

sqkv_error sqkv_writer_build_ancillary(sqkv_writer *w) {
    sqkv_error err = SQKV_OK;
    if (w->tokens) err = sqkv_encode_tokens(w->tokens, w->geo.n_tokens, &w->ancillary[w->ancillary_count++]);
    if (err == SQKV_OK && w->fingerprint)
        err = sqkv_encode_fingerprint(w->fingerprint, w->fingerprint_size, &w->ancillary[w->ancillary_count++]);
    if (err == SQKV_OK && w->meta_count > 0)
        err = sqkv_encode_metadata(w->meta, w->meta_count, &w->ancillary[w->ancillary_count++]);
    if (err != SQKV_OK) return fail(w, err, "out of memory building the ancillary sections");
    for (size_t i = 0; i < w->ancillary_count && err == SQKV_OK; i++) err = sqkv_writer_compress(w, &w->ancillary[i]);
    return err;
}

static sqkv_error finalize(sqkv_writer *w) {
    if (w->error != SQKV_OK) return w->error;
    if (w->finalized) return SQKV_OK;
    if (w->stream)
        return fail(w, SQKV_ERR_STATE, "whole-file output after sqkv_writer_stream_begin (a streaming writer ends"
                    " with sqkv_writer_stream_finish)");
    if (w->layers_added < w->geo.n_layers) {
        uint32_t missing = 0;
        while (w->layer_done[missing]) missing++;
        return fail(w, SQKV_ERR_STATE, "output requested before every layer was added (%u of %u added; layer %u missing)",
                    (unsigned)w->layers_added, (unsigned)w->geo.n_layers, (unsigned)missing);
    }
    sqkv_error err = sqkv_writer_build_ancillary(w);
    if (err != SQKV_OK) return err;

    const uint64_t entries = w->ancillary_count + w->tensor_sections;
    const uint64_t index_body = INDEX_PREFIX_SIZE + SQKV_INDEX_ENTRY_SIZE * entries + INDEX_TAIL_SIZE;
    err = sqkv_blob_alloc(&w->index, index_body);
    if (err != SQKV_OK) return fail(w, err, "out of memory building the index");
    uint8_t *body = sqkv_blob_body(&w->index);
    /* A freshly written file: the current length is the header's, nothing is superseded (entry flags
     * 0) and there is no previous INDEX section (offset 0). */
    sqkv_store_u32(body, w->geo.n_tokens);
    sqkv_store_u32(body + 4, w->geo.dense_window);
    sqkv_store_u64(body + 8, 0);
    const uint64_t index_offset = fill_index(w, body + INDEX_PREFIX_SIZE);
    uint8_t *tail = body + index_body - INDEX_TAIL_SIZE;
    sqkv_store_u64(tail, index_offset);
    memcpy(tail + 8, sqkv_end_magic, SQKV_MAGIC_SIZE);
    sqkv_section_header *h = &w->index.header;
    h->kind = SQKV_KIND_INDEX;
    h->tensor = 0;
    h->layer = h->head_start = h->head_count = h->token_start = h->token_count = 0;
    h->payload_bits = h->quantizer = h->scale_granularity = h->offset_interval_log2 = 0;
    sqkv_blob_seal(&w->index);

    sqkv_writer_build_file_header(w);
    w->file_size = index_offset + sqkv_blob_extent(&w->index);
    w->finalized = 1;
    return SQKV_OK;
}

sqkv_error sqkv_writer_file_size(sqkv_writer *w, uint64_t *size) {
    if (!w) return SQKV_ERR_INVALID_ARGUMENT;
    if (w->error != SQKV_OK) return w->error;
    if (!size) return fail(w, SQKV_ERR_INVALID_ARGUMENT, "file_size: size is NULL");
    sqkv_error err = finalize(w);
    if (err != SQKV_OK) return err;
    *size = w->file_size;
    return SQKV_OK;
}

typedef struct buffer_sink {
    uint8_t *at;
} buffer_sink;

static sqkv_error sink_buffer(void *ctx, const uint8_t *data, uint64_t size) {
    buffer_sink *s = (buffer_sink *)ctx;
    memcpy(s->at, data, (size_t)size);
    s->at += size;
    return SQKV_OK;
}

sqkv_error sqkv_writer_write_buffer(sqkv_writer *w, void *buf, size_t cap, size_t *written) {
    if (!w) return SQKV_ERR_INVALID_ARGUMENT;
    if (w->error != SQKV_OK) return w->error;
    if (!buf) return fail(w, SQKV_ERR_INVALID_ARGUMENT, "write_buffer: buf is NULL");
    sqkv_error err = finalize(w);
    if (err != SQKV_OK) return err;
    if (w->file_size > cap)
        return fail(w, SQKV_ERR_BUFFER_TOO_SMALL, "write_buffer: capacity %zu is less than the file size %llu", cap,
                    (unsigned long long)w->file_size);
    buffer_sink s = {(uint8_t *)buf};
    emit(w, sink_buffer, &s);
    if (written) *written = (size_t)w->file_size;
    return SQKV_OK;
}

typedef struct callback_sink {
    sqkv_write_fn fn;
    void *ctx;
    int rc;
} callback_sink;

static sqkv_error sink_callback(void *ctx, const uint8_t *data, uint64_t size) {
    callback_sink *s = (callback_sink *)ctx;
    s->rc = s->fn(s->ctx, data, (size_t)size);
    return s->rc == 0 ? SQKV_OK : SQKV_ERR_IO;
}

sqkv_error sqkv_writer_write_callback(sqkv_writer *w, sqkv_write_fn write_fn, void *ctx) {
    if (!w) return SQKV_ERR_INVALID_ARGUMENT;
    if (w->error != SQKV_OK) return w->error;
    if (!write_fn) return fail(w, SQKV_ERR_INVALID_ARGUMENT, "write_callback: write_fn is NULL");
    sqkv_error err = finalize(w);
    if (err != SQKV_OK) return err;
    callback_sink s = {write_fn, ctx, 0};
    if (emit(w, sink_callback, &s) != SQKV_OK)
        return fail(w, SQKV_ERR_IO, "write_callback: the write function returned %d", s.rc);
    return SQKV_OK;
}

typedef struct fd_sink {
    int fd;
    int errnum; /* errno of the failed write, 0 for a write that made no progress */
} fd_sink;

static sqkv_error sink_fd(void *ctx, const uint8_t *data, uint64_t size) {
    fd_sink *s = (fd_sink *)ctx;
    while (size > 0) {
        const size_t piece = size < WRITE_CHUNK ? (size_t)size : WRITE_CHUNK;
        const ssize_t n = write(s->fd, data, piece);
        if (n < 0) {
            if (errno == EINTR) continue;
            s->errnum = errno;
            return SQKV_ERR_IO;
        }
        if (n == 0) { /* no progress and no error: give up rather than spin */
            s->errnum = 0;
            return SQKV_ERR_IO;
        }
        data += n;
        size -= (uint64_t)n;
    }
    return SQKV_OK;
}

static sqkv_error write_all_fd(const sqkv_writer *w, int fd, char *detail, size_t detail_size) {
    fd_sink s = {fd, 0};
    if (emit(w, sink_fd, &s) == SQKV_OK) return SQKV_OK;
    snprintf(detail, detail_size, "write to file descriptor %d failed: %s", fd,
             s.errnum ? strerror(s.errnum) : "no progress");
    return SQKV_ERR_IO;
}

sqkv_error sqkv_writer_write_fd(sqkv_writer *w, int fd) {
    if (!w) return SQKV_ERR_INVALID_ARGUMENT;
    if (w->error != SQKV_OK) return w->error;
    if (fd < 0) return fail(w, SQKV_ERR_INVALID_ARGUMENT, "write_fd: fd %d is not a descriptor", fd);
    sqkv_error err = finalize(w);
    if (err != SQKV_OK) return err;
    char why[DETAIL_SIZE];
    if (write_all_fd(w, fd, why, sizeof why) != SQKV_OK) return fail(w, SQKV_ERR_IO, "%s", why);
    return SQKV_OK;
}

static sqkv_error fill_for_save(void *ctx, int fd, char *detail, size_t detail_size) {
    return write_all_fd((const sqkv_writer *)ctx, fd, detail, detail_size);
}

sqkv_error sqkv_writer_save(sqkv_writer *w, const char *path) {
    if (!w) return SQKV_ERR_INVALID_ARGUMENT;
    if (w->error != SQKV_OK) return w->error;
    if (!path) return fail(w, SQKV_ERR_INVALID_ARGUMENT, "save: path is NULL");
    sqkv_error err = finalize(w);
    if (err != SQKV_OK) return err;
    char why[DETAIL_SIZE];
    err = sqkv_atomic_file_write(path, fill_for_save, w, why, sizeof why);
    if (err != SQKV_OK) return fail(w, err, "save: %s", why);
    return SQKV_OK;
}
