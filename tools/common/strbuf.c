/* strbuf.c: see strbuf.h. */
#include "tools/common/strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

void sqt_strbuf_init(sqt_strbuf *b) { memset(b, 0, sizeof *b); }

void sqt_strbuf_free(sqt_strbuf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

static int reserve(sqt_strbuf *b, size_t extra) {
    if (b->failed) return 0;
    if (extra >= SIZE_MAX - b->len) {
        b->failed = 1;
        return 0;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *grown = realloc(b->data, cap);
    if (grown == NULL) {
        b->failed = 1;
        return 0;
    }
    b->data = grown;
    b->cap = cap;
    return 1;
}

void sqt_strbuf_append(sqt_strbuf *b, const char *s, size_t n) {
    if (!reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sqt_strbuf_puts(sqt_strbuf *b, const char *s) { sqt_strbuf_append(b, s, strlen(s)); }

void sqt_strbuf_printf(sqt_strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n)) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sqt_strbuf_json_string(sqt_strbuf *b, const char *s, size_t n) {
    /* NUL is legal in JSON (escaped) but sqkv_utf8_valid refuses it; escaping handles both cases. */
    int utf8 = 1;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\0') utf8 = 0;
    if (utf8) utf8 = sqkv_utf8_valid((const uint8_t *)s, n);
    sqt_strbuf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sqt_strbuf_append(b, esc, 2);
        } else if (c == '\n') {
            sqt_strbuf_append(b, "\\n", 2);
        } else if (c == '\t') {
            sqt_strbuf_append(b, "\\t", 2);
        } else if (c == '\r') {
            sqt_strbuf_append(b, "\\r", 2);
        } else if (c < 0x20 || c == 0x7F || (c >= 0x80 && !utf8)) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sqt_strbuf_append(b, esc, 6);
        } else {
            sqt_strbuf_append(b, (const char *)&s[i], 1);
        }
    }
    sqt_strbuf_append(b, "\"", 1);
}
