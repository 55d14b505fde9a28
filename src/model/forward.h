/* State the forward pass runs on: the cache's shape and the backends that hold the cache and
 * the per-batch buffers. Owned by a context (src/engine), allocated once at context creation so
 * decoding never allocates. */
#ifndef NLLM_FORWARD_H
#define NLLM_FORWARD_H

#include "model/lora.h"
#include "model/model.h"

typedef struct nllm_kv_cache {
  int32_t type;                  /* K's type: F16, F32 (the GPU's too), BF16, Q8_0, Q4_0 */
  int32_t type_v;                /* V's type (the GPU: the same as K's) */
  int32_t n_ctx;                 /* cells */
  int64_t row;                   /* elements per cell per layer: n_head_kv * head_dim */
  size_t row_bytes, row_bytes_v; /* bytes of a row of K, of V */
} nllm_kv_cache;

typedef struct nllm_forward_state nllm_forward_state;

/* The rows of one forward call. Contiguous (one sequence, what the GPU backend runs): row t
 * sits at position pos0 + t, its K/V go to cache row pos0 + t and it sees cache rows 0.. of
 * its position. Paged (the CPU, any number of sequences; kv_cells.h): row t sits at pos[t],
 * its K/V go to cache row cell[t], and it sees the n_vis[t] cells vis_cell[t][..] at positions
 * vis_pos[t][..] (its own sequence's, its own cell included). */
typedef struct nllm_fw_batch {
  const nllm_token *tokens;
  int32_t n;
  int32_t pos0;
  const int32_t *pos, *cell; /* NULL: contiguous */
  const int32_t *const *vis_cell;
  const int32_t *const *vis_pos;
  const int32_t *n_vis;
  /* rows whose logits are wanted, ascending; NULL: every row with all_logits, else the last */
  const int32_t *out_rows;
  int32_t n_out;
  int all_logits;
  /* [n] the LoRA adapters of each row (its sequence's); NULL: none on any row */
  const nllm_lora_set *const *row_lora;
  /* host [n][n_embd]: every row's final hidden state (after the final norm where the model has
   * one), the embeddings; NULL: not wanted. CPU-computed heads only. */
  float *embd;
} nllm_fw_batch;

struct nllm_forward_state {
  const nllm_model *model;
  nllm_kv_cache kv; /* the cache's shape, shared by the backends (each holds its layers') */
  int32_t n_batch, n_threads;
  int32_t bf16_activations; /* 1: NLLM_MATMUL_XBF16 for the CPU's matmuls (the context's
                             * param, AUTO settled by nllm_forward_state_init) */
  /* The CPU backend and, with GPU layers, the device backend: each owns its buffers, its
   * cache and its scratch (nllm_cpu_fw_init, nllm_cuda_fw_init). */
  nllm_fw_backend cpu, gpu;
  int32_t *row_ids; /* abs_pos archs: [n_batch] the rows' position and token-type ids */
  nllm_abort_fn abort_cb;
  void *abort_ud;
  int32_t lora_rank; /* the largest rank the CPU backend's lora_t has room for */
};

/* logit_rows: rows of logits one call may produce (n_batch with all_logits, else 1);
 * bf16_activations: NLLM_BF16_ACT_* of the context params. */
nllm_status nllm_forward_state_init(nllm_forward_state *fs, const nllm_model *m, int32_t n_ctx,
                                    int32_t n_batch, int32_t kv_type, int32_t kv_type_v,
                                    int32_t n_threads, int32_t logit_rows,
                                    int32_t bf16_activations);
void nllm_forward_state_free(nllm_forward_state *fs);

/* Evaluates the batch's rows (n <= n_batch), writing their K/V into the cache.
 * logits: n_vocab floats per output row (the batch says which); NULL: no logits at all (a
 * prompt chunk that is not the last). NLLM_ERR_ABORTED if the abort callback fired (the rows'
 * cache cells are then garbage; the caller drops them). */
nllm_status nllm_forward(nllm_forward_state *fs, const nllm_fw_batch *fb, float *logits);

/* Sizes the scratch the adapters' products need for ranks up to max_rank (batches then name
 * each row's adapters in row_lora). NLLM_ERR_UNSUPPORTED when a backend of the model's layers
 * has no lowrank op (the GPU's). */
nllm_status nllm_forward_lora_reserve(nllm_forward_state *fs, int32_t max_rank);

/* Cache maintenance for the sequence operations (CPU layers): rotate the keys of cache row
 * `cell` by delta positions (a context shift), copy cache row src to dst in every layer. */
void nllm_forward_kv_shift(nllm_forward_state *fs, int32_t cell, int32_t delta);
void nllm_forward_kv_copy(nllm_forward_state *fs, int32_t src, int32_t dst);
/* Bytes of one cache cell over every CPU layer, K then V (saved states, engine/state.c), and
 * the copy of that cell out of the cache into buf or from buf into the cache. */
uint64_t nllm_forward_kv_cell_bytes(const nllm_forward_state *fs);
void nllm_forward_kv_cell_get(const nllm_forward_state *fs, int32_t cell, uint8_t *buf);
void nllm_forward_kv_cell_set(nllm_forward_state *fs, int32_t cell, const uint8_t *buf);

#endif
