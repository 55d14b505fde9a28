/* The one body of LoRA's low-rank kernels (lowrank.c has the reference and the passes that call
 * them), written once for any vector width: lowrank_{avx2,avx512,neon}.c each define their
 * vector type and its operations, then include this file, which defines the tier's
 * LR_DOT_NAME and LR_AXPY_NAME from them. F32, F16 or BF16 weights (widened exactly), F32
 * activations.
 *
 * What the including file defines:
 *   LR_VEC, LR_WIDTH        the vector type and the floats it holds
 *   LR_DOT_TOKENS           tokens a dot tile carries, 2 or 4 (its 4 x LR_DOT_TOKENS
 *                           accumulators and 4 weight vectors must fit the registers)
 *   LR_ZERO() LR_LOAD(p) LR_STORE(p, v) LR_SET1(x) LR_HSUM(v), LR_FMA(acc, a, b) = acc + a b
 *   lr_load_f16(p), lr_load_bf16(p)   LR_WIDTH weights widened to F32 (static inline)
 *   LR_DOT_NAME, LR_AXPY_NAME         the names of the two kernels; LR_LINKAGE their linkage
 *                                     (static unless defined, empty for exported ones)
 *   LR_AXPY_TAIL(type, n, y, y_stride, w, w_stride, r, c, c_stride, n_tok)   optional: the
 *                           outputs after the last full tile of 4 LR_WIDTH (default: as the
 *                           reference does them)
 */
#include "cpu/quant.h"

#ifndef LR_LINKAGE
#define LR_LINKAGE static
#endif

/* Bytes ahead in each row a dot tile prefetches. */
#define PREFETCH 1024

/* The storage of a weight matrix: F32, F16, or BF16 (widened by a shift). */
enum { W_F32, W_F16, W_BF16 };

static inline int kind_of(int32_t type) {
  return type == NLLM_TYPE_F16 ? W_F16 : type == NLLM_TYPE_BF16 ? W_BF16 : W_F32;
}

static inline int32_t type_of(int kind) {
  return kind == W_F16 ? NLLM_TYPE_F16 : kind == W_BF16 ? NLLM_TYPE_BF16 : NLLM_TYPE_F32;
}

static inline __attribute__((always_inline)) LR_VEC loadw(int kind, const void *w, int64_t i) {
  if (kind == W_F32) return LR_LOAD((const float *)w + i);
  if (kind == W_F16) return lr_load_f16((const uint16_t *)w + i);
  return lr_load_bf16((const uint16_t *)w + i);
}

static inline float load1(int kind, const void *w, int64_t i) {
  return kind == W_F32   ? ((const float *)w)[i]
         : kind == W_F16 ? q_h2f(((const uint16_t *)w)[i])
                         : q_bf2f(((const uint16_t *)w)[i]);
}

/* Four rows (missing ones repeat row 0 and are not stored) by nt tokens (1 .. LR_DOT_TOKENS):
 * each weight vector is widened once for every token of the tile. */
static inline __attribute__((always_inline)) void dot_tile(int kind, int nt, int64_t n, float *s,
                                                           int64_t s_stride, const void *w,
                                                           int64_t w_stride, int n_rows,
                                                           const float *x, int64_t x_stride,
                                                           float scale) {
  const size_t es = kind == W_F32 ? 4 : 2;
  const void *row[4];
  for (int j = 0; j < 4; j++)
    row[j] = (const uint8_t *)w + (size_t)((j < n_rows ? j : 0) * w_stride) * es;
  LR_VEC acc[LR_DOT_TOKENS][4];
  for (int t = 0; t < LR_DOT_TOKENS; t++)
    for (int j = 0; j < 4; j++) acc[t][j] = LR_ZERO();
  int64_t i = 0;
  for (; i + LR_WIDTH <= n; i += LR_WIDTH) {
    if ((i * es) % 64 == 0) /* four interleaved streams: the hardware prefetcher lags */
      for (int j = 0; j < 4; j++)
        __builtin_prefetch((const uint8_t *)row[j] + i * es + PREFETCH, 0, 3);
    const LR_VEC w0 = loadw(kind, row[0], i), w1 = loadw(kind, row[1], i);
    const LR_VEC w2 = loadw(kind, row[2], i), w3 = loadw(kind, row[3], i);
    for (int t = 0; t < nt; t++) {
      const LR_VEC xv = LR_LOAD(x + t * x_stride + i);
      acc[t][0] = LR_FMA(acc[t][0], w0, xv);
      acc[t][1] = LR_FMA(acc[t][1], w1, xv);
      acc[t][2] = LR_FMA(acc[t][2], w2, xv);
      acc[t][3] = LR_FMA(acc[t][3], w3, xv);
    }
  }
  for (int t = 0; t < nt; t++)
    for (int j = 0; j < n_rows; j++) {
      float v = LR_HSUM(acc[t][j]);
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
    if (LR_DOT_TOKENS == 4 && left >= 4) {
      dot_tile(kind, LR_DOT_TOKENS, n, st, s_stride, w, w_stride, n_rows, xt, x_stride, scale);
      t += LR_DOT_TOKENS;
    } else if (left >= 2) {
      dot_tile(kind, 2, n, st, s_stride, w, w_stride, n_rows, xt, x_stride, scale);
      t += 2;
    } else {
      dot_tile(kind, 1, n, st, s_stride, w, w_stride, n_rows, xt, x_stride, scale);
      t += 1;
    }
  }
}

LR_LINKAGE void LR_DOT_NAME(int32_t wtype, int64_t n, float *s, int64_t s_stride, const void *w,
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

/* 4 LR_WIDTH outputs of nt tokens (1 or 2) in registers while the r weight rows pass. */
static inline __attribute__((always_inline)) void axpy_tile(int kind, int nt, float *y,
                                                            int64_t y_stride, const void *w,
                                                            int64_t w_stride, int64_t r,
                                                            const float *c, int64_t c_stride) {
  const size_t es = kind == W_F32 ? 4 : 2;
  LR_VEC acc[2][4];
  for (int t = 0; t < nt; t++)
    for (int v = 0; v < 4; v++) acc[t][v] = LR_LOAD(y + t * y_stride + LR_WIDTH * v);
  for (int64_t j = 0; j < r; j++) {
    const void *wj = (const uint8_t *)w + (size_t)(j * w_stride) * es;
    const LR_VEC w0 = loadw(kind, wj, 0), w1 = loadw(kind, wj, LR_WIDTH);
    const LR_VEC w2 = loadw(kind, wj, 2 * LR_WIDTH), w3 = loadw(kind, wj, 3 * LR_WIDTH);
    for (int t = 0; t < nt; t++) {
      const LR_VEC cv = LR_SET1(c[t * c_stride + j]);
      acc[t][0] = LR_FMA(acc[t][0], cv, w0);
      acc[t][1] = LR_FMA(acc[t][1], cv, w1);
      acc[t][2] = LR_FMA(acc[t][2], cv, w2);
      acc[t][3] = LR_FMA(acc[t][3], cv, w3);
    }
  }
  for (int t = 0; t < nt; t++)
    for (int v = 0; v < 4; v++) LR_STORE(y + t * y_stride + LR_WIDTH * v, acc[t][v]);
}

static inline __attribute__((always_inline)) void axpy_kind(int kind, int64_t n, float *y,
                                                            int64_t y_stride, const void *w,
                                                            int64_t w_stride, int64_t r,
                                                            const float *c, int64_t c_stride,
                                                            int n_tok) {
  const size_t es = kind == W_F32 ? 4 : 2;
  int64_t i = 0;
  for (; i + 4 * LR_WIDTH <= n; i += 4 * LR_WIDTH) {
    const void *wi = (const uint8_t *)w + (size_t)i * es;
    for (int t = 0; t < n_tok; t += 2) {
      float *yt = y + t * y_stride + i;
      if (n_tok - t >= 2)
        axpy_tile(kind, 2, yt, y_stride, wi, w_stride, r, c + t * c_stride, c_stride);
      else
        axpy_tile(kind, 1, yt, y_stride, wi, w_stride, r, c + t * c_stride, c_stride);
    }
  }
#ifdef LR_AXPY_TAIL
  if (i < n)
    LR_AXPY_TAIL(type_of(kind), n - i, y + i, y_stride, (const uint8_t *)w + (size_t)i * es,
                 w_stride, r, c, c_stride, n_tok);
#else
  /* the last outputs (fewer than a tile): as the reference does them */
  for (int t = 0; t < n_tok; t++)
    for (int64_t k = i; k < n; k++) {
      float acc = y[t * y_stride + k];
      for (int64_t j = 0; j < r; j++) acc += c[t * c_stride + j] * load1(kind, w, j * w_stride + k);
      y[t * y_stride + k] = acc;
    }
#endif
}

LR_LINKAGE void LR_AXPY_NAME(int32_t wtype, int64_t n, float *y, int64_t y_stride, const void *w,
                             int64_t w_stride, int64_t r, const float *c, int64_t c_stride,
                             int n_tok) {
  switch (kind_of(wtype)) {
    case W_F16: axpy_kind(W_F16, n, y, y_stride, w, w_stride, r, c, c_stride, n_tok); break;
    case W_BF16: axpy_kind(W_BF16, n, y, y_stride, w, w_stride, r, c, c_stride, n_tok); break;
    default: axpy_kind(W_F32, n, y, y_stride, w, w_stride, r, c, c_stride, n_tok);
  }
}
