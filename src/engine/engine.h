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
  /* embeddings (p.embeddings != 0): the resolved pooling and normalization, every row's
   * final hidden state of the last decode call, and each sequence's pooled vector */
  int32_t pooling, normalize;
  float *embd;         /* [embd_cap][n_embd] */
  int32_t embd_cap;    /* rows allocated */
  int32_t n_embd_rows; /* rows valid from the last decode */
  float *embd_seq;     /* [n_seq][n_embd] */
  uint8_t *seq_has_embd;
  int32_t *seq_rows; /* [n_seq] rows of each sequence in the current call (pooling) */
  nllm_timings tm;
  /* LoRA adapters (context_lora.c), each entry holding a reference to its adapter: the
   * context's set, each sequence's own (n < 0: none, it uses the context's; NULL until a
   * sequence gets one), and per forward chunk the set of each row */
  nllm_lora_set lora;
  nllm_lora_set *seq_lora;
  const nllm_lora_set **row_lora;
  /* Set for the length of every API call that changes the context, to a tag of the calling
   * thread (0: idle): a second concurrent call gets NLLM_ERR_BUSY instead of interleaving writes
   * into the cache and logits, and getters tell their own call's callbacks (same thread,
   * allowed) from another thread (src/api.c). */
  _Atomic uintptr_t busy;
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
/* Replaces the adapters of the context (seq < 0) or of one sequence (n < 0: it goes back to the
 * context's); arguments checked here. */
nllm_status nllm_ctx_set_lora(nllm_context *ctx, int32_t seq, nllm_lora_adapter *const *adapters,
                              const float *scales, int32_t n);
/* The adapters of each of the nb rows of a forward chunk (seq_ids NULL: all sequence 0), or
 * NULL when no row has any. */
const nllm_lora_set *const *nllm_ctx_lora_rows(nllm_context *ctx, const int32_t *seq_ids,
                                               int32_t nb);
void nllm_ctx_lora_free(nllm_context *ctx);
/* Sequence 0's position (ctx->pos) after its cells changed. */
void nllm_ctx_sync_pos(nllm_context *ctx);
/* Room for a decode of `rows` rows keeping `logit_rows` rows of logits (may drop the logits). */
nllm_status nllm_ctx_reserve_out(nllm_context *ctx, int32_t rows, int64_t logit_rows);

/* Saved states (state.c; seq = NLLM_SEQ_ALL for the whole context, arguments checked). */
nllm_status nllm_ctx_state_size(nllm_context *ctx, int32_t seq, uint64_t *size);
nllm_status nllm_ctx_state_save(nllm_context *ctx, int32_t seq, void *buf, uint64_t cap,
                                uint64_t *n_written);
nllm_status nllm_ctx_state_save_file(nllm_context *ctx, int32_t seq, const char *path);
nllm_status nllm_ctx_state_load(nllm_context *ctx, int32_t seq, const void *buf, uint64_t size);
nllm_status nllm_ctx_state_load_file(nllm_context *ctx, int32_t seq, const char *path);
/* The checksum a state of size bytes (>= its 72-byte header) carries at byte 64: for tests
 * that forge states whose damage only the structural checks can find. */
uint64_t nllm_state_checksum(const uint8_t *state, uint64_t size);

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
