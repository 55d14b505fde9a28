/* AVX2 + FMA + F16C kernels of the 256-value formats (Q2_K .. Q6_K, IQ4_XS, and the Q8_K
 * activations): their rows of the AVX2 tier. Compiled with those flags alone; qtypes.c installs
 * the rows only after cpuid says the CPU has them. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#include "cpu/quant.h"
#include "cpu/quant_avx2.h"
#include "cpu/quant_k_packed.h"

/* ---------------------------------------------------------------- Q8_K */

static void q8_K_from_float_avx2(const float *x, void *vy, int64_t n) {
  block_q8_K *y = vy;
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < n / QK_K; b++) {
    const float *xb = x + b * QK_K;
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < QK_K; k += 8)
      m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(xb + k), absmask));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    memset(&y[b], 0, sizeof y[b]);
    if (amax == 0) continue;
    /* the reference takes the first element of largest magnitude, with its sign */
    float max = 0;
    for (int k = 0; k < QK_K; k++)
      if (fabsf(xb[k]) == amax) {
        max = xb[k];
        break;
      }
    float iscale = -128.0f / max;
    __m256 vs = _mm256_set1_ps(iscale);
    const __m256i lim = _mm256_set1_epi32(127);
    for (int k = 0; k < QK_K; k += 32) {
      /* cvtps rounds to nearest even, like lrintf in the reference */
      __m256i a =
          _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(xb + k))), lim);
      __m256i c =
          _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(xb + k + 8))), lim);
      __m256i e = _mm256_min_epi32(
          _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(xb + k + 16))), lim);
      __m256i f = _mm256_min_epi32(
          _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(xb + k + 24))), lim);
      __m256i q = pack_i32x32_i8(a, c, e, f);
      _mm256_storeu_si256((__m256i *)(y[b].qs + k), q);
      /* sums of 16: bytes to pairs (maddubs with ones), pairs to 4-sums, then two halves */
      __m256i s4 =
          _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
      __m128i s8 = _mm_hadd_epi32(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
      s8 = _mm_hadd_epi32(s8, s8);
      y[b].bsums[k / 16] = (int16_t)_mm_cvtsi128_si32(s8);
      y[b].bsums[k / 16 + 1] = (int16_t)_mm_extract_epi32(s8, 1);
    }
    y[b].d = 1 / iscale;
  }
}

/* ---------------------------------------------------------------- Q4_K / Q5_K */

/* The 8 six-bit scales and 8 six-bit mins of a Q4_K/Q5_K super-block, by 32-bit word ops:
 * k < 4 sit in the low 6 bits of bytes 0..3 (scales) and 4..7 (mins); k >= 4 have their low
 * 4 bits in bytes 8..11 and their top 2 bits in the top of bytes 0..3 / 4..7. */
static inline void k4_unpack(const uint8_t *sc, __m128i *scales8, __m128i *mins8) {
  uint32_t u0 = load_u32(sc), u1 = load_u32(sc + 4), u2 = load_u32(sc + 8);
  uint32_t s_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
  uint32_t s_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 6) & 0x03030303u) << 4;
  uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 6) & 0x03030303u) << 4;
  *scales8 = _mm_cvtsi64_si128((long long)((uint64_t)s_hi << 32 | s_lo));
  *mins8 = _mm_cvtsi64_si128((long long)((uint64_t)m_hi << 32 | m_lo));
}

/* 16-bit broadcast of element k of a vector of int16 (both 128-bit lanes hold the same 8). */
static inline __m256i bcast16(__m256i v, int k) {
  return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(0x0100 + 0x0202 * k)));
}

/* The 8 scales of a Q4_K/Q5_K super-block as int16 in both lanes (*sc16), and the sum of each
 * min against the sums of its 32 values in y (*msum, per-lane int32: the caller's correction). */
static inline __attribute__((always_inline)) void k45_scales(const uint8_t *scales12, __m256i bsums,
                                                             __m256i *sc16, __m256i *msum) {
  __m128i sc8, mn8;
  k4_unpack(scales12, &sc8, &mn8);
  *sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc8));
  const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8)); /* m0 m0 m1 m1 ... */
  *msum = _mm256_madd_epi16(bsums, mn16);
}

/* Q5_K's fifth bit of sub-block j (bit j of each qh byte) moved to bit 4, by a fixed shift:
 * within 16-bit lanes, the shifts of at most 4 never carry a bit of one byte into bit 4 of
 * the other. */
static inline __m256i k5_bit4(__m256i qh, int j) {
  const __m256i t = j < 4   ? _mm256_slli_epi16(qh, 4 - j)
                    : j > 4 ? _mm256_srli_epi16(qh, j - 4)
                            : qh;
  return _mm256_and_si256(t, _mm256_set1_epi8(16));
}

/* The integer dot of a Q4_K/Q5_K super-block's levels with y's bytes, each 32-value sub-block
 * times its scale (per-lane int32). qs' 32-byte chunk c holds sub-block 2c in its low nibbles
 * and 2c+1 in its high ones; qh is NULL for Q4_K. */
static inline __attribute__((always_inline)) __m256i k45_levels(const uint8_t *qs,
                                                                const uint8_t *qh,
                                                                const int8_t *yqs, __m256i sc16) {
  const __m256i m4 = _mm256_set1_epi8(15);
  const __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
  __m256i acc = _mm256_setzero_si256();
  /* unrolled by hand: as a loop gcc keeps it rolled and builds bcast16's controls at run time */
#define K45_CHUNK(c)                                                                          \
  do {                                                                                        \
    __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));                           \
    __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4); \
    if (qh) {                                                                                 \
      lo = _mm256_or_si256(lo, k5_bit4(hbits, 2 * c));                                        \
      hi = _mm256_or_si256(hi, k5_bit4(hbits, 2 * c + 1));                                    \
    }                                                                                         \
    __m256i p0 = udot_pairs(lo, _mm256_loadu_si256((const __m256i *)(yqs + 64 * c)));         \
    __m256i p1 = udot_pairs(hi, _mm256_loadu_si256((const __m256i *)(yqs + 64 * c + 32)));    \
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, bcast16(sc16, 2 * c)));                 \
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, bcast16(sc16, 2 * c + 1)));             \
  } while (0)
  K45_CHUNK(0);
  K45_CHUNK(1);
  K45_CHUNK(2);
  K45_CHUNK(3);
#undef K45_CHUNK
  return acc;
}

/* One Q4_K/Q5_K super-block: the integer dot of the levels with their scales in *sumi, the
 * scaled-min correction in *msum (both per-lane int32, summed by the caller). */
static inline __attribute__((always_inline)) void k45_block(const uint8_t *scales12,
                                                            const uint8_t *qs, const uint8_t *qh,
                                                            const block_q8_K *y, __m256i *sumi,
                                                            __m256i *msum) {
  __m256i sc16;
  k45_scales(scales12, _mm256_loadu_si256((const __m256i *)y->bsums), &sc16, msum);
  *sumi = k45_levels(qs, qh, y->qs, sc16);
}

/* A super-block's two exact sums, levels times scales and mins times block sums, out of their
 * lanes: [sumi, msum, sumi, msum]. */
static inline __m128i k45_sums(__m256i sumi, __m256i msum) {
  const __m256i u = _mm256_hadd_epi32(sumi, msum); /* per half: sumi sumi msum msum */
  const __m128i h = _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
  return _mm_hadd_epi32(h, h);
}

/* In the reference's order (see "K-quants, four rows"): per super-block the exact sums, then
 * sum += dy * (d * sumi - dmin * msum). */
static inline __attribute__((always_inline)) float k45_dot(int64_t nb, const uint8_t *base,
                                                           size_t stride, size_t off_sc,
                                                           size_t off_qs, long off_qh,
                                                           const block_q8_K *y) {
  float sum = 0;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *blk = base + (size_t)b * stride;
    __m256i sumi, msum;
    k45_block(blk + off_sc, blk + off_qs, off_qh >= 0 ? blk + off_qh : NULL, &y[b], &sumi, &msum);
    const __m128i h = k45_sums(sumi, msum);
    sum += y[b].d * (f16c_h2f(load_u16(blk)) * (float)_mm_cvtsi128_si32(h) -
                     f16c_h2f(load_u16(blk + 2)) * (float)_mm_extract_epi32(h, 1));
  }
  return sum;
}

static void q4_K_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  *s = k45_dot(n / QK_K, vx, sizeof(block_q4_K), offsetof(block_q4_K, scales),
               offsetof(block_q4_K, qs), -1, vy);
}

static void q5_K_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  *s = k45_dot(n / QK_K, vx, sizeof(block_q5_K), offsetof(block_q5_K, scales),
               offsetof(block_q5_K, qs), (long)offsetof(block_q5_K, qh), vy);
}

/* ---------------------------------------------------------------- Q6_K */

/* From 8 int16 in both lanes: element 2g across the low lane, 2g+1 across the high lane
 * (shuffle controls from a table: built in registers they cost more than they save). */
#define SP(g)                                                                                      \
  4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g, \
      4 * g + 1, 4 * g, 4 * g + 1, 4 * g, 4 * g + 1, 4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3,   \
      4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3,      \
      4 * g + 2, 4 * g + 3, 4 * g + 2, 4 * g + 3
static const uint8_t scale_pair_ctl[4][32]
    __attribute__((aligned(32))) = {{SP(0)}, {SP(1)}, {SP(2)}, {SP(3)}};
#undef SP
static inline __m256i scale_pair16(__m256i v8, int g) {
  return _mm256_shuffle_epi8(v8, _mm256_load_si256((const __m256i *)scale_pair_ctl[g]));
}

/* The integer dot of one Q6_K super-block with y's bytes, every 16 values times their scale,
 * the levels' -32 included (per-lane int32). */
static inline __attribute__((always_inline)) __m256i q6k_block(const block_q6_K *x,
                                                               const int8_t *yqs, __m256i bsums) {
  const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
  const int8_t *sc = x->scales;
  __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
  for (int c = 0; c < 2; c++) {
    /* the 8 scales of this half as int16 in both lanes; group g's pair (2g, 2g+1) is then
     * one byte shuffle (building it from scalars cost a third of the kernel) */
    const __m256i sc16 = _mm256_broadcastsi128_si256(
        _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(sc + 8 * c))));
    const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * c));
    const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * c + 32));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * c));
    /* unsigned levels 0..63: group g's top two bits (bits 2g, 2g+1 of qh) moved to bits 4, 5
     * by fixed shifts that keep them within their byte; the -32 comes back through bsums */
    __m256i q[4];
    q[0] =
        _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
    q[1] =
        _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
    q[2] =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                           _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
#define Q6_GROUP(g)                                                                              \
  sumi = _mm256_add_epi32(                                                                       \
      sumi, _mm256_madd_epi16(                                                                   \
                udot_pairs(q[g], _mm256_loadu_si256((const __m256i *)(yqs + 128 * c + 32 * g))), \
                scale_pair16(sc16, g)))
    Q6_GROUP(0);
    Q6_GROUP(1);
    Q6_GROUP(2);
    Q6_GROUP(3);
#undef Q6_GROUP
  }
  /* sum_sb sc[sb] * 32 * bsums[sb] */
  const __m256i off =
      _mm256_madd_epi16(bsums, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc)));
  return _mm256_sub_epi32(sumi, _mm256_slli_epi32(off, 5));
}

static inline int32_t hsum_epi32(__m256i v) {
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
  return _mm_cvtsi128_si32(_mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1)));
}

/* In the reference's order: sum += (d * dy) * isum, super-block after super-block. */
static void q6_K_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q6_K *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    const __m256i sumi = q6k_block(&x[b], y[b].qs, _mm256_loadu_si256((const __m256i *)y[b].bsums));
    sum += f16c_h2f(x[b].d) * y[b].d * (float)hsum_epi32(sumi);
  }
  *s = sum;
}

/* ---------------------------------------------------------------- Q2_K / Q3_K
 * Both split a super-block into two chunks of 128 values, four groups of 32 each, group g of
 * chunk c taking bits 2g..2g+1 of the chunk's 32 bytes and sub-blocks 8c + 2g (low 128-bit
 * lane) and 8c + 2g + 1 (high lane) of 16 values. Groups 0 and 1 take their bits with a mask
 * alone, 2 and 3 with one shared shift and the mask, so the odd groups' levels come out 4
 * times too large and the scales of the even groups are multiplied by 4 instead: every
 * product is 4 times the true one, and the final sum takes the 4 back exactly. A chunk's four
 * int16 product vectors are summed in pairs twice by hadd (each int16 then holds 8 products of
 * one sub-block: at most 8 * 28 * 128 < 2^15 for Q3_K's levels), so one madd with the scales
 * replaces four; the scales are kept with the even sub-blocks in the low lane and the odd ones
 * in the high lane, so a chunk's scales are one in-lane byte shuffle. */

/* Bytes 0, 2, .., 14 then 1, 3, .., 15: even sub-blocks first. */
static inline __m128i even_odd_bytes(__m128i v) {
  return _mm_shuffle_epi8(v, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
}

/* Group g's 32 levels from chunk q and q4 = q >> 4, times 1, 4, 1, 4. */
static inline __m256i k23_low2(__m256i q, __m256i q4, int g) {
  return _mm256_and_si256(g < 2 ? q : q4, _mm256_set1_epi8(g & 1 ? 0x0c : 0x03));
}

/* Chunk c's scales in hadd order: int16 pairs of groups 0, 1, 2, 3 from the even/odd scales. */
static inline __m256i k23_chunk_scales(__m256i sv, int c) {
  const char k = (char)(8 * c);
  return _mm256_shuffle_epi8(
      sv, _mm256_setr_epi8(k, k + 1, k, k + 1, k + 2, k + 3, k + 2, k + 3, k + 4, k + 5, k + 4,
                           k + 5, k + 6, k + 7, k + 6, k + 7, k, k + 1, k, k + 1, k + 2, k + 3,
                           k + 2, k + 3, k + 4, k + 5, k + 4, k + 5, k + 6, k + 7, k + 6, k + 7));
}

/* Q3_K's 16 signed scales (see q3k_scale) as bytes in order: low 4 bits are the low nibbles
 * (k < 8) and high nibbles (k >= 8) of bytes 0..7, the top 2 bits sit in byte 8 + k % 4 at
 * bit 2 * (k / 4). */
static inline __m128i q3k_scales8(const uint8_t *sc) {
  const __m128i b = _mm_loadl_epi64((const __m128i *)sc), m4 = _mm_set1_epi8(15);
  const __m128i lo =
      _mm_unpacklo_epi64(_mm_and_si128(b, m4), _mm_and_si128(_mm_srli_epi16(b, 4), m4));
  /* dword k / 4 holds the four top-bit bytes, shifted so that field k / 4 sits at bits 0..1,
   * then moved up to bits 4..5 */
  const __m128i top =
      _mm_srlv_epi32(_mm_set1_epi32((int)load_u32(sc + 8)), _mm_setr_epi32(0, 2, 4, 6));
  const __m128i hi = _mm_and_si128(_mm_slli_epi32(top, 4), _mm_set1_epi8(0x30));
  return _mm_sub_epi8(_mm_or_si128(lo, hi), _mm_set1_epi8(32));
}

/* The high bit (bit 4c + g of hmask's byte) of group g of chunk c, placed at 4 times the level
 * weight k23_low2 gives that group (bit 2 or 4). */
static inline __m256i q3k_high(__m256i hm, int c, int g) {
  const int j = 4 * c + g, p = g & 1 ? 4 : 2;
  __m256i t = p > j ? _mm256_slli_epi16(hm, p - j) : p < j ? _mm256_srli_epi16(hm, j - p) : hm;
  return _mm256_and_si256(t, _mm256_set1_epi8((char)(1 << p)));
}

enum { K23_Q2_K, K23_Q3_K };

/* One Q2_K (kind K23_Q2_K) or Q3_K super-block at x against yb, added to acc times 4 (see
 * above); the one-row and four-row kernels share it. */
static inline __attribute__((always_inline)) __m256 k23_block(const int kind, const uint8_t *x,
                                                              const block_q8_K *yb, __m256 acc) {
  const __m128i m4 = _mm_set1_epi8(15);
  const __m256i bsums = _mm256_loadu_si256((const __m256i *)yb->bsums);
  __m256i s1, sumi, hm = _mm256_setzero_si256(), msum = _mm256_setzero_si256();
  const uint8_t *qs;
  if (kind == K23_Q2_K) {
    const block_q2_K *xb = (const block_q2_K *)x;
    const __m128i sc = _mm_loadu_si128((const __m128i *)xb->scales);
    /* the mins against the sums of 16 that Q8_K carries */
    msum = _mm256_madd_epi16(bsums, _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4)));
    s1 = _mm256_cvtepu8_epi16(even_odd_bytes(_mm_and_si128(sc, m4)));
    sumi = _mm256_setzero_si256();
    qs = xb->qs;
  } else {
    const block_q3_K *xb = (const block_q3_K *)x;
    const __m128i sc8 = q3k_scales8(xb->scales);
    /* unsigned level 0..7 = 2-bit value + 4 * high bit; the -4 comes back through bsums:
     * sumi starts at 4 * -4 * sum(scale * bsum) */
    const __m256i off = _mm256_madd_epi16(bsums, _mm256_cvtepi8_epi16(sc8));
    s1 = _mm256_cvtepi8_epi16(even_odd_bytes(sc8));
    hm = _mm256_loadu_si256((const __m256i *)xb->hmask);
    sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 4));
    qs = xb->qs;
  }
  /* the even groups' scales times 4 (see above) */
  const __m256i sv = _mm256_mullo_epi16(s1, _mm256_set1_epi32(0x00010004));
#pragma GCC unroll 2
  for (int c = 0; c < 2; c++) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
    const __m256i q4 = _mm256_srli_epi16(q, 4);
    __m256i p[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
      __m256i v = k23_low2(q, q4, g);
      if (kind == K23_Q3_K) v = _mm256_or_si256(v, q3k_high(hm, c, g));
      p[g] = udot_pairs(v, _mm256_loadu_si256((const __m256i *)(yb->qs + 128 * c + 32 * g)));
    }
    const __m256i h =
        _mm256_hadd_epi16(_mm256_hadd_epi16(p[0], p[1]), _mm256_hadd_epi16(p[2], p[3]));
    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(h, k23_chunk_scales(sv, c)));
  }
  if (kind == K23_Q3_K)
    return _mm256_fmadd_ps(_mm256_set1_ps(f16c_h2f(((const block_q3_K *)x)->d) * yb->d),
                           _mm256_cvtepi32_ps(sumi), acc);
  /* one multiply-add for both sums: (d, -4 dmin) * y's d against their lanes after hadd */
  const __m128 dm = _mm_mul_ps(
      _mm_cvtph_ps(_mm_cvtsi32_si128((int)load_u32((const uint8_t *)&((const block_q2_K *)x)->d))),
      _mm_mul_ps(_mm_set1_ps(yb->d), _mm_setr_ps(1, -4, 0, 0)));
  return _mm256_fmadd_ps(_mm256_permutevar8x32_ps(_mm256_castps128_ps256(dm),
                                                  _mm256_setr_epi32(0, 0, 1, 1, 0, 0, 1, 1)),
                         _mm256_cvtepi32_ps(_mm256_hadd_epi32(sumi, msum)), acc);
}

/* One row: the sum of k23_block over its super-blocks (xs bytes each). */
static inline __attribute__((always_inline)) float k23_dot(const int kind, int64_t n,
                                                           const uint8_t *x, size_t xs,
                                                           const block_q8_K *y) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) acc = k23_block(kind, x + (size_t)b * xs, &y[b], acc);
  return hsum8(acc) * 0.25f;
}

static void q2_K_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  *s = k23_dot(K23_Q2_K, n, vx, sizeof(block_q2_K), vy);
}

static void q3_K_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  *s = k23_dot(K23_Q3_K, n, vx, sizeof(block_q3_K), vy);
}

/* Q3_K, four rows: the rows are prefetched as one linear stream ahead (see nllm_prefetch_span);
 * nothing in a super-block's work depends on the activation alone, so that is all it shares.
 * The same for Q2_K measured no faster than its one-row kernel, so it has none; nor has IQ4_XS:
 * sharing its activation's rearranged bytes and their absolute values between the rows (a sixth
 * less vector work) measured slower, the four rows' working set spilling to the stack (figures:
 * docs/performance.md, "Four-row kernels"). */
static inline __attribute__((always_inline)) void dot4_k23(const int kind, int64_t n, float *s,
                                                           const uint8_t *x0, size_t bx,
                                                           const block_q8_K *y) {
  const size_t xs = kind == K23_Q2_K ? sizeof(block_q2_K) : sizeof(block_q3_K);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  for (int64_t b = 0; b < n / QK_K; b++) {
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * xs);
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
      acc[r] = k23_block(kind, x0 + (size_t)r * bx + (size_t)b * xs, &y[b], acc[r]);
  }
  for (int r = 0; r < 4; r++) s[r] = hsum8(acc[r]) * 0.25f;
}

static void q3_K_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_k23(K23_Q3_K, n, s, x, bx, y);
}

/* ---------------------------------------------------------------- IQ4_XS
 * Two 32-value groups per 32 bytes of qs: one mask gives elements 0..15 of group 2p (low lane)
 * and of group 2p + 1 (high lane), one shift and the mask elements 16..31 of both; y's bytes
 * are loaded in that order instead. The eight 6-bit scales are kept as int32 with the even
 * groups in the low lane and the odd ones in the high lane, so a pair's scales are one byte
 * shuffle, shared by both halves. */

/* Scales - 32 as int32: lanes 0..3 groups 0, 2, 4, 6, lanes 4..7 groups 1, 3, 5, 7. */
static inline __m256i iq4xs_scales(const block_iq4_xs *x) {
  const __m128i l = _mm_cvtsi32_si128((int)load_u32(x->scales_l)), m4 = _mm_set1_epi8(15);
  /* low nibbles of the 4 bytes are groups 0, 2, 4, 6, high nibbles groups 1, 3, 5, 7 */
  const __m256i lo = _mm256_cvtepu8_epi32(
      _mm_unpacklo_epi32(_mm_and_si128(l, m4), _mm_and_si128(_mm_srli_epi16(l, 4), m4)));
  const __m256i hi =
      _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)x->scales_h << 4),
                                         _mm256_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14)),
                       _mm256_set1_epi32(0x30));
  return _mm256_sub_epi32(_mm256_or_si256(lo, hi), _mm256_set1_epi32(32));
}

/* int16 of element m of each lane's int32 in all of that lane. */
static inline __m256i bcast32lo16(__m256i v, int m) {
  return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(0x0100 + 0x0404 * m)));
}

/* 16 bytes at p in the low lane, 16 at p + 32 in the high lane. */
static inline __m256i load_2x16(const int8_t *p) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p)),
                                 _mm_loadu_si128((const __m128i *)(p + 32)), 1);
}

static void iq4_xs_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const block_iq4_xs *x = vx;
  const block_q8_K *y = vy;
  const __m256i lut =
      _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nllm_iq4nl_values));
  const __m256i m4 = _mm256_set1_epi8(15);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    const __m256i sc = iq4xs_scales(&x[b]);
    __m256i sumi = _mm256_setzero_si256();
    /* Q8_K holds -128, whose negation overflows int8: the sign moves onto the levels instead
     * (|y| read as unsigned is exact), and |level| <= 127 keeps each pair within int16, so
     * the two halves are widened on their own */
#define IQ4XS_PAIR(p)                                                                           \
  do {                                                                                          \
    const __m256i q = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * p));                  \
    const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(q, m4));                       \
    const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4)); \
    const __m256i ylo = load_2x16(y[b].qs + 64 * p), yhi = load_2x16(y[b].qs + 64 * p + 16);    \
    const __m256i plo = _mm256_maddubs_epi16(_mm256_abs_epi8(ylo), _mm256_sign_epi8(lo, ylo));  \
    const __m256i phi = _mm256_maddubs_epi16(_mm256_abs_epi8(yhi), _mm256_sign_epi8(hi, yhi));  \
    const __m256i scp = bcast32lo16(sc, p);                                                     \
    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(plo, scp));                                 \
    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(phi, scp));                                 \
  } while (0)
    IQ4XS_PAIR(0);
    IQ4XS_PAIR(1);
    IQ4XS_PAIR(2);
    IQ4XS_PAIR(3);
#undef IQ4XS_PAIR
    /* the reference's float step, super-block after super-block */
    sum += f16c_h2f(x[b].d) * y[b].d * (float)hsum_epi32(sumi);
  }
  *s = sum;
}

/* ---------------------------------------------------------------- K-quant dequantization
 * The prefill path dequantizes every weight once per batch of tokens, so these run at the
 * reference's exact arithmetic (scale * level, then minus the min: no fused multiply-add). */

/* 32 levels (bytes, signed or not) to floats: first 16 times s_lo, next 16 times s_hi, minus m. */
static inline void levels32_store(float *y, __m256i q, int is_signed, __m256 s_lo, __m256 s_hi,
                                  __m256 m) {
  __m128i h[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
  for (int k = 0; k < 4; k++) {
    __m128i b = k & 1 ? _mm_srli_si128(h[k >> 1], 8) : h[k >> 1];
    __m256i w = is_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(w), k < 2 ? s_lo : s_hi);
    _mm256_storeu_ps(y + 8 * k, _mm256_sub_ps(f, m));
  }
}

static inline void k45_to_float_avx2(const uint8_t *scales12, const uint8_t *qs, const uint8_t *qh,
                                     float d, float dmin, float *y) {
  uint8_t sc[8], mn[8];
  k4_scales_mins(scales12, sc, mn);
  const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
  __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
  for (int c = 0; c < 4; c++) {
    __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
    __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    if (qh) {
      lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hbits, one), 4));
      hi = _mm256_or_si256(
          hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 1), one), 4));
      hbits = _mm256_srli_epi16(hbits, 2);
    }
    __m256 d0 = _mm256_set1_ps(d * (float)sc[2 * c]), m0 = _mm256_set1_ps(dmin * (float)mn[2 * c]);
    __m256 d1 = _mm256_set1_ps(d * (float)sc[2 * c + 1]),
           m1 = _mm256_set1_ps(dmin * (float)mn[2 * c + 1]);
    levels32_store(y + 64 * c, lo, 0, d0, d0, m0);
    levels32_store(y + 64 * c + 32, hi, 0, d1, d1, m1);
  }
}

static void q4_K_to_float_avx2(const void *vx, float *y, int64_t n) {
  const block_q4_K *x = vx;
  for (int64_t b = 0; b < n / QK_K; b++)
    k45_to_float_avx2(x[b].scales, x[b].qs, NULL, f16c_h2f(x[b].d), f16c_h2f(x[b].dmin),
                      y + b * QK_K);
}

static void q5_K_to_float_avx2(const void *vx, float *y, int64_t n) {
  const block_q5_K *x = vx;
  for (int64_t b = 0; b < n / QK_K; b++)
    k45_to_float_avx2(x[b].scales, x[b].qs, x[b].qh, f16c_h2f(x[b].d), f16c_h2f(x[b].dmin),
                      y + b * QK_K);
}

static void q6_K_to_float_avx2(const void *vx, float *y, int64_t n) {
  const block_q6_K *x = vx;
  const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    const float d = f16c_h2f(x[b].d);
    const int8_t *sc = x[b].scales;
    float *yb = y + b * QK_K;
    for (int c = 0; c < 2; c++) {
      __m256i ql0 = _mm256_loadu_si256((const __m256i *)(x[b].ql + 64 * c));
      __m256i ql1 = _mm256_loadu_si256((const __m256i *)(x[b].ql + 64 * c + 32));
      __m256i qh = _mm256_loadu_si256((const __m256i *)(x[b].qh + 32 * c));
      for (int g = 0; g < 4; g++) {
        __m256i ql = g & 1 ? ql1 : ql0;
        __m256i lo = _mm256_and_si256(g >> 1 ? _mm256_srli_epi16(ql, 4) : ql, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), m2);
        __m256i lv = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), off);
        int s = 8 * c + 2 * g;
        levels32_store(yb + 128 * c + 32 * g, lv, 1, _mm256_set1_ps(d * (float)sc[s]),
                       _mm256_set1_ps(d * (float)sc[s + 1]), zero);
      }
    }
  }
}

/* ---------------------------------------------------------------- K-quants, four rows
 * Per 256-value super-block the activation's block sums and scale are loaded once for four
 * rows (its bytes stay memory operands of the products, read from L1 by each row), the four
 * rows' exact integer sums are reduced together so that each row's float steps, the scalar
 * reference's in its order (the row-interleaved prompt kernels below give the same sums, so a
 * prompt's rows equal decode's bit for bit), run in a lane of one vector, and the rows are
 * prefetched as one linear stream ahead
 * (see nllm_prefetch_span). The products cost per row what they cost in the one-row kernels;
 * the gain is mostly the prefetched stream, so it shows where decode is not yet bound by
 * memory bandwidth (one thread), and not where it already is (docs/performance.md). */

enum { K_Q4_K, K_Q5_K };

/* Four rows' halves at x, x + bx, x + 2 bx, x + 3 bx as floats. */
static inline __m128 halves4(const uint8_t *x, size_t bx) {
  const uint64_t h = (uint64_t)load_u16(x) | (uint64_t)load_u16(x + bx) << 16 |
                     (uint64_t)load_u16(x + 2 * bx) << 32 | (uint64_t)load_u16(x + 3 * bx) << 48;
  return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)h));
}

/* u[r] = hadd(sumi, msum) of row r: the four rows' exact sums, sumi in *si, msum in *ms. */
static inline void k45_sums4(__m256i u0, __m256i u1, __m256i u2, __m256i u3, __m128i *si,
                             __m128i *ms) {
  const __m256i a = _mm256_hadd_epi32(u0, u1), b = _mm256_hadd_epi32(u2, u3);
  /* per half: sumi, msum of rows 0, 1 (of rows 2, 3 in b) */
  const __m128 a4 =
      _mm_castsi128_ps(_mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1)));
  const __m128 b4 =
      _mm_castsi128_ps(_mm_add_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1)));
  *si = _mm_castps_si128(_mm_shuffle_ps(a4, b4, _MM_SHUFFLE(2, 0, 2, 0)));
  *ms = _mm_castps_si128(_mm_shuffle_ps(a4, b4, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The reference's float step of a super-block, four rows: acc + dy * (d * sumi - dmin * msum). */
static inline __m128 k45_step4(__m128 acc, __m128 d, __m128 dmin, float dy, __m128i si,
                               __m128i ms) {
  const __m128 f =
      _mm_sub_ps(_mm_mul_ps(d, _mm_cvtepi32_ps(si)), _mm_mul_ps(dmin, _mm_cvtepi32_ps(ms)));
  return _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(dy), f));
}

/* Q6_K's float step of a super-block, four rows (their exact sums spread over the lanes of
 * s0..s3): the reference's acc + (d * dy) * isum. */
static inline __m128 q6k_step4(__m128 acc, __m128 d, float dy, __m256i s0, __m256i s1, __m256i s2,
                               __m256i s3) {
  const __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
  const __m128i isum = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
  return _mm_add_ps(acc, _mm_mul_ps(_mm_mul_ps(d, _mm_set1_ps(dy)), _mm_cvtepi32_ps(isum)));
}

/* Q4_K and Q5_K. */
static inline __attribute__((always_inline)) void dot4_k45(const int kind, int64_t n, float *s,
                                                           const uint8_t *x0, size_t bx,
                                                           const block_q8_K *y) {
  const size_t xs = kind == K_Q5_K ? sizeof(block_q5_K) : sizeof(block_q4_K);
  const size_t off_sc =
      kind == K_Q5_K ? offsetof(block_q5_K, scales) : offsetof(block_q4_K, scales);
  const size_t off_qs = kind == K_Q5_K ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
  const size_t off_qh = offsetof(block_q5_K, qh);
  __m128 acc = _mm_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    const __m256i bsums = _mm256_loadu_si256((const __m256i *)y[b].bsums);
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * xs);
    __m256i u[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
      __m256i sc16, msum;
      k45_scales(x + off_sc, bsums, &sc16, &msum);
      const __m256i sumi =
          k45_levels(x + off_qs, kind == K_Q5_K ? x + off_qh : NULL, y[b].qs, sc16);
      u[r] = _mm256_hadd_epi32(sumi, msum);
    }
    __m128i si, ms;
    k45_sums4(u[0], u[1], u[2], u[3], &si, &ms);
    const uint8_t *x = x0 + (size_t)b * xs;
    acc = k45_step4(acc, halves4(x, bx), halves4(x + 2, bx), y[b].d, si, ms);
  }
  _mm_storeu_ps(s, acc);
}

static void q4_K_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_k45(K_Q4_K, n, s, x, bx, y);
}
static void q5_K_vec_dot4_avx2(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_k45(K_Q5_K, n, s, x, bx, y);
}

/* Q6_K. The row loop stays rolled: unrolled, gcc shares y's loads between the rows and spills
 * (61 stack accesses a super-block), slower than the one-row kernel in L2. */
static void q6_K_vec_dot4_avx2(int64_t n, float *s, const void *vx, size_t bx, const void *vy) {
  const uint8_t *x0 = vx;
  const block_q8_K *y = vy;
  const size_t xs = sizeof(block_q6_K), off_d = offsetof(block_q6_K, d);
  __m128 acc = _mm_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    const __m256i bsums = _mm256_loadu_si256((const __m256i *)y[b].bsums);
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * xs);
    __m256i si[4];
#pragma GCC unroll 1
    for (int r = 0; r < 4; r++)
      si[r] = q6k_block((const block_q6_K *)(x0 + (size_t)r * bx + (size_t)b * xs), y[b].qs, bsums);
    acc = q6k_step4(acc, halves4(x0 + (size_t)b * xs + off_d, bx), y[b].d, si[0], si[1], si[2],
                    si[3]);
  }
  _mm_storeu_ps(s, acc);
}

/* ---------------------------------------------------------------- K-quants, prompt tiles
 * Four rows by up to four tokens (see nllm_gemm4_fn), equal to the four-row kernels above: the
 * same exact integer sums and float steps, with each row's levels and scales unpacked once per
 * super-block for every token of the tile. Rows go one at a time, each one's levels in
 * registers while every token's bytes pass over them from L1; the rows' integer sums meet in
 * the float step per token.
 * A sub-block's scale multiplies its products (a madd of maddubs' int16 pair sums) per token
 * and vector, half the multiplies of a tile. So each row's levels are rearranged in pairs of
 * vectors by unpacklo / unpackhi_epi64 (a few shuffles per super-block, shared by the tile's
 * tokens), after which each 8-byte qword position of the pair holds one sub-block (Q4_K, Q5_K:
 * of two 32-byte chunks of qs; Q6_K: of two 32-value groups, in scales of 16 values): the two
 * maddubs add up in int16 (|sum| <= 2 * 2 * 31 * 128 for Q5_K, 2 * 2 * 63 * 128 for Q6_K, below
 * 2^15) before one madd with those positions' scales. The activations are prepared once per
 * matmul in the same order (gemm_prep). Per token and super-block 8 maddubs and 4 madds (were
 * 8 and 8); the full 8 x 8 rearrangement (one madd a set of four vectors) spilled, slower. */

/* A prepared super-block of the tiles: the rearranged bytes, the block sums, d. */
#define KT_BS16 256
#define KT_D 288
#define KT_BLOCK 320
_Static_assert(KT_BLOCK <= NLLM_GEMM_PREP_BYTES(QK_K), "a prepared super-block fits");

static inline void kt_prep_tail(const block_q8_K *y, uint8_t *out) {
  memcpy(out + KT_BS16, y->bsums, sizeof y->bsums);
  memcpy(out + KT_D, &y->d, sizeof(float));
}

/* Q4_K, Q5_K: for pair P of the 32-byte chunks (2 P, 2 P + 1), set h (low or high nibbles)
 * and part w (what unpacklo / unpackhi_epi64 make of the pair): vector 4 P + 2 h + w, whose
 * qword p holds the activation's values 8 m .. 8 m + 7 (m = w + 2 (p / 2)) of sub-block
 * 2 (2 P + p % 2) + h. */
static void k45_tile_prep_avx2(int64_t n, const void *vy, void *vp) {
  const block_q8_K *y = vy;
  uint8_t *out = vp;
  for (int64_t b = 0; b < n / QK_K; b++, out += KT_BLOCK) {
    for (int v = 0; v < 8; v++)
      for (int p = 0; p < 4; p++) {
        const int P = v / 4, h = v / 2 % 2, w = v % 2;
        memcpy(out + 32 * v + 8 * p, y[b].qs + 32 * (2 * (2 * P + p % 2) + h) + 8 * (w + p / 2 * 2),
               8);
      }
    kt_prep_tail(&y[b], out);
  }
}

/* Q6_K: for half c, pair P of its 32-value groups g0 = 2 P, g1 = 2 P + 1, part w: vector
 * 4 c + 2 P + w holds the activation's qwords (of the half) 4 g0 + w, 4 g1 + w, 4 g0 + 2 + w,
 * 4 g1 + 2 + w (what unpacklo / unpackhi_epi64 make of groups g0 and g1). */
static void q6_K_tile_prep_avx2(int64_t n, const void *vy, void *vp) {
  const block_q8_K *y = vy;
  uint8_t *out = vp;
  static const int8_t qw[4][2] = {{0, 0}, {1, 0}, {0, 2}, {1, 2}}; /* (group of pair, qword) */
  for (int64_t b = 0; b < n / QK_K; b++, out += KT_BLOCK) {
    for (int c = 0; c < 2; c++)
      for (int P = 0; P < 2; P++)
        for (int w = 0; w < 2; w++)
          for (int p = 0; p < 4; p++)
            memcpy(out + 32 * (4 * c + 2 * P + w) + 8 * p,
                   y[b].qs + 128 * c + 32 * (2 * P + qw[p][0]) + 8 * (qw[p][1] + w), 8);
    kt_prep_tail(&y[b], out);
  }
}

/* Q4_K and Q5_K (dot4_k45's steps). */
static inline __attribute__((always_inline)) void gemm4_k45(const int kind, const int T, int64_t n,
                                                            float *s, size_t ss, const uint8_t *x0,
                                                            size_t bx, const uint8_t *p0,
                                                            size_t ps) {
  const size_t xs = kind == K_Q5_K ? sizeof(block_q5_K) : sizeof(block_q4_K);
  const size_t off_sc =
      kind == K_Q5_K ? offsetof(block_q5_K, scales) : offsetof(block_q4_K, scales);
  const size_t off_qs = kind == K_Q5_K ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
  const __m256i m4 = _mm256_set1_epi8(15);
  /* from the 8 scales as int16 (both lanes), pair P and set h's: qwords 4 P + h, 4 P + 2 + h,
   * 4 P + h, 4 P + 2 + h */
  const __m256i sctl = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 4, 5, 4, 5, 4, 5, 4, 5, 0, 1, 0, 1,
                                        0, 1, 0, 1, 4, 5, 4, 5, 4, 5, 4, 5);
  __m128 acc[NLLM_GEMM_TOK];
#pragma GCC unroll 4
  for (int t = 0; t < T; t++) acc[t] = _mm_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * xs);
    __m256i u[4][NLLM_GEMM_TOK];
#pragma GCC unroll 1
    for (int r = 0; r < 4; r++) {
      /* the tokens' bytes are read from the prepared rows for each row: hoisted out of the
       * row loop (they do not depend on it) gcc keeps them on the stack instead */
      const uint8_t *pr = p0 + (size_t)b * KT_BLOCK;
      __asm__("" : "+r"(pr));
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
      __m128i sc8, mn8;
      k4_unpack(x + off_sc, &sc8, &mn8);
      const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc8));
      const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));
      const uint8_t *qs = x + off_qs;
      __m256i qh[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
      if (kind == K_Q5_K) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)(x + offsetof(block_q5_K, qh)));
        qh[0] = _mm256_unpacklo_epi64(h, h);
        qh[1] = _mm256_unpackhi_epi64(h, h);
      }
      __m256i sumi[NLLM_GEMM_TOK];
#pragma GCC unroll 4
      for (int t = 0; t < T; t++) sumi[t] = _mm256_setzero_si256();
#pragma GCC unroll 2
      for (int P = 0; P < 2; P++) {
        const __m256i ca = _mm256_loadu_si256((const __m256i *)(qs + 64 * P)),
                      cb = _mm256_loadu_si256((const __m256i *)(qs + 64 * P + 32));
        const __m256i v[2] = {_mm256_unpacklo_epi64(ca, cb), _mm256_unpackhi_epi64(ca, cb)};
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
          __m256i q[2];
#pragma GCC unroll 2
          for (int w = 0; w < 2; w++) {
            q[w] = _mm256_and_si256(h ? _mm256_srli_epi16(v[w], 4) : v[w], m4);
            if (kind == K_Q5_K) {
              /* the fifth bit of sub-block 4 P + 2 (p % 2) + h: that bit of qh's bytes, moved
               * to bit 0 within its byte, then to bit 4 */
              const __m256i sh =
                  _mm256_setr_epi64x(4 * P + h, 4 * P + 2 + h, 4 * P + h, 4 * P + 2 + h);
              q[w] = _mm256_or_si256(
                  q[w], _mm256_and_si256(_mm256_slli_epi64(_mm256_srlv_epi64(qh[w], sh), 4),
                                         _mm256_set1_epi8(16)));
            }
          }
          const __m256i sc = _mm256_shuffle_epi8(
              sc16, _mm256_add_epi8(sctl, _mm256_set1_epi8((char)(8 * P + 2 * h))));
#pragma GCC unroll 4
          for (int t = 0; t < T; t++) {
            const uint8_t *py = pr + (size_t)t * ps + 32 * (4 * P + 2 * h);
            const __m256i s16 =
                _mm256_add_epi16(udot_pairs(q[0], _mm256_loadu_si256((const __m256i *)py)),
                                 udot_pairs(q[1], _mm256_loadu_si256((const __m256i *)(py + 32))));
            sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(s16, sc));
          }
        }
      }
#pragma GCC unroll 4
      for (int t = 0; t < T; t++) {
        const __m256i bs = _mm256_loadu_si256((const __m256i *)(pr + (size_t)t * ps + KT_BS16));
        u[r][t] = _mm256_hadd_epi32(sumi[t], _mm256_madd_epi16(bs, mn16));
      }
    }
    const uint8_t *x = x0 + (size_t)b * xs;
    const __m128 d = halves4(x, bx), dmin = halves4(x + 2, bx);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
      float dy;
      memcpy(&dy, p0 + (size_t)t * ps + (size_t)b * KT_BLOCK + KT_D, sizeof dy);
      __m128i si, ms;
      k45_sums4(u[0][t], u[1][t], u[2][t], u[3][t], &si, &ms);
      acc[t] = k45_step4(acc[t], d, dmin, dy, si, ms);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < T; t++) _mm_storeu_ps(s + (size_t)t * ss, acc[t]);
}

/* Q6_K (q6_K_vec_dot4_avx2's steps, q6k_block's levels). */
static inline __attribute__((always_inline)) void gemm4_q6_K(const int T, int64_t n, float *s,
                                                             size_t ss, const uint8_t *x0,
                                                             size_t bx, const uint8_t *p0,
                                                             size_t ps) {
  const size_t xs = sizeof(block_q6_K), off_d = offsetof(block_q6_K, d);
  const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
  /* from a half's 8 scales as int16 (both lanes), pair P's: qwords 2 g0, 2 g1, 2 g0 + 1,
   * 2 g1 + 1 (in scales of 16 values; g0 = 2 P, g1 = g0 + 1) */
  const __m256i sctl0 = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 4, 5, 4, 5, 4, 5, 4, 5, 2, 3, 2, 3,
                                         2, 3, 2, 3, 6, 7, 6, 7, 6, 7, 6, 7);
  const __m256i sctl1 = _mm256_add_epi8(sctl0, _mm256_set1_epi8(8));
  __m128 acc[NLLM_GEMM_TOK];
#pragma GCC unroll 4
  for (int t = 0; t < T; t++) acc[t] = _mm_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * xs);
    __m256i si[4][NLLM_GEMM_TOK];
#pragma GCC unroll 1
    for (int r = 0; r < 4; r++) {
      /* the tokens' bytes are read from the prepared rows for each row: hoisted out of the
       * row loop (they do not depend on it) gcc keeps them on the stack instead */
      const uint8_t *pr = p0 + (size_t)b * KT_BLOCK;
      __asm__("" : "+r"(pr));
      const block_q6_K *x = (const block_q6_K *)(x0 + (size_t)r * bx + (size_t)b * xs);
      __m256i sumi[NLLM_GEMM_TOK];
#pragma GCC unroll 4
      for (int t = 0; t < T; t++) sumi[t] = _mm256_setzero_si256();
#pragma GCC unroll 2
      for (int c = 0; c < 2; c++) {
        const __m256i sc16 = _mm256_broadcastsi128_si256(
            _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(x->scales + 8 * c))));
        const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * c));
        const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * c + 32));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * c));
#pragma GCC unroll 2
        for (int P = 0; P < 2; P++) {
          /* groups 2P, 2P + 1: levels 0..63 as in q6k_block, then their qwords paired */
          const __m256i lv = P ? _mm256_srli_epi16(ql0, 4) : ql0;
          const __m256i lw = P ? _mm256_srli_epi16(ql1, 4) : ql1;
          const __m256i hv = P ? qh : _mm256_slli_epi16(qh, 4);
          const __m256i hw = P ? _mm256_srli_epi16(qh, 2) : _mm256_slli_epi16(qh, 2);
          const __m256i q0 = _mm256_or_si256(_mm256_and_si256(lv, m4), _mm256_and_si256(hv, m30));
          const __m256i q1 = _mm256_or_si256(_mm256_and_si256(lw, m4), _mm256_and_si256(hw, m30));
          const __m256i wlo = _mm256_unpacklo_epi64(q0, q1), whi = _mm256_unpackhi_epi64(q0, q1);
          const __m256i sc = _mm256_shuffle_epi8(sc16, P ? sctl1 : sctl0);
#pragma GCC unroll 4
          for (int t = 0; t < T; t++) {
            const uint8_t *py = pr + (size_t)t * ps + 32 * (4 * c + 2 * P);
            const __m256i s16 =
                _mm256_add_epi16(udot_pairs(wlo, _mm256_loadu_si256((const __m256i *)py)),
                                 udot_pairs(whi, _mm256_loadu_si256((const __m256i *)(py + 32))));
            sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(s16, sc));
          }
        }
      }
      const __m256i sc_all = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
#pragma GCC unroll 4
      for (int t = 0; t < T; t++) {
        const __m256i bs = _mm256_loadu_si256((const __m256i *)(pr + (size_t)t * ps + KT_BS16));
        si[r][t] = _mm256_sub_epi32(sumi[t], _mm256_slli_epi32(_mm256_madd_epi16(bs, sc_all), 5));
      }
    }
    const __m128 dx = halves4(x0 + (size_t)b * xs + off_d, bx);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
      float dy;
      memcpy(&dy, p0 + (size_t)t * ps + (size_t)b * KT_BLOCK + KT_D, sizeof dy);
      acc[t] = q6k_step4(acc[t], dx, dy, si[0][t], si[1][t], si[2][t], si[3][t]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < T; t++) _mm_storeu_ps(s + (size_t)t * ss, acc[t]);
}

/* IQ4_XS (iq4_xs_vec_dot_avx2's steps and the reference's order; the tier has no four-row
 * kernel). Per super-block the activation is prepared as that kernel reads it, pair p's |ylo|,
 * |yhi|, ylo, yhi (load_2x16's order) at 128 * p, and d at 512. */
static void iq4_xs_prep_avx2(int64_t n, const void *vy, void *vp) {
  const block_q8_K *y = vy;
  uint8_t *out = vp;
  for (int64_t b = 0; b < n / QK_K; b++, out += 516) {
    for (int p = 0; p < 4; p++) {
      const __m256i ylo = load_2x16(y[b].qs + 64 * p), yhi = load_2x16(y[b].qs + 64 * p + 16);
      _mm256_storeu_si256((__m256i *)(out + 128 * p), _mm256_abs_epi8(ylo));
      _mm256_storeu_si256((__m256i *)(out + 128 * p + 32), _mm256_abs_epi8(yhi));
      _mm256_storeu_si256((__m256i *)(out + 128 * p + 64), ylo);
      _mm256_storeu_si256((__m256i *)(out + 128 * p + 96), yhi);
    }
    memcpy(out + 512, &y[b].d, sizeof(float));
  }
}

static inline __attribute__((always_inline)) void gemm4_iq4_xs(const int T, int64_t n, float *s,
                                                               size_t ss, const uint8_t *x0,
                                                               size_t bx, const uint8_t *p0,
                                                               size_t ps) {
  const size_t xs = sizeof(block_iq4_xs);
  const __m256i lut =
      _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nllm_iq4nl_values));
  const __m256i m4 = _mm256_set1_epi8(15);
  __m128 acc[NLLM_GEMM_TOK];
#pragma GCC unroll 4
  for (int t = 0; t < T; t++) acc[t] = _mm_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * xs);
    __m256i si[4][NLLM_GEMM_TOK];
#pragma GCC unroll 1
    for (int r = 0; r < 4; r++) {
      const block_iq4_xs *x = (const block_iq4_xs *)(x0 + (size_t)r * bx) + b;
      const __m256i sc = iq4xs_scales(x);
      __m256i sumi[NLLM_GEMM_TOK];
#pragma GCC unroll 4
      for (int t = 0; t < T; t++) sumi[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
      for (int p = 0; p < 4; p++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * p));
        const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(q, m4));
        const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
        const __m256i scp = bcast32lo16(sc, p);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
          const uint8_t *py = p0 + (size_t)t * ps + (size_t)b * 516 + 128 * p;
          const __m256i plo = _mm256_maddubs_epi16(
              _mm256_loadu_si256((const __m256i *)py),
              _mm256_sign_epi8(lo, _mm256_loadu_si256((const __m256i *)(py + 64))));
          const __m256i phi = _mm256_maddubs_epi16(
              _mm256_loadu_si256((const __m256i *)(py + 32)),
              _mm256_sign_epi8(hi, _mm256_loadu_si256((const __m256i *)(py + 96))));
          sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(plo, scp));
          sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(phi, scp));
        }
      }
#pragma GCC unroll 4
      for (int t = 0; t < T; t++) si[r][t] = sumi[t];
    }
    /* the reference's step, (d * dy) * isum, as Q6_K's */
    const __m128 dx = halves4(x0 + (size_t)b * xs, bx);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
      float dy;
      memcpy(&dy, p0 + (size_t)t * ps + (size_t)b * 516 + 512, sizeof dy);
      acc[t] = q6k_step4(acc[t], dx, dy, si[0][t], si[1][t], si[2][t], si[3][t]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < T; t++) _mm_storeu_ps(s + (size_t)t * ss, acc[t]);
}

/* ---------------------------------------------------------------- K-quants, row-interleaved
 * Eight rows repacked per work item (see nllm_gemm_packed_fn; the 32-value formats' layout in
 * quant_q32_avx2.c), equal to the scalar reference: per super-block each row's exact integer
 * sums, then the reference's float step in the row's lane. Per super-block of a group: the
 * eight rows' d (and dmin) as floats, their scales (and mins) as bytes, then per 32-value
 * sub-block eight vectors of levels, vector v holding the sub-block's levels 4v..4v+3 of row r
 * in lane r, unpacked to unsigned bytes (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 with its -32 taken
 * off through the block sums) or IQ4_XS's signed ones (the table's, |level| <= 127). One
 * broadcast of four activation bytes feeds eight rows, and maddubs' pair sums add up in int16
 * before the scale's madd: eight vectors for Q4_K (|pair| <= 2 * 15 * 128), four for Q5_K
 * (2 * 31 * 128), two for Q6_K (2 * 63 * 128). IQ4_XS's signed levels take the sign trick with
 * the sign on the levels (Q8_K holds -128, whose negation overflows a byte): |y| (prepared)
 * times sign(level, y), one vector per madd (|pair| <= 2 * 127 * 128). */
/* With K_Q4_K, K_Q5_K: the interleaved kernels' formats (K_Q4_KC, K_Q5_KC, K_Q6_KC, K_IQ4_XSC:
 * the compact layouts) */
enum { K_Q6_K = K_Q5_K + 1, K_IQ4_XS, K_Q4_KC, K_Q5_KC, K_Q6_KC, K_IQ4_XSC };
#define KP_D 0                          /* the eight rows' d as floats */
#define KP_DMIN 32                      /* Q4_K, Q5_K: their dmin as floats */
#define KP_SC 64                        /* Q4_K, Q5_K: sub-block k's eight scales at 8 k */
#define KP_MIN 128                      /* Q4_K, Q5_K: row r's mins 2j, 2j + 1 at 16 j + 2 r */
#define KP45_Q 192                      /* Q4_K, Q5_K: sub-block k's eight vectors at 256 k */
#define KP45_BLOCK (KP45_Q + 8 * 256)
#define KP6_SC 32 /* Q6_K: row r's scales 2j, 2j + 1 (of 16 values each) at 16 j + 2 r */
#define KP6_Q 160 /* Q6_K: sub-block k's eight vectors at 256 k */
#define KP6_BLOCK (KP6_Q + 8 * 256)
/* IQ4_XS: Q6_K's layout, with sub-block k's scale (less 32) in both of row r's bytes 16 k + 2 r,
 * 16 k + 2 r + 1 (the two int16 of its lane, for madd) */
_Static_assert(KP45_BLOCK <= NLLM_PACK_BYTES(QK_K) && KP6_BLOCK <= NLLM_PACK_BYTES(QK_K),
               "a packed super-block fits NLLM_PACK_BYTES of its values");
/* IQ4_XS's compact layout (K_IQ4_XSC), kept packed from load: its rows' bytes as Q4_K's compact
 * layout keeps them, the eight rows' d as halves, scales_h (16 bits each), scales_l (row r's four
 * bytes at KIQ_SL + 4 r), then per 32-byte chunk j of qs eight vectors, vector v holding row r's
 * bytes 4v..4v+3 of the chunk in lane r: vectors 0..3 are sub-block 2j (its levels 4v.. in the
 * low nibbles, 16 + 4v.. in the high), 4..7 sub-block 2j + 1. The levels are looked up per
 * sub-block and call; prompts expand the groups into the byte layout above (iq4_xs_expand_avx2).
 * Kept as bytes (the byte layout) its groups would take twice the rows' memory and decode bytes,
 * so until this layout IQ4_XS decoded on the plain rows' one-row kernel: 1.1B IQ4_XS, 2 threads,
 * one sequence 17.0-17.2 t/s against Q4_K_M's 33 (packed from load, streaming: 31.5-32.9; 4
 * sequences 66-68 -> 78-83, 16 sequences 97-100 -> 102-107; two alternated rounds). */
#define KIQ_D 0
#define KIQ_SH 16
#define KIQ_SL 32
#define KIQ_Q 64
#define KIQ_BLOCK (KIQ_Q + 4 * 256)
_Static_assert(KIQ_BLOCK == 8 * sizeof(block_iq4_xs), "a packed IQ4_XS group is its rows' size");
/* IQ4_XS's: |y| (256 bytes), y, d. */
#define IQPREP_Y 256
#define IQPREP_D 512
#define IQPREP_BLOCK 516
_Static_assert(KPREP_BLOCK <= NLLM_GEMM_PREP_BYTES(QK_K) &&
                   IQPREP_BLOCK <= NLLM_GEMM_PREP_BYTES(QK_K),
               "a prepared super-block fits");
/* Super-blocks ahead that this tier's compact kernels prefetch: a group's rows lie one after
 * another, and so do the groups of weights packed from load */
#ifndef KP_AHEAD
#define KP_AHEAD 16
#endif
/* Tokens above which a streaming pass prefetches a group ahead instead (gemm_packed_k) */
#define KP_STREAM_MIN_TOKENS 4
/* Tokens from which Q4_K's compact groups are expanded per work item into the byte layout */
#ifndef KQ4_EXPAND_MIN_TOKENS
#define KQ4_EXPAND_MIN_TOKENS 32
#endif
/* The same for Q5_K's and Q6_K's. Q5_K's compact kernel took four tokens a call, and was
 * expanded from 12 tokens (16 sequences on the 1.1B Q5_K_M file ran 12-15% slower on it); with
 * Q4_K's many-token form (levels unpacked once a sub-block, their fifth bits with them) it takes
 * eight a call and streams sixteen: `bench_packed Q5_K` from DRAM, one thread, 8 tokens 1.50-1.63
 * -> 1.28-1.31 ms, 16 tokens (expanded before) 2.67-2.95 -> 2.30-2.54; 1.1B Q5_K_M, 2 threads,
 * 16 sequences 1.025x (five alternated rounds: 1.058, 1.025, 1.042, 1.001, 0.997), 1 and 4 level,
 * the prompt 0.98x */
#ifndef KQ5_EXPAND_MIN_TOKENS
#define KQ5_EXPAND_MIN_TOKENS 32
#endif
/* Q4_K's and Q6_K's streaming passes take up to sixteen tokens (stream_tok), as the AVX-512
 * tier's do: a sixteen-sequence decode step then visits each group once, its next group's fetch
 * behind all sixteen tokens' products and each sub-block's unpacking shared by twice the tokens,
 * where a streaming pass of eight and a plain pass of eight visited it twice. 1.1B Q4_K_M, this
 * tier, 2 threads, 16 sequences, seven alternated rounds: 1.039x (median), generation 87% of the
 * prompt column against 83%; 4 sequences level. Q6_K's alone read level or behind (three
 * rounds). -D for the A/B: bit 0 Q4_K, bit 1 Q6_K. */
#ifndef KSTREAM16
#define KSTREAM16 3
#endif
/* The same for IQ4_XS's compact groups, whose levels are looked up per sub-block and call: never
 * expanding ran the 128-token prompt at 0.84-0.90 of the repacking it replaced, expanding from 32
 * tokens at 0.93-1.01 */
#ifndef KIQ_EXPAND_MIN_TOKENS
#define KIQ_EXPAND_MIN_TOKENS 32
#endif
#ifndef KQ6_EXPAND_MIN_TOKENS
#define KQ6_EXPAND_MIN_TOKENS 32
#endif

void nllm_k_packed_prep_avx2(int64_t n, const void *vy, void *vp) {
  const block_q8_K *y = vy;
  uint8_t *out = vp;
  for (int64_t b = 0; b < n / QK_K; b++, out += KPREP_BLOCK) {
    memcpy(out, y[b].qs, QK_K);
    memcpy(out + KPREP_BS16, y[b].bsums, sizeof y[b].bsums);
    int16_t bs32[8];
    for (int k = 0; k < 8; k++) bs32[k] = (int16_t)(y[b].bsums[2 * k] + y[b].bsums[2 * k + 1]);
    memcpy(out + KPREP_BS32, bs32, sizeof bs32);
    memcpy(out + KPREP_D, &y[b].d, sizeof(float));
  }
}

static void iq4_xs_packed_prep_avx2(int64_t n, const void *vy, void *vp) {
  const block_q8_K *y = vy;
  uint8_t *out = vp;
  for (int64_t b = 0; b < n / QK_K; b++, out += IQPREP_BLOCK) {
    for (int c = 0; c < QK_K / 32; c++) {
      const __m256i v = _mm256_loadu_si256((const __m256i *)(y[b].qs + 32 * c));
      _mm256_storeu_si256((__m256i *)(out + 32 * c), _mm256_abs_epi8(v));
      _mm256_storeu_si256((__m256i *)(out + IQPREP_Y + 32 * c), v);
    }
    memcpy(out + IQPREP_D, &y[b].d, sizeof(float));
  }
}

static inline __attribute__((always_inline)) void pack8_k45(const int kind, int64_t n,
                                                            const void *vx, size_t bx, void *vp) {
  const uint8_t *x0 = vx;
  uint8_t *out = vp;
  const int q5 = kind == K_Q5_K || kind == K_Q5_KC;
  const size_t xs = q5 ? sizeof(block_q5_K) : sizeof(block_q4_K);
  const size_t off_sc = q5 ? offsetof(block_q5_K, scales) : offsetof(block_q4_K, scales);
  const size_t off_qs = q5 ? offsetof(block_q5_K, qs) : offsetof(block_q4_K, qs);
  const size_t off_qh = offsetof(block_q5_K, qh);
  const __m256i m4 = _mm256_set1_epi8(15);
  if (kind == K_Q4_KC || kind == K_Q5_KC) {
    for (int64_t b = 0; b < n / QK_K; b++, out += q5 ? KQ5_BLOCK : KQ4_BLOCK) {
      nllm_prefetch_next_group(x0, bx, b, xs);
      for (int r = 0; r < 8; r++) {
        const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
        memcpy(out + KQ4_D + 2 * r, x, 2);
        memcpy(out + KQ4_DMIN + 2 * r, x + 2, 2);
        for (int w = 0; w < 3; w++) memcpy(out + KQ4_U + 32 * w + 4 * r, x + off_sc + 4 * w, 4);
      }
      /* chunks 0..3: qs's 32-byte chunks, 4: Q5_K's qh */
#pragma GCC unroll 4
      for (int j = 0; j < 4 + q5; j++) {
        __m256i v[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
          v[r] = _mm256_loadu_si256((const __m256i *)(x0 + (size_t)r * bx + (size_t)b * xs +
                                                      (j < 4 ? off_qs + 32 * j : off_qh)));
        transpose8x8_epi32(v);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
          _mm256_storeu_si256((__m256i *)(out + KQ4_Q + 256 * j + 32 * i), v[i]);
      }
    }
    return;
  }
  for (int64_t b = 0; b < n / QK_K; b++, out += KP45_BLOCK) {
    nllm_prefetch_next_group(x0, bx, b, xs);
    uint16_t d[8], dmin[8];
    for (int r = 0; r < 8; r++) {
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
      d[r] = load_u16(x);
      dmin[r] = load_u16(x + 2);
      __m128i sc8, mn8;
      k4_unpack(x + off_sc, &sc8, &mn8);
      uint8_t sc[16], mn[16];
      _mm_storeu_si128((__m128i *)sc, sc8);
      _mm_storeu_si128((__m128i *)mn, mn8);
      for (int k = 0; k < 8; k++) {
        out[KP_SC + 8 * k + r] = sc[k];
        out[KP_MIN + 16 * (k / 2) + 2 * r + k % 2] = mn[k];
      }
    }
    _mm256_storeu_ps((float *)(out + KP_D), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d)));
    _mm256_storeu_ps((float *)(out + KP_DMIN),
                     _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dmin)));
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
      __m256i v[8];
#pragma GCC unroll 8
      for (int r = 0; r < 8; r++) {
        const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
        const __m256i q = _mm256_loadu_si256((const __m256i *)(x + off_qs + 32 * (k / 2)));
        v[r] = _mm256_and_si256(k % 2 ? _mm256_srli_epi16(q, 4) : q, m4);
        if (kind == K_Q5_K)
          v[r] =
              _mm256_or_si256(v[r], k5_bit4(_mm256_loadu_si256((const __m256i *)(x + off_qh)), k));
      }
      transpose8x8_epi32(v);
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++)
        _mm256_storeu_si256((__m256i *)(out + KP45_Q + 256 * k + 32 * j), v[j]);
    }
  }
}

/* Q6_K's byte layout straight from the rows (pack_expanded) */
static void q6_K_pack_expanded_avx2(int64_t n, const void *vx, size_t bx, void *vp) {
  const uint8_t *x0 = vx;
  uint8_t *out = vp;
  const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
  for (int64_t b = 0; b < n / QK_K; b++, out += KP6_BLOCK) {
    nllm_prefetch_next_group(x0, bx, b, sizeof(block_q6_K));
    uint16_t d[8];
    for (int r = 0; r < 8; r++) {
      const block_q6_K *x = (const block_q6_K *)(x0 + (size_t)r * bx) + b;
      d[r] = x->d;
      for (int g = 0; g < 16; g++)
        out[KP6_SC + 16 * (g / 2) + 2 * r + g % 2] = (uint8_t)x->scales[g];
    }
    _mm256_storeu_ps((float *)(out + KP_D), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d)));
    /* sub-block k = 4 c + g: q6k_block's group g of half c */
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
      const int c = k / 4, g = k % 4;
      __m256i v[8];
#pragma GCC unroll 8
      for (int r = 0; r < 8; r++) {
        const block_q6_K *x = (const block_q6_K *)(x0 + (size_t)r * bx) + b;
        const __m256i l = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * c + 32 * (g % 2)));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * c));
        const __m256i lv = g < 2 ? l : _mm256_srli_epi16(l, 4);
        const __m256i hv = g == 0   ? _mm256_slli_epi16(qh, 4)
                           : g == 1 ? _mm256_slli_epi16(qh, 2)
                           : g == 2 ? qh
                                    : _mm256_srli_epi16(qh, 2);
        v[r] = _mm256_or_si256(_mm256_and_si256(lv, m4), _mm256_and_si256(hv, m30));
      }
      transpose8x8_epi32(v);
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++)
        _mm256_storeu_si256((__m256i *)(out + KP6_Q + 256 * k + 32 * j), v[j]);
    }
  }
}

/* Q6_K's compact layout (KQ6_*): weights kept packed from load, decode and small batches */
void nllm_q6_K_pack_rows_avx2(int64_t n, const void *vx, size_t bx, void *vp) {
  const uint8_t *x0 = vx;
  uint8_t *out = vp;
  for (int64_t b = 0; b < n / QK_K; b++, out += KQ6_BLOCK) {
    nllm_prefetch_next_group(x0, bx, b, sizeof(block_q6_K));
    for (int r = 0; r < 8; r++) {
      const block_q6_K *x = (const block_q6_K *)(x0 + (size_t)r * bx) + b;
      memcpy(out + KQ6_D + 2 * r, &x->d, 2);
      for (int g = 0; g < 16; g++)
        out[KQ6_SC + 16 * (g / 2) + 2 * r + g % 2] = (uint8_t)x->scales[g];
    }
    /* chunks 0..3: ql's 32-byte chunks, 4, 5: qh's */
#pragma GCC unroll 6
    for (int j = 0; j < 6; j++) {
      __m256i v[8];
#pragma GCC unroll 8
      for (int r = 0; r < 8; r++) {
        const block_q6_K *x = (const block_q6_K *)(x0 + (size_t)r * bx) + b;
        v[r] =
            _mm256_loadu_si256((const __m256i *)(j < 4 ? x->ql + 32 * j : x->qh + 32 * (j - 4)));
      }
      transpose8x8_epi32(v);
#pragma GCC unroll 8
      for (int i = 0; i < 8; i++)
        _mm256_storeu_si256((__m256i *)(out + KQ6_QL + 256 * j + 32 * i), v[i]);
    }
  }
}

static void iq4_xs_pack_rows_avx2(int64_t n, const void *vx, size_t bx, void *vp) {
  const uint8_t *x0 = vx;
  uint8_t *out = vp;
  const __m256i lut =
      _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nllm_iq4nl_values));
  for (int64_t b = 0; b < n / QK_K; b++, out += KP6_BLOCK) {
    nllm_prefetch_next_group(x0, bx, b, sizeof(block_iq4_xs));
    uint16_t d[8];
    for (int r = 0; r < 8; r++) {
      const block_iq4_xs *x = (const block_iq4_xs *)(x0 + (size_t)r * bx) + b;
      d[r] = x->d;
      for (int k = 0; k < 8; k++) {
        const int lo = (x->scales_l[k / 2] >> (4 * (k % 2))) & 15,
                  hi = (x->scales_h >> (2 * k)) & 3;
        out[KP6_SC + 16 * k + 2 * r] = out[KP6_SC + 16 * k + 2 * r + 1] =
            (uint8_t)((lo | hi << 4) - 32);
      }
    }
    _mm256_storeu_ps((float *)(out + KP_D), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d)));
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
      __m256i v[8];
#pragma GCC unroll 8
      for (int r = 0; r < 8; r++) {
        const block_iq4_xs *x = (const block_iq4_xs *)(x0 + (size_t)r * bx) + b;
        v[r] = _mm256_shuffle_epi8(lut, nibbles32(x->qs + 16 * k)); /* levels 0..31 in order */
      }
      transpose8x8_epi32(v);
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++)
        _mm256_storeu_si256((__m256i *)(out + KP6_Q + 256 * k + 32 * j), v[j]);
    }
  }
}

/* Eight IQ4_XS rows into one compact group (K_IQ4_XSC: their bytes, rearranged) */
static void iq4_xs_pack_compact_avx2(int64_t n, const void *vx, size_t bx, void *vp) {
  const uint8_t *x0 = vx;
  uint8_t *out = vp;
  for (int64_t b = 0; b < n / QK_K; b++, out += KIQ_BLOCK) {
    nllm_prefetch_next_group(x0, bx, b, sizeof(block_iq4_xs));
    for (int r = 0; r < 8; r++) {
      const block_iq4_xs *x = (const block_iq4_xs *)(x0 + (size_t)r * bx) + b;
      memcpy(out + KIQ_D + 2 * r, &x->d, 2);
      memcpy(out + KIQ_SH + 2 * r, &x->scales_h, 2);
      memcpy(out + KIQ_SL + 4 * r, x->scales_l, 4);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
      __m256i v[8];
#pragma GCC unroll 8
      for (int r = 0; r < 8; r++)
        v[r] = _mm256_loadu_si256(
            (const __m256i *)(((const block_iq4_xs *)(x0 + (size_t)r * bx) + b)->qs + 32 * j));
      transpose8x8_epi32(v);
#pragma GCC unroll 8
      for (int i = 0; i < 8; i++)
        _mm256_storeu_si256((__m256i *)(out + KIQ_Q + 256 * j + 32 * i), v[i]);
    }
  }
}

/* Sub-block k's scale (less 32) of each row of a compact IQ4_XS group, in both int16 of lane r */
static inline __m256i kiq_scale(const uint8_t *xb, int k) {
  const __m256i sl = _mm256_loadu_si256((const __m256i *)(xb + KIQ_SL)),
                sh = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(xb + KIQ_SH)));
  const __m128i lo_at = _mm_cvtsi32_si128(4 * k), hi_at = _mm_cvtsi32_si128(2 * k);
  const __m256i s = _mm256_sub_epi32(
      _mm256_or_si256(_mm256_and_si256(_mm256_srl_epi32(sl, lo_at), _mm256_set1_epi32(15)),
                      _mm256_slli_epi32(
                          _mm256_and_si256(_mm256_srl_epi32(sh, hi_at), _mm256_set1_epi32(3)), 4)),
      _mm256_set1_epi32(32));
  return _mm256_or_si256(_mm256_and_si256(s, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(s, 16));
}

/* Sub-block k's eight vectors of levels (vector v: levels 4v..4v+3 of row r in lane r) */
static inline __attribute__((always_inline)) void kiq_levels(const uint8_t *xb, int k,
                                                             __m256i *lvl) {
  const __m256i lut =
      _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)nllm_iq4nl_values));
  const __m256i m4 = _mm256_set1_epi8(15);
  const uint8_t *xk = xb + KIQ_Q + 256 * (k / 2) + 128 * (k % 2);
#pragma GCC unroll 4
  for (int v = 0; v < 4; v++) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(xk + 32 * v));
    lvl[v] = _mm256_shuffle_epi8(lut, _mm256_and_si256(q, m4));
    lvl[4 + v] = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
  }
}

/* A compact IQ4_XS group into the byte layout (what iq4_xs_pack_rows_avx2 writes from the rows) */
static void iq4_xs_expand_avx2(int64_t n, const void *vx, size_t bx, void *vp) {
  (void)bx;
  const uint8_t *x = vx;
  uint8_t *out = vp;
  for (int64_t b = 0; b < n / QK_K; b++, x += KIQ_BLOCK, out += KP6_BLOCK) {
    _mm256_storeu_ps((float *)(out + KP_D),
                     _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + KIQ_D))));
    for (int k = 0; k < 8; k++) {
      int32_t sc[8];
      _mm256_storeu_si256((__m256i *)sc, kiq_scale(x, k));
      for (int r = 0; r < 8; r++)
        out[KP6_SC + 16 * k + 2 * r] = out[KP6_SC + 16 * k + 2 * r + 1] = (uint8_t)sc[r];
      __m256i lvl[8];
      kiq_levels(x, k, lvl);
#pragma GCC unroll 8
      for (int v = 0; v < 8; v++)
        _mm256_storeu_si256((__m256i *)(out + KP6_Q + 256 * k + 32 * v), lvl[v]);
    }
  }
}

/* Token t's four activation bytes at offset o of its prepared super-block, in every lane. */
static inline __m256i y4(const uint8_t *yb, size_t ps, int t, size_t o) {
  return _mm256_set1_epi32((int)load_u32(yb + (size_t)t * ps + o));
}

/* k4_unpack on every row of a compact Q4_K group at once (lane r: row r's words): sc8[0] lane r
 * holds row r's scales 0..3 as bytes, sc8[1] 4..7, mn8[0], mn8[1] its mins. */
static inline __attribute__((always_inline)) void kq4_unpack8(const uint8_t *xb, __m256i *sc8,
                                                              __m256i *mn8) {
  const __m256i u0 = _mm256_loadu_si256((const __m256i *)(xb + KQ4_U)),
                u1 = _mm256_loadu_si256((const __m256i *)(xb + KQ4_U + 32)),
                u2 = _mm256_loadu_si256((const __m256i *)(xb + KQ4_U + 64));
  const __m256i m6 = _mm256_set1_epi8(0x3f), m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
  sc8[0] = _mm256_and_si256(u0, m6);
  mn8[0] = _mm256_and_si256(u1, m6);
  sc8[1] = _mm256_or_si256(_mm256_and_si256(u2, m4),
                           _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u0, 6), m2), 4));
  mn8[1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), m4),
                           _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u1, 6), m2), 4));
}

/* The shuffle that puts bytes a and b of each 32-bit lane in that lane's two int16. */
static inline __m256i kq4_pick(int a, int b) {
  const int c = (int)(0x80008000u | (unsigned)a | (unsigned)b << 16);
  return _mm256_add_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 0x40004, 0x80008, 0xc000c, 0,
                                                                   0x40004, 0x80008, 0xc000c));
}

/* Sub-block k of a Q4_K / Q5_K group against T tokens, into each token's row sums (compact Q4_K:
 * its scales from kq4_unpack8's sc8). */
static inline __attribute__((always_inline)) void packed_sub_k45(const int kind, const int T,
                                                                 const uint8_t *xb,
                                                                 const uint8_t *yb, size_t ps,
                                                                 int k, const __m256i *sc8,
                                                                 __m256i *sum) {
  const int group = kind == K_Q5_K || kind == K_Q5_KC ? 4 : 8;
  const int kc = kind == K_Q4_KC || kind == K_Q5_KC;
  /* lane r: row r's scale of the sub-block in both of its int16 */
  __m256i sc;
  if (kc) {
    sc = _mm256_shuffle_epi8(sc8[k / 4], kq4_pick(k % 4, k % 4));
  } else {
    const __m256i sc32 =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(xb + KP_SC + 8 * k)));
    sc = _mm256_or_si256(sc32, _mm256_slli_epi32(sc32, 16));
  }
  const uint8_t *xk = kc ? xb + KQ4_Q + 256 * (k / 2) : xb + KP45_Q + 256 * k;
#pragma GCC unroll 2
  for (int v0 = 0; v0 < 8; v0 += group) {
    __m256i s16[NLLM_GEMM_TOK];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) s16[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int v = v0; v < v0 + group; v++) {
      __m256i xv = _mm256_loadu_si256((const __m256i *)(xk + 32 * v));
      if (kc)
        xv = _mm256_and_si256(k % 2 ? _mm256_srli_epi16(xv, 4) : xv, _mm256_set1_epi8(15));
      if (kind == K_Q5_KC)
        xv = _mm256_or_si256(
            xv, k5_bit4(_mm256_loadu_si256((const __m256i *)(xb + KQ5_QH + 32 * v)), k));
#pragma GCC unroll 4
      for (int t = 0; t < T; t++) {
        s16[t] = _mm256_add_epi16(s16[t],
                                  _mm256_maddubs_epi16(xv, y4(yb, ps, t, 32 * (size_t)k + 4 * v)));
        /* one register added to in turn (gcc otherwise sums the products as a tree) */
        __asm__("" : "+x"(s16[t]));
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(s16[t], sc));
  }
}

/* Vector v of group g of a compact Q6_K half from its ql and qh vectors (at ql, qh): the
 * levels 0..63, as the byte layout holds them (bytewise, so the transposition commutes). */
static inline __attribute__((always_inline)) __m256i kq6_levels(const uint8_t *ql,
                                                               const uint8_t *qh, int g) {
  const __m256i l = _mm256_loadu_si256((const __m256i *)ql),
                h = _mm256_loadu_si256((const __m256i *)qh);
  const __m256i lv = g < 2 ? l : _mm256_srli_epi16(l, 4);
  const __m256i hv = g == 0   ? _mm256_slli_epi16(h, 4)
                     : g == 1 ? _mm256_slli_epi16(h, 2)
                     : g == 2 ? h
                              : _mm256_srli_epi16(h, 2);
  return _mm256_or_si256(_mm256_and_si256(lv, _mm256_set1_epi8(15)),
                         _mm256_and_si256(hv, _mm256_set1_epi8(0x30)));
}

/* The same for Q6_K: vectors 0..3 hold the sub-block's first 16 values (scale 2k), 4..7 the
 * next 16 (2k + 1); compact groups (K_Q6_KC) unpack them first. */
static inline __attribute__((always_inline)) void packed_sub_q6_K(const int kind, const int T,
                                                                  const uint8_t *xb,
                                                                  const uint8_t *yb, size_t ps,
                                                                  int k, __m256i *sum) {
  /* from row r's scales (2k, 2k + 1) as int16: either one in both int16 of the lane */
  const __m256i dup0 = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0,
                                        1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
  const __m256i dup1 = _mm256_add_epi8(dup0, _mm256_set1_epi8(2));
  const int kc = kind == K_Q6_KC;
  const __m256i sp = _mm256_cvtepi8_epi16(
      _mm_loadu_si128((const __m128i *)(xb + (kc ? KQ6_SC : KP6_SC) + 16 * k)));
  const uint8_t *xk = xb + KP6_Q + 256 * k;
  /* sub-block k = 4 c + g: q6k_block's group g of half c */
  const int c = k / 4, g = k % 4;
  const uint8_t *ql = xb + KQ6_QL + 256 * (2 * c + g % 2), *qh = xb + KQ6_QH + 256 * c;
#pragma GCC unroll 4
  for (int v0 = 0; v0 < 8; v0 += 2) {
    const __m256i sc = _mm256_shuffle_epi8(sp, v0 < 4 ? dup0 : dup1);
    const __m256i xa = kc ? kq6_levels(ql + 32 * v0, qh + 32 * v0, g)
                          : _mm256_loadu_si256((const __m256i *)(xk + 32 * v0));
    const __m256i xc = kc ? kq6_levels(ql + 32 * v0 + 32, qh + 32 * v0 + 32, g)
                          : _mm256_loadu_si256((const __m256i *)(xk + 32 * v0 + 32));
    /* (compact groups: up to 16 tokens a call share the unpacking) */
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) {
      __m256i s16 = _mm256_maddubs_epi16(xa, y4(yb, ps, t, 32 * (size_t)k + 4 * v0));
      s16 = _mm256_add_epi16(s16,
                             _mm256_maddubs_epi16(xc, y4(yb, ps, t, 32 * (size_t)k + 4 * v0 + 4)));
      sum[t] = _mm256_add_epi32(sum[t], _mm256_madd_epi16(s16, sc));
      __asm__("" : "+x"(sum[t]));
    }
  }
}

/* IQ4_XS's product of one vector of levels with token t's four bytes at o (prepared |y| and y):
 * |y| times the levels with y's sign, a madd with the scale (both int16 of each lane) */
static inline __m256i iq4_xs_madd(__m256i lvl, const uint8_t *yb, size_t ps, int t, size_t o,
                                  __m256i sc) {
  return _mm256_madd_epi16(
      _mm256_maddubs_epi16(y4(yb, ps, t, o), _mm256_sign_epi8(lvl, y4(yb, ps, t, IQPREP_Y + o))),
      sc);
}

/* The same for IQ4_XS, a madd with the scale per vector. */
static inline __attribute__((always_inline)) void packed_sub_iq4_xs(const int T, const uint8_t *xb,
                                                                    const uint8_t *yb, size_t ps,
                                                                    int k, __m256i *sum) {
  const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(xb + KP6_SC + 16 * k)));
  const uint8_t *xk = xb + KP6_Q + 256 * k;
#pragma GCC unroll 8
  for (int v = 0; v < 8; v++) {
    const __m256i xv = _mm256_loadu_si256((const __m256i *)(xk + 32 * v));
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
      sum[t] = _mm256_add_epi32(sum[t], iq4_xs_madd(xv, yb, ps, t, 32 * (size_t)k + 4 * v, sc));
      __asm__("" : "+x"(sum[t]));
    }
  }
}

/* Sub-block k of a compact IQ4_XS group against T tokens: its levels looked up once, then token
 * after token, each token's sum one register through the eight vectors. */
static inline __attribute__((always_inline)) void packed_sub_iq4_xsc(const int T, const uint8_t *xb,
                                                                     const uint8_t *yb, size_t ps,
                                                                     int k, __m256i *sum) {
  const __m256i sc = kiq_scale(xb, k);
  __m256i lvl[8];
  kiq_levels(xb, k, lvl);
#pragma GCC unroll 16
  for (int t = 0; t < T; t++) {
    __m256i st = sum[t];
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++)
      st = _mm256_add_epi32(st, iq4_xs_madd(lvl[v], yb, ps, t, 32 * (size_t)k + 4 * (size_t)v, sc));
    sum[t] = st;
  }
}

/* A super-block's float step of token t (prepared super-block yt) from its rows' exact sums, the
 * reference's: Q4_K / Q5_K dy * (d * sum - dmin * msum), Q6_K and IQ4_XS (d * dy) * isum. */
static inline __attribute__((always_inline)) __m256 packed_step(const int kind, const uint8_t *xb,
                                                                const uint8_t *yt, __m256 d,
                                                                const __m256i *mn8, __m256i sum) {
  float dy;
  memcpy(&dy, yt + (kind == K_IQ4_XS || kind == K_IQ4_XSC ? IQPREP_D : KPREP_D), sizeof dy);
  if (kind == K_Q4_K || kind == K_Q5_K || kind == K_Q4_KC || kind == K_Q5_KC) {
    __m256i msum = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
      /* lane r: row r's mins 2j, 2j + 1 as int16 */
      const __m256i mn =
          kind == K_Q4_KC || kind == K_Q5_KC
              ? _mm256_shuffle_epi8(mn8[j / 2], kq4_pick(2 * (j % 2), 2 * (j % 2) + 1))
              : _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(xb + KP_MIN + 16 * j)));
      msum = _mm256_add_epi32(
          msum, _mm256_madd_epi16(mn, _mm256_set1_epi32((int)load_u32(yt + KPREP_BS32 + 4 * j))));
    }
    const __m256 dmin =
        kind == K_Q4_KC || kind == K_Q5_KC
            ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(xb + KQ4_DMIN)))
            : _mm256_loadu_ps((const float *)(xb + KP_DMIN));
    const __m256 f = _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(sum)),
                                   _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(msum)));
    return _mm256_mul_ps(_mm256_set1_ps(dy), f);
  }
  if (kind == K_Q6_K || kind == K_Q6_KC) {
    /* the levels' -32: 32 * sum over the 16-value groups of scale * block sum */
    const uint8_t *scb = xb + (kind == K_Q6_KC ? KQ6_SC : KP6_SC);
    __m256i off = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
      off = _mm256_add_epi32(
          off, _mm256_madd_epi16(
                   _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(scb + 16 * j))),
                   _mm256_set1_epi32((int)load_u32(yt + KPREP_BS16 + 4 * j))));
    sum = _mm256_sub_epi32(sum, _mm256_slli_epi32(off, 5));
  }
  return _mm256_mul_ps(_mm256_mul_ps(d, _mm256_set1_ps(dy)), _mm256_cvtepi32_ps(sum));
}

/* The interleaved formats' kernel: per super-block each token's exact sums of the eight rows,
 * sub-block by sub-block, then the float step into the token's accumulator. */
static inline __attribute__((always_inline)) void gemm_packed_k(const int kind, const int pf,
                                                                const int T, int64_t n, float *s,
                                                                size_t ss, const uint8_t *pk,
                                                                const uint8_t *p0, size_t ps) {
  const size_t xbytes = kind == K_Q4_KC                    ? KQ4_BLOCK
                        : kind == K_Q5_KC                  ? KQ5_BLOCK
                        : kind == K_Q6_KC                  ? KQ6_BLOCK
                        : kind == K_IQ4_XSC                ? KIQ_BLOCK
                        : kind == K_Q4_K || kind == K_Q5_K ? KP45_BLOCK
                                                           : KP6_BLOCK;
  const size_t ybytes = kind == K_IQ4_XS || kind == K_IQ4_XSC ? IQPREP_BLOCK : KPREP_BLOCK;
  __m256 acc[NLLM_STREAM_TOK_MAX];
#pragma GCC unroll 16
  for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    const uint8_t *xb = pk + (size_t)b * xbytes, *yb = p0 + (size_t)b * ybytes;
    /* a streaming pass of more than a few tokens (a decode step of several sequences, up to
     * sixteen in one pass for Q4_K and Q6_K) fetches the next group while it works; fewer tokens go
     * too fast for a group's lead and stream KP_AHEAD super-blocks ahead, as the prompt's passes
     * do. 1.1B Q4_K_M, this tier, 2 threads, `--parallel 16 -p 4 -n 64`: 1.037x (two alternated
     * pairs) */
    if (pf && T > KP_STREAM_MIN_TOKENS)
      nllm_prefetch_stream_block(xb, (size_t)(n / QK_K) * xbytes, xbytes);
    else if (kind == K_Q4_KC || kind == K_Q5_KC || kind == K_Q6_KC || kind == K_IQ4_XSC)
      nllm_prefetch_span(xb + KP_AHEAD * xbytes, xbytes);
    __m256i sum[NLLM_STREAM_TOK_MAX];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) sum[t] = _mm256_setzero_si256();
    __m256i sc8[2], mn8[2];
    if ((kind == K_Q4_KC || kind == K_Q5_KC) && T > NLLM_GEMM_TOK) {
      /* more tokens than one pass keeps in registers: a sub-block's levels unpacked once, then
       * the tokens four at a time over them (Q5_K's pair sums in int16 four vectors at a time) */
      const int group = kind == K_Q5_KC ? 4 : 8;
      kq4_unpack8(xb, sc8, mn8);
#pragma GCC unroll 8
      for (int k = 0; k < 8; k++) {
        const __m256i sc = _mm256_shuffle_epi8(sc8[k / 4], kq4_pick(k % 4, k % 4));
        __m256i lvl[8];
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) {
          const __m256i q =
              _mm256_loadu_si256((const __m256i *)(xb + KQ4_Q + 256 * (k / 2) + 32 * v));
          lvl[v] = _mm256_and_si256(k % 2 ? _mm256_srli_epi16(q, 4) : q, _mm256_set1_epi8(15));
          if (kind == K_Q5_KC)
            lvl[v] = _mm256_or_si256(
                lvl[v], k5_bit4(_mm256_loadu_si256((const __m256i *)(xb + KQ5_QH + 32 * v)), k));
        }
#pragma GCC unroll 4
        for (int t0 = 0; t0 < T; t0 += NLLM_GEMM_TOK) {
          const int nt = T - t0 < NLLM_GEMM_TOK ? T - t0 : NLLM_GEMM_TOK;
#pragma GCC unroll 2
          for (int v0 = 0; v0 < 8; v0 += group) {
            __m256i s16[NLLM_GEMM_TOK];
#pragma GCC unroll 4
            for (int t = 0; t < nt; t++) s16[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int v = v0; v < v0 + group; v++)
#pragma GCC unroll 4
              for (int t = 0; t < nt; t++) {
                s16[t] = _mm256_add_epi16(
                    s16[t],
                    _mm256_maddubs_epi16(lvl[v], y4(yb, ps, t0 + t, 32 * (size_t)k + 4 * v)));
                __asm__("" : "+x"(s16[t]));
              }
#pragma GCC unroll 4
            for (int t = 0; t < nt; t++)
              sum[t0 + t] = _mm256_add_epi32(sum[t0 + t], _mm256_madd_epi16(s16[t], sc));
          }
        }
      }
    } else if (kind == K_Q4_KC || kind == K_Q5_KC) { /* the nibbles' side known per sub-block */
      kq4_unpack8(xb, sc8, mn8);
#pragma GCC unroll 4
      for (int k = 0; k < 8; k += 2) {
        packed_sub_k45(kind, T, xb, yb, ps, k, sc8, sum);
        packed_sub_k45(kind, T, xb, yb, ps, k + 1, sc8, sum);
      }
    }
    if (kind == K_IQ4_XSC) {
#pragma GCC unroll 1
      for (int k = 0; k < 8; k++) packed_sub_iq4_xsc(T, xb, yb, ps, k, sum);
    }
    if (kind == K_Q6_KC) { /* the groups' bit positions known per sub-block */
#pragma GCC unroll 8
      for (int k = 0; k < 8; k++) packed_sub_q6_K(kind, T, xb, yb, ps, k, sum);
    }
    if (kind == K_Q4_K || kind == K_Q5_K || kind == K_Q6_K || kind == K_IQ4_XS) {
#pragma GCC unroll 1
      for (int k = 0; k < 8; k++) {
        if (kind == K_Q6_K)
          packed_sub_q6_K(kind, T, xb, yb, ps, k, sum);
        else if (kind == K_IQ4_XS)
          packed_sub_iq4_xs(T, xb, yb, ps, k, sum);
        else
          packed_sub_k45(kind, T, xb, yb, ps, k, NULL, sum);
      }
    }
    const __m256 d = kind == K_Q4_KC || kind == K_Q5_KC || kind == K_Q6_KC || kind == K_IQ4_XSC
                         ? _mm256_cvtph_ps(_mm_loadu_si128(
                               (const __m128i *)(xb + (kind == K_Q6_KC     ? KQ6_D
                                                       : kind == K_IQ4_XSC ? KIQ_D
                                                                           : KQ4_D))))
                         : _mm256_loadu_ps((const float *)(xb + KP_D));
#pragma GCC unroll 16
    for (int t = 0; t < T; t++)
      acc[t] = _mm256_add_ps(acc[t], packed_step(kind, xb, yb + (size_t)t * ps, d, mn8, sum[t]));
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; t++) _mm256_storeu_ps(s + (size_t)t * ss, acc[t]);
}

/* Q4_K: pack_rows writes the compact layout (weights kept packed from load, decode and small
 * batches); the byte layout is what prompts run on, packed straight from the rows
 * (pack_expanded) or expanded from the compact groups (expand_packed). */
void nllm_q4_K_pack_rows_avx2(int64_t n, const void *x, size_t bx, void *p) {
  pack8_k45(K_Q4_KC, n, x, bx, p);
}
static void q4_K_pack_expanded_avx2(int64_t n, const void *x, size_t bx, void *p) {
  pack8_k45(K_Q4_K, n, x, bx, p);
}
/* A compact Q4_K / Q5_K group into the byte layout (what pack8_k45 writes from the rows). */
static inline __attribute__((always_inline)) void expand_k45(const int kind, int64_t n,
                                                             const void *vx, void *vp) {
  const uint8_t *x = vx;
  uint8_t *out = vp;
  const __m256i m4 = _mm256_set1_epi8(15);
  for (int64_t b = 0; b < n / QK_K; b++, x += kind == K_Q5_KC ? KQ5_BLOCK : KQ4_BLOCK,
               out += KP45_BLOCK) {
    _mm256_storeu_ps((float *)(out + KP_D),
                     _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + KQ4_D))));
    _mm256_storeu_ps((float *)(out + KP_DMIN),
                     _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + KQ4_DMIN))));
    __m256i sc8[2], mn8[2];
    kq4_unpack8(x, sc8, mn8);
    /* per 128-bit lane (rows 4i..4i+3): the scales by sub-block, the mins by pair of
     * sub-blocks; then the two lanes' rows side by side */
    const __m256i by_k = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0,
                                          4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m256i by_pair = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                             0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    for (int h = 0; h < 2; h++) {
      const __m256i a = _mm256_shuffle_epi8(sc8[h], by_k), m = _mm256_shuffle_epi8(mn8[h], by_pair);
      const __m128i alo = _mm256_castsi256_si128(a), ahi = _mm256_extracti128_si256(a, 1);
      const __m128i mlo = _mm256_castsi256_si128(m), mhi = _mm256_extracti128_si256(m, 1);
      _mm_storeu_si128((__m128i *)(out + KP_SC + 32 * h), _mm_unpacklo_epi32(alo, ahi));
      _mm_storeu_si128((__m128i *)(out + KP_SC + 32 * h + 16), _mm_unpackhi_epi32(alo, ahi));
      _mm_storeu_si128((__m128i *)(out + KP_MIN + 32 * h), _mm_unpacklo_epi64(mlo, mhi));
      _mm_storeu_si128((__m128i *)(out + KP_MIN + 32 * h + 16), _mm_unpackhi_epi64(mlo, mhi));
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
#pragma GCC unroll 8
      for (int v = 0; v < 8; v++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(x + KQ4_Q + 256 * j + 32 * v));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (kind == K_Q5_KC) {
          const __m256i qh = _mm256_loadu_si256((const __m256i *)(x + KQ5_QH + 32 * v));
          lo = _mm256_or_si256(lo, k5_bit4(qh, 2 * j));
          hi = _mm256_or_si256(hi, k5_bit4(qh, 2 * j + 1));
        }
        _mm256_storeu_si256((__m256i *)(out + KP45_Q + 256 * (2 * j) + 32 * v), lo);
        _mm256_storeu_si256((__m256i *)(out + KP45_Q + 256 * (2 * j + 1) + 32 * v), hi);
      }
  }
}
static void q4_K_expand_avx2(int64_t n, const void *vx, size_t bx, void *vp) {
  (void)bx;
  expand_k45(K_Q4_KC, n, vx, vp);
}
static void q5_K_expand_avx2(int64_t n, const void *vx, size_t bx, void *vp) {
  (void)bx;
  expand_k45(K_Q5_KC, n, vx, vp);
}
/* A compact Q6_K group into the byte layout (what q6_K_pack_expanded_avx2 writes from the rows) */
static void q6_K_expand_avx2(int64_t n, const void *vx, size_t bx, void *vp) {
  (void)bx;
  const uint8_t *x = vx;
  uint8_t *out = vp;
  for (int64_t b = 0; b < n / QK_K; b++, x += KQ6_BLOCK, out += KP6_BLOCK) {
    _mm256_storeu_ps((float *)(out + KP_D),
                     _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + KQ6_D))));
    memcpy(out + KP6_SC, x + KQ6_SC, 128);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
      const int c = k / 4, g = k % 4;
      const uint8_t *ql = x + KQ6_QL + 256 * (2 * c + g % 2), *qh = x + KQ6_QH + 256 * c;
#pragma GCC unroll 8
      for (int v = 0; v < 8; v++)
        _mm256_storeu_si256((__m256i *)(out + KP6_Q + 256 * k + 32 * v),
                            kq6_levels(ql + 32 * v, qh + 32 * v, g));
    }
  }
}
void nllm_q5_K_pack_rows_avx2(int64_t n, const void *x, size_t bx, void *p) {
  pack8_k45(K_Q5_KC, n, x, bx, p);
}
static void q5_K_pack_expanded_avx2(int64_t n, const void *x, size_t bx, void *p) {
  pack8_k45(K_Q5_K, n, x, bx, p);
}
/* The token count as a constant: up to four (NLLM_PACKED4_BY_TOKENS, the byte layouts' kernels,
 * called four tokens a pass by EXPANDED_BY_FOURS) or eight, the formats' packed_tok, or sixteen
 * in the compact layouts' streaming passes (Q4_K's and Q6_K's by KSTREAM16). */
#define EXPANDED_BY_FOURS(fmt, body)                                                    \
  NLLM_PACKED4_BY_TOKENS(fmt##_gemm_expanded4_avx2, body)                               \
  static void fmt##_gemm_expanded_avx2(int64_t n, float *s, size_t ss, const void *pk,  \
                                       const void *p, size_t ps, int n_tok) {           \
    for (int t = 0; t < n_tok; t += NLLM_GEMM_TOK)                                      \
      fmt##_gemm_expanded4_avx2(n, s + (size_t)t * ss, ss, pk,                          \
                                (const uint8_t *)p + (size_t)t * ps, ps,                \
                                n_tok - t < NLLM_GEMM_TOK ? n_tok - t : NLLM_GEMM_TOK); \
  }
#define Q4_K_PACKED(T, ...) gemm_packed_k(K_Q4_KC, 0, T, __VA_ARGS__)
#define Q4_K_STREAM(T, ...) gemm_packed_k(K_Q4_KC, 1, T, __VA_ARGS__)
#define Q4_K_EXPANDED(T, ...) gemm_packed_k(K_Q4_K, 0, T, __VA_ARGS__)
#define Q5_K_PACKED(T, ...) gemm_packed_k(K_Q5_KC, 0, T, __VA_ARGS__)
#define Q5_K_STREAM(T, ...) gemm_packed_k(K_Q5_KC, 1, T, __VA_ARGS__)
#define Q5_K_EXPANDED(T, ...) gemm_packed_k(K_Q5_K, 0, T, __VA_ARGS__)
#define Q6_K_PACKED(T, ...) gemm_packed_k(K_Q6_KC, 0, T, __VA_ARGS__)
#define Q6_K_STREAM(T, ...) gemm_packed_k(K_Q6_KC, 1, T, __VA_ARGS__)
#define Q6_K_EXPANDED(T, ...) gemm_packed_k(K_Q6_K, 0, T, __VA_ARGS__)
#define IQ4_XS_PACKED(T, ...) gemm_packed_k(K_IQ4_XSC, 0, T, __VA_ARGS__)
#define IQ4_XS_STREAM(T, ...) gemm_packed_k(K_IQ4_XSC, 1, T, __VA_ARGS__)
#define IQ4_XS_EXPANDED(T, ...) gemm_packed_k(K_IQ4_XS, 0, T, __VA_ARGS__)
NLLM_PACKED_BY_TOKENS(q4_K_gemm_packed_avx2, Q4_K_PACKED)
#if KSTREAM16 & 1
NLLM_STREAM_BY_TOKENS(q4_K_gemm_packed_stream_avx2, Q4_K_STREAM)
#else
NLLM_PACKED_BY_TOKENS(q4_K_gemm_packed_stream_avx2, Q4_K_STREAM)
#endif
EXPANDED_BY_FOURS(q4_K, Q4_K_EXPANDED)
NLLM_PACKED_BY_TOKENS(q5_K_gemm_packed_avx2, Q5_K_PACKED)
NLLM_STREAM_BY_TOKENS(q5_K_gemm_packed_stream_avx2, Q5_K_STREAM)
EXPANDED_BY_FOURS(q5_K, Q5_K_EXPANDED)
NLLM_PACKED_BY_TOKENS(q6_K_gemm_packed_avx2, Q6_K_PACKED)
#if KSTREAM16 & 2
NLLM_STREAM_BY_TOKENS(q6_K_gemm_packed_stream_avx2, Q6_K_STREAM)
#else
NLLM_PACKED_BY_TOKENS(q6_K_gemm_packed_stream_avx2, Q6_K_STREAM)
#endif
EXPANDED_BY_FOURS(q6_K, Q6_K_EXPANDED)
NLLM_PACKED_BY_TOKENS(iq4_xs_gemm_packed_avx2, IQ4_XS_PACKED)
NLLM_STREAM_BY_TOKENS(iq4_xs_gemm_packed_stream_avx2, IQ4_XS_STREAM)
EXPANDED_BY_FOURS(iq4_xs, IQ4_XS_EXPANDED)
#define Q4_K_GEMM(T, ...) gemm4_k45(K_Q4_K, T, __VA_ARGS__)
#define Q5_K_GEMM(T, ...) gemm4_k45(K_Q5_K, T, __VA_ARGS__)
#define Q6_K_GEMM(T, ...) gemm4_q6_K(T, __VA_ARGS__)
NLLM_GEMM4_BY_TOKENS(q4_K_gemm4_avx2, Q4_K_GEMM)
NLLM_GEMM4_BY_TOKENS(q5_K_gemm4_avx2, Q5_K_GEMM)
#define IQ4_XS_GEMM(T, ...) gemm4_iq4_xs(T, __VA_ARGS__)
NLLM_GEMM4_BY_TOKENS(q6_K_gemm4_avx2, Q6_K_GEMM)
NLLM_GEMM4_BY_TOKENS(iq4_xs_gemm4_avx2, IQ4_XS_GEMM)

/* The AVX2 tier's rows of the 256-value formats. Crossovers: where dequantize + sgemm overtakes the
 * integer kernels (measured, see docs/performance.md "BLAS crossovers"). Q2_K's kernels stay ahead
 * at every batch measured, and with the prompt tiles so do Q4_K, Q5_K and Q6_K (level with
 * sgemm on one thread at 512 tokens, ahead on two, where sgemm calls take turns), which take
 * the row-interleaved kernels from K_PACKED_MIN_TOKENS on; so does IQ4_XS, whose tiles alone
 * fell behind dequantize + GEMM from 96 tokens and whose interleaved kernel is ahead of it at
 * 128 and 512 (docs/performance.md, ninth round). Q4_K, Q5_K, Q6_K and IQ4_XS keep their
 * weights packed from load in compact groups (their rows' bytes), expanded for prompts. */
static const nllm_qtype_kernels k_rows[] = {
    {.type = NLLM_TYPE_Q2_K, .vec_dot = q2_K_vec_dot_avx2, .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_Q3_K,
     .vec_dot = q3_K_vec_dot_avx2,
     .vec_dot4 = q3_K_vec_dot4_avx2,
     .blas_min_tokens = 256},
    {.type = NLLM_TYPE_Q4_K,
     .to_float = q4_K_to_float_avx2,
     .vec_dot = q4_K_vec_dot_avx2,
     .vec_dot4 = q4_K_vec_dot4_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = k45_tile_prep_avx2,
     .gemm4 = q4_K_gemm4_avx2,
     .pack_rows = nllm_q4_K_pack_rows_avx2,
     .packed_prep = nllm_k_packed_prep_avx2,
     .gemm_packed = q4_K_gemm_packed_avx2,
     .gemm_packed_stream = q4_K_gemm_packed_stream_avx2,
     .stream_tok = KSTREAM16 & 1 ? NLLM_STREAM_TOK_MAX : 0,
     .packed_min_tokens = K_PACKED_MIN_TOKENS,
     .packed_tok = NLLM_PACKED_TOK_MAX,
     .prepack = 1,
     .expand_packed = q4_K_expand_avx2,
     .gemm_expanded = q4_K_gemm_expanded_avx2,
     .expand_min_tokens = KQ4_EXPAND_MIN_TOKENS,
     .pack_expanded = q4_K_pack_expanded_avx2},
    {.type = NLLM_TYPE_Q5_K,
     .to_float = q5_K_to_float_avx2,
     .vec_dot = q5_K_vec_dot_avx2,
     .vec_dot4 = q5_K_vec_dot4_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = k45_tile_prep_avx2,
     .gemm4 = q5_K_gemm4_avx2,
     .pack_rows = nllm_q5_K_pack_rows_avx2,
     .packed_prep = nllm_k_packed_prep_avx2,
     .gemm_packed = q5_K_gemm_packed_avx2,
     .gemm_packed_stream = q5_K_gemm_packed_stream_avx2,
     .stream_tok = NLLM_STREAM_TOK_MAX,
     .packed_tok = NLLM_PACKED_TOK_MAX,
     .packed_min_tokens = K_PACKED_MIN_TOKENS,
     .prepack = 1,
     .expand_packed = q5_K_expand_avx2,
     .gemm_expanded = q5_K_gemm_expanded_avx2,
     .expand_min_tokens = KQ5_EXPAND_MIN_TOKENS,
     .pack_expanded = q5_K_pack_expanded_avx2},
    {.type = NLLM_TYPE_Q6_K,
     .to_float = q6_K_to_float_avx2,
     .vec_dot = q6_K_vec_dot_avx2,
     .vec_dot4 = q6_K_vec_dot4_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = q6_K_tile_prep_avx2,
     .gemm4 = q6_K_gemm4_avx2,
     .pack_rows = nllm_q6_K_pack_rows_avx2,
     .packed_prep = nllm_k_packed_prep_avx2,
     .gemm_packed = q6_K_gemm_packed_avx2,
     .gemm_packed_stream = q6_K_gemm_packed_stream_avx2,
     .stream_tok = KSTREAM16 & 2 ? NLLM_STREAM_TOK_MAX : 0,
     .packed_min_tokens = K_PACKED_MIN_TOKENS,
     .packed_tok = NLLM_PACKED_TOK_MAX,
     .prepack = 1,
     .expand_packed = q6_K_expand_avx2,
     .gemm_expanded = q6_K_gemm_expanded_avx2,
     .expand_min_tokens = KQ6_EXPAND_MIN_TOKENS,
     .pack_expanded = q6_K_pack_expanded_avx2},
    {.type = NLLM_TYPE_Q8_K, .from_float = q8_K_from_float_avx2},
    {.type = NLLM_TYPE_IQ4_XS,
     .vec_dot = iq4_xs_vec_dot_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = iq4_xs_prep_avx2,
     .gemm4 = iq4_xs_gemm4_avx2,
     .pack_rows = iq4_xs_pack_compact_avx2,
     .packed_prep = iq4_xs_packed_prep_avx2,
     .gemm_packed = iq4_xs_gemm_packed_avx2,
     .gemm_packed_stream = iq4_xs_gemm_packed_stream_avx2,
     .stream_tok = NLLM_STREAM_TOK_MAX,
     .packed_min_tokens = K_PACKED_MIN_TOKENS,
     .packed_tok = NLLM_PACKED_TOK_MAX,
     .prepack = 1,
     .expand_packed = iq4_xs_expand_avx2,
     .gemm_expanded = iq4_xs_gemm_expanded_avx2,
     .expand_min_tokens = KIQ_EXPAND_MIN_TOKENS,
     .pack_expanded = iq4_xs_pack_rows_avx2},
};
const nllm_kernel_set nllm_kernels_k_avx2 = {k_rows, sizeof k_rows / sizeof k_rows[0]};
