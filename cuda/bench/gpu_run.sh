#!/bin/sh
# One call on the GPU machine, from the repository root, with .gpubin/ built by cuda/build_gpubin.sh:
# the CUDA tests, the full benchmark with the fast kernels, the stage times (SQKV_CUDA_PROFILE=1 run,
# apart from the timed ones, since the stage events add a synchronization), decode variants on the
# first configuration (GPU_RUN_VARIANTS=1: plan reuse off, 4 warps per block),
# optionally the general kernels (GPU_RUN_GENERAL=1: SQKV_CUDA_FAST=0, the "before" numbers) and
# Nsight Compute (GPU_RUN_NCU=1). Logs go to $OUT (default gpu_out/); the summary is printed last.
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
e4=-
if [ -n "${GPU_RUN_TEST_ENV:-}" ]; then  # the decode tests again under a tuning knob
    env $GPU_RUN_TEST_ENV timeout 300 $B/decode_test >>"$OUT/tests.log" 2>&1
    e4=$?
fi
t1=$(date +%s)
if [ "${GPU_RUN_GENERAL:-0}" = 1 ]; then
    SQKV_CUDA_FAST=0 timeout 120 $B/sqkv_cuda_bench --quick --reps 9 --out "$OUT/bench_general.md" >/dev/null 2>&1
fi
timeout 200 $B/sqkv_cuda_bench --reps 15 --out "$OUT/bench.md" >/dev/null 2>&1
SQKV_CUDA_PROFILE=1 timeout 120 $B/sqkv_cuda_bench --quick --no-e2e --reps 3 >/dev/null 2>"$OUT/profile.txt"
t2=$(date +%s)
if [ "${GPU_RUN_VARIANTS:-0}" = 1 ]; then
    for v in ${GPU_RUN_VARIANT_LIST:-"SQKV_CUDA_PLAN_CACHE=0" "SQKV_CUDA_DECODE_WARPS=4"}; do
        for c in 0 1; do
            echo "== variant $v config $c" >>"$OUT/variants.md"
            env $v timeout 60 $B/sqkv_cuda_bench --config $c --no-e2e --reps 15 2>&1 | grep -E "decode .*validated" >>"$OUT/variants.md"
        done
    done
fi
t3=$(date +%s)
if [ "${GPU_RUN_NCU:-0}" = 1 ]; then
    NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
    S="--section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy --section SchedulerStats --section WarpStateStats"
    timeout 150 "$NCU" --clock-control none -k regex:"${NCU_KERNELS:-prune_fast|pack_fast|block_sums|finish|decode_fast}" \
        -c "${NCU_COUNT:-6}" $S $B/sqkv_cuda_bench --quick --no-e2e --reps 1 >"$OUT/ncu.txt" 2>&1
fi
t4=$(date +%s)
if [ -f "$OUT/bench_general.md" ]; then
    echo "== general kernels (SQKV_CUDA_FAST=0)"
    grep -E "encode|decode|copy" "$OUT/bench_general.md"
fi
echo "== fast (default)"
cat "$OUT/bench.md"
echo "== stage times (fast)"
grep "encode stages" "$OUT/profile.txt" | head -6
if [ -f "$OUT/variants.md" ]; then
    echo "== decode variants (Llama shape)"
    sed -e 's/, sections already validated (one decode kernel, unit starts from the checked offset tables)/ validated/' "$OUT/variants.md"
fi
if [ -f "$OUT/ncu.txt" ]; then
    echo "== ncu"
    grep -E "^  [a-z ]*unnamed|^  void|Duration|Compute \(SM\)|Issue Slots Busy|Achieved Occupancy|Memory Throughput|highest-utilized|Theoretical Occupancy|Registers Per" \
        "$OUT/ncu.txt" | head -60
fi
echo "== tests: encode rc=$e1 decode rc=$e2 bounds rc=$e3 decode with ${GPU_RUN_TEST_ENV:-nothing} rc=$e4 ($((t1 - t0)) s); bench $((t2 - t1)) s; variants $((t3 - t2)) s; ncu $((t4 - t3)) s"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|Failure" "$OUT/tests.log" | head -40
