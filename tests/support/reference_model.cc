// reference_model.cc: see reference_model.h. Deliberately written in a different style from
// codec/src (integer rounding on the binary64 bit pattern, linear scans instead of searches) so the two
// implementations do not share mistakes.
#include "reference_model.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace refm {
namespace {

struct BinaryFormat {
    int mant_bits;  // stored mantissa bits
    int emax;       // largest unbiased exponent; the bias equals emax; emin = 1 - emax
    uint16_t quiet_nan;
};

constexpr BinaryFormat kFp16{10, 15, 0x7E00u};
constexpr BinaryFormat kBf16{7, 127, 0x7FC0u};

int LeadingBitIndex(uint64_t m) { return 63 - __builtin_clzll(m); }

// Rounds the exact binary64 value x to the format: the significand is cut at the quantum of x's
// binade (or of the smallest normal binade for subnormals) and rounded half to even on the integer.
uint16_t RoundToFormat(double x, const BinaryFormat &f) {
    uint64_t b;
    std::memcpy(&b, &x, sizeof b);
    const uint16_t sign = (b >> 63) ? 0x8000u : 0u;
    const int biased = static_cast<int>((b >> 52) & 0x7FFu);
    const uint64_t frac = b & ((uint64_t{1} << 52) - 1);
    const uint16_t inf = static_cast<uint16_t>((2 * f.emax + 1) << f.mant_bits);
    if (biased == 0x7FF) return frac ? f.quiet_nan : static_cast<uint16_t>(sign | inf);
    if (biased == 0 && frac == 0) return sign;
    uint64_t m;
    int e;  // x = m * 2^e
    if (biased == 0) {
        m = frac;
        e = -1074;
    } else {
        m = frac | (uint64_t{1} << 52);
        e = biased - 1075;
    }
    const int emin = 1 - f.emax;
    const int lead = e + LeadingBitIndex(m);
    const int quantum_exp = std::max(lead, emin) - f.mant_bits;
    uint64_t r;  // result significand in units of 2^quantum_exp
    int qe = quantum_exp;
    if (e >= qe) {
        r = m << (e - qe);
    } else {
        const int shift = qe - e;
        if (shift > 60) {
            r = 0;  // below a quarter of the quantum
        } else {
            r = m >> shift;
            const uint64_t rem = m & ((uint64_t{1} << shift) - 1);
            const uint64_t half = uint64_t{1} << (shift - 1);
            if (rem > half || (rem == half && (r & 1u))) r++;
        }
    }
    if (r == 0) return sign;
    if (r >> (f.mant_bits + 1)) {  // rounding carried into the next binade
        r >>= 1;
        qe++;
    }
    if (r >> f.mant_bits) {
        const int exponent = qe + f.mant_bits;
        if (exponent > f.emax) return static_cast<uint16_t>(sign | inf);
        const uint32_t bits = (static_cast<uint32_t>(exponent + f.emax) << f.mant_bits) |
                              static_cast<uint32_t>(r & ((uint64_t{1} << f.mant_bits) - 1));
        return static_cast<uint16_t>(sign | bits);
    }
    return static_cast<uint16_t>(sign | r);  // subnormal
}

double FormatToDouble(uint16_t h, const BinaryFormat &f) {
    const int exp_bits_max = 2 * f.emax + 1;
    const int biased = (h & 0x7FFF) >> f.mant_bits;
    const int mant = h & ((1 << f.mant_bits) - 1);
    double v;
    if (biased == exp_bits_max)
        v = mant ? std::nan("") : INFINITY;
    else if (biased == 0)
        v = std::ldexp(static_cast<double>(mant), 1 - f.emax - f.mant_bits);
    else
        v = std::ldexp(static_cast<double>(mant + (1 << f.mant_bits)), biased - f.emax - f.mant_bits);
    return (h & 0x8000u) ? -v : v;
}

uint16_t LoadU16(const uint8_t *p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

}  // namespace

double Fp16ToDouble(uint16_t h) { return FormatToDouble(h, kFp16); }
double Bf16ToDouble(uint16_t h) { return FormatToDouble(h, kBf16); }
double Fp32ToDouble(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return static_cast<double>(f);
}
double EToDouble(uint16_t h, sqkv_dtype e) { return e == SQKV_DTYPE_BF16 ? Bf16ToDouble(h) : Fp16ToDouble(h); }

uint16_t DoubleToFp16(double x) { return RoundToFormat(x, kFp16); }
uint16_t DoubleToBf16(double x) { return RoundToFormat(x, kBf16); }
uint16_t DoubleToE(double x, sqkv_dtype e) { return e == SQKV_DTYPE_BF16 ? DoubleToBf16(x) : DoubleToFp16(x); }

// Not finite exactly when every exponent bit is set (fp16: 5 bits at 10..14; bf16: 8 bits at 7..14).
bool EIsFinite(uint16_t h, sqkv_dtype e) {
    const uint16_t exponent = e == SQKV_DTYPE_BF16 ? 0x7F80u : 0x7C00u;
    return (h & exponent) != exponent;
}
bool EIsZero(uint16_t h) { return (h & 0x7FFFu) == 0; }

InputVerdict ConvertInput(const void *data, size_t count, sqkv_dtype dtype, sqkv_dtype e,
                          std::vector<uint16_t> *out) {
    const uint8_t *p = static_cast<const uint8_t *>(data);
    out->resize(count);
    for (size_t i = 0; i < count; i++) {
        double x;
        if (dtype == SQKV_DTYPE_FP32) {
            uint32_t u = static_cast<uint32_t>(p[4 * i]) | (static_cast<uint32_t>(p[4 * i + 1]) << 8) |
                         (static_cast<uint32_t>(p[4 * i + 2]) << 16) |
                         (static_cast<uint32_t>(p[4 * i + 3]) << 24);
            x = Fp32ToDouble(u);
        } else if (dtype == SQKV_DTYPE_BF16) {
            x = Bf16ToDouble(LoadU16(p + 2 * i));
        } else {
            x = Fp16ToDouble(LoadU16(p + 2 * i));
        }
        if (!std::isfinite(x)) return InputVerdict::kNonFinite;
        (*out)[i] = DoubleToE(x, e);
        if (!EIsFinite((*out)[i], e)) return InputVerdict::kOutOfRange;
    }
    return InputVerdict::kOk;
}

uint32_t KeepCount(bool prune, double sparsity, uint32_t head_dim) {
    if (!prune) return head_dim;
    const double pruned = std::floor(sparsity * static_cast<double>(head_dim));
    const double keep = static_cast<double>(head_dim) - pruned;
    return keep < 1.0 ? 1u : static_cast<uint32_t>(keep);
}

std::vector<uint32_t> KeptChannels(const uint16_t *row, uint32_t head_dim, sqkv_dtype e, bool prune,
                                   double sparsity) {
    std::vector<uint32_t> candidates;
    std::vector<double> magnitude(head_dim);
    for (uint32_t d = 0; d < head_dim; d++) {
        magnitude[d] = std::fabs(EToDouble(row[d], e));
        if (!EIsZero(row[d])) candidates.push_back(d);
    }
    const uint32_t keep = KeepCount(prune, sparsity, head_dim);
    if (candidates.size() > keep) {
        std::stable_sort(candidates.begin(), candidates.end(),
                         [&](uint32_t a, uint32_t b) { return magnitude[a] > magnitude[b]; });
        candidates.resize(keep);
        std::sort(candidates.begin(), candidates.end());
    }
    return candidates;
}

bool Levels(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, uint16_t s, uint16_t z,
            std::vector<uint16_t> *levels) {
    const uint32_t n = 1u << bits;
    levels->assign(n, 0);
    const double sd = EToDouble(s, e);
    if (!std::isfinite(sd) || (s & 0x8000u)) return false;
    if (q == SQKV_QUANT_SYMMETRIC) {
        for (uint32_t c = 0; c < n; c++) {
            const double odd = static_cast<double>(2 * static_cast<int64_t>(c) + 1 - static_cast<int64_t>(n));
            (*levels)[c] = DoubleToE(odd * sd, e);
            if (!EIsFinite((*levels)[c], e)) return false;
        }
        return true;
    }
    const double zd = EToDouble(z, e);
    if (!std::isfinite(zd)) return false;
    for (uint32_t c = 0; c < n; c++) {
        volatile double product = static_cast<double>(c) * sd;  // no fused multiply-add
        volatile double sum = product + zd;
        (*levels)[c] = DoubleToE(sum, e);
        if (!EIsFinite((*levels)[c], e)) return false;
    }
    return true;
}

void ChooseParams(sqkv_quantizer q, uint32_t bits, sqkv_dtype e, const std::vector<uint16_t> &values,
                  uint16_t *s, uint16_t *z) {
    *s = 0;
    *z = 0;
    if (values.empty()) return;
    const double steps = static_cast<double>((1u << bits) - 1);
    std::vector<uint16_t> levels;
    double range;
    if (q == SQKV_QUANT_SYMMETRIC) {
        range = 0;
        for (uint16_t v : values) range = std::max(range, std::fabs(EToDouble(v, e)));
    } else {
        double lo = INFINITY, hi = -INFINITY;
        for (uint16_t v : values) {
            const double d = EToDouble(v, e);
            if (d < lo) {
                lo = d;
                *z = v;
            }
            hi = std::max(hi, d);
        }
        range = hi - lo;
    }
    *s = DoubleToE(range / steps, e);
    if (range > 0 && EIsZero(*s)) *s = 1;  // the smallest positive (subnormal) E value
    while (*s != 0 && !Levels(q, bits, e, *s, *z, &levels)) *s = static_cast<uint16_t>(*s - 1);
}

// NearestCode on levels already converted to binary64 (exact).
uint32_t NearestCodeOf(const std::vector<double> &levels, double xd) {
    const uint32_t n = static_cast<uint32_t>(levels.size());
    uint32_t above = 0;  // first code whose level is > x
    while (above < n && levels[above] <= xd) above++;
    uint32_t chosen;
    if (above == 0) {
        chosen = 0;
    } else if (above == n) {
        chosen = n - 1;
    } else {
        const double below_distance = xd - levels[above - 1];
        const double above_distance = levels[above] - xd;
        chosen = above_distance < below_distance ? above : above - 1;
    }
    while (chosen > 0 && levels[chosen - 1] == levels[chosen]) chosen--;
    return chosen;
}

std::vector<double> LevelValues(const std::vector<uint16_t> &levels, sqkv_dtype e) {
    std::vector<double> v(levels.size());
    for (size_t c = 0; c < levels.size(); c++) v[c] = EToDouble(levels[c], e);
    return v;
}

uint32_t NearestCode(const std::vector<uint16_t> &levels, sqkv_dtype e, uint16_t x) {
    // §14: the level just below (or at) x and the one above are the candidates; their distances are
    // computed in binary64 (one rounding for bf16) and the tie goes to the lower code. Among equal levels
    // the lowest code is the one chosen. Levels of a valid group never decrease with the code.
    return NearestCodeOf(LevelValues(levels, e), EToDouble(x, e));
}

namespace {

// Quantizes the elements `members` (indices into the tensor) as one parameter group.
void QuantizeGroup(const Options &opts, sqkv_dtype e, const std::vector<uint16_t> &input,
                   const std::vector<size_t> &members, std::vector<uint16_t> *decoded) {
    if (members.empty()) return;
    std::vector<uint16_t> values;
    values.reserve(members.size());
    for (size_t i : members) values.push_back(input[i]);
    uint16_t s, z;
    ChooseParams(opts.quantizer, opts.bits, e, values, &s, &z);
    std::vector<uint16_t> levels;
    if (!Levels(opts.quantizer, opts.bits, e, s, z, &levels)) std::abort();  // ChooseParams guarantees
    const std::vector<double> level_values = LevelValues(levels, e);
    for (size_t i : members) (*decoded)[i] = levels[NearestCodeOf(level_values, EToDouble(input[i], e))];
}

}  // namespace

Tensor EncodeDecode(const Shape &shape, const Options &opts, sqkv_tensor tensor,
                    const std::vector<uint16_t> &input) {
    const uint32_t H = shape.heads, T = shape.tokens, D = shape.head_dim;
    const uint32_t S = T - shape.dense_window;
    Tensor out;
    out.decoded.assign(static_cast<size_t>(H) * T * D, 0);
    out.kept.assign(out.decoded.size(), 0);
    auto at = [&](uint32_t h, uint32_t t, uint32_t d) { return (static_cast<size_t>(h) * T + t) * D + d; };

    for (uint32_t h = 0; h < H; h++) {
        for (uint32_t t = S; t < T; t++)
            for (uint32_t d = 0; d < D; d++) {
                out.decoded[at(h, t, d)] = input[at(h, t, d)];
                out.kept[at(h, t, d)] = 1;
            }
        for (uint32_t t = 0; t < S; t++) {
            if (opts.keep_all) {  // §14 keep-all: zeros too
                for (uint32_t d = 0; d < D; d++) out.kept[at(h, t, d)] = 1;
                continue;
            }
            for (uint32_t d : KeptChannels(&input[at(h, t, 0)], D, shape.e, opts.prune, opts.sparsity))
                out.kept[at(h, t, d)] = 1;
        }
    }

    if (opts.quantizer == SQKV_QUANT_EXACT) {
        for (uint32_t h = 0; h < H; h++)
            for (uint32_t t = 0; t < S; t++)
                for (uint32_t d = 0; d < D; d++)
                    if (out.kept[at(h, t, d)]) out.decoded[at(h, t, d)] = input[at(h, t, d)];
        return out;
    }

    // Parameter groups live inside one section: heads in runs of heads_per_section, tokens of the
    // sparse region in runs of tokens_per_section; tile positions are relative to the section start.
    const uint32_t tokens_per_section = opts.tokens_per_section ? opts.tokens_per_section : std::max(S, 1u);
    // A tile's elements split into groups of `span`: the whole tile, or its two halves (§7.4 PER_HALF_TILE:
    // keys 32 tokens of a channel, values 32 channels of a token). Tiles start every 64 tokens / channels.
    const uint32_t span = opts.granularity == SQKV_SCALE_PER_HALF_TILE ? 32 : 64;
    std::vector<size_t> members;
    for (uint32_t h = 0; h < H; h++) {
        for (uint32_t ts = 0; ts < S; ts += tokens_per_section) {
            const uint32_t te = std::min(S, ts + tokens_per_section);
            if (opts.granularity == SQKV_SCALE_PER_HEAD) {
                members.clear();
                for (uint32_t t = ts; t < te; t++)
                    for (uint32_t d = 0; d < D; d++)
                        if (out.kept[at(h, t, d)]) members.push_back(at(h, t, d));
                QuantizeGroup(opts, shape.e, input, members, &out.decoded);
            } else if (tensor == SQKV_TENSOR_K) {
                for (uint32_t chunk = ts; chunk < te; chunk += span)
                    for (uint32_t d = 0; d < D; d++) {
                        members.clear();
                        for (uint32_t t = chunk; t < std::min(te, chunk + span); t++)
                            if (out.kept[at(h, t, d)]) members.push_back(at(h, t, d));
                        QuantizeGroup(opts, shape.e, input, members, &out.decoded);
                    }
            } else {
                for (uint32_t t = ts; t < te; t++)
                    for (uint32_t block = 0; block < D; block += span) {
                        members.clear();
                        for (uint32_t d = block; d < std::min(D, block + span); d++)
                            if (out.kept[at(h, t, d)]) members.push_back(at(h, t, d));
                        QuantizeGroup(opts, shape.e, input, members, &out.decoded);
                    }
            }
        }
    }
    return out;
}

uint32_t SectionFeatures(const Options &opts) {
    uint32_t features = 0;
    if (opts.quantizer == SQKV_QUANT_EXACT) return 0;
    if (opts.bits != 2 && opts.bits != 4 && opts.bits != 8) features |= SQKV_FEATURE_CODE_WIDTHS;
    if (opts.granularity == SQKV_SCALE_PER_HALF_TILE) features |= SQKV_FEATURE_HALF_TILE_SCALES;
    if (opts.keep_all) features |= SQKV_FEATURE_ALL_KEPT;
    return features;
}

std::vector<std::vector<size_t>> TilesOfSection(sqkv_tensor tensor, uint32_t tokens, uint32_t head_dim,
                                                uint32_t head_start, uint32_t head_count, uint32_t token_start,
                                                uint32_t token_count) {
    const uint32_t D = head_dim, TC = token_count;
    auto at = [&](uint32_t h, uint32_t t, uint32_t d) {
        return (static_cast<size_t>(h) * tokens + token_start + t) * D + d;
    };
    std::vector<std::vector<size_t>> tiles;
    for (uint32_t j = 0; j < head_count; j++) {
        const uint32_t h = head_start + j;
        if (tensor == SQKV_TENSOR_K) {
            // Tile c * D + d: token chunk c, channel d; element i is token 64c + i.
            for (uint32_t c = 0; 64 * c < TC; c++)
                for (uint32_t d = 0; d < D; d++) {
                    std::vector<size_t> tile(64, SIZE_MAX);
                    for (uint32_t i = 0; i < 64; i++)
                        if (64 * c + i < TC) tile[i] = at(h, 64 * c + i, d);
                    tiles.push_back(tile);
                }
        } else {
            // Tile 64 * HB * q + hb * R + r: token 64q + r, channel block hb; element i is channel 64hb + i.
            const uint32_t HB = (D + 63) / 64;
            for (uint32_t q = 0; 64 * q < TC; q++) {
                const uint32_t R = std::min(64u, TC - 64 * q);
                const size_t base = tiles.size();
                tiles.resize(base + static_cast<size_t>(HB) * R);
                for (uint32_t hb = 0; hb < HB; hb++)
                    for (uint32_t r = 0; r < R; r++) {
                        std::vector<size_t> tile(64, SIZE_MAX);
                        for (uint32_t i = 0; i < 64; i++)
                            if (64 * hb + i < D) tile[i] = at(h, 64 * q + r, 64 * hb + i);
                        tiles[base + static_cast<size_t>(hb) * R + r] = tile;
                    }
            }
        }
    }
    return tiles;
}

std::vector<std::vector<size_t>> GroupsOfSection(sqkv_tensor tensor, sqkv_scale_granularity g, uint32_t tokens,
                                                 uint32_t head_dim, uint32_t head_start, uint32_t head_count,
                                                 uint32_t token_start, uint32_t token_count) {
    const std::vector<std::vector<size_t>> tiles =
        TilesOfSection(tensor, tokens, head_dim, head_start, head_count, token_start, token_count);
    std::vector<std::vector<size_t>> groups;
    if (g == SQKV_SCALE_NONE) return groups;
    const size_t tiles_per_head = head_count ? tiles.size() / head_count : 0;
    if (g == SQKV_SCALE_PER_HEAD) groups.resize(head_count);
    else groups.resize(tiles.size() * (g == SQKV_SCALE_PER_HALF_TILE ? 2 : 1));
    for (size_t n = 0; n < tiles.size(); n++)
        for (size_t i = 0; i < 64; i++) {
            if (tiles[n][i] == SIZE_MAX) continue;
            const size_t group = g == SQKV_SCALE_PER_HEAD ? n / tiles_per_head
                                 : g == SQKV_SCALE_PER_TILE ? n
                                                            : 2 * n + (i >= 32 ? 1 : 0);
            groups[group].push_back(tiles[n][i]);
        }
    return groups;
}

bool ConvertOutput(const std::vector<uint16_t> &decoded, sqkv_dtype e, sqkv_dtype out_dtype,
                   std::vector<uint8_t> *out) {
    const size_t width = out_dtype == SQKV_DTYPE_FP32 ? 4 : 2;
    out->assign(decoded.size() * width, 0);
    bool ok = true;
    for (size_t i = 0; i < decoded.size(); i++) {
        uint8_t *p = out->data() + i * width;
        if (out_dtype == SQKV_DTYPE_FP32) {
            const float f = static_cast<float>(EToDouble(decoded[i], e));
            uint32_t u;
            std::memcpy(&u, &f, sizeof u);
            for (int k = 0; k < 4; k++) p[k] = static_cast<uint8_t>(u >> (8 * k));
            continue;
        }
        uint16_t h = decoded[i];
        if (out_dtype != e) {
            h = out_dtype == SQKV_DTYPE_FP16 ? DoubleToFp16(Bf16ToDouble(h)) : DoubleToBf16(Fp16ToDouble(h));
            if (!EIsFinite(h, out_dtype)) ok = false;
        }
        p[0] = static_cast<uint8_t>(h);
        p[1] = static_cast<uint8_t>(h >> 8);
    }
    return ok;
}

MustafarLayout MustafarFromDecoded(sqkv_tensor tensor, uint32_t sparse_tokens, uint32_t head_dim,
                                   const uint16_t *decoded, const uint8_t *kept) {
    MustafarLayout m;
    const uint32_t S = sparse_tokens, D = head_dim;
    // Each tile as the list of (token, channel) of its elements 0..63 (fewer where it has padding).
    std::vector<std::vector<std::pair<uint32_t, uint32_t>>> tiles;
    if (tensor == SQKV_TENSOR_K) {
        for (uint32_t chunk = 0; chunk * 64 < S; chunk++)
            for (uint32_t d = 0; d < D; d++) {
                std::vector<std::pair<uint32_t, uint32_t>> tile;
                for (uint32_t i = 0; i < 64 && chunk * 64 + i < S; i++) tile.push_back({chunk * 64 + i, d});
                tiles.push_back(tile);
            }
    } else {
        const uint32_t blocks_per_token = (D + 63) / 64;
        for (uint32_t q = 0; q * 64 < S; q++) {
            const uint32_t rows = std::min(64u, S - 64 * q);
            for (uint32_t hb = 0; hb < blocks_per_token; hb++)
                for (uint32_t r = 0; r < rows; r++) {
                    std::vector<std::pair<uint32_t, uint32_t>> tile;
                    for (uint32_t i = 0; i < 64 && 64 * hb + i < D; i++) tile.push_back({64 * q + r, 64 * hb + i});
                    tiles.push_back(tile);
                }
        }
    }
    m.accum_counts.push_back(0);
    for (const auto &tile : tiles) {
        uint64_t bitmap = 0;
        uint32_t nnz = 0;
        for (size_t i = 0; i < tile.size(); i++) {
            const size_t idx = static_cast<size_t>(tile[i].first) * D + tile[i].second;
            if (!kept[idx]) continue;
            bitmap |= uint64_t{1} << (63 - i);
            m.values.push_back(decoded[idx]);
            nnz++;
        }
        while (m.values.size() % 8) m.values.push_back(0);
        m.bitmaps.push_back(static_cast<int64_t>(bitmap));
        m.accum_counts.push_back(m.accum_counts.back() + static_cast<int32_t>(((nnz + 7) & ~7u) / 2));
    }
    for (int i = 0; i < 8; i++) m.values.push_back(0);
    return m;
}

}  // namespace refm
