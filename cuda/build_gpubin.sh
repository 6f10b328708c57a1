#!/bin/sh
# Builds the CUDA tests and benchmark outside Bazel into .gpubin/ (statically linked to cudart, so
# the binaries run on a GPU machine that has only the driver). Usage: sh cuda/build_gpubin.sh [jobs]
# NVCC_EXTRA adds nvcc flags, e.g. NVCC_EXTRA=-lineinfo for Nsight Compute's source view
# (cuda/bench/ncu_lines.py); objects built with other flags are rebuilt.
set -eu
cd "$(dirname "$0")/.."
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
OUT=.gpubin
mkdir -p "$OUT/obj"
FLAGS="${NVCC_EXTRA:-} -O3 -std=c++17 -Drestrict=__restrict__ -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 -I codec/include -I codec/src -I cuda"
if [ "$(cat "$OUT/obj/flags" 2>/dev/null)" != "$FLAGS" ]; then
  rm -f "$OUT"/obj/*.o
  echo "$FLAGS" > "$OUT/obj/flags"
fi
for f in cuda/*.cu; do
  o="$OUT/obj/$(basename "$f" .cu).o"
  if [ ! -f "$o" ] || [ "$f" -nt "$o" ] || [ -n "$(find cuda -name '*.cuh' -newer "$o")" ]; then
    $NVCC $FLAGS -Xcompiler -Wall -c "$f" -o "$o"
  fi
done
for f in codec/src/*.c; do
  gcc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -I codec/include -I codec/src -c "$f" -o "$OUT/obj/c_$(basename "$f" .c).o"
done
ar rcs "$OUT/libsqkv_cpu.a" "$OUT"/obj/c_*.o
ar rcs "$OUT/libsqkv_cuda.a" $(ls "$OUT"/obj/*.o | grep -v '/c_')
LIBS="$OUT/libsqkv_cuda.a $OUT/libsqkv_cpu.a -L/usr/local/cuda/lib64 -lcudart_static -ldl -lrt -lpthread /usr/lib/x86_64-linux-gnu/libxxhash.a /usr/lib/x86_64-linux-gnu/libzstd.a -lm"
for t in cuda/*_test.cc; do
  n=$(basename "$t" .cc)
  g++ -std=c++17 -O2 -Wall -Wextra -Werror -Drestrict=__restrict__ -I codec/include -I codec/src -I cuda -I /usr/local/cuda/include \
    "$t" -o "$OUT/$n" /usr/lib/x86_64-linux-gnu/libgtest_main.a /usr/lib/x86_64-linux-gnu/libgtest.a $LIBS -pthread
done
if ls cuda/bench/*.cc >/dev/null 2>&1; then
  # the benchmark reads the real caches (--kv) with tools/common
  for f in tools/common/*.c; do
    gcc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -I . -I codec/include -I codec/src -c "$f" -o "$OUT/obj/t_$(basename "$f" .c).o"
  done
  g++ -std=c++17 -O2 -Wall -Wextra -Drestrict=__restrict__ -I . -I codec/include -I codec/src -I cuda -I /usr/local/cuda/include \
    cuda/bench/*.cc "$OUT"/obj/t_*.o -o "$OUT/sqkv_cuda_bench" $LIBS -pthread
fi
echo built: $(ls "$OUT" | grep -v obj)
