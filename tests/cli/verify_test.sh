#!/usr/bin/env bash
# verify: exit 0 only for a sound file; damaged files fail with exit 1 and a message naming the failed
# section and rule; unreadable files are exit 3. decode and info refuse damaged files the same way.
# lib.sh is next to this script, or in cli/ when Bazel runs the script from tests/.
_lib=$(dirname "$0")/lib.sh
[ -f "$_lib" ] || _lib=$(dirname "$0")/cli/lib.sh
. "$_lib" || exit 1

$KVTOOL make pair c 2 2 128 64 --tokens || fail "kvtool make"
expect_rc 0 encode --dense-window 16 --meta a=b --fingerprint 0102 c good.sqkv
expect_rc 0 verify good.sqkv && expect_out "good.sqkv: OK" && expect_out "all checksums match"
expect_rc 0 verify -q good.sqkv && expect_no_out
expect_rc 0 info --json good.sqkv && cp out good.json

# Offsets of the sections, from info --json.
first_sparse=$(json_get good.json '[s["offset"] for s in j["sections"] if s["kind"] == "SPARSE"][1]')
sparse_index=$(json_get good.json '[i for i, s in enumerate(j["sections"]) if s["kind"] == "SPARSE"][1]')
first_dense=$(json_get good.json '[s["offset"] for s in j["sections"] if s["kind"] == "DENSE"][0]')
meta_at=$(json_get good.json '[s["offset"] for s in j["sections"] if s["kind"] == "METADATA"][0]')
index_at=$(json_get good.json '[s["offset"] for s in j["sections"] if s["kind"] == "INDEX"][0]')
size=$(stat -c %s good.sqkv)

# flip FILE OUT OFFSET: copy with one bit flipped.
flip() {
    python3 -c 'import sys; d = bytearray(open(sys.argv[1], "rb").read()); d[int(sys.argv[3])] ^= 0x10; open(sys.argv[2], "wb").write(d)' "$@"
}

flip good.sqkv body.sqkv $((first_sparse + 64 + 20))
expect_rc 1 verify body.sqkv && expect_err "SQKV_ERR_SECTION_CHECKSUM" && expect_err "section $sparse_index (SPARSE"
expect_no_out
expect_rc 1 decode body.sqkv body.npy && expect_err "SQKV_ERR_SECTION_CHECKSUM"
check "no output from a damaged file" test ! -e body.npy
# Reading only other heads does not touch the damaged section: decode --heads of the other head works.
damaged_head=$(json_get good.json '[s["head_start"] for s in j["sections"] if s["kind"] == "SPARSE"][1]')
other_head=$((1 - damaged_head))
expect_rc 0 decode --heads $other_head body.sqkv other.npy
expect_rc 1 decode --heads $damaged_head body.sqkv same.npy && expect_err "SQKV_ERR_SECTION_CHECKSUM"

flip good.sqkv dense.sqkv $((first_dense + 64 + 3))
expect_rc 1 verify dense.sqkv && expect_err "SQKV_ERR_SECTION_CHECKSUM" && expect_err "DENSE"
flip good.sqkv sechdr.sqkv $((first_sparse + 5))
expect_rc 1 verify sechdr.sqkv && expect_err "SQKV_ERR_"
flip good.sqkv meta.sqkv $((meta_at + 64 + 6))
expect_rc 1 verify meta.sqkv && expect_err "SQKV_ERR_SECTION_CHECKSUM" && expect_err "METADATA"
flip good.sqkv hdr.sqkv 30
expect_rc 1 verify hdr.sqkv && expect_err "SQKV_ERR_HEADER_CHECKSUM"
expect_rc 1 info hdr.sqkv && expect_err "SQKV_ERR_HEADER_CHECKSUM"
flip good.sqkv magic.sqkv 1
expect_rc 1 verify magic.sqkv && expect_err "SQKV_ERR_BAD_MAGIC"
flip good.sqkv tail.sqkv $((size - 3))
expect_rc 1 verify tail.sqkv && expect_err "SQKV_ERR_BAD_TAIL"
flip good.sqkv index.sqkv $((index_at + 64 + 30))
expect_rc 1 verify index.sqkv && expect_err "SQKV_ERR_SECTION_CHECKSUM"
head -c $((size - 8)) good.sqkv > short.sqkv
expect_rc 1 verify short.sqkv && expect_err "SQKV_ERR_"
head -c 100 good.sqkv > tiny.sqkv
expect_rc 1 verify tiny.sqkv && expect_err "SQKV_ERR_TRUNCATED"
: > empty.sqkv
expect_rc 1 verify empty.sqkv && expect_err "SQKV_ERR_TRUNCATED"
cat good.sqkv > long.sqkv && printf 'x' >> long.sqkv
expect_rc 1 verify long.sqkv && expect_err "SQKV_ERR_"
printf 'hello, world' > text.sqkv
expect_rc 1 verify text.sqkv && expect_err "SQKV_ERR_"
expect_rc 3 verify missing.sqkv && expect_err "missing.sqkv: cannot open: No such file or directory"
mkdir dir.sqkv
expect_rc 3 verify dir.sqkv && expect_err "is a directory"

# Several files: every file is reported; the exit status is the worst one.
expect_rc 1 verify good.sqkv body.sqkv good.sqkv && expect_out "good.sqkv: OK" && expect_err "body.sqkv"
check "both good files reported" test "$(grep -c 'good.sqkv: OK' out)" = 2
expect_rc 3 verify good.sqkv body.sqkv missing.sqkv

# A dense input given to verify is not an .sqkv file.
expect_rc 1 verify c.k.npy && expect_err "SQKV_ERR_BAD_MAGIC"
finish
