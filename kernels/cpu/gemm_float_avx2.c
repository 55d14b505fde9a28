/* AVX2 + FMA + F16C kernels of the float GEMM (gemm_float.h): the width-generic body
 * (gemm_float_body.h) at 8 lanes, 6 weight rows x 16 tokens (12 ymm accumulators; with the two
 * activation vectors and a broadcast all 16 ymm registers). */
#include <immintrin.h>
#include <string.h>

#include "cpu/gemm_float.h"
#include "cpu/quant.h"

#define VEC __m256
#define VL 8
#define RM 6
#define KC 256
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define V_ZERO() _mm256_setzero_ps()
#define V_SET1(p) _mm256_broadcast_ss(p)
#define V_FMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define V_HALF(bf16, p) half8((bf16), (p))
#define GEMMF_ISA avx2

static inline __attribute__((always_inline)) __m256 half8(int bf16, const uint16_t *p) {
  const __m128i h = _mm_loadu_si128((const __m128i *)p);
  return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
              : _mm256_cvtph_ps(h);
}

/* v[t] = column t of the 8 x 8 matrix whose rows are v[0..7]: pairs, then 4 x 4 within each
 * 128-bit lane, then the lanes. */
static inline __attribute__((always_inline)) void transpose_vl(__m256 v[8]) {
  __m256 a[8], b[8];
  for (int i = 0; i < 8; i += 2) {
    a[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
    a[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
  }
  /* b[g + j], lane L: rows g..g+3 at column 4L + j */
  for (int g = 0; g < 8; g += 4) {
    b[g] = _mm256_shuffle_ps(a[g], a[g + 2], 0x44);
    b[g + 1] = _mm256_shuffle_ps(a[g], a[g + 2], 0xee);
    b[g + 2] = _mm256_shuffle_ps(a[g + 1], a[g + 3], 0x44);
    b[g + 3] = _mm256_shuffle_ps(a[g + 1], a[g + 3], 0xee);
  }
  for (int j = 0; j < 4; j++) {
    v[j] = _mm256_permute2f128_ps(b[j], b[4 + j], 0x20);
    v[4 + j] = _mm256_permute2f128_ps(b[j], b[4 + j], 0x31);
  }
}

static inline __attribute__((always_inline)) void store_rm(float *p, __m256 v) {
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  _mm_storeu_ps(p, _mm256_castps256_ps128(v));
  _mm_storel_pi((__m64 *)(p + 4), hi);
}

#include "cpu/gemm_float_body.h"
