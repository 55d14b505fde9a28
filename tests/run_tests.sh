#!/bin/sh
# Runs every test program given, then prints the totals as one plain line
# ("tests: N passed, N failed, N skipped") and exits non-zero if anything failed. A check that
# printed a line starting with "SKIP: " (data or CPU feature absent) passed without testing its
# subject: it counts as skipped, not passed.
#
# NLLM_TEST_JOBS programs run at a time (default 1): each writes its output to a file of its own,
# and the report follows the order given, program by program as each one ends. The programs
# share nothing that would make them wait for or disturb each other (temporary files carry
# their process id or mkstemp's suffix, servers take a free port).
passed=0; failed=0; skipped=0; bad=""
jobs=${NLLM_TEST_JOBS:-1}
dir=$(mktemp -d "${TMPDIR:-/tmp}/nllm-tests.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM
i=0
for t in "$@"; do i=$((i + 1)); printf '%d %s\n' "$i" "$t"; done |
  xargs -P "$jobs" -L 1 sh -c 's=$(date +%s%N); "$3" >"$1/$2.out" 2>&1; rc=$?
    echo "$rc $((($(date +%s%N) - s) / 100000000))" >"$1/$2.tmp"; mv "$1/$2.tmp" "$1/$2.rc"' \
    run_tests "$dir" &
i=0
for t in "$@"; do
  i=$((i + 1))
  while [ ! -f "$dir/$i.rc" ]; do sleep 0.2; done
  out=$(cat "$dir/$i.out"); read -r rc ds <"$dir/$i.rc"
  # each program's summary line ends with its wall time
  printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks|SKIP|Failure|Error|failed' |
    sed -e "s|^|$(basename "$t"): |" -e "/%: Checks: /s|\$| [$((ds / 10)).$((ds % 10)) s]|"
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks: ' | tail -1)
  if [ -n "$line" ]; then
    n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
    f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
    e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
    s=$(printf '%s\n' "$out" | grep -c '^SKIP: ')
    ok=$((n - f - e)); [ "$s" -gt "$ok" ] && s=$ok
    passed=$((passed + ok - s)); failed=$((failed + f + e)); skipped=$((skipped + s))
  fi
  if [ $rc -ne 0 ]; then
    [ -z "$line" ] && failed=$((failed + 1))
    bad="$bad $(basename "$t")"
    printf '%s\n' "$out" | tail -30
  fi
done
if [ -n "${NLLM_PYTHON_LIB:-}" ]; then
  out=$(NATIVELLM_LIB="$NLLM_PYTHON_LIB" python3 python/run_tests.py 2>&1); rc=$?
  line=$(printf '%s\n' "$out" | grep -E '^python: [0-9]+ passed' | tail -1)
  echo "${line:-python: no summary line}"
  if [ -n "$line" ]; then
    passed=$((passed + $(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/')))
    failed=$((failed + $(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')))
    skipped=$((skipped + $(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p')))
  fi
  if [ $rc -ne 0 ]; then
    [ -z "$line" ] && failed=$((failed + 1))
    bad="$bad python"
    printf '%s\n' "$out" | tail -40
  fi
fi
wait
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ -z "$bad" ] || { echo "failing programs:$bad"; exit 1; }
