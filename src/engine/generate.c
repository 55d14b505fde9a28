/* The convenience loop: tokenize, decode the prompt, then sample / stream / decode until a stop
 * condition. Every emitted token is also decoded, so the context afterwards holds the whole
 * conversation and a following call continues it from the cache. */
#include <stdlib.h>

#include "engine/engine.h"

/* Bytes of pieces are passed on only as complete UTF-8 characters; an incomplete tail is held
 * (at most 3 bytes) until the next piece completes it, and flushed raw at the end. */
typedef struct utf8_stream {
  char held[8];
  int n_held;
} utf8_stream;

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8 sequence. */
static int complete_prefix(const char *s, int n) {
  int i = n - 1, back = 0;
  while (i >= 0 && back < 4 && ((uint8_t)s[i] & 0xC0) == 0x80) i--, back++;
  if (i < 0) return n;
  int need = nllm_utf8_len((uint8_t)s[i]);
  if ((uint8_t)s[i] >= 0x80 && (uint8_t)s[i] < 0xC0) return n; /* stray continuation */
  return need > n - i ? i : n;
}

nllm_status nllm_run_generate(nllm_context *ctx, nllm_sampler *s, const char *prompt, size_t len,
                              const nllm_generate_params *p, int32_t *n_generated) {
  const nllm_model *m = ctx->model;
  if (n_generated) *n_generated = 0;
  if (p->max_tokens < 0)
    return nllm_err(NLLM_ERR_INVALID_ARG, "generate: max_tokens must be >= 0 (got %d)",
                    p->max_tokens);
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
  if (st) goto done;
  if (n_prompt == 0 && ctx->n_logits == 0) {
    st = nllm_err(NLLM_ERR_INVALID_ARG, "generate: empty prompt and nothing decoded yet");
    goto done;
  }
  for (int32_t i = 0; i < n_prompt; i++) nllm_sampler_push(s, ids[i]);
  if (n_prompt && (st = nllm_ctx_decode(ctx, ids, n_prompt))) goto done;

  utf8_stream us = {{0}, 0};
  char piece[512];
  for (int32_t i = 0; i < p->max_tokens; i++) {
    const float *logits = ctx->logits + (size_t)(ctx->n_logits - 1) * m->hp.n_vocab;
    nllm_token tok;
    if ((st = nllm_sampler_pick(s, logits, m->hp.n_vocab, &tok))) goto done;
    nllm_sampler_push(s, tok);
    if (p->stop_at_eog && nllm_tokenizer_is_eog(m->tok, tok)) break;
    if (n_generated) (*n_generated)++;
    int32_t n_piece = 0;
    st = nllm_tokenizer_piece(m->tok, tok, 0, piece + us.n_held,
                              (int32_t)sizeof piece - us.n_held, &n_piece);
    if (st == NLLM_ERR_BUFFER_TOO_SMALL) n_piece = 0, st = NLLM_OK; /* absurd piece: skip text */
    if (st) goto done;
    memcpy(piece, us.held, (size_t)us.n_held);
    int total = us.n_held + n_piece, emit = complete_prefix(piece, total);
    us.n_held = total - emit;
    memcpy(us.held, piece + emit, (size_t)us.n_held);
    int stop = p->on_token && p->on_token(tok, piece, emit, p->user_data);
    if ((st = nllm_ctx_decode(ctx, &tok, 1))) goto done;
    if (stop) break;
  }
  /* An incomplete character left at the end can never complete: it becomes U+FFFD. */
  if (us.n_held && p->on_token) p->on_token(-1, "\xEF\xBF\xBD", 3, p->user_data);
done:
  free(ids);
  return st;
}
