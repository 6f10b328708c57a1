/*
 * dense_output.h: writes a dense KV cache (decode's output) as one of the forms dense_input.h reads:
 *   .npy             one array [2, layers, heads, tokens, head_dim] (K then V)
 *   npy pair         PREFIX.k.npy, PREFIX.v.npy [layers, heads, tokens, head_dim] + PREFIX.tokens.npy
 *   .safetensors     layers.{i}.key / layers.{i}.value [heads, tokens, head_dim] + tokens (I32)
 *                    + "__metadata__"
 * Tensors are produced one at a time by a callback and streamed out, so the whole cache is never in
 * memory. Files are written crash-safe (output_file.h).
 */
#ifndef SQKV_CLI_DENSE_OUTPUT_H
#define SQKV_CLI_DENSE_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "sqkv.h"
#include "tools/common/dtype.h"
#include "tools/common/safetensors.h"
#include "tools/sqkv/cli_common.h"

typedef enum dense_out_format { DENSE_OUT_NPY = 1, DENSE_OUT_NPY_PAIR, DENSE_OUT_SAFETENSORS } dense_out_format;

typedef struct dense_out_spec {
    dense_out_format format;
    sqt_dtype dtype;
    uint32_t n_layers;            /* layers written */
    const uint32_t *layer_ids;    /* their indices in the source (safetensors names), n_layers entries */
    uint32_t n_heads, n_tokens, head_dim;
    const int32_t *tokens;        /* n_tokens ids or NULL */
    const sqt_st_meta *meta;      /* safetensors only */
    size_t n_meta;
} dense_out_spec;

/* Fills buf (size bytes: one [n_heads, n_tokens, head_dim] tensor of spec->dtype) with tensor t of the
 * layer at position `index` (0 .. n_layers-1). Returns an exit code after printing any error. */
typedef int (*dense_out_producer)(void *ctx, uint32_t index, sqkv_tensor t, void *buf, size_t size);

/* Chooses the format: --format value when given ("npy", "npy-pair", "safetensors"), else from the
 * path: "-" -> safetensors, *.safetensors, *.npy, a name without any '.' in its last component -> npy
 * pair. Returns 0, or -1 after a usage error. */
int dense_out_choose_format(const char *path, const char *format_option, dense_out_format *out);

/* Checks that every output file may be created (before any decoding work). Returns an exit code. */
int dense_out_check(const char *path, const dense_out_spec *spec, const cli_ctx *ctx);
/* Writes the output; returns an exit code. *bytes_written receives the total bytes written. */
int dense_out_write(const char *path, const dense_out_spec *spec, dense_out_producer produce, void *pctx,
                    const cli_ctx *ctx, uint64_t *bytes_written);

#endif
