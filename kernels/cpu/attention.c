/* Causal GQA attention over the KV cache (see attention.h). Work is split over (token, KV head)
 * pairs so each cached K/V row is converted once and reused by every query head sharing it.
 * attn_item below is the scalar reference; with AVX2 (and head_dim a multiple of 8) each pair
 * goes to nllm_attn_item_avx2 in attention_avx2.c instead. */
#include "attention.h"

#include <math.h>
#include <string.h>

#include "nativellm.h"
#include "ops.h"
#include "qtypes.h"

#include "cpu/quant.h"
#include "pool.h"

size_t nllm_attention_scratch(int64_t n_ctx, int64_t n_head, int64_t n_head_kv, int64_t head_dim) {
  int64_t n_rep = n_head / n_head_kv, rows = n_rep;
  /* the SIMD path keeps the scores of up to 8 heads in lanes of a power of two of them */
  while (n_rep < 8 && (rows & (rows - 1))) rows++;
  return (size_t)(rows * n_ctx + 2 * head_dim + 16);
}

/* A cached row as f32: a pointer into the cache itself for F32, else converted into tmp. */
static inline const float *kv_row(const void *base, int32_t type, int64_t idx, int64_t n,
                                  nllm_to_float_fn f16_to_f32, float *tmp) {
  if (type == NLLM_TYPE_F32) return (const float *)base + idx * n;
  f16_to_f32((const uint16_t *)base + idx * n, tmp, n);
  return tmp;
}

typedef struct attn_job {
  const nllm_attn_args *a;
  nllm_to_float_fn f16;
  int avx2; /* decided once per call: the CPU check is not free per row */
} attn_job;

/* One (token, KV head) pair: scores of its n_rep query heads, softmax, weighted sum of V. */
static void attn_item(void *vjob, int64_t it, int worker) {
  const attn_job *job = vjob;
  const nllm_attn_args *a = job->a;
#if defined(__x86_64__)
  if (job->avx2) {
    nllm_attn_item_avx2(a, it / a->n_head_kv, it % a->n_head_kv,
                        a->scratch + (size_t)worker * a->scratch_per_thread);
    return;
  }
#endif
  const nllm_to_float_fn f16 = job->f16;
  const int64_t hd = a->head_dim, n_rep = a->n_head / a->n_head_kv;
  const int64_t kv_stride = a->n_head_kv; /* rows of hd per position */
  const int64_t q_stride = a->n_head * hd;
  const int64_t t = it / a->n_head_kv, kvh = it % a->n_head_kv;
  const int64_t pos = a->pos0 + t;
  const int64_t first = a->window > 0 && pos + 1 > a->window ? pos + 1 - a->window : 0;
  const int64_t n_vis = pos + 1 - first;
  float *scores = a->scratch + (size_t)worker * a->scratch_per_thread; /* [n_rep][n_vis] */
  float *tmp = scores + n_rep * n_vis;
  const float *qh = a->q + t * q_stride + kvh * n_rep * hd;

  for (int64_t j = 0; j < n_vis; j++) {
    const float *kr = kv_row(a->k, a->kv_type, (first + j) * kv_stride + kvh, hd, f16, tmp);
    for (int64_t r = 0; r < n_rep; r++) {
      float s = nllm_dot_f32(qh + r * hd, kr, hd) * a->scale;
      if (a->softcap > 0) s = a->softcap * tanhf(s / a->softcap);
      scores[r * n_vis + j] = s;
    }
  }
  for (int64_t r = 0; r < n_rep; r++) {
    nllm_softmax(scores + r * n_vis, n_vis);
    memset(a->out + t * q_stride + (kvh * n_rep + r) * hd, 0, (size_t)hd * sizeof(float));
  }
  for (int64_t j = 0; j < n_vis; j++) {
    const float *vr = kv_row(a->v, a->kv_type, (first + j) * kv_stride + kvh, hd, f16, tmp);
    for (int64_t r = 0; r < n_rep; r++)
      nllm_axpy_f32(a->out + t * q_stride + (kvh * n_rep + r) * hd, scores[r * n_vis + j], vr, hd);
  }
}

void nllm_attention(const nllm_attn_args *a) {
  attn_job job = {a, nllm_qtype_get(NLLM_TYPE_F16)->to_float,
                  nllm_cpu_has_avx2() && a->head_dim % 8 == 0};
  nllm_pool_run(a->n_threads, a->n_tok * a->n_head_kv, attn_item, &job);
}
