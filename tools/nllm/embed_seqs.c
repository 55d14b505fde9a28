/* Many token sequences through an embeddings context: packed into decode calls (one sequence
 * id each) and read back pooled or per token. Shared by nllm embed, bench --embed and serve. */
#include <stdlib.h>
#include <string.h>

#include "nllm.h"

int32_t cli_pooling_parse(const char *s) {
  static const char *const names[] = {"none", "mean", "cls", "last"};
  for (int32_t i = 0; i < 4; i++)
    if (!strcmp(s, names[i])) return i;
  return -9;
}

const char *cli_pooling_name(int32_t pooling) {
  static const char *const names[] = {"none", "mean", "cls", "last"};
  return pooling >= 0 && pooling < 4 ? names[pooling] : "?";
}

nllm_status cli_embed_seqs(nllm_context *ctx, int32_t n_batch, const nllm_token *const *seqs,
                           const int32_t *lens, int32_t n, float *out) {
  const nllm_model *m = nllm_context_model(ctx);
  const int32_t d = nllm_model_n_embd(m), n_seq = nllm_context_n_seq_max(ctx);
  const int32_t cap = n_batch < nllm_context_n_ctx(ctx) ? n_batch : nllm_context_n_ctx(ctx);
  const int per_token = nllm_context_pooling(ctx) == NLLM_POOLING_NONE;
  for (int32_t i = 0; i < n; i++)
    if (lens[i] < 1 || lens[i] > cap)
      return NLLM_ERR_INVALID_ARG; /* the caller names the text (see the header) */
  nllm_token *tok = malloc((size_t)cap * sizeof *tok);
  int32_t *seq = malloc((size_t)cap * sizeof *seq);
  nllm_status st = tok && seq ? NLLM_OK : NLLM_ERR_NOMEM;
  size_t out_row = 0;
  for (int32_t first = 0; first < n && !st;) {
    int32_t rows = 0, last = first;
    while (last < n && last - first < n_seq && rows + lens[last] <= cap) {
      memcpy(tok + rows, seqs[last], (size_t)lens[last] * sizeof *tok);
      for (int32_t k = 0; k < lens[last]; k++) seq[rows + k] = last - first;
      rows += lens[last++];
    }
    /* a decoder context keeps its cells: every call starts from empty sequences */
    if ((st = nllm_seq_remove(ctx, NLLM_SEQ_ALL, -1, -1))) break;
    nllm_batch b;
    nllm_batch_init(&b);
    b.n_tokens = rows;
    b.tokens = tok;
    b.seq_id = seq;
    if ((st = nllm_decode_batch(ctx, &b))) break;
    for (int32_t i = 0; i < (per_token ? rows : last - first) && !st; i++) {
      const float *v = NULL;
      st = per_token ? nllm_get_embeddings_ith(ctx, i, &v) : nllm_get_embeddings_seq(ctx, i, &v);
      if (!st) memcpy(out + (out_row++) * (size_t)d, v, (size_t)d * sizeof *v);
    }
    first = last;
  }
  free(tok);
  free(seq);
  return st;
}
