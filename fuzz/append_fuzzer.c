/*
 * append_fuzzer: appending and recovery (spec/FORMAT.md §9.1, sqkv.h sqkv_append, sqkv_find_valid_prefix,
 * sqkv_recover) on a real file. A small valid file is written with fuzzer-chosen geometry and options,
 * grown by fuzzer-chosen appends (each with its own payload options, some with invalid arguments), then
 * optionally cut short or given a flipped byte at a fuzzer-chosen point, then opened and recovered.
 *
 * Oracle (besides ASan/UBSan/LSan):
 *   - an append with invalid arguments gives INVALID_ARGUMENT and leaves the file as it was;
 *   - after each append the file opens, verifies and decodes to the grown cache: tokens before the old
 *     sparse end exactly as before, the dense window exactly the input in the element type E, and the
 *     tokens that left the window (or were never in it) exactly as a one-shot encoding of those tokens
 *     alone with the same options decodes them (§9.1: the appender compresses them as one sparse run
 *     from the stored window values); EXACT files decode bit for bit like a one-shot encoding of the
 *     whole grown cache; tokens and geometry come back; a streaming decoder refuses an appended file
 *     with UNSUPPORTED (§2.1 item 5, §12) after delivering the cache as first written;
 *   - cut at a byte: the file opens only at a committed size (then it decodes as that state did);
 *     otherwise a file error. sqkv_append refuses it and changes nothing; sqkv_find_valid_prefix finds
 *     the last committed size at or below the cut, and sqkv_recover truncates to exactly it, after
 *     which the file decodes as that state did and takes another append;
 *   - a flipped byte: every error a documented file error; the valid prefix covers at least every state
 *     committed before the flipped byte and itself opens and verifies, and recover leaves a file that
 *     opens and verifies.
 * Token ids and values come from a PRNG seeded by the input, so no fuzzer bytes can forge a section.
 * The file lives in a per-process temporary file (tmpfs when /dev/shm exists: fsync is cheap there).
 */
#include <fcntl.h>
#include <math.h>
#include <unistd.h>

#include "fuzz_common.h"

#define AP_MAX_APPENDS 4
#define AP_MAX_ELEMS 1024u /* n_kv_heads * final n_tokens * head_dim: small cases, many per second */
#define AP_MAX_STATES (1 + AP_MAX_APPENDS)

typedef struct ap_state {
    uint64_t size;         /* file size when this state was committed */
    uint32_t n_tokens;     /* tokens in it */
    uint16_t *decoded;     /* [layer][tensor][H][n_tokens][D] in E, the reader's decode */
} ap_state;

typedef struct ap_case {
    sqkv_geometry g;       /* as first written */
    sqkv_writer_options o;
    int with_tokens;
    uint32_t n_appends;
    uint32_t add[AP_MAX_APPENDS];          /* tokens per append */
    int invalid[AP_MAX_APPENDS];           /* 0 valid; 1..3 which argument is wrong */
    sqkv_writer_options ao[AP_MAX_APPENDS];
    sqkv_dtype in_dtype[AP_MAX_APPENDS];
    int damage;            /* 0 none, 1 cut, 2 flip */
    uint32_t damage_at;    /* position in 1/65536 of the file */
    uint8_t flip_mask;
    uint64_t seed;
} ap_case;

/* What a hostile or damaged file may give: a rule of the format, or a limit (a flipped size field). */
static int ap_file_error(sqkv_error err) { return fuzz_is_file_error(err) || err == SQKV_ERR_LIMIT; }

static uint64_t ap_rand(uint64_t *state) {
    *state += 0x9E3779B97F4A7C15ull;
    uint64_t z = *state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Payload options from one byte: every quantizer, width and granularity, pruning on or off. */
static void parse_options(fuzz_bytes *in, sqkv_writer_options *o) {
    static const struct {
        uint32_t bits;
        sqkv_quantizer q;
    } quant[8] = {{16, SQKV_QUANT_EXACT},     {2, SQKV_QUANT_SYMMETRIC},  {4, SQKV_QUANT_SYMMETRIC},
                  {8, SQKV_QUANT_SYMMETRIC},  {2, SQKV_QUANT_ASYMMETRIC}, {4, SQKV_QUANT_ASYMMETRIC},
                  {8, SQKV_QUANT_ASYMMETRIC}, {16, SQKV_QUANT_EXACT}};
    sqkv_writer_options_default(o);
    const uint8_t b = fuzz_u8(in);
    o->payload_bits = quant[b & 7].bits;
    o->quantizer = quant[b & 7].q;
    o->scales = o->quantizer == SQKV_QUANT_EXACT ? SQKV_SCALE_NONE : (b & 8) ? SQKV_SCALE_PER_TILE : SQKV_SCALE_PER_HEAD;
    o->prune = (b & 16) ? SQKV_PRUNE_NONE : SQKV_PRUNE_MAGNITUDE;
    o->sparsity = (b >> 5) / 8.0;
    o->offset_interval_log2 = (b >> 3) % 5;
    const uint8_t c = fuzz_u8(in);
    o->tokens_per_section = (c & 3) == 3 ? 64 : 0;
    o->zstd_level = (c & 12) == 12 ? 1 : 0;
}

static void parse_case(const uint8_t *data, size_t size, ap_case *c) {
    memset(c, 0, sizeof *c);
    fuzz_bytes in = {data, size, 0};
    const uint8_t mode = fuzz_u8(&in);
    c->g.value_dtype = (mode & 1) ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
    c->g.source_dtype = c->g.value_dtype;
    c->with_tokens = (mode >> 1) & 1;
    c->damage = ((mode >> 2) & 3) % 3;
    c->g.n_layers = 1 + ((mode >> 4) & 1);
    parse_options(&in, &c->o);
    c->g.n_kv_heads = fuzz_range(&in, 1, 3);
    c->o.heads_per_section = fuzz_range(&in, 1, c->g.n_kv_heads);
    c->g.head_dim = fuzz_range(&in, 1, 70);
    c->g.n_tokens = fuzz_range(&in, 1, 100);
    const uint8_t w = fuzz_u8(&in);
    c->g.dense_window = w < 64 ? 0 : w < 96 ? c->g.n_tokens : fuzz_range(&in, 0, c->g.n_tokens);
    c->n_appends = fuzz_range(&in, 0, AP_MAX_APPENDS);
    uint64_t total = c->g.n_tokens;
    for (uint32_t i = 0; i < c->n_appends; i++) {
        c->add[i] = fuzz_range(&in, 1, 80);
        const uint8_t kind = fuzz_u8(&in);
        c->invalid[i] = (kind & 7) == 7 ? 1 + (kind >> 3) % 4 : 0;
        c->in_dtype[i] = (sqkv_dtype)(1 + (kind >> 5) % 3);
        if (kind & 0x80) parse_options(&in, &c->ao[i]); /* other payload parameters (§9.1 allows them) */
        else c->ao[i] = c->o;
        c->ao[i].heads_per_section = c->o.heads_per_section;
        total += c->add[i];
    }
    /* Keep the case small: fewer tokens per append, then fewer heads or channels. */
    while ((uint64_t)c->g.n_kv_heads * total * c->g.head_dim > AP_MAX_ELEMS) {
        if (c->g.head_dim > 8) {
            c->g.head_dim = c->g.head_dim / 2 + 1;
        } else if (c->g.n_kv_heads > 1) {
            c->g.n_kv_heads--;
            if (c->o.heads_per_section > c->g.n_kv_heads) c->o.heads_per_section = c->g.n_kv_heads;
            for (uint32_t i = 0; i < c->n_appends; i++) c->ao[i].heads_per_section = c->o.heads_per_section;
        } else {
            total = c->g.n_tokens;
            for (uint32_t i = 0; i < c->n_appends; i++) {
                if (c->add[i] > 8) c->add[i] /= 2;
                total += c->add[i];
            }
            if (c->g.n_tokens > 8) {
                c->g.n_tokens /= 2;
                if (c->g.dense_window > c->g.n_tokens) c->g.dense_window = c->g.n_tokens;
            }
            total = c->g.n_tokens;
            for (uint32_t i = 0; i < c->n_appends; i++) total += c->add[i];
        }
    }
    c->damage_at = fuzz_u16(&in);
    c->flip_mask = (uint8_t)(1u << (fuzz_u8(&in) & 7));
    c->seed = fuzz_u32(&in);
}

/* ---- the cache: E values [layer][tensor][H][T_max][D] and token ids ------------------------------ */

typedef struct ap_cache {
    uint32_t t_max;
    uint16_t *values;  /* E bits */
    int32_t *ids;
} ap_cache;

static size_t cache_at(const ap_case *c, const ap_cache *m, uint32_t layer, uint32_t t, uint32_t h, uint32_t tok,
                       uint32_t d) {
    return ((((size_t)layer * 2 + t) * c->g.n_kv_heads + h) * m->t_max + tok) * c->g.head_dim + d;
}

/* A finite E value: a spread of magnitudes with some zeros and ties, never past E's range. */
static uint16_t make_value(const ap_case *c, uint64_t *rng) {
    const uint64_t r = ap_rand(rng);
    if ((r & 7) == 0) return 0;
    if ((r & 7) == 1) return (uint16_t)((r >> 8) & 1 ? 0x8000u : 0) | (c->g.value_dtype == SQKV_DTYPE_FP16 ? 0x3C00u : 0x3F80u);
    if (c->g.value_dtype == SQKV_DTYPE_FP16) {
        const uint16_t exp = (uint16_t)(5 + (r >> 8) % 20); /* 2^-10 .. 2^9 */
        return (uint16_t)(((r >> 16) & 1) << 15 | exp << 10 | ((r >> 20) & 0x3FF));
    }
    const uint16_t exp = (uint16_t)(100 + (r >> 8) % 50);
    return (uint16_t)(((r >> 16) & 1) << 15 | exp << 7 | ((r >> 20) & 0x7F));
}

/* Tokens [t0, t1) of every (layer, tensor, head) as an input array of dtype dt: [H][t1-t0][D]. */
static void *export_rows(const ap_case *c, const ap_cache *m, uint32_t layer, uint32_t t, uint32_t t0, uint32_t t1,
                         sqkv_dtype dt) {
    const sqkv_geometry *g = &c->g;
    const size_t n = (size_t)g->n_kv_heads * (t1 - t0) * g->head_dim;
    uint8_t *out = (uint8_t *)malloc(n * 4 + 1);
    FUZZ_CHECK(out, "out of memory");
    size_t i = 0;
    for (uint32_t h = 0; h < g->n_kv_heads; h++)
        for (uint32_t tok = t0; tok < t1; tok++)
            for (uint32_t d = 0; d < g->head_dim; d++, i++) {
                const uint16_t e = m->values[cache_at(c, m, layer, t, h, tok, d)];
                if (dt == g->value_dtype) {
                    memcpy(out + 2 * i, &e, 2);
                } else {
                    /* Exactly representable in the wider type: fp32 holds every fp16 and bf16 value;
                     * fp16 <-> bf16 is not exact, so the other 16-bit type is never used for input. */
                    float f;
                    if (g->value_dtype == SQKV_DTYPE_BF16) {
                        const uint32_t u = (uint32_t)e << 16;
                        memcpy(&f, &u, 4);
                    } else {
                        const uint32_t sign = (uint32_t)(e >> 15) << 31, ex = (e >> 10) & 0x1F, man = e & 0x3FF;
                        f = ex ? ldexpf((float)(man | 0x400), (int)ex - 25) : ldexpf((float)man, -24);
                        if (sign) f = -f;
                    }
                    memcpy(out + 4 * i, &f, 4);
                }
            }
    return out;
}

static sqkv_dtype input_dtype(const ap_case *c, sqkv_dtype wanted) {
    return wanted == SQKV_DTYPE_FP32 ? SQKV_DTYPE_FP32 : c->g.value_dtype;
}

/* ---- files --------------------------------------------------------------------------------------- */

static const char *temp_path(void) {
    static char path[256];
    if (!path[0]) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(path, sizeof path, "%s/sqkv_append_fuzzer.%ld.sqkv", dir, (long)getpid());
    }
    return path;
}

static void write_whole(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f && (size == 0 || fwrite(data, 1, size, f) == size) && fclose(f) == 0, "cannot write %s", path);
}

static uint8_t *read_whole(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    FUZZ_CHECK(f, "cannot open %s", path);
    FUZZ_CHECK(fseek(f, 0, SEEK_END) == 0, "fseek");
    const long n = ftell(f);
    FUZZ_CHECK(n >= 0 && fseek(f, 0, SEEK_SET) == 0, "ftell");
    uint8_t *buf = (uint8_t *)malloc((size_t)n + 1);
    FUZZ_CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n, "cannot read %s", path);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

/* A one-shot encoding of tokens [t0, t1) with dense window `window`, in memory. */
static uint8_t *one_shot(const ap_case *c, const ap_cache *m, const sqkv_writer_options *o, uint32_t t0, uint32_t t1,
                         uint32_t window, size_t *size) {
    sqkv_geometry g = c->g;
    g.n_tokens = t1 - t0;
    g.dense_window = window;
    sqkv_writer *w = NULL;
    sqkv_error err = sqkv_writer_create(&g, o, &w);
    FUZZ_CHECK(err == SQKV_OK, "one-shot writer_create: %s", sqkv_error_name(err));
    if (c->with_tokens && t0 == 0) FUZZ_CHECK(sqkv_writer_set_tokens(w, m->ids, g.n_tokens) == SQKV_OK, "set_tokens");
    for (uint32_t l = 0; l < g.n_layers; l++) {
        void *k = export_rows(c, m, l, 0, t0, t1, g.value_dtype), *v = export_rows(c, m, l, 1, t0, t1, g.value_dtype);
        err = sqkv_writer_add_layer(w, l, g.value_dtype, k, v);
        FUZZ_CHECK(err == SQKV_OK, "one-shot add_layer: %s (%s)", sqkv_error_name(err), sqkv_writer_error_detail(w));
        free(k);
        free(v);
    }
    uint64_t n = 0;
    FUZZ_CHECK(sqkv_writer_file_size(w, &n) == SQKV_OK && n > 0, "one-shot file_size");
    uint8_t *file = (uint8_t *)malloc((size_t)n);
    size_t written = 0;
    FUZZ_CHECK(file && sqkv_writer_write_buffer(w, file, (size_t)n, &written) == SQKV_OK && written == n, "one-shot write");
    sqkv_writer_destroy(w);
    *size = (size_t)n;
    return file;
}

/* Every (layer, tensor) of a file in E, [layer][tensor][H][T][D]; NULL with *err on a failure. */
static uint16_t *decode_all(sqkv_reader *r, const sqkv_geometry *g, sqkv_error *err) {
    const size_t per = (size_t)g->n_kv_heads * g->n_tokens * g->head_dim;
    uint16_t *out = (uint16_t *)malloc(per * 2 * g->n_layers * 2 + 2);
    FUZZ_CHECK(out, "out of memory");
    *err = SQKV_OK;
    for (uint32_t l = 0; l < g->n_layers && !*err; l++)
        for (int t = 0; t < 2 && !*err; t++)
            *err = sqkv_reader_decode(r, l, (sqkv_tensor)t, 0, g->n_kv_heads, g->value_dtype, out + (2 * l + t) * per,
                                      per * 2);
    if (*err) {
        free(out);
        return NULL;
    }
    return out;
}

static uint16_t *decode_memory(const uint8_t *file, size_t size, const sqkv_geometry *expect) {
    sqkv_reader *r = NULL;
    FUZZ_CHECK(sqkv_reader_create(NULL, 0, &r) == SQKV_OK, "reader_create");
    sqkv_error err = sqkv_reader_open_memory(r, file, size);
    FUZZ_CHECK(err == SQKV_OK, "a one-shot file does not open: %s", sqkv_error_name(err));
    uint16_t *out = decode_all(r, expect, &err);
    FUZZ_CHECK(out, "a one-shot file does not decode: %s (%s)", sqkv_error_name(err), sqkv_reader_error_detail(r));
    sqkv_reader_destroy(r);
    return out;
}

/* Opens the file at path, verifies it, checks the geometry and tokens and decodes everything. */
static uint16_t *open_committed(const ap_case *c, const ap_cache *m, uint32_t n_tokens, const char *what) {
    sqkv_reader *r = NULL;
    sqkv_limits limits;
    fuzz_limits(&limits);
    FUZZ_CHECK(sqkv_reader_create(&limits, 0, &r) == SQKV_OK, "reader_create");
    sqkv_error err = sqkv_reader_open_file(r, temp_path());
    if (!err) err = sqkv_reader_verify(r);
    FUZZ_CHECK(err == SQKV_OK, "%s: the file does not open and verify: %s (%s)", what, sqkv_error_name(err),
               sqkv_reader_error_detail(r));
    sqkv_geometry g;
    FUZZ_CHECK(sqkv_reader_geometry(r, &g) == SQKV_OK, "geometry");
    FUZZ_CHECK(g.n_tokens == n_tokens && g.dense_window == c->g.dense_window && g.n_layers == c->g.n_layers &&
                   g.n_kv_heads == c->g.n_kv_heads && g.head_dim == c->g.head_dim && g.value_dtype == c->g.value_dtype,
               "%s: geometry %u tokens window %u, expected %u and %u", what, g.n_tokens, g.dense_window, n_tokens,
               c->g.dense_window);
    size_t count = 0;
    int32_t *ids = (int32_t *)malloc(sizeof(int32_t) * (n_tokens + 1u));
    FUZZ_CHECK(ids, "out of memory");
    err = sqkv_reader_tokens(r, ids, n_tokens + 1u, &count);
    const size_t want = c->with_tokens ? n_tokens : 0;
    FUZZ_CHECK(err == SQKV_OK && count == want && memcmp(ids, m->ids, 4 * want) == 0,
               "%s: token ids do not come back (%s, %zu of %zu)", what, sqkv_error_name(err), count, want);
    free(ids);
    uint16_t *out = decode_all(r, &g, &err);
    FUZZ_CHECK(out, "%s: verified but does not decode: %s (%s)", what, sqkv_error_name(err), sqkv_reader_error_detail(r));
    sqkv_reader_destroy(r);
    return out;
}

static int ignore_tensor(void *ctx, const sqkv_stream_tensor *t) {
    (void)ctx;
    (void)t;
    return 0;
}

/* A streaming decoder reads the whole file in one push: OK for a file never appended to, UNSUPPORTED
 * (not a "malformed" error) for an appended one. */
static void check_stream(const uint8_t *file, size_t size, int appended) {
    const sqkv_stream_callbacks cb = {NULL, NULL, NULL, ignore_tensor, NULL};
    sqkv_stream_decoder *d = NULL;
    FUZZ_CHECK(sqkv_stream_decoder_create(NULL, 0, SQKV_DTYPE_FP32, &cb, &d) == SQKV_OK, "stream decoder create");
    sqkv_error err = sqkv_stream_decoder_push(d, file, size);
    const sqkv_error fin = sqkv_stream_decoder_finish(d, NULL);
    if (!err) err = fin;
    FUZZ_CHECK(err == (appended ? SQKV_ERR_UNSUPPORTED : SQKV_OK), "streaming a%s file gave %s (%s)",
               appended ? "n appended" : " valid", sqkv_error_name(err), sqkv_stream_decoder_error_detail(d));
    sqkv_stream_decoder_destroy(d);
}

static size_t row_index(const sqkv_geometry *g, uint32_t n_tokens, uint32_t lt, uint32_t h, uint32_t tok, uint32_t d) {
    return (((size_t)lt * g->n_kv_heads + h) * n_tokens + tok) * g->head_dim + d;
}

/* After an append of tokens [n_old, n_new): the decode `got` against the previous state's decode and
 * the model (see the file comment). */
static void check_grown(const ap_case *c, const ap_cache *m, const sqkv_writer_options *o, const uint16_t *prev,
                        uint32_t n_old, const uint16_t *got, uint32_t n_new, uint32_t step, int all_exact) {
    const sqkv_geometry *g = &c->g;
    const uint32_t W = g->dense_window, s_old = n_old - W, s_new = n_new - W;
    size_t seg_size = 0;
    uint8_t *seg = one_shot(c, m, o, s_old, s_new, 0, &seg_size);
    sqkv_geometry sg = *g;
    sg.n_tokens = s_new - s_old;
    sg.dense_window = 0;
    uint16_t *seg_dec = decode_memory(seg, seg_size, &sg);
    for (uint32_t lt = 0; lt < 2 * g->n_layers; lt++)
        for (uint32_t h = 0; h < g->n_kv_heads; h++)
            for (uint32_t tok = 0; tok < n_new; tok++)
                for (uint32_t d = 0; d < g->head_dim; d++) {
                    const uint16_t v = got[row_index(g, n_new, lt, h, tok, d)];
                    uint16_t want;
                    const char *region;
                    if (tok < s_old) {
                        want = prev[row_index(g, n_old, lt, h, tok, d)], region = "old sparse region";
                    } else if (tok >= s_new) {
                        want = m->values[cache_at(c, m, lt / 2, lt % 2, h, tok, d)], region = "dense window";
                    } else {
                        want = seg_dec[row_index(g, s_new - s_old, lt, h, tok - s_old, d)], region = "new sparse run";
                    }
                    FUZZ_CHECK(v == want,
                               "append %u: layer %u tensor %u head %u token %u channel %u (%s): 0x%04x, expected "
                               "0x%04x (tokens %u -> %u, window %u)",
                               step, lt / 2, lt % 2, h, tok, d, region, v, want, n_old, n_new, W);
                }
    free(seg);
    free(seg_dec);
    if (all_exact) {
        /* §9.1: pruning is per token, EXACT keeps values: when the file and every append so far used
         * EXACT with the same pruning, the same as encoding the grown cache at once. */
        size_t whole_size = 0;
        uint8_t *whole = one_shot(c, m, o, 0, n_new, W, &whole_size);
        sqkv_geometry wg = *g;
        wg.n_tokens = n_new;
        uint16_t *whole_dec = decode_memory(whole, whole_size, &wg);
        FUZZ_CHECK(memcmp(whole_dec, got, (size_t)2 * g->n_layers * g->n_kv_heads * n_new * g->head_dim * 2) == 0,
                   "append %u: an EXACT file differs from the one-shot encoding of the grown cache", step);
        free(whole);
        free(whole_dec);
    }
}

static char append_detail[512]; /* the last sqkv_append's detail, for the failure messages */

/* Calls sqkv_append with tokens [t0, t0 + add) of the model as the new tokens, options o and input
 * dtype dt; `invalid` (1..4) makes one argument wrong. */
static sqkv_error do_append(const ap_case *c, const ap_cache *m, const sqkv_writer_options *o, sqkv_dtype dt,
                            uint32_t t0, uint32_t add, int invalid) {
    const sqkv_geometry *g = &c->g;
    void *k[2] = {NULL, NULL}, *v[2] = {NULL, NULL};
    for (uint32_t l = 0; l < g->n_layers; l++) {
        k[l] = export_rows(c, m, l, 0, t0, t0 + add, dt);
        v[l] = export_rows(c, m, l, 1, t0, t0 + add, dt);
    }
    const int32_t *ids = c->with_tokens ? m->ids + t0 : NULL;
    uint32_t new_tokens = add;
    sqkv_dtype pass_dt = dt;
    switch (invalid) {
    case 1: new_tokens = 0; break;
    case 2: ids = c->with_tokens ? NULL : m->ids; break; /* ids where none belong, or none where needed */
    case 3: pass_dt = (sqkv_dtype)7; break;
    case 4: /* a NaN among the new values: NONFINITE_INPUT */
        if (dt == SQKV_DTYPE_FP32) {
            const uint32_t nan32 = 0x7FC00000u;
            memcpy(v[g->n_layers - 1], &nan32, 4);
        } else {
            const uint16_t nan16 = dt == SQKV_DTYPE_FP16 ? 0x7E00u : 0x7FC0u;
            memcpy(v[g->n_layers - 1], &nan16, 2);
        }
        break;
    default: break;
    }
    const sqkv_error err = sqkv_append(temp_path(), g, o, NULL, new_tokens, ids, pass_dt, (const void *const *)k,
                                       (const void *const *)v, append_detail, sizeof append_detail);
    fuzz_check_error_known(err);
    for (uint32_t l = 0; l < g->n_layers; l++) free(k[l]), free(v[l]);
    return err;
}

static uint64_t file_size_of(const char *path) {
    size_t n = 0;
    free(read_whole(path, &n));
    return n;
}

/* The file cut to `cut` bytes: see the file comment. */
static void check_cut(const ap_case *c, const ap_cache *m, const ap_state *states, uint32_t n_states, uint64_t cut) {
    const char *path = temp_path();
    FUZZ_CHECK(truncate(path, (off_t)cut) == 0, "truncate");
    const sqkv_geometry *g = &c->g;
    int committed = -1, below = -1;
    for (uint32_t s = 0; s < n_states; s++) {
        if (states[s].size == cut) committed = (int)s;
        if (states[s].size <= cut) below = (int)s;
    }
    sqkv_reader *r = NULL;
    FUZZ_CHECK(sqkv_reader_create(NULL, 0, &r) == SQKV_OK, "reader_create");
    sqkv_error err = sqkv_reader_open_file(r, path);
    if (!err) err = sqkv_reader_verify(r);
    fuzz_check_error_known(err);
    if (committed >= 0)
        FUZZ_CHECK(err == SQKV_OK, "cut at committed size %llu: %s", (unsigned long long)cut, sqkv_error_name(err));
    else
        FUZZ_CHECK(ap_file_error(err), "cut at %llu (not a committed size) gave %s", (unsigned long long)cut,
                   sqkv_error_name(err));
    sqkv_reader_destroy(r);

    if (committed < 0) {
        /* An append onto an interrupted one is refused, and writes nothing. */
        size_t before_size = 0, after_size = 0;
        uint8_t *before = read_whole(path, &before_size);
        const sqkv_error ae = do_append(c, m, &c->o, g->value_dtype, 0, 1, 0);
        FUZZ_CHECK(ae != SQKV_OK && ap_file_error(ae),
                   "append onto a file cut at %llu gave %s (%s)", (unsigned long long)cut, sqkv_error_name(ae), append_detail);
        uint8_t *after = read_whole(path, &after_size);
        FUZZ_CHECK(after_size == before_size && memcmp(before, after, before_size) == 0,
                   "a refused append changed the file");
        free(before);
        free(after);
    }

    uint64_t file_size = 0, valid = 0;
    char detail[512];
    err = sqkv_find_valid_prefix(path, NULL, &file_size, &valid, detail, sizeof detail);
    fuzz_check_error_known(err);
    FUZZ_CHECK(file_size == cut || err != SQKV_OK, "find_valid_prefix: file size %llu, cut at %llu",
               (unsigned long long)file_size, (unsigned long long)cut);
    if (below < 0) {
        FUZZ_CHECK(err != SQKV_OK && valid == 0, "cut at %llu, below the first state: %s, valid %llu",
                   (unsigned long long)cut, sqkv_error_name(err), (unsigned long long)valid);
        return;
    }
    FUZZ_CHECK(err == SQKV_OK && valid == states[below].size,
               "cut at %llu: valid prefix %llu (%s: %s), the last committed state is %llu", (unsigned long long)cut,
               (unsigned long long)valid, sqkv_error_name(err), detail, (unsigned long long)states[below].size);
    uint64_t old_size = 0, new_size = 0;
    err = sqkv_recover(path, NULL, &old_size, &new_size, detail, sizeof detail);
    FUZZ_CHECK(err == SQKV_OK && old_size == cut && new_size == states[below].size, "recover: %s, %llu -> %llu (%s)",
               sqkv_error_name(err), (unsigned long long)old_size, (unsigned long long)new_size, detail);
    FUZZ_CHECK(file_size_of(path) == new_size, "recover left %llu bytes, said %llu",
               (unsigned long long)file_size_of(path), (unsigned long long)new_size);
    uint16_t *dec = open_committed(c, m, states[below].n_tokens, "after recover");
    FUZZ_CHECK(memcmp(dec, states[below].decoded,
                      (size_t)2 * g->n_layers * g->n_kv_heads * states[below].n_tokens * g->head_dim * 2) == 0,
               "after recover the file decodes otherwise than state %d did", below);
    free(dec);
    /* The recovered file takes another append (the model's next token: below is not the last state). */
    err = do_append(c, m, &c->o, g->value_dtype, states[below].n_tokens, 1, 0);
    FUZZ_CHECK(err == SQKV_OK, "append after recover: %s (%s)", sqkv_error_name(err), append_detail);
    free(open_committed(c, m, states[below].n_tokens + 1, "append after recover"));
}

/* A flipped byte: no exact data is expected (a fuzzing build ignores checksums), only documented errors
 * and a recovery that ends in a valid file at least as long as every state before the byte. */
static void check_flip(const ap_case *c, const ap_cache *m, const ap_state *states, uint32_t n_states, uint64_t at,
                       uint8_t mask) {
    const char *path = temp_path();
    size_t size = 0;
    uint8_t *flipped = read_whole(path, &size);
    flipped[at] ^= mask;
    write_whole(path, flipped, size);
    sqkv_reader *r = NULL;
    FUZZ_CHECK(sqkv_reader_create(NULL, 0, &r) == SQKV_OK, "reader_create");
    sqkv_error err = sqkv_reader_open_file(r, path);
    /* A flip can turn the TOKENS section into another kind (or back): then token_ids are wrong. */
    int tokens_changed = 0;
    if (!err) {
        size_t count = 0;
        tokens_changed = sqkv_reader_tokens(r, NULL, 0, &count) == SQKV_OK && (count > 0) != (c->with_tokens != 0);
    }
    if (!err) err = sqkv_reader_verify(r);
    fuzz_check_error_known(err);
    FUZZ_CHECK(err == SQKV_OK || ap_file_error(err), "flipped byte gave %s", sqkv_error_name(err));
    sqkv_reader_destroy(r);
    /* An append onto the damaged file: refused with a file error and nothing written, or (when the
     * flip left a valid file: checksums are ignored in a fuzzing build) done. A flip in the header's
     * geometry (accepted by a fuzzing build, which ignores its checksum) meets the caller's geometry:
     * GEOMETRY_MISMATCH, before k or v is read. */
    const sqkv_error ae = do_append(c, m, &c->o, c->g.value_dtype, 0, 1, 0);
    size_t after_size = 0;
    uint8_t *after = read_whole(path, &after_size);
    if (ae != SQKV_OK) {
        FUZZ_CHECK(ap_file_error(ae) || ae == SQKV_ERR_GEOMETRY_MISMATCH ||
                       (tokens_changed && ae == SQKV_ERR_INVALID_ARGUMENT),
                   "append onto a flipped file gave %s (%s)", sqkv_error_name(ae), append_detail);
        FUZZ_CHECK(after_size == size && memcmp(after, flipped, size) == 0, "a refused append changed the file");
    } else {
        FUZZ_CHECK(after_size > size && memcmp(after, flipped, size) == 0, "an append changed the bytes before it");
        size = after_size;
    }
    free(after);
    free(flipped);
    uint64_t intact = 0;
    for (uint32_t s = 0; s < n_states; s++)
        if (states[s].size <= at) intact = states[s].size;
    uint64_t file_size = 0, valid = 0, old_size = 0, new_size = 0;
    char detail[512];
    err = sqkv_find_valid_prefix(path, NULL, &file_size, &valid, detail, sizeof detail);
    fuzz_check_error_known(err);
    if (intact) FUZZ_CHECK(err == SQKV_OK && valid >= intact, "flip at %llu: valid prefix %llu (%s), state of %llu "
                           "bytes before it", (unsigned long long)at, (unsigned long long)valid, sqkv_error_name(err),
                           (unsigned long long)intact);
    err = sqkv_recover(path, NULL, &old_size, &new_size, detail, sizeof detail);
    fuzz_check_error_known(err);
    if (err != SQKV_OK) {
        FUZZ_CHECK(!intact, "recover failed (%s) though %llu bytes are intact", sqkv_error_name(err),
                   (unsigned long long)intact);
        return;
    }
    FUZZ_CHECK(new_size == valid && old_size == size, "recover %llu -> %llu, valid prefix %llu",
               (unsigned long long)old_size, (unsigned long long)new_size, (unsigned long long)valid);
    FUZZ_CHECK(sqkv_reader_create(NULL, 0, &r) == SQKV_OK, "reader_create");
    err = sqkv_reader_open_file(r, path);
    if (!err) err = sqkv_reader_verify(r);
    FUZZ_CHECK(err == SQKV_OK, "the recovered file does not verify: %s", sqkv_error_name(err));
    sqkv_reader_destroy(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ap_case c;
    parse_case(data, size, &c);
    const sqkv_geometry *g = &c.g;
    uint64_t rng = c.seed;
    ap_cache m;
    m.t_max = g->n_tokens;
    for (uint32_t i = 0; i < c.n_appends; i++) m.t_max += c.add[i];
    m.values = (uint16_t *)malloc((size_t)2 * g->n_layers * g->n_kv_heads * m.t_max * g->head_dim * 2);
    m.ids = (int32_t *)malloc(sizeof(int32_t) * m.t_max);
    FUZZ_CHECK(m.values && m.ids, "out of memory");
    for (size_t i = 0; i < (size_t)2 * g->n_layers * g->n_kv_heads * m.t_max * g->head_dim; i++)
        m.values[i] = make_value(&c, &rng);
    for (uint32_t i = 0; i < m.t_max; i++) m.ids[i] = (int32_t)(uint32_t)ap_rand(&rng);

    ap_state states[AP_MAX_STATES];
    uint32_t n_states = 0;
    {
        size_t n = 0;
        uint8_t *file = one_shot(&c, &m, &c.o, 0, g->n_tokens, g->dense_window, &n);
        write_whole(temp_path(), file, n);
        check_stream(file, n, 0);
        free(file);
        states[0].size = n;
        states[0].n_tokens = g->n_tokens;
        states[0].decoded = open_committed(&c, &m, g->n_tokens, "the first file");
        n_states = 1;
    }
    uint32_t n_tokens = g->n_tokens;
    int all_exact = c.o.quantizer == SQKV_QUANT_EXACT;
    for (uint32_t i = 0; i < c.n_appends; i++) {
        if (c.invalid[i]) {
            size_t before_size = 0, after_size = 0;
            uint8_t *before = read_whole(temp_path(), &before_size);
            const sqkv_error err = do_append(&c, &m, &c.ao[i], input_dtype(&c, c.in_dtype[i]), n_tokens, c.add[i],
                                             c.invalid[i]);
            FUZZ_CHECK(err == (c.invalid[i] == 4 ? SQKV_ERR_NONFINITE_INPUT : SQKV_ERR_INVALID_ARGUMENT),
                       "append with invalid argument %d gave %s (%s)", c.invalid[i], sqkv_error_name(err), append_detail);
            uint8_t *after = read_whole(temp_path(), &after_size);
            FUZZ_CHECK(after_size == before_size && memcmp(before, after, before_size) == 0,
                       "a refused append changed the file");
            free(before);
            free(after);
            continue;
        }
        const sqkv_error err =
            do_append(&c, &m, &c.ao[i], input_dtype(&c, c.in_dtype[i]), n_tokens, c.add[i], 0);
        FUZZ_CHECK(err == SQKV_OK, "append %u of %u tokens: %s (%s)", i, c.add[i], sqkv_error_name(err), append_detail);
        const uint32_t grown = n_tokens + c.add[i];
        uint16_t *dec = open_committed(&c, &m, grown, "after an append");
        const sqkv_writer_options *o = &c.ao[i];
        all_exact = all_exact && o->quantizer == SQKV_QUANT_EXACT &&
                    (o->prune == SQKV_PRUNE_NONE ? c.o.prune == SQKV_PRUNE_NONE
                                                 : c.o.prune == o->prune && c.o.sparsity == o->sparsity);
        check_grown(&c, &m, o, states[n_states - 1].decoded, n_tokens, dec, grown, i, all_exact);
        n_tokens = grown;
        states[n_states].size = file_size_of(temp_path());
        states[n_states].n_tokens = n_tokens;
        states[n_states].decoded = dec;
        n_states++;
    }
    if (n_states > 1) {
        size_t n = 0;
        uint8_t *file = read_whole(temp_path(), &n);
        check_stream(file, n, 1);
        free(file);
    }
    const uint64_t final_size = states[n_states - 1].size;
    if (c.damage == 1) check_cut(&c, &m, states, n_states, (final_size * c.damage_at) >> 16);
    if (c.damage == 2) check_flip(&c, &m, states, n_states, (final_size * c.damage_at) >> 16, c.flip_mask);

    unlink(temp_path());
    for (uint32_t s = 0; s < n_states; s++) free(states[s].decoded);
    free(m.values);
    free(m.ids);
    return 0;
}
