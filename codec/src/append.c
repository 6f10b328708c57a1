/* append.c: growing a cache file in place (sqkv.h sqkv_append, spec/FORMAT.md §9.1).
 *
 * The new segment is made by a writer whose geometry is the part of the cache that changes: the old
 * dense window (exact E values read from its DENSE sections) followed by the new tokens, with the same
 * window length. Its SPARSE sections are the tokens that leave the window, its DENSE sections the new
 * window; token_base shifts their coordinates to the file's. The writer streams them to the end of the
 * file through sqkv_stream_out, which also carries the new index: the old entries (with the sections the
 * new ones replace marked SUPERSEDED), the old INDEX section, then the new sections.
 *
 * Order of writes, for crash safety: new sections, fdatasync, INDEX section (its last 16 bytes are the
 * new tail), fsync. Until the tail is durable the file's last bytes are not a valid tail, so readers
 * refuse it and sqkv_recover finds the old file as a prefix; the old bytes are never written. */
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

#include "decode_dense.h"
#include "elements.h"
#include "format.h"
#include "reader_internal.h"
#include "section_check.h"
#include "stream_out.h"

typedef struct append_job {
    const char *path;
    char *detail;
    size_t detail_size;
    int fd;
    uint64_t old_size;
    int wrote;       /* bytes may have been written after old_size */
    sqkv_reader *r;
    sqkv_writer *w;
    sqkv_stream_out out;
    uint16_t *kbuf, *vbuf;
} append_job;

static sqkv_error say(append_job *j, sqkv_error err, const char *fmt, ...) SQKV_PRINTF_LIKE(3, 4);
static sqkv_error say(append_job *j, sqkv_error err, const char *fmt, ...) {
    if (j->detail && j->detail_size) {
        int n = snprintf(j->detail, j->detail_size, "%s: %s: ", sqkv_error_name(err), j->path ? j->path : "(null)");
        if (n < 0 || (size_t)n >= j->detail_size) n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->detail + n, j->detail_size - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* write function of the stream: pwrite at the end of the file. */
typedef struct file_sink {
    int fd;
    uint64_t offset;
    int errnum;
} file_sink;

static int sink_pwrite(void *ctx, const void *data, size_t size) {
    file_sink *s = (file_sink *)ctx;
    const uint8_t *p = (const uint8_t *)data;
    while (size > 0) {
        const size_t piece = size < ((size_t)1 << 30) ? size : ((size_t)1 << 30);
        const ssize_t n = pwrite(s->fd, p, piece, (off_t)s->offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            s->errnum = n < 0 ? errno : ENOSPC;
            return -1;
        }
        p += n;
        size -= (size_t)n;
        s->offset += (uint64_t)n;
    }
    return 0;
}

/* The file's head grouping must be one size for all (layer, tensor), as sqkv_writer lays it out:
 * groups [g * hps, min(H, (g + 1) * hps)). */
static sqkv_error head_grouping(append_job *j, uint32_t *hps) {
    const sqkv_reader *r = j->r;
    const sqkv_index *idx = &r->index;
    const uint32_t H = r->file.n_kv_heads;
    *hps = idx->entries[idx->tensors[0].entry].head_count;
    for (uint32_t i = 0; i < idx->n_tensors; i++) {
        const sqkv_entry *e = &idx->entries[idx->tensors[i].entry];
        const uint32_t want = H - e->head_start < *hps ? H - e->head_start : *hps;
        if (e->head_start % *hps != 0 || e->head_count != want)
            return say(j, SQKV_ERR_UNSUPPORTED, "section %" PRIu32 " holds heads [%" PRIu32 ", %" PRIu64 "): the file's"
                       " sections do not group heads by one size (%" PRIu32 "), which appending needs",
                       idx->tensors[i].entry, e->head_start, (uint64_t)e->head_start + e->head_count, *hps);
    }
    return SQKV_OK;
}

/* Which existing sections the append replaces: the dense window's DENSE sections and the TOKENS section. */
static int replaced(const sqkv_entry *e) {
    return !e->superseded && (e->kind == SQKV_KIND_DENSE || e->kind == SQKV_KIND_TOKENS);
}

static sqkv_section_header header_of(const sqkv_entry *e) {
    sqkv_section_header h;
    memset(&h, 0, sizeof h);
    h.kind = e->kind;
    h.tensor = e->tensor;
    h.layer = e->layer;
    h.head_start = e->head_start;
    h.head_count = e->head_count;
    h.token_start = e->token_start;
    h.token_count = e->token_count;
    h.stored_size = e->stored_size;
    return h;
}

/* The old entries, updated, and the old INDEX section, all at the start of the new index. */
static sqkv_error carry_old_entries(append_job *j) {
    const sqkv_index *idx = &j->r->index;
    for (uint32_t i = 0; i < idx->n_entries; i++) {
        const sqkv_entry *e = &idx->entries[i];
        const sqkv_section_header h = header_of(e);
        const uint8_t flags = (e->superseded || replaced(e)) ? SQKV_ENTRY_SUPERSEDED : 0;
        sqkv_error err = sqkv_stream_out_entry(&j->out, &h, e->offset, flags);
        if (err) return err;
    }
    const sqkv_section_header self = header_of(&idx->self);
    return sqkv_stream_out_entry(&j->out, &self, idx->self.offset, SQKV_ENTRY_SUPERSEDED);
}

/* The writer's error, with its detail. */
static sqkv_error writer_error(append_job *j, sqkv_error err) {
    return say(j, err, "%s", sqkv_writer_error_detail(j->w));
}

static sqkv_error reader_error(append_job *j, sqkv_error err) {
    return say(j, err, "%s", sqkv_reader_error_detail(j->r));
}

/* E rows [0, W) of every head of (layer, tensor): the stored dense window, read from its DENSE
 * sections (checked like any section read). rows is [H][W + a][D]. */
static sqkv_error load_window(append_job *j, uint32_t layer, uint32_t tensor, uint16_t *rows, uint64_t head_stride) {
    sqkv_reader *r = j->r;
    const sqkv_file_info *f = &r->file;
    const uint32_t lo = r->index.lt_first[2 * layer + tensor], hi = r->index.lt_first[2 * layer + tensor + 1];
    for (uint32_t pos = lo; pos < hi; pos++) {
        const uint32_t entry = r->index.tensors[pos].entry;
        const sqkv_entry *e = &r->index.entries[entry];
        if (e->kind != SQKV_KIND_DENSE) continue;
        sqkv_section_header h;
        const uint8_t *body;
        sqkv_error err = sqkv_reader_section(r, entry, 0, &h, &body);
        if (err) return reader_error(j, err);
        sqkv_diag d;
        if ((err = sqkv_dense_validate(body, &h, f->head_dim, f->value_dtype, &d))) {
            sqkv_reader_fail_section(r, err, &d, entry);
            return reader_error(j, err);
        }
        /* The body is [head_count][dense_window][head_dim] little-endian E values (§8). */
        const uint64_t row_bytes = (uint64_t)f->dense_window * f->head_dim * 2;
        for (uint32_t i = 0; i < e->head_count; i++)
            memcpy(rows + (uint64_t)(e->head_start + i) * head_stride, body + i * row_bytes, (size_t)row_bytes);
    }
    return SQKV_OK;
}

/* The new tokens of one tensor, converted to E, into rows [W, W + a) of every head. */
static sqkv_error convert_new(append_job *j, uint32_t layer, const char *name, sqkv_dtype dtype, const void *src,
                              uint32_t new_tokens, uint16_t *rows, uint64_t head_stride) {
    const sqkv_file_info *f = &j->r->file;
    const uint64_t per_head = (uint64_t)new_tokens * f->head_dim;
    const size_t in_size = dtype == SQKV_DTYPE_FP32 ? 4 : 2;
    for (uint32_t h = 0; h < f->n_kv_heads; h++) {
        uint64_t bad = 0;
        const sqkv_error err = sqkv_elements_convert(dtype, f->value_dtype, (const uint8_t *)src + h * per_head * in_size,
                                                     per_head, rows + h * head_stride + (uint64_t)f->dense_window * f->head_dim,
                                                     &bad);
        if (err)
            return say(j, err, "layer %" PRIu32 " %s head %" PRIu32 " new token %" PRIu64 " channel %" PRIu64 ": %s",
                       layer, name, h, bad / f->head_dim, bad % f->head_dim,
                       err == SQKV_ERR_NONFINITE_INPUT ? "NaN or infinity in the input"
                                                       : "input value out of range of the element type");
    }
    return SQKV_OK;
}

/* The new TOKENS section: the old ids, then the new ones. */
static sqkv_error write_tokens(append_job *j, uint32_t new_tokens, const int32_t *ids) {
    sqkv_reader *r = j->r;
    const uint64_t old = r->file.n_tokens, total = old + new_tokens;
    const uint64_t bytes = total * sizeof(int32_t);
    int32_t *all = (int32_t *)sqkv_reader_alloc(r, bytes);
    if (!all) return reader_error(j, r->error);
    size_t count = 0;
    sqkv_error err = sqkv_reader_tokens(r, all, (size_t)old, &count);
    if (err) {
        sqkv_reader_free(r, all, bytes);
        return reader_error(j, err);
    }
    memcpy(all + old, ids, (size_t)new_tokens * sizeof(int32_t));
    sqkv_section_blob blob;
    memset(&blob, 0, sizeof blob);
    err = sqkv_encode_tokens_section(all, (size_t)total, &blob);
    sqkv_reader_free(r, all, bytes);
    if (err) return say(j, err, "out of memory for the TOKENS section");
    if ((err = sqkv_writer_compress(j->w, &blob))) {
        sqkv_blob_free(&blob);
        return writer_error(j, err);
    }
    j->wrote = 1;
    err = sqkv_stream_out_section(&j->out, &blob);
    sqkv_blob_free(&blob);
    return err == SQKV_ERR_IO ? say(j, err, "write failed: %s", strerror(((file_sink *)j->out.ctx)->errnum)) : err;
}

static sqkv_error open_and_check(append_job *j, const sqkv_limits *limits) {
    j->fd = open(j->path, O_RDWR | O_CLOEXEC);
    if (j->fd < 0) return say(j, SQKV_ERR_IO, "open: %s", strerror(errno));
    if (flock(j->fd, LOCK_EX | LOCK_NB) != 0)
        return say(j, SQKV_ERR_IO, "flock: %s (another process appends to or repairs this file)", strerror(errno));
    struct stat st;
    if (fstat(j->fd, &st) != 0) return say(j, SQKV_ERR_IO, "fstat: %s", strerror(errno));
    j->old_size = (uint64_t)st.st_size;
    sqkv_error err = sqkv_reader_create(limits, 0, &j->r);
    if (err) return say(j, err, "cannot create a reader");
    if ((err = sqkv_reader_open_fd(j->r, j->fd))) {
        say(j, err, "%s", sqkv_reader_error_detail(j->r));
        if (err == SQKV_ERR_BAD_TAIL || err == SQKV_ERR_TRUNCATED || err == SQKV_ERR_SECTION_LAYOUT) {
            const size_t used = j->detail ? strlen(j->detail) : 0;
            if (j->detail && used + 1 < j->detail_size)
                snprintf(j->detail + used, j->detail_size - used, " (an interrupted append? sqkv_recover restores the"
                         " previous state)");
        }
        return err;
    }
    /* The last append's sections (written after the previous INDEX) are the ones a crash could have left
     * torn behind a durable tail; check them before building on them. */
    const uint64_t prev = j->r->file.previous_index_offset;
    if (prev) {
        uint32_t first = 0;
        while (first < j->r->index.n_entries && j->r->index.entries[first].offset <= prev) first++;
        if ((err = sqkv_reader_verify_from(j->r, first))) return reader_error(j, err);
    }
    return SQKV_OK;
}

static sqkv_error append_segment(append_job *j, const sqkv_geometry *expected, const sqkv_writer_options *opts,
                                 uint32_t new_tokens,
                                 const int32_t *token_ids, sqkv_dtype dtype, const void *const *k,
                                 const void *const *v) {
    sqkv_reader *r = j->r;
    const sqkv_file_info *f = &r->file;
    if (expected->n_layers != f->n_layers || expected->n_kv_heads != f->n_kv_heads || expected->head_dim != f->head_dim)
        return say(j, SQKV_ERR_GEOMETRY_MISMATCH, "the caller's k and v are %" PRIu32 " layers x %" PRIu32 " heads x"
                   " head_dim %" PRIu32 ", the file's cache %" PRIu32 " x %" PRIu32 " x %" PRIu32, expected->n_layers,
                   expected->n_kv_heads, expected->head_dim, f->n_layers, f->n_kv_heads, f->head_dim);
    if ((uint64_t)f->n_tokens + new_tokens > SQKV_MAX_TOKENS || f->n_tokens + new_tokens > r->limits.max_tokens)
        return say(j, SQKV_ERR_LIMIT, "%" PRIu32 " + %" PRIu32 " tokens exceed the format's 2^28 or the configured"
                   " max_tokens", f->n_tokens, new_tokens);
    const int has_tokens = r->index.tokens != SQKV_NO_SECTION;
    if (has_tokens != (token_ids != NULL))
        return say(j, SQKV_ERR_INVALID_ARGUMENT, has_tokens ? "the file has a TOKENS section: token_ids are required"
                                                            : "the file has no TOKENS section: token_ids must be NULL");
    /* §9.1: the header is never rewritten, so new sections may use only the features it declares. */
    const uint32_t missing = sqkv_features_of_options(opts) & ~f->required_features;
    if (missing)
        return say(j, SQKV_ERR_UNSUPPORTED, "the options need format 1.1 features the file header does not declare"
                   " (%s%s%s; spec §4.1, §9.1); write a new file instead",
                   missing & SQKV_FEATURE_CODE_WIDTHS ? "CODE_WIDTHS " : "",
                   missing & SQKV_FEATURE_HALF_TILE_SCALES ? "HALF_TILE_SCALES " : "",
                   missing & SQKV_FEATURE_ALL_KEPT ? "ALL_KEPT " : "");
    uint32_t hps;
    sqkv_error err = head_grouping(j, &hps);
    if (err) return err;

    sqkv_writer_options o = *opts;
    o.heads_per_section = hps;
    const uint32_t W = f->dense_window;
    sqkv_geometry g;
    memset(&g, 0, sizeof g);
    g.n_layers = f->n_layers;
    g.n_kv_heads = f->n_kv_heads;
    g.head_dim = f->head_dim;
    g.n_tokens = W + new_tokens;
    g.dense_window = W;
    g.value_dtype = f->value_dtype;
    if ((err = sqkv_writer_create(&g, &o, &j->w)))
        return say(j, err, "the new sections cannot be laid out with these options (%s)",
                   err == SQKV_ERR_LIMIT ? "too many sections or elements per section" : "invalid geometry");
    sqkv_writer_set_token_base(j->w, f->sparse_tokens);

    const uint64_t new_sections = sqkv_writer_tensor_section_count(j->w) + (uint64_t)has_tokens;
    const uint64_t entries = (uint64_t)r->index.n_entries + 1 + new_sections;
    if (entries + 1 > SQKV_MAX_SECTIONS || entries + 1 > r->limits.max_sections)
        return say(j, SQKV_ERR_LIMIT, "the file would have %" PRIu64 " sections, more than the format's 2^20 or the"
                   " configured max_sections", entries + 1);
    file_sink *sink = (file_sink *)calloc(1, sizeof *sink);
    if (!sink) return say(j, SQKV_ERR_OUT_OF_MEMORY, "out of memory");
    sink->fd = j->fd;
    sink->offset = j->old_size;
    if ((err = sqkv_stream_out_init(&j->out, sink_pwrite, sink, j->old_size, entries))) {
        free(sink);
        return say(j, err, "out of memory for the index");
    }
    if ((err = carry_old_entries(j))) return say(j, err, "internal: the index has no room for the old entries");
    sqkv_writer_attach_stream(j->w, &j->out);

    if (has_tokens && (err = write_tokens(j, new_tokens, token_ids))) return err;

    const uint64_t head_stride = (uint64_t)g.n_tokens * g.head_dim;
    const uint64_t elements = head_stride * g.n_kv_heads;
    if (elements > SIZE_MAX / sizeof(uint16_t)) return say(j, SQKV_ERR_LIMIT, "the layer buffers do not fit in memory");
    j->kbuf = (uint16_t *)malloc((size_t)elements * sizeof(uint16_t));
    j->vbuf = (uint16_t *)malloc((size_t)elements * sizeof(uint16_t));
    if (!j->kbuf || !j->vbuf) return say(j, SQKV_ERR_OUT_OF_MEMORY, "out of memory for the layer buffers");
    for (uint32_t l = 0; l < f->n_layers; l++) {
        if (!k[l] || !v[l]) return say(j, SQKV_ERR_INVALID_ARGUMENT, "k[%" PRIu32 "] or v[%" PRIu32 "] is NULL", l, l);
        if ((err = load_window(j, l, 0, j->kbuf, head_stride)) || (err = load_window(j, l, 1, j->vbuf, head_stride)))
            return err;
        if ((err = convert_new(j, l, "K", dtype, k[l], new_tokens, j->kbuf, head_stride)) ||
            (err = convert_new(j, l, "V", dtype, v[l], new_tokens, j->vbuf, head_stride)))
            return err;
        j->wrote = 1;
        if ((err = sqkv_writer_add_layer(j->w, l, f->value_dtype, j->kbuf, j->vbuf))) {
            if (err == SQKV_ERR_IO) return say(j, err, "write failed: %s", strerror(sink->errnum));
            return writer_error(j, err);
        }
    }
    if (fdatasync(j->fd) != 0) return say(j, SQKV_ERR_IO, "fdatasync: %s", strerror(errno));
    if ((err = sqkv_stream_out_index(&j->out, f->n_tokens + new_tokens, W, r->index.self.offset))) {
        if (err == SQKV_ERR_IO) return say(j, err, "write failed: %s", strerror(sink->errnum));
        return say(j, err, "out of memory for the INDEX section");
    }
    if (fsync(j->fd) != 0) return say(j, SQKV_ERR_IO, "fsync: %s", strerror(errno));
    return SQKV_OK;
}

sqkv_error sqkv_append(const char *path, const sqkv_geometry *expected, const sqkv_writer_options *opts,
                       const sqkv_limits *limits, uint32_t new_tokens, const int32_t *token_ids, sqkv_dtype dtype, const void *const *k,
                       const void *const *v, char *detail, size_t detail_size) {
    append_job j;
    memset(&j, 0, sizeof j);
    j.path = path;
    j.detail = detail;
    j.detail_size = detail_size;
    j.fd = -1;
    if (detail && detail_size) detail[0] = '\0';
    if (!path || !expected || !opts || !k || !v)
        return say(&j, SQKV_ERR_INVALID_ARGUMENT, "path, expected, opts, k or v is NULL");
    if (new_tokens == 0) return say(&j, SQKV_ERR_INVALID_ARGUMENT, "new_tokens is 0");
    if (dtype != SQKV_DTYPE_FP16 && dtype != SQKV_DTYPE_BF16 && dtype != SQKV_DTYPE_FP32)
        return say(&j, SQKV_ERR_INVALID_ARGUMENT, "dtype must be FP16, BF16 or FP32 (got %d)", (int)dtype);
    char why[SQKV_WRITER_DETAIL_SIZE];
    sqkv_error err = sqkv_writer_check_options(opts, why, sizeof why);
    if (err) return say(&j, err, "%s", why);

    err = open_and_check(&j, limits);
    if (!err) err = append_segment(&j, expected, opts, new_tokens, token_ids, dtype, k, v);
    if (err && j.wrote && j.fd >= 0) {
        /* Best effort: give the file its old length back (its old bytes were never touched). */
        if (ftruncate(j.fd, (off_t)j.old_size) == 0) (void)fsync(j.fd);
    }
    free(j.out.ctx);
    sqkv_stream_out_free(&j.out);
    free(j.kbuf);
    free(j.vbuf);
    if (j.w) {
        sqkv_writer_attach_stream(j.w, NULL); /* the stream is ours, not the writer's */
        sqkv_writer_destroy(j.w);
    }
    sqkv_reader_destroy(j.r);
    if (j.fd >= 0) close(j.fd); /* releases the lock */
    return err;
}
