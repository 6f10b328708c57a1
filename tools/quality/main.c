/*
 * sqkv_quality: chooses SQKV's default payload and scale scheme by measurement. One run produces the
 * whole table (results/quality.md): every sparsity x bits x quantizer x scale granularity of the 1.0
 * format, the 1.1 settings (widths 1..8, half-tile groups, keep-all sections), each with and without the
 * zstd layer, all written and read by the library; Mustafar and KIVI reference points; and the settings
 * the format still cannot express, modelled; on synthetic and real caches; Pareto fronts, target checks
 * and the default.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datasets.h"
#include "report.h"
#include "sweep.h"
#include "tools/common/util.h"

#define MAX_SETS 4

typedef struct quality_args {
    const char *data_dir, *out_path;
    int threads, quick;
    uint32_t queries, top_k;
    uint32_t syn_layers, syn_heads, syn_tokens;
    uint64_t seed;
} quality_args;

static void usage(FILE *f) {
    fprintf(f,
            "usage: sqkv_quality [--data DIR] [--out FILE] [--threads N] [--queries N] [--top-k N]\n"
            "                    [--synthetic LAYERS,HEADS,TOKENS] [--seed N] [--quick]\n"
            "  --data DIR      real caches (py_json_decoder, man_bash .npy); default ../shared/data/kv\n"
            "  --out FILE      Markdown results; default results/quality.md (relative to the workspace\n"
            "                  under `bazel run`)\n"
            "  --threads N     worker threads (default 2)\n"
            "  --queries N     queries per (layer, head) and query set (default 64)\n"
            "  --top-k N       top-k agreement of attention scores (default 32)\n"
            "  --synthetic L,H,T  synthetic geometry, head_dim 128 (default 4,4,2048)\n"
            "  --quick         a few settings on small synthetic data, for testing (still every real cache)\n");
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (uint32_t)v;
    return 0;
}

static int parse_args(int argc, char **argv, quality_args *a) {
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        uint32_t u = 0;
        if (!strcmp(opt, "--quick")) {
            a->quick = 1;
            continue;
        }
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (!val) goto bad;
        i++;
        if (!strcmp(opt, "--data")) a->data_dir = val;
        else if (!strcmp(opt, "--out")) a->out_path = val;
        else if (!strcmp(opt, "--threads") && !parse_u32(val, 1, 64, &u)) a->threads = (int)u;
        else if (!strcmp(opt, "--queries") && !parse_u32(val, 1, 4096, &u)) a->queries = u;
        else if (!strcmp(opt, "--top-k") && !parse_u32(val, 0, 4096, &u)) a->top_k = u;
        else if (!strcmp(opt, "--seed") && !parse_u32(val, 0, 0xFFFFFFFFu, &u)) a->seed = u;
        else if (!strcmp(opt, "--synthetic")) {
            char buf[64];
            snprintf(buf, sizeof buf, "%s", val);
            char *l = strtok(buf, ","), *h = strtok(NULL, ","), *t = strtok(NULL, ",");
            if (!l || !h || !t || parse_u32(l, 1, 64, &a->syn_layers) || parse_u32(h, 1, 64, &a->syn_heads) ||
                parse_u32(t, 64, 65536, &a->syn_tokens) || a->syn_tokens % 64)
                goto bad;
        } else
            goto bad;
        continue;
    bad:
        fprintf(stderr, "sqkv_quality: bad option or value: %s%s%s\n", opt, val ? " " : "", val ? val : "");
        usage(stderr);
        return -1;
    }
    return 0;
}

static void cpu_model(char *buf, size_t cap) {
    snprintf(buf, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(buf, cap, "%s", strchr(line, ':') + 2);
            buf[strcspn(buf, "\n")] = 0;
            break;
        }
    fclose(f);
}

/* Paths relative to the workspace when run by `bazel run` (which changes the working directory). */
static const char *workspace_path(const char *path, char *buf, size_t cap) {
    const char *ws = getenv("BUILD_WORKSPACE_DIRECTORY");
    if (!ws || path[0] == '/') return path;
    snprintf(buf, cap, "%s/%s", ws, path);
    return buf;
}

int main(int argc, char **argv) {
    quality_args a = {"../shared/data/kv", "results/quality.md", 2, 0, 64, 32, 4, 4, 2048, 1};
    if (parse_args(argc, argv, &a)) return 2;
    if (a.quick) {
        a.syn_layers = a.syn_layers > 2 ? 2 : a.syn_layers;
        a.syn_heads = a.syn_heads > 2 ? 2 : a.syn_heads;
        a.syn_tokens = a.syn_tokens > 512 ? 512 : a.syn_tokens;
    }
    char data_buf[4096], out_buf[4096], msg[512];
    const char *data_dir = workspace_path(a.data_dir, data_buf, sizeof data_buf);
    const char *out_path = workspace_path(a.out_path, out_buf, sizeof out_buf);
    const double t0 = sqkv_now();

    dataset sets[MAX_SETS];
    size_t n_sets = 0;
    for (int heavy = 0; heavy < 2; heavy++) {
        fprintf(stderr, "generating synthetic (%s values)\n", heavy ? "heavy-tailed" : "Gaussian");
        if (dataset_synthetic(&sets[n_sets], a.syn_layers, a.syn_heads, a.syn_tokens, 128, heavy, a.seed, a.queries,
                              a.top_k, msg, sizeof msg)) {
            fprintf(stderr, "sqkv_quality: %s\n", msg);
            return 1;
        }
        n_sets++;
    }
    static const char *const REAL[2] = {"py_json_decoder", "man_bash"};
    for (int i = 0; i < 2; i++) {
        fprintf(stderr, "loading %s/%s\n", data_dir, REAL[i]);
        if (dataset_real(&sets[n_sets], data_dir, REAL[i], REAL[1 - i], a.seed, a.queries, a.top_k, msg, sizeof msg)) {
            fprintf(stderr, "sqkv_quality: %s\n", msg);
            return 1;
        }
        n_sets++;
    }

    point *points[MAX_SETS];
    size_t n_points = 0;
    for (size_t s = 0; s < n_sets; s++) {
        fprintf(stderr, "%s: self-checks\n", sets[s].name);
        if (sweep_self_check(&sets[s], msg, sizeof msg)) {
            fprintf(stderr, "sqkv_quality: self-check failed on %s: %s\n", sets[s].name, msg);
            return 1;
        }
        n_points = sweep_points(a.quick, &points[s]);
        if (!n_points) {
            fprintf(stderr, "sqkv_quality: out of memory\n");
            return 1;
        }
        fprintf(stderr, "%s: %zu settings\n", sets[s].name, n_points);
        if (sweep_run(&sets[s], points[s], n_points, a.threads)) {
            for (size_t i = 0; i < n_points; i++)
                if (points[s][i].failed) {
                    char label[128];
                    point_label(&points[s][i], label, sizeof label);
                    fprintf(stderr, "sqkv_quality: %s on %s: %s\n", label, sets[s].name, points[s][i].message);
                }
            return 1;
        }
        report_fronts(points[s], n_points);
    }

    FILE *f = fopen(out_path, "w");
    if (!f) {
        fprintf(stderr, "sqkv_quality: cannot write %s: %s\n", out_path, strerror(errno));
        return 1;
    }
    char cpu[256], when[64];
    cpu_model(cpu, sizeof cpu);
    const time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    fprintf(f, "# SQKV quality: payload and scale schemes, measured\n\n");
    fprintf(f, "Generated by `sqkv_quality` (tools/quality) in one run; do not edit by hand. The reading of these "
               "tables, and the choice of the default, is in spec/QUANTIZATION.md.\n\n");
    fprintf(f, "- command: `");
    for (int i = 0; i < argc; i++) fprintf(f, "%s%s", i ? " " : "", i ? argv[i] : "sqkv_quality");
    fprintf(f, "`\n- date: %s; machine: %s, %d thread(s); run time %.0f s\n", when, cpu, a.threads, sqkv_now() - t0);
    fprintf(f, "- library: SQKV %s (format %d.%d)%s\n\n", SQKV_LIBRARY_VERSION_STRING, SQKV_FORMAT_VERSION_MAJOR,
            SQKV_FORMAT_VERSION_MINOR, a.quick ? "; **--quick: a reduced sweep, not the published table**" : "");
    fprintf(f, "## Method\n\n"
               "- **bits/element**: stored bits over the elements of K and V together. SQKV: the real file size from "
               "the library (file header, section headers, index, tail, bitmaps, offset tables, scales, payload: every "
               "byte), dense window 0, no ancillary sections. Mustafar: 8 B bitmap + 4 B count + 16*ceil(nnz/8) B per 64 "
               "elements. KIVI: the codes plus an fp16 scale and an fp16 zero per group of 32; **no residual window** "
               "(KIVI keeps 32 to 128 recent tokens in fp16; that would add the same cost to any scheme).\n"
               "- **rel. L2**: ||restored - original|| / ||original|| over every element of K (of V).\n"
               "- **attn. error**: ||O' - O|| / ||O|| with O = softmax(q K^T / sqrt(d)) V over all cached tokens for "
               "%u queries per (layer, KV head), O' the same with restored K and V; sums of squares over every query, "
               "head and layer. Two query sets: *random q* ~ N(0, I); *key-like q*: synthetic data, the keys of the "
               "%u tokens that follow the cache (same generator, next rotary positions); real data, keys of the same "
               "layer and head of the other real cache at random positions. Fronts and targets use the attention error.\n"
               "- **top-%u**: the fraction of the %u tokens with the highest original attention scores that are also "
               "among the %u highest with the restored keys.\n"
               "- **settings**: SQKV `s` = per-token magnitude pruning sparsity (s=0: pruning off, bitmaps still "
               "stored), `b` = payload bits (16 = exact fp16), sym/asym = SYMMETRIC/ASYMMETRIC levels, head/tile/"
               "half-tile = PER_HEAD/PER_TILE/PER_HALF_TILE scales (one parameter group per head, per 64-element tile, "
               "per 32 elements of a tile), `keep-all` = SQKV_PRUNE_KEEP_ALL: every element kept, ALL_KEPT sections "
               "without bitmaps or offset tables, `rs` = the writer's range search (sqkv_writer_options.range_search, "
               "spec/FORMAT.md §14: per group, the parameters of 8 candidate ranges with the least squared error; "
               "an encoder choice, the file format is the same). Rows marked `SQKV 1.1` need a format 1.1 required feature "
               "(CODE_WIDTHS, HALF_TILE_SCALES, ALL_KEPT); plain `SQKV` rows are format 1.0 files. Every SQKV row is "
               "written and read by the library (real file sizes, real decode). *proposed* rows (`g16` = one "
               "parameter group per 16 consecutive elements of a tile) are not expressible in the format; they are "
               "modelled by tools/quality/format_sim.c, which reproduces the library's values, section bodies and "
               "file sizes bit for bit on the settings both express (checked on every dataset, below).\n"
               "- **KIVI** (re-implemented from its description): per group of 32 (keys: 32 tokens of one channel; "
               "values: 32 channels of one token) scale = fp16((max-min)/(2^b-1)), zero = min, "
               "q = round(clamp((x-min)/scale, 0, 2^b-1)), fp16 arithmetic at each step; a constant group restores its "
               "minimum (KIVI itself has no guard). **Mustafar**: the same pruned values as SQKV EXACT (checked equal), "
               "stored in Mustafar's format.\n"
               "- **with zstd-%d streams**: the same setting written by the library with its zstd layer "
               "(`sqkv_writer_options.zstd_level` = %d: codec 1 of spec/FORMAT.md §5.1, each stream of each section "
               "zstd-compressed where that makes it smaller): the real file size; its decode is checked to restore "
               "exactly the codec-0 values. For proposed rows, format_sim's model of the same.\n"
               "- **classes**: *v1.0 (codec 0)* = format 1.0 settings as the library writes them by default; *v1.0 "
               "with zstd* = the same files with the zstd layer; *v1.1 (codec 0)* / *v1.1 (with zstd)* = every setting "
               "the library writes (1.0 and 1.1), without / with the zstd layer; *+ proposed* = v1.1 with zstd plus the "
               "modelled g16 rows. Mustafar and KIVI count in every class.\n"
               "- **front**: R / K = on the Pareto front of (bits, attention error) for random / key-like queries "
               "in class v1.0 (codec 0); r / k = on the front of class v1.1 (with zstd); (r) / (k) on a proposed row = "
               "on the front when the proposed rows count too. Reference points in bold.\n"
               "- Synthetic data are smaller than Llama-3-8B (%u layers x %u KV heads x %u tokens) so that the whole "
               "table runs in minutes on 2 cores; the statistics per element are those of the generator at any size.\n\n",
            a.queries, a.queries, a.top_k, a.top_k, a.top_k, SWEEP_ZSTD_LEVEL, SWEEP_ZSTD_LEVEL, a.syn_layers,
            a.syn_heads, a.syn_tokens);
    fprintf(f, "## Data\n\n");
    report_data_table(f, sets, n_sets);
    fprintf(f, "Kurtosis: E[(x-mean)^4]/var^2 per (layer, head), averaged (3 for a Gaussian). Outlier-channel ratio: "
               "the largest over the median channel mean |x| per (layer, head), averaged. Energy pruned: the fraction of "
               "sum x^2 that per-token 70%% magnitude pruning removes (about 22%% for a Gaussian row). Attention span: "
               "exp(entropy) of the original attention weights, averaged over queries.\n\n");
    char checked[1024];
    sweep_self_check_list(checked, sizeof checked);
    fprintf(f, "Self-checks passed on every dataset: Mustafar's restore equals SQKV EXACT at s=0.7; format_sim equals "
               "the library (restored values, every codec-0 section body byte for byte, file size with codec 0 and with "
               "zstd-%d streams) for %s. Every SQKV row's zstd file restores exactly its codec-0 values.\n\n",
            SWEEP_ZSTD_LEVEL, checked);
    fprintf(f, "## Default\n\n### Format 1.0 settings, codec 0 (the library's default output)\n\n");
    report_default(f, sets, points, n_points, n_sets, CLASS_V10, 40);
    fprintf(f, "### Every library setting (1.0 and 1.1), codec 0\n\n");
    report_default(f, sets, points, n_points, n_sets, CLASS_V11, 20);
    fprintf(f, "### Every library setting (1.0 and 1.1) with the zstd layer\n\n");
    report_default(f, sets, points, n_points, n_sets, CLASS_V11_ZSTD, 20);
    fprintf(f, "## Targets against KIVI and Mustafar\n\n");
    int misses[N_CLASSES];
    report_targets(f, sets, points, n_points, n_sets, misses);
    fprintf(f, "Pairs (dataset, query set) where the target is missed, of %zu: v1.0 (codec 0) %d; v1.0 with zstd %d; "
               "v1.1 (with zstd) %d; with the proposed g16 rows too %d.\n\n",
            n_sets * QUERY_KINDS, misses[CLASS_V10], misses[CLASS_V10_ZSTD], misses[CLASS_V11_ZSTD],
            misses[CLASS_PROPOSED]);
    fprintf(f, "## Every setting\n\n");
    for (size_t s = 0; s < n_sets; s++) {
        fprintf(f, "### %s\n\n%s\n\n", sets[s].name, sets[s].description);
        report_points_table(f, &sets[s], points[s], n_points);
    }
    fprintf(f, "Total run time: %.0f s.\n", sqkv_now() - t0);
    const int write_failed = ferror(f) | (fclose(f) != 0);
    for (size_t s = 0; s < n_sets; s++) {
        free(points[s]);
        dataset_free(&sets[s]);
    }
    if (write_failed) {
        fprintf(stderr, "sqkv_quality: writing %s failed\n", out_path);
        return 1;
    }
    fprintf(stderr, "wrote %s (%.0f s)\n", out_path, sqkv_now() - t0);
    return 0;
}
