/* cmd_encode.c: `sqkv encode IN OUT`: a dense cache (.npy / .safetensors) to an .sqkv file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/util.h"
#include "tools/sqkv/cli_args.h"
#include "tools/sqkv/commands.h"
#include "tools/sqkv/dense_input.h"
#include "tools/sqkv/encode_options.h"
#include "tools/sqkv/output_file.h"
#include "tools/sqkv/progress.h"

static const char help[] =
    "Usage: sqkv encode [options] IN OUT\n"
    "\n"
    "Compresses a dense KV cache IN into the .sqkv file OUT (\"-\" = stdout). IN is one of:\n"
    "  PREFIX            PREFIX.k.npy and PREFIX.v.npy, each [layers, heads, tokens, head_dim], and\n"
    "                    optionally PREFIX.tokens.npy (int32 [tokens]); PREFIX.k.npy also works as IN\n"
    "  FILE.npy          one array [2, layers, heads, tokens, head_dim]: K = [0], V = [1]\n"
    "  DIR               DIR/layers.{i}.key.npy and DIR/layers.{i}.value.npy, each [heads, tokens,\n"
    "                    head_dim], i = 0, 1, ...; optionally DIR/tokens.npy\n"
    "  FILE.safetensors  tensors layers.{i}.key and layers.{i}.value, each [heads, tokens, head_dim],\n"
    "                    optionally tokens (I32 [tokens]); \"__metadata__\" entries become metadata\n"
    "  -                 stdin, holding one .npy [2, L, H, T, D] or one .safetensors (by content)\n"
    ".npy arrays are '<f2' (fp16) or '<f4' (fp32), C order; .safetensors tensors F16, BF16 or F32.\n"
    "Keys are expected after the rotary embedding, as inference engines cache them.\n"
    "stdin is read fully into memory first (up to --stdin-limit); a streaming encoder is future work.\n"
    "\n";

static void print_help(void) {
    fputs(help, stdout);
    fputs(encode_options_help, stdout);
    fputs(encode_extra_help, stdout);
    fputs("\n", stdout);
    fputs(cli_common_help, stdout);
}

/* "__metadata__" entries of a safetensors input, except keys given with --meta. */
static int add_input_metadata(const encode_settings *s, const dense_input *in, sqkv_writer *w) {
    for (size_t i = 0; i < in->n_meta; i++) {
        const sqt_st_meta *m = &in->meta[i];
        int overridden = 0;
        for (size_t j = 0; j < s->n_meta; j++)
            if (strncmp(s->meta[j], m->key, m->key_len) == 0 && s->meta[j][m->key_len] == '=') overridden = 1;
        if (overridden) continue;
        sqkv_error e = sqkv_writer_add_metadata(w, m->key, m->key_len, m->value, m->value_len);
        if (e) return cli_report("safetensors __metadata__", e, sqkv_writer_error_detail(w));
    }
    return EXIT_OK;
}

static int create_writer(const encode_settings *s, const dense_input *in, sqkv_writer **w) {
    if (s->dense_window > in->n_tokens) {
        cli_error("--dense-window %u is larger than the input's %u tokens", s->dense_window, in->n_tokens);
        return EXIT_USAGE;
    }
    sqkv_geometry g;
    memset(&g, 0, sizeof g);
    g.n_layers = in->n_layers;
    g.n_kv_heads = in->n_heads;
    g.head_dim = in->head_dim;
    g.n_tokens = in->n_tokens;
    g.dense_window = s->dense_window;
    g.value_dtype = encode_settings_element_type(s, in->dtype);
    g.source_dtype = (sqkv_dtype)in->dtype;
    sqkv_error e = sqkv_writer_create(&g, &s->opts, w);
    if (e == SQKV_ERR_LIMIT)
        return cli_report("encode", e, "a section would exceed 2^32-1 elements or the file 2^20 sections; "
                                       "try --tokens-per-section or --heads-per-section");
    if (e) return cli_report("encode", e, "the geometry or the encoder options were refused");
    return EXIT_OK;
}

static int compress_layers(sqkv_writer *w, dense_input *in, const cli_ctx *ctx) {
    cli_progress progress;
    cli_progress_start(&progress, ctx, "encode");
    int rc = EXIT_OK;
    for (uint32_t l = 0; l < in->n_layers && rc == EXIT_OK; l++) {
        const void *k = dense_input_tensor(in, l, SQKV_TENSOR_K), *v = dense_input_tensor(in, l, SQKV_TENSOR_V);
        if (k == NULL || v == NULL) {
            cli_error("out of memory");
            rc = EXIT_IO;
            break;
        }
        sqkv_error e = sqkv_writer_add_layer(w, l, (sqkv_dtype)in->dtype, k, v);
        if (e) {
            char what[64];
            snprintf(what, sizeof what, "layer %u", l);
            rc = cli_report(what, e, sqkv_writer_error_detail(w));
        }
        cli_progress_update(&progress, l + 1, in->n_layers);
    }
    cli_progress_end(&progress);
    return rc;
}

static int save(sqkv_writer *w, const char *path, const cli_ctx *ctx, uint64_t *size) {
    cli_output o;
    sqt_error err;
    sqt_error_clear(&err);
    sqkv_error e = sqkv_writer_file_size(w, size);
    if (e) return cli_report("encode", e, sqkv_writer_error_detail(w));
    if (cli_output_open(&o, path, ctx, &err)) return cli_report_io(NULL, &err);
    e = sqkv_writer_write_fd(w, o.fd);
    if (e) {
        cli_output_abort(&o);
        return cli_report(cli_output_name(path), e, sqkv_writer_error_detail(w));
    }
    int rc = cli_output_commit(&o, &err) ? cli_report_io(NULL, &err) : EXIT_OK;
    cli_output_abort(&o);
    return rc;
}

int cmd_encode(int argc, char **argv, cli_ctx *ctx) {
    static const cli_option none[] = {{NULL, 0, 0, 0}};
    cli_parser p;
    cli_parser_init(&p, argc - 1, argv + 1, none, "encode");
    cli_parser_add_table(&p, encode_option_table);
    cli_parser_add_table(&p, encode_extra_table);
    encode_settings s;
    encode_settings_init(&s);
    const char *paths[2] = {NULL, NULL}, *value;
    int n_paths = 0, id, rc = EXIT_OK;
    while (rc == EXIT_OK && (id = cli_next(&p, &value)) != CLI_NEXT_END) {
        int applied;
        if (id == CLI_NEXT_ERROR) rc = EXIT_USAGE;
        else if (id == CLI_OPT_HELP) {
            print_help();
            encode_settings_free(&s);
            return EXIT_OK;
        } else if (id == CLI_NEXT_POSITIONAL) {
            if (n_paths == 2) {
                cli_error("encode: too many arguments ('%s'); expected IN OUT", value);
                rc = EXIT_USAGE;
            } else {
                paths[n_paths++] = value;
            }
        } else if ((applied = encode_settings_apply(&s, id, value)) != 0) {
            if (applied < 0) rc = EXIT_USAGE;
        } else if (cli_apply_common(ctx, id, value) < 0) {
            rc = EXIT_USAGE;
        }
    }
    if (rc == EXIT_OK && n_paths != 2) {
        cli_error("encode: expected IN and OUT (see 'sqkv encode --help')");
        rc = EXIT_USAGE;
    }
    if (rc == EXIT_OK && encode_settings_finish(&s)) rc = EXIT_USAGE;
    if (rc == EXIT_OK && strcmp(paths[0], "-") == 0 && s.token_ids_path && strcmp(s.token_ids_path, "-") == 0) {
        cli_error("encode: stdin cannot be both IN and --token-ids");
        rc = EXIT_USAGE;
    }
    sqt_error err;
    sqt_error_clear(&err);
    if (rc == EXIT_OK && cli_output_check(paths[1], ctx, &err)) rc = cli_report_io(NULL, &err);
    if (rc != EXIT_OK) {
        encode_settings_free(&s);
        return rc;
    }

    const double t0 = sqkv_now();
    dense_input in;
    sqkv_writer *w = NULL;
    uint64_t size = 0;
    if (dense_input_open(paths[0], ctx, &in, &err)) rc = cli_report_io(NULL, &err);
    if (rc == EXIT_OK) rc = create_writer(&s, &in, &w);
    if (rc == EXIT_OK) rc = encode_settings_attach(&s, ctx, w, in.n_tokens, in.tokens);
    if (rc == EXIT_OK) rc = add_input_metadata(&s, &in, w);
    if (rc == EXIT_OK) rc = compress_layers(w, &in, ctx);
    if (rc == EXIT_OK) rc = save(w, paths[1], ctx, &size);
    if (rc == EXIT_OK && ctx->verbosity >= 1) {
        const uint64_t fp16 = 4ull * in.n_layers * in.n_heads * (uint64_t)in.n_tokens * in.head_dim;
        char a[32], b[32], desc[160];
        encode_settings_describe(&s, desc, sizeof desc);
        cli_note(ctx, 1, "%s -> %s: %u layers x %u heads x %u tokens x %u (%s, %s), %s as fp16 -> %s (%.2f%%), %.2f s",
                 strcmp(paths[0], "-") ? paths[0] : "(stdin)", cli_output_name(paths[1]), in.n_layers, in.n_heads,
                 in.n_tokens, in.head_dim, in.form, sqt_dtype_name(in.dtype), sqkv_human_size(fp16, a, sizeof a),
                 sqkv_human_size(size, b, sizeof b), 100.0 * (double)size / (double)fp16, sqkv_now() - t0);
        cli_note(ctx, 2, "encoding: %s", desc);
    }
    sqkv_writer_destroy(w);
    dense_input_close(&in);
    encode_settings_free(&s);
    return rc;
}
