/* AVX-512 (BW, VL, VNNI, VBMI) dot products of the IQ codebook formats against Q8_K: two
 * chunks (64 values, 8 groups) per step, for one row (vec_dot), four rows (vec_dot4, decode) and
 * four rows by four tokens (vec_dot4x4, batches and short prompts). Per step:
 * - the signs are one 64-bit mask: explicit sign bytes (IQ2_S, IQ3_S) are the mask as stored;
 *   the 7-bit sign indices (IQ2_XXS, IQ2_XS, IQ3_XXS) are cut out of their words by one
 *   vpmultishiftqb and completed with their parity bit by one vpermi2b through the 128 sign
 *   bytes;
 * - the sign of each activation joins that mask (XOR with vpmovb2m), so the weights are
 *   negated once by a masked subtraction and |q8| (128 for -128, read unsigned) is the other
 *   operand of vpmaddubsw: no -128 trap and no vpsignb (AVX-512 has none); IQ1's values
 *   (8 * ternary point +- 1) are instead made unsigned (+9) for vpmaddubsw against the signed
 *   activations, and 9 * Q8_K's bsums come off (iq1_weights);
 * - the IQ2 and IQ3 grid points are looked up as 16-bit codes, 64 points per vpermi2b for the
 *   whole block at once, and unpacked per step by three byte permutes (iq_codes below); the
 *   IQ1 points are scalar loads put together in a register (vpgatherqq / vpgatherdd measured
 *   1.3-1.9x slower per block on the AMD cores here; gathering IQ1's points as 16-bit codes,
 *   two vpgatherdd per block, no faster one row at a time and 20% slower four abreast,
 *   docs/performance.md);
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

/* A block's 32 sign indices (7 bits each, four to each of x's quadwords at the same bit offsets
 * in each; the bits above them are ignored) as its four steps' 64-bit masks of signs: one
 * vpmultishiftqb cuts them out, one vpermi2b completes them, vpmovqd packs them. */
static inline void iq_sign7_block(__m512i x, long long offsets, uint64_t neg[4]) {
  const __m512i lo = _mm512_load_si512((const void *)iq_sign_bytes);
  const __m512i hi = _mm512_load_si512((const void *)(iq_sign_bytes + 64));
  const __m512i v = _mm512_multishift_epi64_epi8(_mm512_set1_epi64(offsets), x);
  _mm256_storeu_si256((__m256i *)(void *)neg,
                      _mm512_cvtepi64_epi32(_mm512_permutex2var_epi8(lo, v, hi)));
}

/* The odd scales 2s + 1 of a block as 16-bit words (where its format puts them: word 4k and,
 * for two nibbles per byte, 4k + 1), and per step the 32 words of its 64 values' pairs, picked
 * by one vpermw. The nibbles are s in word 4k (the low nibble of quadword k) and in word
 * 4k + 1 (its high one). */
static inline __m512i iq_odd_words(__m512i s) {
  return _mm512_or_si512(_mm512_add_epi16(s, s), _mm512_set1_epi64(0x0000000000010001LL));
}
static inline __m512i iq_odd_nibbles(__m512i bytes) {
  const __m512i n =
      _mm512_or_si512(_mm512_and_si512(bytes, _mm512_set1_epi64(15)),
                      _mm512_slli_epi64(_mm512_and_si512(bytes, _mm512_set1_epi64(0xf0)), 12));
  return iq_odd_words(n);
}
/* Per step p: word pick of pair lane l: a scale per chunk in quadword k = chunk (IQ2_XXS,
 * IQ3_XXS); two per chunk, quadword k = chunk (IQ2_XS, IQ2_S); two chunks per quadword (IQ3_S). */
static uint16_t iq_odd_chunk[4][32] __attribute__((aligned(64)));
static uint16_t iq_odd_half[4][32] __attribute__((aligned(64)));
static uint16_t iq_odd_pair[4][32] __attribute__((aligned(64)));
static inline __m512i iq_odd_pick(const uint16_t *pick, __m512i odd) {
  return _mm512_permutexvar_epi16(_mm512_load_si512((const void *)pick), odd);
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

/* The IQ2 and IQ3 grids as codes. Every IQ2 grid byte is one of 3 levels and every IQ3 one of
 * 8, so a point packs into 16 bits: the numbers of its values' levels, 2 bits each for the 8
 * values of an IQ2 point, 3 bits each for the 4 of an IQ3 point (value v at bit bits * v). The
 * codes' low and high bytes are two byte planes of the grid's length, in which one vpermi2b
 * looks up 64 points from a 128-point window: a block's 32 or 64 points cost 2 to 16 permutes
 * and blends per plane instead of one scalar load and insert each. Built from the grids (the
 * one place they are kept) by nllm_iq_avx512_init; the levels are the grid's distinct bytes in
 * increasing order, and level[x] is level x mod 4 (IQ2) or mod 8 (IQ3) over all 64 byte
 * values, so that bits above a value's code in the byte permutes' index bytes do not matter. */
static uint8_t iq2xxs_code[2 * 256] __attribute__((aligned(64)));
static uint8_t iq2xs_code[2 * 512] __attribute__((aligned(64)));
static uint8_t iq2s_code[2 * 1024] __attribute__((aligned(64)));
static uint8_t iq3xxs_code[2 * 256] __attribute__((aligned(64)));
static uint8_t iq3s_code[2 * 512] __attribute__((aligned(64)));
static uint8_t iq2_level[64] __attribute__((aligned(64)));
static uint8_t iq3xxs_level[64] __attribute__((aligned(64)));
static uint8_t iq3s_level[64] __attribute__((aligned(64)));
/* Per step p, the byte permute that puts each point's code (low byte, high byte) at the start
 * of its 8 bytes (IQ2: 8 points) or 4 bytes (IQ3: 16 points), and the bit offsets within each
 * quadword at which vpmultishiftqb finds value j's code. */
static uint8_t iq2_unpack[4][64] __attribute__((aligned(64)));
static uint8_t iq3_unpack[4][64] __attribute__((aligned(64)));
static uint8_t iq2_shift[64] __attribute__((aligned(64)));
static uint8_t iq3_shift[64] __attribute__((aligned(64)));
/* IQ1, per step p: the odd scale (of 16 values k = 4p + l / 8) of pair lane l */
static uint16_t iq1_odd_pick[4][32] __attribute__((aligned(64)));
/* IQ2_XXS: where index byte i sits in the block's 64 bytes after the scale (4 of each 8) */
static uint8_t iq2xxs_index_pos[64] __attribute__((aligned(64)));
/* IQ2_S: byte i / 4 of the qh word (index i's two high bits), and which of its bits */
static uint8_t iq2s_qh_pos[64] __attribute__((aligned(64)));
static uint8_t iq2s_bit8[64] __attribute__((aligned(64)));

static void iq_codes_build(const uint64_t *pts, int n, int width, int bits, uint8_t *code,
                           uint8_t *level) {
  uint8_t lv[8];
  int nl = 0;
  for (int e = 0; e < n; e++)
    for (int v = 0; v < width; v++) {
      const uint8_t b = (uint8_t)(pts[e] >> (8 * v));
      int k = 0;
      while (k < nl && lv[k] != b) k++;
      if (k == nl && nl < 1 << bits) lv[nl++] = b;
    }
  for (int i = 1; i < nl; i++) /* insertion sort: levels in increasing order */
    for (int k = i; k > 0 && lv[k - 1] > lv[k]; k--) {
      const uint8_t t = lv[k];
      lv[k] = lv[k - 1];
      lv[k - 1] = t;
    }
  const int lmask = (1 << bits) - 1;
  for (int x = 0; x < 64; x++) level[x] = (x & lmask) < nl ? lv[x & lmask] : 0;
  for (int e = 0; e < n; e++) {
    unsigned c = 0;
    for (int v = 0; v < width; v++) {
      const uint8_t b = (uint8_t)(pts[e] >> (8 * v));
      unsigned k = 0;
      while ((int)k < nl && lv[k] != b) k++;
      c |= k << (bits * v);
    }
    code[e] = (uint8_t)c;
    code[n + e] = (uint8_t)(c >> 8);
  }
}

void nllm_iq_avx512_init(void) {
  uint64_t pts[512];
  iq_codes_build(nllm_iq2xxs_grid, 256, 8, 2, iq2xxs_code, iq2_level);
  iq_codes_build(nllm_iq2xs_grid, 512, 8, 2, iq2xs_code, iq2_level);
  iq_codes_build(nllm_iq2s_grid, 1024, 8, 2, iq2s_code, iq2_level);
  for (int e = 0; e < 256; e++) pts[e] = nllm_iq3xxs_grid[e];
  iq_codes_build(pts, 256, 4, 3, iq3xxs_code, iq3xxs_level);
  for (int e = 0; e < 512; e++) pts[e] = nllm_iq3s_grid[e];
  iq_codes_build(pts, 512, 4, 3, iq3s_code, iq3s_level);
  for (int j = 0; j < 64; j++) {
    for (int p = 0; p < 4; p++) {
      iq2_unpack[p][j] = (uint8_t)((j % 8 == 1 ? 64 : 0) + 8 * p + j / 8);
      iq3_unpack[p][j] = (uint8_t)((j % 4 == 1 ? 64 : 0) + 16 * p + j / 4);
    }
    iq2_shift[j] = (uint8_t)(2 * (j % 8));
    iq3_shift[j] = (uint8_t)(32 * (j % 8 / 4) + 3 * (j % 4));
    iq2xxs_index_pos[j] = (uint8_t)(8 * (j / 4 % 8) + j % 4);
    iq2s_qh_pos[j] = (uint8_t)(j / 4 % 8);
    iq2s_bit8[j] = (uint8_t)(1u << (2 * (j % 4)));
  }
  for (int p = 0; p < 4; p++)
    for (int l = 0; l < 32; l++) {
      const int chunk = 2 * p + l / 16;
      iq_odd_chunk[p][l] = (uint16_t)(4 * chunk);
      iq_odd_half[p][l] = (uint16_t)(4 * chunk + l / 8 % 2);
      iq_odd_pair[p][l] = (uint16_t)(4 * p + l / 16);
      iq1_odd_pick[p][l] = (uint16_t)(4 * p + l / 8);
    }
}

/* 64 points' bytes of one code plane of n points (256, 512 or 1024): bits 0-6 of each index
 * byte pick within a 128-point window, b7, b8 and b9 are the index bits that pick the window */
static inline __attribute__((always_inline)) __m512i iq_plane_lookup(const uint8_t *plane, int n,
                                                                     __m512i idx, __mmask64 b7,
                                                                     __mmask64 b8, __mmask64 b9) {
  const __m512i *t = (const __m512i *)(const void *)plane;
  __m512i w[8];
  _Pragma("GCC unroll 8") for (int i = 0; i < n / 128; i++) w[i] =
      _mm512_permutex2var_epi8(_mm512_load_si512(t + 2 * i), idx, _mm512_load_si512(t + 2 * i + 1));
  _Pragma("GCC unroll 4") for (int i = 0; i < n / 256; i++) w[i] =
      _mm512_mask_blend_epi8(b7, w[2 * i], w[2 * i + 1]);
  _Pragma("GCC unroll 2") for (int i = 0; i < n / 512; i++) w[i] =
      _mm512_mask_blend_epi8(b8, w[2 * i], w[2 * i + 1]);
  if (n == 1024) w[0] = _mm512_mask_blend_epi8(b9, w[0], w[1]);
  return w[0];
}

/* A block's points as codes: lane i of lo and hi holds the low and high byte of point i's. */
typedef struct {
  __m512i lo, hi;
  __m512i odd;     /* the odd scales (iq_odd_words) */
  uint64_t neg[4]; /* the steps' sign masks, for the 7-bit sign indices */
} iq_codes;

static inline __attribute__((always_inline)) iq_codes iq_codes_lookup(const uint8_t *code, int n,
                                                                      __m512i idx, __mmask64 b8,
                                                                      __mmask64 b9) {
  const __mmask64 b7 = _mm512_movepi8_mask(idx);
  iq_codes c;
  c.lo = iq_plane_lookup(code, n, idx, b7, b8, b9);
  c.hi = iq_plane_lookup(code + n, n, idx, b7, b8, b9);
  return c;
}

/* Step p's 64 grid bytes: each code's two bytes moved to the front of its point's bytes, each
 * value's level number shifted to the bottom of its byte, the level looked up */
static inline __m512i iq_codes_points(const iq_codes *c, const uint8_t *unpack,
                                      const uint8_t *shift, const uint8_t *level) {
  const __m512i w = _mm512_permutex2var_epi8(c->lo, _mm512_load_si512((const void *)unpack), c->hi);
  const __m512i f = _mm512_multishift_epi64_epi8(_mm512_load_si512((const void *)shift), w);
  return _mm512_permutexvar_epi8(f, _mm512_load_si512((const void *)level));
}

/* One step: 64 grid magnitudes (bytes), the mask of their minus signs, their odd scales. */
typedef struct {
  __m512i grid;
  uint64_t neg;
  __m512i odd16;
} iq_step;

/* IQ2_XXS: per chunk (a quadword) 4 index bytes, then a word of four sign indices and the
 * scale on top */
static inline __attribute__((always_inline)) iq_codes iq2_xxs_prep(const uint8_t *blk) {
  const __m512i x = _mm512_loadu_si512((const void *)(blk + 2));
  const __m512i idx = _mm512_permutexvar_epi8(_mm512_load_si512((const void *)iq2xxs_index_pos), x);
  iq_codes c = iq_codes_lookup(iq2xxs_code, 256, idx, 0, 0);
  iq_sign7_block(x, 0x352e2720LL, c.neg); /* bits 32, 39, 46, 53 */
  c.odd = iq_odd_words(_mm512_srli_epi64(x, 60));
  return c;
}
static inline __attribute__((always_inline)) iq_step iq2_xxs_step(const uint8_t *blk,
                                                                  const iq_codes *c, int p) {
  (void)blk;
  iq_step st;
  st.grid = iq_codes_points(c, iq2_unpack[p], iq2_shift, iq2_level);
  st.neg = c->neg[p];
  st.odd16 = iq_odd_pick(iq_odd_chunk[p], c->odd);
  return st;
}

/* IQ2_XS: per group a word of a 9-bit index and a 7-bit sign index; a scale byte per chunk */
static inline __attribute__((always_inline)) iq_codes iq2_xs_prep(const uint8_t *blk) {
  const __m512i x = _mm512_loadu_si512((const void *)(blk + 2));
  const __m512i idx = _mm512_zextsi256_si512(_mm512_cvtepi16_epi8(x));
  const __mmask64 b8 = (__mmask64)_mm512_test_epi16_mask(x, _mm512_set1_epi16(256));
  iq_codes c = iq_codes_lookup(iq2xs_code, 512, idx, b8, 0);
  iq_sign7_block(x, 0x39291909LL, c.neg); /* bits 9, 25, 41, 57 */
  c.odd =
      iq_odd_nibbles(_mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(blk + 2 + QK_K / 4))));
  return c;
}
static inline __attribute__((always_inline)) iq_step iq2_xs_step(const uint8_t *blk,
                                                                 const iq_codes *c, int p) {
  (void)blk;
  iq_step st;
  st.grid = iq_codes_points(c, iq2_unpack[p], iq2_shift, iq2_level);
  st.neg = c->neg[p];
  st.odd16 = iq_odd_pick(iq_odd_half[p], c->odd);
  return st;
}
/* IQ2_S: index byte + 2 bits of the chunk's qh byte (index i's at bits 2i, 2i + 1 of the qh
 * word); explicit sign bytes; a scale byte per chunk */
static inline __attribute__((always_inline)) iq_codes iq2_s_prep(const uint8_t *blk) {
  const __m512i idx =
      _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 2)));
  const __m512i qh = _mm512_permutexvar_epi8(
      _mm512_load_si512((const void *)iq2s_qh_pos),
      _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(blk + 2 + QK_K / 4))));
  const __m512i bit8 = _mm512_load_si512((const void *)iq2s_bit8);
  const __mmask64 b8 = _mm512_test_epi8_mask(qh, bit8);
  const __mmask64 b9 = _mm512_test_epi8_mask(qh, _mm512_add_epi8(bit8, bit8));
  iq_codes c = iq_codes_lookup(iq2s_code, 1024, idx, b8, b9);
  c.odd = iq_odd_nibbles(
      _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(blk + 2 + QK_K / 4 + QK_K / 32))));
  return c;
}
static inline __attribute__((always_inline)) iq_step iq2_s_step(const uint8_t *blk,
                                                                const iq_codes *c, int p) {
  iq_step st;
  st.grid = iq_codes_points(c, iq2_unpack[p], iq2_shift, iq2_level);
  st.neg = iq_rd64(blk + 2 + QK_K / 8 + 8 * p);
  st.odd16 = iq_odd_pick(iq_odd_half[p], c->odd);
  return st;
}
/* IQ3_XXS: 64 index bytes into a grid of 4-value points; a word per chunk of four sign indices
 * and the scale on top */
static inline __attribute__((always_inline)) iq_codes iq3_xxs_prep(const uint8_t *blk) {
  const __m512i idx = _mm512_loadu_si512((const void *)(blk + 2));
  iq_codes c = iq_codes_lookup(iq3xxs_code, 256, idx, 0, 0);
  const __m512i aux = _mm512_cvtepu32_epi64(
      _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2 + QK_K / 4)));
  iq_sign7_block(aux, 0x150e0700LL, c.neg); /* bits 0, 7, 14, 21 */
  c.odd = iq_odd_words(_mm512_srli_epi64(aux, 28));
  return c;
}
static inline __attribute__((always_inline)) iq_step iq3_xxs_step(const uint8_t *blk,
                                                                  const iq_codes *c, int p) {
  (void)blk;
  iq_step st;
  st.grid = iq_codes_points(c, iq3_unpack[p], iq3_shift, iq3xxs_level);
  st.neg = c->neg[p];
  st.odd16 = iq_odd_pick(iq_odd_chunk[p], c->odd);
  return st;
}
/* IQ3_S: index byte + bit i of the qh word for index i; explicit sign bytes; a scale nibble
 * per chunk, two to a byte */
static inline __attribute__((always_inline)) iq_codes iq3_s_prep(const uint8_t *blk) {
  const __m512i idx = _mm512_loadu_si512((const void *)(blk + 2));
  iq_codes c = iq_codes_lookup(iq3s_code, 512, idx, _cvtu64_mask64(iq_rd64(blk + 2 + QK_K / 4)), 0);
  c.odd = iq_odd_nibbles(_mm512_cvtepu8_epi64(
      _mm_cvtsi32_si128((int)iq_rd32(blk + 2 + QK_K / 4 + QK_K / 32 + QK_K / 8))));
  return c;
}
static inline __attribute__((always_inline)) iq_step iq3_s_step(const uint8_t *blk,
                                                                const iq_codes *c, int p) {
  iq_step st;
  st.grid = iq_codes_points(c, iq3_unpack[p], iq3_shift, iq3s_level);
  st.neg = iq_rd64(blk + 2 + QK_K / 4 + QK_K / 32 + 8 * p);
  st.odd16 = iq_odd_pick(iq_odd_pair[p], c->odd);
  return st;
}

/* IQ1 as unsigned weights: value = 8 * point + shift (point -1, 0, 1; shift +-1) is w - 9 with
 * w = 8 * (point + 1) + (shift + 1) in 0..18, so vpmaddubsw takes w as it is against the signed
 * activations (no abs, no sign mask), and the 9 * sum(q8) that comes off is Q8_K's bsums per
 * 16 values times their odd scale, the accumulator's starting value (iq_vec_dot_avx512's
 * "unsigned" form). The prep cuts out the block's 32 11-bit indices (lo: groups 0-15, hi:
 * 16-31, as dwords) and its 16 odd scales (words, in order of the 16-value parts); each step
 * reads its 8 points from the grid by scalar loads (vpgatherdd was slower, see above). */
static inline __attribute__((always_inline)) iq_codes iq1_indices(__m512i qs0, __m512i qs1,
                                                                  __m512i hi0, __m512i hi1,
                                                                  __m512i sh, __m512i odd) {
  const __m512i m7 = _mm512_set1_epi32(7);
  iq_codes c;
  memset(&c, 0, sizeof c);
  c.lo =
      _mm512_or_si512(qs0, _mm512_slli_epi32(_mm512_and_si512(_mm512_srlv_epi32(hi0, sh), m7), 8));
  c.hi =
      _mm512_or_si512(qs1, _mm512_slli_epi32(_mm512_and_si512(_mm512_srlv_epi32(hi1, sh), m7), 8));
  c.odd = odd;
  return c;
}

/* Step p's 64 weights w = 8 * (point + 1) + (shift + 1): pos8 has bit k set where group k's
 * shift is +1 (a quadword per group) */
static inline __attribute__((always_inline)) __m512i iq1_weights(const iq_codes *c, int p,
                                                                 __mmask8 pos8) {
  uint32_t ix[16] __attribute__((aligned(64)));
  _mm512_store_si512((void *)ix, p < 2 ? c->lo : c->hi);
  const int o = 8 * (p % 2);
  const __m512i g = iq_grid8(nllm_iq1s_grid, ix[o], ix[o + 1], ix[o + 2], ix[o + 3], ix[o + 4],
                             ix[o + 5], ix[o + 6], ix[o + 7]);
  const __m512i u8 = _mm512_slli_epi16(_mm512_add_epi8(g, _mm512_set1_epi8(1)), 3);
  /* +2 in every byte of a quadword: bytes stay <= 18, no carries */
  return _mm512_mask_add_epi64(u8, pos8, u8, _mm512_set1_epi8(2));
}

/* IQ1_S: an 11-bit index per group (a qs byte, 3 bits of the chunk's qh word: group l's at bit
 * 3l); per chunk (32 values) a 3-bit scale (bits 12-14) and the shift's sign (bit 15) */
static inline __attribute__((always_inline)) iq_codes iq1_s_prep(const uint8_t *blk) {
  const __m128i qh8 = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2 + QK_K / 8));
  const __m512i qh = _mm512_cvtepu16_epi32(_mm256_zextsi128_si256(qh8));
  const __m512i g4 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  /* part k (16 values) of chunk k / 2 */
  const __m512i sc = _mm512_and_si512(
      _mm512_srli_epi16(
          _mm512_permutexvar_epi16(_mm512_castsi256_si512(_mm256_setr_epi16(
                                       0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)),
                                   _mm512_castsi128_si512(qh8)),
          12),
      _mm512_set1_epi16(7));
  return iq1_indices(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2))),
                     _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2 + 16))),
                     _mm512_permutexvar_epi32(g4, qh),
                     _mm512_permutexvar_epi32(_mm512_add_epi32(g4, _mm512_set1_epi32(4)), qh),
                     _mm512_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9),
                     _mm512_or_si512(_mm512_add_epi16(sc, sc), _mm512_set1_epi16(1)));
}
static inline __attribute__((always_inline)) iq_step iq1_s_step(const uint8_t *blk,
                                                                const iq_codes *c, int p) {
  const uint32_t qh = iq_rd32(blk + 2 + QK_K / 8 + 4 * p);
  const unsigned pos = (qh >> 15 & 1 ? 0u : 0x0fu) | (qh >> 31 ? 0u : 0xf0u);
  iq_step st;
  st.grid = iq1_weights(c, p, (__mmask8)pos);
  st.neg = 0;
  st.odd16 = iq_odd_pick(iq1_odd_pick[p], c->odd);
  return st;
}

/* IQ1_M: per group 11 index bits (a qs byte, the low 3 bits of a qh nibble: group g's is nibble
 * g % 2 of qh byte g / 2) and the sign of its own shift (the nibble's top bit); a 3-bit scale
 * per 16 values, four to a scale word (part k: word k / 4, bits 3 (k % 4)) */
static inline __attribute__((always_inline)) iq_codes iq1_m_prep(const uint8_t *blk) {
  const __m512i qh =
      _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(blk + QK_K / 8)));
  const __m512i g2 = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const __m512i words = _mm512_permutexvar_epi16(
      _mm512_castsi256_si512(_mm256_setr_epi16(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)),
      _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(blk + QK_K / 8 + QK_K / 16))));
  const __m512i sc = _mm512_and_si512(
      _mm512_srlv_epi16(words, _mm512_castsi256_si512(_mm256_setr_epi16(0, 3, 6, 9, 0, 3, 6, 9, 0,
                                                                        3, 6, 9, 0, 3, 6, 9))),
      _mm512_set1_epi16(7));
  return iq1_indices(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)blk)),
                     _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + 16))),
                     _mm512_permutexvar_epi32(g2, qh),
                     _mm512_permutexvar_epi32(_mm512_add_epi32(g2, _mm512_set1_epi32(8)), qh),
                     _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4),
                     _mm512_or_si512(_mm512_add_epi16(sc, sc), _mm512_set1_epi16(1)));
}
static inline __attribute__((always_inline)) iq_step iq1_m_step(const uint8_t *blk,
                                                                const iq_codes *c, int p) {
  const __m512i nib = _mm512_srlv_epi64(_mm512_set1_epi64(iq_rd32(blk + QK_K / 8 + 4 * p)),
                                        _mm512_setr_epi64(0, 4, 8, 12, 16, 20, 24, 28));
  iq_step st;
  st.grid = iq1_weights(c, p, _mm512_testn_epi64_mask(nib, _mm512_set1_epi64(8)));
  st.neg = 0;
  st.odd16 = iq_odd_pick(iq1_odd_pick[p], c->odd);
  return st;
}

typedef iq_codes (*iq_prep_fn)(const uint8_t *blk);
typedef iq_step (*iq_step_fn)(const uint8_t *blk, const iq_codes *c, int p);

/* IQ1's correction, -9 * sum(q8) per 16 values as words (|sum| <= 2048: no overflow), the upper
 * half zero (the odd scales' upper words are not set) */
static inline __m512i iq1_neg9_bsums(const block_q8_K *y) {
  return _mm512_zextsi256_si512(_mm256_mullo_epi16(
      _mm256_loadu_si256((const __m256i *)(const void *)y->bsums), _mm256_set1_epi16(-9)));
}

/* One row. uw (a constant): the unsigned form of IQ1 (iq1_weights) */
static inline __attribute__((always_inline)) void iq_vec_dot_avx512(
    int64_t n, float *s, const void *vx, const void *vy, size_t block_bytes, iq_prep_fn prep,
    iq_step_fn step, float group_mul, int uw) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const uint8_t *blk = x + (size_t)i * block_bytes;
    const iq_codes codes = prep(blk);
    __m512i acc = uw ? _mm512_dpwssd_epi32(_mm512_setzero_si512(), codes.odd, iq1_neg9_bsums(&y[i]))
                     : _mm512_setzero_si512();
    _Pragma("GCC unroll 4") for (int p = 0; p < QK_K / 64; p++) {
      const iq_step st = step(blk, &codes, p);
      const __m512i q8 = _mm512_loadu_si512((const void *)(y[i].qs + 64 * p));
      if (uw) {
        acc = _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(st.grid, q8), st.odd16);
        continue;
      }
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
    size_t y_stride, int nt, size_t block_bytes, iq_prep_fn prep, iq_step_fn step, float group_mul,
    int uw) {
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
    if (nt == 1)
      nllm_prefetch_span(x + NLLM_PREFETCH_ROWS * x_stride + 4 * (size_t)i * block_bytes,
                         4 * block_bytes);
    iq_codes codes[4];
    IQ_UNROLL4
    for (int r = 0; r < 4; r++) codes[r] = prep(blk[r]);
    __m512i acc[16];
    IQ_UNROLL4
    for (int t = 0; t < nt; t++) {
      const __m512i nb9 = uw ? iq1_neg9_bsums(y[t]) : _mm512_setzero_si512();
      IQ_UNROLL4
      for (int r = 0; r < 4; r++)
        acc[4 * t + r] = uw ? _mm512_dpwssd_epi32(_mm512_setzero_si512(), codes[r].odd, nb9)
                            : _mm512_setzero_si512();
    }
    IQ_UNROLL4
    for (int p = 0; p < QK_K / 64; p++) {
      iq_step st[4];
      IQ_UNROLL4
      for (int r = 0; r < 4; r++) st[r] = step(blk[r], &codes[r], p);
      IQ_UNROLL4
      for (int t = 0; t < nt; t++) {
        const __m512i q8 = _mm512_loadu_si512((const void *)(y[t]->qs + 64 * p));
        if (uw) {
          IQ_UNROLL4
          for (int r = 0; r < 4; r++)
            acc[4 * t + r] = _mm512_dpwssd_epi32(acc[4 * t + r],
                                                 _mm512_maddubs_epi16(st[r].grid, q8), st[r].odd16);
          continue;
        }
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
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq2_xxs), iq2_xxs_prep, iq2_xxs_step, 0.125f, 0);
}
static void iq2_xs_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq2_xs), iq2_xs_prep, iq2_xs_step, 0.125f, 0);
}
static void iq2_s_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq2_s), iq2_s_prep, iq2_s_step, 0.125f, 0);
}
static void iq3_xxs_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq3_xxs), iq3_xxs_prep, iq3_xxs_step, 0.25f, 0);
}
static void iq3_s_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq3_s), iq3_s_prep, iq3_s_step, 1.0f, 0);
}

/* Where the tier's dequantizing f32 GEMM (past the crossover, kernels/cpu/gemm_float.c)
 * overtakes the four-by-four rows, on a 2048 x 2048 matrix, one thread (docs/performance.md):
 * the IQ3 rows stay ahead up to 256 tokens (IQ3_S 146 against 131 GFLOP/s) and fall behind at
 * 512 (131 against 143); IQ2_XXS and IQ2_XS tie at 256, IQ2_S is behind there (122 against
 * 136) and ahead at 128; IQ1_S / IQ1_M (unsigned weights, round 9) run at 151 / 140 GFLOP/s
 * at 128 tokens against 147 / 143, and fall behind at 256 (149 / 139 against 181 / 180). */
#define IQ2_BLAS_MIN_TOKENS 256
#define IQ3_BLAS_MIN_TOKENS 512
#define IQ1_BLAS_MIN_TOKENS 128

static void iq1_s_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq1_s), iq1_s_prep, iq1_s_step, 0.125f, 1);
}

static void iq1_m_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy) {
  iq_vec_dot_avx512(n, s, vx, vy, sizeof(block_iq1_m), iq1_m_prep, iq1_m_step, 0.125f, 1);
}

#define IQ_DOT4X4(name, prep, step, mul, uw)                                                  \
  static void name##_vec_dot4x4_avx512(int64_t n, float *s, size_t s_stride, const void *vx,  \
                                       size_t x_stride, const void *vy, size_t y_stride) {    \
    iq_vec_dot4x4_avx512(n, s, s_stride, vx, x_stride, vy, y_stride, 4, sizeof(block_##name), \
                         prep, step, mul, uw);                                                \
  }
IQ_DOT4X4(iq2_xxs, iq2_xxs_prep, iq2_xxs_step, 0.125f, 0)
IQ_DOT4X4(iq2_xs, iq2_xs_prep, iq2_xs_step, 0.125f, 0)
IQ_DOT4X4(iq2_s, iq2_s_prep, iq2_s_step, 0.125f, 0)
IQ_DOT4X4(iq3_xxs, iq3_xxs_prep, iq3_xxs_step, 0.25f, 0)
IQ_DOT4X4(iq3_s, iq3_s_prep, iq3_s_step, 1.0f, 0)
IQ_DOT4X4(iq1_s, iq1_s_prep, iq1_s_step, 0.125f, 1)
IQ_DOT4X4(iq1_m, iq1_m_prep, iq1_m_step, 0.125f, 1)
#undef IQ_DOT4X4

/* Decode's four rows, abreast: one activation load, mask and abs for four rows, and the
 * matrix read as one stream prefetched NLLM_PREFETCH_ROWS rows ahead (nllm_prefetch_span).
 * Without that prefetch four abreast ran 1.5-2.4x slower than row after row out of DRAM; with
 * it the 5632 x 2048 matvec takes 27-33% less time than row after row (docs/performance.md,
 * round 9). */
#define IQ_DOT4(name, prep, step, mul, uw)                                                       \
  static void name##_vec_dot4_avx512(int64_t n, float *s, const void *vx, size_t x_stride,       \
                                     const void *vy) {                                           \
    iq_vec_dot4x4_avx512(n, s, 4, vx, x_stride, vy, 0, 1, sizeof(block_##name), prep, step, mul, \
                         uw);                                                                    \
  }
IQ_DOT4(iq1_s, iq1_s_prep, iq1_s_step, 0.125f, 1)
IQ_DOT4(iq1_m, iq1_m_prep, iq1_m_step, 0.125f, 1)
IQ_DOT4(iq2_xxs, iq2_xxs_prep, iq2_xxs_step, 0.125f, 0)
IQ_DOT4(iq2_xs, iq2_xs_prep, iq2_xs_step, 0.125f, 0)
IQ_DOT4(iq2_s, iq2_s_prep, iq2_s_step, 0.125f, 0)
IQ_DOT4(iq3_xxs, iq3_xxs_prep, iq3_xxs_step, 0.25f, 0)
IQ_DOT4(iq3_s, iq3_s_prep, iq3_s_step, 1.0f, 0)
#undef IQ_DOT4

static const nllm_qtype_kernels iq_avx512_rows[] = {
    {.type = NLLM_TYPE_IQ2_XXS,
     .vec_dot = iq2_xxs_vec_dot_avx512,
     .vec_dot4 = iq2_xxs_vec_dot4_avx512,
     .vec_dot4x4 = iq2_xxs_vec_dot4x4_avx512,
     .blas_min_tokens = IQ2_BLAS_MIN_TOKENS},
    {.type = NLLM_TYPE_IQ2_XS,
     .vec_dot = iq2_xs_vec_dot_avx512,
     .vec_dot4 = iq2_xs_vec_dot4_avx512,
     .vec_dot4x4 = iq2_xs_vec_dot4x4_avx512,
     .blas_min_tokens = IQ2_BLAS_MIN_TOKENS},
    {.type = NLLM_TYPE_IQ2_S,
     .vec_dot = iq2_s_vec_dot_avx512,
     .vec_dot4 = iq2_s_vec_dot4_avx512,
     .vec_dot4x4 = iq2_s_vec_dot4x4_avx512,
     .blas_min_tokens = IQ2_BLAS_MIN_TOKENS},
    {.type = NLLM_TYPE_IQ3_XXS,
     .vec_dot = iq3_xxs_vec_dot_avx512,
     .vec_dot4 = iq3_xxs_vec_dot4_avx512,
     .vec_dot4x4 = iq3_xxs_vec_dot4x4_avx512,
     .blas_min_tokens = IQ3_BLAS_MIN_TOKENS},
    {.type = NLLM_TYPE_IQ3_S,
     .vec_dot = iq3_s_vec_dot_avx512,
     .vec_dot4 = iq3_s_vec_dot4_avx512,
     .vec_dot4x4 = iq3_s_vec_dot4x4_avx512,
     .blas_min_tokens = IQ3_BLAS_MIN_TOKENS},
    {.type = NLLM_TYPE_IQ1_S,
     .vec_dot = iq1_s_vec_dot_avx512,
     .vec_dot4 = iq1_s_vec_dot4_avx512,
     .vec_dot4x4 = iq1_s_vec_dot4x4_avx512,
     .blas_min_tokens = IQ1_BLAS_MIN_TOKENS},
    {.type = NLLM_TYPE_IQ1_M,
     .vec_dot = iq1_m_vec_dot_avx512,
     .vec_dot4 = iq1_m_vec_dot4_avx512,
     .vec_dot4x4 = iq1_m_vec_dot4x4_avx512,
     .blas_min_tokens = IQ1_BLAS_MIN_TOKENS},
};
const nllm_kernel_set nllm_kernels_iq_avx512 = {iq_avx512_rows,
                                                sizeof iq_avx512_rows / sizeof iq_avx512_rows[0]};
