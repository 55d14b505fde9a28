/* AVX2 dot products of the IQ codebook formats against Q8_K activations: their rows of the AVX2
 * tier (dequantization stays the scalar reference's). The layouts are read by the same chunk
 * readers as the scalar kernels (iq_layout.h); only the 32-value products are vectorized. The
 * integer sums equal the scalar ones exactly, and the float steps are the same, so the results
 * are bit-identical to quant_iq_ref.c. */
#include <immintrin.h>

#include "cpu/iq_layout.h"

/* Four sign bytes (bit j of byte l: element 8l + j negative) as 32 bytes of -1 / +1. */
static inline __m256i iq_signs_pm1(uint32_t s) {
  const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
  const __m256i bits = _mm256_set1_epi64x((int64_t)0x8040201008040201);
  __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)s), spread);
  __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(v, bits), bits);
  return _mm256_or_si256(neg, _mm256_set1_epi8(1));
}

/* Each group's odd scale (byte l of odd) in its four 16-bit lanes. */
static inline __m256i iq_odd16(uint32_t odd) {
  const __m256i spread =
      _mm256_set_epi64x((int64_t)0x8003800380038003, (int64_t)0x8002800280028002,
                        (int64_t)0x8001800180018001, (int64_t)0x8000800080008000);
  return _mm256_shuffle_epi8(_mm256_set1_epi32((int)odd), spread);
}

/* Signed 8-bit products without the -128 trap of _mm256_sign_epi8 on the activations: the sign
 * moves onto w (|w| <= 127), and |q8| read as unsigned holds 128 exactly. Pairs summed to 16 bit.
 */
static inline __m256i iq_mul_pairs(__m256i w, __m256i q8) {
  return _mm256_maddubs_epi16(_mm256_abs_epi8(q8), _mm256_sign_epi8(w, q8));
}

/* Each group's shift sign (bit 0 of byte l) as four 16-bit lanes of -1 or +1. */
static inline __m256i iq_shift_pm1(uint32_t signs) {
  const __m256i neg = _mm256_cmpgt_epi16(_mm256_and_si256(iq_odd16(signs), _mm256_set1_epi16(1)),
                                         _mm256_setzero_si256());
  return _mm256_or_si256(neg, _mm256_set1_epi16(1));
}

static inline int32_t iq_hsum32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

typedef void (*iq_chunk_fn)(const uint8_t *blk, int c, iq_chunk *out);
typedef __m256i (*iq_grid_fn)(const uint8_t *blk, int c);

/* The IQ3 formats' eight 4-value grid points of a chunk (same bytes as iq3_*_chunk's grid): the
 * indices are computed in a vector register, stored once and read back as words (a
 * same-size store-to-load, which forwards), then looked up one by one: on the AMD cores this was
 * measured on, that beats both eight scalar index computations and vpgatherdd. IQ3_XXS: the
 * chunk's 8 index bytes; IQ3_S: bit k of the chunk's qh byte is bit 8 of index k. */
static inline __m256i iq3_lookup8(const uint32_t *grid, __m256i idx) {
  uint32_t ix[8] __attribute__((aligned(32)));
  _mm256_store_si256((__m256i *)ix, idx);
  return _mm256_setr_epi32((int)grid[ix[0]], (int)grid[ix[1]], (int)grid[ix[2]], (int)grid[ix[3]],
                           (int)grid[ix[4]], (int)grid[ix[5]], (int)grid[ix[6]], (int)grid[ix[7]]);
}
static inline __m256i iq3_xxs_grid_avx2(const uint8_t *blk, int c) {
  __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * c)));
  return iq3_lookup8(nllm_iq3xxs_grid, idx);
}
static inline __m256i iq3_s_grid_avx2(const uint8_t *blk, int c) {
  __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * c)));
  __m256i hi = _mm256_srlv_epi32(_mm256_set1_epi32(blk[2 + QK_K / 4 + c]),
                                 _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  hi = _mm256_slli_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(1)), 8);
  return iq3_lookup8(nllm_iq3s_grid, _mm256_or_si256(idx, hi));
}

static inline __attribute__((always_inline)) void iq_vec_dot_avx2(
    int64_t n, float *s, const void *vx, const void *vy, size_t block_bytes, iq_chunk_fn chunk,
    iq_grid_fn grid_fn, int ternary, int iq1m_scale, float group_mul) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  const __m256i ones = _mm256_set1_epi8(1);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const uint8_t *blk = x + (size_t)i * block_bytes;
    __m256i acc = _mm256_setzero_si256();
    for (int c = 0; c < QK_K / 32; c++) {
      iq_chunk ch;
      chunk(blk, c, &ch);
      const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * c));
      const __m256i grid = grid_fn ? grid_fn(blk, c)
                                   : _mm256_set_epi64x((int64_t)ch.grid[3], (int64_t)ch.grid[2],
                                                       (int64_t)ch.grid[1], (int64_t)ch.grid[0]);
      __m256i p16;
      if (ternary) {
        /* 8 * sum(grid * q8) + shift sign * sum(q8), per group */
        const __m256i sgn16 = iq_shift_pm1(ch.signs);
        __m256i pg = iq_mul_pairs(grid, q8);
        __m256i sq = _mm256_maddubs_epi16(ones, q8);
        p16 = _mm256_add_epi16(_mm256_slli_epi16(pg, 3), _mm256_sign_epi16(sq, sgn16));
      } else {
        p16 = iq_mul_pairs(_mm256_sign_epi8(grid, iq_signs_pm1(ch.signs)), q8);
      }
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p16, iq_odd16(ch.odd)));
    }
    float d = iq1m_scale ? iq1_m_block_d(blk) : iq_block_d(blk);
    sum += (d * y[i].d) * (float)iq_hsum32(acc);
  }
  *s = sum * group_mul * (ternary ? 0.125f : 1.0f);
}

static void iq2_xxs_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx2(n, s, vx, vy, sizeof(block_iq2_xxs), iq2_xxs_chunk, NULL, 0, 0, 0.125f);
}
static void iq2_xs_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx2(n, s, vx, vy, sizeof(block_iq2_xs), iq2_xs_chunk, NULL, 0, 0, 0.125f);
}
static void iq2_s_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx2(n, s, vx, vy, sizeof(block_iq2_s), iq2_s_chunk, NULL, 0, 0, 0.125f);
}
static void iq3_xxs_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx2(n, s, vx, vy, sizeof(block_iq3_xxs), iq3_xxs_chunk, iq3_xxs_grid_avx2, 0, 0,
                  0.25f);
}
static void iq3_s_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx2(n, s, vx, vy, sizeof(block_iq3_s), iq3_s_chunk, iq3_s_grid_avx2, 0, 0, 1.0f);
}
static void iq1_s_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx2(n, s, vx, vy, sizeof(block_iq1_s), iq1_s_chunk, NULL, 1, 0, 1.0f);
}
static void iq1_m_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx2(n, s, vx, vy, sizeof(block_iq1_m), iq1_m_chunk, NULL, 1, 1, 1.0f);
}

static const nllm_qtype_kernels iq_avx2_rows[] = {
    {.type = NLLM_TYPE_IQ2_XXS, .vec_dot = iq2_xxs_vec_dot_avx2},
    {.type = NLLM_TYPE_IQ2_XS, .vec_dot = iq2_xs_vec_dot_avx2},
    {.type = NLLM_TYPE_IQ2_S, .vec_dot = iq2_s_vec_dot_avx2},
    {.type = NLLM_TYPE_IQ3_XXS, .vec_dot = iq3_xxs_vec_dot_avx2},
    {.type = NLLM_TYPE_IQ3_S, .vec_dot = iq3_s_vec_dot_avx2},
    {.type = NLLM_TYPE_IQ1_S, .vec_dot = iq1_s_vec_dot_avx2},
    {.type = NLLM_TYPE_IQ1_M, .vec_dot = iq1_m_vec_dot_avx2},
};
const nllm_kernel_set nllm_kernels_iq_avx2 = {iq_avx2_rows,
                                              sizeof iq_avx2_rows / sizeof iq_avx2_rows[0]};
