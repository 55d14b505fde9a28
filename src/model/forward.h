/* State the forward pass runs on: the KV cache and the per-batch scratch buffers. Owned by a
 * context (src/engine), allocated once at context creation so decoding never allocates. */
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
  uint8_t *k, *v; /* CPU layers: [n_layer][n_head_kv][n_ctx][head_dim] (see cpu_kv_store) */
} nllm_kv_cache;

/* The activations and KV cache one backend computes in: host memory for the CPU, device
 * memory for the GPU. */
typedef struct nllm_fw_bufs {
  /* [n_batch][...] activations; qkv is the fused projection's output before the split (on the
   * CPU it is q itself, split in place) */
  float *x, *xb, *q, *qkv, *k, *v, *att, *gate, *up;
  uint8_t *k_cache, *v_cache; /* n_ctx * row per layer (il at il - first_layer), laid out by
                               * the backend's kv_store (the CPU's: head-major) */
  int32_t first_layer;
  float *logits; /* the head's output when this backend runs it (GPU), NULL: the caller's */
} nllm_fw_bufs;

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

/* What one forward call is working on, for the ops. */
typedef struct nllm_fw_run {
  nllm_forward_state *fs;
  const nllm_model *m;
  int64_t n;    /* tokens */
  int32_t pos0; /* position of the first (contiguous batches) */
  int nt;       /* threads for the CPU's elementwise ops */
  const nllm_fw_batch *batch;
} nllm_fw_run;

/* The operations of the forward pass on one backend. Widths come from the model; n tokens from
 * the run unless passed. */
typedef struct nllm_fw_ops {
  nllm_status (*embed)(const nllm_fw_run *r, float *x, const nllm_token *tokens);
  nllm_status (*rmsnorm)(const nllm_fw_run *r, float *out, const float *x, const nllm_weight *w,
                         int64_t width, int64_t rows);
  nllm_status (*matmul)(const nllm_fw_run *r, float *y, const nllm_weight *w, const float *x,
                        int64_t n);
  nllm_status (*add_bias)(const nllm_fw_run *r, float *y, const nllm_weight *b, int64_t stride);
  /* b->qkv [n][qd + 2 kvd] into b->q, b->k, b->v */
  nllm_status (*split_qkv)(const nllm_fw_run *r, const nllm_fw_bufs *b);
  /* RoPE on rows of heads * head_dim, token t at pos0 + t */
  nllm_status (*rope)(const nllm_fw_run *r, float *x, int64_t heads);
  /* rows [n][kvd] into one layer's cache at pos0.. */
  nllm_status (*kv_store)(const nllm_fw_run *r, uint8_t *cache, const float *src, int is_v);
  /* b->q against one layer's cache into b->att */
  nllm_status (*attention)(const nllm_fw_run *r, const nllm_fw_bufs *b, const uint8_t *kc,
                           const uint8_t *vc, int32_t window);
  nllm_status (*add)(const nllm_fw_run *r, float *x, const float *y, int64_t count);
  /* b->up = act(gate) * up, fused (gate and up stacked in b->gate) or not per the arch */
  nllm_status (*glu)(const nllm_fw_run *r, const nllm_fw_bufs *b);
  nllm_status (*softcap)(const nllm_fw_run *r, float *y, int64_t count);
  /* LayerNorm with bias (b may be absent), the erf GELU in place: encoder archs (CPU only) */
  nllm_status (*layernorm)(const nllm_fw_run *r, float *out, const float *x, const nllm_weight *w,
                           const nllm_weight *b, int64_t width, int64_t rows);
  nllm_status (*gelu_erf)(const nllm_fw_run *r, float *x, int64_t count);
  /* a sparse layer's FFN on b->xb in place: router, top-k, the chosen experts. NULL: the
   * backend has no expert kernel and the forward pass runs this step on the CPU's */
  nllm_status (*moe)(const nllm_fw_run *r, const nllm_fw_bufs *b, const nllm_layer *L);
  /* host <-> this backend's memory */
  nllm_status (*from_host)(const nllm_fw_run *r, void *dst, const void *src, size_t bytes);
  nllm_status (*to_host)(const nllm_fw_run *r, void *dst, const void *src, size_t bytes);
} nllm_fw_ops;

typedef struct nllm_fw_backend {
  const nllm_fw_ops *ops;
  nllm_fw_bufs b;
} nllm_fw_backend;

struct nllm_forward_state {
  const nllm_model *model;
  nllm_kv_cache kv; /* the CPU layers' cache in k, v; the shape is shared with the GPU's */
  int32_t n_batch, n_threads;
  nllm_fw_backend cpu;
  float *att_scratch; /* per thread: n_rep * n_ctx scores + 2 rows */
  size_t att_scratch_per_thread;
  void *wdata; /* activation quantization for matmuls */
  /* sparse layers (a model with experts): router logits [n_batch][n_expert] and the expert
   * kernel's scratch (kernels/moe.h) */
  float *moe_logits;
  void *moe_scratch;
  nllm_abort_fn abort_cb;
  void *abort_ud;
  /* LoRA scratch (CPU layers only): s A x of up to NLLM_LORA_GROUP_MAX matrices, each
   * [n_batch][lora_rank] */
  float *lora_t;
  int32_t lora_rank;
  /* GPU part (model->n_gpu_layers > 0, CUDA builds): the context's own stream and buffers */
  struct nllm_cuda *cuda;
  nllm_fw_backend gpu;
  int32_t *d_tokens;
};

/* logit_rows: rows of logits one call may produce (n_batch with all_logits, else 1). */
nllm_status nllm_forward_state_init(nllm_forward_state *fs, const nllm_model *m, int32_t n_ctx,
                                    int32_t n_batch, int32_t kv_type, int32_t kv_type_v,
                                    int32_t n_threads, int32_t logit_rows);
void nllm_forward_state_free(nllm_forward_state *fs);

/* The GPU side (forward_cuda.c, CUDA builds): device buffers for the offloaded layers. */
nllm_status nllm_forward_gpu_init(nllm_forward_state *fs, int32_t logit_rows);
void nllm_forward_gpu_free(nllm_forward_state *fs);
extern const nllm_fw_ops nllm_fw_cuda_ops;

/* Evaluates the batch's rows (n <= n_batch), writing their K/V into the cache.
 * logits: n_vocab floats per output row (the batch says which); NULL: no logits at all (a
 * prompt chunk that is not the last). NLLM_ERR_ABORTED if the abort callback fired (the rows'
 * cache cells are then garbage; the caller drops them). */
nllm_status nllm_forward(nllm_forward_state *fs, const nllm_fw_batch *fb, float *logits);

/* The matrices a layer multiplies one input by (q, k and v; gate and up) share their adapters'
 * passes over it: the LoRA scratch holds A x for this many at once. */
#define NLLM_LORA_GROUP_MAX 3
/* Sizes the scratch the adapters' products need for ranks up to max_rank (batches then name
 * each row's adapters in row_lora). NLLM_ERR_UNSUPPORTED with GPU layers. */
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
