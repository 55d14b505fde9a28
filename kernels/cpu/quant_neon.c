/* NEON kernels (baseline ARMv8-A: no dotprod extension needed). Integer dots widen int8
 * products to int16 (|a*b| <= 128*128 fits) and pairwise-accumulate into int32. */
#include <arm_neon.h>

#include "cpu/quant.h"

static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
  return vpadalq_s16(acc, vmull_high_s8(a, b));
}
static inline int dot32_i(int8x16_t a0, int8x16_t a1, const int8_t *y) {
  return vaddvq_s32(dot16(dot16(vdupq_n_s32(0), a0, vld1q_s8(y)), a1, vld1q_s8(y + 16)));
}
static inline int dot16_i(int8x16_t a, const int8_t *y) {
  return vaddvq_s32(dot16(vdupq_n_s32(0), a, vld1q_s8(y)));
}

/* ---------------------------------------------------------------- float formats */

void f32_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const float *x = vx, *y = vy;
  float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
    a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
    a2 = vfmaq_f32(a2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
    a3 = vfmaq_f32(a3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
  }
  float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; i < n; i++) sum += x[i] * y[i];
  *s = sum;
}

static inline float32x4_t h4(const uint16_t *p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}
static inline float32x4_t bf4(const uint16_t *p) {
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

void f16_to_float_neon(const void *vx, float *y, int64_t n) {
  const uint16_t *x = vx;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, h4(x + i));
  for (; i < n; i++) y[i] = q_h2f(x[i]);
}

void f16_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const uint16_t *x = vx;
  const float *y = vy;
  float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = vfmaq_f32(a0, h4(x + i), vld1q_f32(y + i));
    a1 = vfmaq_f32(a1, h4(x + i + 4), vld1q_f32(y + i + 4));
    a2 = vfmaq_f32(a2, h4(x + i + 8), vld1q_f32(y + i + 8));
    a3 = vfmaq_f32(a3, h4(x + i + 12), vld1q_f32(y + i + 12));
  }
  float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
  for (; i < n; i++) sum += q_h2f(x[i]) * y[i];
  *s = sum;
}

void bf16_to_float_neon(const void *vx, float *y, int64_t n) {
  const uint16_t *x = vx;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, bf4(x + i));
  for (; i < n; i++) y[i] = q_bf2f(x[i]);
}

void bf16_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const uint16_t *x = vx;
  const float *y = vy;
  float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    a0 = vfmaq_f32(a0, bf4(x + i), vld1q_f32(y + i));
    a1 = vfmaq_f32(a1, bf4(x + i + 4), vld1q_f32(y + i + 4));
  }
  float sum = vaddvq_f32(vaddq_f32(a0, a1));
  for (; i < n; i++) sum += q_bf2f(x[i]) * y[i];
  *s = sum;
}

/* ---------------------------------------------------------------- 32-element formats */

void q8_0_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q8_0 *x = vx, *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++)
    sum += (float)dot32_i(vld1q_s8(x[b].qs), vld1q_s8(x[b].qs + 16), y[b].qs) *
           (q_h2f(x[b].d) * q_h2f(y[b].d));
  *s = sum;
}

/* Nibbles of 16 bytes: low halves are elements 0..15, high halves 16..31. */
static inline void nibbles(const uint8_t *qs, uint8x16_t *lo, uint8x16_t *hi) {
  uint8x16_t q = vld1q_u8(qs);
  *lo = vandq_u8(q, vdupq_n_u8(15));
  *hi = vshrq_n_u8(q, 4);
}

void q4_0_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q4_0 *x = vx;
  const block_q8_0 *y = vy;
  float sum = 0;
  const int8x16_t eight = vdupq_n_s8(8);
  for (int64_t b = 0; b < n / QK; b++) {
    uint8x16_t lo, hi;
    nibbles(x[b].qs, &lo, &hi);
    int i = dot32_i(vsubq_s8(vreinterpretq_s8_u8(lo), eight),
                    vsubq_s8(vreinterpretq_s8_u8(hi), eight), y[b].qs);
    sum += (float)i * (q_h2f(x[b].d) * q_h2f(y[b].d));
  }
  *s = sum;
}

/* One fp16 to float with the conversion instruction. */
static inline float h2f_neon(uint16_t h) {
  return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* Four rows at once (as the AVX2 kernel): the activation's loads and scale are shared by the
 * rows, and each row keeps per-lane float partial sums, so no block pays a horizontal add. */
void q4_0_vec_dot4_neon(int64_t n, float *s, const void *vx, size_t bx, const void *vy) {
  const block_q8_0 *y = vy;
  const uint8_t *x0 = vx;
  const int8x16_t eight = vdupq_n_s8(8);
  float32x4_t acc0 = vdupq_n_f32(0), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  for (int64_t b = 0; b < n / QK; b++) {
    const int8x16_t y0 = vld1q_s8(y[b].qs), y1 = vld1q_s8(y[b].qs + 16);
    const float dy = h2f_neon(y[b].d);
#define Q4_0_ROW(r)                                                                          \
  do {                                                                                       \
    const block_q4_0 *x = (const block_q4_0 *)(x0 + (size_t)(r)*bx) + b;                     \
    uint8x16_t lo, hi;                                                                       \
    nibbles(x->qs, &lo, &hi);                                                                \
    int32x4_t p = dot16(dot16(vdupq_n_s32(0), vsubq_s8(vreinterpretq_s8_u8(lo), eight), y0), \
                        vsubq_s8(vreinterpretq_s8_u8(hi), eight), y1);                       \
    acc##r = vfmaq_n_f32(acc##r, vcvtq_f32_s32(p), h2f_neon(x->d) * dy);                     \
  } while (0)
    Q4_0_ROW(0);
    Q4_0_ROW(1);
    Q4_0_ROW(2);
    Q4_0_ROW(3);
#undef Q4_0_ROW
  }
  s[0] = vaddvq_f32(acc0);
  s[1] = vaddvq_f32(acc1);
  s[2] = vaddvq_f32(acc2);
  s[3] = vaddvq_f32(acc3);
}

void q4_1_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q4_1 *x = vx;
  const block_q8_1 *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    uint8x16_t lo, hi;
    nibbles(x[b].qs, &lo, &hi);
    int i = dot32_i(vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi), y[b].qs);
    sum += (float)i * (q_h2f(x[b].d) * q_h2f(y[b].d)) + q_h2f(x[b].m) * q_h2f(y[b].s);
  }
  *s = sum;
}

/* 16 where bit j (j = first..first+15) of qh is set. */
static inline uint8x16_t qh_bits16(const uint8_t *qh, int first) {
  static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  uint8x16_t v = vcombine_u8(vdup_n_u8(qh[first / 8]), vdup_n_u8(qh[first / 8 + 1]));
  return vandq_u8(vtstq_u8(v, vld1q_u8(bit)), vdupq_n_u8(16));
}

static inline void q5_levels(const uint8_t *qs, const uint8_t *qh, int8x16_t *a0, int8x16_t *a1) {
  uint8x16_t lo, hi;
  nibbles(qs, &lo, &hi);
  *a0 = vreinterpretq_s8_u8(vorrq_u8(lo, qh_bits16(qh, 0)));
  *a1 = vreinterpretq_s8_u8(vorrq_u8(hi, qh_bits16(qh, 16)));
}

void q5_0_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q5_0 *x = vx;
  const block_q8_0 *y = vy;
  float sum = 0;
  const int8x16_t k16 = vdupq_n_s8(16);
  for (int64_t b = 0; b < n / QK; b++) {
    int8x16_t a0, a1;
    q5_levels(x[b].qs, x[b].qh, &a0, &a1);
    int i = dot32_i(vsubq_s8(a0, k16), vsubq_s8(a1, k16), y[b].qs);
    sum += (float)i * (q_h2f(x[b].d) * q_h2f(y[b].d));
  }
  *s = sum;
}

void q5_1_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q5_1 *x = vx;
  const block_q8_1 *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    int8x16_t a0, a1;
    q5_levels(x[b].qs, x[b].qh, &a0, &a1);
    sum += (float)dot32_i(a0, a1, y[b].qs) * (q_h2f(x[b].d) * q_h2f(y[b].d)) +
           q_h2f(x[b].m) * q_h2f(y[b].s);
  }
  *s = sum;
}

static inline void iq4_levels(const uint8_t *qs, int8x16_t *a0, int8x16_t *a1) {
  const int8x16_t lut = vld1q_s8(nllm_iq4nl_values);
  uint8x16_t lo, hi;
  nibbles(qs, &lo, &hi);
  *a0 = vqtbl1q_s8(lut, lo);
  *a1 = vqtbl1q_s8(lut, hi);
}

void iq4_nl_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_iq4_nl *x = vx;
  const block_q8_0 *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    int8x16_t a0, a1;
    iq4_levels(x[b].qs, &a0, &a1);
    sum += (float)dot32_i(a0, a1, y[b].qs) * (q_h2f(x[b].d) * q_h2f(y[b].d));
  }
  *s = sum;
}

/* ---------------------------------------------------------------- K formats */

static inline int8x16_t u8s(uint8x16_t v) {
  return vreinterpretq_s8_u8(v);
}

void q4_K_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q4_K *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    uint8_t sc[8], mn[8];
    k4_scales_mins(x[b].scales, sc, mn);
    int isum = 0, msum = 0;
    for (int k = 0; k < 8; k++) msum += mn[k] * (y[b].bsums[2 * k] + y[b].bsums[2 * k + 1]);
    for (int c = 0; c < 4; c++) {
      uint8x16_t q0 = vld1q_u8(x[b].qs + 32 * c), q1 = vld1q_u8(x[b].qs + 32 * c + 16),
                 m4 = vdupq_n_u8(15);
      isum += sc[2 * c] * dot32_i(u8s(vandq_u8(q0, m4)), u8s(vandq_u8(q1, m4)), y[b].qs + 64 * c);
      isum += sc[2 * c + 1] *
              dot32_i(u8s(vshrq_n_u8(q0, 4)), u8s(vshrq_n_u8(q1, 4)), y[b].qs + 64 * c + 32);
    }
    sum += y[b].d * (q_h2f(x[b].d) * (float)isum - q_h2f(x[b].dmin) * (float)msum);
  }
  *s = sum;
}

void q5_K_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q5_K *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    uint8_t sc[8], mn[8];
    k4_scales_mins(x[b].scales, sc, mn);
    int isum = 0, msum = 0;
    for (int k = 0; k < 8; k++) msum += mn[k] * (y[b].bsums[2 * k] + y[b].bsums[2 * k + 1]);
    uint8x16_t h0 = vld1q_u8(x[b].qh), h1 = vld1q_u8(x[b].qh + 16);
    const uint8x16_t m4 = vdupq_n_u8(15), one = vdupq_n_u8(1);
    for (int c = 0; c < 4; c++) {
      uint8x16_t q0 = vld1q_u8(x[b].qs + 32 * c), q1 = vld1q_u8(x[b].qs + 32 * c + 16);
      uint8x16_t l0 = vorrq_u8(vandq_u8(q0, m4), vshlq_n_u8(vandq_u8(h0, one), 4));
      uint8x16_t l1 = vorrq_u8(vandq_u8(q1, m4), vshlq_n_u8(vandq_u8(h1, one), 4));
      uint8x16_t u0 = vorrq_u8(vshrq_n_u8(q0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h0, 1), one), 4));
      uint8x16_t u1 = vorrq_u8(vshrq_n_u8(q1, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(h1, 1), one), 4));
      h0 = vshrq_n_u8(h0, 2);
      h1 = vshrq_n_u8(h1, 2);
      isum += sc[2 * c] * dot32_i(u8s(l0), u8s(l1), y[b].qs + 64 * c);
      isum += sc[2 * c + 1] * dot32_i(u8s(u0), u8s(u1), y[b].qs + 64 * c + 32);
    }
    sum += y[b].d * (q_h2f(x[b].d) * (float)isum - q_h2f(x[b].dmin) * (float)msum);
  }
  *s = sum;
}

void q6_K_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q6_K *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  const uint8x16_t m4 = vdupq_n_u8(15), m2 = vdupq_n_u8(3);
  const int8x16_t k32 = vdupq_n_s8(32);
  for (int64_t b = 0; b < n / QK_K; b++) {
    int isum = 0;
    for (int c = 0; c < 2; c++)
      for (int g = 0; g < 4; g++)
        for (int h = 0; h < 2; h++) { /* 16 elements: sub-block c*8 + g*2 + h */
          uint8x16_t ql = vld1q_u8(x[b].ql + c * 64 + (g & 1) * 32 + 16 * h);
          uint8x16_t qh = vld1q_u8(x[b].qh + c * 32 + 16 * h);
          uint8x16_t lo = (g >> 1) ? vshrq_n_u8(ql, 4) : vandq_u8(ql, m4);
          uint8x16_t hi;
          switch (g) {
            case 0: hi = vandq_u8(qh, m2); break;
            case 1: hi = vandq_u8(vshrq_n_u8(qh, 2), m2); break;
            case 2: hi = vandq_u8(vshrq_n_u8(qh, 4), m2); break;
            default: hi = vshrq_n_u8(qh, 6); break;
          }
          int8x16_t lv = vsubq_s8(u8s(vorrq_u8(lo, vshlq_n_u8(hi, 4))), k32);
          isum += x[b].scales[c * 8 + g * 2 + h] * dot16_i(lv, y[b].qs + c * 128 + g * 32 + 16 * h);
        }
    sum += q_h2f(x[b].d) * y[b].d * (float)isum;
  }
  *s = sum;
}

/* 2-bit field g (bits 2g..2g+1) of 16 bytes. */
static inline uint8x16_t field2(uint8x16_t q, int g) {
  switch (g) {
    case 0: return vandq_u8(q, vdupq_n_u8(3));
    case 1: return vandq_u8(vshrq_n_u8(q, 2), vdupq_n_u8(3));
    case 2: return vandq_u8(vshrq_n_u8(q, 4), vdupq_n_u8(3));
    default: return vshrq_n_u8(q, 6);
  }
}

void q2_K_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q2_K *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int isum = 0, msum = 0;
    for (int k = 0; k < 16; k++) msum += (x[b].scales[k] >> 4) * y[b].bsums[k];
    for (int c = 0; c < 2; c++)
      for (int h = 0; h < 2; h++) {
        uint8x16_t q = vld1q_u8(x[b].qs + 32 * c + 16 * h);
        for (int g = 0; g < 4; g++)
          isum += (x[b].scales[c * 8 + g * 2 + h] & 15) *
                  dot16_i(u8s(field2(q, g)), y[b].qs + c * 128 + g * 32 + 16 * h);
      }
    sum += y[b].d * (q_h2f(x[b].d) * (float)isum - q_h2f(x[b].dmin) * (float)msum);
  }
  *s = sum;
}

void q3_K_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q3_K *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  const int8x16_t k4 = vdupq_n_s8(4);
  for (int64_t b = 0; b < n / QK_K; b++) {
    int isum = 0;
    for (int c = 0; c < 2; c++)
      for (int h = 0; h < 2; h++) {
        uint8x16_t q = vld1q_u8(x[b].qs + 32 * c + 16 * h), hm = vld1q_u8(x[b].hmask + 16 * h);
        for (int g = 0; g < 4; g++) {
          /* high bit c*4 + g set: level as is; clear: minus 4 */
          uint8x16_t hb = vtstq_u8(hm, vdupq_n_u8((uint8_t)(1 << (c * 4 + g))));
          int8x16_t lv = vsubq_s8(u8s(vorrq_u8(field2(q, g), vandq_u8(hb, vdupq_n_u8(4)))), k4);
          isum += q3k_scale(x[b].scales, c * 8 + g * 2 + h) *
                  dot16_i(lv, y[b].qs + c * 128 + g * 32 + 16 * h);
        }
      }
    sum += q_h2f(x[b].d) * y[b].d * (float)isum;
  }
  *s = sum;
}

void iq4_xs_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
  const block_iq4_xs *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int isum = 0;
    for (int k = 0; k < 8; k++) {
      int ls =
          (((x[b].scales_l[k / 2] >> (4 * (k & 1))) & 15) | ((x[b].scales_h >> (2 * k)) & 3) << 4) -
          32;
      int8x16_t a0, a1;
      iq4_levels(x[b].qs + 16 * k, &a0, &a1);
      isum += ls * dot32_i(a0, a1, y[b].qs + 32 * k);
    }
    sum += q_h2f(x[b].d) * y[b].d * (float)isum;
  }
  *s = sum;
}
