/*
 * fuzz_reader.h: drives a reader over untrusted bytes through every public query and decode, and checks
 * what the spec promises about the results (the oracle), so that a harness finds silently wrong data
 * and not only crashes:
 *   - every error is a documented one; errors are sticky (header comment of sqkv.h);
 *   - decoded values are finite (§7.4, §7.5, §8, §11);
 *   - decoding is deterministic, and the fp32 / other-16-bit outputs are the exact conversions (§11)
 *     of the element-type output;
 *   - the Mustafar layout describes the same elements as the dense decode;
 *   - metadata pointers lie inside the file and obey §10.3's length rules;
 *   - a file that verifies decodes everywhere, and a file whose every section decoded verifies.
 */
#ifndef SQKV_FUZZ_READER_H
#define SQKV_FUZZ_READER_H

#include "float16.h"
#include "fuzz_common.h"
#include "tile_layout.h"

/* Work one input may cause, so that a large claimed geometry cannot make one execution slow. */
typedef struct fuzz_budget {
    uint64_t output_bytes;   /* summed over decode calls */
    uint32_t mustafar_heads; /* heads whose Mustafar layout is checked */
} fuzz_budget;

static inline void fuzz_budget_default(fuzz_budget *b) {
    b->output_bytes = 64u << 20;
    b->mustafar_heads = 16;
}

typedef struct fuzz_reader_result {
    sqkv_error open_err;
    sqkv_error first_err;   /* first failing call after open, SQKV_OK if none */
    int everything_decoded; /* every query and every (layer, tensor, all heads) decode ran and passed */
    int has_unknown_kind;
} fuzz_reader_result;

static inline uint16_t fuzz_load16(const void *p, size_t i) {
    uint16_t v;
    memcpy(&v, (const uint8_t *)p + 2 * i, 2);
    return v;
}

/* The other 16-bit type than e. */
static inline sqkv_dtype fuzz_other16(sqkv_dtype e) { return e == SQKV_DTYPE_FP16 ? SQKV_DTYPE_BF16 : SQKV_DTYPE_FP16; }

/* Checks out (dtype dt, count elements) against the element-type output ref. Returns 1 when some value
 * of ref cannot be represented in dt (bf16 -> fp16 overflow), which §11 lets the decoder refuse. */
static inline int fuzz_expect_conversion(const void *ref, sqkv_dtype e, const void *out, sqkv_dtype dt, size_t count,
                                         int compare) {
    int overflow = 0;
    for (size_t i = 0; i < count; i++) {
        double v = sqkv_e_to_double(fuzz_load16(ref, i), e);
        if (dt == SQKV_DTYPE_FP32) {
            float expect = (float)v, got;
            memcpy(&got, (const uint8_t *)out + 4 * i, 4);
            if (compare)
                FUZZ_CHECK(memcmp(&expect, &got, 4) == 0, "fp32 output %zu: got %a, element type gives %a", i,
                           (double)got, v);
        } else {
            uint16_t expect = sqkv_double_to_e(v, dt);
            if (!sqkv_e_is_finite(expect, dt)) {
                overflow = 1;
                continue;
            }
            if (compare)
                FUZZ_CHECK(fuzz_load16(out, i) == expect, "16-bit output %zu: got 0x%04x, expected 0x%04x", i,
                           fuzz_load16(out, i), expect);
        }
    }
    return overflow;
}

/* Records err as the result of a call; returns 1 when it failed. A failure must be sticky: the next
 * call (a cheap query) returns the same error. */
static inline int fuzz_note(sqkv_reader *r, fuzz_reader_result *res, sqkv_error err, const char *what) {
    fuzz_check_error_known(err);
    if (err == SQKV_OK) return 0;
    FUZZ_CHECK(sqkv_reader_error_detail(r) != NULL, "NULL error detail after %s", what);
    if (res->first_err == SQKV_OK) res->first_err = err;
    sqkv_geometry g;
    sqkv_error again = sqkv_reader_geometry(r, &g);
    FUZZ_CHECK(again == err, "error not sticky: %s gave %s, then geometry gave %s", what, sqkv_error_name(err),
               sqkv_error_name(again));
    return 1;
}

/* Checks the Mustafar layout of one head against the element-type dense decode of that head
 * (dense: [n_tokens, head_dim] E values). Returns 0 when the call failed (result recorded). */
static inline int fuzz_check_mustafar(sqkv_reader *r, fuzz_reader_result *res, const sqkv_geometry *g, uint32_t layer,
                                      sqkv_tensor tensor, uint32_t head, const uint16_t *dense, int split_unaligned) {
    const uint32_t S = g->n_tokens - g->dense_window, D = g->head_dim;
    sqkv_mustafar_sizes sizes;
    sqkv_error err = sqkv_reader_mustafar_sizes(r, layer, tensor, head, &sizes);
    if (S == 0 || split_unaligned) {
        FUZZ_CHECK(err == SQKV_ERR_UNSUPPORTED, "mustafar_sizes with S=%u, unaligned split %d gave %s", S,
                   split_unaligned, sqkv_error_name(err));
        return 1; /* the caller stops here: the refusal may be sticky */
    }
    if (fuzz_note(r, res, err, "mustafar_sizes")) return 0;
    const uint64_t n_tiles = sqkv_tiles_per_head(tensor, S, D);
    FUZZ_CHECK(sizes.n_tiles == n_tiles, "mustafar n_tiles %llu, expected %llu", (unsigned long long)sizes.n_tiles,
               (unsigned long long)n_tiles);
    FUZZ_CHECK(sizes.value_count >= 8 && sizes.value_count <= 64 * n_tiles + 8,
               "mustafar value_count %llu for %llu tiles", (unsigned long long)sizes.value_count,
               (unsigned long long)n_tiles);
    int64_t *bitmaps = (int64_t *)malloc(8 * n_tiles);
    int32_t *accum = (int32_t *)malloc(4 * (n_tiles + 1));
    uint16_t *values = (uint16_t *)malloc(2 * sizes.value_count);
    FUZZ_CHECK(bitmaps && accum && values, "out of memory");
    err = sqkv_reader_decode_mustafar(r, layer, tensor, head, bitmaps, accum, values, &sizes);
    int ok = !fuzz_note(r, res, err, "decode_mustafar");
    if (ok) {
        FUZZ_CHECK(accum[0] == 0, "accum_counts[0] = %d", accum[0]);
        for (uint64_t n = 0; n < n_tiles; n++) {
            const uint64_t bits = (uint64_t)bitmaps[n];
            const sqkv_tile_pos p = sqkv_tile_position(tensor, S, D, n);
            FUZZ_CHECK((bits & ~sqkv_valid_mask(p.valid)) == 0, "tile %llu: padding bit set",
                       (unsigned long long)n);
            const int nnz = __builtin_popcountll(bits);
            FUZZ_CHECK(accum[n + 1] - accum[n] == ((nnz + 7) & ~7) / 2, "tile %llu: accum step %d for %d kept",
                       (unsigned long long)n, accum[n + 1] - accum[n], nnz);
            const uint16_t *tile_values = values + 2 * (uint64_t)accum[n];
            int k = 0;
            for (uint32_t i = 0; i < 64; i++) {
                if (i >= p.valid) break;
                const uint32_t token = p.token + i * p.token_step, channel = p.channel + i * p.channel_step;
                const uint16_t from_dense = dense[(uint64_t)token * D + channel];
                if (bits >> (63 - i) & 1) {
                    FUZZ_CHECK(tile_values[k] == from_dense, "tile %llu elem %u: mustafar 0x%04x, dense 0x%04x",
                               (unsigned long long)n, i, tile_values[k], from_dense);
                    k++;
                } else {
                    FUZZ_CHECK(from_dense == 0, "tile %llu elem %u: pruned in mustafar, dense 0x%04x",
                               (unsigned long long)n, i, from_dense);
                }
            }
            for (int j = nnz; j < ((nnz + 7) & ~7); j++)
                FUZZ_CHECK(tile_values[j] == 0, "tile %llu: value padding not zero", (unsigned long long)n);
        }
        FUZZ_CHECK(sizes.value_count == 2 * (uint64_t)accum[n_tiles] + 8, "value_count %llu, accum end %d",
                   (unsigned long long)sizes.value_count, accum[n_tiles]);
        for (uint64_t j = 2 * (uint64_t)accum[n_tiles]; j < sizes.value_count; j++)
            FUZZ_CHECK(values[j] == 0, "mustafar tail slack not zero");
    }
    free(bitmaps);
    free(accum);
    free(values);
    return ok;
}

/* Queries and decodes everything reachable from an opened reader, checking each result. */
static inline void fuzz_drive_open_reader(sqkv_reader *r, const uint8_t *data, size_t size, fuzz_budget *budget,
                                          fuzz_reader_result *res) {
    res->everything_decoded = 0;
    sqkv_geometry g;
    if (fuzz_note(r, res, sqkv_reader_geometry(r, &g), "geometry")) return;
    FUZZ_CHECK(g.n_layers >= 1 && g.n_layers <= SQKV_MAX_LAYERS && g.n_kv_heads >= 1 &&
                   g.n_kv_heads <= SQKV_MAX_HEADS && g.head_dim >= 1 && g.head_dim <= SQKV_MAX_HEAD_DIM &&
                   g.n_tokens >= 1 && g.n_tokens <= SQKV_MAX_TOKENS && g.dense_window <= g.n_tokens,
               "accepted geometry out of range: L=%u H=%u D=%u T=%u W=%u", g.n_layers, g.n_kv_heads, g.head_dim,
               g.n_tokens, g.dense_window);
    FUZZ_CHECK(g.value_dtype == SQKV_DTYPE_FP16 || g.value_dtype == SQKV_DTYPE_BF16, "value dtype %d",
               (int)g.value_dtype);
    uint32_t major = 0, minor = 0;
    if (fuzz_note(r, res, sqkv_reader_version(r, &major, &minor), "version")) return;
    FUZZ_CHECK(major == 1, "accepted major version %u", major);

    /* Section list: file order, contiguous, INDEX last, inside the file. */
    size_t n_sections = 0;
    if (fuzz_note(r, res, sqkv_reader_section_count(r, &n_sections), "section_count")) return;
    FUZZ_CHECK(n_sections >= 1 && n_sections <= SQKV_MAX_SECTIONS, "%zu sections", n_sections);
    uint64_t expect_offset = sqkv_load_u32(data + SQKV_HDR_HEADER_SIZE);
    for (size_t i = 0; i < n_sections; i++) {
        sqkv_section_info info;
        if (fuzz_note(r, res, sqkv_reader_section_info(r, i, &info), "section_info")) return;
        FUZZ_CHECK(info.offset == expect_offset, "section %zu at %llu, expected %llu", i,
                   (unsigned long long)info.offset, (unsigned long long)expect_offset);
        FUZZ_CHECK(info.stored_size <= size && info.offset + sqkv_section_extent(info.stored_size) <= size,
                   "section %zu extends past the file", i);
        expect_offset = info.offset + sqkv_section_extent(info.stored_size);
        /* The last section is an INDEX; earlier ones may be too (superseded by an append, §9.1). */
        if (i + 1 == n_sections) FUZZ_CHECK(info.kind == SQKV_KIND_INDEX, "last section is kind 0x%04x", info.kind);
        if (info.kind != SQKV_KIND_SPARSE && info.kind != SQKV_KIND_DENSE && info.kind != SQKV_KIND_INDEX &&
            info.kind != SQKV_KIND_TOKENS && info.kind != SQKV_KIND_FINGERPRINT && info.kind != SQKV_KIND_METADATA) {
            FUZZ_CHECK(info.kind & SQKV_KIND_ANCILLARY_BIT, "accepted unknown critical kind 0x%04x", info.kind);
            res->has_unknown_kind = 1;
        }
        if (info.kind == SQKV_KIND_SPARSE || info.kind == SQKV_KIND_DENSE)
            FUZZ_CHECK(info.layer < g.n_layers && info.tensor <= 1 && info.head_count >= 1 &&
                           info.head_start + (uint64_t)info.head_count <= g.n_kv_heads && info.token_count >= 1 &&
                           info.token_start + (uint64_t)info.token_count <= g.n_tokens,
                       "accepted tensor section %zu outside the geometry", i);
    }
    /* §9: the INDEX body ends with the tail, which ends the file. */
    FUZZ_CHECK(expect_offset == size, "sections end at %llu, file is %zu", (unsigned long long)expect_offset, size);
    sqkv_section_info past;
    sqkv_error past_err = sqkv_reader_section_info(r, n_sections, &past);
    FUZZ_CHECK(past_err == SQKV_ERR_INVALID_ARGUMENT, "section_info past the end gave %s", sqkv_error_name(past_err));
    if (fuzz_note(r, res, sqkv_reader_geometry(r, &g), "geometry after a bad argument")) return;

    /* Ancillary sections, two-phase. */
    size_t count = 0;
    if (fuzz_note(r, res, sqkv_reader_tokens(r, NULL, 0, &count), "tokens count")) return;
    FUZZ_CHECK(count == 0 || count == g.n_tokens, "%zu token ids for %u tokens", count, g.n_tokens);
    if (count) {
        int32_t *tokens = (int32_t *)malloc(count * sizeof *tokens);
        FUZZ_CHECK(tokens, "out of memory");
        size_t got = 0;
        sqkv_error err = sqkv_reader_tokens(r, tokens, count, &got);
        free(tokens);
        if (fuzz_note(r, res, err, "tokens")) return;
        FUZZ_CHECK(got == count, "tokens gave %zu after announcing %zu", got, count);
    }
    size_t fp_size = 0;
    if (fuzz_note(r, res, sqkv_reader_fingerprint(r, NULL, 0, &fp_size), "fingerprint size")) return;
    FUZZ_CHECK(fp_size <= SQKV_MAX_FINGERPRINT, "fingerprint of %zu bytes", fp_size);
    if (fp_size) {
        uint8_t fp[SQKV_MAX_FINGERPRINT];
        size_t got = 0;
        if (fuzz_note(r, res, sqkv_reader_fingerprint(r, fp, fp_size, &got), "fingerprint")) return;
        FUZZ_CHECK(got == fp_size, "fingerprint gave %zu after announcing %zu", got, fp_size);
    }
    size_t n_meta = 0;
    if (fuzz_note(r, res, sqkv_reader_metadata_count(r, &n_meta), "metadata_count")) return;
    FUZZ_CHECK(n_meta <= SQKV_MAX_METADATA_ENTRIES, "%zu metadata entries", n_meta);
    const char *prev_key = NULL;
    size_t prev_key_size = 0;
    for (size_t i = 0; i < n_meta; i++) {
        const char *key, *value;
        size_t key_size, value_size;
        if (fuzz_note(r, res, sqkv_reader_metadata_entry(r, i, &key, &key_size, &value, &value_size),
                      "metadata_entry"))
            return;
        /* Into the file's bytes, or (a compressed METADATA body, codec 1) into the reader's own copy:
         * either way every byte must be readable, which ASan checks. */
        const char *lo = (const char *)data, *hi = (const char *)data + size;
        if (key >= lo && key < hi)
            FUZZ_CHECK(key_size <= (size_t)(hi - key), "metadata entry %zu key runs past the file", i);
        if (value >= lo && value < hi)
            FUZZ_CHECK(value_size <= (size_t)(hi - value), "metadata entry %zu value runs past the file", i);
        FUZZ_CHECK(key != NULL && (value != NULL || value_size == 0), "metadata entry %zu: NULL pointer", i);
        volatile char sink = 0;
        for (size_t j = 0; j < key_size; j++) sink = (char)(sink ^ key[j]);
        for (size_t j = 0; j < value_size; j++) sink = (char)(sink ^ value[j]);
        FUZZ_CHECK(key_size >= 1 && key_size <= SQKV_MAX_METADATA_KEY && value_size <= SQKV_MAX_METADATA_VALUE,
                   "metadata entry %zu: key %zu bytes, value %zu bytes", i, key_size, value_size);
        if (prev_key) {
            size_t common = prev_key_size < key_size ? prev_key_size : key_size;
            int c = memcmp(prev_key, key, common);
            FUZZ_CHECK(c < 0 || (c == 0 && prev_key_size < key_size), "metadata keys not ascending at %zu", i);
        }
        prev_key = key;
        prev_key_size = key_size;
    }

    /* Tensors: every (layer, tensor) with all heads, in E, fp32 and the other 16-bit type. */
    const sqkv_dtype e = g.value_dtype;
    const uint64_t per_tensor = sqkv_dense_size(g.n_kv_heads, g.n_tokens, g.head_dim, SQKV_DTYPE_FP32);
    int complete = 1;
    for (uint32_t layer = 0; layer < g.n_layers; layer++) {
        for (int t = 0; t < 2; t++) {
            const sqkv_tensor tensor = (sqkv_tensor)t;
            if (per_tensor == 0 || per_tensor > FUZZ_MAX_OUTPUT || per_tensor * 2 > budget->output_bytes) {
                complete = 0;
                continue;
            }
            budget->output_bytes -= per_tensor * 2;
            const size_t elems = (size_t)(per_tensor / 4);
            uint16_t *ref = (uint16_t *)malloc(elems * 2);
            void *out = malloc(elems * 4);
            FUZZ_CHECK(ref && out, "out of memory");
            int refused_conversion = 0;
            sqkv_error err = sqkv_reader_decode(r, layer, tensor, 0, g.n_kv_heads, e, ref, elems * 2);
            if (!fuzz_note(r, res, err, "decode")) {
                long bad = fuzz_find_nonfinite(ref, elems, e);
                FUZZ_CHECK(bad < 0, "decoded non-finite element %ld (layer %u tensor %d)", bad, layer, t);
                /* Determinism, and the exact conversions of §11. */
                err = sqkv_reader_decode(r, layer, tensor, 0, g.n_kv_heads, e, out, elems * 2);
                if (!fuzz_note(r, res, err, "decode again")) {
                    FUZZ_CHECK(memcmp(ref, out, elems * 2) == 0, "two decodes differ (layer %u tensor %d)", layer, t);
                    err = sqkv_reader_decode(r, layer, tensor, 0, g.n_kv_heads, SQKV_DTYPE_FP32, out, elems * 4);
                }
                if (!fuzz_note(r, res, err, "decode fp32")) {
                    fuzz_expect_conversion(ref, e, out, SQKV_DTYPE_FP32, elems, 1);
                    const sqkv_dtype other = fuzz_other16(e);
                    int overflow = fuzz_expect_conversion(ref, e, out, other, elems, 0);
                    err = sqkv_reader_decode(r, layer, tensor, 0, g.n_kv_heads, other, out, elems * 2);
                    fuzz_check_error_known(err);
                    if (err == SQKV_OK) {
                        FUZZ_CHECK(!overflow, "decoded to fp16 although a value overflows it");
                        fuzz_expect_conversion(ref, e, out, other, elems, 1);
                    } else {
                        FUZZ_CHECK(overflow && err == SQKV_ERR_VALUE,
                                   "conversion to the other 16-bit type gave %s (overflow expected: %d)",
                                   sqkv_error_name(err), overflow);
                        /* A legitimate refusal; errors are sticky, so this reader is done. */
                        refused_conversion = 1;
                    }
                }
            }
            free(ref);
            free(out);
            if (res->first_err != SQKV_OK || refused_conversion) return;
        }
    }
    res->everything_decoded = complete;
}

/* Checks the Mustafar layout of up to budget->mustafar_heads heads on a fresh reader (a refused request
 * is sticky, so it must not end the decodes above). */
static inline void fuzz_drive_mustafar(const uint8_t *data, size_t size, const sqkv_limits *limits,
                                       fuzz_budget *budget) {
    fuzz_reader_result res;
    memset(&res, 0, sizeof res);
    sqkv_reader *r = NULL;
    FUZZ_CHECK(sqkv_reader_create(limits, 0, &r) == SQKV_OK, "reader_create failed");
    sqkv_geometry g;
    if (sqkv_reader_open_memory(r, data, size) != SQKV_OK || sqkv_reader_geometry(r, &g) != SQKV_OK) {
        sqkv_reader_destroy(r);
        return;
    }
    int unaligned_split = 0;
    size_t n_sections = 0;
    FUZZ_CHECK(sqkv_reader_section_count(r, &n_sections) == SQKV_OK, "section_count failed after open");
    for (size_t i = 0; i < n_sections; i++) {
        sqkv_section_info info;
        FUZZ_CHECK(sqkv_reader_section_info(r, i, &info) == SQKV_OK, "section_info failed after open");
        if (info.kind == SQKV_KIND_SPARSE && info.token_start % 64) unaligned_split = 1;
    }
    const uint64_t per_head = sqkv_dense_size(1, g.n_tokens, g.head_dim, g.value_dtype);
    for (uint32_t layer = 0; layer < g.n_layers && budget->mustafar_heads; layer++) {
        for (int t = 0; t < 2 && budget->mustafar_heads; t++) {
            for (uint32_t head = 0; head < g.n_kv_heads && budget->mustafar_heads; head++) {
                if (per_head == 0 || per_head > FUZZ_MAX_OUTPUT || per_head > budget->output_bytes) goto done;
                budget->output_bytes -= per_head;
                budget->mustafar_heads--;
                uint16_t *dense = (uint16_t *)malloc((size_t)per_head);
                FUZZ_CHECK(dense, "out of memory");
                sqkv_error err = sqkv_reader_decode(r, layer, (sqkv_tensor)t, head, 1, g.value_dtype, dense,
                                                    (size_t)per_head);
                int go_on = !fuzz_note(r, &res, err, "decode one head") &&
                            fuzz_check_mustafar(r, &res, &g, layer, (sqkv_tensor)t, head, dense, unaligned_split) &&
                            !unaligned_split && g.n_tokens != g.dense_window;
                free(dense);
                if (!go_on) goto done;
            }
        }
    }
done:
    sqkv_reader_destroy(r);
}

/* sqkv_reader_check_restore against what the file's own queries say: the reusable prefix is the common
 * prefix of the file's tokens and the prompt; a geometry or fingerprint that differs is refused with
 * its specific error. Each call on a fresh reader (a refusal may be sticky). */
static inline void fuzz_drive_restore(const uint8_t *data, size_t size, const sqkv_limits *limits, uint64_t salt) {
    sqkv_reader *r = NULL;
    FUZZ_CHECK(sqkv_reader_create(limits, 0, &r) == SQKV_OK, "reader_create failed");
    sqkv_geometry g;
    size_t count = 0, fp_size = 0;
    uint8_t fp[SQKV_MAX_FINGERPRINT];
    int32_t *tokens = NULL;
    int usable = sqkv_reader_open_memory(r, data, size) == SQKV_OK && sqkv_reader_geometry(r, &g) == SQKV_OK &&
                 sqkv_reader_tokens(r, NULL, 0, &count) == SQKV_OK && count <= (1u << 20) &&
                 sqkv_reader_fingerprint(r, fp, sizeof fp, &fp_size) == SQKV_OK;
    if (usable && count) {
        tokens = (int32_t *)malloc(count * sizeof *tokens);
        FUZZ_CHECK(tokens, "out of memory");
        usable = sqkv_reader_tokens(r, tokens, count, &count) == SQKV_OK;
    }
    sqkv_reader_destroy(r);
    if (!usable) {
        free(tokens);
        return;
    }
    /* The prompt: the file's tokens, changed at position p, cut or extended. */
    const size_t p = count ? (size_t)(salt % (count + 1)) : 0;
    const size_t prompt_count = (salt >> 20) & 1 ? count + 3 : (count ? (size_t)((salt >> 21) % (count + 1)) : 2);
    int32_t *prompt = (int32_t *)calloc(prompt_count ? prompt_count : 1, sizeof *prompt);
    FUZZ_CHECK(prompt, "out of memory");
    for (size_t i = 0; i < prompt_count && i < count; i++) prompt[i] = tokens[i];
    if (p < count && p < prompt_count) prompt[p] ^= 0x40000;
    size_t expect = p < count ? p : count;
    if (prompt_count < expect) expect = prompt_count;

    for (int mode = 0; mode < 3; mode++) {
        sqkv_geometry expected = g;
        uint8_t other_fp[SQKV_MAX_FINGERPRINT];
        other_fp[0] = 0;
        memcpy(other_fp, fp, fp_size);
        const void *want_fp = fp_size ? fp : NULL;
        size_t want_fp_size = fp_size;
        sqkv_error want;
        if (mode == 1) {
            expected.head_dim ^= 1; /* another model */
            want = SQKV_ERR_GEOMETRY_MISMATCH;
        } else if (mode == 2) {
            other_fp[0] ^= 1;
            want_fp = other_fp;
            want_fp_size = fp_size ? fp_size : 1;
            want = fp_size ? SQKV_ERR_FINGERPRINT_MISMATCH : SQKV_ERR_NO_FINGERPRINT;
        } else {
            want = count ? SQKV_OK : SQKV_ERR_NO_TOKENS;
        }
        FUZZ_CHECK(sqkv_reader_create(limits, 0, &r) == SQKV_OK, "reader_create failed");
        FUZZ_CHECK(sqkv_reader_open_memory(r, data, size) == SQKV_OK, "second open of the same bytes failed");
        size_t reusable = (size_t)-1;
        const sqkv_error err =
            sqkv_reader_check_restore(r, &expected, want_fp, want_fp_size, prompt, prompt_count, &reusable);
        fuzz_check_error_known(err);
        FUZZ_CHECK(err == want, "check_restore (case %d) gave %s, expected %s", mode, sqkv_error_name(err),
                   sqkv_error_name(want));
        if (err == SQKV_OK)
            FUZZ_CHECK(reusable == expect, "check_restore: %zu reusable tokens, common prefix is %zu", reusable, expect);
        sqkv_reader_destroy(r);
    }
    free(prompt);
    free(tokens);
}

/* Whether the INDEX of an opened file marks any entry SUPERSEDED (§9.1). */
static inline int fuzz_has_superseded(const uint8_t *data, size_t size) {
    const uint64_t index_at = sqkv_load_u64(data + size - SQKV_TAIL_SIZE);
    const uint64_t stored = sqkv_load_u64(data + index_at + SQKV_SEC_STORED_SIZE);
    const uint8_t *entries = data + index_at + SQKV_SECTION_HEADER_SIZE + 16;
    for (uint64_t i = 0; i < (stored - 32) / SQKV_INDEX_ENTRY_SIZE; i++)
        if (entries[SQKV_INDEX_ENTRY_SIZE * i + SQKV_IDX_RESERVED] & 1) return 1;
    return 0;
}

/* Opens data with a fresh reader and drives it. verify_too: also checks the verify/decode agreement
 * with a second reader. */
static inline fuzz_reader_result fuzz_run_reader(const uint8_t *data, size_t size, const sqkv_limits *limits,
                                                 int verify_too) {
    fuzz_reader_result res;
    memset(&res, 0, sizeof res);
    fuzz_budget budget;
    fuzz_budget_default(&budget);
    sqkv_reader *r = NULL;
    FUZZ_CHECK(sqkv_reader_create(limits, 0, &r) == SQKV_OK && r, "reader_create failed");
    res.open_err = sqkv_reader_open_memory(r, data, size);
    fuzz_check_error_known(res.open_err);
    if (res.open_err == SQKV_OK) {
        FUZZ_CHECK(size >= SQKV_HEADER_SIZE_V1 + SQKV_SECTION_HEADER_SIZE + 32, "opened a file of %zu bytes", size);
        FUZZ_CHECK(memcmp(data, sqkv_magic, 8) == 0 && memcmp(data + size - 8, sqkv_end_magic, 8) == 0,
                   "opened a file without both magics");
        fuzz_drive_open_reader(r, data, size, &budget, &res);
    } else {
        FUZZ_CHECK(fuzz_is_file_error(res.open_err) || res.open_err == SQKV_ERR_LIMIT ||
                       res.open_err == SQKV_ERR_OUT_OF_MEMORY,
                   "open gave %s", sqkv_error_name(res.open_err));
    }
    sqkv_reader_destroy(r);
    if (res.open_err != SQKV_OK) return res;
    fuzz_drive_mustafar(data, size, limits, &budget);
    if (res.first_err == SQKV_OK) fuzz_drive_restore(data, size, limits, sqkv_checksum(data, size));
    if (!verify_too) return res;

    FUZZ_CHECK(sqkv_reader_create(limits, 0, &r) == SQKV_OK, "reader_create failed");
    FUZZ_CHECK(sqkv_reader_open_memory(r, data, size) == SQKV_OK, "second open of the same bytes failed");
    sqkv_error verified = sqkv_reader_verify(r);
    fuzz_check_error_known(verified);
    sqkv_reader_destroy(r);
    if (verified == SQKV_OK)
        FUZZ_CHECK(res.first_err == SQKV_OK || res.first_err == SQKV_ERR_LIMIT ||
                       res.first_err == SQKV_ERR_OUT_OF_MEMORY,
                   "verify passed but a decode failed with %s", sqkv_error_name(res.first_err));
    /* Superseded sections (§9.1) are verified but never decoded, so only a file without any must verify
     * once everything in it decoded. */
    if (res.everything_decoded && res.first_err == SQKV_OK && !res.has_unknown_kind && !fuzz_has_superseded(data, size))
        FUZZ_CHECK(verified == SQKV_OK, "every section decoded but verify failed with %s", sqkv_error_name(verified));
    return res;
}

#endif /* SQKV_FUZZ_READER_H */
