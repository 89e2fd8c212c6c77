#!/usr/bin/env bash
# Tokenizer throughput, ours against tiktoken, on the same text on the same machine, and a
# results file bench/results/tokenizer-<date>.md with the machine, date and commit.
#
#   bash bench/tokenizer.sh [TEXT_DIR] [MUONGPT_BINARY]
#
# TEXT_DIR holds .txt documents (default: the demo corpus text, built by
# tools/make_demo_corpus.sh into .cache/demo when absent). Ours is the whole `muongpt tokenize`
# command (reading the files, encoding, writing shards) with --threads 1 and 2; tiktoken encodes
# the same documents already in memory, with encode_ordinary in a loop and with
# encode_ordinary_batch on 1 and 2 threads (bench/tokenizer_tiktoken.py). Best of 3 runs each.
# Needs `pip install tiktoken` (its vocabulary comes from the local gpt2.tiktoken).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
text="${1:-.cache/demo/text}"
bin="${2:-}"
if [ -z "$bin" ]; then
  for b in build/muongpt build-cpu/muongpt build-cuda/muongpt; do
    if [ -x "$b" ]; then
      bin="$b"
      break
    fi
  done
fi
[ -n "$bin" ] || { echo "bench: error: no muongpt binary; build it or pass its path" >&2; exit 1; }
vocab="${MUONGPT_VOCAB:-.cache/gpt2.tiktoken}"
[ -f "$vocab" ] || bash tools/fetch_vocab.sh "$vocab"
if [ ! -d "$text" ]; then
  [ "$text" = .cache/demo/text ] || { echo "bench: error: no directory $text" >&2; exit 1; }
  bash tools/make_demo_corpus.sh .cache/demo "$bin" >/dev/null
fi
python3 -c "import tiktoken" 2>/dev/null || { echo "bench: error: pip install tiktoken" >&2; exit 1; }

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
ours() {  # threads -> "MB/s tokens", best of 3
  local best=0 tokens=0 line mbs
  for _ in 1 2 3; do
    line="$("$bin" tokenize --vocab "$vocab" --output-dir "$out" --prefix bench --force \
      --threads "$1" "$text"/*.txt | head -1)"
    mbs="$(sed -E 's/.*: ([0-9.]+) MB\/s.*/\1/' <<<"$line")"
    tokens="$(sed -E 's/.* into ([0-9,]+) tokens.*/\1/' <<<"$line" | tr -d ,)"
    best="$(awk -v a="$best" -v b="$mbs" 'BEGIN { print (b > a ? b : a) }')"
  done
  echo "$best $tokens"
}
read -r ours1 tokens1 < <(ours 1)
read -r ours2 tokens2 < <(ours 2)
tk="$(python3 bench/tokenizer_tiktoken.py --vocab "$vocab" "$text")"
tk_version="$(awk '/^tiktoken-version/ { print $2 }' <<<"$tk")"
bytes="$(awk '/^tiktoken-version/ { print $6 }' <<<"$tk")"
docs="$(awk '/^tiktoken-version/ { print $4 }' <<<"$tk")"
tk_loop="$(awk '$2 == "loop" { print $4 }' <<<"$tk")"
tk_b1="$(awk '$2 == "batch" && $3 == 1 { print $4 }' <<<"$tk")"
tk_b2="$(awk '$2 == "batch" && $3 == 2 { print $4 }' <<<"$tk")"
tk_tokens="$(awk '$2 == "loop" { print $5 }' <<<"$tk")"
same="yes"
[ "$tk_tokens" = "$tokens1" ] && [ "$tokens1" = "$tokens2" ] || same="NO ($tokens1, $tokens2 vs $tk_tokens)"

date="$(date -u +%Y-%m-%d)"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty=""
git diff --quiet HEAD -- data tools 2>/dev/null || dirty=" (with uncommitted changes to data/ and tools/)"
cpu="$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
cores="$(nproc)"
result="bench/results/tokenizer-$date.md"
mkdir -p bench/results
cat >"$result" <<EOF
# Tokenizer throughput: muongpt vs tiktoken ($date)

- Machine: $cpu, $cores cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) memory
- Commit: $commit$dirty; tiktoken $tk_version; Python $(python3 -c 'import platform; print(platform.python_version())')
- Text: $docs documents, $(awk -v b="$bytes" 'BEGIN { printf "%.2f MB", b / 1e6 }') ($text)
- Same tokens from both: $same ($tokens1 tokens with one EOT per document)
- Command: \`bash bench/tokenizer.sh\` (best of 3 runs each)

| tokenizer | how | threads | MB/s |
|---|---|---|---|
| muongpt | \`muongpt tokenize\` (read .txt, encode, write shards) | 1 | $ours1 |
| muongpt | \`muongpt tokenize\` (read .txt, encode, write shards) | 2 | $ours2 |
| tiktoken | \`encode_ordinary\` in a loop (text in memory) | 1 | $tk_loop |
| tiktoken | \`encode_ordinary_batch\` (text in memory) | 1 | $tk_b1 |
| tiktoken | \`encode_ordinary_batch\` (text in memory) | 2 | $tk_b2 |

Ratio, same thread count, against tiktoken's faster way: 1 thread $(awk -v a="$ours1" -v b="$tk_loop" -v c="$tk_b1" 'BEGIN { m = (b > c ? b : c); printf "%.1fx", a / m }'), 2 threads $(awk -v a="$ours2" -v b="$tk_b2" 'BEGIN { printf "%.1fx", a / b }').
EOF
cat "$result"
