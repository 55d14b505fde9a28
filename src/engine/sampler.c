/* Token sampling. Order: repetition penalty -> greedy shortcut -> temperature -> min-p (a linear
 * pass that prunes most of the vocabulary cheaply) -> top-k (a selection) -> sort survivors ->
 * top-p -> draw.
 * top-k and min-p both keep "the largest", so their order does not matter; top-p is computed on
 * the tempered distribution after them. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "engine/engine.h"

static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s) {
  return (double)(splitmix64(s) >> 11) * 0x1.0p-53;
}

uint64_t nllm_random_seed(void) {
  static _Atomic uint64_t counter;
  uint64_t s = (uint64_t)(nllm_time_ms() * 1e3) ^ (counter++ * 0x9E3779B97F4A7C15ull);
  return splitmix64(&s);
}

void nllm_smp_bind_seed(nllm_sampler *s, const nllm_context *ctx) {
  if (s->seeded) return;
  s->seeded = 1;
  if (ctx->p.seed != NLLM_SEED_DEFAULT) s->rng = s->p.seed = ctx->p.seed;
}

nllm_status nllm_smp_create(const nllm_model *m, const nllm_sampler_params *p, nllm_sampler **out) {
  *out = NULL;
  if (!(p->temperature >= 0) || !isfinite(p->temperature))
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "sampler: temperature must be a finite value >= 0 (got %g)",
                    (double)p->temperature);
  if (p->top_k < 0)
    return nllm_err(NLLM_ERR_INVALID_ARG, "sampler: top_k must be >= 0 (got %d)", p->top_k);
  if (!(p->top_p > 0 && p->top_p <= 1))
    return nllm_err(NLLM_ERR_INVALID_ARG, "sampler: top_p must be in (0, 1] (got %g)",
                    (double)p->top_p);
  if (!(p->min_p >= 0 && p->min_p <= 1))
    return nllm_err(NLLM_ERR_INVALID_ARG, "sampler: min_p must be in [0, 1] (got %g)",
                    (double)p->min_p);
  if (!(p->repeat_penalty > 0) || !isfinite(p->repeat_penalty))
    return nllm_err(NLLM_ERR_INVALID_ARG, "sampler: repeat_penalty must be > 0 (got %g)",
                    (double)p->repeat_penalty);
  if (p->repeat_last_n < 0 || p->repeat_last_n > (1 << 20))
    return nllm_err(NLLM_ERR_INVALID_ARG, "sampler: repeat_last_n must be in [0, 2^20] (got %d)",
                    p->repeat_last_n);
  nllm_sampler *s = nllm_calloc(1, sizeof *s);
  if (!s) return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  s->model = m;
  s->p = *p;
  s->n_vocab = m->hp.n_vocab;
  int32_t n_tok = nllm_tokenizer_n_vocab(m->tok);
  s->n_pick = n_tok > 0 && n_tok < s->n_vocab ? n_tok : s->n_vocab;
  s->logits = nllm_malloc((size_t)s->n_vocab * sizeof(float));
  s->cand = nllm_malloc((size_t)s->n_vocab * sizeof(int32_t));
  s->prob = nllm_malloc((size_t)s->n_vocab * sizeof(float));
  s->recent = nllm_malloc((size_t)(p->repeat_last_n ? p->repeat_last_n : 1) * sizeof(nllm_token));
  if (!s->logits || !s->cand || !s->prob || !s->recent) {
    nllm_smp_free(s);
    return nllm_err(NLLM_ERR_NOMEM, "out of memory (sampler)");
  }
  s->seeded = p->seed != NLLM_SEED_DEFAULT;
  s->rng = s->p.seed = s->seeded ? p->seed : nllm_random_seed();
  if (p->grammar || p->json_schema) {
    /* The params keep pointing at the sampler's own copies, never at the caller's strings. */
    s->grammar_text = p->grammar ? nllm_strdup(p->grammar) : NULL;
    s->grammar_root = p->grammar_root ? nllm_strdup(p->grammar_root) : NULL;
    s->json_schema = p->json_schema ? nllm_strdup(p->json_schema) : NULL;
    s->p.grammar = s->grammar_text;
    s->p.grammar_root = s->grammar_root;
    s->p.json_schema = s->json_schema;
    nllm_status st = NLLM_ERR_NOMEM;
    if ((!p->grammar || s->grammar_text) && (!p->grammar_root || s->grammar_root) &&
        (!p->json_schema || s->json_schema))
      st = nllm_sgrammar_new(m, &s->p, &s->gr);
    else
      nllm_err(st, "out of memory (sampler)");
    if (st) {
      nllm_smp_free(s);
      return st;
    }
  }
  *out = s;
  return NLLM_OK;
}

void nllm_smp_free(nllm_sampler *s) {
  if (!s) return;
  free(s->logits);
  free(s->cand);
  free(s->prob);
  free(s->recent);
  nllm_sgrammar_free(s->gr);
  free(s->grammar_text);
  free(s->grammar_root);
  free(s->json_schema);
  free(s);
}

void nllm_smp_reset(nllm_sampler *s, uint64_t seed) {
  if (seed != NLLM_SEED_DEFAULT) s->p.seed = seed, s->seeded = 1;
  s->rng = s->p.seed;
  s->n_recent = s->recent_head = 0;
  if (s->gr) nllm_sgrammar_restart(s->gr);
}

void nllm_smp_accept(nllm_sampler *s, nllm_token t) {
  if (s->gr) nllm_sgrammar_accepted(s->gr, t);
  if (!s->p.repeat_last_n) return;
  s->recent[s->recent_head] = t;
  s->recent_head = (s->recent_head + 1) % s->p.repeat_last_n;
  if (s->n_recent < s->p.repeat_last_n) s->n_recent++;
}

/* Probabilities of the n sorted candidates, top-p, then the draw. */
static nllm_token draw(nllm_sampler *s, const float *l, int32_t n, float lmax) {
  const float inv_t = 1.0f / s->p.temperature;
  double sum = 0;
  for (int32_t i = 0; i < n; i++) {
    s->prob[i] = expf((l[s->cand[i]] - lmax) * inv_t);
    sum += s->prob[i];
  }
  if (s->p.top_p < 1.0f) {
    double acc = 0;
    int32_t keep = n;
    for (int32_t i = 0; i < n; i++) {
      acc += s->prob[i] / sum;
      if (acc >= s->p.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
    sum = 0;
    for (int32_t i = 0; i < n; i++) sum += s->prob[i];
  }
  double r = rng_uniform(&s->rng) * sum, acc = 0;
  for (int32_t i = 0; i < n; i++) {
    acc += s->prob[i];
    if (r < acc) {
      return s->cand[i];
    }
  }
  return s->cand[n - 1];
}

/* Sort candidate ids by descending logit, ties by ascending id (deterministic). */
static _Thread_local const float *tl_keys;
static int cmp_desc(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  float lx = tl_keys[x], ly = tl_keys[y];
  if (lx != ly) return lx > ly ? -1 : 1;
  return x < y ? -1 : x > y;
}

/* cmp_desc's order: a before b */
static inline int ranks_before(const float *l, int32_t a, int32_t b) {
  return l[a] > l[b] || (l[a] == l[b] && a < b);
}

/* Restores the heap below position p of cand[0..k): a parent ranks after its children. */
static void sift_down(const float *l, int32_t *cand, int32_t k, int32_t p) {
  for (;;) {
    int32_t c = 2 * p + 1;
    if (c >= k) return;
    if (c + 1 < k && ranks_before(l, cand[c], cand[c + 1])) c++;
    if (!ranks_before(l, cand[p], cand[c])) return;
    int32_t t = cand[p];
    cand[p] = cand[c], cand[c] = t, p = c;
  }
}

/* The ids of the k finite logits of l[0..n) that cmp_desc ranks first, into cand in no
 * particular order; returns their count (fewer than k when fewer are finite), and in
 * *first_inf the first +inf (-1: none). A heap of the k best so far with the worst at the root:
 * after the first few hundred, almost every logit fails the one comparison with the root, and
 * a block of 16 that holds none better is passed over with vector compares. Sorting all
 * survivors of min-p instead cost a server 60% of its time on a flat distribution (32000
 * candidates per token). */
static int32_t top_k_finite(const float *l, int32_t n, int32_t k, int32_t *cand,
                            int32_t *first_inf) {
  int32_t m = 0, i = 0;
  *first_inf = -1;
  for (; i < n && m < k; i++) {
    if (isfinite(l[i]))
      cand[m++] = i;
    else if (l[i] == INFINITY && *first_inf < 0)
      *first_inf = i;
  }
  if (m < k) return m;
  for (int32_t p = k / 2 - 1; p >= 0; p--) sift_down(l, cand, k, p);
  float worst = l[cand[0]];
  for (;;) {
    enum { B = 16 };
    while (i + B <= n) { /* ids only grow: a tie never ranks before the root */
      int over = 0;
      for (int j = 0; j < B; j++) over += l[i + j] > worst;
      if (over) break;
      i += B;
    }
    const int32_t end = i + B <= n ? i + B : n;
    if (i >= end) return k;
    for (; i < end; i++) {
      if (!(l[i] > worst)) continue;
      if (l[i] == INFINITY) {
        if (*first_inf < 0) *first_inf = i;
        continue;
      }
      cand[0] = i;
      sift_down(l, cand, k, 0);
      worst = l[cand[0]];
    }
  }
}

/* Index of the largest of l[0..n), the lowest on ties (NaN never wins; 0 if nothing beats
 * -inf). The maximum first, as eight running maxima over interleaved elements (no chain of
 * dependent compares across the vocabulary, and the compiler makes them vector max
 * instructions), then its first place: this is a good part of a server's per-token time
 * beside a small model. */
static int32_t argmax_first(const float *l, int32_t n) {
  enum { W = 8 };
  float m[W];
  for (int k = 0; k < W; k++) m[k] = -INFINITY;
  int32_t i = 0;
  for (; i + W <= n; i += W)
    for (int k = 0; k < W; k++) m[k] = l[i + k] > m[k] ? l[i + k] : m[k];
  float mx = -INFINITY;
  for (; i < n; i++) mx = l[i] > mx ? l[i] : mx;
  for (int k = 0; k < W; k++) mx = m[k] > mx ? m[k] : mx;
  for (i = 0; i < n; i++)
    if (l[i] == mx) return i;
  return 0;
}

static nllm_status pick_grammar(nllm_sampler *s, float *l, nllm_token *out);
static nllm_status pick_plain(nllm_sampler *s, const float *l, nllm_token *out);

nllm_status nllm_smp_sample(nllm_sampler *s, const float *in, int32_t n_vocab, nllm_token *out) {
  if (n_vocab != s->n_vocab)
    return nllm_err(NLLM_ERR_INVALID_ARG, "sampler: n_vocab %d does not match the model's %d",
                    n_vocab, s->n_vocab);
  /* only the penalty and a grammar change the logits: otherwise they are read in place */
  if (s->p.repeat_penalty == 1.0f && !s->gr) return pick_plain(s, in, out);
  float *l = s->logits;
  memcpy(l, in, (size_t)n_vocab * sizeof(float));
  if (s->p.repeat_penalty != 1.0f) {
    /* Each distinct recent token is penalized once, however often it occurred; prob[] serves
     * as the "already done" mark so this stays linear in repeat_last_n. */
    for (int32_t i = 0; i < s->n_recent; i++)
      if (s->recent[i] >= 0 && s->recent[i] < n_vocab) s->prob[s->recent[i]] = 0;
    for (int32_t i = 0; i < s->n_recent; i++) {
      nllm_token t = s->recent[i];
      if (t < 0 || t >= n_vocab || s->prob[t] != 0) continue;
      s->prob[t] = 1;
      l[t] = l[t] > 0 ? l[t] / s->p.repeat_penalty : l[t] * s->p.repeat_penalty;
    }
  }
  if (s->gr) {
    nllm_status st = pick_grammar(s, l, out);
    if (st == NLLM_OK) nllm_sgrammar_picked(s->gr, *out);
    return st;
  }
  return pick_plain(s, l, out);
}

/* Candidates restricted by the grammar: either settled from the best few, or the full mask
 * applied to l (disallowed = -inf) and the usual pipeline run. */
static nllm_status pick_grammar(nllm_sampler *s, float *l, nllm_token *out) {
  int32_t n = 0;
  nllm_status st = nllm_sgrammar_candidates(s->gr, &s->p, l, s->cand, &n);
  if (st) return st;
  if (n < 0) return pick_plain(s, l, out);
  if (n == 1 || s->p.temperature == 0.0f || s->p.top_k == 1) {
    *out = s->cand[0];
    return NLLM_OK;
  }
  *out = draw(s, l, n, l[s->cand[0]]);
  return NLLM_OK;
}

/* Greedy, or min-p, top-k, then top-p and the draw over the sorted candidates. */
static nllm_status pick_plain(nllm_sampler *s, const float *l, nllm_token *out) {
  const int32_t n_pick = s->n_pick, k = s->p.top_k;
  int32_t *cand = s->cand, n = 0;
  if (s->p.temperature == 0.0f || k == 1) {
    *out = argmax_first(l, n_pick);
    return NLLM_OK;
  }
  /* min-p keeps p_i >= min_p * p_max, i.e. (l_i - l_max)/T >= log(min_p) */
  const float log_min_p = s->p.min_p > 0 ? s->p.temperature * logf(s->p.min_p) : -INFINITY;
  if (k > 0) {
    /* top-k first, then min-p over those k: a min-p survivor outside the k best ranks below
     * all of them, so top-k would drop it anyway, and the k best hold every one it keeps.
     * One pass over the vocabulary instead of a max, a filter and a selection. */
    int32_t inf_at;
    n = top_k_finite(l, n_pick, k, cand, &inf_at);
    if (inf_at >= 0) { /* an infinite logit takes all the probability */
      *out = inf_at;
      return NLLM_OK;
    }
    tl_keys = l;
    qsort(cand, (size_t)n, sizeof *cand, cmp_desc);
    while (n > 1 && l[cand[n - 1]] < l[cand[0]] + log_min_p) n--;
  } else {
    const int32_t best = argmax_first(l, n_pick);
    const float cut = l[best] + log_min_p;
    /* without a branch: on a flat distribution whether a token survives is a coin toss */
    for (int32_t i = 0; i < n_pick; i++) {
      cand[n] = i;
      n += (l[i] >= cut) & (fabsf(l[i]) <= FLT_MAX);
    }
    if (n == 0) cand[n++] = best;
    tl_keys = l;
    qsort(cand, (size_t)n, sizeof *cand, cmp_desc);
  }
  if (n == 0) cand[n++] = argmax_first(l, n_pick); /* nothing finite */
  *out = draw(s, l, n, l[cand[0]]);
  return NLLM_OK;
}
