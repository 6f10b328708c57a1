/* cli_common.c: see cli_common.h. */
#include "tools/sqkv/cli_common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_ctx_init(cli_ctx *ctx) {
    ctx->verbosity = 1;
    ctx->force = 0;
    ctx->no_progress = 0;
    ctx->stdin_limit = SQKV_DEFAULT_STDIN_LIMIT;
}

static void vmessage(const char *fmt, va_list ap) {
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "sqkv: %s\n", line);
}

void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

void cli_note(const cli_ctx *ctx, int level, const char *fmt, ...) {
    if (ctx->verbosity < level) return;
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
}

int cli_exit_code(sqkv_error err) {
    switch (err) {
    case SQKV_OK: return EXIT_OK;
    case SQKV_ERR_IO:
    case SQKV_ERR_OUT_OF_MEMORY: return EXIT_IO;
    case SQKV_ERR_INVALID_ARGUMENT: return EXIT_USAGE;
    default: return EXIT_DATA;
    }
}

int cli_report(const char *what, sqkv_error err, const char *detail) {
    /* The library's details may already start with the error's name; do not say it twice. */
    const char *name = sqkv_error_name(err);
    if (detail && strncmp(detail, name, strlen(name)) == 0 && strncmp(detail + strlen(name), ": ", 2) == 0)
        detail += strlen(name) + 2;
    if (detail && *detail)
        cli_error("%s: %s: %s: %s", what, sqkv_error_name(err), sqkv_error_message(err), detail);
    else
        cli_error("%s: %s: %s", what, sqkv_error_name(err), sqkv_error_message(err));
    return cli_exit_code(err);
}

int cli_report_io(const char *what, const sqt_error *err) {
    if (what && *what) cli_error("%s: %s", what, err->message);
    else cli_error("%s", err->message);
    return err->cls == SQT_OK ? EXIT_DATA : (int)err->cls;
}

int cli_parse_u64(const char *option, const char *text, uint64_t *out) {
    char *end;
    if (text[0] < '0' || text[0] > '9') goto bad;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end) goto bad;
    *out = v;
    return 0;
bad:
    cli_error("%s: '%s' is not a non-negative integer", option, text);
    return -1;
}

int cli_parse_u32(const char *option, const char *text, uint32_t min, uint32_t max, uint32_t *out) {
    uint64_t v;
    if (cli_parse_u64(option, text, &v)) return -1;
    if (v < min || v > max) {
        cli_error("%s: %s is out of range (%u..%u)", option, text, min, max);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int cli_parse_double(const char *option, const char *text, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v)) {
        cli_error("%s: '%s' is not a number", option, text);
        return -1;
    }
    if (v < min || v > max) {
        cli_error("%s: %s is out of range [%g, %g]", option, text, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int cli_parse_index_list(const char *option, const char *text, uint32_t limit, cli_index_list *out) {
    out->items = NULL;
    out->count = 0;
    uint8_t *chosen = calloc(limit ? limit : 1, 1);
    if (chosen == NULL) {
        cli_error("out of memory");
        return -1;
    }
    const char *p = text;
    for (;;) {
        char *end;
        if (*p < '0' || *p > '9') goto bad;
        unsigned long first = strtoul(p, &end, 10), last = first;
        p = end;
        if (*p == '-') {
            p++;
            if (*p < '0' || *p > '9') goto bad;
            last = strtoul(p, &end, 10);
            p = end;
        }
        if (last < first) goto bad;
        if (last >= limit) {
            cli_error("%s: index %lu is out of range (the file has %u)", option, last, limit);
            free(chosen);
            return -1;
        }
        for (unsigned long i = first; i <= last; i++) chosen[i] = 1;
        if (*p == '\0') break;
        if (*p != ',') goto bad;
        p++;
    }
    out->items = malloc(limit * sizeof *out->items);
    if (out->items == NULL) {
        free(chosen);
        cli_error("out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < limit; i++)
        if (chosen[i]) out->items[out->count++] = i;
    qsort(out->items, out->count, sizeof *out->items, cmp_u32);
    free(chosen);
    return 0;
bad:
    free(chosen);
    cli_error("%s: '%s' is not a list of indices such as 0,2-5", option, text);
    return -1;
}

void cli_index_list_free(cli_index_list *l) {
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

const char *cli_dtype_name(sqkv_dtype t) {
    switch (t) {
    case SQKV_DTYPE_FP16: return "fp16";
    case SQKV_DTYPE_BF16: return "bf16";
    case SQKV_DTYPE_FP32: return "fp32";
    }
    return "unknown";
}

const char *cli_quantizer_name(unsigned q) {
    switch (q) {
    case SQKV_QUANT_EXACT: return "exact";
    case SQKV_QUANT_SYMMETRIC: return "symmetric";
    case SQKV_QUANT_ASYMMETRIC: return "asymmetric";
    }
    return "unknown";
}

const char *cli_granularity_name(unsigned g) {
    switch (g) {
    case SQKV_SCALE_NONE: return "none";
    case SQKV_SCALE_PER_HEAD: return "head";
    case SQKV_SCALE_PER_TILE: return "tile";
    case SQKV_SCALE_PER_HALF_TILE: return "half-tile";
    }
    return "unknown";
}
