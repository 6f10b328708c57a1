/*
 * dense_input.h: a dense KV cache read from .npy or .safetensors files (encode's input, compare's
 * original, bench's input). Accepted forms (README "Dense inputs"):
 *
 *   PREFIX                 PREFIX.k.npy and PREFIX.v.npy, each [layers, heads, tokens, head_dim],
 *                          optional PREFIX.tokens.npy int32 [tokens] (the form of /work/shared/data/kv);
 *                          PREFIX.k.npy itself is also accepted as the name
 *   FILE.npy               one array [2, layers, heads, tokens, head_dim]: K = [0], V = [1]
 *   DIR/                   DIR/layers.{i}.key.npy and DIR/layers.{i}.value.npy, each
 *                          [heads, tokens, head_dim], i = 0, 1, ...; optional DIR/tokens.npy
 *   FILE.safetensors       tensors layers.{i}.key and layers.{i}.value, each [heads, tokens, head_dim],
 *                          optional tokens (I32, [tokens] or [1, tokens]); "__metadata__" entries
 *   -                      stdin: one .npy [2, L, H, T, D] or one .safetensors (recognized by content)
 *
 * Float dtypes fp16, bf16 (safetensors only) and fp32, the same for every tensor. Regular files are
 * mapped, not copied.
 */
#ifndef SQKV_CLI_DENSE_INPUT_H
#define SQKV_CLI_DENSE_INPUT_H

#include <stddef.h>
#include <stdint.h>

#include "sqkv.h"
#include "tools/common/blob.h"
#include "tools/common/dtype.h"
#include "tools/common/safetensors.h"
#include "tools/sqkv/cli_common.h"

typedef struct dense_input {
    const char *form;           /* "npy pair", "npy", "npy directory", "safetensors" */
    uint32_t n_layers, n_heads, n_tokens, head_dim;
    sqt_dtype dtype;
    const uint8_t **k, **v;     /* per layer, [heads, tokens, head_dim], any alignment */
    int32_t *tokens;            /* n_tokens ids, or NULL */
    const sqt_st_meta *meta;   /* safetensors "__metadata__" entries */
    size_t n_meta;
    /* storage */
    sqt_blob *blobs;
    size_t n_blobs;
    sqt_st_file st;
    void *scratch[2];
} dense_input;

/* Errors come back in err (class = exit code) with the file name in the message. */
int dense_input_open(const char *path, const cli_ctx *ctx, dense_input *in, sqt_error *err);
void dense_input_close(dense_input *in);

/* Bytes of one [heads, tokens, head_dim] tensor of the input's dtype. */
size_t dense_input_tensor_bytes(const dense_input *in);
/* The tensor aligned for its dtype (copied into a scratch buffer when the file's offset is not);
 * NULL when out of memory. Valid until the next call for the same tensor kind. */
const void *dense_input_tensor(dense_input *in, uint32_t layer, sqkv_tensor tensor);

#endif
