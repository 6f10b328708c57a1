/*
 * decode_fuzzer: full decode of every section kind. Opens the input, reads the ancillary sections,
 * decodes every (layer, tensor) in the element type, fp32 and the other 16-bit type, checks the
 * Mustafar layout against the dense decode, checks check_restore, and verifies the file with a second
 * reader; the oracle of fuzz_reader.h checks every result. The same bytes are also opened through
 * sqkv_reader_open_callback (reads inside the file only, the same results, IO for a failed read).
 *
 * Input: an SQKV file, decoded with its checksums recomputed (so that mutations reach the body rules
 * in any build); the bytes as given are opened and verified too.
 */
#include "fuzz_reader.h"

/* sqkv_reader_open_callback: the reader asks for byte ranges. Every request must lie inside the file;
 * with fail_at set, that read fails and the reader must report SQKV_ERR_IO. */
typedef struct callback_source {
    const uint8_t *data;
    size_t size;
    uint32_t reads, fail_at;
} callback_source;

static int read_at(void *ctx, uint64_t offset, void *buf, size_t size) {
    callback_source *s = (callback_source *)ctx;
    FUZZ_CHECK(offset <= s->size && size <= s->size - offset, "read_at(%llu, %zu) outside a %zu-byte file",
               (unsigned long long)offset, size, s->size);
    if (++s->reads == s->fail_at) return 1;
    if (size) memcpy(buf, s->data + offset, size);
    return 0;
}

/* Open through read_at and decode every (layer, tensor) in the element type: the same results as
 * from memory (the reader's memory decode, fresh), or IO for an injected read failure. */
static void check_callback_reader(const uint8_t *data, size_t size, const sqkv_limits *limits, uint32_t fail_at) {
    callback_source src = {data, size, 0, fail_at};
    sqkv_reader *cb = NULL, *mem = NULL;
    FUZZ_CHECK(sqkv_reader_create(limits, 0, &cb) == SQKV_OK && sqkv_reader_create(limits, 0, &mem) == SQKV_OK,
               "reader_create failed");
    sqkv_error ec = sqkv_reader_open_callback(cb, read_at, &src, size);
    const sqkv_error em = sqkv_reader_open_memory(mem, data, size);
    fuzz_check_error_known(ec);
    int failed = fail_at && src.reads >= fail_at;
    if (failed)
        FUZZ_CHECK(ec == SQKV_ERR_IO, "a failed read during open gave %s", sqkv_error_name(ec));
    else
        FUZZ_CHECK(ec == em, "open_callback gave %s, open_memory %s", sqkv_error_name(ec), sqkv_error_name(em));
    sqkv_geometry g;
    if (ec == SQKV_OK && sqkv_reader_geometry(mem, &g) == SQKV_OK) {
        const uint64_t need = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, g.value_dtype);
        for (uint32_t layer = 0; layer < g.n_layers && layer < 8 && need && need <= FUZZ_MAX_OUTPUT / 2; layer++) {
            for (int t = 0; t < 2; t++) {
                uint8_t *a = (uint8_t *)malloc((size_t)need), *b = (uint8_t *)malloc((size_t)need);
                FUZZ_CHECK(a && b, "out of memory");
                const uint32_t before = src.reads;
                ec = sqkv_reader_decode(cb, layer, (sqkv_tensor)t, 0, g.n_kv_heads, g.value_dtype, a, (size_t)need);
                const sqkv_error e2 = sqkv_reader_decode(mem, layer, (sqkv_tensor)t, 0, g.n_kv_heads, g.value_dtype, b,
                                                        (size_t)need);
                fuzz_check_error_known(ec);
                failed = fail_at && before < fail_at && src.reads >= fail_at;
                if (failed)
                    FUZZ_CHECK(ec == SQKV_ERR_IO, "a failed read during decode gave %s", sqkv_error_name(ec));
                else if (!(fail_at && before >= fail_at))
                    FUZZ_CHECK(ec == e2 && (ec != SQKV_OK || memcmp(a, b, (size_t)need) == 0),
                               "decode through read_at gave %s, from memory %s (or other bytes)", sqkv_error_name(ec),
                               sqkv_error_name(e2));
                free(a);
                free(b);
                if (ec != SQKV_OK || e2 != SQKV_OK) goto done;
            }
        }
    }
done:
    sqkv_reader_destroy(cb);
    sqkv_reader_destroy(mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sqkv_limits limits;
    fuzz_limits(&limits);

    uint8_t *copy = (uint8_t *)malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    const int repaired = fuzz_repair_checksums(copy, size);
    fuzz_run_reader(copy, size, &limits, 1);
    const uint64_t h = sqkv_checksum(copy, size);
    check_callback_reader(copy, size, &limits, (h & 3) == 0 ? 1 + (uint32_t)((h >> 8) % 6) : 0);
    free(copy);

    if (repaired) {
        /* As given: a checksum mismatch must be an error (or, in the fuzzing build, ignored). */
        sqkv_reader *r = NULL;
        FUZZ_CHECK(sqkv_reader_create(&limits, 0, &r) == SQKV_OK, "reader_create failed");
        sqkv_error err = sqkv_reader_open_memory(r, data, size);
        fuzz_check_error_known(err);
        if (err == SQKV_OK) err = sqkv_reader_verify(r);
        fuzz_check_error_known(err);
#if !SQKV_FUZZING
        /* Repair changed a checksum: in a verifying build these bytes must not pass. */
        FUZZ_CHECK(err != SQKV_OK, "a file with a wrong checksum verified");
#endif
        sqkv_reader_destroy(r);
    }
    return 0;
}
