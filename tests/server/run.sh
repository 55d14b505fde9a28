#!/bin/sh
# Runs the nllm serve tests (test_server.mjs) with the official openai npm client. The client is
# installed into tests/server/node_modules from package-lock.json on first use (npm ci); later
# runs need no network. Without node/npm, or when the install fails offline, the tests are
# skipped with a message (run_tests.sh counts a SKIP line).
cd "$(dirname "$0")/../.." || exit 1
dir=tests/server
if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: tests/server: node is not installed (tools/install-deps.sh installs it)"
  exit 0
fi
if [ ! -f "$dir/node_modules/openai/package.json" ]; then
  if ! command -v npm >/dev/null 2>&1 ||
    ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1); then
    echo "SKIP: tests/server: cannot install the openai npm client (npm ci in $dir)"
    exit 0
  fi
fi
exec node "$dir/test_server.mjs"
