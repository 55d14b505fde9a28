#!/bin/sh
# The one script a GPU session runs: builds the CUDA library for the GPU that is present,
# runs the kernel tests against the CPU reference, then the GPU benchmarks, and prints a summary.
# Usage: tools/gpu-check.sh [build-dir]   (default build-gpu; about 3-5 minutes on an H200)
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-build-gpu}
JOBS=$(nproc 2>/dev/null || echo 4)

echo "== nvidia-smi"
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader || true
PATH="$PATH:${CUDA_HOME:-/usr/local/cuda}/bin"
export PATH
command -v nvcc >/dev/null || { echo "SUMMARY: nvcc not found (set CUDA_HOME)"; exit 1; }
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
case "$CAP" in
  80|86|89|90|100|120) ARCHS=$CAP ;;
  "") echo "no GPU visible to nvidia-smi; building for sm_90"; ARCHS=90 ;;
  *) echo "compute capability $CAP: building sm_90 + PTX (JIT on this GPU)"; ARCHS=90 ;;
esac

echo "== build (CUDA=1 CUDA_ARCHS=$ARCHS, $BUILD)"
start=$(date +%s)
mkdir -p "$BUILD"
if ! make -j"$JOBS" CUDA=1 CUDA_ARCHS="$ARCHS" BUILD="$BUILD" all \
     "$BUILD/tests/gpu/test_cuda_kernels" "$BUILD/tests/gpu/test_cuda_models" \
     "$BUILD/bench/gpu/bench_cuda" >"$BUILD/build.log" 2>&1; then
  tail -40 "$BUILD/build.log"
  echo "SUMMARY: build FAILED (log: $BUILD/build.log)"
  exit 1
fi
echo "built in $(( $(date +%s) - start )) s"

echo "== test_cuda_unpack (CPU emulation of the unpacking)"
make --no-print-directory CUDA=1 CUDA_ARCHS="$ARCHS" BUILD="$BUILD" test-gpu-host 2>&1 | tail -1

echo "== test_cuda_kernels"
timeout 300 "./$BUILD/tests/gpu/test_cuda_kernels" 2>&1 | tee "$BUILD/test_cuda_kernels.out"
test_rc=$?
# tee hides the program's status: read it from the last line instead
last=$(tail -1 "$BUILD/test_cuda_kernels.out")
case "$last" in
  *" 0 failed") test_rc=0 ;;
  SKIP*) test_rc=0; echo "(no device: nothing was checked on a GPU)" ;;
  *) test_rc=1 ;;
esac

echo "== test_cuda_models (whole models on the GPU vs goldens and the CPU)"
# The device machine gets the checkout only: ../shared/testdata is not there, but a shared/
# folder inside the checkout travels. Without either, every golden case SKIPs.
if [ -z "${NLLM_TESTDATA:-}" ] && [ ! -d ../shared/testdata ] && [ -d shared/testdata ]; then
  NLLM_TESTDATA="$PWD/shared/testdata"
  export NLLM_TESTDATA
fi
timeout 300 "./$BUILD/tests/gpu/test_cuda_models" "$BUILD/nllm" 2>&1 | tee "$BUILD/test_cuda_models.out"
# tee hides the status (and this is sh, no PIPESTATUS): the program ends with PASSED, or
# starts with SKIP without a device
models_last=$(tail -1 "$BUILD/test_cuda_models.out")
models_rc=1
grep -q "^PASSED" "$BUILD/test_cuda_models.out" && models_rc=0
grep -q "^SKIP: no CUDA device" "$BUILD/test_cuda_models.out" && models_rc=0
grep -q "^FAIL" "$BUILD/test_cuda_models.out" && models_rc=1

echo "== bench_cuda"
# $? after a pipeline is tee's: the program's own status travels as a last line instead
{ timeout 300 "./$BUILD/bench/gpu/bench_cuda" 2>&1; echo "bench_cuda exit status $?"; } |
  tee "$BUILD/bench_cuda.out"
bench_rc=1
grep -q "^bench_cuda exit status 0$" "$BUILD/bench_cuda.out" && bench_rc=0

echo
echo "SUMMARY"
echo "  tests : $last"
echo "  models: $models_last ($(grep -c '^SKIP' "$BUILD/test_cuda_models.out") cases skipped)"
grep -E "^copy:" "$BUILD/bench_cuda.out" | sed 's/^/  /'
echo "  total : $(( $(date +%s) - start )) s"
[ "$test_rc" -eq 0 ] && [ "$models_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] &&
  echo "  result: OK" && exit 0
echo "  result: FAILED (tests rc $test_rc, models rc $models_rc, bench rc $bench_rc)"
exit 1
