"""CUDA without rules_cuda: nvcc in a genrule, wrapped in a cc_library.

All targets made here are compatible only with --config=cuda (which sets
--define=cuda=1); plain `bazel build //...` / `bazel test //...` skip them.

Device code is built for sm_90 (SASS) plus compute_90 PTX. Never -arch=native:
on a machine without a GPU it silently falls back to an old architecture.
"""

load("@local_cuda//:defs.bzl", "CUDA_PATH", "NVCC")
load("//bazel:sqkv.bzl", "CUDA_ONLY", "SQKV_CXX_TEST_COPTS")

NVCC_FLAGS = [
    "-O3",
    "-std=c++17",
    "-Xcompiler",
    "-fPIC",
    # C headers of the codec may use C99 `restrict`, not a C++ keyword.
    "-Drestrict=__restrict__",
    "-gencode",
    "arch=compute_90,code=sm_90",
    "-gencode",
    "arch=compute_90,code=compute_90",
]

CUDA_LINKOPTS = [
    "-L%s/lib64" % CUDA_PATH,
    "-lcudart_static",
    "-ldl",
    "-lrt",
    "-lpthread",
]

def cuda_library(
        name,
        srcs,
        hdrs = [],
        deps = [],
        nvcc_hdrs = [],
        nvcc_includes = [],
        nvcc_flags = [],
        visibility = None,
        **kwargs):
    """A static library from .cu files, usable from C/C++ targets.

    Args:
      name: cc_library name (the nvcc archive is "<name>_nvcc").
      srcs: .cu files (each compiled by nvcc) and every .cuh/.h they include
        from this package (no header scanning: list them all).
      hdrs: host-side API headers for C/C++ callers (e.g. sqkv_cuda.h).
      deps: cc deps of the host side (e.g. //codec:sqkv_internal).
      nvcc_hdrs: other headers nvcc reads (labels/filegroups), e.g.
        //codec:headers.
      nvcc_includes: -I directories for nvcc, relative to the workspace root.
      nvcc_flags: extra nvcc flags.
      visibility: visibility of the cc_library.
      **kwargs: passed to the cc_library (tags, ...).
    """
    cu = [s for s in srcs if s.endswith(".cu")]
    if not cu:
        fail("cuda_library %s: no .cu files in srcs" % name)
    archive = "lib%s_nvcc.a" % name
    native.genrule(
        name = name + "_nvcc",
        srcs = srcs + hdrs + nvcc_hdrs,
        outs = [archive],
        cmd = " ".join(
            [NVCC] + NVCC_FLAGS + nvcc_flags +
            ["-I" + d for d in nvcc_includes] +
            ["-lib", "-o", "$@"] +
            ["$(location %s)" % s for s in cu],
        ),
        message = "nvcc (sm_90 + compute_90 PTX) %s" % name,
        target_compatible_with = CUDA_ONLY,
        visibility = ["//visibility:private"],
    )
    native.cc_library(
        name = name,
        srcs = [":" + archive],
        hdrs = hdrs,
        includes = ["."],
        linkopts = CUDA_LINKOPTS,
        linkstatic = True,
        deps = deps + ["@local_cuda//:cuda_headers"],
        target_compatible_with = CUDA_ONLY,
        visibility = visibility,
        **kwargs
    )

def cuda_cc_test(name, srcs, deps = [], copts = [], tags = [], **kwargs):
    """A gtest test of CUDA code; only under --config=cuda.

    Tagged "cuda" and "requires-gpu": on a machine without a GPU, use
    --test_tag_filters=-requires-gpu (or make the test GTEST_SKIP).
    """
    native.cc_test(
        name = name,
        srcs = srcs,
        copts = SQKV_CXX_TEST_COPTS + copts,
        deps = deps + ["@gtest//:gtest_main"],
        tags = tags + ["cuda", "requires-gpu"],
        target_compatible_with = CUDA_ONLY,
        **kwargs
    )

def cuda_cc_binary(name, srcs, deps = [], tags = [], **kwargs):
    """A host binary linking CUDA code; only under --config=cuda."""
    native.cc_binary(
        name = name,
        srcs = srcs,
        deps = deps,
        tags = tags + ["cuda"],
        target_compatible_with = CUDA_ONLY,
        **kwargs
    )
