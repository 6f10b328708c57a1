/*
 * safetensors.h: .safetensors files (Hugging Face), reader and writer.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON, then the data region. The JSON is an
 * object mapping tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
 * the data region), plus an optional "__metadata__" object of string -> string.
 *
 * The reader is a parser of untrusted input: N is capped at SQT_ST_MAX_HEADER (100 MB) and by the
 * input size; the JSON must be strict (see json_scan.h) with exactly those fields and no duplicate
 * names; tensors' byte ranges must be sorted, contiguous and non-overlapping and cover the data region
 * exactly (no holes, no trailing bytes); shape product * dtype size must equal each range's length.
 * Every dtype of the safetensors specification is accepted structurally; only F16, BF16, F32 and I32
 * map to an sqt_dtype (others get dtype 0 and are refused by whoever wants their values).
 */
#ifndef SQKV_TOOLS_SAFETENSORS_H
#define SQKV_TOOLS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "tools/common/dtype.h"
#include "tools/common/io_error.h"

#define SQT_ST_MAX_HEADER 100000000u
#define SQT_ST_MAX_DIMS 16u
#define SQT_ST_MAX_TENSORS 1000000u

typedef struct sqt_st_tensor {
    char *name;                 /* NUL-terminated UTF-8 */
    size_t name_len;
    sqt_dtype dtype;        /* 0 when the dtype is valid but not one the tools convert */
    char dtype_name[12];        /* as written in the file, e.g. "F64" */
    uint32_t ndim;
    uint64_t shape[SQT_ST_MAX_DIMS];
    uint64_t count;             /* product of shape */
    uint64_t begin, end;        /* data_offsets */
    const uint8_t *data;        /* points into the parsed bytes; no alignment guarantee */
} sqt_st_tensor;

typedef struct sqt_st_meta {
    char *key, *value;          /* NUL-terminated UTF-8 */
    size_t key_len, value_len;
} sqt_st_meta;

typedef struct sqt_st_file {
    sqt_st_tensor *tensors;    /* in data order */
    size_t n_tensors;
    sqt_st_meta *meta;         /* in file order */
    size_t n_meta;
} sqt_st_file;

/* Parses a whole file held in bytes[0, size). Errors: SQT_BAD_DATA with a specific message,
 * SQT_SYSTEM when out of memory. out must be freed with sqt_st_free even on failure. */
int sqt_st_parse(const uint8_t *bytes, size_t size, sqt_st_file *out, sqt_error *err);
void sqt_st_free(sqt_st_file *f);
const sqt_st_tensor *sqt_st_find(const sqt_st_file *f, const char *name);

/* What the writer needs about one tensor. */
typedef struct sqt_st_desc {
    const char *name;
    sqt_dtype dtype;        /* F16, BF16, F32 or I32 */
    uint32_t ndim;
    uint64_t shape[SQT_ST_MAX_DIMS];
} sqt_st_desc;

/* Builds the 8-byte length and the JSON header (space-padded so the data region starts at a multiple
 * of 8) for tensors laid out back to back in the given order, and metadata entries (may be 0).
 * *out is malloc'ed; the caller then writes each tensor's bytes in the same order.
 * *data_size receives the total data bytes. Errors: SQT_USAGE for an unrepresentable request,
 * SQT_SYSTEM when out of memory. */
int sqt_st_format_header(const sqt_st_desc *tensors, size_t n, const sqt_st_meta *meta, size_t n_meta,
                          uint8_t **out, size_t *len, uint64_t *data_size, sqt_error *err);

#endif
