#!/usr/bin/env bash
# Build (optimized) and run the SQKV demo:  scripts/demo.sh [ARGS...]
# runs `sqkv demo ARGS...`. Note: under `bazel run` the program's working
# directory is its runfiles tree; the caller's directory is in
# $BUILD_WORKING_DIRECTORY.
set -euo pipefail
caller=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure-deps.sh
if [[ $# -eq 0 ]]; then
  # Without arguments the demo's file goes to the caller's directory (not the runfiles tree, where the
  # commands the demo suggests next would not find it) and a second run replaces it: the file is the
  # demo's own, and the tool replaces files atomically (temp file, fsync, rename).
  set -- -f -o "$caller/sqkv-demo.sqkv"
fi
exec bazel run -c opt --ui_event_filters=-info --noshow_progress \
  //tools:sqkv -- demo "$@"
