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

/* Bits of p in a comparison class: 0 = the v1.0 library today (codec 0), 1 = with the zstd stream
 * codec, 2 = with the proposed additions too. -1 when p is not in the class. References are in all. */
static double class_bits(const point *p, int cls) {
    if (p->failed) return -1.0;
    if (p->kind == POINT_KIVI || p->kind == POINT_MUSTAFAR) return p->bits_per_element;
    if (p->kind == POINT_SQKV) return cls == 0 ? p->bits_per_element : p->bits_zstd;
    return cls == 2 ? p->bits_zstd : -1.0;
}

void report_fronts(point *points, size_t n) {
    double *bits = malloc((n + 1) * sizeof *bits), *err = malloc((n + 1) * sizeof *err);
    int *front = malloc((n + 1) * sizeof *front);
    size_t *index = malloc((n + 1) * sizeof *index);
    if (!bits || !err || !front || !index) goto done;
    for (int cls = 0; cls <= 2; cls += 2)
        for (int q = 0; q < QUERY_KINDS; q++) {
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                int *mark = cls == 0 ? &points[i].on_front[q] : &points[i].on_front_all[q];
                *mark = 0;
                if (class_bits(&points[i], cls) < 0) continue;
                bits[m] = class_bits(&points[i], cls);
                err[m] = points[i].attn_error[q];
                index[m++] = i;
            }
            pareto_front(bits, err, m, front);
            for (size_t j = 0; j < m; j++) {
                point *p = &points[index[j]];
                if (cls == 0) p->on_front[q] = front[j];
                else p->on_front_all[q] = front[j];
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
        char front[16] = "";
        if (p->on_front[QUERY_RANDOM]) strcat(front, "R");
        if (p->on_front[QUERY_KEYLIKE]) strcat(front, "K");
        if (p->on_front_all[QUERY_RANDOM]) strcat(front, " r");
        if (p->on_front_all[QUERY_KEYLIKE]) strcat(front, " k");
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
    if (i < 0) {
        fprintf(f, " none | | | no |");
        *dominated = 0;
        return;
    }
    const point *p = &points[i];
    const double bits = class_bits(p, cls);
    char label[128];
    point_label(p, label, sizeof label);
    *dominated = p->attn_error[q] <= ref->attn_error[q];
    *strict = *dominated && (p->attn_error[q] < ref->attn_error[q] || bits < ref->bits_per_element);
    fprintf(f, " %s%s | %.3f | %.4f | %s |", label, cls && p->bits_zstd < p->bits_per_element ? " +zstd" : "", bits,
            p->attn_error[q], *dominated ? "yes" : "**no**");
}

int report_targets(FILE *f, const dataset *sets, point *const *points, size_t n_points, size_t n_sets) {
    static const char *const CLASS_NAME[3] = {"v1.0 library (codec 0)", "v1.0 with zstd streams (codec 1)",
                                              "with the proposed additions"};
    int misses = 0;
    for (size_t s = 0; s < n_sets; s++)
        for (int q = 0; q < QUERY_KINDS; q++) {
            fprintf(f, "#### %s, %s\n\n", sets[s].name, QUERY_NAME[q]);
            fprintf(f, "| reference | bits/element | attn. error |");
            for (int cls = 0; cls < 3; cls++) fprintf(f, " best, %s | bits | error | no worse? |", CLASS_NAME[cls]);
            fprintf(f, "\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
            int all[3] = {1, 1, 1}, any_strict[3] = {0, 0, 0};
            for (size_t i = 0; i < n_points; i++) {
                const point *r = &points[s][i];
                if (!is_reference(r) || r->failed) continue;
                char label[128];
                point_label(r, label, sizeof label);
                fprintf(f, "| %s | %.3f | %.4f |", label, r->bits_per_element, r->attn_error[q]);
                for (int cls = 0; cls < 3; cls++) {
                    int dom = 0, strict = 0;
                    print_candidate(f, points[s], best_within(points[s], n_points, q, r->bits_per_element, cls), r, q,
                                    cls, &dom, &strict);
                    all[cls] &= dom;
                    any_strict[cls] |= strict;
                }
                fprintf(f, "\n");
            }
            fprintf(f, "\nTarget (each reference point matched by a setting with no more bits and no more error, one "
                       "strictly better):");
            for (int cls = 0; cls < 3; cls++)
                fprintf(f, "%s %s **%s**", cls ? ";" : "", CLASS_NAME[cls], all[cls] && any_strict[cls] ? "met" : "not met");
            fprintf(f, ".\n\n");
            misses += !(all[0] && any_strict[0]);
        }
    return misses;
}

static int in_window(const point *p, int cls) {
    const double bits = class_bits(p, cls);
    return p->kind == POINT_SQKV && bits >= DEFAULT_WINDOW_LO && bits <= DEFAULT_WINDOW_HI;
}

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
    fprintf(f, "SQKV settings with %.1f to %.1f bits per element (%s) on every dataset, ranked by the geometric mean, "
               "over the %zu datasets and both query sets, of the attention-output error divided by the lowest such "
               "error in the window (1.000 = the best in the window everywhere)%s.\n\n",
            DEFAULT_WINDOW_LO, DEFAULT_WINDOW_HI, cls ? "stored with zstd streams, codec 1" : "the library today, codec 0",
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
                label, cls ? " with zstd streams" : "");
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
