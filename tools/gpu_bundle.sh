#!/usr/bin/env bash
# Packs what the GPU machine (the `device` tool; no package registry there) needs to run the GPU
# tests: the muongpt binary and test_cuda, built here for sm_90a without MPI, and the shared
# libraries they use that are neither glibc nor CUDA's (the machine has CUDA 13's libraries, in
# the toolkit or in PyTorch's pip packages: the bundle's env.sh finds them). docs/gpu.md has the recipe.
#
#   bash tools/gpu_bundle.sh [BUILD_DIR] [BUNDLE_DIR]     (defaults: build-gpu-bundle, .gpu_bundle)
#
# Then, in one device call: carry BUNDLE_DIR and run `bash tools/gpu_session.sh`; it writes the
# test, sanitizer, training and bench logs under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu-bundle}
bundle=${2:-.gpu_bundle}
if [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMUONGPT_CUDA=ON -DMUONGPT_MPI=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target muongpt test_cuda

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib"
cp "$build/muongpt" "$build/tests/test_cuda" "$bundle/bin/"
strip "$bundle/bin/"*
# Libraries to carry: everything the binaries load except glibc's, the C++ runtime (the machine's
# is newer) and CUDA's own.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libcusolver|libcusparse|libnccl|libnvJitLink)'
for exe in "$bundle"/bin/*; do
  ldd "$exe" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip ]] && continue
  cp -L "$path" "$bundle/lib/$name"
done

# The demo corpus' shards, for `muongpt train` on the quickstart config (paths resolve under the
# bundle), when they were built here (tools/make_demo_corpus.sh).
if ls .cache/demo/demo_*.bin >/dev/null 2>&1; then
  mkdir -p "$bundle/.cache/demo"
  cp .cache/demo/demo_*.bin "$bundle/.cache/demo/"
fi
git rev-parse --short HEAD >"$bundle/commit" 2>/dev/null || echo unknown >"$bundle/commit"
git diff --quiet HEAD 2>/dev/null || echo "(+ uncommitted changes)" >>"$bundle/commit"

cat >"$bundle/env.sh" <<'EOF'
# Sourced on the GPU machine: the bundle's libraries, then CUDA's (the toolkit's, else those of
# PyTorch's nvidia-* pip packages), and the carried tree for the test fixtures.
bundle_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cuda_libs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib; do [ -d "$d" ] && cuda_libs="$cuda_libs:$d"; done
py_libs=$(python3 - <<'PY' 2>/dev/null
import glob, os, site
dirs = set()
for base in site.getsitepackages():
    for f in glob.glob(os.path.join(base, "nvidia", "*", "lib", "lib*.so*")):
        dirs.add(os.path.dirname(f))
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="$bundle_dir/lib$cuda_libs:${py_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MUONGPT_SOURCE_DIR="$(dirname "$bundle_dir")"
export MUONGPT_BIN="$bundle_dir/bin/muongpt"  # the binary the tests run (tests/testing/subprocess.h)
EOF
du -sh "$bundle"
echo "bundle: $bundle (carry it; on the GPU machine: bash tools/gpu_session.sh)"
