#!/bin/sh
# Runtime dispatch check: the x86-64 build must run on a CPU without AVX2/FMA/F16C (here an
# emulated Nehalem) through the scalar kernels, and on one with AVX2 but no AVX-512 (an
# emulated Haswell) through the AVX2 tier, and both must produce the golden greedy story.
set -eu
BUILD=${NLLM_BUILD:-build}
golden=${NLLM_TESTDATA:-../shared/testdata}/golden/logits/stories260K-F32.greedy250.ids.txt
command -v qemu-x86_64 >/dev/null || { echo "SKIP: qemu-x86_64 not installed"; exit 0; }
want=""
if [ -f "$golden" ]; then
  want=$(grep '^gen_ids:' "$golden" | cut -d: -f2 | tr -s ' ' '\n' | sed '/^$/d' | head -100 | tr '\n' ' ' | sed 's/ $//')
else
  echo "SKIP: $golden not found (runs without comparing)"
fi
for cpu in Nehalem Haswell; do
  info=$(qemu-x86_64 -cpu $cpu "$BUILD/nllm" --help 2>/dev/null | tail -1)
  echo "under qemu -cpu $cpu: $info"
  case "$cpu:$info" in
    Nehalem:*scalar*) ;;
    Haswell:*avx2*avx512*) echo "FAIL: AVX-512 reported on a CPU without it"; exit 1;;
    Haswell:*avx2*) ;;
    *) echo "FAIL: unexpected kernel tier on $cpu"; exit 1;;
  esac
  ids=$(qemu-x86_64 -cpu $cpu "$BUILD/nllm" run -p "Once upon a time" -n 100 --temp 0 --ids -t 1 2>/dev/null)
  if [ -n "$want" ]; then
    [ "$ids" = "$want" ] || { echo "FAIL: $cpu gave different ids"; echo "got:  $ids"; echo "want: $want"; exit 1; }
    echo "$cpu run: 100 greedy ids equal the golden ones"
  fi
done
