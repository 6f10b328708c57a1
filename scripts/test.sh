#!/usr/bin/env bash
# Full test run: the test suite (gcc), then the same suite under
# ASan + UBSan (clang, --config=asan), then the CUDA targets (nvcc) whose
# tests skip without a GPU. Exits non-zero if either fails,
# including Bazel's exit code 4 ("no test targets").
# Extra arguments go to both `bazel test` runs, e.g. scripts/test.sh --jobs=2
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
bash scripts/ensure-deps.sh || exit 1

explain() {
  case "$1" in
    0) echo "ok" ;;
    1) echo "build failed" ;;
    3) echo "some tests failed" ;;
    4) echo "no test targets found" ;;
    *) echo "bazel exit code $1" ;;
  esac
}

status=0

bazel test //... --test_output=errors "$@"
rc=$?
echo "== test.sh: default tests: $(explain $rc)" >&2
((rc == 0)) || status=1

bazel test --config=asan //... --test_output=errors "$@"
rc=$?
echo "== test.sh: asan+ubsan tests: $(explain $rc)" >&2
((rc == 0)) || status=1

# CUDA: the GPU tests build with nvcc and report a clear skip where there is no GPU (CI has none).
if [[ -x /usr/local/cuda/bin/nvcc ]]; then
  bazel test --config=cuda //cuda/... --test_output=errors "$@"
  rc=$?
  echo "== test.sh: cuda build + tests (skip without a GPU): $(explain $rc)" >&2
  ((rc == 0)) || status=1
else
  echo "== test.sh: cuda: /usr/local/cuda/bin/nvcc not found, CUDA targets not built" >&2
fi

exit "$status"
