#!/bin/sh
# Runtime dispatch check: the x86-64 build must run on a CPU without AVX2/FMA/F16C (here an
# emulated Nehalem) through the scalar kernels, and still produce the golden greedy story.
set -eu
BUILD=${NLLM_BUILD:-build}
golden=${NLLM_TESTDATA:-../shared/testdata}/golden/logits/stories260K-F32.greedy250.ids.txt
command -v qemu-x86_64 >/dev/null || { echo "SKIP: qemu-x86_64 not installed"; exit 0; }
info=$(qemu-x86_64 -cpu Nehalem "$BUILD/nllm" --help | tail -1)
echo "under qemu -cpu Nehalem: $info"
case "$info" in *avx2*unused*|*scalar*) ;; *avx2*) echo "FAIL: AVX2 reported on a CPU without it"; exit 1;; esac
ids=$(qemu-x86_64 -cpu Nehalem "$BUILD/nllm" run -p "Once upon a time" -n 100 --temp 0 --ids -t 1 2>/dev/null)
if [ -f "$golden" ]; then
  want=$(grep '^gen_ids:' "$golden" | cut -d: -f2 | tr -s ' ' '\n' | sed '/^$/d' | head -100 | tr '\n' ' ' | sed 's/ $//')
  [ "$ids" = "$want" ] || { echo "FAIL: scalar path on Nehalem gave different ids"; echo "got:  $ids"; echo "want: $want"; exit 1; }
  echo "no-AVX2 run: 100 greedy ids equal the golden ones"
else
  echo "SKIP: $golden not found (ran without comparing)"
fi
