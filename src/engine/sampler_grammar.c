/* Grammar-constrained sampling: which tokens keep the output inside the grammar.
 *
 * The vocabulary's pieces go into a byte trie once per sampler (flat, in preorder, each node
 * knowing where its subtree ends), so the full mask is one depth-first walk that derives each
 * node's parse state from its parent's and skips a whole subtree on the first rejected byte.
 * Most steps never need the full mask: the sampler first tries the best-scoring candidates one by
 * one and stops as soon as the allowed ones among them settle what greedy / top-k / min-p keep
 * (see nllm_sgrammar_candidates). */
#include <math.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "grammar/grammar.h"

#define TOP_M 64 /* candidates tried one by one before the full mask */

struct nllm_sgrammar {
  nllm_grammar *g;
  nllm_gmatch *gm;
  int32_t n_vocab;
  /* pieces */
  char *bytes;
  uint32_t *off, *len; /* per token id; len 0 = never allowed under a grammar */
  /* trie */
  uint8_t *tbyte;
  uint16_t *tdepth;
  uint32_t *tend, *tfirst, *tcount, n_nodes;
  int32_t *order; /* token ids sorted by piece */
  int32_t max_depth;
  nllm_token *eog;
  int32_t n_eog;
  uint8_t *allowed;
  nllm_token pending; /* last sampled token, advanced on accept */
  int done;           /* an end-of-generation token was accepted: restart on the next pick */
  nllm_sampler_grammar_stats stats;
};

static _Thread_local const struct nllm_sgrammar *tl_sg;
static int cmp_piece(const void *a, const void *b) {
  const struct nllm_sgrammar *sg = tl_sg;
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  uint32_t lx = sg->len[x], ly = sg->len[y];
  int c = memcmp(sg->bytes + sg->off[x], sg->bytes + sg->off[y], lx < ly ? lx : ly);
  if (c) return c;
  if (lx != ly) return lx < ly ? -1 : 1;
  return x < y ? -1 : x > y;
}

static nllm_status build_trie(struct nllm_sgrammar *sg, const nllm_model *m) {
  const int32_t V = sg->n_vocab;
  const int32_t tv = nllm_tokenizer_n_vocab(m->tok);
  uint64_t total = 0;
  sg->off = calloc((size_t)V, sizeof *sg->off);
  sg->len = calloc((size_t)V, sizeof *sg->len);
  sg->order = malloc((size_t)V * sizeof *sg->order);
  sg->eog = malloc((size_t)V * sizeof *sg->eog);
  sg->allowed = malloc((size_t)V);
  if (!sg->off || !sg->len || !sg->order || !sg->eog || !sg->allowed) goto nomem;
  for (int32_t t = 0; t < V && t < tv; t++) {
    int32_t n = 0;
    nllm_tokenizer_piece(m->tok, t, 0, NULL, 0, &n);
    total += (uint64_t)n;
  }
  sg->bytes = malloc(total ? total : 1);
  if (!sg->bytes) goto nomem;
  uint64_t at = 0;
  int32_t n_tok = 0;
  for (int32_t t = 0; t < V; t++) {
    if (t < tv && nllm_tokenizer_is_eog(m->tok, t)) {
      sg->eog[sg->n_eog++] = t;
      continue;
    }
    int32_t n = 0;
    if (t >= tv || nllm_tokenizer_piece(m->tok, t, 0, sg->bytes + at, (int32_t)(total - at), &n))
      continue;
    if (n <= 0 || n > 65535) continue;
    sg->off[t] = (uint32_t)at;
    sg->len[t] = (uint32_t)n;
    at += (uint64_t)n;
    sg->order[n_tok++] = t;
    if (n > sg->max_depth) sg->max_depth = n;
  }
  tl_sg = sg;
  qsort(sg->order, (size_t)n_tok, sizeof *sg->order, cmp_piece);
  /* Nodes: at most one per piece byte. */
  size_t cap = (size_t)(at ? at : 1);
  sg->tbyte = malloc(cap);
  sg->tdepth = malloc(cap * sizeof *sg->tdepth);
  sg->tend = malloc(cap * sizeof *sg->tend);
  sg->tfirst = malloc(cap * sizeof *sg->tfirst);
  sg->tcount = calloc(cap, sizeof *sg->tcount);
  uint32_t *path = malloc((size_t)(sg->max_depth + 1) * sizeof *path);
  if (!sg->tbyte || !sg->tdepth || !sg->tend || !sg->tfirst || !sg->tcount || !path) {
    free(path);
    goto nomem;
  }
  uint32_t N = 0;
  int32_t plen = 0, prev = -1;
  for (int32_t k = 0; k < n_tok; k++) {
    int32_t t = sg->order[k];
    const uint8_t *p = (const uint8_t *)sg->bytes + sg->off[t];
    int32_t L = (int32_t)sg->len[t], c = 0;
    if (prev >= 0) {
      const uint8_t *q = (const uint8_t *)sg->bytes + sg->off[prev];
      int32_t lq = (int32_t)sg->len[prev];
      while (c < plen && c < L && c < lq && p[c] == q[c]) c++;
    }
    for (int32_t d = c; d < plen; d++) sg->tend[path[d]] = N;
    for (int32_t d = c; d < L; d++) {
      sg->tbyte[N] = p[d];
      sg->tdepth[N] = (uint16_t)d;
      path[d] = N++;
    }
    plen = L;
    uint32_t leaf = path[L - 1];
    if (!sg->tcount[leaf]) sg->tfirst[leaf] = (uint32_t)k;
    sg->tcount[leaf]++;
    prev = t;
  }
  for (int32_t d = 0; d < plen; d++) sg->tend[path[d]] = N;
  sg->n_nodes = N;
  free(path);
  return NLLM_OK;
nomem:
  return nllm_err(NLLM_ERR_NOMEM, "out of memory (grammar token tables)");
}

void nllm_sgrammar_free(struct nllm_sgrammar *sg) {
  if (!sg) return;
  nllm_gmatch_free(sg->gm);
  nllm_grammar_free(sg->g);
  free(sg->bytes), free(sg->off), free(sg->len), free(sg->order), free(sg->eog);
  free(sg->allowed), free(sg->tbyte), free(sg->tdepth), free(sg->tend), free(sg->tfirst);
  free(sg->tcount);
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
  if (st == NLLM_OK) st = build_trie(sg, m);
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
  for (int32_t i = 0; i < sg->n_eog; i++)
    if (sg->eog[i] == t) return 1;
  return 0;
}

static nllm_status allowed_one(struct nllm_sgrammar *sg, nllm_token t, int can_end, int *ok) {
  sg->stats.n_checked++;
  if (is_eog(sg, t)) return *ok = can_end, NLLM_OK;
  if (!sg->len[t]) return *ok = 0, NLLM_OK;
  return nllm_gmatch_check(sg->gm, (const uint8_t *)sg->bytes + sg->off[t], sg->len[t], ok);
}

/* allowed[t] for every token, by one walk of the trie. */
static nllm_status full_mask(struct nllm_sgrammar *sg, int can_end) {
  memset(sg->allowed, 0, (size_t)sg->n_vocab);
  for (int32_t i = 0; i < sg->n_eog; i++) sg->allowed[sg->eog[i]] = (uint8_t)can_end;
  nllm_status st = nllm_gmatch_walk_begin(sg->gm, sg->max_depth);
  if (st) return st;
  for (uint32_t i = 0; i < sg->n_nodes;) {
    int ok;
    if ((st = nllm_gmatch_walk_step(sg->gm, sg->tdepth[i], sg->tbyte[i], &ok))) break;
    if (!ok) {
      i = sg->tend[i];
      continue;
    }
    for (uint32_t k = 0; k < sg->tcount[i]; k++) sg->allowed[sg->order[sg->tfirst[i] + k]] = 1;
    i++;
  }
  nllm_gmatch_walk_end(sg->gm);
  sg->stats.n_full_masks++;
  return st;
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
  if (nllm_gmatch_must_end(sg->gm)) {
    if (!sg->n_eog)
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "sampler: the grammar is complete but the model has no end-of-generation "
                      "token to stop with");
    int32_t best = sg->eog[0];
    for (int32_t i = 1; i < sg->n_eog; i++)
      if (l[sg->eog[i]] > l[best]) best = sg->eog[i];
    cand[0] = best;
    *n_cand = 1;
    return NLLM_OK;
  }
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
      nllm_status st = allowed_one(sg, t, can_end, &ok);
      if (st) return st;
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
  nllm_status st = full_mask(sg, can_end);
  if (st) return st;
  int32_t any = 0;
  for (int32_t t = 0; t < V; t++) {
    if (!sg->allowed[t])
      l[t] = -INFINITY;
    else if (isfinite(l[t]))
      any = 1;
  }
  if (!any) {
    /* Allowed tokens with -inf logits (e.g. a caller's ban) still beat a dead end. */
    for (int32_t t = 0; t < V && !any; t++)
      if (sg->allowed[t]) l[t] = -1e30f, any = 1;
  }
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
  if (t >= 0 && t < sg->n_vocab && sg->len[t])
    nllm_gmatch_accept(sg->gm, (const uint8_t *)sg->bytes + sg->off[t], sg->len[t], &ok);
}
