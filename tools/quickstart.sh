#!/usr/bin/env bash
# The quickstart, end to end on a CPU-only machine: install the missing packages and fetch the
# GPT-2 vocabulary (tools/setup.sh), build, build the demo corpus, train configs/quickstart.toml
# for a few minutes with rank telemetry on, then plot the telemetry and sample from the model.
# Re-running continues where it stopped (the vocabulary, corpus and build are reused; a finished
# run is retrained only with --fresh).
set -euo pipefail
cd "$(dirname "$0")/.."

fresh=0
[[ "${1:-}" == "--fresh" ]] && fresh=1
run_dir=runs/quickstart
say() { printf '\n== %s\n' "$*"; }

say "prerequisites (tools/setup.sh)"
MUONGPT_VOCAB=.cache/gpt2.tiktoken MUONGPT_REQUIRE_VOCAB=1 bash tools/setup.sh

say "build"
if [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target muongpt >/dev/null
bin=./build/muongpt

say "demo corpus"
if ! ls .cache/demo/demo_train_*.bin >/dev/null 2>&1; then
  bash tools/make_demo_corpus.sh .cache/demo
fi
"$bin" shard-info .cache/demo/demo_val_000000.bin | tail -n 4

say "train (configs/quickstart.toml)"
if [ "$fresh" = 1 ]; then rm -rf "$run_dir"; fi
if [ -d "$run_dir/checkpoints" ]; then
  "$bin" train --config configs/quickstart.toml --resume latest
else
  "$bin" train --config configs/quickstart.toml
fi

say "rank telemetry"
"$bin" ranks "$run_dir"
# matplotlib comes from the environment .cache/venv, made and filled on first use (tools/pyenv.sh).
if ! bash tools/pyenv.sh matplotlib -- python tools/plot_ranks.py "$run_dir"; then
  echo "(no plots: see above)"
fi

say "sample"
"$bin" sample --checkpoint "$run_dir" --prompt "The history of" --tokens 60 --seed 1

say "where things are"
cat <<EOT
run directory   $run_dir/  (config.toml, routing.tsv, metrics.jsonl, ranks.jsonl, log.txt)
checkpoints     $run_dir/checkpoints/
plots           $run_dir/plots/*.png
more samples    $bin sample --checkpoint $run_dir --prompt "..."
EOT
