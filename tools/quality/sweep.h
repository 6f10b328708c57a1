/*
 * sweep.h: the settings sqkv_quality measures on every dataset, and their measurement.
 *
 * Kinds of point:
 * - SQKV: a setting the library can write (format 1.0, or 1.1 with its required features), encoded and
 *   decoded by the library; bits from the real file, once with codec 0 and once with the zstd layer
 *   (codec 1, sqkv_writer_options.zstd_level), whose decode must restore the same values.
 * - MUSTAFAR: Mustafar's fp16 format at the same pruning (mustafar.h).
 * - KIVI: KIVI's quantizer, group 32, no residual window (kivi.h).
 * - PROPOSED: a setting the library cannot write (16-element parameter groups), modelled by
 *   format_sim.h; bits from the same stream rules.
 */
#ifndef SQKV_TOOLS_SWEEP_H
#define SQKV_TOOLS_SWEEP_H

#include <stddef.h>
#include <stdint.h>

#include "datasets.h"
#include "sqkv.h"

typedef enum point_kind { POINT_SQKV, POINT_MUSTAFAR, POINT_KIVI, POINT_PROPOSED } point_kind;

typedef struct point {
    point_kind kind;
    double sparsity;
    uint32_t bits;
    sqkv_quantizer quantizer;
    uint32_t group;       /* SQKV, PROPOSED: elements per parameter group, 0 = PER_HEAD, 64 = PER_TILE,
                             32 = PER_HALF_TILE, 16 = proposed only; KIVI: 32 */
    int keep_all;         /* every element kept, no bitmaps (SQKV_PRUNE_KEEP_ALL); sparsity 0 */
    int range_search;     /* SQKV: the writer's range search (sqkv_writer_options.range_search) */
    /* results */
    uint64_t bytes;
    double bits_per_element;
    double bits_zstd;     /* SQKV and PROPOSED: with codec 1 (zstd streams) where it helps; else = bits */
    double rel_l2_k, rel_l2_v;
    double attn_error[QUERY_KINDS], topk[QUERY_KINDS];
    int on_front[QUERY_KINDS];      /* among v1.0 library points (codec 0) and the references */
    int on_front_v11[QUERY_KINDS];  /* among every library point with the zstd layer, and the references */
    int on_front_all[QUERY_KINDS];  /* the same with the proposed settings too */
    int failed;
    char message[256];
} point;

/* Whether a library point is expressible in format 1.0 (no 1.1 required feature). */
int point_is_v10(const point *p);

/* Human-readable name of the setting, e.g. "SQKV s=0.70 b=2 sym head". */
void point_label(const point *p, char *buf, size_t cap);

/* The points of the full table (quick: a reduced sweep for testing). Returns the count; *out is
 * malloc'ed. */
size_t sweep_points(int quick, point **out);

/* Measures every point on d with `threads` threads. Returns 0, or -1 when a point failed (its message
 * says why). */
int sweep_run(const dataset *d, point *points, size_t n, int threads);

/* zstd level of codec 1 (spec/FORMAT.md §5.1): the library's zstd_level, and format_sim's model. */
#define SWEEP_ZSTD_LEVEL 3

/* Self-checks that tie the models to the library on d: Mustafar's restore equals SQKV EXACT, and
 * format_sim reproduces the library's restored values, codec-0 section bodies and file sizes (codec 0
 * and zstd) for the settings listed by sweep_self_check_list. Returns 0, or -1 with a sentence in msg. */
int sweep_self_check(const dataset *d, char *msg, size_t msg_cap);
/* The settings format_sim is checked on, as one line of text for the report. */
void sweep_self_check_list(char *buf, size_t cap);

#endif
