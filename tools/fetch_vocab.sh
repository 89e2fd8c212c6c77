#!/usr/bin/env bash
# Fetches gpt2.tiktoken, GPT-2's byte-level BPE ranks (the same file tiktoken knows as
# r50k_base.tiktoken), and checks its SHA-256. It is never committed (.gitignore: *.tiktoken).
#
#   bash tools/fetch_vocab.sh [DEST]        DEST defaults to .cache/gpt2.tiktoken
#
# Sources, in order: the PyPI package openai-whisper, which ships whisper/assets/gpt2.tiktoken
# (through `python3 -m pip download`, so a pip mirror or proxy configured for pip is used); then
# the file's public URL (curl or wget). Nothing is installed.
set -euo pipefail

readonly kSha256="306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
readonly kUrl="https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"
readonly kPypiPackage="openai-whisper"
readonly kMember="whisper/assets/gpt2.tiktoken"

dest="${1:-.cache/gpt2.tiktoken}"
if [ "$#" -gt 1 ] || [ "$dest" = "-h" ] || [ "$dest" = "--help" ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
fi

sha_of() { sha256sum "$1" | cut -d' ' -f1; }
good() { [ -f "$1" ] && [ "$(sha_of "$1")" = "$kSha256" ]; }

if good "$dest"; then
  echo "fetch_vocab: $dest is present (SHA-256 ok)"
  exit 0
fi
if [ -e "$dest" ]; then
  echo "fetch_vocab: $dest exists but its SHA-256 is $(sha_of "$dest"), not $kSha256: replacing it" >&2
fi
mkdir -p "$(dirname "$dest")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# 1. PyPI: download the openai-whisper distribution (sdist or wheel) and take the one file.
from_pypi() {
  command -v python3 >/dev/null 2>&1 || return 1
  python3 -m pip --version >/dev/null 2>&1 || return 1
  echo "fetch_vocab: downloading $kPypiPackage from PyPI (pip download --no-deps)"
  python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp/pip" \
    "$kPypiPackage" >"$tmp/pip.log" 2>&1 || { tail -3 "$tmp/pip.log" >&2; return 1; }
  python3 - "$tmp/pip" "$kMember" "$tmp/gpt2.tiktoken" <<'EOF'
import os, sys, tarfile, zipfile
folder, member, out = sys.argv[1:]
for name in os.listdir(folder):
    path = os.path.join(folder, name)
    data = None
    if name.endswith(".whl") or name.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            hits = [n for n in z.namelist() if n.endswith(member)]
            if hits:
                data = z.read(hits[0])
    elif name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path) as t:
            hits = [m for m in t.getmembers() if m.name.endswith(member) and m.isfile()]
            if hits:
                data = t.extractfile(hits[0]).read()
    if data:
        with open(out, "wb") as f:
            f.write(data)
        sys.exit(0)
sys.exit("fetch_vocab: no %s in %s" % (member, os.listdir(folder)))
EOF
}

# 2. The public URL.
from_url() {
  echo "fetch_vocab: downloading $kUrl"
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 --connect-timeout 20 -o "$tmp/gpt2.tiktoken" "$kUrl"
  elif command -v wget >/dev/null 2>&1; then
    wget -q --tries=3 --timeout=20 -O "$tmp/gpt2.tiktoken" "$kUrl"
  else
    echo "fetch_vocab: neither curl nor wget is installed" >&2
    return 1
  fi
}

for source in pypi url; do
  rm -f "$tmp/gpt2.tiktoken"
  fetched=0
  case "$source" in
    pypi) from_pypi && fetched=1 ;;
    url) from_url && fetched=1 ;;
  esac
  if [ "$fetched" = 1 ] && [ -f "$tmp/gpt2.tiktoken" ]; then
    if good "$tmp/gpt2.tiktoken"; then
      mv "$tmp/gpt2.tiktoken" "$dest"
      echo "fetch_vocab: wrote $dest ($(wc -c <"$dest") bytes, SHA-256 $kSha256)"
      exit 0
    fi
    echo "fetch_vocab: the downloaded file's SHA-256 is $(sha_of "$tmp/gpt2.tiktoken"), expected $kSha256" >&2
  fi
done
echo "fetch_vocab: error: could not fetch gpt2.tiktoken (no PyPI access and no internet?)." >&2
echo "  Copy it by hand to $dest: it is whisper/assets/gpt2.tiktoken in the openai-whisper package," >&2
echo "  or $kUrl; SHA-256 $kSha256." >&2
exit 1
