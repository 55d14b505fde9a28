/* NEON kernels of LoRA's low-rank products (lowrank.c has the reference and the passes that
 * call them): F32, F16 (vcvt_f32_f16, baseline ARMv8-A) or BF16 weights, F32 activations. */
#include <arm_neon.h>

#include "cpu/quant.h"

/* Bytes ahead in each row a dot tile prefetches. */
#define PREFETCH 1024

/* The storage of a weight matrix: F32, F16, or BF16 (widened by a shift). */
enum { W_F32, W_F16, W_BF16 };

static inline int kind_of(int32_t type) {
  return type == NLLM_TYPE_F16 ? W_F16 : type == NLLM_TYPE_BF16 ? W_BF16 : W_F32;
}

static inline __attribute__((always_inline)) float32x4_t loadw(int kind, const void *w, int64_t i) {
  if (kind == W_F32) return vld1q_f32((const float *)w + i);
  const uint16x4_t h = vld1_u16((const uint16_t *)w + i);
  if (kind == W_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
  return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

static inline float load1(int kind, const void *w, int64_t i) {
  return kind == W_F32   ? ((const float *)w)[i]
         : kind == W_F16 ? q_h2f(((const uint16_t *)w)[i])
                         : q_bf2f(((const uint16_t *)w)[i]);
}

/* Four rows (missing ones repeat row 0 and are not stored) by nt tokens (1, 2 or 4): each
 * weight vector is widened once for every token of the tile. */
static inline __attribute__((always_inline)) void dot_tile(int kind, int nt, int64_t n, float *s,
                                                           int64_t s_stride, const void *w,
                                                           int64_t w_stride, int n_rows,
                                                           const float *x, int64_t x_stride,
                                                           float scale) {
  const size_t es = kind == W_F32 ? 4 : 2;
  const void *row[4];
  for (int j = 0; j < 4; j++)
    row[j] = (const uint8_t *)w + (size_t)((j < n_rows ? j : 0) * w_stride) * es;
  float32x4_t acc[4][4];
  for (int t = 0; t < 4; t++)
    for (int j = 0; j < 4; j++) acc[t][j] = vdupq_n_f32(0);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    if ((i * es) % 64 == 0) /* four interleaved streams: the hardware prefetcher lags */
      for (int j = 0; j < 4; j++)
        __builtin_prefetch((const uint8_t *)row[j] + i * es + PREFETCH, 0, 3);
    const float32x4_t w0 = loadw(kind, row[0], i), w1 = loadw(kind, row[1], i);
    const float32x4_t w2 = loadw(kind, row[2], i), w3 = loadw(kind, row[3], i);
    for (int t = 0; t < nt; t++) {
      const float32x4_t xv = vld1q_f32(x + t * x_stride + i);
      acc[t][0] = vfmaq_f32(acc[t][0], w0, xv);
      acc[t][1] = vfmaq_f32(acc[t][1], w1, xv);
      acc[t][2] = vfmaq_f32(acc[t][2], w2, xv);
      acc[t][3] = vfmaq_f32(acc[t][3], w3, xv);
    }
  }
  for (int t = 0; t < nt; t++)
    for (int j = 0; j < n_rows; j++) {
      float v = vaddvq_f32(acc[t][j]);
      for (int64_t k = i; k < n; k++) v += load1(kind, row[j], k) * x[t * x_stride + k];
      s[t * s_stride + j] = scale * v;
    }
}

static inline __attribute__((always_inline)) void dot_kind(int kind, int64_t n, float *s,
                                                           int64_t s_stride, const void *w,
                                                           int64_t w_stride, int n_rows,
                                                           const float *x, int64_t x_stride,
                                                           int n_tok, float scale) {
  for (int t = 0; t < n_tok;) {
    const int left = n_tok - t;
    const float *xt = x + t * x_stride;
    float *st = s + t * s_stride;
    if (left >= 4) {
      dot_tile(kind, 4, n, st, s_stride, w, w_stride, n_rows, xt, x_stride, scale);
      t += 4;
    } else if (left >= 2) {
      dot_tile(kind, 2, n, st, s_stride, w, w_stride, n_rows, xt, x_stride, scale);
      t += 2;
    } else {
      dot_tile(kind, 1, n, st, s_stride, w, w_stride, n_rows, xt, x_stride, scale);
      t += 1;
    }
  }
}

static void lowrank_dot_neon(int32_t wtype, int64_t n, float *s, int64_t s_stride, const void *w,
                             int64_t w_stride, int n_rows, const float *x, int64_t x_stride,
                             int n_tok, float scale) {
  switch (kind_of(wtype)) {
    case W_F16:
      dot_kind(W_F16, n, s, s_stride, w, w_stride, n_rows, x, x_stride, n_tok, scale);
      break;
    case W_BF16:
      dot_kind(W_BF16, n, s, s_stride, w, w_stride, n_rows, x, x_stride, n_tok, scale);
      break;
    default: dot_kind(W_F32, n, s, s_stride, w, w_stride, n_rows, x, x_stride, n_tok, scale);
  }
}

/* 16 outputs of nt tokens (1 or 2) in registers while the r weight rows pass. */
static inline __attribute__((always_inline)) void axpy_tile(int kind, int nt, float *y,
                                                            int64_t y_stride, const void *w,
                                                            int64_t w_stride, int64_t r,
                                                            const float *c, int64_t c_stride) {
  const size_t es = kind == W_F32 ? 4 : 2;
  float32x4_t acc[2][4];
  for (int t = 0; t < nt; t++)
    for (int v = 0; v < 4; v++) acc[t][v] = vld1q_f32(y + t * y_stride + 4 * v);
  for (int64_t j = 0; j < r; j++) {
    const void *wj = (const uint8_t *)w + (size_t)(j * w_stride) * es;
    const float32x4_t w0 = loadw(kind, wj, 0), w1 = loadw(kind, wj, 4);
    const float32x4_t w2 = loadw(kind, wj, 8), w3 = loadw(kind, wj, 12);
    for (int t = 0; t < nt; t++) {
      const float32x4_t cv = vdupq_n_f32(c[t * c_stride + j]);
      acc[t][0] = vfmaq_f32(acc[t][0], cv, w0);
      acc[t][1] = vfmaq_f32(acc[t][1], cv, w1);
      acc[t][2] = vfmaq_f32(acc[t][2], cv, w2);
      acc[t][3] = vfmaq_f32(acc[t][3], cv, w3);
    }
  }
  for (int t = 0; t < nt; t++)
    for (int v = 0; v < 4; v++) vst1q_f32(y + t * y_stride + 4 * v, acc[t][v]);
}

static inline __attribute__((always_inline)) void axpy_kind(int kind, int64_t n, float *y,
                                                            int64_t y_stride, const void *w,
                                                            int64_t w_stride, int64_t r,
                                                            const float *c, int64_t c_stride,
                                                            int n_tok) {
  const size_t es = kind == W_F32 ? 4 : 2;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const void *wi = (const uint8_t *)w + (size_t)i * es;
    for (int t = 0; t < n_tok; t += 2) {
      float *yt = y + t * y_stride + i;
      if (n_tok - t >= 2)
        axpy_tile(kind, 2, yt, y_stride, wi, w_stride, r, c + t * c_stride, c_stride);
      else
        axpy_tile(kind, 1, yt, y_stride, wi, w_stride, r, c + t * c_stride, c_stride);
    }
  }
  /* the last outputs (fewer than 16): as the reference does them */
  for (int t = 0; t < n_tok; t++)
    for (int64_t k = i; k < n; k++) {
      float acc = y[t * y_stride + k];
      for (int64_t j = 0; j < r; j++) acc += c[t * c_stride + j] * load1(kind, w, j * w_stride + k);
      y[t * y_stride + k] = acc;
    }
}

static void lowrank_axpy_neon(int32_t wtype, int64_t n, float *y, int64_t y_stride, const void *w,
                              int64_t w_stride, int64_t r, const float *c, int64_t c_stride,
                              int n_tok) {
  switch (kind_of(wtype)) {
    case W_F16: axpy_kind(W_F16, n, y, y_stride, w, w_stride, r, c, c_stride, n_tok); break;
    case W_BF16: axpy_kind(W_BF16, n, y, y_stride, w, w_stride, r, c, c_stride, n_tok); break;
    default: axpy_kind(W_F32, n, y, y_stride, w, w_stride, r, c, c_stride, n_tok);
  }
}

const nllm_cpu_ops nllm_cpu_ops_neon = {.lowrank_dot = lowrank_dot_neon,
                                        .lowrank_axpy = lowrank_axpy_neon};
