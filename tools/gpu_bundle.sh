#!/usr/bin/env bash
# Packs what the GPU machine (the `device` tool; no package registry there) needs to run the GPU
# tests: the muongpt binary and test_cuda, built here for sm_90a without MPI, and the shared
# libraries they use that are neither glibc nor CUDA's (the machine has CUDA 13's libraries, in
# the toolkit or in PyTorch's pip packages: bundle/run.sh finds them). docs/gpu.md has the recipe.
#
#   bash tools/gpu_bundle.sh [BUILD_DIR] [BUNDLE_DIR]     (defaults: build-gpu-bundle, .gpu_bundle)
#
# Then, in one device call: carry BUNDLE_DIR and run `bash .gpu_bundle/run.sh`; it writes the test
# log and results under $OUT (and to stdout).
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

cat >"$bundle/run.sh" <<'EOF'
#!/usr/bin/env bash
# On the GPU machine: every GPU test, then the same under compute-sanitizer (memcheck and
# racecheck). Results go to $OUT (when set) and stdout.
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:-$here/out}"
mkdir -p "$out"
# CUDA's libraries: the toolkit's, else those of PyTorch's pip packages (nvidia-*).
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
export LD_LIBRARY_PATH="$here/lib$cuda_libs:${py_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MUONGPT_SOURCE_DIR="$(dirname "$here")"  # the carried working tree: tests/fixtures
{
  echo "== $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$here/bin/muongpt" --version
  echo "== missing libraries (should be none):"
  ldd "$here/bin/test_cuda" | grep "not found" || true
} 2>&1 | tee "$out/env.txt"
set -o pipefail
"$here/bin/test_cuda" --gtest_output="xml:$out/test_cuda.xml" 2>&1 | tee "$out/test_cuda.log"
status=$?
for tool in memcheck racecheck; do
  if command -v compute-sanitizer >/dev/null; then
    compute-sanitizer --tool "$tool" --error-exitcode 99 "$here/bin/test_cuda" \
      --gtest_brief=1 >"$out/sanitizer_$tool.log" 2>&1
    echo "compute-sanitizer $tool: exit $? (log: sanitizer_$tool.log)" | tee -a "$out/env.txt"
  fi
done
exit $status
EOF
chmod +x "$bundle/run.sh"
du -sh "$bundle"
echo "bundle: $bundle (carry it; run: bash $bundle/run.sh)"
