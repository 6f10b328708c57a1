# lib.sh: shared by the sqkv CLI tests (tests/cli/*_test.sh). Source it, then use the helpers.
#
# The sqkv binary is taken from $1, else $SQKV, else $SQKV_BIN, else bazel-bin/tools/sqkv. Each test
# works in its own temporary directory ($TMP, removed at exit) and exits non-zero when any check fails.

set -u

_sqkv_arg=${1:-${SQKV:-${SQKV_BIN:-bazel-bin/tools/sqkv}}}
case "$_sqkv_arg" in
    /*) SQKV=$_sqkv_arg ;;
    *) SQKV=$PWD/$_sqkv_arg ;;
esac
if [ ! -x "$SQKV" ]; then
    echo "FAIL: sqkv binary not found or not executable: $SQKV" >&2
    exit 1
fi
export SQKV

_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLI_DIR=$_here   # this directory: kvtool.py, attention_check.py
KVTOOL="python3 $CLI_DIR/kvtool.py"
TMP=$(mktemp -d "${TEST_TMPDIR:-${TMPDIR:-/tmp}}/sqkv-cli.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
cd "$TMP" || exit 1

FAILURES=0
CHECKS=0

fail() {
    echo "FAIL: $*" >&2
    FAILURES=$((FAILURES + 1))
}

# run ARGS...: runs sqkv; RC gets the exit status, $TMP/out and $TMP/err the output.
run() {
    "$SQKV" "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
    CHECKS=$((CHECKS + 1))
}

# expect_rc WANT ARGS...: runs sqkv and checks its exit status. Returns 1 on a mismatch.
expect_rc() {
    local want=$1
    shift
    run "$@"
    if [ "$RC" != "$want" ]; then
        fail "sqkv $* -> exit $RC, expected $want; stderr: $(head -c 800 "$TMP/err")"
        return 1
    fi
    return 0
}

# expect_err TEXT / expect_out TEXT: the last run's stderr / stdout contains TEXT (fixed string).
expect_err() {
    CHECKS=$((CHECKS + 1))
    grep -qF -e "$1" "$TMP/err" || fail "stderr of the last command lacks '$1': $(head -c 800 "$TMP/err")"
}
expect_out() {
    CHECKS=$((CHECKS + 1))
    grep -qF -e "$1" "$TMP/out" || fail "stdout of the last command lacks '$1': $(head -c 800 "$TMP/out")"
}
expect_no_out() {
    CHECKS=$((CHECKS + 1))
    [ ! -s "$TMP/out" ] || fail "stdout of the last command should be empty: $(head -c 300 "$TMP/out")"
}

# check DESCRIPTION COMMAND...: any shell command that must succeed.
check() {
    local what=$1
    shift
    CHECKS=$((CHECKS + 1))
    "$@" || fail "$what"
}

# json_get FILE EXPR: evaluates a Python expression on the parsed JSON `j` and prints the result.
json_get() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

finish() {
    if [ "$FAILURES" -ne 0 ]; then
        echo "$(basename "$0"): $FAILURES of $CHECKS checks failed" >&2
        exit 1
    fi
    echo "$(basename "$0"): all $CHECKS checks passed"
    exit 0
}
