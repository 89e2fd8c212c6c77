#!/usr/bin/env bash
# Builds the demo corpus the quickstart trains on: about 11 MB of real English text (the Python
# documentation's reStructuredText sources, which Debian's python3.X-doc package installs under
# /usr/share/doc/python3.X/html/_sources), tokenized into GPT-2 shards:
#
#   DEST/text/*.txt               one document per documentation page
#   DEST/demo_val_000000.bin      the first 262,144 tokens
#   DEST/demo_train_00000N.bin    the rest, 1,000,000 tokens per shard
#   DEST/shard-info.txt           what `muongpt shard-info` says about them
#
#   bash tools/make_demo_corpus.sh DEST [MUONGPT_BINARY]
#
# The text comes from the installed package when it is there; otherwise the package is fetched
# with `apt-get download` and unpacked into a temporary directory (nothing is installed; as root,
# `apt-get update` runs first when apt has no package lists). gpt2.tiktoken is fetched by
# tools/fetch_vocab.sh when $MUONGPT_VOCAB and .cache/gpt2.tiktoken are both absent. The text is
# third-party (PSF licensed) and is never committed.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
if [ "$#" -lt 1 ] || [ "$#" -gt 2 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  usage
  [ "$#" -ge 1 ] && [[ "$1" == -h || "$1" == --help ]] && exit 0
  exit 2
fi
readonly kValTokens=262144
readonly kShardTokens=1000000
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$1"
say() { echo "make_demo_corpus: $*"; }
die() {
  echo "make_demo_corpus: error: $*" >&2
  exit 1
}
start=$(date +%s.%N)

# --- the muongpt binary ---------------------------------------------------------------------
bin="${2:-${MUONGPT_BIN:-}}"
if [ -z "$bin" ]; then
  for b in "$root/build/muongpt" "$root/build-cpu/muongpt" "$root/build-cuda/muongpt"; do
    if [ -x "$b" ]; then
      bin="$b"
      break
    fi
  done
fi
[ -z "$bin" ] && bin="$(command -v muongpt || true)"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  die "no muongpt binary (build it: cmake --preset default && cmake --build --preset default, or pass its path)"
fi

# --- the vocabulary -------------------------------------------------------------------------
vocab="${MUONGPT_VOCAB:-$root/.cache/gpt2.tiktoken}"
if [ ! -f "$vocab" ]; then
  bash "$root/tools/fetch_vocab.sh" "$vocab" || die "no gpt2.tiktoken at $vocab"
fi

# --- the text -------------------------------------------------------------------------------
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sources=""
for d in /usr/share/doc/python3*/html/_sources; do
  if [ -d "$d" ]; then
    sources="$d"
    say "using the installed Python documentation in $d"
    break
  fi
done
if [ -z "$sources" ]; then
  command -v apt-get >/dev/null 2>&1 ||
    die "this needs Debian/Ubuntu's python3-doc package (apt-get), or its text in /usr/share/doc/python3*/html/_sources"
  pick_package() {
    apt-cache depends python3-doc 2>/dev/null | awk '/Depends: python3\.[0-9]+-doc/ { print $2; exit }'
  }
  pkg="$(pick_package || true)"
  if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
    say "apt has no package lists: running apt-get update"
    apt-get update -qq >/dev/null || true
    pkg="$(pick_package || true)"
  fi
  [ -n "$pkg" ] || die "apt knows no python3.X-doc package (run apt-get update as root first)"
  say "fetching the Debian package $pkg (apt-get download; nothing is installed)"
  (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null 2>"$tmp/apt.err") ||
    die "apt-get download $pkg failed: $(tail -1 "$tmp/apt.err")"
  dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/pkg"
  sources="$(find "$tmp/pkg/usr/share/doc" -type d -name _sources -path '*/html/*' | head -1)"
  [ -n "$sources" ] || die "$pkg has no html/_sources directory"
fi

mkdir -p "$dest/text"
rm -f "$dest"/text/*.txt
# One document per page, named after its path: library/os.rst.txt -> library_os.txt.
count=0
while IFS= read -r -d '' f; do
  rel="${f#"$sources"/}"
  name="${rel%.rst.txt}"
  cp "$f" "$dest/text/${name//\//_}.txt"
  count=$((count + 1))
done < <(find "$sources" -type f -name '*.rst.txt' -print0 | sort -z)
[ "$count" -gt 0 ] || die "no .rst.txt files under $sources"
say "$count documents, $(du -sh "$dest/text" | cut -f1) of text in $dest/text"

# --- shards ---------------------------------------------------------------------------------
"$bin" tokenize --vocab "$vocab" --output-dir "$dest" --prefix demo --val-tokens "$kValTokens" \
  --shard-tokens "$kShardTokens" --force "$dest"/text/*.txt
"$bin" shard-info --vocab "$vocab" "$dest"/demo_*.bin >"$dest/shard-info.txt" ||
  die "the shards did not pass shard-info (see $dest/shard-info.txt)"
tail -1 "$dest/shard-info.txt"
end=$(date +%s.%N)
say "done in $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s:" \
  "train $dest/demo_train_*.bin, val $dest/demo_val_000000.bin"
