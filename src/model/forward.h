/* State the forward pass runs on: the KV cache and the per-batch scratch buffers. Owned by a
 * context (src/engine), allocated once at context creation so decoding never allocates. */
#ifndef NLLM_FORWARD_H
#define NLLM_FORWARD_H

#include "model/model.h"

typedef struct nllm_kv_cache {
  int32_t type;  /* NLLM_TYPE_F16 or NLLM_TYPE_F32 */
  int32_t n_ctx; /* positions */
  int64_t row;   /* elements per position per layer: n_head_kv * head_dim */
  size_t row_bytes;
  uint8_t *k, *v; /* [n_layer][n_ctx][row] */
} nllm_kv_cache;

typedef struct nllm_forward_state {
  const nllm_model *model;
  nllm_kv_cache kv;
  int32_t n_batch, n_threads;
  /* [n_batch][...] activations */
  float *x, *xb, *q, *k, *v, *att, *gate, *up;
  float *att_scratch; /* per thread: n_rep * n_ctx scores + 2 rows */
  size_t att_scratch_per_thread;
  void *wdata; /* activation quantization for matmuls */
  nllm_abort_fn abort_cb;
  void *abort_ud;
} nllm_forward_state;

nllm_status nllm_forward_state_init(nllm_forward_state *fs, const nllm_model *m, int32_t n_ctx,
                                    int32_t n_batch, int32_t kv_type, int32_t n_threads);
void nllm_forward_state_free(nllm_forward_state *fs);

/* Evaluates tokens[0..n) (n <= n_batch) at positions pos0.. , writing their K/V into the cache.
 * logits: n_vocab floats per output row; all_logits: a row per token, else only the last;
 * NULL: no logits at all (a prompt chunk that is not the last).
 * NLLM_ERR_ABORTED if the abort callback fired (cache rows past pos0 are then garbage, and the
 * caller keeps its position at pos0). */
nllm_status nllm_forward(nllm_forward_state *fs, const nllm_token *tokens, int32_t n, int32_t pos0,
                         float *logits, int all_logits);

#endif
