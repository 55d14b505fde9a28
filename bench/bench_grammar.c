/* Cost of grammar-constrained sampling per generated token on a large vocabulary.
 *
 * usage: bench_grammar [MODEL] [N_TOKENS]
 * MODEL defaults to ../shared/testdata/hf/tiny-qwen2 (the Qwen2 151,936-token vocabulary); only
 * its tokenizer matters, logits are made here. Two logit sources:
 *  - "model-like": a valid JSON document of the schema is tokenized and, at each step, its next
 *    token gets a margin over N(0,1) noise, as a model that writes JSON would; the sampled token
 *    is whatever the sampler picks, so the document drifts like real generation;
 *  - "worst case": pure noise, so most top candidates break the grammar and the full mask runs.
 * For each step the same logits are sampled with and without the grammar; the difference is the
 * grammar's cost. Prints the distribution (median, p90, p99, max) and the full-mask count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"

static const char *SCHEMA =
    "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", \"maxLength\": 40}, "
    "\"age\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 150}, \"email\": {\"type\": "
    "\"string\", \"format\": \"email\"}, \"tags\": {\"type\": \"array\", \"items\": {\"type\": "
    "\"string\"}, \"maxItems\": 8}, \"address\": {\"type\": \"object\", \"properties\": "
    "{\"street\": {\"type\": \"string\"}, \"city\": {\"type\": \"string\"}}, \"required\": "
    "[\"city\"]}, \"score\": {\"type\": \"number\"}}, \"required\": [\"name\", \"age\"]}";
static const char *DOC =
    "{\"name\": \"Ada Lovelace\", \"age\": 36, \"email\": \"ada@example.org\", \"tags\": "
    "[\"math\", \"poetry\", \"engines\"], \"address\": {\"street\": \"12 St James's Square\", "
    "\"city\": \"London\"}, \"score\": 98.5}";

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t rng = 88172645463325252ull;
static double gauss(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  double u1 = ((rng >> 11) + 1) * 0x1.0p-53;
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  double u2 = (rng >> 11) * 0x1.0p-53;
  return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *what, double *c, int n, nllm_sampler *s) {
  qsort(c, (size_t)n, sizeof *c, cmpd);
  nllm_sampler_grammar_stats st;
  nllm_sgrammar_stats(s->gr, &st);
  printf(
      "%-11s %5d tokens: grammar cost per token median %.3f ms, p90 %.3f, p99 %.3f, max %.3f; "
      "full masks %lld (%.1f%%), tokens checked one by one %.1f per step\n",
      what, n, c[n / 2], c[n * 9 / 10], c[n * 99 / 100], c[n - 1], (long long)st.n_full_masks,
      100.0 * (double)st.n_full_masks / (double)(st.n_steps ? st.n_steps : 1),
      (double)st.n_checked / (double)(st.n_steps ? st.n_steps : 1));
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "../shared/testdata/hf/tiny-qwen2";
  int n_tokens = argc > 2 ? atoi(argv[2]) : 300;
  nllm_model *m = NULL;
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.vocab_only = 1;
  if (nllm_model_load(path, &mp, &m)) {
    fprintf(stderr, "bench_grammar: cannot load %s: %s\n", path, nllm_last_error());
    return 1;
  }
  const int V = nllm_model_n_vocab(m);
  nllm_sampler_params sp;
  nllm_sampler_params_init(&sp);
  sp.seed = 1;
  nllm_sampler *plain = NULL, *gs = NULL;
  nllm_sampler_create(m, &sp, &plain);
  sp.json_schema = SCHEMA;
  double t0 = now_ms();
  if (nllm_sampler_create(m, &sp, &gs)) {
    fprintf(stderr, "bench_grammar: %s\n", nllm_last_error());
    return 1;
  }
  printf("vocabulary %d tokens; sampler with grammar created in %.1f ms (token trie + grammar)\n",
         V, now_ms() - t0);
  nllm_token doc[1024];
  int32_t n_doc = 0;
  nllm_tokenize(m, DOC, -1, 0, 0, doc, 1024, &n_doc);
  float *l = malloc(sizeof(float) * (size_t)V);
  double *cost = malloc(sizeof(double) * (size_t)n_tokens);
  for (int mode = 0; mode < 2; mode++) {
    nllm_sampler_free(gs);
    nllm_sampler_create(m, &sp, &gs);
    int n = 0, pos = 0;
    for (int i = 0; i < n_tokens; i++) {
      for (int k = 0; k < V; k++) l[k] = (float)gauss();
      if (mode == 0) l[doc[pos % n_doc]] += 6.0f;
      nllm_token a, b;
      double t1 = now_ms();
      nllm_sampler_sample_logits(plain, l, V, &a);
      double t2 = now_ms();
      if (nllm_sampler_sample_logits(gs, l, V, &b)) {
        fprintf(stderr, "bench_grammar: %s\n", nllm_last_error());
        return 1;
      }
      double t3 = now_ms();
      cost[n++] = (t3 - t2) - (t2 - t1);
      nllm_sampler_accept(gs, b);
      if (b == doc[pos % n_doc]) pos++;
      if (nllm_sampler_grammar_complete(gs) && (b == 151643 || pos >= n_doc)) {
        nllm_sampler_reset(gs, NLLM_SEED_DEFAULT); /* next document */
        pos = 0;
      }
    }
    report(mode == 0 ? "model-like" : "worst case", cost, n, gs);
  }
  /* One full mask on its own, from the start of an object value (most tokens are rejected) and
   * inside a string (most are allowed). */
  for (int k = 0; k < 2; k++) {
    nllm_sampler_free(gs);
    nllm_sampler_create(m, &sp, &gs);
    if (k) {
      nllm_token pre[16];
      int32_t np = 0;
      nllm_tokenize(m, "{\"name\": \"A", -1, 0, 0, pre, 16, &np);
      for (int i = 0; i < np; i++) {
        for (int q = 0; q < V; q++) l[q] = q == pre[i] ? 100.0f : 0.0f;
        nllm_token t;
        nllm_sampler_sample_logits(gs, l, V, &t);
        nllm_sampler_accept(gs, t);
      }
    }
    gs->p.top_k = 0, gs->p.min_p = 0; /* force the full mask */
    for (int q = 0; q < V; q++) l[q] = (float)gauss();
    double t1 = now_ms();
    int32_t nc;
    nllm_sgrammar_candidates(gs->gr, &gs->p, l, gs->cand, &nc);
    int allowed = 0;
    for (int q = 0; q < V; q++) allowed += isfinite(l[q]);
    printf("full mask %s: %.2f ms, %d tokens allowed\n",
           k ? "inside a string" : "at the document start", now_ms() - t1, allowed);
  }
  free(l);
  free(cost);
  nllm_sampler_free(gs);
  nllm_sampler_free(plain);
  nllm_model_free(m);
  return 0;
}
