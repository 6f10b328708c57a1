/*
 * npy.h: NumPy .npy files (format versions 1.0, 2.0 and 3.0), reader and writer.
 *
 * Accepted dtypes: '<f2' (fp16), '<f4' (fp32), '<i4' (int32), C order only. NumPy has no bfloat16
 * dtype, so bf16 tensors come only through .safetensors. The reader is a parser of untrusted input:
 * the header is at most SQT_NPY_MAX_HEADER bytes and must be exactly the dictionary NumPy writes
 * (keys 'descr', 'fortran_order', 'shape', each once, nothing else), the shape product is
 * overflow-checked, and the data must fill the rest of the input exactly.
 */
#ifndef SQKV_TOOLS_NPY_H
#define SQKV_TOOLS_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "tools/common/dtype.h"
#include "tools/common/io_error.h"

#define SQT_NPY_MAX_HEADER 65536u
#define SQT_NPY_MAX_DIMS 16u

typedef struct sqt_npy_array {
    uint32_t version_major;
    sqt_dtype dtype;
    uint32_t ndim;
    uint64_t shape[SQT_NPY_MAX_DIMS];
    uint64_t count;            /* product of shape (1 for a 0-d array) */
    const uint8_t *data;       /* points into the parsed bytes; no alignment guarantee */
    uint64_t data_size;        /* count * element size */
} sqt_npy_array;

/* Parses a whole .npy file held in bytes[0, size). On failure returns SQT_BAD_DATA with a specific
 * message (without a file name prefix). */
int sqt_npy_parse(const uint8_t *bytes, size_t size, sqt_npy_array *out, sqt_error *err);

/* Builds the preamble and header of a version 1.0 file (padded so that the data starts at a multiple
 * of 64) into buf[0, cap). *len receives its size. Returns SQT_USAGE when dtype cannot be
 * expressed (bf16), ndim is too large, or cap is too small; SQT_NPY_HEADER_CAP always suffices. */
#define SQT_NPY_HEADER_CAP 1024u
int sqt_npy_format_header(sqt_dtype dtype, const uint64_t *shape, uint32_t ndim, uint8_t *buf,
                           size_t cap, size_t *len, sqt_error *err);

#endif
