/* AVX2 + FMA + F16C kernels of the 32-value formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL):
 * their rows of the AVX2 tier. Compiled with those flags alone; qtypes.c installs the rows only
 * after cpuid says the CPU has them. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#include "cpu/quant.h"
#include "cpu/quant_avx2.h"

/* ---------------------------------------------------------------- Q8_0 */

static void q8_0_to_float_avx2(const void *vx, float *y, int64_t n) {
  const block_q8_0 *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    __m256 d = _mm256_set1_ps(f16c_h2f(x[b].d));
    for (int k = 0; k < 4; k++) {
      __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x[b].qs + 8 * k)));
      _mm256_storeu_ps(y + b * QK + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
    }
  }
}

static void q8_0_from_float_avx2(const float *x, void *vy, int64_t n) {
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
    __m256i q = pack_i32x32_i8(
        round_away_epi32(_mm256_mul_ps(v0, vid)), round_away_epi32(_mm256_mul_ps(v1, vid)),
        round_away_epi32(_mm256_mul_ps(v2, vid)), round_away_epi32(_mm256_mul_ps(v3, vid)));
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

static void q4_0_to_float_avx2(const void *vx, float *y, int64_t n) {
  const block_q4_0 *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    __m256 d = _mm256_set1_ps(f16c_h2f(x[b].d));
    __m256i q = _mm256_sub_epi8(nibbles32(x[b].qs), _mm256_set1_epi8(8));
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    float *yb = y + b * QK;
    _mm256_storeu_ps(yb, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
    _mm256_storeu_ps(
        yb + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
    _mm256_storeu_ps(yb + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
    _mm256_storeu_ps(
        yb + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
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

/* ---------------------------------------------------------------- Q4_1 / Q5_0 / Q5_1 / IQ4_NL */

void q4_1_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q4_1 *x = vx;
  const block_q8_1 *y = vy;
  __m256 acc = _mm256_setzero_ps();
  float offs = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    __m256i p = _mm256_madd_epi16(
        udot_pairs(nibbles32(x[b].qs), _mm256_loadu_si256((const __m256i *)y[b].qs)),
        _mm256_set1_epi16(1));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16c_h2f(x[b].d) * f16c_h2f(y[b].d)),
                          _mm256_cvtepi32_ps(p), acc);
    offs += f16c_h2f(x[b].m) * f16c_h2f(y[b].s);
  }
  *s = hsum8(acc) + offs;
}

/* 5-bit levels 0..31: nibbles plus 16 where the qh bit is set. */
static inline __m256i q5_levels(const uint8_t *qs, const uint8_t *qh) {
  __m256i hb = _mm256_and_si256(bits32_to_bytes(load_u32(qh)), _mm256_set1_epi8(16));
  return _mm256_or_si256(nibbles32(qs), hb);
}

void q5_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q5_0 *x = vx;
  const block_q8_0 *y = vy;
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK; b++) {
    __m256i q = _mm256_sub_epi8(q5_levels(x[b].qs, x[b].qh), _mm256_set1_epi8(16));
    __m256 p = dot_i8x32(q, _mm256_loadu_si256((const __m256i *)y[b].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16c_h2f(x[b].d) * f16c_h2f(y[b].d)), p, acc);
  }
  *s = hsum8(acc);
}

void q5_1_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q5_1 *x = vx;
  const block_q8_1 *y = vy;
  __m256 acc = _mm256_setzero_ps();
  float offs = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    __m256i p = _mm256_madd_epi16(
        udot_pairs(q5_levels(x[b].qs, x[b].qh), _mm256_loadu_si256((const __m256i *)y[b].qs)),
        _mm256_set1_epi16(1));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16c_h2f(x[b].d) * f16c_h2f(y[b].d)),
                          _mm256_cvtepi32_ps(p), acc);
    offs += f16c_h2f(x[b].m) * f16c_h2f(y[b].s);
  }
  *s = hsum8(acc) + offs;
}

/* The 16 IQ4_NL levels looked up by nibble with one byte shuffle. */
static inline __m256i iq4_levels(const uint8_t *qs) {
  const __m256i lut =
      _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nllm_iq4nl_values));
  return _mm256_shuffle_epi8(lut, nibbles32(qs));
}

void iq4_nl_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const block_iq4_nl *x = vx;
  const block_q8_0 *y = vy;
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK; b++) {
    /* |level| <= 127, so |x| * |y| pairs stay below the int16 limit in maddubs */
    __m256 p = dot_i8x32(iq4_levels(x[b].qs), _mm256_loadu_si256((const __m256i *)y[b].qs));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(f16c_h2f(x[b].d) * f16c_h2f(y[b].d)), p, acc);
  }
  *s = hsum8(acc);
}

/* ---------------------------------------------------------------- 32-value formats, four rows
 * Decode reads each weight once, and per 32-value block the single-row kernels spend more
 * instructions on the two fp16 scales and the signed-product trick than on the products. Here
 * two blocks share one register (block b's 16 bytes in the low lane, b+1's in the high lane:
 * one mask gives elements 0..15 of both, one shift elements 16..31), levels stay unsigned with
 * an offset format's offset taken off through offset * sum(y), and everything that depends on
 * the activation alone (its rearranged bytes, offset * sum(y), its scales) is computed once
 * for four weight rows. */

enum { F_Q4_0, F_Q4_1, F_Q5_0, F_Q5_1, F_IQ4_NL, F_Q8_0 };
/* Q4_0's packed groups expanded to unpacked levels (a large batch's kernel, see q4_0_expand) */
enum { F_Q4_0X = 16 };

/* y's bytes of blocks b, b+1 (at p and p + stride) in the two-block order:
 * (0..15 of b | 0..15 of b+1) and (16..31 of b | 16..31 of b+1). */
static inline void y_pair(const uint8_t *p, size_t stride, __m256i *ylo, __m256i *yhi) {
  *ylo = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p)),
                                 _mm_loadu_si128((const __m128i *)(p + stride)), 1);
  *yhi = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + 16))),
                                 _mm_loadu_si128((const __m128i *)(p + stride + 16)), 1);
}

/* Two fp16 values as floats in lanes 0 and 1 (the other lanes 0). */
static inline __m128 h2_lanes(uint16_t a, uint16_t b) {
  return _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)b << 16 | a)));
}

/* 0x10 in byte j of each lane where bit j (lo: bits 0..15, hi: 16..31) of that lane's block's
 * qh is set; the low lane is block b's, the high lane b+1's. */
static inline void qh_pair(uint32_t qa, uint32_t qb, __m256i *hlo, __m256i *hhi) {
  const __m256i v = _mm256_setr_epi32((int)qa, 0, 0, 0, (int)qb, 0, 0, 0);
  const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull),
                b16 = _mm256_set1_epi8(16);
  const __m256i slo = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0,
                                       0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m256i shi = _mm256_add_epi8(slo, _mm256_set1_epi8(2));
  *hlo = _mm256_and_si256(
      _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, slo), bit), bit), b16);
  *hhi = _mm256_and_si256(
      _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(v, shi), bit), bit), b16);
}

/* The eight scale products d_x * d_y of a two-block step of four rows, row r's blocks b, b+1
 * in lanes 2r, 2r+1, converted from fp16 at once (each block's d is its first two bytes; x's
 * blocks are xs bytes apart and its rows bx, y's blocks ys bytes apart). */
static inline __attribute__((always_inline)) __m256 step_scales4(const uint8_t *xb, size_t bx,
                                                                 size_t xs, const uint8_t *yb,
                                                                 size_t ys) {
  const __m256 dy =
      _mm256_permutevar8x32_ps(_mm256_castps128_ps256(h2_lanes(load_u16(yb), load_u16(yb + ys))),
                               _mm256_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1));
  const uint8_t *x1 = xb + bx, *x2 = x1 + bx, *x3 = x2 + bx;
  const uint64_t w01 = (uint64_t)load_u16(xb) | (uint64_t)load_u16(xb + xs) << 16 |
                       (uint64_t)load_u16(x1) << 32 | (uint64_t)load_u16(x1 + xs) << 48;
  const uint64_t w23 = (uint64_t)load_u16(x2) | (uint64_t)load_u16(x2 + xs) << 16 |
                       (uint64_t)load_u16(x3) << 32 | (uint64_t)load_u16(x3 + xs) << 48;
  return _mm256_mul_ps(_mm256_cvtph_ps(_mm_set_epi64x((long long)w23, (long long)w01)), dy);
}

/* Four rows of the formats with a minimum (Q4_1, Q5_1; y in Q8_1): unsigned levels, and each
 * block's m * s (s = d_y * sum(y)) added in a float accumulator of its own. */
static inline __attribute__((always_inline)) void dot4_32(const int kind, int64_t n, float *s,
                                                          const uint8_t *x0, size_t bx,
                                                          const uint8_t *y0) {
  const int q5 = kind == F_Q5_1;
  const size_t xs = q5 ? sizeof(block_q5_1) : sizeof(block_q4_1);
  const size_t off_qs = q5 ? offsetof(block_q5_1, qs) : offsetof(block_q4_1, qs);
  const size_t ys = sizeof(block_q8_1), y_qs = offsetof(block_q8_1, qs);
  const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
  const int64_t nb = n / QK;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  __m128 accm[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const uint8_t *yb = y0 + (size_t)b * ys;
    __m256i ylo, yhi;
    y_pair(yb + y_qs, ys, &ylo, &yhi);
    /* each row takes its pair of scale products with one permute */
    const __m256 dxy = step_scales4(x0 + (size_t)b * xs, bx, xs, yb, ys);
    const __m128 sy = h2_lanes(load_u16(yb + 2), load_u16(yb + ys + 2));
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * 2 * xs);
    /* unrolled, so that the four accumulators stay in registers */
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
      __m256i q = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(x + off_qs))),
          _mm_loadu_si128((const __m128i *)(x + xs + off_qs)), 1);
      __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      if (q5) {
        __m256i hlo, hhi;
        qh_pair(load_u32(x + offsetof(block_q5_1, qh)), load_u32(x + xs + offsetof(block_q5_1, qh)),
                &hlo, &hhi);
        lo = _mm256_or_si256(lo, hlo);
        hi = _mm256_or_si256(hi, hhi);
      }
      /* levels <= 31: |pair| <= 2 * 31 * 128 per product vector, so their sum fits in int16 */
      const __m256i p32 = _mm256_madd_epi16(
          _mm256_add_epi16(_mm256_maddubs_epi16(lo, ylo), _mm256_maddubs_epi16(hi, yhi)), ones);
      const __m256 d =
          _mm256_permutevar8x32_ps(dxy, _mm256_setr_epi32(2 * r, 2 * r, 2 * r, 2 * r, 2 * r + 1,
                                                          2 * r + 1, 2 * r + 1, 2 * r + 1));
      acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p32), acc[r]);
      accm[r] = _mm_fmadd_ps(h2_lanes(load_u16(x + 2), load_u16(x + xs + 2)), sy, accm[r]);
    }
  }
  for (int r = 0; r < 4; r++) {
    const __m128 m = accm[r];
    float sum = hsum8(acc[r]) + (_mm_cvtss_f32(m) + _mm_cvtss_f32(_mm_movehdup_ps(m)));
    if (b < nb) { /* an odd block count: the last block by the one-row kernel */
      float t;
      (q5 ? q5_1_vec_dot_avx2 : q4_1_vec_dot_avx2)(QK, &t, x0 + (size_t)r * bx + (size_t)b * xs,
                                                   y0 + (size_t)b * ys);
      sum += t;
    }
    s[r] = sum;
  }
}

static void q4_1_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_32(F_Q4_1, n, s, x, bx, y);
}
static void q5_1_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_32(F_Q5_1, n, s, x, bx, y);
}

/* Q8_0, four rows, two blocks a step: one activation block serves four weight rows, the step's
 * eight weight scales are converted at once, and each row's two blocks share one int32 -> float
 * conversion and multiply-add (hadd puts block b's partial sums in lanes 0, 1, 4, 5 and b+1's
 * in 2, 3, 6, 7); the prefetch covers the four rows' 68 bytes each. */
void q8_0_vec_dot4_avx2(int64_t n, float *s, const void *vx, size_t bx, const void *vy) {
  const uint8_t *x0 = vx, *y0 = vy;
  const size_t bs = sizeof(block_q8_0);
  const int64_t nb = n / QK;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const uint8_t *yb = y0 + (size_t)b * bs, *xb = x0 + (size_t)b * bs;
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * bs, 4 * 2 * bs);
    const __m256i y0q = _mm256_loadu_si256((const __m256i *)(yb + 2));
    const __m256i y1q = _mm256_loadu_si256((const __m256i *)(yb + bs + 2));
    const __m256 dxy = step_scales4(xb, bx, bs, yb, bs);
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const uint8_t *x = xb + (size_t)r * bx;
      /* x's sign moves onto y so that maddubs sees |x| (x = -128 included) */
      const __m256i x0q = _mm256_loadu_si256((const __m256i *)(x + 2));
      const __m256i x1q = _mm256_loadu_si256((const __m256i *)(x + bs + 2));
      const __m256i p0 = _mm256_madd_epi16(
          _mm256_maddubs_epi16(_mm256_sign_epi8(x0q, x0q), _mm256_sign_epi8(y0q, x0q)), ones);
      const __m256i p1 = _mm256_madd_epi16(
          _mm256_maddubs_epi16(_mm256_sign_epi8(x1q, x1q), _mm256_sign_epi8(y1q, x1q)), ones);
      const __m256 d =
          _mm256_permutevar8x32_ps(dxy, _mm256_setr_epi32(2 * r, 2 * r, 2 * r + 1, 2 * r + 1, 2 * r,
                                                          2 * r, 2 * r + 1, 2 * r + 1));
      acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_hadd_epi32(p0, p1)), acc[r]);
    }
  }
  for (int r = 0; r < 4; r++) {
    float t = 0;
    if (b < nb) /* an odd block count: the last block by the one-row kernel */
      q8_0_vec_dot_avx2(QK, &t, x0 + (size_t)r * bx + (size_t)b * bs, y0 + (size_t)b * bs);
    s[r] = hsum8(acc[r]) + t;
  }
}

/* ---------------------------------------------------------------- in the reference's order
 * The AVX2 tier's one-row and four-row kernels of Q4_0, Q5_0, IQ4_NL and Q8_0 give exactly the
 * scalar reference's sums (per block the exact integer dot, then sum += (float)isum * (dx * dy),
 * block after block), as the row-interleaved prompt kernels below do: a prompt's rows then equal
 * decode's bit for bit, whichever path a batch takes (quantized activations would carry a last-bit
 * difference into a different level of the next layer). Four rows' block sums are reduced
 * together, so each row's float steps run in a lane of one vector. */

/* Row x's block at xb against the Q8_0 block at yb: the exact dot, spread over 8 int32 lanes. */
static inline __attribute__((always_inline)) __m256i block_isum(const int kind, const uint8_t *xb,
                                                                const uint8_t *yb) {
  const __m256i y = _mm256_loadu_si256((const __m256i *)(yb + offsetof(block_q8_0, qs)));
  const __m256i ones = _mm256_set1_epi16(1);
  if (kind == F_Q8_0 || kind == F_IQ4_NL) { /* signed levels, |level| <= 127: the sign trick */
    const __m256i x = kind == F_Q8_0
                          ? _mm256_loadu_si256((const __m256i *)(xb + offsetof(block_q8_0, qs)))
                          : iq4_levels(xb + offsetof(block_iq4_nl, qs));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x)),
                             ones);
  }
  /* unsigned levels less the offset through offset * y: |pairs| <= 2 * 31 * 128 and 2 * 16 * 128 */
  const __m256i x = kind == F_Q5_0
                        ? q5_levels(xb + offsetof(block_q5_0, qs), xb + offsetof(block_q5_0, qh))
                        : nibbles32(xb + offsetof(block_q4_0, qs));
  const __m256i off = _mm256_set1_epi8(kind == F_Q5_0 ? 16 : 8);
  return _mm256_madd_epi16(
      _mm256_sub_epi16(_mm256_maddubs_epi16(x, y), _mm256_maddubs_epi16(off, y)), ones);
}

static inline size_t block_bytes(const int kind) {
  return kind == F_Q8_0   ? sizeof(block_q8_0)
         : kind == F_Q5_0 ? sizeof(block_q5_0)
                          : sizeof(block_q4_0); /* Q4_0, IQ4_NL */
}

static inline __attribute__((always_inline)) void dot_inorder(const int kind, int64_t n, float *s,
                                                              const uint8_t *x, const uint8_t *y) {
  const size_t xs = block_bytes(kind), ys = sizeof(block_q8_0);
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    const __m256i v = block_isum(kind, x + (size_t)b * xs, y + (size_t)b * ys);
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
    sum += (float)_mm_cvtsi128_si32(h) *
           (f16c_h2f(load_u16(x + (size_t)b * xs)) * f16c_h2f(load_u16(y + (size_t)b * ys)));
  }
  *s = sum;
}

/* Four rows, two blocks a step (as dot4_32: block b in the low lane of a register, b + 1 in the
 * high lane, with the activation's part shared by the four rows): each row's exact sums of the
 * two blocks come out of three hadds as [b: rows 0..3 | b + 1: rows 0..3], and the rows' floats
 * take block b, then b + 1, in the four lanes of one accumulator (Q8_0: a register per block,
 * the same sums by one more step). */
static inline __attribute__((always_inline)) void dot4_inorder(const int kind, int64_t n, float *s,
                                                               const uint8_t *x0, size_t bx,
                                                               const uint8_t *y0) {
  const size_t xs = block_bytes(kind), ys = sizeof(block_q8_0);
  const size_t off_qs = kind == F_Q5_0 ? offsetof(block_q5_0, qs) : offsetof(block_q4_0, qs);
  const int64_t nb = n / QK;
  const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
  const __m256i voff = _mm256_set1_epi8(kind == F_Q5_0 ? 16 : 8);
  const __m256i lut =
      _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nllm_iq4nl_values));
  const __m256i by_block = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  __m128 acc = _mm_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const uint8_t *yb = y0 + (size_t)b * ys, *xb = x0 + (size_t)b * xs;
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * 2 * xs);
    __m256i ylo = _mm256_setzero_si256(), yhi = ylo, yoff = ylo, y0q = ylo, y1q = ylo;
    if (kind == F_Q8_0) {
      y0q = _mm256_loadu_si256((const __m256i *)(yb + 2));
      y1q = _mm256_loadu_si256((const __m256i *)(yb + ys + 2));
    } else {
      y_pair(yb + 2, ys, &ylo, &yhi);
      if (kind != F_IQ4_NL)
        yoff = _mm256_add_epi16(_mm256_maddubs_epi16(voff, ylo), _mm256_maddubs_epi16(voff, yhi));
    }
    __m256i v[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const uint8_t *x = xb + (size_t)r * bx;
      if (kind == F_Q8_0) {
        const __m256i a0 = _mm256_loadu_si256((const __m256i *)(x + 2)),
                      a1 = _mm256_loadu_si256((const __m256i *)(x + xs + 2));
        const __m256i p0 = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_sign_epi8(a0, a0), _mm256_sign_epi8(y0q, a0)), ones);
        const __m256i p1 = _mm256_madd_epi16(
            _mm256_maddubs_epi16(_mm256_sign_epi8(a1, a1), _mm256_sign_epi8(y1q, a1)), ones);
        /* row r's partial sums [b, b, b + 1, b + 1] in each lane (as q8_0_vec_dot4_avx2) */
        v[r] = _mm256_hadd_epi32(p0, p1);
        continue;
      }
      const __m256i q = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(x + off_qs))),
          _mm_loadu_si128((const __m128i *)(x + xs + off_qs)), 1);
      __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      if (kind == F_Q5_0) {
        __m256i hlo, hhi;
        qh_pair(load_u32(x + offsetof(block_q5_0, qh)), load_u32(x + xs + offsetof(block_q5_0, qh)),
                &hlo, &hhi);
        lo = _mm256_or_si256(lo, hlo);
        hi = _mm256_or_si256(hi, hhi);
      }
      if (kind == F_IQ4_NL) {
        lo = _mm256_shuffle_epi8(lut, lo);
        hi = _mm256_shuffle_epi8(lut, hi);
        const __m256i plo =
            _mm256_maddubs_epi16(_mm256_sign_epi8(lo, lo), _mm256_sign_epi8(ylo, lo));
        const __m256i phi =
            _mm256_maddubs_epi16(_mm256_sign_epi8(hi, hi), _mm256_sign_epi8(yhi, hi));
        v[r] = _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones));
      } else {
        const __m256i p = _mm256_sub_epi16(
            _mm256_add_epi16(_mm256_maddubs_epi16(lo, ylo), _mm256_maddubs_epi16(hi, yhi)), yoff);
        v[r] = _mm256_madd_epi16(p, ones);
      }
    }
    __m256 prod;
    if (kind == F_Q8_0) { /* [b, b + 1] of rows 0, 1 in each lane, of rows 2, 3: the lanes added */
      const __m256i w01 = _mm256_hadd_epi32(v[0], v[1]), w23 = _mm256_hadd_epi32(v[2], v[3]);
      const __m256i isum = _mm256_add_epi32(_mm256_permute2x128_si256(w01, w23, 0x20),
                                            _mm256_permute2x128_si256(w01, w23, 0x31));
      prod = _mm256_permutevar8x32_ps(
          _mm256_mul_ps(_mm256_cvtepi32_ps(isum), step_scales4(xb, bx, xs, yb, ys)), by_block);
    } else {
      const __m256i isum =
          _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
      prod = _mm256_mul_ps(_mm256_cvtepi32_ps(isum),
                           _mm256_permutevar8x32_ps(step_scales4(xb, bx, xs, yb, ys), by_block));
    }
    acc = _mm_add_ps(acc, _mm256_castps256_ps128(prod));
    acc = _mm_add_ps(acc, _mm256_extractf128_ps(prod, 1));
  }
  _mm_storeu_ps(s, acc);
  if (b < nb) /* an odd block count: the last block of each row, after the others */
    for (int r = 0; r < 4; r++) {
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs, *yb = y0 + (size_t)b * ys;
      const __m256i v = block_isum(kind, x, yb);
      __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
      h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
      h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
      s[r] += (float)_mm_cvtsi128_si32(h) * (f16c_h2f(load_u16(x)) * f16c_h2f(load_u16(yb)));
    }
}

/* The four-row loads of the batch kernels at a two-block step: four rows' scales of blocks b
 * (lanes 0..3) and b + 1 (4..7) as floats, */
static inline __attribute__((always_inline)) __m256 scales4(const uint8_t *xb, size_t bx,
                                                            size_t xs) {
  uint64_t w0 = 0, w1 = 0;
#pragma GCC unroll 4
  for (int r = 0; r < 4; r++) {
    w0 |= (uint64_t)load_u16(xb + (size_t)r * bx) << (16 * r);
    w1 |= (uint64_t)load_u16(xb + (size_t)r * bx + xs) << (16 * r);
  }
  return _mm256_cvtph_ps(_mm_set_epi64x((long long)w1, (long long)w0));
}

/* and each row's 16 bytes from offset `at` of its two blocks as [block b | block b + 1]. */
static inline __attribute__((always_inline)) void halves4(const uint8_t *xb, size_t bx, size_t xs,
                                                          size_t at, __m256i q[4]) {
#pragma GCC unroll 4
  for (int r = 0; r < 4; r++) {
    const uint8_t *x = xb + (size_t)r * bx + at;
    q[r] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)x)),
                                   _mm_loadu_si128((const __m128i *)(x + xs)), 1);
  }
}

/* Four rows by four tokens (nllm_vec_dot4x4_fn), equal to dot4_inorder on each token: the rows'
 * levels and scales are unpacked once per two-block step for the four tokens (a batch of a few
 * sequences, where repacking would not pay). */
static inline __attribute__((always_inline)) void dot4x4_inorder(const int kind, int64_t n,
                                                                 float *s, size_t ss,
                                                                 const uint8_t *x0, size_t bx,
                                                                 const uint8_t *y0, size_t by) {
  const size_t xs = block_bytes(kind), ys = sizeof(block_q8_0);
  const int64_t nb = n / QK;
  const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1), voff = _mm256_set1_epi8(8);
  const __m256i by_block = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  __m128 acc[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const uint8_t *xb = x0 + (size_t)b * xs;
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * 2 * xs);
    __m256i xa[4], xc[4]; /* Q4_0: low and high nibbles; Q8_0: blocks b and b + 1 */
    const __m256 dx = scales4(xb, bx, xs);
    if (kind == F_Q8_0) {
#pragma GCC unroll 4
      for (int r = 0; r < 4; r++) {
        xa[r] = _mm256_loadu_si256((const __m256i *)(xb + (size_t)r * bx + 2));
        xc[r] = _mm256_loadu_si256((const __m256i *)(xb + (size_t)r * bx + xs + 2));
      }
    } else {
      halves4(xb, bx, xs, 2, xa);
#pragma GCC unroll 4
      for (int r = 0; r < 4; r++) {
        xc[r] = _mm256_and_si256(_mm256_srli_epi16(xa[r], 4), m4);
        xa[r] = _mm256_and_si256(xa[r], m4);
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
      const uint8_t *yb = y0 + (size_t)t * by + (size_t)b * ys;
      __m256i v[4], isum;
#pragma GCC unroll 4
      for (int r = 0; r < 4; r++) {
        if (kind == F_Q8_0) {
          const __m256i y0q = _mm256_loadu_si256((const __m256i *)(yb + 2));
          const __m256i y1q = _mm256_loadu_si256((const __m256i *)(yb + ys + 2));
          const __m256i p0 = _mm256_madd_epi16(
              _mm256_maddubs_epi16(_mm256_sign_epi8(xa[r], xa[r]), _mm256_sign_epi8(y0q, xa[r])),
              ones);
          const __m256i p1 = _mm256_madd_epi16(
              _mm256_maddubs_epi16(_mm256_sign_epi8(xc[r], xc[r]), _mm256_sign_epi8(y1q, xc[r])),
              ones);
          v[r] = _mm256_hadd_epi32(p0, p1);
        } else {
          __m256i ylo, yhi;
          y_pair(yb + 2, ys, &ylo, &yhi);
          const __m256i yoff =
              _mm256_add_epi16(_mm256_maddubs_epi16(voff, ylo), _mm256_maddubs_epi16(voff, yhi));
          const __m256i p = _mm256_sub_epi16(
              _mm256_add_epi16(_mm256_maddubs_epi16(xa[r], ylo), _mm256_maddubs_epi16(xc[r], yhi)),
              yoff);
          v[r] = _mm256_madd_epi16(p, ones);
        }
      }
      if (kind == F_Q8_0) {
        const __m256i w01 = _mm256_hadd_epi32(v[0], v[1]), w23 = _mm256_hadd_epi32(v[2], v[3]);
        isum =
            _mm256_permutevar8x32_epi32(_mm256_add_epi32(_mm256_permute2x128_si256(w01, w23, 0x20),
                                                         _mm256_permute2x128_si256(w01, w23, 0x31)),
                                        by_block);
      } else {
        isum = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
      }
      const __m256 dy = _mm256_permutevar8x32_ps(
          _mm256_castps128_ps256(h2_lanes(load_u16(yb), load_u16(yb + ys))),
          _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
      const __m256 prod = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dx, dy));
      acc[t] = _mm_add_ps(acc[t], _mm256_castps256_ps128(prod));
      acc[t] = _mm_add_ps(acc[t], _mm256_extractf128_ps(prod, 1));
    }
  }
  for (int t = 0; t < 4; t++) {
    float *st = s + (size_t)t * ss;
    _mm_storeu_ps(st, acc[t]);
    if (b < nb) /* an odd block count: the last block of each row, after the others */
      for (int r = 0; r < 4; r++) {
        const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs,
                      *yb = y0 + (size_t)t * by + (size_t)b * ys;
        const __m256i v = block_isum(kind, x, yb);
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
        st[r] += (float)_mm_cvtsi128_si32(h) * (f16c_h2f(load_u16(x)) * f16c_h2f(load_u16(yb)));
      }
  }
}
static void q4_0_vec_dot4x4_inorder_avx2(int64_t n, float *s, size_t ss, const void *x, size_t bx,
                                         const void *y, size_t by) {
  dot4x4_inorder(F_Q4_0, n, s, ss, x, bx, y, by);
}
static void q8_0_vec_dot4x4_inorder_avx2(int64_t n, float *s, size_t ss, const void *x, size_t bx,
                                         const void *y, size_t by) {
  dot4x4_inorder(F_Q8_0, n, s, ss, x, bx, y, by);
}

/* ---------------------------------------------------------------- register tiles (2-7 tokens)
 * Four rows by up to four tokens on activations prepared once per matmul (gemm_prep), equal to
 * dot4_inorder on each token: the same exact block sums and the same float steps. The rows are
 * taken in pairs, interleaved four bytes at a time ([row 0: levels 0..3, row 1: 0..3, row 0:
 * 4..7, row 1: 4..7] in each 128-bit lane, block b in the low lane and b + 1 in the high one),
 * once per tile; the prepared activation holds each four bytes twice to match. A pair's products
 * then come out of maddubs (Q4_0) or maddubs + madd (Q8_0) already apart by row, so the four
 * rows' block sums need one add of two unpacked halves per token and step, where the rows' sums
 * in one register took three hadds (two cycles each on Zen 3). A prepared two-block step is
 * Q32_PREP_STEP bytes: the y pairs' bytes, each four twice (y_pair's ylo as unpacklo and
 * unpackhi of its dwords with themselves, then yhi likewise), dy of block b in lanes 0..3 and of
 * b + 1 in 4..7 (floats), then the offset sums in the same lanes (int32; Q4_0 only). Q4_0's
 * int16 lanes add 16 products of a nibble (<= 15) and a byte (|y| <= 128): |sum| <= 30720. */
#define Q32_PREP_STEP 192
_Static_assert(Q32_PREP_STEP / (2 * QK) <= NLLM_GEMM_PREP_BYTES(1),
               "a prepared step fits in gemm_prep's bytes");

static inline __attribute__((always_inline)) void gemm_prep_32(const int kind, int64_t n,
                                                               const void *vy, void *vp) {
  const uint8_t *y0 = vy;
  uint8_t *out = vp;
  const size_t ys = sizeof(block_q8_0);
  for (int64_t b = 0; b + 2 <= n / QK; b += 2, out += Q32_PREP_STEP) {
    const uint8_t *yb = y0 + (size_t)b * ys;
    __m256i ylo, yhi;
    y_pair(yb + 2, ys, &ylo, &yhi);
    _mm256_storeu_si256((__m256i *)out, _mm256_unpacklo_epi32(ylo, ylo));
    _mm256_storeu_si256((__m256i *)(out + 32), _mm256_unpackhi_epi32(ylo, ylo));
    _mm256_storeu_si256((__m256i *)(out + 64), _mm256_unpacklo_epi32(yhi, yhi));
    _mm256_storeu_si256((__m256i *)(out + 96), _mm256_unpackhi_epi32(yhi, yhi));
    const __m128 d0 = _mm_set1_ps(f16c_h2f(load_u16(yb))),
                 d1 = _mm_set1_ps(f16c_h2f(load_u16(yb + ys)));
    _mm256_storeu_ps((float *)(out + 128), _mm256_set_m128(d1, d0));
    if (kind == F_Q4_0) {
      /* 8 * (sum of each block's 32 bytes): maddubs by 8 then madd, as pairs of int32 lanes */
      const __m256i p =
          _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), ylo),
                                             _mm256_maddubs_epi16(_mm256_set1_epi8(8), yhi)),
                            _mm256_set1_epi16(1));
      __m256i h = _mm256_hadd_epi32(p, p); /* per lane: two pair sums, twice */
      h = _mm256_hadd_epi32(h, h);         /* per lane: the block's sum, four times */
      _mm256_storeu_si256((__m256i *)(out + 160), h);
    } else {
      _mm256_storeu_si256((__m256i *)(out + 160), _mm256_setzero_si256());
    }
  }
}

static inline __attribute__((always_inline)) void gemm4_32(const int kind, const int T, int64_t n,
                                                           float *s, size_t ss, const void *vx,
                                                           size_t bx, const void *vp, size_t ps) {
  const uint8_t *x0 = vx, *p0 = vp;
  const size_t xs = block_bytes(kind);
  const int64_t nb = n / QK; /* even: n is a multiple of NLLM_GEMM_COLS */
  const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
  /* tokens 2u and 2u + 1 in the lanes of acc[u] (the blocks' products moved there by two
   * permutes: fewer operations and registers than a 128-bit accumulator per token) */
  __m256 acc[NLLM_GEMM_TOK / 2];
#pragma GCC unroll 2
  for (int u = 0; u < (T + 1) / 2; u++) acc[u] = _mm256_setzero_ps();
  for (int64_t b = 0; b + 2 <= nb; b += 2) {
    const uint8_t *xb = x0 + (size_t)b * xs, *pb = p0 + (size_t)(b / 2) * Q32_PREP_STEP;
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * 2 * xs);
    /* per row pair p, xi[p][i] meets prepared vector i: Q4_0's low nibbles (levels 0..15) in
     * i = 0, 1 and high ones in 2, 3; Q8_0's bytes 0..15 in 0, 1 and 16..31 in 2, 3, whose
     * absolute values (ui) meet y with x's sign moved onto it */
    __m256i q[4], xi[2][4], ui[2][4];
    /* Q8_0's signed bytes wait in memory for sign's operand, which may be there (16
     * registers do not hold both forms of a step's bytes) */
    __m256i xm[2][4] __attribute__((aligned(32)));
    const __m256 dx = scales4(xb, bx, xs);
    halves4(xb, bx, xs, 2, q);
#pragma GCC unroll 2
    for (int p = 0; p < 2; p++) {
      const __m256i lo = _mm256_unpacklo_epi32(q[2 * p], q[2 * p + 1]),
                    hi = _mm256_unpackhi_epi32(q[2 * p], q[2 * p + 1]);
      if (kind == F_Q8_0) {
        xi[p][0] = lo;
        xi[p][1] = hi;
      } else { /* the nibbles split after the interleave: levels 0..15, then 16..31 */
        xi[p][0] = _mm256_and_si256(lo, m4);
        xi[p][1] = _mm256_and_si256(hi, m4);
        xi[p][2] = _mm256_and_si256(_mm256_srli_epi16(lo, 4), m4);
        xi[p][3] = _mm256_and_si256(_mm256_srli_epi16(hi, 4), m4);
      }
    }
    if (kind == F_Q8_0) {
      halves4(xb, bx, xs, 18, q);
#pragma GCC unroll 2
      for (int p = 0; p < 2; p++) {
        xi[p][2] = _mm256_unpacklo_epi32(q[2 * p], q[2 * p + 1]);
        xi[p][3] = _mm256_unpackhi_epi32(q[2 * p], q[2 * p + 1]);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
          ui[p][i] = _mm256_sign_epi8(xi[p][i], xi[p][i]);
          _mm256_store_si256(&xm[p][i], xi[p][i]);
        }
      }
    }
    __m256 prod[NLLM_GEMM_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
      const uint8_t *py = pb + (size_t)t * ps;
      __m256i yi[4], v[2];
#pragma GCC unroll 4
      for (int i = 0; i < 4; i++) yi[i] = _mm256_loadu_si256((const __m256i *)(py + 32 * i));
#pragma GCC unroll 2
      for (int p = 0; p < 2; p++) {
        if (kind == F_Q8_0) { /* int32 [row 2p, row 2p + 1, again] in each lane */
          __m256i a[4];
#pragma GCC unroll 4
          for (int i = 0; i < 4; i++)
            a[i] = _mm256_madd_epi16(
                _mm256_maddubs_epi16(ui[p][i],
                                     _mm256_sign_epi8(yi[i], _mm256_load_si256(&xm[p][i]))),
                ones);
          v[p] = _mm256_add_epi32(_mm256_add_epi32(a[0], a[1]), _mm256_add_epi32(a[2], a[3]));
        } else { /* int16 [row 2p twice, row 2p + 1 twice, again] in each lane */
          v[p] = _mm256_add_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(xi[p][0], yi[0]),
                                                   _mm256_maddubs_epi16(xi[p][1], yi[1])),
                                  _mm256_add_epi16(_mm256_maddubs_epi16(xi[p][2], yi[2]),
                                                   _mm256_maddubs_epi16(xi[p][3], yi[3])));
        }
      }
      /* the pairs' two halves of each lane added: rows 0..3 in each lane */
      __m256i isum;
      if (kind == F_Q8_0) {
        isum =
            _mm256_add_epi32(_mm256_unpacklo_epi64(v[0], v[1]), _mm256_unpackhi_epi64(v[0], v[1]));
      } else {
        isum =
            _mm256_sub_epi32(_mm256_madd_epi16(_mm256_add_epi16(_mm256_unpacklo_epi64(v[0], v[1]),
                                                                _mm256_unpackhi_epi64(v[0], v[1])),
                                               ones),
                             _mm256_loadu_si256((const __m256i *)(py + 160)));
      }
      prod[t] = _mm256_mul_ps(_mm256_cvtepi32_ps(isum),
                              _mm256_mul_ps(dx, _mm256_loadu_ps((const float *)(py + 128))));
    }
#pragma GCC unroll 2
    for (int u = 0; u < (T + 1) / 2; u++) { /* [b | b + 1] of tokens 2u, 2u + 1 */
      const __m256 pa = prod[2 * u], pb2 = 2 * u + 1 < T ? prod[2 * u + 1] : pa;
      acc[u] = _mm256_add_ps(acc[u], _mm256_permute2f128_ps(pa, pb2, 0x20));
      acc[u] = _mm256_add_ps(acc[u], _mm256_permute2f128_ps(pa, pb2, 0x31));
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < T; t++)
    _mm_storeu_ps(s + (size_t)t * ss, t % 2 ? _mm256_extractf128_ps(acc[t / 2], 1)
                                            : _mm256_castps256_ps128(acc[t / 2]));
}
#define Q4_0_GEMM4(T, ...) gemm4_32(F_Q4_0, T, __VA_ARGS__)
#define Q8_0_GEMM4(T, ...) gemm4_32(F_Q8_0, T, __VA_ARGS__)
NLLM_GEMM4_BY_TOKENS(q4_0_gemm4_avx2, Q4_0_GEMM4)
NLLM_GEMM4_BY_TOKENS(q8_0_gemm4_avx2, Q8_0_GEMM4)
static void q4_0_gemm_prep_avx2(int64_t n, const void *y, void *p) {
  gemm_prep_32(F_Q4_0, n, y, p);
}
static void q8_0_gemm_prep_avx2(int64_t n, const void *y, void *p) {
  gemm_prep_32(F_Q8_0, n, y, p);
}

#define INORDER_KERNELS(fmt, kind)                                                            \
  static void fmt##_vec_dot_inorder_avx2(int64_t n, float *s, const void *x, const void *y) { \
    dot_inorder(kind, n, s, x, y);                                                            \
  }                                                                                           \
  static void fmt##_vec_dot4_inorder_avx2(int64_t n, float *s, const void *x, size_t bx,      \
                                          const void *y) {                                    \
    dot4_inorder(kind, n, s, x, bx, y);                                                       \
  }
INORDER_KERNELS(q4_0, F_Q4_0)
INORDER_KERNELS(q5_0, F_Q5_0)
INORDER_KERNELS(q8_0, F_Q8_0)
INORDER_KERNELS(iq4_nl, F_IQ4_NL)

/* ---------------------------------------------------------------- row-interleaved prompt kernels
 * Eight rows repacked per work item (see nllm_gemm_packed_fn), equal to the scalar reference: per
 * block the exact integer sum of each row, then sum += (float)isum * (dx * dy), block after block,
 * each of the eight rows in a lane of one vector (the reference's float steps in its order).
 * Layout of a group, per block: the eight rows' dx, then vectors of levels, vector k holding bytes
 * 4k..4k+3 of the block's 32 levels of row r in lane r: one broadcast of the activation's bytes
 * 4k..4k+3 meets all eight rows, and maddubs + madd leave row r's sum of the four products in
 * lane r. Q5_0's and Q4_0's levels are unsigned (0..31, 0..15; the offset taken off through
 * offset * sum(y) per block) so that maddubs takes them as they are and several of its pair sums
 * add up in int16 before widening (four of |pair| <= 2 * 31 * 128, eight of 2 * 15 * 128); Q8_0's
 * and IQ4_NL's signed levels (|level| <= 127) take the sign trick.
 * Q4_0 and Q8_0 keep the bytes of their plain rows (weights may stay packed from load, qtypes.h
 * prepack; decode then reads as many bytes as from the plain rows): dx as eight halves (16 bytes),
 * then Q4_0's nibbles as they lie in four vectors (vector k: bytes 4k..4k+3 of each row's 16,
 * low nibbles levels 4k.., high nibbles 16 + 4k..; unpacked in the kernel), Q8_0's levels in
 * eight. Q5_0 and IQ4_NL: dx as floats (32 bytes), then eight vectors of unpacked levels. */
#define PACK_BLOCK (8 * sizeof(float) + NLLM_PACK_ROWS * QK)
_Static_assert(PACK_BLOCK == NLLM_PACK_BYTES(QK),
               "a packed block is NLLM_PACK_BYTES of its values");
static inline size_t pack_block(const int kind) {
  return kind == F_Q4_0   ? NLLM_PACK_ROWS * sizeof(block_q4_0)
         : kind == F_Q8_0 ? NLLM_PACK_ROWS * sizeof(block_q8_0)
                          : PACK_BLOCK;
}
/* The layouts that keep the plain rows' bytes (dx as halves) */
#define PACK_PLAIN(kind) ((kind) == F_Q4_0 || (kind) == F_Q8_0)
/* Tokens from which the prompt path repacks (below, the four-row kernels run: the same sums);
 * with register tiles below (Q4_0, Q8_0): the repacking pays from 8 tokens (1.1B FFN shape, one
 * thread, weights from DRAM: at 7 tokens Q4_0 even, Q8_0 behind; at 8 both ahead, at 11 by
 * 15-20%). */
#define PACKED_MIN_TOKENS 12
/* Tokens from which a prepacked Q4_0 group is expanded per work item (q4_0_expand_avx2) */
#ifndef Q4_0_EXPAND_MIN_TOKENS /* -D: the A/B against the packed 16-token step */
#define Q4_0_EXPAND_MIN_TOKENS 32
#endif
#define EXPAND_MIN_TOKENS Q4_0_EXPAND_MIN_TOKENS
#define PACKED_MIN_TOKENS_TILES 8
/* Per block of an activation row: its 32 bytes, dy, offset * the sum of its bytes (the kernel
 * broadcasts them from memory: a load, as a vector's load is). Eight tokens' rows of a
 * 2048-value matrix take 20 KiB, beside the weights in L1; with dy and the sum stored as
 * vectors (96 bytes a block) they took 48. */
#define PACKED_PREP_BLOCK 40
_Static_assert(PACKED_PREP_BLOCK <= NLLM_GEMM_PREP_BYTES(QK), "a prepared block fits");

static inline __attribute__((always_inline)) void pack8_32(const int kind, int64_t n,
                                                           const void *vx, size_t bx, void *vp) {
  const uint8_t *x0 = vx;
  uint8_t *out = vp;
  const size_t xs = kind == F_Q8_0   ? sizeof(block_q8_0)
                    : kind == F_Q5_0 ? sizeof(block_q5_0)
                                     : sizeof(block_q4_0);
  const __m256i m4 = _mm256_set1_epi8(15);
  const __m256i lut =
      _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nllm_iq4nl_values));
  for (int64_t b = 0; b < n / QK; b++, out += pack_block(kind)) {
    nllm_prefetch_next_group(x0, bx, b, xs);
    __m256i v[8];
    /* the eight rows' d gathered in two words (eight 2-byte stores and a 16-byte load of them
     * stall on the failed store-to-load forwarding) */
    uint64_t d03 = 0, d47 = 0;
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      d03 |= (uint64_t)load_u16(x0 + (size_t)r * bx + (size_t)b * xs) << (16 * r);
      d47 |= (uint64_t)load_u16(x0 + (size_t)(r + 4) * bx + (size_t)b * xs) << (16 * r);
    }
    const __m128i dh = _mm_set_epi64x((long long)d47, (long long)d03);
    const __m256 dx = _mm256_cvtph_ps(dh);
    if (kind == F_Q4_0 || kind == F_IQ4_NL) {
      /* the nibbles transposed as they lie (rows r and r + 4 in the two lanes of one register,
       * dwords by a 4 x 4 transpose in each lane): vector k (k < 4) holds bytes 4k..4k+3 of each
       * row, whose low nibbles are levels 4k.. and high nibbles 16 + 4k.. as nibbles32 orders
       * them (IQ4_NL: unpacked here, vector 4 + k the high nibbles) */
      __m256i q[4];
#pragma GCC unroll 4
      for (int r = 0; r < 4; r++) {
        const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
        q[r] = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(x + 2))),
            _mm_loadu_si128((const __m128i *)(x + 4 * bx + 2)), 1);
      }
      const __m256i t0 = _mm256_unpacklo_epi32(q[0], q[1]), t1 = _mm256_unpackhi_epi32(q[0], q[1]);
      const __m256i t2 = _mm256_unpacklo_epi32(q[2], q[3]), t3 = _mm256_unpackhi_epi32(q[2], q[3]);
      const __m256i w[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                            _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
      if (kind == F_Q4_0) {
        _mm_storeu_si128((__m128i *)out, dh);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) _mm256_storeu_si256((__m256i *)(out + 16 + 32 * k), w[k]);
        continue;
      }
#pragma GCC unroll 4
      for (int k = 0; k < 4; k++) {
        v[k] = _mm256_shuffle_epi8(lut, _mm256_and_si256(w[k], m4));
        v[k + 4] = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(w[k], 4), m4));
      }
      _mm256_storeu_ps((float *)out, dx);
#pragma GCC unroll 8
      for (int k = 0; k < 8; k++) _mm256_storeu_si256((__m256i *)(out + 32 + 32 * k), v[k]);
      continue;
    }
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++) {
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
      if (kind == F_Q8_0)
        v[r] = _mm256_loadu_si256((const __m256i *)(x + offsetof(block_q8_0, qs)));
      else /* Q5_0 */
        v[r] = q5_levels(x + offsetof(block_q5_0, qs), x + offsetof(block_q5_0, qh));
    }
    transpose8x8_epi32(v);
    const size_t lv = kind == F_Q8_0 ? 16 : 32;
    if (kind == F_Q8_0)
      _mm_storeu_si128((__m128i *)out, dh);
    else
      _mm256_storeu_ps((float *)out, dx);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) _mm256_storeu_si256((__m256i *)(out + lv + 32 * k), v[k]);
  }
}

static inline __attribute__((always_inline)) void packed_prep_32(const int kind, int64_t n,
                                                                 const void *vy, void *vp) {
  const block_q8_0 *y = vy;
  uint8_t *out = vp;
  const int32_t offset = kind == F_Q4_0 ? 8 : kind == F_Q5_0 ? 16 : 0;
  for (int64_t b = 0; b < n / QK; b++, out += PACKED_PREP_BLOCK) {
    memcpy(out, y[b].qs, QK);
    const float dy = f16c_h2f(y[b].d);
    int32_t sum = 0;
    if (offset)
      for (int j = 0; j < QK; j++) sum += y[b].qs[j];
    sum *= offset;
    memcpy(out + 32, &dy, sizeof dy);
    memcpy(out + 36, &sum, sizeof sum);
  }
}

/* With a few tokens the kernel streams packed weights from DRAM (weights kept packed from load:
 * decode, a few sequences), and its one linear stream is prefetched ahead in software: 1024
 * bytes ahead (1.1B FFN shape, one thread, bench_prepack, two alternated runs each) the packed
 * path against the plain one went at one token from 0.93-0.99 to 1.09-1.19 times (Q4_0), from
 * 0.83-0.95 to 1.02-1.07 (Q8_0), at two tokens from 0.89-0.94 to 1.13-1.23 (Q4_0). With more
 * tokens the work per byte hides the latency. */
#define PF_DIST 1024
#define PF_TOK 4
static inline __attribute__((always_inline)) void gemm_packed_32(const int kind, const int pf,
                                                                 const int T, int64_t n, float *s,
                                                                 size_t ss, const uint8_t *pk,
                                                                 const uint8_t *p0, size_t ps) {
  const int is_signed = kind == F_Q8_0 || kind == F_IQ4_NL;
  /* unsigned levels: pair sums added in int16 */
  const int group = kind == F_Q4_0 || kind == F_Q4_0X ? 8 : 4;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[NLLM_PACKED_TOK_MAX];
#pragma GCC unroll 8
  for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(15);
  const size_t lv = PACK_PLAIN(kind) ? 16 : 32; /* where the levels start */
  for (int64_t b = 0; b < n / QK; b++) {
    const uint8_t *xb = pk + (size_t)b * pack_block(kind), *yb = p0 + (size_t)b * PACKED_PREP_BLOCK;
    if (T <= PF_TOK)
      for (size_t o = 0; o < pack_block(kind); o += 64)
        _mm_prefetch((const char *)(xb + PF_DIST + o), _MM_HINT_T0);
    else if (pf)
      nllm_prefetch_stream_block(xb, n / QK * pack_block(kind), pack_block(kind));
    __m256i sum[NLLM_PACKED_TOK_MAX], s16[NLLM_PACKED_TOK_MAX];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) sum[t] = s16[t] = _mm256_setzero_si256();
    __m256i w[4];
    if (kind == F_Q4_0)
#pragma GCC unroll 4
      for (int k = 0; k < 4; k++) w[k] = _mm256_loadu_si256((const __m256i *)(xb + lv + 32 * k));
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
      const __m256i xk = kind == F_Q4_0
                             ? (k < 4 ? _mm256_and_si256(w[k & 3], m4)
                                      : _mm256_and_si256(_mm256_srli_epi16(w[k & 3], 4), m4))
                             : _mm256_loadu_si256((const __m256i *)(xb + lv + 32 * k));
      const __m256i ax = is_signed ? _mm256_sign_epi8(xk, xk) : xk;
#pragma GCC unroll 8
      for (int t = 0; t < T; t++) {
        const __m256i yk = _mm256_set1_epi32((int)load_u32(yb + (size_t)t * ps + 4 * k));
        /* the empty asm keeps each sum one register added to in turn: gcc otherwise gathers
         * every product of the block first and adds them as a tree, spilling them */
        if (is_signed) {
          sum[t] = _mm256_add_epi32(
              sum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(yk, xk)), ones));
          __asm__("" : "+x"(sum[t]));
        } else {
          s16[t] = _mm256_add_epi16(s16[t], _mm256_maddubs_epi16(xk, yk));
          __asm__("" : "+x"(s16[t]));
          if (k % group == group - 1) {
            sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(s16[t], ones));
            s16[t] = _mm256_setzero_si256();
          }
        }
      }
    }
    const __m256 dx = PACK_PLAIN(kind) ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)xb))
                                       : _mm256_loadu_ps((const float *)xb);
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
      const uint8_t *py = yb + (size_t)t * ps;
      __m256i isum = sum[t];
      if (!is_signed) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32((int)load_u32(py + 36)));
      float dy;
      memcpy(&dy, py + 32, sizeof dy);
      acc[t] = _mm256_add_ps(
          acc[t], _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dx, _mm256_set1_ps(dy))));
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; t++) _mm256_storeu_ps(s + (size_t)t * ss, acc[t]);
}

/* The kernel at T tokens: plain, and streaming (prefetching the next group) */
#define q4_0_PACKED(T, ...) gemm_packed_32(F_Q4_0, 0, T, __VA_ARGS__)
#define q4_0_STREAM(T, ...) gemm_packed_32(F_Q4_0, 1, T, __VA_ARGS__)
#define q5_0_PACKED(T, ...) gemm_packed_32(F_Q5_0, 0, T, __VA_ARGS__)
#define q5_0_STREAM(T, ...) gemm_packed_32(F_Q5_0, 1, T, __VA_ARGS__)
#define q8_0_PACKED(T, ...) gemm_packed_32(F_Q8_0, 0, T, __VA_ARGS__)
#define q8_0_STREAM(T, ...) gemm_packed_32(F_Q8_0, 1, T, __VA_ARGS__)
#define iq4_nl_PACKED(T, ...) gemm_packed_32(F_IQ4_NL, 0, T, __VA_ARGS__)
#define iq4_nl_STREAM(T, ...) gemm_packed_32(F_IQ4_NL, 1, T, __VA_ARGS__)
#define q4_0x_PACKED(T, ...) gemm_packed_32(F_Q4_0X, 0, T, __VA_ARGS__)
/* A format's four functions; the kernel takes the token count as a constant
 * (NLLM_PACKED_BY_TOKENS). */
#define PACKED_KERNELS(fmt, kind)                                                  \
  NLLM_PACKED_BY_TOKENS(fmt##_gemm_packed_avx2, fmt##_PACKED)                      \
  NLLM_PACKED_BY_TOKENS(fmt##_gemm_packed_stream_avx2, fmt##_STREAM)               \
  static void fmt##_pack_rows_avx2(int64_t n, const void *x, size_t bx, void *p) { \
    pack8_32(kind, n, x, bx, p);                                                   \
  }                                                                                \
  static void fmt##_packed_prep_avx2(int64_t n, const void *y, void *p) {          \
    packed_prep_32(kind, n, y, p);                                                 \
  }
PACKED_KERNELS(q4_0, F_Q4_0)
/* A large batch on prepacked Q4_0: each group expanded once per work item into unpacked levels
 * and float dx (the layout Q5_0 and IQ4_NL pack into), so the nibbles are not unpacked again at
 * every 8-token call (~5% of a call's operations). */
static void q4_0_expand_avx2(int64_t n, const void *vx, size_t bx, void *vp) {
  (void)bx;
  const uint8_t *x = vx;
  uint8_t *out = vp;
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int64_t b = 0; b < n / QK; b++, x += pack_block(F_Q4_0), out += PACK_BLOCK) {
    _mm256_storeu_ps((float *)out, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x)));
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
      const __m256i w = _mm256_loadu_si256((const __m256i *)(x + 16 + 32 * k));
      _mm256_storeu_si256((__m256i *)(out + 32 + 32 * k), _mm256_and_si256(w, m4));
      _mm256_storeu_si256((__m256i *)(out + 32 + 32 * (k + 4)),
                          _mm256_and_si256(_mm256_srli_epi16(w, 4), m4));
    }
  }
}
NLLM_PACKED_BY_TOKENS(q4_0_gemm_expanded_avx2, q4_0x_PACKED)
PACKED_KERNELS(q5_0, F_Q5_0)
PACKED_KERNELS(q8_0, F_Q8_0)
PACKED_KERNELS(iq4_nl, F_IQ4_NL)
/* A format's row fields; min: tokens from which the prompt path repacks, tok: the most tokens a
 * call takes. */
#define PACKED_ROW(fmt, min, tok)                                                         \
  .pack_rows = fmt##_pack_rows_avx2, .packed_prep = fmt##_packed_prep_avx2,               \
  .gemm_packed = fmt##_gemm_packed_avx2, .packed_min_tokens = (min), .packed_tok = (tok), \
  .gemm_packed_stream = fmt##_gemm_packed_stream_avx2

/* The AVX2 tier's rows of the 32-value formats. Crossovers: where dequantize + sgemm overtakes the
 * integer kernels (measured, see docs/performance.md "BLAS crossovers"). With the prompt kernels
 * Q4_0, Q5_0, IQ4_NL and Q8_0 stay ahead at 128 and 512 tokens. (Q8_0 crossed at 256 as on the
 * AVX-512 tier, whose reason, the tiny BERT's Q8_0 embeddings against their F32 reference in
 * test_embed, does not hold on this tier: its kernels add in the reference's order.) */
static const nllm_qtype_kernels q32_rows[] = {
    {.type = NLLM_TYPE_Q8_0,
     .to_float = q8_0_to_float_avx2,
     .from_float = q8_0_from_float_avx2,
     .vec_dot = q8_0_vec_dot_inorder_avx2,
     .vec_dot4 = q8_0_vec_dot4_inorder_avx2,
     .vec_dot4x4 = q8_0_vec_dot4x4_inorder_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = q8_0_gemm_prep_avx2,
     .gemm4 = q8_0_gemm4_avx2,
     PACKED_ROW(q8_0, PACKED_MIN_TOKENS_TILES, NLLM_PACKED_TOK_MAX),
     .prepack = 1},
    {.type = NLLM_TYPE_Q4_0,
     .to_float = q4_0_to_float_avx2,
     .vec_dot = q4_0_vec_dot_inorder_avx2,
     .vec_dot4 = q4_0_vec_dot4_inorder_avx2,
     .vec_dot4x4 = q4_0_vec_dot4x4_inorder_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = q4_0_gemm_prep_avx2,
     .gemm4 = q4_0_gemm4_avx2,
     PACKED_ROW(q4_0, PACKED_MIN_TOKENS_TILES, NLLM_PACKED_TOK_MAX),
     .prepack = 1,
     .expand_packed = q4_0_expand_avx2,
     .gemm_expanded = q4_0_gemm_expanded_avx2,
     .expand_min_tokens = EXPAND_MIN_TOKENS},
    {.type = NLLM_TYPE_Q4_1,
     .vec_dot = q4_1_vec_dot_avx2,
     .vec_dot4 = q4_1_vec_dot4_avx2,
     .blas_min_tokens = 128},
    {.type = NLLM_TYPE_Q5_0,
     .vec_dot = q5_0_vec_dot_inorder_avx2,
     .vec_dot4 = q5_0_vec_dot4_inorder_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     PACKED_ROW(q5_0, PACKED_MIN_TOKENS, NLLM_GEMM_TOK)},
    {.type = NLLM_TYPE_Q5_1,
     .vec_dot = q5_1_vec_dot_avx2,
     .vec_dot4 = q5_1_vec_dot4_avx2,
     .blas_min_tokens = 40},
    {.type = NLLM_TYPE_IQ4_NL,
     .vec_dot = iq4_nl_vec_dot_inorder_avx2,
     .vec_dot4 = iq4_nl_vec_dot4_inorder_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     PACKED_ROW(iq4_nl, PACKED_MIN_TOKENS, NLLM_GEMM_TOK)},
};
const nllm_kernel_set nllm_kernels_q32_avx2 = {q32_rows, sizeof q32_rows / sizeof q32_rows[0]};
