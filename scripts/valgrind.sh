#!/usr/bin/env bash
# Runs every built test binary of tests/ (GoogleTest and plain C tests) under valgrind's memcheck:
# any invalid read or write, use of uninitialised memory, or definite/indirect leak makes the run
# fail (--error-exitcode=1). A plain build (gcc, no sanitizers) is used, since valgrind and ASan do not
# mix. Exits non-zero if a test fails or valgrind reports an error.
#
#   scripts/valgrind.sh [--no-build] [--timeout SECONDS] [NAME_test ...] [-- BAZEL_ARGS...]
#
#   --no-build        use the binaries already in bazel-bin/tests
#   --timeout S       per test binary (default 1800; valgrind runs code 20-50x slower)
#   NAME_test         only these (default: every tests/*_test.cc and tests/*_test.c)
#   -- BAZEL_ARGS     passed to `bazel build`, e.g. -- --jobs=2
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

build=1
timeout_s=1800
names=()
bazel_args=()
while (($#)); do
  case "$1" in
    --no-build) build=0; shift ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --) shift; bazel_args=("$@"); break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "valgrind.sh: unknown option $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done

command -v valgrind >/dev/null || { bash scripts/ensure-deps.sh || exit 1; }
if ((build)); then
  bash scripts/ensure-deps.sh || exit 1
  # Plain config: this also points bazel-bin back at the plain (non-sanitizer) output tree.
  targets=(//tests/...)
  if ((${#names[@]})); then
    targets=()
    for name in "${names[@]}"; do targets+=("//tests:$name"); done
  fi
  bazel build "${targets[@]}" "${bazel_args[@]}" || { echo "valgrind.sh: build failed" >&2; exit 1; }
fi

if ((${#names[@]} == 0)); then
  # The tests that exist now (bazel-bin/tests may still hold binaries of removed tests); sh_tests are
  # left out: valgrind would only trace bash.
  for src in tests/*_test.cc tests/*_test.c; do
    [[ -f $src ]] || continue
    name=$(basename "$src")
    names+=("${name%.*}")
  done
fi
((${#names[@]})) || { echo "valgrind.sh: no test binaries in bazel-bin/tests" >&2; exit 1; }

# The tests open their data relative to the workspace root (tests/BUILD): run them from here.
export SQKV_TEST_VECTORS=tests/vectors SQKV_CRASHERS=tests/crashers
export TEST_TMPDIR=${TEST_TMPDIR:-$(mktemp -d)}
logs=$(mktemp -d)
status=0
for name in "${names[@]}"; do
  bin=bazel-bin/tests/$name
  log=$logs/$name.log
  start=$(date +%s)
  timeout "$timeout_s" valgrind --tool=memcheck --error-exitcode=1 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    --track-fds=no --num-callers=30 -q "$bin" >"$log" 2>&1
  rc=$?
  secs=$(($(date +%s) - start))
  if ((rc == 0)); then
    printf '%-32s ok (%ds)\n' "$name" "$secs"
  else
    status=1
    why="exit $rc"
    ((rc == 124)) && why="timed out after ${timeout_s}s"
    printf '%-32s FAILED: %s (log %s)\n' "$name" "$why" "$log"
    grep -E '^==[0-9]+== (Invalid|Conditional|Use of|Syscall|.*definitely lost|.*indirectly lost)|FAILED' "$log" | head -10
  fi
done
exit "$status"
