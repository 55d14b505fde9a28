#!/bin/sh
# Runs the tool-calling server tests (test_tools.mjs: openai client + ajv validator).
# shellcheck source=tests/server/lib.sh
. "$(dirname "$0")/lib.sh"
need_node
need_npm openai ajv
exec node "tests/server/test_tools.mjs"
