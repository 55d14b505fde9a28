/* A context: KV cache + scratch of one sequence, its position, and the decode loop that feeds
 * the forward pass in batches of at most n_batch tokens. */
#include <stdlib.h>

#include "engine/engine.h"

nllm_status nllm_ctx_create(const nllm_model *m, const nllm_context_params *p, nllm_context **out) {
  *out = NULL;
  if (m->vocab_only)
    return nllm_err(NLLM_ERR_INVALID_ARG, "model was loaded with vocab_only: it cannot decode");
  int32_t n_ctx = p->n_ctx > 0 ? p->n_ctx : m->n_ctx_default;
  int32_t n_batch = p->n_batch > 0 ? p->n_batch : 512;
  if (n_batch > n_ctx) n_batch = n_ctx;
  int32_t nt = p->n_threads > 0 ? p->n_threads : nllm_default_threads();
  nllm_context *c = nllm_calloc(1, sizeof *c);
  if (!c) return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  c->model = m;
  c->p = *p;
  c->n_ctx = n_ctx;
  c->n_batch = n_batch;
  c->n_threads = nt;
  nllm_status st = nllm_forward_state_init(&c->fs, m, n_ctx, n_batch, p->kv_type, nt,
                                           p->all_logits ? n_batch : 1);
  if (st) {
    free(c);
    return st;
  }
  c->fs.abort_cb = p->abort_callback;
  c->fs.abort_ud = p->abort_user_data;
  c->logits_cap = p->all_logits ? n_batch : 1;
  c->logits = nllm_aligned_alloc((size_t)c->logits_cap * (size_t)m->hp.n_vocab * sizeof(float));
  if (!c->logits) {
    long long rows = (long long)c->logits_cap;
    nllm_ctx_free(c);
    return nllm_err(NLLM_ERR_NOMEM, "out of memory (logits, %lld rows)", rows);
  }
  c->tm.struct_size = sizeof c->tm;
  *out = c;
  return NLLM_OK;
}

void nllm_ctx_free(nllm_context *ctx) {
  if (!ctx) return;
  nllm_forward_state_free(&ctx->fs);
  nllm_aligned_free(ctx->logits);
  free(ctx);
}

nllm_status nllm_ctx_decode(nllm_context *ctx, const nllm_token *tokens, int32_t n) {
  const nllm_model *m = ctx->model;
  if (n <= 0)
    return nllm_err(NLLM_ERR_INVALID_ARG, "nllm_decode: n_tokens must be > 0 (got %d)", n);
  if ((int64_t)ctx->pos + n > ctx->n_ctx)
    return nllm_err(NLLM_ERR_CONTEXT_FULL,
                    "context full: position %d + %d tokens exceeds n_ctx %d (rewind, reset, or "
                    "create the context with a larger n_ctx)",
                    ctx->pos, n, ctx->n_ctx);
  for (int32_t i = 0; i < n; i++)
    if (tokens[i] < 0 || tokens[i] >= m->hp.n_vocab)
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "nllm_decode: token %d at index %d is outside the "
                      "vocabulary [0, %d)",
                      tokens[i], i, m->hp.n_vocab);
  const int all = ctx->p.all_logits != 0;
  if (all && n > ctx->logits_cap) {
    /* Grows only for a prompt longer than any before: not on the per-token path. */
    float *l = nllm_aligned_alloc((size_t)n * (size_t)m->hp.n_vocab * sizeof(float));
    if (!l) return nllm_err(NLLM_ERR_NOMEM, "out of memory for %d rows of logits", n);
    nllm_aligned_free(ctx->logits);
    ctx->logits = l;
    ctx->logits_cap = n;
  }
  double t0 = nllm_time_ms();
  const int32_t pos0 = ctx->pos;
  for (int32_t done = 0; done < n;) {
    int32_t nb = n - done < ctx->n_batch ? n - done : ctx->n_batch;
    int last_chunk = done + nb == n;
    /* Without all_logits only the final chunk's last row is needed. */
    float *out = all ? ctx->logits + (size_t)done * m->hp.n_vocab : last_chunk ? ctx->logits : NULL;
    nllm_status st = nllm_forward(&ctx->fs, tokens + done, nb, pos0 + done, out, all);
    if (st) {
      ctx->n_logits = 0;
      return st; /* position unchanged: the rows written past pos0 are simply ignored */
    }
    done += nb;
  }
  ctx->pos = pos0 + n;
  ctx->n_logits = all ? n : 1;
  ctx->last_n = n;
  double dt = nllm_time_ms() - t0;
  if (n > 1) {
    ctx->tm.n_prompt_tokens += n;
    ctx->tm.prompt_ms += dt;
  } else {
    ctx->tm.n_gen_tokens += 1;
    ctx->tm.gen_ms += dt;
  }
  return NLLM_OK;
}
