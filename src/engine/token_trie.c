/* The vocabulary's pieces and their byte trie (grammar/gtrie.c), built once per model for
 * grammar-constrained sampling (engine/sampler_grammar.c). */
#include <stdatomic.h>
#include <stdlib.h>

#include "engine/token_trie.h"

void nllm_token_trie_free(nllm_token_trie *t) {
  if (!t) return;
  free(t->bytes), free(t->off), free(t->len), free(t->eog);
  nllm_gtrie_free(t->trie);
  free(t);
}

static nllm_status build(const nllm_model *m, nllm_token_trie *t) {
  const int32_t V = m->hp.n_vocab;
  const int32_t tv = nllm_tokenizer_n_vocab(m->tok);
  uint64_t total = 0;
  t->n_vocab = V;
  t->off = calloc((size_t)V, sizeof *t->off);
  t->len = calloc((size_t)V, sizeof *t->len);
  t->eog = malloc((size_t)V * sizeof *t->eog);
  if (!t->off || !t->len || !t->eog) goto nomem;
  for (int32_t k = 0; k < V && k < tv; k++) {
    int32_t n = 0;
    nllm_tok_token_to_piece(m->tok, k, 0, NULL, 0, &n);
    total += (uint64_t)n;
  }
  t->bytes = malloc(total ? total : 1);
  if (!t->bytes) goto nomem;
  uint64_t at = 0;
  for (int32_t k = 0; k < V; k++) {
    if (nllm_model_is_eog(m, k)) {
      t->eog[t->n_eog++] = k;
      continue;
    }
    int32_t n = 0;
    if (k >= tv || nllm_tok_token_to_piece(m->tok, k, 0, t->bytes + at, (int32_t)(total - at), &n))
      continue;
    if (n <= 0 || n > 65535) continue; /* never allowed under a grammar */
    t->off[k] = (uint32_t)at;
    t->len[k] = (uint32_t)n;
    at += (uint64_t)n;
  }
  return nllm_gtrie_build(t->bytes, t->off, t->len, V, &t->trie);
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
