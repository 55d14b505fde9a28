/* AVX2 dot products of the ternary TQ1_0 / TQ2_0 (against Q8_K) and of MXFP4 (against Q8_0): their
 * rows of the AVX2 tier (dequantization stays quant_lowbit_ref.c's). Each block's integer sum is
 * exact and the float steps are the reference's, in its order: bit-identical results. */
#include <immintrin.h>

#include "cpu/quant.h"

#define LB_UNROLL8 _Pragma("GCC unroll 8")

static inline int32_t lowbit_hsum32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

/* The lane sums of v[0..7] as eight lanes (a transpose folded into the adds). */
static inline __m256i lowbit_hsum8(const __m256i *v) {
  __m256i p[4], q[2];
  LB_UNROLL8
  for (int i = 0; i < 4; i++)
    p[i] = _mm256_add_epi32(_mm256_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                            _mm256_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
  LB_UNROLL8
  for (int i = 0; i < 2; i++)
    q[i] = _mm256_add_epi32(_mm256_unpacklo_epi64(p[2 * i], p[2 * i + 1]),
                            _mm256_unpackhi_epi64(p[2 * i], p[2 * i + 1]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(q[0], q[1], 0x20),
                          _mm256_permute2x128_si256(q[0], q[1], 0x31));
}

/* The ternary codes u (0..3, value u - 1) against 32 activations: sum(u * q8) as 16-bit pair
 * sums (maddubs takes u as the unsigned operand, so no product saturates: |pair| <= 2 * 3 * 128,
 * and eight chunks of a block stay within int16); the block's sum(q8) comes from the Q8_K
 * bsums, which its quantizer writes as the exact sums of qs. */
static inline __m256i tq_add(__m256i acc, __m256i u, const int8_t *q8) {
  const __m256i q = _mm256_loadu_si256((const __m256i *)q8);
  return _mm256_add_epi16(acc, _mm256_maddubs_epi16(u, q));
}

/* A block's sum(u * q8) - sum(q8) as eight int32 lanes to be added up. The bsums come off in
 * int16 before the one widening: |acc lane| <= 8 * 2 * 3 * 128 and |bsum| <= 16 * 128, so the
 * difference stays within int16 (the lanes partition the block differently, the total is
 * the same). */
static inline __m256i tq_lanes(__m256i acc, const block_q8_K *y) {
  const __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
  return _mm256_madd_epi16(_mm256_sub_epi16(acc, bs), _mm256_set1_epi16(1));
}

/* The blocks after the last whole group of a row, one at a time, in the reference's order. */
#define TQ_ROW_TAIL(block_lanes)                                                        \
  for (; b < nb; b++) {                                                                 \
    const float p =                                                                     \
        (float)lowbit_hsum32(block_lanes(&x[b], &y[b])) * (y[b].d * _cvtsh_ss(x[b].d)); \
    sum += p;                                                                           \
  }

/* The row: blocks eight at a time, their lane sums reduced together (one transpose instead of
 * eight horizontal sums) and converted at once, then each block's product added in the
 * reference's order with its float steps: p = (float)isum * (y.d * d). TQ1_0 13.4 -> 11.8 ns
 * per block on Zen 3. */
#define TQ_ROW(block_lanes)                                                 \
  do {                                                                      \
    const int64_t nb = n / QK_K;                                            \
    float sum = 0;                                                          \
    int64_t b = 0;                                                          \
    for (; b + 8 <= nb; b += 8) {                                           \
      __m256i v[8];                                                         \
      LB_UNROLL8                                                            \
      for (int k = 0; k < 8; k++) v[k] = block_lanes(&x[b + k], &y[b + k]); \
      float f[8];                                                           \
      _mm256_storeu_ps(f, _mm256_cvtepi32_ps(lowbit_hsum8(v)));             \
      LB_UNROLL8                                                            \
      for (int k = 0; k < 8; k++) {                                         \
        const float p = f[k] * (y[b + k].d * _cvtsh_ss(x[b + k].d));        \
        sum += p;                                                           \
      }                                                                     \
    }                                                                       \
    TQ_ROW_TAIL(block_lanes);                                               \
    *s = sum;                                                               \
  } while (0)

/* Four blocks at a time: their lane sums reduced together (three horizontal adds), their scales
 * converted and multiplied together, each product added in the reference's order. TQ2_0: 1.2x
 * the block-by-block row on Zen 3 (two at a time 1.12x; TQ_ROW's eight-block transpose, which
 * converts the scales one by one, measured slower for it). */
#define TQ_ROW4(block_lanes)                                                                    \
  do {                                                                                          \
    const int64_t nb = n / QK_K;                                                                \
    float sum = 0;                                                                              \
    int64_t b = 0;                                                                              \
    for (; b + 4 <= nb; b += 4) {                                                               \
      const __m256i u = _mm256_hadd_epi32(                                                      \
          _mm256_hadd_epi32(block_lanes(&x[b], &y[b]), block_lanes(&x[b + 1], &y[b + 1])),      \
          _mm256_hadd_epi32(block_lanes(&x[b + 2], &y[b + 2]),                                  \
                            block_lanes(&x[b + 3], &y[b + 3])));                                \
      const __m128 f = _mm_cvtepi32_ps(                                                         \
          _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1)));            \
      const __m128 xd = _mm_cvtph_ps(_mm_setr_epi16(                                            \
          (short)x[b].d, (short)x[b + 1].d, (short)x[b + 2].d, (short)x[b + 3].d, 0, 0, 0, 0)); \
      const __m128 yd = _mm_setr_ps(y[b].d, y[b + 1].d, y[b + 2].d, y[b + 3].d);                \
      const __m128 p = _mm_mul_ps(f, _mm_mul_ps(yd, xd));                                       \
      sum += _mm_cvtss_f32(p);                                                                  \
      sum += _mm_cvtss_f32(_mm_movehdup_ps(p));                                                 \
      sum += _mm_cvtss_f32(_mm_movehl_ps(p, p));                                                \
      sum += _mm_cvtss_f32(_mm_shuffle_ps(p, p, 3));                                            \
    }                                                                                           \
    TQ_ROW_TAIL(block_lanes);                                                                   \
    *s = sum;                                                                                   \
  } while (0)

/* Base-3 digit of each byte b of x: the top byte of b * 3^k (mod 256), times 3, >> 8. The
 * 16-bit products do the mod 256 for free when the byte sits in the top half of a lane: even
 * bytes are multiplied by 3^k << 8 (the odd byte above them falls out), odd bytes are masked in
 * place and multiplied by 3^k. pe / po hold the powers of the even / odd bytes of each lane. An
 * odd byte's top half p << 8 times 768 leaves 3 p in the lane's high product, whose top byte is
 * the digit: one byte blend puts it above the even byte's (was a shift and an or; 2.4% on
 * Zen 3, where the multiplies' two ports bound this row). */
static inline __m256i tq1_digits(__m256i x, __m256i pe, __m256i po) {
  const __m256i three = _mm256_set1_epi16(3);
  __m256i e = _mm256_mulhi_epu16(_mm256_mullo_epi16(x, _mm256_slli_epi16(pe, 8)), three);
  __m256i o = _mm256_mullo_epi16(_mm256_and_si256(x, _mm256_set1_epi16((short)0xff00)), po);
  o = _mm256_mulhi_epu16(o, _mm256_set1_epi16(768));
  return _mm256_blendv_epi8(e, o, _mm256_set1_epi16((short)0xff00));
}

/* The block's 256 codes (0..2) as eight registers, u[j] for elements 32j .. 32j + 31: the
 * four-by-four kernel's; vec_dot's tq1_0_lanes below interleaves the same steps with the
 * products (through this array it measured 14% slower). */
static inline __attribute__((always_inline)) void tq1_0_codes(const block_tq1_0 *x, __m256i u[8]) {
  static const uint16_t pow3[5] = {1, 3, 9, 27, 81};
  /* the qh lane: byte j is qh[j % 4], digit j / 4 */
  const __m256i qh_pe = _mm256_setr_epi16(81, 81, 81, 81, 81, 81, 81, 81, 1, 1, 3, 3, 9, 9, 27, 27);
  const __m256i pair01 = _mm256_setr_epi16(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i pair23 = _mm256_setr_epi16(9, 9, 9, 9, 9, 9, 9, 9, 27, 27, 27, 27, 27, 27, 27, 27);
  /* qs[0..31]: digit k is elements 32k .. 32k + 31 */
  const __m256i x32 = _mm256_loadu_si256((const __m256i *)x->qs);
  LB_UNROLL8
  for (int k = 0; k < 5; k++) {
    const __m256i p = _mm256_set1_epi16((short)pow3[k]);
    u[k] = tq1_digits(x32, p, p);
  }
  /* qs[32..47]: digit k is elements 160 + 16k .. ; two digits per register */
  const __m128i x16 = _mm_loadu_si128((const __m128i *)(x->qs + 32));
  const __m256i xx = _mm256_set_m128i(x16, x16);
  u[5] = tq1_digits(xx, pair01, pair01);
  u[6] = tq1_digits(xx, pair23, pair23);
  /* digit 4 of qs[32..47], then qh's digit k is elements 240 + 4k .. 240 + 4k + 3 */
  uint32_t qh;
  memcpy(&qh, x->qh, 4);
  const __m256i xq = _mm256_set_m128i(_mm_set1_epi32((int)qh), x16);
  u[7] = tq1_digits(xq, qh_pe, qh_pe);
}

static inline __m256i tq1_0_lanes(const block_tq1_0 *x, const block_q8_K *y) {
  static const uint16_t pow3[5] = {1, 3, 9, 27, 81};
  /* the qh lane: byte j is qh[j % 4], digit j / 4 */
  const __m256i qh_pe = _mm256_setr_epi16(81, 81, 81, 81, 81, 81, 81, 81, 1, 1, 3, 3, 9, 9, 27, 27);
  const __m256i pair01 = _mm256_setr_epi16(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i pair23 = _mm256_setr_epi16(9, 9, 9, 9, 9, 9, 9, 9, 27, 27, 27, 27, 27, 27, 27, 27);
  const int8_t *q8 = y->qs;
  __m256i a = _mm256_setzero_si256();
  /* qs[0..31]: digit k is elements 32k .. 32k + 31 */
  const __m256i x32 = _mm256_loadu_si256((const __m256i *)x->qs);
  for (int k = 0; k < 5; k++) {
    const __m256i p = _mm256_set1_epi16((short)pow3[k]);
    a = tq_add(a, tq1_digits(x32, p, p), q8 + 32 * k);
  }
  /* qs[32..47]: digit k is elements 160 + 16k .. ; two digits per register */
  const __m128i x16 = _mm_loadu_si128((const __m128i *)(x->qs + 32));
  const __m256i xx = _mm256_set_m128i(x16, x16);
  a = tq_add(a, tq1_digits(xx, pair01, pair01), q8 + 160);
  a = tq_add(a, tq1_digits(xx, pair23, pair23), q8 + 192);
  /* digit 4 of qs[32..47], then qh's digit k is elements 240 + 4k .. 240 + 4k + 3 */
  uint32_t qh;
  memcpy(&qh, x->qh, 4);
  const __m256i xq = _mm256_set_m128i(_mm_set1_epi32((int)qh), x16);
  a = tq_add(a, tq1_digits(xq, qh_pe, qh_pe), q8 + 224);
  return tq_lanes(a, y);
}

static void tq1_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const block_tq1_0 *x = vx;
  const block_q8_K *y = vy;
  /* TQ_ROW4 measured 5% slower here */
  TQ_ROW(tq1_0_lanes);
}

static inline __m256i tq2_0_lanes(const block_tq2_0 *x, const block_q8_K *y) {
  const __m256i m3 = _mm256_set1_epi8(3), m12 = _mm256_set1_epi8(12);
  /* half h of qs: bits 2l..2l+1 of byte m are element 128h + 32l + m. Codes l = 1, 3 are taken
   * in place as 4 u (q & 12, (q >> 4) & 12): one shift per 32 bytes instead of three; their sum
   * is divided by 4 at the end, exactly (|4 u q8 pair| <= 3072, four of them fit int16). */
  __m256i a = _mm256_setzero_si256(), a4 = _mm256_setzero_si256();
  for (int h = 0; h < 2; h++) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
    const __m256i q4 = _mm256_srli_epi16(q, 4);
    const int8_t *q8 = y->qs + 128 * h;
    a = tq_add(a, _mm256_and_si256(q, m3), q8);
    a4 = tq_add(a4, _mm256_and_si256(q, m12), q8 + 32);
    a = tq_add(a, _mm256_and_si256(q4, m3), q8 + 64);
    a4 = tq_add(a4, _mm256_and_si256(q4, m12), q8 + 96);
  }
  return tq_lanes(_mm256_add_epi16(a, _mm256_srai_epi16(a4, 2)), y);
}

static void tq2_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const block_tq2_0 *x = vx;
  const block_q8_K *y = vy;
  TQ_ROW4(tq2_0_lanes);
}

/* TQ2_0's 256 codes (0..3) of a block, cut out plain for the batch kernels (vec_dot's 4u trick
 * saves shifts per token; there they are shared by the tokens). */
static inline __attribute__((always_inline)) void tq2_0_codes(const block_tq2_0 *x, __m256i u[8]) {
  const __m256i m3 = _mm256_set1_epi8(3);
  for (int h = 0; h < 2; h++) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
    u[4 * h] = _mm256_and_si256(q, m3);
    u[4 * h + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 2), m3);
    u[4 * h + 2] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m3);
    u[4 * h + 3] = _mm256_and_si256(_mm256_srli_epi16(q, 6), m3);
  }
}

/* Four rows by up to four tokens (batches) of TQ1_0 (tq1) or TQ2_0: a block's codes are made
 * once for the tokens (TQ1_0's base-3 digits are most of its work); a token costs its eight
 * maddubs and the bsums step. Each token's integer sum is vec_dot's and the four tokens' float
 * steps go in one vector, each lane in vec_dot's order: results equal vec_dot's bit for bit. */
static inline __attribute__((always_inline)) void tq_dot4xn(const int tq1, int nt, int64_t n,
                                                            float *s, size_t s_stride,
                                                            const void *vx, size_t x_stride,
                                                            const void *vy, size_t y_stride) {
  const int64_t nb = n / QK_K;
  const size_t bs = tq1 ? sizeof(block_tq1_0) : sizeof(block_tq2_0);
  const block_q8_K *y[4];
  /* nt < 4 tokens: the missing lanes sum zeros against token 0's d */
  for (int t = 0; t < 4; t++)
    y[t] = (const block_q8_K *)((const uint8_t *)vy + (t < nt ? t : 0) * y_stride);
  for (int r = 0; r < 4; r++) {
    const uint8_t *xr = (const uint8_t *)vx + r * x_stride;
    __m128 sum = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
      const uint8_t *xb = xr + (size_t)b * bs;
      __m256i u[8], l[4];
      uint16_t xd;
      if (tq1) {
        tq1_0_codes((const block_tq1_0 *)xb, u);
        xd = ((const block_tq1_0 *)xb)->d;
      } else {
        tq2_0_codes((const block_tq2_0 *)xb, u);
        xd = ((const block_tq2_0 *)xb)->d;
      }
      LB_UNROLL8
      for (int t = 0; t < 4; t++) {
        l[t] = _mm256_setzero_si256();
        if (t >= nt) continue;
        __m256i a = _mm256_setzero_si256();
        LB_UNROLL8
        for (int j = 0; j < 8; j++) a = tq_add(a, u[j], y[t][b].qs + 32 * j);
        l[t] = tq_lanes(a, &y[t][b]);
      }
      const __m256i h =
          _mm256_hadd_epi32(_mm256_hadd_epi32(l[0], l[1]), _mm256_hadd_epi32(l[2], l[3]));
      const __m128 f =
          _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
      const __m128 yd = _mm_setr_ps(y[0][b].d, y[1][b].d, y[2][b].d, y[3][b].d);
      sum = _mm_add_ps(sum, _mm_mul_ps(f, _mm_mul_ps(yd, _mm_set1_ps(_cvtsh_ss(xd)))));
    }
    float out[4];
    _mm_storeu_ps(out, sum);
    for (int t = 0; t < nt; t++) s[t * s_stride + r] = out[t];
  }
}
static void tq1_0_vec_dot4x4_avx2(int64_t n, float *s, size_t s_stride, const void *vx,
                                  size_t x_stride, const void *vy, size_t y_stride) {
  tq_dot4xn(1, 4, n, s, s_stride, vx, x_stride, vy, y_stride);
}
static void tq1_0_vec_dot4xt_avx2(int64_t n, float *s, size_t s_stride, const void *vx,
                                  size_t x_stride, const void *vy, size_t y_stride, int n_tok) {
  if (n_tok == 3)
    tq_dot4xn(1, 3, n, s, s_stride, vx, x_stride, vy, y_stride);
  else
    tq_dot4xn(1, 2, n, s, s_stride, vx, x_stride, vy, y_stride);
}
static void tq2_0_vec_dot4x4_avx2(int64_t n, float *s, size_t s_stride, const void *vx,
                                  size_t x_stride, const void *vy, size_t y_stride) {
  tq_dot4xn(0, 4, n, s, s_stride, vx, x_stride, vy, y_stride);
}
static void tq2_0_vec_dot4xt_avx2(int64_t n, float *s, size_t s_stride, const void *vx,
                                  size_t x_stride, const void *vy, size_t y_stride, int n_tok) {
  if (n_tok == 3)
    tq_dot4xn(0, 3, n, s, s_stride, vx, x_stride, vy, y_stride);
  else
    tq_dot4xn(0, 2, n, s, s_stride, vx, x_stride, vy, y_stride);
}
/* Four rows, one token: the rows' block sums reduced together and their products added to
 * the four sums in the lanes of one vector (each lane in vec_dot's order), the activations
 * loaded once for four rows. */
static inline __attribute__((always_inline)) void tq_dot4(const int tq1, int64_t n, float *s,
                                                          const void *vx, size_t x_stride,
                                                          const void *vy) {
  const int64_t nb = n / QK_K;
  const size_t bs = tq1 ? sizeof(block_tq1_0) : sizeof(block_tq2_0);
  const block_q8_K *y = vy;
  __m128 sum = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    nllm_prefetch_span((const uint8_t *)vx + NLLM_PREFETCH_ROWS * x_stride + 4 * (size_t)b * bs,
                       4 * bs);
    __m256i l[4];
    uint16_t d[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const uint8_t *xb = (const uint8_t *)vx + r * x_stride + (size_t)b * bs;
      if (tq1) {
        l[r] = tq1_0_lanes((const block_tq1_0 *)xb, &y[b]);
        d[r] = ((const block_tq1_0 *)xb)->d;
      } else {
        l[r] = tq2_0_lanes((const block_tq2_0 *)xb, &y[b]);
        d[r] = ((const block_tq2_0 *)xb)->d;
      }
    }
    const __m256i h =
        _mm256_hadd_epi32(_mm256_hadd_epi32(l[0], l[1]), _mm256_hadd_epi32(l[2], l[3]));
    const __m128 f =
        _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
    const __m128 xd = _mm_cvtph_ps(
        _mm_setr_epi16((short)d[0], (short)d[1], (short)d[2], (short)d[3], 0, 0, 0, 0));
    sum = _mm_add_ps(sum, _mm_mul_ps(f, _mm_mul_ps(_mm_set1_ps(y[b].d), xd)));
  }
  _mm_storeu_ps(s, sum);
}
static void tq1_0_vec_dot4_avx2(int64_t n, float *s, const void *vx, size_t x_stride,
                                const void *vy) {
  tq_dot4(1, n, s, vx, x_stride, vy);
}
static void tq2_0_vec_dot4_avx2(int64_t n, float *s, const void *vx, size_t x_stride,
                                const void *vy) {
  tq_dot4(0, n, s, vx, x_stride, vy);
}

/* MXFP4: the doubled E2M1 levels (integers, |v| <= 12) looked up with a byte shuffle; the scale
 * 2^(e - 128) carries the half, as in the reference. One block's 32 products as 8 int32 lanes;
 * the sign moves onto w, so -128 in the activations cannot saturate. */
/* A block's 32 doubled levels w (elements in order) */
static inline __m256i mxfp4_w(const block_mxfp4 *x) {
  const __m128i lut = _mm_setr_epi8(0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12);
  /* low nibbles are elements 0..15, high 16..31: the 16 bytes in both lanes (a broadcast load,
   * no shuffle), the high lane shifted by 4 */
  const __m256i q = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)x->qs));
  const __m256i nib = _mm256_and_si256(
      _mm256_srlv_epi32(q, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(15));
  return _mm256_shuffle_epi8(_mm256_set_m128i(lut, lut), nib);
}

static inline __m256i mxfp4_block_i32(const block_mxfp4 *x, const block_q8_0 *y) {
  const __m256i w = mxfp4_w(x);
  const __m256i q8 = _mm256_loadu_si256((const __m256i *)y->qs);
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(q8), _mm256_sign_epi8(w, q8));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* E8M0 codes (int32 lanes) to the half scale 2^(e - 128): subnormal below e = 2, NaN at 255. */
static inline __m256 mxfp4_half_scales(__m256i e) {
  __m256i u = _mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23);
  u = _mm256_blendv_epi8(u, _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), e),
                         _mm256_cmpgt_epi32(_mm256_set1_epi32(2), e));
  u = _mm256_blendv_epi8(u, _mm256_set1_epi32(0x7fc00000),
                         _mm256_cmpeq_epi32(e, _mm256_set1_epi32(255)));
  return _mm256_castsi256_ps(u);
}

/* Blocks [0, nblk) (nblk <= 8) of x against y: each block's product isum * (scale * d) in p[i],
 * rounded as the reference rounds it. The E8M0 and F16 scales (17 and 34 bytes apart) are packed
 * into one register by scalar loads, not vpgatherdd (on Zen 3 the two gathers made MXFP4 ~20%
 * slower), and decoded eight at a time: 2^(e - 128), subnormal below e = 2, NaN at e = 255. */
static inline __attribute__((always_inline)) void mxfp4_group8(const block_mxfp4 *x,
                                                               const block_q8_0 *y, int nblk,
                                                               float p[8]) {
  __m256i v[8];
  LB_UNROLL8
  for (int i = 0; i < 8; i++)
    v[i] = i < nblk ? mxfp4_block_i32(&x[i], &y[i]) : _mm256_setzero_si256();
  const __m256i isum = lowbit_hsum8(v);
  uint64_t e8 = 0;
  LB_UNROLL8
  for (int i = 0; i < 8; i++) e8 |= (uint64_t)(i < nblk ? x[i].e : 0) << (8 * i);
  const __m256 sx = mxfp4_half_scales(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)e8)));
  uint64_t h0 = 0, h1 = 0;
  LB_UNROLL8
  for (int i = 0; i < 4; i++) {
    h0 |= (uint64_t)(i < nblk ? y[i].d : 0) << (16 * i);
    h1 |= (uint64_t)(i + 4 < nblk ? y[i + 4].d : 0) << (16 * i);
  }
  const __m256 dy = _mm256_cvtph_ps(_mm_set_epi64x((long long)h1, (long long)h0));
  const __m256 sc = _mm256_mul_ps(sx, dy);
  _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_cvtepi32_ps(isum), sc));
}

/* Eight blocks' products at a time, added into the sum one by one in the reference's order. */
static void mxfp4_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const block_mxfp4 *x = vx;
  const block_q8_0 *y = vy;
  const int64_t nb = n / QK;
  float sum = 0, p[8];
  int64_t b = 0;
  for (; b + 8 <= nb; b += 8) {
    mxfp4_group8(x + b, y + b, 8, p);
    LB_UNROLL8
    for (int i = 0; i < 8; i++) sum += p[i];
  }
  if (b < nb) {
    const int nblk = (int)(nb - b);
    mxfp4_group8(x + b, y + b, nblk, p);
    for (int i = 0; i < nblk; i++) sum += p[i];
  }
  *s = sum;
}

/* Four rows by four tokens: a block's levels are looked up once per row and the activations'
 * abs once per token; the sixteen pairs' sums are reduced together (two eight-way transposes)
 * into lanes 4 r + t of two vectors, rows 0-1 and 2-3, whose float steps run in vector lanes,
 * each in vec_dot's order (p = isum * (scale * d), sum += p): results equal vec_dot's bit for
 * bit. */
static inline __attribute__((always_inline)) void mxfp4_dot4xn(int nt, int64_t n, float *s,
                                                               size_t s_stride, const void *vx,
                                                               size_t x_stride, const void *vy,
                                                               size_t y_stride) {
  const int64_t nb = n / QK;
  const block_mxfp4 *x[4];
  const block_q8_0 *y[4];
  for (int i = 0; i < 4; i++) {
    x[i] = (const block_mxfp4 *)((const uint8_t *)vx + i * x_stride);
    /* nt < 4 tokens: the missing lanes sum zeros against token 0's d */
    y[i] = (const block_q8_0 *)((const uint8_t *)vy + (i < nt ? i : 0) * y_stride);
  }
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i rows01 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  const __m256i rows23 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  for (int64_t b = 0; b < nb; b++) {
    nllm_prefetch_span(
        (const uint8_t *)vx + NLLM_PREFETCH_ROWS * x_stride + 4 * (size_t)b * sizeof(block_mxfp4),
        4 * sizeof(block_mxfp4));
    const uint32_t e4 = (uint32_t)x[0][b].e | (uint32_t)x[1][b].e << 8 | (uint32_t)x[2][b].e << 16 |
                        (uint32_t)x[3][b].e << 24;
    const __m256 sx = mxfp4_half_scales(_mm256_cvtepu8_epi32(_mm_cvtsi32_si128((int)e4)));
    const uint64_t d4 = (uint64_t)y[0][b].d | (uint64_t)y[1][b].d << 16 |
                        (uint64_t)y[2][b].d << 32 | (uint64_t)y[3][b].d << 48;
    const __m128 dy4 = _mm_cvtph_ps(_mm_cvtsi64_si128((long long)d4));
    const __m256 dy = _mm256_set_m128(dy4, dy4);
    __m256i a8[4];
    LB_UNROLL8
    for (int t = 0; t < nt; t++)
      a8[t] = _mm256_abs_epi8(_mm256_loadu_si256((const __m256i *)y[t][b].qs));
    LB_UNROLL8
    for (int h = 0; h < 2; h++) {
      __m256i v[8];
      LB_UNROLL8
      for (int i = 0; i < 2; i++) {
        const __m256i w = mxfp4_w(&x[2 * h + i][b]);
        LB_UNROLL8
        for (int t = 0; t < 4; t++) {
          if (t >= nt) {
            v[4 * i + t] = _mm256_setzero_si256();
            continue;
          }
          const __m256i q8 = _mm256_loadu_si256((const __m256i *)y[t][b].qs);
          v[4 * i + t] =
              _mm256_madd_epi16(_mm256_maddubs_epi16(a8[t], _mm256_sign_epi8(w, q8)), ones);
        }
      }
      const __m256 sc = _mm256_mul_ps(_mm256_permutevar8x32_ps(sx, h ? rows23 : rows01), dy);
      acc[h] = _mm256_add_ps(acc[h], _mm256_mul_ps(_mm256_cvtepi32_ps(lowbit_hsum8(v)), sc));
    }
  }
  float out[16];
  _mm256_storeu_ps(out, acc[0]);
  _mm256_storeu_ps(out + 8, acc[1]);
  for (int r = 0; r < 4; r++)
    for (int t = 0; t < nt; t++) s[t * s_stride + r] = out[4 * r + t];
}
static void mxfp4_vec_dot4x4_avx2(int64_t n, float *s, size_t s_stride, const void *vx,
                                  size_t x_stride, const void *vy, size_t y_stride) {
  mxfp4_dot4xn(4, n, s, s_stride, vx, x_stride, vy, y_stride);
}
static void mxfp4_vec_dot4xt_avx2(int64_t n, float *s, size_t s_stride, const void *vx,
                                  size_t x_stride, const void *vy, size_t y_stride, int n_tok) {
  if (n_tok == 3)
    mxfp4_dot4xn(3, n, s, s_stride, vx, x_stride, vy, y_stride);
  else
    mxfp4_dot4xn(2, n, s, s_stride, vx, x_stride, vy, y_stride);
}
/* Four rows, one token (decode): vec_dot's sum is a chain of one float add per 32 values in
 * the reference's order, which bounds the row; four rows' chains in the lanes of one vector run
 * abreast. Two blocks a step: their eight row sums reduced by one transpose into lanes 4 j + r,
 * then block j's four products added to the rows' sums, block by block (each lane in vec_dot's
 * order, results equal to it bit for bit); the activations' abs and scale are shared. */
static void mxfp4_vec_dot4_avx2(int64_t n, float *s, const void *vx, size_t x_stride,
                                const void *vy) {
  const int64_t nb = n / QK;
  const block_mxfp4 *x[4];
  for (int r = 0; r < 4; r++) x[r] = (const block_mxfp4 *)((const uint8_t *)vx + r * x_stride);
  const block_q8_0 *y = vy;
  const __m256i ones = _mm256_set1_epi16(1);
  __m128 sum = _mm_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    /* four rows are four streams the hardware prefetcher misses (nllm_prefetch_span) */
    nllm_prefetch_span(
        (const uint8_t *)vx + NLLM_PREFETCH_ROWS * x_stride + 4 * (size_t)b * sizeof(block_mxfp4),
        8 * sizeof(block_mxfp4));
    __m256i v[8];
    uint64_t e8 = 0;
    LB_UNROLL8
    for (int j = 0; j < 2; j++) {
      const __m256i q8 = _mm256_loadu_si256((const __m256i *)y[b + j].qs);
      const __m256i a8 = _mm256_abs_epi8(q8);
      LB_UNROLL8
      for (int r = 0; r < 4; r++) {
        v[4 * j + r] = _mm256_madd_epi16(
            _mm256_maddubs_epi16(a8, _mm256_sign_epi8(mxfp4_w(&x[r][b + j]), q8)), ones);
        e8 |= (uint64_t)x[r][b + j].e << (8 * (4 * j + r));
      }
    }
    const __m256 sx = mxfp4_half_scales(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)e8)));
    const __m128 dy2 =
        _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)y[b].d | (uint32_t)y[b + 1].d << 16)));
    const __m256 dy = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(dy2),
                                               _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
    const __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(lowbit_hsum8(v)), _mm256_mul_ps(sx, dy));
    sum = _mm_add_ps(sum, _mm256_castps256_ps128(p));
    sum = _mm_add_ps(sum, _mm256_extractf128_ps(p, 1));
  }
  if (b < nb) {
    const __m256i q8 = _mm256_loadu_si256((const __m256i *)y[b].qs);
    const __m256i a8 = _mm256_abs_epi8(q8);
    __m256i v[4];
    uint32_t e4 = 0;
    for (int r = 0; r < 4; r++) {
      v[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(a8, _mm256_sign_epi8(mxfp4_w(&x[r][b]), q8)),
                               ones);
      e4 |= (uint32_t)x[r][b].e << (8 * r);
    }
    const __m256i h =
        _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    const __m128i i4 = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    const __m128 sx =
        _mm256_castps256_ps128(mxfp4_half_scales(_mm256_cvtepu8_epi32(_mm_cvtsi32_si128((int)e4))));
    const __m128 dy = _mm_set1_ps(_cvtsh_ss(y[b].d));
    sum = _mm_add_ps(sum, _mm_mul_ps(_mm_cvtepi32_ps(i4), _mm_mul_ps(sx, dy)));
  }
  _mm_storeu_ps(s, sum);
}

/* Crossovers (docs/performance.md, "BLAS crossovers"): TQ1_0 / TQ2_0's integer kernels beat
 * dequantize + the f32 GEMM at every count measured; MXFP4's four-by-four kernel up to 64-80
 * tokens (2048 x 2048, one thread). */
static const nllm_qtype_kernels lowbit_avx2_rows[] = {
    {.type = NLLM_TYPE_TQ1_0,
     .vec_dot = tq1_0_vec_dot_avx2,
     .vec_dot4 = tq1_0_vec_dot4_avx2,
     .vec_dot4x4 = tq1_0_vec_dot4x4_avx2,
     .vec_dot4xt = tq1_0_vec_dot4xt_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_TQ2_0,
     .vec_dot = tq2_0_vec_dot_avx2,
     .vec_dot4 = tq2_0_vec_dot4_avx2,
     .vec_dot4x4 = tq2_0_vec_dot4x4_avx2,
     .vec_dot4xt = tq2_0_vec_dot4xt_avx2,
     .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_MXFP4,
     .vec_dot = mxfp4_vec_dot_avx2,
     .vec_dot4 = mxfp4_vec_dot4_avx2,
     .vec_dot4x4 = mxfp4_vec_dot4x4_avx2,
     .vec_dot4xt = mxfp4_vec_dot4xt_avx2,
     .blas_min_tokens = 80},
};
const nllm_kernel_set nllm_kernels_lowbit_avx2 = {
    lowbit_avx2_rows, sizeof lowbit_avx2_rows / sizeof lowbit_avx2_rows[0]};
