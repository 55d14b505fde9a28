#!/bin/sh
# The one script a GPU session runs: builds the CUDA library for the GPU that is present (or
# unpacks one built elsewhere), runs the kernel tests against the CPU reference and the model
# tests against the goldens, then the GPU benchmarks (kernels, then whole models made with
# `nllm gen-model`), and prints a summary.
# Usage: tools/gpu-check.sh [build-dir]   (default build-gpu; about 5-7 minutes on an H200)
#   GPU_PREBUILT=bundle.tar.xz  binaries, their shared libraries and test data packed by
#                               tools/gpu-bundle.sh (no build: the device image lacks the
#                               Debian libraries; CUDA's own must be there)
#   GPU_BENCH_MODELS="1.1B:Q4_0 8B:Q8_0 8B:Q4_K:8 ..."  SHAPE:TYPE[:LAYERS] for `nllm bench
#                               --gpu` (empty: none); GPU_BENCH_ARGS the bench's arguments
#   GPU_BENCH_AB="VAR=value"    also run bench_cuda and each model bench with that setting,
#                               before the default (NLLM_CUDA_GRAPH=0: decode kernel by kernel;
#                               NLLM_CUDA_MMV_STAGE=0: matrix-vector loads not staged)
#   GPU_NCU_MODEL=SHAPE-TYPE    profile that model's decode matrix-vector kernels with Nsight
#                               Compute (kernel by kernel, 3 launches) into ncu.txt
#   OUT=dir                     where the logs go (default the build dir)
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${1:-build-gpu}
JOBS=$(nproc 2>/dev/null || echo 4)
LOG=${OUT:-$BUILD}
mkdir -p "$LOG"
start=$(date +%s)

echo "== nvidia-smi"
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version,clocks.max.sm,clocks.max.mem \
  --format=csv,noheader || true
PATH="$PATH:${CUDA_HOME:-/usr/local/cuda}/bin"
export PATH

if [ -n "${GPU_PREBUILT:-}" ]; then
  P=/tmp/nllm-gpu
  rm -rf "$P" && mkdir -p "$P"
  echo "== unpacking $GPU_PREBUILT"
  tar -xJf "$GPU_PREBUILT" -C "$P" 2>/dev/null ||
    python3 -c "import sys,tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" \
      "$GPU_PREBUILT" "$P" || { echo "SUMMARY: cannot unpack $GPU_PREBUILT"; exit 1; }
  LD_LIBRARY_PATH="$P/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # cuBLAS is too large to carry: take the machine's (toolkit or Python wheel)
  if ! ldconfig -p | grep -q 'libcublas\.so\.13' && [ ! -e /usr/local/cuda/lib64/libcublas.so.13 ]; then
    d=$(find / -xdev -name 'libcublas.so.13' 2>/dev/null | head -1)
    [ -n "$d" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$d")"
    d=$(find / -xdev -name 'libcudart.so.13' 2>/dev/null | head -1)
    [ -n "$d" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$d")"
  fi
  export LD_LIBRARY_PATH
  [ -z "${NLLM_TESTDATA:-}" ] && [ -d "$P/testdata" ] && NLLM_TESTDATA="$P/testdata" &&
    export NLLM_TESTDATA
  NLLM="$P/bin/nllm" TK="$P/bin/test_cuda_kernels" TM="$P/bin/test_cuda_models"
  BC="$P/bin/bench_cuda"
  if ldd "$NLLM" | grep -q "not found"; then
    ldd "$NLLM" | grep "not found"
    echo "SUMMARY: libraries missing"
    exit 1
  fi
else
  command -v nvcc >/dev/null || { echo "SUMMARY: nvcc not found (set CUDA_HOME)"; exit 1; }
  CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
  case "$CAP" in
    80|86|89|90|100|120) ARCHS=$CAP ;;
    "") echo "no GPU visible to nvidia-smi; building for sm_90"; ARCHS=90 ;;
    *) echo "compute capability $CAP: building sm_90 + PTX (JIT on this GPU)"; ARCHS=90 ;;
  esac
  echo "== build (CUDA=1 CUDA_ARCHS=$ARCHS, $BUILD)"
  mkdir -p "$BUILD"
  if ! make -j"$JOBS" CUDA=1 CUDA_ARCHS="$ARCHS" BUILD="$BUILD" all \
       "$BUILD/tests/gpu/test_cuda_kernels" "$BUILD/tests/gpu/test_cuda_models" \
       "$BUILD/bench/gpu/bench_cuda" >"$LOG/build.log" 2>&1; then
    tail -40 "$LOG/build.log"
    echo "SUMMARY: build FAILED (log: $LOG/build.log)"
    exit 1
  fi
  echo "built in $(( $(date +%s) - start )) s"
  echo "== test_cuda_unpack (CPU emulation of the unpacking)"
  make --no-print-directory CUDA=1 CUDA_ARCHS="$ARCHS" BUILD="$BUILD" test-gpu-host 2>&1 | tail -1
  NLLM="./$BUILD/nllm" TK="./$BUILD/tests/gpu/test_cuda_kernels"
  TM="./$BUILD/tests/gpu/test_cuda_models" BC="./$BUILD/bench/gpu/bench_cuda"
fi

echo "== test_cuda_kernels"
timeout "${GPU_TIMEOUT_KERNELS:-300}" "$TK" >"$LOG/test_cuda_kernels.out" 2>&1
echo "exit status $?" >>"$LOG/test_cuda_kernels.out"
grep -E "FAIL|fail|error|SKIP" "$LOG/test_cuda_kernels.out" | head -40
# the program's last line before the status: "N checks, M failed" or SKIP
last=$(tail -2 "$LOG/test_cuda_kernels.out" | head -1)
echo "$last"
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
timeout "${GPU_TIMEOUT_MODELS:-300}" "$TM" "$NLLM" >"$LOG/test_cuda_models.out" 2>&1
echo "exit status $?" >>"$LOG/test_cuda_models.out"
grep -vE "^ok|^  " "$LOG/test_cuda_models.out" | head -60
models_last=$(tail -2 "$LOG/test_cuda_models.out" | head -1)
models_rc=1
grep -q "^PASSED" "$LOG/test_cuda_models.out" && models_rc=0
grep -q "^SKIP: no CUDA device" "$LOG/test_cuda_models.out" && models_rc=0
grep -q "^FAIL" "$LOG/test_cuda_models.out" && models_rc=1

if [ -n "${GPU_BENCH_AB:-}" ]; then
  echo "== bench_cuda with $GPU_BENCH_AB"
  env $GPU_BENCH_AB timeout "${GPU_TIMEOUT_BENCH:-300}" "$BC" >"$LOG/bench_cuda_ab.out" 2>&1
  sed -n '/^matvec/,/^GEMM/p' "$LOG/bench_cuda_ab.out"
fi
echo "== bench_cuda"
timeout "${GPU_TIMEOUT_BENCH:-300}" "$BC" >"$LOG/bench_cuda.out" 2>&1
echo "bench_cuda exit status $?" >>"$LOG/bench_cuda.out"
cat "$LOG/bench_cuda.out"
bench_rc=1
grep -q "^bench_cuda exit status 0$" "$LOG/bench_cuda.out" && bench_rc=0

# Whole models: random weights of real shapes, written here (nothing is downloaded), each
# timed by `nllm bench --gpu` and removed before the next one is made.
model_rc=0
for spec in ${GPU_BENCH_MODELS:-}; do
  shape=${spec%%:*} rest=${spec#*:} type=${rest%%:*} layers=
  [ "$rest" != "$type" ] && layers=${rest#*:}
  f=/tmp/nllm-bench-$shape-$type.gguf
  echo "== nllm bench --gpu: $shape $type${layers:+ ($layers layers)}"
  t0=$(date +%s)
  if ! "$NLLM" gen-model -o "$f" --shape "$shape" --type "$type" ${layers:+--layers "$layers"} \
      >>"$LOG/models.log" 2>&1; then
    echo "gen-model failed"; model_rc=1; rm -f "$f"; continue
  fi
  echo "made in $(( $(date +%s) - t0 )) s ($(du -h "$f" | cut -f1))"
  if [ -n "${GPU_BENCH_AB:-}" ]; then
    echo "with $GPU_BENCH_AB:"
    env $GPU_BENCH_AB timeout "${GPU_TIMEOUT_MODEL:-120}" "$NLLM" bench --gpu -m "$f" \
      ${GPU_BENCH_ARGS:--p 512 -n 128 -r 3} 2>&1 | tee -a "$LOG/models.log" | grep -E "^\| +[0-9]|error"
    echo "default:"
  fi
  timeout "${GPU_TIMEOUT_MODEL:-120}" "$NLLM" bench --gpu -m "$f" ${GPU_BENCH_ARGS:--p 512 -n 128 -r 3} \
    2>&1 | tee -a "$LOG/models.log" | grep -E "^\||error"
  if [ "${GPU_NCU_MODEL:-}" = "$shape-$type" ] && command -v ncu >/dev/null; then
    echo "== ncu: mmv_q_kernel in $shape $type decode"
    NLLM_CUDA_GRAPH=0 timeout 120 ncu --clock-control none -k regex:mmv_q_kernel \
      --launch-skip 20 --launch-count 3 --section SpeedOfLight --section MemoryWorkloadAnalysis \
      --section WarpStateStats --section Occupancy --section LaunchStats \
      "$NLLM" bench --gpu -m "$f" -p 8 -n 4 -r 1 --no-warmup >"$LOG/ncu.txt" 2>&1
    echo "ncu exit status $?"
    grep -E "mmv_q_kernel|DRAM Throughput|Memory Throughput|L1/TEX Hit|Achieved Occupancy|Duration|Stall" \
      "$LOG/ncu.txt" | head -40
  fi
  rm -f "$f"
done
grep -q "error:" "$LOG/models.log" 2>/dev/null && model_rc=1

echo
echo "SUMMARY"
echo "  tests : $last"
echo "  models: $models_last ($(grep -c '^SKIP' "$LOG/test_cuda_models.out") cases skipped)"
grep -E "^copy:" "$LOG/bench_cuda.out" | sed 's/^/  /'
echo "  total : $(( $(date +%s) - start )) s"
[ "$test_rc" -eq 0 ] && [ "$models_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && [ "$model_rc" -eq 0 ] &&
  echo "  result: OK" && exit 0
echo "  result: FAILED (tests rc $test_rc, models rc $models_rc, bench rc $bench_rc, model benches rc $model_rc)"
exit 1
