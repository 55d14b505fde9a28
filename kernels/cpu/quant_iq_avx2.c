/* AVX2 dot products of the IQ codebook formats against Q8_K activations: their rows of the AVX2
 * tier (dequantization stays the scalar reference's). The rows read their chunks straight into
 * registers (the layouts are the ones iq_layout.h describes: the tests hold the two to the same
 * results), which measured 15-35% faster than going through the chunk records. The integer sums
 * equal the scalar ones exactly, and the float steps are the same, so the results are
 * bit-identical to quant_iq_ref.c. */
#include <immintrin.h>

#include "cpu/iq_layout.h"

/* Signed 8-bit products without the -128 trap of _mm256_sign_epi8 on the activations: the sign
 * moves onto w (|w| <= 127), and |q8| read as unsigned holds 128 exactly. Pairs summed to 16 bit.
 */
static inline __m256i iq_mul_pairs(__m256i w, __m256i q8) {
  return _mm256_maddubs_epi16(_mm256_abs_epi8(q8), _mm256_sign_epi8(w, q8));
}

static inline int32_t iq_hsum32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

/* The IQ3 formats' eight 4-value grid points of a chunk (same bytes as iq3_*_chunk's grid), each
 * index read as a byte from memory and looked up on its own. On Zen 3 this is 1.2-1.3x faster
 * than computing the indices in a vector register and reading them back through a stack store
 * (round 8's scheme, measured faster on the AVX-512 host), and than vpgatherdd. IQ3_XXS: the
 * chunk's 8 index bytes; IQ3_S: bit k of the chunk's qh byte is bit 8 of index k. */
static inline __m256i iq3_xxs_grid_avx2(const uint8_t *blk, int c) {
  const uint8_t *q = blk + 2 + 8 * c;
  const uint32_t *g = nllm_iq3xxs_grid;
  return _mm256_setr_epi32((int)g[q[0]], (int)g[q[1]], (int)g[q[2]], (int)g[q[3]], (int)g[q[4]],
                           (int)g[q[5]], (int)g[q[6]], (int)g[q[7]]);
}
static inline __m256i iq3_s_grid_avx2(const uint8_t *blk, int c) {
  const uint8_t *q = blk + 2 + 8 * c;
  const unsigned h = blk[2 + QK_K / 4 + c];
  const uint32_t *g = nllm_iq3s_grid;
  return _mm256_setr_epi32((int)g[q[0] | (h << 8 & 256)], (int)g[q[1] | (h << 7 & 256)],
                           (int)g[q[2] | (h << 6 & 256)], (int)g[q[3] | (h << 5 & 256)],
                           (int)g[q[4] | (h << 4 & 256)], (int)g[q[5] | (h << 3 & 256)],
                           (int)g[q[6] | (h << 2 & 256)], (int)g[q[7] | (h << 1 & 256)]);
}

/* The IQ2/IQ3 formats without the generic chunk record: each reader below gives a chunk's 32
 * signed weights and its groups' odd scales (16-bit lanes) straight in registers. The 7-bit sign
 * indices of IQ2_XXS, IQ2_XS and IQ3_XXS go through a table of their 128 sign patterns as +-1
 * bytes (one load per group instead of a parity count and a spread). */
#define IQ_PAR7(i) (((i) ^ (i) >> 1 ^ (i) >> 2 ^ (i) >> 3 ^ (i) >> 4 ^ (i) >> 5 ^ (i) >> 6) & 1)
#define IQ_SIGN_BIT(i, j) ((((i) | IQ_PAR7(i) << 7) >> (j)) & 1)
#define IQ_SIGN_BYTE(i, j) ((uint64_t)(IQ_SIGN_BIT(i, j) ? 0xff : 0x01) << (8 * (j)))
#define IQ_SIGNS(i)                                                                    \
  (IQ_SIGN_BYTE(i, 0) | IQ_SIGN_BYTE(i, 1) | IQ_SIGN_BYTE(i, 2) | IQ_SIGN_BYTE(i, 3) | \
   IQ_SIGN_BYTE(i, 4) | IQ_SIGN_BYTE(i, 5) | IQ_SIGN_BYTE(i, 6) | IQ_SIGN_BYTE(i, 7))
#define IQ_SIGNS4(i) IQ_SIGNS(i), IQ_SIGNS(i + 1), IQ_SIGNS(i + 2), IQ_SIGNS(i + 3)
#define IQ_SIGNS16(i) IQ_SIGNS4(i), IQ_SIGNS4(i + 4), IQ_SIGNS4(i + 8), IQ_SIGNS4(i + 12)
static const uint64_t iq_sign_masks[128] = {IQ_SIGNS16(0),  IQ_SIGNS16(16), IQ_SIGNS16(32),
                                            IQ_SIGNS16(48), IQ_SIGNS16(64), IQ_SIGNS16(80),
                                            IQ_SIGNS16(96), IQ_SIGNS16(112)};

static inline __m256i iq_masks4(unsigned s0, unsigned s1, unsigned s2, unsigned s3) {
  return _mm256_set_epi64x((int64_t)iq_sign_masks[s3], (int64_t)iq_sign_masks[s2],
                           (int64_t)iq_sign_masks[s1], (int64_t)iq_sign_masks[s0]);
}
static inline __m256i iq_grid4(const uint64_t *g, unsigned i0, unsigned i1, unsigned i2,
                               unsigned i3) {
  return _mm256_set_epi64x((int64_t)g[i3], (int64_t)g[i2], (int64_t)g[i1], (int64_t)g[i0]);
}

#define IQ_UNROLL8 _Pragma("GCC unroll 8")

/* IQ2_XS, IQ2_S and IQ3_S read a block's odd scales once: dword c holds chunk c's two (first and
 * last 16 values) as 16-bit halves, and a chunk takes its own by one permute (and a byte shuffle
 * where the halves differ) instead of scalar extraction and broadcasts: 6-10% faster on Zen 3
 * for IQ2_XS / IQ2_S. IQ2_XXS and IQ3_XXS keep the scalar scale of the sign word they read
 * anyway (the permute measured 1-2% slower there). */
typedef __m256i (*iq_odd_fn)(const uint8_t *blk);
typedef __m256i (*iq_weights_fn)(const uint8_t *blk, int c, __m256i *odd16);

/* 2s + 1 from 4-bit s in both 16-bit halves: lo, hi hold s in the low nibble of each dword */
static inline __m256i iq_odd_pair(__m256i lo, __m256i hi) {
  const __m256i s =
      _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi32(15)),
                      _mm256_slli_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(15)), 16));
  return _mm256_add_epi16(_mm256_add_epi16(s, s), _mm256_set1_epi16(1));
}
/* IQ2_XS / IQ2_S: a scale byte per chunk, low nibble the first 16 values */
static inline __m256i iq2_nib_odd(const uint8_t *sc) {
  const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sc));
  return iq_odd_pair(v, _mm256_srli_epi32(v, 4));
}
static inline __m256i iq2_xs_odd(const uint8_t *blk) {
  return iq2_nib_odd(blk + 2 + QK_K / 4);
}
static inline __m256i iq2_s_odd(const uint8_t *blk) {
  return iq2_nib_odd(blk + 2 + QK_K / 4 + QK_K / 32);
}
/* IQ3_S: nibble c of the four scale bytes */
static inline __m256i iq3_s_odd(const uint8_t *blk) {
  const __m256i t =
      _mm256_srlv_epi32(_mm256_set1_epi32((int)iq_rd32(blk + 2 + QK_K / 4 + QK_K / 32 + QK_K / 8)),
                        _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
  return iq_odd_pair(t, t);
}

static inline __m256i iq2_xxs_weights(const uint8_t *blk, int c, __m256i *odd16) {
  const uint8_t *q = blk + 2 + 8 * c;
  const uint32_t aux = iq_rd32(q + 4);
  *odd16 = _mm256_set1_epi16((short)(2 * (aux >> 28) + 1));
  const __m256i grid = iq_grid4(nllm_iq2xxs_grid, q[0], q[1], q[2], q[3]);
  return _mm256_sign_epi8(
      grid, iq_masks4(aux & 127, (aux >> 7) & 127, (aux >> 14) & 127, (aux >> 21) & 127));
}
static inline __m256i iq2_xs_weights(const uint8_t *blk, int c, __m256i *odd16) {
  (void)odd16;
  const uint8_t *q = blk + 2 + 8 * c;
  const unsigned v0 = iq_rd16(q), v1 = iq_rd16(q + 2), v2 = iq_rd16(q + 4), v3 = iq_rd16(q + 6);
  const __m256i grid = iq_grid4(nllm_iq2xs_grid, v0 & 511, v1 & 511, v2 & 511, v3 & 511);
  return _mm256_sign_epi8(grid, iq_masks4(v0 >> 9, v1 >> 9, v2 >> 9, v3 >> 9));
}
static inline __m256i iq3_xxs_weights(const uint8_t *blk, int c, __m256i *odd16) {
  const uint32_t aux = iq_rd32(blk + 2 + QK_K / 4 + 4 * c);
  *odd16 = _mm256_set1_epi16((short)(2 * (aux >> 28) + 1));
  return _mm256_sign_epi8(
      iq3_xxs_grid_avx2(blk, c),
      iq_masks4(aux & 127, (aux >> 7) & 127, (aux >> 14) & 127, (aux >> 21) & 127));
}

/* The same integer sums and float steps as the reference. */
static inline __attribute__((always_inline)) void iq_signed_vec_dot_avx2(
    int64_t n, float *s, const void *vx, const void *vy, size_t block_bytes, iq_weights_fn weights,
    iq_odd_fn odd_fn, int halves, float group_mul) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  const __m256i pair_spread = _mm256_set_epi64x(0x0302030203020302, 0x0302030203020302,
                                                0x0100010001000100, 0x0100010001000100);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const uint8_t *blk = x + (size_t)i * block_bytes;
    __m256i acc = _mm256_setzero_si256();
    const __m256i oddv = odd_fn ? odd_fn(blk) : _mm256_setzero_si256();
    /* unrolled, each chunk's offsets and scale nibble are constants: measured faster */
    IQ_UNROLL8
    for (int c = 0; c < QK_K / 32; c++) {
      __m256i odd16 = _mm256_permutevar8x32_epi32(oddv, _mm256_set1_epi32(c));
      if (halves) odd16 = _mm256_shuffle_epi8(odd16, pair_spread);
      const __m256i w = weights(blk, c, &odd16);
      const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * c));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(iq_mul_pairs(w, q8), odd16));
    }
    float d = _cvtsh_ss(iq_rd16(blk));
    /* two statements: clang's default -ffp-contract=on would fuse one into an FMA, and the
     * result would no longer be the reference's */
    const float p = (d * y[i].d) * (float)iq_hsum32(acc);
    sum += p;
  }
  *s = sum * group_mul;
}

static void iq2_xxs_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq_signed_vec_dot_avx2(n, s, vx, vy, sizeof(block_iq2_xxs), iq2_xxs_weights, NULL, 0, 0.125f);
}
static void iq2_xs_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq_signed_vec_dot_avx2(n, s, vx, vy, sizeof(block_iq2_xs), iq2_xs_weights, iq2_xs_odd, 1, 0.125f);
}
/* IQ2_S and IQ3_S, whose signs are explicit bytes, take them as a 0 / -1 mask m on the
 * activations: the grid bytes (<= 62) are maddubs' unsigned operand, and g * (q8 ^ m) - g * m =
 * g * ((q8 ^ m) - m) = -g * q8 where m = -1, exact in 16 bit for q8 = -128 too (the byte
 * negation alone would overflow). One operation fewer per 32 values than abs and two sign
 * steps: IQ2_S 26.4 -> 25.7 ns per 256 values on Zen 3. */
static inline __m256i iq2_s_grid_avx2(const uint8_t *blk, int c) {
  const uint8_t *qs = blk + 2 + 4 * c;
  const unsigned qh = blk[2 + QK_K / 4 + c];
  return iq_grid4(nllm_iq2s_grid, qs[0] | (qh << 8 & 0x300), qs[1] | (qh << 6 & 0x300),
                  qs[2] | (qh << 4 & 0x300), qs[3] | (qh << 2 & 0x300));
}
static inline __attribute__((always_inline)) void iq_masked_vec_dot_avx2(
    int64_t n, float *s, const void *vx, const void *vy, size_t block_bytes,
    __m256i (*grid_fn)(const uint8_t *, int), size_t sign_off, iq_odd_fn odd_fn, int halves,
    float group_mul) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  const __m256i pair_spread = _mm256_set_epi64x(0x0302030203020302, 0x0302030203020302,
                                                0x0100010001000100, 0x0100010001000100);
  const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
  const __m256i bits = _mm256_set1_epi64x((int64_t)0x8040201008040201);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const uint8_t *blk = x + (size_t)i * block_bytes;
    __m256i acc = _mm256_setzero_si256();
    const __m256i oddv = odd_fn(blk);
    IQ_UNROLL8
    for (int c = 0; c < QK_K / 32; c++) {
      __m256i odd16 = _mm256_permutevar8x32_epi32(oddv, _mm256_set1_epi32(c));
      if (halves) odd16 = _mm256_shuffle_epi8(odd16, pair_spread);
      const __m256i grid = grid_fn(blk, c);
      const __m256i sw = _mm256_set1_epi32((int)iq_rd32(blk + sign_off + 4 * c));
      const __m256i m =
          _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(sw, spread), bits), bits);
      const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * c));
      const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(grid, _mm256_xor_si256(q8, m)),
                                           _mm256_maddubs_epi16(grid, m));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p16, odd16));
    }
    float d = _cvtsh_ss(iq_rd16(blk));
    /* two statements: clang's default -ffp-contract=on would fuse one into an FMA, and the
     * result would no longer be the reference's */
    const float p = (d * y[i].d) * (float)iq_hsum32(acc);
    sum += p;
  }
  *s = sum * group_mul;
}
static void iq2_s_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq_masked_vec_dot_avx2(n, s, vx, vy, sizeof(block_iq2_s), iq2_s_grid_avx2, 2 + QK_K / 8,
                         iq2_s_odd, 1, 0.125f);
}
static void iq3_xxs_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq_signed_vec_dot_avx2(n, s, vx, vy, sizeof(block_iq3_xxs), iq3_xxs_weights, NULL, 0, 0.25f);
}
static void iq3_s_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq_masked_vec_dot_avx2(n, s, vx, vy, sizeof(block_iq3_s), iq3_s_grid_avx2,
                         2 + QK_K / 4 + QK_K / 32, iq3_s_odd, 0, 1.0f);
}
/* IQ1_S / IQ1_M as unsigned weights (the AVX-512 rows' scheme, docs/performance.md "Round 9"): a
 * value is 8 * point + shift (point -1, 0, 1; shift +-1), so w = value + 9 = 8 (point + 1) +
 * (shift + 1) lies in 0..18 and is maddubs' unsigned operand against the signed activations as
 * they are (no abs, no sign steps). The 9 * sum(q8) that comes off each group is the Q8_K bsums
 * times the odd scales, one madd per block that starts the accumulator. Same integer sum as the
 * reference, same float steps. (point + 1) << 3 stays inside each byte: point + 1 <= 2. */
static inline __m256i iq1_w(__m256i grid, __m256i shift1) {
  return _mm256_or_si256(_mm256_slli_epi16(_mm256_add_epi8(grid, _mm256_set1_epi8(1)), 3), shift1);
}

static void iq1_s_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const uint8_t *blk = x + (size_t)i * sizeof(block_iq1_s);
    /* chunk c's qh word: bits 12..14 its scale, bit 15 the sign of its shift */
    const __m128i qh = _mm_loadu_si128((const __m128i *)(blk + 2 + QK_K / 8));
    const __m128i odd8 =
        _mm_add_epi16(_mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qh, 12), _mm_set1_epi16(7)), 1),
                      _mm_set1_epi16(1));
    /* chunk c's odd scale in both halves of dword c; its shift + 1 (0 or 2) in every byte of
     * dword c: a permute per chunk broadcasts them */
    const __m256i odd16 =
        _mm256_set_m128i(_mm_unpackhi_epi16(odd8, odd8), _mm_unpacklo_epi16(odd8, odd8));
    const __m256i sh1 =
        _mm256_andnot_si256(_mm256_srai_epi32(_mm256_slli_epi32(_mm256_cvtepu16_epi32(qh), 16), 31),
                            _mm256_set1_epi8(2));
    __m256i acc = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums),
                                    _mm256_mullo_epi16(odd16, _mm256_set1_epi16(-9)));
    IQ_UNROLL8
    for (int c = 0; c < QK_K / 32; c++) {
      const uint8_t *qs = blk + 2 + 4 * c;
      const unsigned h = iq_rd16(blk + 2 + QK_K / 8 + 2 * c);
      const __m256i grid =
          iq_grid4(nllm_iq1s_grid, qs[0] | (h << 8 & 0x700), qs[1] | (h << 5 & 0x700),
                   qs[2] | (h << 2 & 0x700), qs[3] | (h >> 1 & 0x700));
      const __m256i cc = _mm256_set1_epi32(c);
      const __m256i w = iq1_w(grid, _mm256_permutevar8x32_epi32(sh1, cc));
      const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * c));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, q8),
                                                    _mm256_permutevar8x32_epi32(odd16, cc)));
    }
    float d = _cvtsh_ss(iq_rd16(blk));
    /* two statements: clang's default -ffp-contract=on would fuse one into an FMA, and the
     * result would no longer be the reference's */
    const float p = (d * y[i].d) * (float)iq_hsum32(acc);
    sum += p;
  }
  *s = sum * 0.125f;
}

static void iq1_m_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  /* a qh byte's two nibbles: low for the even group, high for the odd one; bit 3 of each is
   * the sign of that group's shift */
  const __m256i nib_bit = _mm256_set_epi64x((int64_t)0x8080808080808080, 0x0808080808080808,
                                            (int64_t)0x8080808080808080, 0x0808080808080808);
  const __m256i nib_spread = _mm256_set_epi64x(0x0101010101010101, 0x0101010101010101, 0, 0);
  const __m256i word_spread = _mm256_set_epi64x(0x0908090809080908, 0x0100010001000100,
                                                0x0908090809080908, 0x0100010001000100);
  const __m256i pair_spread = _mm256_set_epi64x(0x0302030203020302, 0x0302030203020302,
                                                0x0100010001000100, 0x0100010001000100);
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const uint8_t *blk = x + (size_t)i * sizeof(block_iq1_m);
    const uint8_t *sc = blk + QK_K / 8 + QK_K / 16;
    /* the 16 three-bit scales, k-th for values 16k .. 16k + 15: word k / 4, bits 3 (k % 4);
     * each word in its four 16-bit lanes, lane m multiplied up so its field is on top */
    const __m256i sw = _mm256_shuffle_epi8(
        _mm256_cvtepu16_epi64(_mm_loadl_epi64((const __m128i *)sc)), word_spread);
    const __m256i top = _mm256_mullo_epi16(sw, _mm256_set1_epi64x(0x0010008004002000));
    const __m256i odd16 = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16(top, 12), _mm256_set1_epi16(14)), _mm256_set1_epi16(1));
    __m256i acc = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums),
                                    _mm256_mullo_epi16(odd16, _mm256_set1_epi16(-9)));
    IQ_UNROLL8
    for (int c = 0; c < QK_K / 32; c++) {
      const uint8_t *qs = blk + 4 * c;
      const unsigned h = iq_rd16(blk + QK_K / 8 + 2 * c);
      const __m256i grid =
          iq_grid4(nllm_iq1s_grid, qs[0] | (h << 8 & 0x700), qs[1] | (h << 4 & 0x700),
                   qs[2] | (h & 0x700), qs[3] | (h >> 4 & 0x700));
      /* shift + 1: 0 where the nibble's bit 3 is set, else 2 */
      const __m256i hb = _mm256_shuffle_epi8(_mm256_set1_epi16((short)h), nib_spread);
      const __m256i sh1 = _mm256_andnot_si256(
          _mm256_cmpeq_epi8(_mm256_and_si256(hb, nib_bit), nib_bit), _mm256_set1_epi8(2));
      const __m256i w = iq1_w(grid, sh1);
      const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * c));
      /* odd scales 2c (first 16 values), 2c + 1 (last 16) */
      const __m256i o = _mm256_shuffle_epi8(
          _mm256_permutevar8x32_epi32(odd16, _mm256_set1_epi32(c)), pair_spread);
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, q8), o));
    }
    float d = _cvtsh_ss(iq1_m_block_h(blk));
    const float p = (d * y[i].d) * (float)iq_hsum32(acc);
    sum += p;
  }
  *s = sum * 0.125f;
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
