/*
 * npy_fuzzer: the CLI's .npy reader (tools/common/npy.c), a parser of untrusted files.
 *
 * Checks: a failure is SQT_BAD_DATA with a message; an accepted array has a known dtype, at most
 * SQT_NPY_MAX_DIMS dimensions, count = the (non-overflowing) product of its shape, data_size =
 * count * element size, and data that ends exactly at the end of the input (every byte of it is read,
 * so ASan sees a range that points outside); a header rebuilt from the parsed dtype and shape with
 * sqt_npy_format_header, followed by the same data, parses to the same array.
 *
 * Input: a .npy file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "tools/common/npy.h"

static void check_array(const uint8_t *data, size_t size, const sqt_npy_array *a) {
    FUZZ_CHECK(a->dtype == SQT_F16 || a->dtype == SQT_F32 || a->dtype == SQT_I32, "dtype %d", (int)a->dtype);
    FUZZ_CHECK(a->ndim <= SQT_NPY_MAX_DIMS, "%u dimensions", a->ndim);
    unsigned __int128 product = 1;
    for (uint32_t i = 0; i < a->ndim; i++) {
        product *= a->shape[i];
        if (product > UINT64_MAX) product = (unsigned __int128)UINT64_MAX + 1; /* saturate */
    }
    FUZZ_CHECK(product == a->count, "count %llu is not the product of the shape", (unsigned long long)a->count);
    const size_t esize = sqt_dtype_size(a->dtype);
    FUZZ_CHECK((unsigned __int128)a->count * esize == a->data_size, "data_size %llu for %llu elements",
               (unsigned long long)a->data_size, (unsigned long long)a->count);
    FUZZ_CHECK(a->data >= data && a->data <= data + size && a->data_size == (uint64_t)(data + size - a->data),
               "data [%td, +%llu) does not end the %zu-byte input", a->data - data,
               (unsigned long long)a->data_size, size);
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < a->data_size; i++) sink = sink ^ a->data[i];
}

/* Header rebuilt from what was parsed + the same data: must parse to the same array. */
static void check_rebuilt(const sqt_npy_array *a) {
    if (a->data_size > (1u << 20)) return;
    uint8_t header[SQT_NPY_HEADER_CAP];
    size_t len = 0;
    sqt_error err;
    sqt_error_clear(&err);
    const int rc = sqt_npy_format_header(a->dtype, a->shape, a->ndim, header, sizeof header, &len, &err);
    FUZZ_CHECK(rc == 0, "format_header refused a parsed array: %s", err.message);
    FUZZ_CHECK(len <= sizeof header, "header of %zu bytes", len);
    uint8_t *file = (uint8_t *)malloc(len + (size_t)a->data_size + 1);
    FUZZ_CHECK(file, "out of memory");
    memcpy(file, header, len);
    if (a->data_size) memcpy(file + len, a->data, (size_t)a->data_size);
    sqt_npy_array b;
    sqt_error_clear(&err);
    FUZZ_CHECK(sqt_npy_parse(file, len + (size_t)a->data_size, &b, &err) == 0, "rebuilt file refused: %s",
               err.message);
    FUZZ_CHECK(b.dtype == a->dtype && b.ndim == a->ndim && memcmp(b.shape, a->shape, a->ndim * sizeof a->shape[0]) == 0 &&
                   b.count == a->count && b.data_size == a->data_size,
               "rebuilt file parses to another array");
    FUZZ_CHECK(b.data_size == 0 || memcmp(b.data, a->data, (size_t)a->data_size) == 0, "rebuilt data differs");
    free(file);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sqt_npy_array a;
    sqt_error err;
    memset(&a, 0, sizeof a);
    sqt_error_clear(&err);
    const int rc = sqt_npy_parse(data, size, &a, &err);
    if (rc != 0) {
        FUZZ_CHECK(rc == SQT_BAD_DATA && err.cls == SQT_BAD_DATA && err.message[0] != '\0',
                   "parse failed with class %d/%d and message '%s'", rc, (int)err.cls, err.message);
        FUZZ_CHECK(memchr(err.message, '\0', sizeof err.message) != NULL, "message not terminated");
        return 0;
    }
    check_array(data, size, &a);
    check_rebuilt(&a);
    return 0;
}
