/*
 * stream_decode.h: `sqkv decode - OUT.npy` without holding the input: the streaming decoder hands over
 * each verified section and its rows are written at their place in the output file (pwrite), whose
 * .npy header follows from the geometry alone. The output is crash-safe (output_file.h) and only
 * moved into place when the whole stream arrived and verified.
 */
#ifndef SQKV_CLI_STREAM_DECODE_H
#define SQKV_CLI_STREAM_DECODE_H

#include <stdint.h>

#include "sqkv.h"
#include "tools/sqkv/cli_common.h"

/* dtype: FP16 or FP32, or 0 for the default (the file's element type; FP32 for a bf16 file). Writes
 * every layer and head as one [2, layers, heads, tokens, head_dim] .npy. Returns an exit code. */
int stream_decode_npy(const char *out_path, sqkv_dtype dtype, const cli_ctx *ctx, uint64_t *bytes_written,
                      sqkv_geometry *geometry);

#endif
