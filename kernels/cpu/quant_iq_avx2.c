/* AVX2 dot products of the IQ codebook formats against Q8_K activations: their rows of the AVX2
 * tier (dequantization stays the scalar reference's). The rows read their chunks straight into
 * registers (the layouts are the ones iq_layout.h describes: the tests hold the two to the same
 * results). On Zen 3 these rows are bound by the number of operations per block, not by memory,
 * so everything that does not depend on the chunk is done once per block in vector registers
 * (sign words, scales, multi-byte grid indices) and a chunk costs its grid loads and a few
 * vector operations (docs/performance.md, "Eleventh round"). The integer sums equal the scalar
 * ones exactly, and the float steps are the same, in the same order, so the results are
 * bit-identical to quant_iq_ref.c. */
#include <immintrin.h>

#include "cpu/iq_layout.h"

#define IQ_UNROLL8 _Pragma("GCC unroll 8")
/* vec_dot4's loop over its four rows: unrolled (four copies of a block's body, a few hundred
 * instructions each) it measured 1-27% slower than rolled for IQ2_XXS / IQ3 in the DRAM matvec */
#define IQ_ROLLED _Pragma("GCC unroll 1")

static inline int32_t iq_hsum32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

/* Grid points are scalar loads put together in a register: IQ3_XXS' eight 4-value points of a
 * chunk by their index bytes, the IQ2 formats' four 8-value points by index. (vpgatherdd, and
 * 64-bit pairs for IQ3, measured slower on Zen 3.) */
static inline __m256i iq3_xxs_grid_avx2(const uint8_t *blk, int c) {
  const uint8_t *q = blk + 2 + 8 * c;
  const uint32_t *g = nllm_iq3xxs_grid;
  return _mm256_setr_epi32((int)g[q[0]], (int)g[q[1]], (int)g[q[2]], (int)g[q[3]], (int)g[q[4]],
                           (int)g[q[5]], (int)g[q[6]], (int)g[q[7]]);
}
static inline __m256i iq_grid4(const uint64_t *g, unsigned i0, unsigned i1, unsigned i2,
                               unsigned i3) {
  return _mm256_set_epi64x((int64_t)g[i3], (int64_t)g[i2], (int64_t)g[i1], (int64_t)g[i0]);
}

/* Block i's exact integer sum (its lanes in acc) times its float factors, added into *sum in the
 * reference's order. An even block waits in *prev for the next: two blocks' lanes are reduced
 * together by two horizontal adds, their scales converted and multiplied together. */
static inline __attribute__((always_inline)) void iq_block_sum(
    float *sum, __m256i *prev, int64_t i, int64_t nb, __m256i acc, const uint8_t *blk,
    size_t block_bytes, const block_q8_K *y, uint16_t (*dh)(const uint8_t *)) {
  if (!(i & 1)) {
    if (i + 1 < nb) {
      *prev = acc;
      return;
    }
    const float p = (_cvtsh_ss(dh(blk)) * y[i].d) * (float)iq_hsum32(acc);
    *sum += p;
    return;
  }
  const __m256i u = _mm256_hadd_epi32(*prev, acc);
  const __m128i w = _mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1));
  const __m128 f = _mm_cvtepi32_ps(_mm_hadd_epi32(w, w));
  const __m128 xd =
      _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(dh(blk - block_bytes)), dh(blk), 1));
  const __m128 yd = _mm_insert_ps(_mm_load_ss(&y[i - 1].d), _mm_load_ss(&y[i].d), 0x10);
  const __m128 p = _mm_mul_ps(_mm_mul_ps(xd, yd), f);
  *sum += _mm_cvtss_f32(p);
  *sum += _mm_cvtss_f32(_mm_movehdup_ps(p));
}
static inline uint16_t iq_dh(const uint8_t *blk) {
  return iq_rd16(blk);
}

/* Four tokens' block products in one vector: their sums by two rounds of horizontal adds and
 * the lanes, then (d * y.d) * sum per lane as vec_dot rounds it, added lane by lane. */
static inline __attribute__((always_inline)) void iq_tokens4_sum(__m128 *sum, const __m256i acc[4],
                                                                 uint16_t dh,
                                                                 const block_q8_K *const y[4],
                                                                 int64_t i) {
  const __m256i u =
      _mm256_hadd_epi32(_mm256_hadd_epi32(acc[0], acc[1]), _mm256_hadd_epi32(acc[2], acc[3]));
  const __m128 f =
      _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1)));
  const __m128 yd = _mm_setr_ps(y[0][i].d, y[1][i].d, y[2][i].d, y[3][i].d);
  *sum = _mm_add_ps(*sum, _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(_cvtsh_ss(dh)), yd), f));
}
static inline void iq_store4(float *s, size_t s_stride, int r, __m128 sum, float group_mul,
                             int nt) {
  float out[4];
  _mm_storeu_ps(out, _mm_mul_ps(sum, _mm_set1_ps(group_mul)));
  for (int k = 0; k < nt; k++) s[k * s_stride + r] = out[k];
}

/* Shared by the rows below: chunk c's 32 sign bits (byte l for group l, bit j negates value j)
 * as a 0 / -1 byte mask m on the activations. w holds the words of chunks c & ~3 .. (c & ~3) + 3
 * as dwords 0..3 in both lanes; a byte shuffle spreads bytes 0, 1 of chunk c's word over the low
 * lane's 16 bytes and bytes 2, 3 over the high lane's, the bit test makes the mask. */
static inline __m256i iq_spread4(__m256i w, int c) {
  const long long k = 0x0101010101010101LL * (4 * (c & 3));
  const __m256i spread = _mm256_set_epi64x(k + 0x0303030303030303LL, k + 0x0202020202020202LL,
                                           k + 0x0101010101010101LL, k);
  return _mm256_shuffle_epi8(w, spread);
}
static inline __m256i iq_sign_mask(__m256i w, int c) {
  const __m256i bits = _mm256_set1_epi64x((int64_t)0x8040201008040201);
  return _mm256_cmpeq_epi8(_mm256_and_si256(iq_spread4(w, c), bits), bits);
}
/* Unsigned grid bytes g (<= 62) against the activations under the sign mask m: g (q8 ^ m) - g m
 * = g ((q8 ^ m) - m) = -g q8 where m = -1, exact in 16 bit for q8 = -128 too (the byte negation
 * alone would overflow). Pairs summed to 16 bit. */
static inline __m256i iq_masked_pairs(__m256i g, __m256i q8, __m256i m) {
  return _mm256_sub_epi16(_mm256_maddubs_epi16(g, _mm256_xor_si256(q8, m)),
                          _mm256_maddubs_epi16(g, m));
}
/* 16-bit lane odd scales of chunk c from a register of eight words per lane (word k of the low
 * lane: chunk k's first 16 values, of the high lane: its last 16): one byte shuffle. */
static inline __m256i iq_odd_of(__m256i odd_words, int c) {
  return _mm256_shuffle_epi8(odd_words, _mm256_set1_epi16((short)((2 * c + 1) << 8 | 2 * c)));
}

/* IQ2_XXS / IQ3_XXS: each chunk's 7-bit sign indices (4 x 7 bits, scale on top) turned into sign
 * words for the whole block at once, eight chunks a register: the indices spread to one per byte,
 * bit 7 their parity by two nibble lookups. Replaces four index extractions and four 64-bit table
 * loads per chunk. */
static inline __m256i iq_with_parity(__m256i s) {
  const __m256i lut =
      _mm256_setr_epi8(0, -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0, -128, -128, 0, 0,
                       -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0, -128, -128, 0);
  const __m256i m4 = _mm256_set1_epi8(15);
  const __m256i par =
      _mm256_xor_si256(_mm256_shuffle_epi8(lut, _mm256_and_si256(s, m4)),
                       _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(s, 4), m4)));
  return _mm256_or_si256(s, par);
}
static inline __m256i iq_signs7_words(__m256i a) {
  __m256i s = _mm256_and_si256(a, _mm256_set1_epi32(0x7f));
  s = _mm256_or_si256(s, _mm256_and_si256(_mm256_slli_epi32(a, 1), _mm256_set1_epi32(0x7f00)));
  s = _mm256_or_si256(s, _mm256_and_si256(_mm256_slli_epi32(a, 2), _mm256_set1_epi32(0x7f0000)));
  s = _mm256_or_si256(s, _mm256_and_si256(_mm256_slli_epi32(a, 3), _mm256_set1_epi32(0x7f000000)));
  return iq_with_parity(s);
}

/* Odd scales of the formats with a 4-bit scale per 16 values (IQ2_XS / IQ2_S: byte c of sc,
 * low nibble chunk c's first 16 values) as iq_odd_of's words: low lane the low nibbles. */
static inline __m256i iq_nib16_odd_words(const uint8_t *sc) {
  const __m128i v = _mm_loadl_epi64((const __m128i *)sc);
  const __m128i m4 = _mm_set1_epi8(15);
  const __m128i t =
      _mm_unpacklo_epi64(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
  return _mm256_cvtepu8_epi16(_mm_add_epi8(_mm_add_epi8(t, t), _mm_set1_epi8(1)));
}

/* Grid indices that take more than a byte (IQ2_XS: 9 bits, IQ2_S: 10, IQ3_S: 9, IQ1: 11) are
 * put together for a whole block in vector registers and stored as uint16, two blocks ahead of
 * their use: the scalar lookups then load each index as it is, instead of three or four scalar
 * operations per index. Stored ahead because a 256-bit store read back soon by 16-bit loads
 * misses store forwarding on Zen 3 (round 8's same-block scheme measured slower); two blocks
 * ahead puts the store out of the reorder window of the loads. */
typedef struct {
  _Alignas(32) uint16_t w[4][64];
} iq_index_buf;

/* IQ2_S: word j = qs[j] | bits 2 (j % 4) of qh[j / 4] as bits 8, 9 */
static inline void iq2_s_index_words(const uint8_t *blk, uint16_t *out) {
  const __m256i qh =
      _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(blk + 2 + QK_K / 4)));
  const __m256i mul = _mm256_set1_epi64x(0x0004001000400100);
  const __m256i m = _mm256_set1_epi16(0x300);
  IQ_UNROLL8
  for (int h = 0; h < 2; h++) {
    const char b = (char)(4 * h);
    const __m256i sp = _mm256_setr_epi8(b, -1, b, -1, b, -1, b, -1, b + 1, -1, b + 1, -1, b + 1, -1,
                                        b + 1, -1, b + 2, -1, b + 2, -1, b + 2, -1, b + 2, -1,
                                        b + 3, -1, b + 3, -1, b + 3, -1, b + 3, -1);
    const __m256i lo = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + 2 + 16 * h)));
    const __m256i hi = _mm256_and_si256(_mm256_mullo_epi16(_mm256_shuffle_epi8(qh, sp), mul), m);
    _mm256_store_si256((__m256i *)(out + 16 * h), _mm256_or_si256(lo, hi));
  }
}
/* IQ3_S: word j = qs[j] | bit j % 8 of qh[j / 8] as bit 8 */
static inline void iq3_s_index_words(const uint8_t *blk, uint16_t *out) {
  const __m256i qh =
      _mm256_broadcastq_epi64(_mm_loadl_epi64((const __m128i *)(blk + 2 + QK_K / 4)));
  const __m256i mul =
      _mm256_setr_epi16(256, 128, 64, 32, 16, 8, 4, 2, 256, 128, 64, 32, 16, 8, 4, 2);
  const __m256i m = _mm256_set1_epi16(0x100);
  IQ_UNROLL8
  for (int h = 0; h < 4; h++) {
    const char b = (char)(2 * h);
    const __m256i sp =
        _mm256_setr_epi8(b, -1, b, -1, b, -1, b, -1, b, -1, b, -1, b, -1, b, -1, b + 1, -1, b + 1,
                         -1, b + 1, -1, b + 1, -1, b + 1, -1, b + 1, -1, b + 1, -1, b + 1, -1);
    const __m256i lo = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + 2 + 16 * h)));
    const __m256i hi = _mm256_and_si256(_mm256_mullo_epi16(_mm256_shuffle_epi8(qh, sp), mul), m);
    _mm256_store_si256((__m256i *)(out + 16 * h), _mm256_or_si256(lo, hi));
  }
}
/* IQ2_XS: word j = its uint16 & 511 */
static inline void iq2_xs_index_words(const uint8_t *blk, uint16_t *out) {
  const __m256i m = _mm256_set1_epi16(511);
  IQ_UNROLL8
  for (int h = 0; h < 2; h++)
    _mm256_store_si256(
        (__m256i *)(out + 16 * h),
        _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(blk + 2 + 32 * h)), m));
}

/* The five IQ2 / IQ3 formats share one body: a block's state (its chunks' sign words and odd
 * scales in registers, and the index words of IQ2_XS / IQ2_S / IQ3_S), then per chunk its grid
 * points g, sign mask m and scales. t is a compile-time constant in every caller. */
enum { IQ2XXS, IQ2XS, IQ2S, IQ3XXS, IQ3S };

static inline size_t iq_block_bytes(int t) {
  return t == IQ2XXS   ? sizeof(block_iq2_xxs)
         : t == IQ2XS  ? sizeof(block_iq2_xs)
         : t == IQ2S   ? sizeof(block_iq2_s)
         : t == IQ3XXS ? sizeof(block_iq3_xxs)
                       : sizeof(block_iq3_s);
}
static inline float iq_group_mul(int t) {
  return t == IQ3S ? 1.0f : t == IQ3XXS ? 0.25f : 0.125f;
}
static inline int iq_has_index_words(int t) {
  return t == IQ2XS || t == IQ2S || t == IQ3S;
}
static inline __attribute__((always_inline)) void iq_index_words(int t, const uint8_t *blk,
                                                                 uint16_t *out) {
  if (t == IQ2XS) iq2_xs_index_words(blk, out);
  if (t == IQ2S) iq2_s_index_words(blk, out);
  if (t == IQ3S) iq3_s_index_words(blk, out);
}

typedef struct {
  __m256i sw_lo, sw_hi; /* sign words of chunks 0..3 and 4..7, as iq_sign_mask takes them */
  __m256i odd;          /* odd scales, as iq_odd_of takes them */
} iq_block_state;

static inline __attribute__((always_inline)) void iq_state(int t, const uint8_t *blk,
                                                           iq_block_state *st) {
  if (t == IQ2XXS || t == IQ3XXS) {
    /* aux dword per chunk: four 7-bit sign indices and the scale on top. IQ2_XXS' sit in the
     * odd dwords of its 64 index bytes (picked by one shufps, chunks in the order 0 1 4 5 2 3 6
     * 7), IQ3_XXS' are 32 bytes in order. */
    const int is3 = t == IQ3XXS;
    __m256i aux;
    if (is3) {
      aux = _mm256_loadu_si256((const __m256i *)(blk + 2 + QK_K / 4));
    } else {
      const __m256 a = _mm256_loadu_ps((const float *)(blk + 2));
      const __m256 b = _mm256_loadu_ps((const float *)(blk + 2 + 32));
      aux = _mm256_castps_si256(_mm256_shuffle_ps(a, b, 0xdd));
    }
    const __m256i to_order =
        is3 ? _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7) : _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    const __m256i sw = iq_signs7_words(aux);
    st->sw_lo = _mm256_permutevar8x32_epi32(sw, is3 ? _mm256_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3)
                                                    : _mm256_setr_epi32(0, 1, 4, 5, 0, 1, 4, 5));
    st->sw_hi = _mm256_permutevar8x32_epi32(sw, is3 ? _mm256_setr_epi32(4, 5, 6, 7, 4, 5, 6, 7)
                                                    : _mm256_setr_epi32(2, 3, 6, 7, 2, 3, 6, 7));
    /* 2s + 1 of chunk k as word k of both lanes */
    __m256i odd = _mm256_srli_epi32(aux, 28);
    odd = _mm256_add_epi32(_mm256_add_epi32(odd, odd), _mm256_set1_epi32(1));
    odd = _mm256_permutevar8x32_epi32(odd, to_order);
    st->odd = _mm256_permute4x64_epi64(_mm256_packus_epi32(odd, odd), 0x88);
  } else if (t == IQ2XS) {
    st->odd = iq_nib16_odd_words(blk + 2 + QK_K / 4);
    /* the 7-bit sign indices (uint16 >> 9) packed to bytes in the chunk order 0 1 4 5 2 3 6 7 */
    const __m256i a = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(blk + 2)), 9);
    const __m256i b = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(blk + 2 + 32)), 9);
    const __m256i sw = iq_with_parity(_mm256_packus_epi16(a, b));
    st->sw_lo = _mm256_permutevar8x32_epi32(sw, _mm256_setr_epi32(0, 1, 4, 5, 0, 1, 4, 5));
    st->sw_hi = _mm256_permutevar8x32_epi32(sw, _mm256_setr_epi32(2, 3, 6, 7, 2, 3, 6, 7));
  } else if (t == IQ2S) {
    st->odd = iq_nib16_odd_words(blk + 2 + QK_K / 4 + QK_K / 32);
    const uint8_t *sg = blk + 2 + QK_K / 8;
    st->sw_lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sg));
    st->sw_hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(sg + 16)));
  } else {
    /* IQ3_S: chunk c's scale is nibble c % 2 of byte c / 2, the same for both halves */
    const __m128i v = _mm_cvtsi32_si128((int)iq_rd32(blk + 2 + QK_K / 4 + QK_K / 32 + QK_K / 8));
    const __m128i m4 = _mm_set1_epi8(15);
    __m128i o = _mm_unpacklo_epi8(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
    o = _mm_cvtepu8_epi16(_mm_add_epi8(_mm_add_epi8(o, o), _mm_set1_epi8(1)));
    st->odd = _mm256_broadcastsi128_si256(o);
    const uint8_t *sg = blk + 2 + QK_K / 4 + QK_K / 32;
    st->sw_lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)sg));
    st->sw_hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(sg + 16)));
  }
}

static inline __m256i iq3_grid8(const uint16_t *ix) {
  const uint32_t *g = nllm_iq3s_grid;
  return _mm256_setr_epi32((int)g[ix[0]], (int)g[ix[1]], (int)g[ix[2]], (int)g[ix[3]],
                           (int)g[ix[4]], (int)g[ix[5]], (int)g[ix[6]], (int)g[ix[7]]);
}

static inline __attribute__((always_inline)) __m256i iq_grid(int t, const uint8_t *blk,
                                                             const uint16_t *ix, int c) {
  if (t == IQ2XXS)
    return iq_grid4(nllm_iq2xxs_grid, blk[2 + 8 * c], blk[3 + 8 * c], blk[4 + 8 * c],
                    blk[5 + 8 * c]);
  if (t == IQ3XXS) return iq3_xxs_grid_avx2(blk, c);
  if (t == IQ3S) return iq3_grid8(ix + 8 * c);
  const uint64_t *g = t == IQ2XS ? nllm_iq2xs_grid : nllm_iq2s_grid;
  return iq_grid4(g, ix[4 * c], ix[4 * c + 1], ix[4 * c + 2], ix[4 * c + 3]);
}

/* The row: the same integer sums as the reference, its float steps in its order. */
static inline __attribute__((always_inline)) void iq_vec_dot_avx2(int t, int64_t n, float *s,
                                                                  const void *vx, const void *vy) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  const int64_t nb = n / QK_K;
  const size_t bb = iq_block_bytes(t);
  iq_index_buf ib;
  float sum = 0;
  __m256i prev = _mm256_setzero_si256();
  if (iq_has_index_words(t))
    for (int64_t i = 0; i < 2 && i < nb; i++) iq_index_words(t, x + (size_t)i * bb, ib.w[i]);
  for (int64_t i = 0; i < nb; i++) {
    const uint8_t *blk = x + (size_t)i * bb;
    if (iq_has_index_words(t) && i + 2 < nb) iq_index_words(t, blk + 2 * bb, ib.w[(i + 2) & 3]);
    const uint16_t *ix = ib.w[i & 3];
    iq_block_state st;
    iq_state(t, blk, &st);
    __m256i acc = _mm256_setzero_si256();
    /* unrolled, each chunk's offsets and shuffle constants are constants */
    IQ_UNROLL8
    for (int c = 0; c < QK_K / 32; c++) {
      const __m256i g = iq_grid(t, blk, ix, c);
      const __m256i m = iq_sign_mask(c < 4 ? st.sw_lo : st.sw_hi, c);
      const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * c));
      acc =
          _mm256_add_epi32(acc, _mm256_madd_epi16(iq_masked_pairs(g, q8, m), iq_odd_of(st.odd, c)));
    }
    iq_block_sum(&sum, &prev, i, nb, acc, blk, bb, y, iq_dh);
  }
  *s = sum * iq_group_mul(t);
}

/* Four rows by four tokens (batches of 4 and more): each block's grid points, sign masks, the
 * masks' share g m of the products and the scales are made once for the four tokens; a token
 * costs the activations' load, xor, one maddubs, the subtraction and the scale step per chunk.
 * Each token's integer sums are vec_dot's; the four tokens' float steps go in one vector, each
 * lane in vec_dot's order, so every result equals vec_dot's bit for bit. */
static inline __attribute__((always_inline)) void iq_vec_dot4x4_avx2(
    int t, int nt, int64_t n, float *s, size_t s_stride, const void *vx, size_t x_stride,
    const void *vy, size_t y_stride) {
  const int64_t nb = n / QK_K;
  const size_t bb = iq_block_bytes(t);
  const block_q8_K *y[4];
  /* nt < 4 tokens (vec_dot4xt): the lanes of the missing ones sum zeros against token 0's d */
  for (int k = 0; k < 4; k++)
    y[k] = (const block_q8_K *)((const uint8_t *)vy + (k < nt ? k : 0) * y_stride);
  for (int r = 0; r < 4; r++) {
    const uint8_t *x = (const uint8_t *)vx + r * x_stride;
    iq_index_buf ib;
    __m128 sum = _mm_setzero_ps();
    if (iq_has_index_words(t))
      for (int64_t i = 0; i < 2 && i < nb; i++) iq_index_words(t, x + (size_t)i * bb, ib.w[i]);
    for (int64_t i = 0; i < nb; i++) {
      const uint8_t *blk = x + (size_t)i * bb;
      if (iq_has_index_words(t) && i + 2 < nb) iq_index_words(t, blk + 2 * bb, ib.w[(i + 2) & 3]);
      const uint16_t *ix = ib.w[i & 3];
      iq_block_state st;
      iq_state(t, blk, &st);
      __m256i acc[4];
      IQ_UNROLL8
      for (int k = 0; k < 4; k++) acc[k] = _mm256_setzero_si256();
      IQ_UNROLL8
      for (int c = 0; c < QK_K / 32; c++) {
        const __m256i g = iq_grid(t, blk, ix, c);
        const __m256i m = iq_sign_mask(c < 4 ? st.sw_lo : st.sw_hi, c);
        const __m256i gm = _mm256_maddubs_epi16(g, m);
        const __m256i o = iq_odd_of(st.odd, c);
        IQ_UNROLL8
        for (int k = 0; k < nt; k++) {
          const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[k][i].qs + 32 * c));
          const __m256i p16 =
              _mm256_sub_epi16(_mm256_maddubs_epi16(g, _mm256_xor_si256(q8, m)), gm);
          acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(p16, o));
        }
      }
      iq_tokens4_sum(&sum, acc, iq_rd16(blk), y, i);
    }
    iq_store4(s, s_stride, r, sum, iq_group_mul(t), nt);
  }
}

/* Four rows' block products as one vector: their sums by two rounds of horizontal adds, then
 * (d_r * y.d) * sum_r per lane as vec_dot rounds it, added to each row's sum in its lane. */
static inline __attribute__((always_inline)) void iq_rows4_sum(__m128 *sum, const __m256i acc[4],
                                                               const uint8_t *const blk[4],
                                                               uint16_t (*dh)(const uint8_t *),
                                                               float yd) {
  const __m256i u =
      _mm256_hadd_epi32(_mm256_hadd_epi32(acc[0], acc[1]), _mm256_hadd_epi32(acc[2], acc[3]));
  const __m128 f =
      _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1)));
  const __m128i h = _mm_setr_epi16((short)dh(blk[0]), (short)dh(blk[1]), (short)dh(blk[2]),
                                   (short)dh(blk[3]), 0, 0, 0, 0);
  *sum = _mm_add_ps(*sum, _mm_mul_ps(_mm_mul_ps(_mm_cvtph_ps(h), _mm_set1_ps(yd)), f));
}

/* Four rows, one token (decode): each row's block sum is vec_dot's, the four rows' float steps
 * run in the lanes of one vector (each lane in vec_dot's order, results equal to it bit for bit),
 * the four reductions share one transpose. Four rows are four streams the hardware prefetcher
 * misses: each block step prefetches as one linear stream (nllm_prefetch_span; without it 1.1-1.9x
 * slower than vec_dot per row). In the DRAM matvec 2-15% faster than vec_dot per row for IQ2_XXS,
 * IQ2_XS, IQ2_S and IQ1 (the rows are still bound by the grid lookups); 1-5% slower for the IQ3
 * formats, which keep vec_dot per row (docs/performance.md, "Twelfth round"). */
static inline __attribute__((always_inline)) void iq_vec_dot4_avx2(int t, int64_t n, float *s,
                                                                   const void *vx, size_t x_stride,
                                                                   const void *vy) {
  const block_q8_K *y = vy;
  const int64_t nb = n / QK_K;
  const size_t bb = iq_block_bytes(t);
  const uint8_t *x[4];
  for (int r = 0; r < 4; r++) x[r] = (const uint8_t *)vx + r * x_stride;
  iq_index_buf ib[4];
  __m128 sum = _mm_setzero_ps();
  if (iq_has_index_words(t))
    for (int r = 0; r < 4; r++)
      for (int64_t i = 0; i < 2 && i < nb; i++)
        iq_index_words(t, x[r] + (size_t)i * bb, ib[r].w[i]);
  for (int64_t i = 0; i < nb; i++) {
    nllm_prefetch_span((const uint8_t *)vx + NLLM_PREFETCH_ROWS * x_stride + 4 * (size_t)i * bb,
                       4 * bb);
    const uint8_t *blk[4];
    __m256i acc[4];
    IQ_ROLLED
    for (int r = 0; r < 4; r++) {
      blk[r] = x[r] + (size_t)i * bb;
      if (iq_has_index_words(t) && i + 2 < nb)
        iq_index_words(t, blk[r] + 2 * bb, ib[r].w[(i + 2) & 3]);
      const uint16_t *ix = ib[r].w[i & 3];
      iq_block_state st;
      iq_state(t, blk[r], &st);
      acc[r] = _mm256_setzero_si256();
      IQ_UNROLL8
      for (int c = 0; c < QK_K / 32; c++) {
        const __m256i g = iq_grid(t, blk[r], ix, c);
        const __m256i m = iq_sign_mask(c < 4 ? st.sw_lo : st.sw_hi, c);
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * c));
        acc[r] = _mm256_add_epi32(
            acc[r], _mm256_madd_epi16(iq_masked_pairs(g, q8, m), iq_odd_of(st.odd, c)));
      }
    }
    iq_rows4_sum(&sum, acc, blk, iq_dh, y[i].d);
  }
  _mm_storeu_ps(s, _mm_mul_ps(sum, _mm_set1_ps(iq_group_mul(t))));
}

/* The four-by-four kernel goes with a four-row one (the matmul takes it only along one; a
 * batch's last tokens, fewer than four, go through it). */
#define IQ_ROWS(name, t)                                                                   \
  static void name##_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {   \
    iq_vec_dot_avx2(t, n, s, vx, vy);                                                      \
  }                                                                                        \
  static void name##_vec_dot4_avx2(int64_t n, float *s, const void *vx, size_t x_stride,   \
                                   const void *vy) {                                       \
    if (t == IQ3XXS || t == IQ3S)                                                          \
      for (int r = 0; r < 4; r++)                                                          \
        name##_vec_dot_avx2(n, &s[r], (const uint8_t *)vx + r * x_stride, vy);             \
    else                                                                                   \
      iq_vec_dot4_avx2(t, n, s, vx, x_stride, vy);                                         \
  }                                                                                        \
  static void name##_vec_dot4x4_avx2(int64_t n, float *s, size_t s_stride, const void *vx, \
                                     size_t x_stride, const void *vy, size_t y_stride) {   \
    iq_vec_dot4x4_avx2(t, 4, n, s, s_stride, vx, x_stride, vy, y_stride);                  \
  }                                                                                        \
  static void name##_vec_dot4xt_avx2(int64_t n, float *s, size_t s_stride, const void *vx, \
                                     size_t x_stride, const void *vy, size_t y_stride,     \
                                     int n_tok) {                                          \
    if (n_tok == 3)                                                                        \
      iq_vec_dot4x4_avx2(t, 3, n, s, s_stride, vx, x_stride, vy, y_stride);                \
    else                                                                                   \
      iq_vec_dot4x4_avx2(t, 2, n, s, s_stride, vx, x_stride, vy, y_stride);                \
  }
IQ_ROWS(iq2_xxs, IQ2XXS)
IQ_ROWS(iq2_xs, IQ2XS)
IQ_ROWS(iq2_s, IQ2S)
IQ_ROWS(iq3_xxs, IQ3XXS)
IQ_ROWS(iq3_s, IQ3S)
#undef IQ_ROWS

/* IQ1_S / IQ1_M as unsigned weights (the AVX-512 rows' scheme, docs/performance.md "Round 9"): a
 * value is 8 * point + shift (point -1, 0, 1; shift +-1), so w = value + 9 = 8 (point + 1) +
 * (shift + 1) lies in 0..18 and is maddubs' unsigned operand against the signed activations as
 * they are (no abs, no sign steps). The 9 * sum(q8) that comes off each group is the Q8_K bsums
 * times the odd scales, one madd per block that starts the accumulator. Same integer sum as the
 * reference, same float steps. (point + 1) << 3 stays inside each byte: point + 1 <= 2. */
static inline __m256i iq1_w(__m256i grid, __m256i shift1) {
  return _mm256_or_si256(_mm256_slli_epi16(_mm256_add_epi8(grid, _mm256_set1_epi8(1)), 3), shift1);
}

/* The 11-bit grid indices as words, two blocks ahead as for IQ2_S: a qs byte and 3 bits of the
 * chunk's qh word (IQ1_S: bits 3 l, IQ1_M: bits 4 l), multiplied up to a common place, masked
 * and shifted down to bits 8..10. */
static inline void iq1_index_words(const uint8_t *qs, const uint8_t *qh, int64_t mul, short mask,
                                   int shift, uint16_t *out) {
  const __m256i h = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qh));
  IQ_UNROLL8
  for (int k = 0; k < 2; k++) {
    const char b = (char)(8 * k);
    const __m256i sp =
        _mm256_setr_epi8(b, b + 1, b, b + 1, b, b + 1, b, b + 1, b + 2, b + 3, b + 2, b + 3, b + 2,
                         b + 3, b + 2, b + 3, b + 4, b + 5, b + 4, b + 5, b + 4, b + 5, b + 4,
                         b + 5, b + 6, b + 7, b + 6, b + 7, b + 6, b + 7, b + 6, b + 7);
    const __m256i lo = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(qs + 16 * k)));
    const __m256i hi = _mm256_srli_epi16(
        _mm256_and_si256(_mm256_mullo_epi16(_mm256_shuffle_epi8(h, sp), _mm256_set1_epi64x(mul)),
                         _mm256_set1_epi16(mask)),
        shift);
    _mm256_store_si256((__m256i *)(out + 16 * k), _mm256_or_si256(lo, hi));
  }
}

enum { IQ1S, IQ1M };

static inline __attribute__((always_inline)) void iq1_index_words_t(int t, const uint8_t *blk,
                                                                    uint16_t *out) {
  if (t == IQ1S)
    iq1_index_words(blk + 2, blk + 2 + QK_K / 8, 0x0001000800400200, 0x0e00, 1, out);
  else
    iq1_index_words(blk, blk + QK_K / 8, 0x0001001001001000, 0x7000, 4, out);
}

typedef struct {
  __m256i odd;          /* odd scales, as iq_odd_of takes them */
  __m256i odd9;         /* -9 x the odd scale of bsums' 16 values, word for word */
  __m256i sh_lo, sh_hi; /* shift + 1 (0 or 2): IQ1_S byte c (both lanes) is chunk c's; IQ1_M
                         * a byte per group, as iq_spread4 takes them */
} iq1_block_state;

static inline __attribute__((always_inline)) void iq1_state(int t, const uint8_t *blk,
                                                            iq1_block_state *st) {
  if (t == IQ1S) {
    /* chunk c's qh word: bits 12..14 its scale, bit 15 the sign of its shift */
    const __m128i qh = _mm_loadu_si128((const __m128i *)(blk + 2 + QK_K / 8));
    const __m128i odd8 =
        _mm_add_epi16(_mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qh, 12), _mm_set1_epi16(7)), 1),
                      _mm_set1_epi16(1));
    st->odd = _mm256_broadcastsi128_si256(odd8);
    st->odd9 = _mm256_mullo_epi16(
        _mm256_set_m128i(_mm_unpackhi_epi16(odd8, odd8), _mm_unpacklo_epi16(odd8, odd8)),
        _mm256_set1_epi16(-9));
    const __m128i neg = _mm_srai_epi16(qh, 15);
    st->sh_lo =
        _mm256_broadcastsi128_si256(_mm_andnot_si128(_mm_packs_epi16(neg, neg), _mm_set1_epi8(2)));
    st->sh_hi = st->sh_lo;
  } else {
    /* the 16 three-bit scales, k-th for values 16k .. 16k + 15: word k / 4, bits 3 (k % 4);
     * each word in its four 16-bit lanes, lane m multiplied up so its field is on top */
    const __m256i word_spread = _mm256_set_epi64x(0x0908090809080908, 0x0100010001000100,
                                                  0x0908090809080908, 0x0100010001000100);
    const __m256i sw = _mm256_shuffle_epi8(
        _mm256_cvtepu16_epi64(_mm_loadl_epi64((const __m128i *)(blk + QK_K / 8 + QK_K / 16))),
        word_spread);
    const __m256i top = _mm256_mullo_epi16(sw, _mm256_set1_epi64x(0x0010008004002000));
    const __m256i odd16 = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16(top, 12), _mm256_set1_epi16(14)), _mm256_set1_epi16(1));
    st->odd9 = _mm256_mullo_epi16(odd16, _mm256_set1_epi16(-9));
    /* even scales (the chunks' first halves) to the low lane, odd ones to the high lane */
    const __m256i evens_first =
        _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12,
                         13, 2, 3, 6, 7, 10, 11, 14, 15);
    st->odd = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(odd16, evens_first), 0xd8);
    /* qh byte b: bit 3 the shift sign of group 2b, bit 7 of group 2b + 1 */
    const __m128i qh = _mm_loadu_si128((const __m128i *)(blk + QK_K / 8));
    const __m128i b3 = _mm_set1_epi8(8), b7 = _mm_set1_epi8((char)0x80), two = _mm_set1_epi8(2);
    const __m128i lo = _mm_andnot_si128(_mm_cmpeq_epi8(_mm_and_si128(qh, b3), b3), two);
    const __m128i hi = _mm_andnot_si128(_mm_cmpeq_epi8(_mm_and_si128(qh, b7), b7), two);
    st->sh_lo = _mm256_broadcastsi128_si256(_mm_unpacklo_epi8(lo, hi));
    st->sh_hi = _mm256_broadcastsi128_si256(_mm_unpackhi_epi8(lo, hi));
  }
}

static inline __attribute__((always_inline)) __m256i iq1_weights(int t, const iq1_block_state *st,
                                                                 const uint16_t *ix, int c) {
  const __m256i g =
      iq_grid4(nllm_iq1s_grid, ix[4 * c], ix[4 * c + 1], ix[4 * c + 2], ix[4 * c + 3]);
  const __m256i sh = t == IQ1S ? _mm256_shuffle_epi8(st->sh_lo, _mm256_set1_epi8((char)c))
                               : iq_spread4(c < 4 ? st->sh_lo : st->sh_hi, c);
  return iq1_w(g, sh);
}

static inline uint16_t iq1_s_dh(const uint8_t *blk) {
  return iq_rd16(blk);
}

static inline __attribute__((always_inline)) void iq1_vec_dot_avx2(int t, int64_t n, float *s,
                                                                   const void *vx, const void *vy) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  const int64_t nb = n / QK_K;
  const size_t bb = t == IQ1S ? sizeof(block_iq1_s) : sizeof(block_iq1_m);
  iq_index_buf ib;
  float sum = 0;
  __m256i prev = _mm256_setzero_si256();
  for (int64_t i = 0; i < 2 && i < nb; i++) iq1_index_words_t(t, x + (size_t)i * bb, ib.w[i]);
  for (int64_t i = 0; i < nb; i++) {
    const uint8_t *blk = x + (size_t)i * bb;
    if (i + 2 < nb) iq1_index_words_t(t, blk + 2 * bb, ib.w[(i + 2) & 3]);
    const uint16_t *ix = ib.w[i & 3];
    iq1_block_state st;
    iq1_state(t, blk, &st);
    __m256i acc = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), st.odd9);
    IQ_UNROLL8
    for (int c = 0; c < QK_K / 32; c++) {
      const __m256i w = iq1_weights(t, &st, ix, c);
      const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * c));
      acc = _mm256_add_epi32(acc,
                             _mm256_madd_epi16(_mm256_maddubs_epi16(w, q8), iq_odd_of(st.odd, c)));
    }
    iq_block_sum(&sum, &prev, i, nb, acc, blk, bb, y, t == IQ1S ? iq1_s_dh : iq1_m_block_h);
  }
  *s = sum * 0.125f;
}

/* Four rows by four tokens, as iq_vec_dot4x4_avx2: the weights and scales once for four tokens. */
static inline __attribute__((always_inline)) void iq1_vec_dot4x4_avx2(
    int t, int nt, int64_t n, float *s, size_t s_stride, const void *vx, size_t x_stride,
    const void *vy, size_t y_stride) {
  const int64_t nb = n / QK_K;
  const size_t bb = t == IQ1S ? sizeof(block_iq1_s) : sizeof(block_iq1_m);
  const block_q8_K *y[4];
  for (int k = 0; k < 4; k++)
    y[k] = (const block_q8_K *)((const uint8_t *)vy + (k < nt ? k : 0) * y_stride);
  for (int r = 0; r < 4; r++) {
    const uint8_t *x = (const uint8_t *)vx + r * x_stride;
    iq_index_buf ib;
    __m128 sum = _mm_setzero_ps();
    for (int64_t i = 0; i < 2 && i < nb; i++) iq1_index_words_t(t, x + (size_t)i * bb, ib.w[i]);
    for (int64_t i = 0; i < nb; i++) {
      const uint8_t *blk = x + (size_t)i * bb;
      if (i + 2 < nb) iq1_index_words_t(t, blk + 2 * bb, ib.w[(i + 2) & 3]);
      const uint16_t *ix = ib.w[i & 3];
      iq1_block_state st;
      iq1_state(t, blk, &st);
      __m256i acc[4];
      IQ_UNROLL8
      for (int k = 0; k < 4; k++)
        acc[k] =
            k < nt ? _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[k][i].bsums), st.odd9)
                   : _mm256_setzero_si256();
      IQ_UNROLL8
      for (int c = 0; c < QK_K / 32; c++) {
        const __m256i w = iq1_weights(t, &st, ix, c);
        const __m256i o = iq_odd_of(st.odd, c);
        IQ_UNROLL8
        for (int k = 0; k < nt; k++) {
          const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[k][i].qs + 32 * c));
          acc[k] = _mm256_add_epi32(acc[k], _mm256_madd_epi16(_mm256_maddubs_epi16(w, q8), o));
        }
      }
      iq_tokens4_sum(&sum, acc, t == IQ1S ? iq_rd16(blk) : iq1_m_block_h(blk), y, i);
    }
    iq_store4(s, s_stride, r, sum, 0.125f, nt);
  }
}

/* Four rows, one token, as iq_vec_dot4_avx2. */
static inline __attribute__((always_inline)) void iq1_vec_dot4_avx2(int t, int64_t n, float *s,
                                                                    const void *vx, size_t x_stride,
                                                                    const void *vy) {
  const block_q8_K *y = vy;
  const int64_t nb = n / QK_K;
  const size_t bb = t == IQ1S ? sizeof(block_iq1_s) : sizeof(block_iq1_m);
  const uint8_t *x[4];
  for (int r = 0; r < 4; r++) x[r] = (const uint8_t *)vx + r * x_stride;
  iq_index_buf ib[4];
  __m128 sum = _mm_setzero_ps();
  for (int r = 0; r < 4; r++)
    for (int64_t i = 0; i < 2 && i < nb; i++)
      iq1_index_words_t(t, x[r] + (size_t)i * bb, ib[r].w[i]);
  for (int64_t i = 0; i < nb; i++) {
    nllm_prefetch_span((const uint8_t *)vx + NLLM_PREFETCH_ROWS * x_stride + 4 * (size_t)i * bb,
                       4 * bb);
    const uint8_t *blk[4];
    __m256i acc[4];
    IQ_ROLLED
    for (int r = 0; r < 4; r++) {
      blk[r] = x[r] + (size_t)i * bb;
      if (i + 2 < nb) iq1_index_words_t(t, blk[r] + 2 * bb, ib[r].w[(i + 2) & 3]);
      const uint16_t *ix = ib[r].w[i & 3];
      iq1_block_state st;
      iq1_state(t, blk[r], &st);
      acc[r] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums), st.odd9);
      IQ_UNROLL8
      for (int c = 0; c < QK_K / 32; c++) {
        const __m256i w = iq1_weights(t, &st, ix, c);
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * c));
        acc[r] = _mm256_add_epi32(
            acc[r], _mm256_madd_epi16(_mm256_maddubs_epi16(w, q8), iq_odd_of(st.odd, c)));
      }
    }
    iq_rows4_sum(&sum, acc, blk, t == IQ1S ? iq1_s_dh : iq1_m_block_h, y[i].d);
  }
  _mm_storeu_ps(s, _mm_mul_ps(sum, _mm_set1_ps(0.125f)));
}

static void iq1_s_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq1_vec_dot_avx2(IQ1S, n, s, vx, vy);
}
static void iq1_m_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy) {
  iq1_vec_dot_avx2(IQ1M, n, s, vx, vy);
}
static void iq1_s_vec_dot4_avx2(int64_t n, float *s, const void *vx, size_t x_stride,
                                const void *vy) {
  iq1_vec_dot4_avx2(IQ1S, n, s, vx, x_stride, vy);
}
static void iq1_m_vec_dot4_avx2(int64_t n, float *s, const void *vx, size_t x_stride,
                                const void *vy) {
  iq1_vec_dot4_avx2(IQ1M, n, s, vx, x_stride, vy);
}
static void iq1_s_vec_dot4x4_avx2(int64_t n, float *s, size_t s_stride, const void *vx,
                                  size_t x_stride, const void *vy, size_t y_stride) {
  iq1_vec_dot4x4_avx2(IQ1S, 4, n, s, s_stride, vx, x_stride, vy, y_stride);
}
static void iq1_m_vec_dot4x4_avx2(int64_t n, float *s, size_t s_stride, const void *vx,
                                  size_t x_stride, const void *vy, size_t y_stride) {
  iq1_vec_dot4x4_avx2(IQ1M, 4, n, s, s_stride, vx, x_stride, vy, y_stride);
}
static void iq1_s_vec_dot4xt_avx2(int64_t n, float *s, size_t s_stride, const void *vx,
                                  size_t x_stride, const void *vy, size_t y_stride, int n_tok) {
  if (n_tok == 3)
    iq1_vec_dot4x4_avx2(IQ1S, 3, n, s, s_stride, vx, x_stride, vy, y_stride);
  else
    iq1_vec_dot4x4_avx2(IQ1S, 2, n, s, s_stride, vx, x_stride, vy, y_stride);
}
static void iq1_m_vec_dot4xt_avx2(int64_t n, float *s, size_t s_stride, const void *vx,
                                  size_t x_stride, const void *vy, size_t y_stride, int n_tok) {
  if (n_tok == 3)
    iq1_vec_dot4x4_avx2(IQ1M, 3, n, s, s_stride, vx, x_stride, vy, y_stride);
  else
    iq1_vec_dot4x4_avx2(IQ1M, 2, n, s, s_stride, vx, x_stride, vy, y_stride);
}

static const nllm_qtype_kernels iq_avx2_rows[] = {
    {.type = NLLM_TYPE_IQ2_XXS,
     .vec_dot = iq2_xxs_vec_dot_avx2,
     .vec_dot4 = iq2_xxs_vec_dot4_avx2,
     .vec_dot4x4 = iq2_xxs_vec_dot4x4_avx2,
     .vec_dot4xt = iq2_xxs_vec_dot4xt_avx2,
     .blas_min_tokens = 96},
    {.type = NLLM_TYPE_IQ2_XS,
     .vec_dot = iq2_xs_vec_dot_avx2,
     .vec_dot4 = iq2_xs_vec_dot4_avx2,
     .vec_dot4x4 = iq2_xs_vec_dot4x4_avx2,
     .vec_dot4xt = iq2_xs_vec_dot4xt_avx2,
     .blas_min_tokens = 96},
    {.type = NLLM_TYPE_IQ2_S,
     .vec_dot = iq2_s_vec_dot_avx2,
     .vec_dot4 = iq2_s_vec_dot4_avx2,
     .vec_dot4x4 = iq2_s_vec_dot4x4_avx2,
     .vec_dot4xt = iq2_s_vec_dot4xt_avx2,
     .blas_min_tokens = 96},
    {.type = NLLM_TYPE_IQ3_XXS,
     .vec_dot = iq3_xxs_vec_dot_avx2,
     .vec_dot4 = iq3_xxs_vec_dot4_avx2,
     .vec_dot4x4 = iq3_xxs_vec_dot4x4_avx2,
     .vec_dot4xt = iq3_xxs_vec_dot4xt_avx2,
     .blas_min_tokens = 96},
    {.type = NLLM_TYPE_IQ3_S,
     .vec_dot = iq3_s_vec_dot_avx2,
     .vec_dot4 = iq3_s_vec_dot4_avx2,
     .vec_dot4x4 = iq3_s_vec_dot4x4_avx2,
     .vec_dot4xt = iq3_s_vec_dot4xt_avx2,
     .blas_min_tokens = 96},
    {.type = NLLM_TYPE_IQ1_S,
     .vec_dot = iq1_s_vec_dot_avx2,
     .vec_dot4 = iq1_s_vec_dot4_avx2,
     .vec_dot4x4 = iq1_s_vec_dot4x4_avx2,
     .vec_dot4xt = iq1_s_vec_dot4xt_avx2,
     .blas_min_tokens = 96},
    {.type = NLLM_TYPE_IQ1_M,
     .vec_dot = iq1_m_vec_dot_avx2,
     .vec_dot4 = iq1_m_vec_dot4_avx2,
     .vec_dot4x4 = iq1_m_vec_dot4x4_avx2,
     .vec_dot4xt = iq1_m_vec_dot4xt_avx2,
     .blas_min_tokens = 96},
};
const nllm_kernel_set nllm_kernels_iq_avx2 = {iq_avx2_rows,
                                              sizeof iq_avx2_rows / sizeof iq_avx2_rows[0]};
