#!/usr/bin/env bash
# sqkv append / repair: encoding N tokens then appending the rest decodes like a one-shot encoding
# (exact settings); an append cut off in the middle fails verify and repair restores the original file
# byte for byte; --zstd round trips.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

L=2 H=2 T=150 D=72 N=100
$KVTOOL make pair full $L $H $T $D --tokens || fail "kvtool make pair"
# first N tokens -> head, the rest -> tail (pair form, with their token ids)
python3 - "$CLI_DIR" $L $H $T $D $N <<'PY' || fail "split the cache"
import sys
sys.path.insert(0, sys.argv[1])
import kvtool
L, H, T, D, N = (int(x) for x in sys.argv[2:7])
c = kvtool.load_cache('full')
def part(flat_layers, lo, hi):
    out = []
    for layer in flat_layers:
        heads = []
        for h in range(H):
            heads.append([layer[(h * T + t) * D:(h * T + t + 1) * D] for t in range(lo, hi)])
        out.append(heads)
    return out
for name, lo, hi in (('head', 0, N), ('tail', N, T)):
    kvtool.write_cache('pair', name, part(c['K'], lo, hi), part(c['V'], lo, hi), 'f2', c['tokens'][lo:hi], {})
PY

EXACT="--bits 16 --sparsity 0 --dense-window 32"
expect_rc 0 encode $EXACT full oneshot.sqkv
expect_rc 0 encode $EXACT head grown.sqkv
cp grown.sqkv original.sqkv
expect_rc 0 append grown.sqkv tail
expect_err "grown.sqkv += tail: $((T - N)) new tokens (now $T)"
expect_rc 0 verify grown.sqkv
expect_rc 0 decode grown.sqkv grown.npy
expect_rc 0 decode oneshot.sqkv oneshot.npy
check "append decodes like one-shot" cmp grown.npy oneshot.npy
check "appended values are the input's" $KVTOOL same full grown.npy
expect_rc 0 decode grown.sqkv grownpair
check "token ids of the appended file" $KVTOOL tokens grownpair $T
# The file grew: its old bytes are a prefix.
old=$(stat -c %s original.sqkv)
check "append keeps the old bytes" cmp -n "$old" original.sqkv grown.sqkv

# Shape mismatch is refused and leaves the file alone.
$KVTOOL make pair other 1 $H 10 $D --tokens || fail "kvtool make other"
cp original.sqkv mismatch.sqkv
expect_rc 1 append mismatch.sqkv other
expect_err "1 layers x 2 heads"
check "refused append changes nothing" cmp mismatch.sqkv original.sqkv

# An interrupted append: cut the file in the middle of the new segment.
new=$(stat -c %s grown.sqkv)
cut=$(( old + (new - old) / 2 ))
head -c "$cut" grown.sqkv > cut.sqkv
expect_rc 1 verify cut.sqkv
expect_rc 0 repair -n cut.sqkv
expect_out "valid prefix $old of $cut bytes; would remove"
check "dry run changes nothing" test "$(stat -c %s cut.sqkv)" = "$cut"
expect_rc 0 repair cut.sqkv
expect_out "valid prefix $old of $cut bytes; removed $((cut - old)) trailing bytes"
check "repair restores the original byte for byte" cmp cut.sqkv original.sqkv
expect_rc 0 verify cut.sqkv
expect_rc 0 repair cut.sqkv
expect_out "OK (valid, $old bytes, nothing to repair)"
# A file with no valid prefix.
head -c 100 original.sqkv > tiny.sqkv
expect_rc 1 repair tiny.sqkv
expect_err "tiny.sqkv: no valid prefix"
expect_rc 2 repair
expect_rc 2 append grown.sqkv

# --zstd: the file is smaller, decodes to the same values, and append keeps using zstd.
expect_rc 0 encode $EXACT --zstd 19 full z.sqkv
expect_rc 0 info --json z.sqkv
check "--zstd compresses sections" test "$(json_get "$TMP/out" 'j["options"]["zstd_sections"]')" -gt 0
expect_rc 0 decode z.sqkv z.npy
check "--zstd round trip is exact" cmp z.npy oneshot.npy
check "--zstd makes the file smaller" test "$(stat -c %s z.sqkv)" -lt "$(stat -c %s oneshot.sqkv)"
expect_rc 0 encode $EXACT --zstd 3 head zgrown.sqkv
expect_rc 0 append zgrown.sqkv tail
expect_rc 0 decode zgrown.sqkv zgrown.npy
check "append to a zstd file decodes like one-shot" cmp zgrown.npy oneshot.npy
expect_rc 2 encode --zstd 23 full bad.sqkv
expect_err "--zstd"

finish
