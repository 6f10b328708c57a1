/*
 * encode_options.h: the encoder options shared by encode, demo and bench (every option of
 * sqkv_writer_options, the dense window, the element type, and for encode the token ids, fingerprint
 * and metadata).
 */
#ifndef SQKV_CLI_ENCODE_OPTIONS_H
#define SQKV_CLI_ENCODE_OPTIONS_H

#include <stddef.h>

#include "sqkv.h"
#include "tools/common/dtype.h"
#include "tools/sqkv/cli_args.h"

typedef struct encode_settings {
    sqkv_writer_options opts;
    uint32_t dense_window;
    sqkv_dtype element_type;      /* 0 = from the input: bf16 for bf16 input, fp16 otherwise */
    const char *token_ids_path;   /* NULL when not given */
    const char *fingerprint;      /* hex or @FILE; NULL when not given */
    const char **meta;            /* "KEY=VALUE" arguments */
    size_t n_meta;
    int bits_set, quantizer_set, scales_set;
    unsigned set_mask;            /* which options the user gave (see encode_settings_adopt) */
} encode_settings;

/* Option table: sparsity, bits, quantizer, scales, dense window, sections, element type. */
extern const cli_option encode_option_table[];
/* Additional options of `sqkv encode`: --token-ids, --fingerprint, --meta. */
extern const cli_option encode_extra_table[];
extern const char encode_options_help[];
extern const char encode_extra_help[];

void encode_settings_init(encode_settings *s);
void encode_settings_free(encode_settings *s);
/* 1 when id was an encoder option (applied), 0 when not, -1 after a usage error. */
int encode_settings_apply(encode_settings *s, int id, const char *value);
/* Fills in the choices the user left open (quantizer and scales from the bits, and the reverse) and
 * rejects contradictions. Returns 0, or -1 after a usage error. */
int encode_settings_finish(encode_settings *s);
/* Element type for an input dtype. */
sqkv_dtype encode_settings_element_type(const encode_settings *s, sqt_dtype input);

/* For re-encoding an .sqkv file (bench): takes the file's parameters for every option the user did not
 * give. keep is the most elements kept in any token row of the file's sparse region (the file does not
 * record the sparsity); the sparsity is chosen so that magnitude pruning keeps exactly those. */
struct file_options;
void encode_settings_adopt(encode_settings *s, const struct file_options *fo, const sqkv_geometry *g, uint32_t keep);

/* Whether --zstd was given (the file does not record the level, so append cannot adopt it). */
int encode_settings_zstd_given(const encode_settings *s);

/* "sparsity 0.70, 2-bit symmetric, per-head scales" into buf. */
void encode_settings_describe(const encode_settings *s, char *buf, size_t cap);

/* Applies --token-ids (when given), --fingerprint and --meta to w; input_tokens (may be NULL) are the
 * input's own ids, used when --token-ids is absent. Returns an exit code. */
int encode_settings_attach(const encode_settings *s, const cli_ctx *ctx, sqkv_writer *w, uint32_t n_tokens,
                           const int32_t *input_tokens);

#endif
