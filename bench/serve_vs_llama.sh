#!/bin/sh
# nllm serve against llama.cpp's llama-server on the same GGUF, the same slots and threads, with
# bench/serve_load.mjs (streamed /v1/completions, loopback only). The two servers run ALTERNATELY,
# ROUNDS times, so that both see the same machine load; every run prints one JSON line per client
# count, tagged with the server and the round.
#
#   bench/serve_vs_llama.sh MODEL.gguf LLAMA_SERVER [ROUNDS] [CLIENTS] [NP] [THREADS] [CTX] [TOKENS]
#   e.g. bench/serve_vs_llama.sh /tmp/110M-Q4_0.gguf /work/llama.cpp/build/bin/llama-server 2 1,8,32 32 1
#
# CTX is per slot: llama-server gets NP * CTX (it splits its context over the slots).
set -eu
model=$1
llama=$2
rounds=${3:-2}
clients=${4:-1,8,32}
np=${5:-32}
threads=${6:-1}
ctx=${7:-256}
tokens=${8:-32}
build=${NLLM_BUILD:-build}
port_nllm=${PORT_NLLM:-18611}
port_llama=${PORT_LLAMA:-18612}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

wait_ready() { # url pid
  i=0
  while ! curl -sf "$1/health" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 "$2" 2>/dev/null; then
      echo "server at $1 did not start:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.2
  done
}

run_one() { # name url pid round
  wait_ready "$2" "$3"
  # one untimed request first: both servers touch their weights before the clock starts
  curl -s "$2/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt": "warm up", "max_tokens": 4}' >/dev/null
  node bench/serve_load.mjs --url "$2" --clients "$clients" --requests 2 \
    --max-tokens "$tokens" --seconds 120 --json |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const r of JSON.parse(s))
      console.log(JSON.stringify({server:process.argv[1],round:+process.argv[2],...r}))})' "$1" "$4"
  kill "$3"
  wait "$3" 2>/dev/null || true
}

echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg) model=$model np=$np t=$threads ctx/slot=$ctx tokens=$tokens"
r=1
while [ $r -le "$rounds" ]; do
  "$build/nllm" serve -m "$model" --host 127.0.0.1 --port "$port_nllm" -np "$np" -t "$threads" \
    -c "$ctx" --queue 1024 >"$log" 2>&1 &
  run_one nllm "http://127.0.0.1:$port_nllm" $! $r
  "$llama" -m "$model" --host 127.0.0.1 --port "$port_llama" -np "$np" -t "$threads" \
    -c $((np * ctx)) >"$log" 2>&1 &
  run_one llama-server "http://127.0.0.1:$port_llama" $! $r
  r=$((r + 1))
done
echo "# end load: $(cut -d' ' -f1-3 /proc/loadavg)"
