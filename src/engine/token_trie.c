/* The vocabulary's pieces in a flat byte trie (preorder, each node knowing where its subtree
 * ends), built once per model for grammar-constrained sampling (engine/sampler_grammar.c). */
#include <stdatomic.h>
#include <stdlib.h>

#include "engine/token_trie.h"

void nllm_token_trie_free(nllm_token_trie *t) {
  if (!t) return;
  free(t->bytes), free(t->off), free(t->len), free(t->order), free(t->eog);
  free(t->tbyte), free(t->tdepth), free(t->tend), free(t->tfirst), free(t->tcount);
  free(t->tplain);
  free(t);
}

static _Thread_local const nllm_token_trie *tl_trie;
static int cmp_piece(const void *a, const void *b) {
  const nllm_token_trie *t = tl_trie;
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  uint32_t lx = t->len[x], ly = t->len[y];
  int c = memcmp(t->bytes + t->off[x], t->bytes + t->off[y], lx < ly ? lx : ly);
  if (c) return c;
  if (lx != ly) return lx < ly ? -1 : 1;
  return x < y ? -1 : x > y;
}

static nllm_status build(const nllm_model *m, nllm_token_trie *t) {
  const int32_t V = m->hp.n_vocab;
  const int32_t tv = nllm_tokenizer_n_vocab(m->tok);
  uint64_t total = 0;
  int32_t max_depth = 0;
  t->n_vocab = V;
  t->off = calloc((size_t)V, sizeof *t->off);
  t->len = calloc((size_t)V, sizeof *t->len);
  t->order = malloc((size_t)V * sizeof *t->order);
  t->eog = malloc((size_t)V * sizeof *t->eog);
  if (!t->off || !t->len || !t->order || !t->eog) goto nomem;
  for (int32_t k = 0; k < V && k < tv; k++) {
    int32_t n = 0;
    nllm_tokenizer_piece(m->tok, k, 0, NULL, 0, &n);
    total += (uint64_t)n;
  }
  t->bytes = malloc(total ? total : 1);
  if (!t->bytes) goto nomem;
  uint64_t at = 0;
  int32_t n_tok = 0;
  for (int32_t k = 0; k < V; k++) {
    if (nllm_model_is_eog(m, k)) {
      t->eog[t->n_eog++] = k;
      continue;
    }
    int32_t n = 0;
    if (k >= tv || nllm_tokenizer_piece(m->tok, k, 0, t->bytes + at, (int32_t)(total - at), &n))
      continue;
    if (n <= 0 || n > 65535) continue;
    t->off[k] = (uint32_t)at;
    t->len[k] = (uint32_t)n;
    at += (uint64_t)n;
    t->order[n_tok++] = k;
    if (n > max_depth) max_depth = n;
  }
  tl_trie = t;
  qsort(t->order, (size_t)n_tok, sizeof *t->order, cmp_piece);
  /* Nodes: at most one per piece byte. */
  size_t cap = (size_t)(at ? at : 1);
  t->tbyte = malloc(cap);
  t->tdepth = malloc(cap * sizeof *t->tdepth);
  t->tend = malloc(cap * sizeof *t->tend);
  t->tfirst = malloc((cap + 1) * sizeof *t->tfirst);
  t->tcount = calloc(cap, sizeof *t->tcount);
  t->tplain = malloc(cap);
  uint32_t *path = malloc((size_t)(max_depth + 1) * sizeof *path);
  if (!t->tbyte || !t->tdepth || !t->tend || !t->tfirst || !t->tcount || !t->tplain || !path) {
    free(path);
    goto nomem;
  }
  uint32_t N = 0;
  int32_t plen = 0, prev = -1;
  for (int32_t k = 0; k < n_tok; k++) {
    int32_t id = t->order[k];
    const uint8_t *p = (const uint8_t *)t->bytes + t->off[id];
    int32_t L = (int32_t)t->len[id], c = 0;
    if (prev >= 0) {
      const uint8_t *q = (const uint8_t *)t->bytes + t->off[prev];
      int32_t lq = (int32_t)t->len[prev];
      while (c < plen && c < L && c < lq && p[c] == q[c]) c++;
    }
    for (int32_t d = c; d < plen; d++) t->tend[path[d]] = N;
    for (int32_t d = c; d < L; d++) {
      t->tbyte[N] = p[d];
      t->tdepth[N] = (uint16_t)d;
      path[d] = N++;
    }
    plen = L;
    t->tcount[path[L - 1]]++;
    prev = id;
  }
  for (int32_t d = 0; d < plen; d++) t->tend[path[d]] = N;
  /* Pieces are sorted, so their tokens come in the nodes' preorder: first[] is a running count. */
  uint32_t run = 0;
  for (uint32_t i = 0; i < N; i++) {
    t->tfirst[i] = run;
    run += t->tcount[i];
  }
  /* Plain subtrees and their heights, from the last node back: by then a node's children are
   * done, their highest height in high[d + 1] and whether all are plain in allp[d + 1] (both
   * reset for the children of the previous parent). */
  uint32_t *high = calloc((size_t)max_depth + 2, sizeof *high);
  uint8_t *allp = malloc((size_t)max_depth + 2);
  if (!high || !allp) {
    free(high), free(allp), free(path);
    goto nomem;
  }
  memset(allp, 1, (size_t)max_depth + 2);
  for (uint32_t i = N; i-- > 0;) {
    const int32_t d = t->tdepth[i];
    const int plain = NLLM_GTRIE_PLAIN(t->tbyte[i]) && allp[d + 1];
    const uint32_t h = plain ? 1 + high[d + 1] : 0;
    high[d + 1] = 0, allp[d + 1] = 1;
    if (h > high[d]) high[d] = h;
    allp[d] &= (uint8_t)plain;
    t->tplain[i] = (uint8_t)(h <= 255 ? h : 0);
  }
  free(high), free(allp);
  t->tfirst[N] = run;
  free(path);
  t->trie = (nllm_gtrie){t->tbyte, t->tdepth, t->tend, t->tfirst, t->tcount,
                         t->order, t->tplain, N,       max_depth};
  return NLLM_OK;
nomem:
  return nllm_err(NLLM_ERR_NOMEM, "out of memory (grammar token tables)");
}

nllm_status nllm_token_trie_get(const nllm_model *m, const nllm_token_trie **out) {
  /* The model is never const where it was made; the trie is a cache of it. */
  nllm_token_trie *_Atomic *slot = &((nllm_model *)m)->token_trie;
  nllm_token_trie *t = atomic_load(slot);
  if (!t) {
    nllm_token_trie *mine = calloc(1, sizeof *mine);
    if (!mine) return nllm_err(NLLM_ERR_NOMEM, "out of memory (grammar token tables)");
    nllm_status st = build(m, mine);
    if (st) {
      nllm_token_trie_free(mine);
      return st;
    }
    nllm_token_trie *expected = NULL;
    if (atomic_compare_exchange_strong(slot, &expected, mine)) {
      t = mine;
    } else {
      nllm_token_trie_free(mine);
      t = expected;
    }
  }
  *out = t;
  return NLLM_OK;
}
