#!/usr/bin/env bash
# Packs what the GPU machine (the `device` tool; no package registry there) needs to run the GPU
# session: the muongpt binary and test_cuda, built here for sm_90a with MPI, the shared libraries
# they use that are neither glibc nor CUDA's (the machine has CUDA 13's libraries, in the toolkit
# or in PyTorch's pip packages: the bundle's env.sh finds them), and OpenMPI's runtime (mpirun,
# its plugins and help files, relocated with OPAL_PREFIX) for the two-ranks-on-one-GPU test. One
# command, on a machine without a GPU; docs/gpu.md has the recipe.
#
#   bash tools/gpu_bundle.sh [BUILD_DIR] [BUNDLE_DIR]     (defaults: build-gpu-bundle, .gpu_bundle)
#
# It leaves BUNDLE_DIR and BUNDLE_DIR.tar.xz (about 15 MB: the device tool carries 64 MiB in all).
# Then, in one device call: carry BUNDLE_DIR.tar.xz and run `bash tools/gpu_session.sh`, which
# unpacks it and writes one log per phase under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu-bundle}
bundle=${2:-.gpu_bundle}
if [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMUONGPT_CUDA=ON -DMUONGPT_MPI=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target muongpt test_cuda

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/mpi"
cp "$build/muongpt" "$build/tests/test_cuda" "$bundle/bin/"
strip "$bundle/bin/"*
# Libraries to carry: everything the binaries load except glibc's, the C++ runtime (the machine's
# is newer) and CUDA's own.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libstdc\+\+|libgcc_s|libcuda\.|libcudart|libcublas|libcusolver|libcusparse|libnccl|libnvJitLink)'
# OpenMPI's runtime as its Debian packages install it, under $bundle/mpi/usr (OPAL_PREFIX
# relocates it): mpirun, libmpi, the plugins and the help files.
for pkg in openmpi-bin libopenmpi3 openmpi-common; do dpkg -L "$pkg"; done |
  grep -v -E '/share/(man|doc|lintian)/|/include/|\.mod$|\.h$' | while read -r f; do
    if [ -f "$f" ] || [ -L "$f" ]; then cp -P --parents "$f" "$bundle/mpi/"; fi
  done
for exe in "$bundle"/bin/* "$bundle"/mpi/usr/bin/orterun $(find "$bundle/mpi" -name '*.so*' -type f); do
  ldd "$exe" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ $name =~ $skip ]] && continue
  [ -e "$bundle/mpi$path" ] && continue  # OpenMPI's own, already in the tree
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
mpi_dir="$bundle_dir/mpi/usr"
export LD_LIBRARY_PATH="$bundle_dir/lib:$mpi_dir/lib/x86_64-linux-gnu$cuda_libs:${py_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OPAL_PREFIX="$mpi_dir"                     # OpenMPI finds its plugins and help files here
export MUONGPT_MPIEXEC="$mpi_dir/bin/mpiexec.openmpi"  # what the two-rank tests launch with
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export MUONGPT_SOURCE_DIR="$(dirname "$bundle_dir")"
export MUONGPT_BIN="$bundle_dir/bin/muongpt"  # the binary the tests run (tests/testing/subprocess.h)
EOF
rm -f "$bundle.tar.xz"
tar -cJf "$bundle.tar.xz" "$bundle"
du -sh "$bundle" "$bundle.tar.xz"
echo "bundle: $bundle.tar.xz (carry it; on the GPU machine: bash tools/gpu_session.sh)"
