/* util.h: small helpers shared by the tools: a monotonic clock and human-readable sizes. */
#ifndef SQKV_TOOLS_UTIL_H
#define SQKV_TOOLS_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Seconds on the monotonic clock (only differences are meaningful). */
double sqkv_now(void);

/* "512.0 MiB", "2.3 KiB", "17 B" into buf. Returns buf. */
char *sqkv_human_size(uint64_t bytes, char *buf, size_t cap);

/* Parses a byte count: decimal digits with an optional binary suffix K, M, G or T (KiB... also
 * accepted, case-insensitive). Returns 0 on success, -1 on syntax error or overflow. */
int sqkv_parse_size(const char *text, uint64_t *out);

/* The median of n values (sorts them in place). */
double sqkv_median(double *values, size_t n);

#endif
