/*
 * atomic_file.h: crash-safe replacement of a file. The content goes to a new temporary file in the
 * target's directory (so that rename stays within one file system), which is fsynced and renamed over
 * the target, and the directory is fsynced so that the rename itself survives a crash. Readers see
 * either the old file or the complete new one, never a torn one.
 */
#ifndef SQKV_ATOMIC_FILE_H
#define SQKV_ATOMIC_FILE_H

#include <stddef.h>

#include "sqkv.h"

/* Writes the whole content to fd; on failure returns an error and describes it in detail. */
typedef sqkv_error (*sqkv_atomic_fill_fn)(void *ctx, int fd, char *detail, size_t detail_size);

/* Creates "<path>.tmp.<16 hex digits>" (O_EXCL, mode 0666 less the umask), fills it, fsyncs, renames it
 * over path and fsyncs the directory. On any failure before the rename the temporary file is removed
 * and an existing file at path is untouched. A failure of the final directory fsync is reported
 * (SQKV_ERR_IO) although the new file is then already in place. */
sqkv_error sqkv_atomic_file_write(const char *path, sqkv_atomic_fill_fn fill, void *ctx, char *detail,
                                  size_t detail_size);

#endif /* SQKV_ATOMIC_FILE_H */
