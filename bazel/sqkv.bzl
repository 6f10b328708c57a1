"""Shared compiler flags and glob-driven target helpers for SQKV."""

# Flags for all C code of the project (library, CLI, fuzzers). Clean under
# gcc 12 and clang 14.
SQKV_C_COPTS = [
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wshadow",
    "-Wstrict-prototypes",
    "-Wvla",
    "-O2",
    "-D_POSIX_C_SOURCE=200809L",
]

# Flags for C++ test code (gtest). `restrict` is not a C++ keyword: map it so
# internal C headers that use it can be included from C++ tests.
SQKV_CXX_TEST_COPTS = [
    "-std=c++17",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Drestrict=__restrict__",
]

# Use as target_compatible_with: only builds with --config=cuda.
CUDA_ONLY = select({
    "//:cuda_enabled": [],
    "//conditions:default": ["//bazel:incompatible"],
})

# Use as target_compatible_with: only builds with --config=fuzz.
FUZZ_ONLY = select({
    "//:fuzz_enabled": [],
    "//conditions:default": ["//bazel:incompatible"],
})

def stem(path, suffix):
    """'cli/foo_test.sh', '.sh' -> 'cli_foo_test' (target name from a file)."""
    return path[:-len(suffix)].replace("/", "_")
