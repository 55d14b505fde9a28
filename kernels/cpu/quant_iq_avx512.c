/* AVX-512 (BW, VL, VNNI, VBMI) dot products of the IQ codebook formats against Q8_K: two
 * chunks (64 values, 8 groups) per step, for one row (vec_dot), four rows (vec_dot4, decode) and
 * four rows by four tokens (vec_dot4x4, batches and short prompts). Per step:
 * - the signs are one 64-bit mask: explicit sign bytes (IQ2_S, IQ3_S) are the mask as stored;
 *   the 7-bit sign indices (IQ2_XXS, IQ2_XS, IQ3_XXS) are cut out of their words by one
 *   vpmultishiftqb and completed with their parity bit by one vpermi2b through the 128 sign
 *   bytes; IQ1's values (8 * ternary point +- 1) come signed, with no mask;
 * - the sign of each activation joins that mask (XOR with vpmovb2m), so the weights are
 *   negated once by a masked subtraction and |q8| (128 for -128, read unsigned) is the other
 *   operand of vpmaddubsw: no -128 trap and no vpsignb (AVX-512 has none);
 * - the grid points are scalar loads put together in a register (vpgatherqq / vpgatherdd
 *   measured 1.3-1.9x slower per block on the AMD cores here, docs/performance.md);
 * - the odd group scales multiply in by vpdpwssd.
 * The integer sums equal the scalar ones exactly and the float steps are the reference's, so the
 * results are bit-identical to quant_iq_ref.c. */
#include <immintrin.h>
#include <string.h>

#include "cpu/hsum_avx512.h"
#include "cpu/iq_layout.h"

/* The 128 sign bytes of the 7-bit sign indices (nllm_iq_signs8), as two vpermi2b tables. */
#define IQ_PAR7(i) (((i) ^ (i) >> 1 ^ (i) >> 2 ^ (i) >> 3 ^ (i) >> 4 ^ (i) >> 5 ^ (i) >> 6) & 1)
#define IQ_SB(i) (char)((i) | IQ_PAR7(i) << 7)
#define IQ_SB4(i) IQ_SB(i), IQ_SB(i + 1), IQ_SB(i + 2), IQ_SB(i + 3)
#define IQ_SB16(i) IQ_SB4(i), IQ_SB4(i + 4), IQ_SB4(i + 8), IQ_SB4(i + 12)
#define IQ_SB64(i) IQ_SB16(i), IQ_SB16(i + 16), IQ_SB16(i + 32), IQ_SB16(i + 48)
static const char iq_sign_bytes[128] __attribute__((aligned(64))) = {IQ_SB64(0), IQ_SB64(64)};

/* 8 sign indices (their 7 bits at the given bit offsets of x's two quadwords, four each; the
 * bits above them are ignored) as the 64-bit mask of their 64 signs. */
static inline uint64_t iq_sign7_mask(__m128i x, __m128i offsets) {
  const __m512i lo = _mm512_load_si512((const void *)iq_sign_bytes);
  const __m512i hi = _mm512_load_si512((const void *)(iq_sign_bytes + 64));
  /* bytes 0-3 and 8-11 hold the indices; pack them into the low quadword */
  __m128i v = _mm_multishift_epi64_epi8(offsets, x);
  v = _mm_shuffle_epi32(v, _MM_SHUFFLE(3, 1, 2, 0));
  const __m512i s = _mm512_permutex2var_epi8(lo, _mm512_zextsi128_si512(v), hi);
  return (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(s));
}

/* 16-bit lanes of odd scales 2s + 1, s the nibble of v at each lane's shift */
static inline __m512i iq_odd16(__m512i v, __m512i shifts) {
  const __m512i s = _mm512_and_si512(_mm512_srlv_epi16(v, shifts), _mm512_set1_epi16(15));
  return _mm512_or_si512(_mm512_slli_epi16(s, 1), _mm512_set1_epi16(1));
}
/* the two chunks' scales: the top nibbles of 16-bit words a (chunk 0) and b (chunk 1) of x */
static inline __m512i iq_odd16_top(__m128i x, int a, int b) {
  const __m512i sel = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)a)),
                                         _mm256_set1_epi16((short)b), 1);
  const __m512i v = _mm512_permutexvar_epi16(sel, _mm512_castsi128_si512(x));
  return _mm512_or_si512(_mm512_slli_epi16(_mm512_srli_epi16(v, 12), 1), _mm512_set1_epi16(1));
}
/* IQ2_XS / IQ2_S: a scale byte per chunk, low nibble for its first 16 values */
static inline __m512i iq_odd16_4nibbles(unsigned two_bytes) {
  const __m512i shifts = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(4), _mm_setzero_si128())),
      _mm256_set_m128i(_mm_set1_epi16(12), _mm_set1_epi16(8)), 1);
  return iq_odd16(_mm512_set1_epi16((short)two_bytes), shifts);
}
/* IQ3_S: one scale byte for the two chunks, low nibble first */
static inline __m512i iq_odd16_2nibbles(unsigned byte) {
  const __m512i shifts = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
  return iq_odd16(_mm512_set1_epi16((short)byte), shifts);
}

/* The block's F16 scale: leading, but for IQ1_M spread over its scale words' top nibbles (the
 * block size tells the formats apart, a constant once inlined) */
static inline uint16_t iq_block_h(const uint8_t *blk, size_t block_bytes) {
  return block_bytes == sizeof(block_iq1_m) ? iq1_m_block_h(blk) : iq_rd16(blk);
}

static inline uint64_t iq_rd64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static inline __m512i iq_grid8(const uint64_t *g, unsigned i0, unsigned i1, unsigned i2,
                               unsigned i3, unsigned i4, unsigned i5, unsigned i6, unsigned i7) {
  const __m256i lo =
      _mm256_set_epi64x((long long)g[i3], (long long)g[i2], (long long)g[i1], (long long)g[i0]);
  const __m256i hi =
      _mm256_set_epi64x((long long)g[i7], (long long)g[i6], (long long)g[i5], (long long)g[i4]);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

static inline __m512i iq_grid16(const uint32_t *g, unsigned i0, unsigned i1, unsigned i2,
                                unsigned i3, unsigned i4, unsigned i5, unsigned i6, unsigned i7,
                                unsigned i8, unsigned i9, unsigned i10, unsigned i11, unsigned i12,
                                unsigned i13, unsigned i14, unsigned i15) {
  return _mm512_setr_epi32((int)g[i0], (int)g[i1], (int)g[i2], (int)g[i3], (int)g[i4], (int)g[i5],
                           (int)g[i6], (int)g[i7], (int)g[i8], (int)g[i9], (int)g[i10], (int)g[i11],
                           (int)g[i12], (int)g[i13], (int)g[i14], (int)g[i15]);
}

/* One step: 64 grid magnitudes (bytes), the mask of their minus signs, their odd scales. */
typedef struct {
  __m512i grid;
  uint64_t neg;
  __m512i odd16;
} iq_step;

/* IQ2_XXS: per chunk 4 index bytes, then a word of four sign indices and the scale on top */
static inline __attribute__((always_inline)) iq_step iq2_xxs_step(const uint8_t *blk, int p) {
  const __m128i x = _mm_loadu_si128((const __m128i *)(blk + 2 + 16 * p));
  const uint32_t i0 = iq_rd32(blk + 2 + 16 * p), i1 = iq_rd32(blk + 10 + 16 * p);
  iq_step st;
  st.grid = iq_grid8(nllm_iq2xxs_grid, i0 & 255, i0 >> 8 & 255, i0 >> 16 & 255, i0 >> 24, i1 & 255,
                     i1 >> 8 & 255, i1 >> 16 & 255, i1 >> 24);
  st.neg = iq_sign7_mask(x, _mm_setr_epi8(32, 39, 46, 53, 0, 0, 0, 0, 32, 39, 46, 53, 0, 0, 0, 0));
  st.odd16 = iq_odd16_top(x, 3, 7);
  return st;
}

/* IQ2_XS: per group a word of a 9-bit index and a 7-bit sign index */
static inline __attribute__((always_inline)) iq_step iq2_xs_step(const uint8_t *blk, int p) {
  const __m128i x = _mm_loadu_si128((const __m128i *)(blk + 2 + 16 * p));
  uint16_t ix[8] __attribute__((aligned(16)));
  _mm_store_si128((__m128i *)ix, _mm_and_si128(x, _mm_set1_epi16(511)));
  iq_step st;
  st.grid = iq_grid8(nllm_iq2xs_grid, ix[0], ix[1], ix[2], ix[3], ix[4], ix[5], ix[6], ix[7]);
  st.neg = iq_sign7_mask(x, _mm_setr_epi8(9, 25, 41, 57, 0, 0, 0, 0, 9, 25, 41, 57, 0, 0, 0, 0));
  st.odd16 = iq_odd16_4nibbles(iq_rd16(blk + 2 + QK_K / 4 + 2 * p));
  return st;
}
/* IQ2_S: index byte + 2 bits of the chunk's qh byte; explicit sign bytes */
static inline __attribute__((always_inline)) iq_step iq2_s_step(const uint8_t *blk, int p) {
  const __m512i lo = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * p)));
  const unsigned qh = iq_rd16(blk + 2 + QK_K / 4 + 2 * p);
  /* group g's two bits are bits 2g, 2g + 1 of the two qh bytes: shifted to bits 8, 9 */
  const __m512i hi =
      _mm512_and_si512(_mm512_srlv_epi64(_mm512_set1_epi64((long long)qh << 8),
                                         _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14)),
                       _mm512_set1_epi64(0x300));
  iq_step st;
  uint64_t ix[8] __attribute__((aligned(64)));
  _mm512_store_si512((void *)ix, _mm512_or_si512(lo, hi));
  st.grid =
      iq_grid8(nllm_iq2s_grid, (unsigned)ix[0], (unsigned)ix[1], (unsigned)ix[2], (unsigned)ix[3],
               (unsigned)ix[4], (unsigned)ix[5], (unsigned)ix[6], (unsigned)ix[7]);
  st.neg = iq_rd64(blk + 2 + QK_K / 8 + 8 * p);
  st.odd16 = iq_odd16_4nibbles(iq_rd16(blk + 2 + QK_K / 4 + QK_K / 32 + 2 * p));
  return st;
}
/* IQ3_XXS: 16 index bytes into a grid of 4-value points; a word per chunk of four sign indices
 * and the scale on top */
static inline __attribute__((always_inline)) iq_step iq3_xxs_step(const uint8_t *blk, int p) {
  const uint8_t *q = blk + 2 + 16 * p;
  const __m128i aux = _mm_loadl_epi64((const __m128i *)(blk + 2 + QK_K / 4 + 8 * p));
  iq_step st;
  st.grid = iq_grid16(nllm_iq3xxs_grid, q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8], q[9],
                      q[10], q[11], q[12], q[13], q[14], q[15]);
  st.neg = iq_sign7_mask(_mm_cvtepu32_epi64(aux),
                         _mm_setr_epi8(0, 7, 14, 21, 0, 0, 0, 0, 0, 7, 14, 21, 0, 0, 0, 0));
  st.odd16 = iq_odd16_top(aux, 1, 3);
  return st;
}
/* IQ3_S: index byte + bit k of the two qh bytes for index k; explicit sign bytes; a scale
 * nibble per chunk */
static inline __attribute__((always_inline)) iq_step iq3_s_step(const uint8_t *blk, int p) {
  const __m512i lo = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2 + 16 * p)));
  const unsigned qh = iq_rd16(blk + 2 + QK_K / 4 + 2 * p);
  const __m512i hi = _mm512_and_si512(
      _mm512_srlv_epi32(_mm512_set1_epi32((int)(qh << 8)),
                        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)),
      _mm512_set1_epi32(256));
  iq_step st;
  uint32_t ix[16] __attribute__((aligned(64)));
  _mm512_store_si512((void *)ix, _mm512_or_si512(lo, hi));
  st.grid = iq_grid16(nllm_iq3s_grid, ix[0], ix[1], ix[2], ix[3], ix[4], ix[5], ix[6], ix[7], ix[8],
                      ix[9], ix[10], ix[11], ix[12], ix[13], ix[14], ix[15]);
  st.neg = iq_rd64(blk + 2 + QK_K / 4 + QK_K / 32 + 8 * p);
  st.odd16 = iq_odd16_2nibbles(blk[2 + QK_K / 4 + QK_K / 32 + QK_K / 8 + p]);
  return st;
}

/* IQ1_S: ternary grid points (bytes -1, 0, 1) by an 11-bit index (a qs byte, 3 bits of the
 * chunk's qh word); each value is 8 * point +- 1 (the sign of the chunk's shift), in the step as
 * a signed byte with no separate signs */
static inline __attribute__((always_inline)) iq_step iq1_s_step(const uint8_t *blk, int p) {
  const __m512i lo = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * p)));
  const uint32_t qh = iq_rd32(blk + 2 + QK_K / 8 + 4 * p);
  const __m512i hi = _mm512_slli_epi64(
      _mm512_and_si512(
          _mm512_srlv_epi64(_mm512_set1_epi64(qh), _mm512_setr_epi64(0, 3, 6, 9, 16, 19, 22, 25)),
          _mm512_set1_epi64(7)),
      8);
  uint64_t ix[8] __attribute__((aligned(64)));
  _mm512_store_si512((void *)ix, _mm512_or_si512(lo, hi));
  const __m512i g =
      iq_grid8(nllm_iq1s_grid, (unsigned)ix[0], (unsigned)ix[1], (unsigned)ix[2], (unsigned)ix[3],
               (unsigned)ix[4], (unsigned)ix[5], (unsigned)ix[6], (unsigned)ix[7]);
  const unsigned h0 = qh & 0xffff, h1 = qh >> 16;
  const __m512i shift =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8(h0 >> 15 ? -1 : 1)),
                         _mm256_set1_epi8(h1 >> 15 ? -1 : 1), 1);
  const __m512i g2 = _mm512_add_epi8(g, g), g4 = _mm512_add_epi8(g2, g2);
  iq_step st;
  st.grid = _mm512_add_epi8(_mm512_add_epi8(g4, g4), shift);
  st.neg = 0;
  st.odd16 =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)(2 * (h0 >> 12 & 7) + 1))),
                         _mm256_set1_epi16((short)(2 * (h1 >> 12 & 7) + 1)), 1);
  return st;
}

/* IQ1_M: per group 11 index bits (a qs byte, the low 3 bits of a qh nibble) and the sign of its
 * own shift (the nibble's top bit); a 3-bit scale per 16 values, four to a scale word */
static inline __attribute__((always_inline)) iq_step iq1_m_step(const uint8_t *blk, int p) {
  const __m512i lo = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(blk + 8 * p)));
  const __m512i nib = _mm512_srlv_epi64(_mm512_set1_epi64(iq_rd32(blk + QK_K / 8 + 4 * p)),
                                        _mm512_setr_epi64(0, 4, 8, 12, 16, 20, 24, 28));
  const __m512i hi = _mm512_slli_epi64(_mm512_and_si512(nib, _mm512_set1_epi64(7)), 8);
  uint64_t ix[8] __attribute__((aligned(64)));
  _mm512_store_si512((void *)ix, _mm512_or_si512(lo, hi));
  const __m512i g =
      iq_grid8(nllm_iq1s_grid, (unsigned)ix[0], (unsigned)ix[1], (unsigned)ix[2], (unsigned)ix[3],
               (unsigned)ix[4], (unsigned)ix[5], (unsigned)ix[6], (unsigned)ix[7]);
  const __m512i shift = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(nib, _mm512_set1_epi64(8)),
                                                _mm512_set1_epi8(1), _mm512_set1_epi8(-1));
  const __m512i g2 = _mm512_add_epi8(g, g), g4 = _mm512_add_epi8(g2, g2);
  const __m512i shifts = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16(3), _mm_setzero_si128())),
      _mm256_set_m128i(_mm_set1_epi16(9), _mm_set1_epi16(6)), 1);
  const __m512i sc = _mm512_and_si512(
      _mm512_srlv_epi16(_mm512_set1_epi16((short)iq_rd16(blk + QK_K / 8 + QK_K / 16 + 2 * p)),
                        shifts),
      _mm512_set1_epi16(7));
  iq_step st;
  st.grid = _mm512_add_epi8(_mm512_add_epi8(g4, g4), shift);
  st.neg = 0;
  st.odd16 = _mm512_or_si512(_mm512_slli_epi16(sc, 1), _mm512_set1_epi16(1));
  return st;
}

typedef iq_step (*iq_step_fn)(const uint8_t *blk, int p);

static inline __attribute__((always_inline)) void iq_vec_dot_avx512(int64_t n, float *s,
                                                                    const void *vx, const void *vy,
                                                                    size_t block_bytes,
                                                                    iq_step_fn step,
                                                                    float group_mul) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const uint8_t *blk = x + (size_t)i * block_bytes;
    __m512i acc = _mm512_setzero_si512();
    _Pragma("GCC unroll 4") for (int p = 0; p < QK_K / 64; p++) {
      const iq_step st = step(blk, p);
      const __m512i q8 = _mm512_loadu_si512((const void *)(y[i].qs + 64 * p));
      const __mmask64 neg = _cvtu64_mask64(st.neg) ^ _mm512_movepi8_mask(q8);
      const __m512i w = _mm512_mask_sub_epi8(st.grid, neg, _mm512_setzero_si512(), st.grid);
      acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(_mm512_abs_epi8(q8), w), st.odd16);
    }
    const float d = _cvtsh_ss(iq_block_h(blk, block_bytes));
    /* two statements: clang's default -ffp-contract=on would fuse one into an FMA, and the
     * result would no longer be the reference's */
    const float pr = (d * y[i].d) * (float)_mm512_reduce_add_epi32(acc);
    sum += pr;
  }
  *s = sum * group_mul;
}

/* Four rows by nt (1 or 4) tokens: each step's grid points, signs and scales are read once per
 * row and used for every token (the batched and prompt paths); per pair the same integer sums
 * and float steps as iq_vec_dot_avx512, so each result equals vec_dot's: accumulator 4t + r is
 * (row r, token t), and the pairs' float sums are the lanes of one vector (each lane the
 * reference's chain). s[t * s_stride + r]. */
static inline __attribute__((always_inline)) void iq_vec_dot4x4_avx512(
    int64_t n, float *s, size_t s_stride, const void *vx, size_t x_stride, const void *vy,
    size_t y_stride, int nt, size_t block_bytes, iq_step_fn step, float group_mul) {
  const uint8_t *x = vx, *yb = vy;
  __m128 sum4 = _mm_setzero_ps();
  __m512 sum16 = _mm512_setzero_ps();
  const __m512i tok_of_lane = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t i = 0; i < n / QK_K; i++) {
    const uint8_t *blk[4];
    const block_q8_K *y[4];
    IQ_UNROLL4
    for (int r = 0; r < 4; r++) blk[r] = x + r * x_stride + (size_t)i * block_bytes;
    IQ_UNROLL4
    for (int t = 0; t < nt; t++) y[t] = (const block_q8_K *)(yb + t * y_stride) + i;
    __m512i acc[16];
    IQ_UNROLL4
    for (int r = 0; r < 4; r++) IQ_UNROLL4
    for (int t = 0; t < nt; t++) acc[4 * t + r] = _mm512_setzero_si512();
    IQ_UNROLL4
    for (int p = 0; p < QK_K / 64; p++) {
      iq_step st[4];
      IQ_UNROLL4
      for (int r = 0; r < 4; r++) st[r] = step(blk[r], p);
      IQ_UNROLL4
      for (int t = 0; t < nt; t++) {
        const __m512i q8 = _mm512_loadu_si512((const void *)(y[t]->qs + 64 * p));
        const __mmask64 qneg = _mm512_movepi8_mask(q8);
        const __m512i aq = _mm512_abs_epi8(q8);
        IQ_UNROLL4
        for (int r = 0; r < 4; r++) {
          const __mmask64 neg = _cvtu64_mask64(st[r].neg) ^ qneg;
          const __m512i w =
              _mm512_mask_sub_epi8(st[r].grid, neg, _mm512_setzero_si512(), st[r].grid);
          acc[4 * t + r] =
              _mm512_dpwssd_epi32(acc[4 * t + r], _mm512_maddubs_epi16(aq, w), st[r].odd16);
        }
      }
    }
    const __m128 d = _mm_cvtph_ps(_mm_setr_epi16(
        (short)iq_block_h(blk[0], block_bytes), (short)iq_block_h(blk[1], block_bytes),
        (short)iq_block_h(blk[2], block_bytes), (short)iq_block_h(blk[3], block_bytes), 0, 0, 0,
        0));
    if (nt == 1) {
      const __m128 sc = _mm_mul_ps(d, _mm_set1_ps(y[0]->d));
      sum4 = _mm_add_ps(sum4, _mm_mul_ps(sc, _mm_cvtepi32_ps(hsum_x4(acc))));
    } else {
      const __m512 dy = _mm512_permutexvar_ps(
          tok_of_lane, _mm512_castps128_ps512(_mm_setr_ps(y[0]->d, y[1]->d, y[2]->d, y[3]->d)));
      const __m512 sc = _mm512_mul_ps(_mm512_broadcast_f32x4(d), dy);
      sum16 = _mm512_add_ps(sum16, _mm512_mul_ps(sc, _mm512_cvtepi32_ps(hsum_x16(acc))));
    }
  }
  if (nt == 1) {
    _mm_storeu_ps(s, _mm_mul_ps(sum4, _mm_set1_ps(group_mul)));
    return;
  }
  float out[16];
  _mm512_storeu_ps(out, _mm512_mul_ps(sum16, _mm512_set1_ps(group_mul)));
  IQ_UNROLL4
  for (int t = 0; t < 4; t++) memcpy(s + t * s_stride, out + 4 * t, 4 * sizeof(float));
}

static void iq2_xxs_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq2_xxs), iq2_xxs_step, 0.125f);
}
static void iq2_xs_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq2_xs), iq2_xs_step, 0.125f);
}
static void iq2_s_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq2_s), iq2_s_step, 0.125f);
}
static void iq3_xxs_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq3_xxs), iq3_xxs_step, 0.25f);
}
static void iq3_s_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq3_s), iq3_s_step, 1.0f);
}

/* Where sgemm on dequantized tiles overtakes the four-by-four rows: below it they win by up to
 * 3x (16 tokens), at 128 tokens sgemm is ~1.2x ahead on one thread (measured on IQ3_S, see
 * docs/performance.md) */
#define IQ_BLAS_MIN_TOKENS 64

static void iq1_s_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq1_s), iq1_s_step, 0.125f);
}

static void iq1_m_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq1_m), iq1_m_step, 0.125f);
}

#define IQ_DOT4X4(name, step, mul)                                                            \
  static void name##_vec_dot4x4_avx512(int64_t n, float *s, size_t s_stride, const void *vx,  \
                                       size_t x_stride, const void *vy, size_t y_stride) {    \
    iq_vec_dot4x4_avx512(n, s, s_stride, vx, x_stride, vy, y_stride, 4, sizeof(block_##name), \
                         step, mul);                                                          \
  }
IQ_DOT4X4(iq2_xxs, iq2_xxs_step, 0.125f)
IQ_DOT4X4(iq2_xs, iq2_xs_step, 0.125f)
IQ_DOT4X4(iq2_s, iq2_s_step, 0.125f)
IQ_DOT4X4(iq3_xxs, iq3_xxs_step, 0.25f)
IQ_DOT4X4(iq3_s, iq3_s_step, 1.0f)
IQ_DOT4X4(iq1_s, iq1_s_step, 0.125f)
IQ_DOT4X4(iq1_m, iq1_m_step, 0.125f)
#undef IQ_DOT4X4

/* Decode's four rows. Four abreast (one activation load, mask and abs for four rows) is 2-10%
 * faster per block in cache, but on a 5632 x 2048 matvec out of a 192 MiB working set (thread
 * CPU time, one thread, docs/performance.md) the IQ2 and IQ3 rows ran 1.2-2.3x slower that way
 * than row after row, whose one sequential stream the hardware prefetcher follows: those take
 * their rows one after the other. IQ1_S and IQ1_M stayed 10-20% ahead four abreast. */
#define IQ_DOT4(name, step, mul)                                                            \
  static void name##_vec_dot4_avx512(int64_t n, float *s, const void *vx, size_t x_stride,  \
                                     const void *vy) {                                      \
    iq_vec_dot4x4_avx512(n, s, 4, vx, x_stride, vy, 0, 1, sizeof(block_##name), step, mul); \
  }
#define IQ_DOT4_ROWS(name)                                                                 \
  static void name##_vec_dot4_avx512(int64_t n, float *s, const void *vx, size_t x_stride, \
                                     const void *vy) {                                     \
    for (int r = 0; r < 4; r++)                                                            \
      name##_vec_dot_avx512(n, s + r, (const uint8_t *)vx + r * x_stride, vy);             \
  }
IQ_DOT4(iq1_s, iq1_s_step, 0.125f)
IQ_DOT4(iq1_m, iq1_m_step, 0.125f)
IQ_DOT4_ROWS(iq2_xxs)
IQ_DOT4_ROWS(iq2_xs)
IQ_DOT4_ROWS(iq2_s)
IQ_DOT4_ROWS(iq3_xxs)
IQ_DOT4_ROWS(iq3_s)
#undef IQ_DOT4
#undef IQ_DOT4_ROWS

static const nllm_qtype_kernels iq_avx512_rows[] = {
    {.type = NLLM_TYPE_IQ2_XXS,
     .vec_dot = iq2_xxs_vec_dot_avx512,
     .vec_dot4 = iq2_xxs_vec_dot4_avx512,
     .vec_dot4x4 = iq2_xxs_vec_dot4x4_avx512,
     .blas_min_tokens = IQ_BLAS_MIN_TOKENS},
    {.type = NLLM_TYPE_IQ2_XS,
     .vec_dot = iq2_xs_vec_dot_avx512,
     .vec_dot4 = iq2_xs_vec_dot4_avx512,
     .vec_dot4x4 = iq2_xs_vec_dot4x4_avx512,
     .blas_min_tokens = IQ_BLAS_MIN_TOKENS},
    {.type = NLLM_TYPE_IQ2_S,
     .vec_dot = iq2_s_vec_dot_avx512,
     .vec_dot4 = iq2_s_vec_dot4_avx512,
     .vec_dot4x4 = iq2_s_vec_dot4x4_avx512,
     .blas_min_tokens = IQ_BLAS_MIN_TOKENS},
    {.type = NLLM_TYPE_IQ3_XXS,
     .vec_dot = iq3_xxs_vec_dot_avx512,
     .vec_dot4 = iq3_xxs_vec_dot4_avx512,
     .vec_dot4x4 = iq3_xxs_vec_dot4x4_avx512,
     .blas_min_tokens = IQ_BLAS_MIN_TOKENS},
    {.type = NLLM_TYPE_IQ3_S,
     .vec_dot = iq3_s_vec_dot_avx512,
     .vec_dot4 = iq3_s_vec_dot4_avx512,
     .vec_dot4x4 = iq3_s_vec_dot4x4_avx512,
     .blas_min_tokens = IQ_BLAS_MIN_TOKENS},
    {.type = NLLM_TYPE_IQ1_S,
     .vec_dot = iq1_s_vec_dot_avx512,
     .vec_dot4 = iq1_s_vec_dot4_avx512,
     .vec_dot4x4 = iq1_s_vec_dot4x4_avx512,
     .blas_min_tokens = IQ_BLAS_MIN_TOKENS},
    {.type = NLLM_TYPE_IQ1_M,
     .vec_dot = iq1_m_vec_dot_avx512,
     .vec_dot4 = iq1_m_vec_dot4_avx512,
     .vec_dot4x4 = iq1_m_vec_dot4x4_avx512,
     .blas_min_tokens = IQ_BLAS_MIN_TOKENS},
};
const nllm_kernel_set nllm_kernels_iq_avx512 = {iq_avx512_rows,
                                                sizeof iq_avx512_rows / sizeof iq_avx512_rows[0]};
