/* NEON kernels (baseline ARMv8-A: no dotprod extension needed). Integer dots widen int8
 * products to int16 (|a*b| <= 128*128 fits) and pairwise-accumulate into int32; a build for
 * CPUs with the dotprod extension (-march=armv8.2-a+dotprod, -mcpu=native on one) uses SDOT
 * instead. Either way each int32 lane sums four products of 16, so the bounds the kernels
 * rely on hold for both. */
#include <arm_neon.h>

#include "cpu/quant.h"

static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(acc, a, b);
#else
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
  return vpadalq_s16(acc, vmull_high_s8(a, b));
#endif
}
static inline int dot32_i(int8x16_t a0, int8x16_t a1, const int8_t *y) {
  return vaddvq_s32(dot16(dot16(vdupq_n_s32(0), a0, vld1q_s8(y)), a1, vld1q_s8(y + 16)));
}
static inline int dot16_i(int8x16_t a, const int8_t *y) {
  return vaddvq_s32(dot16(vdupq_n_s32(0), a, vld1q_s8(y)));
}

/* ---------------------------------------------------------------- float formats */

static void f32_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void f16_to_float_neon(const void *vx, float *y, int64_t n) {
  const uint16_t *x = vx;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, h4(x + i));
  for (; i < n; i++) y[i] = q_h2f(x[i]);
}

static void f16_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void bf16_to_float_neon(const void *vx, float *y, int64_t n) {
  const uint16_t *x = vx;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, bf4(x + i));
  for (; i < n; i++) y[i] = q_bf2f(x[i]);
}

static void bf16_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void q8_0_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void q4_0_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void q4_1_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void q5_0_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void q5_1_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void iq4_nl_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void q4_K_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void q5_K_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void q6_K_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void q2_K_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void q3_K_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

static void iq4_xs_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {
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

/* ---------------------------------------------------------------- four rows at once */

/* The four-row kernels (nllm_vec_dot4_fn) share the activation's loads and scale conversion,
 * and for the K formats its pair sums for the minimums, between the rows; each row keeps
 * per-lane partial sums, so no block pays a horizontal add. All blocks are whole (a block is
 * a multiple of 16 bytes of levels), so no tail goes to the one-row kernels. */

/* One fp16 to float with the conversion instruction. */
static inline float h2f_neon(uint16_t h) {
  return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* Four fp16 scales, one per row, to float lanes. */
static inline float32x4_t h4_rows(const uint8_t *const x[4], size_t off) {
  const uint16_t h[4] = {load_u16(x[0] + off), load_u16(x[1] + off), load_u16(x[2] + off),
                         load_u16(x[3] + off)};
  return h4(h);
}

/* The formats of 32-element blocks against Q8_0 (or Q8_1 where the format has a minimum). */
enum { D4_Q8_0, D4_Q4_0, D4_Q4_1, D4_Q5_0, D4_Q5_1, D4_IQ4_NL };
static const struct {
  uint8_t size, off_qs, off_qh, has_min;
} d4_32_layout[] = {
    [D4_Q8_0] = {sizeof(block_q8_0), offsetof(block_q8_0, qs), 0, 0},
    [D4_Q4_0] = {sizeof(block_q4_0), offsetof(block_q4_0, qs), 0, 0},
    [D4_Q4_1] = {sizeof(block_q4_1), offsetof(block_q4_1, qs), 0, 1},
    [D4_Q5_0] = {sizeof(block_q5_0), offsetof(block_q5_0, qs), offsetof(block_q5_0, qh), 0},
    [D4_Q5_1] = {sizeof(block_q5_1), offsetof(block_q5_1, qs), offsetof(block_q5_1, qh), 1},
    [D4_IQ4_NL] = {sizeof(block_iq4_nl), offsetof(block_iq4_nl, qs), 0, 0},
};

/* dot4_32 reads every format's scale at offset 0 and the minimum of both that have one at 2. */
_Static_assert(offsetof(block_q8_0, d) == 0 && offsetof(block_q4_0, d) == 0 &&
                   offsetof(block_q5_0, d) == 0 && offsetof(block_iq4_nl, d) == 0 &&
                   offsetof(block_q4_1, m) == 2 && offsetof(block_q5_1, m) == 2,
               "32-element block scales");

/* One row's block: its signed levels times the activation's 32, in four int32 lanes. */
static inline __attribute__((always_inline)) int32x4_t d4_32_block(const int kind, const uint8_t *x,
                                                                   int8x16_t y0, int8x16_t y1) {
  const uint8_t *qs = x + d4_32_layout[kind].off_qs;
  int8x16_t a0, a1;
  uint8x16_t lo, hi;
  switch (kind) {
    case D4_Q8_0:
      a0 = vld1q_s8((const int8_t *)qs);
      a1 = vld1q_s8((const int8_t *)qs + 16);
      break;
    case D4_Q4_0:
    case D4_Q4_1:
      nibbles(qs, &lo, &hi);
      a0 = u8s(lo);
      a1 = u8s(hi);
      if (kind == D4_Q4_0) {
        a0 = vsubq_s8(a0, vdupq_n_s8(8));
        a1 = vsubq_s8(a1, vdupq_n_s8(8));
      }
      break;
    case D4_Q5_0:
    case D4_Q5_1:
      q5_levels(qs, x + d4_32_layout[kind].off_qh, &a0, &a1);
      if (kind == D4_Q5_0) {
        a0 = vsubq_s8(a0, vdupq_n_s8(16));
        a1 = vsubq_s8(a1, vdupq_n_s8(16));
      }
      break;
    default: iq4_levels(qs, &a0, &a1); break;
  }
  return dot16(dot16(vdupq_n_s32(0), a0, y0), a1, y1);
}

static inline __attribute__((always_inline)) void dot4_32(const int kind, int64_t n, float *s,
                                                          const uint8_t *x0, size_t bx,
                                                          const uint8_t *y0) {
  const size_t xs = d4_32_layout[kind].size;
  const int has_min = d4_32_layout[kind].has_min;
  const size_t ys = has_min ? sizeof(block_q8_1) : sizeof(block_q8_0);
  const size_t y_qs = has_min ? offsetof(block_q8_1, qs) : offsetof(block_q8_0, qs);
  float32x4_t acc0 = vdupq_n_f32(0), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  float32x4_t accm = acc0; /* lane r: row r's minimum times the activation's sum */
  for (int64_t b = 0; b < n / QK; b++) {
    const uint8_t *yb = y0 + (size_t)b * ys;
    const int8x16_t ya = vld1q_s8((const int8_t *)yb + y_qs),
                    yc = vld1q_s8((const int8_t *)yb + y_qs + 16);
    const uint8_t *const x[4] = {x0 + (size_t)b * xs, x0 + bx + (size_t)b * xs,
                                 x0 + 2 * bx + (size_t)b * xs, x0 + 3 * bx + (size_t)b * xs};
    const float32x4_t d = vmulq_n_f32(h4_rows(x, 0), h2f_neon(load_u16(yb)));
    if (has_min)
      accm = vfmaq_n_f32(accm, h4_rows(x, offsetof(block_q4_1, m)),
                         h2f_neon(load_u16(yb + offsetof(block_q8_1, s))));
    acc0 = vfmaq_laneq_f32(acc0, vcvtq_f32_s32(d4_32_block(kind, x[0], ya, yc)), d, 0);
    acc1 = vfmaq_laneq_f32(acc1, vcvtq_f32_s32(d4_32_block(kind, x[1], ya, yc)), d, 1);
    acc2 = vfmaq_laneq_f32(acc2, vcvtq_f32_s32(d4_32_block(kind, x[2], ya, yc)), d, 2);
    acc3 = vfmaq_laneq_f32(acc3, vcvtq_f32_s32(d4_32_block(kind, x[3], ya, yc)), d, 3);
  }
  const float32x4_t sums = {vaddvq_f32(acc0), vaddvq_f32(acc1), vaddvq_f32(acc2), vaddvq_f32(acc3)};
  vst1q_f32(s, vaddq_f32(sums, accm));
}

#define DOT4_32(fmt, kind)                                                                        \
  static void fmt##_vec_dot4_neon(int64_t n, float *s, const void *x, size_t bx, const void *y) { \
    dot4_32(kind, n, s, x, bx, y);                                                                \
  }
DOT4_32(q8_0, D4_Q8_0)
DOT4_32(q4_0, D4_Q4_0)
DOT4_32(q4_1, D4_Q4_1)
DOT4_32(q5_0, D4_Q5_0)
DOT4_32(q5_1, D4_Q5_1)
DOT4_32(iq4_nl, D4_IQ4_NL)

/* The 256-element formats against Q8_K, in four chunks of 64 elements: the activation's four
 * vectors of a chunk are loaded once for the four rows. */
enum { D4_Q2_K, D4_Q3_K, D4_Q4_K, D4_Q5_K, D4_Q6_K, D4_IQ4_XS };
/* Block size, offsets of the fp16 scale and minimum scale (has_min: minimums whose terms come
 * from the activation's bsums), and whether each of the 16-element vectors has its own scale
 * (else each pair of them shares one). */
static const struct {
  uint8_t size, off_d, off_dmin, has_min, scale16;
} d4_k_layout[] = {
    [D4_Q2_K] = {sizeof(block_q2_K), offsetof(block_q2_K, d), offsetof(block_q2_K, dmin), 1, 1},
    [D4_Q3_K] = {sizeof(block_q3_K), offsetof(block_q3_K, d), 0, 0, 1},
    [D4_Q4_K] = {sizeof(block_q4_K), offsetof(block_q4_K, d), offsetof(block_q4_K, dmin), 1, 0},
    [D4_Q5_K] = {sizeof(block_q5_K), offsetof(block_q5_K, d), offsetof(block_q5_K, dmin), 1, 0},
    [D4_Q6_K] = {sizeof(block_q6_K), offsetof(block_q6_K, d), 0, 0, 1},
    [D4_IQ4_XS] = {sizeof(block_iq4_xs), offsetof(block_iq4_xs, d), 0, 0, 0},
};

/* Dot of two 32-element halves (a0, a1 against y0, y1) in four int32 lanes. */
static inline int32x4_t dot32_v(int8x16_t a0, int8x16_t a1, int8x16_t y0, int8x16_t y1) {
  return dot16(dot16(vdupq_n_s32(0), a0, y0), a1, y1);
}

/* isum plus chunk j (elements 64j..64j+63) of one row's block, each sub-block times its scale
 * in sc. Lanes stay within int32: a lane gains four products per 16 elements, each
 * |level * scale * y| <= 2^19 at most (Q6_K: 32 * 128 * 128), 2^25 for a block. */
static inline __attribute__((always_inline)) int32x4_t d4_k_chunk(const int kind, int32x4_t isum,
                                                                  const uint8_t *x, int j,
                                                                  const int8x16_t y[4],
                                                                  const int *sc) {
  if (d4_k_layout[kind].scale16) {
    /* element 128c + 32g + 16h + i of Q2_K, Q3_K and Q6_K sits in byte 16h + i (of the half
     * c of their arrays) at bit field g; vector v of the chunk is g = 2 (j & 1) + v / 2,
     * h = v & 1, sub-block 4j + v */
    const int c = j >> 1;
    for (int v = 0; v < 4; v++) {
      const int g = 2 * (j & 1) + (v >> 1), h = v & 1;
      int8x16_t lv;
      if (kind == D4_Q2_K) {
        lv = u8s(field2(vld1q_u8(((const block_q2_K *)x)->qs + 32 * c + 16 * h), g));
      } else if (kind == D4_Q3_K) {
        const block_q3_K *q = (const block_q3_K *)x;
        /* high bit 4c + g set: the level as is; clear: minus 4 */
        uint8x16_t hb =
            vtstq_u8(vld1q_u8(q->hmask + 16 * h), vdupq_n_u8((uint8_t)(1u << (4 * c + g))));
        lv = vsubq_s8(u8s(vorrq_u8(field2(vld1q_u8(q->qs + 32 * c + 16 * h), g),
                                   vandq_u8(hb, vdupq_n_u8(4)))),
                      vdupq_n_s8(4));
      } else { /* Q6_K: low 4 bits in ql (64 bytes a half; g >= 2 the high nibbles of the
                * same bytes as g - 2), high 2 in qh's field g, moved to bits 4..5 */
        const block_q6_K *q = (const block_q6_K *)x;
        uint8x16_t ql = vld1q_u8(q->ql + 64 * c + 32 * (g & 1) + 16 * h);
        uint8x16_t lo = g >> 1 ? vshrq_n_u8(ql, 4) : vandq_u8(ql, vdupq_n_u8(15));
        uint8x16_t hi =
            vandq_u8(vshlq_u8(vld1q_u8(q->qh + 32 * c + 16 * h), vdupq_n_s8((int8_t)(4 - 2 * g))),
                     vdupq_n_u8(0x30));
        lv = vsubq_s8(u8s(vorrq_u8(lo, hi)), vdupq_n_s8(32));
      }
      isum = vmlaq_n_s32(isum, dot16(vdupq_n_s32(0), lv, y[v]), sc[4 * j + v]);
    }
    return isum;
  }
  int8x16_t a0, a1, a2, a3; /* sub-block 2j against y[0..1], 2j + 1 against y[2..3] */
  if (kind == D4_IQ4_XS) {
    const block_iq4_xs *q = (const block_iq4_xs *)x;
    iq4_levels(q->qs + 32 * j, &a0, &a1);
    iq4_levels(q->qs + 32 * j + 16, &a2, &a3);
  } else {
    const uint8_t *qs = kind == D4_Q4_K ? ((const block_q4_K *)x)->qs : ((const block_q5_K *)x)->qs;
    uint8x16_t q0 = vld1q_u8(qs + 32 * j), q1 = vld1q_u8(qs + 32 * j + 16);
    uint8x16_t l0 = vandq_u8(q0, vdupq_n_u8(15)), l1 = vandq_u8(q1, vdupq_n_u8(15));
    uint8x16_t u0 = vshrq_n_u8(q0, 4), u1 = vshrq_n_u8(q1, 4);
    if (kind == D4_Q5_K) { /* bit 2j of qh is the fifth bit of sub-block 2j, bit 2j+1 of 2j+1 */
      const block_q5_K *q = (const block_q5_K *)x;
      uint8x16_t h0 = vld1q_u8(q->qh), h1 = vld1q_u8(q->qh + 16);
      const uint8x16_t bl = vdupq_n_u8((uint8_t)(1u << (2 * j))),
                       bu = vdupq_n_u8((uint8_t)(2u << (2 * j))), b16 = vdupq_n_u8(16);
      l0 = vorrq_u8(l0, vandq_u8(vtstq_u8(h0, bl), b16));
      l1 = vorrq_u8(l1, vandq_u8(vtstq_u8(h1, bl), b16));
      u0 = vorrq_u8(u0, vandq_u8(vtstq_u8(h0, bu), b16));
      u1 = vorrq_u8(u1, vandq_u8(vtstq_u8(h1, bu), b16));
    }
    a0 = u8s(l0);
    a1 = u8s(l1);
    a2 = u8s(u0);
    a3 = u8s(u1);
  }
  isum = vmlaq_n_s32(isum, dot32_v(a0, a1, y[0], y[1]), sc[2 * j]);
  return vmlaq_n_s32(isum, dot32_v(a2, a3, y[2], y[3]), sc[2 * j + 1]);
}

/* Row r's sub-block scales for d4_k_chunk (16 or 8), and for the formats with minimums the
 * minimums times the activation's sums over their sub-blocks (bsums: 16 elements; ysum32:
 * 32). No product of int16 overflows: minimums <= 63 and sums <= 4096 in magnitude. */
static inline __attribute__((always_inline)) int d4_k_scales(const int kind, const uint8_t *x,
                                                             const int16_t *bsums, int16x8_t ysum32,
                                                             int sc[16]) {
  if (kind == D4_Q2_K) {
    const uint8x16_t s = vld1q_u8(((const block_q2_K *)x)->scales);
    for (int k = 0; k < 16; k++) sc[k] = ((const block_q2_K *)x)->scales[k] & 15;
    const int16x8_t m0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(vshrq_n_u8(s, 4)))),
                    m1 = vreinterpretq_s16_u16(vmovl_high_u8(vshrq_n_u8(s, 4)));
    const int16x8_t b0 = vld1q_s16(bsums), b1 = vld1q_s16(bsums + 8);
    int32x4_t m = vmull_s16(vget_low_s16(m0), vget_low_s16(b0));
    m = vmlal_high_s16(m, m0, b0);
    m = vmlal_s16(m, vget_low_s16(m1), vget_low_s16(b1));
    return vaddvq_s32(vmlal_high_s16(m, m1, b1));
  }
  if (kind == D4_Q3_K) {
    for (int k = 0; k < 16; k++) sc[k] = q3k_scale(((const block_q3_K *)x)->scales, k);
    return 0;
  }
  if (kind == D4_Q6_K) {
    for (int k = 0; k < 16; k++) sc[k] = ((const block_q6_K *)x)->scales[k];
    return 0;
  }
  if (kind == D4_IQ4_XS) {
    const block_iq4_xs *q = (const block_iq4_xs *)x;
    for (int k = 0; k < 8; k++)
      sc[k] =
          (((q->scales_l[k / 2] >> (4 * (k & 1))) & 15) | ((q->scales_h >> (2 * k)) & 3) << 4) - 32;
    return 0;
  }
  uint8_t s8[8], m8[8];
  k4_scales_mins(
      kind == D4_Q4_K ? ((const block_q4_K *)x)->scales : ((const block_q5_K *)x)->scales, s8, m8);
  for (int k = 0; k < 8; k++) sc[k] = s8[k];
  const int16x8_t m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(m8)));
  return vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(m), vget_low_s16(ysum32)), m, ysum32));
}

static inline __attribute__((always_inline)) void dot4_k(const int kind, int64_t n, float *s,
                                                         const uint8_t *x0, size_t bx,
                                                         const block_q8_K *y) {
  const size_t xs = d4_k_layout[kind].size;
  float32x4_t acc0 = vdupq_n_f32(0), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  float32x4_t accm = acc0; /* lane r: row r's minimum terms */
  for (int64_t b = 0; b < n / QK_K; b++) {
    const block_q8_K *yb = &y[b];
    const uint8_t *const x[4] = {x0 + (size_t)b * xs, x0 + bx + (size_t)b * xs,
                                 x0 + 2 * bx + (size_t)b * xs, x0 + 3 * bx + (size_t)b * xs};
    /* bsums in pairs: the activation's sum over each 32-element sub-block */
    const int16x8_t ysum32 = vpaddq_s16(vld1q_s16(yb->bsums), vld1q_s16(yb->bsums + 8));
    int sc[4][16];
    const int32x4_t msum = {d4_k_scales(kind, x[0], yb->bsums, ysum32, sc[0]),
                            d4_k_scales(kind, x[1], yb->bsums, ysum32, sc[1]),
                            d4_k_scales(kind, x[2], yb->bsums, ysum32, sc[2]),
                            d4_k_scales(kind, x[3], yb->bsums, ysum32, sc[3])};
    int32x4_t i0 = vdupq_n_s32(0), i1 = i0, i2 = i0, i3 = i0;
    for (int j = 0; j < 4; j++) {
      const int8x16_t yv[4] = {vld1q_s8(yb->qs + 64 * j), vld1q_s8(yb->qs + 64 * j + 16),
                               vld1q_s8(yb->qs + 64 * j + 32), vld1q_s8(yb->qs + 64 * j + 48)};
      i0 = d4_k_chunk(kind, i0, x[0], j, yv, sc[0]);
      i1 = d4_k_chunk(kind, i1, x[1], j, yv, sc[1]);
      i2 = d4_k_chunk(kind, i2, x[2], j, yv, sc[2]);
      i3 = d4_k_chunk(kind, i3, x[3], j, yv, sc[3]);
    }
    const float32x4_t d = vmulq_n_f32(h4_rows(x, d4_k_layout[kind].off_d), yb->d);
    acc0 = vfmaq_laneq_f32(acc0, vcvtq_f32_s32(i0), d, 0);
    acc1 = vfmaq_laneq_f32(acc1, vcvtq_f32_s32(i1), d, 1);
    acc2 = vfmaq_laneq_f32(acc2, vcvtq_f32_s32(i2), d, 2);
    acc3 = vfmaq_laneq_f32(acc3, vcvtq_f32_s32(i3), d, 3);
    if (d4_k_layout[kind].has_min)
      accm = vfmaq_f32(accm, vmulq_n_f32(h4_rows(x, d4_k_layout[kind].off_dmin), yb->d),
                       vcvtq_f32_s32(msum));
  }
  const float32x4_t sums = {vaddvq_f32(acc0), vaddvq_f32(acc1), vaddvq_f32(acc2), vaddvq_f32(acc3)};
  vst1q_f32(s, vsubq_f32(sums, accm));
}

#define DOT4_K(fmt, kind)                                                                         \
  static void fmt##_vec_dot4_neon(int64_t n, float *s, const void *x, size_t bx, const void *y) { \
    dot4_k(kind, n, s, x, bx, y);                                                                 \
  }
DOT4_K(q2_K, D4_Q2_K)
DOT4_K(q3_K, D4_Q3_K)
DOT4_K(q4_K, D4_Q4_K)
DOT4_K(q5_K, D4_Q5_K)
DOT4_K(q6_K, D4_Q6_K)
DOT4_K(iq4_xs, D4_IQ4_XS)

/* The NEON tier's rows. Its crossovers are the default: nothing was measured on aarch64 yet. */
static const nllm_qtype_kernels neon_rows[] = {
    {.type = NLLM_TYPE_F32, .vec_dot = f32_vec_dot_neon},
    {.type = NLLM_TYPE_F16, .to_float = f16_to_float_neon, .vec_dot = f16_vec_dot_neon},
    {.type = NLLM_TYPE_BF16, .to_float = bf16_to_float_neon, .vec_dot = bf16_vec_dot_neon},
    {.type = NLLM_TYPE_Q8_0, .vec_dot = q8_0_vec_dot_neon, .vec_dot4 = q8_0_vec_dot4_neon},
    {.type = NLLM_TYPE_Q4_0, .vec_dot = q4_0_vec_dot_neon, .vec_dot4 = q4_0_vec_dot4_neon},
    {.type = NLLM_TYPE_Q4_1, .vec_dot = q4_1_vec_dot_neon, .vec_dot4 = q4_1_vec_dot4_neon},
    {.type = NLLM_TYPE_Q5_0, .vec_dot = q5_0_vec_dot_neon, .vec_dot4 = q5_0_vec_dot4_neon},
    {.type = NLLM_TYPE_Q5_1, .vec_dot = q5_1_vec_dot_neon, .vec_dot4 = q5_1_vec_dot4_neon},
    {.type = NLLM_TYPE_IQ4_NL, .vec_dot = iq4_nl_vec_dot_neon, .vec_dot4 = iq4_nl_vec_dot4_neon},
    {.type = NLLM_TYPE_Q2_K, .vec_dot = q2_K_vec_dot_neon, .vec_dot4 = q2_K_vec_dot4_neon},
    {.type = NLLM_TYPE_Q3_K, .vec_dot = q3_K_vec_dot_neon, .vec_dot4 = q3_K_vec_dot4_neon},
    {.type = NLLM_TYPE_Q4_K, .vec_dot = q4_K_vec_dot_neon, .vec_dot4 = q4_K_vec_dot4_neon},
    {.type = NLLM_TYPE_Q5_K, .vec_dot = q5_K_vec_dot_neon, .vec_dot4 = q5_K_vec_dot4_neon},
    {.type = NLLM_TYPE_Q6_K, .vec_dot = q6_K_vec_dot_neon, .vec_dot4 = q6_K_vec_dot4_neon},
    {.type = NLLM_TYPE_IQ4_XS, .vec_dot = iq4_xs_vec_dot_neon, .vec_dot4 = iq4_xs_vec_dot4_neon},
};
const nllm_kernel_set nllm_kernels_neon = {neon_rows, sizeof neon_rows / sizeof neon_rows[0]};
