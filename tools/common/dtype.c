/* dtype.c: see dtype.h. */
#include "tools/common/dtype.h"

size_t sqt_dtype_size(sqt_dtype t) {
    switch (t) {
    case SQT_F16:
    case SQT_BF16: return 2;
    case SQT_F32:
    case SQT_I32: return 4;
    }
    return 0;
}

const char *sqt_dtype_name(sqt_dtype t) {
    switch (t) {
    case SQT_F16: return "fp16";
    case SQT_BF16: return "bf16";
    case SQT_F32: return "fp32";
    case SQT_I32: return "int32";
    }
    return "?";
}

int sqt_dtype_is_float(sqt_dtype t) {
    return t == SQT_F16 || t == SQT_BF16 || t == SQT_F32;
}
