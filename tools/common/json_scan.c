/* json_scan.c: see json_scan.h. */
#include "tools/common/json_scan.h"

#include <stdlib.h>
#include <string.h>

#include "utf8.h"

void sqt_json_init(sqt_json_scan *j, const char *data, size_t size, sqt_error *err, const char *what) {
    j->begin = j->p = data;
    j->end = data + size;
    j->err = err;
    j->what = what;
}

size_t sqt_json_offset(const sqt_json_scan *j) { return (size_t)(j->p - j->begin); }

static int fail(sqt_json_scan *j, const char *problem, const char *context) {
    return sqt_fail(j->err, SQT_BAD_DATA, "malformed %s: %s%s%s at byte %zu", j->what, problem,
                        context ? " " : "", context ? context : "", sqt_json_offset(j));
}

void sqt_json_skip_ws(sqt_json_scan *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

int sqt_json_peek(sqt_json_scan *j) {
    sqt_json_skip_ws(j);
    return j->p < j->end ? (unsigned char)*j->p : -1;
}

int sqt_json_expect(sqt_json_scan *j, char ch, const char *context) {
    if (sqt_json_peek(j) != (unsigned char)ch) {
        char problem[16] = "expected ' '";
        problem[10] = ch;
        return fail(j, problem, context);
    }
    j->p++;
    return 0;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int sqt_json_string(sqt_json_scan *j, char **out, size_t *len) {
    *out = NULL;
    if (sqt_json_peek(j) != '"') return fail(j, "expected a string", NULL);
    j->p++;
    const char *start = j->p;
    while (j->p < j->end && *j->p != '"') j->p += (*j->p == '\\' && j->p + 1 < j->end) ? 2 : 1;
    if (j->p >= j->end) return fail(j, "unterminated string", NULL);
    /* Decoded text is never longer than its escaped form. */
    const size_t raw = (size_t)(j->p - start);
    char *buf = malloc(raw + 1);
    if (buf == NULL) return sqt_fail(j->err, SQT_SYSTEM, "out of memory reading %s", j->what);
    size_t n = 0;
    for (const char *s = start; s < j->p;) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20) {
            free(buf);
            j->p = s;
            return fail(j, "control character in a string", NULL);
        }
        if (c != '\\') {
            buf[n++] = (char)c;
            s++;
            continue;
        }
        char e = s[1];
        s += 2;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e != '\0' && e != 'u' && simple != NULL) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            buf[n++] = decoded[simple - "\"\\/bfnrt"];
            continue;
        }
        unsigned cp, lo;
        if (e != 'u' || j->p - s < 4 || hex4(s, &cp) != 0) {
            free(buf);
            j->p = s;
            return fail(j, "bad escape sequence in a string", NULL);
        }
        s += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (j->p - s < 6 || s[0] != '\\' || s[1] != 'u' || hex4(s + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) {
                free(buf);
                j->p = s;
                return fail(j, "unpaired surrogate escape in a string", NULL);
            }
            s += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            free(buf);
            j->p = s;
            return fail(j, "unpaired surrogate escape in a string", NULL);
        }
        if (cp == 0) {
            free(buf);
            j->p = s;
            return fail(j, "NUL character in a string", NULL);
        }
        n += put_utf8(buf + n, cp);
    }
    buf[n] = '\0';
    if (!sqkv_utf8_valid((const uint8_t *)buf, n)) {
        free(buf);
        return fail(j, "string is not valid UTF-8", NULL);
    }
    j->p++; /* closing quote */
    *out = buf;
    *len = n;
    return 0;
}

int sqt_json_uint(sqt_json_scan *j, uint64_t max, uint64_t *out, const char *context) {
    sqt_json_skip_ws(j);
    const char *start = j->p;
    uint64_t v = 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        unsigned d = (unsigned)(*j->p - '0');
        if (d > max || v > (max - d) / 10) return fail(j, "integer too large", context);
        v = v * 10 + d;
        j->p++;
    }
    if (j->p == start) return fail(j, "expected a non-negative integer", context);
    if (j->p - start > 1 && *start == '0') return fail(j, "integer with a leading zero", context);
    if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'))
        return fail(j, "expected an integer, found a fraction or exponent", context);
    *out = v;
    return 0;
}
