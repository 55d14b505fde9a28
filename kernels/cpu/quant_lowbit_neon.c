/* NEON dot products of the ternary TQ1_0 / TQ2_0 (against Q8_K) and of MXFP4 (against Q8_0): their
 * rows of the NEON tier (dequantization stays quant_lowbit_ref.c's). The weights become int8
 * values (-1..2, or MXFP4's doubled levels) and the products are exact (SDOT with the dotprod
 * extension, else widened to 16 bits); each block's integer sum is exact and the float steps are
 * the reference's, in its order, so the results are bit-identical to the scalar rows. One body
 * per family (TQ, MXFP4) serves the one-row, four-row and batch kernels. */
#include <arm_neon.h>

#include "cpu/quant.h"

/* The batch kernels' loops unrolled: their values and each token's accumulator in registers */
#define LB_UNROLL _Pragma("GCC unroll 16")

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

/* A TQ1_0 block's 256 values (-1..1) as v[j], elements 16 j .. 16 j + 15: qs[0..31]'s digit
 * k are elements 32 k .., qs[32..47]'s 160 + 16 k .., qh's (byte j % 4, digit j / 4) 240 .. */
static inline __attribute__((always_inline)) void tq1_0_block_values(const block_tq1_0 *x,
                                                                     int8x16_t v[16]) {
  static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
  static const uint8_t qh_pow[16] = {1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27};
  const uint8x16_t x0 = vld1q_u8(x->qs), x1 = vld1q_u8(x->qs + 16), x2 = vld1q_u8(x->qs + 32);
  LB_UNROLL
  for (int k = 0; k < 5; k++) {
    const uint8x16_t p = vdupq_n_u8(pow3[k]);
    v[2 * k] = tq1_values(x0, p);
    v[2 * k + 1] = tq1_values(x1, p);
    v[10 + k] = tq1_values(x2, p);
  }
  uint32_t qh;
  memcpy(&qh, x->qh, 4);
  v[15] = tq1_values(vreinterpretq_u8_u32(vdupq_n_u32(qh)), vld1q_u8(qh_pow));
}
/* The same for TQ2_0: bits 2 l, 2 l + 1 of byte m of half h (32 bytes) are element
 * 128 h + 32 l + m */
static inline __attribute__((always_inline)) void tq2_0_block_values(const block_tq2_0 *x,
                                                                     int8x16_t v[16]) {
  LB_UNROLL
  for (int h = 0; h < 2; h++)
    LB_UNROLL
    for (int half = 0; half < 2; half++) {
      const uint8x16_t q = vld1q_u8(x->qs + 32 * h + 16 * half);
      LB_UNROLL
      for (int l = 0; l < 4; l++) {
        const uint8x16_t u = vandq_u8(vshlq_u8(q, vdupq_n_s8((int8_t)(-2 * l))), vdupq_n_u8(3));
        v[8 * h + 2 * l + half] = vsubq_s8(vreinterpretq_s8_u8(u), vdupq_n_s8(1));
      }
    }
}

/* nr rows (x_stride bytes apart) by nt tokens (y_stride bytes apart) of TQ1_0 (tq1) or TQ2_0:
 * s[t * s_stride + r] = dot(row r, token t). A block's values are made once per row for the
 * tokens (TQ1_0's base-3 digits are most of its work); each token's block sum is exact and its
 * float steps are vec_dot's, in its order: results equal vec_dot's bit for bit. */
static inline __attribute__((always_inline)) void tq_dot_neon(int tq1, int nr, int nt, int64_t n,
                                                              float *s, size_t s_stride,
                                                              const void *vx, size_t x_stride,
                                                              const void *vy, size_t y_stride) {
  const int64_t nb = n / QK_K;
  const block_q8_K *y[4];
  for (int k = 0; k < nt; k++) y[k] = (const block_q8_K *)((const uint8_t *)vy + k * y_stride);
  for (int r = 0; r < nr; r++) {
    const uint8_t *x = (const uint8_t *)vx + r * x_stride;
    float sum[4] = {0, 0, 0, 0};
    for (int64_t b = 0; b < nb; b++) {
      int8x16_t v[16];
      uint16_t dh;
      if (tq1) {
        const block_tq1_0 *xb = (const block_tq1_0 *)x + b;
        tq1_0_block_values(xb, v);
        dh = xb->d;
      } else {
        const block_tq2_0 *xb = (const block_tq2_0 *)x + b;
        tq2_0_block_values(xb, v);
        dh = xb->d;
      }
      int32x4_t acc[4];
      LB_UNROLL
      for (int k = 0; k < nt; k++) acc[k] = vdupq_n_s32(0);
      LB_UNROLL
      for (int j = 0; j < 16; j++)
        LB_UNROLL
        for (int k = 0; k < nt; k++)
          acc[k] = lowbit_dot16(acc[k], v[j], vld1q_s8(y[k][b].qs + 16 * j));
      const float d = q_h2f(dh);
      LB_UNROLL
      for (int k = 0; k < nt; k++) {
        const float p = (float)vaddvq_s32(acc[k]) * (y[k][b].d * d);
        sum[k] += p;
      }
    }
    LB_UNROLL
    for (int k = 0; k < nt; k++) s[k * s_stride + r] = sum[k];
  }
}

/* MXFP4's E8M0 scale halved, 2^(e - 128) (subnormal below e = 2, NaN at 255): the doubled
 * levels below are integers and the scale carries the half, as in the reference. */
static inline float mxfp4_half_scale_neon(uint8_t e) {
  uint32_t u = e == 0xFF ? 0x7fc00000u : e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* MXFP4, nr rows by nt tokens as tq_dot_neon: a block's levels and scale once per row for the
 * tokens. The tokens' float steps run in the lanes of one vector (the activations' F16 scales
 * converted four at a time by FCVTL, exact as q_h2f), each lane vec_dot's steps in its order:
 * p = isum * (scale * d), sum += p. Lanes past nt sum zeros against token 0's scale. */
static inline __attribute__((always_inline)) void mxfp4_dot_neon(int nr, int nt, int64_t n,
                                                                 float *s, size_t s_stride,
                                                                 const void *vx, size_t x_stride,
                                                                 const void *vy, size_t y_stride) {
  static const int8_t levels2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
  const int8x16_t lut = vld1q_s8(levels2);
  const int64_t nb = n / QK;
  const block_q8_0 *y[4];
  LB_UNROLL
  for (int k = 0; k < 4; k++)
    y[k] = (const block_q8_0 *)((const uint8_t *)vy + (k < nt ? k : 0) * y_stride);
  for (int r = 0; r < nr; r++) {
    const block_mxfp4 *x = (const block_mxfp4 *)((const uint8_t *)vx + r * x_stride);
    float32x4_t sum = vdupq_n_f32(0);
    for (int64_t b = 0; b < nb; b++) {
      const uint8x16_t q = vld1q_u8(x[b].qs);
      const int8x16_t lo = vqtbl1q_s8(lut, vandq_u8(q, vdupq_n_u8(15)));
      const int8x16_t hi = vqtbl1q_s8(lut, vshrq_n_u8(q, 4));
      int32x4_t acc[4];
      uint16_t dh[4];
      LB_UNROLL
      for (int k = 0; k < 4; k++) {
        dh[k] = y[k][b].d;
        acc[k] = vdupq_n_s32(0);
        if (k < nt) {
          acc[k] = lowbit_dot16(acc[k], lo, vld1q_s8(y[k][b].qs));
          acc[k] = lowbit_dot16(acc[k], hi, vld1q_s8(y[k][b].qs + 16));
        }
      }
      const int32x4_t isum = vpaddq_s32(vpaddq_s32(acc[0], acc[1]), vpaddq_s32(acc[2], acc[3]));
      const float32x4_t yd = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(dh)));
      const float32x4_t p = vmulq_f32(vcvtq_f32_s32(isum),
                                      vmulq_f32(vdupq_n_f32(mxfp4_half_scale_neon(x[b].e)), yd));
      sum = vaddq_f32(sum, p);
    }
    float out[4];
    vst1q_f32(out, sum);
    LB_UNROLL
    for (int k = 0; k < nt; k++) s[k * s_stride + r] = out[k];
  }
}

/* vec_dot is the body at one row and one token; vec_dot4 runs its four rows one after another
 * (decode has no work to share between rows; the matmul takes the batch kernels only along a
 * four-row one); vec_dot4x4 and vec_dot4xt make each block's values once for the tokens. */
#define LOWBIT_NEON_ROWS(name, call)                                                           \
  static void name##_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {      \
    call(1, 1, n, s, 0, vx, 0, vy, 0);                                                         \
  }                                                                                            \
  static void name##_vec_dot4_neon(int64_t n, float *s, const void *vx, size_t x_stride,      \
                                   const void *vy) {                                           \
    call(4, 1, n, s, 0, vx, x_stride, vy, 0);                                                  \
  }                                                                                            \
  static void name##_vec_dot4x4_neon(int64_t n, float *s, size_t s_stride, const void *vx,    \
                                     size_t x_stride, const void *vy, size_t y_stride) {      \
    call(4, 4, n, s, s_stride, vx, x_stride, vy, y_stride);                                    \
  }                                                                                            \
  static void name##_vec_dot4xt_neon(int64_t n, float *s, size_t s_stride, const void *vx,    \
                                     size_t x_stride, const void *vy, size_t y_stride,        \
                                     int n_tok) {                                              \
    if (n_tok == 3)                                                                            \
      call(4, 3, n, s, s_stride, vx, x_stride, vy, y_stride);                                  \
    else                                                                                       \
      call(4, 2, n, s, s_stride, vx, x_stride, vy, y_stride);                                  \
  }
#define TQ1_DOT(...) tq_dot_neon(1, __VA_ARGS__)
#define TQ2_DOT(...) tq_dot_neon(0, __VA_ARGS__)
LOWBIT_NEON_ROWS(tq1_0, TQ1_DOT)
LOWBIT_NEON_ROWS(tq2_0, TQ2_DOT)
LOWBIT_NEON_ROWS(mxfp4, mxfp4_dot_neon)
#undef TQ1_DOT
#undef TQ2_DOT
#undef LOWBIT_NEON_ROWS

#define LOWBIT_NEON_ROW(T, name)                                                               \
  {.type = T,                                                                                  \
   .vec_dot = name##_vec_dot_neon,                                                             \
   .vec_dot4 = name##_vec_dot4_neon,                                                           \
   .vec_dot4x4 = name##_vec_dot4x4_neon,                                                       \
   .vec_dot4xt = name##_vec_dot4xt_neon}
static const nllm_qtype_kernels lowbit_neon_rows[] = {
    LOWBIT_NEON_ROW(NLLM_TYPE_TQ1_0, tq1_0),
    LOWBIT_NEON_ROW(NLLM_TYPE_TQ2_0, tq2_0),
    LOWBIT_NEON_ROW(NLLM_TYPE_MXFP4, mxfp4),
};
#undef LOWBIT_NEON_ROW
const nllm_kernel_set nllm_kernels_lowbit_neon = {
    lowbit_neon_rows, sizeof lowbit_neon_rows / sizeof lowbit_neon_rows[0]};
