#!/usr/bin/env bash
# bench: the table and --json on the synthetic cache, an .sqkv file and a dense input; the baselines
# are in the same run and the sizes are right.
# lib.sh is next to this script, or in cli/ when Bazel runs the script from tests/.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

expect_rc 0 bench --runs 2 --layers 2 --heads 2 --tokens 512
expect_out "sqkv bench: synthetic cache (seed 1)"
expect_out "cache      2 layers x 2 KV heads x 512 tokens x head_dim 128, 1.0 MiB as fp16"
expect_out "runs       2 per measurement, median"
check "memcpy row" grep -qE '^memcpy +1048576 +100\.00% +[0-9.]+ +[0-9.]+$' out
check "zstd row" grep -qE '^zstd -3 +[0-9]+ +[0-9.]+% +[0-9.]+ +[0-9.]+$' out
check "sqkv row" grep -qE '^sqkv 2-bit asym/tile +[0-9]+ +[0-9.]+% +[0-9.]+ +[0-9.]+$' out

expect_rc 0 bench --json --runs 3 --layers 2 --heads 2 --tokens 512 --bits 4 --scales tile && cp out b.json
python3 - <<'PY' || fail "bench --json content"
import json
j = json.load(open('b.json'))
assert j['bytes'] == 2 * 2 * 2 * 2 * 512 * 128 and j['runs'] == 3, j
m = {x['name']: x for x in j['methods']}
assert list(m) == ['memcpy', 'zstd -3', 'sqkv 4-bit asym/tile'], list(m)
assert m['memcpy']['size'] == j['bytes']
assert 0 < m['zstd -3']['size'] < j['bytes'], m['zstd -3']
# SQKV keeps 30% of the elements at 4 bits: far smaller than zstd on the same fp16 bytes.
assert 0 < m['sqkv 4-bit asym/tile']['size'] < m['zstd -3']['size'] / 2, m
for x in j['methods']:
    assert x['encode_mb_s'] > 0 and x['decode_mb_s'] > 0 and x['encode_s'] > 0, x
PY

# An .sqkv file: decoded and re-encoded with its own options gives the same size.
$KVTOOL make pair kv 2 2 256 64 --tokens || fail "kvtool make"
expect_rc 0 encode --bits 8 --quantizer asymmetric --scales tile --sparsity 0.5 --dense-window 32 \
    --tokens-per-section 64 kv f.sqkv
expect_rc 0 bench --json --runs 1 f.sqkv && cp out f.json
python3 - <<'PY' || fail "bench of an .sqkv file"
import json
j = json.load(open('f.json'))
m = {x['name']: x for x in j['methods']}
assert 'sqkv 8-bit asym/tile' in m, list(m)
assert '(.sqkv, decoded to fp16 and re-encoded)' in j['source'], j['source']
PY
# Same size as the file minus the ancillary sections the bench does not write (tokens).
python3 - "$(stat -c %s f.sqkv)" <<'PY' || fail "re-encoded size"
import json, sys
j = json.load(open('f.json'))
m = {x['name']: x for x in j['methods']}
tokens_extent = 64 + (4 * 256 + 7) // 8 * 8
assert m['sqkv 8-bit asym/tile']['size'] == int(sys.argv[1]) - tokens_extent - 40, (m, sys.argv[1])
PY
# A dense input and an option override.
expect_rc 0 bench --runs 1 --bits 16 kv && expect_out "sqkv       sparsity 0.80 (per-token magnitude), kept values exact (16-bit)"
expect_out "sqkv exact"
expect_rc 0 bench --runs 1 kv.k.npy && expect_out "sqkv bench: kv.k.npy (npy pair, fp16)"
# Errors.
expect_rc 3 bench missing.sqkv
expect_rc 2 bench --dense-window 5000 kv && expect_err "--dense-window 5000 is larger than the cache's 256 tokens"
finish
