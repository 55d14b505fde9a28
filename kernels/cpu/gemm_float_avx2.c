/* AVX2 + FMA + F16C micro kernels of the float GEMM (gemm_float.h): 6 weight rows x 16 tokens
 * (two ymm of token lanes per row: 12 accumulators, with the two activation vectors and a
 * broadcast all 16 ymm registers). Per column: 2 vector loads and 6 broadcasts for 12 FMAs. */
#include <immintrin.h>
#include <string.h>

#include "cpu/gemm_float.h"
#include "cpu/quant.h"

#define RM 6
#define TB 16
#define KC 256

static void pack_x_f32(const float *x, size_t x_rs, int n, int64_t k0, int64_t kc, void *vxp) {
  float *xp = vxp;
  for (int t = 0; t < n; t++) {
    const float *xt = x + (size_t)t * x_rs + k0;
    for (int64_t k = 0; k < kc; k++) xp[k * TB + t] = xt[k];
  }
  for (int t = n; t < TB; t++)
    for (int64_t k = 0; k < kc; k++) xp[k * TB + t] = 0.0f;
}

static const void *pack_w_f32(const void *W, size_t w_rs, int n, int64_t k0, int64_t kc,
                              void *panel, size_t *p_rs) {
  if (n == RM) {
    *p_rs = w_rs;
    return (const uint8_t *)W + (size_t)k0 * sizeof(float);
  }
  const size_t rs = (size_t)kc * sizeof(float) + 64;
  for (int r = 0; r < RM; r++) {
    float *p = (float *)((uint8_t *)panel + (size_t)r * rs);
    if (r < n)
      memcpy(p, (const uint8_t *)W + (size_t)r * w_rs + (size_t)k0 * sizeof(float),
             (size_t)kc * sizeof(float));
    else
      memset(p, 0, (size_t)kc * sizeof(float));
  }
  *p_rs = rs;
  return panel;
}

static inline __attribute__((always_inline)) __m256 half8(int bf16, const uint16_t *p) {
  const __m128i h = _mm_loadu_si128((const __m128i *)p);
  return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
              : _mm256_cvtph_ps(h);
}

static inline __attribute__((always_inline)) const void *pack_w_half(int bf16, const void *W,
                                                                     size_t w_rs, int n, int64_t k0,
                                                                     int64_t kc, void *panel,
                                                                     size_t *p_rs) {
  const size_t rs = (size_t)kc * sizeof(float) + 64;
  for (int r = 0; r < RM; r++) {
    float *p = (float *)((uint8_t *)panel + (size_t)r * rs);
    if (r >= n) {
      memset(p, 0, (size_t)kc * sizeof(float));
      continue;
    }
    const uint16_t *w = (const uint16_t *)((const uint8_t *)W + (size_t)r * w_rs) + k0;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) _mm256_storeu_ps(p + k, half8(bf16, w + k));
    for (; k < kc; k++) p[k] = bf16 ? q_bf2f(w[k]) : q_h2f(w[k]);
  }
  *p_rs = rs;
  return panel;
}

static const void *pack_w_f16(const void *W, size_t w_rs, int n, int64_t k0, int64_t kc,
                              void *panel, size_t *p_rs) {
  return pack_w_half(0, W, w_rs, n, k0, kc, panel, p_rs);
}

static const void *pack_w_bf16(const void *W, size_t w_rs, int n, int64_t k0, int64_t kc,
                               void *panel, size_t *p_rs) {
  return pack_w_half(1, W, w_rs, n, k0, kc, panel, p_rs);
}

static void micro_f32(int64_t kc, const void *vw, size_t w_rs, const void *vxp, float *c,
                      int accumulate) {
  const float *xp = vxp;
  const float *w[RM];
  for (int r = 0; r < RM; r++) w[r] = (const float *)((const uint8_t *)vw + (size_t)r * w_rs);
  __m256 a[RM][2];
#pragma GCC unroll 6
  for (int r = 0; r < RM; r++) {
    a[r][0] = accumulate ? _mm256_loadu_ps(c + r * TB) : _mm256_setzero_ps();
    a[r][1] = accumulate ? _mm256_loadu_ps(c + r * TB + 8) : _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < kc; k++) {
    const __m256 x0 = _mm256_loadu_ps(xp + k * TB), x1 = _mm256_loadu_ps(xp + k * TB + 8);
#pragma GCC unroll 6
    for (int r = 0; r < RM; r++) {
      const __m256 b = _mm256_broadcast_ss(&w[r][k]);
      a[r][0] = _mm256_fmadd_ps(b, x0, a[r][0]);
      a[r][1] = _mm256_fmadd_ps(b, x1, a[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < RM; r++) {
    _mm256_storeu_ps(c + r * TB, a[r][0]);
    _mm256_storeu_ps(c + r * TB + 8, a[r][1]);
  }
}

#define GEMMF(pw)                                                                         \
  {                                                                                       \
    .rm = RM, .tb = TB, .kc = KC, .min_tokens = 16, .pack_x = pack_x_f32, .pack_w = (pw), \
    .micro = micro_f32, .store = NULL                                                     \
  }
const nllm_gemmf nllm_gemmf_f32_avx2 = GEMMF(pack_w_f32);
const nllm_gemmf nllm_gemmf_f16_avx2 = GEMMF(pack_w_f16);
const nllm_gemmf nllm_gemmf_bf16_avx2 = GEMMF(pack_w_bf16);

/* The GEMM wins over dequantize + sgemm at every batch from min_tokens on (docs/performance.md,
 * "Float GEMM"), so these formats never go to sgemm in this tier. */
static const nllm_qtype_kernels gemmf_rows[] = {
    {.type = NLLM_TYPE_F32, .gemmf = &nllm_gemmf_f32_avx2, .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_F16, .gemmf = &nllm_gemmf_f16_avx2, .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_BF16, .gemmf = &nllm_gemmf_bf16_avx2, .blas_min_tokens = NLLM_BLAS_NEVER},
};
const nllm_kernel_set nllm_kernels_gemmf_avx2 = {gemmf_rows,
                                                 sizeof gemmf_rows / sizeof gemmf_rows[0]};
