/*
 * diag.h: the decoder's error sentences. A check that fails fills a sqkv_diag with the rule it
 * broke and returns the spec's error code; the reader prefixes the section it was reading.
 */
#ifndef SQKV_DIAG_H
#define SQKV_DIAG_H

#include "sqkv.h"

typedef struct sqkv_diag {
    char text[384];
} sqkv_diag;

#if defined(__GNUC__) || defined(__clang__)
#define SQKV_PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define SQKV_PRINTF_LIKE(f, a)
#endif

/* Formats the message into d (when d is not NULL) and returns err, so checks read
 * `return sqkv_diag_fail(d, SQKV_ERR_X, "...", ...);`. */
sqkv_error sqkv_diag_fail(sqkv_diag *d, sqkv_error err, const char *fmt, ...) SQKV_PRINTF_LIKE(3, 4);
/* Puts a formatted prefix (e.g. the section being read) before the message already in d. */
void sqkv_diag_prefix(sqkv_diag *d, const char *fmt, ...) SQKV_PRINTF_LIKE(2, 3);

#endif
