#!/usr/bin/env bash
# Loader throughput (bench/loader_bench.cpp) against an already built library:
#
#   bash bench/loader.sh [BUILD_DIR] [DATA_DIR] [MODE...]
#
# BUILD_DIR holds libmuongpt_lib.a (default build-cpu); DATA_DIR receives 100M tokens of
# synthetic train shards and 25M of val once (default .cache/loader-bench, about 250 MB).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build-cpu}"
data="${2:-$root/.cache/loader-bench}"
shift $(( $# > 2 ? 2 : $# ))
bin="$build/loader_bench"
g++ -std=c++20 -O2 -I"$root" -I"$build/generated" "$root/bench/loader_bench.cpp" \
  "$build/libmuongpt_lib.a" $(pkg-config --libs libpcre2-8) -lpthread -o "$bin"
echo "$(uname -n), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores," \
  "commit $(git -C "$root" rev-parse --short HEAD), $(date -u +%Y-%m-%d)"
"$bin" "$data" "$@"
