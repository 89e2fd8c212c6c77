#!/usr/bin/env bash
# Runs a command with the Python packages it needs, installed on first use into a virtual
# environment of our own, .cache/venv (or $MUONGPT_VENV), so that nothing is pip-installed into
# the system Python (Debian 12 refuses that: PEP 668).
#
#   bash tools/pyenv.sh PACKAGE... [-- COMMAND [ARG...]]
#   bash tools/pyenv.sh matplotlib -- python tools/plot_compare.py runs/my-sweep
#   bash tools/pyenv.sh tensorboard -- tensorboard --logdir tb
#
# Creates the environment with `python3 -m venv` when it does not exist (Debian's python3-venv,
# listed in tools/packages.txt), then pip-installs each PACKAGE it lacks, saying what it does on
# stderr; with everything there it only checks. COMMAND then runs with the environment's bin/
# first on PATH, so `python` is its interpreter. Without COMMAND it only installs. A PACKAGE may
# carry a version requirement ("matplotlib>=3.5"); one already there is not upgraded.
# Concurrent calls wait for each other (flock). The Python scripts of tools/ call this themselves
# when an import fails (tools/runlib.py, require()).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${MUONGPT_VENV:-$root/.cache/venv}

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
fi
say() { echo "pyenv: $*" >&2; }
die() {
  echo "pyenv: error: $*" >&2
  exit 1
}

packages=()
while (($#)) && [[ "$1" != -- ]]; do
  packages+=("$1")
  shift
done
if (($#)); then shift; fi  # the --

mkdir -p "$(dirname "$venv")"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$venv.lock"
  flock 9
fi

# An environment is one whose python runs pip. Made in place (its scripts and activate name
# their own path, so it cannot be built aside and renamed); one that python3 -m venv left
# without pip (Debian without python3-venv) is removed again when this script made it.
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  say "creating the Python environment $venv (python3 -m venv)"
  existed=0
  [ -e "$venv" ] && existed=1
  if ! python3 -m venv "$venv" >&2 || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    ((existed)) || rm -rf "$venv"
    die "python3 -m venv failed; on Debian/Ubuntu install python3-venv (bash tools/setup.sh does)"
  fi
fi

if ((${#packages[@]})); then
  # The distributions that are not installed (importlib.metadata knows pip's names).
  missing=$("$venv/bin/python" - "${packages[@]}" <<'EOF'
import importlib.metadata as md, re, sys
for spec in sys.argv[1:]:
    try:
        md.version(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0])
    except md.PackageNotFoundError:
        print(spec)
EOF
  )
  if [ -n "$missing" ]; then
    mapfile -t missing <<<"$missing"
    say "installing ${missing[*]} into $venv (pip)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${missing[@]}" >&2 ||
      die "pip could not install ${missing[*]} into $venv (no internet? see above)"
  fi
fi

if command -v flock >/dev/null 2>&1; then exec 9>&-; fi
(($#)) || exit 0
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
exec "$@"
