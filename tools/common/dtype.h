/*
 * dtype.h: element types of dense tensors in .npy and .safetensors files. The float values equal
 * sqkv_dtype's so that a float dtype can be handed to the library with a cast.
 */
#ifndef SQKV_TOOLS_DTYPE_H
#define SQKV_TOOLS_DTYPE_H

#include <stddef.h>

typedef enum sqt_dtype {
    SQT_F16 = 1,
    SQT_BF16 = 2,
    SQT_F32 = 3,
    SQT_I32 = 4
} sqt_dtype;

/* Bytes per element; 0 for an unknown value. */
size_t sqt_dtype_size(sqt_dtype t);
/* Short lowercase name ("fp16", "bf16", "fp32", "int32"); "?" for an unknown value. */
const char *sqt_dtype_name(sqt_dtype t);
/* True for the float types the codec accepts (fp16, bf16, fp32). */
int sqt_dtype_is_float(sqt_dtype t);

#endif
