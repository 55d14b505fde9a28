/* Attaching LoRA adapters to a context or to one of its sequences. The context keeps its own
 * copies of the lists (and a reference to each adapter), and names each row's set in every
 * forward chunk, so sets can change between any two decode calls and sequences with different
 * adapters can share one batch. */
#include <math.h>
#include <stdlib.h>

#include "engine/engine.h"

/* More than this many adapters at once is a mistake, not a use. */
#define LORA_MAX_ATTACHED 64

static void set_release(nllm_lora_set *set) {
  for (int32_t k = 0; k < set->n; k++) nllm_lora_release(set->a[k].a);
  free(set->a);
  set->a = NULL;
  set->n = 0;
}

void nllm_ctx_lora_free(nllm_context *ctx) {
  set_release(&ctx->lora);
  for (int32_t s = 0; ctx->seq_lora && s < ctx->n_seq; s++) set_release(&ctx->seq_lora[s]);
  free(ctx->seq_lora);
  free(ctx->row_lora);
  ctx->seq_lora = NULL;
  ctx->row_lora = NULL;
}

/* The largest rank any set of the context uses with `next` in place of `slot`. */
static int32_t max_rank(const nllm_context *ctx, const nllm_lora_set *slot,
                        const nllm_lora_set *next) {
  int32_t r = 0;
  for (int32_t s = -1; s < (ctx->seq_lora ? ctx->n_seq : 0); s++) {
    const nllm_lora_set *set = s < 0 ? &ctx->lora : &ctx->seq_lora[s];
    if (set == slot) set = next;
    for (int32_t k = 0; k < set->n; k++)
      if (set->a[k].a->max_rank > r) r = set->a[k].a->max_rank;
  }
  return r;
}

nllm_status nllm_ctx_set_lora(nllm_context *ctx, int32_t seq, nllm_lora_adapter *const *adapters,
                              const float *scales, int32_t n) {
  const char *fn = seq < 0 ? "nllm_context_set_lora" : "nllm_seq_set_lora";
  if (seq >= ctx->n_seq)
    return nllm_err(NLLM_ERR_INVALID_ARG, "%s: sequence %d is outside [0, %d)", fn, seq,
                    ctx->n_seq);
  if (n < (seq < 0 ? 0 : -1) || n > LORA_MAX_ATTACHED)
    return nllm_err(NLLM_ERR_INVALID_ARG, "%s: n %d is outside [%d, %d]", fn, n, seq < 0 ? 0 : -1,
                    LORA_MAX_ATTACHED);
  if (n > 0 && !adapters) return nllm_err(NLLM_ERR_INVALID_ARG, "%s: adapters is NULL", fn);
  for (int32_t k = 0; k < n; k++) {
    if (!adapters[k]) return nllm_err(NLLM_ERR_INVALID_ARG, "%s: adapter %d is NULL", fn, k);
    if (adapters[k]->model != ctx->model)
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "%s: adapter '%s' was loaded for another model than this context's", fn,
                      adapters[k]->name);
    if (scales && !isfinite(scales[k]))
      return nllm_err(NLLM_ERR_INVALID_ARG, "%s: scale %d is not finite", fn, k);
  }
  if (seq >= 0 && !ctx->seq_lora) {
    if (!(ctx->seq_lora = nllm_calloc((size_t)ctx->n_seq, sizeof *ctx->seq_lora)))
      return nllm_err(NLLM_ERR_NOMEM, "out of memory");
    for (int32_t s = 0; s < ctx->n_seq; s++) ctx->seq_lora[s].n = -1;
  }
  if (!ctx->row_lora && !(ctx->row_lora = nllm_calloc((size_t)ctx->n_batch, sizeof *ctx->row_lora)))
    return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  nllm_lora_set next = {NULL, n};
  if (n > 0 && !(next.a = nllm_calloc((size_t)n, sizeof *next.a)))
    return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  for (int32_t k = 0; k < n; k++) {
    next.a[k].a = adapters[k];
    next.a[k].scale = scales ? scales[k] : 1.0f;
  }
  nllm_lora_set *slot = seq < 0 ? &ctx->lora : &ctx->seq_lora[seq];
  nllm_status st = nllm_forward_lora_reserve(&ctx->fs, max_rank(ctx, slot, &next));
  if (st) {
    free(next.a);
    return st;
  }
  for (int32_t k = 0; k < n; k++) nllm_lora_retain(next.a[k].a);
  set_release(slot);
  *slot = next;
  return NLLM_OK;
}

const nllm_lora_set *const *nllm_ctx_lora_rows(nllm_context *ctx, const int32_t *seq_ids,
                                               int32_t nb) {
  if (!ctx->row_lora) return NULL; /* no adapter was ever attached */
  int any = 0;
  for (int32_t t = 0; t < nb; t++) {
    const int32_t s = seq_ids ? seq_ids[t] : 0;
    const nllm_lora_set *own = ctx->seq_lora ? &ctx->seq_lora[s] : NULL;
    ctx->row_lora[t] = own && own->n >= 0 ? own : &ctx->lora;
    any |= ctx->row_lora[t]->n > 0;
  }
  return any ? ctx->row_lora : NULL;
}
