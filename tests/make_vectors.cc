// make_vectors: writes the golden test vectors of tests/vectors/ (spec/TEST_VECTORS.md) that do not
// exist yet, and checks the ones that do. It never overwrites a vector: when the encoder's output for a
// vector's input differs from the file, that is a format or encoder change, which must add new vectors
// under new names (and a CHANGELOG entry) while the old ones stay valid forever (spec/FORMAT.md §13).
//
//   make_vectors [--dir DIR] [--example-doc spec/EXAMPLE.md] [--vectors-doc spec/TEST_VECTORS.md]
//     --dir DIR           vector directory (default tests/vectors)
//     --example-doc PATH  also regenerate the generated block of spec/EXAMPLE.md from the example vector
//     --vectors-doc PATH  also regenerate the generated block of spec/TEST_VECTORS.md from the sidecars
//
// Exit status: 0 when every vector exists and matches (after writing the missing ones), 1 otherwise.
#include <cstdio>
#include <cstring>
#include <string>

#include "example_doc.h"
#include "vector_specs.h"

using namespace sqkv_test;

namespace {

bool ReadText(const std::string &path, std::string *out) {
    Bytes b;
    if (!ReadFile(path, &b)) return false;
    out->assign(b.begin(), b.end());
    return true;
}

bool WriteNew(const std::string &path, const Bytes &data) {
    // O_EXCL semantics: refuse to replace a file that appeared meanwhile.
    FILE *f = std::fopen(path.c_str(), "wbx");
    if (!f) return false;
    const bool ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
    return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char **argv) {
    std::string dir = "tests/vectors", example_doc, vectors_doc;
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "--dir") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!std::strcmp(argv[i], "--example-doc") && i + 1 < argc) {
            example_doc = argv[++i];
        } else if (!std::strcmp(argv[i], "--vectors-doc") && i + 1 < argc) {
            vectors_doc = argv[++i];
        } else {
            std::fprintf(stderr, "usage: %s [--dir DIR] [--example-doc spec/EXAMPLE.md] [--vectors-doc "
                                 "spec/TEST_VECTORS.md]\n", argv[0]);
            return 2;
        }
    }
    int failures = 0;
    for (const VectorSpec &spec : GoldenVectors()) {
        Bytes file;
        std::string detail;
        const sqkv_error err = EncodeCache(VectorInput(spec), spec.options, &file, &detail);
        if (err != SQKV_OK) {
            std::fprintf(stderr, "%s: encoding failed: %s (%s)\n", spec.name.c_str(), sqkv_error_name(err), detail.c_str());
            failures++;
            continue;
        }
        Sidecar sidecar;
        sidecar.file_size = file.size();
        sidecar.file_xxh3 = Xxh3(file.data(), file.size());
        if (DecodedChecksums(file, &sidecar.decoded) != SQKV_OK) {
            std::fprintf(stderr, "%s: the encoder's file does not decode\n", spec.name.c_str());
            failures++;
            continue;
        }
        const std::string text = FormatSidecar(spec, sidecar);
        const std::string vector_path = VectorPath(spec, dir), sidecar_path = SidecarPath(spec, dir);
        Bytes existing;
        if (ReadFile(vector_path, &existing)) {
            if (existing != file) {
                std::fprintf(stderr,
                             "%s: the encoder now writes different bytes for this vector's input. Vectors never "
                             "change: keep this file, add a new vector (new name) for the new output, and note the "
                             "change in spec/CHANGELOG.md. Nothing was written.\n",
                             vector_path.c_str());
                failures++;
                continue;
            }
            std::string old_text;
            if (!ReadText(sidecar_path, &old_text) || old_text != text) {
                std::fprintf(stderr, "%s: missing or different; not overwritten\n", sidecar_path.c_str());
                failures++;
                continue;
            }
            std::printf("%s: unchanged (%zu bytes)\n", spec.name.c_str(), file.size());
            continue;
        }
        if (FileExists(sidecar_path)) {
            std::fprintf(stderr, "%s exists without its vector; not overwritten\n", sidecar_path.c_str());
            failures++;
            continue;
        }
        if (!WriteNew(vector_path, file) || !WriteNew(sidecar_path, Bytes(text.begin(), text.end()))) {
            std::fprintf(stderr, "%s: cannot write\n", vector_path.c_str());
            failures++;
            continue;
        }
        std::printf("%s: written (%zu bytes)\n", spec.name.c_str(), file.size());
    }
    if (!example_doc.empty()) {
        Bytes file;
        std::string doc;
        if (!ReadFile(VectorPath(ExampleVector(), dir), &file) || !ReadText(example_doc, &doc) ||
            !ReplaceGeneratedBlock(&doc, ExampleBlock(ExampleCache(), file))) {
            std::fprintf(stderr, "%s: cannot regenerate (missing file or markers)\n", example_doc.c_str());
            failures++;
        } else if (!WriteFile(example_doc, Bytes(doc.begin(), doc.end()))) {
            std::fprintf(stderr, "%s: cannot write\n", example_doc.c_str());
            failures++;
        } else {
            std::printf("%s: generated block updated\n", example_doc.c_str());
        }
    }
    if (!vectors_doc.empty()) {
        std::string doc;
        if (!ReadText(vectors_doc, &doc) ||
            !ReplaceGeneratedBlock(&doc, VectorsDocBlock(dir), kVectorsBegin, kVectorsEnd)) {
            std::fprintf(stderr, "%s: cannot regenerate (missing file or markers)\n", vectors_doc.c_str());
            failures++;
        } else if (!WriteFile(vectors_doc, Bytes(doc.begin(), doc.end()))) {
            std::fprintf(stderr, "%s: cannot write\n", vectors_doc.c_str());
            failures++;
        } else {
            std::printf("%s: generated block updated\n", vectors_doc.c_str());
        }
    }
    return failures ? 1 : 0;
}
