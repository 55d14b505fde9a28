/* AVX2 + FMA + F16C kernels of LoRA's low-rank products (lowrank.c has the reference and the
 * passes that call them): F32 or F16 weights, F32 activations. */
#include <immintrin.h>

#include "cpu/quant.h"
#include "cpu/quant_avx2.h"

static inline __attribute__((always_inline)) __m256 load8(int f16, const void *w, int64_t i) {
  return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)))
             : _mm256_loadu_ps((const float *)w + i);
}

static inline float load1(int f16, const void *w, int64_t i) {
  return f16 ? q_h2f(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

/* Four rows (missing ones repeat row 0 and are not stored) by nt tokens (1 or 2): the weight
 * vector is converted once for every token of the tile. */
static inline __attribute__((always_inline)) void dot_tile(int f16, int nt, int64_t n, float *s,
                                                           int64_t s_stride, const void *w,
                                                           int64_t w_stride, int n_rows,
                                                           const float *x, int64_t x_stride,
                                                           float scale) {
  const size_t es = f16 ? 2 : 4;
  const void *row[4];
  for (int j = 0; j < 4; j++)
    row[j] = (const uint8_t *)w + (size_t)((j < n_rows ? j : 0) * w_stride) * es;
  __m256 acc[2][4];
  for (int t = 0; t < 2; t++)
    for (int j = 0; j < 4; j++) acc[t][j] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 w0 = load8(f16, row[0], i), w1 = load8(f16, row[1], i);
    const __m256 w2 = load8(f16, row[2], i), w3 = load8(f16, row[3], i);
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
      for (int64_t k = i; k < n; k++) v += load1(f16, row[j], k) * x[t * x_stride + k];
      s[t * s_stride + j] = scale * v;
    }
}

void nllm_lowrank_dot_avx2(int32_t wtype, int64_t n, float *s, int64_t s_stride, const void *w,
                           int64_t w_stride, int n_rows, const float *x, int64_t x_stride,
                           int n_tok, float scale) {
  const int f16 = wtype == NLLM_TYPE_F16;
  for (int t = 0; t < n_tok; t += 2) {
    const float *xt = x + t * x_stride;
    float *st = s + t * s_stride;
    if (n_tok - t >= 2) {
      if (f16)
        dot_tile(1, 2, n, st, s_stride, w, w_stride, n_rows, xt, x_stride, scale);
      else
        dot_tile(0, 2, n, st, s_stride, w, w_stride, n_rows, xt, x_stride, scale);
    } else if (f16) {
      dot_tile(1, 1, n, st, s_stride, w, w_stride, n_rows, xt, x_stride, scale);
    } else {
      dot_tile(0, 1, n, st, s_stride, w, w_stride, n_rows, xt, x_stride, scale);
    }
  }
}

/* 32 outputs of nt tokens (1 or 2) in registers while the r weight rows pass. */
static inline __attribute__((always_inline)) void axpy_tile(int f16, int nt, float *y,
                                                            int64_t y_stride, const void *w,
                                                            int64_t w_stride, int64_t r,
                                                            const float *c, int64_t c_stride) {
  const size_t es = f16 ? 2 : 4;
  __m256 acc[2][4];
  for (int t = 0; t < nt; t++)
    for (int v = 0; v < 4; v++) acc[t][v] = _mm256_loadu_ps(y + t * y_stride + 8 * v);
  for (int64_t j = 0; j < r; j++) {
    const void *wj = (const uint8_t *)w + (size_t)(j * w_stride) * es;
    const __m256 w0 = load8(f16, wj, 0), w1 = load8(f16, wj, 8);
    const __m256 w2 = load8(f16, wj, 16), w3 = load8(f16, wj, 24);
    for (int t = 0; t < nt; t++) {
      const __m256 cv = _mm256_broadcast_ss(c + t * c_stride + j);
      acc[t][0] = _mm256_fmadd_ps(cv, w0, acc[t][0]);
      acc[t][1] = _mm256_fmadd_ps(cv, w1, acc[t][1]);
      acc[t][2] = _mm256_fmadd_ps(cv, w2, acc[t][2]);
      acc[t][3] = _mm256_fmadd_ps(cv, w3, acc[t][3]);
    }
  }
  for (int t = 0; t < nt; t++)
    for (int v = 0; v < 4; v++) _mm256_storeu_ps(y + t * y_stride + 8 * v, acc[t][v]);
}

void nllm_lowrank_axpy_avx2(int32_t wtype, int64_t n, float *y, int64_t y_stride, const void *w,
                            int64_t w_stride, int64_t r, const float *c, int64_t c_stride,
                            int n_tok) {
  const int f16 = wtype == NLLM_TYPE_F16;
  const size_t es = f16 ? 2 : 4;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const void *wi = (const uint8_t *)w + (size_t)i * es;
    for (int t = 0; t < n_tok; t += 2) {
      float *yt = y + t * y_stride + i;
      const float *ct = c + t * c_stride;
      if (n_tok - t >= 2) {
        if (f16)
          axpy_tile(1, 2, yt, y_stride, wi, w_stride, r, ct, c_stride);
        else
          axpy_tile(0, 2, yt, y_stride, wi, w_stride, r, ct, c_stride);
      } else if (f16) {
        axpy_tile(1, 1, yt, y_stride, wi, w_stride, r, ct, c_stride);
      } else {
        axpy_tile(0, 1, yt, y_stride, wi, w_stride, r, ct, c_stride);
      }
    }
  }
  /* the last outputs (fewer than 32): as the reference does them */
  for (int t = 0; t < n_tok; t++)
    for (int64_t k = i; k < n; k++) {
      float acc = y[t * y_stride + k];
      for (int64_t j = 0; j < r; j++) acc += c[t * c_stride + j] * load1(f16, w, j * w_stride + k);
      y[t * y_stride + k] = acc;
    }
}
