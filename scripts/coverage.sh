#!/usr/bin/env bash
# Clang source-based coverage of codec/ reached by the fuzz corpora: each harness is built with
# -fprofile-instr-generate -fcoverage-mapping (and -DSQKV_FUZZING=1, as the fuzzers are), run once over
# its corpora (libFuzzer -runs=0: every input executed once, no mutation), and measured with
# llvm-profdata-14 / llvm-cov-14: lines and branches per harness, and per file for all harnesses
# together.
#
#   scripts/coverage.sh [--work DIR] [--out FILE] [NAME_fuzzer ...]
#
#   --work DIR   where scripts/fuzz.sh kept its working corpora (default: $FUZZ_WORK or /tmp/sqkv-fuzz);
#                DIR/corpus/NAME is used when it exists, besides fuzz/corpus/NAME and tests/crashers
#   --out FILE   also write the tables (markdown) to FILE
#
# "Decoding code" in the summary is the reader side of codec/src (DECODER_FILES below): what a hostile
# file can reach. The whole of codec/ (encoder included) is reported too.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

work=${FUZZ_WORK:-/tmp/sqkv-fuzz}
out=""
names=()
while (($#)); do
  case "$1" in
    --work) work=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "coverage.sh: unknown option $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
if ((${#names[@]} == 0)); then
  for f in fuzz/*_fuzzer.c; do names+=("$(basename "$f" .c)"); done
fi

PROFDATA=${LLVM_PROFDATA:-llvm-profdata-14}
COV=${LLVM_COV:-llvm-cov-14}
for tool in clang "$PROFDATA" "$COV"; do
  command -v "$tool" >/dev/null || { echo "coverage.sh: $tool not found" >&2; exit 1; }
done

# The reader side of the codec: the files a decoder of untrusted bytes runs.
DECODER_FILES='/(reader[^/]*|parse_[^/]*|decode_[^/]*|section_check|mustafar|restore|limits|codec_streams|stream_decoder|recover|source|diag|utf8|section_header|float16|element_convert|format|tile_layout|sparse_layout)\.[ch]$'

cov="$work/coverage"
rm -rf "$cov" && mkdir -p "$cov/obj" "$cov/bin" "$cov/prof" || exit 1
cflags=(-std=c11 -D_POSIX_C_SOURCE=200809L -g -O0 -DSQKV_FUZZING=1 -fprofile-instr-generate -fcoverage-mapping
  -I . -I codec/include -I codec/src -I fuzz)

for src in codec/src/*.c; do
  clang "${cflags[@]}" -fsanitize=fuzzer-no-link -c "$src" -o "$cov/obj/$(basename "$src" .c).o" || exit 1
done

# The tools/common parsers a harness targets (its coverage is reported on these, not on codec/).
reader_sources() {
  case "$1" in
    npy_fuzzer) echo tools/common/npy.c ;;
    safetensors_fuzzer) echo tools/common/safetensors.c tools/common/json_scan.c ;;
  esac
}

extra_sources() {
  case "$1" in
    npy_fuzzer|safetensors_fuzzer) ls tools/common/*.c ;;
  esac
}

objects=()
for name in "${names[@]}"; do
  # shellcheck disable=SC2046
  clang "${cflags[@]}" -fsanitize=fuzzer "fuzz/$name.c" $(extra_sources "$name") "$cov/obj/"*.o \
    -lxxhash -lzstd -lm -o "$cov/bin/$name" || exit 1
  dirs=()
  for d in "fuzz/corpus/$name" "tests/crashers/$name" "$work/corpus/$name"; do [[ -d $d ]] && dirs+=("$d"); done
  case "$name" in
    header_fuzzer|decode_fuzzer|small_buffer_fuzzer) [[ -d tests/crashers/sqkv ]] && dirs+=(tests/crashers/sqkv) ;;
  esac
  if ((${#dirs[@]} == 0)); then
    echo "coverage.sh: no corpus for $name" >&2
    continue
  fi
  # A harness that aborts on some input would stop the replay: libFuzzer's fork-free -runs=0 stops at
  # the first crash, so a crash here is reported and the profile so far still counts.
  LLVM_PROFILE_FILE="$cov/prof/$name.profraw" "$cov/bin/$name" -runs=0 -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    "${dirs[@]}" >"$cov/$name.log" 2>&1 || echo "coverage.sh: $name stopped early (see $cov/$name.log)" >&2
  "$PROFDATA" merge -sparse "$cov/prof/$name.profraw" -o "$cov/prof/$name.profdata" || exit 1
  objects+=("$name")
done
((${#objects[@]})) || { echo "coverage.sh: nothing measured" >&2; exit 1; }

codec_sources=(codec/src/*.c codec/src/*.h)
decoder_sources=()
for f in "${codec_sources[@]}"; do [[ /$f =~ $DECODER_FILES ]] && decoder_sources+=("$f"); done

# "TOTAL" row of llvm-cov report: lines covered% and branches covered% (last 3 columns pairs).
totals() { # binary profdata sources...
  local bin=$1 prof=$2
  shift 2
  "$COV" report "$bin" -instr-profile="$prof" "$@" 2>/dev/null | awk '/^TOTAL/ {
    # TOTAL regions missed cover% functions missed exec% lines missed cover% branches missed cover%
    printf "%s of %s lines (%s) | %s of %s branches (%s)", $8-$9, $8, $10, $11-$12, $11, $13 }'
}

report=$(mktemp)
{
  echo "| harness | inputs replayed | codec/ lines | codec/ branches | decoding code lines | decoding code branches |"
  echo "|---|---|---|---|---|---|"
  for name in "${objects[@]}"; do
    [[ -n $(reader_sources "$name") ]] && continue
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$cov/$name.log" | tail -1)
    all=$(totals "$cov/bin/$name" "$cov/prof/$name.profdata" "${codec_sources[@]}")
    dec=$(totals "$cov/bin/$name" "$cov/prof/$name.profdata" "${decoder_sources[@]}")
    echo "| $name | ${runs:-?} | ${all%% | *} | ${all##* | } | ${dec%% | *} | ${dec##* | } |"
  done
  all_objects=("${objects[@]}")
  codec_objects=()
  for name in "${objects[@]}"; do [[ -z $(reader_sources "$name") ]] && codec_objects+=("$name"); done
  objects=("${codec_objects[@]}")
  more=()
  if ((${#objects[@]})); then
    profs=()
    for name in "${objects[@]}"; do profs+=("$cov/prof/$name.profdata"); done
    "$PROFDATA" merge -sparse "${profs[@]}" -o "$cov/prof/all.profdata" || exit 1
    first=${objects[0]}
    for name in "${objects[@]:1}"; do more+=(-object "$cov/bin/$name"); done
    all=$(totals "$cov/bin/$first" "$cov/prof/all.profdata" "${more[@]}" "${codec_sources[@]}")
    dec=$(totals "$cov/bin/$first" "$cov/prof/all.profdata" "${more[@]}" "${decoder_sources[@]}")
    echo "| **all harnesses** | | ${all%% | *} | ${all##* | } | ${dec%% | *} | ${dec##* | } |"
  fi
  echo
  echo "The CLI's readers of untrusted files (tools/common), by their harnesses:"
  echo
  echo "| harness | inputs replayed | sources | lines | branches |"
  echo "|---|---|---|---|---|"
  for name in "${all_objects[@]}"; do
    srcs=$(reader_sources "$name")
    [[ -z $srcs ]] && continue
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$cov/$name.log" | tail -1)
    # shellcheck disable=SC2086
    t=$(totals "$cov/bin/$name" "$cov/prof/$name.profdata" $srcs)
    echo "| $name | ${runs:-?} | ${srcs//tools\/common\//} | ${t%% | *} | ${t##* | } |"
  done
  if ((${#objects[@]})); then
    echo
    echo "Per file, all harnesses together (decoding code marked *):"
    echo
    echo "| file | lines | line cover | branches | branch cover |"
    echo "|---|---|---|---|---|"
    "$COV" report "$cov/bin/$first" -instr-profile="$cov/prof/all.profdata" "${more[@]}" "${codec_sources[@]}" \
      2>/dev/null | awk -v pat="$DECODER_FILES" '
        $1 ~ /\.[ch]$/ { mark = (("/" $1) ~ pat) ? " *" : ""
          printf "| %s%s | %d | %s | %d | %s |\n", $1, mark, $8, $10, $11, $13 }'
  fi
} >"$report"
cat "$report"
[[ -n $out ]] && cp "$report" "$out"
rm -f "$report"
((${#objects[@]})) &&
  echo "coverage.sh: line-by-line report: $COV show $cov/bin/${objects[0]} -instr-profile=$cov/prof/all.profdata ${more[*]} FILE" >&2
exit 0
