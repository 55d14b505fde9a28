/* Decode attention (one query token) over an F16 and an F32 KV cache, scalar reference against
 * the dispatched SIMD path, at 1 and 2 threads: microseconds per layer call and the K+V bytes
 * read per second. Shapes: TinyLlama 1.1B (32 heads over 4 KV heads, head_dim 64), a 7/1 GQA
 * with head_dim 128, multi-query Gemma 2B (8 heads over 1 KV head, head_dim 256) and plain
 * multi-head (stories110M); the SIMD path also through a cell index (a context's paged cache). Then
 * a prompt's attention on the multi-head shape, tokens one at a time against tokens in groups
 * (nllm_attn_args.group). Best of several runs, so a busy machine shows less. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "attention.h"
#include "core/core.h"
#include "nativellm.h"
#include "qtypes.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct shape {
  const char *name;
  int64_t n_head, n_head_kv, head_dim;
} shape;

/* One call of the shape's heads over k, v (kv_type) for n_tok tokens from pos0. */
static nllm_attn_args args_of(const shape *s, float *out, const float *q, const void *k,
                              const void *v, int32_t kv_type, int64_t n_tok, int64_t pos0,
                              float *scratch, size_t per, int n_threads) {
  return (nllm_attn_args){.attn = {.out = out,
                                   .q = q,
                                   .k = k,
                                   .v = v,
                                   .n_head = s->n_head,
                                   .n_head_kv = s->n_head_kv,
                                   .head_dim = s->head_dim,
                                   .scale = 1.0f / sqrtf((float)s->head_dim)},
                          .kv_type = kv_type,
                          .n_tok = n_tok,
                          .pos0 = pos0,
                          .scratch = scratch,
                          .scratch_per_thread = per,
                          .n_threads = n_threads};
}

static double time_call(nllm_attn_args *a, int reps) {
  double best = INFINITY;
  for (int r = 0; r < 5; r++) {
    double t0 = now_s();
    for (int i = 0; i < reps; i++) nllm_attention(a);
    double dt = (now_s() - t0) / reps;
    best = dt < best ? dt : best;
  }
  return best;
}

/* A prompt of n_tok tokens from position 0 (F16 cache, 1 thread): one token at a time against
 * the grouped rows, alternately, best of each. */
static void prompt_rows(const shape *s, int64_t n_tok) {
  const int64_t qn = n_tok * s->n_head * s->head_dim, row = s->n_head_kv * s->head_dim;
  float *q = malloc((size_t)qn * sizeof(float)), *out = malloc((size_t)qn * sizeof(float));
  uint16_t *k = malloc((size_t)(n_tok * row) * 2), *v = malloc((size_t)(n_tok * row) * 2);
  const size_t per = nllm_attention_scratch(n_tok, s->n_head, s->n_head_kv, s->head_dim);
  float *scratch = malloc(per * sizeof(float));
  if (!q || !out || !k || !v || !scratch) exit(1);
  uint32_t seed = 7;
  for (int64_t i = 0; i < qn; i++) {
    seed = seed * 1664525u + 1013904223u;
    q[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
  }
  for (int64_t i = 0; i < n_tok * row; i++) {
    seed = seed * 1664525u + 1013904223u;
    k[i] = nllm_fp32_to_fp16((float)(seed >> 8) / 16777216.0f - 0.5f);
    v[i] = nllm_fp32_to_fp16((float)(seed >> 9) / 8388608.0f - 0.5f);
  }
  nllm_attn_args a = args_of(s, out, q, k, v, NLLM_TYPE_F16, n_tok, 0, scratch, per, 1);
  const int reps = (int)(4000000 / (n_tok * n_tok)) + 1;
  double t_one = INFINITY, t_grp = INFINITY;
  for (int round = 0; round < 3; round++) {
    a.group = -1;
    const double t1 = time_call(&a, reps);
    a.group = 0;
    const double tg = time_call(&a, reps);
    t_one = t1 < t_one ? t1 : t_one;
    t_grp = tg < t_grp ? tg : t_grp;
  }
  printf("1t %-14s F16 prompt %4lld: one token at a time %8.1f us, grouped %8.1f us (%4.2fx)\n",
         s->name, (long long)n_tok, t_one * 1e6, t_grp * 1e6, t_one / t_grp);
  free(q);
  free(out);
  free(k);
  free(v);
  free(scratch);
}

int main(void) {
  static const shape shapes[] = {{"1.1B 32/4x64", 32, 4, 64},
                                 {"7/1x128", 7, 1, 128},
                                 {"MQA 8/1x256", 8, 1, 256},
                                 {"MHA 12/12x64", 12, 12, 64}};
  static const int64_t ctxs[] = {128, 1024, 4096};
  static const int32_t types[] = {NLLM_TYPE_F16, NLLM_TYPE_F32};
  printf("cpu: %s\n", nllm_cpu_features());
  for (int nt = 1; nt <= 2; nt++)
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
      for (size_t ti = 0; ti < 2; ti++)
        for (size_t ci = 0; ci < sizeof ctxs / sizeof ctxs[0]; ci++) {
          const shape *s = &shapes[si];
          const int64_t n_ctx = ctxs[ci], row = s->n_head_kv * s->head_dim;
          const size_t esz = types[ti] == NLLM_TYPE_F16 ? 2 : 4;
          float *q = malloc((size_t)(s->n_head * s->head_dim) * sizeof(float));
          float *out = malloc((size_t)(s->n_head * s->head_dim) * sizeof(float));
          void *k = malloc((size_t)(n_ctx * row) * esz), *v = malloc((size_t)(n_ctx * row) * esz);
          const size_t per = nllm_attention_scratch(n_ctx, s->n_head, s->n_head_kv, s->head_dim);
          float *scratch = malloc(per * (size_t)nt * sizeof(float));
          if (!q || !out || !k || !v || !scratch) return 1;
          uint32_t seed = 1;
          for (int64_t i = 0; i < s->n_head * s->head_dim; i++) {
            seed = seed * 1664525u + 1013904223u;
            q[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
          }
          for (int64_t i = 0; i < n_ctx * row; i++) {
            seed = seed * 1664525u + 1013904223u;
            float x = (float)(seed >> 8) / 16777216.0f - 0.5f;
            if (esz == 2) {
              ((uint16_t *)k)[i] = nllm_fp32_to_fp16(x);
              ((uint16_t *)v)[i] = nllm_fp32_to_fp16(-x);
            } else {
              ((float *)k)[i] = x;
              ((float *)v)[i] = -x;
            }
          }
          nllm_attn_args a = args_of(s, out, q, k, v, types[ti], 1, n_ctx - 1, scratch, per, nt);
          const int reps = (int)(200000 / n_ctx) + 1;
          nllm_qtypes_force_scalar(1);
          const double ts = time_call(&a, reps);
          nllm_qtypes_force_scalar(0);
          const double tv = time_call(&a, reps);
          /* The same rows through the cell index a context's cache always uses (one sequence,
           * cells in position order), which takes the kernels' prefetching path. */
          int32_t *cells = malloc((size_t)n_ctx * sizeof(int32_t));
          if (!cells) return 1;
          for (int64_t j = 0; j < n_ctx; j++) cells[j] = (int32_t)j;
          const int32_t *const cell_rows[1] = {cells};
          const int32_t n_vis = (int32_t)n_ctx, tok_pos = (int32_t)(n_ctx - 1);
          a.vis_cell = cell_rows;
          a.vis_pos = cell_rows;
          a.n_vis = &n_vis;
          a.tok_pos = &tok_pos;
          const double tp = time_call(&a, reps);
          free(cells);
          const double bytes = 2.0 * (double)(n_ctx * row) * (double)esz;
          printf(
              "%dt %-14s %s ctx %5lld: scalar %8.1f us, simd %7.1f us (%5.1fx, %5.1f GB/s), "
              "by cell %7.1f us\n",
              nt, s->name, esz == 2 ? "F16" : "F32", (long long)n_ctx, ts * 1e6, tv * 1e6, ts / tv,
              bytes / tv * 1e-9, tp * 1e6);
          free(q);
          free(out);
          free(k);
          free(v);
          free(scratch);
        }
  for (int64_t n_tok = 128; n_tok <= 512; n_tok *= 4) prompt_rows(&shapes[3], n_tok);
  return 0;
}
