/*
 * fuzz_common.h: pieces shared by the libFuzzer harnesses (fuzz/NAME_fuzzer.c), the corpus generator and
 * the corruption sweep: a byte consumer for fuzzer-chosen parameters, a checksum repairer (so that
 * mutated files reach the code behind the checksums even in a build that verifies them), and the
 * oracle checks every decode must pass.
 *
 * Everything is static inline: fuzz/BUILD compiles each harness as one translation unit with the
 * headers of fuzz/.
 */
#ifndef SQKV_FUZZ_COMMON_H
#define SQKV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "section_header.h"
#include "sqkv.h"

/* An oracle failure: print why and abort, which libFuzzer reports as a crash with the input saved. */
#define FUZZ_CHECK(cond, ...)                                                                  \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "FUZZ CHECK FAILED at %s:%d: %s\n  ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* ---- fuzzer-chosen parameters ---------------------------------------------------------------- */

/* Reads parameters from the front of the input; past the end every read gives zero, so any input is
 * usable and short inputs pick the smallest cases. */
typedef struct fuzz_bytes {
    const uint8_t *data;
    size_t size;
    size_t pos;
} fuzz_bytes;

static inline uint8_t fuzz_u8(fuzz_bytes *in) { return in->pos < in->size ? in->data[in->pos++] : 0; }
static inline uint16_t fuzz_u16(fuzz_bytes *in) {
    uint16_t lo = fuzz_u8(in);
    return (uint16_t)(lo | (fuzz_u8(in) << 8));
}
static inline uint32_t fuzz_u32(fuzz_bytes *in) {
    uint32_t lo = fuzz_u16(in);
    return lo | ((uint32_t)fuzz_u16(in) << 16);
}
/* A value in [lo, hi] (hi - lo < 2^32). */
static inline uint32_t fuzz_range(fuzz_bytes *in, uint32_t lo, uint32_t hi) {
    uint64_t span = (uint64_t)hi - lo + 1;
    uint32_t raw = span <= 256 ? fuzz_u8(in) : span <= 65536 ? fuzz_u16(in) : fuzz_u32(in);
    return lo + (uint32_t)(raw % span);
}
static inline size_t fuzz_remaining(const fuzz_bytes *in) { return in->size - in->pos; }

/* ---- checksum repair ------------------------------------------------------------------------- */

/* Recomputes the file header checksum and, walking the sections the way a streaming reader would (to the
 * end of the bytes, past INDEX sections: an appended file has several), each section's body and header
 * checksums, wherever the bytes needed are inside buf. Never reads or writes outside buf[0, size).
 * Returns 1 when some byte changed. Mutated files then fail the structural and body rules instead of
 * stopping at the first checksum, whatever the build's checksum mode. */
static inline int fuzz_repair_checksums(uint8_t *buf, size_t size) {
    int changed = 0;
    if (size < SQKV_HEADER_SIZE_V1) return 0;
    uint32_t header_size = sqkv_load_u32(buf + SQKV_HDR_HEADER_SIZE);
    if (header_size < SQKV_HEADER_SIZE_V1 || header_size > SQKV_HEADER_SIZE_MAX || header_size % 8 ||
        header_size > size)
        return 0;
    uint64_t sum = sqkv_checksum(buf, header_size - 8);
    if (sqkv_load_u64(buf + header_size - 8) != sum) {
        sqkv_store_u64(buf + header_size - 8, sum);
        changed = 1;
    }
    uint64_t off = header_size;
    while (off <= size && size - off >= SQKV_SECTION_HEADER_SIZE) {
        uint8_t *h = buf + off;
        uint64_t stored = sqkv_load_u64(h + SQKV_SEC_STORED_SIZE);
        uint64_t room = size - off - SQKV_SECTION_HEADER_SIZE;
        if (stored <= room) {
            sum = sqkv_checksum(h + SQKV_SECTION_HEADER_SIZE, (size_t)stored);
            if (sqkv_load_u64(h + SQKV_SEC_BODY_CHECKSUM) != sum) {
                sqkv_store_u64(h + SQKV_SEC_BODY_CHECKSUM, sum);
                changed = 1;
            }
        }
        sum = sqkv_checksum(h, SQKV_SEC_HEADER_CHECKSUM);
        if (sqkv_load_u64(h + SQKV_SEC_HEADER_CHECKSUM) != sum) {
            sqkv_store_u64(h + SQKV_SEC_HEADER_CHECKSUM, sum);
            changed = 1;
        }
        /* Past an INDEX too: an appended file (§9.1) has older INDEX sections in the middle. */
        if (stored > room) break;
        off += sqkv_section_extent(stored);
    }
    return changed;
}

/* ---- oracle checks --------------------------------------------------------------------------- */

/* Every error a decoder returns must be one of the documented values. */
static inline void fuzz_check_error_known(sqkv_error err) {
    FUZZ_CHECK(strcmp(sqkv_error_name(err), "SQKV_ERR_UNKNOWN") != 0, "undocumented error value %d", (int)err);
    FUZZ_CHECK(sqkv_error_message(err) != NULL, "no message for error %d", (int)err);
}

/* Errors that describe the file (as opposed to the call or the environment). */
static inline int fuzz_is_file_error(sqkv_error err) { return err >= SQKV_ERR_TRUNCATED && err < SQKV_ERR_NO_FINGERPRINT; }

static inline size_t fuzz_dtype_size(sqkv_dtype dt) { return dt == SQKV_DTYPE_FP32 ? 4 : 2; }

/* Decoded data never holds NaN or infinity: §7.4 (finite levels), §7.5 and §8 (finite values), §11
 * (bf16 -> fp16 overflow is an error). Returns the index of the first offending element, or -1. */
static inline long fuzz_find_nonfinite(const void *out, size_t count, sqkv_dtype dt) {
    const uint8_t *p = (const uint8_t *)out;
    for (size_t i = 0; i < count; i++) {
        if (dt == SQKV_DTYPE_FP32) {
            uint32_t u;
            memcpy(&u, p + 4 * i, 4);
            if ((u & 0x7F800000u) == 0x7F800000u) return (long)i;
        } else {
            uint16_t u;
            memcpy(&u, p + 2 * i, 2);
            uint16_t mask = dt == SQKV_DTYPE_FP16 ? 0x7C00u : 0x7F80u;
            if ((u & mask) == mask) return (long)i;
        }
    }
    return -1;
}

/* Limits small enough that no input can make a harness allocate more than libFuzzer's rss limit. */
static inline void fuzz_limits(sqkv_limits *l) {
    sqkv_limits_default(l);
    l->max_memory = 64u << 20;
}

/* Largest output buffer a harness allocates for one decode call. */
#define FUZZ_MAX_OUTPUT (16u << 20)

#endif /* SQKV_FUZZ_COMMON_H */
