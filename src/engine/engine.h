/* One sequence's decoding state (context) and the sampler. */
#ifndef NLLM_ENGINE_H
#define NLLM_ENGINE_H

#include "model/forward.h"

struct nllm_context {
  const nllm_model *model;
  nllm_context_params p;
  nllm_forward_state fs;
  int32_t n_ctx, n_batch, n_threads, pos;
  float *logits;      /* [logits_rows][n_vocab] */
  int64_t logits_cap; /* rows allocated */
  int32_t n_logits;   /* rows valid from the last decode (1, or n_tokens with all_logits) */
  int32_t last_n;     /* tokens in the last decode */
  nllm_timings tm;
};

nllm_status nllm_ctx_create(const nllm_model *m, const nllm_context_params *p, nllm_context **out);
void nllm_ctx_free(nllm_context *ctx);
nllm_status nllm_ctx_decode(nllm_context *ctx, const nllm_token *tokens, int32_t n);

struct nllm_sampler {
  const nllm_model *model;
  nllm_sampler_params p;
  uint64_t rng;
  int32_t seeded; /* 0: seed NLLM_SEED_DEFAULT, taken from the first context used */
  int32_t n_vocab;
  float *logits; /* working copy */
  int32_t *cand; /* candidate ids */
  float *prob;
  nllm_token *recent; /* ring of the last repeat_last_n accepted tokens */
  int32_t n_recent, recent_head;
};

nllm_status nllm_smp_create(const nllm_model *m, const nllm_sampler_params *p, nllm_sampler **out);
/* Gives a sampler created with NLLM_SEED_DEFAULT the context's seed (once). */
void nllm_smp_bind_seed(nllm_sampler *s, const nllm_context *ctx);
uint64_t nllm_random_seed(void);
nllm_status nllm_smp_sample(nllm_sampler *s, const float *logits, int32_t n_vocab, nllm_token *out);
void nllm_smp_accept(nllm_sampler *s, nllm_token t);
void nllm_smp_reset(nllm_sampler *s, uint64_t seed);
void nllm_smp_free(nllm_sampler *s);

nllm_status nllm_run_generate(nllm_context *ctx, nllm_sampler *s, const char *prompt, size_t len,
                              const nllm_generate_params *p, int32_t *n_generated);
nllm_status nllm_run_generate_tokens(nllm_context *ctx, nllm_sampler *s, const nllm_token *ids,
                                     int32_t n_prompt, const nllm_generate_params *p,
                                     int32_t *n_generated);

#endif
