#!/usr/bin/env bash
# compare: error metrics of an .sqkv file against the dense original, checked against an independent
# computation (Python) on the decoded values.
# lib.sh is next to this script, or in cli/ when Bazel runs the script from tests/.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

$KVTOOL make safetensors orig.safetensors 2 2 192 64 --tokens || fail "kvtool make"
$KVTOOL make stacked other.npy 2 2 128 64 || fail "kvtool make"

# Lossless: every error is zero, every top-k agrees.
expect_rc 0 encode --bits 16 --sparsity 0 orig.safetensors exact.sqkv
expect_rc 0 compare --json orig.safetensors exact.sqkv && cp out exact.json
python3 - <<'PY' || fail "lossless compare"
import json
j = json.load(open('exact.json'))
t = j['total']
assert t['k_rel_l2'] == 0 and t['v_rel_l2'] == 0 and t['k_max_abs'] == 0 and t['v_max_abs'] == 0, t
assert t['attention_rel_error'] == 0 and t['topk_agreement'] == 1, t
assert len(j['layers']) == 2 and j['queries'] == 8 and j['top_k'] == 32, j
PY

# Lossy: the reported relative L2 errors equal those computed from the decoded cache.
expect_rc 0 encode --bits 2 orig.safetensors lossy.sqkv
expect_rc 0 decode --dtype fp32 lossy.sqkv lossy.npy
read -r kerr verr < <($KVTOOL relerr orig.safetensors lossy.npy)
expect_rc 0 compare --json --queries 4 --top-k 16 orig.safetensors lossy.sqkv && cp out lossy.json
python3 - "$kerr" "$verr" <<'PY' || fail "lossy compare against Python"
import json, sys
kerr, verr = float(sys.argv[1]), float(sys.argv[2])
j = json.load(open('lossy.json'))
t = j['total']
assert abs(t['k_rel_l2'] - kerr) < 1e-5 * max(1, kerr), (t, kerr)
assert abs(t['v_rel_l2'] - verr) < 1e-5 * max(1, verr), (t, verr)
assert 0 < t['attention_rel_error'] and 0 <= t['topk_agreement'] <= 1, t
assert j['queries'] == 4 and j['top_k'] == 16
assert all(l['k_rel_l2'] > 0 for l in j['layers'])
assert max(l['k_max_abs'] for l in j['layers']) == t['k_max_abs']
PY
# The attention-output error agrees with an independent binary64 computation using the same queries.
attn=$(python3 "$CLI_DIR/attention_check.py" orig.safetensors lossy.npy 1 4) || fail "attention_check.py"
python3 - "$attn" <<'PY' || fail "attention error against Python ($attn)"
import json, sys
want = float(sys.argv[1])
got = json.load(open('lossy.json'))['total']['attention_rel_error']
assert abs(got - want) <= 1e-3 * want, (got, want)
PY
# The table: one row per layer plus the total.
expect_rc 0 compare orig.safetensors lossy.sqkv
expect_out "original     orig.safetensors (safetensors, fp16)"
expect_out "geometry     2 layers x 2 KV heads x 192 tokens, head_dim 64"
expect_out "attention    8 random N(0, I) queries per layer and head"
expect_out "top-32 agree"
check "three rows" test "$(grep -cE '^ +(0|1|all) +[0-9.]+ +[0-9.]+ ' out)" = 3
expect_rc 0 compare --queries 0 orig.safetensors lossy.sqkv
check "no attention column with --queries 0" test "$(grep -c 'attn rel err' out)" = 0
# Deterministic queries: the same seed, the same numbers; another seed, other numbers.
expect_rc 0 compare --json --seed 5 orig.safetensors lossy.sqkv && cp out s5a.json
expect_rc 0 compare --json --seed 5 orig.safetensors lossy.sqkv && cp out s5b.json
check "same seed, same result" cmp -s s5a.json s5b.json
# Original from stdin.
"$SQKV" compare --json - lossy.sqkv < orig.safetensors > stdin.json
check "original from stdin" test "$(json_get stdin.json 'j["total"]["k_rel_l2"]')" = "$(json_get lossy.json 'j["total"]["k_rel_l2"]')"
# Geometry mismatch is a data error.
expect_rc 1 compare other.npy lossy.sqkv && expect_err "geometries differ"
expect_rc 1 compare orig.safetensors orig.safetensors && expect_err "SQKV_ERR_BAD_MAGIC"
expect_rc 3 compare orig.safetensors missing.sqkv
finish
