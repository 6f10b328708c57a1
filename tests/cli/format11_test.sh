#!/usr/bin/env bash
# Format 1.1 through the CLI: 3-bit codes with half-tile scales (CODE_WIDTHS, HALF_TILE_SCALES) and
# keep-all sections (ALL_KEPT). info names the required features and each section's encoding; the
# decoded values keep every kept element within half a quantization step of its own group (32 elements
# for half-tile scales), pruned elements decode to 0, and keep-all sections store no bitmaps and give
# even a zero input a nonzero level (symmetric levels have no zero); the zstd layer restores the same values.
# lib.sh is next to this script, or in cli/ when Bazel runs the script from tests/.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

L=2 H=2 T=130 D=72   # T and D not multiples of 64: partial tiles, and half tiles that are partly padding
$KVTOOL make pair kv $L $H $T $D --tokens || fail "kvtool make pair"
$KVTOOL make pair kvz $L $H $T $D --zeros --seed 7 || fail "kvtool make pair with zeros"

# check_bounds ORIG DECODED BITS sym|asym GROUP KEEP: every element against its group's step, where
# GROUP is 64 (tile) or 32 (half tile) and KEEP the elements kept per token row (0 = keep-all).
check_bounds() {
    python3 - "$CLI_DIR" "$@" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import kvtool
orig, dec = kvtool.load_cache(sys.argv[2]), kvtool.load_cache(sys.argv[3])
bits, quant, group, keep = int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
L, H, T, D = orig['shape']
assert dec['shape'] == orig['shape'], (dec['shape'], orig['shape'])
levels = 2 ** bits
worst, zeros_in, zeros_nonzero_out = 0.0, 0, 0
for tensor in ('K', 'V'):
    for layer in range(L):
        x, y = orig[tensor][layer], dec[tensor][layer]
        for h in range(H):
            base = h * T * D
            kept = [True] * (T * D)
            if keep:
                for t in range(T):
                    row = [x[base + t * D + d] for d in range(D)]
                    order = sorted(range(D), key=lambda d: (-abs(row[d]), d))
                    chosen = set(d for d in order[:keep] if row[d] != 0.0)
                    for d in range(D):
                        kept[t * D + d] = d in chosen
            groups = {}
            for t in range(T):
                for d in range(D):
                    # keys: one channel over `group` tokens; values: one token over `group` channels
                    g = (d, t // group) if tensor == 'K' else (t, d // group)
                    groups.setdefault(g, []).append(t * D + d)
            for members in groups.values():
                vals = [x[base + i] for i in members if kept[i]]
                if not vals:
                    continue
                if quant == 'sym':
                    step_error = max(abs(v) for v in vals) / (levels - 1)   # levels are odd multiples of s
                    span = max(abs(v) for v in vals)
                else:
                    step_error = (max(vals) - min(vals)) / (levels - 1) / 2
                    span = max(vals) - min(vals)
                for i in members:
                    xi, yi = x[base + i], y[base + i]
                    if not kept[i]:
                        assert yi == 0.0, ('pruned element decodes to', yi, tensor, layer, h, i)
                        continue
                    if xi == 0.0 and span > 0.0:   # an all-zero group has s = 0: only zero levels
                        zeros_in += 1
                        zeros_nonzero_out += yi != 0.0
                    # fp16 rounding of the scale and of each level: a few ulps of the group's span
                    bound = step_error + span * 2.0 ** -9 + abs(xi) * 2.0 ** -10 + 1e-6
                    worst = max(worst, abs(yi - xi) / bound)
                    assert abs(yi - xi) <= bound, ('error above half a step', tensor, layer, h, i, xi, yi, bound)
# The bound is tight enough to mean something: the largest error uses most of it.
assert worst > 0.5, ('errors suspiciously small', worst)
print(worst, zeros_in, zeros_nonzero_out)
PY
}

# 3-bit codes, half-tile scales, default pruning (0.8: 15 of 72 kept per token row).
expect_rc 0 encode --bits 3 --scales half-tile kv h.sqkv
expect_rc 0 verify h.sqkv
expect_rc 0 info h.sqkv
expect_out "format         SQKV 1.1, required features CODE_WIDTHS, HALF_TILE_SCALES"
expect_out "encoding       3-bit asymmetric, per-half-tile scales, offset interval 2^4 tiles"
expect_rc 0 info --sections h.sqkv
check "every SPARSE section is 3-bit half-tile" test "$(grep -c ' 3-bit asymmetric/half-tile k=4$' out)" = $((2 * L * H))
expect_rc 0 info --json h.sqkv && cp out h.json
python3 - <<'PY' || fail "info --json of the half-tile file"
import json
j = json.load(open('h.json'))
assert j['version'] == {'major': 1, 'minor': 1}, j['version']
assert j['required_features'] == {'mask': 3, 'names': ['CODE_WIDTHS', 'HALF_TILE_SCALES']}, j['required_features']
assert j['options']['sparse'] == {'payload_bits': 3, 'quantizer': 'asymmetric', 'scale_granularity': 'half-tile',
                                  'offset_interval_log2': 4}, j['options']
assert j['options']['keep_all'] is False, j['options']
sparse = [s for s in j['sections'] if s['kind'] == 'SPARSE']
assert len(sparse) == 8 and all(s['flags'] == 0 and not s['all_kept'] for s in sparse), sparse
PY
expect_rc 0 decode --dtype fp32 h.sqkv h.npy && { check_bounds kv h.npy 3 asym 32 15 > h.bounds ||
    fail "3-bit half-tile values within half a step of their 32-element group"; }
# The same values with the zstd layer.
expect_rc 0 encode --bits 3 --scales half-tile --zstd 3 kv hz.sqkv && expect_rc 0 verify hz.sqkv
expect_rc 0 decode --dtype fp32 hz.sqkv hz.npy && check "zstd layer restores the same 3-bit values" $KVTOOL same h.npy hz.npy

# Keep-all: 5-bit symmetric, per-tile scales, an input with 10% zeros.
expect_rc 0 encode --keep-all --bits 5 --quantizer symmetric kvz k.sqkv
expect_rc 0 verify k.sqkv
expect_rc 0 info k.sqkv
expect_out "format         SQKV 1.1, required features CODE_WIDTHS, ALL_KEPT"
expect_out "encoding       5-bit symmetric, per-tile scales, keep-all (every element kept, no bitmaps)"
expect_rc 0 info --sections k.sqkv
check "every SPARSE section is keep-all" test "$(grep -c ' 5-bit symmetric/tile keep-all$' out)" = $((2 * L * H))
expect_rc 0 info --json k.sqkv && cp out k.json
python3 - "$T" "$D" <<'PY' || fail "info --json of the keep-all file"
import json, sys
T, D = int(sys.argv[1]), int(sys.argv[2])
j = json.load(open('k.json'))
assert j['required_features'] == {'mask': 5, 'names': ['CODE_WIDTHS', 'ALL_KEPT']}, j['required_features']
assert j['options']['keep_all'] is True and j['options']['sparse']['offset_interval_log2'] == 0, j['options']
a8 = lambda n: (n + 7) // 8 * 8
payload = a8((T * D * 5 + 7) // 8)                 # every element: no bitmaps, no offsets
want = {'K': a8(2 * (T + 63) // 64 * D) + payload,  # one fp16 scale per key tile
        'V': a8(2 * T * ((D + 63) // 64)) + payload}
for s in j['sections']:
    if s['kind'] == 'SPARSE':
        assert s['flags'] == 1 and s['all_kept'], s
        assert s['stored_size'] == want[s['tensor']], (s, want)
PY
expect_rc 0 decode --dtype fp32 k.sqkv k.npy && check_bounds kvz k.npy 5 sym 64 0 > k.bounds || fail "keep-all values within half a step"
read -r _ zeros_in zeros_out < k.bounds
check "the input has zeros" test "${zeros_in:-0}" -gt 0
check "keep-all quantizes zeros too (symmetric levels have no zero): $zeros_out of $zeros_in" test "$zeros_out" = "$zeros_in"
expect_rc 0 encode --keep-all --bits 5 --quantizer symmetric --zstd 3 kvz kz.sqkv && expect_rc 0 verify kz.sqkv
expect_rc 0 decode --dtype fp32 kz.sqkv kz.npy && check "zstd layer restores the same keep-all values" $KVTOOL same k.npy kz.npy
# Without --keep-all, pruning off keeps the zeros as zeros (bitmaps), and the file is a 1.0 file.
expect_rc 0 encode --sparsity 0 --bits 4 kvz n.sqkv && expect_rc 0 info n.sqkv && expect_out "SQKV 1.0, no required features"

# Combinations that contradict keep-all, and widths the format does not have.
expect_rc 2 encode --keep-all --sparsity 0.5 kv x.sqkv && expect_err "--keep-all keeps every element: it does not go with --sparsity 0.5"
expect_rc 2 encode --sparsity 0.5 --keep-all kv x.sqkv && expect_err "does not go with --sparsity 0.5"
expect_rc 2 encode --keep-all --no-prune kv x.sqkv && expect_err "--keep-all and --no-prune contradict each other"
expect_rc 2 encode --keep-all --bits 16 kv x.sqkv && expect_err "it does not go with --bits 16"
expect_rc 2 encode --keep-all --offset-interval-log2 2 kv x.sqkv && expect_err "--offset-interval-log2 does not go with --keep-all"
expect_rc 2 encode --bits 0 kv x.sqkv && expect_err "--bits: 0 is not one of 1 to 8, or 16"
expect_rc 2 encode --bits 12 kv x.sqkv && expect_err "--bits: 12 is not one of 1 to 8, or 16"
expect_rc 2 encode --scales quarter-tile kv x.sqkv && expect_err "is not head, tile, half-tile or none"
expect_rc 2 encode --bits 16 --scales half-tile kv x.sqkv && expect_err "--scales none goes with the exact quantizer"
check "no output after usage errors" test ! -e x.sqkv
# Range search on values (an encoder choice, spec 14): the same format and size, still within half a
# step of its group's own range, and different values than without it.
expect_rc 0 encode --keep-all --bits 5 --quantizer symmetric --range-search values kvz r.sqkv && expect_rc 0 verify r.sqkv
check "range search keeps the file size" test "$(wc -c < r.sqkv)" = "$(wc -c < k.sqkv)"
check "range search changes the values' parameters" test "$(cmp -s r.sqkv k.sqkv; echo $?)" = 1
# Appending a 1.1 setting to a 1.0 file is refused (its header cannot declare new features).
expect_rc 1 append --bits 3 n.sqkv kvz && expect_err "file header does not declare"
finish
