/*
 * make_corpus: writes the fuzzers' seed corpora, valid files over many geometries and options, made
 * with the library's writer (plus a few sections the writer never writes, spliced in by sqkv_edit.h).
 *
 *   make_corpus OUT_DIR             writes OUT_DIR/<harness>/<seed>, e.g. fuzz/corpus/decode_fuzzer/g05-m2
 *   make_corpus --crashers DIR      writes the hand-made hostile files DIR/sqkv/NAME.sqkv and the
 *                                   errors they must give, DIR/sqkv.expected (hostile_files.h)
 *
 * Output is deterministic: the same program writes the same bytes, so the committed corpus can be
 * regenerated and compared. Seeds are small (a few KiB) so the whole corpus stays well under 2 MiB.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "float16.h"
#include "format.h"
#include "sqkv.h"
#include "hostile_files.h"
#include "sqkv_edit.h"

static const char *const FILE_HARNESSES[] = {"header_fuzzer", "decode_fuzzer", "small_buffer_fuzzer"};

static uint64_t rng_next(uint64_t *state) {
    *state += 0x9E3779B97F4A7C15ull;
    uint64_t z = *state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void make_dir(const char *path) {
    if (mkdir(path, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_corpus: mkdir %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static void write_seed(const char *dir, const char *harness, const char *name, const void *prefix, size_t prefix_size,
                       const void *data, size_t size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, harness);
    make_dir(path);
    snprintf(path, sizeof path, "%s/%s/%s", dir, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || (prefix_size && fwrite(prefix, 1, prefix_size, f) != prefix_size) ||
        (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
        exit(1);
    }
}

/* Files larger than this seed decode_fuzzer only, to keep the committed corpus small. */
#define SMALL_SEED 6000u

/* A valid file goes to every file-input harness; the limits harness gets it behind a 2-byte prefix
 * that selects which limits to tighten (see limits_fuzzer.c). */
static void emit_file(const char *dir, const char *name, const uint8_t *file, size_t size) {
    for (size_t i = 0; i < sizeof FILE_HARNESSES / sizeof FILE_HARNESSES[0]; i++)
        if (size <= SMALL_SEED || strcmp(FILE_HARNESSES[i], "decode_fuzzer") == 0)
            write_seed(dir, FILE_HARNESSES[i], name, NULL, 0, file, size);
    if (size > SMALL_SEED) return;
    const uint8_t prefix[2] = {(uint8_t)(size * 131u), (uint8_t)(size >> 3)};
    write_seed(dir, "limits_fuzzer", name, prefix, sizeof prefix, file, size);
    /* stream_fuzzer: output dtype (cycling through none, fp16, bf16, fp32) and a chunking seed. */
    const uint8_t stream_prefix[5] = {(uint8_t)(size % 4), (uint8_t)(size * 7u), (uint8_t)(size >> 4), 0x5A, 0xC3};
    write_seed(dir, "stream_fuzzer", name, stream_prefix, sizeof stream_prefix, file, size);
}

typedef struct geometry_case {
    uint32_t layers, heads, dim, tokens, window;
} geometry_case;

static const geometry_case GEOMETRIES[] = {
    {1, 1, 1, 1, 0},   {1, 1, 1, 1, 1},    {1, 1, 3, 5, 2},    {1, 1, 64, 64, 0},  {1, 2, 8, 70, 6},
    {1, 1, 65, 65, 1}, {1, 1, 16, 130, 0}, {2, 2, 5, 129, 64}, {1, 1, 128, 9, 9}, {1, 2, 33, 70, 0},
    {3, 1, 2, 7, 3},   {1, 2, 130, 9, 4},  {1, 1, 7, 200, 0},  {2, 1, 1, 64, 0},
};

static const struct {
    uint32_t bits;
    sqkv_quantizer q;
} QUANTIZERS[] = {{16, SQKV_QUANT_EXACT},     {2, SQKV_QUANT_SYMMETRIC},  {4, SQKV_QUANT_SYMMETRIC},
                  {8, SQKV_QUANT_SYMMETRIC},  {2, SQKV_QUANT_ASYMMETRIC}, {4, SQKV_QUANT_ASYMMETRIC},
                  {8, SQKV_QUANT_ASYMMETRIC}};
#define N_QUANTIZERS (sizeof QUANTIZERS / sizeof QUANTIZERS[0])

/* Tensor values: roughly normal, a share of exact zeros, an occasional outlier; `style` 1 makes large
 * values near the element type's maximum, 2 makes everything zero, 3 makes channel 0 zero (so that
 * some tiles are empty). */
static void fill_values(float *x, size_t n, uint32_t dim, uint64_t *rng, int style, sqkv_dtype e) {
    for (size_t i = 0; i < n; i++) {
        const uint64_t r = rng_next(rng);
        if (style == 2 || (r & 15) == 0 || (style == 3 && i % dim == 0)) {
            x[i] = 0.0f;
            continue;
        }
        double sum = 0;
        for (int j = 0; j < 4; j++) sum += (double)((r >> (8 + 12 * j)) & 0xFFF) / 4096.0;
        double v = (sum - 2.0) * 1.7;
        if ((r >> 60) == 0) v *= 40; /* outlier */
        if (style == 1) v = (v < 0 ? -1 : 1) * sqkv_e_to_double(sqkv_e_max_finite(e), e) * (0.5 + fabs(v) / 8);
        if (style == 1 && fabs(v) > sqkv_e_to_double(sqkv_e_max_finite(e), e))
            v = (v < 0 ? -1 : 1) * sqkv_e_to_double(sqkv_e_max_finite(e), e);
        x[i] = (float)v;
    }
}

/* Writes one file with the writer; returns malloc'ed bytes. */
static uint8_t *encode(const geometry_case *gc, sqkv_dtype value_dtype, const sqkv_writer_options *o, int ancillary,
                       int style, uint64_t seed, size_t *size) {
    sqkv_geometry g = {gc->layers, gc->heads, gc->dim, gc->tokens, gc->window, value_dtype, SQKV_DTYPE_FP32, 0};
    sqkv_writer *w = NULL;
    sqkv_error err = sqkv_writer_create(&g, o, &w);
    if (err != SQKV_OK) {
        fprintf(stderr, "make_corpus: writer_create: %s\n", sqkv_error_name(err));
        exit(1);
    }
    uint64_t rng = seed;
    if (ancillary & 1) {
        int32_t *tokens = (int32_t *)malloc(sizeof(int32_t) * gc->tokens);
        for (uint32_t i = 0; i < gc->tokens; i++) tokens[i] = (int32_t)(rng_next(&rng) % 152064u);
        err = sqkv_writer_set_tokens(w, tokens, gc->tokens);
        free(tokens);
    }
    if (err == SQKV_OK && (ancillary & 2)) {
        uint8_t fp[32];
        for (size_t i = 0; i < sizeof fp; i++) fp[i] = (uint8_t)rng_next(&rng);
        err = sqkv_writer_set_fingerprint(w, fp, sizeof fp);
    }
    if (err == SQKV_OK && (ancillary & 4)) {
        static const char *const kv[][2] = {
            {"model", "Qwen2.5-0.5B"}, {"prompt", "r\xC3\xA9sum\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"}, {"empty", ""},
            {"z", "last"},
        };
        for (size_t i = 0; err == SQKV_OK && i < sizeof kv / sizeof kv[0]; i++)
            err = sqkv_writer_add_metadata(w, kv[i][0], strlen(kv[i][0]), kv[i][1], strlen(kv[i][1]));
    }
    const size_t elems = (size_t)gc->heads * gc->tokens * gc->dim;
    float *k = (float *)malloc(sizeof(float) * elems), *v = (float *)malloc(sizeof(float) * elems);
    for (uint32_t layer = 0; err == SQKV_OK && layer < gc->layers; layer++) {
        fill_values(k, elems, gc->dim, &rng, style, value_dtype);
        fill_values(v, elems, gc->dim, &rng, style, value_dtype);
        err = sqkv_writer_add_layer(w, layer, SQKV_DTYPE_FP32, k, v);
    }
    free(k);
    free(v);
    uint64_t file_size = 0;
    if (err == SQKV_OK) err = sqkv_writer_file_size(w, &file_size);
    uint8_t *file = err == SQKV_OK ? (uint8_t *)malloc((size_t)file_size) : NULL;
    if (file) err = sqkv_writer_write_buffer(w, file, (size_t)file_size, size);
    if (err != SQKV_OK || !file) {
        fprintf(stderr, "make_corpus: encoding failed: %s (%s)\n", sqkv_error_name(err), sqkv_writer_error_detail(w));
        exit(1);
    }
    sqkv_writer_destroy(w);
    return file;
}

/* Sections the writer does not write: an unknown ancillary kind (with and without a body), inserted
 * after the tensor sections, and the TOKENS section moved to the end (the order is free). */
static void emit_edited(const char *dir, const uint8_t *file, size_t size) {
    edit_file *f = (edit_file *)malloc(sizeof *f);
    if (!f || !edit_parse(file, size, f) || f->n + 2 > EDIT_MAX_SECTIONS) {
        fprintf(stderr, "make_corpus: cannot take a file apart\n");
        exit(1);
    }
    static const uint8_t body[13] = "unknown kind";
    edit_ancillary(&f->sec[f->n++], 0x8ABC, body, sizeof body);
    edit_ancillary(&f->sec[f->n++], 0xFFFF, NULL, 0);
    for (size_t i = 0; i + 1 < f->n; i++) { /* TOKENS to the end */
        if (sqkv_load_u16(f->sec[i].header + SQKV_SEC_KIND) != SQKV_KIND_TOKENS) continue;
        edit_section tokens = f->sec[i];
        memmove(&f->sec[i], &f->sec[i + 1], (f->n - i - 1) * sizeof f->sec[0]);
        f->sec[f->n - 1] = tokens;
        break;
    }
    size_t out_size = 0;
    uint8_t *out = edit_build(f, &out_size);
    emit_file(dir, "edited-ancillary", out, out_size);
    free(out);
    free(f);
}

/* Codec 1 (§5.1): every section but the INDEX rewritten as streams, `mask` choosing which streams are
 * zstd-compressed (0: a different mix per section). The writer does not compress (yet), so these are
 * the decompression path's only seeds. */
static void emit_compressed(const char *dir, const char *name, const uint8_t *file, size_t size, unsigned mask) {
    edit_file *f = (edit_file *)malloc(sizeof *f);
    if (!f || !edit_parse(file, size, f)) {
        fprintf(stderr, "make_corpus: cannot take a file apart\n");
        exit(1);
    }
    const uint32_t head_dim = sqkv_load_u32(f->header + SQKV_HDR_HEAD_DIM);
    uint8_t *bodies[EDIT_MAX_SECTIONS];
    for (size_t i = 0; i < f->n; i++) {
        bodies[i] = edit_compress(&f->sec[i], head_dim, mask ? mask : (unsigned)(1 + i % 15));
        if (!bodies[i]) exit(1);
    }
    size_t out_size = 0;
    uint8_t *out = edit_build(f, &out_size);
    emit_file(dir, name, out, out_size);
    free(out);
    for (size_t i = 0; i < f->n; i++) free(bodies[i]);
    free(f);
}

/* An appended file (§9.1): a file of T1 tokens, then the sections of T2 more tokens, a TOKENS section
 * for all of them, and a new INDEX that supersedes the old INDEX and the old TOKENS section. The writer
 * cannot append, so these are the only way the fuzzers start inside that code. `defect` breaks one
 * rule for the hostile files: 1 old INDEX not superseded, 2 old TOKENS not superseded, 3 the previous
 * INDEX offset pointing at a tensor section, 4 a needed tensor section superseded, 5 an INDEX n_tokens
 * past what the sections cover. Returns malloc'ed bytes. */
static uint8_t *appended_bytes(const geometry_case *g1, uint32_t more, const sqkv_writer_options *o, sqkv_dtype e,
                               int defect, size_t *size) {
    const geometry_case g2 = {g1->layers, g1->heads, g1->dim, more, 0};
    size_t size1 = 0, size2 = 0;
    uint8_t *file1 = encode(g1, e, o, 1, 0, 77, &size1), *file2 = encode(&g2, e, o, 1, 0, 78, &size2);
    edit_file *a = (edit_file *)malloc(sizeof *a), *b = (edit_file *)malloc(sizeof *b);
    static uint8_t superseded[EDIT_MAX_SECTIONS];
    if (!a || !b || !edit_parse(file1, size1, a) || !edit_parse(file2, size2, b) || a->n + b->n + 1 > EDIT_MAX_SECTIONS) {
        fprintf(stderr, "make_corpus: cannot take a file apart\n");
        exit(1);
    }
    memset(superseded, 0, sizeof superseded);
    const uint32_t t1 = g1->tokens, total = t1 + more;
    /* The old TOKENS, superseded; the old INDEX as a section, superseded. */
    const uint64_t old_index_at = sqkv_load_u64(file1 + size1 - SQKV_TAIL_SIZE);
    uint8_t *tokens = (uint8_t *)malloc(4u * total);
    int first_tensor = -1;
    for (size_t i = 0; i < a->n; i++) {
        const uint16_t kind = sqkv_load_u16(a->sec[i].header + SQKV_SEC_KIND);
        if (kind == SQKV_KIND_TOKENS) {
            superseded[i] = defect != 2;
            memcpy(tokens, a->sec[i].body, 4u * t1);
        }
        if ((kind == SQKV_KIND_SPARSE || kind == SQKV_KIND_DENSE) && first_tensor < 0) first_tensor = (int)i;
    }
    if (defect == 4) superseded[first_tensor] = 1;
    edit_section *old_index = &a->sec[a->n];
    memcpy(old_index->header, file1 + old_index_at, SQKV_SECTION_HEADER_SIZE);
    old_index->body = file1 + old_index_at + SQKV_SECTION_HEADER_SIZE;
    superseded[a->n++] = defect != 1;
    for (size_t i = 0; i < b->n; i++) {
        edit_section s = b->sec[i];
        const uint16_t kind = sqkv_load_u16(s.header + SQKV_SEC_KIND);
        if (kind == SQKV_KIND_TOKENS) {
            memcpy(tokens + 4u * t1, s.body, 4u * more);
            edit_ancillary(&s, SQKV_KIND_TOKENS, tokens, 4u * total);
        } else {
            sqkv_store_u32(s.header + SQKV_SEC_TOKEN_START, sqkv_load_u32(s.header + SQKV_SEC_TOKEN_START) + t1);
        }
        a->sec[a->n++] = s;
    }
    uint64_t first_tensor_at = a->header_size;
    for (int i = 0; i < first_tensor; i++) first_tensor_at += sqkv_section_extent(edit_stored_size(&a->sec[i]));
    const edit_index_opts io = {superseded, 1, defect == 5 ? total + 1 : total, 0,
                                defect == 3 ? first_tensor_at : old_index_at};
    uint8_t *out = edit_build_ex(a, &io, size);
    free(tokens);
    free(a);
    free(b);
    free(file1);
    free(file2);
    return out;
}

static void emit_appended(const char *dir, const char *name, const geometry_case *g1, uint32_t more,
                          const sqkv_writer_options *o, sqkv_dtype e) {
    size_t size = 0;
    uint8_t *out = appended_bytes(g1, more, o, e, 0, &size);
    emit_file(dir, name, out, size);
    /* Larger than SMALL_SEED, but the only appended files: the streaming decoder must refuse them. */
    const uint8_t stream_prefix[5] = {1, 0x11, 0x22, 0x33, 0x44};
    write_seed(dir, "stream_fuzzer", name, stream_prefix, sizeof stream_prefix, out, size);
    free(out);
}

/* Parameter blobs for roundtrip_fuzzer: its first byte picks the dtypes, the second the quantizer,
 * granularity and pruning (see parse_case); the rest is random. */
static void emit_roundtrip_seeds(const char *dir) {
    uint64_t rng = 0x7E57;
    for (unsigned i = 0; i < 48; i++) {
        uint8_t blob[160];
        for (size_t j = 0; j < sizeof blob; j++) blob[j] = (uint8_t)rng_next(&rng);
        blob[0] = (uint8_t)((blob[0] & ~0x0Fu) | (i % 6) << 1 | (i / 6) % 2);
        blob[1] = (uint8_t)((i % 7) | ((i / 7) % 2) << 3 | (i % 5 == 0) << 4 | (i == 47 ? 0xE0 : 0));
        char name[32];
        snprintf(name, sizeof name, "rt-%02u", i);
        const size_t len = 24 + (size_t)(rng_next(&rng) % (sizeof blob - 24));
        write_seed(dir, "roundtrip_fuzzer", name, NULL, 0, blob, len);
    }
}

/* Parameter blobs for append_fuzzer: its first byte picks the element type, tokens and damage (none,
 * cut, flipped byte), the second the payload options; the rest is random (see its parse_case). */
static void emit_append_seeds(const char *dir) {
    uint64_t rng = 0xA99E;
    for (unsigned i = 0; i < 24; i++) {
        uint8_t blob[48];
        for (size_t j = 0; j < sizeof blob; j++) blob[j] = (uint8_t)rng_next(&rng);
        blob[0] = (uint8_t)((i & 1) | ((i >> 1) & 1) << 1 | (i % 3) << 2 | ((i >> 2) & 1) << 4);
        blob[1] = (uint8_t)((i % 7) | (blob[1] & 0xF8));
        char name[32];
        snprintf(name, sizeof name, "ap-%02u", i);
        write_seed(dir, "append_fuzzer", name, NULL, 0, blob, 16 + i % 32);
    }
}

/* Parameter blobs for atomic_file_fuzzer: every path kind with every kind of old target, a fill that
 * succeeds or fails, and none to four injected faults (see its run_case). */
static void emit_atomic_file_seeds(const char *dir) {
    uint64_t rng = 0xA70F11E;
    for (unsigned i = 0; i < 32; i++) {
        uint8_t blob[40];
        for (size_t j = 0; j < sizeof blob; j++) blob[j] = (uint8_t)rng_next(&rng);
        blob[0] = (uint8_t)(i % 8);       /* path kind */
        blob[1] = (uint8_t)(i / 8 % 3);   /* old target: none, file, link */
        char name[32];
        snprintf(name, sizeof name, "af-%02u", i);
        write_seed(dir, "atomic_file_fuzzer", name, NULL, 0, blob, 12 + i % 28);
    }
}

/* .npy seeds for npy_fuzzer, formatted here by hand (independently of the reader under test): format
 * versions 1.0, 2.0 and 3.0, the three accepted dtypes, 0-d to 3-d shapes, an empty array. */
static void emit_npy_seeds(const char *dir) {
    static const struct {
        const char *name, *descr, *shape;
        unsigned version, elem;
        size_t count;
    } seeds[] = {
        {"f2-2x3", "<f2", "(2, 3)", 1, 2, 6},   {"f4-vec", "<f4", "(5,)", 1, 4, 5},
        {"i4-scalar", "<i4", "()", 1, 4, 1},     {"f2-empty", "<f2", "(0, 4)", 1, 2, 0},
        {"f4-3d-v2", "<f4", "(2, 1, 3)", 2, 4, 6}, {"i4-v3", "<i4", "(3,)", 3, 4, 3},
    };
    uint64_t rng = 0x4E9;
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char dict[256];
        int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", seeds[i].descr,
                         seeds[i].shape);
        const size_t prefix = seeds[i].version == 1 ? 10 : 12;
        size_t header_len = (size_t)n + 1; /* + '\n' */
        const size_t padded = (prefix + header_len + 63) / 64 * 64;
        uint8_t buf[512];
        memset(buf, ' ', sizeof buf);
        memcpy(buf, "\x93NUMPY", 6);
        buf[6] = (uint8_t)seeds[i].version;
        buf[7] = 0;
        const size_t hl = padded - prefix;
        if (seeds[i].version == 1) {
            buf[8] = (uint8_t)hl;
            buf[9] = (uint8_t)(hl >> 8);
        } else {
            buf[8] = (uint8_t)hl;
            buf[9] = (uint8_t)(hl >> 8);
            buf[10] = buf[11] = 0;
        }
        memcpy(buf + prefix, dict, (size_t)n);
        buf[padded - 1] = '\n';
        const size_t data = seeds[i].count * seeds[i].elem;
        for (size_t j = 0; j < data; j++) buf[padded + j] = (uint8_t)rng_next(&rng);
        if (seeds[i].elem == 2) /* keep fp16 values finite */
            for (size_t j = 1; j < data; j += 2) buf[padded + j] &= 0x3F;
        write_seed(dir, "npy_fuzzer", seeds[i].name, NULL, 0, buf, padded + data);
    }
}

/* .safetensors seeds for safetensors_fuzzer, formatted here by hand. */
static void emit_safetensors_seeds(const char *dir) {
    static const struct {
        const char *name, *json;
        size_t data;
    } seeds[] = {
        {"one-f16", "{\"k\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", 12},
        {"kv-meta",
         "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\u00e9\"},"
         "\"layer.0.k\":{\"dtype\":\"BF16\",\"shape\":[1,2,2],\"data_offsets\":[0,8]},"
         "\"layer.0.v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
         16},
        {"ids-and-f64",
         "{\"ids\":{\"dtype\":\"I32\",\"shape\":[3],\"data_offsets\":[0,12]},"
         "\"x\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[12,20]}}",
         20},
        {"empty-tensor", "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]}}", 0},
        {"no-tensors", "{}", 0},
    };
    uint64_t rng = 0x5AFE;
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        const size_t n = strlen(seeds[i].json), padded = (n + 7) / 8 * 8;
        uint8_t buf[512];
        memset(buf, ' ', sizeof buf);
        for (int b = 0; b < 8; b++) buf[b] = (uint8_t)((uint64_t)padded >> (8 * b));
        memcpy(buf + 8, seeds[i].json, n);
        for (size_t j = 0; j < seeds[i].data; j++) buf[8 + padded + j] = (uint8_t)rng_next(&rng);
        write_seed(dir, "safetensors_fuzzer", seeds[i].name, NULL, 0, buf, 8 + padded + seeds[i].data);
    }
}

#include "make_crashers.h"

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--crashers") == 0) return make_crashers(argv[2]);
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus OUT_DIR | make_corpus --crashers DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    make_dir(dir);
    const size_t n_geometries = sizeof GEOMETRIES / sizeof GEOMETRIES[0];
    static const double SPARSITY[] = {0.7, 0.5, 0.0, 0.9, 0.3};
    static const uint32_t K[] = {4, 0, 20, 1, 2};
    size_t total = 0;
    for (size_t gi = 0; gi < n_geometries; gi++) {
        const geometry_case *gc = &GEOMETRIES[gi];
        for (unsigned m = 0; m < 5; m++) {
            sqkv_writer_options o;
            sqkv_writer_options_default(&o);
            const unsigned qi = (unsigned)(gi * 3 + m) % N_QUANTIZERS;
            o.payload_bits = QUANTIZERS[qi].bits;
            o.quantizer = QUANTIZERS[qi].q;
            o.scales = o.quantizer == SQKV_QUANT_EXACT ? SQKV_SCALE_NONE
                       : ((gi + m) & 1)               ? SQKV_SCALE_PER_TILE
                                                      : SQKV_SCALE_PER_HEAD;
            o.prune = m == 2 ? SQKV_PRUNE_NONE : SQKV_PRUNE_MAGNITUDE;
            o.sparsity = SPARSITY[m];
            o.offset_interval_log2 = K[m];
            o.heads_per_section = (m & 1) ? 2 : 1;
            o.tokens_per_section = (m == 3 && gc->tokens - gc->window > 64) ? 64 : 0;
            const sqkv_dtype e = ((gi + m) & 1) ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
            const int ancillary = m == 0 ? 7 : m == 1 ? 1 : m == 4 ? 6 : 0;
            const int style = (gi == 3 && m == 4) ? 1 : (gi == 6 && m == 1) ? 2 : 0;
            size_t size = 0;
            uint8_t *file = encode(gc, e, &o, ancillary, style, 1000 * gi + m, &size);
            char name[32];
            snprintf(name, sizeof name, "g%02zu-m%u", gi, m);
            emit_file(dir, name, file, size);
            total += size;
            if (gi == 4 && m == 0) emit_edited(dir, file, size);
            if ((gi == 4 || gi == 7 || gi == 12) && m < 2) {
                snprintf(name, sizeof name, "zstd-g%02zu-m%u", gi, m);
                emit_compressed(dir, name, file, size, m ? 0xF : 0);
            }
            free(file);
        }
    }
    /* Format 1.1 (spec/FORMAT.md §4.1): straddling code widths, half-tile groups and ALL_KEPT sections,
     * one file per geometry, options cycling so that each feature meets every kind of geometry. */
    for (size_t gi = 0; gi < n_geometries; gi++) {
        static const uint32_t WIDTHS[] = {3, 5, 1, 6, 7, 2, 4};
        static const sqkv_scale_granularity SCALES[] = {SQKV_SCALE_PER_HALF_TILE, SQKV_SCALE_PER_TILE,
                                                        SQKV_SCALE_PER_HALF_TILE, SQKV_SCALE_PER_HEAD};
        static const sqkv_prune_mode PRUNES[] = {SQKV_PRUNE_KEEP_ALL, SQKV_PRUNE_MAGNITUDE, SQKV_PRUNE_NONE};
        const geometry_case *gc = &GEOMETRIES[gi];
        sqkv_writer_options o;
        sqkv_writer_options_default(&o);
        o.payload_bits = WIDTHS[gi % 7];
        o.quantizer = (gi & 1) ? SQKV_QUANT_SYMMETRIC : SQKV_QUANT_ASYMMETRIC;
        o.scales = SCALES[gi % 4];
        o.prune = PRUNES[gi % 3];
        o.sparsity = 0.6;
        o.range_search = gi % 5 == 0 ? SQKV_RANGE_SEARCH_VALUES : gi % 5 == 1 ? 3u : 0u;
        const sqkv_dtype e = (gi % 3 == 1) ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
        size_t size = 0;
        uint8_t *file = encode(gc, e, &o, gi % 2 ? 1 : 0, 0, 7000 + gi, &size);
        char name[32];
        snprintf(name, sizeof name, "v11-g%02zu", gi);
        emit_file(dir, name, file, size);
        total += size;
        if (gi % 3 == 0) {
            snprintf(name, sizeof name, "zstd-v11-g%02zu", gi);
            emit_compressed(dir, name, file, size, 0xF);
        }
        free(file);
    }
    {
        sqkv_writer_options o;
        sqkv_writer_options_default(&o);
        const geometry_case a64 = {2, 2, 9, 64, 0}, a50 = {1, 1, 70, 50, 0};
        emit_appended(dir, "appended-64-plus-20", &a64, 20, &o, SQKV_DTYPE_FP16);
        o.payload_bits = 16, o.quantizer = SQKV_QUANT_EXACT, o.scales = SQKV_SCALE_NONE;
        emit_appended(dir, "appended-50-plus-70", &a50, 70, &o, SQKV_DTYPE_BF16);
    }
    emit_roundtrip_seeds(dir);
    emit_append_seeds(dir);
    emit_atomic_file_seeds(dir);
    emit_npy_seeds(dir);
    emit_safetensors_seeds(dir);
    fprintf(stderr, "make_corpus: %zu geometries x 5 option sets, %zu bytes of files\n", n_geometries, total);
    return 0;
}
