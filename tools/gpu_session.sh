#!/usr/bin/env bash
# One device call that answers everything a GPU session needs, each phase under its own time
# limit so that a hang or a crash in one still leaves the others' results, and a one-screen
# summary at the end. Run on the GPU machine from the repository root, with the bundle of
# tools/gpu_bundle.sh carried (.gpu_bundle.tar.xz, unpacked here on first use):
#
#   bash tools/gpu_session.sh [PHASE...]
#
# Phases (default: tests sanitize bench two_ranks compare; about 8 minutes on an H100/H200):
#   tests      the whole GPU suite (test_cuda) but the two-rank test
#   sanitize   compute-sanitizer memcheck on the suites changed since 49a46d2 (telemetry, flash
#              attention, the optimizer), racecheck on flash attention
#   bench      speedrun-124m (batch 16 x 1024, bf16) with each attention, with the per-op profile
#   two_ranks  two ranks on one GPU ([device] comm = "mpi") train like one rank with twice the
#              accumulation, and resume with one rank
#   compare    ours against PyTorch (torch.compile, bf16, flash SDPA) on speedrun-124m
#   train      the quickstart in fp32 and bf16 (not in the default)
#
# Files under $OUT (the device tool brings back a few: one per phase): summary.txt, tests.log,
# sanitizer.log, bench.log, bench.jsonl, two_ranks.log, compare.log and compare's gpu-*.md.
# Environment: GTEST_FILTER narrows the tests; BENCH_BATCH (16), BENCH_STEPS (10), BENCH_ATTN
# ("straightforward flash"); COMPARE_ATTN (flash); MEMCHECK_FILTER, RACECHECK_FILTER; DEADLINE
# (480): seconds after which no phase starts its work.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bundle="$here/.gpu_bundle"
if [ ! -d "$bundle" ] && [ -f "$bundle.tar.xz" ]; then tar -xJf "$bundle.tar.xz" -C "$here"; fi
[ -f "$bundle/env.sh" ] || { echo "gpu_session: no $bundle (bash tools/gpu_bundle.sh here, carry .gpu_bundle.tar.xz)" >&2; exit 2; }
out="${OUT:-$here/gpu_out}"
mkdir -p "$out"
# shellcheck source=/dev/null
source "$bundle/env.sh"
bin="$bundle/bin"
phases=("$@")
[ ${#phases[@]} -eq 0 ] && phases=(tests sanitize bench two_ranks compare)
start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }
# A phase's time limit: its own, or what is left before DEADLINE, whichever is less.
limit() { local left=$((${DEADLINE:-480} - $(elapsed))); echo $(($1 < left ? $1 : (left > 1 ? left : 1))); }
summary="$out/summary.txt"
note() { echo "$*" | tee -a "$summary"; }

{
  echo "== $(date -u +%FT%TZ) commit $(cat "$bundle/commit" 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  "$bin/muongpt" --version
  echo "missing libraries (should be none):"
  ldd "$bin/test_cuda" "$bin/muongpt" | grep "not found" || true
} >"$summary" 2>&1
cat "$summary"

# memcheck: the suites whose code changed since the last GPU run (telemetry, flash attention,
# the optimizer and its dualizers); racecheck: flash attention's shared-memory kernels.
memcheck=${MEMCHECK_FILTER:-CudaSpectra.*:FlashAttentionCuda.*:CudaOptimizer.*:CudaDualizer.*}
racecheck=${RACECHECK_FILTER:-FlashAttentionCuda.*}

for phase in "${phases[@]}"; do
  echo "== phase $phase at $(elapsed) s"
  case $phase in
  tests)
    timeout -k 5 "$(limit 150)" "$bin/test_cuda" \
      --gtest_filter="${GTEST_FILTER:-*}:-StagedTrainCuda*" >"$out/tests.log" 2>&1
    note "tests: exit $? ($(grep -cE '^\[       OK \]' "$out/tests.log") passed," \
      "$(grep -cE '^\[  FAILED  \].*\)$' "$out/tests.log") failed," \
      "$(grep -cE '^\[  SKIPPED \]' "$out/tests.log") skipped)"
    grep -E "^\[  FAILED  \].*\)$" "$out/tests.log" | tee -a "$summary"
    ;;
  sanitize)
    for tool in memcheck racecheck; do
      filter=$memcheck
      [ "$tool" = racecheck ] && filter=$racecheck
      timeout -k 5 "$(limit 100)" compute-sanitizer --tool "$tool" --error-exitcode 99 \
        "$bin/test_cuda" --gtest_brief=1 --gtest_filter="$filter" >>"$out/sanitizer.log" 2>&1
      rc=$?
      note "compute-sanitizer $tool ($filter): exit $rc;" \
        "$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$out/sanitizer.log" | tail -1)"
    done
    ;;
  bench)
    # One bench per attention: the step split, tokens/s, MFU and the per-op profile together.
    for attn in ${BENCH_ATTN:-straightforward flash}; do
      echo "== bench speedrun-124m (attention: $attn)" >>"$out/bench.log"
      timeout -k 5 "$(limit 60)" "$bin/muongpt" bench --config "$here/configs/speedrun-124m.toml" \
        --random-data --set device.backend=cuda --set device.precision=bf16 \
        --set device.attention="$attn" --set "data.batch_size=${BENCH_BATCH:-16}" \
        --set data.grad_accum=1 --steps "${BENCH_STEPS:-10}" --warmup 3 --profile \
        --json "$out/bench.json.tmp" >>"$out/bench.log" 2>&1
      rc=$?
      cat "$out/bench.json.tmp" >>"$out/bench.jsonl" 2>/dev/null
      rm -f "$out/bench.json.tmp"
      note "bench speedrun-124m $attn: exit $rc; $(grep -E "tokens/s" "$out/bench.log" | tail -1 | xargs)" \
        "$(grep -oE "MFU [0-9.]+%" "$out/bench.log" | tail -1)"
    done
    ;;
  two_ranks)
    timeout -k 5 "$(limit 90)" "$bin/test_cuda" --gtest_filter='StagedTrainCuda*:StagedCommCuda*' \
      >"$out/two_ranks.log" 2>&1
    note "two ranks on one GPU: exit $?; $(grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$out/two_ranks.log" | head -3 | xargs)"
    ;;
  compare)
    # Ours against PyTorch on speedrun-124m, telemetry off (the PyTorch side has none).
    DEVICE=cuda STEPS=${BENCH_STEPS:-10} WARMUP=3 BATCH=${BENCH_BATCH:-16} ACCUM=1 MUONGPT="$bin/muongpt" \
      OURS_ARGS="--set telemetry.every=0 --set device.attention=${COMPARE_ATTN:-flash}" OUT="$out" \
      timeout -k 5 "$(limit 120)" bash "$here/bench/compare.sh" "$here/configs/speedrun-124m.toml" \
      >"$out/compare.log" 2>&1
    note "compare with PyTorch: exit $?; $(grep -hE "^\| tokens/s" "$out"/gpu-*.md 2>/dev/null | head -1)"
    ;;
  train)
    cd "$bundle" || exit 1  # the config's data paths (.cache/demo/...) resolve under the bundle
    for prec in fp32 bf16; do
      timeout -k 5 "$(limit 60)" "$bin/muongpt" train --config "$here/configs/quickstart.toml" \
        --set device.backend=cuda --set device.precision=$prec --set run.dir=/tmp/runs \
        --set run.name=quickstart-$prec >>"$out/train.log" 2>&1
      note "train quickstart $prec: exit $?; $(grep -E "^done" "$out/train.log" | tail -1)"
    done
    cd "$here" || exit 1
    ;;
  *) note "unknown phase $phase" ;;
  esac
done
note "== done at $(elapsed) s"
echo
cat "$summary"
