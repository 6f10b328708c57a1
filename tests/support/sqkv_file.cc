// sqkv_file.cc: see sqkv_file.h. Own implementation from the spec (no codec/src code), so a layout
// mistake in codec/src cannot hide in the tests' idea of the file.
#include "sqkv_file.h"

#include <zstd.h>

namespace sqkv_test {

uint16_t Get16(const Bytes &b, size_t off) { return static_cast<uint16_t>(b[off] | (b[off + 1] << 8)); }
uint32_t Get32(const Bytes &b, size_t off) {
    return static_cast<uint32_t>(Get16(b, off)) | (static_cast<uint32_t>(Get16(b, off + 2)) << 16);
}
uint64_t Get64(const Bytes &b, size_t off) {
    return static_cast<uint64_t>(Get32(b, off)) | (static_cast<uint64_t>(Get32(b, off + 4)) << 32);
}
void Put16(Bytes *b, size_t off, uint16_t v) {
    (*b)[off] = static_cast<uint8_t>(v);
    (*b)[off + 1] = static_cast<uint8_t>(v >> 8);
}
void Put32(Bytes *b, size_t off, uint32_t v) {
    for (int i = 0; i < 4; i++) (*b)[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put64(Bytes *b, size_t off, uint64_t v) {
    for (int i = 0; i < 8; i++) (*b)[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

namespace {

constexpr uint8_t kEndMagic[8] = {0x1A, 0x0A, 0x0D, 0x56, 0x4B, 0x51, 0x53, 0x89};

size_t Align8(size_t n) { return (n + 7) & ~size_t{7}; }

void SealSectionHeader(Bytes *h, const Bytes &body, const AssembleOptions &o) {
    if (o.fix_sizes) {
        Put64(h, sec::kStoredSize, body.size());
        Put64(h, sec::kDecodedSize, body.size());
    }
    if (o.fix_body_checksums) Put64(h, sec::kBodyChecksum, Xxh3(body.data(), body.size()));
    if (o.fix_section_checksums) Put64(h, sec::kHeaderChecksum, Xxh3(h->data(), 56));
}

void AppendSection(Bytes *out, const Bytes &header, const Bytes &body, const Bytes &padding) {
    out->insert(out->end(), header.begin(), header.end());
    out->insert(out->end(), body.begin(), body.end());
    if (padding.empty())
        out->resize(out->size() + (Align8(body.size()) - body.size()), 0);
    else
        out->insert(out->end(), padding.begin(), padding.end());
}

}  // namespace

std::vector<size_t> SectionOffsets(const Bytes &file) {
    std::vector<size_t> offsets;
    if (file.size() < 64) return offsets;
    size_t at = Get32(file, hdr::kHeaderSize);
    while (at <= file.size() && file.size() - at >= 64) {
        offsets.push_back(at);
        const uint64_t stored = Get64(file, at + sec::kStoredSize);
        if (stored > file.size()) break;
        at += 64 + Align8(stored);
    }
    return offsets;
}

bool ParseRaw(const Bytes &file, RawFile *out) {
    *out = RawFile();
    if (file.size() < 64 + 64 + 32) return false;
    const uint32_t header_size = Get32(file, hdr::kHeaderSize);
    if (header_size < 64 || header_size > file.size()) return false;
    out->header.assign(file.begin(), file.begin() + header_size);
    const uint64_t index_at = Get64(file, file.size() - kTailSize);
    const std::vector<size_t> offsets = SectionOffsets(file);
    if (offsets.empty() || offsets.back() != index_at) return false;
    for (size_t i = 0; i < offsets.size(); i++) {
        RawSection s;
        const size_t at = offsets[i];
        s.header.assign(file.begin() + at, file.begin() + at + 64);
        const uint64_t stored = Get64(file, at + sec::kStoredSize);
        if (at + 64 + Align8(stored) > file.size()) return false;
        s.body.assign(file.begin() + at + 64, file.begin() + at + 64 + stored);
        if (i + 1 < offsets.size()) {
            out->sections.push_back(s);
            continue;
        }
        if (s.kind() != kKindIndex || at + 64 + stored != file.size()) return false;
        const size_t n = out->sections.size();
        if (stored != kIndexPrefix + kIndexEntry * n + kTailSize) return false;
        out->index = s;
        out->index_n_tokens = Get32(s.body, 0);
        out->index_dense_window = Get32(s.body, 4);
        const uint64_t previous = Get64(s.body, 8);
        for (size_t e = 0; e < n; e++) {
            out->sections[e].entry_flags = s.body[kIndexPrefix + kIndexEntry * e + 19];
            if (previous != 0 && offsets[e] == previous) out->previous_index = static_cast<int>(e);
        }
        return previous == 0 || out->previous_index >= 0;
    }
    return false;
}

Bytes Assemble(const RawFile &f, const AssembleOptions &o) {
    Bytes out = f.header;
    Bytes entries;
    std::vector<size_t> offsets;
    for (const RawSection &s0 : f.sections) {
        RawSection s = s0;
        SealSectionHeader(&s.header, s.body, o);
        offsets.push_back(out.size());
        Bytes entry(kIndexEntry, 0);
        Put64(&entry, 0, out.size());
        Put64(&entry, 8, Get64(s.header, sec::kStoredSize));
        Put16(&entry, 16, s.kind());
        entry[18] = s.tensor();
        entry[19] = s.entry_flags;
        Put32(&entry, 20, s.layer());
        Put32(&entry, 24, s.head_start());
        Put32(&entry, 28, s.head_count());
        Put32(&entry, 32, s.token_start());
        Put32(&entry, 36, s.token_count());
        entries.insert(entries.end(), entry.begin(), entry.end());
        AppendSection(&out, s.header, s.body, s.padding);
    }
    RawSection index = f.index;
    const size_t index_at = out.size();
    if (o.rebuild_index) {
        index.body.assign(kIndexPrefix, 0);
        Put32(&index.body, 0, f.index_n_tokens);
        Put32(&index.body, 4, f.index_dense_window);
        Put64(&index.body, 8, f.previous_index >= 0 ? offsets[static_cast<size_t>(f.previous_index)] : 0);
        index.body.insert(index.body.end(), entries.begin(), entries.end());
        Bytes tail(kTailSize, 0);
        Put64(&tail, 0, index_at);
        std::copy(kEndMagic, kEndMagic + 8, tail.begin() + 8);
        index.body.insert(index.body.end(), tail.begin(), tail.end());
    }
    SealSectionHeader(&index.header, index.body, o);
    AppendSection(&out, index.header, index.body, index.padding);
    if (o.fix_header_checksum) FixHeaderChecksum(&out);
    return out;
}

void FixHeaderChecksum(Bytes *file) {
    const uint32_t header_size = Get32(*file, hdr::kHeaderSize);
    Put64(file, header_size - 8, Xxh3(file->data(), header_size - 8));
}

void FixSectionChecksums(Bytes *file, size_t at) {
    const uint64_t stored = Get64(*file, at + sec::kStoredSize);
    Put64(file, at + sec::kBodyChecksum, Xxh3(file->data() + at + 64, stored));
    Put64(file, at + sec::kHeaderChecksum, Xxh3(file->data() + at, 56));
}

SparseStreams SparseLayout(const RawSection &s, uint32_t head_dim) {
    SparseStreams l;
    const uint32_t tc = s.token_count(), hc = s.head_count();
    const uint64_t per_head = s.tensor() == 0 ? static_cast<uint64_t>((tc + 63) / 64) * head_dim
                                              : static_cast<uint64_t>(tc) * ((head_dim + 63) / 64);
    l.tiles = per_head * hc;
    const uint32_t k = s.header[sec::kOffsetLog2];
    // §7.6: an ALL_KEPT section stores neither bitmaps nor offsets and keeps every non-padding element.
    const bool all_kept = (Get32(s.header, sec::kFlags) & 1u) != 0;
    l.offset_entries = all_kept ? 0 : ((l.tiles + (uint64_t{1} << k) - 1) >> k) + 1;
    const uint8_t q = s.header[sec::kQuantizer], g = s.header[sec::kGranularity];
    l.params = q == 2 ? 2 : q == 1 ? 1 : 0;
    l.groups = g == 1 ? hc : g == 2 ? l.tiles : g == 3 ? 2 * l.tiles : 0;
    l.kept = 0;
    if (all_kept)
        l.kept = static_cast<uint64_t>(hc) * tc * head_dim;
    else
        for (uint64_t t = 0; t < l.tiles && 8 * t + 8 <= s.body.size(); t++)
            l.kept += static_cast<uint64_t>(__builtin_popcountll(Get64(s.body, 8 * t)));
    const uint32_t bits = s.header[sec::kBits];
    l.bitmaps_at = 0;
    l.offsets_at = all_kept ? 0 : Align8(8 * l.tiles);
    l.scales_at = l.offsets_at + Align8(4 * l.offset_entries);
    l.payload_at = l.scales_at + Align8(2 * l.groups * l.params);
    l.payload_bytes = (l.kept * bits + 7) / 8;
    l.end = l.payload_at + Align8(l.payload_bytes);
    return l;
}

std::vector<std::pair<size_t, size_t>> StreamBounds(const RawSection &s, uint32_t head_dim) {
    if (s.kind() != kKindSparse) return {{0, s.body.size()}};
    const SparseStreams l = SparseLayout(s, head_dim);
    return {{0, l.offsets_at},
            {l.offsets_at, l.scales_at - l.offsets_at},
            {l.scales_at, l.payload_at - l.scales_at},
            {l.payload_at, s.body.size() - l.payload_at}};
}

Bytes ZstdFrame(const Bytes &data, bool content_size) {
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, content_size ? 1 : 0);
    Bytes out(ZSTD_compressBound(data.size()));
    const size_t n = ZSTD_compress2(cctx, out.data(), out.size(), data.data(), data.size());
    ZSTD_freeCCtx(cctx);
    out.resize(ZSTD_isError(n) ? 0 : n);
    return out;
}

Bytes StreamsStoredBody(const std::vector<StoredStream> &streams) {
    Bytes out(16 * streams.size(), 0);
    for (size_t i = 0; i < streams.size(); i++) {
        out[16 * i] = streams[i].method;
        Put64(&out, 16 * i + 8, streams[i].bytes.size());
    }
    for (const StoredStream &st : streams) {
        out.insert(out.end(), st.bytes.begin(), st.bytes.end());
        out.resize(Align8(out.size()), 0);
    }
    return out;
}

RawSection ToCodec1(const RawSection &s, uint32_t head_dim, const std::vector<uint8_t> &methods) {
    RawSection c = s;
    std::vector<StoredStream> streams;
    const auto bounds = StreamBounds(s, head_dim);
    for (size_t i = 0; i < bounds.size(); i++) {
        const Bytes data(s.body.begin() + bounds[i].first, s.body.begin() + bounds[i].first + bounds[i].second);
        const uint8_t method = i < methods.size() ? methods[i] : 0;
        streams.push_back({method, method == 1 ? ZstdFrame(data) : data});
    }
    c.body = StreamsStoredBody(streams);
    c.header[sec::kCodec] = 1;
    Put64(&c.header, sec::kStoredSize, c.body.size());
    Put64(&c.header, sec::kDecodedSize, s.body.size());
    return c;
}

}  // namespace sqkv_test
