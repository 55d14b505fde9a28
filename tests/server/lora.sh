#!/bin/sh
# Runs the LoRA server tests (test_lora.mjs: node's own fetch, no npm packages) on the shared
# tiny-llama LoRA data.
# shellcheck source=tests/server/lib.sh
. "$(dirname "$0")/lib.sh"
need_node
td=${NLLM_TESTDATA:-../shared/testdata}
if [ ! -f "$td/lora/tiny-llama-lora-a/adapter_config.json" ] || [ ! -f "$td/hf/tiny-llama/config.json" ]; then
  skip "$td/lora or $td/hf/tiny-llama not found (set NLLM_TESTDATA)"
fi
NLLM_TESTDATA=$td exec node tests/server/test_lora.mjs
