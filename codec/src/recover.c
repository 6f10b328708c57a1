/* recover.c: the previous state of a file whose append was interrupted (sqkv.h sqkv_find_valid_prefix,
 * sqkv_recover; spec/FORMAT.md §9.1 "Crash safety").
 *
 * Candidates are the prefixes that end with the end magic at a multiple of 8 (every valid file's size
 * is one), longest first; the first that opens (header, tail, INDEX, coverage) and whose every section
 * verifies is the answer. The scan reads the file backward in blocks, so a file torn near its end costs
 * one block read plus the verification of the candidate. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* flock */
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"
#include "parse_header.h"
#include "source.h"
#include "sqkv.h"

#define SCAN_BLOCK (64u * 1024u)
/* The smallest file: a 64-byte header, an INDEX section header and its 32-byte body. */
#define MIN_FILE (SQKV_HEADER_SIZE_V1 + SQKV_SECTION_HEADER_SIZE + SQKV_INDEX_MIN_BODY)

static sqkv_error say(char *detail, size_t size, sqkv_error err, const char *fmt, ...) SQKV_PRINTF_LIKE(4, 5);
static sqkv_error say(char *detail, size_t size, sqkv_error err, const char *fmt, ...) {
    if (detail && size) {
        int n = snprintf(detail, size, "%s: ", sqkv_error_name(err));
        if (n < 0 || (size_t)n >= size) n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail + n, size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* Is [0, size) of the file a complete, valid SQKV file? The reader's error (and detail) otherwise. */
static sqkv_error check_prefix(int *fd, uint64_t size, const sqkv_limits *limits, char *why, size_t why_size) {
    sqkv_reader *r = NULL;
    sqkv_error err = sqkv_reader_create(limits, 0, &r);
    if (err) return err;
    err = sqkv_reader_open_callback(r, sqkv_source_pread, fd, size);
    if (!err) err = sqkv_reader_verify(r);
    if (err && why) snprintf(why, why_size, "%s", sqkv_reader_error_detail(r));
    sqkv_reader_destroy(r);
    return err;
}

/* Longest valid prefix, or 0. whole_err is the error of the whole file (SQKV_OK when it is valid). */
static sqkv_error scan(int fd, uint64_t file_size, const sqkv_limits *limits, uint64_t *valid, sqkv_error *whole_err,
                       char *why, size_t why_size) {
    int fd_copy = fd;
    *valid = 0;
    *whole_err = check_prefix(&fd_copy, file_size, limits, why, why_size);
    if (*whole_err == SQKV_OK) {
        *valid = file_size;
        return SQKV_OK;
    }
    uint8_t *block = (uint8_t *)malloc(SCAN_BLOCK + SQKV_MAGIC_SIZE);
    if (!block) return SQKV_ERR_OUT_OF_MEMORY;
    /* Candidate ends: multiples of 8 below the file size (the whole file was just tried). */
    uint64_t end = (file_size - 1) & ~(uint64_t)7;
    sqkv_error err = SQKV_OK;
    while (end >= MIN_FILE && !*valid && !err) {
        /* Read [lo, end) and test every aligned end inside it, longest first. */
        const uint64_t lo = end - SQKV_MAGIC_SIZE >= SCAN_BLOCK ? end - SCAN_BLOCK : 0;
        if (sqkv_source_pread(&fd_copy, lo, block, (size_t)(end - lo)) != 0) {
            err = SQKV_ERR_IO;
            break;
        }
        uint64_t e = end;
        for (; e >= lo + SQKV_MAGIC_SIZE && e >= MIN_FILE; e -= 8) {
            if (memcmp(block + (e - SQKV_MAGIC_SIZE - lo), sqkv_end_magic, SQKV_MAGIC_SIZE) != 0) continue;
            if (check_prefix(&fd_copy, e, limits, NULL, 0) == SQKV_OK) {
                *valid = e;
                break;
            }
        }
        /* The next block ends where this one's scan stopped: e's magic would start before lo. Only the
         * block that reached the file's start ends the scan (fuzzing finding 7: stopping whenever a block
         * was scanned to its start limited the search to the last 64 KiB, so a longer torn append lost
         * the file). Each block moves end back by SCAN_BLOCK - 8 bytes or more. */
        end = e;
        if (lo == 0) break;
    }
    free(block);
    return err;
}

static sqkv_error find(const char *path, int flags, const sqkv_limits *limits, uint64_t *file_size, uint64_t *valid,
                       int *fd_out, char *detail, size_t detail_size) {
    if (detail && detail_size) detail[0] = '\0';
    if (!path || !file_size || !valid) return say(detail, detail_size, SQKV_ERR_INVALID_ARGUMENT, "a NULL argument");
    *file_size = *valid = 0;
    const int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) return say(detail, detail_size, SQKV_ERR_IO, "%s: open: %s", path, strerror(errno));
    *fd_out = fd;
    if (flock(fd, (flags & O_RDWR ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0)
        return say(detail, detail_size, SQKV_ERR_IO, "%s: flock: %s (an append or repair is running)", path,
                   strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) return say(detail, detail_size, SQKV_ERR_IO, "%s: fstat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return say(detail, detail_size, SQKV_ERR_IO, "%s: not a regular file", path);
    *file_size = (uint64_t)st.st_size;
    char why[512] = "";
    sqkv_error whole = SQKV_OK;
    sqkv_error err = scan(fd, *file_size, limits, valid, &whole, why, sizeof why);
    if (err) return say(detail, detail_size, err, "%s: scanning for a valid prefix failed", path);
    if (*valid == 0) return say(detail, detail_size, whole, "%s: no prefix is a valid SQKV file; the whole file: %s", path, why);
    if (*valid < *file_size)
        say(detail, detail_size, SQKV_OK, "%s: the first %" PRIu64 " of %" PRIu64 " bytes are a valid file; the rest"
            " is an interrupted append (%s)", path, *valid, *file_size, why);
    return SQKV_OK;
}

sqkv_error sqkv_find_valid_prefix(const char *path, const sqkv_limits *limits, uint64_t *file_size,
                                  uint64_t *valid_size, char *detail, size_t detail_size) {
    int fd = -1;
    const sqkv_error err = find(path, O_RDONLY, limits, file_size, valid_size, &fd, detail, detail_size);
    if (fd >= 0) close(fd);
    return err;
}

sqkv_error sqkv_recover(const char *path, const sqkv_limits *limits, uint64_t *old_size, uint64_t *new_size,
                        char *detail, size_t detail_size) {
    int fd = -1;
    sqkv_error err = find(path, O_RDWR, limits, old_size, new_size, &fd, detail, detail_size);
    if (!err && *new_size < *old_size) {
        if (ftruncate(fd, (off_t)*new_size) != 0 || fsync(fd) != 0)
            err = say(detail, detail_size, SQKV_ERR_IO, "%s: truncating to %" PRIu64 " bytes: %s", path, *new_size,
                      strerror(errno));
    }
    if (fd >= 0) close(fd);
    return err;
}
