/*
 * sqkv_roundtrip.h: one SQKV setting measured through the library itself: encode a whole cache with
 * the writer, take the real file size, decode every layer back to fp32 with the reader.
 */
#ifndef SQKV_TOOLS_SQKV_ROUNDTRIP_H
#define SQKV_TOOLS_SQKV_ROUNDTRIP_H

#include <stddef.h>
#include <stdint.h>

#include "sqkv.h"

/* A cache as fp16 bits, [layers][heads][tokens][head_dim] for K and V. */
typedef struct quality_cache {
    uint32_t n_layers, n_kv_heads, head_dim, n_tokens;
    const uint16_t *k, *v;
} quality_cache;

static inline uint64_t quality_cache_elements(const quality_cache *c) {
    return (uint64_t)c->n_layers * c->n_kv_heads * c->n_tokens * c->head_dim;
}

/* Encodes c with opts (dense window 0, no ancillary sections) and decodes it into k_out, v_out (fp32,
 * same shape as c). *file_size is the file's size in bytes; with file_out not NULL the caller receives
 * the file (malloc'ed). On failure writes a sentence to msg. */
sqkv_error sqkv_roundtrip(const quality_cache *c, const sqkv_writer_options *opts, float *k_out,
                          float *v_out, uint64_t *file_size, uint8_t **file_out, char *msg, size_t msg_cap);

#endif
