/* AVX2 + FMA + F16C kernels of the float formats (F32, F16, BF16): their rows of the AVX2 tier.
 * Compiled with those flags alone; qtypes.c installs the rows only after cpuid says the CPU has
 * them. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#include "cpu/quant.h"
#include "cpu/quant_avx2.h"

static void f32_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y) {
  *s = nllm_dot_f32_avx2(x, y, n);
}

static void f16_to_float_avx2(const void *vx, float *y, int64_t n) {
  const uint16_t *x = vx;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
  for (; i < n; i++) y[i] = f16c_h2f(x[i]);
}

/* The KV cache's writes. Round to nearest even like the reference, equal to it for every
 * input but NaN (F16C keeps a NaN's payload, the reference makes a plain quiet NaN). */
static void f16_from_float_avx2(const float *x, void *vy, int64_t n) {
  uint16_t *y = vy;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) y[i] = q_f2h(x[i]);
}

static void f16_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const uint16_t *x = vx;
  const float *y = vy;
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
#define H8(k) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i + (k))))
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(H8(0), _mm256_loadu_ps(y + i), s0);
    s1 = _mm256_fmadd_ps(H8(8), _mm256_loadu_ps(y + i + 8), s1);
    s2 = _mm256_fmadd_ps(H8(16), _mm256_loadu_ps(y + i + 16), s2);
    s3 = _mm256_fmadd_ps(H8(24), _mm256_loadu_ps(y + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(H8(0), _mm256_loadu_ps(y + i), s0);
#undef H8
  float sum = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; i++) sum += f16c_h2f(x[i]) * y[i];
  *s = sum;
}

static void bf16_to_float_avx2(const void *vx, float *y, int64_t n) {
  const uint16_t *x = vx;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, bf16x8_load(x + i));
  for (; i < n; i++) y[i] = q_bf2f(x[i]);
}

static void bf16_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const uint16_t *x = vx;
  const float *y = vy;
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(bf16x8_load(x + i), _mm256_loadu_ps(y + i), s0);
    s1 = _mm256_fmadd_ps(bf16x8_load(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
    s2 = _mm256_fmadd_ps(bf16x8_load(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
    s3 = _mm256_fmadd_ps(bf16x8_load(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(bf16x8_load(x + i), _mm256_loadu_ps(y + i), s0);
  float sum = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; i++) sum += q_bf2f(x[i]) * y[i];
  *s = sum;
}

/* F16 and BF16 weights, four rows: the activation's floats are loaded once for four rows, and
 * the rows are prefetched as one linear stream ahead (the interleaved rows defeat the hardware
 * prefetcher, see nllm_prefetch_span). */
static inline __attribute__((always_inline)) __m256 half8_load(int bf16, const uint16_t *p) {
  return bf16 ? bf16x8_load(p) : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __attribute__((always_inline)) void dot4_half(int bf16, int64_t n, float *s,
                                                            const uint8_t *x0, size_t bx,
                                                            const float *y) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
#define ROW(r) ((const uint16_t *)(x0 + (size_t)(r)*bx) + i)
  for (; i + 32 <= n; i += 32) {
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)i * 2, 4 * 64);
    for (int k = 0; k < 32; k += 8) {
      const __m256 yv = _mm256_loadu_ps(y + i + k);
      a0 = _mm256_fmadd_ps(half8_load(bf16, ROW(0) + k), yv, a0);
      a1 = _mm256_fmadd_ps(half8_load(bf16, ROW(1) + k), yv, a1);
      a2 = _mm256_fmadd_ps(half8_load(bf16, ROW(2) + k), yv, a2);
      a3 = _mm256_fmadd_ps(half8_load(bf16, ROW(3) + k), yv, a3);
    }
  }
#undef ROW
  s[0] = hsum8(a0);
  s[1] = hsum8(a1);
  s[2] = hsum8(a2);
  s[3] = hsum8(a3);
  for (int r = 0; r < 4; r++) {
    const uint16_t *x = (const uint16_t *)(x0 + (size_t)r * bx);
    for (int64_t j = i; j < n; j++) s[r] += (bf16 ? q_bf2f(x[j]) : f16c_h2f(x[j])) * y[j];
  }
}

static void f16_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_half(0, n, s, x, bx, y);
}
static void bf16_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_half(1, n, s, x, bx, y);
}

/* The AVX2 tier's rows of the float formats (their crossover is the default). */
static const nllm_qtype_kernels float_rows[] = {
    {.type = NLLM_TYPE_F32, .vec_dot = f32_vec_dot_avx2},
    {.type = NLLM_TYPE_F16,
     .to_float = f16_to_float_avx2,
     .from_float = f16_from_float_avx2,
     .vec_dot = f16_vec_dot_avx2,
     .vec_dot4 = f16_vec_dot4_avx2},
    {.type = NLLM_TYPE_BF16,
     .to_float = bf16_to_float_avx2,
     .vec_dot = bf16_vec_dot_avx2,
     .vec_dot4 = bf16_vec_dot4_avx2},
};
const nllm_kernel_set nllm_kernels_float_avx2 = {float_rows,
                                                 sizeof float_rows / sizeof float_rows[0]};
