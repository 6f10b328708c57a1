/* cmd_decode.c: `sqkv decode IN OUT`: an .sqkv file back to dense .npy or .safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/util.h"
#include "tools/sqkv/cli_args.h"
#include "tools/sqkv/commands.h"
#include "tools/sqkv/dense_output.h"
#include "tools/sqkv/output_file.h"
#include "tools/sqkv/cli_sqkv.h"
#include "tools/sqkv/stream_decode.h"

static const char help[] =
    "Usage: sqkv decode [options] IN OUT\n"
    "\n"
    "Decodes the .sqkv file IN (\"-\" = stdin) into a dense cache OUT (\"-\" = stdout):\n"
    "  OUT.npy           one array [2, layers, heads, tokens, head_dim] (K = [0], V = [1])\n"
    "  PREFIX            (no extension) PREFIX.k.npy and PREFIX.v.npy, each [layers, heads, tokens,\n"
    "                    head_dim], and PREFIX.tokens.npy when the file has token ids\n"
    "  OUT.safetensors   layers.{i}.key and layers.{i}.value [heads, tokens, head_dim], tokens (I32),\n"
    "                    and the file's metadata as \"__metadata__\"\n"
    "  -                 stdout, as .safetensors unless --format says otherwise\n"
    "These are the forms `sqkv encode` reads. Only the sections holding the selected layers and heads\n"
    "are read and checked.\n"
    "From stdin to one .npy file (IN \"-\", OUT.npy, all layers and heads) the input is streamed\n"
    "(streaming decoder): each section is verified and written to its place as it arrives, one section in memory, so any length\n"
    "works; a stream cut short fails (exit 1) naming the section where it stopped and what is missing,\n"
    "and leaves no output. Other outputs from stdin (.safetensors, PREFIX, stdout, --layers/--heads)\n"
    "read stdin fully into memory first (up to --stdin-limit). A file that was appended to (`sqkv\n"
    "append`) cannot be streamed: give it as a path.\n"
    "\n"
    "Options:\n"
    "      --dtype T      fp16 | bf16 | fp32 (default: the file's element type; fp32 for a bf16 file\n"
    "                     written to .npy, which has no bf16 dtype)\n"
    "      --layers LIST  layers to decode, e.g. 0,2-5 (default: all)\n"
    "      --heads LIST   KV heads to decode, e.g. 0-3 (default: all)\n"
    "      --format F     npy | npy-pair | safetensors (default: from OUT's name)\n"
    "\n";

enum { OPT_DTYPE = 1, OPT_LAYERS, OPT_HEADS, OPT_FORMAT };

typedef struct decode_job {
    cli_sqkv in;
    cli_index_list layers, heads;
    sqkv_dtype dtype;
} decode_job;

static int produce(void *pctx, uint32_t index, sqkv_tensor t, void *buf, size_t size) {
    decode_job *j = pctx;
    const sqkv_geometry *g = &j->in.geometry;
    const uint32_t layer = j->layers.items[index];
    const size_t per_head = (size_t)g->n_tokens * g->head_dim * sqt_dtype_size((sqt_dtype)j->dtype);
    uint8_t *out = buf;
    /* One library call per run of consecutive heads: the reader touches only their sections. */
    for (uint32_t i = 0; i < j->heads.count;) {
        uint32_t run = 1;
        while (i + run < j->heads.count && j->heads.items[i + run] == j->heads.items[i] + run) run++;
        sqkv_error e = sqkv_reader_decode(j->in.reader, layer, t, j->heads.items[i], run, j->dtype, out,
                                          size - (size_t)(out - (uint8_t *)buf));
        if (e) {
            char what[512];
            snprintf(what, sizeof what, "%s: layer %u %s heads %u..%u", j->in.name, layer, t == SQKV_TENSOR_K ? "K" : "V",
                     j->heads.items[i], j->heads.items[i] + run - 1);
            return cli_report(what, e, sqkv_reader_error_detail(j->in.reader));
        }
        out += per_head * run;
        i += run;
    }
    return EXIT_OK;
}

static int parse_dtype(const char *value, sqkv_dtype *out) {
    if (strcmp(value, "fp16") == 0) *out = SQKV_DTYPE_FP16;
    else if (strcmp(value, "bf16") == 0) *out = SQKV_DTYPE_BF16;
    else if (strcmp(value, "fp32") == 0) *out = SQKV_DTYPE_FP32;
    else {
        cli_error("--dtype: '%s' is not fp16, bf16 or fp32", value);
        return -1;
    }
    return 0;
}

static int all_indices(uint32_t n, cli_index_list *l) {
    l->items = malloc((n ? n : 1) * sizeof *l->items);
    if (l->items == NULL) return -1;
    for (uint32_t i = 0; i < n; i++) l->items[i] = i;
    l->count = n;
    return 0;
}

/* Token ids and metadata of the file, for the output. */
static int file_extras(decode_job *j, int32_t **tokens, sqt_st_meta **meta, size_t *n_meta) {
    size_t count;
    sqkv_error e = sqkv_reader_tokens(j->in.reader, NULL, 0, &count);
    if (!e && count) {
        *tokens = malloc(count * sizeof **tokens);
        if (*tokens == NULL) return cli_report(j->in.name, SQKV_ERR_OUT_OF_MEMORY, "");
        e = sqkv_reader_tokens(j->in.reader, *tokens, count, &count);
    }
    if (!e) e = sqkv_reader_metadata_count(j->in.reader, n_meta);
    if (!e && *n_meta) {
        *meta = calloc(*n_meta, sizeof **meta);
        if (*meta == NULL) return cli_report(j->in.name, SQKV_ERR_OUT_OF_MEMORY, "");
        for (size_t i = 0; i < *n_meta && !e; i++) {
            const char *k, *v;
            e = sqkv_reader_metadata_entry(j->in.reader, i, &k, &(*meta)[i].key_len, &v, &(*meta)[i].value_len);
            (*meta)[i].key = (char *)k;
            (*meta)[i].value = (char *)v;
        }
    }
    if (e) return cli_report(j->in.name, e, sqkv_reader_error_detail(j->in.reader));
    return EXIT_OK;
}

int cmd_decode(int argc, char **argv, cli_ctx *ctx) {
    static const cli_option options[] = {{"dtype", 0, 1, OPT_DTYPE}, {"layers", 0, 1, OPT_LAYERS},
                                         {"heads", 0, 1, OPT_HEADS}, {"format", 0, 1, OPT_FORMAT}, {NULL, 0, 0, 0}};
    cli_parser p;
    cli_parser_init(&p, argc - 1, argv + 1, options, "decode");
    const char *paths[2] = {NULL, NULL}, *value, *layers_arg = NULL, *heads_arg = NULL, *format_arg = NULL;
    sqkv_dtype dtype = 0;
    int n_paths = 0, id;
    while ((id = cli_next(&p, &value)) != CLI_NEXT_END) {
        if (id == CLI_NEXT_ERROR) return EXIT_USAGE;
        if (id == CLI_OPT_HELP) {
            fputs(help, stdout);
            fputs(cli_common_help, stdout);
            return EXIT_OK;
        }
        if (id == OPT_DTYPE) {
            if (parse_dtype(value, &dtype)) return EXIT_USAGE;
        } else if (id == OPT_LAYERS) {
            layers_arg = value;
        } else if (id == OPT_HEADS) {
            heads_arg = value;
        } else if (id == OPT_FORMAT) {
            format_arg = value;
        } else if (id == CLI_NEXT_POSITIONAL) {
            if (n_paths == 2) {
                cli_error("decode: too many arguments ('%s'); expected IN OUT", value);
                return EXIT_USAGE;
            }
            paths[n_paths++] = value;
        } else if (cli_apply_common(ctx, id, value) < 0) {
            return EXIT_USAGE;
        }
    }
    if (n_paths != 2) {
        cli_error("decode: expected IN and OUT (see 'sqkv decode --help')");
        return EXIT_USAGE;
    }
    dense_out_spec spec;
    memset(&spec, 0, sizeof spec);
    if (dense_out_choose_format(paths[1], format_arg, &spec.format)) return EXIT_USAGE;
    if (dtype == SQKV_DTYPE_BF16 && spec.format != DENSE_OUT_SAFETENSORS) {
        cli_error("decode: .npy has no bf16 dtype; write .safetensors or choose --dtype fp16 or fp32");
        return EXIT_USAGE;
    }

    const double t0 = sqkv_now();
    if (strcmp(paths[0], "-") == 0 && spec.format == DENSE_OUT_NPY && strcmp(paths[1], "-") != 0 && !layers_arg &&
        !heads_arg) {
        int src = dense_out_check(paths[1], &spec, ctx);
        uint64_t written = 0;
        sqkv_geometry g;
        if (!src) src = stream_decode_npy(paths[1], dtype, ctx, &written, &g);
        if (!src) {
            char a[32];
            cli_note(ctx, 1, "(stdin) -> %s: %u layers x %u heads x %u tokens x %u, streamed, %s, %.2f s", paths[1],
                     g.n_layers, g.n_kv_heads, g.n_tokens, g.head_dim, sqkv_human_size(written, a, sizeof a),
                     sqkv_now() - t0);
        }
        return src;
    }
    decode_job j;
    memset(&j, 0, sizeof j);
    int rc = cli_sqkv_open(paths[0], ctx, 0, &j.in);
    if (rc) return rc;
    const sqkv_geometry *g = &j.in.geometry;
    j.dtype = dtype ? dtype : g->value_dtype;
    if (!dtype && j.dtype == SQKV_DTYPE_BF16 && spec.format != DENSE_OUT_SAFETENSORS) j.dtype = SQKV_DTYPE_FP32;
    if (layers_arg ? cli_parse_index_list("--layers", layers_arg, g->n_layers, &j.layers)
                   : all_indices(g->n_layers, &j.layers))
        rc = EXIT_USAGE;
    if (!rc && (heads_arg ? cli_parse_index_list("--heads", heads_arg, g->n_kv_heads, &j.heads)
                          : all_indices(g->n_kv_heads, &j.heads)))
        rc = EXIT_USAGE;
    int32_t *tokens = NULL;
    sqt_st_meta *meta = NULL;
    size_t n_meta = 0;
    if (!rc) rc = file_extras(&j, &tokens, &meta, &n_meta);
    spec.dtype = (sqt_dtype)j.dtype;
    spec.n_layers = j.layers.count;
    spec.layer_ids = j.layers.items;
    spec.n_heads = j.heads.count;
    spec.n_tokens = g->n_tokens;
    spec.head_dim = g->head_dim;
    spec.tokens = tokens;
    spec.meta = meta;
    spec.n_meta = n_meta;
    if (!rc) rc = dense_out_check(paths[1], &spec, ctx);
    uint64_t written = 0;
    if (!rc) rc = dense_out_write(paths[1], &spec, produce, &j, ctx, &written);
    if (!rc) {
        char a[32];
        cli_note(ctx, 1, "%s -> %s: %u layers x %u heads x %u tokens x %u as %s, %s, %.2f s", j.in.name,
                 cli_output_name(paths[1]), spec.n_layers, spec.n_heads, spec.n_tokens, spec.head_dim,
                 cli_dtype_name(j.dtype), sqkv_human_size(written, a, sizeof a), sqkv_now() - t0);
    }
    free(tokens);
    free(meta);
    cli_index_list_free(&j.layers);
    cli_index_list_free(&j.heads);
    cli_sqkv_close(&j.in);
    return rc;
}
