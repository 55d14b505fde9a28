/* AVX-512 kernels of the float GEMM (gemm_float.h): the width-generic body
 * (gemm_float_body.h) at 16 lanes, 12 weight rows x 32 tokens (24 zmm accumulators), and where
 * the CPU has AVX512_BF16 a second BF16 kernel for activations rounded to BF16 (below). */
#include <immintrin.h>
#include <string.h>

#include "cpu/gemm_float.h"
#include "cpu/quant.h"

#define VEC __m512
#define VL 16
#define RM 12
#define KC 256
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps((p), (v))
#define V_ZERO() _mm512_setzero_ps()
#define V_SET1(p) _mm512_set1_ps(*(p))
#define V_FMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define V_HALF(bf16, p) half16((bf16), (p))
#define GEMMF_ISA avx512

static inline __attribute__((always_inline)) __m512 half16(int bf16, const uint16_t *p) {
  const __m256i h = _mm256_loadu_si256((const __m256i *)p);
  return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
              : _mm512_cvtph_ps(h);
}

/* v[t] = column t of the 16 x 16 matrix whose rows are v[0..15] (four rounds of shuffles:
 * within 64-bit pairs, 128-bit lanes, then the 4 x 4 lanes). */
static inline __attribute__((always_inline)) void transpose_vl(__m512 v[16]) {
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

/* A full tile's twelve sums as a ymm and an xmm store (masked stores were slower here). */
static inline __attribute__((always_inline)) void store_rm(float *p, __m512 v) {
  _mm256_storeu_ps(p, _mm512_castps512_ps256(v));
  _mm_storeu_ps(p + 8, _mm512_extractf32x4_ps(v, 2));
}

#include "cpu/gemm_float_body.h"

/* BF16 weights with the activations rounded to BF16 (the context's bf16_activations mode,
 * docs/api.md), on AVX512_BF16: `vdpbf16ps` multiplies pairs of BF16 values into f32 lanes
 * (exact products, f32 sums), so a broadcast dword of the weight row, two neighbouring weights
 * as stored, meets two columns of 16 tokens per instruction: twice the products per
 * instruction of the f32 kernel, and no conversion of the weights. The activations are packed
 * as such pairs (token lanes, one dword per token and column pair) and rounded to nearest even
 * by `vcvtne2ps2bf16` (which, like `vdpbf16ps`, treats subnormal inputs as zero). Odd column
 * counts end with a zero pair half on both sides. */
#define BF16_TARGET __attribute__((target("avx512bf16")))

/* 32 columns (k0 .. k0 + 31, those below kc) of one token as 16 dwords of BF16 pairs. */
static inline __attribute__((always_inline)) BF16_TARGET __m512 pairs32(const float *x,
                                                                        int64_t left) {
  const __mmask16 m0 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
  const __mmask16 m1 = left >= 32 ? 0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
  const __m512 lo = _mm512_maskz_loadu_ps(m0, x), hi = _mm512_maskz_loadu_ps(m1, x + 16);
  return _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

static BF16_TARGET void pack_x_bf16(const float *x, size_t x_rs, int n, int64_t k0, int64_t kc,
                                    void *vxp) {
  float *xp = vxp;
  for (int t0 = 0; t0 < TB; t0 += VL)
    for (int64_t k = 0; k < kc; k += 2 * VL) {
      __m512 v[VL];
      for (int i = 0; i < VL; i++)
        v[i] = t0 + i < n ? pairs32(x + (size_t)(t0 + i) * x_rs + k0 + k, kc - k) : V_ZERO();
      transpose_vl(v);
      const int64_t np = (kc - k + 1) / 2 < VL ? (kc - k + 1) / 2 : VL;
      for (int64_t i = 0; i < np; i++) V_STORE(xp + (k / 2 + i) * TB + t0, v[i]);
    }
}

/* Full tiles of an even chunk are read in place; otherwise copied, zero-padded to whole pairs
 * and to RM rows (a pair half past the row would be the next row's weight, or past the end). */
static const void *pack_w_bf16_pairs(const void *W, size_t w_rs, int n, int64_t k0, int64_t kc,
                                     void *panel, size_t *p_rs) {
  if (n == RM && kc % 2 == 0) {
    *p_rs = w_rs;
    return (const uint8_t *)W + (size_t)k0 * sizeof(uint16_t);
  }
  const size_t rs = (size_t)(kc + 1) / 2 * 4 + 64;
  for (int r = 0; r < RM; r++) {
    uint8_t *p = (uint8_t *)panel + (size_t)r * rs;
    memset(p, 0, rs);
    if (r < n)
      memcpy(p, (const uint8_t *)W + (size_t)r * w_rs + (size_t)k0 * sizeof(uint16_t),
             (size_t)kc * sizeof(uint16_t));
  }
  *p_rs = rs;
  return panel;
}

static BF16_TARGET void micro_bf16(int64_t kc, const void *vw, size_t w_rs, const void *vxp,
                                   float *c, int accumulate) {
  const float *xp = vxp;
  const uint8_t *w[RM];
  for (int r = 0; r < RM; r++) w[r] = (const uint8_t *)vw + (size_t)r * w_rs;
  __m512 a[RM][2];
#pragma GCC unroll 16
  for (int r = 0; r < RM; r++) {
    a[r][0] = accumulate ? V_LOAD(c + r * TB) : V_ZERO();
    a[r][1] = accumulate ? V_LOAD(c + r * TB + VL) : V_ZERO();
  }
  const int64_t np = (kc + 1) / 2;
  for (int64_t p = 0; p < np; p++) {
    const __m512bh x0 = (__m512bh)_mm512_castps_si512(V_LOAD(xp + p * TB));
    const __m512bh x1 = (__m512bh)_mm512_castps_si512(V_LOAD(xp + p * TB + VL));
#pragma GCC unroll 16
    for (int r = 0; r < RM; r++) {
      int32_t pair;
      memcpy(&pair, w[r] + 4 * p, sizeof pair);
      const __m512bh b = (__m512bh)_mm512_set1_epi32(pair);
      a[r][0] = _mm512_dpbf16_ps(a[r][0], b, x0);
      a[r][1] = _mm512_dpbf16_ps(a[r][1], b, x1);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < RM; r++) {
    V_STORE(c + r * TB, a[r][0]);
    V_STORE(c + r * TB + VL, a[r][1]);
  }
}

const nllm_gemmf nllm_gemmf_bf16_xbf16_avx512 = {.rm = RM,
                                                 .tb = TB,
                                                 .kc = KC,
                                                 .min_tokens = 16,
                                                 .pack_x = pack_x_bf16,
                                                 .pack_w = pack_w_bf16_pairs,
                                                 .micro = micro_bf16,
                                                 .store = store_y};

/* Laid over the AVX-512 tier only where the CPU has AVX512_BF16 (kernels/qtypes.c). */
static const nllm_qtype_kernels xbf16_rows[] = {
    {.type = NLLM_TYPE_BF16, .gemmf_xbf16 = &nllm_gemmf_bf16_xbf16_avx512},
};
const nllm_kernel_set nllm_kernels_gemmf_xbf16_avx512 = {xbf16_rows,
                                                         sizeof xbf16_rows / sizeof xbf16_rows[0]};
