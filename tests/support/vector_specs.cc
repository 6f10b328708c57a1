// vector_specs.cc: see vector_specs.h. Every option is spelled out (no library defaults), so a change of
// sqkv_writer_options_default cannot change a vector's bytes.
#include "vector_specs.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>

namespace sqkv_test {
namespace {

sqkv_writer_options Options(sqkv_prune_mode prune, double sparsity, uint32_t bits, sqkv_quantizer q,
                            sqkv_scale_granularity g, uint32_t k, uint32_t heads_per_section,
                            uint32_t tokens_per_section) {
    sqkv_writer_options o{};
    o.prune = prune;
    o.sparsity = sparsity;
    o.payload_bits = bits;
    o.quantizer = q;
    o.scales = g;
    o.offset_interval_log2 = k;
    o.heads_per_section = heads_per_section;
    o.tokens_per_section = tokens_per_section;
    return o;
}

VectorSpec Spec(const char *name, const char *covers, sqkv_geometry g, sqkv_dtype input,
                sqkv_writer_options o, uint64_t seed, bool ancillary, bool hand_written = false) {
    return VectorSpec{name, covers, g, input, o, seed, ancillary, hand_written};
}

constexpr sqkv_prune_mode kMag = SQKV_PRUNE_MAGNITUDE;
constexpr sqkv_dtype kF16 = SQKV_DTYPE_FP16, kBf16 = SQKV_DTYPE_BF16, kF32 = SQKV_DTYPE_FP32;

}  // namespace

const VectorSpec &ExampleVector() {
    static const VectorSpec spec =
        Spec("v1_example", "the worked example of spec/EXAMPLE.md: 2-bit SYMMETRIC PER_HEAD, dense window 1, "
                           "tokens + fingerprint + metadata, head_dim 8",
             MakeGeometry(1, 1, 8, 4, 1, kF16), kF32,
             Options(kMag, 0.5, 2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD, 4, 1, 0), 0, true, true);
    return spec;
}

const std::vector<VectorSpec> &GoldenVectors() {
    static const std::vector<VectorSpec> specs = {
        Spec("v1_sym2_head", "2-bit SYMMETRIC PER_HEAD (the default options), 2 layers",
             MakeGeometry(2, 1, 64, 64, 0, kF16), kF32,
             Options(kMag, 0.7, 2, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD, 4, 1, 0), 101, false),
        Spec("v1_asym4_tile_d40_t70", "4-bit ASYMMETRIC PER_TILE; head_dim 40 and 70 tokens: padding in value "
                                      "and key tiles",
             MakeGeometry(1, 1, 40, 70, 0, kF16), kF32,
             Options(kMag, 0.5, 4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, 4, 1, 0), 102, false),
        Spec("v1_sym8_tile_fp16in", "8-bit SYMMETRIC PER_TILE from fp16 input",
             MakeGeometry(1, 1, 64, 32, 0, kF16), kF16,
             Options(kMag, 0.7, 8, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, 4, 1, 0), 103, false),
        Spec("v1_asym2_head_bf16", "2-bit ASYMMETRIC PER_HEAD, element type bf16 from bf16 input, dense window 8",
             MakeGeometry(1, 1, 48, 40, 8, kBf16), kBf16,
             Options(kMag, 0.6, 2, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HEAD, 4, 1, 0), 104, false),
        Spec("v1_exact_window_anc", "16-bit EXACT, dense window 6, TOKENS + FINGERPRINT + METADATA",
             MakeGeometry(1, 1, 32, 24, 6, kF16), kF32,
             Options(kMag, 0.75, 16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 4, 1, 0), 105, true),
        Spec("v1_sym4_split", "4-bit SYMMETRIC PER_HEAD, 3 heads in sections of 2, sparse region split at 64 "
                              "tokens (68 = 64 + 4), k = 1, dense window 2",
             MakeGeometry(1, 3, 8, 70, 2, kF16), kF32,
             Options(kMag, 0.7, 4, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HEAD, 1, 2, 64), 106, false),
        Spec("v1_exact_bf16_all_dense", "element type bf16 from fp32, every token in the dense window (no SPARSE "
                                        "section)",
             MakeGeometry(1, 1, 16, 10, 10, kBf16), kF32,
             Options(SQKV_PRUNE_NONE, 0.0, 16, SQKV_QUANT_EXACT, SQKV_SCALE_NONE, 4, 1, 0), 107, false),
        Spec("v1_asym8_head_noprune", "8-bit ASYMMETRIC PER_HEAD without pruning (every nonzero kept), k = 0",
             MakeGeometry(1, 2, 24, 20, 0, kF16), kF32,
             Options(SQKV_PRUNE_NONE, 0.0, 8, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HEAD, 0, 1, 0), 108, false),
        ExampleVector(),
        // Format 1.1 (FORMAT.md §4.1): each uses required features, so its header has version_minor 1.
        Spec("v1_1_sym3_tile_d40_t70", "1.1 CODE_WIDTHS: 3-bit SYMMETRIC PER_TILE, codes that cross byte boundaries; "
                                       "head_dim 40 and 70 tokens: padding in value and key tiles",
             MakeGeometry(1, 1, 40, 70, 0, kF16), kF32,
             Options(kMag, 0.5, 3, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, 4, 1, 0), 111, false),
        Spec("v1_1_asym5_head_bf16", "1.1 CODE_WIDTHS: 5-bit ASYMMETRIC PER_HEAD, element type bf16 from bf16 input, "
                                     "dense window 8",
             MakeGeometry(1, 1, 48, 40, 8, kBf16), kBf16,
             Options(kMag, 0.6, 5, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HEAD, 4, 1, 0), 112, false),
        Spec("v1_1_asym4_half_tile_d80_t66", "1.1 HALF_TILE_SCALES: 4-bit ASYMMETRIC PER_HALF_TILE; head_dim 80 and 66 "
                                             "tokens: value and key half tiles that are all padding (empty groups), k = 2",
             MakeGeometry(1, 1, 80, 66, 0, kF16), kF32,
             Options(kMag, 0.7, 4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HALF_TILE, 2, 1, 0), 113, false),
        Spec("v1_1_all_kept_asym4_tile", "1.1 ALL_KEPT: keep-all 4-bit ASYMMETRIC PER_TILE (no bitmaps, zeros coded), "
                                         "dense window 4",
             MakeGeometry(1, 1, 32, 40, 4, kF16), kF32,
             Options(SQKV_PRUNE_KEEP_ALL, 0.0, 4, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_TILE, 0, 1, 0), 114, false),
        Spec("v1_1_all_kept_asym2_half_split", "1.1 ALL_KEPT + HALF_TILE_SCALES: keep-all 2-bit ASYMMETRIC PER_HALF_TILE "
                                               "(KIVI's setting), 2 heads in one section, sparse region split at 64 "
                                               "tokens (96 = 64 + 32), head_dim 16, dense window 4",
             MakeGeometry(1, 2, 16, 100, 4, kF16), kF32,
             Options(SQKV_PRUNE_KEEP_ALL, 0.0, 2, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HALF_TILE, 0, 2, 64), 115, false),
        Spec("v1_1_sym7_half_tile_noprune", "1.1 CODE_WIDTHS + HALF_TILE_SCALES: 7-bit SYMMETRIC PER_HALF_TILE without "
                                            "pruning (every nonzero kept), k = 1",
             MakeGeometry(1, 1, 24, 36, 0, kF16), kF32,
             Options(SQKV_PRUNE_NONE, 0.0, 7, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_HALF_TILE, 1, 1, 0), 116, false),
        Spec("v1_1_asym6_half_all_features", "1.1, all three features: keep-all 6-bit ASYMMETRIC PER_HALF_TILE, "
                                             "element type bf16 from fp32",
             MakeGeometry(1, 1, 24, 20, 2, kBf16), kF32,
             Options(SQKV_PRUNE_KEEP_ALL, 0.0, 6, SQKV_QUANT_ASYMMETRIC, SQKV_SCALE_PER_HALF_TILE, 0, 1, 0), 117, false),
        Spec("v1_1_sym1_tile_t70", "1.1 CODE_WIDTHS: 1-bit SYMMETRIC PER_TILE (levels -s and +s), 70 tokens, "
                                   "dense window 3",
             MakeGeometry(1, 1, 32, 70, 3, kF16), kF32,
             Options(kMag, 0.5, 1, SQKV_QUANT_SYMMETRIC, SQKV_SCALE_PER_TILE, 4, 1, 0), 118, false),
    };
    return specs;
}

Cache ExampleCache() {
    const VectorSpec &spec = ExampleVector();
    // [token][channel]; token 3 is the dense window.
    static const float k[4][8] = {{0.5f, -1.25f, 0, 2, -0.25f, 0.75f, -3, 1},
                                  {1.5f, 0.25f, -0.5f, -2.5f, 1, 0, 0.125f, -1.75f},
                                  {-0.75f, 3.5f, 1.25f, -0.5f, 0.25f, -1, 2.25f, 0},
                                  {0.25f, -0.5f, 0.75f, -1, 1.25f, -1.5f, 1.75f, -2}};
    static const float v[4][8] = {{1, -2, 0.5f, 0, 3, -0.25f, 1.5f, -1},
                                  {-0.5f, 0.75f, -3.25f, 2, 0, 1.25f, -1.5f, 0.25f},
                                  {2.5f, 0, -0.75f, 1, -1.25f, 0.5f, -2, 1.75f},
                                  {-1, 1, -1, 1, -1, 1, -1, 1}};
    Cache c;
    c.geometry = spec.geometry;
    c.input_dtype = SQKV_DTYPE_FP32;
    c.k.emplace_back(sizeof k);
    c.v.emplace_back(sizeof v);
    std::memcpy(c.k[0].data(), k, sizeof k);  // little-endian machine (sqkv.h requires it)
    std::memcpy(c.v[0].data(), v, sizeof v);
    c.has_tokens = true;
    c.tokens = {1, 450, 4996, 29889};
    const char fingerprint[] = "example1";
    c.fingerprint.assign(fingerprint, fingerprint + 8);
    c.metadata = {{"model", "tiny-example"}};
    return c;
}

Cache VectorInput(const VectorSpec &spec) {
    if (spec.hand_written) return ExampleCache();
    Cache c = MakeRandomCache(spec.geometry, spec.input_dtype, spec.seed);
    if (spec.ancillary) {
        c.has_tokens = true;
        for (uint32_t t = 0; t < spec.geometry.n_tokens; t++)
            c.tokens.push_back(static_cast<int32_t>((7919u * t + spec.seed) % 50257u));
        for (uint32_t i = 0; i < 32; i++) c.fingerprint.push_back(static_cast<uint8_t>(37u * i + spec.seed));
        c.metadata = {{"model", "sqkv-test-vector"}, {"seed", std::to_string(spec.seed)}};
    }
    return c;
}

sqkv_error DecodedChecksums(const Bytes &file, std::vector<uint64_t> *checksums) {
    checksums->clear();
    ReaderPtr r;
    sqkv_error err = OpenMemory(file, &r);
    if (err) return err;
    if ((err = sqkv_reader_verify(r.get()))) return err;
    sqkv_geometry g;
    if ((err = sqkv_reader_geometry(r.get(), &g))) return err;
    Bytes out;
    for (uint32_t l = 0; l < g.n_layers; l++)
        for (sqkv_tensor t : {SQKV_TENSOR_K, SQKV_TENSOR_V}) {
            if ((err = DecodeTensor(r.get(), l, t, SQKV_DTYPE_FP32, &out))) return err;
            checksums->push_back(Xxh3(out.data(), out.size()));
        }
    return SQKV_OK;
}

std::string VectorPath(const VectorSpec &spec, const std::string &dir) { return dir + "/" + spec.name + ".sqkv"; }
std::string SidecarPath(const VectorSpec &spec, const std::string &dir) {
    return dir + "/" + spec.name + ".decoded.txt";
}

std::string FormatSidecar(const VectorSpec &spec, const Sidecar &s) {
    std::ostringstream out;
    char hex[32];
    out << "# " << spec.name << ".sqkv: " << spec.covers << "\n";
    out << "# Written by tests/make_vectors (never overwritten); described in spec/TEST_VECTORS.md.\n";
    out << "# decoded: XXH3-64 (seed 0) of the decoded [heads, tokens, head_dim] fp32 little-endian output.\n";
    out << "file_size " << s.file_size << "\n";
    std::snprintf(hex, sizeof hex, "%016" PRIx64, s.file_xxh3);
    out << "file_xxh3 " << hex << "\n";
    for (size_t i = 0; i < s.decoded.size(); i++) {
        std::snprintf(hex, sizeof hex, "%016" PRIx64, s.decoded[i]);
        out << "decoded " << i / 2 << " " << (i % 2 ? "V" : "K") << " " << hex << "\n";
    }
    return out.str();
}

bool ParseSidecar(const std::string &text, Sidecar *out) {
    *out = Sidecar();
    std::istringstream in(text);
    std::string line;
    bool have_size = false, have_hash = false;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream fields(line);
        std::string key;
        fields >> key;
        if (key == "file_size") {
            have_size = static_cast<bool>(fields >> out->file_size);
        } else if (key == "file_xxh3") {
            fields >> std::hex >> out->file_xxh3;
            have_hash = !fields.fail();
        } else if (key == "decoded") {
            size_t layer;
            std::string tensor;
            uint64_t value;
            if (!(fields >> layer >> tensor >> std::hex >> value)) return false;
            const size_t index = 2 * layer + (tensor == "V" ? 1 : 0);
            if (index != out->decoded.size() || (tensor != "K" && tensor != "V")) return false;
            out->decoded.push_back(value);
        } else {
            return false;
        }
    }
    return have_size && have_hash && !out->decoded.empty();
}

const char kVectorsBegin[] = "<!-- BEGIN GENERATED by tests/make_vectors --vectors-doc; do not edit -->";
const char kVectorsEnd[] = "<!-- END GENERATED -->";

namespace {

uint32_t Get32LE(const Bytes &b, size_t at) {
    return static_cast<uint32_t>(b[at]) | (static_cast<uint32_t>(b[at + 1]) << 8) |
           (static_cast<uint32_t>(b[at + 2]) << 16) | (static_cast<uint32_t>(b[at + 3]) << 24);
}
uint32_t Get16LE(const Bytes &b, size_t at) { return static_cast<uint32_t>(b[at]) | (static_cast<uint32_t>(b[at + 1]) << 8); }

std::string FeatureNames(uint32_t features) {
    static const char *names[] = {"CODE_WIDTHS", "HALF_TILE_SCALES", "ALL_KEPT"};
    std::string out;
    for (int bit = 0; bit < 3; bit++)
        if (features & (1u << bit)) out += std::string(out.empty() ? "" : ", ") + names[bit];
    return out;
}

const char *DtypeName(sqkv_dtype d) {
    return d == SQKV_DTYPE_FP16 ? "fp16" : d == SQKV_DTYPE_BF16 ? "bf16" : d == SQKV_DTYPE_FP32 ? "fp32" : "?";
}

}  // namespace

std::string VectorsDocBlock(const std::string &dir) {
    static const char *quantizers[] = {"EXACT", "SYMMETRIC", "ASYMMETRIC"};
    static const char *granularities[] = {"NONE", "PER_HEAD", "PER_TILE", "PER_HALF_TILE"};
    std::ostringstream out;
    out << "\n";
    for (const VectorSpec &v : GoldenVectors()) {
        const sqkv_geometry &g = v.geometry;
        const sqkv_writer_options &o = v.options;
        out << "### " << v.name << ".sqkv\n\n";
        out << "Covers: " << v.covers << ".\n\n";
        out << "| | |\n|---|---|\n";
        out << "| geometry | " << g.n_layers << " layer(s), " << g.n_kv_heads << " KV head(s), head_dim " << g.head_dim
            << ", " << g.n_tokens << " tokens, dense window " << g.dense_window << " |\n";
        out << "| element type / input dtype | " << DtypeName(g.value_dtype) << " / " << DtypeName(v.input_dtype)
            << " |\n";
        char sparsity[32];
        std::snprintf(sparsity, sizeof sparsity, "%g", o.sparsity);
        out << "| pruning | "
            << (o.prune == SQKV_PRUNE_MAGNITUDE ? std::string("magnitude, sparsity ") + sparsity
                : o.prune == SQKV_PRUNE_KEEP_ALL ? std::string("keep all (every element, zeros included: ALL_KEPT sections)")
                                                 : std::string("none (every nonzero kept)"))
            << " |\n";
        out << "| payload | " << o.payload_bits << " bits, " << quantizers[o.quantizer] << ", "
            << granularities[o.scales] << " |\n";
        out << "| layout | offset_interval_log2 " << o.offset_interval_log2 << ", heads_per_section "
            << o.heads_per_section << ", tokens_per_section " << o.tokens_per_section << (o.tokens_per_section ? "" : " (all)")
            << ", zstd_level " << o.zstd_level << (o.zstd_level ? "" : " (codec 0 only)") << " |\n";
        Bytes vector_file;
        if (ReadFile(VectorPath(v, dir), &vector_file) && vector_file.size() >= 20 && Get32LE(vector_file, 16) != 0)
            out << "| format | 1." << Get16LE(vector_file, 10) << ", required_features 0x" << std::hex
                << Get32LE(vector_file, 16) << std::dec << " (" << FeatureNames(Get32LE(vector_file, 16)) << ") |\n";
        out << "| input | " << (v.hand_written ? std::string("hand-written (spec/EXAMPLE.md)")
                                               : "generator seed " + std::to_string(v.seed))
            << (v.ancillary ? "; with TOKENS, FINGERPRINT, METADATA" : "") << " |\n";
        Bytes text;
        Sidecar sc;
        if (ReadFile(SidecarPath(v, dir), &text) && ParseSidecar(std::string(text.begin(), text.end()), &sc)) {
            char hex[32];
            std::snprintf(hex, sizeof hex, "%016" PRIx64, sc.file_xxh3);
            out << "| file | " << sc.file_size << " bytes, XXH3-64 `" << hex << "` |\n";
            for (size_t i = 0; i < sc.decoded.size(); i++) {
                std::snprintf(hex, sizeof hex, "%016" PRIx64, sc.decoded[i]);
                out << "| decoded layer " << i / 2 << " " << (i % 2 ? "V" : "K") << " (fp32) | XXH3-64 `" << hex << "` |\n";
            }
        } else {
            out << "| file | (sidecar missing) |\n";
        }
        out << "\n";
    }
    return out.str();
}

}  // namespace sqkv_test
