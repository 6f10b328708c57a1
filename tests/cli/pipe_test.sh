#!/usr/bin/env bash
# "-" is stdin/stdout: pipe round trips, verify/info from stdin, the stdin size limit, and the refusal
# to write binary data to a terminal.
# lib.sh is next to this script, or in cli/ when Bazel runs the script from tests/.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

$KVTOOL make stacked in.npy 2 2 96 64 || fail "kvtool make stacked"
$KVTOOL make safetensors in.safetensors 2 2 96 64 --tokens || fail "kvtool make safetensors"

# The issue's example: sqkv encode in.npy - | sqkv decode - out.npy
"$SQKV" encode --bits 16 --sparsity 0 in.npy - 2>enc.err | "$SQKV" decode - out.npy 2>dec.err
status=("${PIPESTATUS[@]}")
check "encode to stdout exits 0 (stderr: $(cat enc.err))" test "${status[0]}" = 0
check "decode from stdin exits 0 (stderr: $(cat dec.err))" test "${status[1]}" = 0
check "pipe round trip is exact" $KVTOOL same in.npy out.npy
check "encode names stdout in its summary" grep -qF "in.npy -> (stdout)" enc.err
check "decode names stdin in its summary" grep -qF "(stdin) -> out.npy" dec.err

# safetensors through both pipes, lossy, and stdout as safetensors (the default for "-").
"$SQKV" encode in.safetensors - 2>/dev/null | "$SQKV" decode - - 2>/dev/null > out.safetensors
check "pipe to stdout gives safetensors" $KVTOOL close in.safetensors out.safetensors 0.95
check "tokens survive the pipes" $KVTOOL tokens out.safetensors 96
# --format npy on stdout
"$SQKV" encode -q in.npy - | "$SQKV" decode -q --format npy - - > out2.npy
check "--format npy to stdout" $KVTOOL close in.npy out2.npy 0.95
check "stdout .npy has the npy magic" test "$(head -c 6 out2.npy | od -An -c | tr -d ' ')" = "223NUMPY"

# Encoding from stdin: .npy and .safetensors are recognized by content.
"$SQKV" encode -q --bits 16 --sparsity 0 - from-stdin.sqkv < in.safetensors
check "encode from stdin (safetensors)" test -s from-stdin.sqkv
expect_rc 0 decode from-stdin.sqkv fs.safetensors && check "stdin safetensors exact" $KVTOOL same in.safetensors fs.safetensors
"$SQKV" encode -q - from-stdin2.sqkv < in.npy
check "encode from stdin (npy)" test -s from-stdin2.sqkv

# verify and info read stdin.
expect_rc 0 encode in.npy f.sqkv
"$SQKV" verify - < f.sqkv > v.out 2>&1
check "verify - exits 0" test $? = 0
check "verify - says OK" grep -qF "(stdin): OK" v.out
"$SQKV" info --json - < f.sqkv > i.json
check "info - parses" test "$(json_get i.json 'j["geometry"]["n_layers"]')" = 2
check "info - names stdin" test "$(json_get i.json 'j["file"]')" = "(stdin)"
# A corrupt file through stdin fails verify with exit 1.
head -c 1000 f.sqkv > short.sqkv
"$SQKV" verify - < short.sqkv 2> v.err
check "truncated stdin fails with 1" test $? = 1
check "truncated stdin names the problem" grep -q "SQKV_ERR_" v.err

# The in-memory limit for stdin: over it, exit 1 with a message naming the option.
"$SQKV" --quiet info --stdin-limit 1K - < f.sqkv 2> lim.err
check "stdin over the limit exits 1" test $? = 1
check "limit message" grep -qF "larger than the in-memory limit of 1024 bytes" lim.err
"$SQKV" decode --stdin-limit 64M - lim.npy < f.sqkv 2>/dev/null
check "a sufficient limit works" test $? = 0
"$SQKV" --stdin-limit=2K info - < f.sqkv 2> lim2.err > /dev/null
check "the limit also works before the command" grep -qF "limit of 2048 bytes" lim2.err

# A closed pipe is a write error (exit 3), not a silent death by SIGPIPE.
"$SQKV" decode --dtype fp32 --format npy f.sqkv - 2>pipe.err | head -c 10 > /dev/null
status=("${PIPESTATUS[@]}")
check "closed stdout pipe exits 3 (got ${status[0]})" test "${status[0]}" = 3
check "closed pipe message" grep -qF "write failed" pipe.err

# Binary data is never written to a terminal without -f (needs a pseudo-terminal: script(1)).
if command -v script >/dev/null 2>&1; then
    script -qec "\"$SQKV\" encode in.npy -; echo \"rc=\$?\"" /dev/null > tty.out 2>&1
    check "refuses a terminal stdout" grep -qF "refusing to write binary data to a terminal" tty.out
    check "refusal is a usage error" grep -qF "rc=2" tty.out
else
    echo "note: script(1) not found; terminal refusal not tested"
fi
finish
