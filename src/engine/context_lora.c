/* Attaching LoRA adapters to a context: the context keeps its own list (and a reference to
 * each adapter), which the forward pass reads on every decode, so the set can change between
 * any two decode calls. */
#include <math.h>
#include <stdlib.h>

#include "engine/engine.h"

/* More than this many adapters at once is a mistake, not a use. */
#define LORA_MAX_ATTACHED 64

void nllm_ctx_lora_free(nllm_context *ctx) {
  for (int32_t k = 0; k < ctx->n_lora; k++) nllm_lora_release(ctx->lora[k].a);
  free(ctx->lora);
  ctx->lora = NULL;
  ctx->n_lora = 0;
}

nllm_status nllm_ctx_set_lora(nllm_context *ctx, nllm_lora_adapter *const *adapters,
                              const float *scales, int32_t n) {
  if (n < 0 || n > LORA_MAX_ATTACHED)
    return nllm_err(NLLM_ERR_INVALID_ARG, "nllm_context_set_lora: n %d is outside [0, %d]", n,
                    LORA_MAX_ATTACHED);
  if (n > 0 && !adapters)
    return nllm_err(NLLM_ERR_INVALID_ARG, "nllm_context_set_lora: adapters is NULL");
  for (int32_t k = 0; k < n; k++) {
    if (!adapters[k])
      return nllm_err(NLLM_ERR_INVALID_ARG, "nllm_context_set_lora: adapter %d is NULL", k);
    if (adapters[k]->model != ctx->model)
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "nllm_context_set_lora: adapter '%s' was loaded for another model than "
                      "this context's",
                      adapters[k]->name);
    if (scales && !isfinite(scales[k]))
      return nllm_err(NLLM_ERR_INVALID_ARG, "nllm_context_set_lora: scale %d is not finite", k);
  }
  nllm_lora_active *list = NULL;
  if (n > 0 && !(list = nllm_calloc((size_t)n, sizeof *list)))
    return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  for (int32_t k = 0; k < n; k++) {
    list[k].a = adapters[k];
    list[k].scale = scales ? scales[k] : 1.0f;
  }
  nllm_status st = nllm_forward_set_lora(&ctx->fs, list, n);
  if (st) {
    free(list);
    return st;
  }
  for (int32_t k = 0; k < n; k++) nllm_lora_retain(list[k].a);
  nllm_ctx_lora_free(ctx);
  ctx->lora = list;
  ctx->n_lora = n;
  return NLLM_OK;
}
