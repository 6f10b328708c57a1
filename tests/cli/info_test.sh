#!/usr/bin/env bash
# info: the human summary and the --json document agree with what was encoded, and the section table
# accounts for every byte of the file.
# lib.sh is next to this script, or in cli/ when Bazel runs the script from tests/.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

$KVTOOL make safetensors in.safetensors 3 2 200 64 --tokens --meta model=tiny || fail "kvtool make"
expect_rc 0 encode --bits 4 --quantizer symmetric --scales tile --dense-window 8 --offset-interval-log2 3 --fingerprint a1b2c3 \
    --meta "$(printf 'line=two\nlines')" --meta 'back=a\b' in.safetensors f.sqkv
size=$(stat -c %s f.sqkv)

expect_rc 0 info f.sqkv
expect_out "format         SQKV 1.0"
expect_out "geometry       3 layers x 2 KV heads x 200 tokens, head_dim 64 (K and V)"
expect_out "element type   fp16 (encoder input fp16)"
expect_out "dense window   8 tokens (sparse region: tokens 0..191)"
expect_out "encoding       4-bit symmetric, per-tile scales, offset interval 2^3 tiles"
expect_out "section split  1 head per section, whole sparse region per section"
expect_out "tokens         200 ids: 1000 1007 1014"
expect_out "fingerprint    a1b2c3 (3 bytes)"
expect_out "metadata       3 entries"
expect_out "  line = two\\x0alines"
expect_out "  back = a\\\\b"
expect_out "  model = tiny"
expect_out "sections       28: 12 SPARSE 12 DENSE 1 INDEX 1 TOKENS 1 FINGERPRINT 1 METADATA"
expect_out "($size bytes"
check "one row per layer" test "$(grep -cE '^ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ +[0-9.]+%$' out)" = 3
expect_rc 0 info --sections f.sqkv && expect_out "4-bit symmetric/tile k=3"
check "section list has 28 rows" test "$(grep -cE '^ +[0-9]+ +[0-9]+ +[0-9]+ (SPARSE|DENSE|INDEX|TOKENS|FINGERPRINT|METADATA) ' out)" = 28

expect_rc 0 info --json f.sqkv && cp out f.json
python3 - "$size" <<'PY' || fail "info --json content"
import json, sys
size = int(sys.argv[1])
j = json.load(open('f.json'))
g = j['geometry']
assert (g['n_layers'], g['n_kv_heads'], g['head_dim'], g['n_tokens'], g['dense_window']) == (3, 2, 64, 200, 8), g
assert g['value_dtype'] == 'fp16' and g['source_dtype'] == 'fp16', g
assert j['version'] == {'major': 1, 'minor': 0}, j['version']
assert j['file_size'] == size, j['file_size']
o = j['options']
assert o['sparse'] == {'payload_bits': 4, 'quantizer': 'symmetric', 'scale_granularity': 'tile',
                       'offset_interval_log2': 3}, o
assert o['heads_per_section'] == 1 and o['tokens_per_section'] == 0 and o['mixed'] is False, o
assert j['tokens'] == {'count': 200}, j['tokens']
assert j['fingerprint'] == 'a1b2c3', j['fingerprint']
assert j['metadata'] == {'line': 'two\nlines', 'model': 'tiny', 'back': 'a\\b'}, j['metadata']
assert j['dense_fp16_bytes'] == 2 * 2 * 3 * 2 * 200 * 64
s = j['sections']
assert len(s) == 28 and s[-1]['kind'] == 'INDEX', len(s)
# The sections tile the file: each starts where the previous ends; the INDEX (with the tail) ends it.
at = 64
for sec in s:
    assert sec['offset'] == at, (sec, at)
    at += 64 + (sec['stored_size'] + 7) // 8 * 8
assert at == size, (at, size)
# Per-layer bytes are the extents of that layer's tensor sections.
for layer in j['layers']:
    for t, key in (('K', 'k_bytes'), ('V', 'v_bytes')):
        want = sum(64 + (x['stored_size'] + 7) // 8 * 8 for x in s if x.get('layer') == layer['layer'] and x.get('tensor') == t)
        assert layer[key] == want, (layer, t, want)
counts = j['section_counts']
assert counts['SPARSE'] == 12 and counts['DENSE'] == 12 and counts['TOKENS'] == 1, counts
for sec in s:
    if sec['kind'] == 'SPARSE':
        assert sec['token_start'] == 0 and sec['token_count'] == 192, sec
        assert sec['encoding']['payload_bits'] == 4, sec
    if sec['kind'] == 'DENSE':
        assert sec['token_start'] == 192 and sec['token_count'] == 8, sec
PY

# Files without tokens, fingerprint and metadata; exact encoding; bf16.
$KVTOOL make stacked plain.npy 1 1 64 8 || fail "kvtool make"
expect_rc 0 encode --bits 16 --no-prune plain.npy plain.sqkv
expect_rc 0 info plain.sqkv
expect_out "tokens         none" && expect_out "fingerprint    none" && expect_out "metadata       0 entries"
expect_out "encoding       kept values exact (16-bit)"
expect_rc 0 info --json plain.sqkv
check "json nulls" test "$(json_get out 'j["fingerprint"], j["tokens"]["count"], j["metadata"]')" = "(None, 0, {})"
check "exact in json" test "$(json_get out 'j["options"]["sparse"]["quantizer"], j["options"]["sparse"]["scale_granularity"]')" = "('exact', 'none')"
# Everything in the dense window: no SPARSE sections.
expect_rc 0 encode --dense-window 64 plain.npy window.sqkv && expect_rc 0 info window.sqkv
expect_out "dense window   64 tokens (all tokens stored exactly)" && expect_out "no sparse region"
# Metadata with control characters cannot reach the terminal raw.
expect_rc 0 encode --meta "$(printf 'esc=\033[31mred')" plain.npy esc.sqkv && expect_rc 0 info esc.sqkv
expect_out 'esc = \x1b[31mred'
check "no raw escape byte in the output" test "$(grep -c "$(printf '\033')" out)" = 0
expect_rc 0 info --json esc.sqkv
check "json escapes control characters" test "$(json_get out 'j["metadata"]["esc"]')" = "$(printf '\033[31mred')"
# Exit codes: missing file 3, not an .sqkv file 1.
expect_rc 3 info nothing.sqkv
expect_rc 1 info plain.npy && expect_err "SQKV_ERR_BAD_MAGIC"
finish
