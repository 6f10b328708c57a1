/* stream_decoder.c: the streaming decoder of sqkv.h (spec/FORMAT.md §2 "On the wire").
 *
 * Bytes are consumed by a small state machine: the file header, then each section's 64-byte header
 * (checked at once, so that a section that breaks a header rule, exceeds a limit or overlaps what
 * arrived is refused before its body is buffered), then its body, buffered in one reusable buffer (or
 * used in place when the caller's chunk holds the whole section). A complete section goes through
 * exactly the checks a random-access reader applies (section_check.h, codec_streams.h, the body rules)
 * before anything is delivered.
 *
 * Coverage (§6) is tracked per (layer, tensor) on the head grid: the first section of a head range
 * fixes its group, later sections must match it; each group counts the tokens delivered and, when the
 * count reaches n_tokens, its sections are sorted and checked to partition [0, n_tokens) exactly. So a
 * layer is declared complete only when it provably is, and overlaps are caught by the count. The INDEX
 * section must then list exactly the sections that arrived. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "codec_streams.h"
#include "decode_ancillary.h"
#include "decode_dense.h"
#include "decode_sparse.h"
#include "element_convert.h"
#include "format.h"
#include "parse_header.h"
#include "parse_index.h"
#include "reader_limits.h"
#include "section_check.h"
#include "sqkv.h"

#define UNSET UINT32_MAX

enum stream_state { ST_FILE_HEADER, ST_SECTION_HEADER, ST_SECTION_BODY, ST_AFTER_INDEX };

/* Per (layer, tensor, head). group/complete are kept for every head; count, tokens and first are
 * meaningful at a group's first head only. */
typedef struct head_state {
    uint32_t group;  /* head_start of the head's group, UNSET before its first section */
    uint32_t count;  /* the group's head_count */
    uint32_t tokens; /* tokens delivered for the group */
    uint32_t first;  /* the group's most recent section (a list through seen_section.next) */
    uint8_t complete;
} head_state;

typedef struct seen_section {
    sqkv_entry e;
    uint32_t next; /* previous section of the same head group, UNSET at the end */
} seen_section;

struct sqkv_stream_decoder {
    sqkv_limits limits;
    unsigned flags;
    sqkv_dtype out_dtype;
    sqkv_stream_callbacks cb;
    sqkv_stream_destination_fn destination;
    sqkv_error error;
    char detail[768];
    int finished;
    enum stream_state state;
    uint64_t position; /* bytes consumed */
    uint64_t verified; /* end of the last verified part */
    uint64_t memory_used;

    uint8_t header[SQKV_HEADER_SIZE_MAX];
    uint32_t header_have, header_need;
    int header_ok;
    sqkv_file_info file;
    sqkv_geometry geometry;

    uint8_t sec_header[SQKV_SECTION_HEADER_SIZE];
    uint32_t sec_header_have;
    sqkv_section_header cur;
    uint64_t cur_offset, cur_extent, cur_have;

    uint8_t *buf;     /* the section being received */
    uint64_t buf_size;
    uint8_t *scratch; /* codec 1: its decoded body */
    uint64_t scratch_size;
    uint8_t *out;     /* decoded to out_dtype */
    uint64_t out_size;
    sqkv_sparse_view *view;
    void *zstd;

    seen_section *seen;
    uint32_t n_seen, seen_cap;
    head_state *heads;          /* [layer][tensor][head] */
    uint32_t *layer_heads_done; /* per layer: heads of K and V in complete groups */
    uint32_t layers_complete;
    uint8_t have_tokens, have_fingerprint, have_metadata;
    uint64_t sections_verified;
    int index_ok;

    uint8_t trail[SQKV_SECTION_HEADER_SIZE];
    uint32_t trail_have;
};

/* ---- errors and memory --------------------------------------------------------------------------- */

static sqkv_error fail(sqkv_stream_decoder *d, sqkv_error err, const char *fmt, ...) SQKV_PRINTF_LIKE(3, 4);
static sqkv_error fail(sqkv_stream_decoder *d, sqkv_error err, const char *fmt, ...) {
    if (d->error) return d->error;
    d->error = err;
    int n = snprintf(d->detail, sizeof d->detail, "%s: ", sqkv_error_name(err));
    if (n < 0 || (size_t)n >= sizeof d->detail) n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->detail + n, sizeof d->detail - (size_t)n, fmt, ap);
    va_end(ap);
    return err;
}

/* A section's failure: names it (number, kind, coordinates) and where it starts in the stream. */
static sqkv_error fail_section(sqkv_stream_decoder *d, sqkv_error err, sqkv_diag *diag, const sqkv_entry *e) {
    sqkv_diag_section(diag, d->n_seen, e);
    return fail(d, err, "at stream offset %" PRIu64 ", %s", e->offset, diag->text);
}

static void *dalloc(sqkv_stream_decoder *d, uint64_t bytes) {
    if (bytes > d->limits.max_memory - d->memory_used || bytes > SIZE_MAX) {
        fail(d, SQKV_ERR_LIMIT, "%" PRIu64 " more bytes would exceed the configured max_memory %" PRIu64
             " (%" PRIu64 " in use)", bytes, d->limits.max_memory, d->memory_used);
        return NULL;
    }
    void *p = malloc(bytes ? (size_t)bytes : 1);
    if (!p) {
        fail(d, SQKV_ERR_OUT_OF_MEMORY, "malloc of %" PRIu64 " bytes failed", bytes);
        return NULL;
    }
    d->memory_used += bytes;
    return p;
}

static void dfree(sqkv_stream_decoder *d, void *p, uint64_t bytes) {
    if (!p) return;
    free(p);
    d->memory_used -= bytes;
}

/* A buffer of at least `need` bytes, reused from one section to the next. */
static uint8_t *ensure(sqkv_stream_decoder *d, uint8_t **buf, uint64_t *size, uint64_t need) {
    if (*size >= need) return *buf;
    dfree(d, *buf, *size);
    *buf = NULL;
    *size = 0;
    if (!(*buf = (uint8_t *)dalloc(d, need))) return NULL;
    *size = need;
    return *buf;
}

static int valid_out_dtype(sqkv_dtype t) {
    return t == 0 || t == SQKV_DTYPE_FP16 || t == SQKV_DTYPE_BF16 || t == SQKV_DTYPE_FP32;
}

/* ---- life cycle ---------------------------------------------------------------------------------- */

sqkv_error sqkv_stream_decoder_create(const sqkv_limits *limits, unsigned flags, sqkv_dtype output_dtype,
                                      const sqkv_stream_callbacks *callbacks, sqkv_stream_decoder **out) {
    if (!out) return SQKV_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if ((flags & ~SQKV_READER_TRUSTED) || !valid_out_dtype(output_dtype)) return SQKV_ERR_INVALID_ARGUMENT;
    sqkv_stream_decoder *d = (sqkv_stream_decoder *)calloc(1, sizeof *d);
    if (!d) return SQKV_ERR_OUT_OF_MEMORY;
    sqkv_limits_effective(limits, &d->limits);
    d->flags = flags;
    d->out_dtype = output_dtype;
    if (callbacks) d->cb = *callbacks;
    d->state = ST_FILE_HEADER;
    d->header_need = SQKV_HEADER_SIZE_V1;
    *out = d;
    return SQKV_OK;
}

void sqkv_stream_decoder_destroy(sqkv_stream_decoder *d) {
    if (!d) return;
    free(d->buf);
    free(d->scratch);
    free(d->out);
    free(d->view);
    free(d->seen);
    free(d->heads);
    free(d->layer_heads_done);
    ZSTD_freeDCtx((ZSTD_DCtx *)d->zstd);
    free(d);
}

const char *sqkv_stream_decoder_error_detail(const sqkv_stream_decoder *d) { return d ? d->detail : ""; }

sqkv_error sqkv_stream_decoder_set_destination(sqkv_stream_decoder *d, sqkv_stream_destination_fn destination) {
    if (!d) return SQKV_ERR_INVALID_ARGUMENT;
    if (d->error) return d->error;
    d->destination = destination;
    return SQKV_OK;
}

/* ---- file header --------------------------------------------------------------------------------- */

static sqkv_error header_done(sqkv_stream_decoder *d) {
    sqkv_diag diag;
    /* The stream's length is unknown: parse as if the file could be as long as it likes; the sizes that
     * depend on the end are checked when the INDEX section arrives. */
    sqkv_error err = sqkv_parse_file_header(d->header, UINT64_MAX, &d->limits, &d->file, &diag);
    if (err) return fail(d, err, "%s", diag.text);
    const sqkv_file_info *f = &d->file;
    const uint64_t heads = 2ull * f->n_layers * f->n_kv_heads; /* <= 2^21 */
    d->heads = (head_state *)dalloc(d, heads * sizeof *d->heads);
    d->layer_heads_done = (uint32_t *)dalloc(d, (uint64_t)f->n_layers * sizeof(uint32_t));
    d->view = (sqkv_sparse_view *)dalloc(d, sizeof *d->view);
    if (!d->heads || !d->layer_heads_done || !d->view) return d->error;
    for (uint64_t i = 0; i < heads; i++) {
        d->heads[i].group = UNSET;
        d->heads[i].count = d->heads[i].tokens = 0;
        d->heads[i].first = UNSET;
        d->heads[i].complete = 0;
    }
    memset(d->layer_heads_done, 0, (size_t)f->n_layers * sizeof(uint32_t));
    d->geometry.n_layers = f->n_layers;
    d->geometry.n_kv_heads = f->n_kv_heads;
    d->geometry.head_dim = f->head_dim;
    d->geometry.n_tokens = f->n_tokens;
    d->geometry.dense_window = f->dense_window;
    d->geometry.value_dtype = f->value_dtype;
    d->geometry.source_dtype = f->source_dtype;
    d->geometry.required_features = f->required_features;
    d->header_ok = 1;
    d->verified = f->header_size;
    d->state = ST_SECTION_HEADER;
    if (d->cb.on_header) {
        const int rc = d->cb.on_header(d->cb.ctx, &d->geometry);
        if (rc) return fail(d, SQKV_ERR_ABORTED, "on_header returned %d", rc);
    }
    return SQKV_OK;
}

/* Consumes file-header bytes; the magic is checked byte by byte so that a stream that is not SQKV is
 * refused at its first wrong byte. */
static size_t take_header(sqkv_stream_decoder *d, const uint8_t *p, size_t n) {
    const uint32_t want = d->header_need - d->header_have;
    const size_t take = n < want ? n : want;
    for (size_t i = 0; i < take; i++) {
        const uint32_t at = d->header_have + (uint32_t)i;
        if (at < SQKV_MAGIC_SIZE && p[i] != sqkv_magic[at]) {
            fail(d, SQKV_ERR_BAD_MAGIC, "file header: bad magic at byte %" PRIu32 " (§4: 89 53 51 4B 56 0D 0A 1A)", at);
            return i + 1;
        }
    }
    memcpy(d->header + d->header_have, p, take);
    d->header_have += (uint32_t)take;
    if (d->header_have == d->header_need && d->header_need == SQKV_HEADER_SIZE_V1) {
        /* Longer headers (a later minor version) announce their size; anything invalid is left to the
         * parser, which reports it in the order of §4. */
        const uint32_t hs = sqkv_load_u32(d->header + SQKV_HDR_HEADER_SIZE);
        if (hs > SQKV_HEADER_SIZE_V1 && hs <= SQKV_HEADER_SIZE_MAX && hs % 8 == 0 &&
            sqkv_load_u16(d->header + SQKV_HDR_VERSION_MAJOR) == SQKV_FORMAT_VERSION_MAJOR)
            d->header_need = hs;
    }
    if (d->header_have == d->header_need) header_done(d);
    return take;
}

/* ---- coverage bookkeeping ------------------------------------------------------------------------ */

static head_state *heads_of(const sqkv_stream_decoder *d, uint32_t layer, uint32_t tensor) {
    return d->heads + ((uint64_t)layer * 2 + tensor) * d->file.n_kv_heads;
}

/* The §6 rules one tensor section can break against what arrived before it (nothing is changed). */
static sqkv_error check_placement(sqkv_stream_decoder *d, const sqkv_entry *e, sqkv_diag *diag) {
    const uint32_t S = d->file.sparse_tokens;
    const uint64_t end = (uint64_t)e->token_start + e->token_count;
    if (e->token_start < S && end > S)
        return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "it crosses the start of the dense window (§6)");
    if (end <= S && e->kind != SQKV_KIND_SPARSE)
        return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "a section inside the sparse region must be SPARSE (§6)");
    if (e->token_start >= S && e->kind != SQKV_KIND_DENSE)
        return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "a section inside the dense window must be DENSE (§6)");
    const head_state *hs = heads_of(d, e->layer, e->tensor);
    const head_state *g = &hs[e->head_start];
    if (g->group == UNSET) {
        for (uint32_t h = e->head_start; h < e->head_start + e->head_count; h++)
            if (hs[h].group != UNSET)
                return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "its heads overlap another section's (§6)");
        return SQKV_OK;
    }
    if (g->group != e->head_start || g->count != e->head_count)
        return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "its head range differs from the other sections of its heads"
                              " (§6: a grid)");
    if (g->complete || (uint64_t)g->tokens + e->token_count > d->file.n_tokens)
        return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "its tokens overlap another section's (§6)");
    return SQKV_OK;
}

static int compare_starts(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A group whose delivered tokens add up to n_tokens: its sections must partition [0, n_tokens). */
static sqkv_error check_group(sqkv_stream_decoder *d, const head_state *g, const sqkv_entry *last, sqkv_diag *diag) {
    uint32_t n = 0;
    for (uint32_t i = g->first; i != UNSET; i = d->seen[i].next) n++;
    const uint64_t bytes = (uint64_t)n * sizeof(uint64_t);
    uint64_t *ranges = (uint64_t *)dalloc(d, bytes);
    if (!ranges) return d->error;
    uint32_t k = 0;
    for (uint32_t i = g->first; i != UNSET; i = d->seen[i].next)
        ranges[k++] = ((uint64_t)d->seen[i].e.token_start << 32) | d->seen[i].e.token_count;
    qsort(ranges, n, sizeof *ranges, compare_starts);
    uint64_t token = 0;
    int ok = 1;
    for (uint32_t i = 0; i < n && ok; i++) {
        ok = (ranges[i] >> 32) == token;
        token += ranges[i] & 0xFFFFFFFFu;
    }
    dfree(d, ranges, bytes);
    if (!ok || token != d->file.n_tokens)
        return sqkv_diag_fail(diag, SQKV_ERR_COVERAGE, "layer %" PRIu32 " tensor %s heads [%" PRIu32 ", %" PRIu64
                              "): its sections overlap and leave a gap (§6)", last->layer, last->tensor ? "V" : "K",
                              last->head_start, (uint64_t)last->head_start + last->head_count);
    return SQKV_OK;
}

/* Records a delivered tensor section (seen[idx]) in its group; completes groups and layers. */
static sqkv_error account_tensor(sqkv_stream_decoder *d, uint32_t idx) {
    const sqkv_entry *e = &d->seen[idx].e;
    head_state *hs = heads_of(d, e->layer, e->tensor);
    head_state *g = &hs[e->head_start];
    if (g->group == UNSET) {
        for (uint32_t h = e->head_start; h < e->head_start + e->head_count; h++) hs[h].group = e->head_start;
        g->count = e->head_count;
    }
    d->seen[idx].next = g->first;
    g->first = idx;
    g->tokens += e->token_count;
    if (g->tokens < d->file.n_tokens) return SQKV_OK;
    sqkv_diag diag;
    sqkv_error err = check_group(d, g, e, &diag);
    if (err) return d->error ? d->error : fail_section(d, err, &diag, e);
    for (uint32_t h = e->head_start; h < e->head_start + e->head_count; h++) hs[h].complete = 1;
    d->layer_heads_done[e->layer] += e->head_count;
    if (d->layer_heads_done[e->layer] == 2 * d->file.n_kv_heads) {
        d->layers_complete++;
        if (d->cb.on_layer_complete) {
            const int rc = d->cb.on_layer_complete(d->cb.ctx, e->layer);
            if (rc) return fail(d, SQKV_ERR_ABORTED, "on_layer_complete(%" PRIu32 ") returned %d", e->layer, rc);
        }
    }
    return SQKV_OK;
}

static sqkv_error remember(sqkv_stream_decoder *d, const sqkv_entry *e, uint32_t *idx) {
    if (d->n_seen == d->seen_cap) {
        const uint32_t cap = d->seen_cap ? 2 * d->seen_cap : 64;
        seen_section *grown = (seen_section *)dalloc(d, (uint64_t)cap * sizeof *grown);
        if (!grown) return d->error;
        if (d->n_seen) memcpy(grown, d->seen, (size_t)d->n_seen * sizeof *grown);
        dfree(d, d->seen, (uint64_t)d->seen_cap * sizeof *d->seen);
        d->seen = grown;
        d->seen_cap = cap;
    }
    d->seen[d->n_seen].e = *e;
    d->seen[d->n_seen].next = UNSET;
    *idx = d->n_seen++;
    return SQKV_OK;
}

/* ---- sections ------------------------------------------------------------------------------------ */

static sqkv_entry entry_of(const sqkv_section_header *h, uint64_t offset) {
    sqkv_entry e;
    memset(&e, 0, sizeof e);
    e.offset = offset;
    e.stored_size = h->stored_size;
    e.kind = h->kind;
    e.tensor = h->tensor;
    e.layer = h->layer;
    e.head_start = h->head_start;
    e.head_count = h->head_count;
    e.token_start = h->token_start;
    e.token_count = h->token_count;
    return e;
}

/* Everything the 64-byte header tells, before the body is buffered. d->cur_offset is where it starts. */
static sqkv_error begin_section(sqkv_stream_decoder *d, const uint8_t *hp) {
    sqkv_section_header h;
    sqkv_section_header_unpack(hp, &h);
    const sqkv_entry e = entry_of(&h, d->cur_offset);
    sqkv_diag diag;
    sqkv_error err = sqkv_check_section_header(hp, &d->file, &e, &d->limits, &d->cur, &diag);
    if (err) return fail_section(d, err, &diag, &e);
    /* Sections and the index together: at most max_sections. */
    const uint64_t sections = (uint64_t)d->n_seen + 1 + (h.kind == SQKV_KIND_INDEX ? 0 : 1);
    if (sections > d->limits.max_sections)
        return fail(d, SQKV_ERR_LIMIT, "at stream offset %" PRIu64 ": more than the configured %" PRIu32 " sections",
                    d->cur_offset, d->limits.max_sections);
    d->cur_extent = sqkv_section_extent(h.stored_size);
    if (d->cur_extent > d->limits.max_file_size || d->cur_offset > d->limits.max_file_size - d->cur_extent)
        return fail(d, SQKV_ERR_LIMIT, "at stream offset %" PRIu64 ": the stream would exceed the configured"
                    " max_file_size %" PRIu64, d->cur_offset, d->limits.max_file_size);
    if (sqkv_kind_is_tensor(h.kind)) {
        if ((err = check_placement(d, &e, &diag))) return fail_section(d, err, &diag, &e);
    } else if (h.kind == SQKV_KIND_INDEX) {
        const uint64_t listed = (h.stored_size - SQKV_INDEX_MIN_BODY) / SQKV_INDEX_ENTRY_SIZE;
        if (listed != d->n_seen) {
            sqkv_diag_fail(&diag, SQKV_ERR_INDEX_MISMATCH, "it lists %" PRIu64 " sections, %" PRIu32 " arrived before"
                           " it (§9)", listed, d->n_seen);
            return fail_section(d, SQKV_ERR_INDEX_MISMATCH, &diag, &e);
        }
    } else if ((h.kind == SQKV_KIND_TOKENS && d->have_tokens) || (h.kind == SQKV_KIND_FINGERPRINT && d->have_fingerprint) ||
               (h.kind == SQKV_KIND_METADATA && d->have_metadata)) {
        sqkv_diag_fail(&diag, SQKV_ERR_DUPLICATE_SECTION, "a second %s section (§6)", sqkv_kind_name(h.kind));
        return fail_section(d, SQKV_ERR_DUPLICATE_SECTION, &diag, &e);
    }
    return SQKV_OK;
}

/* Undoes codec 1 into the scratch buffer; *body is the decoded body. check_only: the stream table only. */
static sqkv_error undo_codec(sqkv_stream_decoder *d, const sqkv_section_header *h, const uint8_t *stored,
                            int check_only, const uint8_t **body, sqkv_diag *diag) {
    *body = stored;
    if (h->codec == SQKV_CODEC_NONE) return SQKV_OK;
    sqkv_stream_plan plan;
    sqkv_stream_plan_for(h, d->file.head_dim, &plan);
    sqkv_error err = sqkv_streams_check(stored, h, &plan, diag);
    if (err || check_only) return err;
    if (!d->zstd && !(d->zstd = ZSTD_createDCtx())) return fail(d, SQKV_ERR_OUT_OF_MEMORY, "ZSTD_createDCtx failed");
    if (!ensure(d, &d->scratch, &d->scratch_size, h->decoded_size)) return d->error;
    if ((err = sqkv_streams_decode(stored, &plan, d->zstd, d->scratch, diag))) return err;
    *body = d->scratch;
    return SQKV_OK;
}

static sqkv_error tensor_section(sqkv_stream_decoder *d, const sqkv_section_header *h, const uint8_t *body,
                                 const sqkv_entry *e) {
    sqkv_diag diag;
    const uint32_t D = d->file.head_dim;
    const sqkv_dtype E = d->file.value_dtype;
    sqkv_error err = h->kind == SQKV_KIND_SPARSE ? sqkv_sparse_validate(body, h, D, E, d->view, &diag)
                                                 : sqkv_dense_validate(body, h, D, E, &diag);
    if (err) return fail_section(d, err, &diag, e);
    sqkv_stream_tensor t;
    memset(&t, 0, sizeof t);
    t.layer = h->layer;
    t.tensor = (sqkv_tensor)h->tensor;
    t.kind = h->kind;
    t.head_start = h->head_start;
    t.head_count = h->head_count;
    t.token_start = h->token_start;
    t.token_count = h->token_count;
    t.dtype = d->out_dtype;
    if (d->out_dtype) {
        /* elements <= 2^32 - 1 (§3, checked with the header): the products fit easily. */
        const uint64_t head_bytes = (uint64_t)h->token_count * D * sqkv_dtype_size(d->out_dtype);
        uint64_t stride = head_bytes;
        uint8_t *dst = NULL;
        if (d->destination) {
            size_t given = 0;
            dst = (uint8_t *)d->destination(d->cb.ctx, &t, &given);
            if (dst && given < head_bytes)
                return fail(d, SQKV_ERR_INVALID_ARGUMENT, "destination gave a head_stride of %zu bytes, less than the"
                            " %" PRIu64 " bytes of a head's rows", given, head_bytes);
            if (dst) stride = given;
        }
        if (!dst) {
            if (!ensure(d, &d->out, &d->out_size, head_bytes * h->head_count)) return d->error;
            dst = d->out;
        }
        err = h->kind == SQKV_KIND_SPARSE
                  ? sqkv_sparse_decode(d->view, 0, h->head_count, d->out_dtype, dst, (size_t)stride, &diag)
                  : sqkv_dense_decode(body, h, D, E, 0, h->head_count, d->out_dtype, dst, (size_t)stride, &diag);
        if (err) return fail_section(d, err, &diag, e);
        t.data = dst;
        t.head_stride = (size_t)stride;
        t.size = (size_t)(stride * (h->head_count - 1) + head_bytes);
    }
    uint32_t idx;
    if ((err = remember(d, e, &idx))) return err;
    if (d->cb.on_tensor) {
        const int rc = d->cb.on_tensor(d->cb.ctx, &t);
        if (rc) return fail(d, SQKV_ERR_ABORTED, "on_tensor returned %d", rc);
    }
    return account_tensor(d, idx);
}

static sqkv_error ancillary_section(sqkv_stream_decoder *d, const sqkv_section_header *h, const uint8_t *body,
                                    const sqkv_entry *e) {
    sqkv_diag diag;
    sqkv_error err;
    if (h->kind == SQKV_KIND_METADATA) {
        uint32_t n;
        if ((err = sqkv_metadata_count(body, h->decoded_size, &n, &diag))) return fail_section(d, err, &diag, e);
        const uint64_t bytes = (uint64_t)n * sizeof(sqkv_metadata_entry);
        sqkv_metadata_entry *entries = (sqkv_metadata_entry *)dalloc(d, bytes);
        if (!entries) return d->error;
        err = sqkv_metadata_parse(body, h->decoded_size, n, entries, &diag);
        dfree(d, entries, bytes);
        if (err) return fail_section(d, err, &diag, e);
    }
    uint32_t idx;
    if ((err = remember(d, e, &idx))) return err;
    if (h->kind == SQKV_KIND_TOKENS) d->have_tokens = 1;
    if (h->kind == SQKV_KIND_FINGERPRINT) d->have_fingerprint = 1;
    if (h->kind == SQKV_KIND_METADATA) d->have_metadata = 1;
    if (d->cb.on_ancillary) {
        const int rc = d->cb.on_ancillary(d->cb.ctx, h->kind, body, (size_t)h->decoded_size);
        if (rc) return fail(d, SQKV_ERR_ABORTED, "on_ancillary(0x%04x) returned %d", h->kind, rc);
    }
    return SQKV_OK;
}

static const char *entry_difference(const sqkv_entry *a, const sqkv_entry *b) {
    if (a->offset != b->offset) return "offset";
    if (a->stored_size != b->stored_size) return "stored_size";
    if (a->kind != b->kind) return "kind";
    if (a->tensor != b->tensor) return "tensor";
    if (a->layer != b->layer) return "layer";
    if (a->head_start != b->head_start) return "head_start";
    if (a->head_count != b->head_count) return "head_count";
    if (a->token_start != b->token_start) return "token_start";
    if (a->token_count != b->token_count) return "token_count";
    if (a->superseded != b->superseded) return "SUPERSEDED flag";
    return NULL;
}

/* The INDEX section (checked as a section already): its tail, the rules of §9 (sqkv_parse_index_section,
 * with the coverage of §6), and agreement with the sections that arrived. */
/* The tail that ends an INDEX section, checked first as a random-access reader does (it finds the index
 * through it): end magic (BAD_TAIL), then its offset, which must be the section's own. */
static sqkv_error check_tail(sqkv_stream_decoder *d, const uint8_t *section, sqkv_file_info *info, const sqkv_entry *e) {
    *info = d->file;
    info->file_size = d->cur_offset + d->cur_extent;
    sqkv_diag diag;
    sqkv_error err = sqkv_parse_tail_bytes(section + d->cur_extent - SQKV_TAIL_SIZE, info, &diag);
    if (!err && info->index_offset != d->cur_offset)
        err = sqkv_diag_fail(&diag, SQKV_ERR_SECTION_LAYOUT, "its tail's offset %" PRIu64 " is not its own offset (§9)",
                             info->index_offset);
    return err ? fail_section(d, err, &diag, e) : SQKV_OK;
}

static sqkv_error index_section(sqkv_stream_decoder *d, const uint8_t *section, sqkv_file_info *info,
                                const sqkv_entry *e) {
    sqkv_diag diag;
    sqkv_error err;
    sqkv_index idx;
    if ((err = sqkv_parse_index_section(section, info, &d->limits, d->limits.max_memory - d->memory_used, &idx, &diag)))
        return fail_section(d, err, &diag, e);
    for (uint32_t i = 0; i < idx.n_entries && !err; i++) {
        const char *field = entry_difference(&idx.entries[i], &d->seen[i].e);
        if (field) {
            sqkv_diag_fail(&diag, SQKV_ERR_INDEX_MISMATCH, "its entry %" PRIu32 " differs in %s from the section that"
                           " arrived at stream offset %" PRIu64 " (§9)", i, field, d->seen[i].e.offset);
            err = fail_section(d, SQKV_ERR_INDEX_MISMATCH, &diag, e);
        }
    }
    sqkv_index_free(&idx);
    if (err) return err;
    if (d->layers_complete != d->file.n_layers) /* the index's coverage check makes this impossible */
        return fail(d, SQKV_ERR_COVERAGE, "the INDEX is valid but only %" PRIu32 " of %" PRIu32 " layers arrived",
                    d->layers_complete, d->file.n_layers);
    d->index_ok = 1;
    return SQKV_OK;
}

/* A whole section at `section` (extent bytes): every check, then delivery. */
static sqkv_error end_section(sqkv_stream_decoder *d, const uint8_t *section) {
    const sqkv_entry e = entry_of(&d->cur, d->cur_offset);
    sqkv_entry at_start = e;
    at_start.offset = 0; /* `section` is the section itself, not the file */
    sqkv_section_header h;
    const uint8_t *stored, *body;
    sqkv_diag diag;
    sqkv_file_info info;
    sqkv_error err;
    if (d->cur.kind == SQKV_KIND_INDEX && (err = check_tail(d, section, &info, &e))) return err;
    const int checksum = !(d->flags & SQKV_READER_TRUSTED);
    if ((err = sqkv_check_section(section, &d->file, &at_start, &d->limits, checksum, &h, &stored, &diag)))
        return fail_section(d, err, &diag, &e);
    if (h.kind == SQKV_KIND_INDEX) {
        if ((err = index_section(d, section, &info, &e))) return err;
        d->state = ST_AFTER_INDEX;
    } else {
        const int known = sqkv_kind_known(h.kind);
        if ((err = undo_codec(d, &h, stored, !known, &body, &diag))) return d->error ? d->error : fail_section(d, err, &diag, &e);
        if (sqkv_kind_is_tensor(h.kind)) {
            err = tensor_section(d, &h, body, &e);
        } else if (known) {
            err = ancillary_section(d, &h, body, &e);
        } else { /* unknown ancillary kind: checked, skipped (§6) */
            uint32_t idx;
            err = remember(d, &e, &idx);
        }
        if (err) return err;
        d->state = ST_SECTION_HEADER;
    }
    d->sections_verified++;
    d->verified = d->cur_offset + d->cur_extent;
    d->sec_header_have = 0;
    d->cur_have = 0;
    return SQKV_OK;
}

/* Bytes after the INDEX section: a section header there means an appended file (§9.1). */
static size_t take_trailing(sqkv_stream_decoder *d, const uint8_t *p, size_t n) {
    const size_t want = SQKV_SECTION_HEADER_SIZE - d->trail_have;
    const size_t take = n < want ? n : want;
    memcpy(d->trail + d->trail_have, p, take);
    d->trail_have += (uint32_t)take;
    if (d->trail_have == SQKV_SECTION_HEADER_SIZE) {
        if (sqkv_checksum_ok(sqkv_load_u64(d->trail + SQKV_SEC_HEADER_CHECKSUM), d->trail, SQKV_SEC_HEADER_CHECKSUM))
            fail(d, SQKV_ERR_UNSUPPORTED, "a section follows the INDEX section at stream offset %" PRIu64 ": an appended"
                 " file (§9.1), which the streaming decoder does not decode (the cache as first written was"
                 " delivered; open the file with a sqkv_reader)", d->verified);
        else
            fail(d, SQKV_ERR_SECTION_LAYOUT, "bytes follow the INDEX section at stream offset %" PRIu64
                 " (§2: the INDEX section ends the file)", d->verified);
    }
    return take;
}

/* ---- push / finish ------------------------------------------------------------------------------- */

sqkv_error sqkv_stream_decoder_push(sqkv_stream_decoder *d, const void *data, size_t size) {
    if (!d) return SQKV_ERR_INVALID_ARGUMENT;
    if (d->error) return d->error;
    if (d->finished) return fail(d, SQKV_ERR_STATE, "push after finish");
    if (!data && size) return fail(d, SQKV_ERR_INVALID_ARGUMENT, "push: data is NULL");
    const uint8_t *p = (const uint8_t *)data;
    while (size > 0 && !d->error) {
        size_t used = 0;
        const uint8_t *complete = NULL; /* a whole section to check and deliver once `used` is consumed */
        switch (d->state) {
        case ST_FILE_HEADER: used = take_header(d, p, size); break;
        case ST_SECTION_HEADER:
            if (d->sec_header_have == 0) d->cur_offset = d->position;
            if (d->sec_header_have == 0 && size >= SQKV_SECTION_HEADER_SIZE) {
                if (begin_section(d, p)) break;
                if (size >= d->cur_extent) { /* the whole section is here: use it in place */
                    used = (size_t)d->cur_extent;
                    complete = p;
                    break;
                }
                if (!ensure(d, &d->buf, &d->buf_size, d->cur_extent)) break;
                memcpy(d->buf, p, size);
                used = size;
                d->cur_have = size;
                d->state = ST_SECTION_BODY;
                break;
            }
            used = SQKV_SECTION_HEADER_SIZE - d->sec_header_have;
            if (used > size) used = size;
            memcpy(d->sec_header + d->sec_header_have, p, used);
            d->sec_header_have += (uint32_t)used;
            if (d->sec_header_have < SQKV_SECTION_HEADER_SIZE) break;
            if (begin_section(d, d->sec_header)) break;
            if (!ensure(d, &d->buf, &d->buf_size, d->cur_extent)) break;
            memcpy(d->buf, d->sec_header, SQKV_SECTION_HEADER_SIZE);
            d->cur_have = SQKV_SECTION_HEADER_SIZE;
            d->state = ST_SECTION_BODY;
            if (d->cur_have == d->cur_extent) complete = d->buf;
            break;
        case ST_SECTION_BODY: {
            const uint64_t want = d->cur_extent - d->cur_have;
            used = size < want ? size : (size_t)want;
            memcpy(d->buf + d->cur_have, p, used);
            d->cur_have += used;
            if (d->cur_have == d->cur_extent) complete = d->buf;
            break;
        }
        case ST_AFTER_INDEX: used = take_trailing(d, p, size); break;
        }
        d->position += used;
        p += used;
        size -= used;
        if (complete && !d->error) end_section(d, complete);
    }
    return d->error;
}

/* What was missing when the stream stopped early. */
static void describe_truncation(sqkv_stream_decoder *d) {
    char where[448];
    if (d->state == ST_FILE_HEADER) {
        snprintf(where, sizeof where, "inside the file header (%" PRIu32 " of %" PRIu32 " bytes)", d->header_have,
                 d->header_need);
    } else if (d->state == ST_SECTION_BODY) {
        const sqkv_entry e = entry_of(&d->cur, d->cur_offset);
        sqkv_diag diag;
        sqkv_diag_fail(&diag, SQKV_ERR_TRUNCATED, "%" PRIu64 " of its %" PRIu64 " bytes arrived", d->cur_have, d->cur_extent);
        sqkv_diag_section(&diag, d->n_seen, &e);
        snprintf(where, sizeof where, "inside %s", diag.text);
    } else if (d->sec_header_have > 0) {
        snprintf(where, sizeof where, "inside a section header (%" PRIu32 " of 64 bytes)", d->sec_header_have);
    } else {
        snprintf(where, sizeof where, "at a section boundary");
    }
    fail(d, SQKV_ERR_TRUNCATED, "the stream ended after %" PRIu64 " bytes, %s, before the INDEX section; %" PRIu64
         " sections verified, %" PRIu32 " of %" PRIu32 " layers complete", d->position, where, d->sections_verified,
         d->layers_complete, d->file.n_layers);
}

sqkv_error sqkv_stream_decoder_finish(sqkv_stream_decoder *d, sqkv_stream_status *status) {
    if (!d) return SQKV_ERR_INVALID_ARGUMENT;
    if (!d->error && !d->finished) {
        if (d->state == ST_AFTER_INDEX) {
            if (d->trail_have > 0)
                fail(d, SQKV_ERR_SECTION_LAYOUT, "%" PRIu32 " bytes follow the INDEX section (§2: the INDEX section"
                     " ends the file)", d->trail_have);
        } else {
            describe_truncation(d);
        }
    }
    d->finished = 1;
    if (status) {
        memset(status, 0, sizeof *status);
        status->bytes_received = d->position;
        status->bytes_verified = d->verified;
        status->header_received = d->header_ok;
        if (d->header_ok) status->geometry = d->geometry;
        status->sections_verified = d->sections_verified;
        status->layers_complete = d->layers_complete;
        status->index_received = d->index_ok;
        status->complete = d->index_ok && d->error == SQKV_OK;
    }
    return d->error;
}

sqkv_error sqkv_stream_decoder_layer_complete(const sqkv_stream_decoder *d, uint32_t layer, int *complete) {
    if (!d || !complete || !d->header_ok || layer >= d->file.n_layers) return SQKV_ERR_INVALID_ARGUMENT;
    *complete = d->layer_heads_done[layer] == 2 * d->file.n_kv_heads;
    return SQKV_OK;
}

sqkv_error sqkv_stream_decoder_head_tokens(const sqkv_stream_decoder *d, uint32_t layer, sqkv_tensor tensor,
                                           uint32_t head, uint32_t *tokens_delivered, int *complete) {
    if (!d || !tokens_delivered || !complete || !d->header_ok || layer >= d->file.n_layers ||
        (tensor != SQKV_TENSOR_K && tensor != SQKV_TENSOR_V) || head >= d->file.n_kv_heads)
        return SQKV_ERR_INVALID_ARGUMENT;
    const head_state *hs = heads_of(d, layer, (uint32_t)tensor);
    const uint32_t g = hs[head].group;
    *tokens_delivered = g == UNSET ? 0 : hs[g].tokens;
    *complete = hs[head].complete;
    return SQKV_OK;
}
