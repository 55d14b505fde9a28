/* Model-level test helpers: replaying a golden logits file through a model (teacher forcing),
 * shared by the tests of real models (test_models.c) and of each architecture (test_archs.c),
 * and the model and many-sequence context setup of test_batch.c and test_state.c. */
#ifndef NLLM_MODELUTIL_H
#define NLLM_MODELUTIL_H

#include "nativellm.h"
#include "testutil.h"

typedef struct cmp_result {
  double max_rel; /* worst rel RMS over all rows */
  int n_rows;
  int argmax_agree; /* leading generated tokens whose argmax equals the golden ids */
  double mean_rel;  /* mean rel RMS over the rows */
} cmp_result;

static inline int argmax(const float *x, int n) {
  int b = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[b]) b = i;
  return b;
}

/* Evaluates golden prompt + gen ids on ctx (a fresh or reset context with all_logits and room
 * for every id), comparing the golden's rows; resets ctx on the way. */
static inline void compare_golden_ctx(nllm_context *ctx, const golden_logits *g, cmp_result *r) {
  int n_all = g->n_prompt + g->n_gen, first = n_all - g->n_pos;
  int *ids = malloc(sizeof(int) * (size_t)n_all);
  memcpy(ids, g->prompt_ids, sizeof(int) * (size_t)g->n_prompt);
  memcpy(ids + g->n_prompt, g->gen_ids, sizeof(int) * (size_t)g->n_gen);
  memset(r, 0, sizeof *r);
  int agreeing = 1;
  ck_assert_int_eq(nllm_decode(ctx, ids, g->n_prompt), NLLM_OK);
  for (int pos = g->n_prompt - 1; pos < n_all; pos++) {
    if (pos >= g->n_prompt) ck_assert_int_eq(nllm_decode(ctx, &ids[pos], 1), NLLM_OK);
    const float *row = pos < g->n_prompt ? nllm_get_logits_ith(ctx, pos) : nllm_get_logits(ctx);
    ck_assert_ptr_nonnull(row);
    int j = pos - (g->n_prompt - 1); /* this row chose gen_ids[j] */
    if (j < g->n_gen && agreeing) {
      if (argmax(row, g->n_vocab) == g->gen_ids[j])
        r->argmax_agree++;
      else
        agreeing = 0;
    }
    if (pos >= first) {
      double e = rel_rms(row, g->rows + (size_t)(pos - first) * g->n_vocab, g->n_vocab);
      if (e > r->max_rel) r->max_rel = e;
      r->mean_rel += e;
      r->n_rows++;
    }
  }
  /* prompt rows before n_prompt - 1: check them too, from a fresh batch */
  nllm_context_reset(ctx);
  ck_assert_int_eq(nllm_decode(ctx, ids, g->n_prompt), NLLM_OK);
  for (int pos = first; pos < g->n_prompt - 1; pos++) {
    double e = rel_rms(nllm_get_logits_ith(ctx, pos), g->rows + (size_t)(pos - first) * g->n_vocab,
                       g->n_vocab);
    if (e > r->max_rel) r->max_rel = e;
    r->mean_rel += e;
    r->n_rows++;
  }
  if (r->n_rows) r->mean_rel /= r->n_rows;
  free(ids);
}

/* A context for replaying golden g (all logits, room for every id), BF16 weights' activations
 * as bf16_act says (NLLM_BF16_ACT_*). */
static inline nllm_context *golden_context_mode(nllm_model *m, const golden_logits *g,
                                                int32_t kv_type, int32_t bf16_act) {
  ck_assert_int_eq(nllm_model_n_vocab(m), g->n_vocab);
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.bf16_activations = bf16_act;
  cp.all_logits = 1;
  cp.kv_type = kv_type;
  cp.n_ctx = g->n_prompt + g->n_gen + 1;
  nllm_context *ctx = NULL;
  nllm_status st = nllm_context_create(m, &cp, &ctx);
  ck_assert_msg(st == NLLM_OK, "context: %s", nllm_last_error());
  return ctx;
}

/* ... with the default params' BF16 activations (NLLM_BF16_ACT_AUTO) */
static inline nllm_context *golden_context(nllm_model *m, const golden_logits *g, int32_t kv_type) {
  return golden_context_mode(m, g, kv_type, NLLM_BF16_ACT_AUTO);
}

/* Evaluates golden prompt + gen ids with the model (BF16 activations as bf16_act says),
 * compares the golden's rows. */
static inline int compare_golden_mode(const char *model_path, const char *golden_path,
                                      int32_t kv_type, int32_t bf16_act, cmp_result *r) {
  golden_logits *g = golden_logits_load(golden_path);
  ck_assert_msg(g && g->n_prompt > 0, "cannot parse %s", golden_path);
  nllm_model *m = NULL;
  nllm_status st = nllm_model_load(model_path, NULL, &m);
  ck_assert_msg(st == NLLM_OK, "load %s: %s", model_path, nllm_last_error());
  nllm_context *ctx = golden_context_mode(m, g, kv_type, bf16_act);
  compare_golden_ctx(ctx, g, r);
  nllm_context_free(ctx);
  nllm_model_free(m);
  golden_logits_free(g);
  return 1;
}

static inline int compare_golden(const char *model_path, const char *golden_path, int32_t kv_type,
                                 cmp_result *r) {
  return compare_golden_mode(model_path, golden_path, kv_type, NLLM_BF16_ACT_AUTO, r);
}

/* A model from the project root (local) or under the shared test data; NULL, with a SKIP line,
 * when the test data lacks it. */
static inline nllm_model *load_test_model(const char *rel, int local) {
  char path[1024];
  if (local)
    snprintf(path, sizeof path, "%s", rel);
  else if (!testdata_path(path, sizeof path, rel))
    return NULL;
  nllm_model *m = NULL;
  ck_assert_msg(nllm_model_load(path, NULL, &m) == NLLM_OK, "%s: %s", path, nllm_last_error());
  return m;
}

/* A context for n_seq sequences on 2 threads; kv_v NLLM_TYPE_NONE: the V cache has kv_k's type. */
static inline nllm_context *seq_context(nllm_model *m, int n_seq, int n_ctx, int n_batch,
                                        int32_t kv_k, int32_t kv_v) {
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_seq_max = n_seq;
  cp.n_ctx = n_ctx;
  cp.n_batch = n_batch;
  cp.kv_type = kv_k;
  cp.kv_type_v = kv_v;
  cp.n_threads = 2;
  nllm_context *c = NULL;
  ck_assert_msg(nllm_context_create(m, &cp, &c) == NLLM_OK, "%s", nllm_last_error());
  return c;
}

#endif
