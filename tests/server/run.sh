#!/bin/sh
# Runs the nllm serve tests (test_server.mjs) with the official openai npm client.
# shellcheck source=tests/server/lib.sh
. "$(dirname "$0")/lib.sh"
need_node
need_npm openai
exec node "tests/server/test_server.mjs"
