/*
 * small_buffer_fuzzer: every call that fills a caller buffer, given one that is too small (allocated
 * at exactly the size passed, so ASan sees any write past it), and calls with hostile arguments
 * (coordinates past the geometry, head ranges that wrap 32 bits, bad dtypes, NULL buffers).
 * A too-small buffer must give SQKV_ERR_BUFFER_TOO_SMALL (or the file error the same call gives with a
 * large enough buffer); a bad argument must give SQKV_ERR_INVALID_ARGUMENT; nothing may succeed.
 *
 * Input: an SQKV file (checksums recomputed). The sizes and coordinates tried are derived from a
 * hash of the input, so a crash reproduces from the file alone.
 */
#include <xxhash.h>

#include "fuzz_common.h"
#include "reader_internal.h"

typedef struct shrink {
    const uint8_t *data;
    size_t size;
    const sqkv_limits *limits;
    uint64_t rng;
} shrink;

static uint64_t next_rand(shrink *s) {
    s->rng += 0x9E3779B97F4A7C15ull;
    uint64_t z = s->rng;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A fresh opened reader: errors are sticky, so every probe gets its own. NULL when open fails. */
static sqkv_reader *open_fresh(const shrink *s) {
    sqkv_reader *r = NULL;
    FUZZ_CHECK(sqkv_reader_create(s->limits, 0, &r) == SQKV_OK, "reader_create failed");
    if (sqkv_reader_open_memory(r, s->data, s->size) != SQKV_OK) {
        sqkv_reader_destroy(r);
        return NULL;
    }
    return r;
}

static void expect_small(sqkv_error small, sqkv_error full, const char *what) {
    fuzz_check_error_known(small);
    if (full == SQKV_OK)
        FUZZ_CHECK(small == SQKV_ERR_BUFFER_TOO_SMALL, "%s with a too-small buffer gave %s", what,
                   sqkv_error_name(small));
    else
        FUZZ_CHECK(small == SQKV_ERR_BUFFER_TOO_SMALL || small == full,
                   "%s with a too-small buffer gave %s; with room it gives %s", what, sqkv_error_name(small),
                   sqkv_error_name(full));
}

static void expect_invalid(sqkv_error err, const char *what) {
    fuzz_check_error_known(err);
    FUZZ_CHECK(err == SQKV_ERR_INVALID_ARGUMENT, "%s gave %s", what, sqkv_error_name(err));
}

static void probe_decode(shrink *s, const sqkv_geometry *g) {
    const uint32_t layer = (uint32_t)(next_rand(s) % g->n_layers);
    const sqkv_tensor tensor = (sqkv_tensor)(next_rand(s) & 1);
    const uint32_t head_start = (uint32_t)(next_rand(s) % g->n_kv_heads);
    const uint32_t head_count = 1 + (uint32_t)(next_rand(s) % (g->n_kv_heads - head_start));
    const sqkv_dtype dt = (sqkv_dtype)(1 + next_rand(s) % 3);
    const uint64_t need = sqkv_dense_size(head_count, g->n_tokens, g->head_dim, dt);
    if (need == 0 || need > FUZZ_MAX_OUTPUT) return;
    /* Mostly one element short, sometimes anything shorter. */
    const uint64_t cut = (next_rand(s) & 3) ? fuzz_dtype_size(dt) : 1 + next_rand(s) % need;
    const size_t small_size = (size_t)(need - (cut < need ? cut : need));

    sqkv_reader *r = open_fresh(s);
    if (!r) return;
    void *out = malloc((size_t)need);
    FUZZ_CHECK(out, "out of memory");
    const sqkv_error full = sqkv_reader_decode(r, layer, tensor, head_start, head_count, dt, out, (size_t)need);
    fuzz_check_error_known(full);
    free(out);
    sqkv_reader_destroy(r);

    r = open_fresh(s);
    FUZZ_CHECK(r, "the same bytes opened once and then failed");
    uint8_t *small = (uint8_t *)malloc(small_size ? small_size : 1);
    FUZZ_CHECK(small, "out of memory");
    expect_small(sqkv_reader_decode(r, layer, tensor, head_start, head_count, dt, small, small_size), full, "decode");
    free(small);
    sqkv_reader_destroy(r);
}

static void probe_tokens_and_fingerprint(shrink *s) {
    sqkv_reader *r = open_fresh(s);
    FUZZ_CHECK(r, "the same bytes opened once and then failed");
    size_t count = 0, fp_size = 0;
    sqkv_error err = sqkv_reader_tokens(r, NULL, 0, &count);
    sqkv_reader_destroy(r);
    if (err == SQKV_OK && count > 0) {
        const size_t cap = (size_t)(next_rand(s) % count);
        int32_t *tokens = (int32_t *)malloc(cap ? cap * sizeof *tokens : 1);
        FUZZ_CHECK(tokens, "out of memory");
        r = open_fresh(s);
        size_t got = 0;
        expect_small(sqkv_reader_tokens(r, tokens, cap, &got), SQKV_OK, "tokens");
        sqkv_reader_destroy(r);
        free(tokens);
    }
    r = open_fresh(s);
    err = sqkv_reader_fingerprint(r, NULL, 0, &fp_size);
    sqkv_reader_destroy(r);
    if (err == SQKV_OK && fp_size > 0) {
        const size_t cap = (size_t)(next_rand(s) % fp_size);
        uint8_t *fp = (uint8_t *)malloc(cap ? cap : 1);
        FUZZ_CHECK(fp, "out of memory");
        r = open_fresh(s);
        size_t got = 0;
        expect_small(sqkv_reader_fingerprint(r, fp, cap, &got), SQKV_OK, "fingerprint");
        sqkv_reader_destroy(r);
        free(fp);
    }
}

/* Oracle for sqkv_reader_mustafar_sizes_shared (the CUDA decoder's call): the per-head call's error for
 * head, or its sizes for head and for up to four other heads it reports (the rest must be {0, 0} or match
 * their own per-head call). */
static void check_shared_sizes(shrink *s, const sqkv_geometry *g, uint32_t layer, sqkv_tensor tensor, uint32_t head,
                               sqkv_error want_err, const sqkv_mustafar_sizes *want) {
    sqkv_mustafar_sizes *all = (sqkv_mustafar_sizes *)malloc(sizeof *all * g->n_kv_heads);
    FUZZ_CHECK(all, "out of memory");
    sqkv_reader *r = open_fresh(s);
    const sqkv_error err = sqkv_reader_mustafar_sizes_shared(r, layer, tensor, head, all);
    sqkv_reader_destroy(r);
    FUZZ_CHECK(err == want_err, "mustafar_sizes_shared gave %s, the per-head call %s", sqkv_error_name(err),
               sqkv_error_name(want_err));
    if (err == SQKV_OK) {
        FUZZ_CHECK(all[head].n_tiles == want->n_tiles && all[head].value_count == want->value_count,
                   "mustafar_sizes_shared: the head's sizes differ from the per-head call");
        uint32_t compared = 0;
        for (uint32_t h = 0; h < g->n_kv_heads && compared < 4; h++) {
            if (h == head || (all[h].n_tiles == 0 && all[h].value_count == 0)) continue;
            sqkv_mustafar_sizes one;
            r = open_fresh(s);
            const sqkv_error e = sqkv_reader_mustafar_sizes(r, layer, tensor, h, &one);
            sqkv_reader_destroy(r);
            FUZZ_CHECK(e == SQKV_OK && one.n_tiles == all[h].n_tiles && one.value_count == all[h].value_count,
                       "mustafar_sizes_shared: head %u reported, but its own call gives %s", h, sqkv_error_name(e));
            compared++;
        }
    }
    free(all);
}

static void probe_mustafar(shrink *s, const sqkv_geometry *g) {
    const uint32_t layer = (uint32_t)(next_rand(s) % g->n_layers);
    const sqkv_tensor tensor = (sqkv_tensor)(next_rand(s) & 1);
    const uint32_t head = (uint32_t)(next_rand(s) % g->n_kv_heads);
    sqkv_reader *r = open_fresh(s);
    sqkv_mustafar_sizes sizes;
    sqkv_error err = sqkv_reader_mustafar_sizes(r, layer, tensor, head, &sizes);
    sqkv_reader_destroy(r);
    check_shared_sizes(s, g, layer, tensor, head, err, &sizes);
    if (err != SQKV_OK || sizes.n_tiles == 0 || sizes.n_tiles > FUZZ_MAX_OUTPUT / 16 ||
        sizes.value_count > FUZZ_MAX_OUTPUT / 2)
        return;
    /* Claim fewer tiles or fewer values than the section needs; the arrays are exactly that big. */
    sqkv_mustafar_sizes claimed = sizes;
    if (next_rand(s) & 1)
        claimed.n_tiles = next_rand(s) % sizes.n_tiles;
    else
        claimed.value_count = next_rand(s) % sizes.value_count;
    int64_t *bitmaps = (int64_t *)malloc(claimed.n_tiles ? 8 * claimed.n_tiles : 1);
    int32_t *accum = (int32_t *)malloc(4 * (claimed.n_tiles + 1));
    uint16_t *values = (uint16_t *)malloc(claimed.value_count ? 2 * claimed.value_count : 1);
    FUZZ_CHECK(bitmaps && accum && values, "out of memory");
    r = open_fresh(s);
    err = sqkv_reader_decode_mustafar(r, layer, tensor, head, bitmaps, accum, values, &claimed);
    fuzz_check_error_known(err);
    FUZZ_CHECK(err == SQKV_ERR_BUFFER_TOO_SMALL || err == SQKV_ERR_INVALID_ARGUMENT || fuzz_is_file_error(err),
               "decode_mustafar with short arrays gave %s", sqkv_error_name(err));
    sqkv_reader_destroy(r);
    free(bitmaps);
    free(accum);
    free(values);
}

static void probe_bad_arguments(shrink *s, const sqkv_geometry *g) {
    uint16_t buf[64];
    sqkv_reader *r;
    /* Each probe on a fresh reader so that the error seen is the probe's own. */
#define PROBE(call, what)                                                \
    do {                                                                 \
        r = open_fresh(s);                                               \
        FUZZ_CHECK(r, "the same bytes opened once and then failed");     \
        expect_invalid((call), what);                                    \
        sqkv_reader_destroy(r);                                          \
    } while (0)
    const uint32_t far = (uint32_t)next_rand(s) | 0x80000000u;
    PROBE(sqkv_reader_decode(r, g->n_layers, SQKV_TENSOR_K, 0, 1, SQKV_DTYPE_FP16, buf, sizeof buf), "decode past the layers");
    PROBE(sqkv_reader_decode(r, 0, (sqkv_tensor)2, 0, 1, SQKV_DTYPE_FP16, buf, sizeof buf), "decode tensor 2");
    PROBE(sqkv_reader_decode(r, 0, SQKV_TENSOR_V, 0, 0, SQKV_DTYPE_FP16, buf, sizeof buf), "decode of zero heads");
    PROBE(sqkv_reader_decode(r, 0, SQKV_TENSOR_V, far, 2u - far, SQKV_DTYPE_FP32, buf, sizeof buf),
          "decode of a head range that wraps 32 bits");
    PROBE(sqkv_reader_decode(r, 0, SQKV_TENSOR_K, g->n_kv_heads, 1, SQKV_DTYPE_FP16, buf, sizeof buf),
          "decode past the heads");
    PROBE(sqkv_reader_decode(r, 0, SQKV_TENSOR_K, 0, 1, (sqkv_dtype)(next_rand(s) & 1 ? 0 : 4), buf, sizeof buf),
          "decode to a bad dtype");
    PROBE(sqkv_reader_decode(r, 0, SQKV_TENSOR_K, 0, 1, SQKV_DTYPE_FP16, NULL, 1u << 30), "decode into NULL");
    sqkv_mustafar_sizes sizes;
    PROBE(sqkv_reader_mustafar_sizes(r, 0, SQKV_TENSOR_K, g->n_kv_heads, &sizes), "mustafar past the heads");
    PROBE(sqkv_reader_mustafar_sizes(r, g->n_layers, SQKV_TENSOR_V, 0, &sizes), "mustafar past the layers");
    sqkv_section_info info;
    PROBE(sqkv_reader_section_info(r, (size_t)next_rand(s) | ((size_t)1 << 40), &info), "section_info far away");
    const char *key, *value;
    size_t key_size, value_size;
#undef PROBE
    /* The metadata body is parsed on first use, so its error (METADATA, or LIMIT for more than 1024
     * entries: §3 and §10.3 both claim that case) may be reported instead. */
    r = open_fresh(s);
    FUZZ_CHECK(r, "the same bytes opened once and then failed");
    sqkv_error err = sqkv_reader_metadata_entry(r, (size_t)next_rand(s) | 4096, &key, &key_size, &value, &value_size);
    fuzz_check_error_known(err);
    FUZZ_CHECK(err == SQKV_ERR_INVALID_ARGUMENT || err == SQKV_ERR_LIMIT || fuzz_is_file_error(err),
               "metadata_entry past the entries gave %s", sqkv_error_name(err));
    sqkv_reader_destroy(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sqkv_limits limits;
    fuzz_limits(&limits);
    uint8_t *copy = (uint8_t *)malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    fuzz_repair_checksums(copy, size);
    shrink s = {copy, size, &limits, XXH3_64bits(data, size)};

    sqkv_reader *r = open_fresh(&s);
    sqkv_geometry g;
    if (r && sqkv_reader_geometry(r, &g) == SQKV_OK) {
        sqkv_reader_destroy(r);
        for (int i = 0; i < 3; i++) probe_decode(&s, &g);
        probe_tokens_and_fingerprint(&s);
        probe_mustafar(&s, &g);
        probe_bad_arguments(&s, &g);
    } else if (r) {
        sqkv_reader_destroy(r);
    }
    free(copy);
    return 0;
}
