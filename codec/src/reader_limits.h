/* reader_limits.h: the limits a reader enforces (sqkv_limits, capped at the format maxima of
 * spec/FORMAT.md §3). */
#ifndef SQKV_READER_LIMITS_H
#define SQKV_READER_LIMITS_H

#include "sqkv.h"

/* The limits actually applied: each configured value, lowered to the format maximum where it is
 * larger (a configuration cannot make the reader accept a file the spec forbids). */
void sqkv_limits_effective(const sqkv_limits *configured, sqkv_limits *out);

#endif
