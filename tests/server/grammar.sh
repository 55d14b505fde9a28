#!/bin/sh
# Runs the constrained-output server tests (test_grammar.mjs: openai client + ajv validator).
# shellcheck source=tests/server/lib.sh
. "$(dirname "$0")/lib.sh"
need_node
need_npm openai ajv
exec node "tests/server/test_grammar.mjs"
