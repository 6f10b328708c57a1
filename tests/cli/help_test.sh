#!/usr/bin/env bash
# --help, --version, usage errors (exit 2) of every command.
# lib.sh is next to this script, or in cli/ when Bazel runs the script from tests/.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

expect_rc 0 --help && expect_out "Usage: sqkv" && expect_out "Exit status: 0 success; 1 bad or corrupt data"
expect_rc 0 --version && expect_out "SQKV format 1.1" && expect_out "sqkv 1.0.0"
expect_rc 0 -V && expect_out "SQKV format 1.1"
expect_rc 0 help && expect_out "Commands:"
for cmd in demo info verify encode decode bench compare append repair; do
    expect_rc 0 "$cmd" --help && expect_out "Usage: sqkv $cmd" && expect_out "Common options:"
    expect_rc 0 "$cmd" -h && expect_out "Usage: sqkv $cmd"
    expect_rc 0 help "$cmd" && expect_out "Usage: sqkv $cmd"
    expect_rc 2 "$cmd" --no-such-option && expect_err "sqkv: $cmd: unknown option '--no-such-option'"
done
# The main command's help lists every command.
expect_rc 0 --help
for cmd in demo info verify encode decode bench compare append repair; do expect_out "  $cmd "; done
# Documentation promised by the issue.
expect_rc 0 demo --help && expect_out "rotary embedding" && expect_out "Student-t" && expect_out "outlier channels"
expect_rc 0 encode --help && expect_out "PREFIX.k.npy" && expect_out "layers.{i}.key" && expect_out "streaming encoder is future work"
expect_rc 0 encode --help && expect_out "--token-ids FILE" && expect_out "--fingerprint HEX|@FILE" && expect_out "--meta KEY=VALUE"
for opt in --sparsity --no-prune --bits --quantizer --scales --dense-window --offset-interval-log2 \
    --heads-per-section --tokens-per-section --element-type --zstd; do
    expect_out "$opt"
done
expect_rc 0 decode --help && expect_out "--dtype" && expect_out "--layers LIST" && expect_out "streaming"
expect_rc 0 decode --help && expect_out "the input is streamed"

# Usage errors: exit 2 with a message on stderr and nothing on stdout.
expect_rc 2 && expect_err "Usage: sqkv" && expect_no_out
expect_rc 2 frobnicate && expect_err "sqkv: 'frobnicate' is not a command"
expect_rc 2 help frobnicate && expect_err "is not a command"
expect_rc 2 --bogus info && expect_err "unknown option '--bogus'"
expect_rc 2 info && expect_err "sqkv: info: no FILE given"
expect_rc 2 info a b && expect_err "one FILE at a time"
expect_rc 2 verify && expect_err "no FILE given"
expect_rc 2 encode only-one && expect_err "expected IN and OUT"
expect_rc 2 encode a b c && expect_err "too many arguments"
expect_rc 2 decode x.sqkv && expect_err "expected IN and OUT"
expect_rc 2 compare x && expect_err "expected ORIGINAL and COMPRESSED"
expect_rc 2 compare - - && expect_err "only one of ORIGINAL and COMPRESSED can be stdin"
expect_rc 2 encode --bits 9 a b && expect_err "--bits: 9 is not one of 1 to 8, or 16"
expect_rc 2 encode --range-search sometimes a b && expect_err "--range-search: 'sometimes' is not none, values, keys or both"
expect_rc 2 encode --bits x a b && expect_err "--bits: 'x' is not a non-negative integer"
expect_rc 2 encode --sparsity 1.5 a b && expect_err "--sparsity: 1.5 is out of range"
expect_rc 2 encode --sparsity abc a b && expect_err "is not a number"
expect_rc 2 encode --quantizer fancy a b && expect_err "--quantizer: 'fancy'"
expect_rc 2 encode --scales row a b && expect_err "--scales: 'row'"
expect_rc 2 encode --bits 16 --quantizer symmetric a b && expect_err "--quantizer exact goes with --bits 16"
expect_rc 2 encode --bits 4 --scales none a b && expect_err "--scales none goes with the exact quantizer"
expect_rc 2 encode --tokens-per-section 100 a b && expect_err "not a multiple of 64"
expect_rc 2 encode --offset-interval-log2 21 a b && expect_err "out of range (0..20)"
expect_rc 2 encode --element-type fp32 a b && expect_err "--element-type: 'fp32'"
expect_rc 2 encode --meta novalue a b && expect_err "--meta: 'novalue' is not KEY=VALUE"
expect_rc 2 encode --bits && expect_err "option '--bits' needs a value"
expect_rc 2 encode --no-prune=1 a b && expect_err "takes no value"
expect_rc 2 decode --dtype fp64 a b && expect_err "--dtype: 'fp64'"
expect_rc 2 decode --format zip a b.npy && expect_err "--format: 'zip'"
expect_rc 2 decode --dtype bf16 a b.npy && expect_err ".npy has no bf16 dtype"
expect_rc 2 decode a out.bin && expect_err "cannot tell the output format"
expect_rc 2 demo extra && expect_err "unexpected argument 'extra'"
expect_rc 2 demo --layers 0 && expect_err "--layers: 0 is out of range"
expect_rc 2 demo -o - && expect_err "not stdout"
expect_rc 2 bench --runs 0 && expect_err "--runs: 0 is out of range"
expect_rc 2 info --stdin-limit 12Q x && expect_err "--stdin-limit"
# Short options cluster and take values as getopt does.
expect_rc 2 encode -qb9 a b && expect_err "--bits: 9 is not one of"
# "--" ends the options: "--bits" is then a file name, and two names are too few plus one.
expect_rc 2 encode -- --bits a b && expect_err "too many arguments"
finish
