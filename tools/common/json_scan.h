/*
 * json_scan.h: a strict pull scanner for the small JSON documents the tools read (safetensors headers).
 * RFC 8259 syntax only: no comments, no trailing commas, no NaN; strings must be valid UTF-8 with no NUL
 * (raw or escaped) and surrogate escapes must pair; numbers are read only as non-negative integers
 * without fraction or exponent, which is all a safetensors header holds. Nothing recurses, so
 * nesting depth cannot exhaust the stack.
 */
#ifndef SQKV_TOOLS_JSON_SCAN_H
#define SQKV_TOOLS_JSON_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "tools/common/io_error.h"

typedef struct sqt_json_scan {
    const char *begin, *p, *end;
    sqt_error *err;
    const char *what;     /* names the document in messages, e.g. "safetensors header" */
} sqt_json_scan;

void sqt_json_init(sqt_json_scan *j, const char *data, size_t size, sqt_error *err, const char *what);
void sqt_json_skip_ws(sqt_json_scan *j);
/* Next non-space character, not consumed; -1 at the end. */
int sqt_json_peek(sqt_json_scan *j);
/* Consumes ch (after whitespace) or fails with "expected 'ch' context". */
int sqt_json_expect(sqt_json_scan *j, char ch, const char *context);
/* A string; on success *out is a malloc'ed NUL-terminated copy (free it) of *len bytes. */
int sqt_json_string(sqt_json_scan *j, char **out, size_t *len);
/* A non-negative integer no larger than max. */
int sqt_json_uint(sqt_json_scan *j, uint64_t max, uint64_t *out, const char *context);
/* Byte offset of the cursor, for messages. */
size_t sqt_json_offset(const sqt_json_scan *j);

#endif
