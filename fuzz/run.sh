#!/bin/sh
# Runs one libFuzzer harness for a bounded time and prints its figures.
# usage: run.sh BUILD_DIR NAME MAX_LEN SECONDS "EXTRA FLAGS"
b=$1 f=$2 ml=$3 secs=$4 flags=$5
mkdir -p "$b/corpus/$f" "$b/crashes" "fuzz/corpus/$f"
echo "== $f: $secs s, max_len $ml"
# shellcheck disable=SC2086
"$b/$f" $flags -max_len="$ml" -max_total_time="$secs" -artifact_prefix="$b/crashes/$f-" \
  "$b/corpus/$f" "fuzz/corpus/$f" >"$b/$f.log" 2>&1
rc=$?
grep -E '^#[0-9]+[[:space:]]+INITED' "$b/$f.log" | tail -1
grep -E '^#[0-9]+[[:space:]].*cov: ' "$b/$f.log" | tail -1 | sed -E 's/ (lim|exec\/s|rss|L|MS):.*//; s/^/last: /'
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|Test unit written' "$b/$f.log"
if [ $rc -ne 0 ]; then
  grep -E 'ERROR|SUMMARY' "$b/$f.log" | head -5
  echo "$f: FAILED (log: $b/$f.log)"
  exit 1
fi
