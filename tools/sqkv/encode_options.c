/* encode_options.c: see encode_options.h. */
#include "tools/sqkv/encode_options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/blob.h"
#include "tools/sqkv/cli_sqkv.h"
#include "tools/sqkv/token_ids.h"

enum {
    OPT_SPARSITY = 500,
    OPT_NO_PRUNE,
    OPT_KEEP_ALL,
    OPT_BITS,
    OPT_QUANTIZER,
    OPT_SCALES,
    OPT_DENSE_WINDOW,
    OPT_OFFSET_INTERVAL,
    OPT_HEADS_PER_SECTION,
    OPT_TOKENS_PER_SECTION,
    OPT_ELEMENT_TYPE,
    OPT_ZSTD,
    OPT_RANGE_SEARCH,
    OPT_TOKEN_IDS,
    OPT_FINGERPRINT,
    OPT_META
};

const cli_option encode_option_table[] = {
    {"sparsity", 's', 1, OPT_SPARSITY},
    {"no-prune", 0, 0, OPT_NO_PRUNE},
    {"keep-all", 0, 0, OPT_KEEP_ALL},
    {"bits", 'b', 1, OPT_BITS},
    {"quantizer", 0, 1, OPT_QUANTIZER},
    {"scales", 0, 1, OPT_SCALES},
    {"dense-window", 'w', 1, OPT_DENSE_WINDOW},
    {"offset-interval-log2", 0, 1, OPT_OFFSET_INTERVAL},
    {"heads-per-section", 0, 1, OPT_HEADS_PER_SECTION},
    {"tokens-per-section", 0, 1, OPT_TOKENS_PER_SECTION},
    {"element-type", 0, 1, OPT_ELEMENT_TYPE},
    {"zstd", 0, 1, OPT_ZSTD},
    {"range-search", 0, 1, OPT_RANGE_SEARCH},
    {NULL, 0, 0, 0},
};

const cli_option encode_extra_table[] = {
    {"token-ids", 0, 1, OPT_TOKEN_IDS},
    {"fingerprint", 0, 1, OPT_FINGERPRINT},
    {"meta", 'm', 1, OPT_META},
    {NULL, 0, 0, 0},
};

const char encode_options_help[] =
    "Encoder options (defaults: the library's reference encoder):\n"
    "  -s, --sparsity F           fraction of each token's head_dim elements pruned by magnitude, in [0, 1)\n"
    "                             (default 0.8: 26 of 128 kept); 0 keeps every element\n"
    "      --no-prune             keep every nonzero element (input already sparse)\n"
    "      --keep-all             no pruning and no bitmaps: every element is kept and quantized, zeros\n"
    "                             included (as KIVI does; format 1.1 feature ALL_KEPT); not with --bits 16\n"
    "  -b, --bits N               payload bits per kept element: 1 to 8, or 16 = exact (default 2);\n"
    "                             1, 3, 5, 6, 7 make a format 1.1 file (feature CODE_WIDTHS)\n"
    "      --quantizer Q          symmetric | asymmetric | exact (default: asymmetric, exact for 16 bits)\n"
    "      --scales G             scale granularity: head | tile | half-tile | none (default: tile, none for\n"
    "                             exact); half-tile = one scale per 32 elements of a tile, KIVI's groups\n"
    "                             (format 1.1 feature HALF_TILE_SCALES)\n"
    "  -w, --dense-window N       newest N tokens stored exactly, unpruned (default 0)\n"
    "      --offset-interval-log2 K  one offset-table entry per 2^K tiles, 0..20 (default 4; no table\n"
    "                             with --keep-all)\n"
    "      --heads-per-section N  heads per section (default 1)\n"
    "      --tokens-per-section N tokens of the sparse region per section, a multiple of 64 (default 0 = all)\n"
    "      --element-type T       fp16 | bf16: the file's element type (default: bf16 for bf16 input,\n"
    "                             fp16 otherwise)\n"
    "      --zstd LEVEL           zstd layer (spec 5.1) at LEVEL 1..22; 0 = off (default 0). Kept per\n"
    "                             stream only where it makes the stream smaller\n"
    "      --range-search T       none | values | keys | both (default none): choose each group's range\n"
    "                             among 8 by least squared error (spec 14); values only is the useful one\n"
    "                             (on keys it raises the attention error: spec/QUANTIZATION.md)\n";

const char encode_extra_help[] =
    "      --token-ids FILE       prompt token ids: .npy int32 [n] or text (decimal ids); replaces the\n"
    "                             input's own ids (PREFIX.tokens.npy, tokens.npy, safetensors \"tokens\")\n"
    "      --fingerprint HEX|@FILE  model fingerprint: hex digits, or the raw bytes of FILE (1..4096 bytes)\n"
    "  -m, --meta KEY=VALUE       metadata entry (repeatable; UTF-8; overrides a safetensors\n"
    "                             \"__metadata__\" entry of the same key)\n";

void encode_settings_init(encode_settings *s) {
    memset(s, 0, sizeof *s);
    sqkv_writer_options_default(&s->opts);
}

void encode_settings_free(encode_settings *s) {
    free(s->meta);
    s->meta = NULL;
    s->n_meta = 0;
}

static int apply(encode_settings *s, int id, const char *value);

int encode_settings_apply(encode_settings *s, int id, const char *value) {
    const int rc = apply(s, id, value);
    if (rc > 0) s->set_mask |= 1u << (id - OPT_SPARSITY);
    return rc;
}

static int was_set(const encode_settings *s, int id) { return (s->set_mask >> (id - OPT_SPARSITY)) & 1u; }

int encode_settings_zstd_given(const encode_settings *s) { return was_set(s, OPT_ZSTD); }

void encode_settings_adopt(encode_settings *s, const file_options *fo, const sqkv_geometry *g, uint32_t keep) {
    sqkv_writer_options *o = &s->opts;
    if (fo->sparse.valid) {
        if (!was_set(s, OPT_BITS)) {
            o->payload_bits = fo->sparse.payload_bits;
            s->bits_set = 1;
        }
        if (!was_set(s, OPT_QUANTIZER)) {
            o->quantizer = (sqkv_quantizer)fo->sparse.quantizer;
            s->quantizer_set = 1;
        }
        if (!was_set(s, OPT_SCALES)) {
            o->scales = (sqkv_scale_granularity)fo->sparse.granularity;
            s->scales_set = 1;
        }
        if (!was_set(s, OPT_OFFSET_INTERVAL)) o->offset_interval_log2 = fo->sparse.offset_interval_log2;
        if (!was_set(s, OPT_SPARSITY) && !was_set(s, OPT_NO_PRUNE) && !was_set(s, OPT_KEEP_ALL) &&
            (fo->sparse.flags & SQKV_SECTION_FLAG_ALL_KEPT)) {
            o->prune = SQKV_PRUNE_KEEP_ALL;
            o->sparsity = 0.0;
            o->offset_interval_log2 = 4; /* the file records 0, and no table is written anyway */
        }
    }
    if (!was_set(s, OPT_HEADS_PER_SECTION) && fo->heads_per_section) o->heads_per_section = fo->heads_per_section;
    if (!was_set(s, OPT_TOKENS_PER_SECTION)) o->tokens_per_section = fo->tokens_per_section;
    if (!was_set(s, OPT_DENSE_WINDOW)) s->dense_window = g->dense_window;
    if (!was_set(s, OPT_ELEMENT_TYPE)) s->element_type = g->value_dtype;
    if (!was_set(s, OPT_SPARSITY) && !was_set(s, OPT_NO_PRUNE) && !was_set(s, OPT_KEEP_ALL) &&
        o->prune != SQKV_PRUNE_KEEP_ALL && keep >= 1 && keep <= g->head_dim) {
        o->prune = SQKV_PRUNE_MAGNITUDE;
        /* keep = D - floor(sparsity * D): aim between two integers so rounding cannot move it. */
        o->sparsity = keep == g->head_dim ? 0.0 : ((double)(g->head_dim - keep) + 0.5) / (double)g->head_dim;
    }
}

static int apply(encode_settings *s, int id, const char *value) {
    switch (id) {
    case OPT_SPARSITY:
        if (cli_parse_double("--sparsity", value, 0.0, 0.999999, &s->opts.sparsity)) return -1;
        s->opts.prune = SQKV_PRUNE_MAGNITUDE;
        return 1;
    case OPT_NO_PRUNE: s->opts.prune = SQKV_PRUNE_NONE; return 1;
    case OPT_KEEP_ALL: s->opts.prune = SQKV_PRUNE_KEEP_ALL; return 1;
    case OPT_BITS:
        if (cli_parse_u32("--bits", value, 0, UINT32_MAX, &s->opts.payload_bits)) return -1;
        if (s->opts.payload_bits < 1 || (s->opts.payload_bits > 8 && s->opts.payload_bits != 16)) {
            cli_error("--bits: %s is not one of 1 to 8, or 16", value);
            return -1;
        }
        s->bits_set = 1;
        return 1;
    case OPT_QUANTIZER:
        if (strcmp(value, "symmetric") == 0) s->opts.quantizer = SQKV_QUANT_SYMMETRIC;
        else if (strcmp(value, "asymmetric") == 0) s->opts.quantizer = SQKV_QUANT_ASYMMETRIC;
        else if (strcmp(value, "exact") == 0) s->opts.quantizer = SQKV_QUANT_EXACT;
        else {
            cli_error("--quantizer: '%s' is not symmetric, asymmetric or exact", value);
            return -1;
        }
        s->quantizer_set = 1;
        return 1;
    case OPT_SCALES:
        if (strcmp(value, "head") == 0) s->opts.scales = SQKV_SCALE_PER_HEAD;
        else if (strcmp(value, "tile") == 0) s->opts.scales = SQKV_SCALE_PER_TILE;
        else if (strcmp(value, "half-tile") == 0) s->opts.scales = SQKV_SCALE_PER_HALF_TILE;
        else if (strcmp(value, "none") == 0) s->opts.scales = SQKV_SCALE_NONE;
        else {
            cli_error("--scales: '%s' is not head, tile, half-tile or none", value);
            return -1;
        }
        s->scales_set = 1;
        return 1;
    case OPT_RANGE_SEARCH:
        if (strcmp(value, "none") == 0) s->opts.range_search = 0;
        else if (strcmp(value, "values") == 0) s->opts.range_search = SQKV_RANGE_SEARCH_VALUES;
        else if (strcmp(value, "keys") == 0) s->opts.range_search = SQKV_RANGE_SEARCH_KEYS;
        else if (strcmp(value, "both") == 0) s->opts.range_search = SQKV_RANGE_SEARCH_VALUES | SQKV_RANGE_SEARCH_KEYS;
        else {
            cli_error("--range-search: '%s' is not none, values, keys or both", value);
            return -1;
        }
        return 1;
    case OPT_DENSE_WINDOW: return cli_parse_u32("--dense-window", value, 0, 1u << 28, &s->dense_window) ? -1 : 1;
    case OPT_OFFSET_INTERVAL:
        return cli_parse_u32("--offset-interval-log2", value, 0, 20, &s->opts.offset_interval_log2) ? -1 : 1;
    case OPT_HEADS_PER_SECTION:
        return cli_parse_u32("--heads-per-section", value, 1, 1024, &s->opts.heads_per_section) ? -1 : 1;
    case OPT_TOKENS_PER_SECTION:
        if (cli_parse_u32("--tokens-per-section", value, 0, 1u << 28, &s->opts.tokens_per_section)) return -1;
        if (s->opts.tokens_per_section % 64) {
            cli_error("--tokens-per-section: %s is not a multiple of 64", value);
            return -1;
        }
        return 1;
    case OPT_ELEMENT_TYPE:
        if (strcmp(value, "fp16") == 0) s->element_type = SQKV_DTYPE_FP16;
        else if (strcmp(value, "bf16") == 0) s->element_type = SQKV_DTYPE_BF16;
        else {
            cli_error("--element-type: '%s' is not fp16 or bf16", value);
            return -1;
        }
        return 1;
    case OPT_ZSTD: return cli_parse_u32("--zstd", value, 0, 22, &s->opts.zstd_level) ? -1 : 1;
    case OPT_TOKEN_IDS: s->token_ids_path = value; return 1;
    case OPT_FINGERPRINT: s->fingerprint = value; return 1;
    case OPT_META: {
        if (strchr(value, '=') == NULL || value[0] == '=') {
            cli_error("--meta: '%s' is not KEY=VALUE with a non-empty KEY", value);
            return -1;
        }
        const char **grown = realloc(s->meta, (s->n_meta + 1) * sizeof *grown);
        if (grown == NULL) {
            cli_error("out of memory");
            return -1;
        }
        s->meta = grown;
        s->meta[s->n_meta++] = value;
        return 1;
    }
    }
    return 0;
}

int encode_settings_finish(encode_settings *s) {
    sqkv_writer_options *o = &s->opts;
    if (!s->bits_set && s->quantizer_set) o->payload_bits = o->quantizer == SQKV_QUANT_EXACT ? 16 : 2;
    sqkv_writer_options library_default;
    sqkv_writer_options_default(&library_default);
    if (!s->quantizer_set) o->quantizer = o->payload_bits == 16 ? SQKV_QUANT_EXACT : library_default.quantizer;
    if (!s->scales_set) o->scales = o->quantizer == SQKV_QUANT_EXACT ? SQKV_SCALE_NONE : library_default.scales;
    if ((o->payload_bits == 16) != (o->quantizer == SQKV_QUANT_EXACT)) {
        cli_error("--quantizer exact goes with --bits 16, and --bits 16 with --quantizer exact");
        return -1;
    }
    if ((o->quantizer == SQKV_QUANT_EXACT) != (o->scales == SQKV_SCALE_NONE)) {
        cli_error("--scales none goes with the exact quantizer (--bits 16) and only with it");
        return -1;
    }
    /* --sparsity and --no-prune override each other (the last one wins), but either one next to
     * --keep-all contradicts it, whatever the order; --sparsity 0 is the one that agrees. */
    if (was_set(s, OPT_KEEP_ALL)) {
        if (was_set(s, OPT_NO_PRUNE)) {
            cli_error("--keep-all and --no-prune contradict each other: --no-prune keeps the nonzero elements "
                      "with bitmaps, --keep-all every element without");
            return -1;
        }
        if (was_set(s, OPT_SPARSITY) && o->sparsity > 0.0) {
            cli_error("--keep-all keeps every element: it does not go with --sparsity %g", o->sparsity);
            return -1;
        }
        o->prune = SQKV_PRUNE_KEEP_ALL;
    }
    if (o->prune == SQKV_PRUNE_KEEP_ALL) {
        if (o->quantizer == SQKV_QUANT_EXACT) {
            cli_error("--keep-all quantizes every element: it does not go with --bits 16 (exact values without "
                      "pruning: --dense-window, or --no-prune)");
            return -1;
        }
        if (was_set(s, OPT_OFFSET_INTERVAL)) {
            cli_error("--offset-interval-log2 does not go with --keep-all (keep-all sections have no offset table)");
            return -1;
        }
        o->sparsity = 0.0;
    }
    return 0;
}

sqkv_dtype encode_settings_element_type(const encode_settings *s, sqt_dtype input) {
    if (s->element_type) return s->element_type;
    return input == SQT_BF16 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
}

void encode_settings_describe(const encode_settings *s, char *buf, size_t cap) {
    const sqkv_writer_options *o = &s->opts;
    char prune[64];
    if (o->prune == SQKV_PRUNE_NONE) snprintf(prune, sizeof prune, "no pruning");
    else if (o->prune == SQKV_PRUNE_KEEP_ALL) snprintf(prune, sizeof prune, "keep-all (no pruning, no bitmaps)");
    else snprintf(prune, sizeof prune, "sparsity %.2f (per-token magnitude)", o->sparsity);
    if (o->quantizer == SQKV_QUANT_EXACT)
        snprintf(buf, cap, "%s, kept values exact (16-bit)", prune);
    else
        snprintf(buf, cap, "%s, %u-bit %s, per-%s scales", prune, (unsigned)o->payload_bits,
                 cli_quantizer_name(o->quantizer), cli_granularity_name(o->scales));
    if (o->range_search && o->quantizer != SQKV_QUANT_EXACT) {
        size_t n = strlen(buf);
        snprintf(buf + n, cap - n, ", range search on %s",
                 o->range_search == SQKV_RANGE_SEARCH_VALUES ? "values"
                 : o->range_search == SQKV_RANGE_SEARCH_KEYS ? "keys" : "keys and values");
    }
    if (s->dense_window) {
        size_t n = strlen(buf);
        snprintf(buf + n, cap - n, ", dense window %u", (unsigned)s->dense_window);
    }
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* --fingerprint: hex digits or @FILE. */
static int load_fingerprint(const char *arg, const cli_ctx *ctx, uint8_t **bytes, size_t *size) {
    *bytes = NULL;
    if (arg[0] == '@') {
        sqt_blob b;
        sqt_error err;
        sqt_error_clear(&err);
        if (sqt_blob_load(arg + 1, ctx->stdin_limit, &b, &err)) return cli_report_io("--fingerprint", &err);
        if (b.size < 1 || b.size > 4096) {
            cli_error("--fingerprint: %s has %zu bytes; a fingerprint has 1..4096", arg + 1, b.size);
            sqt_blob_free(&b);
            return EXIT_DATA;
        }
        *bytes = malloc(b.size);
        if (*bytes) memcpy(*bytes, b.data, b.size);
        *size = b.size;
        sqt_blob_free(&b);
        if (*bytes == NULL) {
            cli_error("out of memory");
            return EXIT_IO;
        }
        return EXIT_OK;
    }
    const size_t n = strlen(arg);
    if (n == 0 || n % 2 || n > 8192) {
        cli_error("--fingerprint: give an even number of hex digits (1..4096 bytes), or @FILE");
        return EXIT_USAGE;
    }
    *bytes = malloc(n / 2);
    if (*bytes == NULL) {
        cli_error("out of memory");
        return EXIT_IO;
    }
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_value(arg[2 * i]), lo = hex_value(arg[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            cli_error("--fingerprint: '%c%c' is not a hex byte (use @FILE for raw bytes)", arg[2 * i], arg[2 * i + 1]);
            free(*bytes);
            *bytes = NULL;
            return EXIT_USAGE;
        }
        (*bytes)[i] = (uint8_t)(hi << 4 | lo);
    }
    *size = n / 2;
    return EXIT_OK;
}

int encode_settings_attach(const encode_settings *s, const cli_ctx *ctx, sqkv_writer *w, uint32_t n_tokens,
                           const int32_t *input_tokens) {
    sqkv_error e;
    if (s->token_ids_path) {
        int32_t *ids;
        size_t count;
        sqt_error err;
        sqt_error_clear(&err);
        if (token_ids_load(s->token_ids_path, ctx->stdin_limit, &ids, &count, &err))
            return cli_report_io(s->token_ids_path, &err);
        if (count != n_tokens) {
            cli_error("%s: %zu token ids for a cache of %u tokens", s->token_ids_path, count, n_tokens);
            free(ids);
            return EXIT_DATA;
        }
        e = sqkv_writer_set_tokens(w, ids, count);
        free(ids);
        if (e) return cli_report("--token-ids", e, sqkv_writer_error_detail(w));
    } else if (input_tokens) {
        e = sqkv_writer_set_tokens(w, input_tokens, n_tokens);
        if (e) return cli_report("token ids", e, sqkv_writer_error_detail(w));
    }
    if (s->fingerprint) {
        uint8_t *fp;
        size_t size = 0;
        int rc = load_fingerprint(s->fingerprint, ctx, &fp, &size);
        if (rc) return rc;
        e = sqkv_writer_set_fingerprint(w, fp, size);
        free(fp);
        if (e) return cli_report("--fingerprint", e, sqkv_writer_error_detail(w));
    }
    for (size_t i = 0; i < s->n_meta; i++) {
        const char *eq = strchr(s->meta[i], '=');
        e = sqkv_writer_add_metadata(w, s->meta[i], (size_t)(eq - s->meta[i]), eq + 1, strlen(eq + 1));
        if (e) return cli_report("--meta", e, sqkv_writer_error_detail(w));
    }
    return EXIT_OK;
}
