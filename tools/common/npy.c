/* npy.c: see npy.h. The header grammar is the subset of Python literal syntax that NumPy writes. */
#include "tools/common/npy.h"

#include <stdio.h>
#include <string.h>

static const uint8_t npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

typedef struct cursor {
    const char *p, *end;
    sqt_error *err;
} cursor;

static void skip_spaces(cursor *c) {
    while (c->p < c->end && *c->p == ' ') c->p++;
}

static int expect_char(cursor *c, char ch, const char *where) {
    skip_spaces(c);
    if (c->p >= c->end || *c->p != ch) {
        return sqt_fail(c->err, SQT_BAD_DATA, "malformed .npy header: expected '%c' %s", ch, where);
    }
    c->p++;
    return 0;
}

/* A quoted string without escapes (NumPy never writes any); returns its bounds. */
static int parse_string(cursor *c, const char **s, size_t *n) {
    skip_spaces(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return sqt_fail(c->err, SQT_BAD_DATA, "malformed .npy header: expected a quoted string");
    const char quote = *c->p++;
    const char *start = c->p;
    while (c->p < c->end && *c->p != quote) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '\\' || ch < 0x20 || ch > 0x7E)
            return sqt_fail(c->err, SQT_BAD_DATA,
                                "malformed .npy header: escape or non-printable byte in a string");
        c->p++;
    }
    if (c->p >= c->end)
        return sqt_fail(c->err, SQT_BAD_DATA, "malformed .npy header: unterminated string");
    *s = start;
    *n = (size_t)(c->p - start);
    c->p++;
    return 0;
}

static int match_word(cursor *c, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
        c->p += n;
        return 1;
    }
    return 0;
}

static int parse_bool(cursor *c, int *value) {
    skip_spaces(c);
    if (match_word(c, "True")) *value = 1;
    else if (match_word(c, "False")) *value = 0;
    else return sqt_fail(c->err, SQT_BAD_DATA, "malformed .npy header: 'fortran_order' must be True or False");
    return 0;
}

/* A non-negative decimal integer as Python writes it (no sign, no leading zeros, no suffix). */
static int parse_dim(cursor *c, uint64_t *value) {
    skip_spaces(c);
    const char *start = c->p;
    uint64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        unsigned d = (unsigned)(*c->p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return sqt_fail(c->err, SQT_BAD_DATA, "bad .npy shape: a dimension overflows 64 bits");
        v = v * 10 + d;
        c->p++;
    }
    if (c->p == start)
        return sqt_fail(c->err, SQT_BAD_DATA, "malformed .npy header: expected a dimension in 'shape'");
    if (c->p - start > 1 && *start == '0')
        return sqt_fail(c->err, SQT_BAD_DATA, "malformed .npy header: dimension with a leading zero");
    *value = v;
    return 0;
}

/* '(' [dim (',' dim)* [',']] ')', with the Python rule that one element needs its trailing comma. */
static int parse_shape(cursor *c, sqt_npy_array *a) {
    if (expect_char(c, '(', "to open 'shape'")) return 1;
    a->ndim = 0;
    skip_spaces(c);
    int trailing_comma = 0;
    while (c->p < c->end && *c->p != ')') {
        if (a->ndim == SQT_NPY_MAX_DIMS)
            return sqt_fail(c->err, SQT_BAD_DATA, "bad .npy shape: more than %u dimensions",
                                SQT_NPY_MAX_DIMS);
        if (parse_dim(c, &a->shape[a->ndim])) return 1;
        a->ndim++;
        skip_spaces(c);
        trailing_comma = 0;
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            trailing_comma = 1;
            skip_spaces(c);
        } else {
            break;
        }
    }
    if (expect_char(c, ')', "to close 'shape'")) return 1;
    if (a->ndim == 1 && !trailing_comma)
        return sqt_fail(c->err, SQT_BAD_DATA,
                            "malformed .npy header: 'shape' is not a tuple (one dimension needs a trailing comma)");
    return 0;
}

static int parse_descr(cursor *c, sqt_npy_array *a) {
    const char *s;
    size_t n;
    if (parse_string(c, &s, &n)) return 1;
    if (n == 3 && memcmp(s, "<f2", 3) == 0) a->dtype = SQT_F16;
    else if (n == 3 && memcmp(s, "<f4", 3) == 0) a->dtype = SQT_F32;
    else if (n == 3 && memcmp(s, "<i4", 3) == 0) a->dtype = SQT_I32;
    else if (n >= 1 && s[0] == '>')
        return sqt_fail(c->err, SQT_BAD_DATA, "unsupported .npy dtype '%.*s': big-endian data is not supported",
                            (int)(n > 32 ? 32 : n), s);
    else
        return sqt_fail(c->err, SQT_BAD_DATA,
                            "unsupported .npy dtype '%.*s' (accepted: '<f2', '<f4', '<i4'; bfloat16 tensors "
                            "are read from .safetensors)", (int)(n > 32 ? 32 : n), s);
    return 0;
}

static int parse_dict(cursor *c, sqt_npy_array *a) {
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
    if (expect_char(c, '{', "at the start of the header")) return 1;
    for (;;) {
        skip_spaces(c);
        if (c->p < c->end && *c->p == '}') break;
        const char *key;
        size_t n;
        if (parse_string(c, &key, &n)) return 1;
        if (expect_char(c, ':', "after a key")) return 1;
        int *seen;
        if (n == 5 && memcmp(key, "descr", 5) == 0) {
            seen = &have_descr;
            if (!*seen && parse_descr(c, a)) return 1;
        } else if (n == 13 && memcmp(key, "fortran_order", 13) == 0) {
            seen = &have_order;
            if (!*seen && parse_bool(c, &fortran)) return 1;
        } else if (n == 5 && memcmp(key, "shape", 5) == 0) {
            seen = &have_shape;
            if (!*seen && parse_shape(c, a)) return 1;
        } else {
            return sqt_fail(c->err, SQT_BAD_DATA, "malformed .npy header: unknown key '%.*s'",
                                (int)(n > 32 ? 32 : n), key);
        }
        if (*seen)
            return sqt_fail(c->err, SQT_BAD_DATA, "malformed .npy header: key '%.*s' appears twice",
                                (int)n, key);
        *seen = 1;
        skip_spaces(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        break;
    }
    if (expect_char(c, '}', "at the end of the dictionary")) return 1;
    if (!have_descr || !have_order || !have_shape)
        return sqt_fail(c->err, SQT_BAD_DATA, "malformed .npy header: missing key '%s'",
                            !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
    if (fortran)
        return sqt_fail(c->err, SQT_BAD_DATA,
                            "unsupported .npy array: fortran_order is True (only C order is accepted)");
    /* NumPy pads with spaces and ends the header with one newline. */
    skip_spaces(c);
    if (c->p + 1 != c->end || *c->p != '\n')
        return sqt_fail(c->err, SQT_BAD_DATA,
                            "malformed .npy header: unexpected bytes after the dictionary (it must end with "
                            "spaces and a newline)");
    return 0;
}

int sqt_npy_parse(const uint8_t *bytes, size_t size, sqt_npy_array *out, sqt_error *err) {
    memset(out, 0, sizeof *out);
    if (size < 10 || memcmp(bytes, npy_magic, sizeof npy_magic) != 0)
        return sqt_fail(err, SQT_BAD_DATA, size < 6 ? "not a .npy file (too short)"
                                                             : "not a .npy file (bad magic)");
    const uint32_t major = bytes[6], minor = bytes[7];
    if (major < 1 || major > 3 || minor != 0)
        return sqt_fail(err, SQT_BAD_DATA, "unsupported .npy format version %u.%u (1.0, 2.0, 3.0 accepted)",
                            major, minor);
    uint64_t header_len, preamble;
    if (major == 1) {
        header_len = (uint64_t)bytes[8] | ((uint64_t)bytes[9] << 8);
        preamble = 10;
    } else {
        if (size < 12) return sqt_fail(err, SQT_BAD_DATA, "truncated .npy file: ends inside the preamble");
        header_len = (uint64_t)bytes[8] | ((uint64_t)bytes[9] << 8) | ((uint64_t)bytes[10] << 16) |
                     ((uint64_t)bytes[11] << 24);
        preamble = 12;
    }
    if (header_len > SQT_NPY_MAX_HEADER)
        return sqt_fail(err, SQT_BAD_DATA, ".npy header length %llu exceeds the limit of %u bytes",
                            (unsigned long long)header_len, SQT_NPY_MAX_HEADER);
    if (header_len > size - preamble)
        return sqt_fail(err, SQT_BAD_DATA, "truncated .npy file: header of %llu bytes, file of %zu bytes",
                            (unsigned long long)header_len, size);
    out->version_major = major;
    cursor c = {(const char *)bytes + preamble, (const char *)bytes + preamble + header_len, err};
    if (parse_dict(&c, out)) return SQT_BAD_DATA;

    const uint64_t esize = sqt_dtype_size(out->dtype);
    uint64_t count = 1;
    for (uint32_t i = 0; i < out->ndim; i++) {
        if (out->shape[i] != 0 && count > UINT64_MAX / out->shape[i])
            return sqt_fail(err, SQT_BAD_DATA, "bad .npy shape: element count overflows 64 bits");
        count *= out->shape[i];
    }
    if (count > UINT64_MAX / esize)
        return sqt_fail(err, SQT_BAD_DATA, "bad .npy shape: byte size overflows 64 bits");
    const uint64_t data_at = preamble + header_len, have = size - data_at;
    if (count * esize > have)
        return sqt_fail(err, SQT_BAD_DATA,
                            "truncated .npy file: shape needs %llu data bytes, the file has %llu",
                            (unsigned long long)(count * esize), (unsigned long long)have);
    if (count * esize < have)
        return sqt_fail(err, SQT_BAD_DATA, "%llu trailing bytes after the .npy array data",
                            (unsigned long long)(have - count * esize));
    out->count = count;
    out->data = bytes + data_at;
    out->data_size = count * esize;
    return SQT_OK;
}

int sqt_npy_format_header(sqt_dtype dtype, const uint64_t *shape, uint32_t ndim, uint8_t *buf,
                           size_t cap, size_t *len, sqt_error *err) {
    const char *descr = dtype == SQT_F16 ? "<f2" : dtype == SQT_F32 ? "<f4" : dtype == SQT_I32 ? "<i4" : NULL;
    if (descr == NULL)
        return sqt_fail(err, SQT_USAGE, ".npy has no %s dtype (write .safetensors, or choose fp16 or fp32)",
                            sqt_dtype_name(dtype));
    if (ndim > SQT_NPY_MAX_DIMS) return sqt_fail(err, SQT_USAGE, "too many dimensions for .npy");
    char dict[SQT_NPY_HEADER_CAP];
    size_t n = (size_t)snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (uint32_t i = 0; i < ndim; i++)
        n += (size_t)snprintf(dict + n, sizeof dict - n, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
    if (ndim == 1) n += (size_t)snprintf(dict + n, sizeof dict - n, ",");
    n += (size_t)snprintf(dict + n, sizeof dict - n, "), }");
    /* Pad with spaces so that preamble + header (ending in '\n') is a multiple of 64, as NumPy does. */
    size_t total = 10 + n + 1;
    total = (total + 63) & ~(size_t)63;
    if (total > cap || total - 10 > 65535) return sqt_fail(err, SQT_USAGE, ".npy header buffer too small");
    memcpy(buf, npy_magic, sizeof npy_magic);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (uint8_t)((total - 10) & 0xFF);
    buf[9] = (uint8_t)((total - 10) >> 8);
    memcpy(buf + 10, dict, n);
    memset(buf + 10 + n, ' ', total - 10 - n - 1);
    buf[total - 1] = '\n';
    *len = total;
    return SQT_OK;
}
