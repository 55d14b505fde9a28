#!/bin/sh
# Runs the LoRA server tests (test_lora.mjs: node's own fetch, no npm packages); skipped without
# node or without the shared tiny-llama LoRA data.
cd "$(dirname "$0")/../.." || exit 1
if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: tests/server/lora.sh: node is not installed (tools/install-deps.sh installs it)"
  exit 0
fi
td=${NLLM_TESTDATA:-../shared/testdata}
if [ ! -f "$td/lora/tiny-llama-lora-a/adapter_config.json" ] || [ ! -f "$td/hf/tiny-llama/config.json" ]; then
  echo "SKIP: tests/server/lora.sh: $td/lora or $td/hf/tiny-llama not found (set NLLM_TESTDATA)"
  exit 0
fi
NLLM_TESTDATA=$td exec node tests/server/test_lora.mjs
