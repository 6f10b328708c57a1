/*
 * roundtrip_fuzzer: encode, then decode, with fuzzer-chosen geometry, options, ancillary data and
 * tensor values; the decoded tensors are compared with an independent model of the spec:
 *
 *   - dense window (§8): exactly the input rounded to the element type E;
 *   - pruning (§14): per (head, token) the D - floor(sparsity * D) (at least 1) nonzero elements of
 *     largest |x|, the lower channel winning ties; every pruned element decodes to +0.0;
 *   - EXACT (§7.4, b = 16): every kept element decodes to its E value, bit for bit;
 *   - SYMMETRIC / ASYMMETRIC: every kept element decodes, bit for bit, to the level §7.4 computes from
 *     the parameters §14 chooses for its group, nearest to the value (ties to the lower level); and
 *     independently of §14's choices, within the quantizer's error bound (results/fuzz.md derives it):
 *       SYMMETRIC:  |x - x'| <= s_hi * (1 + 3(L-1)u) + (L+2)d,   s_hi = m/(L-1) * (1+u)(1+2^-52) + 2d
 *       ASYMMETRIC: |x - x'| <= max(s_hi/2, 2(L-1)u' s_hi + 2(L-1)d) + u''(|lo| + (L-1)s_hi) + 2d
 *     with m the group's largest |x|, lo its smallest value, L = 2^b, u the unit roundoff of E
 *     (2^-11 fp16, 2^-8 bf16), u' = u + 2^-51, u'' = u + 2^-52, d half the smallest E subnormal.
 * Also: the writer's input errors (NONFINITE_INPUT, RANGE_INPUT, INVALID_ARGUMENT) exactly when the
 * input calls for them; deterministic output (two writes and the callback agree byte for byte); a
 * too-small write buffer refused; the file verifies; tokens, fingerprint and metadata come back; head
 * subsets, fp32 and the other 16-bit output agree with the full decode; the Mustafar layout agrees.
 *
 * Input: parameter bytes, then a pool of bytes for the values (see parse_case).
 */
#include <math.h>

#include "fuzz_reader.h"
#include "utf8.h"

/* Elements per tensor (n_kv_heads * n_tokens * head_dim). Each element is pruned, quantized, decoded
 * and checked against the model, so a case costs about its size: with up to 4352 elements on every
 * case the harness ran about 270 cases a second under ASan + UBSan (about 400 even with the extra
 * decodes cut, see check_decodes), far too few for 10 million. Most cases are therefore small
 * (RT_SMALL_ELEMS: every option still applies; tokens alone can pass the 64-token section size and
 * stop off a multiple of 64, channels alone can pass 64, heads are left out as needed), and one case
 * in sixteen (mode bits 4-7 all set) gets RT_LARGE_ELEMS: more than 64 tokens with more than 32
 * channels, head_dim up to 130 with 16 tokens, or four heads of a 64-token split. */
#ifndef RT_SMALL_ELEMS
#define RT_SMALL_ELEMS 128u
#endif
#ifndef RT_LARGE_ELEMS
#define RT_LARGE_ELEMS 2176u
#endif
#define RT_MAX_ELEMS_PER_TENSOR RT_LARGE_ELEMS
#define RT_MAX_META 4

typedef struct rt_meta {
    uint8_t key[16], value[24];
    size_t key_size, value_size;
} rt_meta;

typedef struct rt_case {
    sqkv_geometry g;
    sqkv_writer_options o;
    sqkv_dtype in_dtype;
    int reverse_layers;
    int stream_output;       /* also write through sqkv_writer_stream_begin / add_layer / finish */
    int break_option;        /* 0: valid options; else which one to make invalid */
    int with_tokens;
    size_t fp_size;          /* 0: none */
    uint8_t fingerprint[64];
    int n_meta;
    rt_meta meta[RT_MAX_META];
    int value_mode;
    int exponent;            /* scale of generated values: 2^exponent */
    uint32_t zero_per_256;   /* share of zeros in generated values */
    uint64_t seed;
    fuzz_bytes pool;         /* raw value bytes */
} rt_case;

static uint64_t rt_rand(uint64_t *state) {
    *state += 0x9E3779B97F4A7C15ull;
    uint64_t z = *state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void parse_case(const uint8_t *data, size_t size, rt_case *c) {
    memset(c, 0, sizeof *c);
    fuzz_bytes in = {data, size, 0};
    const uint8_t mode = fuzz_u8(&in);
    c->g.value_dtype = (mode & 1) ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16;
    c->in_dtype = (sqkv_dtype)(1 + ((mode >> 1) & 3) % 3);
    c->reverse_layers = (mode >> 3) & 1;
    sqkv_writer_options_default(&c->o);
    static const struct {
        uint32_t bits;
        sqkv_quantizer q;
    } quant[8] = {{16, SQKV_QUANT_EXACT},     {2, SQKV_QUANT_SYMMETRIC},  {4, SQKV_QUANT_SYMMETRIC},
                  {8, SQKV_QUANT_SYMMETRIC},  {2, SQKV_QUANT_ASYMMETRIC}, {4, SQKV_QUANT_ASYMMETRIC},
                  {8, SQKV_QUANT_ASYMMETRIC}, {16, SQKV_QUANT_EXACT}};
    const uint8_t qsel = fuzz_u8(&in);
    c->o.payload_bits = quant[qsel & 7].bits;
    c->o.quantizer = quant[qsel & 7].q;
    c->o.scales = c->o.quantizer == SQKV_QUANT_EXACT ? SQKV_SCALE_NONE
                  : (qsel & 8)                       ? SQKV_SCALE_PER_TILE
                                                     : SQKV_SCALE_PER_HEAD;
    c->o.prune = (qsel & 16) ? SQKV_PRUNE_NONE : SQKV_PRUNE_MAGNITUDE;
    c->break_option = (qsel >> 5) == 7 ? 1 + fuzz_u8(&in) % 9 : 0;
    c->o.sparsity = fuzz_u8(&in) / 256.0;
    const uint8_t k = fuzz_u8(&in);
    c->o.offset_interval_log2 = k < 200 ? k % 6 : k % 21;

    c->g.n_layers = fuzz_range(&in, 1, 2);
    c->g.n_kv_heads = fuzz_range(&in, 1, 4);
    const uint8_t dim = fuzz_u8(&in);
    c->g.head_dim = dim < 128 ? 1 + dim % 16 : 1 + dim % 130; /* mostly small, sometimes past 64 and 128 */
    c->g.n_tokens = fuzz_range(&in, 1, 300);
    const uint32_t max_elems = (mode >> 4) == 15 ? RT_LARGE_ELEMS : RT_SMALL_ELEMS;
    while ((uint64_t)c->g.n_kv_heads * c->g.n_tokens * c->g.head_dim > max_elems) {
        if (c->g.n_tokens > 1)
            c->g.n_tokens = c->g.n_tokens / 2 + (c->g.n_tokens & 1); /* keeps odd counts reachable */
        else if (c->g.n_kv_heads > 1)
            c->g.n_kv_heads--; /* head_dim 130 x 4 heads is over a small budget even at 1 token */
        else
            c->g.head_dim = max_elems;
    }
    const uint8_t w = fuzz_u8(&in);
    c->g.dense_window = w < 64 ? 0 : w < 128 ? c->g.n_tokens : fuzz_range(&in, 0, c->g.n_tokens);
    c->g.source_dtype = c->in_dtype;
    c->o.heads_per_section = fuzz_range(&in, 1, c->g.n_kv_heads);
    const uint8_t tps = fuzz_u8(&in);
    c->o.tokens_per_section = tps < 128 ? 0 : 64u * (1 + tps % 4);
    /* zstd layer (§5.1) on one case in four, low levels: the decoder must undo it exactly. */
    c->o.zstd_level = (tps & 3) == 3 ? 1u + (tps >> 2) % 5 : 0;
    c->stream_output = (tps >> 4) & 1;

    const uint8_t extras = fuzz_u8(&in);
    c->with_tokens = extras & 1;
    if (extras & 2) {
        c->fp_size = (extras & 4) ? 0 : 1 + fuzz_u8(&in) % sizeof c->fingerprint; /* 0: an invalid empty one */
        for (size_t i = 0; i < c->fp_size; i++) c->fingerprint[i] = fuzz_u8(&in);
        if (c->fp_size == 0) c->fp_size = (size_t)-1; /* marks "set an empty fingerprint" */
    }
    c->n_meta = (extras >> 3) % (RT_MAX_META + 1);
    for (int m = 0; m < c->n_meta; m++) {
        const uint8_t kind = fuzz_u8(&in);
        rt_meta *e = &c->meta[m];
        e->key_size = (kind & 0x80) ? (size_t)(fuzz_u8(&in) % sizeof e->key) : (size_t)(1 + fuzz_u8(&in) % 3);
        e->value_size = fuzz_u8(&in) % sizeof e->value;
        for (size_t i = 0; i < e->key_size; i++) {
            const uint8_t b = fuzz_u8(&in);
            e->key[i] = (kind & 0x40) ? b : (uint8_t)('a' + b % 4); /* small alphabet: duplicate keys */
        }
        for (size_t i = 0; i < e->value_size; i++) {
            const uint8_t b = fuzz_u8(&in);
            e->value[i] = (kind & 0x20) ? b : (uint8_t)(' ' + b % 95);
        }
    }
    const uint8_t vm = fuzz_u8(&in);
    c->value_mode = vm & 3;
    c->exponent = (int)fuzz_u8(&in) % 48 - 32;
    c->zero_per_256 = (vm >> 2) * 4;
    c->seed = fuzz_u32(&in);
    /* Format 1.1 options (spec/FORMAT.md §4.1): straddling widths, half-tile scales, keep-all. Read
     * last before the value pool, so that inputs made before them still mean the same case. */
    const uint8_t v11 = fuzz_u8(&in);
    if (c->o.quantizer != SQKV_QUANT_EXACT) {
        static const uint32_t WIDTHS[8] = {0, 1, 3, 5, 6, 7, 0, 0}; /* 0: keep the width chosen above */
        if (WIDTHS[v11 & 7]) c->o.payload_bits = WIDTHS[v11 & 7];
        if ((v11 & 8) && c->o.scales == SQKV_SCALE_PER_TILE) c->o.scales = SQKV_SCALE_PER_HALF_TILE;
        if (v11 & 16) c->o.prune = SQKV_PRUNE_KEEP_ALL;
    }
    c->pool.data = in.data + in.pos;
    c->pool.size = fuzz_remaining(&in);
}

/* One input element of dtype in_dtype, stored at dst. */
static void make_value(rt_case *c, uint64_t *rng, void *dst) {
    const size_t n = fuzz_dtype_size(c->in_dtype);
    uint8_t raw[4] = {0, 0, 0, 0};
    double v = 0;
    switch (c->value_mode) {
    case 0: /* raw bits from the pool, cycling */
        for (size_t i = 0; i < n; i++) {
            if (c->pool.size == 0) break;
            if (c->pool.pos >= c->pool.size) c->pool.pos = 0;
            raw[i] = c->pool.data[c->pool.pos++];
        }
        memcpy(dst, raw, n);
        return;
    case 1: { /* small signed integers from the pool, scaled */
        int8_t b = 0;
        if (c->pool.size) {
            if (c->pool.pos >= c->pool.size) c->pool.pos = 0;
            b = (int8_t)c->pool.data[c->pool.pos++];
        }
        v = ldexp((double)b, c->exponent);
        break;
    }
    case 2: { /* roughly normal, with a share of zeros */
        const uint64_t r = rt_rand(rng);
        if ((r & 255) < c->zero_per_256) break;
        double sum = 0;
        for (int i = 0; i < 4; i++) sum += (double)((r >> (8 + 14 * i)) & 0x3FFF) / 16384.0;
        v = ldexp(sum - 2.0, c->exponent + 4);
        break;
    }
    default: { /* few distinct magnitudes: many ties */
        const uint64_t r = rt_rand(rng);
        if ((r & 255) < c->zero_per_256) break;
        v = ldexp((double)(1 + ((r >> 8) & 3)), c->exponent + 4) * ((r >> 12) & 1 ? -1 : 1);
        break;
    }
    }
    if (c->in_dtype == SQKV_DTYPE_FP32) {
        float f = (float)v;
        memcpy(dst, &f, 4);
    } else {
        uint16_t h = sqkv_double_to_e(v, c->in_dtype);
        memcpy(dst, &h, 2);
    }
}

/* The input element as binary64 (exact: every input dtype widens exactly). */
static double input_value(const void *p, size_t i, sqkv_dtype dt) {
    if (dt == SQKV_DTYPE_FP32) {
        float f;
        memcpy(&f, (const uint8_t *)p + 4 * i, 4);
        return (double)f;
    }
    return sqkv_e_to_double(fuzz_load16(p, i), dt);
}

/* What add_layer must answer for these tensors (§ writer contract in sqkv.h). RANGE_INPUT is certain
 * when a value rounds to infinity in E, and allowed (not required) above E's largest finite value. */
typedef struct input_verdict {
    int nonfinite, range_certain, range_possible;
} input_verdict;

static void judge_input(const void *t, size_t count, sqkv_dtype in, sqkv_dtype e, input_verdict *v) {
    const double max_finite = sqkv_e_to_double(sqkv_e_max_finite(e), e);
    for (size_t i = 0; i < count; i++) {
        const double x = input_value(t, i, in);
        if (!isfinite(x)) {
            v->nonfinite = 1;
        } else if (!sqkv_e_is_finite(sqkv_double_to_e(x, e), e)) {
            v->range_certain = 1;
        } else if (fabs(x) > max_finite) {
            v->range_possible = 1;
        }
    }
}

static void check_input_error(sqkv_error err, const input_verdict *v, uint32_t layer) {
    fuzz_check_error_known(err);
    if (v->nonfinite)
        FUZZ_CHECK(err == SQKV_ERR_NONFINITE_INPUT || (err == SQKV_ERR_RANGE_INPUT && v->range_certain),
                   "layer %u with NaN/inf input gave %s", layer, sqkv_error_name(err));
    else if (v->range_certain)
        FUZZ_CHECK(err == SQKV_ERR_RANGE_INPUT, "layer %u with out-of-range input gave %s", layer,
                   sqkv_error_name(err));
    else if (v->range_possible)
        FUZZ_CHECK(err == SQKV_OK || err == SQKV_ERR_RANGE_INPUT, "layer %u above E's maximum gave %s", layer,
                   sqkv_error_name(err));
    else
        FUZZ_CHECK(err == SQKV_OK, "layer %u with valid input gave %s", layer, sqkv_error_name(err));
}

/* ---- the independent model of §7.4 / §14 --------------------------------------------------- */

static double unit_roundoff(sqkv_dtype e) { return e == SQKV_DTYPE_BF16 ? 0x1p-8 : 0x1p-11; }
static double half_min_subnormal(sqkv_dtype e) { return e == SQKV_DTYPE_BF16 ? 0x1p-134 : 0x1p-25; }

static double e_value(uint16_t h, sqkv_dtype e) { return sqkv_e_to_double(h, e); }

/* §7.4 level of code c. */
static uint16_t model_level(sqkv_quantizer q, uint32_t L, sqkv_dtype e, uint16_t s, uint16_t z, uint32_t c) {
    if (q == SQKV_QUANT_SYMMETRIC) return sqkv_double_to_e((double)((int32_t)(2 * c + 1) - (int32_t)L) * e_value(s, e), e);
    volatile double product = (double)c * e_value(s, e); /* one rounding in the addition only */
    return sqkv_double_to_e(product + e_value(z, e), e);
}

/* §14 parameters of a group with kept values vals[0..n), n >= 1. */
static void model_params(sqkv_quantizer q, uint32_t L, sqkv_dtype e, const uint16_t *vals, size_t n, uint16_t *s,
                         uint16_t *z) {
    double range;
    *z = 0;
    if (q == SQKV_QUANT_SYMMETRIC) {
        uint16_t m = 0;
        for (size_t i = 0; i < n; i++)
            if ((vals[i] & 0x7FFFu) > m) m = vals[i] & 0x7FFFu;
        range = e_value(m, e);
    } else {
        double lo = e_value(vals[0], e), hi = lo;
        *z = vals[0];
        for (size_t i = 1; i < n; i++) {
            const double v = e_value(vals[i], e);
            if (v < lo) {
                lo = v;
                *z = vals[i];
            }
            if (v > hi) hi = v;
        }
        range = hi - lo;
    }
    *s = sqkv_double_to_e(range / (double)(L - 1), e);
    /* §14: "if s is 0 while m > 0, the smallest positive E value" (applied to ASYMMETRIC as well: see
     * results/fuzz.md, spec issue). */
    if (range > 0 && (*s & 0x7FFFu) == 0) *s = 1;
    /* "while (L-1)*s overflows, the next smaller E value": the top level is the largest in magnitude. */
    while (*s != 0 && !sqkv_e_is_finite(model_level(q, L, e, *s, *z, L - 1), e)) *s = (uint16_t)(*s - 1);
}

/* The decoded value §7.4 gives x: the nearest level, the lower one on a tie. */
static uint16_t model_nearest(const uint16_t *levels, const double *dl, uint32_t L, double x) {
    uint32_t lo = 0, hi = L;
    while (lo < hi) { /* first level >= x */
        const uint32_t mid = (lo + hi) / 2;
        if (dl[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == L) return levels[L - 1];
    if (lo == 0) return levels[0];
    return (dl[lo] - x < x - dl[lo - 1]) ? levels[lo] : levels[lo - 1];
}

/* ---- checking one decoded (layer, tensor) -------------------------------------------------- */

typedef struct rt_check {
    const rt_case *c;
    const void *input;     /* [H][T][D] in in_dtype */
    const uint16_t *out;   /* [H][T][D] decoded, E */
    uint8_t *kept;         /* [H][T][D] model's kept mask */
    uint16_t *e_in;        /* [H][T][D] input rounded to E */
    uint32_t layer;
    int tensor;
} rt_check;

static size_t at(const sqkv_geometry *g, uint32_t h, uint32_t t, uint32_t d) {
    return ((size_t)h * g->n_tokens + t) * g->head_dim + d;
}

static int cmp_u32(const void *a, const void *b) {
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void model_pruning(rt_check *k) {
    const sqkv_geometry *g = &k->c->g;
    const uint32_t D = g->head_dim, S = g->n_tokens - g->dense_window;
    uint32_t keep = D;
    if (k->c->o.prune == SQKV_PRUNE_KEEP_ALL) { /* §7.6: every element, zeros too */
        for (uint32_t h = 0; h < g->n_kv_heads; h++) memset(k->kept + at(g, h, 0, 0), 1, (size_t)S * D);
        return;
    }
    if (k->c->o.prune == SQKV_PRUNE_MAGNITUDE) {
        const double pruned = floor(k->c->o.sparsity * (double)D);
        keep = D - (uint32_t)pruned;
        if (keep < 1) keep = 1;
    }
    for (uint32_t h = 0; h < g->n_kv_heads; h++) {
        for (uint32_t t = 0; t < S; t++) {
            /* Keep the `keep` largest magnitudes, the lower channel first among equal ones: sort the
             * nonzero elements by (magnitude descending, channel ascending) as one integer key. */
            uint8_t *row = k->kept + at(g, h, t, 0);
            const uint16_t *vals = k->e_in + at(g, h, t, 0);
            uint32_t keys[SQKV_MAX_HEAD_DIM];
            uint32_t n = 0;
            memset(row, 0, D);
            for (uint32_t d = 0; d < D; d++)
                if (vals[d] & 0x7FFFu) keys[n++] = (uint32_t)(0x7FFFu - (vals[d] & 0x7FFFu)) << 16 | d;
            qsort(keys, n, sizeof keys[0], cmp_u32);
            for (uint32_t i = 0; i < n && i < keep; i++) row[keys[i] & 0xFFFFu] = 1;
        }
    }
}

/* Checks the kept elements of one parameter group: tokens [t0, t1), channels [d0, d1) of head h. */
static void check_group(rt_check *k, uint32_t h, uint32_t t0, uint32_t t1, uint32_t d0, uint32_t d1) {
    const rt_case *c = k->c;
    const sqkv_geometry *g = &c->g;
    const sqkv_dtype e = g->value_dtype;
    static uint16_t gv[RT_MAX_ELEMS_PER_TENSOR]; /* a group is at most one tensor */
    size_t n = 0;
    for (uint32_t t = t0; t < t1; t++)
        for (uint32_t d = d0; d < d1; d++)
            if (k->kept[at(g, h, t, d)]) gv[n++] = k->e_in[at(g, h, t, d)];
    if (n == 0) return;
    const sqkv_quantizer q = c->o.quantizer;
    const uint32_t L = 1u << c->o.payload_bits;
    uint16_t s, z;
    model_params(q, L, e, gv, n, &s, &z);
    uint16_t levels[256];
    double dl[256];
    for (uint32_t code = 0; code < L; code++) {
        levels[code] = model_level(q, L, e, s, z, code);
        dl[code] = e_value(levels[code], e);
    }
    /* The error bound, from the group's values alone. */
    const double u = unit_roundoff(e), dmin = half_min_subnormal(e);
    double m = 0, lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        const double v = e_value(gv[i], e);
        if (fabs(v) > m) m = fabs(v);
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    double bound;
    if (q == SQKV_QUANT_SYMMETRIC) {
        const double s_hi = m / (L - 1) * (1 + u) * (1 + 0x1p-52) + 2 * dmin;
        bound = s_hi * (1 + 3 * (L - 1) * u) + (L + 2) * dmin;
    } else {
        const double s_hi = (hi - lo) / (L - 1) * (1 + u) * (1 + 0x1p-51) + 2 * dmin;
        const double reach = 2 * (L - 1) * (u + 0x1p-51) * s_hi + 2 * (L - 1) * dmin;
        bound = fmax(s_hi / 2, reach) + (u + 0x1p-52) * (fabs(lo) + (L - 1) * s_hi) + 2 * dmin;
    }
    for (uint32_t t = t0; t < t1; t++) {
        for (uint32_t d = d0; d < d1; d++) {
            const size_t i = at(g, h, t, d);
            if (!k->kept[i]) continue;
            const double x = e_value(k->e_in[i], e), got = e_value(k->out[i], e);
            FUZZ_CHECK(fabs(x - got) <= bound,
                       "layer %u tensor %d head %u token %u channel %u: |%a - %a| > bound %a (b=%u q=%d)", k->layer,
                       k->tensor, h, t, d, x, got, bound, c->o.payload_bits, (int)q);
            const uint16_t expect = model_nearest(levels, dl, L, x);
            FUZZ_CHECK(k->out[i] == expect,
                       "layer %u tensor %d head %u token %u channel %u: decoded 0x%04x, spec gives 0x%04x "
                       "(x=%a s=0x%04x z=0x%04x b=%u q=%d)",
                       k->layer, k->tensor, h, t, d, k->out[i], expect, x, s, z, c->o.payload_bits, (int)q);
        }
    }
}

static void check_tensor(rt_check *k) {
    const rt_case *c = k->c;
    const sqkv_geometry *g = &c->g;
    const uint32_t H = g->n_kv_heads, T = g->n_tokens, D = g->head_dim, S = T - g->dense_window;
    const sqkv_dtype e = g->value_dtype;
    for (size_t i = 0; i < (size_t)H * T * D; i++)
        k->e_in[i] = sqkv_double_to_e(input_value(k->input, i, c->in_dtype), e);
    model_pruning(k);
    for (uint32_t h = 0; h < H; h++) {
        for (uint32_t t = 0; t < T; t++) {
            for (uint32_t d = 0; d < D; d++) {
                const size_t i = at(g, h, t, d);
                if (t >= S) {
                    FUZZ_CHECK(k->out[i] == k->e_in[i], "dense window: layer %u tensor %d head %u token %u ch %u: "
                               "0x%04x, input 0x%04x", k->layer, k->tensor, h, t, d, k->out[i], k->e_in[i]);
                } else if (!k->kept[i]) {
                    FUZZ_CHECK(k->out[i] == 0, "pruned element decoded to 0x%04x: layer %u tensor %d head %u "
                               "token %u ch %u (input 0x%04x)", k->out[i], k->layer, k->tensor, h, t, d, k->e_in[i]);
                } else if (c->o.quantizer == SQKV_QUANT_EXACT) {
                    FUZZ_CHECK(k->out[i] == k->e_in[i], "EXACT kept element: layer %u tensor %d head %u token %u "
                               "ch %u: 0x%04x, input 0x%04x", k->layer, k->tensor, h, t, d, k->out[i], k->e_in[i]);
                }
            }
        }
        if (c->o.quantizer == SQKV_QUANT_EXACT || S == 0) continue;
        if (c->o.scales == SQKV_SCALE_PER_HEAD) {
            const uint32_t step = c->o.tokens_per_section ? c->o.tokens_per_section : S;
            for (uint32_t t0 = 0; t0 < S; t0 += step) check_group(k, h, t0, t0 + step < S ? t0 + step : S, 0, D);
        } else {
            /* A group is a tile (64 elements) or, with PER_HALF_TILE, either half of one (§7.4): tiles
             * start at multiples of 64 tokens (keys) or channels (values), so halves at multiples of 32. */
            const uint32_t span = c->o.scales == SQKV_SCALE_PER_HALF_TILE ? 32u : 64u;
            if (k->tensor == SQKV_TENSOR_K) {
                for (uint32_t t0 = 0; t0 < S; t0 += span)
                    for (uint32_t d = 0; d < D; d++) check_group(k, h, t0, t0 + span < S ? t0 + span : S, d, d + 1);
            } else {
                for (uint32_t t = 0; t < S; t++)
                    for (uint32_t d0 = 0; d0 < D; d0 += span)
                        check_group(k, h, t, t + 1, d0, d0 + span < D ? d0 + span : D);
            }
        }
    }
}

/* ---- the round trip ------------------------------------------------------------------------ */

typedef struct byte_sink {
    uint8_t *data;
    size_t size, cap;
} byte_sink;

static int sink_write(void *ctx, const void *data, size_t size) {
    byte_sink *s = (byte_sink *)ctx;
    FUZZ_CHECK(size <= s->cap - s->size, "write callback got %zu bytes past the announced file size", size);
    if (size) memcpy(s->data + s->size, data, size);
    s->size += size;
    return 0;
}

/* An invalid option or geometry, by number (1..9). */
static void break_one(rt_case *c) {
    switch (c->break_option) {
    case 1: c->o.payload_bits = 9; break;
    case 2: c->o.quantizer = SQKV_QUANT_EXACT, c->o.payload_bits = 4, c->o.scales = SQKV_SCALE_NONE; break;
    case 3: c->o.quantizer = SQKV_QUANT_SYMMETRIC, c->o.payload_bits = 4, c->o.scales = SQKV_SCALE_NONE; break;
    case 4: c->o.offset_interval_log2 = 21; break;
    case 5: c->o.heads_per_section = 0; break;
    case 6: c->o.tokens_per_section = 65; break;
    case 7: c->o.prune = SQKV_PRUNE_MAGNITUDE, c->o.sparsity = (c->seed & 1) ? 1.0 : -0.25; break;
    case 8: c->o.prune = SQKV_PRUNE_MAGNITUDE, c->o.sparsity = NAN; break;
    default:
        if (c->seed & 1)
            c->g.value_dtype = SQKV_DTYPE_FP32;
        else
            c->g.dense_window = c->g.n_tokens + 1;
        break;
    }
}

static void expect_sticky_writer(sqkv_writer *w, sqkv_error err) {
    uint64_t size;
    FUZZ_CHECK(sqkv_writer_file_size(w, &size) == err, "writer error %s not sticky", sqkv_error_name(err));
    FUZZ_CHECK(sqkv_writer_error_detail(w) != NULL, "NULL writer error detail");
}

static int meta_key_cmp(const void *a, const void *b) {
    const rt_meta *x = (const rt_meta *)a, *y = (const rt_meta *)b;
    const size_t n = x->key_size < y->key_size ? x->key_size : y->key_size;
    const int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_size > y->key_size) - (x->key_size < y->key_size);
}

/* Writer calls before the layers. Returns 0 when an expected input error ended the case. */
static int add_ancillary(sqkv_writer *w, rt_case *c, const int32_t *tokens, rt_meta *accepted, int *n_accepted) {
    if (c->with_tokens) FUZZ_CHECK(sqkv_writer_set_tokens(w, tokens, c->g.n_tokens) == SQKV_OK, "set_tokens failed");
    if (c->fp_size == (size_t)-1) {
        sqkv_error err = sqkv_writer_set_fingerprint(w, c->fingerprint, 0);
        FUZZ_CHECK(err == SQKV_ERR_INVALID_ARGUMENT, "empty fingerprint gave %s", sqkv_error_name(err));
        expect_sticky_writer(w, err);
        return 0;
    }
    if (c->fp_size)
        FUZZ_CHECK(sqkv_writer_set_fingerprint(w, c->fingerprint, c->fp_size) == SQKV_OK, "set_fingerprint failed");
    *n_accepted = 0;
    for (int m = 0; m < c->n_meta; m++) {
        const rt_meta *e = &c->meta[m];
        int valid = e->key_size >= 1 && sqkv_utf8_valid(e->key, e->key_size) && sqkv_utf8_valid(e->value, e->value_size);
        for (int j = 0; j < *n_accepted && valid; j++)
            if (meta_key_cmp(&accepted[j], e) == 0) valid = 0;
        sqkv_error err = sqkv_writer_add_metadata(w, (const char *)e->key, e->key_size, (const char *)e->value,
                                                  e->value_size);
        fuzz_check_error_known(err);
        if (valid) {
            FUZZ_CHECK(err == SQKV_OK, "valid metadata entry %d refused: %s", m, sqkv_error_name(err));
            accepted[(*n_accepted)++] = *e;
        } else {
            FUZZ_CHECK(err == SQKV_ERR_INVALID_ARGUMENT || err == SQKV_ERR_METADATA,
                       "invalid metadata entry %d (key %zu bytes) gave %s", m, e->key_size, sqkv_error_name(err));
            expect_sticky_writer(w, err);
            return 0;
        }
    }
    return 1;
}

/* Checks the reader's view of everything but the tensors. */
static void check_file_view(sqkv_reader *r, const rt_case *c, const uint8_t *file, const int32_t *tokens,
                            rt_meta *accepted, int n_accepted) {
    const sqkv_geometry *g = &c->g;
    sqkv_geometry got;
    FUZZ_CHECK(sqkv_reader_geometry(r, &got) == SQKV_OK, "geometry failed");
    FUZZ_CHECK(got.n_layers == g->n_layers && got.n_kv_heads == g->n_kv_heads && got.head_dim == g->head_dim &&
                   got.n_tokens == g->n_tokens && got.dense_window == g->dense_window &&
                   got.value_dtype == g->value_dtype && got.source_dtype == c->in_dtype,
               "geometry does not round-trip");
    size_t count = 0;
    FUZZ_CHECK(sqkv_reader_tokens(r, NULL, 0, &count) == SQKV_OK, "tokens count failed");
    FUZZ_CHECK(count == (c->with_tokens ? g->n_tokens : 0), "%zu tokens", count);
    if (count) {
        int32_t *back = (int32_t *)malloc(count * 4);
        FUZZ_CHECK(back, "out of memory");
        FUZZ_CHECK(sqkv_reader_tokens(r, back, count, &count) == SQKV_OK, "tokens failed");
        FUZZ_CHECK(memcmp(back, tokens, count * 4) == 0, "tokens do not round-trip");
        free(back);
    }
    uint8_t fp[SQKV_MAX_FINGERPRINT];
    size_t fp_size = 0;
    FUZZ_CHECK(sqkv_reader_fingerprint(r, fp, sizeof fp, &fp_size) == SQKV_OK, "fingerprint failed");
    FUZZ_CHECK(fp_size == c->fp_size && memcmp(fp, c->fingerprint, fp_size) == 0, "fingerprint does not round-trip");
    size_t n_meta = 0;
    FUZZ_CHECK(sqkv_reader_metadata_count(r, &n_meta) == SQKV_OK, "metadata_count failed");
    FUZZ_CHECK(n_meta == (size_t)n_accepted, "%zu metadata entries, %d added", n_meta, n_accepted);
    qsort(accepted, (size_t)n_accepted, sizeof *accepted, meta_key_cmp);
    for (size_t i = 0; i < n_meta; i++) {
        const char *key, *value;
        size_t ks, vs;
        FUZZ_CHECK(sqkv_reader_metadata_entry(r, i, &key, &ks, &value, &vs) == SQKV_OK, "metadata_entry failed");
        FUZZ_CHECK(ks == accepted[i].key_size && memcmp(key, accepted[i].key, ks) == 0 &&
                       vs == accepted[i].value_size && (vs == 0 || memcmp(value, accepted[i].value, vs) == 0),
                   "metadata entry %zu does not round-trip (or is not sorted)", i);
    }
    /* §14 layout: the grid of tensor sections, and each SPARSE header's payload parameters. */
    const uint32_t S = g->n_tokens - g->dense_window, hps = c->o.heads_per_section;
    const uint32_t tps = c->o.tokens_per_section ? c->o.tokens_per_section : S;
    const uint64_t head_groups = (g->n_kv_heads + hps - 1) / hps;
    const uint64_t per_group = (S ? (S + tps - 1) / tps : 0) + (g->dense_window ? 1 : 0);
    size_t n_sections = 0, n_tensor_sections = 0;
    FUZZ_CHECK(sqkv_reader_section_count(r, &n_sections) == SQKV_OK, "section_count failed");
    for (size_t i = 0; i < n_sections; i++) {
        sqkv_section_info info;
        FUZZ_CHECK(sqkv_reader_section_info(r, i, &info) == SQKV_OK, "section_info failed");
        if (info.kind != SQKV_KIND_SPARSE && info.kind != SQKV_KIND_DENSE) continue;
        n_tensor_sections++;
        const uint32_t want_heads = g->n_kv_heads - info.head_start < hps ? g->n_kv_heads - info.head_start : hps;
        FUZZ_CHECK(info.head_start % hps == 0 && info.head_count == want_heads, "section %zu heads [%u, +%u)", i,
                   info.head_start, info.head_count);
        if (info.kind == SQKV_KIND_DENSE) {
            FUZZ_CHECK(info.token_start == S && info.token_count == g->dense_window, "DENSE section %zu tokens", i);
            continue;
        }
        FUZZ_CHECK(info.token_start % tps == 0 && info.token_count == (S - info.token_start < tps ? S - info.token_start : tps),
                   "SPARSE section %zu tokens [%u, +%u)", i, info.token_start, info.token_count);
        const uint8_t *h = file + info.offset;
        FUZZ_CHECK(h[SQKV_SEC_PAYLOAD_BITS] == c->o.payload_bits && h[SQKV_SEC_QUANTIZER] == (uint8_t)c->o.quantizer &&
                       h[SQKV_SEC_SCALE_GRANULARITY] == (uint8_t)c->o.scales &&
                       h[SQKV_SEC_OFFSET_INTERVAL_LOG2] ==
                           (c->o.prune == SQKV_PRUNE_KEEP_ALL ? 0u : c->o.offset_interval_log2) &&
                       sqkv_load_u32(h + SQKV_SEC_FLAGS) ==
                           (c->o.prune == SQKV_PRUNE_KEEP_ALL ? SQKV_SECTION_FLAG_ALL_KEPT : 0u),
                   "SPARSE section %zu payload parameters differ from the options", i);
    }
    FUZZ_CHECK(n_tensor_sections == (size_t)(g->n_layers * 2 * head_groups * per_group),
               "%zu tensor sections, expected %llu", n_tensor_sections,
               (unsigned long long)(g->n_layers * 2 * head_groups * per_group));
}

static sqkv_reader *open_file(const uint8_t *file, size_t size) {
    sqkv_reader *r = NULL;
    FUZZ_CHECK(sqkv_reader_create(NULL, 0, &r) == SQKV_OK, "reader_create failed");
    sqkv_error err = sqkv_reader_open_memory(r, file, size);
    FUZZ_CHECK(err == SQKV_OK, "the writer's file does not open: %s (%s)", sqkv_error_name(err),
               sqkv_reader_error_detail(r));
    return r;
}

static void check_decodes(const rt_case *c, const uint8_t *file, size_t size, void *const *inputs) {
    const sqkv_geometry *g = &c->g;
    const sqkv_dtype e = g->value_dtype;
    const size_t elems = (size_t)g->n_kv_heads * g->n_tokens * g->head_dim;
    uint16_t *out = (uint16_t *)malloc(elems * 2);
    void *other = malloc(elems * 4);
    uint8_t *kept = (uint8_t *)malloc(elems);
    uint16_t *e_in = (uint16_t *)malloc(elems * 2);
    FUZZ_CHECK(out && other && kept && e_in, "out of memory");
    uint64_t rng = c->seed ^ 0x5EED;
    sqkv_reader *r = open_file(file, size);
    const uint32_t extra_checks_at = (uint32_t)(rt_rand(&rng) % (2 * g->n_layers));
    for (uint32_t layer = 0; layer < g->n_layers; layer++) {
        for (int t = 0; t < 2; t++) {
            sqkv_error err = sqkv_reader_decode(r, layer, (sqkv_tensor)t, 0, g->n_kv_heads, e, out, elems * 2);
            FUZZ_CHECK(err == SQKV_OK, "decode layer %u tensor %d: %s (%s)", layer, t, sqkv_error_name(err),
                       sqkv_reader_error_detail(r));
            rt_check k = {c, inputs[2 * layer + t], out, kept, e_in, layer, t};
            check_tensor(&k);
            /* The other output types, head subsets and the Mustafar layout decode the tensor four more
             * times; for speed they are checked on one (layer, tensor) per case, chosen at random. */
            if ((uint32_t)(2 * layer + t) != extra_checks_at) continue;

            err = sqkv_reader_decode(r, layer, (sqkv_tensor)t, 0, g->n_kv_heads, SQKV_DTYPE_FP32, other, elems * 4);
            FUZZ_CHECK(err == SQKV_OK, "fp32 decode: %s", sqkv_error_name(err));
            fuzz_expect_conversion(out, e, other, SQKV_DTYPE_FP32, elems, 1);

            /* A head subset is the same slice of the full decode. */
            const uint32_t hs = (uint32_t)(rt_rand(&rng) % g->n_kv_heads);
            const uint32_t hc = 1 + (uint32_t)(rt_rand(&rng) % (g->n_kv_heads - hs));
            const size_t per_head = (size_t)g->n_tokens * g->head_dim;
            err = sqkv_reader_decode(r, layer, (sqkv_tensor)t, hs, hc, e, other, hc * per_head * 2);
            FUZZ_CHECK(err == SQKV_OK, "subset decode: %s", sqkv_error_name(err));
            FUZZ_CHECK(memcmp(other, out + hs * per_head, hc * per_head * 2) == 0, "heads [%u, +%u) differ", hs, hc);

            /* The other 16-bit type (may be refused, stickily: own reader). */
            sqkv_reader *r2 = open_file(file, size);
            const int overflow = fuzz_expect_conversion(out, e, other, fuzz_other16(e), elems, 0);
            err = sqkv_reader_decode(r2, layer, (sqkv_tensor)t, 0, g->n_kv_heads, fuzz_other16(e), other, elems * 2);
            FUZZ_CHECK(err == (overflow ? SQKV_ERR_VALUE : SQKV_OK), "other 16-bit decode gave %s (overflow %d)",
                       sqkv_error_name(err), overflow);
            if (err == SQKV_OK) fuzz_expect_conversion(out, e, other, fuzz_other16(e), elems, 1);
            sqkv_reader_destroy(r2);

            /* Mustafar layout of one head (may be refused, stickily: own reader). */
            r2 = open_file(file, size);
            fuzz_reader_result res;
            memset(&res, 0, sizeof res);
            const uint32_t head = (uint32_t)(rt_rand(&rng) % g->n_kv_heads);
            FUZZ_CHECK(fuzz_check_mustafar(r2, &res, g, layer, (sqkv_tensor)t, head, out + head * per_head, 0) &&
                           res.first_err == SQKV_OK,
                       "mustafar layout failed: %s", sqkv_error_name(res.first_err));
            sqkv_reader_destroy(r2);
        }
    }
    sqkv_reader_destroy(r);
    free(out);
    free(other);
    free(kept);
    free(e_in);
}

/* The streaming writer (sqkv_writer_stream_*): the same inputs, layers in order, give exactly the
 * bytes of write_buffer, and stream_bytes counts them. */
static void check_stream_writer(const rt_case *c, void *const *inputs, const uint8_t *file, size_t size,
                                const int32_t *tokens) {
    sqkv_writer *w = NULL;
    FUZZ_CHECK(sqkv_writer_create(&c->g, &c->o, &w) == SQKV_OK, "second writer_create failed");
    rt_meta accepted[RT_MAX_META];
    int n_accepted = 0;
    rt_case copy = *c;
    FUZZ_CHECK(add_ancillary(w, &copy, tokens, accepted, &n_accepted), "ancillary failed the second time");
    uint8_t *streamed = (uint8_t *)malloc(size);
    FUZZ_CHECK(streamed, "out of memory");
    byte_sink sink = {streamed, 0, size};
    sqkv_error err = sqkv_writer_stream_begin(w, c->in_dtype, sink_write, &sink);
    FUZZ_CHECK(err == SQKV_OK, "stream_begin: %s (%s)", sqkv_error_name(err), sqkv_writer_error_detail(w));
    uint64_t file_size = 0;
    FUZZ_CHECK(sqkv_writer_file_size(w, &file_size) == SQKV_ERR_STATE, "file_size after stream_begin is not STATE");
    sqkv_writer_destroy(w); /* the STATE error is sticky: start over */
    FUZZ_CHECK(sqkv_writer_create(&c->g, &c->o, &w) == SQKV_OK, "third writer_create failed");
    FUZZ_CHECK(add_ancillary(w, &copy, tokens, accepted, &n_accepted), "ancillary failed the third time");
    sink.size = 0;
    FUZZ_CHECK(sqkv_writer_stream_begin(w, c->in_dtype, sink_write, &sink) == SQKV_OK, "stream_begin failed");
    for (uint32_t layer = 0; layer < c->g.n_layers; layer++) {
        err = sqkv_writer_add_layer(w, layer, c->in_dtype, inputs[2 * layer], inputs[2 * layer + 1]);
        FUZZ_CHECK(err == SQKV_OK, "streamed add_layer %u: %s", layer, sqkv_error_name(err));
    }
    err = sqkv_writer_stream_finish(w);
    FUZZ_CHECK(err == SQKV_OK, "stream_finish: %s (%s)", sqkv_error_name(err), sqkv_writer_error_detail(w));
    uint64_t counted = 0;
    FUZZ_CHECK(sqkv_writer_stream_bytes(w, &counted) == SQKV_OK && counted == sink.size, "stream_bytes %llu, wrote %zu",
               (unsigned long long)counted, sink.size);
    FUZZ_CHECK(sink.size == size && memcmp(streamed, file, size) == 0,
               "the streaming writer's %zu bytes differ from write_buffer's %zu", sink.size, size);
    sqkv_writer_destroy(w);
    free(streamed);
}

static void round_trip(rt_case *c) {
    const sqkv_geometry *g = &c->g;
    if (c->break_option) break_one(c);
    sqkv_writer *w = (sqkv_writer *)(uintptr_t)1;
    sqkv_error err = sqkv_writer_create(&c->g, &c->o, &w);
    fuzz_check_error_known(err);
    if (c->break_option) {
        FUZZ_CHECK(err == SQKV_ERR_INVALID_ARGUMENT || (c->break_option == 9 && err == SQKV_ERR_LIMIT),
                   "invalid option %d gave %s", c->break_option, sqkv_error_name(err));
        FUZZ_CHECK(w == NULL, "writer_create failed but left *out set");
        return;
    }
    FUZZ_CHECK(err == SQKV_OK && w, "writer_create refused valid options: %s", sqkv_error_name(err));

    uint64_t rng = c->seed;
    const size_t elems = (size_t)g->n_kv_heads * g->n_tokens * g->head_dim, esize = fuzz_dtype_size(c->in_dtype);
    int32_t *tokens = (int32_t *)malloc(sizeof(int32_t) * g->n_tokens);
    void *inputs[2 * 3] = {0};
    FUZZ_CHECK(tokens, "out of memory");
    for (uint32_t i = 0; i < g->n_tokens; i++) tokens[i] = (int32_t)(uint32_t)rt_rand(&rng);
    rt_meta accepted[RT_MAX_META];
    int n_accepted = 0;
    int ok = add_ancillary(w, c, tokens, accepted, &n_accepted);
    for (uint32_t n = 0; ok && n < g->n_layers; n++) {
        const uint32_t layer = c->reverse_layers ? g->n_layers - 1 - n : n;
        input_verdict verdict = {0, 0, 0};
        for (int t = 0; t < 2; t++) {
            uint8_t *x = (uint8_t *)malloc(elems * esize);
            FUZZ_CHECK(x, "out of memory");
            for (size_t i = 0; i < elems; i++) make_value(c, &rng, x + i * esize);
            judge_input(x, elems, c->in_dtype, g->value_dtype, &verdict);
            inputs[2 * layer + t] = x;
        }
        err = sqkv_writer_add_layer(w, layer, c->in_dtype, inputs[2 * layer], inputs[2 * layer + 1]);
        check_input_error(err, &verdict, layer);
        if (err != SQKV_OK) {
            expect_sticky_writer(w, err);
            ok = 0;
        }
    }
    if (ok) {
        uint64_t size = 0;
        FUZZ_CHECK(sqkv_writer_file_size(w, &size) == SQKV_OK && size > 0 && size < ((uint64_t)1 << 30),
                   "file_size failed");
        uint8_t *file = (uint8_t *)malloc((size_t)size), *again = (uint8_t *)malloc((size_t)size);
        FUZZ_CHECK(file && again, "out of memory");
        size_t written = 0;
        err = sqkv_writer_write_buffer(w, file, (size_t)size, &written);
        FUZZ_CHECK(err == SQKV_OK && written == size, "write_buffer: %s, %zu of %llu bytes", sqkv_error_name(err),
                   written, (unsigned long long)size);
        FUZZ_CHECK(sqkv_writer_write_buffer(w, again, (size_t)size, &written) == SQKV_OK && written == size &&
                       memcmp(file, again, (size_t)size) == 0,
                   "a second write gave other bytes");
        byte_sink sink = {again, 0, (size_t)size};
        memset(again, 0, (size_t)size);
        FUZZ_CHECK(sqkv_writer_write_callback(w, sink_write, &sink) == SQKV_OK && sink.size == size &&
                       memcmp(file, again, (size_t)size) == 0,
                   "write_callback gave other bytes");
        /* Last: a buffer one byte short, exactly that big. */
        uint8_t *short_buf = (uint8_t *)malloc((size_t)size - 1);
        FUZZ_CHECK(short_buf, "out of memory");
        err = sqkv_writer_write_buffer(w, short_buf, (size_t)size - 1, &written);
        FUZZ_CHECK(err == SQKV_ERR_BUFFER_TOO_SMALL, "write into %llu bytes gave %s", (unsigned long long)size - 1,
                   sqkv_error_name(err));
        free(short_buf);

        if (c->stream_output) check_stream_writer(c, inputs, file, (size_t)size, tokens);

        sqkv_reader *r = open_file(file, (size_t)size);
        err = sqkv_reader_verify(r);
        FUZZ_CHECK(err == SQKV_OK, "the writer's file does not verify: %s (%s)", sqkv_error_name(err),
                   sqkv_reader_error_detail(r));
        check_file_view(r, c, file, tokens, accepted, n_accepted);
        sqkv_reader_destroy(r);
        check_decodes(c, file, (size_t)size, inputs);
        free(file);
        free(again);
    }
    sqkv_writer_destroy(w);
    for (int i = 0; i < 6; i++) free(inputs[i]);
    free(tokens);
}

/* SQKV_FUZZ_DESCRIBE=1 prints each case: for reading a crash input. */
static void describe(const rt_case *c) {
    static int on = -1;
    if (on < 0) on = getenv("SQKV_FUZZ_DESCRIBE") != NULL;
    if (!on) return;
    fprintf(stderr,
            "case: L=%u H=%u D=%u T=%u W=%u E=%d in=%d | prune=%d sparsity=%g bits=%u q=%d scales=%d k=%u hps=%u "
            "tps=%u zstd=%u stream=%d | break=%d tokens=%d fp=%lld meta=%d | values mode=%d exp=%d zeros=%u/256 seed=%llu pool=%zu\n",
            c->g.n_layers, c->g.n_kv_heads, c->g.head_dim, c->g.n_tokens, c->g.dense_window, (int)c->g.value_dtype,
            (int)c->in_dtype, (int)c->o.prune, c->o.sparsity, c->o.payload_bits, (int)c->o.quantizer, (int)c->o.scales,
            c->o.offset_interval_log2, c->o.heads_per_section, c->o.tokens_per_section, c->o.zstd_level,
            c->stream_output, c->break_option,
            c->with_tokens, c->fp_size == (size_t)-1 ? -1LL : (long long)c->fp_size, c->n_meta, c->value_mode, c->exponent, c->zero_per_256,
            (unsigned long long)c->seed, c->pool.size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rt_case c;
    parse_case(data, size, &c);
    describe(&c);
    round_trip(&c);
    return 0;
}
