#!/usr/bin/env bash
# demo: the output format on a small cache, the file it leaves, and its options.
# lib.sh is next to this script, or in cli/ when Bazel runs the script from tests/.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

expect_rc 0 demo --layers 2 --heads 2 --tokens 256 --head-dim 64 -o small.sqkv
cp out demo.txt
for label in "cache        " "encoding     " "fp16 size    " "file size    " "K error      " "V error      " \
    "attention    " "encode       " "decode       " "verify       " "file         "; do
    check "demo prints '$label'" grep -q "^$label" demo.txt
done
expect_out "cache        2 layers x 2 KV heads x 256 tokens x head_dim 64, K and V (synthetic, seed 1)"
expect_out "encoding     sparsity 0.80 (per-token magnitude), 2-bit asymmetric, per-tile scales"
expect_out "fp16 size    256.0 KiB (262144 bytes)"
expect_out "verify       OK: 12 sections, every checksum matches"
expect_out "file         $TMP/small.sqkv"
check "messages only on stderr, nothing else there" test ! -s err
# The numbers are consistent with the file.
python3 - "$(stat -c %s small.sqkv)" <<'PY' || fail "demo numbers"
import re, sys
text = open('demo.txt').read()
size = int(sys.argv[1])
m = re.search(r'^file size +\S+ \S+ \((\d+) bytes\): ([0-9.]+)% of fp16, ([0-9.]+) bits per element', text, re.M)
assert m, text
assert int(m.group(1)) == size, (m.group(1), size)
assert abs(float(m.group(2)) - 100.0 * size / 262144) < 0.01, m.group(2)
assert abs(float(m.group(3)) - 8.0 * size / 131072) < 0.001, m.group(3)
for t in 'KV':
    m = re.search(r'^%s error +relative L2 ([0-9.]+), max abs ([0-9.e+]+)' % t, text, re.M)
    assert m and 0.0 < float(m.group(1)) < 10.0 and float(m.group(2)) > 0, (t, text)
m = re.search(r'^attention +output relative error ([0-9.]+), top-32 agreement ([0-9.]+)% \(4 random queries per head\)', text, re.M)
assert m and 0.0 <= float(m.group(2)) <= 100.0, text
for what in ('encode', 'decode'):
    m = re.search(r'^%s +([0-9]+) MB/s of fp16 \(([0-9.]+) s\)' % what, text, re.M)
    assert m and int(m.group(1)) > 0, (what, text)
PY
# The file is a normal .sqkv file with the demo's tokens, fingerprint and metadata.
expect_rc 0 verify small.sqkv
expect_rc 0 info --json small.sqkv
check "demo metadata" test "$(json_get out 'j["metadata"]["generator"], j["metadata"]["seed"]')" = "('sqkv demo', '1')"
check "demo tokens" test "$(json_get out 'j["tokens"]["count"]')" = 256
check "demo fingerprint" test -n "$(json_get out 'j["fingerprint"]')"
# Deterministic data: the same seed gives the same file; another seed does not.
expect_rc 0 demo -q --layers 2 --heads 2 --tokens 256 --head-dim 64 -o again.sqkv
check "same seed, same bytes" cmp -s small.sqkv again.sqkv
check "-q keeps the report (the command's data) and silences stderr" test -s out -a ! -s err
expect_rc 0 demo -q --layers 2 --heads 2 --tokens 256 --head-dim 64 --seed 2 -o other.sqkv
check "another seed, other bytes" test "$(cmp -s small.sqkv other.sqkv; echo $?)" = 1
# Encoder options apply: exact 16-bit without pruning restores the synthetic cache exactly.
expect_rc 0 demo --layers 1 --heads 1 --tokens 128 --bits 16 --no-prune --queries 8 -o exact.sqkv
expect_out "K error      relative L2 0.0000, max abs 0"
expect_out "V error      relative L2 0.0000, max abs 0"
expect_out "attention    output relative error 0.0000, top-32 agreement 100.0% (8 random queries per head)"
# More bits, smaller error.
expect_rc 0 demo --layers 1 --heads 2 --tokens 256 --bits 8 --scales tile -o b8.sqkv && cp out b8.txt
expect_rc 0 demo --layers 1 --heads 2 --tokens 256 --bits 2 --scales tile -o b2.sqkv && cp out b2.txt
kerr() { sed -n 's/^K error *relative L2 \([0-9.]*\).*/\1/p' "$1"; }
check "8-bit K error below 2-bit" python3 -c "import sys; sys.exit(0 if float('$(kerr b8.txt)') < float('$(kerr b2.txt)') else 1)"
# Heavy-tailed values, odd head_dim, dense window, --queries 0.
expect_rc 0 demo --layers 1 --heads 1 --tokens 100 --head-dim 33 --heavy-tailed --dense-window 20 --queries 0 -o odd.sqkv
expect_out "Student-t values" && expect_out "dense window 20"
check "no attention line with --queries 0" test "$(grep -c '^attention' out)" = 0
finish
