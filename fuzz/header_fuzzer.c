/*
 * header_fuzzer: the file header, geometry, tail, index and coverage rules (everything
 * sqkv_reader_open_memory validates), then every structural query and the ancillary sections
 * (tokens, fingerprint, metadata), without decoding tensor bodies.
 *
 * Input: an SQKV file. Each input runs twice: as given (so the checksum rules are fuzzed too), and with
 * its checksums recomputed (so mutations of the fields behind them are reached in any build).
 */
#include <unistd.h>

#include "fuzz_reader.h"

static void run_structure(const uint8_t *data, size_t size) {
    sqkv_limits limits;
    fuzz_limits(&limits);
    fuzz_reader_result res;
    memset(&res, 0, sizeof res);
    fuzz_budget no_tensors = {0, 0};
    sqkv_reader *r = NULL;
    FUZZ_CHECK(sqkv_reader_create(&limits, 0, &r) == SQKV_OK, "reader_create failed");
    res.open_err = sqkv_reader_open_memory(r, data, size);
    fuzz_check_error_known(res.open_err);
    if (res.open_err == SQKV_OK) {
        FUZZ_CHECK(size >= SQKV_HEADER_SIZE_V1 + SQKV_SECTION_HEADER_SIZE + 32, "opened %zu bytes", size);
        FUZZ_CHECK(memcmp(data, sqkv_magic, 8) == 0 && memcmp(data + size - 8, sqkv_end_magic, 8) == 0,
                   "opened a file without both magics");
        fuzz_drive_open_reader(r, data, size, &no_tensors, &res);
    } else {
        FUZZ_CHECK(fuzz_is_file_error(res.open_err) || res.open_err == SQKV_ERR_LIMIT ||
                       res.open_err == SQKV_ERR_OUT_OF_MEMORY,
                   "open gave %s", sqkv_error_name(res.open_err));
        /* A reader whose open failed stays failed. */
        sqkv_geometry g;
        sqkv_error again = sqkv_reader_geometry(r, &g);
        FUZZ_CHECK(again != SQKV_OK, "geometry succeeded after a failed open");
    }
    sqkv_reader_destroy(r);
}

/* sqkv_dense_size must be exact or 0, never wrapped. */
static void check_dense_size(const uint8_t *data, size_t size) {
    if (size < 16) return;
    const uint32_t heads = sqkv_load_u32(data), tokens = sqkv_load_u32(data + 4), dim = sqkv_load_u32(data + 8);
    const sqkv_dtype dt = (sqkv_dtype)(data[12] % 5);
    const uint64_t got = sqkv_dense_size(heads, tokens, dim, dt);
    if (dt != SQKV_DTYPE_FP16 && dt != SQKV_DTYPE_BF16 && dt != SQKV_DTYPE_FP32) {
        FUZZ_CHECK(got == 0, "dense_size accepted dtype %d", (int)dt);
        return;
    }
    const unsigned __int128 exact = (unsigned __int128)heads * tokens * dim * fuzz_dtype_size(dt);
    FUZZ_CHECK(got == exact || (got == 0 && exact > UINT64_MAX), "dense_size(%u, %u, %u, %d) = %llu", heads, tokens,
               dim, (int)dt, (unsigned long long)got);
}

/* sqkv_reader_open_file (mmap) must judge the bytes exactly as open_memory does, and the recovery
 * functions must find the right prefix. One scratch file per process, rewritten for each input. */
static char scratch_path[64];

static void remove_scratch(void) { unlink(scratch_path); }

static void check_open_file(const uint8_t *data, size_t size) {
    char *const path = scratch_path;
    static int fd = -1;
    if (fd < 0) {
        snprintf(path, sizeof scratch_path, "/tmp/sqkv-header-fuzzer-XXXXXX");
        fd = mkstemp(path);
        if (fd < 0) return;
        atexit(remove_scratch);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) return;
    sqkv_limits limits;
    fuzz_limits(&limits);
    sqkv_reader *a = NULL, *b = NULL;
    FUZZ_CHECK(sqkv_reader_create(&limits, 0, &a) == SQKV_OK && sqkv_reader_create(&limits, 0, &b) == SQKV_OK,
               "reader_create failed");
    const sqkv_error from_memory = sqkv_reader_open_memory(a, data, size);
    const sqkv_error from_file = sqkv_reader_open_file(b, path);
    fuzz_check_error_known(from_file);
    if (size == 0)
        FUZZ_CHECK(from_file != SQKV_OK, "an empty file opened");
    else
        FUZZ_CHECK(from_file == from_memory, "open_file gave %s, open_memory %s", sqkv_error_name(from_file),
                   sqkv_error_name(from_memory));
    if (from_file == SQKV_OK) {
        sqkv_geometry ga, gb;
        FUZZ_CHECK(sqkv_reader_geometry(a, &ga) == SQKV_OK && sqkv_reader_geometry(b, &gb) == SQKV_OK &&
                       memcmp(&ga, &gb, sizeof ga) == 0,
                   "open_file and open_memory see different geometries");
        FUZZ_CHECK(sqkv_reader_verify(b) == sqkv_reader_verify(a), "verify differs between file and memory");
    }
    sqkv_reader_destroy(a);
    sqkv_reader_destroy(b);
    /* sqkv_reader_open_fd (pread) too. */
    FUZZ_CHECK(sqkv_reader_create(&limits, 0, &b) == SQKV_OK, "reader_create failed");
    const sqkv_error from_fd = sqkv_reader_open_fd(b, fd);
    fuzz_check_error_known(from_fd);
    if (size) FUZZ_CHECK(from_fd == from_memory, "open_fd gave %s, open_memory %s", sqkv_error_name(from_fd),
                         sqkv_error_name(from_memory));
    if (from_fd == SQKV_OK) fuzz_check_error_known(sqkv_reader_verify(b));
    sqkv_reader_destroy(b);

    /* Recovery (§9.1 crash safety): the longest valid prefix is the whole file when it is sound, and
     * otherwise a prefix that itself opens and verifies; sqkv_recover truncates to exactly that. */
    uint64_t file_size = 0, valid = 0;
    char detail[256];
    const sqkv_error found = sqkv_find_valid_prefix(path, &limits, &file_size, &valid, detail, sizeof detail);
    fuzz_check_error_known(found);
    FUZZ_CHECK(memchr(detail, 0, sizeof detail) != NULL, "find_valid_prefix detail not terminated");
    FUZZ_CHECK(file_size == size, "find_valid_prefix: file_size %llu of %zu", (unsigned long long)file_size, size);
    FUZZ_CHECK(valid <= size, "valid prefix %llu of %zu bytes", (unsigned long long)valid, size);
    sqkv_error whole = from_memory;
    if (whole == SQKV_OK) {
        FUZZ_CHECK(sqkv_reader_create(&limits, 0, &a) == SQKV_OK, "reader_create failed");
        whole = sqkv_reader_open_memory(a, data, size);
        if (whole == SQKV_OK) whole = sqkv_reader_verify(a);
        sqkv_reader_destroy(a);
    }
    if (whole == SQKV_OK) FUZZ_CHECK(found == SQKV_OK && valid == size, "a sound file has valid prefix %llu of %zu",
                                     (unsigned long long)valid, size);
    if (found == SQKV_OK && valid > 0 && valid < size) {
        FUZZ_CHECK(sqkv_reader_create(&limits, 0, &a) == SQKV_OK, "reader_create failed");
        sqkv_error e = sqkv_reader_open_memory(a, data, (size_t)valid);
        if (e == SQKV_OK) e = sqkv_reader_verify(a);
        sqkv_reader_destroy(a);
        FUZZ_CHECK(e == SQKV_OK, "the valid prefix of %llu bytes gives %s", (unsigned long long)valid, sqkv_error_name(e));
        uint64_t old_size = 0, new_size = 0;
        const sqkv_error rec = sqkv_recover(path, &limits, &old_size, &new_size, NULL, 0);
        FUZZ_CHECK(rec == SQKV_OK && old_size == size && new_size == valid, "recover: %s, %llu -> %llu (valid %llu)",
                   sqkv_error_name(rec), (unsigned long long)old_size, (unsigned long long)new_size,
                   (unsigned long long)valid);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    run_structure(data, size);
    /* The file round trip costs syscalls: one input in eight, chosen by content so it reproduces. */
    if (sqkv_checksum(data, size) % 8 == 0) check_open_file(data, size);
    check_dense_size(data, size);
    uint8_t *copy = (uint8_t *)malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    if (fuzz_repair_checksums(copy, size)) run_structure(copy, size);
    free(copy);
    return 0;
}
