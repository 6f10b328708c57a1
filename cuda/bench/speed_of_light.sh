#!/bin/sh
# Builds the speed-of-light benchmarks of cuda/bench/speed_of_light.patch (results/gpu_bench.md, session 23):
# one sqkv_cuda_bench per flag set, in .gpubin/sol<FLAGS>/, with the patched encode_fast.cu compiled from a
# copy (the working tree is not touched) and every other object from cuda/build_gpubin.sh, which runs first.
# Usage: sh cuda/bench/speed_of_light.sh FLAGS...   e.g. 0 1 3 7 15
set -eu
cd "$(dirname "$0")/../.."
sh cuda/build_gpubin.sh 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/cuda"
cp cuda/encode_fast.cu "$tmp/cuda/"
(cd "$tmp" && git apply "$OLDPWD/cuda/bench/speed_of_light.patch")
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
FLAGS=$(cat .gpubin/obj/flags)
LIBS=".gpubin/libsqkv_cpu.a -L/usr/local/cuda/lib64 -lcudart_static -ldl -lrt -lpthread /usr/lib/x86_64-linux-gnu/libxxhash.a /usr/lib/x86_64-linux-gnu/libzstd.a -lm"
for f in "$@"; do
  d=.gpubin/sol$f
  mkdir -p "$d"
  $NVCC $FLAGS -DSQKV_SOL="$f" -c "$tmp/cuda/encode_fast.cu" -o "$tmp/encode_fast.o"
  ar rcs "$tmp/lib.a" $(ls .gpubin/obj/*.o | grep -v '/c_\|/t_\|/encode_fast.o') "$tmp/encode_fast.o"
  g++ -std=c++17 -O2 -Drestrict=__restrict__ -I . -I codec/include -I codec/src -I cuda -I /usr/local/cuda/include \
    cuda/bench/*.cc .gpubin/obj/t_*.o -o "$d/sqkv_cuda_bench" "$tmp/lib.a" $LIBS -pthread
  rm -f "$tmp/lib.a"
done
