#!/bin/sh
# Offline stand-in: `bazel coverage` is not available on these machines.
echo "remote_coverage_tools: not available offline (use gcov/llvm-cov directly)" >&2
exit 1
