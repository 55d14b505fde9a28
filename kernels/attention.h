/* Causal attention of a batch of queries over the KV cache. Memory is linear in the context:
 * scores live in a per-thread scratch of n_rep * n_ctx floats, never n_tok * n_ctx, plus a
 * fixed number of partial results for the split of a long context over threads. */
#ifndef NLLM_ATTENTION_H
#define NLLM_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

/* One attention call as every backend takes it (the CPU kernel below, nllm_cuda_attention in
 * cuda/backend_cuda.h): the query rows, one layer's cache in that backend's memory, the heads
 * and how the scores are shaped. The forward pass fills it once a layer; each backend wraps it
 * with the rows' positions, its cache's types and layout, and its scratch. */
typedef struct nllm_attn {
  float *out;        /* [n_tok][n_head * head_dim] */
  const float *q;    /* [n_tok][n_head * head_dim], RoPE applied */
  const void *k, *v; /* one layer of the cache */
  int64_t n_head, n_head_kv, head_dim;
  float scale, softcap; /* softcap 0 = off; else s = softcap * tanh(s / softcap) */
  int32_t window;       /* 0 = off; else only the last `window` positions are visible */
} nllm_attn;

typedef struct nllm_attn_args {
  nllm_attn attn;      /* k, v: [n_ctx][n_head_kv * head_dim] unless the strides below say */
  int32_t kv_type;     /* F32, F16 (SIMD paths), BF16, Q8_0, Q4_0 (rows converted one at a time) */
  int64_t n_tok, pos0; /* query t sits at position pos0 + t and sees 0..pos0+t */
  /* Cache layout, in elements: from one position of a KV head to the next, and from one KV
   * head to the next. 0, 0: [n_ctx][n_head_kv][head_dim]. */
  int64_t kv_pos_stride, kv_head_stride;
  float *scratch; /* n_threads * nllm_attention_scratch(...) floats */
  size_t scratch_per_thread;
  int n_threads;
  /* 0: split the context of a few tokens into chunks when it is long (see attention.c);
   * > 0: split whenever the batch allows it, into chunks of at least this many positions;
   * < 0: never split. Tests force both; callers leave it 0. */
  int32_t split;
  /* A cache of cells shared by many sequences (src/engine/kv_cells.c): query t attends to the
   * n_vis[t] cells vis_cell[t][0..) in increasing position order, whose positions are
   * vis_pos[t][..] (for the sliding window), its own being tok_pos[t]; the cache row of a cell
   * is its index. NULL: the contiguous cache above (position = row, pos0 + t). */
  const int32_t *const *vis_cell;
  const int32_t *const *vis_pos;
  const int32_t *n_vis;
  const int32_t *tok_pos;
  /* V's type when v_typed is non-zero (a cache with K and V of different types), else
   * kv_type. Offsets stay in elements: a row of head_dim must be whole blocks. */
  int32_t v_typed, v_type;
} nllm_attn_args;

/* Element offset of (position, KV head) in the cache of a. */
static inline int64_t nllm_attn_kv_offset(const nllm_attn_args *a, int64_t pos, int64_t kvh) {
  const int64_t ps = a->kv_pos_stride ? a->kv_pos_stride : a->attn.n_head_kv * a->attn.head_dim;
  const int64_t hs = a->kv_head_stride ? a->kv_head_stride : a->attn.head_dim;
  return pos * ps + kvh * hs;
}

/* The cache row holding visible position j of query t. */
static inline int64_t nllm_attn_row(const nllm_attn_args *a, int64_t t, int64_t j) {
  return a->vis_cell ? a->vis_cell[t][j] : j;
}

size_t nllm_attention_scratch(int64_t n_ctx, int64_t n_head, int64_t n_head_kv, int64_t head_dim);
void nllm_attention(const nllm_attn_args *a);

#endif
