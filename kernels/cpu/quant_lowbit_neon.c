/* NEON dot products of the ternary TQ1_0 / TQ2_0 (against Q8_K) and of MXFP4 (against Q8_0): their
 * rows of the NEON tier (dequantization stays quant_lowbit_ref.c's). The weights become int8
 * values (-1..2, or MXFP4's doubled levels) and the products are exact (SDOT with the dotprod
 * extension, else widened to 16 bits); each block's integer sum is exact and the float steps are
 * the reference's, in its order, so the results are bit-identical to the scalar rows. */
#include <arm_neon.h>

#include "cpu/quant.h"

static inline int32x4_t lowbit_dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(acc, a, b);
#else
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
  return vpadalq_s16(acc, vmull_high_s8(a, b));
#endif
}

/* Base-3 digit k of each byte b (the powers 3^k per byte in p): the top byte of b * 3^k
 * (mod 256, which the byte multiply does), times 3, >> 8; minus 1 for the ternary value. */
static inline int8x16_t tq1_values(uint8x16_t b, uint8x16_t p) {
  const uint8x16_t q = vmulq_u8(b, p);
  const uint8x8_t three = vdup_n_u8(3);
  const uint8x16_t d = vcombine_u8(vshrn_n_u16(vmull_u8(vget_low_u8(q), three), 8),
                                   vshrn_n_u16(vmull_high_u8(q, vdupq_n_u8(3)), 8));
  return vsubq_s8(vreinterpretq_s8_u8(d), vdupq_n_s8(1));
}

static void tq1_0_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_tq1_0 *x = vx;
  const block_q8_K *y = vy;
  static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
  /* byte j of the qh vector is qh[j % 4], digit j / 4 */
  static const uint8_t qh_pow[16] = {1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27};
  const uint8x16_t qhp = vld1q_u8(qh_pow);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    const int8_t *q8 = y[b].qs;
    int32x4_t acc = vdupq_n_s32(0);
    const uint8x16_t x0 = vld1q_u8(x[b].qs), x1 = vld1q_u8(x[b].qs + 16),
                     x2 = vld1q_u8(x[b].qs + 32);
    for (int k = 0; k < 5; k++) {
      const uint8x16_t p = vdupq_n_u8(pow3[k]);
      /* qs[0..31]: digit k is elements 32k ..; qs[32..47]: elements 160 + 16k .. */
      acc = lowbit_dot16(acc, tq1_values(x0, p), vld1q_s8(q8 + 32 * k));
      acc = lowbit_dot16(acc, tq1_values(x1, p), vld1q_s8(q8 + 32 * k + 16));
      acc = lowbit_dot16(acc, tq1_values(x2, p), vld1q_s8(q8 + 160 + 16 * k));
    }
    uint32_t qh;
    memcpy(&qh, x[b].qh, 4);
    acc = lowbit_dot16(acc, tq1_values(vreinterpretq_u8_u32(vdupq_n_u32(qh)), qhp),
                       vld1q_s8(q8 + 240));
    const float p = (float)vaddvq_s32(acc) * (y[b].d * q_h2f(x[b].d));
    sum += p;
  }
  *s = sum;
}

static void tq2_0_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_tq2_0 *x = vx;
  const block_q8_K *y = vy;
  const uint8x16_t m3 = vdupq_n_u8(3);
  const int8x16_t one = vdupq_n_s8(1);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int32x4_t acc = vdupq_n_s32(0);
    /* bits 2l..2l+1 of byte m of half h (32 bytes) are element 128h + 32l + m */
    for (int h = 0; h < 2; h++)
      for (int half = 0; half < 2; half++) {
        const uint8x16_t q = vld1q_u8(x[b].qs + 32 * h + 16 * half);
        const int8_t *q8 = y[b].qs + 128 * h + 16 * half;
        for (int l = 0; l < 4; l++) {
          const uint8x16_t u = vandq_u8(vshlq_u8(q, vdupq_n_s8((int8_t)(-2 * l))), m3);
          acc = lowbit_dot16(acc, vsubq_s8(vreinterpretq_s8_u8(u), one), vld1q_s8(q8 + 32 * l));
        }
      }
    const float p = (float)vaddvq_s32(acc) * (y[b].d * q_h2f(x[b].d));
    sum += p;
  }
  *s = sum;
}

static inline float mxfp4_half_scale_neon(uint8_t e) {
  uint32_t u = e == 0xFF ? 0x7fc00000u : e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* MXFP4: the doubled E2M1 levels (integers) looked up with a table instruction; the scale
 * 2^(e - 128) carries the half, as in the reference. */
static void mxfp4_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_mxfp4 *x = vx;
  const block_q8_0 *y = vy;
  static const int8_t levels2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
  const int8x16_t lut = vld1q_s8(levels2);
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    const uint8x16_t q = vld1q_u8(x[b].qs);
    /* low nibbles are elements 0..15, high 16..31 */
    const int8x16_t lo = vqtbl1q_s8(lut, vandq_u8(q, vdupq_n_u8(15)));
    const int8x16_t hi = vqtbl1q_s8(lut, vshrq_n_u8(q, 4));
    int32x4_t acc = lowbit_dot16(vdupq_n_s32(0), lo, vld1q_s8(y[b].qs));
    acc = lowbit_dot16(acc, hi, vld1q_s8(y[b].qs + 16));
    const float p = (float)vaddvq_s32(acc) * (mxfp4_half_scale_neon(x[b].e) * q_h2f(y[b].d));
    sum += p;
  }
  *s = sum;
}

static const nllm_qtype_kernels lowbit_neon_rows[] = {
    {.type = NLLM_TYPE_TQ1_0, .vec_dot = tq1_0_vec_dot_neon},
    {.type = NLLM_TYPE_TQ2_0, .vec_dot = tq2_0_vec_dot_neon},
    {.type = NLLM_TYPE_MXFP4, .vec_dot = mxfp4_vec_dot_neon},
};
const nllm_kernel_set nllm_kernels_lowbit_neon = {
    lowbit_neon_rows, sizeof lowbit_neon_rows / sizeof lowbit_neon_rows[0]};
