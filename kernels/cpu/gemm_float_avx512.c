/* AVX-512 micro kernels of the float GEMM (gemm_float.h): 12 weight rows x 32 tokens (two zmm
 * of token lanes per row: 24 accumulators), each weight broadcast from its row. Per column: 2
 * vector loads and 12 broadcasts for 24 FMAs, so the FMA units, not the loads, set the pace.
 *
 * BF16 weights on a CPU with AVX512_BF16 take vdpbf16ps, which multiplies pairs of BF16 values
 * and adds them into f32 lanes: the weights' own bytes are the broadcast pairs (no packing),
 * and the activations are split into two BF16 halves (hi = x rounded to BF16, lo = x - hi
 * rounded to BF16), each dotted with the weight pair, so a product keeps about 16 bits of the
 * activation instead of BF16's 8: the results stay as close to an F32 computation as the
 * FMA kernels' (the HF goldens compute BF16 weights in F32 to 1e-4), at the FMA kernels' cost.
 * The instructions are marked with their target attribute; qtypes.c installs the row only
 * after cpuid says the CPU has them. */
#include <immintrin.h>
#include <string.h>

#include "cpu/gemm_float.h"
#include "cpu/quant.h"

#define RM 12
#define TB 32
#define KC 256

/* Column chunk of n tokens into TB token lanes, zeros past n. */
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
  /* the last rows of a matrix: copied, the missing rows zero */
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

/* F16 and BF16 rows converted to f32 once per chunk (exact), then read by the f32 kernel. */
static inline __attribute__((always_inline)) __m512 half16(int bf16, const uint16_t *p) {
  const __m256i h = _mm256_loadu_si256((const __m256i *)p);
  return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
              : _mm512_cvtph_ps(h);
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
    for (; k + 16 <= kc; k += 16) _mm512_storeu_ps(p + k, half16(bf16, w + k));
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
  __m512 a[RM][2];
#pragma GCC unroll 12
  for (int r = 0; r < RM; r++) {
    a[r][0] = accumulate ? _mm512_loadu_ps(c + r * TB) : _mm512_setzero_ps();
    a[r][1] = accumulate ? _mm512_loadu_ps(c + r * TB + 16) : _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < kc; k++) {
    const __m512 x0 = _mm512_loadu_ps(xp + k * TB), x1 = _mm512_loadu_ps(xp + k * TB + 16);
#pragma GCC unroll 12
    for (int r = 0; r < RM; r++) {
      const __m512 b = _mm512_set1_ps(w[r][k]);
      a[r][0] = _mm512_fmadd_ps(b, x0, a[r][0]);
      a[r][1] = _mm512_fmadd_ps(b, x1, a[r][1]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < RM; r++) {
    _mm512_storeu_ps(c + r * TB, a[r][0]);
    _mm512_storeu_ps(c + r * TB + 16, a[r][1]);
  }
}

#define BF16_TARGET __attribute__((target("avx512bf16")))

/* x as hi + lo, both BF16 rounded to nearest even: |x - hi - lo| <= 2^-16 |x|. Where hi would
 * round up past the largest float, hi is x truncated instead; a non-finite x keeps its class in
 * hi (a NaN stays a NaN) and lo is 0. */
static inline uint16_t bf16_round(uint32_t u) {
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline void bf16_split(float x, uint16_t *hi, uint16_t *lo) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) {
    *hi = (u & 0x007fffffu) ? (uint16_t)((u >> 16) | 0x40) : (uint16_t)(u >> 16);
    *lo = 0;
    return;
  }
  uint16_t h = bf16_round(u);
  if ((h & 0x7f80u) == 0x7f80u) h = (uint16_t)(u >> 16);
  const uint32_t hu = (uint32_t)h << 16;
  float hf, rest;
  memcpy(&hf, &hu, 4);
  rest = x - hf; /* exact: both are within a factor 2 and hf has 8 significant bits */
  uint32_t v;
  memcpy(&v, &rest, 4);
  *hi = h;
  *lo = bf16_round(v);
}

/* Per column pair: the hi pairs of the TB tokens (two zmm), then the lo pairs (two zmm). */
static void pack_x_bf16(const float *x, size_t x_rs, int n, int64_t k0, int64_t kc, void *vxp) {
  uint16_t *xp = vxp;
  const int64_t kp = kc / 2;
  for (int t = 0; t < TB; t++) {
    const float *xt = x + (size_t)t * x_rs + k0;
    for (int64_t p = 0; p < kp; p++) {
      uint16_t *d = xp + (size_t)p * 4 * TB + 2 * t;
      if (t < n) {
        bf16_split(xt[2 * p], &d[0], &d[2 * TB]);
        bf16_split(xt[2 * p + 1], &d[1], &d[2 * TB + 1]);
      } else {
        d[0] = d[1] = d[2 * TB] = d[2 * TB + 1] = 0;
      }
    }
  }
}

static const void *pack_w_direct(const void *W, size_t w_rs, int n, int64_t k0, int64_t kc,
                                 void *panel, size_t *p_rs) {
  if (n == RM) {
    *p_rs = w_rs;
    return (const uint8_t *)W + (size_t)k0 * 2;
  }
  const size_t rs = (size_t)kc * 2 + 64;
  for (int r = 0; r < RM; r++) {
    uint8_t *p = (uint8_t *)panel + (size_t)r * rs;
    if (r < n)
      memcpy(p, (const uint8_t *)W + (size_t)r * w_rs + (size_t)k0 * 2, (size_t)kc * 2);
    else
      memset(p, 0, (size_t)kc * 2);
  }
  *p_rs = rs;
  return panel;
}

static BF16_TARGET void micro_bf16(int64_t kc, const void *vw, size_t w_rs, const void *vxp,
                                   float *c, int accumulate) {
  const uint8_t *xp = vxp;
  const uint8_t *w[RM];
  for (int r = 0; r < RM; r++) w[r] = (const uint8_t *)vw + (size_t)r * w_rs;
  __m512 a[RM][2];
#pragma GCC unroll 12
  for (int r = 0; r < RM; r++) {
    a[r][0] = accumulate ? _mm512_loadu_ps(c + r * TB) : _mm512_setzero_ps();
    a[r][1] = accumulate ? _mm512_loadu_ps(c + r * TB + 16) : _mm512_setzero_ps();
  }
  const int64_t kp = kc / 2;
  for (int64_t p = 0; p < kp; p++) {
    const uint8_t *xq = xp + (size_t)p * 8 * TB;
    const __m512bh h0 = (__m512bh)_mm512_loadu_si512(xq),
                   h1 = (__m512bh)_mm512_loadu_si512(xq + 64);
    const __m512bh l0 = (__m512bh)_mm512_loadu_si512(xq + 128),
                   l1 = (__m512bh)_mm512_loadu_si512(xq + 192);
#pragma GCC unroll 12
    for (int r = 0; r < RM; r++) {
      int32_t pair;
      memcpy(&pair, w[r] + 4 * p, 4);
      const __m512bh b = (__m512bh)_mm512_set1_epi32(pair);
      a[r][0] = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a[r][0], l0, b), h0, b);
      a[r][1] = _mm512_dpbf16_ps(_mm512_dpbf16_ps(a[r][1], l1, b), h1, b);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < RM; r++) {
    _mm512_storeu_ps(c + r * TB, a[r][0]);
    _mm512_storeu_ps(c + r * TB + 16, a[r][1]);
  }
}

const nllm_gemmf nllm_gemmf_f32_avx512 = {RM, TB, KC, 1, 16, pack_x_f32, pack_w_f32, micro_f32};
const nllm_gemmf nllm_gemmf_f16_avx512 = {RM, TB, KC, 1, 16, pack_x_f32, pack_w_f16, micro_f32};
const nllm_gemmf nllm_gemmf_bf16_avx512 = {RM, TB, KC, 1, 16, pack_x_f32, pack_w_bf16, micro_f32};
const nllm_gemmf nllm_gemmf_bf16_avx512bf16 = {RM,        TB, KC, 2, 16, pack_x_bf16, pack_w_direct,
                                               micro_bf16};

/* The GEMM wins over dequantize + sgemm at every batch from min_tokens on (docs/performance.md,
 * "Float GEMM"), so these formats never go to sgemm in this tier. */
static const nllm_qtype_kernels gemmf_rows[] = {
    {.type = NLLM_TYPE_F32, .gemmf = &nllm_gemmf_f32_avx512, .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_F16, .gemmf = &nllm_gemmf_f16_avx512, .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_BF16, .gemmf = &nllm_gemmf_bf16_avx512, .blas_min_tokens = NLLM_BLAS_NEVER},
};
const nllm_kernel_set nllm_kernels_gemmf_avx512 = {gemmf_rows,
                                                   sizeof gemmf_rows / sizeof gemmf_rows[0]};

static const nllm_qtype_kernels gemmf_bf16_rows[] = {
    {.type = NLLM_TYPE_BF16, .gemmf = &nllm_gemmf_bf16_avx512bf16},
};
const nllm_kernel_set nllm_kernels_gemmf_avx512bf16 = {gemmf_bf16_rows, 1};
