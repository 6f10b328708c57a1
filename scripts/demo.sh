#!/usr/bin/env bash
# Build (optimized) and run the SQKV demo:  scripts/demo.sh [ARGS...]
# runs `sqkv demo ARGS...`. Note: under `bazel run` the program's working
# directory is its runfiles tree; the caller's directory is in
# $BUILD_WORKING_DIRECTORY.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/ensure-deps.sh
exec bazel run -c opt --ui_event_filters=-info --noshow_progress \
  //tools:sqkv -- demo "$@"
