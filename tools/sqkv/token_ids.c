/* token_ids.c: see token_ids.h. */
#include "tools/sqkv/token_ids.h"

#include <stdlib.h>
#include <string.h>

#include "tools/common/blob.h"

int token_ids_from_npy(const sqt_npy_array *a, int32_t **ids, size_t *count, sqt_error *err) {
    *ids = NULL;
    if (a->dtype != SQT_I32)
        return sqt_fail(err, SQT_BAD_DATA, "token ids must be int32 ('<i4'), not %s", sqt_dtype_name(a->dtype));
    if (!(a->ndim == 1 || (a->ndim == 2 && a->shape[0] == 1)))
        return sqt_fail(err, SQT_BAD_DATA, "token ids must have shape [n] or [1, n]");
    if (a->count == 0 || a->count > SIZE_MAX / sizeof(int32_t))
        return sqt_fail(err, SQT_BAD_DATA, "token ids: the array is empty or too large");
    *ids = malloc((size_t)a->count * sizeof(int32_t));
    if (*ids == NULL) return sqt_fail(err, SQT_SYSTEM, "out of memory for %llu token ids", (unsigned long long)a->count);
    memcpy(*ids, a->data, (size_t)a->count * sizeof(int32_t)); /* little-endian host, as the library */
    *count = (size_t)a->count;
    return SQT_OK;
}

static int parse_text(const uint8_t *p, size_t n, int32_t **ids, size_t *count, sqt_error *err) {
    size_t cap = 1024, used = 0;
    int32_t *out = malloc(cap * sizeof *out);
    if (out == NULL) return sqt_fail(err, SQT_SYSTEM, "out of memory reading token ids");
    size_t i = 0;
    for (;;) {
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r' || p[i] == ',')) i++;
        if (i == n) break;
        int negative = 0;
        if (p[i] == '-') {
            negative = 1;
            i++;
        }
        const size_t start = i;
        int64_t v = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9') {
            v = v * 10 + (p[i] - '0');
            if (v > 2147483648LL) break;
            i++;
        }
        if (i == start || (i < n && p[i] >= '0' && p[i] <= '9') || v > 2147483647LL + negative ||
            (i < n && !(p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r' || p[i] == ','))) {
            free(out);
            return sqt_fail(err, SQT_BAD_DATA, "token ids: byte %zu is not part of a decimal int32", i);
        }
        if (used == cap) {
            int32_t *grown = realloc(out, 2 * cap * sizeof *out);
            if (grown == NULL) {
                free(out);
                return sqt_fail(err, SQT_SYSTEM, "out of memory reading token ids");
            }
            out = grown;
            cap *= 2;
        }
        out[used++] = (int32_t)(negative ? -v : v);
    }
    if (used == 0) {
        free(out);
        return sqt_fail(err, SQT_BAD_DATA, "token ids: the file holds no ids");
    }
    *ids = out;
    *count = used;
    return SQT_OK;
}

int token_ids_load(const char *path, uint64_t max_memory, int32_t **ids, size_t *count, sqt_error *err) {
    sqt_blob b;
    *ids = NULL;
    if (sqt_blob_load(path, max_memory, &b, err)) return err->cls;
    int rc;
    if (b.size >= 6 && memcmp(b.data, "\x93NUMPY", 6) == 0) {
        sqt_npy_array a;
        rc = sqt_npy_parse(b.data, b.size, &a, err);
        if (rc == SQT_OK) rc = token_ids_from_npy(&a, ids, count, err);
    } else {
        rc = parse_text(b.data, b.size, ids, count, err);
    }
    sqt_blob_free(&b);
    return rc;
}
