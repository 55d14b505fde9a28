#!/bin/sh
# Runs the chat-page test (test_page.mjs) in headless Chromium; skipped without node or chromium.
cd "$(dirname "$0")/../.." || exit 1
if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: tests/server: node is not installed (tools/install-deps.sh installs it)"
  exit 0
fi
exec node tests/server/test_page.mjs
