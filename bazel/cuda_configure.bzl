"""@local_cuda: the CUDA toolkit's headers, or an empty stub without CUDA.

Never fails: on machines without /usr/local/cuda the repository is a stub, so
plain builds (which skip CUDA targets) work everywhere. Override the location
with CUDA_PATH=/path (read at fetch time).
"""

_BUILD_WITH_CUDA = """
package(default_visibility = ["//visibility:public"])

# Headers of the CUDA runtime API (cuda_runtime.h and what it includes), for C
# and C++ callers compiled by the host compiler.
cc_library(
    name = "cuda_headers",
    hdrs = glob(
        [
            "include/*.h",
            "include/*.hpp",
            "include/crt/**",
        ],
        allow_empty = True,
    ),
    includes = ["include"],
)

# Static CUDA runtime + its system dependencies.
cc_library(
    name = "cudart_static",
    linkopts = [
        "-L{path}/lib64",
        "-lcudart_static",
        "-ldl",
        "-lrt",
        "-lpthread",
    ],
    deps = [":cuda_headers"],
)

exports_files(["nvcc"])
"""

_BUILD_STUB = """
package(default_visibility = ["//visibility:public"])

# No CUDA toolkit found at {path}: empty stand-ins (CUDA targets are skipped
# unless --config=cuda, and then nvcc itself will report the problem).
cc_library(name = "cuda_headers")

cc_library(name = "cudart_static")
"""

def _cuda_configure_impl(rctx):
    path = rctx.os.environ.get("CUDA_PATH", "/usr/local/cuda")
    if rctx.path(path + "/include/cuda_runtime.h").exists:
        rctx.symlink(path + "/include", "include")
        rctx.file("BUILD", _BUILD_WITH_CUDA.format(path = path))
    else:
        rctx.file("BUILD", _BUILD_STUB.format(path = path))
    rctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % rctx.name)
    rctx.file("defs.bzl", "CUDA_PATH = %r\nNVCC = %r\n" % (path, path + "/bin/nvcc"))

cuda_configure = repository_rule(
    implementation = _cuda_configure_impl,
    environ = ["CUDA_PATH"],
    local = True,
)
