/* dense_input.c: see dense_input.h. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime, mmap, fsync, isatty, ... */
#endif
#include "tools/sqkv/dense_input.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/common/npy.h"
#include "tools/sqkv/token_ids.h"

#define MAX_TOKENS (1u << 28)
#define MAX_DIM 1024u

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", a, b);
    return s;
}

static sqt_blob *new_blob(dense_input *in, sqt_error *err) {
    sqt_blob *grown = realloc(in->blobs, (in->n_blobs + 1) * sizeof *grown);
    if (grown == NULL) {
        sqt_fail(err, SQT_SYSTEM, "out of memory");
        return NULL;
    }
    in->blobs = grown;
    memset(&grown[in->n_blobs], 0, sizeof *grown);
    return &grown[in->n_blobs++];
}

static int load_npy(dense_input *in, const char *path, const cli_ctx *ctx, sqt_npy_array *a, sqt_error *err) {
    sqt_blob *b = new_blob(in, err);
    if (b == NULL) return err->cls;
    if (sqt_blob_load(path, ctx->stdin_limit, b, err)) return err->cls;
    sqt_error inner;
    sqt_error_clear(&inner);
    if (sqt_npy_parse(b->data, b->size, a, &inner)) return sqt_fail(err, inner.cls, "%s: %s", path, inner.message);
    return SQT_OK;
}

/* Geometry of the first tensor, then the same for every other one. */
static int set_geometry(dense_input *in, const char *name, sqt_dtype dtype, uint64_t layers, const uint64_t *hdt,
                        sqt_error *err) {
    if (!sqt_dtype_is_float(dtype))
        return sqt_fail(err, SQT_BAD_DATA, "%s: dtype %s; KV tensors must be fp16, bf16 or fp32", name,
                            sqt_dtype_name(dtype));
    if (in->n_heads == 0) {
        if (layers < 1 || layers > MAX_DIM || hdt[0] < 1 || hdt[0] > MAX_DIM || hdt[2] < 1 || hdt[2] > MAX_DIM ||
            hdt[1] < 1 || hdt[1] > MAX_TOKENS)
            return sqt_fail(err, SQT_BAD_DATA,
                                "%s: %llu layers x %llu heads x %llu tokens x head_dim %llu is outside the format's "
                                "range (layers, heads, head_dim 1..1024; tokens 1..2^28)", name,
                                (unsigned long long)layers, (unsigned long long)hdt[0], (unsigned long long)hdt[1],
                                (unsigned long long)hdt[2]);
        in->n_layers = (uint32_t)layers;
        in->n_heads = (uint32_t)hdt[0];
        in->n_tokens = (uint32_t)hdt[1];
        in->head_dim = (uint32_t)hdt[2];
        in->dtype = dtype;
        return SQT_OK;
    }
    if (hdt[0] != in->n_heads || hdt[1] != in->n_tokens || hdt[2] != in->head_dim)
        return sqt_fail(err, SQT_BAD_DATA, "%s: shape [%llu, %llu, %llu] differs from the first tensor's [%u, %u, %u]",
                            name, (unsigned long long)hdt[0], (unsigned long long)hdt[1], (unsigned long long)hdt[2],
                            in->n_heads, in->n_tokens, in->head_dim);
    if (dtype != in->dtype)
        return sqt_fail(err, SQT_BAD_DATA, "%s: dtype %s differs from the first tensor's %s", name,
                            sqt_dtype_name(dtype), sqt_dtype_name(in->dtype));
    return SQT_OK;
}

static int alloc_layers(dense_input *in, sqt_error *err) {
    in->k = calloc(in->n_layers, sizeof *in->k);
    in->v = calloc(in->n_layers, sizeof *in->v);
    if (in->k == NULL || in->v == NULL) return sqt_fail(err, SQT_SYSTEM, "out of memory");
    return SQT_OK;
}

static int check_tokens(dense_input *in, const char *name, sqt_error *err, size_t count) {
    if (count != in->n_tokens)
        return sqt_fail(err, SQT_BAD_DATA, "%s: %zu token ids for a cache of %u tokens", name, count, in->n_tokens);
    return SQT_OK;
}

static int optional_tokens_npy(dense_input *in, const char *path, const cli_ctx *ctx, sqt_error *err) {
    if (!is_file(path)) return SQT_OK;
    sqt_npy_array a;
    if (load_npy(in, path, ctx, &a, err)) return err->cls;
    size_t count;
    sqt_error inner;
    sqt_error_clear(&inner);
    if (token_ids_from_npy(&a, &in->tokens, &count, &inner)) return sqt_fail(err, inner.cls, "%s: %s", path, inner.message);
    return check_tokens(in, path, err, count);
}

/* [2, L, H, T, D] in one array. */
static int open_stacked(dense_input *in, const char *name, const sqt_npy_array *a, sqt_error *err) {
    in->form = "npy";
    if (a->ndim != 5 || a->shape[0] != 2)
        return sqt_fail(err, SQT_BAD_DATA,
                            "%s: a single .npy must be [2, layers, heads, tokens, head_dim] (K and V stacked); for "
                            "separate arrays give PREFIX for PREFIX.k.npy and PREFIX.v.npy", name);
    if (set_geometry(in, name, a->dtype, a->shape[1], a->shape + 2, err) || alloc_layers(in, err)) return err->cls;
    const size_t tensor = dense_input_tensor_bytes(in);
    for (uint32_t l = 0; l < in->n_layers; l++) {
        in->k[l] = a->data + (size_t)l * tensor;
        in->v[l] = a->data + ((size_t)in->n_layers + l) * tensor;
    }
    return SQT_OK;
}

static int open_pair(dense_input *in, const char *prefix, const cli_ctx *ctx, sqt_error *err) {
    in->form = "npy pair";
    char *kp = join(prefix, ".k.npy"), *vp = join(prefix, ".v.npy"), *tp = join(prefix, ".tokens.npy");
    int rc = SQT_OK;
    sqt_npy_array k, v;
    if (!kp || !vp || !tp) rc = sqt_fail(err, SQT_SYSTEM, "out of memory");
    if (!rc && load_npy(in, kp, ctx, &k, err)) rc = err->cls;
    if (!rc && load_npy(in, vp, ctx, &v, err)) rc = err->cls;
    if (!rc && (k.ndim != 4 || v.ndim != 4))
        rc = sqt_fail(err, SQT_BAD_DATA, "%s: K and V arrays must be [layers, heads, tokens, head_dim]",
                          k.ndim != 4 ? kp : vp);
    if (!rc && k.shape[0] != v.shape[0])
        rc = sqt_fail(err, SQT_BAD_DATA, "%s: %llu layers, but the K array has %llu", vp,
                          (unsigned long long)v.shape[0], (unsigned long long)k.shape[0]);
    if (!rc && (set_geometry(in, kp, k.dtype, k.shape[0], k.shape + 1, err) ||
                set_geometry(in, vp, v.dtype, v.shape[0], v.shape + 1, err) || alloc_layers(in, err)))
        rc = err->cls;
    if (!rc) {
        const size_t tensor = dense_input_tensor_bytes(in);
        for (uint32_t l = 0; l < in->n_layers; l++) {
            in->k[l] = k.data + (size_t)l * tensor;
            in->v[l] = v.data + (size_t)l * tensor;
        }
        rc = optional_tokens_npy(in, tp, ctx, err);
    }
    free(kp);
    free(vp);
    free(tp);
    return rc;
}

static int open_directory(dense_input *in, const char *dir, const cli_ctx *ctx, sqt_error *err) {
    in->form = "npy directory";
    uint32_t layers = 0;
    char path[4200];
    for (; layers <= MAX_DIM; layers++) {
        snprintf(path, sizeof path, "%s/layers.%u.key.npy", dir, layers);
        if (!is_file(path)) break;
    }
    if (layers == 0)
        return sqt_fail(err, SQT_BAD_DATA, "%s: directory has no layers.0.key.npy (expected "
                            "layers.{i}.key.npy and layers.{i}.value.npy)", dir);
    if (layers > MAX_DIM) return sqt_fail(err, SQT_BAD_DATA, "%s: more than %u layers", dir, MAX_DIM);
    for (uint32_t l = 0; l < layers; l++) {
        for (int t = 0; t < 2; t++) {
            snprintf(path, sizeof path, "%s/layers.%u.%s.npy", dir, l, t ? "value" : "key");
            sqt_npy_array a;
            if (load_npy(in, path, ctx, &a, err)) return err->cls;
            if (a.ndim != 3)
                return sqt_fail(err, SQT_BAD_DATA, "%s: per-layer arrays must be [heads, tokens, head_dim]", path);
            if (set_geometry(in, path, a.dtype, layers, a.shape, err)) return err->cls;
            if (in->k == NULL && alloc_layers(in, err)) return err->cls;
            (t ? in->v : in->k)[l] = a.data;
        }
    }
    snprintf(path, sizeof path, "%s/layers.%u.value.npy", dir, layers);
    if (is_file(path))
        return sqt_fail(err, SQT_BAD_DATA, "%s exists but layers.%u.key.npy does not", path, layers);
    snprintf(path, sizeof path, "%s/tokens.npy", dir);
    return optional_tokens_npy(in, path, ctx, err);
}

/* "layers.<i>.key" / "layers.<i>.value" -> i and tensor; -1 for any other name. */
static int64_t layer_name(const char *name, sqkv_tensor *tensor) {
    if (strncmp(name, "layers.", 7) != 0) return -1;
    const char *p = name + 7;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return -1;
    int64_t i = 0;
    while (*p >= '0' && *p <= '9') {
        i = i * 10 + (*p++ - '0');
        if (i > MAX_DIM) return -1;
    }
    if (strcmp(p, ".key") == 0) *tensor = SQKV_TENSOR_K;
    else if (strcmp(p, ".value") == 0) *tensor = SQKV_TENSOR_V;
    else return -1;
    return i;
}

static int open_safetensors(dense_input *in, const char *name, const sqt_blob *b, sqt_error *err) {
    in->form = "safetensors";
    sqt_error inner;
    sqt_error_clear(&inner);
    if (sqt_st_parse(b->data, b->size, &in->st, &inner)) return sqt_fail(err, inner.cls, "%s: %s", name, inner.message);
    int64_t max_layer = -1;
    size_t tensors = 0;
    for (size_t i = 0; i < in->st.n_tensors; i++) {
        const sqt_st_tensor *t = &in->st.tensors[i];
        sqkv_tensor which;
        int64_t l = layer_name(t->name, &which);
        if (l < 0 && strcmp(t->name, "tokens") != 0)
            return sqt_fail(err, SQT_BAD_DATA,
                                "%s: unexpected tensor \"%.64s\" (expected layers.{i}.key, layers.{i}.value, tokens)",
                                name, t->name);
        if (l > max_layer) max_layer = l;
        if (l >= 0) tensors++;
    }
    if (max_layer < 0) return sqt_fail(err, SQT_BAD_DATA, "%s: no tensor layers.0.key", name);
    if (tensors != 2 * (size_t)(max_layer + 1))
        return sqt_fail(err, SQT_BAD_DATA, "%s: layers.{i}.key and layers.{i}.value must exist for every i in "
                            "0..%lld", name, (long long)max_layer);
    for (int64_t l = 0; l <= max_layer; l++) {
        for (int t = 0; t < 2; t++) {
            char tname[64];
            snprintf(tname, sizeof tname, "layers.%lld.%s", (long long)l, t ? "value" : "key");
            const sqt_st_tensor *st = sqt_st_find(&in->st, tname);
            if (st == NULL) return sqt_fail(err, SQT_BAD_DATA, "%s: tensor %s is missing", name, tname);
            char where[4200];
            snprintf(where, sizeof where, "%s: tensor %s", name, tname);
            if (st->ndim != 3)
                return sqt_fail(err, SQT_BAD_DATA, "%s must be [heads, tokens, head_dim]", where);
            if (st->dtype == 0)
                return sqt_fail(err, SQT_BAD_DATA, "%s has dtype %s; KV tensors must be F16, BF16 or F32", where,
                                st->dtype_name);
            if (set_geometry(in, where, st->dtype, (uint64_t)max_layer + 1, st->shape, err)) return err->cls;
            if (in->k == NULL && alloc_layers(in, err)) return err->cls;
            (t ? in->v : in->k)[l] = st->data;
        }
    }
    const sqt_st_tensor *tok = sqt_st_find(&in->st, "tokens");
    if (tok) {
        if (tok->dtype != SQT_I32 || !(tok->ndim == 1 || (tok->ndim == 2 && tok->shape[0] == 1)))
            return sqt_fail(err, SQT_BAD_DATA, "%s: tensor tokens must be I32 [tokens] or [1, tokens]", name);
        if (check_tokens(in, name, err, (size_t)tok->count)) return err->cls;
        in->tokens = malloc((size_t)tok->count * sizeof(int32_t));
        if (in->tokens == NULL) return sqt_fail(err, SQT_SYSTEM, "out of memory");
        memcpy(in->tokens, tok->data, (size_t)tok->count * sizeof(int32_t));
    }
    in->meta = in->st.meta;
    in->n_meta = in->st.n_meta;
    return SQT_OK;
}

/* One file (or stdin). Its name decides when it says .npy or .safetensors, so that a damaged file gets
 * that format's error; otherwise its content does. */
static int open_single(dense_input *in, const char *path, const cli_ctx *ctx, sqt_error *err) {
    const char *name = strcmp(path, "-") == 0 ? "(stdin)" : path;
    sqt_blob *b = new_blob(in, err);
    if (b == NULL) return err->cls;
    if (sqt_blob_load(path, ctx->stdin_limit, b, err)) return err->cls;
    if (b->size >= 5 && memcmp(b->data, "\x89SQKV", 5) == 0)
        return sqt_fail(err, SQT_BAD_DATA, "%s: this is an .sqkv file; a dense .npy or .safetensors input is "
                        "needed here", name);
    const int npy = ends_with(name, ".npy") || (!ends_with(name, ".safetensors") && b->size >= 6 &&
                                                memcmp(b->data, "\x93NUMPY", 6) == 0);
    if (npy) {
        sqt_npy_array a;
        sqt_error inner;
        sqt_error_clear(&inner);
        if (sqt_npy_parse(b->data, b->size, &a, &inner)) return sqt_fail(err, inner.cls, "%s: %s", name, inner.message);
        return open_stacked(in, name, &a, err);
    }
    return open_safetensors(in, name, b, err);
}

int dense_input_open(const char *path, const cli_ctx *ctx, dense_input *in, sqt_error *err) {
    memset(in, 0, sizeof *in);
    if (strcmp(path, "-") == 0) return open_single(in, path, ctx, err);
    if (is_dir(path)) return open_directory(in, path, ctx, err);
    if (ends_with(path, ".k.npy")) {
        char *prefix = malloc(strlen(path) + 1);
        if (prefix == NULL) return sqt_fail(err, SQT_SYSTEM, "out of memory");
        memcpy(prefix, path, strlen(path) - 6);
        prefix[strlen(path) - 6] = '\0';
        int rc = open_pair(in, prefix, ctx, err);
        free(prefix);
        return rc;
    }
    if (!is_file(path)) {
        char *kp = join(path, ".k.npy");
        int pair = kp && is_file(kp);
        free(kp);
        if (pair) return open_pair(in, path, ctx, err);
    }
    return open_single(in, path, ctx, err);
}

void dense_input_close(dense_input *in) {
    for (size_t i = 0; i < in->n_blobs; i++) sqt_blob_free(&in->blobs[i]);
    free(in->blobs);
    sqt_st_free(&in->st);
    free(in->k);
    free(in->v);
    free(in->tokens);
    free(in->scratch[0]);
    free(in->scratch[1]);
    memset(in, 0, sizeof *in);
}

size_t dense_input_tensor_bytes(const dense_input *in) {
    return (size_t)in->n_heads * in->n_tokens * in->head_dim * sqt_dtype_size(in->dtype);
}

const void *dense_input_tensor(dense_input *in, uint32_t layer, sqkv_tensor tensor) {
    const uint8_t *p = (tensor == SQKV_TENSOR_K ? in->k : in->v)[layer];
    const size_t esize = sqt_dtype_size(in->dtype);
    if ((uintptr_t)p % esize == 0) return p;
    void **scratch = &in->scratch[tensor == SQKV_TENSOR_K ? 0 : 1];
    if (*scratch == NULL) *scratch = malloc(dense_input_tensor_bytes(in));
    if (*scratch == NULL) return NULL;
    memcpy(*scratch, p, dense_input_tensor_bytes(in));
    return *scratch;
}
