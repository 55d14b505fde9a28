/* Grammar-constrained sampling: which tokens keep the output inside the grammar.
 *
 * The vocabulary's pieces are a byte trie shared by every sampler of the model
 * (engine/token_trie.c), so the full mask is one depth-first walk that derives each node's parse
 * state from its parent's and skips a whole subtree on the first rejected byte. Most steps never
 * need the full mask: the sampler first tries the best-scoring candidates one by one and stops as
 * soon as the allowed ones among them settle what greedy / top-k / min-p keep (see
 * nllm_sgrammar_candidates). Full masks are kept per parse state (a key of the state's content,
 * nllm_gmatch_state_key): a string, a list or a document seen before costs a lookup. */
#include <math.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "engine/token_trie.h"
#include "grammar/grammar.h"

#define TOP_M 64       /* candidates tried one by one before the full mask */
#define MASK_CACHE 64  /* full masks kept per sampler (about 19 KB each for 152k tokens) */
#define KEY_WORDS 4096 /* longest state key cached (deeper nesting is computed every time) */

typedef struct {
  uint32_t *key;
  size_t n_key;
  uint64_t hash, used;
  uint64_t *bits; /* allowed tokens, end-of-generation ones included */
} mask_entry;

struct nllm_sgrammar {
  nllm_grammar *g;
  nllm_gmatch *gm;
  const nllm_token_trie *tt; /* the model's, shared */
  int32_t n_vocab;
  size_t n_words; /* of a mask */
  mask_entry cache[MASK_CACHE];
  uint64_t clock;
  uint32_t *key;      /* scratch [KEY_WORDS] */
  nllm_token pending; /* last sampled token, advanced on accept */
  int done;           /* an end-of-generation token was accepted: restart on the next pick */
  nllm_sampler_grammar_stats stats;
};

void nllm_sgrammar_free(struct nllm_sgrammar *sg) {
  if (!sg) return;
  nllm_gmatch_free(sg->gm);
  nllm_grammar_free(sg->g);
  for (int i = 0; i < MASK_CACHE; i++) free(sg->cache[i].key), free(sg->cache[i].bits);
  free(sg->key);
  free(sg);
}

nllm_status nllm_sgrammar_new(const nllm_model *m, const nllm_sampler_params *p,
                              struct nllm_sgrammar **out) {
  *out = NULL;
  if (p->grammar && p->json_schema)
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "sampler: set grammar or json_schema, not both (a schema becomes a grammar)");
  struct nllm_sgrammar *sg = calloc(1, sizeof *sg);
  if (!sg) return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  sg->n_vocab = m->hp.n_vocab;
  sg->pending = -1;
  nllm_status st;
  if (p->json_schema) {
    char *text = NULL;
    st = nllm_json_schema_to_gbnf(p->json_schema, strlen(p->json_schema), &text);
    if (st == NLLM_OK) st = nllm_grammar_parse(text, strlen(text), "root", &sg->g);
    free(text);
  } else {
    st = nllm_grammar_parse(p->grammar, strlen(p->grammar), p->grammar_root, &sg->g);
  }
  if (st == NLLM_OK) st = nllm_gmatch_new(sg->g, &sg->gm);
  if (st == NLLM_OK) st = nllm_token_trie_get(m, &sg->tt);
  if (st == NLLM_OK) {
    sg->n_words = ((size_t)sg->n_vocab + 63) / 64;
    if (!(sg->key = malloc(KEY_WORDS * sizeof *sg->key)))
      st = nllm_err(NLLM_ERR_NOMEM, "out of memory");
  }
  if (st) {
    nllm_sgrammar_free(sg);
    return st;
  }
  *out = sg;
  return NLLM_OK;
}

void nllm_sgrammar_restart(struct nllm_sgrammar *sg) {
  nllm_gmatch_reset(sg->gm);
  sg->pending = -1;
  sg->done = 0;
}

int nllm_sgrammar_complete(const struct nllm_sgrammar *sg) {
  return sg->done || nllm_gmatch_can_end(sg->gm);
}

void nllm_sgrammar_stats(const struct nllm_sgrammar *sg, nllm_sampler_grammar_stats *out) {
  *out = sg->stats;
}

static int is_eog(const struct nllm_sgrammar *sg, nllm_token t) {
  for (int32_t i = 0; i < sg->tt->n_eog; i++)
    if (sg->tt->eog[i] == t) return 1;
  return 0;
}

static int bit(const uint64_t *bits, nllm_token t) {
  return (int)((bits[(uint32_t)t >> 6] >> ((uint32_t)t & 63)) & 1);
}

/* The current state's key: its hash in *hash, its length (0 when too long to cache). */
static size_t state_key(struct nllm_sgrammar *sg, uint64_t *hash) {
  size_t n = nllm_gmatch_state_key(sg->gm, sg->key, KEY_WORDS);
  if (n > KEY_WORDS) return 0;
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ sg->key[i]) * 1099511628211ull;
  *hash = h;
  return n;
}

static mask_entry *cache_find(struct nllm_sgrammar *sg, size_t n_key, uint64_t hash) {
  for (int i = 0; i < MASK_CACHE && n_key; i++) {
    mask_entry *e = &sg->cache[i];
    if (e->bits && e->hash == hash && e->n_key == n_key &&
        !memcmp(e->key, sg->key, n_key * sizeof *sg->key)) {
      e->used = ++sg->clock;
      return e;
    }
  }
  return NULL;
}

/* A slot for the current state's mask (the least recently used one), bits cleared; NULL when
 * out of memory (the mask then goes to *scratch). */
static mask_entry *cache_put(struct nllm_sgrammar *sg, size_t n_key, uint64_t hash) {
  if (!n_key) return NULL;
  mask_entry *e = &sg->cache[0];
  for (int i = 1; i < MASK_CACHE && e->bits; i++)
    if (!sg->cache[i].bits || sg->cache[i].used < e->used) e = &sg->cache[i];
  uint32_t *k = realloc(e->key, n_key * sizeof *k);
  if (!k) return NULL;
  e->key = k;
  if (!e->bits && !(e->bits = malloc(sg->n_words * sizeof *e->bits))) return NULL;
  memcpy(e->key, sg->key, n_key * sizeof *k);
  e->n_key = n_key;
  e->hash = hash;
  e->used = ++sg->clock;
  memset(e->bits, 0, sg->n_words * sizeof *e->bits);
  return e;
}

static nllm_status allowed_one(struct nllm_sgrammar *sg, nllm_token t, int can_end, int *ok) {
  sg->stats.n_checked++;
  if (is_eog(sg, t)) return *ok = can_end, NLLM_OK;
  if (!sg->tt->len[t]) return *ok = 0, NLLM_OK;
  return nllm_gmatch_check(sg->gm, (const uint8_t *)sg->tt->bytes + sg->tt->off[t], sg->tt->len[t],
                           ok);
}

/* The allowed tokens of the current state into bits (cleared by the caller). */
static nllm_status full_mask(struct nllm_sgrammar *sg, int can_end, uint64_t *bits) {
  if (can_end)
    for (int32_t i = 0; i < sg->tt->n_eog; i++) {
      const uint32_t t = (uint32_t)sg->tt->eog[i];
      bits[t >> 6] |= 1ull << (t & 63);
    }
  sg->stats.n_full_masks++;
  return nllm_gmatch_mask(sg->gm, sg->tt->trie, bits);
}

static nllm_status no_token(void) {
  return nllm_err(NLLM_ERR_INVALID_ARG,
                  "sampler: no token of the vocabulary can continue the grammar here");
}

nllm_status nllm_sgrammar_candidates(struct nllm_sgrammar *sg, const nllm_sampler_params *p,
                                     float *l, int32_t *cand, int32_t *n_cand) {
  *n_cand = -1;
  if (sg->done) nllm_sgrammar_restart(sg);
  sg->stats.n_steps++;
  const int32_t V = sg->n_vocab;
  const int can_end = nllm_gmatch_can_end(sg->gm);
  const nllm_token_trie *tt = sg->tt;
  if (nllm_gmatch_must_end(sg->gm)) {
    if (!tt->n_eog)
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "sampler: the grammar is complete but the model has no end-of-generation "
                      "token to stop with");
    int32_t best = tt->eog[0];
    for (int32_t i = 1; i < tt->n_eog; i++)
      if (l[tt->eog[i]] > l[best]) best = tt->eog[i];
    cand[0] = best;
    *n_cand = 1;
    return NLLM_OK;
  }
  uint64_t hash = 0;
  const size_t n_key = state_key(sg, &hash);
  mask_entry *known = cache_find(sg, n_key, hash);
  if (known) sg->stats.n_mask_hits++;
  const int greedy = p->temperature == 0.0f || p->top_k == 1;
  if (greedy || p->min_p > 0 || p->top_k > 0) {
    /* The TOP_M best finite logits, descending, ties by ascending id. */
    int32_t top[TOP_M], n_top = 0, n_finite = 0;
    for (int32_t t = 0; t < V; t++) {
      float v = l[t];
      if (!isfinite(v)) continue;
      n_finite++;
      if (n_top == TOP_M && !(v > l[top[TOP_M - 1]])) continue;
      int32_t j = n_top < TOP_M ? n_top++ : TOP_M - 1;
      while (j > 0 && v > l[top[j - 1]]) top[j] = top[j - 1], j--;
      top[j] = t;
    }
    int32_t n = 0;
    float cut = -INFINITY;
    int settled = 0;
    for (int32_t j = 0; j < n_top && !settled; j++) {
      int32_t t = top[j];
      if (n > 0 && l[t] < cut) {
        settled = 1;
        break;
      }
      int ok;
      if (known) {
        ok = bit(known->bits, t);
      } else {
        nllm_status st = allowed_one(sg, t, can_end, &ok);
        if (st) return st;
      }
      if (!ok) continue;
      cand[n++] = t;
      if (n == 1 && p->min_p > 0 && !greedy) cut = l[t] + p->temperature * logf(p->min_p);
      if (greedy || (p->top_k > 0 && n == p->top_k)) settled = 1;
    }
    if (n_top == n_finite && n > 0) settled = 1; /* every finite candidate was seen */
    if (settled) {
      *n_cand = n;
      return NLLM_OK;
    }
  }
  const uint64_t *bits;
  uint64_t *scratch = NULL;
  if (known) {
    bits = known->bits;
  } else {
    mask_entry *e = cache_put(sg, n_key, hash);
    uint64_t *b = e ? e->bits : (scratch = calloc(sg->n_words, sizeof *scratch));
    if (!b) return nllm_err(NLLM_ERR_NOMEM, "out of memory (grammar mask)");
    nllm_status st = full_mask(sg, can_end, b);
    if (st) {
      if (e) free(e->bits), e->bits = NULL; /* half a mask is no mask */
      free(scratch);
      return st;
    }
    bits = b;
  }
  int32_t any = 0;
  for (int32_t t = 0; t < V; t++) {
    if (!bit(bits, t))
      l[t] = -INFINITY;
    else if (isfinite(l[t]))
      any = 1;
  }
  if (!any) {
    /* Allowed tokens with -inf logits (e.g. a caller's ban) still beat a dead end. */
    for (int32_t t = 0; t < V && !any; t++)
      if (bit(bits, t)) l[t] = -1e30f, any = 1;
  }
  free(scratch);
  return any ? NLLM_OK : no_token();
}

void nllm_sgrammar_picked(struct nllm_sgrammar *sg, nllm_token t) {
  sg->pending = t;
}

void nllm_sgrammar_accepted(struct nllm_sgrammar *sg, nllm_token t) {
  nllm_token pend = sg->pending;
  sg->pending = -1;
  if (pend < 0 || t != pend) return;
  if (is_eog(sg, t)) {
    sg->done = 1;
    return;
  }
  int ok;
  if (t >= 0 && t < sg->n_vocab && sg->tt->len[t])
    nllm_gmatch_accept(sg->gm, (const uint8_t *)sg->tt->bytes + sg->tt->off[t], sg->tt->len[t],
                       &ok);
}
