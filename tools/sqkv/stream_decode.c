/* stream_decode.c: see stream_decode.h. */
#define _POSIX_C_SOURCE 200809L
#include "tools/sqkv/stream_decode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "float16.h"
#include "tools/common/npy.h"
#include "tools/sqkv/output_file.h"
#include "tools/sqkv/stream_input.h"

typedef struct npy_sink {
    cli_output *out;
    sqkv_dtype requested;        /* 0 = default */
    sqkv_dtype decoded;          /* what the decoder produces */
    sqkv_dtype written;          /* element type of the .npy, chosen at the header */
    sqkv_geometry g;
    uint64_t header_size, total_size;
    uint16_t *scratch;           /* one head's rows converted to fp16 */
    size_t scratch_elems;
    int rc;                      /* exit code of a failed callback */
} npy_sink;

static int write_at(npy_sink *s, const void *data, size_t size, uint64_t offset) {
    const unsigned char *p = data;
    while (size > 0) {
        ssize_t n = pwrite(s->out->fd, p, size, (off_t)offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            cli_error("%s: write failed: %s", s->out->path ? s->out->path : "output", strerror(errno));
            s->rc = EXIT_IO;
            return -1;
        }
        p += n;
        size -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

static int on_header(void *ctx, const sqkv_geometry *g) {
    npy_sink *s = ctx;
    s->g = *g;
    s->written = s->requested ? s->requested : g->value_dtype == SQKV_DTYPE_FP16 ? SQKV_DTYPE_FP16 : SQKV_DTYPE_FP32;
    const uint64_t shape[5] = {2, g->n_layers, g->n_kv_heads, g->n_tokens, g->head_dim};
    uint64_t elems = 2;
    for (int i = 1; i < 5; i++) {
        if (shape[i] != 0 && elems > (UINT64_MAX / 8) / shape[i]) {
            cli_error("(stdin): the cache is too large for one .npy");
            s->rc = EXIT_DATA;
            return 1;
        }
        elems *= shape[i];
    }
    uint8_t header[SQT_NPY_HEADER_CAP];
    size_t len;
    sqt_error err;
    sqt_error_clear(&err);
    if (sqt_npy_format_header(s->written == SQKV_DTYPE_FP16 ? SQT_F16 : SQT_F32, shape, 5, header, sizeof header,
                              &len, &err)) {
        s->rc = cli_report_io(NULL, &err);
        return 1;
    }
    s->header_size = len;
    s->total_size = len + elems * (s->written == SQKV_DTYPE_FP16 ? 2u : 4u);
    return write_at(s, header, len, 0) ? 1 : 0;
}

static int on_tensor(void *ctx, const sqkv_stream_tensor *t) {
    npy_sink *s = ctx;
    const sqkv_geometry *g = &s->g;
    const size_t out_size = s->written == SQKV_DTYPE_FP16 ? 2 : 4;
    const size_t row_elems = (size_t)t->token_count * g->head_dim;
    if (s->written != s->decoded && row_elems > s->scratch_elems) {
        uint16_t *grown = realloc(s->scratch, row_elems * sizeof *grown);
        if (grown == NULL) {
            cli_error("out of memory");
            s->rc = EXIT_IO;
            return 1;
        }
        s->scratch = grown;
        s->scratch_elems = row_elems;
    }
    for (uint32_t j = 0; j < t->head_count; j++) {
        const uint32_t head = t->head_start + j;
        const unsigned char *rows = (const unsigned char *)t->data + (size_t)j * t->head_stride;
        const uint64_t element = ((((uint64_t)t->tensor * g->n_layers + t->layer) * g->n_kv_heads + head) * g->n_tokens +
                                  t->token_start) * g->head_dim;
        const void *data = rows;
        if (s->written != s->decoded) {
            /* The decoder gives fp32 when the file's type was not known at its creation; values of an
             * fp16 file are exact in fp16, so rounding back changes nothing. */
            const float *f = (const float *)(const void *)rows;
            for (size_t i = 0; i < row_elems; i++) s->scratch[i] = sqkv_double_to_fp16((double)f[i]);
            data = s->scratch;
        }
        if (write_at(s, data, row_elems * out_size, s->header_size + element * out_size)) return 1;
    }
    return 0;
}

int stream_decode_npy(const char *out_path, sqkv_dtype dtype, const cli_ctx *ctx, uint64_t *bytes_written,
                      sqkv_geometry *geometry) {
    cli_output o;
    sqt_error err;
    sqt_error_clear(&err);
    *bytes_written = 0;
    if (cli_output_open(&o, out_path, ctx, &err)) return cli_report_io(NULL, &err);
    if (o.is_stdout) {
        cli_output_abort(&o);
        cli_error("decode: streaming needs a file output");
        return EXIT_USAGE;
    }
    npy_sink s;
    memset(&s, 0, sizeof s);
    s.out = &o;
    s.requested = dtype;
    s.decoded = dtype ? dtype : SQKV_DTYPE_FP32;
    sqkv_stream_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.ctx = &s;
    cb.on_header = on_header;
    cb.on_tensor = on_tensor;
    sqkv_stream_status st;
    int rc = stream_stdin(s.decoded, &cb, &s.rc, &st);
    if (rc == EXIT_OK && cli_output_commit(&o, &err)) rc = cli_report_io(NULL, &err);
    cli_output_abort(&o);
    free(s.scratch);
    if (rc == EXIT_OK) {
        *bytes_written = s.total_size;
        *geometry = s.g;
    }
    return rc;
}
