#!/usr/bin/env bash
# Outputs are never replaced without -f, are written crash-safe (no temporary files left behind, the
# old file intact after a failure), and -f replaces them.
# lib.sh is next to this script, or in cli/ when Bazel runs the script from tests/.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

$KVTOOL make stacked a.npy 1 1 64 64 --seed 1 || fail "kvtool make"
$KVTOOL make stacked b.npy 1 1 64 64 --seed 2 || fail "kvtool make"
expect_rc 0 encode a.npy out.sqkv
cp out.sqkv a.sqkv

# encode: exists -> exit 3, message, file untouched, nothing else created.
expect_rc 3 encode b.npy out.sqkv && expect_err "out.sqkv: already exists; not overwritten (use -f to overwrite)"
check "encode without -f leaves the file" cmp -s out.sqkv a.sqkv
check "no temporary files" test -z "$(ls | grep '\.tmp\.')"
# -f (before or after the command) replaces it.
expect_rc 0 encode -f b.npy out.sqkv
check "-f replaced the file" test "$(cmp -s out.sqkv a.sqkv; echo $?)" = 1
expect_rc 0 -f encode a.npy out.sqkv
check "global -f replaced it again" cmp -s out.sqkv a.sqkv
check "--force works" "$SQKV" encode --force -q b.npy out.sqkv

# decode: every output form refuses to overwrite, checked before any work.
expect_rc 0 decode a.sqkv dec.npy
cp dec.npy dec.keep
expect_rc 3 decode a.sqkv dec.npy && expect_err "dec.npy: already exists"
check "decode without -f leaves the file" cmp -s dec.npy dec.keep
expect_rc 0 decode -f --dtype fp32 a.sqkv dec.npy
check "decode -f replaced the file" test "$(cmp -s dec.npy dec.keep; echo $?)" = 1
touch pre.v.npy
expect_rc 3 decode a.sqkv pre && expect_err "pre.v.npy: already exists"
check "pair output: nothing written when one file exists" test ! -e pre.k.npy
check "pair output: existing file untouched" test ! -s pre.v.npy
expect_rc 0 decode -f a.sqkv pre && check "pair written with -f" test -s pre.k.npy -a -s pre.v.npy

# demo: the default output name, and -o, obey the same rule.
expect_rc 0 demo --layers 1 --heads 1 --tokens 64 --queries 1
check "demo default file" test -s sqkv-demo.sqkv
cp sqkv-demo.sqkv demo.keep
expect_rc 3 demo --layers 1 --heads 1 --tokens 64 && expect_err "sqkv-demo.sqkv: already exists; not overwritten (use -f to overwrite)"
expect_no_out
check "demo without -f leaves the file" cmp -s sqkv-demo.sqkv demo.keep
expect_rc 0 demo -f --layers 1 --heads 1 --tokens 64 --seed 7 --queries 1
check "demo -f replaced the file" test "$(cmp -s sqkv-demo.sqkv demo.keep; echo $?)" = 1

# A failed encode (bad input) leaves no output and no temporary file.
printf 'garbage' > bad.npy
expect_rc 1 encode bad.npy new.sqkv
check "no output after a failure" test ! -e new.sqkv
# An output directory that does not exist is an I/O error.
expect_rc 3 encode a.npy no/such/dir/x.sqkv && expect_err "cannot create a temporary file next to it"
# A directory as output.
mkdir adir
expect_rc 3 encode -f a.npy adir && expect_err "adir: is a directory"
check "no temporary files at the end" test -z "$(ls -a . adir | grep '\.tmp\.')"

# Interrupted work leaves no temporary file: SIGTERM during a large decode to a file.
expect_rc 0 demo --layers 8 --heads 8 --tokens 2048 --queries 0 -o big.sqkv
"$SQKV" decode --dtype fp32 big.sqkv big.npy 2>/dev/null &
pid=$!
for _ in $(seq 1 100); do
    ls | grep -q '^big\.npy\.tmp\.' && break
    sleep 0.02
done
kill -TERM "$pid" 2>/dev/null
wait "$pid"
status=$?
if [ "$status" -ne 0 ]; then
    check "killed decode left no temporary file" test -z "$(ls | grep '\.tmp\.')"
    check "killed decode left no output" test ! -e big.npy
else
    echo "note: decode finished before the signal; interruption not tested"
fi
finish
