/*
 * pareto.h: the (bits per element, error) front of a set of measured points.
 */
#ifndef SQKV_TOOLS_PARETO_H
#define SQKV_TOOLS_PARETO_H

#include <stddef.h>

/* on_front[i] = 1 when no other point has bits <= and error <= with one of them strictly smaller.
 * Points with equal bits and error are all on the front. */
void pareto_front(const double *bits, const double *error, size_t n, int *on_front);

#endif
