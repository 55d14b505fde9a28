/* The vocabulary's pieces in a byte trie for grammar-constrained sampling. It depends only on the
 * model's tokenizer, so it is built once per model (by the first sampler with a grammar), shared
 * read-only by every sampler, and freed with the model. */
#ifndef NLLM_TOKEN_TRIE_H
#define NLLM_TOKEN_TRIE_H

#include "grammar/grammar.h"
#include "model/model.h"

typedef struct nllm_token_trie {
  int32_t n_vocab;
  char *bytes;
  uint32_t *off, *len; /* per token id; len 0 = never allowed under a grammar */
  nllm_token *eog;     /* end-of-generation tokens (not in the trie) */
  int32_t n_eog;
  nllm_gtrie *trie;
} nllm_token_trie;

/* The model's trie, built on first use. Thread-safe: threads that race both build one and all
 * but the first to publish free theirs. */
nllm_status nllm_token_trie_get(const nllm_model *m, const nllm_token_trie **out);
void nllm_token_trie_free(nllm_token_trie *t);

#endif
