/* AVX2 + FMA + F16C kernels of LoRA's low-rank products: lowrank_body.h at 8 floats a vector.
 * 16 registers: a dot tile is four rows by two tokens. Exported: the AVX-512 tier finishes its
 * last outputs with these. */
#include <immintrin.h>

#include "cpu/quant.h"
#include "cpu/quant_avx2.h"

#define LR_VEC __m256
#define LR_WIDTH 8
#define LR_DOT_TOKENS 2
#define LR_ZERO() _mm256_setzero_ps()
#define LR_LOAD(p) _mm256_loadu_ps(p)
#define LR_STORE(p, v) _mm256_storeu_ps((p), (v))
#define LR_SET1(x) _mm256_set1_ps(x)
#define LR_HSUM(v) hsum8(v)
#define LR_FMA(acc, a, b) _mm256_fmadd_ps((a), (b), (acc))

static inline __attribute__((always_inline)) __m256 lr_load_f16(const uint16_t *p) {
  return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __attribute__((always_inline)) __m256 lr_load_bf16(const uint16_t *p) {
  const __m128i h = _mm_loadu_si128((const __m128i *)p);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

#define LR_LINKAGE
#define LR_DOT_NAME nllm_lowrank_dot_avx2
#define LR_AXPY_NAME nllm_lowrank_axpy_avx2
#include "cpu/lowrank_body.h"
