#!/bin/sh
# Before/after on the GPU machine (repository root), with .gpubin/ from cuda/build_gpubin.sh plus a
# benchmark binary of the older code as .gpubin/$BEFORE (build it from `git archive <commit> cuda codec`
# with the same script): all GPU tests of the current build, then the encode rows of both binaries on the
# Llama shape (configs 0-3, interleaved, ROUNDS rounds), stage times, the full benchmark of the current
# binary (--no-e2e), and Nsight Compute on one pruning-kernel launch (pipes, stall samples).
OUT=${OUT:-gpu_out}; B=.gpubin; BEFORE=${BEFORE:-sqkv_cuda_bench_orig}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv > $OUT/gpu.txt 2>&1; cat $OUT/gpu.txt
t0=$(date +%s)
timeout 300 $B/encode_test > $OUT/tests.log 2>&1; e1=$?
timeout 300 $B/decode_test >> $OUT/tests.log 2>&1; e2=$?
timeout 60 $B/code_bounds_test >> $OUT/tests.log 2>&1; e3=$?
t1=$(date +%s)
for r in $(seq 1 ${ROUNDS:-2}); do for b in $BEFORE sqkv_cuda_bench; do for c in 0 1 2 3; do
  echo "round $r $b config $c $(timeout 60 $B/$b --config $c --no-e2e --reps 15 2>&1 | grep -E '^\| encode' | cut -d'|' -f2,4,5)"
done; done; done | tee $OUT/ab.txt
for b in $BEFORE sqkv_cuda_bench; do
  echo "stages $b: $(SQKV_CUDA_PROFILE=1 timeout 60 $B/$b --config 0 --no-e2e --reps 3 2>&1 | grep 'encode stages' | tail -1)"
done
timeout 200 $B/sqkv_cuda_bench --reps 15 --no-e2e --out $OUT/bench.md > /dev/null 2>&1; echo "bench rc=$?"
t2=$(date +%s)
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout 120 "$NCU" --clock-control none -k regex:prune_fast -c 1 --section SpeedOfLight --section Occupancy --section SchedulerStats --section WarpStateStats --section SourceCounters \
   --metrics smsp__inst_executed_pipe_alu.sum,smsp__inst_executed_pipe_fma.sum,smsp__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active,smsp__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active \
   --print-details all $B/sqkv_cuda_bench --config 0 --no-e2e --reps 1 > $OUT/ncu.txt 2>&1
t3=$(date +%s)
cat $OUT/bench.md
grep -E "Duration|Executed Instructions  |Achieved Occupancy|Theoretical Occupancy|Registers Per|pipe_alu|pipe_fma|Warp Cycles Per Issued|No Eligible|DRAM Throughput" $OUT/ncu.txt | sed 's/  */ /g' | head -20
grep -E "\(smsp__pcsamp_warps_issue_stalled_[a-z_]*\) " $OUT/ncu.txt | grep -v not_issued | sed 's/.*stalled_//; s/  */ /g' | sort -k3 -n -r -t' ' | head -12
echo "tests: encode rc=$e1 decode rc=$e2 bounds rc=$e3 ($((t1-t0)) s); bench $((t2-t1)) s; ncu $((t3-t2)) s"
grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|Failure" $OUT/tests.log | head -20
