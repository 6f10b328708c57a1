/*
 * report.h: the Markdown tables of sqkv_quality: data statistics, every point of every dataset, the
 * Pareto fronts, the target checks against KIVI and Mustafar, and the choice of the default.
 */
#ifndef SQKV_TOOLS_REPORT_H
#define SQKV_TOOLS_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "datasets.h"
#include "sweep.h"

/* The bits-per-element window in which the default is chosen. */
#define DEFAULT_WINDOW_LO 1.5
#define DEFAULT_WINDOW_HI 2.0

/* Comparison classes: which SQKV points count, and with which size. The references (KIVI, Mustafar)
 * are in every class. */
enum {
    CLASS_V10 = 0,      /* format 1.0 settings, codec 0: the library's default output */
    CLASS_V10_ZSTD = 1, /* format 1.0 settings with the zstd layer (codec 1) */
    CLASS_V11 = 2,      /* every library setting (1.0 and 1.1), codec 0 */
    CLASS_V11_ZSTD = 3, /* every library setting with the zstd layer */
    CLASS_PROPOSED = 4, /* the same plus the modelled proposed settings */
    N_CLASSES = 5
};
extern const char *const CLASS_NAME[N_CLASSES];

/* Bits per element of p in class cls; -1 when p is not in it. */
double class_bits(const point *p, int cls);

/* Marks on_front (CLASS_V10), on_front_v11 (CLASS_V11_ZSTD) and on_front_all (CLASS_PROPOSED) for both
 * query kinds. */
void report_fronts(point *points, size_t n);

void report_data_table(FILE *f, const dataset *sets, size_t n_sets);
void report_points_table(FILE *f, const dataset *d, const point *points, size_t n);
/* The target tables of every (dataset, query kind) pair; misses[cls] receives the number of pairs
 * where class cls misses the target (classes CLASS_V10, CLASS_V10_ZSTD, CLASS_V11_ZSTD, CLASS_PROPOSED). */
void report_targets(FILE *f, const dataset *sets, point *const *points, size_t n_points, size_t n_sets,
                    int misses[N_CLASSES]);
/* Ranks the SQKV settings inside the window for class cls and shows where the best stands; at most
 * max_rows rows of ranking. */
void report_default(FILE *f, const dataset *sets, point *const *points, size_t n_points, size_t n_sets, int cls,
                    size_t max_rows);

#endif
