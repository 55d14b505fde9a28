/* AVX2 + FMA + F16C kernels of LoRA's low-rank products (lowrank.c has the reference and the
 * passes that call them): F32, F16 or BF16 weights, F32 activations. */
#include <immintrin.h>

#include "cpu/quant.h"
#include "cpu/quant_avx2.h"

/* Bytes ahead in each row a dot tile prefetches. */
#define PREFETCH 1024

/* The storage of a weight matrix: F32, F16, or BF16 (widened by a shift). */
enum { W_F32, W_F16, W_BF16 };

static inline int kind_of(int32_t type) {
  return type == NLLM_TYPE_F16 ? W_F16 : type == NLLM_TYPE_BF16 ? W_BF16 : W_F32;
}

static inline __attribute__((always_inline)) __m256 loadw(int kind, const void *w, int64_t i) {
  if (kind == W_F32) return _mm256_loadu_ps((const float *)w + i);
  const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
  if (kind == W_F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline float load1(int kind, const void *w, int64_t i) {
  return kind == W_F32   ? ((const float *)w)[i]
         : kind == W_F16 ? q_h2f(((const uint16_t *)w)[i])
                         : q_bf2f(((const uint16_t *)w)[i]);
}

/* Four rows (missing ones repeat row 0 and are not stored) by nt tokens (1 or 2): each weight
 * vector is widened once for every token of the tile. */
static inline __attribute__((always_inline)) void dot_tile(int kind, int nt, int64_t n, float *s,
                                                           int64_t s_stride, const void *w,
                                                           int64_t w_stride, int n_rows,
                                                           const float *x, int64_t x_stride,
                                                           float scale) {
  const size_t es = kind == W_F32 ? 4 : 2;
  const void *row[4];
  for (int j = 0; j < 4; j++)
    row[j] = (const uint8_t *)w + (size_t)((j < n_rows ? j : 0) * w_stride) * es;
  __m256 acc[2][4];
  for (int t = 0; t < 2; t++)
    for (int j = 0; j < 4; j++) acc[t][j] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    if ((i * es) % 64 == 0) /* four interleaved streams: the hardware prefetcher lags */
      for (int j = 0; j < 4; j++)
        __builtin_prefetch((const uint8_t *)row[j] + i * es + PREFETCH, 0, 3);
    const __m256 w0 = loadw(kind, row[0], i), w1 = loadw(kind, row[1], i);
    const __m256 w2 = loadw(kind, row[2], i), w3 = loadw(kind, row[3], i);
    for (int t = 0; t < nt; t++) {
      const __m256 xv = _mm256_loadu_ps(x + t * x_stride + i);
      acc[t][0] = _mm256_fmadd_ps(w0, xv, acc[t][0]);
      acc[t][1] = _mm256_fmadd_ps(w1, xv, acc[t][1]);
      acc[t][2] = _mm256_fmadd_ps(w2, xv, acc[t][2]);
      acc[t][3] = _mm256_fmadd_ps(w3, xv, acc[t][3]);
    }
  }
  for (int t = 0; t < nt; t++)
    for (int j = 0; j < n_rows; j++) {
      float v = hsum8(acc[t][j]);
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
    if (left >= 2) {
      dot_tile(kind, 2, n, st, s_stride, w, w_stride, n_rows, xt, x_stride, scale);
      t += 2;
    } else {
      dot_tile(kind, 1, n, st, s_stride, w, w_stride, n_rows, xt, x_stride, scale);
      t += 1;
    }
  }
}

void nllm_lowrank_dot_avx2(int32_t wtype, int64_t n, float *s, int64_t s_stride, const void *w,
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

/* 32 outputs of nt tokens (1 or 2) in registers while the r weight rows pass. */
static inline __attribute__((always_inline)) void axpy_tile(int kind, int nt, float *y,
                                                            int64_t y_stride, const void *w,
                                                            int64_t w_stride, int64_t r,
                                                            const float *c, int64_t c_stride) {
  const size_t es = kind == W_F32 ? 4 : 2;
  __m256 acc[2][4];
  for (int t = 0; t < nt; t++)
    for (int v = 0; v < 4; v++) acc[t][v] = _mm256_loadu_ps(y + t * y_stride + 8 * v);
  for (int64_t j = 0; j < r; j++) {
    const void *wj = (const uint8_t *)w + (size_t)(j * w_stride) * es;
    const __m256 w0 = loadw(kind, wj, 0), w1 = loadw(kind, wj, 8);
    const __m256 w2 = loadw(kind, wj, 16), w3 = loadw(kind, wj, 24);
    for (int t = 0; t < nt; t++) {
      const __m256 cv = _mm256_set1_ps(c[t * c_stride + j]);
      acc[t][0] = _mm256_fmadd_ps(cv, w0, acc[t][0]);
      acc[t][1] = _mm256_fmadd_ps(cv, w1, acc[t][1]);
      acc[t][2] = _mm256_fmadd_ps(cv, w2, acc[t][2]);
      acc[t][3] = _mm256_fmadd_ps(cv, w3, acc[t][3]);
    }
  }
  for (int t = 0; t < nt; t++)
    for (int v = 0; v < 4; v++) _mm256_storeu_ps(y + t * y_stride + 8 * v, acc[t][v]);
}

static inline __attribute__((always_inline)) void axpy_kind(int kind, int64_t n, float *y,
                                                            int64_t y_stride, const void *w,
                                                            int64_t w_stride, int64_t r,
                                                            const float *c, int64_t c_stride,
                                                            int n_tok) {
  const size_t es = kind == W_F32 ? 4 : 2;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const void *wi = (const uint8_t *)w + (size_t)i * es;
    for (int t = 0; t < n_tok; t += 2) {
      float *yt = y + t * y_stride + i;
      if (n_tok - t >= 2)
        axpy_tile(kind, 2, yt, y_stride, wi, w_stride, r, c + t * c_stride, c_stride);
      else
        axpy_tile(kind, 1, yt, y_stride, wi, w_stride, r, c + t * c_stride, c_stride);
    }
  }
  /* the last outputs (fewer than 32): as the reference does them */
  for (int t = 0; t < n_tok; t++)
    for (int64_t k = i; k < n; k++) {
      float acc = y[t * y_stride + k];
      for (int64_t j = 0; j < r; j++) acc += c[t * c_stride + j] * load1(kind, w, j * w_stride + k);
      y[t * y_stride + k] = acc;
    }
}

void nllm_lowrank_axpy_avx2(int32_t wtype, int64_t n, float *y, int64_t y_stride, const void *w,
                            int64_t w_stride, int64_t r, const float *c, int64_t c_stride,
                            int n_tok) {
  switch (kind_of(wtype)) {
    case W_F16: axpy_kind(W_F16, n, y, y_stride, w, w_stride, r, c, c_stride, n_tok); break;
    case W_BF16: axpy_kind(W_BF16, n, y, y_stride, w, w_stride, r, c, c_stride, n_tok); break;
    default: axpy_kind(W_F32, n, y, y_stride, w, w_stride, r, c, c_stride, n_tok);
  }
}
