/*
 * safetensors_fuzzer: the CLI's .safetensors reader (tools/common/safetensors.c, with its strict JSON
 * scanner), a parser of untrusted files.
 *
 * Checks: a failure is SQT_BAD_DATA (or SQT_SYSTEM: out of memory) with a message, and the partial
 * result is freed without leaks; an accepted file has NUL-terminated names and metadata of the stated
 * lengths, unique tensor names, tensors whose byte ranges are sorted, contiguous, inside the input and
 * sized count * element size (every byte is read, so ASan sees a range that points outside); for
 * files whose dtypes the tools convert, a header rebuilt with sqt_st_format_header followed by the
 * same data parses to the same tensors and metadata.
 *
 * Input: a .safetensors file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "tools/common/safetensors.h"

static void check_file(const uint8_t *data, size_t size, const sqt_st_file *f) {
    uint64_t expect_begin = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const sqt_st_tensor *t = &f->tensors[i];
        FUZZ_CHECK(t->name && strlen(t->name) == t->name_len, "tensor %zu name length", i);
        FUZZ_CHECK(t->ndim <= SQT_ST_MAX_DIMS, "tensor %zu: %u dimensions", i, t->ndim);
        FUZZ_CHECK(t->begin == expect_begin && t->end >= t->begin, "tensor %zu: range [%llu, %llu) not contiguous", i,
                   (unsigned long long)t->begin, (unsigned long long)t->end);
        expect_begin = t->end;
        FUZZ_CHECK(t->data >= data && t->data <= data + size && t->end - t->begin <= (uint64_t)(data + size - t->data),
                   "tensor %zu data outside the input", i);
        unsigned __int128 product = 1;
        for (uint32_t d = 0; d < t->ndim; d++) {
            product *= t->shape[d];
            if (product > UINT64_MAX) product = (unsigned __int128)UINT64_MAX + 1;
        }
        FUZZ_CHECK(product == t->count, "tensor %zu: count is not the product of the shape", i);
        if (t->dtype)
            FUZZ_CHECK((unsigned __int128)t->count * sqt_dtype_size(t->dtype) == t->end - t->begin,
                       "tensor %zu: %llu bytes for %llu elements", i, (unsigned long long)(t->end - t->begin),
                       (unsigned long long)t->count);
        volatile uint8_t sink = 0;
        for (uint64_t b = 0; b < t->end - t->begin; b++) sink = sink ^ t->data[b];
        FUZZ_CHECK(sqt_st_find(f, t->name) == t, "find(\"%s\") does not return the tensor", t->name);
    }
    if (f->n_tensors) {
        const sqt_st_tensor *last = &f->tensors[f->n_tensors - 1];
        FUZZ_CHECK(last->data + (last->end - last->begin) == data + size, "data region does not end the input");
    }
    for (size_t i = 0; i < f->n_meta; i++)
        FUZZ_CHECK(f->meta[i].key && f->meta[i].value && strlen(f->meta[i].key) == f->meta[i].key_len &&
                       strlen(f->meta[i].value) == f->meta[i].value_len,
                   "metadata %zu lengths", i);
}

/* Rebuild from the parsed description: same tensors, same metadata. */
static void check_rebuilt(const sqt_st_file *f) {
    uint64_t total = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        if (!f->tensors[i].dtype) return; /* a dtype the writer cannot express */
        total += f->tensors[i].end - f->tensors[i].begin;
    }
    if (total > (1u << 20) || f->n_tensors > 256) return;
    sqt_st_desc *desc = (sqt_st_desc *)calloc(f->n_tensors ? f->n_tensors : 1, sizeof *desc);
    FUZZ_CHECK(desc, "out of memory");
    for (size_t i = 0; i < f->n_tensors; i++) {
        desc[i].name = f->tensors[i].name;
        desc[i].dtype = f->tensors[i].dtype;
        desc[i].ndim = f->tensors[i].ndim;
        memcpy(desc[i].shape, f->tensors[i].shape, sizeof desc[i].shape);
    }
    uint8_t *header = NULL;
    size_t len = 0;
    uint64_t data_size = 0;
    sqt_error err;
    sqt_error_clear(&err);
    int rc = sqt_st_format_header(desc, f->n_tensors, f->meta, f->n_meta, &header, &len, &data_size, &err);
    if (rc == SQT_USAGE) { /* e.g. a name the writer will not escape: not a reader property */
        free(desc);
        free(header);
        return;
    }
    FUZZ_CHECK(rc == 0 && data_size == total, "format_header of a parsed file: %d %s", rc, err.message);
    uint8_t *file = (uint8_t *)malloc(len + (size_t)total + 1);
    FUZZ_CHECK(file, "out of memory");
    memcpy(file, header, len);
    size_t at = len;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const size_t n = (size_t)(f->tensors[i].end - f->tensors[i].begin);
        if (n) memcpy(file + at, f->tensors[i].data, n);
        at += n;
    }
    sqt_st_file g;
    memset(&g, 0, sizeof g);
    sqt_error_clear(&err);
    rc = sqt_st_parse(file, at, &g, &err);
    FUZZ_CHECK(rc == 0, "rebuilt file refused: %s", err.message);
    FUZZ_CHECK(g.n_tensors == f->n_tensors && g.n_meta == f->n_meta, "rebuilt file has other counts");
    for (size_t i = 0; i < g.n_tensors; i++) {
        const sqt_st_tensor *x = &f->tensors[i], *y = &g.tensors[i];
        FUZZ_CHECK(strcmp(x->name, y->name) == 0 && x->dtype == y->dtype && x->ndim == y->ndim &&
                       memcmp(x->shape, y->shape, x->ndim * sizeof x->shape[0]) == 0 && x->begin == y->begin &&
                       x->end == y->end,
                   "rebuilt tensor %zu differs", i);
    }
    for (size_t i = 0; i < g.n_meta; i++)
        FUZZ_CHECK(strcmp(f->meta[i].key, g.meta[i].key) == 0 && strcmp(f->meta[i].value, g.meta[i].value) == 0,
                   "rebuilt metadata %zu differs", i);
    sqt_st_free(&g);
    free(file);
    free(header);
    free(desc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sqt_st_file f;
    sqt_error err;
    memset(&f, 0, sizeof f);
    sqt_error_clear(&err);
    const int rc = sqt_st_parse(data, size, &f, &err);
    if (rc != 0) {
        FUZZ_CHECK((rc == SQT_BAD_DATA || rc == SQT_SYSTEM) && (int)err.cls == rc && err.message[0] != '\0',
                   "parse failed with class %d/%d and message '%s'", rc, (int)err.cls, err.message);
    } else {
        check_file(data, size, &f);
        check_rebuilt(&f);
    }
    sqt_st_free(&f);
    return 0;
}
