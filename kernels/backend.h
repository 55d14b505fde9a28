/* The interface between the forward pass (src/model/forward.c) and a backend that computes it:
 * the weight descriptor the ops read, the buffers one backend computes in, and the table of its
 * operations. Nothing here knows a model: widths and shapes come as arguments, a weight is a
 * plain matrix or vector, and what a step means (Gemma's embedding scale, the fused gate/up
 * layout, which layers run where) is decided by the forward pass. kernels/cpu/forward_ops.c and
 * kernels/cuda/forward_ops.c implement it. */
#ifndef NLLM_BACKEND_H
#define NLLM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "attention.h"
#include "nativellm.h"

/* A matrix or vector the ops read; vectors are always F32. */
typedef struct nllm_weight {
  const void *data;
  int32_t type;
  int64_t rows, cols; /* rows = output features, cols = input features (ne[1], ne[0]) */
  /* The device copy when the weight is offloaded, else NULL: a handle only the device backend
   * that made it reads (nllm_cuda_store_put). */
  const void *dev;
  /* host: the rows kept in the CPU tier's packed layout since load (kernels/ops.h nllm_packed:
   * data, and the pack_rows that laid them out), else NULL; data stays the plain rows */
  const void *packed;
  void (*packed_layout)(void);
} nllm_weight;

/* The activations and KV cache one backend computes in: host memory for the CPU, device
 * memory for the GPU. */
typedef struct nllm_fw_bufs {
  /* [n_batch][...] activations; qkv is the fused projection's output before the split (on the
   * CPU it is q itself, split in place) */
  float *x, *xb, *q, *qkv, *k, *v, *att, *gate, *up;
  uint8_t *k_cache, *v_cache; /* n_ctx * row per layer (il at il - first_layer), laid out by
                               * the backend's kv_store (the CPU's: head-major) */
  float *lora_t; /* the lowrank op's A x: n_batch rows of the ranks of one call's products
                  * (nllm_forward_lora_reserve sizes it), NULL until an adapter is attached */
  int32_t first_layer;
  float *logits; /* the head's output when this backend runs it (GPU), NULL: the caller's */
} nllm_fw_bufs;

/* Where the n rows of one forward call sit. Contiguous (pos NULL): row t at position pos0 + t,
 * its K/V in cache row pos0 + t, seeing cache rows 0.. of its position. Paged: row t at pos[t],
 * its K/V in cache row cell[t], seeing the n_vis[t] cells vis_cell[t][..] at positions
 * vis_pos[t][..] (src/engine/kv_cells.h). The CUDA backend takes contiguous rows only. */
typedef struct nllm_fw_rows {
  int64_t n;
  int32_t pos0;
  const int32_t *pos, *cell;
  const int32_t *const *vis_cell;
  const int32_t *const *vis_pos;
  const int32_t *n_vis;
} nllm_fw_rows;

/* A sparse FFN: the router [n_expert][d], and the experts' matrices stacked (rows and cols give
 * one expert's matrix; gate/up ff x d, down d x ff). */
typedef struct nllm_fw_moe {
  const nllm_weight *router, *gate, *up, *down;
  /* Qwen2-MoE's shared expert (sh_gate->data NULL: none) and its gate vector [d] */
  const nllm_weight *sh_gate, *sh_up, *sh_down;
  const float *sh_gate_inp;
  int64_t d, ff;
  int32_t n_expert, n_used, norm;
} nllm_fw_moe;

/* One low-rank product of a LoRA adapter on a layer matrix W [out][in]: y += s B (A x), with A
 * [r][in] and B packed in panels of its transpose (kernels/ops.h nllm_lowrank_bt_index), both
 * of one type (F32, F16 or BF16) in host memory, the adapter's. */
#define NLLM_FW_LOWRANK_MAX 3 /* products of one lowrank call */
typedef struct nllm_fw_lowrank {
  int32_t type, r;
  int64_t in, out;
  const void *a, *bt;
  float s;
  float *y; /* [n][out] in the backend's memory */
} nllm_fw_lowrank;

typedef struct nllm_fw_ops nllm_fw_ops;

/* One backend of a context: its operations, its own state, its buffers, and the first failure
 * of an op since the forward pass last cleared it. An op that fails records its status (the
 * message is in nllm_last_error) and every later op of this backend does nothing, so the
 * forward pass checks `st` once per layer instead of after each call. */
typedef struct nllm_fw_backend {
  const nllm_fw_ops *ops;
  void *ctx;
  nllm_fw_bufs b;
  nllm_status st;
} nllm_fw_backend;

/* The operations of the forward pass on one backend: pure math on that backend's memory. A
 * pointer argument points into the backend's memory unless it says host. */
struct nllm_fw_ops {
  /* out[t] = scale * row ids[t] of w, dequantized, t < n; ids in host memory */
  void (*get_rows)(nllm_fw_backend *be, float *out, const nllm_weight *w, const int32_t *ids,
                   int64_t n, float scale);
  /* per row of width: x / sqrt(mean(x^2) + eps) * w; in place allowed */
  void (*rmsnorm)(nllm_fw_backend *be, float *out, const float *x, const nllm_weight *w,
                  int64_t width, int64_t rows, float eps);
  /* y[n][w.rows] = x[n][w.cols] @ w^T */
  void (*matmul)(nllm_fw_backend *be, float *y, const nllm_weight *w, const float *x, int64_t n);
  /* y[t * stride + i] += b[i], t < n; nothing when b has no data */
  void (*add_bias)(nllm_fw_backend *be, float *y, const nllm_weight *b, int64_t n, int64_t stride);
  /* rows [n][qd + 2 kvd] of qkv into q, k, v; q may be qkv itself (then split in place) */
  void (*split_qkv)(nllm_fw_backend *be, float *q, float *k, float *v, const float *qkv, int64_t qd,
                    int64_t kvd, int64_t n);
  /* RoPE on rows of heads * head_dim at the rows' positions, first n_rot dims of each head;
   * inv_freq: n_rot/2 frequencies; neox: pairs (i, i + n_rot/2), else (2i, 2i+1) */
  void (*rope)(nllm_fw_backend *be, float *x, int64_t heads, int64_t head_dim, int64_t n_rot,
               const nllm_weight *inv_freq, int neox, const nllm_fw_rows *rows);
  /* rows [n][n_head_kv * head_dim] of K (is_v 0) or V into one layer's cache at their cells */
  void (*kv_store)(nllm_fw_backend *be, uint8_t *cache, const float *src, int is_v,
                   const nllm_fw_rows *rows);
  /* a's q rows over one layer's cache (RoPE applied, GQA by n_head / n_head_kv) at the rows'
   * positions */
  void (*attention)(nllm_fw_backend *be, const nllm_attn *a, const nllm_fw_rows *rows);
  /* x[i] += y[i] */
  void (*add)(nllm_fw_backend *be, float *x, const float *y, int64_t count);
  /* out[t * width + i] = act(gate[t * in_stride + i]) * up[t * in_stride + i], i < width,
   * t < n; act = SiLU, or tanh-GELU when gelu; out may alias up */
  void (*glu)(nllm_fw_backend *be, float *out, const float *gate, const float *up,
              int64_t in_stride, int64_t width, int64_t n, int gelu);
  /* y = c * tanh(y / c) */
  void (*softcap)(nllm_fw_backend *be, float *y, float c, int64_t count);
  /* LayerNorm with bias (b may have no data), the erf GELU in place: NULL where the backend
   * has none (the CUDA backend: encoder models stay on the CPU) */
  void (*layernorm)(nllm_fw_backend *be, float *out, const float *x, const nllm_weight *w,
                    const nllm_weight *b, int64_t width, int64_t rows, float eps);
  void (*gelu_erf)(nllm_fw_backend *be, float *x, int64_t count);
  /* a sparse FFN on x [n][d] in place: router, top-k, the chosen experts. NULL: the backend
   * has no expert kernel (the forward pass hands the rows to the CPU's) */
  void (*moe)(nllm_fw_backend *be, float *x, int64_t n, const nllm_fw_moe *a);
  /* y[i][n][w[i].rows] = x[n][cols] @ w[i]^T for up to four matrices of the same
   * input (q, k, v; gate, up); NULL where the backend has none (matmul per matrix) */
  void (*matmul_group)(nllm_fw_backend *be, float *const *y, const nllm_weight *const *w, int n_w,
                       const float *x, int64_t n);
  /* the products p[0..n_p) of one input x [n][p->in] (a layer's q, k and v share one pass
   * over it), at most NLLM_FW_LOWRANK_MAX, their ranks summing to what b.lora_t holds. NULL where
   * the backend has none (the CUDA backend: a context with GPU layers refuses adapters) */
  void (*lowrank)(nllm_fw_backend *be, const nllm_fw_lowrank *p, int n_p, const float *x,
                  int64_t n);
  /* host <-> this backend's memory */
  void (*from_host)(nllm_fw_backend *be, void *dst, const void *src, size_t bytes);
  void (*to_host)(nllm_fw_backend *be, void *dst, const void *src, size_t bytes);
  /* One-token steps replayed as a recorded graph (NULL where the backend has none). step_begin
   * sets the token and position: 1 when it replayed the step (the logits are in the host's
   * `logits`, the status in be->st), 0 when it started recording (the caller runs the pass,
   * which records instead of running, then step_end), -1 when it does neither (graphs off or
   * failed before: run the pass as usual). step_end(st: the pass's status) ends the recording
   * and replays it; when recording failed it turns graphs off for this context and returns
   * the failure: the caller runs the step again without. */
  int (*step_begin)(nllm_fw_backend *be, int32_t token, int32_t pos0, float *logits);
  nllm_status (*step_end)(nllm_fw_backend *be, nllm_status st, float *logits);
};

/* The sizes a backend allocates for one context. */
typedef struct nllm_fw_shape {
  int32_t n_batch, n_ctx;
  int64_t n_embd, n_head, n_head_kv, head_dim;
  int64_t ff_width;              /* the gate buffer's row (gate and up stacked: 2 n_ff) */
  int64_t qkv_width;             /* the fused projection's row, 0: no fused buffer */
  int64_t max_cols;              /* the widest matmul input */
  int64_t max_rows;              /* the widest matmul output */
  int32_t kv_type;               /* K's type (the GPU: K's and V's) */
  int32_t n_layers, first_layer; /* the cache's layers: first_layer.. */
  int64_t n_logits;              /* floats of the head's output when this backend runs it, else 0 */
  /* the CPU's: V's type, the team's size, and what its ops' scratch is sized from: every
   * matrix a matmul reads (the activations' quantization), the sparse layers (the expert
   * kernel's scratch; none: n_moe 0) */
  int32_t kv_type_v, n_threads;
  const nllm_weight *const *mats;
  int32_t n_mats;
  const nllm_fw_moe *moe;
  int32_t n_moe;
  /* the CPU's: 1: BF16 weights meet the activations rounded to BF16 (the context's
   * bf16_activations; NLLM_MATMUL_XBF16 in ops.h) */
  int32_t bf16_activations;
} nllm_fw_shape;

/* ---- the CPU backend (kernels/cpu/forward_ops.c) */

extern const nllm_fw_ops nllm_cpu_fw_ops;

/* A context's CPU backend: its activations, the cache of layers first_layer.. (n_layers of
 * them, laid out by its kv_store), and its ops' scratch. */
nllm_status nllm_cpu_fw_init(nllm_fw_backend *be, const nllm_fw_shape *s);
void nllm_cpu_fw_free(nllm_fw_backend *be);
/* Room in b.lora_t for the lowrank op's products: n_batch rows of n_products ranks of up to
 * max_rank each; grows only (a smaller request keeps what is there). */
nllm_status nllm_cpu_fw_reserve_lowrank(nllm_fw_backend *be, int32_t n_batch, int32_t max_rank,
                                        int32_t n_products);

/* Cache maintenance on the CPU backend's layout ([layer][n_head_kv][n_ctx][head_dim] rows
 * of each type) over its first n_layers layers: rotate the keys of cell by delta positions (a
 * context shift; inv_freq: n_rot/2 frequencies), copy cell src to dst, and the bytes of one
 * cell (per layer K's heads, then V's) out of the cache into buf or back. */
void nllm_cpu_kv_shift(const nllm_fw_backend *be, int32_t n_layers, int32_t cell, int32_t delta,
                       int64_t n_rot, const float *inv_freq, int neox);
void nllm_cpu_kv_copy(const nllm_fw_backend *be, int32_t n_layers, int32_t src, int32_t dst);
uint64_t nllm_cpu_kv_cell_bytes(const nllm_fw_backend *be, int32_t n_layers);
void nllm_cpu_kv_cell_io(const nllm_fw_backend *be, int32_t n_layers, int32_t cell, uint8_t *buf,
                         int to_cache);

/* ---- the CUDA backend (kernels/cuda/forward_ops.c; in a build without CUDA every call fails
 * with NLLM_ERR_UNSUPPORTED) */

/* A model's weights on the device: each put uploads one weight and points its .dev at the
 * copy, which lives until the store is freed. */
typedef struct nllm_cuda_store nllm_cuda_store;
/* Opens the first device; name / cc / free and total bytes describe it for messages. */
nllm_status nllm_cuda_store_new(int32_t capacity, nllm_cuda_store **out, char *name,
                                size_t name_cap, int32_t *cc, size_t *free_bytes,
                                size_t *total_bytes);
/* Device bytes a matrix (matrix != 0) or F32 vector will take. */
size_t nllm_cuda_store_bytes(const nllm_weight *w, int matrix);
nllm_status nllm_cuda_store_put(nllm_cuda_store *s, nllm_weight *w, int matrix, const char *name);
/* Waits until every upload is done. */
nllm_status nllm_cuda_store_sync(nllm_cuda_store *s);
void nllm_cuda_store_free(nllm_cuda_store *s);

/* A context's device backend: its own stream, activations and KV cache. */
nllm_status nllm_cuda_fw_init(nllm_fw_backend *be, const nllm_fw_shape *s);
void nllm_cuda_fw_free(nllm_fw_backend *be);

#endif
