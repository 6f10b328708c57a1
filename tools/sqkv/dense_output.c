/* dense_output.c: see dense_output.h. */
#include "tools/sqkv/dense_output.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/npy.h"
#include "tools/sqkv/output_file.h"
#include "tools/sqkv/progress.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int dense_out_choose_format(const char *path, const char *format_option, dense_out_format *out) {
    if (format_option) {
        if (strcmp(format_option, "npy") == 0) *out = DENSE_OUT_NPY;
        else if (strcmp(format_option, "npy-pair") == 0) *out = DENSE_OUT_NPY_PAIR;
        else if (strcmp(format_option, "safetensors") == 0) *out = DENSE_OUT_SAFETENSORS;
        else {
            cli_error("--format: '%s' is not npy, npy-pair or safetensors", format_option);
            return -1;
        }
        if (*out == DENSE_OUT_NPY_PAIR && strcmp(path, "-") == 0) {
            cli_error("--format npy-pair writes several files and cannot go to stdout");
            return -1;
        }
        return 0;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strcmp(path, "-") == 0 || ends_with(path, ".safetensors")) *out = DENSE_OUT_SAFETENSORS;
    else if (ends_with(path, ".npy")) *out = DENSE_OUT_NPY;
    else if (strchr(base, '.') == NULL && *base) *out = DENSE_OUT_NPY_PAIR;
    else {
        cli_error("cannot tell the output format from '%s': name it .npy or .safetensors, give a PREFIX without "
                  "an extension (writes PREFIX.k.npy, PREFIX.v.npy), or use --format", path);
        return -1;
    }
    return 0;
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", a, b);
    return s;
}

/* The files a spec writes: one, or PREFIX.{k,v,tokens}.npy. */
typedef struct out_paths {
    char *path[3];
    int count;
} out_paths;

static int make_paths(const char *path, const dense_out_spec *spec, out_paths *p) {
    memset(p, 0, sizeof *p);
    if (spec->format != DENSE_OUT_NPY_PAIR) {
        p->path[0] = join(path, "");
        p->count = 1;
    } else {
        p->path[0] = join(path, ".k.npy");
        p->path[1] = join(path, ".v.npy");
        p->count = 2;
        if (spec->tokens) p->path[p->count++] = join(path, ".tokens.npy");
    }
    for (int i = 0; i < p->count; i++)
        if (p->path[i] == NULL) return -1;
    return 0;
}

static void free_paths(out_paths *p) {
    for (int i = 0; i < 3; i++) free(p->path[i]);
}

int dense_out_check(const char *path, const dense_out_spec *spec, const cli_ctx *ctx) {
    out_paths p;
    int rc = EXIT_OK;
    if (make_paths(path, spec, &p)) {
        cli_error("out of memory");
        rc = EXIT_IO;
    }
    for (int i = 0; i < p.count && rc == EXIT_OK; i++) {
        sqt_error err;
        sqt_error_clear(&err);
        if (cli_output_check(p.path[i], ctx, &err)) rc = cli_report_io(NULL, &err);
    }
    free_paths(&p);
    return rc;
}

typedef struct writer_state {
    const dense_out_spec *spec;
    dense_out_producer produce;
    void *pctx;
    void *buf;
    size_t tensor_bytes;
    cli_progress progress;
    uint64_t done, total, written;
} writer_state;

static int put(cli_output *o, writer_state *s, const void *data, size_t size) {
    sqt_error err;
    sqt_error_clear(&err);
    if (cli_output_write(o, data, size, &err)) return cli_report_io(NULL, &err);
    s->written += size;
    return EXIT_OK;
}

static int put_tensor(cli_output *o, writer_state *s, uint32_t index, sqkv_tensor t) {
    int rc = s->produce(s->pctx, index, t, s->buf, s->tensor_bytes);
    if (rc) return rc;
    rc = put(o, s, s->buf, s->tensor_bytes);
    cli_progress_update(&s->progress, ++s->done, s->total);
    return rc;
}

static int put_npy_header(cli_output *o, writer_state *s, sqt_dtype dtype, const uint64_t *shape, uint32_t ndim) {
    uint8_t header[SQT_NPY_HEADER_CAP];
    size_t len;
    sqt_error err;
    sqt_error_clear(&err);
    if (sqt_npy_format_header(dtype, shape, ndim, header, sizeof header, &len, &err)) return cli_report_io(NULL, &err);
    return put(o, s, header, len);
}

static int write_stacked(cli_output *o, writer_state *s) {
    const dense_out_spec *sp = s->spec;
    const uint64_t shape[5] = {2, sp->n_layers, sp->n_heads, sp->n_tokens, sp->head_dim};
    int rc = put_npy_header(o, s, sp->dtype, shape, 5);
    for (int t = 0; t < 2 && !rc; t++)
        for (uint32_t i = 0; i < sp->n_layers && !rc; i++) rc = put_tensor(o, s, i, (sqkv_tensor)t);
    return rc;
}

static int write_one_of_pair(cli_output *o, writer_state *s, int which) {
    const dense_out_spec *sp = s->spec;
    if (which == 2) {
        const uint64_t shape[1] = {sp->n_tokens};
        int rc = put_npy_header(o, s, SQT_I32, shape, 1);
        return rc ? rc : put(o, s, sp->tokens, (size_t)sp->n_tokens * sizeof(int32_t));
    }
    const uint64_t shape[4] = {sp->n_layers, sp->n_heads, sp->n_tokens, sp->head_dim};
    int rc = put_npy_header(o, s, sp->dtype, shape, 4);
    for (uint32_t i = 0; i < sp->n_layers && !rc; i++) rc = put_tensor(o, s, i, (sqkv_tensor)which);
    return rc;
}

static int write_safetensors(cli_output *o, writer_state *s) {
    const dense_out_spec *sp = s->spec;
    const size_t n = 2 * (size_t)sp->n_layers + (sp->tokens ? 1 : 0);
    sqt_st_desc *descs = calloc(n, sizeof *descs);
    char *names = calloc(n, 32);
    if (descs == NULL || names == NULL) {
        free(descs);
        free(names);
        cli_error("out of memory");
        return EXIT_IO;
    }
    for (uint32_t i = 0; i < sp->n_layers; i++)
        for (int t = 0; t < 2; t++) {
            sqt_st_desc *d = &descs[2 * i + t];
            char *name = names + 32 * (2 * i + t);
            snprintf(name, 32, "layers.%u.%s", sp->layer_ids[i], t ? "value" : "key");
            d->name = name;
            d->dtype = sp->dtype;
            d->ndim = 3;
            d->shape[0] = sp->n_heads;
            d->shape[1] = sp->n_tokens;
            d->shape[2] = sp->head_dim;
        }
    if (sp->tokens) {
        sqt_st_desc *d = &descs[n - 1];
        d->name = "tokens";
        d->dtype = SQT_I32;
        d->ndim = 1;
        d->shape[0] = sp->n_tokens;
    }
    uint8_t *header;
    size_t len;
    uint64_t data_size;
    sqt_error err;
    sqt_error_clear(&err);
    int rc = EXIT_OK;
    if (sqt_st_format_header(descs, n, sp->meta, sp->n_meta, &header, &len, &data_size, &err)) {
        rc = cli_report_io(NULL, &err);
    } else {
        rc = put(o, s, header, len);
        free(header);
    }
    free(descs);
    free(names);
    for (uint32_t i = 0; i < sp->n_layers && !rc; i++) {
        rc = put_tensor(o, s, i, SQKV_TENSOR_K);
        if (!rc) rc = put_tensor(o, s, i, SQKV_TENSOR_V);
    }
    if (!rc && sp->tokens) rc = put(o, s, sp->tokens, (size_t)sp->n_tokens * sizeof(int32_t));
    return rc;
}

int dense_out_write(const char *path, const dense_out_spec *spec, dense_out_producer produce, void *pctx,
                    const cli_ctx *ctx, uint64_t *bytes_written) {
    writer_state s;
    memset(&s, 0, sizeof s);
    s.spec = spec;
    s.produce = produce;
    s.pctx = pctx;
    s.tensor_bytes = (size_t)spec->n_heads * spec->n_tokens * spec->head_dim * sqt_dtype_size(spec->dtype);
    s.total = 2 * (uint64_t)spec->n_layers;
    s.buf = malloc(s.tensor_bytes ? s.tensor_bytes : 1);
    if (s.buf == NULL) {
        cli_error("out of memory for a %zu-byte tensor", s.tensor_bytes);
        return EXIT_IO;
    }
    out_paths p;
    if (make_paths(path, spec, &p)) {
        free_paths(&p);
        free(s.buf);
        cli_error("out of memory");
        return EXIT_IO;
    }
    cli_progress_start(&s.progress, ctx, "decode");
    int rc = EXIT_OK;
    for (int i = 0; i < p.count && rc == EXIT_OK; i++) {
        cli_output o;
        sqt_error err;
        sqt_error_clear(&err);
        if (cli_output_open(&o, p.path[i], ctx, &err)) {
            rc = cli_report_io(NULL, &err);
            break;
        }
        if (spec->format == DENSE_OUT_NPY) rc = write_stacked(&o, &s);
        else if (spec->format == DENSE_OUT_SAFETENSORS) rc = write_safetensors(&o, &s);
        else rc = write_one_of_pair(&o, &s, i);
        if (rc == EXIT_OK && cli_output_commit(&o, &err)) rc = cli_report_io(NULL, &err);
        cli_output_abort(&o);
    }
    cli_progress_end(&s.progress);
    free_paths(&p);
    free(s.buf);
    *bytes_written = s.written;
    return rc;
}
