/* rng.c: see rng.h. */
#include "tools/common/rng.h"

#include <math.h>

double sqt_rng_gaussian(sqt_rng *r) {
    for (;;) {
        double u = 2.0 * sqt_rng_uniform(r) - 1.0, v = 2.0 * sqt_rng_uniform(r) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0) return u * sqrt(-2.0 * log(s) / s);
    }
}
