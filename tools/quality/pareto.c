/* pareto.c: see pareto.h. Quadratic: the tables have a few hundred points. */
#include "pareto.h"

void pareto_front(const double *bits, const double *error, size_t n, int *on_front) {
    for (size_t i = 0; i < n; i++) {
        on_front[i] = 1;
        for (size_t j = 0; j < n && on_front[i]; j++) {
            const int no_worse = bits[j] <= bits[i] && error[j] <= error[i];
            const int better = bits[j] < bits[i] || error[j] < error[i];
            if (j != i && no_worse && better) on_front[i] = 0;
        }
    }
}
