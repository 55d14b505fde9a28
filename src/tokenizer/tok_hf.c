#include "tokenizer/tok_internal.h"
nllm_status nllm_tokenizer_from_hf(const char *path, nllm_tokenizer **out) {
  *out = NULL;
  return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: not yet", path);
}
