/* mustafar.c: see mustafar.h. */
#include "mustafar.h"

#include <math.h>
#include <stdlib.h>

#include "tile_layout.h"

typedef struct ranked {
    float magnitude;
    uint32_t channel;
} ranked;

/* Larger magnitude first; among equal magnitudes the lower channel first. */
static int by_rank(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->magnitude != y->magnitude) return x->magnitude > y->magnitude ? -1 : 1;
    return x->channel < y->channel ? -1 : x->channel > y->channel;
}

void prune_rows(const float *in, float *out, uint64_t rows, uint32_t dim, double sparsity) {
    uint32_t keep = dim - (uint32_t)floor(sparsity * (double)dim);
    if (keep < 1) keep = 1;
    ranked order[1024];
    for (uint64_t r = 0; r < rows; r++) {
        const float *row = in + r * dim;
        float *dst = out + r * dim;
        for (uint32_t d = 0; d < dim; d++) {
            order[d].magnitude = fabsf(row[d]);
            order[d].channel = d;
            dst[d] = 0.0f;
        }
        if (keep < dim) qsort(order, dim, sizeof order[0], by_rank);
        for (uint32_t i = 0; i < keep && i < dim; i++)
            if (order[i].magnitude > 0.0f) dst[order[i].channel] = row[order[i].channel];
    }
}

uint64_t mustafar_bytes(const float *pruned, uint32_t heads, uint32_t tokens, uint32_t dim,
                        sqkv_tensor tensor) {
    const uint64_t tiles = sqkv_tiles_per_head(tensor, tokens, dim);
    uint64_t bytes = 0;
    for (uint32_t h = 0; h < heads; h++) {
        const float *head = pruned + (uint64_t)h * tokens * dim;
        for (uint64_t n = 0; n < tiles; n++) {
            const sqkv_tile_pos p = sqkv_tile_position(tensor, tokens, dim, n);
            uint32_t nnz = 0;
            for (uint32_t i = 0; i < p.valid; i++) {
                const uint64_t token = p.token + (uint64_t)i * p.token_step;
                const uint64_t channel = p.channel + (uint64_t)i * p.channel_step;
                nnz += head[token * dim + channel] != 0.0f;
            }
            bytes += 8u + 4u + 16u * ((nnz + 7u) / 8u);
        }
    }
    return bytes;
}
