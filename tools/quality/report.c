/* report.c: see report.h. */
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pareto.h"

static const char *const QUERY_NAME[QUERY_KINDS] = {"random q", "key-like q"};

static int is_reference(const point *p) {
    return p->kind == POINT_KIVI ||
           (p->kind == POINT_MUSTAFAR && (fabs(p->sparsity - 0.5) < 1e-9 || fabs(p->sparsity - 0.7) < 1e-9));
}

const char *const CLASS_NAME[N_CLASSES] = {"v1.0 (codec 0)", "v1.0 with zstd", "v1.1 (codec 0)", "v1.1 (with zstd)",
                                           "v1.1 with zstd + proposed g16 (modelled)"};

double class_bits(const point *p, int cls) {
    if (p->failed) return -1.0;
    if (p->kind == POINT_KIVI || p->kind == POINT_MUSTAFAR) return p->bits_per_element;
    if (p->kind == POINT_PROPOSED) return cls == CLASS_PROPOSED ? p->bits_zstd : -1.0;
    switch (cls) {
    case CLASS_V10: return point_is_v10(p) ? p->bits_per_element : -1.0;
    case CLASS_V10_ZSTD: return point_is_v10(p) ? p->bits_zstd : -1.0;
    case CLASS_V11: return p->bits_per_element;
    default: return p->bits_zstd;
    }
}

void report_fronts(point *points, size_t n) {
    static const int FRONT_CLASSES[3] = {CLASS_V10, CLASS_V11_ZSTD, CLASS_PROPOSED};
    double *bits = malloc((n + 1) * sizeof *bits), *err = malloc((n + 1) * sizeof *err);
    int *front = malloc((n + 1) * sizeof *front);
    size_t *index = malloc((n + 1) * sizeof *index);
    if (!bits || !err || !front || !index) goto done;
    for (int c = 0; c < 3; c++)
        for (int q = 0; q < QUERY_KINDS; q++) {
            const int cls = FRONT_CLASSES[c];
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                int *marks[3] = {points[i].on_front, points[i].on_front_v11, points[i].on_front_all};
                marks[c][q] = 0;
                if (class_bits(&points[i], cls) < 0) continue;
                bits[m] = class_bits(&points[i], cls);
                err[m] = points[i].attn_error[q];
                index[m++] = i;
            }
            pareto_front(bits, err, m, front);
            for (size_t j = 0; j < m; j++) {
                point *p = &points[index[j]];
                int *marks[3] = {p->on_front, p->on_front_v11, p->on_front_all};
                marks[c][q] = front[j];
            }
        }
done:
    free(bits);
    free(err);
    free(front);
    free(index);
}

void report_data_table(FILE *f, const dataset *sets, size_t n_sets) {
    fprintf(f, "| dataset | what | K kurtosis | V kurtosis | K outlier-channel ratio | K energy pruned at 70%% | "
               "V energy pruned at 70%% | attention span, random q | attention span, key-like q |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < n_sets; i++) {
        const dataset *d = &sets[i];
        fprintf(f, "| %s | %s | %.2f | %.2f | %.2f | %.1f%% | %.1f%% | %.1f tokens | %.1f tokens |\n", d->name,
                d->description, d->stats.k_kurtosis, d->stats.v_kurtosis, d->stats.k_outlier_ratio,
                100.0 * d->stats.k_energy_pruned, 100.0 * d->stats.v_energy_pruned, d->stats.span[QUERY_RANDOM],
                d->stats.span[QUERY_KEYLIKE]);
    }
    fprintf(f, "\n");
}

static const point *sort_base;
static int by_bits(const void *a, const void *b) {
    const point *x = &sort_base[*(const size_t *)a], *y = &sort_base[*(const size_t *)b];
    if (x->bits_per_element != y->bits_per_element) return x->bits_per_element < y->bits_per_element ? -1 : 1;
    return x->attn_error[QUERY_KEYLIKE] < y->attn_error[QUERY_KEYLIKE] ? -1 : x->attn_error[QUERY_KEYLIKE] > y->attn_error[QUERY_KEYLIKE];
}

void report_points_table(FILE *f, const dataset *d, const point *points, size_t n) {
    size_t *order = malloc((n + 1) * sizeof *order);
    if (!order) return;
    for (size_t i = 0; i < n; i++) order[i] = i;
    sort_base = points;
    qsort(order, n, sizeof *order, by_bits);
    fprintf(f, "| setting | bits/element | with zstd-%d streams | rel. L2 K | rel. L2 V | attn. error, random q | "
               "attn. error, key-like q | top-%u, random q | top-%u, key-like q | front |\n",
            SWEEP_ZSTD_LEVEL, d->top_k, d->top_k);
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t j = 0; j < n; j++) {
        const point *p = &points[order[j]];
        char label[128];
        point_label(p, label, sizeof label);
        if (p->failed) {
            fprintf(f, "| %s | failed: %s ||||||||\n", label, p->message);
            continue;
        }
        char front[32] = "";
        if (p->on_front[QUERY_RANDOM]) strcat(front, "R");
        if (p->on_front[QUERY_KEYLIKE]) strcat(front, "K");
        if (p->on_front_v11[QUERY_RANDOM]) strcat(front, " r");
        if (p->on_front_v11[QUERY_KEYLIKE]) strcat(front, " k");
        if (p->kind == POINT_PROPOSED && p->on_front_all[QUERY_RANDOM]) strcat(front, " (r)");
        if (p->kind == POINT_PROPOSED && p->on_front_all[QUERY_KEYLIKE]) strcat(front, " (k)");
        const int bold = p->kind != POINT_SQKV && p->kind != POINT_PROPOSED;
        char zstd_bits[32] = "";
        if (p->kind == POINT_SQKV || p->kind == POINT_PROPOSED) snprintf(zstd_bits, sizeof zstd_bits, "%.3f", p->bits_zstd);
        fprintf(f, "| %s%s%s | %.3f | %s | %.4f | %.4f | %.4f | %.4f | %.3f | %.3f | %s |\n", bold ? "**" : "", label,
                bold ? "**" : "", p->bits_per_element, zstd_bits, p->rel_l2_k, p->rel_l2_v, p->attn_error[QUERY_RANDOM],
                p->attn_error[QUERY_KEYLIKE], p->topk[QUERY_RANDOM], p->topk[QUERY_KEYLIKE], front);
    }
    fprintf(f, "\n");
    free(order);
}

/* Index of the lowest error among the SQKV points of class cls with bits <= max_bits; -1 if none. */
static long best_within(const point *points, size_t n, int q, double max_bits, int cls) {
    long best = -1;
    for (size_t i = 0; i < n; i++) {
        const point *p = &points[i];
        if (p->kind == POINT_KIVI || p->kind == POINT_MUSTAFAR) continue;
        const double bits = class_bits(p, cls);
        if (bits < 0 || bits > max_bits) continue;
        if (best < 0 || p->attn_error[q] < points[best].attn_error[q] ||
            (p->attn_error[q] == points[best].attn_error[q] && bits < class_bits(&points[best], cls)))
            best = (long)i;
    }
    return best;
}

static void print_candidate(FILE *f, const point *points, long i, const point *ref, int q, int cls, int *dominated,
                            int *strict) {
    *dominated = *strict = 0;
    if (i < 0) {
        if (f) fprintf(f, " none | | | **no** |");
        return;
    }
    const point *p = &points[i];
    const double bits = class_bits(p, cls);
    char label[128];
    point_label(p, label, sizeof label);
    *dominated = p->attn_error[q] <= ref->attn_error[q];
    *strict = *dominated && (p->attn_error[q] < ref->attn_error[q] || bits < ref->bits_per_element);
    const int zstd = cls != CLASS_V10 && cls != CLASS_V11 && p->bits_zstd < p->bits_per_element;
    if (f)
        fprintf(f, " %s%s | %.3f | %.4f | %s |", label, zstd ? " +zstd" : "", bits, p->attn_error[q],
                *dominated ? "yes" : "**no**");
}

/* The classes the targets are checked for. */
static const int TARGET_CLASSES[4] = {CLASS_V10, CLASS_V10_ZSTD, CLASS_V11_ZSTD, CLASS_PROPOSED};

/* One (dataset, query kind) pair: its table when f is not NULL; met[c] for TARGET_CLASSES[c]; the
 * references that v1.1 (with zstd) does not match, in v11_missed. */
static void target_pair(FILE *f, const point *points, size_t n_points, int q, int met[4], char *v11_missed,
                        size_t missed_cap) {
    int all[4] = {1, 1, 1, 1}, any_strict[4] = {0, 0, 0, 0};
    v11_missed[0] = 0;
    if (f) {
        fprintf(f, "| reference | bits/element | attn. error |");
        for (int c = 0; c < 4; c++) fprintf(f, " best, %s | bits | error | no worse? |", CLASS_NAME[TARGET_CLASSES[c]]);
        fprintf(f, "\n|---|---|---|");
        for (int c = 0; c < 4; c++) fprintf(f, "---|---|---|---|");
        fprintf(f, "\n");
    }
    for (size_t i = 0; i < n_points; i++) {
        const point *r = &points[i];
        if (!is_reference(r) || r->failed) continue;
        char label[128];
        point_label(r, label, sizeof label);
        if (f) fprintf(f, "| %s | %.3f | %.4f |", label, r->bits_per_element, r->attn_error[q]);
        for (int c = 0; c < 4; c++) {
            const int cls = TARGET_CLASSES[c];
            int dom = 0, strict = 0;
            print_candidate(f, points, best_within(points, n_points, q, r->bits_per_element, cls), r, q, cls, &dom,
                            &strict);
            all[c] &= dom;
            any_strict[c] |= strict;
            if (cls == CLASS_V11_ZSTD && !dom) {
                const size_t used = strlen(v11_missed);
                snprintf(v11_missed + used, missed_cap - used, "%s%s", used ? ", " : "", label);
            }
        }
        if (f) fprintf(f, "\n");
    }
    for (int c = 0; c < 4; c++) met[c] = all[c] && any_strict[c];
}

void report_targets(FILE *f, const dataset *sets, point *const *points, size_t n_points, size_t n_sets,
                    int misses[N_CLASSES]) {
    for (int c = 0; c < N_CLASSES; c++) misses[c] = 0;
    fprintf(f, "Target: every reference point (KIVI-2, KIVI-4, Mustafar at 50%% and 70%%) matched by an SQKV setting of "
               "the class with no more bits and no more attention error, and one of them strictly better. Summary per "
               "dataset and query set:\n\n");
    fprintf(f, "| dataset | query set |");
    for (int c = 0; c < 4; c++) fprintf(f, " %s |", CLASS_NAME[TARGET_CLASSES[c]]);
    fprintf(f, " references v1.1 (with zstd) does not match |\n|---|---|");
    for (int c = 0; c < 4; c++) fprintf(f, "---|");
    fprintf(f, "---|\n");
    for (size_t s = 0; s < n_sets; s++)
        for (int q = 0; q < QUERY_KINDS; q++) {
            int met[4];
            char missed[512];
            target_pair(NULL, points[s], n_points, q, met, missed, sizeof missed);
            fprintf(f, "| %s | %s |", sets[s].name, QUERY_NAME[q]);
            for (int c = 0; c < 4; c++) {
                fprintf(f, " %s |", met[c] ? "met" : "**not met**");
                misses[TARGET_CLASSES[c]] += !met[c];
            }
            fprintf(f, " %s |\n", missed[0] ? missed : "none");
        }
    fprintf(f, "\n");
    for (size_t s = 0; s < n_sets; s++)
        for (int q = 0; q < QUERY_KINDS; q++) {
            int met[4];
            char missed[512];
            fprintf(f, "#### %s, %s\n\n", sets[s].name, QUERY_NAME[q]);
            target_pair(f, points[s], n_points, q, met, missed, sizeof missed);
            fprintf(f, "\nTarget (each reference point matched by a setting with no more bits and no more error, one "
                       "strictly better):");
            for (int c = 0; c < 4; c++)
                fprintf(f, "%s %s **%s**", c ? ";" : "", CLASS_NAME[TARGET_CLASSES[c]], met[c] ? "met" : "not met");
            fprintf(f, ".\n\n");
        }
}

static int in_window(const point *p, int cls) {
    const double bits = class_bits(p, cls);
    return p->kind == POINT_SQKV && bits >= DEFAULT_WINDOW_LO && bits <= DEFAULT_WINDOW_HI;
}

static int class_uses_zstd(int cls) { return cls == CLASS_V10_ZSTD || cls == CLASS_V11_ZSTD || cls == CLASS_PROPOSED; }

/* The lowest attention error among the window's SQKV settings of class cls. */
static double best_in_window(const point *points, size_t n, int q, int cls) {
    double best = INFINITY;
    for (size_t i = 0; i < n; i++)
        if (in_window(&points[i], cls) && points[i].attn_error[q] < best) best = points[i].attn_error[q];
    return best;
}

typedef struct candidate {
    size_t index;
    double score;
} candidate;

static int by_score(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    return (x->score > y->score) - (x->score < y->score);
}

void report_default(FILE *f, const dataset *sets, point *const *points, size_t n_points, size_t n_sets, int cls,
                    size_t max_rows) {
    candidate *c = malloc((n_points + 1) * sizeof *c);
    if (!c || n_sets > 16) {
        free(c);
        return;
    }
    double best[16][QUERY_KINDS];
    for (size_t s = 0; s < n_sets; s++)
        for (int q = 0; q < QUERY_KINDS; q++) best[s][q] = best_in_window(points[s], n_points, q, cls);
    size_t m = 0;
    for (size_t i = 0; i < n_points; i++) {
        int ok = 1;
        double log_sum = 0.0;
        for (size_t s = 0; s < n_sets && ok; s++) {
            ok = in_window(&points[s][i], cls);
            for (int q = 0; q < QUERY_KINDS && ok; q++) log_sum += log(points[s][i].attn_error[q] / best[s][q]);
        }
        if (ok) c[m++] = (candidate){i, exp(log_sum / (double)(n_sets * QUERY_KINDS))};
    }
    qsort(c, m, sizeof *c, by_score);
    fprintf(f, "SQKV settings of class %s with %.1f to %.1f bits per element on every dataset, ranked by the geometric mean, "
               "over the %zu datasets and both query sets, of the attention-output error divided by the lowest such "
               "error in the window (1.000 = the best in the window everywhere)%s.\n\n",
            CLASS_NAME[cls], DEFAULT_WINDOW_LO, DEFAULT_WINDOW_HI,
            n_sets, m > max_rows ? "; the first rows" : "");
    fprintf(f, "| rank | setting | score |");
    for (size_t s = 0; s < n_sets; s++) fprintf(f, " %s bits | err. random / key-like |", sets[s].name);
    fprintf(f, "\n|---|---|---|");
    for (size_t s = 0; s < n_sets; s++) fprintf(f, "---|---|");
    fprintf(f, "\n");
    for (size_t j = 0; j < m && j < max_rows; j++) {
        char label[128];
        point_label(&points[0][c[j].index], label, sizeof label);
        fprintf(f, "| %zu | %s | %.3f |", j + 1, label, c[j].score);
        for (size_t s = 0; s < n_sets; s++) {
            const point *p = &points[s][c[j].index];
            fprintf(f, " %.3f | %.4f / %.4f |", class_bits(p, cls), p->attn_error[QUERY_RANDOM], p->attn_error[QUERY_KEYLIKE]);
        }
        fprintf(f, "\n");
    }
    if (m) {
        char label[128];
        const size_t i = c[0].index;
        point_label(&points[0][i], label, sizeof label);
        fprintf(f, "\n**Best in this window: %s%s.** Where it stands on each dataset (front error = the lowest error "
                   "of any point of the same class, KIVI or Mustafar with no more bits):\n\n",
                label, class_uses_zstd(cls) ? " with zstd streams" : "");
        fprintf(f, "| dataset | query set | bits/element | attn. error | rank in window | best in window | front error at its bits | on front |\n");
        fprintf(f, "|---|---|---|---|---|---|---|---|\n");
        for (size_t s = 0; s < n_sets; s++)
            for (int q = 0; q < QUERY_KINDS; q++) {
                const point *p = &points[s][i];
                const double bits = class_bits(p, cls);
                size_t rank = 1;
                double front = INFINITY;
                for (size_t k = 0; k < n_points; k++) {
                    const point *o = &points[s][k];
                    if (in_window(o, cls) && o->attn_error[q] < p->attn_error[q]) rank++;
                    const double ob = class_bits(o, cls);
                    if (ob >= 0 && ob <= bits && o->attn_error[q] < front) front = o->attn_error[q];
                }
                fprintf(f, "| %s | %s | %.3f | %.4f | %zu | %.4f | %.4f | %s |\n", sets[s].name, QUERY_NAME[q], bits,
                        p->attn_error[q], rank, best[s][q], front, front >= p->attn_error[q] ? "yes" : "no");
            }
        fprintf(f, "\n");
    }
    free(c);
}
