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

enum { F_Q4_0, F_Q4_1, F_Q5_0, F_Q5_1, F_IQ4_NL };

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

static inline __attribute__((always_inline)) void dot4_32(const int kind, int64_t n, float *s,
                                                          const uint8_t *x0, size_t bx,
                                                          const uint8_t *y0) {
  const size_t xs = kind == F_Q4_0 || kind == F_IQ4_NL ? 18
                    : kind == F_Q4_1                   ? 20
                    : kind == F_Q5_0                   ? 22
                                                       : 24;
  const size_t off_qs = kind == F_Q4_0 || kind == F_IQ4_NL ? 2
                        : kind == F_Q5_1                   ? 8
                        : kind == F_Q5_0                   ? 6
                                                           : 4;
  const size_t off_qh = kind == F_Q5_0 ? 2 : 4;         /* Q5_0 / Q5_1 */
  const int has_min = kind == F_Q4_1 || kind == F_Q5_1; /* y is Q8_1: d, s, qs */
  const size_t ys = has_min ? 36 : 34, y_qs = has_min ? 4 : 2;
  const int offset = kind == F_Q4_0 ? 8 : kind == F_Q5_0 ? 16 : 0;
  const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1),
                voff = _mm256_set1_epi8((char)offset);
  const __m256i lut =
      _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nllm_iq4nl_values));
  const int64_t nb = n / QK;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  __m128 accm[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const uint8_t *yb = y0 + (size_t)b * ys;
    __m256i ylo, yhi, yoff = _mm256_setzero_si256();
    y_pair(yb + y_qs, ys, &ylo, &yhi);
    if (offset) /* offset * (y_2i + y_2i+1) per int16 lane, both halves at once */
      yoff = _mm256_add_epi16(_mm256_maddubs_epi16(voff, ylo), _mm256_maddubs_epi16(voff, yhi));
    /* each row takes its pair of scale products with one permute */
    const __m256 dxy = step_scales4(x0 + (size_t)b * xs, bx, xs, yb, ys);
    const __m128 sy =
        has_min ? h2_lanes(load_u16(yb + 2), load_u16(yb + ys + 2)) : _mm_setzero_ps();
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * 2 * xs);
    /* unrolled, so that the four accumulators stay in registers */
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
      __m256i q = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(x + off_qs))),
          _mm_loadu_si128((const __m128i *)(x + xs + off_qs)), 1);
      __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      if (kind == F_Q5_0 || kind == F_Q5_1) {
        __m256i hlo, hhi;
        qh_pair(load_u32(x + off_qh), load_u32(x + xs + off_qh), &hlo, &hhi);
        lo = _mm256_or_si256(lo, hlo);
        hi = _mm256_or_si256(hi, hhi);
      }
      __m256i p32;
      if (kind == F_IQ4_NL) {
        /* signed levels (|level| <= 127): the sign moves onto y, and each half is widened
         * on its own (two pair sums of 127 * 127 * 2 would overflow int16) */
        lo = _mm256_shuffle_epi8(lut, lo);
        hi = _mm256_shuffle_epi8(lut, hi);
        __m256i plo = _mm256_maddubs_epi16(_mm256_sign_epi8(lo, lo), _mm256_sign_epi8(ylo, lo));
        __m256i phi = _mm256_maddubs_epi16(_mm256_sign_epi8(hi, hi), _mm256_sign_epi8(yhi, hi));
        p32 = _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones));
      } else {
        /* levels <= 31: |pair| <= 2 * 31 * 128 per product vector, so their sum less the
         * offset term (<= 4 * 16 * 128) fits in int16 */
        __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, ylo), _mm256_maddubs_epi16(hi, yhi));
        if (offset) p = _mm256_sub_epi16(p, yoff);
        p32 = _mm256_madd_epi16(p, ones);
      }
      const __m256 d =
          _mm256_permutevar8x32_ps(dxy, _mm256_setr_epi32(2 * r, 2 * r, 2 * r, 2 * r, 2 * r + 1,
                                                          2 * r + 1, 2 * r + 1, 2 * r + 1));
      acc[r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p32), acc[r]);
      if (has_min)
        accm[r] = _mm_fmadd_ps(h2_lanes(load_u16(x + 2), load_u16(x + xs + 2)), sy, accm[r]);
    }
  }
  static void (*const one_row[])(int64_t, float *, const void *, const void *) = {
      q4_0_vec_dot_avx2, q4_1_vec_dot_avx2, q5_0_vec_dot_avx2, q5_1_vec_dot_avx2,
      iq4_nl_vec_dot_avx2};
  for (int r = 0; r < 4; r++) {
    float sum = hsum8(acc[r]);
    if (has_min) {
      __m128 m = accm[r];
      sum += _mm_cvtss_f32(m) + _mm_cvtss_f32(_mm_movehdup_ps(m));
    }
    if (b < nb) { /* an odd block count: the last block by the one-row kernel */
      float t;
      one_row[kind](QK, &t, x0 + (size_t)r * bx + (size_t)b * xs, y0 + (size_t)b * ys);
      sum += t;
    }
    s[r] = sum;
  }
}

static void q4_0_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_32(F_Q4_0, n, s, x, bx, y);
}
static void q4_1_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_32(F_Q4_1, n, s, x, bx, y);
}
static void q5_0_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_32(F_Q5_0, n, s, x, bx, y);
}
static void q5_1_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_32(F_Q5_1, n, s, x, bx, y);
}
static void iq4_nl_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_32(F_IQ4_NL, n, s, x, bx, y);
}

/* ---------------------------------------------------------------- prompt tiles
 * Four rows by up to four tokens (see nllm_gemm4_fn), equal to the four-row kernels: the same
 * integer sums and float steps, with each row's levels and scales unpacked once per two-block
 * step for every token of the tile, and the activation's part of a step (its bytes in the
 * two-block order, the offset term, its scales per lane) prepared once per matmul. AVX2 has
 * 16 registers: two rows at a time keep the accumulators of four tokens, the rows' levels and
 * a token's bytes in them (four rows would spill the accumulators). */
#define Q32_TILE_ROWS 2

/* Per two-block step, 128 bytes: ylo, yhi (y_pair's order), offset * (y_2i + y_2i+1) per int16
 * lane (0 for IQ4_NL), and dy of block b in lanes 0..3, of b+1 in lanes 4..7. */
static inline __attribute__((always_inline)) void prep_32(const int kind, int64_t n, const void *vy,
                                                          void *vp) {
  const uint8_t *y0 = vy;
  uint8_t *out = vp;
  const size_t ys = sizeof(block_q8_0);
  const __m256i voff = _mm256_set1_epi8((char)(kind == F_Q4_0 ? 8 : 16));
  for (int64_t b = 0; b + 2 <= n / QK; b += 2, out += 128) {
    const uint8_t *yb = y0 + (size_t)b * ys;
    __m256i ylo, yhi;
    y_pair(yb + 2, ys, &ylo, &yhi);
    const __m256i yoff = kind == F_IQ4_NL ? _mm256_setzero_si256()
                                          : _mm256_add_epi16(_mm256_maddubs_epi16(voff, ylo),
                                                             _mm256_maddubs_epi16(voff, yhi));
    const __m256 dy =
        _mm256_permutevar8x32_ps(_mm256_castps128_ps256(h2_lanes(load_u16(yb), load_u16(yb + ys))),
                                 _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    _mm256_storeu_si256((__m256i *)out, ylo);
    _mm256_storeu_si256((__m256i *)(out + 32), yhi);
    _mm256_storeu_si256((__m256i *)(out + 64), yoff);
    _mm256_storeu_ps((float *)(out + 96), dy);
  }
}

/* Two fp16 values a, b as floats in lanes 0..3 and 4..7. */
static inline __m256 h2_halves(uint16_t a, uint16_t b) {
  return _mm256_cvtph_ps(_mm_set_epi64x((long long)(0x0001000100010001ull * b),
                                        (long long)(0x0001000100010001ull * a)));
}

static inline __attribute__((always_inline)) void gemm4_32(const int kind, const int T, int64_t n,
                                                           float *s, size_t ss, const uint8_t *x0,
                                                           size_t bx, const uint8_t *p0,
                                                           size_t ps) {
  const size_t xs = kind == F_Q5_0 ? sizeof(block_q5_0) : sizeof(block_q4_0);
  const size_t off_qs = kind == F_Q5_0 ? offsetof(block_q5_0, qs) : offsetof(block_q4_0, qs);
  const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
  const __m256i lut =
      _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nllm_iq4nl_values));
  for (int r0 = 0; r0 < 4; r0 += Q32_TILE_ROWS) {
    __m256 acc[Q32_TILE_ROWS][NLLM_GEMM_TOK];
#pragma GCC unroll 4
    for (int r = 0; r < Q32_TILE_ROWS; r++)
#pragma GCC unroll 4
      for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b + 2 <= n / QK; b += 2) {
      __m256i lo[Q32_TILE_ROWS], hi[Q32_TILE_ROWS];
      __m256 dx[Q32_TILE_ROWS];
#pragma GCC unroll 4
      for (int r = 0; r < Q32_TILE_ROWS; r++) {
        const uint8_t *x = x0 + (size_t)(r0 + r) * bx + (size_t)b * xs;
        const __m256i q = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(x + off_qs))),
            _mm_loadu_si128((const __m128i *)(x + xs + off_qs)), 1);
        lo[r] = _mm256_and_si256(q, m4);
        hi[r] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (kind == F_Q5_0) {
          __m256i hlo, hhi;
          qh_pair(load_u32(x + offsetof(block_q5_0, qh)),
                  load_u32(x + xs + offsetof(block_q5_0, qh)), &hlo, &hhi);
          lo[r] = _mm256_or_si256(lo[r], hlo);
          hi[r] = _mm256_or_si256(hi[r], hhi);
        }
        if (kind == F_IQ4_NL) {
          lo[r] = _mm256_shuffle_epi8(lut, lo[r]);
          hi[r] = _mm256_shuffle_epi8(lut, hi[r]);
        }
        dx[r] = h2_halves(load_u16(x), load_u16(x + xs));
      }
#pragma GCC unroll 4
      for (int t = 0; t < T; t++) {
        const uint8_t *py = p0 + (size_t)t * ps + (size_t)b * 64;
        const __m256i ylo = _mm256_loadu_si256((const __m256i *)py),
                      yhi = _mm256_loadu_si256((const __m256i *)(py + 32));
        const __m256 dy = _mm256_loadu_ps((const float *)(py + 96));
#pragma GCC unroll 4
        for (int r = 0; r < Q32_TILE_ROWS; r++) {
          __m256i p32;
          if (kind == F_IQ4_NL) {
            const __m256i plo =
                _mm256_maddubs_epi16(_mm256_sign_epi8(lo[r], lo[r]), _mm256_sign_epi8(ylo, lo[r]));
            const __m256i phi =
                _mm256_maddubs_epi16(_mm256_sign_epi8(hi[r], hi[r]), _mm256_sign_epi8(yhi, hi[r]));
            p32 = _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones));
          } else {
            const __m256i p = _mm256_sub_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo[r], ylo),
                                                                _mm256_maddubs_epi16(hi[r], yhi)),
                                               _mm256_loadu_si256((const __m256i *)(py + 64)));
            p32 = _mm256_madd_epi16(p, ones);
          }
          acc[r][t] = _mm256_fmadd_ps(_mm256_mul_ps(dx[r], dy), _mm256_cvtepi32_ps(p32), acc[r][t]);
        }
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
#pragma GCC unroll 4
      for (int r = 0; r < Q32_TILE_ROWS; r++)
        s[(size_t)t * ss + (size_t)(r0 + r)] = hsum8(acc[r][t]);
  }
}

#define Q4_0_GEMM(T, ...) gemm4_32(F_Q4_0, T, __VA_ARGS__)
#define Q5_0_GEMM(T, ...) gemm4_32(F_Q5_0, T, __VA_ARGS__)
#define IQ4_NL_GEMM(T, ...) gemm4_32(F_IQ4_NL, T, __VA_ARGS__)
NLLM_GEMM4_BY_TOKENS(q4_0_gemm4_avx2, Q4_0_GEMM)
NLLM_GEMM4_BY_TOKENS(q5_0_gemm4_avx2, Q5_0_GEMM)
NLLM_GEMM4_BY_TOKENS(iq4_nl_gemm4_avx2, IQ4_NL_GEMM)
static void q4_0_prep_avx2(int64_t n, const void *y, void *p) {
  prep_32(F_Q4_0, n, y, p);
}
static void q5_0_prep_avx2(int64_t n, const void *y, void *p) {
  prep_32(F_Q5_0, n, y, p);
}
static void iq4_nl_prep_avx2(int64_t n, const void *y, void *p) {
  prep_32(F_IQ4_NL, n, y, p);
}

/* Q8_0, four rows, two blocks a step: one activation block serves four weight rows, the step's
 * eight weight scales are converted at once, and each row's two blocks share one int32 -> float
 * conversion and multiply-add (hadd puts block b's partial sums in lanes 0, 1, 4, 5 and b+1's
 * in 2, 3, 6, 7); the prefetch covers the four rows' 68 bytes each. */
static void q8_0_vec_dot4_avx2(int64_t n, float *s, const void *vx, size_t bx, const void *vy) {
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

/* Q8_0's prompt tiles (see gemm4_32), equal to q8_0_vec_dot4_avx2: per two-block step the
 * activation is prepared as its two blocks' bytes and dy in that kernel's lane order (b, b, b+1,
 * b+1 per half), 96 bytes; each row's |x| and scales are made once for every token, and x's
 * sign moves onto each token's y as in the four-row kernel (x + 128 would overflow maddubs'
 * int16 pair sums). */
static void q8_0_prep_avx2(int64_t n, const void *vy, void *vp) {
  const uint8_t *y0 = vy;
  uint8_t *out = vp;
  const size_t bs = sizeof(block_q8_0);
  for (int64_t b = 0; b + 2 <= n / QK; b += 2, out += 96) {
    const uint8_t *yb = y0 + (size_t)b * bs;
    memcpy(out, yb + 2, QK);
    memcpy(out + 32, yb + bs + 2, QK);
    _mm256_storeu_ps(
        (float *)(out + 64),
        _mm256_permutevar8x32_ps(_mm256_castps128_ps256(h2_lanes(load_u16(yb), load_u16(yb + bs))),
                                 _mm256_setr_epi32(0, 0, 1, 1, 0, 0, 1, 1)));
  }
}

static inline __attribute__((always_inline)) void gemm4_q8_0(const int T, int64_t n, float *s,
                                                             size_t ss, const uint8_t *x0,
                                                             size_t bx, const uint8_t *p0,
                                                             size_t ps) {
  const size_t bs = sizeof(block_q8_0);
  const __m256i ones = _mm256_set1_epi16(1);
  /* one row at a time: its signed and absolute bytes, scales and T accumulators stay in
   * registers (two rows spilled the accumulators) */
  for (int r = 0; r < 4; r++) {
    __m256 acc[NLLM_GEMM_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b + 2 <= n / QK; b += 2) {
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * bs;
      const __m256i xq0 = _mm256_loadu_si256((const __m256i *)(x + 2)),
                    xq1 = _mm256_loadu_si256((const __m256i *)(x + bs + 2));
      const __m256i ax0 = _mm256_sign_epi8(xq0, xq0), ax1 = _mm256_sign_epi8(xq1, xq1);
      const uint64_t a = load_u16(x), c = load_u16(x + bs);
      const __m256 dx =
          _mm256_cvtph_ps(_mm_set1_epi64x((long long)(a | a << 16 | c << 32 | c << 48)));
#pragma GCC unroll 4
      for (int t = 0; t < T; t++) {
        const uint8_t *py = p0 + (size_t)t * ps + (size_t)b * 48;
        const __m256i p0q = _mm256_madd_epi16(
            _mm256_maddubs_epi16(ax0,
                                 _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)py), xq0)),
            ones);
        const __m256i p1q = _mm256_madd_epi16(
            _mm256_maddubs_epi16(
                ax1, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(py + 32)), xq1)),
            ones);
        acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dx, _mm256_loadu_ps((const float *)(py + 64))),
                                 _mm256_cvtepi32_ps(_mm256_hadd_epi32(p0q, p1q)), acc[t]);
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) s[(size_t)t * ss + (size_t)r] = hsum8(acc[t]);
  }
}
#define Q8_0_GEMM(T, ...) gemm4_q8_0(T, __VA_ARGS__)
NLLM_GEMM4_BY_TOKENS(q8_0_gemm4_avx2, Q8_0_GEMM)

/* The AVX2 tier's rows of the 32-value formats. Crossovers: where dequantize + sgemm overtakes the
 * integer kernels (measured, see docs/performance.md "BLAS crossovers"). With the prompt tiles
 * Q4_0, Q5_0 and IQ4_NL stay ahead at 128 and 512 tokens; Q8_0's tiles only draw level with
 * sgemm on one thread (and pass it on two, where sgemm calls take turns), and its crossover is
 * the AVX-512 tier's 256 for the reason given there (activations in Q8_0 over long inputs). */
static const nllm_qtype_kernels q32_rows[] = {
    {.type = NLLM_TYPE_Q8_0,
     .to_float = q8_0_to_float_avx2,
     .from_float = q8_0_from_float_avx2,
     .vec_dot = q8_0_vec_dot_avx2,
     .vec_dot4 = q8_0_vec_dot4_avx2,
     .blas_min_tokens = 256,
     .gemm_prep = q8_0_prep_avx2,
     .gemm4 = q8_0_gemm4_avx2},
    {.type = NLLM_TYPE_Q4_0,
     .to_float = q4_0_to_float_avx2,
     .vec_dot = q4_0_vec_dot_avx2,
     .vec_dot4 = q4_0_vec_dot4_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = q4_0_prep_avx2,
     .gemm4 = q4_0_gemm4_avx2},
    {.type = NLLM_TYPE_Q4_1,
     .vec_dot = q4_1_vec_dot_avx2,
     .vec_dot4 = q4_1_vec_dot4_avx2,
     .blas_min_tokens = 128},
    {.type = NLLM_TYPE_Q5_0,
     .vec_dot = q5_0_vec_dot_avx2,
     .vec_dot4 = q5_0_vec_dot4_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = q5_0_prep_avx2,
     .gemm4 = q5_0_gemm4_avx2},
    {.type = NLLM_TYPE_Q5_1,
     .vec_dot = q5_1_vec_dot_avx2,
     .vec_dot4 = q5_1_vec_dot4_avx2,
     .blas_min_tokens = 40},
    {.type = NLLM_TYPE_IQ4_NL,
     .vec_dot = iq4_nl_vec_dot_avx2,
     .vec_dot4 = iq4_nl_vec_dot4_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = iq4_nl_prep_avx2,
     .gemm4 = iq4_nl_gemm4_avx2},
};
const nllm_kernel_set nllm_kernels_q32_avx2 = {q32_rows, sizeof q32_rows / sizeof q32_rows[0]};
