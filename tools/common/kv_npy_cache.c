/* kv_npy_cache.c: see kv_npy_cache.h. */
#include "tools/common/kv_npy_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/common/blob.h"
#include "tools/common/npy.h"

#define MAX_DIM (1u << 28)
#define MAX_ELEMENTS 0xFFFFFFFFull

/* Reads path as a .npy of the wanted dtype into a new buffer; *array receives its shape. */
static int load_array(const char *path, sqt_dtype dtype, sqt_npy_array *array, void **data,
                      sqt_error *err) {
    sqt_blob blob;
    sqt_error parse_err;
    sqt_error_clear(&parse_err);
    *data = NULL;
    if (sqt_blob_load(path, (uint64_t)1 << 33, &blob, err)) return (int)err->cls;
    int rc = 0;
    if (sqt_npy_parse(blob.data, blob.size, array, &parse_err))
        rc = sqt_fail(err, parse_err.cls, "%s: %s", path, parse_err.message);
    else if (array->dtype != dtype)
        rc = sqt_fail(err, SQT_BAD_DATA, "%s: dtype is %s, expected %s", path,
                          sqt_dtype_name(array->dtype), sqt_dtype_name(dtype));
    else if (array->count > MAX_ELEMENTS)
        rc = sqt_fail(err, SQT_BAD_DATA, "%s: more than 2^32 elements", path);
    else if (!(*data = malloc(array->data_size ? array->data_size : 1)))
        rc = sqt_fail(err, SQT_SYSTEM, "%s: out of memory", path);
    else
        memcpy(*data, array->data, array->data_size);
    array->data = NULL; /* it pointed into the blob, which is freed here */
    sqt_blob_free(&blob);
    return rc;
}

int sqkv_npy_cache_load(const char *dir, const char *name, sqkv_npy_cache *out, sqt_error *err) {
    memset(out, 0, sizeof *out);
    sqt_error_clear(err);
    char path[4096];
    sqt_npy_array k, v, t;
    void *kd = NULL, *vd = NULL, *td = NULL;
    snprintf(path, sizeof path, "%s/%s.k.npy", dir, name);
    if (load_array(path, SQT_F16, &k, &kd, err)) goto fail;
    snprintf(path, sizeof path, "%s/%s.v.npy", dir, name);
    if (load_array(path, SQT_F16, &v, &vd, err)) goto fail;
    if (k.ndim != 4 || v.ndim != 4 || memcmp(k.shape, v.shape, 4 * sizeof k.shape[0]) != 0) {
        sqt_fail(err, SQT_BAD_DATA, "%s/%s: K and V must have the same 4-d shape", dir, name);
        goto fail;
    }
    for (int i = 0; i < 4; i++)
        if (k.shape[i] < 1 || k.shape[i] > MAX_DIM) {
            sqt_fail(err, SQT_BAD_DATA, "%s/%s: dimension %d is %llu, outside 1 .. 2^28", dir, name,
                         i, (unsigned long long)k.shape[i]);
            goto fail;
        }
    out->n_layers = (uint32_t)k.shape[0];
    out->n_kv_heads = (uint32_t)k.shape[1];
    out->n_tokens = (uint32_t)k.shape[2];
    out->head_dim = (uint32_t)k.shape[3];
    out->k = kd;
    out->v = vd;
    kd = vd = NULL;
    snprintf(path, sizeof path, "%s/%s.tokens.npy", dir, name);
    if (access(path, F_OK) == 0) {
        if (load_array(path, SQT_I32, &t, &td, err)) goto fail;
        if (t.ndim != 1 || t.shape[0] != out->n_tokens) {
            sqt_fail(err, SQT_BAD_DATA, "%s: expected %u token ids", path, out->n_tokens);
            goto fail;
        }
        out->tokens = td;
        td = NULL;
    }
    return 0;
fail:
    free(kd);
    free(vd);
    free(td);
    sqkv_npy_cache_free(out);
    return err->cls ? (int)err->cls : SQT_BAD_DATA;
}

void sqkv_npy_cache_free(sqkv_npy_cache *c) {
    free(c->k);
    free(c->v);
    free(c->tokens);
    memset(c, 0, sizeof *c);
}
