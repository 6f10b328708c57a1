/* cli_sqkv.c: see cli_sqkv.h. */
#include "tools/sqkv/cli_sqkv.h"

#include <stdio.h>
#include <string.h>

#include "section_header.h"

int cli_sqkv_open(const char *path, const cli_ctx *ctx, unsigned reader_flags, cli_sqkv *in) {
    memset(in, 0, sizeof *in);
    in->name = strcmp(path, "-") == 0 ? "(stdin)" : path;
    sqt_error err;
    sqt_error_clear(&err);
    if (sqt_blob_load(path, ctx->stdin_limit, &in->blob, &err)) return cli_report_io(NULL, &err);
    sqkv_error e = sqkv_reader_create(NULL, reader_flags, &in->reader);
    if (e) {
        cli_sqkv_close(in);
        return cli_report(path, e, "");
    }
    /* An empty input still goes through the library so that it reports TRUNCATED. */
    static const uint8_t empty[1];
    e = sqkv_reader_open_memory(in->reader, in->blob.size ? (const void *)in->blob.data : empty, in->blob.size);
    if (!e) e = sqkv_reader_geometry(in->reader, &in->geometry);
    if (!e) e = sqkv_reader_section_count(in->reader, &in->n_sections);
    if (e) {
        int rc = cli_report(in->name, e, sqkv_reader_error_detail(in->reader));
        cli_sqkv_close(in);
        return rc;
    }
    return EXIT_OK;
}

void cli_sqkv_close(cli_sqkv *in) {
    sqkv_reader_destroy(in->reader);
    sqt_blob_free(&in->blob);
    memset(in, 0, sizeof *in);
}

section_params cli_sqkv_section_params(const cli_sqkv *in, const sqkv_section_info *info) {
    section_params p;
    memset(&p, 0, sizeof p);
    if (info->offset > in->blob.size || in->blob.size - info->offset < SQKV_SECTION_HEADER_SIZE) return p;
    sqkv_section_header h;
    if (!sqkv_section_header_unpack(in->blob.data + info->offset, &h)) return p;
    p.valid = 1;
    p.codec = h.codec;
    p.payload_bits = h.payload_bits;
    p.quantizer = h.quantizer;
    p.granularity = h.scale_granularity;
    p.offset_interval_log2 = h.offset_interval_log2;
    p.flags = h.flags;
    return p;
}

void cli_sqkv_options(const cli_sqkv *in, file_options *out) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < in->n_sections; i++) {
        sqkv_section_info s;
        if (sqkv_reader_section_info(in->reader, i, &s)) continue;
        if (cli_sqkv_section_params(in, &s).codec == 1) out->n_zstd++;
        if (s.kind != SQKV_KIND_SPARSE && s.kind != SQKV_KIND_DENSE) continue;
        if (s.head_count > out->heads_per_section) out->heads_per_section = s.head_count;
        if (s.kind == SQKV_KIND_DENSE) {
            out->n_dense++;
            continue;
        }
        out->n_sparse++;
        const section_params p = cli_sqkv_section_params(in, &s);
        if (!out->sparse.valid) out->sparse = p;
        else if (!p.valid || p.payload_bits != out->sparse.payload_bits || p.quantizer != out->sparse.quantizer ||
                 p.granularity != out->sparse.granularity ||
                 p.offset_interval_log2 != out->sparse.offset_interval_log2 || p.flags != out->sparse.flags)
            out->mixed = 1;
        /* A SPARSE section that does not reach the end of the sparse region means the region is split. */
        const uint32_t sparse_end = in->geometry.n_tokens - in->geometry.dense_window;
        if (s.token_start + s.token_count < sparse_end && s.token_count > out->tokens_per_section)
            out->tokens_per_section = s.token_count;
    }
}

const char *cli_kind_name(uint16_t kind) {
    switch (kind) {
    case SQKV_KIND_SPARSE: return "SPARSE";
    case SQKV_KIND_DENSE: return "DENSE";
    case SQKV_KIND_INDEX: return "INDEX";
    case SQKV_KIND_TOKENS: return "TOKENS";
    case SQKV_KIND_FINGERPRINT: return "FINGERPRINT";
    case SQKV_KIND_METADATA: return "METADATA";
    }
    return kind & SQKV_KIND_ANCILLARY_BIT ? "ANCILLARY" : "UNKNOWN";
}

void cli_feature_names(uint32_t mask, char *buf, size_t cap) {
    static const char *const NAMES[3] = {"CODE_WIDTHS", "HALF_TILE_SCALES", "ALL_KEPT"};
    size_t used = 0;
    if (cap == 0) return;
    buf[0] = 0;
    if (mask == 0) {
        snprintf(buf, cap, "none");
        return;
    }
    for (unsigned bit = 0; bit < 32 && used < cap; bit++) {
        if (!(mask >> bit & 1u)) continue;
        int w;
        if (bit < 3) w = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", NAMES[bit]);
        else w = snprintf(buf + used, cap - used, "%sbit %u", used ? ", " : "", bit);
        if (w < 0) break;
        used += (size_t)w;
    }
}
