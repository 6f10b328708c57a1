#!/usr/bin/env bash
# The progress line: on stderr for work longer than about a second, only when stderr is a terminal;
# never in a pipe or file, never with -q or --no-progress.
# lib.sh is next to this script, or in cli/ when Bazel runs the script from tests/.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

# Long enough (well over a second) to show progress on a terminal.
WORK="demo --layers 12 --heads 8 --tokens 4096 --queries 0"

"$SQKV" $WORK -o a.sqkv > /dev/null 2> err.txt
check "demo succeeded" test -s a.sqkv
check "no progress line when stderr is a file" test "$(tr -cd '\r' < err.txt | wc -c)" = 0
check "stderr empty when stderr is a file" test ! -s err.txt

if ! command -v script >/dev/null 2>&1; then
    echo "note: script(1) not found; terminal progress not tested"
    finish
fi
# script(1) gives the command a pseudo-terminal; its output (stdout and stderr) lands in tty.txt.
script -qec "\"$SQKV\" $WORK -o b.sqkv > /dev/null" /dev/null > tty.txt 2>&1
check "progress shown on a terminal" grep -qE "sqkv: demo: [a-z ]+ +[0-9.]+% \([0-9]+/12\)" tty.txt
check "progress line uses carriage returns" test "$(tr -cd '\r' < tty.txt | wc -c)" -gt 0
script -qec "\"$SQKV\" -q $WORK -o c.sqkv > /dev/null" /dev/null > tty-q.txt 2>&1
check "no progress with -q" test "$(grep -c "%" tty-q.txt)" = 0
script -qec "\"$SQKV\" $WORK --no-progress -o d.sqkv > /dev/null" /dev/null > tty-np.txt 2>&1
check "no progress with --no-progress" test "$(grep -c "%" tty-np.txt)" = 0
# A short command shows nothing even on a terminal.
script -qec "\"$SQKV\" verify a.sqkv > /dev/null" /dev/null > tty-short.txt 2>&1
check "no progress for short work" test "$(tr -cd '\r' < tty-short.txt | wc -c)" = 0
finish
