/* Helpers the AVX2 kernel files share (quant_*_avx2.c and ops_avx2.c): conversions, horizontal
 * sums and the byte tricks of the integer dot products. Included only by files compiled with
 * -mavx2 -mfma -mf16c. */
#ifndef NLLM_QUANT_AVX2_H
#define NLLM_QUANT_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "cpu/quant.h"

/* One half to float with the F16C instruction (the scale of every block goes through here). */
static inline float f16c_h2f(uint16_t h) {
  return _cvtsh_ss(h);
}

static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

static inline __m256 bf16x8_load(const uint16_t *p) {
  __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* Signed int8 x int8 products of 32 lanes summed to 8 int32 lanes, as float. maddubs needs an
 * unsigned left operand, so the sign of x moves onto y (|x| * sign(y, x)). */
static inline __m256 dot_i8x32(__m256i x, __m256i y) {
  __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* 32 nibbles of 16 bytes: low nibbles are elements 0..15, high nibbles 16..31. */
static inline __m256i nibbles32(const uint8_t *qs) {
  __m128i q = _mm_loadu_si128((const __m128i *)qs);
  __m128i m = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
}

/* Byte j of the result is 0xFF where bit j of the 32-bit word is set. */
static inline __m256i bits32_to_bytes(uint32_t w) {
  const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2,
                                        2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
  __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w), shuf);
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* Unsigned levels (0..127) times signed int8, summed in pairs to int16, no sign trick. */
static inline __m256i udot_pairs(__m256i u, __m256i y) {
  return _mm256_maddubs_epi16(u, y);
}

/* Rounds half away from zero like roundf, so the result is bit-identical to the reference:
 * v - trunc(v) is exact in binary floating point, and only its magnitude decides. */
static inline __m256i round_away_epi32(__m256 v) {
  __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
  __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
  __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  __m256 add = _mm256_and_ps(up, _mm256_or_ps(sign, _mm256_set1_ps(1.0f)));
  return _mm256_cvttps_epi32(_mm256_add_ps(t, add));
}

/* 32 int32 lanes (4 vectors, in order) to 32 int8 in order. */
static inline __m256i pack_i32x32_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
  __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  __m256i p = _mm256_packs_epi16(ab, cd);
  /* the packs work within 128-bit lanes; this puts the 4-byte groups back in order */
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Row r's dword k (r, k < 8) moves to vector k, lane r: the row-interleaved kernels' packing. */
static inline void transpose8x8_epi32(__m256i v[8]) {
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(_mm256_castsi256_ps(v[2 * i]), _mm256_castsi256_ps(v[2 * i + 1]));
    t[2 * i + 1] =
        _mm256_unpackhi_ps(_mm256_castsi256_ps(v[2 * i]), _mm256_castsi256_ps(v[2 * i + 1]));
  }
#pragma GCC unroll 2
  for (int h = 0; h < 2; h++) {
    u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h + 0], t[4 * h + 2], 0x44);
    u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h + 0], t[4 * h + 2], 0xEE);
    u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    v[i] = _mm256_castps_si256(_mm256_permute2f128_ps(u[i], u[4 + i], 0x20));
    v[4 + i] = _mm256_castps_si256(_mm256_permute2f128_ps(u[i], u[4 + i], 0x31));
  }
}

/* ops_avx2.c's float dot product, which the F32 rows' vec_dot is as well */
float nllm_dot_f32_avx2(const float *a, const float *b, int64_t n);

#endif
