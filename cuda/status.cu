/* status.cu: names and messages of sqkv_cuda_status (sqkv_error values and CUDA runtime errors). */
#include <cuda_runtime.h>

#include "sqkv_cuda.h"

extern "C" const char *sqkv_cuda_status_name(sqkv_cuda_status s) {
    if (sqkv_cuda_status_is_cuda(s)) return cudaGetErrorName((cudaError_t)(s - SQKV_CUDA_ERROR_BASE));
    return sqkv_error_name((sqkv_error)s);
}

extern "C" const char *sqkv_cuda_status_message(sqkv_cuda_status s) {
    if (sqkv_cuda_status_is_cuda(s)) return cudaGetErrorString((cudaError_t)(s - SQKV_CUDA_ERROR_BASE));
    return sqkv_error_message((sqkv_error)s);
}

extern "C" int sqkv_cuda_device_available(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* the failed query leaves a sticky-free error; clear it */
        return 0;
    }
    return n > 0;
}
