/* reader.c: the reader object, opening a file, queries and decode (sqkv.h, spec/FORMAT.md). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "decode_dense.h"
#include "element_convert.h"
#include "reader_internal.h"
#include "reader_limits.h"
#include "section_check.h"

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

sqkv_error sqkv_reader_fail(sqkv_reader *r, sqkv_error err, const char *what) {
    if (r && err != SQKV_OK && r->error == SQKV_OK) {
        r->error = err;
        snprintf(r->detail, sizeof r->detail, "%s: %s", sqkv_error_name(err), what ? what : sqkv_error_message(err));
    }
    return r && r->error ? r->error : err;
}

sqkv_error sqkv_reader_fail_diag(sqkv_reader *r, sqkv_error err, const sqkv_diag *d) {
    return sqkv_reader_fail(r, err, d->text);
}

sqkv_error sqkv_reader_fail_argument(sqkv_reader *r, const char *function, const char *what) {
    char text[256];
    snprintf(text, sizeof text, "%s: %s", function, what);
    return sqkv_reader_fail(r, SQKV_ERR_INVALID_ARGUMENT, text);
}

sqkv_error sqkv_reader_usable(sqkv_reader *r, const char *function) {
    if (r->error) return r->error;
    if (!r->opened) {
        char text[128];
        snprintf(text, sizeof text, "%s: no file is open", function);
        return sqkv_reader_fail(r, SQKV_ERR_STATE, text);
    }
    return SQKV_OK;
}

/* Queries on a const reader cannot record an error; they report the sticky one or STATE. */
static sqkv_error const_usable(const sqkv_reader *r) {
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    if (r->error) return r->error;
    return r->opened ? SQKV_OK : SQKV_ERR_STATE;
}

/* ---------------------------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------------------------- */

sqkv_error sqkv_reader_create(const sqkv_limits *limits, unsigned flags, sqkv_reader **out) {
    if (!out) return SQKV_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (flags & ~SQKV_READER_TRUSTED) return SQKV_ERR_INVALID_ARGUMENT;
    sqkv_reader *r = calloc(1, sizeof *r);
    if (!r) return SQKV_ERR_OUT_OF_MEMORY;
    sqkv_limits_effective(limits, &r->limits);
    r->flags = flags;
    r->index.tokens = r->index.fingerprint = r->index.metadata = SQKV_NO_SECTION;
    *out = r;
    return SQKV_OK;
}

void sqkv_reader_destroy(sqkv_reader *r) {
    if (!r) return;
    sqkv_index_free(&r->index);
    free(r->metadata);
    free(r->tokens.owned);
    free(r->fingerprint.owned);
    free(r->metadata_body.owned);
    free(r->scratch);
    free(r->section_buf);
    ZSTD_freeDCtx(r->zstd);
    if (r->map) munmap(r->map, r->map_size);
    free(r);
}

const char *sqkv_reader_error_detail(const sqkv_reader *r) { return r ? r->detail : ""; }

sqkv_error sqkv_reader_open_memory(sqkv_reader *r, const void *data, size_t size) {
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    if (r->error) return r->error;
    if (r->opened) return sqkv_reader_fail(r, SQKV_ERR_STATE, "open: the reader already has a file open");
    if (!data && size) return sqkv_reader_fail_argument(r, "sqkv_reader_open_memory", "data is NULL");
    if ((uint64_t)size > r->limits.max_file_size) {
        char text[160];
        snprintf(text, sizeof text, "file of %" PRIu64 " bytes exceeds the configured max_file_size %" PRIu64,
                 (uint64_t)size, r->limits.max_file_size);
        return sqkv_reader_fail(r, SQKV_ERR_LIMIT, text);
    }
    static const uint8_t empty[1] = {0};
    r->data = data ? data : empty;
    r->size = size;
    r->src.data = r->data;
    r->src.size = size;
    sqkv_diag d;
    sqkv_error err = sqkv_parse_file_header(r->data, r->size, &r->limits, &r->file, &d);
    if (!err) err = sqkv_parse_tail(r->data, &r->file, &d);
    if (!err) {
        const uint64_t budget = r->limits.max_memory - r->memory_used; /* memory_used <= max_memory always */
        err = sqkv_parse_index(r->data, &r->file, &r->limits, budget, &r->index, &d);
        if (!err) r->memory_used += r->index.memory;
    }
    if (err) return sqkv_reader_fail_diag(r, err, &d);
    r->opened = 1;
    return SQKV_OK;
}

sqkv_error sqkv_reader_open_file(sqkv_reader *r, const char *path) {
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    if (r->error) return r->error;
    if (r->opened) return sqkv_reader_fail(r, SQKV_ERR_STATE, "open: the reader already has a file open");
    if (!path) return sqkv_reader_fail_argument(r, "sqkv_reader_open_file", "path is NULL");
    char text[512];
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(text, sizeof text, "open(%s): %s", path, strerror(errno));
        return sqkv_reader_fail(r, SQKV_ERR_IO, text);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(text, sizeof text, "fstat(%s): %s", path, strerror(errno));
        close(fd);
        return sqkv_reader_fail(r, SQKV_ERR_IO, text);
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(text, sizeof text, "%s: not a regular file", path);
        close(fd);
        return sqkv_reader_fail(r, SQKV_ERR_IO, text);
    }
    const uint64_t file_size = (uint64_t)st.st_size;
    if (file_size > r->limits.max_file_size || file_size > (uint64_t)SIZE_MAX) {
        snprintf(text, sizeof text, "%s: %" PRIu64 " bytes exceed the configured max_file_size %" PRIu64
                 " or the address space", path, file_size, r->limits.max_file_size);
        close(fd);
        return sqkv_reader_fail(r, SQKV_ERR_LIMIT, text);
    }
    if (file_size == 0) { /* mmap cannot map 0 bytes; an empty file is simply truncated */
        close(fd);
        return sqkv_reader_open_memory(r, NULL, 0);
    }
    void *map = mmap(NULL, (size_t)file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(text, sizeof text, "mmap(%s): %s", path, strerror(map_errno));
        return sqkv_reader_fail(r, SQKV_ERR_IO, text);
    }
    r->map = map;
    r->map_size = (size_t)file_size;
    return sqkv_reader_open_memory(r, map, (size_t)file_size);
}

/* The file header of a read_at source: its first 64 bytes, then the rest when header_size says more.
 * buf has room for the largest header (4096 bytes) and is zeroed by the caller. */
static sqkv_error read_file_header(sqkv_reader *r, uint8_t *buf, sqkv_diag *d) {
    const uint64_t size = r->src.size;
    sqkv_error err = sqkv_source_read(&r->src, 0, buf, size < SQKV_HEADER_SIZE_V1 ? size : SQKV_HEADER_SIZE_V1, d);
    if (err || size < SQKV_HDR_HEADER_SIZE + 4) return err;
    /* Fetch only what sqkv_parse_file_header will read: it rejects any other header_size first. */
    const uint32_t header_size = sqkv_load_u32(buf + SQKV_HDR_HEADER_SIZE);
    if (header_size > SQKV_HEADER_SIZE_V1 && header_size <= SQKV_HEADER_SIZE_MAX && header_size % 8 == 0 &&
        header_size <= size)
        err = sqkv_source_read(&r->src, SQKV_HEADER_SIZE_V1, buf + SQKV_HEADER_SIZE_V1,
                               header_size - SQKV_HEADER_SIZE_V1, d);
    return err;
}

/* The INDEX section of a read_at source is [index_offset, file_size) (§9: it ends the file), read in one
 * piece into a temporary buffer counted against max_memory. */
static sqkv_error read_index(sqkv_reader *r, sqkv_diag *d) {
    const uint64_t bytes = r->src.size - r->file.index_offset; /* >= 96: the tail was checked */
    /* Above the largest section body the configuration allows, the index can only be refused. */
    if (bytes - SQKV_SECTION_HEADER_SIZE > r->limits.max_section_size)
        return sqkv_diag_fail(d, SQKV_ERR_LIMIT, "INDEX section at %" PRIu64 ": %" PRIu64 " bytes to the end of the"
                              " file exceed the configured max_section_size %" PRIu64, r->file.index_offset,
                              bytes - SQKV_SECTION_HEADER_SIZE, r->limits.max_section_size);
    uint8_t *buf = sqkv_reader_alloc(r, bytes);
    if (!buf) return r->error;
    sqkv_error err = sqkv_source_read(&r->src, r->file.index_offset, buf, bytes, d);
    if (!err) {
        const uint64_t budget = r->limits.max_memory - r->memory_used;
        err = sqkv_parse_index_section(buf, &r->file, &r->limits, budget, &r->index, d);
        if (!err) r->memory_used += r->index.memory;
    }
    sqkv_reader_free(r, buf, bytes);
    return err;
}

sqkv_error sqkv_reader_open_callback(sqkv_reader *r, sqkv_read_at_fn read_at, void *ctx, uint64_t file_size) {
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    if (r->error) return r->error;
    if (r->opened) return sqkv_reader_fail(r, SQKV_ERR_STATE, "open: the reader already has a file open");
    if (!read_at) return sqkv_reader_fail_argument(r, "sqkv_reader_open_callback", "read_at is NULL");
    if (file_size > r->limits.max_file_size) {
        char text[160];
        snprintf(text, sizeof text, "file of %" PRIu64 " bytes exceeds the configured max_file_size %" PRIu64,
                 file_size, r->limits.max_file_size);
        return sqkv_reader_fail(r, SQKV_ERR_LIMIT, text);
    }
    r->data = NULL;
    r->size = file_size;
    if (!r->src.read_at) { /* open_fd set its own source already */
        r->src.read_at = read_at;
        r->src.ctx = ctx;
    }
    r->src.data = NULL;
    r->src.size = file_size;
    sqkv_diag d;
    uint8_t header[SQKV_HEADER_SIZE_MAX];
    memset(header, 0, sizeof header);
    sqkv_error err = read_file_header(r, header, &d);
    if (!err) err = sqkv_parse_file_header(header, file_size, &r->limits, &r->file, &d);
    if (!err) {
        uint8_t tail[SQKV_TAIL_SIZE];
        err = sqkv_source_read(&r->src, file_size - SQKV_TAIL_SIZE, tail, SQKV_TAIL_SIZE, &d);
        if (!err) err = sqkv_parse_tail_bytes(tail, &r->file, &d);
    }
    if (!err) err = read_index(r, &d);
    if (err) return sqkv_reader_fail_diag(r, err, &d);
    r->opened = 1;
    return SQKV_OK;
}

sqkv_error sqkv_reader_open_fd(sqkv_reader *r, int fd) {
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    if (r->error) return r->error;
    if (r->opened) return sqkv_reader_fail(r, SQKV_ERR_STATE, "open: the reader already has a file open");
    char text[256];
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(text, sizeof text, "fstat(fd %d): %s", fd, fd < 0 ? "not a descriptor" : strerror(errno));
        return sqkv_reader_fail(r, SQKV_ERR_IO, text);
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(text, sizeof text, "fd %d is not a regular file", fd);
        return sqkv_reader_fail(r, SQKV_ERR_IO, text);
    }
    r->src.fd = fd;
    r->src.read_at = sqkv_source_pread;
    r->src.ctx = &r->src.fd;
    return sqkv_reader_open_callback(r, sqkv_source_pread, &r->src.fd, (uint64_t)st.st_size);
}

/* ---------------------------------------------------------------------------------------------
 * Queries
 * ------------------------------------------------------------------------------------------- */

sqkv_error sqkv_reader_geometry(const sqkv_reader *r, sqkv_geometry *out) {
    sqkv_error err = const_usable(r);
    if (err) return err;
    if (!out) return SQKV_ERR_INVALID_ARGUMENT;
    out->n_layers = r->file.n_layers;
    out->n_kv_heads = r->file.n_kv_heads;
    out->head_dim = r->file.head_dim;
    out->n_tokens = r->file.n_tokens;
    out->dense_window = r->file.dense_window;
    out->value_dtype = r->file.value_dtype;
    out->source_dtype = r->file.source_dtype;
    out->required_features = r->file.required_features;
    return SQKV_OK;
}

sqkv_error sqkv_reader_version(const sqkv_reader *r, uint32_t *major, uint32_t *minor) {
    sqkv_error err = const_usable(r);
    if (err) return err;
    if (!major || !minor) return SQKV_ERR_INVALID_ARGUMENT;
    *major = r->file.version_major;
    *minor = r->file.version_minor;
    return SQKV_OK;
}

sqkv_error sqkv_reader_section_count(const sqkv_reader *r, size_t *count) {
    sqkv_error err = const_usable(r);
    if (err) return err;
    if (!count) return SQKV_ERR_INVALID_ARGUMENT;
    *count = (size_t)r->index.n_entries + 1;
    return SQKV_OK;
}

sqkv_error sqkv_reader_section_info(const sqkv_reader *r, size_t i, sqkv_section_info *out) {
    sqkv_error err = const_usable(r);
    if (err) return err;
    if (!out || i > r->index.n_entries) return SQKV_ERR_INVALID_ARGUMENT;
    const sqkv_entry *e = i < r->index.n_entries ? &r->index.entries[i] : &r->index.self;
    out->offset = e->offset;
    out->stored_size = e->stored_size;
    out->kind = e->kind;
    out->tensor = e->tensor;
    out->layer = e->layer;
    out->head_start = e->head_start;
    out->head_count = e->head_count;
    out->token_start = e->token_start;
    out->token_count = e->token_count;
    return SQKV_OK;
}

static uint32_t search_head(const sqkv_tensor_ref *refs, uint32_t lo, uint32_t hi, uint32_t head, int strictly) {
    while (lo < hi) {
        const uint32_t mid = lo + (hi - lo) / 2;
        const uint32_t hs = sqkv_ref_head_start(&refs[mid]);
        if (hs < head || (strictly && hs == head))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void sqkv_reader_head_sections(const sqkv_reader *r, uint32_t layer, uint32_t tensor, uint32_t head, uint32_t *first,
                               uint32_t *end) {
    const sqkv_tensor_ref *refs = r->index.tensors;
    const uint32_t lo = r->index.lt_first[2 * layer + tensor], hi = r->index.lt_first[2 * layer + tensor + 1];
    /* Coverage guarantees a group of sections whose head range starts at or before `head` and holds it. */
    const uint32_t after = search_head(refs, lo, hi, head, 1);
    const uint32_t group_start = sqkv_ref_head_start(&refs[after - 1]);
    *first = search_head(refs, lo, after, group_start, 0);
    *end = after;
}

/* ---------------------------------------------------------------------------------------------
 * Decode
 * ------------------------------------------------------------------------------------------- */

static int valid_output_dtype(sqkv_dtype d) {
    return d == SQKV_DTYPE_FP16 || d == SQKV_DTYPE_BF16 || d == SQKV_DTYPE_FP32;
}

/* Decodes the heads [lo, hi) that section `entry` holds into out (head lo at out). */
static sqkv_error decode_section(sqkv_reader *r, uint32_t entry, uint32_t lo, uint32_t hi, sqkv_dtype dtype,
                                 uint8_t *out, size_t head_stride, sqkv_sparse_view *view) {
    const sqkv_entry *e = &r->index.entries[entry];
    uint8_t *dst = out + (size_t)e->token_start * r->file.head_dim * sqkv_dtype_size(dtype);
    sqkv_diag d;
    sqkv_error err;
    if (e->kind == SQKV_KIND_SPARSE) {
        if ((err = sqkv_reader_sparse(r, entry, 0, view))) return err;
        err = sqkv_sparse_decode(view, lo - e->head_start, hi - lo, dtype, dst, head_stride, &d);
    } else {
        sqkv_section_header h;
        const uint8_t *body;
        if ((err = sqkv_reader_section(r, entry, 0, &h, &body))) return err;
        err = sqkv_dense_validate(body, &h, r->file.head_dim, r->file.value_dtype, &d);
        if (!err)
            err = sqkv_dense_decode(body, &h, r->file.head_dim, r->file.value_dtype, lo - e->head_start, hi - lo, dtype,
                                    dst, head_stride, &d);
    }
    return err ? sqkv_reader_fail_section(r, err, &d, entry) : SQKV_OK;
}

sqkv_error sqkv_reader_decode(sqkv_reader *r, uint32_t layer, sqkv_tensor tensor, uint32_t head_start,
                              uint32_t head_count, sqkv_dtype dtype, void *out, size_t out_size) {
    static const char fn[] = "sqkv_reader_decode";
    if (!r) return SQKV_ERR_INVALID_ARGUMENT;
    sqkv_error err = sqkv_reader_usable(r, fn);
    if (err) return err;
    const sqkv_file_info *f = &r->file;
    if (layer >= f->n_layers) return sqkv_reader_fail_argument(r, fn, "layer >= n_layers");
    if (tensor != SQKV_TENSOR_K && tensor != SQKV_TENSOR_V) return sqkv_reader_fail_argument(r, fn, "tensor is neither K nor V");
    if (head_count == 0 || head_start >= f->n_kv_heads || head_count > f->n_kv_heads - head_start)
        return sqkv_reader_fail_argument(r, fn, "heads outside [0, n_kv_heads) or none");
    if (!valid_output_dtype(dtype)) return sqkv_reader_fail_argument(r, fn, "dtype is not FP16, BF16 or FP32");
    if (!out) return sqkv_reader_fail_argument(r, fn, "out is NULL");
    /* At most 2^10 * 2^28 * 2^10 * 4 bytes: no overflow in 64 bits. */
    const uint64_t head_bytes = (uint64_t)f->n_tokens * f->head_dim * sqkv_dtype_size(dtype);
    if ((uint64_t)head_count * head_bytes > (uint64_t)out_size)
        return sqkv_reader_fail(r, SQKV_ERR_BUFFER_TOO_SMALL, "sqkv_reader_decode: out_size is smaller than"
                                " sqkv_dense_size(head_count, n_tokens, head_dim, dtype)");

    sqkv_sparse_view *view = sqkv_reader_alloc(r, sizeof *view); /* ~8 KiB, counted in max_memory */
    if (!view) return r->error;
    const uint32_t end_head = head_start + head_count;
    uint32_t pos, group_end;
    sqkv_reader_head_sections(r, layer, (uint32_t)tensor, head_start, &pos, &group_end);
    const uint32_t lt_end = r->index.lt_first[2 * layer + (uint32_t)tensor + 1];
    for (; pos < lt_end && !err; pos++) {
        const sqkv_tensor_ref *ref = &r->index.tensors[pos];
        const uint32_t hs = sqkv_ref_head_start(ref), hc = sqkv_ref_head_count(ref);
        if (hs >= end_head) break;
        const uint32_t lo = hs > head_start ? hs : head_start, hi = hs + hc < end_head ? hs + hc : end_head;
        err = decode_section(r, ref->entry, lo, hi, dtype, (uint8_t *)out + (size_t)(lo - head_start) * head_bytes,
                             (size_t)head_bytes, view);
    }
    sqkv_reader_free(r, view, sizeof *view);
    return err;
}
