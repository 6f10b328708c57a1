// sqkv_file.h: a test-side model of an SQKV file's structure (spec/FORMAT.md §2, §4, §5, §7.2, §9),
// for building malformed files: take a valid file apart, change one thing, and put it back together
// with every checksum, size, offset, index entry and the tail recomputed, so that the decoder reaches
// exactly the rule under test instead of stopping at a checksum.
#ifndef SQKV_TESTS_SUPPORT_SQKV_FILE_H
#define SQKV_TESTS_SUPPORT_SQKV_FILE_H

#include <cstddef>
#include <cstdint>
#include <vector>

#include "test_util.h"

namespace sqkv_test {

// Little-endian field access on a byte vector.
uint16_t Get16(const Bytes &b, size_t off);
uint32_t Get32(const Bytes &b, size_t off);
uint64_t Get64(const Bytes &b, size_t off);
void Put16(Bytes *b, size_t off, uint16_t v);
void Put32(Bytes *b, size_t off, uint32_t v);
void Put64(Bytes *b, size_t off, uint64_t v);

// File header field offsets (§4) and section header field offsets (§5).
namespace hdr {
constexpr size_t kVersionMajor = 8, kVersionMinor = 10, kHeaderSize = 12, kRequired = 16, kOptional = 20,
                 kLayers = 24, kHeads = 28, kHeadDim = 32, kTokens = 36, kDenseWindow = 40, kValueDtype = 44,
                 kSourceDtype = 45, kTileLog2 = 46, kChecksumKind = 47, kReserved = 48;
}
namespace sec {
constexpr size_t kKind = 0, kCodec = 2, kTensor = 3, kLayer = 4, kHeadStart = 8, kHeadCount = 12,
                 kTokenStart = 16, kTokenCount = 20, kBits = 24, kQuantizer = 25, kGranularity = 26,
                 kOffsetLog2 = 27, kFlags = 28, kStoredSize = 32, kDecodedSize = 40, kBodyChecksum = 48,
                 kHeaderChecksum = 56;
}
constexpr uint16_t kKindSparse = 0x0001, kKindDense = 0x0002, kKindIndex = 0x0003, kKindTokens = 0x8001,
                   kKindFingerprint = 0x8002, kKindMetadata = 0x8003;

// One section: its 64 header bytes (checksums included) and its stored body. The padding after the
// body is produced by Assemble (zeros) unless `padding` is set to something else.
struct RawSection {
    Bytes header = Bytes(64, 0);
    Bytes body;
    Bytes padding;            // empty: align8 zeros
    uint8_t entry_flags = 0;  // flags byte of this section's INDEX entry (bit 0: SUPERSEDED, §9.1)

    uint16_t kind() const { return Get16(header, sec::kKind); }
    uint8_t tensor() const { return header[sec::kTensor]; }
    uint32_t layer() const { return Get32(header, sec::kLayer); }
    uint32_t head_start() const { return Get32(header, sec::kHeadStart); }
    uint32_t head_count() const { return Get32(header, sec::kHeadCount); }
    uint32_t token_start() const { return Get32(header, sec::kTokenStart); }
    uint32_t token_count() const { return Get32(header, sec::kTokenCount); }
};

constexpr uint8_t kEntrySuperseded = 1;

// The INDEX body (§9): [n_tokens u32][dense_window u32][previous_index_offset u64][entries][tail].
constexpr size_t kIndexPrefix = 16, kIndexEntry = 40, kTailSize = 16;

struct RawFile {
    Bytes header;                      // header_size bytes, checksum included
    std::vector<RawSection> sections;  // every section before the last INDEX (older INDEXes included)
    RawSection index;                  // the last INDEX section as it was in the parsed file
    uint32_t index_n_tokens = 0;       // INDEX body fields (§9)
    uint32_t index_dense_window = 0;
    int previous_index = -1;           // which of `sections` previous_index_offset points to; -1: 0
    uint32_t header_size() const { return Get32(header, hdr::kHeaderSize); }
};

// Splits a structurally valid file (as written by the encoder). Returns false if it is not one.
bool ParseRaw(const Bytes &file, RawFile *out);

struct AssembleOptions {
    bool fix_sizes = true;            // stored_size = decoded_size = body size
    bool fix_body_checksums = true;
    bool fix_section_checksums = true;
    bool rebuild_index = true;        // INDEX body (fields, entries, tail) from the sections; else as is
    bool fix_header_checksum = true;
};

// Serializes the file: sections in order, then the INDEX with the tail at the end of its body.
Bytes Assemble(const RawFile &f, const AssembleOptions &opts = AssembleOptions());

// Byte-level fix-ups on a serialized file, after an in-place mutation.
void FixHeaderChecksum(Bytes *file);                       // bytes [0, header_size - 8)
void FixSectionChecksums(Bytes *file, size_t section_at);  // body (stored_size bytes) then header
// Offsets of every section header in file order (walking from header_size; the last INDEX is last).
std::vector<size_t> SectionOffsets(const Bytes &file);

// The streams of a SPARSE body (§7.2), computed from the section header and the bitmaps.
struct SparseStreams {
    uint64_t tiles = 0;        // N
    uint64_t offset_entries;   // M + 1
    uint64_t groups, params;   // G, Q
    uint64_t kept;             // P
    size_t bitmaps_at = 0, offsets_at, scales_at, payload_at, payload_bytes, end;
};
SparseStreams SparseLayout(const RawSection &s, uint32_t head_dim);

// ---- codec 1 (§5.1) ----------------------------------------------------------------------------

// The streams of a section's body: (offset, length) in the decoded body. SPARSE: bitmaps, offsets,
// scales, payload; every other kind: the whole body.
std::vector<std::pair<size_t, size_t>> StreamBounds(const RawSection &s, uint32_t head_dim);

// One zstd frame of `data` (level 3); without the content size in its header when !content_size.
Bytes ZstdFrame(const Bytes &data, bool content_size = true);

// The codec-1 stored body of a codec-0 body: the 16-byte stream records, then each stream (as is for
// method 0, one zstd frame for method 1) padded with zeros to a multiple of 8.
struct StoredStream {
    uint8_t method;
    Bytes bytes;  // stored bytes, without padding
};
Bytes StreamsStoredBody(const std::vector<StoredStream> &streams);

// Section s (codec 0) converted to codec 1 with methods[i] for stream i: header codec, stored_size and
// decoded_size set; assemble with AssembleOptions::fix_sizes = false.
RawSection ToCodec1(const RawSection &s, uint32_t head_dim, const std::vector<uint8_t> &methods);

}  // namespace sqkv_test

#endif  // SQKV_TESTS_SUPPORT_SQKV_FILE_H
