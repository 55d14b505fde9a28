/* The GGUF description of a loaded tokenizer (tokenizer.ggml.* keys), so that conversion writes
 * what the tokenizer object already knows instead of parsing tokenizer.json a second time. */
#include <stdio.h>
#include <stdlib.h>

#include "tokenizer/tok_internal.h"

/* The tokenizer.ggml.pre name whose pre-tokenizer splits as this tokenizer's regexes do. */
static const char *pre_name(const nllm_tokenizer *tok) {
  int qwen_words = 0, qwen_digit = 0, bytelevel = 0;
  for (int i = 0; i < tok->n_pres; i++) {
    const char *p = tok->pres[i].pattern;
    if (!p) continue;
    if (strstr(p, "\\p{N}{1,3}")) return "llama-bpe";
    qwen_words |= strstr(p, "(?i:'s|'t|'re|'ve|'m|'ll|'d)") != NULL;
    qwen_digit |= strstr(p, "\\p{N}|") != NULL;
    bytelevel |= strcmp(p, HF_BYTELEVEL_REGEX) == 0;
  }
  if (qwen_words && qwen_digit) return "qwen2";
  return bytelevel ? "gpt-2" : "default";
}

typedef struct merge_ref {
  int32_t rank, a, b, result;
} merge_ref;

static int by_rank(const void *x, const void *y) {
  const merge_ref *p = x, *q = y;
  return (p->rank > q->rank) - (p->rank < q->rank);
}

void nllm_tokenizer_gguf_free(nllm_tokenizer_gguf *g) {
  if (!g) return;
  free(g->tokens);
  free(g->types);
  free(g->scores);
  free(g->merges);
  free(g->storage);
  memset(g, 0, sizeof *g);
}

/* WordPiece as llama.cpp's converter writes it (model "bert"): word-initial tokens with a
 * leading U+2581, continuations without their "##", [bracketed] names kept; the added special
 * tokens are control tokens (the unknown one included), everything else normal. */
static nllm_status wordpiece_to_gguf(const nllm_tokenizer *tok, int32_t n, nllm_tokenizer_gguf *g) {
  size_t bytes = 1;
  for (int32_t id = 0; id < n; id++)
    bytes += id < tok->n_vocab ? (size_t)tok->tokens[id].text_len + 4 : 24;
  g->tokens = nllm_calloc((size_t)n, sizeof *g->tokens);
  g->types = nllm_calloc((size_t)n, sizeof *g->types);
  g->storage = nllm_malloc(bytes);
  if (!g->tokens || !g->types || !g->storage) {
    nllm_tokenizer_gguf_free(g);
    return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
  }
  char *at = g->storage;
  for (int32_t id = 0; id < n; id++) {
    g->tokens[id] = at;
    if (id >= tok->n_vocab || (tok->tokens[id].type == TT_UNUSED && !tok->tokens[id].text_len)) {
      snprintf(at, 24, "[PAD%d]", (int)(id & 0xffffff));
      g->types[id] = TT_UNUSED;
      at += strlen(at) + 1;
      continue;
    }
    size_t l = tok_wordpiece_to_phantom(tok, id, at);
    at[l] = 0;
    at += l + 1;
    int t = tok->tokens[id].type;
    g->types[id] = t == TT_UNDEFINED || t == TT_UNUSED ? TT_NORMAL : t;
  }
  g->model = "bert";
  g->pre = "bert-bge";
  g->n_vocab = n;
  for (int w = 0; w < 5; w++) g->special[w] = tok->special[w];
  g->sep = tok->sep_id;
  g->mask = tok->mask_id;
  g->add_bos = tok->add_bos;
  g->add_eos = tok->add_eos;
  g->chat_template = tok->chat_template;
  return NLLM_OK;
}

nllm_status nllm_tokenizer_to_gguf(const nllm_tokenizer *tok, int32_t n_vocab_min,
                                   nllm_tokenizer_gguf *g) {
  memset(g, 0, sizeof *g);
  g->sep = g->mask = -1;
  if (tok->model == MODEL_WORDPIECE)
    return wordpiece_to_gguf(tok, tok->n_vocab > n_vocab_min ? tok->n_vocab : n_vocab_min, g);
  if (tok->model != MODEL_BPE && tok->model != MODEL_SPM)
    return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: tokenizer kind has no GGUF form", tok->name);
  /* SentencePiece-style unless the vocabulary is GPT-2's byte alphabet */
  int spm = !tok->byte_level;
  int32_t n = tok->n_vocab > n_vocab_min ? tok->n_vocab : n_vocab_min;
  size_t n_merge_slots = tok->merges ? (size_t)tok->merges_mask + 1 : 0;
  merge_ref *refs = NULL;
  size_t n_refs = 0, merge_bytes = 0;
  if (n_merge_slots) {
    refs = nllm_malloc(n_merge_slots * sizeof *refs);
    if (!refs) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
    for (size_t i = 0; i < n_merge_slots; i++) {
      const tok_merge *m = &tok->merges[i];
      if (m->key == UINT64_MAX) continue;
      merge_ref r = {m->rank, (int32_t)(m->key >> 32), (int32_t)(uint32_t)m->key, m->result};
      refs[n_refs++] = r;
      merge_bytes += (size_t)tok->tokens[r.a].text_len + tok->tokens[r.b].text_len + 2;
    }
    qsort(refs, n_refs, sizeof *refs, by_rank);
  }
  int32_t n_pads = 0;
  for (int32_t id = 0; id < n; id++)
    n_pads +=
        id >= tok->n_vocab || (tok->tokens[id].type == TT_UNUSED && !tok->tokens[id].text_len);
  size_t pad_bytes = (size_t)n_pads * 24;
  g->tokens = nllm_calloc((size_t)n, sizeof *g->tokens);
  g->types = nllm_calloc((size_t)n, sizeof *g->types);
  g->storage = nllm_malloc(pad_bytes + (spm ? 0 : merge_bytes) + 1);
  if (spm)
    g->scores = nllm_calloc((size_t)n, sizeof *g->scores);
  else
    g->merges = nllm_calloc(n_refs + 1, sizeof *g->merges);
  if (!g->tokens || !g->types || !g->storage || (spm ? !g->scores : !g->merges)) {
    free(refs);
    nllm_tokenizer_gguf_free(g);
    return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", tok->name);
  }
  char *at = g->storage;
  for (int32_t id = 0; id < n; id++) {
    if (id >= tok->n_vocab || (tok->tokens[id].type == TT_UNUSED && !tok->tokens[id].text_len)) {
      /* ids the model counts but the tokenizer never produces (padding of the matrix) */
      snprintf(at, 24, "[PAD%d]", (int)(id & 0xffffff));
      g->tokens[id] = at;
      g->types[id] = TT_UNUSED;
      at += strlen(at) + 1;
      continue;
    }
    g->tokens[id] = tok_text(tok, id);
    g->types[id] = tok->tokens[id].type == TT_UNDEFINED ? TT_NORMAL : tok->tokens[id].type;
  }
  if (spm) {
    /* A score per token: minus the rank of the first merge that makes it, so that merging the
     * best-scored pair first repeats BPE's order. */
    for (size_t k = 0; k < n_refs; k++) {
      int32_t r = refs[k].result;
      if (g->types[r] == TT_NORMAL && g->scores[r] == 0) g->scores[r] = -(float)(refs[k].rank + 1);
    }
  } else {
    for (size_t k = 0; k < n_refs; k++) {
      g->merges[k] = at;
      at += sprintf(at, "%s %s", tok_text(tok, refs[k].a), tok_text(tok, refs[k].b)) + 1;
    }
    g->n_merges = (int32_t)n_refs;
  }
  free(refs);
  g->model = spm ? "llama" : "gpt2";
  g->pre = spm ? NULL : pre_name(tok);
  g->n_vocab = n;
  for (int w = 0; w < 5; w++) g->special[w] = tok->special[w];
  /* GGUF marks the unknown token by type too (tokenizer.json lists it as a special added
   * token); both types tokenize and detokenize alike here */
  nllm_token unk = tok->special[NLLM_TOKEN_UNK];
  if (unk >= 0 && g->types[unk] == TT_CONTROL) g->types[unk] = TT_UNKNOWN;
  g->add_bos = tok->add_bos;
  g->add_eos = tok->add_eos;
  g->add_space_prefix = tok->strip_leading_space;
  g->chat_template = tok->chat_template;
  return NLLM_OK;
}
