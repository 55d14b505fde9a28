/* Horizontal sums of several AVX-512 vectors of int32 at once, for the four-row and
 * four-by-four kernels: a transpose folded into the adds costs about three instructions per
 * vector instead of a full reduction (~9) each. Include from *_avx512.c files only. */
#ifndef NLLM_HSUM_AVX512_H
#define NLLM_HSUM_AVX512_H

#include <immintrin.h>

/* per 128-bit lane: [a0 + a2, b0 + b2, a1 + a3, b1 + b3] */
static inline __m512i hsum_pairs32(__m512i a, __m512i b) {
  return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
}
/* Per 128-bit lane l: [a0, a1, a2, a3], each summed over its own lane l. */
static inline __m512i hsum_4_lanes(__m512i a0, __m512i a1, __m512i a2, __m512i a3) {
  const __m512i p = hsum_pairs32(a0, a1), q = hsum_pairs32(a2, a3);
  return _mm512_add_epi32(_mm512_unpacklo_epi64(p, q), _mm512_unpackhi_epi64(p, q));
}
/* Adjacent 128-bit lanes added: [q0.0 + q0.1, q0.2 + q0.3, q1.0 + q1.1, q1.2 + q1.3]. */
static inline __m512i hsum_lane_pairs(__m512i q0, __m512i q1) {
  return _mm512_add_epi32(_mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(2, 0, 2, 0)),
                          _mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(3, 1, 3, 1)));
}
/* The totals of a[0..3] as four lanes. */
static inline __m128i hsum_x4(const __m512i *a) {
  const __m512i q = hsum_4_lanes(a[0], a[1], a[2], a[3]);
  const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(q), _mm512_extracti64x4_epi64(q, 1));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}
/* The totals of a[0..15] as sixteen lanes, lane i = a[i]. */
static inline __m512i hsum_x16(const __m512i *a) {
  const __m512i w01 =
      hsum_lane_pairs(hsum_4_lanes(a[0], a[1], a[2], a[3]), hsum_4_lanes(a[4], a[5], a[6], a[7]));
  const __m512i w23 = hsum_lane_pairs(hsum_4_lanes(a[8], a[9], a[10], a[11]),
                                      hsum_4_lanes(a[12], a[13], a[14], a[15]));
  return hsum_lane_pairs(w01, w23);
}

#endif
