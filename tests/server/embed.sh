#!/bin/sh
# Runs the /v1/embeddings server tests (test_embed.mjs, the openai client). npm ci installs the
# client from package-lock.json on first use; skipped without node or npm.
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
exec node "$dir/test_embed.mjs"
