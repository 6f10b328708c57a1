/* cmd_append.c: `sqkv append FILE IN`: grows the cache in an .sqkv file by the tokens of a dense input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/util.h"
#include "tools/sqkv/cli_args.h"
#include "tools/sqkv/cli_sqkv.h"
#include "tools/sqkv/commands.h"
#include "tools/sqkv/dense_input.h"
#include "tools/sqkv/encode_options.h"
#include "tools/sqkv/token_ids.h"

static const char help[] =
    "Usage: sqkv append [options] FILE IN\n"
    "\n"
    "Appends the tokens of the dense cache IN (the forms `sqkv encode` reads, \"-\" = stdin) to the .sqkv\n"
    "FILE in place (spec 9.1): IN's token count is the number of new tokens; its layers, heads and\n"
    "head_dim must match FILE. No byte already in FILE changes; new sections and a new index are added\n"
    "and fsynced, so an interrupted append leaves FILE's old contents as a prefix (`sqkv repair`).\n"
    "When FILE has token ids, the new ids come from --token-ids or IN's own ids (required); when it\n"
    "has none, IN's ids are ignored.\n"
    "The encoder options default to FILE's (payload bits, quantizer, scales, offset interval, section\n"
    "split, and a sparsity that keeps as many elements per row as FILE's sparse region; --zstd 3 when\n"
    "any section of FILE is zstd-compressed); options given override them. The dense window length\n"
    "is FILE's; --dense-window, --heads-per-section and --element-type are ignored.\n"
    "\n";

static void print_help(void) {
    fputs(help, stdout);
    fputs(encode_options_help, stdout);
    fputs("      --token-ids FILE       ids of the new tokens: .npy int32 [n] or text\n\n", stdout);
    fputs(cli_common_help, stdout);
}

/* Largest count of nonzero elements in one row of the sparse region of layer 0 (K and V). */
static int kept_per_row(cli_sqkv *in, uint32_t *keep) {
    const sqkv_geometry *g = &in->geometry;
    const uint32_t sparse = g->n_tokens - g->dense_window;
    *keep = 0;
    if (sparse == 0) return EXIT_OK;
    const size_t elems = (size_t)g->n_kv_heads * g->n_tokens * g->head_dim;
    uint16_t *x = malloc(elems * sizeof *x);
    if (x == NULL) return cli_report(in->name, SQKV_ERR_OUT_OF_MEMORY, "");
    int rc = EXIT_OK;
    for (int t = 0; t < 2 && !rc; t++) {
        sqkv_error e = sqkv_reader_decode(in->reader, 0, (sqkv_tensor)t, 0, g->n_kv_heads, g->value_dtype, x,
                                          elems * sizeof *x);
        if (e) {
            rc = cli_report(in->name, e, sqkv_reader_error_detail(in->reader));
            break;
        }
        for (uint32_t h = 0; h < g->n_kv_heads; h++)
            for (uint32_t tok = 0; tok < sparse; tok++) {
                const uint16_t *row = x + ((size_t)h * g->n_tokens + tok) * g->head_dim;
                uint32_t n = 0;
                /* fp16 and bf16 both keep the sign in bit 15: a row's nonzeros are its kept values. */
                for (uint32_t c = 0; c < g->head_dim; c++) n += (row[c] & 0x7FFFu) != 0;
                if (n > *keep) *keep = n;
            }
    }
    free(x);
    return rc;
}

/* The file's options, for every option the user did not give. */
static int adopt_file_options(const char *path, const cli_ctx *ctx, encode_settings *s, int zstd_given,
                              sqkv_geometry *g, int *has_tokens) {
    cli_sqkv in;
    int rc = cli_sqkv_open(path, ctx, 0, &in);
    if (rc) return rc;
    *g = in.geometry;
    size_t count = 0;
    *has_tokens = sqkv_reader_tokens(in.reader, NULL, 0, &count) == SQKV_OK && count > 0;
    uint32_t keep = 0;
    rc = kept_per_row(&in, &keep);
    if (!rc) {
        file_options fo;
        cli_sqkv_options(&in, &fo);
        encode_settings_adopt(s, &fo, g, keep);
        if (!zstd_given && fo.n_zstd > 0) s->opts.zstd_level = 3;
    }
    cli_sqkv_close(&in);
    return rc;
}

int cmd_append(int argc, char **argv, cli_ctx *ctx) {
    static const cli_option extra[] = {{"token-ids", 0, 1, 1}, {NULL, 0, 0, 0}};
    cli_parser p;
    cli_parser_init(&p, argc - 1, argv + 1, extra, "append");
    cli_parser_add_table(&p, encode_option_table);
    encode_settings s;
    encode_settings_init(&s);
    const char *paths[2] = {NULL, NULL}, *value, *token_ids_path = NULL;
    int n_paths = 0, id, rc = EXIT_OK;
    while (rc == EXIT_OK && (id = cli_next(&p, &value)) != CLI_NEXT_END) {
        int applied;
        if (id == CLI_NEXT_ERROR) rc = EXIT_USAGE;
        else if (id == CLI_OPT_HELP) {
            print_help();
            encode_settings_free(&s);
            return EXIT_OK;
        } else if (id == 1) {
            token_ids_path = value;
        } else if (id == CLI_NEXT_POSITIONAL) {
            if (n_paths == 2) {
                cli_error("append: too many arguments ('%s'); expected FILE IN", value);
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
        cli_error("append: expected FILE and IN (see 'sqkv append --help')");
        rc = EXIT_USAGE;
    }
    if (rc == EXIT_OK && strcmp(paths[0], "-") == 0) {
        cli_error("append: FILE must be an .sqkv file on disk, not stdin");
        rc = EXIT_USAGE;
    }
    if (rc != EXIT_OK) {
        encode_settings_free(&s);
        return rc;
    }
    const double t0 = sqkv_now();
    sqkv_geometry g;
    int has_tokens = 0;
    rc = adopt_file_options(paths[0], ctx, &s, encode_settings_zstd_given(&s), &g, &has_tokens);
    if (rc == EXIT_OK && encode_settings_finish(&s)) rc = EXIT_USAGE;
    if (rc != EXIT_OK) {
        encode_settings_free(&s);
        return rc;
    }
    dense_input in;
    sqt_error err;
    sqt_error_clear(&err);
    if (dense_input_open(paths[1], ctx, &in, &err)) {
        encode_settings_free(&s);
        return cli_report_io(NULL, &err);
    }
    if (in.n_layers != g.n_layers || in.n_heads != g.n_kv_heads || in.head_dim != g.head_dim) {
        cli_error("append: %s is %u layers x %u heads x head_dim %u; %s is %u x %u x %u", paths[1], in.n_layers,
                  in.n_heads, in.head_dim, paths[0], g.n_layers, g.n_kv_heads, g.head_dim);
        rc = EXIT_DATA;
    }
    int32_t *ids = NULL;
    const int32_t *new_ids = NULL;
    if (rc == EXIT_OK && has_tokens) {
        if (token_ids_path) {
            size_t n_ids = 0;
            if (token_ids_load(token_ids_path, ctx->stdin_limit, &ids, &n_ids, &err)) rc = cli_report_io(NULL, &err);
            else if (n_ids != in.n_tokens) {
                cli_error("append: --token-ids has %zu ids; %s has %u tokens", n_ids, paths[1], in.n_tokens);
                rc = EXIT_DATA;
            }
            new_ids = ids;
        } else if (in.tokens) {
            new_ids = in.tokens;
        } else {
            cli_error("append: %s has token ids, so the new tokens need theirs (--token-ids, or ids in %s)",
                      paths[0], paths[1]);
            rc = EXIT_DATA;
        }
    }
    const void **k = NULL, **v = NULL;
    void **copies = NULL;
    if (rc == EXIT_OK) {
        k = calloc(g.n_layers ? g.n_layers : 1, sizeof *k);
        v = calloc(g.n_layers ? g.n_layers : 1, sizeof *v);
        copies = calloc(2 * (size_t)(g.n_layers ? g.n_layers : 1), sizeof *copies);
        if (!k || !v || !copies) rc = cli_report("append", SQKV_ERR_OUT_OF_MEMORY, "");
    }
    /* dense_input_tensor reuses one buffer per tensor kind; sqkv_append wants every layer at once, so
     * unaligned tensors are copied out. */
    const size_t tensor_bytes = rc == EXIT_OK ? dense_input_tensor_bytes(&in) : 0;
    for (uint32_t l = 0; l < g.n_layers && rc == EXIT_OK; l++)
        for (int t = 0; t < 2 && rc == EXIT_OK; t++) {
            const void *x = dense_input_tensor(&in, l, (sqkv_tensor)t);
            if (x == NULL) {
                rc = cli_report("append", SQKV_ERR_OUT_OF_MEMORY, "");
                break;
            }
            if (x != (const void *)(t ? in.v[l] : in.k[l])) {
                void *c = malloc(tensor_bytes ? tensor_bytes : 1);
                if (c == NULL) {
                    rc = cli_report("append", SQKV_ERR_OUT_OF_MEMORY, "");
                    break;
                }
                memcpy(c, x, tensor_bytes);
                copies[2 * (size_t)l + (size_t)t] = c;
                x = c;
            }
            if (t) v[l] = x;
            else k[l] = x;
        }
    uint64_t old_size = 0;
    if (rc == EXIT_OK) {
        char detail[512] = "";
        uint64_t ignored;
        (void)sqkv_find_valid_prefix(paths[0], NULL, &old_size, &ignored, NULL, 0);
        sqkv_geometry shape; /* of the arrays passed: the library checks it against the file */
        memset(&shape, 0, sizeof shape);
        shape.n_layers = in.n_layers;
        shape.n_kv_heads = in.n_heads;
        shape.head_dim = in.head_dim;
        sqkv_error e = sqkv_append(paths[0], &shape, &s.opts, NULL, in.n_tokens, new_ids, (sqkv_dtype)in.dtype,
                                   (const void *const *)k, (const void *const *)v, detail, sizeof detail);
        if (e) rc = cli_report(paths[0], e, detail);
    }
    if (rc == EXIT_OK && ctx->verbosity >= 1) {
        char desc[160];
        encode_settings_describe(&s, desc, sizeof desc);
        cli_note(ctx, 1, "%s += %s: %u new tokens (now %u), %s, %.2f s", paths[0],
                 strcmp(paths[1], "-") ? paths[1] : "(stdin)", in.n_tokens, g.n_tokens + in.n_tokens, desc,
                 sqkv_now() - t0);
    }
    if (copies)
        for (size_t i = 0; i < 2 * (size_t)g.n_layers; i++) free(copies[i]);
    free(copies);
    free(k);
    free(v);
    free(ids);
    dense_input_close(&in);
    encode_settings_free(&s);
    return rc;
}
