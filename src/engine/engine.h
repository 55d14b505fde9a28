/* A context (the decoding state of its sequences) and the sampler. */
#ifndef NLLM_ENGINE_H
#define NLLM_ENGINE_H

#include <stdatomic.h>

#include "engine/kv_cells.h"
#include "model/forward.h"

struct nllm_context {
  const nllm_model *model;
  nllm_context_params p;
  nllm_forward_state fs;
  nllm_kv_cells cells; /* which sequence holds which cache cell */
  int32_t n_ctx, n_batch, n_threads, n_seq;
  int32_t pos;        /* sequence 0's last position + 1 (what the one-sequence calls see) */
  float *logits;      /* [logits_rows][n_vocab]: the kept rows of the last decode, in order */
  int64_t logits_cap; /* rows allocated */
  int32_t n_logits;   /* rows valid from the last decode */
  int32_t last_n;     /* rows in the last decode */
  int32_t *row_out;   /* [last_n] row i's logits row, or -1 */
  int32_t *seq_out;   /* [n_seq] the logits row of each sequence's last kept row, or -1 */
  /* per decode call, grown with the largest batch: rows' positions and cells */
  int32_t *row_pos, *row_cell, rows_cap;
  /* per forward chunk (n_batch rows): what each row attends to, rows with logits */
  const int32_t **vis_cell, **vis_pos;
  int32_t *n_vis, *out_rows;
  int32_t *seq_scratch; /* [n_seq] */
  nllm_timings tm;
  /* Set for the length of every API call that changes the context: a second concurrent call
   * gets NLLM_ERR_BUSY instead of interleaving writes into the cache and logits. */
  atomic_int busy;
};

nllm_status nllm_ctx_create(const nllm_model *m, const nllm_context_params *p, nllm_context **out);
void nllm_ctx_free(nllm_context *ctx);
nllm_status nllm_ctx_decode(nllm_context *ctx, const nllm_token *tokens, int32_t n);
nllm_status nllm_ctx_decode_batch(nllm_context *ctx, const nllm_batch *b);
/* Sequence operations (nativellm.h); arguments checked by the caller except where noted. */
nllm_status nllm_ctx_seq_remove(nllm_context *ctx, int32_t seq, int32_t p0, int32_t p1);
nllm_status nllm_ctx_seq_copy(nllm_context *ctx, int32_t src, int32_t dst, int32_t p0, int32_t p1);
nllm_status nllm_ctx_seq_keep(nllm_context *ctx, int32_t seq);
nllm_status nllm_ctx_seq_shift(nllm_context *ctx, int32_t seq, int32_t p0, int32_t p1,
                               int32_t delta);
void nllm_ctx_clear(nllm_context *ctx);

nllm_status nllm_ctx_create(const nllm_model *m, const nllm_context_params *p, nllm_context **out);
void nllm_ctx_free(nllm_context *ctx);
nllm_status nllm_ctx_decode(nllm_context *ctx, const nllm_token *tokens, int32_t n);

struct nllm_sampler {
  const nllm_model *model;
  nllm_sampler_params p;
  uint64_t rng;
  int32_t seeded; /* 0: seed NLLM_SEED_DEFAULT, taken from the first context used */
  int32_t n_vocab;
  /* Ids are sampled from [0, n_pick): embedding rows past the tokenizer's vocabulary (padding
   * in many models, or a hostile file's extra rows) have no text and are never chosen. */
  int32_t n_pick;
  float *logits; /* working copy */
  int32_t *cand; /* candidate ids */
  float *prob;
  nllm_token *recent; /* ring of the last repeat_last_n accepted tokens */
  int32_t n_recent, recent_head;
  struct nllm_sgrammar *gr;                        /* NULL without a grammar */
  char *grammar_text, *grammar_root, *json_schema; /* owned copies of the params' strings */
};

/* Grammar-constrained sampling (sampler_grammar.c). */
typedef struct nllm_sampler_grammar_stats {
  int64_t n_steps;      /* picks under the grammar */
  int64_t n_full_masks; /* picks that needed the whole vocabulary checked */
  int64_t n_checked;    /* tokens checked one by one */
  int64_t n_mask_hits;  /* picks that found the full mask of their state kept from before */
} nllm_sampler_grammar_stats;
struct nllm_sgrammar;
nllm_status nllm_sgrammar_new(const nllm_model *m, const nllm_sampler_params *p,
                              struct nllm_sgrammar **out);
void nllm_sgrammar_free(struct nllm_sgrammar *sg);
void nllm_sgrammar_restart(struct nllm_sgrammar *sg);
/* Settles the candidates: *n_cand >= 0 means cand[0..n) (sorted by descending logit) are the
 * allowed tokens greedy / top-k / min-p keep; *n_cand = -1 means disallowed tokens of l were set
 * to -inf and the usual pipeline should run. */
nllm_status nllm_sgrammar_candidates(struct nllm_sgrammar *sg, const nllm_sampler_params *p,
                                     float *l, int32_t *cand, int32_t *n_cand);
void nllm_sgrammar_picked(struct nllm_sgrammar *sg, nllm_token t);
/* Advances the grammar when t is the token last picked (prompt tokens are never picked). */
void nllm_sgrammar_accepted(struct nllm_sgrammar *sg, nllm_token t);
int nllm_sgrammar_complete(const struct nllm_sgrammar *sg);
void nllm_sgrammar_stats(const struct nllm_sgrammar *sg, nllm_sampler_grammar_stats *out);

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
