/* The convenience loop: tokenize, decode the prompt, then sample / stream / decode until a stop
 * condition. Every emitted token is also decoded, so the context afterwards holds the whole
 * conversation and a following call continues it from the cache. */
#include <stdlib.h>

#include "engine/engine.h"

nllm_status nllm_run_generate(nllm_context *ctx, nllm_sampler *s, const char *prompt, size_t len,
                              const nllm_generate_params *p, int32_t *n_generated) {
  const nllm_model *m = ctx->model;
  if (n_generated) *n_generated = 0;
  if (len > (size_t)INT32_MAX)
    return nllm_err(NLLM_ERR_INVALID_ARG, "generate: prompt of %zu bytes is too long", len);
  int add_bos = p->add_bos && ctx->pos == 0;
  int32_t n_prompt = 0;
  nllm_status st =
      nllm_tokenizer_encode(m->tok, prompt, len, add_bos, p->parse_special, NULL, 0, &n_prompt);
  if (st && st != NLLM_ERR_BUFFER_TOO_SMALL) return st;
  nllm_token *ids = nllm_malloc((size_t)(n_prompt ? n_prompt : 1) * sizeof *ids);
  if (!ids) return nllm_err(NLLM_ERR_NOMEM, "out of memory (prompt of %d tokens)", n_prompt);
  st = nllm_tokenizer_encode(m->tok, prompt, len, add_bos, p->parse_special, ids, n_prompt,
                             &n_prompt);
  if (st == NLLM_OK) st = nllm_run_generate_tokens(ctx, s, ids, n_prompt, p, n_generated);
  free(ids);
  return st;
}

nllm_status nllm_run_generate_tokens(nllm_context *ctx, nllm_sampler *s, const nllm_token *ids,
                                     int32_t n_prompt, const nllm_generate_params *p,
                                     int32_t *n_generated) {
  const nllm_model *m = ctx->model;
  nllm_status st = NLLM_OK;
  if (n_generated) *n_generated = 0;
  if (p->max_tokens < 0)
    return nllm_err(NLLM_ERR_INVALID_ARG, "generate: max_tokens must be >= 0 (got %d)",
                    p->max_tokens);
  if (n_prompt == 0 && ctx->n_logits == 0)
    return nllm_err(NLLM_ERR_INVALID_ARG, "generate: empty prompt and nothing decoded yet");
  for (int32_t i = 0; i < n_prompt; i++) nllm_smp_accept(s, ids[i]);
  if (n_prompt && (st = nllm_ctx_decode(ctx, ids, n_prompt))) return st;

  /* Pieces reach the callback only as complete UTF-8 (see nllm_detok_stream). The first
   * generated piece follows the prompt, so it keeps its leading space. */
  nllm_detok_stream ds;
  nllm_detok_stream_init(&ds, 0);
  ds.n_pushed = 1;
  char piece[1024];
  for (int32_t i = 0; i < p->max_tokens; i++) {
    const float *logits = ctx->logits + (size_t)(ctx->n_logits - 1) * m->hp.n_vocab;
    nllm_token tok;
    if ((st = nllm_smp_sample(s, logits, m->hp.n_vocab, &tok))) return st;
    nllm_smp_accept(s, tok);
    if (p->stop_at_eog && nllm_model_is_eog(m, tok)) break;
    if (n_generated) (*n_generated)++;
    int32_t n_piece = 0;
    st = nllm_detok_stream_push(m->tok, &ds, tok, piece, (int32_t)sizeof piece, &n_piece);
    if (st == NLLM_ERR_BUFFER_TOO_SMALL) n_piece = 0, st = NLLM_OK; /* absurd piece: no text */
    if (st) return st;
    int stop = p->on_token && p->on_token(tok, piece, n_piece, p->user_data);
    if ((st = nllm_ctx_decode(ctx, &tok, 1))) return st;
    if (stop) break;
  }
  /* An incomplete character left at the end can never complete: it becomes U+FFFD. */
  int32_t n_tail = 0;
  if (nllm_detok_stream_flush(&ds, piece, (int32_t)sizeof piece, &n_tail) == NLLM_OK && n_tail &&
      p->on_token)
    p->on_token(-1, piece, n_tail, p->user_data);
  return NLLM_OK;
}
