/* safetensors.c: see safetensors.h. */
#include "tools/common/safetensors.h"

#include <stdlib.h>
#include <string.h>

#include "tools/common/json_scan.h"
#include "tools/common/strbuf.h"

typedef struct dtype_entry {
    const char *name;
    unsigned size;
    sqt_dtype io;
} dtype_entry;

/* Every dtype of the safetensors specification, so that files holding other tensors still parse. */
static const dtype_entry dtypes[] = {
    {"BOOL", 1, 0}, {"U8", 1, 0},   {"I8", 1, 0},    {"F8_E5M2", 1, 0},  {"F8_E4M3", 1, 0},
    {"I16", 2, 0},  {"U16", 2, 0},  {"F16", 2, SQT_F16}, {"BF16", 2, SQT_BF16},
    {"I32", 4, SQT_I32}, {"U32", 4, 0}, {"F32", 4, SQT_F32},
    {"F64", 8, 0},  {"I64", 8, 0},  {"U64", 8, 0},
};

static const dtype_entry *find_dtype(const char *name) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, name) == 0) return &dtypes[i];
    return NULL;
}

static const char *io_dtype_st_name(sqt_dtype t) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].io == t && t != 0) return dtypes[i].name;
    return NULL;
}

void sqt_st_free(sqt_st_file *f) {
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->tensors);
    free(f->meta);
    memset(f, 0, sizeof *f);
}

const sqt_st_tensor *sqt_st_find(const sqt_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

/* Grows an array by one element (capacity doubling); returns the new slot or NULL. */
static void *push(void **items, size_t *count, size_t *cap, size_t item_size) {
    if (*count == *cap) {
        size_t next = *cap ? *cap * 2 : 16;
        void *grown = realloc(*items, next * item_size);
        if (grown == NULL) return NULL;
        *items = grown;
        *cap = next;
    }
    void *slot = (char *)*items + (*count)++ * item_size;
    memset(slot, 0, item_size);
    return slot;
}

static int parse_metadata(sqt_json_scan *j, sqt_st_file *f, size_t *cap) {
    if (sqt_json_expect(j, '{', "to open \"__metadata__\"")) return 1;
    if (sqt_json_peek(j) == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        sqt_st_meta *m = push((void **)&f->meta, &f->n_meta, cap, sizeof *m);
        if (m == NULL) return sqt_fail(j->err, SQT_SYSTEM, "out of memory reading safetensors header");
        if (sqt_json_string(j, &m->key, &m->key_len)) return 1;
        if (sqt_json_expect(j, ':', "after a metadata key")) return 1;
        if (sqt_json_peek(j) != '"')
            return sqt_fail(j->err, SQT_BAD_DATA,
                                "malformed safetensors header: \"__metadata__\" value of \"%.64s\" is not a string", m->key);
        if (sqt_json_string(j, &m->value, &m->value_len)) return 1;
        if (sqt_json_peek(j) == '}') {
            j->p++;
            return 0;
        }
        if (sqt_json_expect(j, ',', "between metadata entries")) return 1;
    }
}

static int parse_uint_list(sqt_json_scan *j, uint64_t *values, uint32_t max_count, uint32_t *count,
                           const char *context) {
    if (sqt_json_expect(j, '[', context)) return 1;
    *count = 0;
    if (sqt_json_peek(j) == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        if (*count == max_count)
            return sqt_fail(j->err, SQT_BAD_DATA, "malformed safetensors header: too many entries %s", context);
        if (sqt_json_uint(j, UINT64_MAX, &values[(*count)++], context)) return 1;
        int c = sqt_json_peek(j);
        if (c == ']') {
            j->p++;
            return 0;
        }
        if (sqt_json_expect(j, ',', context)) return 1;
    }
}

static int parse_tensor(sqt_json_scan *j, sqt_st_tensor *t) {
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    if (sqt_json_expect(j, '{', "to open a tensor entry")) return 1;
    if (sqt_json_peek(j) != '}') {
        for (;;) {
            char *field;
            size_t n;
            if (sqt_json_string(j, &field, &n)) return 1;
            int *seen = strcmp(field, "dtype") == 0          ? &have_dtype
                        : strcmp(field, "shape") == 0        ? &have_shape
                        : strcmp(field, "data_offsets") == 0 ? &have_offsets
                                                             : NULL;
            if (seen == NULL || *seen) {
                int rc = sqt_fail(j->err, SQT_BAD_DATA, "malformed safetensors header: %s field \"%.32s\" in tensor \"%.64s\"",
                                      seen ? "duplicate" : "unknown", field, t->name);
                free(field);
                return rc;
            }
            free(field);
            *seen = 1;
            if (sqt_json_expect(j, ':', "after a field name")) return 1;
            if (seen == &have_dtype) {
                char *name;
                if (sqt_json_string(j, &name, &n)) return 1;
                const dtype_entry *d = find_dtype(name);
                if (d == NULL) {
                    int rc = sqt_fail(j->err, SQT_BAD_DATA,
                                          "unknown safetensors dtype \"%.16s\" of tensor \"%.64s\"", name, t->name);
                    free(name);
                    return rc;
                }
                free(name);
                t->dtype = d->io;
                memcpy(t->dtype_name, d->name, strlen(d->name) + 1);
            } else if (seen == &have_shape) {
                if (parse_uint_list(j, t->shape, SQT_ST_MAX_DIMS, &t->ndim, "in \"shape\"")) return 1;
            } else {
                uint64_t off[2];
                uint32_t k;
                if (parse_uint_list(j, off, 2, &k, "in \"data_offsets\"")) return 1;
                if (k != 2)
                    return sqt_fail(j->err, SQT_BAD_DATA,
                                        "malformed safetensors header: \"data_offsets\" of tensor \"%.64s\" must have 2 entries",
                                        t->name);
                t->begin = off[0];
                t->end = off[1];
            }
            if (sqt_json_peek(j) == '}') break;
            if (sqt_json_expect(j, ',', "between tensor fields")) return 1;
        }
    }
    j->p++;
    if (!have_dtype || !have_shape || !have_offsets)
        return sqt_fail(j->err, SQT_BAD_DATA, "malformed safetensors header: tensor \"%.64s\" lacks \"%s\"",
                            t->name, !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    return 0;
}

/* Size checks of one tensor: product of the shape times the dtype size equals the offset span. */
static int check_tensor_size(sqt_st_tensor *t, sqt_error *err) {
    const dtype_entry *d = find_dtype(t->dtype_name);
    uint64_t count = 1;
    for (uint32_t i = 0; i < t->ndim; i++) {
        if (t->shape[i] != 0 && count > UINT64_MAX / t->shape[i])
            return sqt_fail(err, SQT_BAD_DATA, "tensor \"%.64s\": shape product overflows 64 bits", t->name);
        count *= t->shape[i];
    }
    if (count > UINT64_MAX / d->size)
        return sqt_fail(err, SQT_BAD_DATA, "tensor \"%.64s\": byte size overflows 64 bits", t->name);
    if (t->end < t->begin)
        return sqt_fail(err, SQT_BAD_DATA, "tensor \"%.64s\": data_offsets end %llu before begin %llu",
                            t->name, (unsigned long long)t->end, (unsigned long long)t->begin);
    if (t->end - t->begin != count * d->size)
        return sqt_fail(err, SQT_BAD_DATA,
                            "tensor \"%.64s\": data_offsets span %llu bytes, but shape and dtype %s need %llu",
                            t->name, (unsigned long long)(t->end - t->begin), t->dtype_name,
                            (unsigned long long)(count * d->size));
    t->count = count;
    return 0;
}

static int by_offsets(const void *a, const void *b) {
    const sqt_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static int by_name(const void *a, const void *b) {
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    return strcmp(x, y);
}

/* Strings hold no NUL (json_scan refuses it), so strcmp order finds duplicates. */
static int find_duplicate(char **names, size_t n, const char **dup) {
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            *dup = names[i];
            return 1;
        }
    return 0;
}

static int check_names(sqt_st_file *f, sqt_error *err) {
    size_t most = f->n_tensors > f->n_meta ? f->n_tensors : f->n_meta;
    char **names = malloc((most ? most : 1) * sizeof *names);
    if (names == NULL) return sqt_fail(err, SQT_SYSTEM, "out of memory checking safetensors names");
    const char *dup = NULL;
    int rc = 0;
    for (size_t i = 0; i < f->n_tensors; i++) names[i] = f->tensors[i].name;
    if (find_duplicate(names, f->n_tensors, &dup))
        rc = sqt_fail(err, SQT_BAD_DATA, "malformed safetensors header: tensor \"%.64s\" appears twice", dup);
    for (size_t i = 0; i < f->n_meta; i++) names[i] = f->meta[i].key;
    if (!rc && find_duplicate(names, f->n_meta, &dup))
        rc = sqt_fail(err, SQT_BAD_DATA, "malformed safetensors header: metadata key \"%.64s\" appears twice", dup);
    free(names);
    return rc;
}

static int check_layout(sqt_st_file *f, const uint8_t *data, uint64_t data_size, sqt_error *err) {
    if (f->n_tensors > 1) qsort(f->tensors, f->n_tensors, sizeof *f->tensors, by_offsets); /* NULL when empty */
    uint64_t at = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        sqt_st_tensor *t = &f->tensors[i];
        if (t->begin != at)
            return sqt_fail(err, SQT_BAD_DATA,
                                "safetensors layout: tensor \"%.64s\" starts at %llu, expected %llu (%s)", t->name,
                                (unsigned long long)t->begin, (unsigned long long)at,
                                t->begin > at ? "a hole before it" : "it overlaps the previous tensor");
        if (t->end > data_size)
            return sqt_fail(err, SQT_BAD_DATA,
                                "truncated safetensors file: tensor \"%.64s\" ends at %llu, the data region has %llu bytes",
                                t->name, (unsigned long long)t->end, (unsigned long long)data_size);
        t->data = data + t->begin;
        at = t->end;
    }
    if (at != data_size)
        return sqt_fail(err, SQT_BAD_DATA,
                            "safetensors layout: %llu bytes after the last tensor are not covered by any tensor",
                            (unsigned long long)(data_size - at));
    return 0;
}

static int parse_header(sqt_json_scan *j, sqt_st_file *f) {
    size_t tensor_cap = 0, meta_cap = 0;
    int have_meta = 0;
    if (sqt_json_expect(j, '{', "at the start")) return 1;
    if (sqt_json_peek(j) == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        char *name;
        size_t n;
        if (sqt_json_string(j, &name, &n)) return 1;
        if (sqt_json_expect(j, ':', "after a tensor name")) {
            free(name);
            return 1;
        }
        if (strcmp(name, "__metadata__") == 0) {
            free(name);
            if (have_meta)
                return sqt_fail(j->err, SQT_BAD_DATA, "malformed safetensors header: \"__metadata__\" appears twice");
            have_meta = 1;
            if (parse_metadata(j, f, &meta_cap)) return 1;
        } else {
            if (f->n_tensors == SQT_ST_MAX_TENSORS) {
                free(name);
                return sqt_fail(j->err, SQT_BAD_DATA, "safetensors header lists more than %u tensors",
                                    SQT_ST_MAX_TENSORS);
            }
            sqt_st_tensor *t = push((void **)&f->tensors, &f->n_tensors, &tensor_cap, sizeof *t);
            if (t == NULL) {
                free(name);
                return sqt_fail(j->err, SQT_SYSTEM, "out of memory reading safetensors header");
            }
            t->name = name;
            t->name_len = n;
            if (parse_tensor(j, t)) return 1;
        }
        if (sqt_json_peek(j) == '}') {
            j->p++;
            return 0;
        }
        if (sqt_json_expect(j, ',', "between entries")) return 1;
    }
}

int sqt_st_parse(const uint8_t *bytes, size_t size, sqt_st_file *out, sqt_error *err) {
    memset(out, 0, sizeof *out);
    if (size < 8) return sqt_fail(err, SQT_BAD_DATA, "not a safetensors file (shorter than 8 bytes)");
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | bytes[i];
    if (n > SQT_ST_MAX_HEADER)
        return sqt_fail(err, SQT_BAD_DATA, "safetensors header length %llu exceeds the limit of %u bytes",
                            (unsigned long long)n, SQT_ST_MAX_HEADER);
    if (n > size - 8)
        return sqt_fail(err, SQT_BAD_DATA,
                            "truncated safetensors file: header of %llu bytes, only %zu bytes follow the length",
                            (unsigned long long)n, size - 8);
    if (n < 2 || bytes[8] != '{')
        return sqt_fail(err, SQT_BAD_DATA, "not a safetensors file (the header does not start with '{')");
    sqt_json_scan j;
    sqt_json_init(&j, (const char *)bytes + 8, (size_t)n, err, "safetensors header");
    if (parse_header(&j, out)) return err->cls;
    for (const char *p = j.p; p < j.end; p++)
        if (*p != ' ')
            return sqt_fail(err, SQT_BAD_DATA,
                                "malformed safetensors header: byte %zu after the JSON object is not space padding",
                                (size_t)(p - j.begin));
    if (check_names(out, err)) return err->cls;
    for (size_t i = 0; i < out->n_tensors; i++)
        if (check_tensor_size(&out->tensors[i], err)) return err->cls;
    if (check_layout(out, bytes + 8 + n, size - 8 - n, err)) return err->cls;
    return SQT_OK;
}

int sqt_st_format_header(const sqt_st_desc *tensors, size_t n, const sqt_st_meta *meta, size_t n_meta,
                          uint8_t **out, size_t *len, uint64_t *data_size, sqt_error *err) {
    *out = NULL;
    sqt_strbuf b;
    sqt_strbuf_init(&b);
    sqt_strbuf_append(&b, "\0\0\0\0\0\0\0\0{", 9);
    int first = 1;
    if (n_meta) {
        sqt_strbuf_puts(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i) sqt_strbuf_puts(&b, ",");
            sqt_strbuf_json_string(&b, meta[i].key, meta[i].key_len);
            sqt_strbuf_puts(&b, ":");
            sqt_strbuf_json_string(&b, meta[i].value, meta[i].value_len);
        }
        sqt_strbuf_puts(&b, "}");
        first = 0;
    }
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const sqt_st_desc *t = &tensors[i];
        const char *dt = io_dtype_st_name(t->dtype);
        if (dt == NULL || t->ndim > SQT_ST_MAX_DIMS) {
            sqt_strbuf_free(&b);
            return sqt_fail(err, SQT_USAGE, "cannot describe tensor \"%.64s\" in safetensors", t->name);
        }
        uint64_t bytes = sqt_dtype_size(t->dtype);
        for (uint32_t d = 0; d < t->ndim; d++) {
            if (t->shape[d] && bytes > UINT64_MAX / t->shape[d]) {
                sqt_strbuf_free(&b);
                return sqt_fail(err, SQT_USAGE, "tensor \"%.64s\" is too large", t->name);
            }
            bytes *= t->shape[d];
        }
        if (!first) sqt_strbuf_puts(&b, ",");
        first = 0;
        sqt_strbuf_json_string(&b, t->name, strlen(t->name));
        sqt_strbuf_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", dt);
        for (uint32_t d = 0; d < t->ndim; d++) sqt_strbuf_printf(&b, "%s%llu", d ? "," : "", (unsigned long long)t->shape[d]);
        sqt_strbuf_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at, (unsigned long long)(at + bytes));
        at += bytes;
    }
    sqt_strbuf_puts(&b, "}");
    while (b.len % 8) sqt_strbuf_puts(&b, " ");
    if (b.failed) {
        sqt_strbuf_free(&b);
        return sqt_fail(err, SQT_SYSTEM, "out of memory building a safetensors header");
    }
    uint64_t header = b.len - 8;
    for (int i = 0; i < 8; i++) b.data[i] = (char)(header >> (8 * i));
    *out = (uint8_t *)b.data;
    *len = b.len;
    *data_size = at;
    return SQT_OK;
}
