#!/bin/sh
# Runs the /v1/embeddings server tests (test_embed.mjs, the openai client).
# shellcheck source=tests/server/lib.sh
. "$(dirname "$0")/lib.sh"
need_node
need_npm openai
exec node "tests/server/test_embed.mjs"
