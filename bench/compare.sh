#!/usr/bin/env bash
# bench/compare.sh [CONFIG]: `muongpt bench` and the PyTorch-CPU baseline
# (tools/reference/train_torch.py) on the same config, machine and step counts, one after the
# other; prints both and the ratio ours/PyTorch, and writes bench/results/cpu-<config>-<date>.md.
# Environment: STEPS (10), WARMUP (2), MUONGPT (build/muongpt), PYTHON (python3),
# TORCH_ARGS (extra train_torch.py flags, e.g. --compile), OUT (the results file), NOTES (a
# paragraph for the results file: what else ran on the machine, say).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/quickstart.toml}
steps=${STEPS:-10}
warmup=${WARMUP:-2}
muongpt=${MUONGPT:-build/muongpt}
python=${PYTHON:-python3}
[[ -x $muongpt ]] || { echo "compare.sh: $muongpt not built (cmake --build --preset default)" >&2; exit 1; }
name=$(basename "$config" .toml)
date=$(date -u +%Y-%m-%d)
out=${OUT:-bench/results/cpu-$name-$date.md}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== muongpt bench ($config, warmup $warmup, steps $steps)"
"$muongpt" bench --config "$config" --warmup "$warmup" --steps "$steps" --json "$tmp/ours.json"
echo "== PyTorch ($config, warmup $warmup, steps $steps)"
# shellcheck disable=SC2086
"$python" tools/reference/train_torch.py --config "$config" --warmup "$warmup" --steps "$steps" \
  ${TORCH_ARGS:-} >"$tmp/torch.json"
cat "$tmp/torch.json"

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git status --porcelain 2>/dev/null) ]] && rev="$rev dirty"
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
cores=$(nproc)
load=$(cut -d' ' -f1-3 /proc/loadavg)

"$python" - "$tmp/ours.json" "$tmp/torch.json" "$out" "$config" "$date" "$rev" "$cpu" "$cores" "$load" "${NOTES:-}" <<'PY'
import json, sys
ours_p, torch_p, out, config, date, rev, cpu, cores, load, notes = sys.argv[1:]
ours, ref = json.load(open(ours_p)), json.load(open(torch_p))
rows = [("tokens/s", "tokens_per_s", "%.0f"), ("step (ms)", "step_ms", "%.1f"),
        ("data (ms)", "data_ms", "%.1f"), ("forward (ms)", "forward_ms", "%.1f"),
        ("backward (ms)", "backward_ms", "%.1f"), ("optimizer (ms)", "optimizer_ms", "%.1f"),
        ("peak RSS (MiB)", "peak_rss_mib", "%.0f")]
ratio = ours["tokens_per_s"] / ref["tokens_per_s"]
lines = [f"# CPU benchmark: {config}, {date}", "",
         f"- device: {cpu}, {cores} cores (load average {load} when the runs ended)",
         f"- commit: {rev}",
         f"- batch {ours['batch']} x {ours['seq']} x {ours['grad_accum']} = "
         f"{ours['tokens_per_step']} tokens/step; {ours['warmup']} warm-up + {ours['steps']} "
         f"timed steps, medians; data: ours {ours['data']}, PyTorch {ref['data']}",
         f"- muongpt: {ours['threads']} threads, GEMM {ours['gemm']}; PyTorch {ref['torch']}, "
         f"{ref['threads']} threads, float32 eager (torch.compile: {ref['compile']})", "",
         "| | muongpt | PyTorch | ours/PyTorch |", "|---|---:|---:|---:|"]
for label, key, fmt in rows:
    a, b = ours.get(key), ref.get(key)
    r = (b / a if key != "tokens_per_s" else a / b) if a and b else None
    lines.append(f"| {label} | {fmt % a} | {fmt % b} | "
                 f"{'%.2fx' % r if r else '-'} |")
lines += ["", "Ratio column: muongpt / PyTorch for tokens/s, PyTorch / muongpt for times and "
          "memory (above 1: muongpt is faster or smaller).", "",
          f"muongpt only: Newton-Schulz (timed apart) {ours['newton_schulz_ms']:.1f} ms; "
          f"telemetry {ours['telemetry_ms']:.0f} ms per telemetry step, "
          f"{ours['telemetry_amortised_ms']:.1f} ms/step amortised at every = "
          f"{ours['telemetry_every']} ({100 * ours['telemetry_frac']:.1f}% of run time); "
          f"{ours['gflops_per_s']:.1f} GFLOP/s at {ours['flops_per_token']:.3g} FLOP/token "
          "(docs/bench.md).", "",
          *([f"Notes: {notes}", ""] if notes else []),
          "Raw JSON:", "", "```json", json.dumps(ours), json.dumps(ref), "```", ""]
open(out, "w").write("\n".join(lines))
print(f"\nours/PyTorch tokens/s: {ours['tokens_per_s']:.0f} / {ref['tokens_per_s']:.0f} = "
      f"{ratio:.2f}x  -> {out}")
PY
