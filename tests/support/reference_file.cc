// reference_file.cc: see reference_file.h. Slow and literal on purpose: tiles as lists of element
// indices, groups as lists, the payload bit string one bit at a time.
#include "reference_file.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>

namespace sqkv_test {
namespace {

constexpr uint8_t kMagic[8] = {0x89, 0x53, 0x51, 0x4B, 0x56, 0x0D, 0x0A, 0x1A};

size_t Align8(size_t n) { return (n + 7) & ~size_t{7}; }

uint32_t ParamsPerGroup(sqkv_quantizer q) { return q == SQKV_QUANT_ASYMMETRIC ? 2 : q == SQKV_QUANT_SYMMETRIC ? 1 : 0; }

// Bit j of code c is bit (e*b + j) mod 8 of byte floor((e*b + j) / 8) (§7.5).
void PutCode(Bytes *payload, uint64_t e, uint32_t b, uint32_t code) {
    for (uint32_t j = 0; j < b; j++) {
        const uint64_t bit = e * b + j;
        if ((code >> j) & 1u) (*payload)[bit / 8] = static_cast<uint8_t>((*payload)[bit / 8] | (1u << (bit % 8)));
    }
}

uint32_t GetCode(const uint8_t *payload, uint64_t e, uint32_t b) {
    uint32_t code = 0;
    for (uint32_t j = 0; j < b; j++) {
        const uint64_t bit = e * b + j;
        code |= static_cast<uint32_t>((payload[bit / 8] >> (bit % 8)) & 1u) << j;
    }
    return code;
}

RawSection TensorSectionHeader(uint16_t kind, sqkv_tensor tensor, uint32_t layer, uint32_t head_start,
                               uint32_t head_count, uint32_t token_start, uint32_t token_count) {
    RawSection s;
    Put16(&s.header, sec::kKind, kind);
    s.header[sec::kTensor] = static_cast<uint8_t>(tensor);
    Put32(&s.header, sec::kLayer, layer);
    Put32(&s.header, sec::kHeadStart, head_start);
    Put32(&s.header, sec::kHeadCount, head_count);
    Put32(&s.header, sec::kTokenStart, token_start);
    Put32(&s.header, sec::kTokenCount, token_count);
    return s;
}

// §5.1 informative: each stream compressed on its own, kept compressed only when its padded frame is
// shorter than the padded stream; codec 1 only when the whole stored body gets shorter.
void ApplyZstdLayer(RawSection *s, const std::vector<size_t> &stream_lengths, int level) {
    Put64(&s->header, sec::kStoredSize, s->body.size());
    Put64(&s->header, sec::kDecodedSize, s->body.size());
    if (level == 0) return;
    std::vector<StoredStream> streams;
    size_t at = 0;
    bool any_compressed = false;
    for (size_t length : stream_lengths) {
        const Bytes data(s->body.begin() + at, s->body.begin() + at + length);
        at += length;
        Bytes frame(ZSTD_compressBound(length));
        ZSTD_CCtx *cctx = ZSTD_createCCtx();
        const size_t n = ZSTD_compressCCtx(cctx, frame.data(), frame.size(), data.data(), data.size(), level);
        ZSTD_freeCCtx(cctx);
        if (!ZSTD_isError(n) && Align8(n) < Align8(length)) {
            frame.resize(n);
            streams.push_back({1, frame});
            any_compressed = true;
        } else {
            streams.push_back({0, data});
        }
    }
    if (!any_compressed) return;
    const Bytes stored = StreamsStoredBody(streams);
    if (stored.size() >= Align8(s->body.size())) return;
    Put64(&s->header, sec::kDecodedSize, s->body.size());
    s->body = stored;
    s->header[sec::kCodec] = 1;
    Put64(&s->header, sec::kStoredSize, s->body.size());
}

// The kept mask of the rows of one section (§14: per token and head; keep-all keeps every element).
std::vector<uint8_t> KeptMask(const refm::Shape &shape, const refm::Options &opts, const std::vector<uint16_t> &input,
                              uint32_t head_start, uint32_t head_count, uint32_t token_start, uint32_t token_count) {
    const uint32_t D = shape.head_dim;
    std::vector<uint8_t> kept(input.size(), 0);
    for (uint32_t h = head_start; h < head_start + head_count; h++)
        for (uint32_t t = token_start; t < token_start + token_count; t++) {
            const size_t row = (static_cast<size_t>(h) * shape.tokens + t) * D;
            if (opts.keep_all) {
                std::fill(kept.begin() + row, kept.begin() + row + D, 1);
                continue;
            }
            for (uint32_t d : refm::KeptChannels(&input[row], D, shape.e, opts.prune, opts.sparsity)) kept[row + d] = 1;
        }
    return kept;
}

}  // namespace

ReferenceSparse ReferenceSparseBody(const refm::Shape &shape, const refm::Options &opts, sqkv_tensor tensor,
                                    const std::vector<uint16_t> &input, uint32_t head_start, uint32_t head_count,
                                    uint32_t token_start, uint32_t token_count) {
    const std::vector<std::vector<size_t>> tiles =
        refm::TilesOfSection(tensor, shape.tokens, shape.head_dim, head_start, head_count, token_start, token_count);
    const std::vector<uint8_t> kept = KeptMask(shape, opts, input, head_start, head_count, token_start, token_count);
    const size_t N = tiles.size();

    Bytes bitmaps, offsets;
    std::vector<size_t> payload_order;  // tensor indices of the kept elements, in payload order
    std::vector<uint64_t> kept_before_tile(N + 1, 0);
    for (size_t n = 0; n < N; n++) {
        uint64_t bitmap = 0;
        for (uint32_t i = 0; i < 64; i++) {
            const size_t idx = tiles[n][i];
            if (idx == SIZE_MAX || !kept[idx]) continue;
            bitmap |= uint64_t{1} << (63 - i);
            payload_order.push_back(idx);
        }
        kept_before_tile[n + 1] = payload_order.size();
        Bytes word(8, 0);
        Put64(&word, 0, bitmap);
        bitmaps.insert(bitmaps.end(), word.begin(), word.end());
    }
    if (!opts.keep_all) {
        const uint64_t interval = uint64_t{1} << opts.offset_interval_log2;
        const uint64_t M = (N + interval - 1) / interval;
        offsets.assign(Align8(4 * (M + 1)), 0);
        for (uint64_t j = 0; j <= M; j++)
            Put32(&offsets, 4 * j, static_cast<uint32_t>(kept_before_tile[std::min<uint64_t>(j * interval, N)]));
        bitmaps.resize(Align8(bitmaps.size()), 0);
    } else {
        bitmaps.clear();  // §7.6: implied
    }

    Bytes scales, payload;
    const uint64_t P = payload_order.size();
    if (opts.quantizer == SQKV_QUANT_EXACT) {
        payload.assign(Align8(2 * P), 0);
        for (uint64_t e = 0; e < P; e++) Put16(&payload, 2 * e, input[payload_order[e]]);
    } else {
        const std::vector<std::vector<size_t>> groups =
            refm::GroupsOfSection(tensor, opts.granularity, shape.tokens, shape.head_dim, head_start, head_count,
                                  token_start, token_count);
        const uint32_t Q = ParamsPerGroup(opts.quantizer);
        scales.assign(Align8(2 * groups.size() * Q), 0);
        std::vector<uint32_t> code_of(input.size(), 0);
        for (size_t gi = 0; gi < groups.size(); gi++) {
            std::vector<uint16_t> values;
            std::vector<size_t> members;
            for (size_t idx : groups[gi])
                if (kept[idx]) {
                    values.push_back(input[idx]);
                    members.push_back(idx);
                }
            uint16_t s = 0, z = 0;
            refm::ChooseParams(opts.quantizer, opts.bits, shape.e, values, &s, &z);
            Put16(&scales, 2 * gi * Q, s);
            if (Q == 2) Put16(&scales, 2 * gi * Q + 2, z);
            std::vector<uint16_t> levels;
            if (!refm::Levels(opts.quantizer, opts.bits, shape.e, s, z, &levels)) std::abort();
            const std::vector<double> level_values = refm::LevelValues(levels, shape.e);
            for (size_t idx : members) code_of[idx] = refm::NearestCodeOf(level_values, refm::EToDouble(input[idx], shape.e));
        }
        payload.assign(Align8((P * opts.bits + 7) / 8), 0);
        for (uint64_t e = 0; e < P; e++) PutCode(&payload, e, opts.bits, code_of[payload_order[e]]);
    }

    ReferenceSparse out;
    out.stream_lengths[0] = bitmaps.size();
    out.stream_lengths[1] = offsets.size();
    out.stream_lengths[2] = scales.size();
    out.stream_lengths[3] = payload.size();
    for (const Bytes *part : {&bitmaps, &offsets, &scales, &payload})
        out.body.insert(out.body.end(), part->begin(), part->end());
    return out;
}

bool ReferenceEncodeFile(const Cache &cache, const sqkv_writer_options &wo, Bytes *out, std::string *why) {
    const sqkv_geometry &g = cache.geometry;
    const refm::Shape shape = ToRefShape(g);
    const refm::Options opts = ToRefOptions(wo);
    if (opts.keep_all && opts.quantizer == SQKV_QUANT_EXACT) {
        *why = "EXACT with keep-all is not a valid option set";
        return false;
    }
    const uint32_t H = g.n_kv_heads, T = g.n_tokens, D = g.head_dim, W = g.dense_window, S = T - W;
    const size_t count = static_cast<size_t>(H) * T * D;

    RawFile f;
    f.header.assign(64, 0);
    std::copy(kMagic, kMagic + 8, f.header.begin());
    // §4.1, §14: the reference encoder declares the features of its options, also for a file that is all
    // dense window today, so that the sparse sections an append will write may use them (§9.1).
    const uint32_t features = refm::SectionFeatures(opts);
    Put16(&f.header, hdr::kVersionMajor, 1);
    Put16(&f.header, hdr::kVersionMinor, features ? 1 : 0);
    Put32(&f.header, hdr::kHeaderSize, 64);
    Put32(&f.header, hdr::kRequired, features);
    Put32(&f.header, hdr::kLayers, g.n_layers);
    Put32(&f.header, hdr::kHeads, H);
    Put32(&f.header, hdr::kHeadDim, D);
    Put32(&f.header, hdr::kTokens, T);
    Put32(&f.header, hdr::kDenseWindow, W);
    f.header[hdr::kValueDtype] = static_cast<uint8_t>(g.value_dtype);
    f.header[hdr::kSourceDtype] = static_cast<uint8_t>(cache.input_dtype);
    f.header[hdr::kTileLog2] = 6;
    f.header[hdr::kChecksumKind] = 1;
    f.index_n_tokens = T;
    f.index_dense_window = W;
    const int level = static_cast<int>(wo.zstd_level);

    auto add_whole = [&](RawSection s) {
        ApplyZstdLayer(&s, {s.body.size()}, level);
        f.sections.push_back(s);
    };
    if (cache.has_tokens) {
        RawSection s;
        Put16(&s.header, sec::kKind, kKindTokens);
        s.body.assign(4 * cache.tokens.size(), 0);
        for (size_t i = 0; i < cache.tokens.size(); i++) Put32(&s.body, 4 * i, static_cast<uint32_t>(cache.tokens[i]));
        add_whole(s);
    }
    if (!cache.fingerprint.empty()) {
        RawSection s;
        Put16(&s.header, sec::kKind, kKindFingerprint);
        s.body = cache.fingerprint;
        add_whole(s);
    }
    if (!cache.metadata.empty()) {
        auto entries = cache.metadata;
        std::sort(entries.begin(), entries.end());
        RawSection s;
        Put16(&s.header, sec::kKind, kKindMetadata);
        s.body.assign(4, 0);
        Put32(&s.body, 0, static_cast<uint32_t>(entries.size()));
        for (const auto &kv : entries) {
            s.body.push_back(static_cast<uint8_t>(kv.first.size()));
            s.body.insert(s.body.end(), kv.first.begin(), kv.first.end());
            s.body.push_back(static_cast<uint8_t>(kv.second.size()));
            s.body.push_back(static_cast<uint8_t>(kv.second.size() >> 8));
            s.body.insert(s.body.end(), kv.second.begin(), kv.second.end());
        }
        add_whole(s);
    }

    const uint32_t hps = opts.heads_per_section ? opts.heads_per_section : 1;
    const uint32_t tps = opts.tokens_per_section ? opts.tokens_per_section : std::max(S, 1u);
    for (uint32_t l = 0; l < g.n_layers; l++)
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            std::vector<uint16_t> input;
            if (refm::ConvertInput((t == SQKV_TENSOR_K ? cache.k : cache.v)[l].data(), count, cache.input_dtype,
                                   g.value_dtype, &input) != refm::InputVerdict::kOk) {
                *why = "input not representable";
                return false;
            }
            for (uint32_t hs = 0; hs < H; hs += hps) {
                const uint32_t hc = std::min(hps, H - hs);
                for (uint32_t ts = 0; ts < S; ts += tps) {
                    const uint32_t tc = std::min(tps, S - ts);
                    RawSection s = TensorSectionHeader(kKindSparse, t, l, hs, hc, ts, tc);
                    s.header[sec::kBits] = static_cast<uint8_t>(opts.bits);
                    s.header[sec::kQuantizer] = static_cast<uint8_t>(opts.quantizer);
                    s.header[sec::kGranularity] = static_cast<uint8_t>(opts.granularity);
                    s.header[sec::kOffsetLog2] = static_cast<uint8_t>(opts.keep_all ? 0 : opts.offset_interval_log2);
                    Put32(&s.header, sec::kFlags, opts.keep_all ? SQKV_SECTION_FLAG_ALL_KEPT : 0);
                    const ReferenceSparse body = ReferenceSparseBody(shape, opts, t, input, hs, hc, ts, tc);
                    s.body = body.body;
                    ApplyZstdLayer(&s, std::vector<size_t>(body.stream_lengths, body.stream_lengths + 4), level);
                    f.sections.push_back(s);
                }
                if (W > 0) {
                    RawSection s = TensorSectionHeader(kKindDense, t, l, hs, hc, S, W);
                    s.body.assign(Align8(2 * static_cast<size_t>(hc) * W * D), 0);
                    size_t at = 0;
                    for (uint32_t h = hs; h < hs + hc; h++)
                        for (uint32_t tok = S; tok < T; tok++)
                            for (uint32_t d = 0; d < D; d++, at += 2)
                                Put16(&s.body, at, input[(static_cast<size_t>(h) * T + tok) * D + d]);
                    add_whole(s);
                }
            }
        }

    Put16(&f.index.header, sec::kKind, kKindIndex);
    const size_t index_size = kIndexPrefix + kIndexEntry * f.sections.size() + kTailSize;
    Put64(&f.index.header, sec::kStoredSize, index_size);
    Put64(&f.index.header, sec::kDecodedSize, index_size);
    AssembleOptions ao;
    ao.fix_sizes = false;  // set above, codec 1 included
    *out = Assemble(f, ao);
    return true;
}

bool ReferenceDecodedBody(const RawSection &s, uint32_t head_dim, Bytes *body, std::string *why) {
    const uint8_t codec = s.header[sec::kCodec];
    if (codec == 0) {
        *body = s.body;
        return true;
    }
    if (codec != 1) {
        *why = "unknown codec";
        return false;
    }
    // Stream count: SPARSE four, other kinds one (§5.1); records then padded streams.
    const size_t n = s.kind() == kKindSparse ? 4 : 1;
    if (s.body.size() < 16 * n) {
        *why = "stream table truncated";
        return false;
    }
    body->clear();
    size_t at = 16 * n;
    for (size_t i = 0; i < n; i++) {
        const uint8_t method = s.body[16 * i];
        const uint64_t length = Get64(s.body, 16 * i + 8);
        if (at + length > s.body.size()) {
            *why = "stream beyond the stored body";
            return false;
        }
        if (method == 0) {
            body->insert(body->end(), s.body.begin() + at, s.body.begin() + at + length);
        } else {
            const unsigned long long size = ZSTD_getFrameContentSize(s.body.data() + at, length);
            if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR || size > (1u << 30)) {
                *why = "frame without content size";
                return false;
            }
            Bytes out(size);
            const size_t got = ZSTD_decompress(out.data(), out.size(), s.body.data() + at, length);
            if (ZSTD_isError(got) || got != size) {
                *why = "zstd frame does not decompress";
                return false;
            }
            body->insert(body->end(), out.begin(), out.end());
        }
        at += Align8(length);
    }
    (void)head_dim;
    if (body->size() != Get64(s.header, sec::kDecodedSize)) {
        *why = "streams do not add up to decoded_size";
        return false;
    }
    return true;
}

bool ReferenceDecodeSparse(const RawSection &s, uint32_t head_dim, sqkv_dtype e, std::vector<uint16_t> *values,
                           std::string *why) {
    const sqkv_tensor tensor = static_cast<sqkv_tensor>(s.tensor());
    const uint32_t hc = s.head_count(), tc = s.token_count(), D = head_dim;
    const uint32_t b = s.header[sec::kBits];
    const sqkv_quantizer q = static_cast<sqkv_quantizer>(s.header[sec::kQuantizer]);
    const sqkv_scale_granularity g = static_cast<sqkv_scale_granularity>(s.header[sec::kGranularity]);
    const uint32_t k = s.header[sec::kOffsetLog2];
    const bool all_kept = (Get32(s.header, sec::kFlags) & SQKV_SECTION_FLAG_ALL_KEPT) != 0;
    Bytes body;
    if (!ReferenceDecodedBody(s, head_dim, &body, why)) return false;

    // Positions in a local [hc][tc][D] tensor.
    const std::vector<std::vector<size_t>> tiles = refm::TilesOfSection(tensor, tc, D, 0, hc, 0, tc);
    const std::vector<std::vector<size_t>> groups = refm::GroupsOfSection(tensor, g, tc, D, 0, hc, 0, tc);
    const size_t N = tiles.size();
    std::vector<uint64_t> bitmaps(N, 0);
    size_t at = 0;
    if (all_kept) {
        for (size_t n = 0; n < N; n++)
            for (uint32_t i = 0; i < 64; i++)
                if (tiles[n][i] != SIZE_MAX) bitmaps[n] |= uint64_t{1} << (63 - i);
    } else {
        if (body.size() < 8 * N) {
            *why = "body shorter than its bitmaps";
            return false;
        }
        for (size_t n = 0; n < N; n++) bitmaps[n] = Get64(body, 8 * n);
        const uint64_t M = (N + (uint64_t{1} << k) - 1) >> k;
        at = Align8(8 * N) + Align8(4 * (M + 1));
    }
    const uint32_t Q = ParamsPerGroup(q);
    std::vector<size_t> group_of(static_cast<size_t>(hc) * tc * D, 0);
    for (size_t gi = 0; gi < groups.size(); gi++)
        for (size_t idx : groups[gi]) group_of[idx] = gi;
    std::vector<std::vector<uint16_t>> levels(groups.size());
    if (body.size() < at + 2 * groups.size() * Q) {
        *why = "body shorter than its scales";
        return false;
    }
    for (size_t gi = 0; gi < groups.size(); gi++) {
        const uint16_t sv = Get16(body, at + 2 * gi * Q), zv = Q == 2 ? Get16(body, at + 2 * gi * Q + 2) : 0;
        if (!refm::Levels(q, b, e, sv, zv, &levels[gi])) {
            *why = "group " + std::to_string(gi) + " has invalid parameters";
            return false;
        }
    }
    at += Align8(2 * groups.size() * Q);
    uint64_t P = 0;
    for (uint64_t m : bitmaps) P += static_cast<uint64_t>(__builtin_popcountll(m));
    const uint64_t payload_bytes = b == 16 ? 2 * P : (P * b + 7) / 8;
    if (body.size() != at + Align8(payload_bytes)) {
        *why = "decoded_size does not match the kept count";
        return false;
    }
    values->assign(static_cast<size_t>(hc) * tc * D, 0);
    uint64_t e_index = 0;
    for (size_t n = 0; n < N; n++)
        for (uint32_t i = 0; i < 64; i++) {
            if (!((bitmaps[n] >> (63 - i)) & 1u)) continue;
            const size_t idx = tiles[n][i];
            if (idx == SIZE_MAX) {
                *why = "bitmap bit of a padding element";
                return false;
            }
            if (b == 16)
                (*values)[idx] = Get16(body, at + 2 * e_index);
            else
                (*values)[idx] = levels[group_of[idx]][GetCode(body.data() + at, e_index, b)];
            e_index++;
        }
    return true;
}

bool ReferenceDecodeFile(const Bytes &file, std::vector<std::vector<uint16_t>> *tensors, std::string *why) {
    RawFile f;
    if (!ParseRaw(file, &f)) {
        *why = "not a structurally valid file";
        return false;
    }
    const uint32_t L = Get32(f.header, hdr::kLayers), H = Get32(f.header, hdr::kHeads),
                   D = Get32(f.header, hdr::kHeadDim), T = f.index_n_tokens;
    const sqkv_dtype e = static_cast<sqkv_dtype>(f.header[hdr::kValueDtype]);
    tensors->assign(2 * static_cast<size_t>(L), std::vector<uint16_t>(static_cast<size_t>(H) * T * D, 0));
    for (const RawSection &s : f.sections) {
        if (s.entry_flags & kEntrySuperseded) continue;
        if (s.kind() != kKindSparse && s.kind() != kKindDense) continue;
        std::vector<uint16_t> values;
        if (s.kind() == kKindSparse) {
            if (!ReferenceDecodeSparse(s, D, e, &values, why)) return false;
        } else {
            Bytes body;
            if (!ReferenceDecodedBody(s, D, &body, why)) return false;
            values.resize(static_cast<size_t>(s.head_count()) * s.token_count() * D);
            for (size_t i = 0; i < values.size(); i++) values[i] = Get16(body, 2 * i);
        }
        std::vector<uint16_t> &out = (*tensors)[2 * s.layer() + s.tensor()];
        for (uint32_t j = 0; j < s.head_count(); j++)
            for (uint32_t t = 0; t < s.token_count(); t++)
                std::memcpy(&out[((static_cast<size_t>(s.head_start()) + j) * T + s.token_start() + t) * D],
                            &values[(static_cast<size_t>(j) * s.token_count() + t) * D], 2 * static_cast<size_t>(D));
    }
    return true;
}

}  // namespace sqkv_test
