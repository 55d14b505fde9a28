/* LoRA adapter loader: a GGUF adapter (first byte even) or a PEFT pair (first byte odd:
 * adapter_config.json text, a NUL, then adapter_model.safetensors bytes) checked against the
 * bundled stories260K model; an accepted adapter is attached and one token decoded with it, so
 * hostile shapes and ranks reach the forward pass too. Seeds: fuzz/corpus/fuzz_lora. */
#include <stdint.h>

#include "engine/engine.h"
#include "fuzz_common.h"
#include "model/lora.h"

static nllm_model *base_model(void) {
  static nllm_model *m;
  if (!m) {
    nllm_model_params mp;
    nllm_model_params_init(&mp);
    mp.n_threads = 1;
    if (nllm_model_load("models/stories260K.gguf", &mp, &m) != NLLM_OK) abort();
  }
  return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  nllm_model *m = base_model();
  nllm_lora_adapter *a = NULL;
  nllm_status st;
  if (!(data[0] & 1)) {
    st = nllm_lora_load_gguf_buffer(m, data + 1, size - 1, "fuzz.gguf", &a);
  } else {
    const uint8_t *nul = memchr(data + 1, 0, size - 1);
    if (!nul) return 0;
    const size_t cfg_len = (size_t)(nul - data - 1);
    st = nllm_lora_load_peft_buffer(m, (const char *)data + 1, cfg_len, nul + 1,
                                    size - 2 - cfg_len, "fuzz-peft", &a);
  }
  if (st != NLLM_OK) return 0;
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 4;
  cp.n_threads = 1;
  nllm_context *c = NULL;
  if (nllm_context_create(m, &cp, &c) == NLLM_OK) {
    const float scale = 0.5f;
    if (nllm_context_set_lora(c, &a, &scale, 1) == NLLM_OK) {
      nllm_token t[2] = {1, 2};
      nllm_decode(c, t, 2);
    }
    nllm_context_free(c);
  }
  nllm_lora_adapter_free(a);
  return 0;
}
