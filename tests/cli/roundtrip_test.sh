#!/usr/bin/env bash
# encode -> decode round trips for every input and output form; lossless settings give back the exact
# values; token ids, fingerprint and metadata survive; --layers/--heads select exactly those slices.
# lib.sh is next to this script, or in cli/ when Bazel runs the script from tests/.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

L=2 H=2 T=130 D=72   # T and D not multiples of 64: partial tiles and padding
$KVTOOL make pair pair $L $H $T $D --tokens || fail "kvtool make pair"
$KVTOOL make stacked stacked.npy $L $H $T $D || fail "kvtool make stacked"
$KVTOOL make dir dirform $L $H $T $D --tokens || fail "kvtool make dir"
$KVTOOL make safetensors st16.safetensors $L $H $T $D --tokens --meta source=kvtool --meta lang=de || fail "kvtool make st"
$KVTOOL make safetensors st32.safetensors $L $H $T $D --dtype f4 || fail "kvtool make st f4"
$KVTOOL make safetensors stbf.safetensors $L $H $T $D --dtype bf16 || fail "kvtool make st bf16"
$KVTOOL make pair pair32 $L $H $T $D --dtype f4 || fail "kvtool make pair f4"

LOSSLESS="--bits 16 --sparsity 0"

# Every input form, lossless, decoded to every output form: the values come back bit for bit.
for input in pair pair.k.npy stacked.npy dirform st16.safetensors pair32; do
    name=$(echo "$input" | tr './' '__')
    expect_rc 0 encode $LOSSLESS "$input" "$name.sqkv" || continue
    expect_err "sqkv: $input -> $name.sqkv: $L layers x $H heads x $T tokens x $D"
    expect_rc 0 verify "$name.sqkv"
    expect_rc 0 decode "$name.sqkv" "$name.out.npy" && check "$input -> .npy is exact" $KVTOOL same "$input" "$name.out.npy"
    expect_rc 0 decode "$name.sqkv" "$name.out.safetensors" && check "$input -> .safetensors is exact" $KVTOOL same "$input" "$name.out.safetensors"
    expect_rc 0 decode "$name.sqkv" "${name}_outpair" && check "$input -> pair is exact" $KVTOOL same "$input" "${name}_outpair"
    expect_rc 0 decode --dtype fp32 "$name.sqkv" "$name.f32.npy" && check "$input -> fp32 is exact" $KVTOOL same "$input" "$name.f32.npy"
done
# The .npy outputs are really the documented dtypes and shapes.
python3 - <<'PY' || fail "decoded .npy headers"
import struct
def header(path):
    d = open(path, 'rb').read(256)
    n = struct.unpack('<H', d[8:10])[0]
    return d[10:10 + n].decode()
h = header('pair.out.npy')
assert "'descr': '<f2'" in h and "'shape': (2, 2, 2, 130, 72)" in h, h
h = header('pair.f32.npy')
assert "'descr': '<f4'" in h, h
h = header('pair_outpair.k.npy')
assert "'shape': (2, 2, 130, 72)" in h, h
h = header('pair_outpair.tokens.npy')
assert "'descr': '<i4'" in h and "'shape': (130,)" in h, h
PY
# Token ids travel with the cache: from PREFIX.tokens.npy, DIR/tokens.npy and safetensors "tokens".
check "tokens from the pair" $KVTOOL tokens pair_outpair $T
check "tokens in safetensors output" $KVTOOL tokens pair.out.safetensors $T
check "tokens from the directory" $KVTOOL tokens dirform_outpair $T
check "tokens from safetensors" $KVTOOL tokens st16_safetensors_outpair $T
# A stacked .npy has no ids; the decoded pair then has no tokens file.
check "no tokens file without ids" test ! -e stacked_npy_outpair.tokens.npy

# bf16 input: element type bf16 by default, exact through .safetensors and fp32.
expect_rc 0 encode $LOSSLESS stbf.safetensors bf.sqkv
expect_rc 0 info --json bf.sqkv && cp out bf.json
check "bf16 element type" test "$(json_get bf.json 'j["geometry"]["value_dtype"]')" = bf16
check "bf16 source dtype" test "$(json_get bf.json 'j["geometry"]["source_dtype"]')" = bf16
expect_rc 0 decode bf.sqkv bf.out.safetensors && check "bf16 exact" $KVTOOL same stbf.safetensors bf.out.safetensors
expect_rc 0 decode bf.sqkv bf.out.npy && check "bf16 to .npy is fp32 and exact" $KVTOOL same stbf.safetensors bf.out.npy
python3 -c "
import json,struct,sys
d=open('bf.out.safetensors','rb').read(); n=struct.unpack('<Q',d[:8])[0]; h=json.loads(d[8:8+n])
sys.exit(0 if h['layers.0.key']['dtype']=='BF16' else 1)" || fail "bf16 safetensors output dtype"
# fp32 input, --element-type bf16: values are rounded to bf16 (close, not exact).
expect_rc 0 encode $LOSSLESS --element-type bf16 st32.safetensors e.sqkv
expect_rc 0 decode --dtype fp32 e.sqkv e.npy && check "bf16 rounding error small" $KVTOOL close st32.safetensors e.npy 0.005

# Metadata from safetensors "__metadata__", overridden and extended by --meta; fingerprint; --token-ids.
printf '%s\n' $(seq 5 $((T + 4))) > ids.txt
head -c 32 /dev/urandom > fp.bin
expect_rc 0 encode --meta lang=fr --meta "note=hello world" --fingerprint @fp.bin --token-ids ids.txt st16.safetensors m.sqkv
expect_rc 0 info --json m.sqkv && cp out m.json
check "metadata merged" test "$(json_get m.json 'sorted(j["metadata"].items())')" = \
    "[('lang', 'fr'), ('note', 'hello world'), ('source', 'kvtool')]"
check "fingerprint bytes" test "$(json_get m.json 'j["fingerprint"]')" = "$(od -An -tx1 fp.bin | tr -d ' \n')"
check "token count" test "$(json_get m.json 'j["tokens"]["count"]')" = "$T"
expect_rc 0 decode m.sqkv m.safetensors
python3 - <<'PY' || fail "decoded metadata and token ids"
import json, struct
d = open('m.safetensors', 'rb').read()
n = struct.unpack('<Q', d[:8])[0]
h = json.loads(d[8:8 + n])
assert h['__metadata__'] == {'lang': 'fr', 'note': 'hello world', 'source': 'kvtool'}, h['__metadata__']
b, e = h['tokens']['data_offsets']
ids = struct.unpack('<%di' % ((e - b) // 4), d[8 + n + b:8 + n + e])
assert list(ids) == list(range(5, 5 + len(ids))), ids[:5]
PY
expect_rc 0 encode --fingerprint 00ff10 stacked.npy hexfp.sqkv && expect_rc 0 info --json hexfp.sqkv
check "hex fingerprint" test "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fingerprint"])' out)" = 00ff10

# Layer and head selection: exactly the chosen slices of the full decode.
expect_rc 0 decode pair.sqkv full.safetensors
expect_rc 0 decode --layers 1 --heads 1 pair.sqkv sel.safetensors && check "selection 1 / 1" $KVTOOL slice full.safetensors sel.safetensors 1 1
expect_rc 0 decode --layers 0-1 --heads 1,0 pair.sqkv sel.npy && check "selection 0-1 / 0,1" $KVTOOL slice full.safetensors sel.npy 0,1 0,1
python3 -c "
import json,struct,sys
d=open('sel.safetensors','rb').read(); n=struct.unpack('<Q',d[:8])[0]; h=json.loads(d[8:8+n])
sys.exit(0 if sorted(k for k in h if k.startswith('layers')) == ['layers.1.key','layers.1.value'] else 1)" \
    || fail "selected layers keep their indices in safetensors names"
expect_rc 2 decode --layers 2 pair.sqkv x.npy && expect_err "--layers: index 2 is out of range (the file has 2)"
expect_rc 2 decode --heads 0-5 pair.sqkv x.npy && expect_err "--heads: index 5 is out of range"
expect_rc 2 decode --layers 2-1 pair.sqkv x.npy && expect_err "is not a list of indices"

# Lossy settings: every encoder option is accepted and gives a sound file of the right geometry;
# the error stays bounded and the file gets smaller with fewer bits.
prev=0
for opts in "--bits 2" "--bits 4 --scales tile" "--bits 8 --quantizer asymmetric" "--bits 4 --quantizer asymmetric --scales tile" \
    "--sparsity 0.5 --bits 8" "--no-prune --bits 4" "--dense-window 10 --bits 2" "--dense-window $T" \
    "--heads-per-section 2 --tokens-per-section 64 --offset-interval-log2 0" "--offset-interval-log2 20 --bits 16"; do
    rm -f lossy.sqkv
    expect_rc 0 encode $opts pair lossy.sqkv || continue
    expect_rc 0 verify lossy.sqkv
    expect_rc 0 decode lossy.sqkv lossy.npy && check "bounded error with $opts" $KVTOOL close pair lossy.npy 0.95
    rm -f lossy.npy
done
expect_rc 0 encode --dense-window $T pair allwindow.sqkv && expect_rc 0 decode allwindow.sqkv allwindow.npy
check "a dense window over all tokens is exact" $KVTOOL same pair allwindow.npy
expect_rc 0 encode --heads-per-section 2 --tokens-per-section 64 pair split.sqkv && expect_rc 0 info --json split.sqkv
check "section split recorded" test "$(json_get out 'j["options"]["heads_per_section"], j["options"]["tokens_per_section"]')" = "(2, 64)"
expect_rc 0 encode --bits 8 pair b8.sqkv && expect_rc 0 encode --bits 2 pair b2.sqkv
check "2-bit file smaller than 8-bit" test "$(stat -c %s b2.sqkv)" -lt "$(stat -c %s b8.sqkv)"
expect_rc 2 encode --dense-window 1000 pair big.sqkv && expect_err "--dense-window 1000 is larger than the input's 130 tokens"
# Deterministic output: the same input and options give the same bytes.
expect_rc 0 encode pair again.sqkv && expect_rc 0 encode pair again2.sqkv && check "deterministic" cmp -s again.sqkv again2.sqkv
finish
