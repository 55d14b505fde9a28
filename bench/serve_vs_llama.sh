#!/bin/sh
# nllm serve against llama.cpp's llama-server on the same GGUF, the same slots, threads and
# per-slot context, with bench/serve_load.mjs (streamed /v1/completions, loopback only), and
# nllm serve at one client against `nllm bench` generation on the same file and threads (the
# server's own overhead). Every round runs, one after the other: nllm bench, nllm serve at every
# client count, llama-server at every client count; ROUNDS rounds alternate them so all see the
# same machine load. Every request has the same one-token prompt (the model's BOS, as `nllm
# bench` generation starts from) and generates exactly TOKENS tokens (ignore_eos), so both
# servers and the bench count the same tokens. Prints one JSON line per run and client count,
# then the table of medians over the rounds (bench/serve_median.mjs).
#
# Besides wall-clock speed, every line has cpu_ms_tok: the CPU time the server process (all its
# threads) used per generated token during that client count's run (/proc/PID/stat), and for
# nllm bench its own tg_cpu_ms_per_token (the process's CPU time over the timed generation), and
# busy_ms_tok: the CPU time of the server's busiest thread per token (at THREADS 1 the thread
# that decodes and samples: what limits one stream when the HTTP threads have other cores), and
# busy_wait_ms_tok the time that thread was ready to run but waited for a core (preempted by
# the server's own HTTP threads, the load generator or the neighbours), both from the kernel's
# per-thread nanosecond counters (/proc/PID/task/TID/schedstat). For nllm serve, step_ms and
# gap_us are the mean wall time of a decode step and of the scheduler's own time between two
# back-to-back steps (its /metrics counters nllm_decode_*). On a shared host wall-clock figures
# move with the neighbours' load; CPU time per token much less.
#
#   bench/serve_vs_llama.sh MODEL.gguf LLAMA_SERVER|none [ROUNDS] [CLIENTS] [NP] [THREADS] [CTX]
#                           [TOKENS] [REQUESTS]
#   defaults: ROUNDS 3, CLIENTS 1,4,16,64, NP the largest client count, THREADS 1, CTX 256 (per
#   slot), TOKENS 32, REQUESTS 2 (per client per level); a level stops starting requests after
#   SECONDS (environment, default 90). LLAMA_SERVER none: nllm bench and nllm serve only.
#   e.g. bench/serve_vs_llama.sh /tmp/prompt/110M-Q4_0.gguf /work/llama.cpp/build/bin/llama-server
#
# llama-server gets -c NP * CTX (it splits its context over its slots) and --no-webui.
set -eu
model=$1
llama=$2
rounds=${3:-3}
clients=${4:-1,4,16,64}
np=${5:-$(echo "$clients" | tr ',' '\n' | sort -n | tail -1)}
threads=${6:-1}
ctx=${7:-256}
tokens=${8:-32}
requests=${9:-2}
seconds=${SECONDS_CAP:-90}
build=${NLLM_BUILD:-build}
port_nllm=${PORT_NLLM:-18611}
port_llama=${PORT_LLAMA:-18612}
log=$(mktemp)
lines=$(mktemp)
trap 'rm -f "$log" "$log".* "$lines"' EXIT

wait_ready() { # url pid
  i=0
  while ! curl -sf "$1/health" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 1500 ] || ! kill -0 "$2" 2>/dev/null; then
      echo "server at $1 did not start:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.2
  done
}

tick=$(getconf CLK_TCK)
cpu_ticks() { # pid: user + system clock ticks of the whole process so far
  sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

thread_ns() { # pid: "tid on-cpu-ns runqueue-wait-ns" of every thread
  for t in /proc/"$1"/task/*; do
    echo "${t##*/} $(cut -d' ' -f1-2 "$t/schedstat" 2>/dev/null)"
  done
}

busiest() { # before after: "on-cpu-ns wait-ns" gained by the thread alive in both that ran most
  awk 'NR == FNR {a[$1] = $2; w[$1] = $3; next}
    ($1 in a) && $2 - a[$1] > m {m = $2 - a[$1]; mw = $3 - w[$1]} END {print m + 0, mw + 0}' \
    "$1" "$2"
}

decode_counters() { # url: "steps step_seconds gap_seconds" from nllm serve's /metrics, or nothing
  curl -sf "$1/metrics" 2>/dev/null | awk '$1 == "nllm_decode_steps_total" {a = $2}
    $1 == "nllm_decode_step_seconds_total" {b = $2} $1 == "nllm_decode_gap_seconds_total" {c = $2}
    END {if (a != "") print a, b, c}'
}

tag() { # server round cpu_ticks "busy_ns wait_ns" "counters before" "counters after": JSON
  # array on stdin to one tagged line per element
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
    const [srv,round,cpu,busy,m0,m1,tick]=process.argv.slice(1), [bn,wn]=busy.split(" ").map(Number);
    const per=(x,r,d)=>r.tokens?+(x/r.tokens).toFixed(d):null;
    const [s0,t0,g0]=m0.split(" ").map(Number), [s1,t1,g1]=m1.split(" ").map(Number);
    const steps=s1-s0, extra=m0&&m1&&steps>0?{step_ms:+(1e3*(t1-t0)/steps).toFixed(3),
      gap_us:+(1e6*(g1-g0)/steps).toFixed(1)}:{};
    for(const r of JSON.parse(s))
      console.log(JSON.stringify({server:srv,round:+round,...r,
        cpu_ms_tok:per(1000*cpu/tick,r,3),busy_ms_tok:per(bn/1e6,r,3),
        busy_wait_ms_tok:per(wn/1e6,r,3),...extra}))})' "$1" "$2" "$3" "$4" "$5" "$6" "$tick"
}

run_one() { # name url pid round
  wait_ready "$2" "$3"
  # one untimed request first: both servers touch their weights before the clock starts
  curl -s "$2/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt": "warm up", "max_tokens": 4}' >/dev/null
  for c in $(echo "$clients" | tr ',' ' '); do
    # the load generator warms up its own HTTP client first (its --warmup request) and waits
    # for go before its timed levels: the counters hold the timed requests only
    rm -f "$log.ready" "$log.go"
    node bench/serve_load.mjs --url "$2" --clients "$c" --requests "$requests" \
      --max-tokens "$tokens" --seconds "$seconds" --prompt-ids "$bos" --ignore-eos --json \
      --ready-file "$log.ready" --go-file "$log.go" >"$log.out" &
    lg=$!
    while [ ! -e "$log.ready" ] && kill -0 $lg 2>/dev/null; do sleep 0.05; done
    c0=$(cpu_ticks "$3")
    thread_ns "$3" >"$log.t0"
    decode_counters "$2" >"$log.m0"
    touch "$log.go"
    wait $lg
    c1=$(cpu_ticks "$3")
    thread_ns "$3" >"$log.t1"
    decode_counters "$2" >"$log.m1"
    tag "$1" "$4" $((c1 - c0)) "$(busiest "$log.t0" "$log.t1")" "$(cat "$log.m0")" \
      "$(cat "$log.m1")" <"$log.out" | tee -a "$lines"
  done
  kill "$3"
  wait "$3" 2>/dev/null || true
}

# the prompt: BOS alone (nllm's /tokenize of "" with the model's special tokens)
"$build/nllm" serve -m "$model" --port "$port_nllm" -np 1 -t "$threads" -c "$ctx" >"$log" 2>&1 &
pid=$!
wait_ready "http://127.0.0.1:$port_nllm" $pid
bos=$(curl -s "http://127.0.0.1:$port_nllm/tokenize" -H 'Content-Type: application/json' \
  -d '{"content": "", "add_special": true}' |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const t=JSON.parse(s).tokens;
    console.log(t.length ? t.join(",") : "0")})')
kill $pid
wait $pid 2>/dev/null || true

echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg) model=$model np=$np t=$threads" \
  "ctx/slot=$ctx tokens=$tokens requests/client=$requests prompt=[$bos] rounds=$rounds"
r=1
while [ "$r" -le "$rounds" ]; do
  "$build/nllm" bench -m "$model" -p 0 -n "$tokens" -t "$threads" -r 3 --json |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);
      console.log(JSON.stringify({server:"nllm bench",round:+process.argv[1],clients:1,
        stream_tok_s:j.tokens_per_s,cpu_ms_tok:j.tg_cpu_ms_per_token}))})' "$r" | tee -a "$lines"
  "$build/nllm" serve -m "$model" --host 127.0.0.1 --port "$port_nllm" -np "$np" -t "$threads" \
    -c "$ctx" --queue 1024 >"$log" 2>&1 &
  run_one nllm "http://127.0.0.1:$port_nllm" $! "$r"
  if [ "$llama" != none ]; then
    "$llama" -m "$model" --host 127.0.0.1 --port "$port_llama" -np "$np" -t "$threads" \
      -c $((np * ctx)) --no-webui >"$log" 2>&1 &
    run_one llama-server "http://127.0.0.1:$port_llama" $! "$r"
  fi
  r=$((r + 1))
done
echo "# end $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
node bench/serve_median.mjs <"$lines"
