#!/usr/bin/env bash
# Install the Debian 12 packages the SQKV build needs, if any is missing.
# Idempotent and quick when everything is present (no apt-get call at all).
# Needs root (or sudo) only when something has to be installed.
set -euo pipefail

PACKAGES=(
  bazel-bootstrap   # Bazel 4.2.3 (WORKSPACE style), /usr/bin/bazel
  libzstd-dev       # @zstd      (static libzstd.a + headers)
  libxxhash-dev     # @xxhash    (static libxxhash.a + headers)
  googletest        # gtest sources (dependency of libgtest-dev)
  libgtest-dev      # @gtest     (libgtest.a, libgtest_main.a)
  clang             # --config=clang/asan/fuzz
  libclang-rt-14-dev  # sanitizer + libFuzzer runtimes (only a Recommends of clang)
  lld               # linker for --config=fuzz
  valgrind          # optional memory checking by hand
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [[ $status != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "ensure-deps: installing: ${missing[*]}" >&2
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "ensure-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
