#!/usr/bin/env bash
# One device call's worth of GPU work, each phase under its own time limit so a hang or crash in
# one still leaves the others' results. Run on the GPU machine from the repository root, with the
# bundle from tools/gpu_bundle.sh carried:
#
#   bash tools/gpu_session.sh [PHASE...]   phases: tests train bench compare sanitize (default: all)
#
# Logs go to $OUT (at most 8 files come back from the device tool, so each phase writes one).
# Environment: GTEST_FILTER narrows the tests; BENCH_BATCH (default 16), BENCH_STEPS (20),
# BENCH_EIG (telemetry eigensolver modes, default "batched") and BENCH_ATTN (attention kernels,
# default "straightforward flash") the benches; COMPARE_ATTN (default flash) the attention of our
# side of the PyTorch comparison; SANITIZE_FILTER and RACECHECK_FILTER the tests run under
# compute-sanitizer.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bundle="$here/.gpu_bundle"
out="${OUT:-$here/gpu_out}"
mkdir -p "$out"
# shellcheck source=/dev/null
source "$bundle/env.sh"
bin="$bundle/bin"
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(tests train bench compare sanitize)
start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }
# A phase's time limit: its own, or what is left before DEADLINE seconds (default 560: a device
# call may run 600), whichever is less.
limit() { local left=$((${DEADLINE:-560} - $(elapsed))); echo $(($1 < left ? $1 : (left > 1 ? left : 1))); }

{
  echo "== $(date -u +%FT%TZ) commit $(cat "$bundle/commit" 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  "$bin/muongpt" --version
  echo "missing libraries (should be none):"
  ldd "$bin/test_cuda" "$bin/muongpt" | grep "not found" || true
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

for phase in "${phases[@]}"; do
  echo "== phase $phase at $(elapsed) s"
  case $phase in
  tests)
    timeout -k 5 "$(limit 240)" "$bin/test_cuda" ${GTEST_FILTER:+--gtest_filter="$GTEST_FILTER"} \
      >"$out/test_cuda.log" 2>&1
    echo "test_cuda: exit $?"
    grep -E "^\[  FAILED  \].*\)$|^\[==========\]|^\[  PASSED  \]" "$out/test_cuda.log"
    ;;
  sanitize)
    # memcheck over every test but NCCL's: NCCL probes kernels it was not built for at init, and
    # memcheck counts those API errors (cudaErrorNoKernelImageForDevice inside libnccl) as ours.
    # racecheck over the tests of kernels that use shared memory (it is ~10x slower).
    for tool in memcheck racecheck; do
      filter=${SANITIZE_FILTER:--NcclComm.*}
      [ "$tool" = racecheck ] &&
        filter=${RACECHECK_FILTER:-OpsCuda*:FlashAttentionCuda.*:CudaUtil.*:CudaDualizer.*:GptCuda.*}
      timeout -k 5 "$(limit 200)" compute-sanitizer --tool "$tool" --error-exitcode 99 \
        "$bin/test_cuda" --gtest_brief=1 --gtest_filter="$filter" >>"$out/sanitizer.log" 2>&1
      echo "compute-sanitizer $tool ($filter): exit $?" | tee -a "$out/sanitizer.log"
    done
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|exit" "$out/sanitizer.log"
    ;;
  train)
    cd "$bundle" || exit 1  # the config's data paths (.cache/demo/...) resolve under the bundle
    for prec in fp32 bf16; do
      timeout -k 5 "$(limit 60)" "$bin/muongpt" train --config "$here/configs/quickstart.toml" \
        --set device.backend=cuda --set device.precision=$prec --set run.dir=/tmp/runs \
        --set run.name=quickstart-$prec >>"$out/train.log" 2>&1
      echo "train quickstart $prec: exit $?" | tee -a "$out/train.log"
    done
    grep -E "step +(0|25|50|100|150|199|200)\b|val|error" "$out/train.log" | tail -30
    cd "$here" || exit 1
    ;;
  bench)
    # quickstart once; speedrun-124m once per attention kernel in BENCH_ATTN and telemetry
    # eigensolver mode in BENCH_EIG. All JSON lines go to one file (at most 8 files come back).
    modes=${BENCH_EIG:-batched}
    for cfg in quickstart speedrun-124m; do
      for attn in ${BENCH_ATTN:-straightforward flash}; do
        for eig in $modes; do
          [ "$cfg" = quickstart ] && [ "$eig" != "${modes%% *}" ] && continue  # the first mode only
          [ "$cfg" = quickstart ] && [ "$attn" != straightforward ] && continue
          args=(--config "$here/configs/$cfg.toml" --random-data --set device.backend=cuda
            --set device.precision=bf16 --set device.attention="$attn" --peak-gflops 989000
            --steps "${BENCH_STEPS:-20}" --warmup 3)
          [ "$cfg" = speedrun-124m ] && args+=(--set "data.batch_size=${BENCH_BATCH:-16}")
          echo "== bench $cfg (attention: $attn, telemetry eigensolver: $eig)" >>"$out/bench.log"
          MUONGPT_TELEMETRY_EIG=$eig timeout -k 5 "$(limit 120)" "$bin/muongpt" bench "${args[@]}" \
            --json "$out/bench.json.tmp" >>"$out/bench.log" 2>&1
          echo "bench $cfg ($attn, $eig): exit $?" | tee -a "$out/bench.log"
          cat "$out/bench.json.tmp" >>"$out/bench.jsonl" 2>/dev/null
          rm -f "$out/bench.json.tmp"
        done
      done
    done
    grep -E "^== bench|tokens/s|step  |forward|backward|optimizer|telemetry|MFU|arena" "$out/bench.log"
    ;;
  compare)
    # Ours against PyTorch (torch.compile, bf16 autocast, flash SDPA) on speedrun-124m, telemetry
    # off (the PyTorch side has none; `bench` reports ours apart). Writes $OUT/gpu-*.md.
    DEVICE=cuda STEPS=${BENCH_STEPS:-20} WARMUP=5 BATCH=${BENCH_BATCH:-16} MUONGPT="$bin/muongpt" \
      OURS_ARGS="--set telemetry.every=0 --set device.attention=${COMPARE_ATTN:-flash}" OUT="$out" \
      timeout -k 5 "$(limit 240)" bash "$here/bench/compare.sh" "$here/configs/speedrun-124m.toml" \
      >"$out/compare.log" 2>&1
    echo "compare: exit $?"
    grep -E "^\| (tokens/s|step|forward|backward|optimizer|MFU)" "$out"/gpu-*.md 2>/dev/null || tail -20 "$out/compare.log"
    ;;
  *) echo "unknown phase $phase" ;;
  esac
done
echo "== done at $(elapsed) s"
