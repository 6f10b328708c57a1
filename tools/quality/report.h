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

/* Marks on_front for both query kinds, among v1.0 SQKV, Mustafar and KIVI points (proposed ones
 * excluded, so that the front is what the format can do today). */
void report_fronts(point *points, size_t n);

void report_data_table(FILE *f, const dataset *sets, size_t n_sets);
void report_points_table(FILE *f, const dataset *d, const point *points, size_t n);
/* Returns the number of (dataset, query kind) pairs where v1.0 SQKV misses the target. */
int report_targets(FILE *f, const dataset *sets, point *const *points, size_t n_points, size_t n_sets);
/* Ranks the SQKV settings inside the window for class cls (0: codec 0, the library today; 1: with zstd
 * streams) and shows where the best stands; at most max_rows rows of ranking. */
void report_default(FILE *f, const dataset *sets, point *const *points, size_t n_points, size_t n_sets, int cls,
                    size_t max_rows);

#endif
