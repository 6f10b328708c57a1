/*
 * sweep.h: the settings sqkv_quality measures on every dataset, and their measurement.
 *
 * Kinds of point:
 * - SQKV: a setting of the v1.0 format, encoded and decoded by the library; bits from the real file.
 * - MUSTAFAR: Mustafar's fp16 format at the same pruning (mustafar.h).
 * - KIVI: KIVI's quantizer, group 32, no residual window (kivi.h).
 * - PROPOSED: a setting v1.0 cannot express, modelled by format_sim.h (finer parameter groups, or no
 *   bitmap when every element is kept); bits from the same stream rules.
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
    uint32_t group;       /* SQKV: 0 PER_HEAD, 64 PER_TILE; PROPOSED: elements per group; KIVI: 32 */
    int no_bitmap;        /* PROPOSED only */
    /* results */
    uint64_t bytes;
    double bits_per_element;
    double bits_zstd;     /* SQKV and PROPOSED: with codec 1 (zstd streams) where it helps; else = bits */
    double rel_l2_k, rel_l2_v;
    double attn_error[QUERY_KINDS], topk[QUERY_KINDS];
    int on_front[QUERY_KINDS];      /* among v1.0 library points and the references */
    int on_front_all[QUERY_KINDS];  /* the same with codec 1 and the proposed additions */
    int failed;
    char message[256];
} point;

/* Human-readable name of the setting, e.g. "SQKV s=0.70 b=2 sym head". */
void point_label(const point *p, char *buf, size_t cap);

/* The points of the full table (quick: a reduced sweep for testing). Returns the count; *out is
 * malloc'ed. */
size_t sweep_points(int quick, point **out);

/* Measures every point on d with `threads` threads. Returns 0, or -1 when a point failed (its message
 * says why). */
int sweep_run(const dataset *d, point *points, size_t n, int threads);

/* zstd level of the modelled codec 1 (spec/FORMAT.md §5.1). */
#define SWEEP_ZSTD_LEVEL 3

/* Self-checks that tie the models to the library on d: Mustafar's restore equals SQKV EXACT, and
 * format_sim reproduces the library's restored values, section bodies and file size for settings v1.0
 * can express. Returns 0, or -1 with a sentence in msg. */
int sweep_self_check(const dataset *d, char *msg, size_t msg_cap);

#endif
