#include "tokenizer/tok_internal.h"
nllm_status nllm_tokenizer_chat_format(const nllm_tokenizer *tok, const nllm_chat_message *messages,
                                       int32_t n, int add_assistant, char *buf, int32_t cap,
                                       int32_t *n_out) {
  return nllm_err(NLLM_ERR_UNSUPPORTED, "not yet");
}
