/* NEON dot products of the IQ codebook formats against Q8_K activations: their rows of the NEON
 * tier (dequantization stays the scalar reference's). The layouts are read by the same chunk
 * readers as the scalar kernels (iq_layout.h). Products are widened to 16 bits (no saturation,
 * no sign trick), the integer sums equal the scalar ones and the float steps are the same, so
 * the results are bit-identical to quant_iq_ref.c. */
#include <arm_neon.h>

#include "cpu/iq_layout.h"

/* Group l's sign byte as 8 bytes of 0 / 0xff (bit j: element j negative). */
static inline int8x8_t iq_sign_mask(uint32_t signs, int l) {
  const uint8x8_t bits = vcreate_u8(0x8040201008040201ull);
  return vreinterpret_s8_u8(vtst_u8(vdup_n_u8((uint8_t)iq_byte(signs, l)), bits));
}

typedef void (*iq_chunk_fn)(const uint8_t *blk, int c, iq_chunk *out);

static inline __attribute__((always_inline)) void iq_vec_dot_neon(int64_t n, float *s,
                                                                  const void *vx, const void *vy,
                                                                  size_t block_bytes,
                                                                  iq_chunk_fn chunk, int ternary,
                                                                  int iq1m_scale, float group_mul) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const uint8_t *blk = x + (size_t)i * block_bytes;
    int32x4_t acc = vdupq_n_s32(0);
    for (int c = 0; c < QK_K / 32; c++) {
      iq_chunk ch;
      chunk(blk, c, &ch);
      IQ_UNROLL4
      for (int l = 0; l < 4; l++) {
        const int8x8_t q8 = vld1_s8(y[i].qs + 32 * c + 8 * l);
        int8x8_t g = vreinterpret_s8_u64(vcreate_u64(ch.grid[l]));
        int16x8_t p;
        if (ternary) {
          /* 8 * grid * q8 +- q8 */
          int16x8_t q16 = vmovl_s8(q8);
          p = vshlq_n_s16(vmull_s8(g, q8), 3);
          p = iq_byte(ch.signs, l) ? vsubq_s16(p, q16) : vaddq_s16(p, q16);
        } else {
          const int8x8_t m = iq_sign_mask(ch.signs, l);
          g = vsub_s8(veor_s8(g, m), m); /* negate where m = -1 */
          p = vmull_s8(g, q8);
        }
        acc = vmlaq_n_s32(acc, vpaddlq_s16(p), (int32_t)iq_byte(ch.odd, l));
      }
    }
    float d = iq1m_scale ? iq1_m_block_d(blk) : iq_block_d(blk);
    const float p = (d * y[i].d) * (float)vaddvq_s32(acc); /* not fused: as the reference */
    sum += p;
  }
  *s = sum * group_mul * (ternary ? 0.125f : 1.0f);
}

static void iq2_xxs_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_neon(n, s, vx, vy, sizeof(block_iq2_xxs), iq2_xxs_chunk, 0, 0, 0.125f);
}
static void iq2_xs_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_neon(n, s, vx, vy, sizeof(block_iq2_xs), iq2_xs_chunk, 0, 0, 0.125f);
}
static void iq2_s_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_neon(n, s, vx, vy, sizeof(block_iq2_s), iq2_s_chunk, 0, 0, 0.125f);
}
static void iq3_xxs_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_neon(n, s, vx, vy, sizeof(block_iq3_xxs), iq3_xxs_chunk, 0, 0, 0.25f);
}
static void iq3_s_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_neon(n, s, vx, vy, sizeof(block_iq3_s), iq3_s_chunk, 0, 0, 1.0f);
}
static void iq1_s_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_neon(n, s, vx, vy, sizeof(block_iq1_s), iq1_s_chunk, 1, 0, 1.0f);
}
static void iq1_m_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_neon(n, s, vx, vy, sizeof(block_iq1_m), iq1_m_chunk, 1, 1, 1.0f);
}

static const nllm_qtype_kernels iq_neon_rows[] = {
    {.type = NLLM_TYPE_IQ2_XXS, .vec_dot = iq2_xxs_vec_dot_neon},
    {.type = NLLM_TYPE_IQ2_XS, .vec_dot = iq2_xs_vec_dot_neon},
    {.type = NLLM_TYPE_IQ2_S, .vec_dot = iq2_s_vec_dot_neon},
    {.type = NLLM_TYPE_IQ3_XXS, .vec_dot = iq3_xxs_vec_dot_neon},
    {.type = NLLM_TYPE_IQ3_S, .vec_dot = iq3_s_vec_dot_neon},
    {.type = NLLM_TYPE_IQ1_S, .vec_dot = iq1_s_vec_dot_neon},
    {.type = NLLM_TYPE_IQ1_M, .vec_dot = iq1_m_vec_dot_neon},
};
const nllm_kernel_set nllm_kernels_iq_neon = {iq_neon_rows,
                                              sizeof iq_neon_rows / sizeof iq_neon_rows[0]};
