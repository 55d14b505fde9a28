#!/bin/sh
# Runs the chat-page test (test_page.mjs) in headless Chromium; the test itself skips without
# chromium.
# shellcheck source=tests/server/lib.sh
. "$(dirname "$0")/lib.sh"
need_node
exec node "tests/server/test_page.mjs"
