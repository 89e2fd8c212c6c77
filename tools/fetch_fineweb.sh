#!/usr/bin/env bash
# Downloads GPT-2-tokenized FineWeb shards (the kjj0/fineweb10B-gpt2 dataset on Hugging Face,
# which llm.c and modded-nanogpt use): the val shard and the first N train shards, 100M tokens
# (about 200 MB) each. Needs internet access.
#
#   bash tools/fetch_fineweb.sh N [DEST]     N in 0..103, DEST defaults to data/fineweb10B
#
# Files already in DEST whose header and size agree are kept; downloads go to FILE.part and are
# renamed into place once complete and checked. FINEWEB_BASE_URL overrides the source (a mirror,
# or file:///path for a local copy).
set -euo pipefail

readonly kMaxShards=103
base="${FINEWEB_BASE_URL:-https://huggingface.co/datasets/kjj0/fineweb10B-gpt2/resolve/main}"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
if [ "$#" -lt 1 ] || [ "$#" -gt 2 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  usage
  [ "$#" -ge 1 ] && [[ "$1" == -h || "$1" == --help ]] && exit 0
  exit 2
fi
n="$1"
dest="${2:-data/fineweb10B}"
if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -gt "$kMaxShards" ]; then
  echo "fetch_fineweb: error: N must be an integer in 0..$kMaxShards (got '$n')" >&2
  exit 2
fi
if command -v curl >/dev/null 2>&1; then
  progress=(-sS)
  [ -t 2 ] && progress=(--progress-bar)
  fetch() { curl -fL "${progress[@]}" --retry 5 --retry-delay 5 --connect-timeout 30 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -nv --tries=5 --timeout=30 -O "$2" "$1"; }
else
  echo "fetch_fineweb: error: neither curl nor wget is installed" >&2
  exit 1
fi

# A shard is complete when its header says 20240520, version 1, and 1024 + 2·count bytes.
complete() {
  [ -f "$1" ] || return 1
  local words magic version count size
  words=$(od -An -t d4 -N 12 "$1" 2>/dev/null) || return 1
  read -r magic version count <<<"$words"
  size=$(stat -c %s "$1")
  [ "${magic:-}" = 20240520 ] && [ "${version:-}" = 1 ] && [ "$size" = $((1024 + 2 * count)) ]
}

mkdir -p "$dest"
files=(fineweb_val_000000.bin)
for ((i = 1; i <= n; i++)); do files+=("$(printf 'fineweb_train_%06d.bin' "$i")"); done

fetched=0
kept=0
for f in "${files[@]}"; do
  out="$dest/$f"
  if complete "$out"; then
    kept=$((kept + 1))
    continue
  fi
  echo "fetch_fineweb: $base/$f"
  rm -f "$out.part"
  if ! fetch "$base/$f" "$out.part"; then
    rm -f "$out.part"
    echo "fetch_fineweb: error: could not download $base/$f" >&2
    exit 1
  fi
  if ! complete "$out.part"; then
    rm -f "$out.part"
    echo "fetch_fineweb: error: $f: the download is not a complete token shard" >&2
    exit 1
  fi
  mv "$out.part" "$out"
  fetched=$((fetched + 1))
done
echo "fetch_fineweb: $dest holds the val shard and $n train shard(s) ($fetched downloaded, $kept already there)"
echo "  train: $dest/fineweb_train_*.bin   val: $dest/fineweb_val_*.bin"
