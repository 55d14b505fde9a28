/* AVX-512 (BW, VL, VNNI) dot products of the ternary TQ1_0 / TQ2_0 (against Q8_K) and of MXFP4
 * (against Q8_0): one row (vec_dot), four rows (vec_dot4, decode) and, for the ternary formats,
 * four rows by four tokens (vec_dot4x4, batches and short prompts). The weights become unsigned
 * codes (ternary digit + 1, doubled E2M1 level + 12) for vpdpbusd, and the offset comes off with
 * the activations' sums, which the four-row kernels share between rows. Each block's integer sum
 * is exact and every float step is the reference's, in its order, so the results are
 * bit-identical to quant_lowbit_ref.c. Only immediate shifts: per-lane variable shifts (vpsrlvw)
 * are slow on the Zen 5 cores here (see quant_avx512.c). */
#include <immintrin.h>

#include "cpu/hsum_avx512.h"
#include "cpu/quant.h"

/* ------------------------------------------------------------------ TQ1_0, TQ2_0 */

/* A block of 256 values as four parts of 64 (part p: elements 64p .. 64p + 63), each of codes
 * u = value + 1 in 0..2 for vpdpbusd; sum(value * q8) = sum(u * q8) - sum(q8), and sum(q8) is
 * the Q8_K bsums' (its quantizer writes them as the exact sums of qs). */

/* TQ1_0: base-3 digit k of a byte b is the top byte of (b * 3^k mod 256) times 3, >> 8. Each
 * 16-bit lane holds two bytes with the same power: the even one is multiplied by 3^k << 8 (the
 * odd byte above it falls out), the odd one shifted down and multiplied alike. The parts read:
 * 0: qs[0..31] digits 0 | 1; 1: qs[0..31] digits 2 | 3; 2: qs[0..31] digit 4 | qs[32..47]
 * digits 0, 1; 3: qs[32..47] digits 2, 3, 4 | qh (byte j: qh[j % 4], digit j / 4). The tables
 * hold each 16-bit lane's 3^k << 8. */
#define TQ_P8(v) v, v, v, v, v, v, v, v
#define TQ_P16(v) TQ_P8(v), TQ_P8(v)
static const int16_t tq1_pow_hi[4][32]
    __attribute__((aligned(64))) = {{TQ_P16(1 << 8), TQ_P16(3 << 8)},
                                    {TQ_P16(9 << 8), TQ_P16(27 << 8)},
                                    {TQ_P16(81 << 8), TQ_P8(1 << 8), TQ_P8(3 << 8)},
                                    {TQ_P8(9 << 8), TQ_P8(27 << 8), TQ_P8(81 << 8), 1 << 8, 1 << 8,
                                     3 << 8, 3 << 8, 9 << 8, 9 << 8, 27 << 8, 27 << 8}};
#undef TQ_P8
#undef TQ_P16

static inline __m512i tq1_digits(__m512i x, __m512i pow_hi) {
  const __m512i three = _mm512_set1_epi16(3);
  const __m512i e = _mm512_mulhi_epu16(_mm512_mullo_epi16(x, pow_hi), three);
  const __m512i o = _mm512_mulhi_epu16(_mm512_mullo_epi16(_mm512_srli_epi16(x, 8), pow_hi), three);
  return _mm512_or_si512(e, _mm512_slli_epi16(o, 8));
}

static inline __attribute__((always_inline)) __m512i tq1_part(const uint8_t *blk, int p) {
  const block_tq1_0 *x = (const block_tq1_0 *)blk;
  const __m512i pw = _mm512_load_si512((const void *)tq1_pow_hi[p]);
  const __m256i x32 = _mm256_loadu_si256((const __m256i *)x->qs);
  const __m128i x16 = _mm_loadu_si128((const __m128i *)(x->qs + 32));
  switch (p) {
    case 0:
    case 1: return tq1_digits(_mm512_broadcast_i64x4(x32), pw);
    case 2:
      return tq1_digits(
          _mm512_inserti64x4(_mm512_castsi256_si512(x32), _mm256_broadcastsi128_si256(x16), 1), pw);
    default: {
      uint32_t qh;
      memcpy(&qh, x->qh, 4);
      return tq1_digits(_mm512_inserti32x4(_mm512_broadcast_i32x4(x16), _mm_set1_epi32((int)qh), 3),
                        pw);
    }
  }
}

/* TQ2_0: bits 2l..2l+1 of byte m of qs half h are element 128h + 32l + m; a part is one half
 * with its codes l = 0, 1 (parts 0, 2) or l = 2, 3 (parts 1, 3) side by side. */
static inline __attribute__((always_inline)) __m512i tq2_part(const uint8_t *blk, int p) {
  const __m256i h = _mm256_loadu_si256((const __m256i *)(blk + 32 * (p / 2)));
  const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(h), _mm256_srli_epi16(h, 2), 1);
  const __m512i m3 = _mm512_set1_epi8(3);
  return p % 2 ? _mm512_and_si512(_mm512_srli_epi16(q, 4), m3) : _mm512_and_si512(q, m3);
}

typedef __m512i (*tq_part_fn)(const uint8_t *blk, int p);

/* -sum(q8) of a Q8_K block as 16 lanes, the starting value of its accumulators */
static inline __m512i tq_neg_q8sum(const block_q8_K *y) {
  const __m512i b = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)y->bsums));
  return _mm512_sub_epi32(_mm512_setzero_si512(), b);
}

/* the F16 scale of a ternary block: its last two bytes */
static inline uint16_t tq_block_h(const uint8_t *blk, size_t block_bytes) {
  uint16_t h;
  memcpy(&h, blk + block_bytes - 2, 2);
  return h;
}

static inline __attribute__((always_inline)) void tq_vec_dot(int64_t n, float *s, const void *vx,
                                                             const void *vy, size_t block_bytes,
                                                             tq_part_fn part) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    const uint8_t *blk = x + (size_t)b * block_bytes;
    __m512i acc = tq_neg_q8sum(&y[b]);
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++)
      acc = _mm512_dpbusd_epi32(acc, part(blk, p), _mm512_loadu_si512(y[b].qs + 64 * p));
    /* two statements, as in the reference: one would be fused into an FMA by clang */
    const float pr =
        (float)_mm512_reduce_add_epi32(acc) * (y[b].d * _cvtsh_ss(tq_block_h(blk, block_bytes)));
    sum += pr;
  }
  *s = sum;
}

/* Four rows by nt (1 or 4) tokens: each part's codes are made once per row for every token.
 * Accumulator 4t + r is (row r, token t); per pair the same integer sums and float steps as
 * tq_vec_dot (four or sixteen lanes of independent float sums, each the reference's chain).
 * s[t * s_stride + r]. */
static inline __attribute__((always_inline)) void tq_dot4xn(int64_t n, float *s, size_t s_stride,
                                                            const void *vx, size_t x_stride,
                                                            const void *vy, size_t y_stride, int nt,
                                                            size_t block_bytes, tq_part_fn part) {
  const uint8_t *x = vx, *yb = vy;
  __m128 sum4 = _mm_setzero_ps();
  __m512 sum16 = _mm512_setzero_ps();
  const __m512i tok_of_lane = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t b = 0; b < n / QK_K; b++) {
    const uint8_t *blk[4];
    const block_q8_K *y[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) blk[r] = x + r * x_stride + (size_t)b * block_bytes;
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) y[t] = (const block_q8_K *)(yb + t * y_stride) + b;
    nllm_prefetch_span(x + NLLM_PREFETCH_ROWS * x_stride + 4 * (size_t)b * block_bytes,
                       4 * block_bytes);
    __m512i acc[16];
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) {
      const __m512i neg = tq_neg_q8sum(y[t]);
#pragma GCC unroll 4
      for (int r = 0; r < 4; r++) acc[4 * t + r] = neg;
    }
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
      __m512i u[4];
#pragma GCC unroll 4
      for (int r = 0; r < 4; r++) u[r] = part(blk[r], p);
#pragma GCC unroll 4
      for (int t = 0; t < nt; t++) {
        const __m512i q = _mm512_loadu_si512(y[t]->qs + 64 * p);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) acc[4 * t + r] = _mm512_dpbusd_epi32(acc[4 * t + r], u[r], q);
      }
    }
    const __m128 d = _mm_cvtph_ps(_mm_setr_epi16(
        (short)tq_block_h(blk[0], block_bytes), (short)tq_block_h(blk[1], block_bytes),
        (short)tq_block_h(blk[2], block_bytes), (short)tq_block_h(blk[3], block_bytes), 0, 0, 0,
        0));
    if (nt == 1) {
      const __m128 sc = _mm_mul_ps(_mm_set1_ps(y[0]->d), d);
      sum4 = _mm_add_ps(sum4, _mm_mul_ps(_mm_cvtepi32_ps(hsum_x4(acc)), sc));
    } else {
      const __m512 dy = _mm512_permutexvar_ps(
          tok_of_lane, _mm512_castps128_ps512(_mm_setr_ps(y[0]->d, y[1]->d, y[2]->d, y[3]->d)));
      const __m512 sc = _mm512_mul_ps(dy, _mm512_broadcast_f32x4(d));
      sum16 = _mm512_add_ps(sum16, _mm512_mul_ps(_mm512_cvtepi32_ps(hsum_x16(acc)), sc));
    }
  }
  if (nt == 1) {
    _mm_storeu_ps(s, sum4);
    return;
  }
  float out[16];
  _mm512_storeu_ps(out, sum16);
#pragma GCC unroll 4
  for (int t = 0; t < 4; t++) memcpy(s + t * s_stride, out + 4 * t, 4 * sizeof(float));
}

#define TQ_ROWS(name, part)                                                                  \
  static void name##_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {   \
    tq_vec_dot(n, s, vx, vy, sizeof(block_##name), part);                                    \
  }                                                                                          \
  static void name##_vec_dot4_avx512(int64_t n, float *s, const void *vx, size_t x_stride,   \
                                     const void *vy) {                                       \
    tq_dot4xn(n, s, 4, vx, x_stride, vy, 0, 1, sizeof(block_##name), part);                  \
  }                                                                                          \
  static void name##_vec_dot4x4_avx512(int64_t n, float *s, size_t s_stride, const void *vx, \
                                       size_t x_stride, const void *vy, size_t y_stride) {   \
    tq_dot4xn(n, s, s_stride, vx, x_stride, vy, y_stride, 4, sizeof(block_##name), part);    \
  }
TQ_ROWS(tq1_0, tq1_part)
TQ_ROWS(tq2_0, tq2_part)
#undef TQ_ROWS

/* ------------------------------------------------------------------ MXFP4 */

/* Sixteen blocks at a time, lane i of a vector = block i. Four blocks a, b, c, d make two
 * vectors: their low nibbles (elements 0..15) and their high nibbles (16..31), a 128-bit lane
 * per block, against the activations' halves put in the same order; the codes are the doubled
 * E2M1 levels + 12 (0..24, unsigned for vpdpbusd) and 12 * sum(q8) comes off. Vector j of a
 * group of 16 takes blocks j, j + 4, j + 8, j + 12, so that the four vectors' lane sums come
 * out in block order. The scales are gathered and decoded 16 at a time: 2^(e - 128) (the
 * doubled levels' half), subnormal below e = 2, NaN at e = 255. */
static inline __m512i mxfp4_codes(__m512i nib) {
  const __m512i lut = _mm512_broadcast_i32x4(
      _mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
  return _mm512_shuffle_epi8(lut, nib);
}

/* The activation halves of blocks j, j + 4, j + 8, j + 12 and -12 * their sums */
typedef struct {
  __m512i lo, hi, neg;
} mxfp4_act;

static inline __attribute__((always_inline)) mxfp4_act mxfp4_act4(const block_q8_0 *y, int j) {
  const __m512i ab =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)y[j].qs)),
                         _mm256_loadu_si256((const __m256i *)y[j + 4].qs), 1);
  const __m512i cd =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)y[j + 8].qs)),
                         _mm256_loadu_si256((const __m256i *)y[j + 12].qs), 1);
  mxfp4_act a;
  a.lo = _mm512_shuffle_i64x2(ab, cd, _MM_SHUFFLE(2, 0, 2, 0));
  a.hi = _mm512_shuffle_i64x2(ab, cd, _MM_SHUFFLE(3, 1, 3, 1));
  const __m512i twelve = _mm512_set1_epi8(12);
  const __m512i off =
      _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), twelve, a.lo), twelve, a.hi);
  a.neg = _mm512_sub_epi32(_mm512_setzero_si512(), off);
  return a;
}

/* One row's codes of blocks j, j + 4, j + 8, j + 12 (a 128-bit lane each): low and high nibbles */
typedef struct {
  __m512i lo, hi;
} mxfp4_w;

static inline __attribute__((always_inline)) mxfp4_w mxfp4_codes4(const block_mxfp4 *x, int j) {
  __m512i q = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)x[j].qs));
  q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)x[j + 4].qs), 1);
  q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)x[j + 8].qs), 2);
  q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)x[j + 12].qs), 3);
  const __m512i m4 = _mm512_set1_epi8(15);
  mxfp4_w w;
  w.lo = mxfp4_codes(_mm512_and_si512(q, m4));
  w.hi = mxfp4_codes(_mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
  return w;
}

/* Those codes' partial sums against one token's activations */
static inline __m512i mxfp4_dot4(const mxfp4_w *w, const mxfp4_act *a) {
  return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a->neg, w->lo, a->lo), w->hi, a->hi);
}

/* One row's partial sums of blocks j, j + 4, j + 8, j + 12 */
static inline __attribute__((always_inline)) __m512i mxfp4_row4(const block_mxfp4 *x, int j,
                                                                const mxfp4_act *a) {
  const mxfp4_w w = mxfp4_codes4(x, j);
  return mxfp4_dot4(&w, a);
}

/* One block's integer sum (the groups' tail) */
static inline int32_t mxfp4_block_isum(const block_mxfp4 *x, const block_q8_0 *y) {
  const __m128i q = _mm_loadu_si128((const __m128i *)x->qs);
  const __m256i nib =
      _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(15));
  const __m256i u = _mm512_castsi512_si256(mxfp4_codes(_mm512_castsi256_si512(nib)));
  const __m256i yv = _mm256_loadu_si256((const __m256i *)y->qs);
  const __m256i acc =
      _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, yv),
                       _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(12), yv));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

/* 2^(e - 128) of the E8M0 bytes e (16 dwords): subnormal below e = 2, NaN at e = 255 */
static inline __m512 mxfp4_e8m0_half(__m512i e) {
  __m512i u = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23);
  u = _mm512_mask_sllv_epi32(u, _mm512_cmplt_epu32_mask(e, _mm512_set1_epi32(2)),
                             _mm512_set1_epi32(0x00200000), e);
  u = _mm512_mask_mov_epi32(u, _mm512_cmpeq_epi32_mask(e, _mm512_set1_epi32(255)),
                            _mm512_set1_epi32(0x7fc00000));
  return _mm512_castsi512_ps(u);
}

/* The scales of the blocks of mask m: the E8M0 bytes (17 bytes apart) decoded. A whole group's
 * 16 bytes lie in its first 256 bytes: four loads and two byte permutes (vpgatherdd is slow on
 * the AMD cores here: docs/performance.md); a group's tail is gathered. */
static inline __m512 mxfp4_half_scales(const block_mxfp4 *x, __mmask16 m) {
  if (m == 0xffff) {
    const uint8_t *p = (const uint8_t *)x;
    const __m512i idx = _mm512_castsi128_si512(
        _mm_setr_epi8(0, 17, 34, 51, 68, 85, 102, 119, 8, 25, 42, 59, 76, 93, 110, 127));
    const __m512i lo = _mm512_permutex2var_epi8(_mm512_loadu_si512((const void *)p), idx,
                                                _mm512_loadu_si512((const void *)(p + 64)));
    const __m512i hi = _mm512_permutex2var_epi8(_mm512_loadu_si512((const void *)(p + 128)), idx,
                                                _mm512_loadu_si512((const void *)(p + 192)));
    const __m128i e8 =
        _mm_mask_blend_epi8(0xff00, _mm512_castsi512_si128(lo), _mm512_castsi512_si128(hi));
    return mxfp4_e8m0_half(_mm512_cvtepu8_epi32(e8));
  }
  const __m512i idx =
      _mm512_setr_epi32(0, 17, 34, 51, 68, 85, 102, 119, 136, 153, 170, 187, 204, 221, 238, 255);
  return mxfp4_e8m0_half(_mm512_and_si512(
      _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, (const void *)x, 1),
      _mm512_set1_epi32(255)));
}

/* the Q8_0 blocks' F16 scales of mask m (34 bytes apart): for a whole group, word 17i of its
 * first 512 bytes, lane i of quarter k = i / 4 picked from that quarter's two vectors by one
 * word permute (index 17i mod 64); a group's tail is gathered */
static inline __m512 q8_0_scales(const block_q8_0 *y, __mmask16 m) {
  if (m == 0xffff) {
    const uint8_t *p = (const uint8_t *)y;
    const __m512i idx = _mm512_castsi256_si512(
        _mm256_setr_epi16(0, 17, 34, 51, 4, 21, 38, 55, 8, 25, 42, 59, 12, 29, 46, 63));
    __m512i w = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
      w = _mm512_mask_blend_epi16(
          (__mmask32)(0xfu << (4 * k)), w,
          _mm512_permutex2var_epi16(_mm512_loadu_si512((const void *)(p + 128 * k)), idx,
                                    _mm512_loadu_si512((const void *)(p + 128 * k + 64))));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(w));
  }
  const __m512i idx =
      _mm512_setr_epi32(0, 34, 68, 102, 136, 170, 204, 238, 272, 306, 340, 374, 408, 442, 476, 510);
  const __m512i h = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, (const void *)y, 1);
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
}

/* Blocks [0, nblk) (nblk <= 16) of nr rows (1 or 4, x_stride bytes apart) against y: each
 * block's product isum * (scale * d) in lane i of p[r], as the reference rounds it. */
static inline __attribute__((always_inline)) void mxfp4_group(const uint8_t *x, size_t x_stride,
                                                              int nr, const block_q8_0 *y, int nblk,
                                                              __m512 p[4]) {
  const __mmask16 m = (__mmask16)((1u << nblk) - 1);
  __m512i isum[4];
  if (nblk == 16) {
    mxfp4_act a[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) a[j] = mxfp4_act4(y, j);
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++) {
      const block_mxfp4 *xr = (const block_mxfp4 *)(x + r * x_stride);
      __m512i part[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) part[j] = mxfp4_row4(xr, j, &a[j]);
      /* lane 4l + j: 128-bit lane l of vector j, which is block 4l + j */
      isum[r] = hsum_4_lanes(part[0], part[1], part[2], part[3]);
    }
  } else {
    for (int r = 0; r < nr; r++) {
      const block_mxfp4 *xr = (const block_mxfp4 *)(x + r * x_stride);
      int32_t s[16] = {0};
      for (int i = 0; i < nblk; i++) s[i] = mxfp4_block_isum(&xr[i], &y[i]);
      isum[r] = _mm512_loadu_si512((const void *)s);
    }
  }
  const __m512 dy = q8_0_scales(y, m);
#pragma GCC unroll 4
  for (int r = 0; r < nr; r++) {
    const __m512 sc =
        _mm512_mul_ps(mxfp4_half_scales((const block_mxfp4 *)(x + r * x_stride), m), dy);
    p[r] = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[r]), sc);
  }
}

/* The products are added into the sums one block after the other, the reference's order; from
 * registers, since reading a just-stored vector back as scalars waits for the store to retire,
 * which waits for the previous group's additions. */
static inline float mxfp4_add4(float sum, __m128 v) {
  sum += _mm_cvtss_f32(v);
  sum += _mm_cvtss_f32(_mm_movehdup_ps(v));
  sum += _mm_cvtss_f32(_mm_movehl_ps(v, v));
  sum += _mm_cvtss_f32(_mm_shuffle_ps(v, v, 3));
  return sum;
}
static inline float mxfp4_add16(float sum, __m512 p) {
  sum = mxfp4_add4(sum, _mm512_castps512_ps128(p));
  sum = mxfp4_add4(sum, _mm512_extractf32x4_ps(p, 1));
  sum = mxfp4_add4(sum, _mm512_extractf32x4_ps(p, 2));
  return mxfp4_add4(sum, _mm512_extractf32x4_ps(p, 3));
}
/* Four rows at once: the products transposed so that lane r of u[k]'s 128-bit lane l is row r's
 * block 4l + k, then added four rows wide (each lane its own row's chain). */
static inline __m128 mxfp4_add16x4(__m128 sum, const __m512 p[4]) {
  const __m512d t0 = _mm512_castps_pd(_mm512_unpacklo_ps(p[0], p[1]));
  const __m512d t1 = _mm512_castps_pd(_mm512_unpacklo_ps(p[2], p[3]));
  const __m512d t2 = _mm512_castps_pd(_mm512_unpackhi_ps(p[0], p[1]));
  const __m512d t3 = _mm512_castps_pd(_mm512_unpackhi_ps(p[2], p[3]));
  const __m512 u0 = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t1));
  const __m512 u1 = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t1));
  const __m512 u2 = _mm512_castpd_ps(_mm512_unpacklo_pd(t2, t3));
  const __m512 u3 = _mm512_castpd_ps(_mm512_unpackhi_pd(t2, t3));
#define MXFP4_ADD_LANE(get)       \
  sum = _mm_add_ps(sum, get(u0)); \
  sum = _mm_add_ps(sum, get(u1)); \
  sum = _mm_add_ps(sum, get(u2)); \
  sum = _mm_add_ps(sum, get(u3));
#define MXFP4_LANE0(u) _mm512_castps512_ps128(u)
#define MXFP4_LANE1(u) _mm512_extractf32x4_ps(u, 1)
#define MXFP4_LANE2(u) _mm512_extractf32x4_ps(u, 2)
#define MXFP4_LANE3(u) _mm512_extractf32x4_ps(u, 3)
  MXFP4_ADD_LANE(MXFP4_LANE0)
  MXFP4_ADD_LANE(MXFP4_LANE1)
  MXFP4_ADD_LANE(MXFP4_LANE2)
  MXFP4_ADD_LANE(MXFP4_LANE3)
#undef MXFP4_ADD_LANE
#undef MXFP4_LANE0
#undef MXFP4_LANE1
#undef MXFP4_LANE2
#undef MXFP4_LANE3
  return sum;
}

static void mxfp4_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  const uint8_t *x = vx;
  const block_q8_0 *y = vy;
  const int64_t nb = n / QK;
  float sum = 0;
  __m512 p[4];
  int64_t b = 0;
  for (; b + 16 <= nb; b += 16) {
    mxfp4_group(x + (size_t)b * sizeof(block_mxfp4), 0, 1, y + b, 16, p);
    sum = mxfp4_add16(sum, p[0]);
  }
  if (b < nb) {
    const int nblk = (int)(nb - b);
    float pl[16];
    mxfp4_group(x + (size_t)b * sizeof(block_mxfp4), 0, 1, y + b, nblk, p);
    _mm512_storeu_ps(pl, p[0]);
    for (int i = 0; i < nblk; i++) sum += pl[i];
  }
  *s = sum;
}

/* The last nblk (< 16) blocks of four rows against y, added into the rows' sums */
static __m128 mxfp4_tail4(const uint8_t *x, size_t x_stride, const block_q8_0 *y, int nblk,
                          __m128 sum) {
  float pl[4][16], sr[4];
  __m512 p[4];
  mxfp4_group(x, x_stride, 4, y, nblk, p);
  _mm_storeu_ps(sr, sum);
  for (int r = 0; r < 4; r++) {
    _mm512_storeu_ps(pl[r], p[r]);
    for (int i = 0; i < nblk; i++) sr[r] += pl[r][i];
  }
  return _mm_loadu_ps(sr);
}

static void mxfp4_vec_dot4_avx512(int64_t n, float *s, const void *vx, size_t x_stride,
                                  const void *vy) {
  const uint8_t *x = vx;
  const block_q8_0 *y = vy;
  const int64_t nb = n / QK;
  __m128 sum = _mm_setzero_ps();
  __m512 p[4];
  int64_t b = 0;
  for (; b + 16 <= nb; b += 16) {
    nllm_prefetch_span(x + NLLM_PREFETCH_ROWS * x_stride + 4 * (size_t)b * sizeof(block_mxfp4),
                       4 * 16 * sizeof(block_mxfp4));
    mxfp4_group(x + (size_t)b * sizeof(block_mxfp4), x_stride, 4, y + b, 16, p);
    sum = mxfp4_add16x4(sum, p);
  }
  if (b < nb)
    sum = mxfp4_tail4(x + (size_t)b * sizeof(block_mxfp4), x_stride, y + b, (int)(nb - b), sum);
  _mm_storeu_ps(s, sum);
}

/* Four rows by four tokens: each group of 16 blocks' codes are made once per row (8 vectors)
 * and dotted with every token's activations (prepared once per group), so the nibble decode,
 * the bulk of vec_dot4's work, is shared by the four tokens. Per pair the same integer sums,
 * scale products and block-order additions as vec_dot4. s[t * s_stride + r]. */
static void mxfp4_vec_dot4x4_avx512(int64_t n, float *s, size_t s_stride, const void *vx,
                                    size_t x_stride, const void *vy, size_t y_stride) {
  const uint8_t *x = vx;
  const int64_t nb = n / QK;
  const block_q8_0 *y[4];
  for (int t = 0; t < 4; t++) y[t] = (const block_q8_0 *)((const uint8_t *)vy + t * y_stride);
  __m128 sum[4];
  for (int t = 0; t < 4; t++) sum[t] = _mm_setzero_ps();
  int64_t b = 0;
  for (; b + 16 <= nb; b += 16) {
    mxfp4_act a[4][4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) a[t][j] = mxfp4_act4(y[t] + b, j);
    __m512i isum[4][4]; /* [token][row] */
    __m512 xs[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const block_mxfp4 *xr = (const block_mxfp4 *)(x + r * x_stride) + b;
      mxfp4_w w[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) w[j] = mxfp4_codes4(xr, j);
#pragma GCC unroll 4
      for (int t = 0; t < 4; t++)
        isum[t][r] = hsum_4_lanes(mxfp4_dot4(&w[0], &a[t][0]), mxfp4_dot4(&w[1], &a[t][1]),
                                  mxfp4_dot4(&w[2], &a[t][2]), mxfp4_dot4(&w[3], &a[t][3]));
      xs[r] = mxfp4_half_scales(xr, 0xffff);
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
      const __m512 dy = q8_0_scales(y[t] + b, 0xffff);
      __m512 p[4];
#pragma GCC unroll 4
      for (int r = 0; r < 4; r++)
        p[r] = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[t][r]), _mm512_mul_ps(xs[r], dy));
      sum[t] = mxfp4_add16x4(sum[t], p);
    }
  }
  for (int t = 0; t < 4; t++) {
    if (b < nb)
      sum[t] = mxfp4_tail4(x + (size_t)b * sizeof(block_mxfp4), x_stride, y[t] + b, (int)(nb - b),
                           sum[t]);
    _mm_storeu_ps(s + t * s_stride, sum[t]);
  }
}

/* MXFP4's four-by-four rows run at ~198 GFLOP/s whatever the token count (2048 x 2048, one
 * thread, thread CPU time); the dequantizing f32 GEMM reaches 55 at 16 tokens, 156 at 64, 198
 * at 128 and 227 at 256 (docs/performance.md, round 9): they tie at 128. */
#define MXFP4_BLAS_MIN_TOKENS 128

/* The ternary four-by-four rows take 0.9-1.4 ns per row-token pair of 256 values, ~3x less than
 * sgemm's share of the same products on dequantized tiles (docs/performance.md): they never
 * cross. */
static const nllm_qtype_kernels lowbit_avx512_rows[] = {
    {.type = NLLM_TYPE_TQ1_0,
     .vec_dot = tq1_0_vec_dot_avx512,
     .vec_dot4 = tq1_0_vec_dot4_avx512,
     .vec_dot4x4 = tq1_0_vec_dot4x4_avx512,
     .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_TQ2_0,
     .vec_dot = tq2_0_vec_dot_avx512,
     .vec_dot4 = tq2_0_vec_dot4_avx512,
     .vec_dot4x4 = tq2_0_vec_dot4x4_avx512,
     .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_MXFP4,
     .vec_dot = mxfp4_vec_dot_avx512,
     .vec_dot4 = mxfp4_vec_dot4_avx512,
     .vec_dot4x4 = mxfp4_vec_dot4x4_avx512,
     .blas_min_tokens = MXFP4_BLAS_MIN_TOKENS},
};
const nllm_kernel_set nllm_kernels_lowbit_avx512 = {
    lowbit_avx512_rows, sizeof lowbit_avx512_rows / sizeof lowbit_avx512_rows[0]};
