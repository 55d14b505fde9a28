/* The convenience loop: tokenize, decode the prompt, then sample / stream / decode until a stop
 * condition. Every emitted token is also decoded, so the context afterwards holds the whole
 * conversation and a following call continues it from the cache. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

nllm_status nllm_run_generate(nllm_context *ctx, nllm_sampler *s, const char *prompt, size_t len,
                              const nllm_generate_params *p, int32_t *n_generated) {
  const nllm_model *m = ctx->model;
  if (n_generated) *n_generated = 0;
  if (p->finish_reason) *p->finish_reason = NLLM_FINISH_NONE;
  if (len > (size_t)INT32_MAX)
    return nllm_err(NLLM_ERR_INVALID_ARG, "generate: prompt of %zu bytes is too long", len);
  int add_bos = p->add_bos && ctx->pos == 0;
  int32_t n_prompt = 0;
  nllm_status st =
      nllm_tok_tokenize(m->tok, prompt, len, add_bos, p->parse_special, NULL, 0, &n_prompt);
  if (st && st != NLLM_ERR_BUFFER_TOO_SMALL) return st;
  nllm_token *ids = nllm_malloc((size_t)(n_prompt ? n_prompt : 1) * sizeof *ids);
  if (!ids) return nllm_err(NLLM_ERR_NOMEM, "out of memory (prompt of %d tokens)", n_prompt);
  st = nllm_tok_tokenize(m->tok, prompt, len, add_bos, p->parse_special, ids, n_prompt, &n_prompt);
  if (st == NLLM_OK) st = nllm_run_generate_tokens(ctx, s, ids, n_prompt, p, n_generated);
  free(ids);
  return st;
}

/* Generated text on its way to on_token: held back while its end could be the start of a stop
 * string, so a stop string split over several tokens is never streamed. */
typedef struct stop_filter {
  const nllm_generate_params *p;
  char *buf; /* pending text, not yet streamed */
  size_t len, cap;
  int stopped;
} stop_filter;

/* Offset of the first stop string in f->buf, or f->len if none. */
static size_t stop_find(const stop_filter *f) {
  size_t best = f->len;
  for (int32_t i = 0; i < f->p->n_stop; i++) {
    const char *s = f->p->stop[i];
    size_t n = strlen(s);
    for (size_t at = 0; at + n <= f->len && at < best; at++)
      if (!memcmp(f->buf + at, s, n)) {
        best = at;
        break;
      }
  }
  return best;
}

/* Bytes at the start of f->buf that cannot belong to a stop string however the text goes on. */
static size_t stop_safe(const stop_filter *f) {
  for (size_t at = 0; at < f->len; at++)
    for (int32_t i = 0; i < f->p->n_stop; i++) {
      const char *s = f->p->stop[i];
      size_t n = strlen(s), tail = f->len - at;
      if (tail < n && !memcmp(f->buf + at, s, tail)) return at;
    }
  return f->len;
}

/* Adds a decoded piece and streams what is safe. Returns non-zero when on_token asks to stop. */
static int stop_filter_push(stop_filter *f, nllm_token tok, const char *piece, int32_t n,
                            int final) {
  const nllm_generate_params *p = f->p;
  if (p->n_stop == 0) return p->on_token && p->on_token(tok, piece, n, p->user_data);
  memcpy(f->buf + f->len, piece, (size_t)n); /* cap: longest stop string + one piece */
  f->len += (size_t)n;
  size_t hit = stop_find(f);
  size_t out = hit < f->len ? hit : final ? f->len : stop_safe(f);
  if (hit < f->len) f->stopped = 1;
  int r = p->on_token && p->on_token(tok, f->buf, (int32_t)out, p->user_data);
  memmove(f->buf, f->buf + out, f->len - out);
  f->len -= out;
  return r;
}

nllm_status nllm_run_generate_tokens(nllm_context *ctx, nllm_sampler *s, const nllm_token *ids,
                                     int32_t n_prompt, const nllm_generate_params *p,
                                     int32_t *n_generated) {
  const nllm_model *m = ctx->model;
  nllm_status st = NLLM_OK;
  if (n_generated) *n_generated = 0;
  if (p->finish_reason) *p->finish_reason = NLLM_FINISH_NONE;
  if (p->max_tokens < 0)
    return nllm_err(NLLM_ERR_INVALID_ARG, "generate: max_tokens must be >= 0 (got %d)",
                    p->max_tokens);
  if (p->n_stop < 0 || (p->n_stop > 0 && !p->stop))
    return nllm_err(NLLM_ERR_INVALID_ARG, "generate: bad stop array (n_stop %d)", p->n_stop);
  size_t longest_stop = 0;
  for (int32_t i = 0; i < p->n_stop; i++) {
    if (!p->stop[i] || !p->stop[i][0])
      return nllm_err(NLLM_ERR_INVALID_ARG, "generate: stop string %d is %s", i,
                      p->stop[i] ? "empty" : "NULL");
    size_t n = strlen(p->stop[i]);
    if (n > longest_stop) longest_stop = n;
  }
  if (n_prompt == 0 && ctx->n_logits == 0)
    return ctx->pos == 0
               ? nllm_err(NLLM_ERR_INVALID_ARG, "generate: empty prompt and nothing decoded yet")
               : nllm_err(NLLM_ERR_INVALID_ARG,
                          "generate: empty prompt and no logits at position %d (a rewind drops "
                          "them): give a prompt, or decode the token at the new position",
                          ctx->pos);
  if ((int64_t)ctx->pos + n_prompt > ctx->n_ctx)
    return nllm_err(NLLM_ERR_CONTEXT_FULL,
                    "generate: the prompt of %d tokens does not fit in the context (%d of %d "
                    "positions free)",
                    n_prompt, ctx->n_ctx - ctx->pos, ctx->n_ctx);
  char piece[1024];
  stop_filter f = {.p = p, .cap = longest_stop + sizeof piece};
  /* Pieces reach the callback only as complete UTF-8 (see nllm_detokenizer). The first
   * generated piece follows the prompt, so it keeps its leading space. */
  nllm_detokenizer ds;
  nllm_detokenizer_init(&ds, 0);
  ds.n_pushed = 1;
  int32_t finish = NLLM_FINISH_NONE;
  if (p->n_stop && !(f.buf = malloc(f.cap)))
    return nllm_err(NLLM_ERR_NOMEM, "out of memory (stop strings)");
  for (int32_t i = 0; i < n_prompt; i++) nllm_smp_accept(s, ids[i]);
  if (n_prompt) {
    /* A one-token prompt (BOS alone) is still prompt time, not generation time. */
    nllm_timings before = ctx->tm;
    if ((st = nllm_ctx_decode(ctx, ids, n_prompt))) goto out;
    if (n_prompt == 1) {
      double dt = ctx->tm.gen_ms - before.gen_ms;
      ctx->tm.n_gen_tokens = before.n_gen_tokens, ctx->tm.gen_ms = before.gen_ms;
      ctx->tm.n_prompt_tokens += 1, ctx->tm.prompt_ms += dt;
    }
  }
  finish = NLLM_FINISH_LENGTH;
  for (int32_t i = 0; i < p->max_tokens; i++) {
    const float *logits = ctx->logits + (size_t)(ctx->n_logits - 1) * m->hp.n_vocab;
    nllm_token tok;
    if ((st = nllm_smp_sample(s, logits, m->hp.n_vocab, &tok))) goto out;
    nllm_smp_accept(s, tok);
    if (p->stop_at_eog && nllm_model_is_eog(m, tok)) {
      finish = NLLM_FINISH_EOG;
      break;
    }
    if (n_generated) (*n_generated)++;
    int32_t n_piece = 0;
    st = nllm_detokenizer_push(m->tok, &ds, tok, piece, (int32_t)sizeof piece, &n_piece);
    if (st == NLLM_ERR_BUFFER_TOO_SMALL) n_piece = 0, st = NLLM_OK; /* absurd piece: no text */
    if (st) goto out;
    int stop = stop_filter_push(&f, tok, piece, n_piece, 0);
    if (f.stopped)
      finish = NLLM_FINISH_STOP;
    else if (stop)
      finish = NLLM_FINISH_ABORTED;
    if ((st = nllm_ctx_decode(ctx, &tok, 1))) goto out;
    if (stop || f.stopped) break;
  }
out:
  /* A full context during generation keeps the reason (LENGTH, or what the last token gave). */
  if (st == NLLM_ERR_ABORTED)
    finish = NLLM_FINISH_ABORTED;
  else if (st && st != NLLM_ERR_CONTEXT_FULL)
    finish = NLLM_FINISH_NONE;
  /* An incomplete character left at the end can never complete: it becomes U+FFFD. Text held
   * back for a stop string that did not come goes out with it. */
  if (finish != NLLM_FINISH_NONE && !f.stopped) {
    int32_t n_tail = 0;
    if (nllm_detokenizer_flush(&ds, piece, (int32_t)sizeof piece, &n_tail) != NLLM_OK) n_tail = 0;
    if (n_tail || f.len) {
      stop_filter_push(&f, -1, piece, n_tail, 1);
      if (f.stopped) finish = NLLM_FINISH_STOP;
    }
  }
  if (p->finish_reason) *p->finish_reason = finish;
  free(f.buf);
  return st;
}
