/* Cost of grammar-constrained sampling per generated token on a large vocabulary.
 *
 * usage: bench_grammar [MODEL] [N_TOKENS]
 * MODEL defaults to ../shared/testdata/hf/tiny-qwen2 (the Qwen2 151,936-token vocabulary); only
 * its tokenizer matters, logits are made here. Logit sources:
 *  - "confident": a valid JSON document of the schema is tokenized and, at each step, its next
 *    token gets a margin of 10 over N(0,1) noise, as a model that writes JSON would; the sampler
 *    (default settings: temperature 0.8, top-k 40, min-p 0.05) then nearly always picks it;
 *  - "margin 4": the same with margin 4: the noise often wins, the output leaves the document,
 *    and from then on the boosted token is usually not allowed, so this is close to:
 *  - "worst case": pure noise, as a model that has no idea of the grammar (random weights).
 * Each step samples the same logits with and without the grammar; both times are reported
 * (the grammar's path skips the sort of the min-p survivors, so it can be the cheaper one). */
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

static void report(const char *what, double *g, double *p, int n, nllm_sampler *s) {
  nllm_sampler_grammar_stats st;
  nllm_sgrammar_stats(s->gr, &st);
  qsort(g, (size_t)n, sizeof *g, cmpd);
  qsort(p, (size_t)n, sizeof *p, cmpd);
  printf(
      "%-10s %4d tokens: sampling with grammar median %.3f ms, p90 %.3f, p99 %.3f, max %.3f "
      "(without: median %.3f ms, p99 %.3f); full masks %lld (%.1f%%), kept masks found %lld, "
      "%.1f tokens checked one by one per step\n",
      what, n, g[n / 2], g[n * 9 / 10], g[n * 99 / 100], g[n - 1], p[n / 2], p[n * 99 / 100],
      (long long)st.n_full_masks,
      100.0 * (double)st.n_full_masks / (double)(st.n_steps ? st.n_steps : 1),
      (long long)st.n_mask_hits, (double)st.n_checked / (double)(st.n_steps ? st.n_steps : 1));
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
  double t_first = now_ms() - t0;
  nllm_sampler *again = NULL;
  t0 = now_ms();
  nllm_sampler_create(m, &sp, &again);
  printf(
      "vocabulary %d tokens; sampler with grammar created in %.1f ms (the model's token trie "
      "+ grammar), the next one in %.1f ms\n",
      V, t_first, now_ms() - t0);
  nllm_sampler_free(again);
  nllm_token doc[1024];
  int32_t n_doc = 0;
  nllm_tokenize(m, DOC, -1, 0, 0, doc, 1024, &n_doc);
  float *l = malloc(sizeof(float) * (size_t)V);
  double *cost = malloc(sizeof(double) * (size_t)n_tokens);
  double *plain_ms = malloc(sizeof(double) * (size_t)n_tokens);
  double *walk_ms = malloc(sizeof(double) * (size_t)n_tokens);
  double *kept_ms = malloc(sizeof(double) * (size_t)n_tokens);
  static const float margin[] = {10.0f, 4.0f, 0.0f};
  static const char *names[] = {"confident", "margin 4", "worst case"};
  for (int mode = 0; mode < 3; mode++) {
    nllm_sampler_free(gs);
    nllm_sampler_create(m, &sp, &gs);
    int n = 0, pos = 0;
    uint64_t picks = 0;
    int n_walk = 0, n_kept = 0;
    nllm_sampler_grammar_stats seen = {0};
    for (int i = 0; i < n_tokens; i++) {
      for (int k = 0; k < V; k++) l[k] = (float)gauss();
      l[doc[pos % n_doc]] += margin[mode];
      nllm_token a, b;
      double t1 = now_ms();
      nllm_sampler_sample_logits(plain, l, V, &a);
      double t2 = now_ms();
      if (nllm_sampler_sample_logits(gs, l, V, &b)) {
        fprintf(stderr, "bench_grammar: %s\n", nllm_last_error());
        return 1;
      }
      double t3 = now_ms();
      nllm_sampler_grammar_stats after;
      nllm_sgrammar_stats(gs->gr, &after);
      if (after.n_mask_hits > seen.n_mask_hits)
        kept_ms[n_kept++] = t3 - t2;
      else if (after.n_full_masks > seen.n_full_masks)
        walk_ms[n_walk++] = t3 - t2;
      seen = after;
      plain_ms[n] = t2 - t1;
      cost[n++] = t3 - t2;
      nllm_sampler_accept(gs, b);
      picks = picks * 1000003u + (uint64_t)b;
      if (b == doc[pos % n_doc]) pos++;
      if (nllm_sampler_grammar_complete(gs) && (b == 151643 || pos >= n_doc)) {
        nllm_sampler_reset(gs, NLLM_SEED_DEFAULT); /* next document */
        pos = 0;
      }
    }
    report(names[mode], cost, plain_ms, n, gs);
    qsort(walk_ms, (size_t)n_walk, sizeof *walk_ms, cmpd);
    qsort(kept_ms, (size_t)n_kept, sizeof *kept_ms, cmpd);
    printf(
        "%-10s steps with a new full mask: %d, median %.3f ms; with a kept one: %d, median "
        "%.3f ms\n",
        names[mode], n_walk, n_walk ? walk_ms[n_walk / 2] : 0.0, n_kept,
        n_kept ? kept_ms[n_kept / 2] : 0.0);
    printf("%-10s picks checksum %016llx (equal across builds: same outputs)\n", names[mode],
           (unsigned long long)picks);
  }
  /* The full mask on its own, at the start of an object value (most tokens are rejected) and
   * inside a string (most are allowed): medians of 9 fresh samplers, the first mask of the state
   * (the trie walk) and the same state's mask again (kept from the walk). */
  for (int k = 0; k < 2; k++) {
    double first[9], again_ms[9];
    int allowed = 0;
    for (int rep = 0; rep < 9; rep++) {
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
      for (int twice = 0; twice < 2; twice++) {
        for (int q = 0; q < V; q++) l[q] = (float)gauss();
        double t1 = now_ms();
        int32_t nc;
        nllm_sgrammar_candidates(gs->gr, &gs->p, l, gs->cand, &nc);
        (twice ? again_ms : first)[rep] = now_ms() - t1;
      }
      allowed = 0;
      for (int q = 0; q < V; q++) allowed += isfinite(l[q]);
    }
    qsort(first, 9, sizeof *first, cmpd);
    qsort(again_ms, 9, sizeof *again_ms, cmpd);
    printf(
        "full mask %s: %.2f ms (median of 9), the same state again %.2f ms; %d tokens "
        "allowed\n",
        k ? "inside a string" : "at the document start", first[4], again_ms[4], allowed);
  }
  free(l);
  free(cost);
  free(plain_ms);
  free(walk_ms);
  free(kept_ms);
  nllm_sampler_free(gs);
  nllm_sampler_free(plain);
  nllm_model_free(m);
  return 0;
}
