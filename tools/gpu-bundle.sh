#!/bin/sh
# Packs what tools/gpu-check.sh needs on a GPU machine that has CUDA but not the Debian
# libraries: the CUDA build's programs (stripped), the shared libraries they link (except
# glibc's and CUDA's own: cuBLAS is 600 MB) and the test data the GPU tests read. The device
# tool carries 64 MiB with the checkout: this stays near 35 MB compressed.
# Usage: tools/gpu-bundle.sh [build-dir] [out.tar.xz]   (defaults build-gpu, .gpu/bundle.tar.xz)
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
OUTF=${2:-.gpu/bundle.tar.xz}
T=${NLLM_TESTDATA:-../shared/testdata}
S=$(mktemp -d)
trap 'rm -rf "$S"' EXIT
mkdir -p "$S/bin" "$S/lib" "$S/testdata/golden/models" "$S/testdata/golden/logits" "$S/testdata/hf"
for b in nllm tests/gpu/test_cuda_kernels tests/gpu/test_cuda_models bench/gpu/bench_cuda; do
  strip -o "$S/bin/$(basename $b)" "$BUILD/$b"
done
ldd "$S"/bin/* | awk '$3 ~ /^\// {print $3}' | sort -u | while read -r l; do
  case "$(basename "$l")" in
    libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libgcc_s.so*|libstdc++.so*) ;;
    libcublas*|libcudart*) ;;
    *) cp -L "$l" "$S/lib/" ;;
  esac
done
cp "$T"/golden/models/tiny-a-F16.gguf "$T"/golden/models/tiny-a-Q8_0.gguf \
  "$T"/golden/models/tiny-a-Q4_0.gguf "$T"/golden/models/tiny-a-Q4_K_M.gguf \
  "$T"/golden/models/tiny-a-Q6_K.gguf "$S/testdata/golden/models/"
for f in stories260K-F32.logits.txt stories260K-F32.greedy250.ids.txt tiny-a-F16.logits.txt \
  tiny-a-Q8_0.logits.txt tiny-a-Q4_0.logits.txt tiny-a-Q4_K_M.logits.txt tiny-a-Q6_K.logits.txt; do
  cp "$T/golden/logits/$f" "$S/testdata/golden/logits/"
done
cp -r "$T/hf/tiny-llama" "$S/testdata/hf/"   # the Qwen folders would pass the 64 MiB
mkdir -p "$(dirname "$OUTF")"
tar -cf - -C "$S" . | xz -6 -T0 >"$OUTF"
ls -la "$OUTF"
