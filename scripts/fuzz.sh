#!/usr/bin/env bash
# Runs every libFuzzer harness (fuzz/*_fuzzer.c) for N seconds each, starting from its committed seed
# corpus (fuzz/corpus/NAME/) plus a working corpus kept between runs. Exits non-zero on any crash,
# leak, timeout, out-of-memory or sanitizer report (the input is left in the artifacts directory).
#
#   scripts/fuzz.sh [-t SECONDS] [--direct] [--record FILE] [--work DIR] [--sweep|--sweep-only]
#                   [NAME_fuzzer ...]
#
#   -t SECONDS     time per fuzzer (default: $FUZZ_SECONDS or 30)
#   --direct       build with clang directly instead of `bazel build --config=fuzz` (no Bazel lock)
#   --record FILE  append one line per fuzzer (date, seconds, executions, result, command) to FILE,
#                  e.g. results/fuzz-runs.tsv, the log the executions in results/fuzz.md are summed from
#   --work DIR     working corpora and artifacts (default: $FUZZ_WORK or /tmp/sqkv-fuzz)
#   --sweep        afterwards, run the corruption sweep (fuzz/corruption_sweep.c, ASan + UBSan, checksums
#                  on) over every golden vector in tests/vectors: every bit flip and truncation must be
#                  detected; then again with checksums recomputed after each flip (no crash allowed);
#                  --sweep-only runs just that
#   NAME_fuzzer    run only these (default: all)
#
# Regression inputs in tests/crashers/NAME/ (and tests/crashers/sqkv/ for the harnesses that take SQKV
# files) are replayed as extra seeds on every run, with the harness's full set of checks.
#   FUZZ_EXTRA_CFLAGS (environment): extra compiler flags (--copt with Bazel), e.g. to work around a
#                  known finding while looking for the next one:
#                  -DFUZZ_MEMORY_SLACK=262144 (limits_fuzzer's allowance for uncounted reader memory),
#                  -fno-sanitize=nonnull-attribute
#
# The working corpus (DIR/corpus/NAME) grows with what libFuzzer finds; scripts/coverage.sh measures
# it. The committed corpus is never written: regenerate it with make_corpus (fuzz/make_corpus.c).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

seconds=${FUZZ_SECONDS:-30}
direct=0
sweep=0
record=""
work=${FUZZ_WORK:-/tmp/sqkv-fuzz}
names=()
while (($#)); do
  case "$1" in
    -t) seconds=$2; shift 2 ;;
    --direct) direct=1; shift ;;
    --record) record=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --sweep) sweep=1; shift ;;
    --sweep-only) sweep=2; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
if ((${#names[@]} == 0)); then
  for f in fuzz/*_fuzzer.c; do names+=("$(basename "$f" .c)"); done
fi
mkdir -p "$work/bin" "$work/artifacts" "$work/logs" || exit 1

# Harnesses whose inputs are drawn through a PRNG and fuzz_range (options, geometry, data), not parsed
# byte by byte: comparison tracing (-fsanitize-coverage=trace-cmp) cannot steer them towards magic
# values, and in the encoder's numeric loops it cost about 55% of their time (perf, append_fuzzer:
# 333 -> 750 executions/s). They link a library built without it; every other harness keeps it.
# fuzz/BUILD does the same with //codec:sqkv_fuzz_no_cmp_tracing.
no_cmp_tracing() {
  case "$1" in
    roundtrip_fuzzer|append_fuzzer|atomic_file_fuzzer) return 0 ;;
  esac
  return 1
}

# Library sources a harness needs beyond the codec (the CLI's readers of untrusted files).
extra_sources() {
  case "$1" in
    npy_fuzzer|safetensors_fuzzer) ls tools/common/*.c ;;
  esac
}

build_direct() {
  # shellcheck disable=SC2054,SC2206  # -fsanitize lists take commas; FUZZ_EXTRA_CFLAGS is split on purpose
  local cflags=(-std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wvla
    -D_POSIX_C_SOURCE=200809L -g -O1 -fno-omit-frame-pointer -DSQKV_FUZZING=1
    -fsanitize=address,undefined -fno-sanitize-recover=all
    -I . -I codec/include -I codec/src -I fuzz ${FUZZ_EXTRA_CFLAGS:-})
  local variant flags obj src name
  local variants=()
  for name in "${names[@]}"; do
    if no_cmp_tracing "$name"; then variants+=(nocmp); else variants+=(cmp); fi
  done
  # shellcheck disable=SC2207  # the two variant names have no spaces
  variants=($(printf '%s\n' "${variants[@]}" | sort -u))
  for variant in "${variants[@]}"; do
    flags=(-fsanitize=fuzzer-no-link)
    [[ $variant == nocmp ]] && flags+=(-fno-sanitize-coverage=trace-cmp)
    obj="$work/obj-$variant"
    rm -rf "$obj" && mkdir -p "$obj" || return 1
    for src in codec/src/*.c; do
      clang "${cflags[@]}" "${flags[@]}" -c "$src" -o "$obj/$(basename "$src" .c).o" || return 1
    done
    rm -f "$work/libsqkv_fuzz-$variant.a"
    ar rcs "$work/libsqkv_fuzz-$variant.a" "$obj"/*.o || return 1
  done
  for name in "${names[@]}"; do
    variant=cmp
    flags=(-fsanitize=fuzzer)
    if no_cmp_tracing "$name"; then
      variant=nocmp
      flags+=(-fno-sanitize-coverage=trace-cmp)
    fi
    # shellcheck disable=SC2046
    clang "${cflags[@]}" "${flags[@]}" "fuzz/$name.c" $(extra_sources "$name") "$work/libsqkv_fuzz-$variant.a" \
      -lxxhash -lzstd -lm -o "$work/bin/$name" || return 1
  done
}

build_bazel() {
  local targets=()
  local name
  for name in "${names[@]}"; do targets+=("//fuzz:$name"); done
  local copts=()
  local flag
  for flag in ${FUZZ_EXTRA_CFLAGS:-}; do copts+=("--copt=$flag"); done
  bazel build --config=fuzz "${copts[@]}" "${targets[@]}" || return 1
  for name in "${names[@]}"; do
    cp -f "bazel-bin/fuzz/$name" "$work/bin/$name" || return 1
  done
}

run_sweep() {
  local vectors=(tests/vectors/*.sqkv)
  if [[ ! -e ${vectors[0]} ]]; then
    echo "fuzz.sh: no golden vectors in tests/vectors" >&2
    return 1
  fi
  clang -std=c11 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -g -O1 -fno-omit-frame-pointer \
    -fsanitize=address,undefined -fno-sanitize-recover=all -I codec/include -I codec/src -I fuzz \
    codec/src/*.c fuzz/corruption_sweep.c -lxxhash -lzstd -lm -o "$work/bin/corruption_sweep" || return 1
  mkdir -p "$work/sweep-crashes"
  local rc=0
  echo "== corruption sweep: every flip and truncation must be detected" >&2
  ASAN_OPTIONS=detect_leaks=0 "$work/bin/corruption_sweep" --quiet --crash-dir "$work/sweep-crashes" \
    "${vectors[@]}" || rc=1
  echo "== corruption sweep with checksums recomputed: the rules behind them, no crash allowed" >&2
  ASAN_OPTIONS=detect_leaks=0 "$work/bin/corruption_sweep" --quiet --repair --crash-dir "$work/sweep-crashes" \
    "${vectors[@]}" || rc=1
  return "$rc"
}

if ((sweep == 2)); then
  run_sweep
  exit $?
fi

if ((direct)); then
  build_direct || { echo "fuzz.sh: build failed" >&2; exit 1; }
else
  bash scripts/ensure-deps.sh || exit 1
  build_bazel || { echo "fuzz.sh: bazel build --config=fuzz failed (try --direct)" >&2; exit 1; }
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

status=0
printf '%-22s %8s %12s  %s\n' fuzzer seconds executions result
for name in "${names[@]}"; do
  corpus="$work/corpus/$name"
  mkdir -p "$corpus"
  seeds=()
  for d in "fuzz/corpus/$name" "tests/crashers/$name"; do [[ -d $d ]] && seeds+=("$d"); done
  case "$name" in
    header_fuzzer|decode_fuzzer|small_buffer_fuzzer) [[ -d tests/crashers/sqkv ]] && seeds+=(tests/crashers/sqkv) ;;
  esac
  log="$work/logs/$name.log"
  cmd=("$work/bin/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -malloc_limit_mb=2048
    -print_final_stats=1 -artifact_prefix="$work/artifacts/$name-" "$corpus" "${seeds[@]}")
  "${cmd[@]}" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  result=ok
  if ((rc != 0)) || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|FUZZ CHECK FAILED|SUMMARY: ' "$log"; then
    result="FAILED (exit $rc; log $log)"
    status=1
    grep -E 'ERROR:|runtime error:|FUZZ CHECK FAILED|SUMMARY:|Test unit written' "$log" | head -5 >&2
  fi
  printf '%-22s %8s %12s  %s\n' "$name" "$seconds" "${execs:-?}" "$result"
  if [[ -n $record ]]; then
    # shellcheck disable=SC2016  # the single quotes are part of the recorded command line
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$seconds" "${execs:-0}" \
      "${result%% *}" "$(git rev-parse --short HEAD 2>/dev/null || echo -)" \
      "${FUZZ_EXTRA_CFLAGS:+FUZZ_EXTRA_CFLAGS='$FUZZ_EXTRA_CFLAGS' }scripts/fuzz.sh -t $seconds$( ((direct)) && echo ' --direct')" \
      >>"$record"
  fi
done
if ((sweep)); then
  run_sweep || status=1
fi
exit "$status"
