/* Blocks of random bits for the kernel tests: every level, scale and high bit, extremes
 * included, which a quantizer seldom writes. Plain C (the aarch64 test has no Check). */
#ifndef NLLM_TEST_RANDOM_BLOCKS_H
#define NLLM_TEST_RANDOM_BLOCKS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cpu/quant.h"
#include "qtypes.h"
#include "test_rng.h"

/* Where each block format keeps its fp16 scales (at most two). */
static const struct {
  int32_t type;
  int n;
  size_t off[2];
} random_blocks_halves[] = {
    {NLLM_TYPE_Q8_0, 1, {offsetof(block_q8_0, d)}},
    {NLLM_TYPE_Q4_0, 1, {offsetof(block_q4_0, d)}},
    {NLLM_TYPE_Q4_1, 2, {offsetof(block_q4_1, d), offsetof(block_q4_1, m)}},
    {NLLM_TYPE_Q5_0, 1, {offsetof(block_q5_0, d)}},
    {NLLM_TYPE_Q5_1, 2, {offsetof(block_q5_1, d), offsetof(block_q5_1, m)}},
    {NLLM_TYPE_Q2_K, 2, {offsetof(block_q2_K, d), offsetof(block_q2_K, dmin)}},
    {NLLM_TYPE_Q3_K, 1, {offsetof(block_q3_K, d)}},
    {NLLM_TYPE_Q4_K, 2, {offsetof(block_q4_K, d), offsetof(block_q4_K, dmin)}},
    {NLLM_TYPE_Q5_K, 2, {offsetof(block_q5_K, d), offsetof(block_q5_K, dmin)}},
    {NLLM_TYPE_Q6_K, 1, {offsetof(block_q6_K, d)}},
    {NLLM_TYPE_IQ4_NL, 1, {offsetof(block_iq4_nl, d)}},
    {NLLM_TYPE_IQ4_XS, 1, {offsetof(block_iq4_xs, d)}},
};

/* Uniform in [-scale, scale). */
static inline float random_blocks_float(uint64_t *s, float scale) {
  return scale * test_frand(s);
}

/* nb blocks of type at w (bs bytes each) of random bits with finite, small scales. The
 * activation formats get consistent sums (Q8_1's s, Q8_K's bsums); Q8_K's levels span
 * -128..127 as its quantizer's do, Q8_0's and Q8_1's -128..127 only with full_int8 (their
 * quantizers write |q| <= 127, which the AVX2 kernels' sign trick relies on). 0 if the format
 * has no entry here (the float formats). */
static inline int random_blocks(uint64_t *rng, int32_t type, uint8_t *w, int64_t nb, size_t bs,
                                int full_int8) {
  for (size_t i = 0; i < (size_t)nb * bs; i++) w[i] = (uint8_t)test_xorshift(rng);
  for (int64_t b = 0; b < nb; b++) {
    uint8_t *blk = w + (size_t)b * bs;
    if (type == NLLM_TYPE_Q8_K) {
      block_q8_K *y = (block_q8_K *)blk;
      y->d = random_blocks_float(rng, 0.01f);
      for (int j = 0; j < QK_K / 16; j++) {
        int sum = 0;
        for (int i = 0; i < 16; i++) sum += y->qs[16 * j + i];
        y->bsums[j] = (int16_t)sum;
      }
      continue;
    }
    int8_t *qs = type == NLLM_TYPE_Q8_0   ? ((block_q8_0 *)blk)->qs
                 : type == NLLM_TYPE_Q8_1 ? ((block_q8_1 *)blk)->qs
                                          : NULL;
    if (qs && !full_int8)
      for (int i = 0; i < QK; i++) qs[i] = qs[i] == -128 ? -127 : qs[i];
    if (type == NLLM_TYPE_Q8_1) {
      block_q8_1 *y = (block_q8_1 *)blk;
      int sum = 0;
      for (int i = 0; i < QK; i++) sum += y->qs[i];
      y->d = q_f2h(random_blocks_float(rng, 0.01f));
      y->s = q_f2h(q_h2f(y->d) * (float)sum);
      continue;
    }
    const size_t nh = sizeof random_blocks_halves / sizeof random_blocks_halves[0];
    size_t k = 0;
    while (k < nh && random_blocks_halves[k].type != type) k++;
    if (k == nh) return 0;
    for (int f = 0; f < random_blocks_halves[k].n; f++) {
      uint16_t h = q_f2h(random_blocks_float(rng, 0.02f));
      memcpy(blk + random_blocks_halves[k].off[f], &h, 2);
    }
  }
  return 1;
}

#endif
