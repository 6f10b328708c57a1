/* utf8.h: strict UTF-8 validation for metadata (spec/FORMAT.md §10.3). */
#ifndef SQKV_UTF8_H
#define SQKV_UTF8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when s[0..n) is valid UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF)
 * and holds no NUL byte; 0 otherwise. */
int sqkv_utf8_valid(const uint8_t *s, size_t n);

#ifdef __cplusplus
}
#endif

#endif
