#!/bin/sh
# One call on the GPU machine, from the repository root, with .gpubin/ built by cuda/build_gpubin.sh:
# the CUDA tests, the benchmark with the general kernels only (SQKV_CUDA_FAST=0: the "before" numbers,
# same run), the full benchmark with the fast kernels, the stage times of each (SQKV_CUDA_PROFILE=1
# runs, apart from the timed ones, since the stage events add a synchronization), and optionally
# (GPU_RUN_NCU=1) Nsight Compute sections of the fast kernels. Logs go to $OUT (default gpu_out/);
# the summary is printed last.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
B=.gpubin
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv \
    >"$OUT/gpu.txt" 2>&1
t0=$(date +%s)
timeout 300 $B/encode_test >"$OUT/tests.log" 2>&1
e1=$?
timeout 300 $B/decode_test >>"$OUT/tests.log" 2>&1
e2=$?
timeout 60 $B/code_bounds_test >>"$OUT/tests.log" 2>&1
e3=$?
t1=$(date +%s)
SQKV_CUDA_FAST=0 timeout 120 $B/sqkv_cuda_bench --quick --reps 9 --out "$OUT/bench_general.md" >/dev/null 2>&1
SQKV_CUDA_FAST=0 SQKV_CUDA_PROFILE=1 timeout 120 $B/sqkv_cuda_bench --quick --reps 3 >/dev/null 2>"$OUT/profile.txt"
timeout 200 $B/sqkv_cuda_bench --reps 15 --out "$OUT/bench.md" >/dev/null 2>&1
SQKV_CUDA_PROFILE=1 timeout 120 $B/sqkv_cuda_bench --quick --reps 3 >/dev/null 2>>"$OUT/profile.txt"
t2=$(date +%s)
if [ "${GPU_RUN_NCU:-0}" = 1 ]; then
    NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
    S="--section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy --section SchedulerStats --section WarpStateStats"
    timeout 150 "$NCU" --clock-control none -k regex:'prune_fast|pack_fast|block_sums|finish|decode_fast' -c 6 $S \
        $B/sqkv_cuda_bench --quick --reps 1 >"$OUT/ncu.txt" 2>&1
fi
t3=$(date +%s)
echo "== general kernels (SQKV_CUDA_FAST=0)"
grep -E "encode|decode|copy" "$OUT/bench_general.md"
echo "== fast (default)"
cat "$OUT/bench.md"
echo "== stage times: general (first lines), fast (last lines)"
grep "encode stages" "$OUT/profile.txt" | sed -n '4,6p;10,12p'
if [ -f "$OUT/ncu.txt" ]; then
    echo "== ncu"
    grep -E "^  [a-z ]*unnamed|^  void|Duration|Compute \(SM\)|Issue Slots Busy|Achieved Occupancy|Memory Throughput|highest-utilized|Theoretical Occupancy" \
        "$OUT/ncu.txt" | head -60
fi
echo "== tests: encode rc=$e1 decode rc=$e2 bounds rc=$e3 ($((t1 - t0)) s); bench $((t2 - t1)) s; ncu $((t3 - t2)) s"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|Failure|^\[       OK" "$OUT/tests.log" | head -40
