/* errors.c: names and messages of sqkv_error (generated once from sqkv.h; keep in step). */
#include "sqkv.h"

const char *sqkv_error_name(sqkv_error err) {
    switch (err) {
    case SQKV_OK: return "SQKV_OK";
    case SQKV_ERR_INVALID_ARGUMENT: return "SQKV_ERR_INVALID_ARGUMENT";
    case SQKV_ERR_OUT_OF_MEMORY: return "SQKV_ERR_OUT_OF_MEMORY";
    case SQKV_ERR_IO: return "SQKV_ERR_IO";
    case SQKV_ERR_BUFFER_TOO_SMALL: return "SQKV_ERR_BUFFER_TOO_SMALL";
    case SQKV_ERR_STATE: return "SQKV_ERR_STATE";
    case SQKV_ERR_LIMIT: return "SQKV_ERR_LIMIT";
    case SQKV_ERR_NONFINITE_INPUT: return "SQKV_ERR_NONFINITE_INPUT";
    case SQKV_ERR_RANGE_INPUT: return "SQKV_ERR_RANGE_INPUT";
    case SQKV_ERR_UNSUPPORTED: return "SQKV_ERR_UNSUPPORTED";
    case SQKV_ERR_ABORTED: return "SQKV_ERR_ABORTED";
    case SQKV_ERR_MISALIGNED: return "SQKV_ERR_MISALIGNED";
    case SQKV_ERR_TRUNCATED: return "SQKV_ERR_TRUNCATED";
    case SQKV_ERR_BAD_MAGIC: return "SQKV_ERR_BAD_MAGIC";
    case SQKV_ERR_UNSUPPORTED_VERSION: return "SQKV_ERR_UNSUPPORTED_VERSION";
    case SQKV_ERR_HEADER_SIZE: return "SQKV_ERR_HEADER_SIZE";
    case SQKV_ERR_HEADER_CHECKSUM: return "SQKV_ERR_HEADER_CHECKSUM";
    case SQKV_ERR_UNSUPPORTED_FEATURE: return "SQKV_ERR_UNSUPPORTED_FEATURE";
    case SQKV_ERR_RESERVED: return "SQKV_ERR_RESERVED";
    case SQKV_ERR_HEADER_FIELD: return "SQKV_ERR_HEADER_FIELD";
    case SQKV_ERR_BAD_TAIL: return "SQKV_ERR_BAD_TAIL";
    case SQKV_ERR_SECTION_LAYOUT: return "SQKV_ERR_SECTION_LAYOUT";
    case SQKV_ERR_SECTION_HEADER_CHECKSUM: return "SQKV_ERR_SECTION_HEADER_CHECKSUM";
    case SQKV_ERR_UNKNOWN_SECTION: return "SQKV_ERR_UNKNOWN_SECTION";
    case SQKV_ERR_UNSUPPORTED_CODEC: return "SQKV_ERR_UNSUPPORTED_CODEC";
    case SQKV_ERR_SECTION_FIELD: return "SQKV_ERR_SECTION_FIELD";
    case SQKV_ERR_SECTION_RANGE: return "SQKV_ERR_SECTION_RANGE";
    case SQKV_ERR_SIZE_MISMATCH: return "SQKV_ERR_SIZE_MISMATCH";
    case SQKV_ERR_SECTION_CHECKSUM: return "SQKV_ERR_SECTION_CHECKSUM";
    case SQKV_ERR_PADDING: return "SQKV_ERR_PADDING";
    case SQKV_ERR_INDEX_MISMATCH: return "SQKV_ERR_INDEX_MISMATCH";
    case SQKV_ERR_DUPLICATE_SECTION: return "SQKV_ERR_DUPLICATE_SECTION";
    case SQKV_ERR_COVERAGE: return "SQKV_ERR_COVERAGE";
    case SQKV_ERR_BITMAP_PADDING: return "SQKV_ERR_BITMAP_PADDING";
    case SQKV_ERR_OFFSET_MISMATCH: return "SQKV_ERR_OFFSET_MISMATCH";
    case SQKV_ERR_PAYLOAD_PARAMS: return "SQKV_ERR_PAYLOAD_PARAMS";
    case SQKV_ERR_SCALE: return "SQKV_ERR_SCALE";
    case SQKV_ERR_VALUE: return "SQKV_ERR_VALUE";
    case SQKV_ERR_TOKENS_COUNT: return "SQKV_ERR_TOKENS_COUNT";
    case SQKV_ERR_FINGERPRINT_SIZE: return "SQKV_ERR_FINGERPRINT_SIZE";
    case SQKV_ERR_METADATA: return "SQKV_ERR_METADATA";
    case SQKV_ERR_COMPRESSED_STREAM: return "SQKV_ERR_COMPRESSED_STREAM";
    case SQKV_ERR_NO_FINGERPRINT: return "SQKV_ERR_NO_FINGERPRINT";
    case SQKV_ERR_FINGERPRINT_MISMATCH: return "SQKV_ERR_FINGERPRINT_MISMATCH";
    case SQKV_ERR_GEOMETRY_MISMATCH: return "SQKV_ERR_GEOMETRY_MISMATCH";
    case SQKV_ERR_NO_TOKENS: return "SQKV_ERR_NO_TOKENS";
    }
    return "SQKV_ERR_UNKNOWN";
}

const char *sqkv_error_message(sqkv_error err) {
    switch (err) {
    case SQKV_OK: return "success";
    case SQKV_ERR_INVALID_ARGUMENT: return "an argument is NULL, out of range or inconsistent";
    case SQKV_ERR_OUT_OF_MEMORY: return "memory allocation failed";
    case SQKV_ERR_IO: return "a read, write, open, sync or rename failed";
    case SQKV_ERR_BUFFER_TOO_SMALL: return "the caller buffer is smaller than the size required";
    case SQKV_ERR_STATE: return "the call is out of order for this object";
    case SQKV_ERR_LIMIT: return "a size or count exceeds a format maximum or a configured limit";
    case SQKV_ERR_NONFINITE_INPUT: return "the input tensor holds NaN or infinity";
    case SQKV_ERR_RANGE_INPUT: return "an input value does not fit the element type";
    case SQKV_ERR_UNSUPPORTED: return "the request cannot be expressed for this file";
    case SQKV_ERR_ABORTED: return "a caller callback asked to stop";
    case SQKV_ERR_MISALIGNED: return "a device buffer is not aligned as the CUDA API requires";
    case SQKV_ERR_TRUNCATED: return "the data ends before the structure it announces";
    case SQKV_ERR_BAD_MAGIC: return "not an SQKV file (bad magic number)";
    case SQKV_ERR_UNSUPPORTED_VERSION: return "unsupported major format version";
    case SQKV_ERR_HEADER_SIZE: return "header size is out of range";
    case SQKV_ERR_HEADER_CHECKSUM: return "file header checksum mismatch";
    case SQKV_ERR_UNSUPPORTED_FEATURE: return "the file requires a feature this decoder does not know";
    case SQKV_ERR_RESERVED: return "a reserved field or padding byte is not zero";
    case SQKV_ERR_HEADER_FIELD: return "a file header field is out of range";
    case SQKV_ERR_BAD_TAIL: return "the file tail (end magic) is missing or wrong";
    case SQKV_ERR_SECTION_LAYOUT: return "sections are not contiguous, sorted and covering the file exactly";
    case SQKV_ERR_SECTION_HEADER_CHECKSUM: return "section header checksum mismatch";
    case SQKV_ERR_UNKNOWN_SECTION: return "unknown critical section kind";
    case SQKV_ERR_UNSUPPORTED_CODEC: return "unknown section codec";
    case SQKV_ERR_SECTION_FIELD: return "a section header field is invalid for its kind";
    case SQKV_ERR_SECTION_RANGE: return "section coordinates lie outside the geometry";
    case SQKV_ERR_SIZE_MISMATCH: return "a section size disagrees with its contents or the geometry";
    case SQKV_ERR_SECTION_CHECKSUM: return "section body checksum mismatch";
    case SQKV_ERR_PADDING: return "padding bytes or bits are not zero";
    case SQKV_ERR_INDEX_MISMATCH: return "an index entry disagrees with its section header";
    case SQKV_ERR_DUPLICATE_SECTION: return "a section that may appear once appears twice";
    case SQKV_ERR_COVERAGE: return "tensor sections leave a gap, overlap, or have the wrong kind for their tokens";
    case SQKV_ERR_BITMAP_PADDING: return "a bitmap marks a padding element as kept";
    case SQKV_ERR_OFFSET_MISMATCH: return "the tile offset table disagrees with the bitmaps";
    case SQKV_ERR_PAYLOAD_PARAMS: return "invalid combination of payload bits, quantizer and scale granularity";
    case SQKV_ERR_SCALE: return "invalid quantization parameters";
    case SQKV_ERR_VALUE: return "a stored value is zero, NaN or infinite where the format forbids it";
    case SQKV_ERR_TOKENS_COUNT: return "the token id count differs from the cache length";
    case SQKV_ERR_FINGERPRINT_SIZE: return "the fingerprint size is out of range";
    case SQKV_ERR_METADATA: return "malformed metadata";
    case SQKV_ERR_COMPRESSED_STREAM: return "a compressed stream is malformed or decodes to the wrong size";
    case SQKV_ERR_NO_FINGERPRINT: return "the file has no model fingerprint to compare";
    case SQKV_ERR_FINGERPRINT_MISMATCH: return "the cache belongs to another model (fingerprint mismatch)";
    case SQKV_ERR_GEOMETRY_MISMATCH: return "the cache geometry does not match the model";
    case SQKV_ERR_NO_TOKENS: return "the file has no token ids to compare with the prompt";
    }
    return "unknown error code";
}
