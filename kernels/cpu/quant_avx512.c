/* AVX-512 (F, BW, VL, VNNI, VBMI) four-row decode kernels. This file alone is compiled with
 * those flags; qtypes.c puts these functions in its table only after cpuid and the OS say
 * the CPU has them, on top of the AVX2 row of each format.
 *
 * Why a tier above AVX2: at one thread the AVX2 kernels of the 4-bit formats are bound by
 * instructions, not by memory (a core reads ~39 GB/s, Q4_0's AVX2 kernel ~29 GB/s). One zmm
 * register holds four 32-value blocks; VBMI's two-register byte permute pulls the four blocks'
 * quants out of their 18- or 34-byte strides without per-block loads, and VNNI's dpbusd does
 * the byte products, their pair sums and the int32 sum in one instruction. That is about 4
 * instructions per block and row instead of about 10. */
#include <immintrin.h>
#include <stddef.h>

#include "cpu/quant.h"

static inline uint16_t load_u16(const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}

/* Four fp16 scales (at p, p + stride, ...) as 16 floats: lanes 4k..4k+3 hold scale k, the lanes
 * of block k in a register of four 16-byte blocks. */
static inline __m512 h4_x4(const uint8_t *p, size_t stride) {
  const uint64_t w = (uint64_t)load_u16(p) | (uint64_t)load_u16(p + stride) << 16 |
                     (uint64_t)load_u16(p + 2 * stride) << 32 |
                     (uint64_t)load_u16(p + 3 * stride) << 48;
  const __m128 f = _mm_cvtph_ps(_mm_cvtsi64_si128((long long)w));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                               _mm512_castps128_ps512(f));
}

/* y's quants of four Q8_0 blocks (at p, the first block's qs) in the order the 32-value
 * four-row kernel uses: lo has elements 0..15 of block k in 16-byte lane k, hi 16..31. */
static inline void y_quad(const uint8_t *p, __m512i *lo, __m512i *hi) {
  const size_t st = sizeof(block_q8_0);
  const __m512i a =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p)),
                         _mm256_loadu_si256((const __m256i *)(p + st)), 1);
  const __m512i b =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2 * st))),
                         _mm256_loadu_si256((const __m256i *)(p + 3 * st)), 1);
  *lo = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  *hi = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

/* Permute indices that take the four blocks' 16 quant bytes (at 18k + 2) out of two loads,
 * z0 = bytes 0..63 and z1 = bytes 8..71 of the four blocks (so no byte past them is read). */
static inline __m512i idx_18x4(void) {
  uint8_t idx[64];
  for (int k = 0; k < 4; k++)
    for (int j = 0; j < 16; j++) {
      const int p = 18 * k + 2 + j;
      idx[16 * k + j] = (uint8_t)(p < 64 ? p : 64 + p - 8);
    }
  return _mm512_loadu_si512(idx);
}

/* How far ahead to prefetch, in whole rows: four interleaved rows defeat the hardware
 * prefetcher (without prefetching, half the bandwidth), and the rows after these four are
 * where the caller goes next. Measured at one thread on rows of 2048 values: Q4_0 best about
 * 12 KiB ahead (11 rows; 4 rows: -20%, 32 rows: -8%), Q8_0 best 4 rows (8.5 KiB; 8 rows:
 * -10%). */
static inline size_t prefetch_dist(size_t bx, size_t bytes) {
  const size_t k = (bytes + bx - 1) / bx;
  return (k < 4 ? 4 : k > 32 ? 32 : k) * bx;
}

enum { K_Q4_0, K_IQ4_NL };

/* Q4_0 and IQ4_NL: the same 18-byte block (fp16 d, 16 bytes of nibbles). Levels are made
 * unsigned (Q4_0's nibble as is, offset 8; IQ4_NL's table level + 128, offset 128) for dpbusd's
 * unsigned operand, and the offset comes off through offset * sum(y), computed once per four
 * blocks for the four rows. */
static inline __attribute__((always_inline)) void dot4_18(const int kind, int64_t n, float *s,
                                                          const uint8_t *x0, size_t bx,
                                                          const uint8_t *y0) {
  const size_t xs = 18, ys = sizeof(block_q8_0);
  const __m512i m4 = _mm512_set1_epi8(15), iq = idx_18x4();
  /* the four scales are words 0, 9, 18 and 27 of the first load; each fills four lanes */
  const __m512i iw = _mm512_setr_epi32(0, 0, 9 | 9 << 16, 9 | 9 << 16, 18 | 18 << 16, 18 | 18 << 16,
                                       27 | 27 << 16, 27 | 27 << 16, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i voff = _mm512_set1_epi8((char)(kind == K_Q4_0 ? 8 : 128));
  uint8_t lut_u[16];
  for (int i = 0; i < 16; i++) lut_u[i] = (uint8_t)(nllm_iq4nl_values[i] + 128);
  const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)lut_u));
  const int64_t nb = n / QK, nq = nb / 4 * 4;
  const size_t pf = prefetch_dist(bx, 12288);
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
  for (int64_t b = 0; b < nq; b += 4) {
    const uint8_t *yb = y0 + (size_t)b * ys;
    __m512i ylo, yhi;
    y_quad(yb + 2, &ylo, &yhi);
    const __m512i yoff = _mm512_sub_epi32(
        _mm512_setzero_si512(),
        _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), voff, ylo), voff, yhi));
    const __m512 dy = h4_x4(yb, ys);
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
      /* the row 16 rows on is where the caller goes next (see dot4_32 in quant_avx2.c); two
       * prefetches because 72 bytes a step would skip every ninth cache line */
      _mm_prefetch((const char *)x + pf, _MM_HINT_T0);
      _mm_prefetch((const char *)x + pf + 71, _MM_HINT_T0);
      const __m512i z0 = _mm512_loadu_si512(x), z1 = _mm512_loadu_si512(x + 8);
      const __m512i q = _mm512_permutex2var_epi8(z0, iq, z1);
      __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
      if (kind == K_IQ4_NL) {
        lo = _mm512_shuffle_epi8(lut, lo);
        hi = _mm512_shuffle_epi8(lut, hi);
      }
      const __m512i p = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(yoff, lo, ylo), hi, yhi);
      const __m512 dx = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(iw, z0)));
      acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(dx, dy), _mm512_cvtepi32_ps(p), acc[r]);
    }
  }
  for (int r = 0; r < 4; r++) {
    float sum = _mm512_reduce_add_ps(acc[r]), t = 0;
    if (nq < nb) { /* the last one to three blocks by the one-row kernel */
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)nq * xs, *y = y0 + (size_t)nq * ys;
      if (kind == K_Q4_0)
        q4_0_vec_dot_avx2((nb - nq) * QK, &t, x, y);
      else
        iq4_nl_vec_dot_avx2((nb - nq) * QK, &t, x, y);
    }
    s[r] = sum + t;
  }
}

void q4_0_vec_dot4_avx512(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_18(K_Q4_0, n, s, x, bx, y);
}
void iq4_nl_vec_dot4_avx512(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_18(K_IQ4_NL, n, s, x, bx, y);
}

/* Q8_0: four 34-byte blocks (136 bytes) come from three loads (bytes 0..63, 64..127, 72..135)
 * and two permutes, two blocks per register. dpbusd wants one unsigned operand: y + 128 (y is
 * in [-127, 127]) times x, less 128 * sum(x) from a second dpbusd. */
void q8_0_vec_dot4_avx512(int64_t n, float *s, const void *vx, size_t bx, const void *vy) {
  const uint8_t *x0 = vx, *y0 = vy;
  const size_t xs = sizeof(block_q8_0);
  uint8_t ia[64], ib[64];
  uint16_t iw[32];
  for (int j = 0; j < 32; j++) {
    /* blocks 0, 1 from (bytes 0..63, 64..127); blocks 2, 3 from (64..127, 72..135) */
    ia[j] = (uint8_t)(2 + j);
    ia[32 + j] = (uint8_t)(36 + j); /* index p is byte p of the first two loads */
    ib[j] = (uint8_t)(70 + j - 64);
    const int p = 104 + j;
    ib[32 + j] = (uint8_t)(p < 128 ? p - 64 : 64 + p - 72);
    /* scale words: blocks 0, 1 at bytes 0 and 34 of the first load, 2, 3 at 68 and 102
     * (words 2 and 19 of the second) */
    iw[j] = (uint16_t)(j < 8 ? 0 : j < 16 ? 17 : j < 24 ? 32 + 2 : 32 + 19);
  }
  const __m512i idx_a = _mm512_loadu_si512(ia), idx_b = _mm512_loadu_si512(ib),
                idx_w = _mm512_loadu_si512(iw);
  const __m512i k128 = _mm512_set1_epi8((char)0x80);
  const int64_t nb = n / QK, nq = nb / 4 * 4;
  const size_t pf = prefetch_dist(bx, 8192);
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
  for (int64_t b = 0; b < nq; b += 4) {
    const uint8_t *yb = y0 + (size_t)b * xs;
    const __m512i y01 = _mm512_xor_si512(
        k128,
        _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(yb + 2))),
                           _mm256_loadu_si256((const __m256i *)(yb + xs + 2)), 1));
    const __m512i y23 = _mm512_xor_si512(
        k128, _mm512_inserti64x4(
                  _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(yb + 2 * xs + 2))),
                  _mm256_loadu_si256((const __m256i *)(yb + 3 * xs + 2)), 1));
    const __m128 dyf = _mm_cvtph_ps(_mm_cvtsi64_si128((
        long long)((uint64_t)load_u16(yb) | (uint64_t)load_u16(yb + xs) << 16 |
                   (uint64_t)load_u16(yb + 2 * xs) << 32 | (uint64_t)load_u16(yb + 3 * xs) << 48)));
    const __m512 dy01 =
        _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                              _mm512_castps128_ps512(dyf));
    const __m512 dy23 =
        _mm512_permutexvar_ps(_mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
                              _mm512_castps128_ps512(dyf));
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
      _mm_prefetch((const char *)x + pf, _MM_HINT_T0);
      _mm_prefetch((const char *)x + pf + 64, _MM_HINT_T0);
      _mm_prefetch((const char *)x + pf + 135, _MM_HINT_T0);
      const __m512i l0 = _mm512_loadu_si512(x), l1 = _mm512_loadu_si512(x + 64),
                    l2 = _mm512_loadu_si512(x + 72);
      const __m512i qa = _mm512_permutex2var_epi8(l0, idx_a, l1);
      const __m512i qb = _mm512_permutex2var_epi8(l1, idx_b, l2);
      const __m512i w = _mm512_permutex2var_epi16(l0, idx_w, l1);
      const __m512i pa = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), y01, qa),
                                          _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, qa));
      const __m512i pb = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), y23, qb),
                                          _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, qb));
      const __m512 dxa = _mm512_cvtph_ps(_mm512_castsi512_si256(w));
      const __m512 dxb = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(w, 1));
      acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(dxa, dy01), _mm512_cvtepi32_ps(pa), acc[r]);
      acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(dxb, dy23), _mm512_cvtepi32_ps(pb), acc[r]);
    }
  }
  for (int r = 0; r < 4; r++) {
    float t = 0;
    if (nq < nb)
      q8_0_vec_dot_avx2((nb - nq) * QK, &t, x0 + (size_t)r * bx + (size_t)nq * xs,
                        y0 + (size_t)nq * xs);
    s[r] = _mm512_reduce_add_ps(acc[r]) + t;
  }
}
