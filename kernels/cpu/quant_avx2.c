/* AVX2 + FMA + F16C kernels. This file alone is compiled with those flags; qtypes.c calls
 * into it only after cpuid says the CPU has them. */
#include <immintrin.h>
#include <math.h>

#include "cpu/quant.h"

/* One half to float with the F16C instruction (the scale of every block goes through here). */
static inline float f16c_h2f(uint16_t h) { return _cvtsh_ss(h); }

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

/* ---------------------------------------------------------------- float formats */

float nllm_dot_f32_avx2(const float *a, const float *b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

void nllm_axpy_f32_avx2(float *y, float a, const float *x, int64_t n) {
  __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

void f32_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y) {
  *s = nllm_dot_f32_avx2(x, y, n);
}

void f16_to_float_avx2(const void *vx, float *y, int64_t n) {
  const uint16_t *x = vx;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
  for (; i < n; i++) y[i] = f16c_h2f(x[i]);
}

void f16_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
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

void bf16_to_float_avx2(const void *vx, float *y, int64_t n) {
  const uint16_t *x = vx;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, bf16x8_load(x + i));
  for (; i < n; i++) y[i] = q_bf2f(x[i]);
}

void bf16_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
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

/* ---------------------------------------------------------------- Q8_0 */

void q8_0_to_float_avx2(const void *vx, float *y, int64_t n) {
  const block_q8_0 *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    __m256 d = _mm256_set1_ps(f16c_h2f(x[b].d));
    for (int k = 0; k < 4; k++) {
      __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x[b].qs + 8 * k)));
      _mm256_storeu_ps(y + b * QK + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
    }
  }
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

void q8_0_from_float_avx2(const float *x, void *vy, int64_t n) {
  block_q8_0 *y = vy;
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < n / QK; b++) {
    const float *xb = x + b * QK;
    __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
    __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                             _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = q_f2h(d);
    __m256 vid = _mm256_set1_ps(id);
    __m256i q = pack_i32x32_i8(round_away_epi32(_mm256_mul_ps(v0, vid)),
                               round_away_epi32(_mm256_mul_ps(v1, vid)),
                               round_away_epi32(_mm256_mul_ps(v2, vid)),
                               round_away_epi32(_mm256_mul_ps(v3, vid)));
    _mm256_storeu_si256((__m256i *)y[b].qs, q);
  }
}

void q8_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q8_0 *x = vx, *y = vy;
  int64_t nb = n / QK, b = 0;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
  for (; b + 2 <= nb; b += 2) {
    __m256 p0 = dot_i8x32(_mm256_loadu_si256((const __m256i *)x[b].qs),
                          _mm256_loadu_si256((const __m256i *)y[b].qs));
    __m256 p1 = dot_i8x32(_mm256_loadu_si256((const __m256i *)x[b + 1].qs),
                          _mm256_loadu_si256((const __m256i *)y[b + 1].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16c_h2f(x[b].d) * f16c_h2f(y[b].d)), p0, acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(f16c_h2f(x[b + 1].d) * f16c_h2f(y[b + 1].d)), p1, acc1);
  }
  for (; b < nb; b++) {
    __m256 p = dot_i8x32(_mm256_loadu_si256((const __m256i *)x[b].qs),
                         _mm256_loadu_si256((const __m256i *)y[b].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16c_h2f(x[b].d) * f16c_h2f(y[b].d)), p, acc0);
  }
  *s = hsum8(_mm256_add_ps(acc0, acc1));
}

/* ---------------------------------------------------------------- Q4_0 */

void q4_0_to_float_avx2(const void *vx, float *y, int64_t n) {
  const block_q4_0 *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    __m256 d = _mm256_set1_ps(f16c_h2f(x[b].d));
    __m256i q = _mm256_sub_epi8(nibbles32(x[b].qs), _mm256_set1_epi8(8));
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    float *yb = y + b * QK;
    _mm256_storeu_ps(yb, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
    _mm256_storeu_ps(yb + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
    _mm256_storeu_ps(yb + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
    _mm256_storeu_ps(yb + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
  }
}

void q4_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q4_0 *x = vx;
  const block_q8_0 *y = vy;
  const __m256i eight = _mm256_set1_epi8(8);
  int64_t nb = n / QK, b = 0;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
  for (; b + 2 <= nb; b += 2) {
    __m256 p0 = dot_i8x32(_mm256_sub_epi8(nibbles32(x[b].qs), eight),
                          _mm256_loadu_si256((const __m256i *)y[b].qs));
    __m256 p1 = dot_i8x32(_mm256_sub_epi8(nibbles32(x[b + 1].qs), eight),
                          _mm256_loadu_si256((const __m256i *)y[b + 1].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16c_h2f(x[b].d) * f16c_h2f(y[b].d)), p0, acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(f16c_h2f(x[b + 1].d) * f16c_h2f(y[b + 1].d)), p1, acc1);
  }
  for (; b < nb; b++) {
    __m256 p = dot_i8x32(_mm256_sub_epi8(nibbles32(x[b].qs), eight),
                         _mm256_loadu_si256((const __m256i *)y[b].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(f16c_h2f(x[b].d) * f16c_h2f(y[b].d)), p, acc0);
  }
  *s = hsum8(_mm256_add_ps(acc0, acc1));
}
