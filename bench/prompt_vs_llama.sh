#!/bin/sh
# Prompt processing against llama.cpp's llama-bench on the same GGUF files and threads (issue 25's
# table): per file and thread count, `nllm bench -p SIZES -n 0 -t T -r REPS --json` then
# `llama-bench -p SIZES -n 0 -t T -r REPS -mmp 0 -o jsonl` (both with their untimed warm-up run,
# both reading the weights into memory), so the two see the same machine load; ROUNDS rounds
# repeat the whole list. Prints one line per file, thread count, size and round with both rates
# and their ratio, then the median ratio per row over the rounds. On a 2-core host the 2-thread
# runs of a small model last a fraction of a second each: raise REPS there, and read the +- column.
#
#   bench/prompt_vs_llama.sh LLAMA_BENCH MODEL.gguf [MODEL.gguf ...]
#   environment: THREADS (default "1 2"), SIZES (default 128,512), REPS (default 3), ROUNDS
#   (default 1), NLLM (default build/nllm); NLLM_ISA=avx2 with an AVX2-only llama.cpp build gives
#   the AVX2 rows on an AVX-512 machine.
#   e.g. bench/prompt_vs_llama.sh /work/llama.cpp/build/bin/llama-bench /tmp/prompt/1.1B-Q4_0.gguf
set -eu
if [ $# -lt 2 ]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
LLAMA_BENCH=$1
shift
NLLM=${NLLM:-build/nllm}
THREADS=${THREADS:-1 2}
SIZES=${SIZES:-128,512}
REPS=${REPS:-3}
ROUNDS=${ROUNDS:-1}
for f in "$NLLM" "$LLAMA_BENCH"; do
  [ -x "$f" ] || { echo "prompt_vs_llama: $f is not an executable" >&2; exit 2; }
done
out=$(mktemp)
trap 'rm -f "$out"' EXIT
round=1
while [ "$round" -le "$ROUNDS" ]; do
  for m in "$@"; do
    [ -r "$m" ] || { echo "prompt_vs_llama: cannot read $m" >&2; exit 2; }
    for t in $THREADS; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      "$NLLM" bench -m "$m" -p "$SIZES" -n 0 -t "$t" -r "$REPS" --json 2>/dev/null |
        sed -n "s|^{|{\"side\": \"nllm\", \"file\": \"$m\", \"round\": $round, \"load\": $load, |p" >>"$out"
      "$LLAMA_BENCH" -m "$m" -p "$SIZES" -n 0 -t "$t" -r "$REPS" -mmp 0 -o jsonl 2>/dev/null |
        sed -n "s|^{|{\"side\": \"llama\", \"file\": \"$m\", \"round\": $round, \"load\": $load, |p" >>"$out"
    done
  done
  round=$((round + 1))
done
python3 - "$out" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d["side"] == "nllm":
        key, rate, sd = (d["file"], d["threads"], d["n_prompt"], d["round"]), d["tokens_per_s"], d["tokens_per_s_stddev"]
    else:
        if d.get("n_gen", 0) != 0:
            continue
        key, rate, sd = (d["file"], d["n_threads"], d["n_prompt"], d["round"]), d["avg_ts"], d["stddev_ts"]
    rows.setdefault(key, {})[d["side"]] = (rate, sd, d["load"], d.get("build_number"))
ratios = {}
print("file\tthreads\tprompt\tround\tload\tnllm t/s (+-)\tllama.cpp t/s (+-)\tratio")
for key in sorted(rows):
    r = rows[key]
    if "nllm" not in r or "llama" not in r:
        continue
    (n, nsd, load, _), (l, lsd, _, build) = r["nllm"], r["llama"]
    ratio = n / l if l > 0 else float("nan")
    ratios.setdefault(key[:3], []).append(ratio)
    print(f"{key[0]}\t{key[1]}\t{key[2]}\t{key[3]}\t{load}\t{n:.1f} ({nsd:.1f})\t{l:.1f} ({lsd:.1f}, b{build})\t{ratio:.2f}")
print("\nmedian ratio over the rounds (nllm / llama.cpp):")
for key in sorted(ratios):
    print(f"{key[0]}\t{key[1]} threads\tpp{key[2]}\t{statistics.median(ratios[key]):.2f}")
EOF
