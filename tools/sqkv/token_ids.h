/*
 * token_ids.h: prompt token ids given on the command line (--token-ids FILE): a .npy int32 array of
 * shape [n] or [1, n], or a text file of decimal ids separated by whitespace or commas.
 */
#ifndef SQKV_CLI_TOKEN_IDS_H
#define SQKV_CLI_TOKEN_IDS_H

#include <stddef.h>
#include <stdint.h>

#include "tools/common/io_error.h"
#include "tools/common/npy.h"

/* Reads path ("-" is stdin); *ids is malloc'ed. */
int token_ids_load(const char *path, uint64_t max_memory, int32_t **ids, size_t *count, sqt_error *err);
/* Token ids from a parsed .npy array (int32, [n] or [1, n]); *ids is malloc'ed. */
int token_ids_from_npy(const sqt_npy_array *a, int32_t **ids, size_t *count, sqt_error *err);

#endif
