/* sqkv_roundtrip.c: see sqkv_roundtrip.h. */
#include "sqkv_roundtrip.h"

#include <stdio.h>
#include <stdlib.h>

sqkv_error sqkv_roundtrip(const quality_cache *c, const sqkv_writer_options *opts, float *k_out,
                          float *v_out, uint64_t *file_size, uint8_t **file_out, char *msg, size_t msg_cap) {
    const sqkv_geometry g = {c->n_layers, c->n_kv_heads, c->head_dim, c->n_tokens, 0, SQKV_DTYPE_FP16,
                             SQKV_DTYPE_FP16, 0};
    const uint64_t per_layer = (uint64_t)c->n_kv_heads * c->n_tokens * c->head_dim;
    sqkv_writer *w = NULL;
    sqkv_reader *r = NULL;
    uint8_t *file = NULL;
    size_t written = 0;
    *file_size = 0;
    if (file_out) *file_out = NULL;
    sqkv_error err = sqkv_writer_create(&g, opts, &w);
    for (uint32_t l = 0; err == SQKV_OK && l < c->n_layers; l++)
        err = sqkv_writer_add_layer(w, l, SQKV_DTYPE_FP16, c->k + l * per_layer, c->v + l * per_layer);
    if (err == SQKV_OK) err = sqkv_writer_file_size(w, file_size);
    if (err == SQKV_OK && !(file = malloc(*file_size))) err = SQKV_ERR_OUT_OF_MEMORY;
    if (err == SQKV_OK) err = sqkv_writer_write_buffer(w, file, *file_size, &written);
    if (err != SQKV_OK) {
        snprintf(msg, msg_cap, "encode: %s: %s", sqkv_error_name(err), w ? sqkv_writer_error_detail(w) : "");
        goto done;
    }
    err = sqkv_reader_create(NULL, 0, &r);
    if (err == SQKV_OK) err = sqkv_reader_open_memory(r, file, written);
    const size_t layer_bytes = (size_t)per_layer * sizeof(float);
    for (uint32_t l = 0; err == SQKV_OK && l < c->n_layers; l++) {
        err = sqkv_reader_decode(r, l, SQKV_TENSOR_K, 0, c->n_kv_heads, SQKV_DTYPE_FP32,
                                 k_out + l * per_layer, layer_bytes);
        if (err == SQKV_OK)
            err = sqkv_reader_decode(r, l, SQKV_TENSOR_V, 0, c->n_kv_heads, SQKV_DTYPE_FP32,
                                     v_out + l * per_layer, layer_bytes);
    }
    if (err != SQKV_OK)
        snprintf(msg, msg_cap, "decode: %s: %s", sqkv_error_name(err), r ? sqkv_reader_error_detail(r) : "");
done:
    sqkv_reader_destroy(r);
    sqkv_writer_destroy(w);
    if (file_out && err == SQKV_OK)
        *file_out = file;
    else
        free(file);
    return err;
}
