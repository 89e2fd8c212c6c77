#!/usr/bin/env bash
# Readies a Debian/Ubuntu machine to build, test and run the quickstart: installs whatever
# tools/packages.txt lists (and each PACKAGE given) that is not installed yet, then fetches GPT-2's
# rank file (tools/fetch_vocab.sh). With everything there it changes nothing.
#
#   bash tools/setup.sh [PACKAGE...]
#
# Installs with apt-get as root, else through sudo; without either it prints the apt-get line to
# run and exits non-zero. Without the rank file (no internet) the tests that need it skip, so
# that is a warning, unless MUONGPT_REQUIRE_VOCAB=1 (CI). On another system, install the
# equivalents of tools/packages.txt and set MUONGPT_SKIP_PACKAGES=1.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
fi
say() { echo "setup: $*"; }
die() {
  echo "setup: error: $*" >&2
  exit 1
}

# "ii": selected for install and installed (dpkg -s also succeeds for removed packages).
installed() { [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" == ii* ]]; }

install_missing() {
  if [ "${MUONGPT_SKIP_PACKAGES:-0}" = 1 ]; then
    say "MUONGPT_SKIP_PACKAGES=1: packages not checked"
    return
  fi
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    die "no apt-get here: install the equivalents of tools/packages.txt, then set MUONGPT_SKIP_PACKAGES=1"
  fi
  [ -f tools/packages.txt ] || die "no tools/packages.txt"
  local listed wanted missing=() p
  mapfile -t listed < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' tools/packages.txt)
  wanted=("${listed[@]}" "$@")
  for p in "${wanted[@]}"; do installed "$p" || missing+=("$p"); done
  if ((${#missing[@]} == 0)); then
    say "all ${#wanted[@]} packages are installed"
    return
  fi
  local line="apt-get update && apt-get install -y ${missing[*]}"
  local as_root=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "missing packages: ${missing[*]}; as root, run: $line"
    as_root=(sudo)
  fi
  say "installing ${missing[*]}${as_root[*]:+ (through sudo)}"
  local apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
  if ! { "${apt[@]}" update -qq && "${apt[@]}" install -y -qq "${missing[@]}"; }; then
    die "could not install ${missing[*]} (see above); as root, run: $line"
  fi
}

fetch_vocab() {
  local vocab="${MUONGPT_VOCAB:-.cache/gpt2.tiktoken}"
  bash tools/fetch_vocab.sh "$vocab" && return
  [ "${MUONGPT_REQUIRE_VOCAB:-0}" = 1 ] && die "no $vocab, and MUONGPT_REQUIRE_VOCAB=1"
  say "warning: no $vocab: the tests that need it skip, and the quickstart cannot run"
}

install_missing "$@"
fetch_vocab
