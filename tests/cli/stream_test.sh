#!/usr/bin/env bash
# stdin through the streaming decoder: `decode - OUT.npy` equals decoding the file, byte for byte;
# a stream cut short fails with exit 1, names where it stopped and leaves no output; `verify -`
# accepts a sound stream and rejects a corrupted one; --zstd files stream too.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

L=2 H=3 T=200 D=72
$KVTOOL make pair in $L $H $T $D --tokens || fail "kvtool make pair"
$KVTOOL make safetensors inbf.safetensors $L $H $T $D --dtype bf16 || fail "kvtool make bf16"

# stdin_run ARGS... < FILE: like run, with stdin from the redirect.
stdin_run() {
    "$SQKV" "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
    CHECKS=$((CHECKS + 1))
}
expect_stdin_rc() {
    local want=$1
    shift
    stdin_run "$@"
    [ "$RC" = "$want" ] || fail "sqkv $* < stdin -> exit $RC, expected $want; stderr: $(head -c 800 "$TMP/err")"
}

expect_rc 0 encode in q.sqkv --bits 4 --dense-window 40 --tokens-per-section 64
expect_rc 0 encode in z.sqkv --bits 16 --sparsity 0 --zstd 9
expect_rc 0 encode inbf.safetensors bf.sqkv --bits 8
for f in q z bf; do
    expect_rc 0 decode $f.sqkv $f.file.npy
    expect_stdin_rc 0 decode - $f.pipe.npy < $f.sqkv
    expect_err "streamed"
    check "$f: decode from a pipe equals decode from the file" cmp $f.file.npy $f.pipe.npy
    # a real pipe, not a redirected file
    cat $f.sqkv | "$SQKV" -q decode --dtype fp32 - $f.pipe32.npy || fail "$f: decode --dtype fp32 from a pipe"
    expect_rc 0 decode --dtype fp32 $f.sqkv $f.file32.npy
    check "$f: --dtype fp32 from a pipe equals the file" cmp $f.file32.npy $f.pipe32.npy
    expect_stdin_rc 0 verify - < $f.sqkv
    expect_out "(stdin): OK"
done
check "zstd values are exact" $KVTOOL same in z.pipe.npy
# Outputs that still read stdin fully agree as well.
expect_rc 0 decode q.sqkv q.file.safetensors
expect_stdin_rc 0 decode - q.pipe.safetensors < q.sqkv
check "safetensors from stdin equals the file's" cmp q.file.safetensors q.pipe.safetensors

# A stream cut short in the middle of a section.
size=$(stat -c %s q.sqkv)
head -c $((size / 2)) q.sqkv > half.sqkv
expect_stdin_rc 1 decode - half.npy < half.sqkv
expect_err "SQKV_ERR_TRUNCATED"
expect_err "inside section"
expect_err "bytes arrived"
check "a cut stream leaves no output" test ! -e half.npy
check "nor a temporary file" test -z "$(ls | grep '^half\.npy')"
expect_stdin_rc 1 verify - < half.sqkv
expect_err "SQKV_ERR_TRUNCATED"
# Cut right before the INDEX: every tensor arrived, the index is what is missing.
head -c $((size - 100)) q.sqkv > noindex.sqkv
expect_stdin_rc 1 verify - < noindex.sqkv
expect_err "SQKV_ERR_TRUNCATED"
expect_err "INDEX"
expect_stdin_rc 1 verify - < /dev/null
expect_err "(stdin)"

# A corrupted byte in the middle of a section body.
cp q.sqkv bad.sqkv
python3 - <<'PY' || fail "corrupt"
d = bytearray(open('bad.sqkv', 'rb').read())
d[len(d) // 2] ^= 0x40
open('bad.sqkv', 'wb').write(bytes(d))
PY
expect_stdin_rc 1 verify - < bad.sqkv
expect_err "SQKV_ERR_"
expect_err "section"
expect_stdin_rc 1 decode - bad.npy < bad.sqkv
check "a corrupt stream leaves no output" test ! -e bad.npy
expect_rc 1 verify bad.sqkv

finish
