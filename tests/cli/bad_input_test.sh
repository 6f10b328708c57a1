#!/usr/bin/env bash
# Malformed .npy and .safetensors inputs: exit 1 with a specific message, never a crash.
# lib.sh is next to this script, or in cli/ when Bazel runs the script from tests/.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

python3 - <<'PY' || fail "could not build the bad inputs"
import json, struct

def npy(header, data=b'', major=1, raw_len=None):
    h = header.encode('latin1')
    if major == 1:
        n = struct.pack('<H', len(h) if raw_len is None else raw_len)
    else:
        n = struct.pack('<I', len(h) if raw_len is None else raw_len)
    return b'\x93NUMPY' + bytes([major, 0]) + n + h + data

def hdr(descr="'<f2'", order='False', shape='(2, 1, 1, 64, 8)', extra=''):
    text = "{'descr': %s, 'fortran_order': %s, 'shape': %s, %s}" % (descr, order, shape, extra)
    return text + ' ' * ((64 - (10 + len(text) + 1) % 64) % 64) + '\n'

good = b'\x00\x3c' * (2 * 64 * 8)          # 1.0 in fp16
files = {
    'magic.npy': b'\x93NUMPX\x01\x00' + b'\x10\x00' + b' ' * 16,
    'version.npy': npy(hdr(), good, major=4),
    'hlen.npy': npy(hdr(), b'', raw_len=60000)[:200],
    'hlimit.npy': npy(hdr(), good, major=2, raw_len=100000),
    'fortran.npy': npy(hdr(order='True'), good),
    'bigendian.npy': npy(hdr(descr="'>f2'"), good),
    'float64.npy': npy(hdr(descr="'<f8'"), good),
    'overflow.npy': npy(hdr(shape='(4294967296, 4294967296, 2)'), good),
    'truncated.npy': npy(hdr(), good[:-2]),
    'trailing.npy': npy(hdr(), good + b'\x00\x00'),
    'unknownkey.npy': npy(hdr(extra="'extra': 1, "), good),
    'dupkey.npy': npy(hdr(extra="'descr': '<f2', "), good),
    'missing.npy': npy("{'descr': '<f2', 'fortran_order': False, }" + ' ' * 20 + '\n', good),
    'syntax.npy': npy("{'descr': '<f2' 'fortran_order': False, 'shape': (2, 1, 1, 64, 8), }      \n", good),
    'notuple.npy': npy(hdr(shape='(1024)'), good),
    'nonewline.npy': npy(hdr()[:-1] + ' ', good),
    'leadingzero.npy': npy(hdr(shape='(02, 1, 1, 64, 8)'), good),
    'fourd.npy': npy(hdr(shape='(1, 1, 64, 8)'), good[:1024]),
    'toolarge.npy': npy(hdr(shape='(2, 1, 1, 1, 2000)'), b'\x00\x3c' * 4000),
    'zero.npy': npy(hdr(shape='(2, 1, 0, 64, 8)'), b''),
    'int.npy': npy(hdr(descr="'<i4'", shape='(2, 1, 1, 64, 4)'), good),
}
for name, data in files.items():
    open(name, 'wb').write(data)

# A pair whose V has another shape, and pairs with bad token files.
open('mis.k.npy', 'wb').write(npy(hdr(shape='(1, 1, 64, 8)'), good[:1024]))
open('mis.v.npy', 'wb').write(npy(hdr(shape='(1, 1, 32, 8)'), good[:512]))
open('tok.k.npy', 'wb').write(npy(hdr(shape='(1, 1, 64, 8)'), good[:1024]))
open('tok.v.npy', 'wb').write(npy(hdr(shape='(1, 1, 64, 8)'), good[:1024]))
open('tok.tokens.npy', 'wb').write(npy(hdr(descr="'<i4'", shape='(63,)'), b'\x01\x00\x00\x00' * 63))
open('tokf.k.npy', 'wb').write(npy(hdr(shape='(1, 1, 64, 8)'), good[:1024]))
open('tokf.v.npy', 'wb').write(npy(hdr(shape='(1, 1, 64, 8)'), good[:1024]))
open('tokf.tokens.npy', 'wb').write(npy(hdr(descr="'<f2'", shape='(64,)'), good[:128]))

def st(header_obj=None, data=b'', raw=None, length=None, pad=b''):
    text = raw if raw is not None else json.dumps(header_obj).encode()
    text += pad
    n = len(text) if length is None else length
    return struct.pack('<Q', n) + text + data

t = lambda dtype, shape, a, b: {'dtype': dtype, 'shape': shape, 'data_offsets': [a, b]}
k = t('F16', [1, 64, 8], 0, 1024)
v = t('F16', [1, 64, 8], 1024, 2048)
body = good[:2048]
sts = {
    'short.safetensors': b'\x01\x02',
    'limit.safetensors': struct.pack('<Q', 100000001) + b'{}',
    'hlen.safetensors': struct.pack('<Q', 5000) + b'{"a":1}',
    'brace.safetensors': st(raw=b'["x"]'),
    'json.safetensors': st(raw=b'{"layers.0.key":' + json.dumps(k).encode() + b',}', data=body[:1024]),
    'dup.safetensors': st(raw=b'{"layers.0.key":' + json.dumps(k).encode() + b',"layers.0.key":' + json.dumps(k).encode() + b'}', data=body),
    'field.safetensors': st({'layers.0.key': dict(k, extra=1), 'layers.0.value': v}, body),
    'dtype.safetensors': st({'layers.0.key': dict(k, dtype='F7'), 'layers.0.value': v}, body),
    'hole.safetensors': st({'layers.0.key': k, 'layers.0.value': t('F16', [1, 64, 8], 1032, 2056)}, body + b'\0' * 8),
    'overlap.safetensors': st({'layers.0.key': k, 'layers.0.value': t('F16', [1, 64, 8], 1000, 2024)}, body),
    'span.safetensors': st({'layers.0.key': k, 'layers.0.value': t('F16', [1, 64, 4], 1024, 2048)}, body),
    'beyond.safetensors': st({'layers.0.key': k, 'layers.0.value': v}, body[:2000]),
    'uncovered.safetensors': st({'layers.0.key': k, 'layers.0.value': v}, body + b'\0' * 16),
    'padding.safetensors': st({'layers.0.key': k, 'layers.0.value': v}, body, pad=b'  x '),
    'utf8.safetensors': st(raw=b'{"layers.\xff.key":' + json.dumps(k).encode() + b'}', data=body[:1024]),
    'surrogate.safetensors': st(raw=b'{"\\ud800x":' + json.dumps(k).encode() + b'}', data=body[:1024]),
    'fraction.safetensors': st(raw=b'{"layers.0.key":{"dtype":"F16","shape":[1,64,8.5],"data_offsets":[0,1024]}}', data=body[:1024]),
    'negative.safetensors': st(raw=b'{"layers.0.key":{"dtype":"F16","shape":[1,-64,8],"data_offsets":[0,1024]}}', data=body[:1024]),
    'name.safetensors': st({'layers.0.key': k, 'layers.0.value': v, 'foo': t('F16', [0], 2048, 2048)}, body),
    'novalue.safetensors': st({'layers.0.key': k, 'layers.1.value': v}, body),
    'f64.safetensors': st({'layers.0.key': t('F64', [1, 64, 2], 0, 1024), 'layers.0.value': v}, body),
    'meta.safetensors': st({'__metadata__': {'a': 1}, 'layers.0.key': k, 'layers.0.value': v}, body),
    'tokens.safetensors': st({'layers.0.key': k, 'layers.0.value': v, 'tokens': t('I64', [64], 2048, 2560)}, body + b'\0' * 512),
    'shape.safetensors': st({'layers.0.key': t('F16', [64, 8], 0, 1024), 'layers.0.value': v}, body),
}
for name, data in sts.items():
    open(name, 'wb').write(data)
PY

bad() { # bad FILE TEXT: encoding FILE fails with exit 1 and TEXT in the message, writing nothing
    expect_rc 1 encode "$1" "$1.sqkv" && expect_err "$2"
    expect_err "sqkv: $1"
    CHECKS=$((CHECKS + 1))
    [ ! -e "$1.sqkv" ] || fail "encode of bad $1 left an output file"
}
bad magic.npy "not a .npy file (bad magic)"
bad version.npy "unsupported .npy format version 4.0"
bad hlen.npy "truncated .npy file: header of 60000 bytes"
bad hlimit.npy ".npy header length 100000 exceeds the limit of 65536 bytes"
bad fortran.npy "fortran_order is True (only C order is accepted)"
bad bigendian.npy "big-endian data is not supported"
bad float64.npy "unsupported .npy dtype '<f8'"
bad overflow.npy "element count overflows 64 bits"
bad truncated.npy "truncated .npy file: shape needs 2048 data bytes, the file has 2046"
bad trailing.npy "2 trailing bytes after the .npy array data"
bad unknownkey.npy "unknown key 'extra'"
bad dupkey.npy "key 'descr' appears twice"
bad missing.npy "missing key 'shape'"
bad syntax.npy "malformed .npy header"
bad notuple.npy "'shape' is not a tuple"
bad nonewline.npy "it must end with spaces and a newline"
bad leadingzero.npy "dimension with a leading zero"
bad fourd.npy "a single .npy must be [2, layers, heads, tokens, head_dim]"
bad toolarge.npy "outside the format's range"
bad zero.npy "outside the format's range"
bad int.npy "dtype int32; KV tensors must be fp16, bf16 or fp32"
expect_rc 1 encode mis mis.sqkv && expect_err "differs from the first tensor's"
expect_rc 1 encode tok tok.sqkv && expect_err "tok.tokens.npy: 63 token ids for a cache of 64 tokens"
expect_rc 1 encode tokf tokf.sqkv && expect_err "token ids must be int32"

bad short.safetensors "not a safetensors file (shorter than 8 bytes)"
bad limit.safetensors "safetensors header length 100000001 exceeds the limit of 100000000 bytes"
bad hlen.safetensors "truncated safetensors file: header of 5000 bytes"
bad brace.safetensors "the header does not start with '{'"
bad json.safetensors "malformed safetensors header: expected a string"
bad dup.safetensors "tensor \"layers.0.key\" appears twice"
bad field.safetensors "unknown field \"extra\""
bad dtype.safetensors "unknown safetensors dtype \"F7\""
bad hole.safetensors "a hole before it"
bad overlap.safetensors "it overlaps the previous tensor"
bad span.safetensors "data_offsets span 1024 bytes, but shape and dtype F16 need 512"
bad beyond.safetensors "truncated safetensors file: tensor \"layers.0.value\" ends at 2048"
bad uncovered.safetensors "16 bytes after the last tensor are not covered by any tensor"
bad padding.safetensors "is not space padding"
bad utf8.safetensors "string is not valid UTF-8"
bad surrogate.safetensors "unpaired surrogate escape"
bad fraction.safetensors "expected an integer, found a fraction or exponent"
bad negative.safetensors "expected a non-negative integer"
bad name.safetensors "unexpected tensor \"foo\""
bad novalue.safetensors "must exist for every i in 0..1"
bad f64.safetensors "has dtype F64; KV tensors must be F16, BF16 or F32"
bad meta.safetensors "\"__metadata__\" value of \"a\" is not a string"
bad tokens.safetensors "tensor tokens must be I32"
bad shape.safetensors "must be [heads, tokens, head_dim]"

# The same parsers guard compare's ORIGINAL and bench's FILE; and a missing file is an I/O error.
expect_rc 1 compare fortran.npy whatever.sqkv && expect_err "fortran_order is True"
expect_rc 1 bench --runs 1 hole.safetensors && expect_err "a hole before it"
expect_rc 3 encode no-such-file.npy out.sqkv && expect_err "no-such-file.npy: cannot open: No such file or directory"
expect_rc 3 encode no-such-prefix out.sqkv && expect_err "cannot open"
# An empty directory has no layers.
mkdir emptydir
expect_rc 1 encode emptydir out.sqkv && expect_err "directory has no layers.0.key.npy"
# Token ids from --token-ids: wrong count, garbage text.
$KVTOOL make stacked ok.npy 1 1 64 8 || fail "kvtool make"
printf '1 2 3\n' > three.txt
expect_rc 1 encode --token-ids three.txt ok.npy out.sqkv && expect_err "3 token ids for a cache of 64 tokens"
printf '1 2 x\n' > garbage.txt
expect_rc 1 encode --token-ids garbage.txt ok.npy out.sqkv && expect_err "is not part of a decimal int32"
printf '99999999999\n' > big.txt
expect_rc 1 encode --token-ids big.txt ok.npy out.sqkv && expect_err "is not part of a decimal int32"
expect_rc 2 encode --fingerprint abc ok.npy out.sqkv && expect_err "even number of hex digits"
expect_rc 2 encode --fingerprint zz ok.npy out.sqkv && expect_err "'zz' is not a hex byte"
: > empty.bin
expect_rc 1 encode --fingerprint @empty.bin ok.npy out.sqkv && expect_err "a fingerprint has 1..4096"
expect_rc 3 encode --fingerprint @missing.bin ok.npy out.sqkv && expect_err "missing.bin: cannot open"
# Inputs the library refuses: a value that does not fit fp16.
python3 - <<'PY'
import struct
h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 1, 64, 8), }"
h += ' ' * ((64 - (10 + len(h) + 1) % 64) % 64) + '\n'
vals = [1.0] * (2 * 64 * 8)
vals[5] = 1e6
open('range.npy', 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() + struct.pack('<%df' % len(vals), *vals))
vals[5] = float('nan')
open('nan.npy', 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() + struct.pack('<%df' % len(vals), *vals))
PY
expect_rc 1 encode range.npy out.sqkv && expect_err "SQKV_ERR_RANGE_INPUT"
expect_rc 0 encode --element-type bf16 range.npy out-bf16.sqkv
expect_rc 1 encode nan.npy out.sqkv && expect_err "SQKV_ERR_NONFINITE_INPUT"
finish
