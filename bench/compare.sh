#!/usr/bin/env bash
# bench/compare.sh [CONFIG]: `muongpt bench` and the PyTorch baseline
# (tools/reference/train_torch.py) on the same config, machine and step counts, one after the
# other; prints both and the ratio ours/PyTorch, and writes
# bench/results/<cpu|gpu>-<config>-<date>.md.
#
#   bench/compare.sh configs/quickstart.toml                      # CPU: float32 on both sides
#   DEVICE=cuda bench/compare.sh configs/speedrun-124m.toml       # GPU: bf16 on both sides
#
# Environment: DEVICE (cpu or cuda; default cpu), STEPS (10), WARMUP (2), BATCH (data.batch_size
# for both sides; default: the config's), ACCUM (data.grad_accum for both sides; default: the
# config's), MUONGPT (build/muongpt; with DEVICE=cuda
# .gpu_bundle/bin/muongpt when that exists), PYTHON (python3), OURS_ARGS / TORCH_ARGS (extra
# `muongpt bench` / train_torch.py flags, e.g. "--set telemetry.every=0" / --compile on the
# CPU), OUT (the results file, or a folder to write it in), NOTES (a paragraph for the results
# file: what else ran on the machine, say). DEVICE=cuda only: PRECISION (bf16 or fp32; default
# bf16), PEAK_GFLOPS (the GPU's dense peak for that precision, for the MFU; default 989000, an
# H100 SXM's bf16, or 66900 for fp32), TORCH_COMPILE (1: train_torch.py --compile, the default;
# 0: eager). The GPU mode runs both sides on random token ids (--random-data): the GPU machine
# has no shards. docs/bench.md has the details.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/quickstart.toml}
device=${DEVICE:-cpu}
steps=${STEPS:-10}
warmup=${WARMUP:-2}
batch=${BATCH:-}
accum=${ACCUM:-}
python=${PYTHON:-python3}
case $device in
  cpu)
    muongpt=${MUONGPT:-build/muongpt}
    kind=cpu
    ;;
  cuda)
    if [[ -z ${MUONGPT:-} && -x .gpu_bundle/bin/muongpt ]]; then
      muongpt=.gpu_bundle/bin/muongpt
    else
      muongpt=${MUONGPT:-build/muongpt}
    fi
    kind=gpu
    precision=${PRECISION:-bf16}
    case $precision in
      bf16) peak=${PEAK_GFLOPS:-989000} ;;
      fp32) peak=${PEAK_GFLOPS:-66900} ;;
      *) echo "compare.sh: PRECISION must be bf16 or fp32, got '$precision'" >&2; exit 1 ;;
    esac
    ;;
  *) echo "compare.sh: DEVICE must be cpu or cuda, got '$device'" >&2; exit 1 ;;
esac
for var in BATCH ACCUM; do
  if [[ -n ${!var:-} && ! ${!var} =~ ^[1-9][0-9]*$ ]]; then
    echo "compare.sh: $var must be a positive integer, got '${!var}'" >&2
    exit 1
  fi
done
[[ -x $muongpt ]] || {
  echo "compare.sh: $muongpt not built (cmake --build --preset default; for the GPU:" \
    "tools/gpu_bundle.sh, or set MUONGPT)" >&2
  exit 1
}
[[ -f $config ]] || { echo "compare.sh: no config file $config" >&2; exit 1; }
name=$(basename "$config" .toml)
date=$(date -u +%Y-%m-%d)
out=${OUT:-bench/results/$kind-$name-$date.md}
# OUT may name a folder (the device machine sets OUT to the folder whose files come back)
[[ -d $out ]] && out=$out/$kind-$name-$date.md
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ours_args=(bench --config "$config" --warmup "$warmup" --steps "$steps")
torch_args=(tools/reference/train_torch.py --config "$config" --warmup "$warmup" --steps "$steps")
if [[ -n $batch ]]; then
  ours_args+=(--set "data.batch_size=$batch")
  torch_args+=(--batch "$batch")
fi
if [[ -n $accum ]]; then
  ours_args+=(--set "data.grad_accum=$accum")
  torch_args+=(--grad-accum "$accum")
fi
if [[ $device == cuda ]]; then
  ours_args+=(--set device.backend=cuda --set "device.precision=$precision"
    --peak-gflops "$peak" --random-data)
  torch_args+=(--device cuda --dtype "$precision" --peak-gflops "$peak" --random-data)
  [[ ${TORCH_COMPILE:-1} == 0 ]] || torch_args+=(--compile)
fi

echo "== muongpt bench ($config, $device, warmup $warmup, steps $steps${batch:+, batch $batch})"
# shellcheck disable=SC2086
"$muongpt" "${ours_args[@]}" ${OURS_ARGS:-} --json "$tmp/ours.json"
echo "== PyTorch ($config, $device, warmup $warmup, steps $steps${batch:+, batch $batch})"
# shellcheck disable=SC2086
"$python" "${torch_args[@]}" ${TORCH_ARGS:-} >"$tmp/torch.json"
cat "$tmp/torch.json"

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git status --porcelain 2>/dev/null) ]] && rev="$rev dirty"
# A binary from tools/gpu_bundle.sh knows its own commit (the device machine's copy of .git may not).
bundle_commit="$(dirname "$muongpt")/../commit"
[[ -f $bundle_commit ]] && rev="$(head -1 "$bundle_commit") (the bundle's build)"
if [[ $device == cuda ]]; then
  hw=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null |
    head -1 || true)
  if [[ -n $hw ]]; then
    hw="$hw (nvidia-smi: name, memory, driver)"
  else
    hw="unknown (no nvidia-smi)"
  fi
  cores=$(nproc)
else
  hw=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
  cores=$(nproc)
fi
load=$(cut -d' ' -f1-3 /proc/loadavg)

"$python" - "$tmp/ours.json" "$tmp/torch.json" "$out" "$config" "$date" "$rev" "$hw" "$cores" \
  "$load" "${NOTES:-}" "$device" "${peak:-0}" "${ours_args[*]} ${OURS_ARGS:-}" \
  "${torch_args[*]} ${TORCH_ARGS:-}" <<'PY'
import json, sys
(ours_p, torch_p, out, config, date, rev, hw, cores, load, notes, device, peak, ours_cmd,
 torch_cmd) = sys.argv[1:]
ours, ref = json.load(open(ours_p)), json.load(open(torch_p))
gpu, peak = device == "cuda", float(peak)
rows = [("tokens/s", "tokens_per_s", "%.0f"), ("step (ms)", "step_ms", "%.1f"),
        ("data (ms)", "data_ms", "%.1f"), ("forward (ms)", "forward_ms", "%.1f"),
        ("backward (ms)", "backward_ms", "%.1f"), ("optimizer (ms)", "optimizer_ms", "%.1f"),
        ("peak RSS (MiB)", "peak_rss_mib", "%.0f")]
if gpu:  # GPU steps are milliseconds: two decimals
    rows = [(label, key, "%.2f" if fmt == "%.1f" else fmt) for label, key, fmt in rows]
ratio = ours["tokens_per_s"] / ref["tokens_per_s"]


def table():
    lines = ["| | muongpt | PyTorch | ours/PyTorch |", "|---|---:|---:|---:|"]
    for label, key, fmt in rows:
        ka, kb = key if isinstance(key, tuple) else (key, key)
        a, b = ours.get(ka), ref.get(kb)
        r = (b / a if key != "tokens_per_s" else a / b) if a and b else None
        cell = lambda v: fmt % v if v is not None else "-"
        lines.append(f"| {label} | {cell(a)} | {cell(b)} | {'%.2fx' % r if r else '-'} |")
    return lines


ratio_note = ("Ratio column: muongpt / PyTorch for tokens/s, PyTorch / muongpt for times and "
              "memory (above 1: muongpt is faster or smaller).")
batch_line = (f"- batch {ours['batch']} x {ours['seq']} x {ours['grad_accum']} = "
              f"{ours['tokens_per_step']} tokens/step; {ours['warmup']} warm-up + {ours['steps']} "
              f"timed steps, medians; data: ours {ours['data']}, PyTorch {ref['data']}")
if not gpu:
    lines = [f"# CPU benchmark: {config}, {date}", "",
             f"- device: {hw}, {cores} cores (load average {load} when the runs ended)",
             f"- commit: {rev}", batch_line,
             f"- muongpt: {ours['threads']} threads, GEMM {ours['gemm']}; PyTorch {ref['torch']}, "
             f"{ref['threads']} threads, float32 eager (torch.compile: {ref['compile']})", "",
             *table(), "", ratio_note, "",
             f"muongpt only: Newton-Schulz (timed apart) {ours['newton_schulz_ms']:.1f} ms; "
             f"telemetry {ours['telemetry_ms']:.0f} ms per telemetry step, "
             f"{ours['telemetry_amortised_ms']:.1f} ms/step amortised at every = "
             f"{ours['telemetry_every']} ({100 * ours['telemetry_frac']:.1f}% of run time); "
             f"{ours['gflops_per_s']:.1f} GFLOP/s at {ours['flops_per_token']:.3g} FLOP/token "
             "(docs/bench.md).", ""]
else:
    fpt = ours["flops_per_token"]  # one FLOP count for both sides (docs/bench.md)
    mfu_ours = fpt * ours["tokens_per_s"] / 1e9 / peak
    mfu_ref = fpt * ref["tokens_per_s"] / 1e9 / peak
    fpt_note = ("" if abs(ref.get("flops_per_token", fpt) - fpt) <= 1e-9 * fpt else
                f" (train_torch.py counted {ref.get('flops_per_token'):.4g}: the models differ?)")
    rows.insert(6, ("GPU memory (MiB) *", ("model_mib", "peak_gpu_mib"), "%.0f"))
    lines = [f"# GPU benchmark: {config}, {date}", "",
             f"- device: {hw}; PyTorch sees {ref.get('device')}; {cores} CPU cores "
             f"(load average {load} when the runs ended)",
             f"- commit: {rev}", batch_line,
             f"- muongpt: device {ours.get('device')} (`muongpt {ours_cmd}`)",
             f"- PyTorch {ref['torch']}: "
             f"{'bf16 autocast over' if ref.get('dtype') == 'bf16' else 'no autocast,'} float32 "
             f"parameters, attention {ref.get('attention')}, torch.compile {ref['compile']}, "
             f"fused AdamW, Muon with a batched {ref.get('dtype')} Newton-Schulz "
             f"(`python3 {torch_cmd.strip()}`)", "",
             *table(), f"| MFU | {100 * mfu_ours:.1f}% | {100 * mfu_ref:.1f}% | "
                       f"{mfu_ours / mfu_ref:.2f}x |", "",
             ratio_note, "",
             "\\* GPU memory: muongpt's GPU arena (`model_mib`, allocated once: parameters, "
             "gradients, working buffers, activations, scratch, as its bench prints); PyTorch's "
             "peak `torch.cuda.max_memory_allocated` over the timed steps (the caching allocator "
             f"reserved {ref.get('peak_gpu_reserved_mib', float('nan')):.0f} MiB).", "",
             f"MFU = FLOP/token x tokens/s / peak, with {fpt:.4g} FLOP/token (6N + 6LTd, "
             f"docs/bench.md){fpt_note} and a peak of {peak / 1e3:.0f} TFLOP/s. Both sides "
             "synchronize the GPU before every clock read; PyTorch's AdamW/Muon split: "
             f"{ref['adamw_ms']:.2f} / {ref['muon_ms']:.2f} ms; muongpt's other (gradient norm, "
             f"zeroing): {ours['other_ms']:.2f} ms.", ""]
    if ours.get("telemetry_every"):
        lines += [f"muongpt telemetry: {ours['telemetry_ms']:.1f} ms per telemetry step, "
                  f"{ours['telemetry_amortised_ms']:.2f} ms/step amortised at every = "
                  f"{ours['telemetry_every']} ({100 * ours['telemetry_frac']:.1f}% of run time).",
                  ""]
lines += [*([f"Notes: {notes}", ""] if notes else []),
          "Raw JSON:", "", "```json", json.dumps(ours), json.dumps(ref), "```", ""]
open(out, "w").write("\n".join(lines))
extra = f"; MFU {100 * mfu_ours:.1f}% / {100 * mfu_ref:.1f}%" if gpu else ""
print(f"\nours/PyTorch tokens/s: {ours['tokens_per_s']:.0f} / {ref['tokens_per_s']:.0f} = "
      f"{ratio:.2f}x{extra}  -> {out}")
PY
