/* cmd_info.c: `sqkv info FILE`: what is in an .sqkv file, for people (default) or scripts (--json). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "section_header.h"
#include "tools/common/strbuf.h"
#include "tools/common/util.h"
#include "tools/sqkv/cli_args.h"
#include "tools/sqkv/commands.h"
#include "tools/sqkv/cli_sqkv.h"

static const char help[] =
    "Usage: sqkv info [options] FILE\n"
    "\n"
    "Describes an .sqkv FILE (\"-\" = stdin): format version and required features, geometry, element\n"
    "type, dense window, the encoder options (payload bits, quantizer, scale granularity, keep-all, offset\n"
    "interval, section split), token count, fingerprint, metadata, the number of sections of each kind,\n"
    "and the bytes of each layer.\n"
    "It checks the file's structure (header, index, tail), not the section bodies: use `sqkv verify`.\n"
    "\n"
    "Options:\n"
    "      --json         print one JSON object instead (all of the above, every section, token count)\n"
    "      --sections     also list every section (offset, size, kind, tensor, layer, heads, tokens, and\n"
    "                     for SPARSE sections width, quantizer, scales, offset interval or keep-all, zstd)\n"
    "\n";

enum { OPT_JSON = 1, OPT_SECTIONS };

typedef struct layer_bytes {
    uint64_t k, v;
} layer_bytes;

typedef struct info_data {
    cli_sqkv in;
    uint32_t major, minor;
    file_options opts;
    uint64_t kind_counts[7]; /* SPARSE, DENSE, INDEX, TOKENS, FINGERPRINT, METADATA, other */
    layer_bytes *layers;
    size_t n_tokens;
    int32_t first_tokens[8];
    uint8_t *fingerprint;
    size_t fingerprint_size;
    size_t n_meta;
} info_data;

static int kind_slot(uint16_t kind) {
    switch (kind) {
    case SQKV_KIND_SPARSE: return 0;
    case SQKV_KIND_DENSE: return 1;
    case SQKV_KIND_INDEX: return 2;
    case SQKV_KIND_TOKENS: return 3;
    case SQKV_KIND_FINGERPRINT: return 4;
    case SQKV_KIND_METADATA: return 5;
    }
    return 6;
}

static const char *const slot_names[7] = {"SPARSE", "DENSE", "INDEX", "TOKENS", "FINGERPRINT", "METADATA", "other"};

static int gather(info_data *d) {
    sqkv_reader *r = d->in.reader;
    sqkv_error e = sqkv_reader_version(r, &d->major, &d->minor);
    d->layers = calloc(d->in.geometry.n_layers, sizeof *d->layers);
    if (d->layers == NULL) {
        cli_error("out of memory");
        return EXIT_IO;
    }
    for (size_t i = 0; i < d->in.n_sections && !e; i++) {
        sqkv_section_info s;
        e = sqkv_reader_section_info(r, i, &s);
        if (e) break;
        d->kind_counts[kind_slot(s.kind)]++;
        if ((s.kind == SQKV_KIND_SPARSE || s.kind == SQKV_KIND_DENSE) && s.layer < d->in.geometry.n_layers)
            *(s.tensor == SQKV_TENSOR_K ? &d->layers[s.layer].k : &d->layers[s.layer].v) +=
                sqkv_section_extent(s.stored_size);
    }
    cli_sqkv_options(&d->in, &d->opts);
    if (!e) e = sqkv_reader_tokens(r, NULL, 0, &d->n_tokens);
    if (!e && d->n_tokens) {
        int32_t *all = malloc(d->n_tokens * sizeof *all);
        if (all == NULL) {
            cli_error("out of memory");
            return EXIT_IO;
        }
        size_t count;
        e = sqkv_reader_tokens(r, all, d->n_tokens, &count);
        memcpy(d->first_tokens, all, (count < 8 ? count : 8) * sizeof *all);
        free(all);
    }
    if (!e) e = sqkv_reader_fingerprint(r, NULL, 0, &d->fingerprint_size);
    if (!e && d->fingerprint_size) {
        d->fingerprint = malloc(d->fingerprint_size);
        if (d->fingerprint == NULL) {
            cli_error("out of memory");
            return EXIT_IO;
        }
        size_t size;
        e = sqkv_reader_fingerprint(r, d->fingerprint, d->fingerprint_size, &size);
    }
    if (!e) e = sqkv_reader_metadata_count(r, &d->n_meta);
    if (e) return cli_report(d->in.name, e, sqkv_reader_error_detail(r));
    return EXIT_OK;
}

static uint64_t dense_fp16_bytes(const sqkv_geometry *g) {
    return 2ull * 2ull * g->n_layers * g->n_kv_heads * (uint64_t)g->n_tokens * g->head_dim;
}

/* Metadata text on a terminal: control characters escaped so a file cannot drive the terminal. */
static void print_escaped(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) printf("\\x%02x", c);
        else if (c == '\\') fputs("\\\\", stdout);
        else putchar(c);
    }
}

static void print_hex(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
}

static void print_encoding(const file_options *o) {
    if (!o->sparse.valid) {
        printf("%s\n", o->n_sparse ? "unknown (a SPARSE section header is damaged; run sqkv verify)"
                                   : "no sparse region (every token in the dense window)");
        return;
    }
    const section_params *p = &o->sparse;
    if (p->quantizer == SQKV_QUANT_EXACT) printf("kept values exact (16-bit)");
    else printf("%u-bit %s, per-%s scales", p->payload_bits, cli_quantizer_name(p->quantizer),
                cli_granularity_name(p->granularity));
    if (p->flags & SQKV_SECTION_FLAG_ALL_KEPT) printf(", keep-all (every element kept, no bitmaps)");
    else printf(", offset interval 2^%u tiles", p->offset_interval_log2);
    if (o->mixed) printf(" (first SPARSE section; others differ)");
    printf("\n");
}

static unsigned section_codec(const info_data *d, const sqkv_section_info *s) {
    return cli_sqkv_section_params(&d->in, s).codec;
}

static void print_human(info_data *d, int list_sections) {
    const sqkv_geometry *g = &d->in.geometry;
    char a[32], b[32];
    const uint64_t dense = dense_fp16_bytes(g), size = d->in.blob.size;
    printf("file           %s (%llu bytes, %s)\n", d->in.name, (unsigned long long)size,
           sqkv_human_size(size, a, sizeof a));
    char features[128];
    cli_feature_names(g->required_features, features, sizeof features);
    if (g->required_features) printf("format         SQKV %u.%u, required features %s\n", d->major, d->minor, features);
    else printf("format         SQKV %u.%u, no required features\n", d->major, d->minor);
    printf("geometry       %u layers x %u KV heads x %u tokens, head_dim %u (K and V)\n", g->n_layers,
           g->n_kv_heads, g->n_tokens, g->head_dim);
    printf("element type   %s (encoder input %s)\n", cli_dtype_name(g->value_dtype), cli_dtype_name(g->source_dtype));
    if (g->dense_window == g->n_tokens)
        printf("dense window   %u tokens (all tokens stored exactly)\n", g->dense_window);
    else
        printf("dense window   %u tokens (sparse region: tokens 0..%u)\n", g->dense_window,
               g->n_tokens - g->dense_window - 1);
    printf("encoding       ");
    print_encoding(&d->opts);
    printf("section split  %u head%s per section, ", d->opts.heads_per_section,
           d->opts.heads_per_section == 1 ? "" : "s");
    if (d->opts.tokens_per_section) printf("%u tokens per SPARSE section\n", d->opts.tokens_per_section);
    else printf("whole sparse region per section\n");
    printf("tokens         ");
    if (d->n_tokens) {
        printf("%zu ids:", d->n_tokens);
        for (size_t i = 0; i < d->n_tokens && i < 8; i++) printf(" %d", d->first_tokens[i]);
        printf("%s\n", d->n_tokens > 8 ? " ..." : "");
    } else {
        printf("none\n");
    }
    printf("fingerprint    ");
    if (d->fingerprint_size) {
        print_hex(d->fingerprint, d->fingerprint_size > 32 ? 32 : d->fingerprint_size);
        printf("%s (%zu bytes)\n", d->fingerprint_size > 32 ? "..." : "", d->fingerprint_size);
    } else {
        printf("none\n");
    }
    printf("metadata       %zu entr%s\n", d->n_meta, d->n_meta == 1 ? "y" : "ies");
    for (size_t i = 0; i < d->n_meta; i++) {
        const char *k, *v;
        size_t kn, vn;
        if (sqkv_reader_metadata_entry(d->in.reader, i, &k, &kn, &v, &vn)) break;
        printf("  ");
        print_escaped(k, kn);
        printf(" = ");
        print_escaped(v, vn);
        printf("\n");
    }
    printf("sections       %zu:", d->in.n_sections);
    for (int s = 0; s < 7; s++)
        if (d->kind_counts[s]) printf(" %llu %s", (unsigned long long)d->kind_counts[s], slot_names[s]);
    printf("%s\n", list_sections ? "" : " (list them with --sections)");
    if (d->opts.n_zstd) printf("zstd           %llu sections hold zstd-compressed streams\n", (unsigned long long)d->opts.n_zstd);
    printf("size           %s as fp16, %s in this file (%.2f%% of fp16, %.3f bits per element)\n",
           sqkv_human_size(dense, a, sizeof a), sqkv_human_size(size, b, sizeof b), 100.0 * (double)size / (double)dense,
           8.0 * (double)size / ((double)dense / 2.0));
    printf("\n%5s %14s %14s %14s %9s\n", "layer", "K bytes", "V bytes", "total", "% of fp16");
    const uint64_t per_layer_dense = dense / g->n_layers;
    for (uint32_t l = 0; l < g->n_layers; l++) {
        const uint64_t t = d->layers[l].k + d->layers[l].v;
        printf("%5u %14llu %14llu %14llu %8.2f%%\n", l, (unsigned long long)d->layers[l].k,
               (unsigned long long)d->layers[l].v, (unsigned long long)t, 100.0 * (double)t / (double)per_layer_dense);
    }
    if (!list_sections) return;
    printf("\n%5s %14s %14s %-11s %6s %5s %11s %15s %s\n", "#", "offset", "stored bytes", "kind", "tensor", "layer",
           "heads", "tokens", "encoding");
    for (size_t i = 0; i < d->in.n_sections; i++) {
        sqkv_section_info s;
        if (sqkv_reader_section_info(d->in.reader, i, &s)) break;
        const int tensor = s.kind == SQKV_KIND_SPARSE || s.kind == SQKV_KIND_DENSE;
        printf("%5zu %14llu %14llu %-11s ", i, (unsigned long long)s.offset, (unsigned long long)s.stored_size,
               cli_kind_name(s.kind));
        if (!tensor) {
            printf("%6s %5s %11s %15s\n", "-", "-", "-", "-");
            continue;
        }
        char heads[32], tokens[32];
        snprintf(heads, sizeof heads, "%u..%u", s.head_start, s.head_start + s.head_count - 1);
        snprintf(tokens, sizeof tokens, "%u..%u", s.token_start, s.token_start + s.token_count - 1);
        printf("%6s %5u %11s %15s", s.tensor == SQKV_TENSOR_K ? "K" : "V", s.layer, heads, tokens);
        if (s.kind == SQKV_KIND_SPARSE) {
            const section_params p = cli_sqkv_section_params(&d->in, &s);
            if (!p.valid) printf(" (damaged header)");
            else if (p.flags & SQKV_SECTION_FLAG_ALL_KEPT)
                printf(" %u-bit %s/%s keep-all", p.payload_bits, cli_quantizer_name(p.quantizer),
                       cli_granularity_name(p.granularity));
            else printf(" %u-bit %s/%s k=%u", p.payload_bits, cli_quantizer_name(p.quantizer),
                        cli_granularity_name(p.granularity), p.offset_interval_log2);
        } else {
            printf(" exact");
        }
        if (section_codec(d, &s) == 1) printf(" +zstd");
        printf("\n");
    }
}

static void json_params(sqt_strbuf *b, const section_params *p) {
    sqt_strbuf_printf(b, "{\"payload_bits\":%u,\"quantizer\":\"%s\",\"scale_granularity\":\"%s\","
                      "\"offset_interval_log2\":%u}", p->payload_bits, cli_quantizer_name(p->quantizer),
                      cli_granularity_name(p->granularity), p->offset_interval_log2);
}

static int print_json(info_data *d) {
    const sqkv_geometry *g = &d->in.geometry;
    sqt_strbuf b;
    sqt_strbuf_init(&b);
    sqt_strbuf_puts(&b, "{\"file\":");
    sqt_strbuf_json_string(&b, d->in.name, strlen(d->in.name));
    sqt_strbuf_printf(&b, ",\"file_size\":%llu,\"version\":{\"major\":%u,\"minor\":%u}", (unsigned long long)d->in.blob.size,
                      d->major, d->minor);
    sqt_strbuf_printf(&b, ",\"required_features\":{\"mask\":%u,\"names\":[", (unsigned)g->required_features);
    for (unsigned bit = 0, n = 0; bit < 32; bit++) {
        if (!(g->required_features >> bit & 1u)) continue;
        char name[32];
        cli_feature_names(1u << bit, name, sizeof name);
        sqt_strbuf_printf(&b, "%s\"%s\"", n++ ? "," : "", name);
    }
    sqt_strbuf_puts(&b, "]}");
    sqt_strbuf_printf(&b, ",\"geometry\":{\"n_layers\":%u,\"n_kv_heads\":%u,\"head_dim\":%u,\"n_tokens\":%u,"
                      "\"dense_window\":%u,\"value_dtype\":\"%s\",\"source_dtype\":\"%s\"}",
                      g->n_layers, g->n_kv_heads, g->head_dim, g->n_tokens, g->dense_window,
                      cli_dtype_name(g->value_dtype), cli_dtype_name(g->source_dtype));
    sqt_strbuf_printf(&b, ",\"options\":{\"sparse\":");
    if (d->opts.sparse.valid) json_params(&b, &d->opts.sparse);
    else sqt_strbuf_puts(&b, "null");
    sqt_strbuf_printf(&b, ",\"keep_all\":%s", d->opts.sparse.valid && (d->opts.sparse.flags & SQKV_SECTION_FLAG_ALL_KEPT) ? "true" : "false");
    sqt_strbuf_printf(&b, ",\"mixed\":%s,\"heads_per_section\":%u,\"tokens_per_section\":%u,\"zstd_sections\":%llu}",
                      d->opts.mixed ? "true" : "false", d->opts.heads_per_section, d->opts.tokens_per_section,
                      (unsigned long long)d->opts.n_zstd);
    sqt_strbuf_printf(&b, ",\"tokens\":{\"count\":%zu}", d->n_tokens);
    sqt_strbuf_puts(&b, ",\"fingerprint\":");
    if (d->fingerprint_size) {
        sqt_strbuf_puts(&b, "\"");
        for (size_t i = 0; i < d->fingerprint_size; i++) sqt_strbuf_printf(&b, "%02x", d->fingerprint[i]);
        sqt_strbuf_puts(&b, "\"");
    } else {
        sqt_strbuf_puts(&b, "null");
    }
    sqt_strbuf_puts(&b, ",\"metadata\":{");
    for (size_t i = 0; i < d->n_meta; i++) {
        const char *k, *v;
        size_t kn, vn;
        if (sqkv_reader_metadata_entry(d->in.reader, i, &k, &kn, &v, &vn)) break;
        if (i) sqt_strbuf_puts(&b, ",");
        sqt_strbuf_json_string(&b, k, kn);
        sqt_strbuf_puts(&b, ":");
        sqt_strbuf_json_string(&b, v, vn);
    }
    sqt_strbuf_printf(&b, "},\"dense_fp16_bytes\":%llu,\"section_counts\":{", (unsigned long long)dense_fp16_bytes(g));
    for (int s = 0; s < 7; s++) sqt_strbuf_printf(&b, "%s\"%s\":%llu", s ? "," : "", slot_names[s], (unsigned long long)d->kind_counts[s]);
    sqt_strbuf_puts(&b, "},\"layers\":[");
    for (uint32_t l = 0; l < g->n_layers; l++)
        sqt_strbuf_printf(&b, "%s{\"layer\":%u,\"k_bytes\":%llu,\"v_bytes\":%llu}", l ? "," : "", l,
                          (unsigned long long)d->layers[l].k, (unsigned long long)d->layers[l].v);
    sqt_strbuf_puts(&b, "],\"sections\":[");
    for (size_t i = 0; i < d->in.n_sections; i++) {
        sqkv_section_info s;
        if (sqkv_reader_section_info(d->in.reader, i, &s)) break;
        sqt_strbuf_printf(&b, "%s{\"offset\":%llu,\"stored_size\":%llu,\"kind\":\"%s\",\"kind_code\":%u,\"codec\":%u",
                          i ? "," : "", (unsigned long long)s.offset, (unsigned long long)s.stored_size,
                          cli_kind_name(s.kind), s.kind, section_codec(d, &s));
        if (s.kind == SQKV_KIND_SPARSE || s.kind == SQKV_KIND_DENSE) {
            sqt_strbuf_printf(&b, ",\"tensor\":\"%s\",\"layer\":%u,\"head_start\":%u,\"head_count\":%u,"
                              "\"token_start\":%u,\"token_count\":%u", s.tensor == SQKV_TENSOR_K ? "K" : "V", s.layer,
                              s.head_start, s.head_count, s.token_start, s.token_count);
            if (s.kind == SQKV_KIND_SPARSE) {
                const section_params p = cli_sqkv_section_params(&d->in, &s);
                if (p.valid)
                    sqt_strbuf_printf(&b, ",\"flags\":%u,\"all_kept\":%s", p.flags,
                                      p.flags & SQKV_SECTION_FLAG_ALL_KEPT ? "true" : "false");
                sqt_strbuf_puts(&b, ",\"encoding\":");
                if (p.valid) json_params(&b, &p);
                else sqt_strbuf_puts(&b, "null");
            }
        }
        sqt_strbuf_puts(&b, "}");
    }
    sqt_strbuf_puts(&b, "]}\n");
    if (b.failed) {
        sqt_strbuf_free(&b);
        cli_error("out of memory");
        return EXIT_IO;
    }
    fwrite(b.data, 1, b.len, stdout);
    sqt_strbuf_free(&b);
    return EXIT_OK;
}

int cmd_info(int argc, char **argv, cli_ctx *ctx) {
    static const cli_option options[] = {{"json", 0, 0, OPT_JSON}, {"sections", 0, 0, OPT_SECTIONS}, {NULL, 0, 0, 0}};
    cli_parser p;
    cli_parser_init(&p, argc - 1, argv + 1, options, "info");
    const char *file = NULL, *value;
    int json = 0, sections = 0, id;
    while ((id = cli_next(&p, &value)) != CLI_NEXT_END) {
        if (id == CLI_NEXT_ERROR) return EXIT_USAGE;
        if (id == CLI_OPT_HELP) {
            fputs(help, stdout);
            fputs(cli_common_help, stdout);
            return EXIT_OK;
        }
        if (id == OPT_JSON) json = 1;
        else if (id == OPT_SECTIONS) sections = 1;
        else if (id == CLI_NEXT_POSITIONAL) {
            if (file) {
                cli_error("info: one FILE at a time (got '%s' and '%s')", file, value);
                return EXIT_USAGE;
            }
            file = value;
        } else if (cli_apply_common(ctx, id, value) < 0) {
            return EXIT_USAGE;
        }
    }
    if (file == NULL) {
        cli_error("info: no FILE given (see 'sqkv info --help')");
        return EXIT_USAGE;
    }
    info_data d;
    memset(&d, 0, sizeof d);
    int rc = cli_sqkv_open(file, ctx, 0, &d.in);
    if (rc) return rc;
    rc = gather(&d);
    if (rc == EXIT_OK) {
        if (json) rc = print_json(&d);
        else print_human(&d, sections);
    }
    if (fflush(stdout) != 0 && rc == EXIT_OK) {
        cli_error("info: cannot write to stdout");
        rc = EXIT_IO;
    }
    free(d.layers);
    free(d.fingerprint);
    cli_sqkv_close(&d.in);
    return rc;
}
