/* AVX-512 micro kernels of the float GEMM (gemm_float.h): 12 weight rows x 32 tokens (two zmm
 * of token lanes per row: 24 accumulators), each weight broadcast from its row. Per column: 2
 * vector loads and 12 broadcasts for 24 FMAs, so the FMA units, not the loads, set the pace.
 *
 * BF16 weights are shifted to f32 into the panel like F16's (exact products). vdpbf16ps
 * (AVX512_BF16) was tried and left out: with the activations rounded to one BF16 (as llama.cpp
 * does) it ran twice as fast but moved a BF16 MoE model's prompt logits 2.2% from its decode's,
 * and with them split into two BF16 halves (15 bits kept) it ran no faster than this kernel and
 * still missed the embeddings' 1e-5 bounds (docs/performance.md, "Float GEMM").
 */
#include <immintrin.h>
#include <string.h>

#include "cpu/gemm_float.h"
#include "cpu/quant.h"

#define RM 12
#define TB 32
#define KC 256

/* v[t] = column t of the 16 x 16 matrix whose rows are v[0..15] (four rounds of shuffles:
 * within 64-bit pairs, 128-bit lanes, then the 4 x 4 lanes). */
static inline __attribute__((always_inline)) void transpose16(__m512 v[16]) {
  __m512 a[16], b[16];
  for (int i = 0; i < 16; i += 2) {
    a[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
    a[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
  }
  /* b[4g + j], 128-bit lane L: rows 4g..4g+3 at column 4L + j */
  for (int g = 0; g < 16; g += 4) {
    b[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a[g]), _mm512_castps_pd(a[g + 2])));
    b[g + 1] =
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a[g]), _mm512_castps_pd(a[g + 2])));
    b[g + 2] = _mm512_castpd_ps(
        _mm512_unpacklo_pd(_mm512_castps_pd(a[g + 1]), _mm512_castps_pd(a[g + 3])));
    b[g + 3] = _mm512_castpd_ps(
        _mm512_unpackhi_pd(_mm512_castps_pd(a[g + 1]), _mm512_castps_pd(a[g + 3])));
  }
  for (int j = 0; j < 4; j++) {
    const __m512 c0 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0x88);
    const __m512 c1 = _mm512_shuffle_f32x4(b[j], b[4 + j], 0xdd);
    const __m512 c2 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0x88);
    const __m512 c3 = _mm512_shuffle_f32x4(b[8 + j], b[12 + j], 0xdd);
    v[j] = _mm512_shuffle_f32x4(c0, c2, 0x88);
    v[4 + j] = _mm512_shuffle_f32x4(c1, c3, 0x88);
    v[8 + j] = _mm512_shuffle_f32x4(c0, c2, 0xdd);
    v[12 + j] = _mm512_shuffle_f32x4(c1, c3, 0xdd);
  }
}

/* Column chunk of n tokens into TB token lanes, zeros past n: 16 tokens x 16 columns at a time
 * through transpose16. */
static void pack_x_f32(const float *x, size_t x_rs, int n, int64_t k0, int64_t kc, void *vxp) {
  float *xp = vxp;
  for (int t0 = 0; t0 < TB; t0 += 16) {
    int64_t k = 0;
    for (; k + 16 <= kc; k += 16) {
      __m512 v[16];
      for (int i = 0; i < 16; i++)
        v[i] = t0 + i < n ? _mm512_loadu_ps(x + (size_t)(t0 + i) * x_rs + k0 + k)
                          : _mm512_setzero_ps();
      transpose16(v);
      for (int i = 0; i < 16; i++) _mm512_storeu_ps(xp + (k + i) * TB + t0, v[i]);
    }
    for (; k < kc; k++)
      for (int t = t0; t < t0 + 16; t++) xp[k * TB + t] = t < n ? x[(size_t)t * x_rs + k0 + k] : 0;
  }
}

/* The sums of one block (c[r * TB + t]) into y: token t's n sums go to y + t * y_rs, a full
 * tile's twelve as a ymm and an xmm store (masked stores were slower here). */
static void store_y(const float *c, int n, int n_tok, float *y, size_t y_rs) {
  for (int t0 = 0; t0 < n_tok; t0 += 16) {
    __m512 v[16];
    for (int r = 0; r < 16; r++)
      v[r] = r < RM ? _mm512_loadu_ps(c + r * TB + t0) : _mm512_setzero_ps();
    transpose16(v);
    const int nt = n_tok - t0 < 16 ? n_tok - t0 : 16;
    for (int t = 0; t < nt; t++) {
      float *yt = y + (size_t)(t0 + t) * y_rs;
      if (n == RM) {
        _mm256_storeu_ps(yt, _mm512_castps512_ps256(v[t]));
        _mm_storeu_ps(yt + 8, _mm512_extractf32x4_ps(v[t], 2));
      } else {
        float tmp[16];
        _mm512_storeu_ps(tmp, v[t]);
        for (int r = 0; r < n; r++) yt[r] = tmp[r];
      }
    }
  }
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

#define GEMMF(pw)                                                                         \
  {                                                                                       \
    .rm = RM, .tb = TB, .kc = KC, .min_tokens = 16, .pack_x = pack_x_f32, .pack_w = (pw), \
    .micro = micro_f32, .store = store_y                                                  \
  }
const nllm_gemmf nllm_gemmf_f32_avx512 = GEMMF(pack_w_f32);
const nllm_gemmf nllm_gemmf_f16_avx512 = GEMMF(pack_w_f16);
const nllm_gemmf nllm_gemmf_bf16_avx512 = GEMMF(pack_w_bf16);

/* The GEMM wins over dequantize + sgemm at every batch from min_tokens on (docs/performance.md,
 * "Float GEMM"), so these formats never go to sgemm in this tier. */
static const nllm_qtype_kernels gemmf_rows[] = {
    {.type = NLLM_TYPE_F32, .gemmf = &nllm_gemmf_f32_avx512, .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_F16, .gemmf = &nllm_gemmf_f16_avx512, .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_BF16, .gemmf = &nllm_gemmf_bf16_avx512, .blas_min_tokens = NLLM_BLAS_NEVER},
};
const nllm_kernel_set nllm_kernels_gemmf_avx512 = {gemmf_rows,
                                                   sizeof gemmf_rows / sizeof gemmf_rows[0]};
