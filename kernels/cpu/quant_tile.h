/* The scalar tier's batch kernels: four weight rows by one or four tokens a call, each weight
 * block unpacked once to integer levels for all the tokens, then for each token the integer sums
 * and float steps of the format's one-row reference dot. So a row of a batch equals the row
 * decoded alone bit for bit, which is why the scalar tier's quantized formats never cross to
 * sgemm (kernels/qtypes.c), and a prompt no longer pays the reference's unpacking per token.
 * One driver for every format; a format is its codec: how a block unpacks (in the format's
 * reference file, next to its vec_dot) and which of the reference dots' block formulas turns the
 * block's integer sum into the float the dot adds. Internal to the kernels. */
#ifndef NLLM_QUANT_TILE_H
#define NLLM_QUANT_TILE_H

#include <stddef.h>

#include "cpu/quant.h"

/* A weight block unpacked: levels in element order (the activations' order), the integer scale
 * of each group of values, and the block's float factors. */
typedef struct nllm_tile_block {
  int8_t w[QK_K];
  int32_t scale[QK_K / 8]; /* one per group: 1 where the format has no group scales */
  int32_t min[QK_K / 16];  /* K-quants with minimums: the integer minimum of each 16 values */
  float f[2];              /* d, and dmin or m where the format has one */
} nllm_tile_block;

typedef struct nllm_tile_codec {
  int32_t block;        /* values a block (the activation type's block too) */
  int32_t group;        /* values a group scale covers */
  int32_t vec_dot_type; /* Q8_0, Q8_1 or Q8_K */
  size_t x_bytes;       /* bytes a weight block */
  void (*unpack)(const uint8_t *restrict xb, nllm_tile_block *restrict u);
  /* the float the reference dot adds for the block, from the integer sum over its groups and
   * the activation block */
  float (*block_sum)(const nllm_tile_block *u, int32_t isum, const uint8_t *yb);
  float post; /* the factor the reference applies to the row's sum at the end (1: none) */
} nllm_tile_codec;

/* The reference dots' block formulas, each as its dot writes it (the order of the float steps
 * is the result: -ffp-contract=off keeps them apart). dy: Q8_0's or Q8_1's fp16 scale, both
 * first in their block; yk: Q8_K's float scale. */
static inline float tile_dy(const uint8_t *yb) {
  uint16_t d;
  memcpy(&d, yb, sizeof d);
  return q_h2f(d);
}
static inline float tile_yk(const uint8_t *yb) {
  return ((const block_q8_K *)(const void *)yb)->d;
}
/* Q8_0, Q4_0, Q5_0, IQ4_NL, MXFP4, Q8_1 weights */
static inline float tile_sum_scaled(const nllm_tile_block *u, int32_t isum, const uint8_t *yb) {
  return (float)isum * (u->f[0] * tile_dy(yb));
}
/* Q4_1, Q5_1: Q8_1's s = dy * sum(qy) carries the offset term m * sum(y) */
static inline float tile_sum_offset(const nllm_tile_block *u, int32_t isum, const uint8_t *yb) {
  const block_q8_1 *y = (const block_q8_1 *)(const void *)yb;
  return (float)isum * (u->f[0] * q_h2f(y->d)) + u->f[1] * q_h2f(y->s);
}
/* Q2_K, Q4_K, Q5_K: the minimums against Q8_K's sums of 16 */
static inline float tile_sum_kmin(const nllm_tile_block *u, int32_t isum, const uint8_t *yb) {
  const block_q8_K *y = (const block_q8_K *)(const void *)yb;
  int32_t msum = 0;
  for (int i = 0; i < QK_K / 16; i++) msum += u->min[i] * y->bsums[i];
  return y->d * (u->f[0] * (float)isum - u->f[1] * (float)msum);
}
/* Q3_K, Q6_K, IQ4_XS */
static inline float tile_sum_k(const nllm_tile_block *u, int32_t isum, const uint8_t *yb) {
  return u->f[0] * tile_yk(yb) * (float)isum;
}
/* Q8_K weights */
static inline float tile_sum_q8k(const nllm_tile_block *u, int32_t isum, const uint8_t *yb) {
  return (float)isum * u->f[0] * tile_yk(yb);
}
/* TQ1_0, TQ2_0 */
static inline float tile_sum_tq(const nllm_tile_block *u, int32_t isum, const uint8_t *yb) {
  return (float)isum * (tile_yk(yb) * u->f[0]);
}
/* the IQ codebook formats (their group factor comes in post) */
static inline float tile_sum_iq(const nllm_tile_block *u, int32_t isum, const uint8_t *yb) {
  return (u->f[0] * tile_yk(yb)) * (float)isum;
}

static inline size_t tile_y_bytes(int32_t vec_dot_type) {
  return vec_dot_type == NLLM_TYPE_Q8_K   ? sizeof(block_q8_K)
         : vec_dot_type == NLLM_TYPE_Q8_1 ? sizeof(block_q8_1)
                                          : sizeof(block_q8_0);
}
static inline size_t tile_y_qs(int32_t vec_dot_type) {
  return vec_dot_type == NLLM_TYPE_Q8_K   ? offsetof(block_q8_K, qs)
         : vec_dot_type == NLLM_TYPE_Q8_1 ? offsetof(block_q8_1, qs)
                                          : offsetof(block_q8_0, qs);
}

/* A group's integer dot: a loop of constant length once inlined, which compilers vectorize. */
static inline __attribute__((always_inline)) int32_t tile_group_dot(const int8_t *w,
                                                                    const int8_t *y, int n) {
  int32_t sum = 0;
  for (int j = 0; j < n; j++) sum += w[j] * y[j];
  return sum;
}

/* s[t * ss + r] = dot(row r, token t) for r < 4, t < n_tok (a constant: each instance keeps
 * its sums in registers), rows bx and tokens by bytes apart. Inlined into each format's
 * functions, so its codec's calls are direct and its group loops have a constant length. */
static inline __attribute__((always_inline)) void nllm_tile_dot(const nllm_tile_codec *c, int n_tok,
                                                                int64_t n, float *s, size_t ss,
                                                                const void *vx, size_t bx,
                                                                const void *vy, size_t by) {
  const uint8_t *x = vx, *y = vy;
  const size_t yb_bytes = tile_y_bytes(c->vec_dot_type), y_qs = tile_y_qs(c->vec_dot_type);
  const int64_t nb = n / c->block;
  for (int r = 0; r < 4; r++) {
    float sum[4] = {0, 0, 0, 0};
    for (int64_t b = 0; b < nb; b++) {
      nllm_tile_block u;
      c->unpack(x + (size_t)r * bx + (size_t)b * c->x_bytes, &u);
      for (int t = 0; t < n_tok; t++) {
        const uint8_t *yb = y + (size_t)t * by + (size_t)b * yb_bytes;
        const int8_t *yq = (const int8_t *)(yb + y_qs);
        int32_t isum = 0;
        for (int g = 0; g < c->block / c->group; g++)
          isum += u.scale[g] * tile_group_dot(u.w + g * c->group, yq + g * c->group, c->group);
        /* a statement of its own, as in the reference dots */
        const float p = c->block_sum(&u, isum, yb);
        sum[t] += p;
      }
    }
    for (int t = 0; t < n_tok; t++) s[(size_t)t * ss + (size_t)r] = sum[t] * c->post;
  }
}

/* A format's two batch kernels from its codec (nllm_vec_dot4_fn: four rows, one token;
 * nllm_vec_dot4x4_fn: four rows by four tokens) and their registry row. */
#define NLLM_TILE_KERNELS(name, codec)                                                             \
  static void name##_dot4_tile_ref(int64_t n, float *s, const void *x, size_t bx, const void *y) { \
    nllm_tile_dot(&(codec), 1, n, s, 1, x, bx, y, 0);                                              \
  }                                                                                                \
  static void name##_dot4x4_tile_ref(int64_t n, float *s, size_t ss, const void *x, size_t bx,     \
                                     const void *y, size_t by) {                                   \
    nllm_tile_dot(&(codec), 4, n, s, ss, x, bx, y, by);                                            \
  }
#define NLLM_TILE_ROW(type_, name) \
  { .type = (type_), .vec_dot4 = name##_dot4_tile_ref, .vec_dot4x4 = name##_dot4x4_tile_ref }

#endif
