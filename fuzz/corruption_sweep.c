/*
 * corruption_sweep: for every given SQKV file (the golden vectors), every single-bit flip and every
 * truncation, decoded through the public API (open, verify, every (layer, tensor) in the element type
 * and fp32, tokens, fingerprint, metadata). Each corrupted file is counted as
 *   detected  some call returned an error (the target: all of them),
 *   accepted  every call succeeded (silently accepted: a failure of the sweep),
 *   crashed   the process died (signal, or a sanitizer report: build this with ASan + UBSan).
 * Cases run in a forked child; when it dies, the parent records the case, saves the input under
 * --crash-dir, and starts a new child at the next case, so one crash does not end the sweep.
 *
 *   corruption_sweep [--crash-dir DIR] [--quiet] [--repair] FILE...
 *
 * --repair recomputes every checksum after each flip (fuzz_common.h), so that the flip reaches the rule
 * behind the checksum: "accepted" then counts flips that made another valid file (a changed value),
 * and only crashes fail the run.
 *
 * Build it without SQKV_FUZZING (a fuzzing build ignores body checksums, by design). Exit status: 0
 * when every corruption of every file was detected, 1 otherwise, 2 on a usage or I/O error.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "sqkv.h"


#define N_ERRORS 128 /* error values are < 128 */

typedef struct sweep_shared {
    volatile uint64_t next;          /* the case the child is about to run */
    uint64_t detected[2], accepted[2], crashed_total[2];
    uint64_t by_error[2][N_ERRORS];  /* [flip/truncation][error] */
    uint64_t first_accepted[2];      /* a case number, or UINT64_MAX */
} sweep_shared;

/* 0 when the bytes pass everything, else the first error. */
static sqkv_error decode_everything(const uint8_t *data, size_t size) {
    sqkv_reader *r = NULL;
    sqkv_error err = sqkv_reader_create(NULL, 0, &r);
    if (err != SQKV_OK) return err;
    sqkv_geometry g;
    size_t count;
    if ((err = sqkv_reader_open_memory(r, data, size)) || (err = sqkv_reader_verify(r)) ||
        (err = sqkv_reader_geometry(r, &g)) || (err = sqkv_reader_tokens(r, NULL, 0, &count)) ||
        (err = sqkv_reader_fingerprint(r, NULL, 0, &count)) || (err = sqkv_reader_metadata_count(r, &count)))
        goto done;
    for (size_t i = 0; i < count && err == SQKV_OK; i++) {
        const char *k, *v;
        size_t ks, vs;
        err = sqkv_reader_metadata_entry(r, i, &k, &ks, &v, &vs);
    }
    for (uint32_t layer = 0; layer < g.n_layers && err == SQKV_OK; layer++) {
        for (int t = 0; t < 2 && err == SQKV_OK; t++) {
            for (int fp32 = 0; fp32 < 2 && err == SQKV_OK; fp32++) {
                const sqkv_dtype dt = fp32 ? SQKV_DTYPE_FP32 : g.value_dtype;
                const uint64_t need = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, dt);
                void *out = need && need < ((uint64_t)1 << 32) ? malloc((size_t)need) : NULL;
                err = out ? sqkv_reader_decode(r, layer, (sqkv_tensor)t, 0, g.n_kv_heads, dt, out, (size_t)need)
                          : SQKV_ERR_OUT_OF_MEMORY;
                free(out);
            }
        }
    }
done:
    sqkv_reader_destroy(r);
    return err;
}

/* Case c of a file of `size` bytes: c < 8*size flips bit c%8 of byte c/8; then truncation to length
 * c - 8*size. Builds the corrupted bytes into buf (exactly as long as the case, so ASan sees reads
 * past it) and returns its length. */
static size_t make_case(const uint8_t *file, size_t size, uint64_t c, uint8_t **buf, int *kind) {
    if (c < 8 * (uint64_t)size) {
        *kind = 0;
        *buf = (uint8_t *)malloc(size);
        memcpy(*buf, file, size);
        (*buf)[c / 8] ^= (uint8_t)(1u << (c % 8));
        return size;
    }
    *kind = 1;
    const size_t len = (size_t)(c - 8 * (uint64_t)size);
    *buf = (uint8_t *)malloc(len ? len : 1);
    if (len) memcpy(*buf, file, len);
    return len;
}

static int repair_mode;

static void run_cases(const uint8_t *file, size_t size, uint64_t from, uint64_t total, sweep_shared *sh) {
    for (uint64_t c = from; c < total; c++) {
        sh->next = c;
        uint8_t *buf;
        int kind;
        const size_t len = make_case(file, size, c, &buf, &kind);
        if (repair_mode) fuzz_repair_checksums(buf, len);
        const sqkv_error err = decode_everything(buf, len);
        free(buf);
        if (err == SQKV_OK) {
            sh->accepted[kind]++;
            if (sh->first_accepted[kind] == UINT64_MAX) sh->first_accepted[kind] = c;
        } else {
            sh->detected[kind]++;
            sh->by_error[kind][(unsigned)err < N_ERRORS ? (unsigned)err : 0]++;
        }
    }
    sh->next = total;
}

static uint8_t *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *data = NULL;
    size_t cap = 0;
    *size = 0;
    for (;;) {
        if (*size == cap) {
            cap = cap ? 2 * cap : 65536;
            uint8_t *grown = (uint8_t *)realloc(data, cap);
            if (!grown) break;
            data = grown;
        }
        const size_t n = fread(data + *size, 1, cap - *size, f);
        if (n == 0) break;
        *size += n;
    }
    fclose(f);
    return data;
}

static void save_crash(const char *dir, const char *path, const uint8_t *file, size_t size, uint64_t c) {
    if (!dir) return;
    uint8_t *buf;
    int kind;
    const size_t len = make_case(file, size, c, &buf, &kind);
    const char *base = strrchr(path, '/');
    char out[4096];
    snprintf(out, sizeof out, "%s/%s.%s%llu", dir, base ? base + 1 : path, kind ? "trunc" : "flip",
             (unsigned long long)(kind ? len : c));
    FILE *f = fopen(out, "wb");
    if (f) {
        fwrite(buf, 1, len, f);
        fclose(f);
        fprintf(stderr, "corruption_sweep: crash input saved as %s\n", out);
    }
    free(buf);
}

int main(int argc, char **argv) {
#if defined(SQKV_FUZZING) && SQKV_FUZZING
    (void)argc;
    (void)argv;
    fprintf(stderr, "corruption_sweep: built with SQKV_FUZZING (checksums ignored); build it without\n");
    return 2;
#endif
    const char *crash_dir = NULL;
    int quiet = 0, first = 1, bad = 0;
    for (; first < argc && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "--crash-dir") == 0 && first + 1 < argc)
            crash_dir = argv[++first];
        else if (strcmp(argv[first], "--quiet") == 0)
            quiet = 1;
        else if (strcmp(argv[first], "--repair") == 0)
            repair_mode = 1;
        else {
            fprintf(stderr, "usage: corruption_sweep [--crash-dir DIR] [--quiet] [--repair] FILE...\n");
            return 2;
        }
    }
    if (first >= argc) {
        fprintf(stderr, "usage: corruption_sweep [--crash-dir DIR] [--quiet] [--repair] FILE...\n");
        return 2;
    }
    sweep_shared *sh = (sweep_shared *)mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) return 2;
    printf("%-40s %8s | %9s %9s %8s %7s | %9s %9s %8s %7s\n", "vector", "bytes", "flips", "detected", "accepted",
           "crashed", "truncs", "detected", "accepted", "crashed");
    uint64_t totals[2][4] = {{0}};
    for (int a = first; a < argc; a++) {
        size_t size = 0;
        uint8_t *file = read_file(argv[a], &size);
        if (!file) {
            fprintf(stderr, "corruption_sweep: cannot read %s: %s\n", argv[a], strerror(errno));
            return 2;
        }
        const sqkv_error base = decode_everything(file, size);
        if (base != SQKV_OK) {
            printf("%-40s %8zu | not a valid file: %s (skipped)\n", argv[a], size, sqkv_error_name(base));
            bad = 1;
            free(file);
            continue;
        }
        memset(sh, 0, sizeof *sh);
        sh->first_accepted[0] = sh->first_accepted[1] = UINT64_MAX;
        const uint64_t total = 9 * (uint64_t)size; /* 8*size flips + size truncations */
        uint64_t from = 0;
        while (from < total) {
            fflush(stdout);
            const pid_t pid = fork();
            if (pid < 0) return 2;
            if (pid == 0) {
                run_cases(file, size, from, total, sh);
                _exit(0);
            }
            int status = 0;
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) break;
            const uint64_t c = sh->next;
            sh->crashed_total[c < 8 * (uint64_t)size ? 0 : 1]++;
            save_crash(crash_dir, argv[a], file, size, c);
            from = c + 1;
        }
        printf("%-40s %8zu | %9llu %9llu %8llu %7llu | %9zu %9llu %8llu %7llu\n", argv[a], size,
               (unsigned long long)(8 * (uint64_t)size), (unsigned long long)sh->detected[0],
               (unsigned long long)sh->accepted[0], (unsigned long long)sh->crashed_total[0], size,
               (unsigned long long)sh->detected[1], (unsigned long long)sh->accepted[1],
               (unsigned long long)sh->crashed_total[1]);
        for (int k = 0; k < 2; k++) {
            totals[k][0] += k ? size : 8 * (uint64_t)size;
            totals[k][1] += sh->detected[k];
            totals[k][2] += sh->accepted[k];
            totals[k][3] += sh->crashed_total[k];
            if ((sh->accepted[k] && !repair_mode) || sh->crashed_total[k]) bad = 1;
            if (sh->first_accepted[k] != UINT64_MAX)
                fprintf(stderr, "corruption_sweep: %s: first silently accepted %s: case %llu\n", argv[a],
                        k ? "truncation" : "flip", (unsigned long long)sh->first_accepted[k]);
            if (!quiet) {
                printf("    %s detected as:", k ? "truncations" : "flips");
                for (int e = 0; e < N_ERRORS; e++)
                    if (sh->by_error[k][e]) printf(" %s=%llu", sqkv_error_name((sqkv_error)e) + 9,
                                                   (unsigned long long)sh->by_error[k][e]);
                printf("\n");
            }
        }
        free(file);
    }
    printf("%-40s %8s | %9llu %9llu %8llu %7llu | %9llu %9llu %8llu %7llu\n", "TOTAL", "",
           (unsigned long long)totals[0][0], (unsigned long long)totals[0][1], (unsigned long long)totals[0][2],
           (unsigned long long)totals[0][3], (unsigned long long)totals[1][0], (unsigned long long)totals[1][1],
           (unsigned long long)totals[1][2], (unsigned long long)totals[1][3]);
    return bad ? 1 : 0;
}
