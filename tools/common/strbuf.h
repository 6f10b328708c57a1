/*
 * strbuf.h: a growable byte string, used to build JSON (info --json, safetensors headers) and other
 * text whose length is not known in advance. Allocation failure is sticky: check strbuf.failed once at
 * the end instead of after every append.
 */
#ifndef SQKV_TOOLS_STRBUF_H
#define SQKV_TOOLS_STRBUF_H

#include <stddef.h>

#include "tools/common/io_error.h"

typedef struct sqt_strbuf {
    char *data;    /* NUL-terminated when not failed */
    size_t len, cap;
    int failed;
} sqt_strbuf;

void sqt_strbuf_init(sqt_strbuf *b);
void sqt_strbuf_free(sqt_strbuf *b);
void sqt_strbuf_append(sqt_strbuf *b, const char *s, size_t n);
void sqt_strbuf_puts(sqt_strbuf *b, const char *s);
void sqt_strbuf_printf(sqt_strbuf *b, const char *fmt, ...) SQT_PRINTF_LIKE(2, 3);
/* A JSON string literal with quotes. Valid UTF-8 passes through; when s is not valid UTF-8, each byte
 * >= 0x80 is written as \u00XX so that the output is always valid JSON. */
void sqt_strbuf_json_string(sqt_strbuf *b, const char *s, size_t n);

#endif
