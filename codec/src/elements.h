/*
 * elements.h: encoder input conversion to the file's element type E (spec/FORMAT.md §4 value_dtype).
 * One rounding to nearest, ties to even, from the exact input value, as sqkv_double_to_e would give,
 * but on bits so that a whole tensor converts at memory speed.
 */
#ifndef SQKV_ELEMENTS_H
#define SQKV_ELEMENTS_H

#include <stdint.h>

#include "sqkv.h"

/* Converts count elements of src_dtype (FP16, BF16 or FP32, machine byte order, any alignment) at in
 * to E bits at out. Returns SQKV_ERR_NONFINITE_INPUT for a NaN or infinity, SQKV_ERR_RANGE_INPUT for a
 * finite value that rounds to infinity in E; then *bad_index is the first such element (elements before
 * it are converted, the rest of out is unspecified). */
sqkv_error sqkv_elements_convert(sqkv_dtype src_dtype, sqkv_dtype e, const void *in, uint64_t count,
                                 uint16_t *out, uint64_t *bad_index);

/* For input already in E: SQKV_OK when every element is finite, else SQKV_ERR_NONFINITE_INPUT and
 * *bad_index. values must be 2-byte aligned. */
sqkv_error sqkv_elements_check_finite(sqkv_dtype e, const uint16_t *values, uint64_t count,
                                      uint64_t *bad_index);

/* Single-value conversions, exposed for tests. Status as above, through *err (SQKV_OK on success). */
uint16_t sqkv_f32_bits_to_fp16(uint32_t f, sqkv_error *err);
uint16_t sqkv_f32_bits_to_bf16(uint32_t f, sqkv_error *err);
uint32_t sqkv_fp16_to_f32_bits(uint16_t h);

#endif /* SQKV_ELEMENTS_H */
