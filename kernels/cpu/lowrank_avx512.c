/* AVX-512 kernels of LoRA's low-rank products: lowrank_body.h at 16 floats a vector (F16 by one
 * vcvtph2ps per 16). 32 registers: a dot tile is four rows by four tokens. */
#include <immintrin.h>

#include "cpu/quant.h"

#define LR_VEC __m512
#define LR_WIDTH 16
#define LR_DOT_TOKENS 4
#define LR_ZERO() _mm512_setzero_ps()
#define LR_LOAD(p) _mm512_loadu_ps(p)
#define LR_STORE(p, v) _mm512_storeu_ps((p), (v))
#define LR_SET1(x) _mm512_set1_ps(x)
#define LR_HSUM(v) _mm512_reduce_add_ps(v)
#define LR_FMA(acc, a, b) _mm512_fmadd_ps((a), (b), (acc))

static inline __attribute__((always_inline)) __m512 lr_load_f16(const uint16_t *p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __attribute__((always_inline)) __m512 lr_load_bf16(const uint16_t *p) {
  const __m256i h = _mm256_loadu_si256((const __m256i *)p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* fewer than 64 outputs left: the AVX2 kernel's 32-wide tiles and tail */
#define LR_AXPY_TAIL nllm_lowrank_axpy_avx2
#define LR_DOT_NAME lowrank_dot_avx512
#define LR_AXPY_NAME lowrank_axpy_avx512
#include "cpu/lowrank_body.h"

/* The AVX-512 tier's ops over the AVX2 ones (the attention's from attention_avx512.c) */
const nllm_cpu_ops nllm_cpu_ops_avx512 = {.lowrank_dot = lowrank_dot_avx512,
                                          .lowrank_axpy = lowrank_axpy_avx512,
                                          .attn_span = nllm_attn_span_avx512,
                                          .attn_rows = nllm_attn_rows_avx512};
