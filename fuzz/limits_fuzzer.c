/*
 * limits_fuzzer: the reader's sqkv_limits. Each input is opened, verified and decoded twice: with the
 * harness defaults, then with limits set at or just below what the file declares (layers, heads,
 * head_dim, tokens, file size, section count, section size) or below the memory the first run used.
 *
 *   - a declared quantity above its limit must make open fail with SQKV_ERR_LIMIT;
 *   - limits equal to the declared quantities must change nothing;
 *   - tighter limits may only turn a result into SQKV_ERR_LIMIT;
 *   - the bytes the library holds at once (measured with the sanitizer allocator's malloc/free hooks,
 *     counting only allocations made inside library calls) never exceed max_memory plus a small fixed
 *     allowance for the reader object itself.
 *
 * Input: byte 0 = which limits to tighten (bit i: limit i in the order above, bit 7: memory), byte 1 =
 * by how much (bit i set: one below the declared value, clear: equal to it; for memory: bit 7 set
 * halves the measured peak, clear takes one byte less), then an SQKV file (checksums recomputed).
 */
#include "fuzz_common.h"

/* Allowance for bookkeeping that no file can grow, beyond the reader object itself (what
 * sqkv_reader_create holds, measured each run). -DFUZZ_MEMORY_SLACK=N raises it, e.g. to keep fuzzing
 * past a known uncounted allocation while it is being fixed. */
#ifndef FUZZ_MEMORY_SLACK
#define FUZZ_MEMORY_SLACK (4u << 10)
#endif
#define MEMORY_SLACK ((uint64_t)(FUZZ_MEMORY_SLACK))

/* ---- allocation accounting ------------------------------------------------------------------- */

extern int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                                     void (*free_hook)(const volatile void *)) __attribute__((weak));

#define TRACK_SLOTS (1u << 16)
static struct {
    const volatile void *ptr;
    size_t size;
} tracked[TRACK_SLOTS];
static int tracking;           /* inside a library call */
static int track_overflow;     /* too many live blocks: the measurement is void */
static uint64_t live_bytes, peak_bytes;

static size_t slot_of(const volatile void *p) { return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 48); }

static void on_malloc(const volatile void *p, size_t size) {
    if (!tracking || !p) return;
    for (size_t i = slot_of(p), n = 0; n < TRACK_SLOTS; i = (i + 1) % TRACK_SLOTS, n++) {
        if (tracked[i].ptr == NULL) {
            tracked[i].ptr = p;
            tracked[i].size = size;
            live_bytes += size;
            if (live_bytes > peak_bytes) peak_bytes = live_bytes;
            return;
        }
    }
    track_overflow = 1;
}

static void on_free(const volatile void *p) {
    if (!p) return;
    for (size_t i = slot_of(p), n = 0; n < TRACK_SLOTS && tracked[i].ptr; i = (i + 1) % TRACK_SLOTS, n++) {
        if (tracked[i].ptr == p) {
            live_bytes -= tracked[i].size;
            /* Deleting from linear probing: re-insert the rest of the cluster. */
            tracked[i].ptr = NULL;
            for (size_t j = (i + 1) % TRACK_SLOTS; tracked[j].ptr; j = (j + 1) % TRACK_SLOTS) {
                const volatile void *q = tracked[j].ptr;
                size_t qs = tracked[j].size;
                tracked[j].ptr = NULL;
                for (size_t k = slot_of(q);; k = (k + 1) % TRACK_SLOTS)
                    if (!tracked[k].ptr) {
                        tracked[k].ptr = q;
                        tracked[k].size = qs;
                        break;
                    }
            }
            return;
        }
    }
}

static int accounting_available(void) {
    static int installed = -1;
    if (installed < 0)
        installed = __sanitizer_install_malloc_and_free_hooks != NULL &&
                    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0;
    return installed;
}

/* ---- one run ------------------------------------------------------------------------------------ */

typedef struct run_result {
    sqkv_error open_err, verify_err, decode_err;
    sqkv_geometry g;
    size_t n_sections;
    uint64_t max_stored;  /* largest stored body, as the index says (open checks these) */
    uint64_t max_decoded; /* largest size a section header states (read later, by verify) */
    uint64_t peak;    /* most bytes held at once, the reader object included */
    uint64_t created; /* bytes held by a fresh reader: the object the limits do not cover */
} run_result;

#define CALL(x) (tracking = 1, x_result = (x), tracking = 0, x_result)

static run_result run(const uint8_t *data, size_t size, const sqkv_limits *limits) {
    run_result res;
    memset(&res, 0, sizeof res);
    memset(tracked, 0, sizeof tracked);
    live_bytes = peak_bytes = 0;
    track_overflow = 0;
    sqkv_error x_result;
    sqkv_reader *r = NULL;
    FUZZ_CHECK(CALL(sqkv_reader_create(limits, 0, &r)) == SQKV_OK, "reader_create failed");
    res.created = live_bytes;
    res.open_err = CALL(sqkv_reader_open_memory(r, data, size));
    res.verify_err = res.decode_err = res.open_err;
    if (res.open_err == SQKV_OK) {
        FUZZ_CHECK(sqkv_reader_geometry(r, &res.g) == SQKV_OK, "geometry failed after open");
        FUZZ_CHECK(sqkv_reader_section_count(r, &res.n_sections) == SQKV_OK, "section_count failed after open");
        for (size_t i = 0; i < res.n_sections; i++) {
            sqkv_section_info info;
            FUZZ_CHECK(sqkv_reader_section_info(r, i, &info) == SQKV_OK, "section_info failed after open");
            /* max_section_size bounds stored and decoded body bytes alike (sqkv.h); the index gives the
             * stored sizes at open, a decoded size is known when its section is read. */
            const uint64_t decoded = sqkv_load_u64(data + info.offset + SQKV_SEC_DECODED_SIZE);
            /* The section header's own stored_size may differ from the index's (INDEX_MISMATCH comes
             * after the size checks): it is seen when the section is read, like decoded_size. */
            const uint64_t header_stored = sqkv_load_u64(data + info.offset + SQKV_SEC_STORED_SIZE);
            if (info.stored_size > res.max_stored) res.max_stored = info.stored_size;
            if (decoded > res.max_decoded) res.max_decoded = decoded;
            if (header_stored > res.max_decoded) res.max_decoded = header_stored;
        }
        res.verify_err = CALL(sqkv_reader_verify(r));
        res.decode_err = res.verify_err;
        const uint64_t need = sqkv_dense_size(res.g.n_kv_heads, res.g.n_tokens, res.g.head_dim, SQKV_DTYPE_FP32);
        if (res.verify_err == SQKV_OK && need && need <= FUZZ_MAX_OUTPUT) {
            void *out = malloc((size_t)need);
            FUZZ_CHECK(out, "out of memory");
            res.decode_err = CALL(sqkv_reader_decode(r, res.g.n_layers - 1, SQKV_TENSOR_V, 0, res.g.n_kv_heads,
                                                     SQKV_DTYPE_FP32, out, (size_t)need));
            free(out);
        }
    }
    tracking = 1;
    sqkv_reader_destroy(r);
    tracking = 0;
    fuzz_check_error_known(res.open_err);
    fuzz_check_error_known(res.verify_err);
    fuzz_check_error_known(res.decode_err);
    res.peak = track_overflow ? 0 : peak_bytes;
    return res;
}

static void expect_limit_or_same(sqkv_error tight, sqkv_error loose, int must_equal, const char *what) {
    if (must_equal)
        FUZZ_CHECK(tight == loose, "%s: limits equal to the file's values gave %s instead of %s", what,
                   sqkv_error_name(tight), sqkv_error_name(loose));
    else
        FUZZ_CHECK(tight == loose || tight == SQKV_ERR_LIMIT, "%s: tighter limits gave %s instead of %s or LIMIT", what,
                   sqkv_error_name(tight), sqkv_error_name(loose));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const uint8_t which = data[0], below = data[1];
    size -= 2;
    uint8_t *file = (uint8_t *)malloc(size ? size : 1);
    if (!file) return 0;
    if (size) memcpy(file, data + 2, size);
    fuzz_repair_checksums(file, size);
    const int measure = accounting_available();

    sqkv_limits loose;
    fuzz_limits(&loose);
    const run_result a = run(file, size, &loose);
    if (getenv("SQKV_FUZZ_DESCRIBE"))
        fprintf(stderr, "limits: accounting %s, open %s, peak %llu bytes held by the library\n",
                measure ? "on" : "off", sqkv_error_name(a.open_err), (unsigned long long)a.peak);
    if (getenv("SQKV_FUZZ_DESCRIBE"))
        fprintf(stderr, "limits: reader object %llu bytes\n", (unsigned long long)a.created);
    if (measure && a.peak)
        FUZZ_CHECK(a.peak <= a.created + loose.max_memory + MEMORY_SLACK,
                   "held %llu bytes (reader object %llu) with max_memory %llu", (unsigned long long)a.peak,
                   (unsigned long long)a.created, (unsigned long long)loose.max_memory);

    sqkv_limits tight = loose;
    int exceeded = 0;       /* a quantity open sees is now above its limit */
    int exceeded_later = 0; /* a decoded section size (seen when verify reads the section) is */
    int memory_cut = 0;
    if (a.open_err == SQKV_OK) {
#define TIGHTEN(bit, field, value)                          \
    if (which & (1u << (bit))) {                            \
        const uint64_t v = (value);                         \
        const int one_below = (below >> (bit)) & 1 && v > 0; \
        const uint64_t want = one_below ? v - 1 : v;         \
        /* never above the first run's limit */              \
        if (want < (uint64_t)tight.field) tight.field = want; \
        exceeded |= one_below;                               \
    }
        TIGHTEN(0, max_layers, a.g.n_layers)
        TIGHTEN(1, max_heads, a.g.n_kv_heads)
        TIGHTEN(2, max_head_dim, a.g.head_dim)
        TIGHTEN(3, max_tokens, a.g.n_tokens)
        TIGHTEN(4, max_file_size, size)
        TIGHTEN(5, max_sections, a.n_sections)
#undef TIGHTEN
        if (which & 0x40) {
            const uint64_t largest = a.max_stored > a.max_decoded ? a.max_stored : a.max_decoded;
            const uint64_t want = (below & 0x40) && largest ? largest - 1 : largest;
            if (want < tight.max_section_size) tight.max_section_size = want;
            exceeded |= a.max_stored > tight.max_section_size;
            exceeded_later = a.max_decoded > tight.max_section_size;
        }
    }
    if ((which & 0x80) && a.peak) {
        const uint64_t used = a.peak - a.created; /* what the limit covers */
        tight.max_memory = (below & 0x80) ? used / 2 : (used ? used - 1 : 0);
        memory_cut = 1;
    }
    if (!(which & 0x7F) && !memory_cut) {
        free(file);
        return 0;
    }
    const run_result b = run(file, size, &tight);
    if (measure && b.peak)
        FUZZ_CHECK(b.peak <= b.created + tight.max_memory + MEMORY_SLACK,
                   "held %llu bytes (reader object %llu) with max_memory %llu (limits mask 0x%02x)",
                   (unsigned long long)b.peak, (unsigned long long)b.created, (unsigned long long)tight.max_memory,
                   which);
    if (exceeded) {
        FUZZ_CHECK(b.open_err == SQKV_ERR_LIMIT, "a file over its limits (mask 0x%02x/0x%02x) opened with %s", which,
                   below, sqkv_error_name(b.open_err));
    } else if (exceeded_later && a.verify_err == SQKV_OK) {
        FUZZ_CHECK(b.open_err == SQKV_ERR_LIMIT || b.verify_err == SQKV_ERR_LIMIT,
                   "a section decoded to more than max_section_size verified: open %s, verify %s",
                   sqkv_error_name(b.open_err), sqkv_error_name(b.verify_err));
    } else {
        const int must_equal = !memory_cut && !exceeded_later;
        expect_limit_or_same(b.open_err, a.open_err, must_equal, "open");
        if (b.open_err == SQKV_OK) {
            expect_limit_or_same(b.verify_err, a.verify_err, must_equal, "verify");
            expect_limit_or_same(b.decode_err, a.decode_err, must_equal, "decode");
        }
    }
    free(file);
    return 0;
}
