/* AVX-512 (F, BW, VL, VNNI, VBMI) four-row decode kernels. This file alone is compiled with
 * those flags; qtypes.c puts these functions in its table only after cpuid and the OS say
 * the CPU has them, on top of the AVX2 row of each format.
 *
 * Why a tier above AVX2: at one thread the AVX2 kernels of the 4-bit formats are bound by
 * instructions, not by memory (docs/performance.md: a core reads faster than Q4_0's AVX2 kernel
 * consumes). One zmm
 * register holds four 32-value blocks; VBMI's two-register byte permute pulls the four blocks'
 * quants out of their 18- or 34-byte strides without per-block loads, and VNNI's dpbusd does
 * the byte products, their pair sums and the int32 sum in one instruction. That is about 4
 * instructions per block and row instead of about 10. */
#include <immintrin.h>
#include <stddef.h>

#include "cpu/quant.h"

/* AVX-512 has a reduction for zmm only; this one is for the ymm minimum sums. */
static inline float hsum_ymm(__m256 v) {
  const __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 m2 = _mm_add_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_add_ss(m2, _mm_movehdup_ps(m2)));
}

/* The lane sums of four registers in lanes 0..3, each added in _mm512_reduce_add_ps's order
 * (halves, then quarters, then pairs, as GCC's header does): one tree for four results, where
 * four reductions cost about four times its shuffles and adds (a few-token step finishes a
 * row's sums every 2048 values). */
static inline __m128 hsum4_ps(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
  __m512 q = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
  q = _mm512_add_ps(q, _mm512_permute_ps(q, _MM_SHUFFLE(1, 0, 3, 2)));
  q = _mm512_add_ps(q, _mm512_permute_ps(q, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_castps512_ps128(
      _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), q));
}

/* A tile's sums of one row for its T tokens: s[t * ss] for t < T. */
static inline void store_tokens(float *s, size_t ss, __m128 h, int T) {
  float v[4];
  _mm_storeu_ps(v, h);
  for (int t = 0; t < T; t++) s[(size_t)t * ss] = v[t];
}

/* Four fp16 values (at p, p + stride, ...) as 4 floats. */
static inline __m128 h4(const uint8_t *p, size_t stride) {
  const uint64_t w = (uint64_t)load_u16(p) | (uint64_t)load_u16(p + stride) << 16 |
                     (uint64_t)load_u16(p + 2 * stride) << 32 |
                     (uint64_t)load_u16(p + 3 * stride) << 48;
  return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)w));
}

/* Four fp16 scales (at p, p + stride, ...) as 16 floats: lanes 4k..4k+3 hold scale k, the lanes
 * of block k in a register of four 16-byte blocks. */
static inline __m512 h4_x4(const uint8_t *p, size_t stride) {
  const __m128 f = h4(p, stride);
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                               _mm512_castps128_ps512(f));
}

/* y's quants of four Q8_0 / Q8_1 blocks (p: the first block's qs; blocks st bytes apart) in
 * the order of the 32-value kernels: lo has elements 0..15 of block k in 16-byte lane k, hi
 * 16..31. */
static inline void y_quad(const uint8_t *p, size_t st, __m512i *lo, __m512i *hi) {
  const __m512i a =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p)),
                         _mm256_loadu_si256((const __m256i *)(p + st)), 1);
  const __m512i b =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2 * st))),
                         _mm256_loadu_si256((const __m256i *)(p + 3 * st)), 1);
  *lo = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  *hi = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

/* The same order for 128 contiguous bytes of y (four 32-value groups of a Q8_K block). */
static inline void y_quad_k(const int8_t *p, __m512i *lo, __m512i *hi) {
  const __m512i a = _mm512_loadu_si512(p), b = _mm512_loadu_si512(p + 64);
  *lo = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  *hi = _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

enum { K_Q4_0, K_IQ4_NL, K_Q4_1, K_Q5_0, K_Q5_1 };

/* The block layouts of the 32-value nibble formats: bytes, and where d, m, qh and qs sit. */
static inline size_t k32_size(int kind) {
  return kind == K_Q4_1 ? 20 : kind == K_Q5_0 ? 22 : kind == K_Q5_1 ? 24 : 18;
}
static inline size_t k32_qs(int kind) {
  return kind == K_Q4_1 ? 4 : kind == K_Q5_0 ? 6 : kind == K_Q5_1 ? 8 : 2;
}
static inline size_t k32_qh(int kind) {
  return kind == K_Q5_0 ? 2 : 4;
}

/* Four blocks (4 * xs <= 96 bytes) come from two loads: z0 = bytes 0..63 and z1 = the last 64
 * (so no byte past the four blocks is read). Index of byte p in the two-register permutes. */
static inline uint8_t k32_byte(size_t xs, int p) {
  const int base = (int)(4 * xs) - 64;
  return (uint8_t)(p < 64 ? p : 64 + p - base);
}

/* Permute indices of each 32-value format (see k32_tables_init), and of Q8_0; the IQ4_NL levels
 * + 128. Built once by nllm_avx512_init: building them per call cost more than a short row's
 * products. */
typedef struct {
  uint8_t qs[64], qh[64]; /* quants of the four blocks; qh bytes 0, 1 of each, then 2, 3 */
  uint16_t w[32];         /* d of block k in lanes 4k..4k+3, then m of the four in 16..19 */
} k32_index;
static k32_index k32_tables[K_Q5_1 + 1];
static uint8_t q8_0_qa[64], q8_0_qb[64];
static uint16_t q8_0_w[32];
static uint8_t iq4nl_u8[16];

static void k32_tables_init(int kind) {
  const size_t xs = k32_size(kind), off_qs = k32_qs(kind), off_qh = k32_qh(kind);
  k32_index *ix = &k32_tables[kind];
  memset(ix, 0, sizeof *ix);
  for (int k = 0; k < 4; k++) {
    const int blk = (int)(xs * (size_t)k);
    for (int j = 0; j < 16; j++) ix->qs[16 * k + j] = k32_byte(xs, blk + (int)off_qs + j);
    for (int j = 0; j < 2; j++) {
      ix->qh[2 * k + j] = k32_byte(xs, blk + (int)off_qh + j);
      ix->qh[8 + 2 * k + j] = k32_byte(xs, blk + (int)off_qh + 2 + j);
    }
    for (int j = 0; j < 4; j++) ix->w[4 * k + j] = (uint16_t)(k32_byte(xs, blk) / 2);
    ix->w[16 + k] = (uint16_t)(k32_byte(xs, blk + 2) / 2);
  }
}

/* Q4_0, IQ4_NL, Q4_1, Q5_0, Q5_1. Levels are made unsigned for dpbusd's unsigned operand (Q4_0's
 * nibble as is, offset 8; Q5_0's 5 bits, offset 16; IQ4_NL's table level + 128, offset 128)
 * and the offset comes off through offset * sum(y), computed once per four blocks for the four
 * rows; Q4_1 and Q5_1 add m * s (s = d * sum(y), from Q8_1). Q5's fifth bits become two 64-bit
 * masks (elements 0..15 and 16..31 of the four blocks) for a masked add of 16. */
static inline __attribute__((always_inline)) void dot4_32b(const int kind, int64_t n, float *s,
                                                           const uint8_t *x0, size_t bx,
                                                           const uint8_t *y0) {
  const size_t xs = k32_size(kind);
  const int has_min = kind == K_Q4_1 || kind == K_Q5_1, has_qh = kind == K_Q5_0 || kind == K_Q5_1;
  const size_t ys = has_min ? sizeof(block_q8_1) : sizeof(block_q8_0), y_qs = has_min ? 4 : 2;
  const int offset = kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : kind == K_IQ4_NL ? 128 : 0;
  const k32_index *ix = &k32_tables[kind];
  const __m512i idx_q = _mm512_loadu_si512(ix->qs), idx_h = _mm512_loadu_si512(ix->qh),
                idx_w = _mm512_loadu_si512(ix->w);
  const __m512i m4 = _mm512_set1_epi8(15), b16 = _mm512_set1_epi8(16),
                voff = _mm512_set1_epi8((char)offset);
  const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)iq4nl_u8));
  const int64_t nb = n / QK, nq = nb / 4 * 4;
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
  __m128 accm[4] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
  for (int64_t b = 0; b < nq; b += 4) {
    const uint8_t *yb = y0 + (size_t)b * ys;
    __m512i ylo, yhi, yoff = _mm512_setzero_si512();
    y_quad(yb + y_qs, ys, &ylo, &yhi);
    if (offset)
      yoff = _mm512_sub_epi32(
          _mm512_setzero_si512(),
          _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), voff, ylo), voff, yhi));
    const __m512 dy = h4_x4(yb, ys);
    const __m128 sy = has_min ? h4(yb + 2, ys) : _mm_setzero_ps();
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * 4 * xs);
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
      const __m512i z0 = _mm512_loadu_si512(x), z1 = _mm512_loadu_si512(x + 4 * xs - 64);
      const __m512i q = _mm512_permutex2var_epi8(z0, idx_q, z1);
      __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
      if (kind == K_IQ4_NL) {
        lo = _mm512_shuffle_epi8(lut, lo);
        hi = _mm512_shuffle_epi8(lut, hi);
      }
      if (has_qh) {
        const __m128i h = _mm512_castsi512_si128(_mm512_permutex2var_epi8(z0, idx_h, z1));
        lo = _mm512_mask_add_epi8(lo, _cvtu64_mask64((uint64_t)_mm_cvtsi128_si64(h)), lo, b16);
        hi = _mm512_mask_add_epi8(hi, _cvtu64_mask64((uint64_t)_mm_extract_epi64(h, 1)), hi, b16);
      }
      const __m512i p = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(yoff, lo, ylo), hi, yhi);
      const __m512i w = _mm512_permutex2var_epi16(z0, idx_w, z1);
      const __m512 dx = _mm512_cvtph_ps(_mm512_castsi512_si256(w));
      acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(dx, dy), _mm512_cvtepi32_ps(p), acc[r]);
      if (has_min)
        accm[r] = _mm_fmadd_ps(_mm_cvtph_ps(_mm512_extracti32x4_epi32(w, 2)), sy, accm[r]);
    }
  }
  static void (*const one_row[])(int64_t, float *, const void *, const void *) = {
      q4_0_vec_dot_avx2, iq4_nl_vec_dot_avx2, q4_1_vec_dot_avx2, q5_0_vec_dot_avx2,
      q5_1_vec_dot_avx2};
  for (int r = 0; r < 4; r++) {
    float t = 0;
    if (nq < nb) /* the last one to three blocks by the one-row kernel */
      one_row[kind]((nb - nq) * QK, &t, x0 + (size_t)r * bx + (size_t)nq * xs,
                    y0 + (size_t)nq * ys);
    __m128 m = _mm_add_ps(accm[r], _mm_movehl_ps(accm[r], accm[r]));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    s[r] = _mm512_reduce_add_ps(acc[r]) + _mm_cvtss_f32(m) + t;
  }
}

static void iq4_nl_vec_dot4_avx512(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_32b(K_IQ4_NL, n, s, x, bx, y);
}
static void q4_1_vec_dot4_avx512(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_32b(K_Q4_1, n, s, x, bx, y);
}
static void q5_0_vec_dot4_avx512(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_32b(K_Q5_0, n, s, x, bx, y);
}
static void q5_1_vec_dot4_avx512(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_32b(K_Q5_1, n, s, x, bx, y);
}

/* ---------------------------------------------------------------- prompt tiles
 * Four rows x up to four tokens (see nllm_gemm4_fn). The activations are prepared once per
 * matmul into the lane order of the four-row kernels above, with what those compute per
 * activation block (the offset sums, the scales widened to lanes) stored next to the quants,
 * so a token costs the tile four loads per four blocks. The weights of the four rows are
 * unpacked once per four blocks and serve every token. The lanes see the same integer sums and
 * the same float operations in the same order as vec_dot4, so the results are equal to it. */

/* 32-value formats without a minimum: per four blocks ylo, yhi (64 bytes each), the offset
 * term -offset * sum(y) per int32 lane, and dy per lane. */
static inline __attribute__((always_inline)) void prep_32b(const int kind, int64_t n,
                                                           const void *vy, void *vp) {
  const uint8_t *y0 = vy;
  uint8_t *out = vp;
  const size_t ys = sizeof(block_q8_0);
  const int offset = kind == K_Q4_0 ? 8 : kind == K_Q5_0 ? 16 : 128;
  const __m512i voff = _mm512_set1_epi8((char)offset);
  for (int64_t b = 0; b < n / QK; b += 4, out += 256) {
    const uint8_t *yb = y0 + (size_t)b * ys;
    __m512i ylo, yhi;
    y_quad(yb + 2, ys, &ylo, &yhi);
    const __m512i yoff = _mm512_sub_epi32(
        _mm512_setzero_si512(),
        _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), voff, ylo), voff, yhi));
    _mm512_storeu_si512(out, ylo);
    _mm512_storeu_si512(out + 64, yhi);
    _mm512_storeu_si512(out + 128, yoff);
    _mm512_storeu_ps(out + 192, h4_x4(yb, ys));
  }
}

static inline __attribute__((always_inline)) void gemm4_32b(const int kind, const int T, int64_t n,
                                                            float *s, size_t ss, const uint8_t *x0,
                                                            size_t bx, const uint8_t *p0,
                                                            size_t ps) {
  const size_t xs = k32_size(kind);
  const int has_qh = kind == K_Q5_0;
  const k32_index *ix = &k32_tables[kind];
  const __m512i idx_q = _mm512_loadu_si512(ix->qs), idx_h = _mm512_loadu_si512(ix->qh),
                idx_w = _mm512_loadu_si512(ix->w);
  const __m512i m4 = _mm512_set1_epi8(15), b16 = _mm512_set1_epi8(16);
  const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)iq4nl_u8));
  __m512 acc[4][NLLM_GEMM_TOK];
  for (int r = 0; r < 4; r++)
    for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < n / QK; b += 4) {
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * 4 * xs);
    __m512i lo[4], hi[4];
    __m512 dx[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
      const __m512i z0 = _mm512_loadu_si512(x), z1 = _mm512_loadu_si512(x + 4 * xs - 64);
      const __m512i q = _mm512_permutex2var_epi8(z0, idx_q, z1);
      lo[r] = _mm512_and_si512(q, m4);
      hi[r] = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
      if (kind == K_IQ4_NL) {
        lo[r] = _mm512_shuffle_epi8(lut, lo[r]);
        hi[r] = _mm512_shuffle_epi8(lut, hi[r]);
      }
      if (has_qh) {
        const __m128i h = _mm512_castsi512_si128(_mm512_permutex2var_epi8(z0, idx_h, z1));
        lo[r] =
            _mm512_mask_add_epi8(lo[r], _cvtu64_mask64((uint64_t)_mm_cvtsi128_si64(h)), lo[r], b16);
        hi[r] = _mm512_mask_add_epi8(hi[r], _cvtu64_mask64((uint64_t)_mm_extract_epi64(h, 1)),
                                     hi[r], b16);
      }
      dx[r] = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(z0, idx_w, z1)));
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
      const uint8_t *py = p0 + (size_t)t * ps + (size_t)b * 64;
      const __m512i ylo = _mm512_loadu_si512(py), yhi = _mm512_loadu_si512(py + 64);
      const __m512i yoff = _mm512_loadu_si512(py + 128);
      const __m512 dy = _mm512_loadu_ps(py + 192);
#pragma GCC unroll 4
      for (int r = 0; r < 4; r++) {
        const __m512i p = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(yoff, lo[r], ylo), hi[r], yhi);
        acc[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(dx[r], dy), _mm512_cvtepi32_ps(p), acc[r][t]);
      }
    }
  }
  for (int t = 0; t < T; t++)
    for (int r = 0; r < 4; r++) s[(size_t)t * ss + (size_t)r] = _mm512_reduce_add_ps(acc[r][t]);
}

#define IQ4_NL_GEMM(T, ...) gemm4_32b(K_IQ4_NL, T, __VA_ARGS__)
#define Q5_0_GEMM(T, ...) gemm4_32b(K_Q5_0, T, __VA_ARGS__)
NLLM_GEMM4_BY_TOKENS(iq4_nl_gemm4_avx512, IQ4_NL_GEMM)
NLLM_GEMM4_BY_TOKENS(q5_0_gemm4_avx512, Q5_0_GEMM)
static void iq4_nl_prep_avx512(int64_t n, const void *y, void *p) {
  prep_32b(K_IQ4_NL, n, y, p);
}
static void q5_0_prep_avx512(int64_t n, const void *y, void *p) {
  prep_32b(K_Q5_0, n, y, p);
}

/* ---------------------------------------------------------------- Q4_0, a block per lane
 * The kernels above spend three float operations (scale product, conversion, fma) per four
 * int32 lanes of one block; at a few tokens a step those and the unpacking of the weights, not
 * the memory, were the time of a batched decode step. Here a row is taken 16 blocks (a chunk,
 * 512 values) at a time, transposed so that each int32 lane holds one whole block's sum: eight
 * dpbusd accumulate a chunk into one register, and the scales cost three float operations per
 * 16 blocks. The weights' chunk is unpacked once for every token of a tile (gemm4), the
 * activation's transposed once per matmul (gemm_prep). Decode (vec_dot4) runs the same steps
 * on one token, so a row's result does not depend on the batch it is in. Block 4g + k of a
 * chunk sits in lane 4k + g (a 4 x 4 transpose of int32 within each 128-bit lane). What is
 * left after the last chunk goes four blocks at a time as in gemm4_32b, then (decode only, a
 * row that is not a multiple of 128 values) through the one-row kernel. */
static uint16_t q4c_idx_s01[32], q4c_idx_s23[32];
static uint32_t q4c_idx_dy[16];
#define Q4C_BLOCKS 16
#define Q4C_PREP 640 /* a token's chunk: 8 x 64 bytes of quants, offsets, scales */

static void q4c_tables_init(void) {
  for (int p = 0; p < 32; p++) {
    /* words 4k + g of the scales: block 4g + k's d is word 9k of its group's first 64 bytes */
    const int k = (p / 4) % 4, g = p % 4;
    q4c_idx_s01[p] = (uint16_t)(g == 1 ? 32 + 9 * k : 9 * k);
    q4c_idx_s23[p] = (uint16_t)(g == 3 ? 32 + 9 * k : 9 * k);
  }
  for (int k = 0; k < 4; k++)
    for (int g = 0; g < 4; g++) q4c_idx_dy[4 * k + g] = (uint32_t)(4 * g + k);
}

/* int32 j of the four registers' 128-bit lane k into register j's lane k, int32 g */
static inline __attribute__((always_inline)) void transpose4_epi32(const __m512i q[4],
                                                                   __m512i x[4]) {
  const __m512i t0 = _mm512_unpacklo_epi32(q[0], q[1]), t1 = _mm512_unpackhi_epi32(q[0], q[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(q[2], q[3]), t3 = _mm512_unpackhi_epi32(q[2], q[3]);
  x[0] = _mm512_unpacklo_epi64(t0, t2);
  x[1] = _mm512_unpackhi_epi64(t0, t2);
  x[2] = _mm512_unpacklo_epi64(t1, t3);
  x[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* A row's chunk: out[2j] (out[2j + 1]) holds elements 4j..4j+3 (16 + 4j..) of each block, dx
 * the blocks' scales, all in the lane order above. */
static inline __attribute__((always_inline)) void q4c_unpack(const uint8_t *x, __m512i out[8],
                                                             __m512 *dx) {
  const __m512i idx_q = _mm512_loadu_si512(k32_tables[K_Q4_0].qs), m4 = _mm512_set1_epi8(15);
  __m512i q[4], z0[4], xt[4];
#pragma GCC unroll 4
  for (int g = 0; g < 4; g++) {
    const uint8_t *xg = x + 4 * sizeof(block_q4_0) * (size_t)g;
    z0[g] = _mm512_loadu_si512(xg);
    q[g] = _mm512_permutex2var_epi8(z0[g], idx_q, _mm512_loadu_si512(xg + 8));
  }
  transpose4_epi32(q, xt);
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++) {
    out[2 * j] = _mm512_and_si512(xt[j], m4);
    out[2 * j + 1] = _mm512_and_si512(_mm512_srli_epi16(xt[j], 4), m4);
  }
  const __m512i w01 = _mm512_permutex2var_epi16(z0[0], _mm512_loadu_si512(q4c_idx_s01), z0[1]);
  const __m512i w23 = _mm512_permutex2var_epi16(z0[2], _mm512_loadu_si512(q4c_idx_s23), z0[3]);
  *dx = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_mask_blend_epi16(0xCCCCCCCCu, w01, w23)));
}

/* A token's chunk of 16 Q8_0 blocks in that order (Q4C_PREP bytes): lo[0], hi[0], ...,
 * lo[3], hi[3], then -8 * sum(y) and d per lane. */
static inline __attribute__((always_inline)) void q4c_prep_chunk(const uint8_t *y, uint8_t *out) {
  const size_t ys = sizeof(block_q8_0);
  __m512i ylo[4], yhi[4], lo[4], hi[4];
  __m128 f[4];
#pragma GCC unroll 4
  for (int g = 0; g < 4; g++) {
    y_quad(y + 4 * ys * (size_t)g + 2, ys, &ylo[g], &yhi[g]);
    f[g] = h4(y + 4 * ys * (size_t)g, ys);
  }
  transpose4_epi32(ylo, lo);
  transpose4_epi32(yhi, hi);
  const __m512i voff = _mm512_set1_epi8(8);
  __m512i sa = _mm512_setzero_si512(), sb = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++) {
    _mm512_storeu_si512(out + 128 * j, lo[j]);
    _mm512_storeu_si512(out + 128 * j + 64, hi[j]);
    sa = _mm512_dpbusd_epi32(sa, voff, lo[j]);
    sb = _mm512_dpbusd_epi32(sb, voff, hi[j]);
  }
  _mm512_storeu_si512(out + 512,
                      _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_add_epi32(sa, sb)));
  const __m512 fz = _mm512_insertf32x4(
      _mm512_insertf32x4(_mm512_insertf32x4(_mm512_castps128_ps512(f[0]), f[1], 1), f[2], 2), f[3],
      3);
  _mm512_storeu_ps(out + 576, _mm512_permutexvar_ps(_mm512_loadu_si512(q4c_idx_dy), fz));
}

/* acc + a row's chunk (Q4_0's or Q8_0's) times a token's: one chain of eight dpbusd from the
 * prepared offset, one scale product. One chain, not two of four joined by an add: the tile's
 * tokens (the four-row kernel's rows) already give four independent chains, and the add was
 * one instruction in ten of a tile at four tokens (one 5632 x 2048 matmul from DRAM, 1 thread:
 * Q4_0 0.31 -> 0.29-0.30 ms, 2048 x 2048 0.115 -> 0.107; decode unchanged). dpbusd does not
 * saturate, so the integer sum and the result are the same bits. */
static inline __attribute__((always_inline)) __m512 chunk_dot(const __m512i q[8], __m512 dx,
                                                              const uint8_t *py, __m512 acc) {
  __m512i p = _mm512_loadu_si512(py + 512);
#pragma GCC unroll 8
  for (int j = 0; j < 8; j++) p = _mm512_dpbusd_epi32(p, q[j], _mm512_loadu_si512(py + 64 * j));
  return _mm512_fmadd_ps(_mm512_mul_ps(dx, _mm512_loadu_ps(py + 576)), _mm512_cvtepi32_ps(p), acc);
}

/* acc + four blocks of a row times a token's, prepared by prep_32b (gemm4_32b's steps). */
static inline __attribute__((always_inline)) __m512 q4g_dot(const uint8_t *x, const uint8_t *py,
                                                            __m512 acc) {
  const k32_index *ix = &k32_tables[K_Q4_0];
  const __m512i m4 = _mm512_set1_epi8(15);
  const __m512i z0 = _mm512_loadu_si512(x), z1 = _mm512_loadu_si512(x + 8);
  const __m512i q = _mm512_permutex2var_epi8(z0, _mm512_loadu_si512(ix->qs), z1);
  const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
  const __m512 dx = _mm512_cvtph_ps(
      _mm512_castsi512_si256(_mm512_permutex2var_epi16(z0, _mm512_loadu_si512(ix->w), z1)));
  const __m512i p = _mm512_dpbusd_epi32(
      _mm512_dpbusd_epi32(_mm512_loadu_si512(py + 128), lo, _mm512_loadu_si512(py)), hi,
      _mm512_loadu_si512(py + 64));
  return _mm512_fmadd_ps(_mm512_mul_ps(dx, _mm512_loadu_ps(py + 192)), _mm512_cvtepi32_ps(p), acc);
}

/* Four sums (rows of decode, tokens of a tile): the chunks' lanes, plus the four-block groups'
 * where the row has some. */
static inline __m128 q4c_sums(const __m512 acc[4], const __m512 acc4[4], int groups) {
  const __m128 h = hsum4_ps(acc[0], acc[1], acc[2], acc[3]);
  return groups ? _mm_add_ps(h, hsum4_ps(acc4[0], acc4[1], acc4[2], acc4[3])) : h;
}

/* A prepared row: its chunks (Q4C_PREP bytes each), then its four-block groups (prep_32b's
 * 256 bytes each); at most 1.25 n + 768 bytes, within NLLM_GEMM_PREP_BYTES. */
static void q4_0_prep_avx512(int64_t n, const void *vy, void *vp) {
  const uint8_t *y = vy;
  uint8_t *out = vp;
  const size_t ys = sizeof(block_q8_0);
  const int64_t nb = n / QK, nc = nb / Q4C_BLOCKS;
  for (int64_t c = 0; c < nc; c++, out += Q4C_PREP)
    q4c_prep_chunk(y + (size_t)(c * Q4C_BLOCKS) * ys, out);
  if (nb > nc * Q4C_BLOCKS)
    prep_32b(K_Q4_0, n - nc * Q4C_BLOCKS * QK, y + (size_t)(nc * Q4C_BLOCKS) * ys, out);
}

/* Q8_0's four-block groups (what the 16-block chunks below leave of a row): the weights are
 * made unsigned (x + 128), so y is dpbusd's signed operand and the correction -128 * sum(y) is
 * the activation's, prepared once: per four blocks y01, y23, their corrections and their
 * scales per lane (384 bytes). */
static void q8_0_prep_avx512(int64_t n, const void *vy, void *vp) {
  const uint8_t *y0 = vy;
  uint8_t *out = vp;
  const size_t xs = sizeof(block_q8_0);
  const __m512i k128 = _mm512_set1_epi8((char)0x80);
  for (int64_t b = 0; b < n / QK; b += 4, out += 384) {
    const uint8_t *yb = y0 + (size_t)b * xs;
    for (int h = 0; h < 2; h++) {
      const uint8_t *yh = yb + (size_t)(2 * h) * xs;
      const __m512i y =
          _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(yh + 2))),
                             _mm256_loadu_si256((const __m256i *)(yh + xs + 2)), 1);
      const __m512i off = _mm512_sub_epi32(_mm512_setzero_si512(),
                                           _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, y));
      const __m512 d = _mm512_castpd_ps(
          _mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(q_h2f(load_u16(yh)))),
                             _mm256_castps_pd(_mm256_set1_ps(q_h2f(load_u16(yh + xs)))), 1));
      _mm512_storeu_si512(out + 64 * h, y);
      _mm512_storeu_si512(out + 128 + 64 * h, off);
      _mm512_storeu_ps(out + 256 + 64 * h, d);
    }
  }
}

/* ---------------------------------------------------------------- Q8_0, a block per lane
 * Q8_0 in the chunks of the Q4_0 kernels above: a row's 16 blocks (544 bytes) become eight
 * registers of four quants of every block per lane (made unsigned, x + 128, as in gemm4_q8_0),
 * so each token costs eight dpbusd and three float operations a chunk instead of 32. The
 * activations' chunk (same block layout) is transposed the same way, with -128 * sum(y) and d
 * per lane. The prompt tiles (gemm4) and vec_dot4_tile, which the tests hold them equal to,
 * run these steps; decode keeps the AVX2 four-row kernel (faster on one token). */
static uint8_t q8c_idx_a[64], q8c_idx_b[64];
static uint16_t q8c_idx_s[32];
#define Q8C_XBYTES (16 * sizeof(block_q8_0))

static void q8c_tables_init(void) {
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 16; i++) {
      /* bytes 0..15 of block k of a group from its bytes 0..127, bytes 16..31 from 16..135 */
      q8c_idx_a[16 * k + i] = (uint8_t)(34 * k + 2 + i);
      const int p = 34 * k + 18 + i;
      q8c_idx_b[16 * k + i] = (uint8_t)(p < 80 ? p - 16 : 64 + p - 72);
    }
  /* d of block k of every group at words 4k + g: word 0, 17 of the group's bytes 0..63, 2, 19
   * of 64..127 */
  static const uint16_t w[4] = {0, 17, 32 + 2, 32 + 19};
  for (int p = 0; p < 32; p++) q8c_idx_s[p] = w[(p / 4) % 4];
}

/* A chunk of 16 Q8_0 blocks in the lane order of the Q4_0 chunks: q[j] holds bytes 4j..4j+3 of
 * each block's quants, *d the scales. */
static inline __attribute__((always_inline)) void q8c_unpack(const uint8_t *x, __m512i q[8],
                                                             __m512 *d) {
  const __m512i idx_a = _mm512_loadu_si512(q8c_idx_a), idx_b = _mm512_loadu_si512(q8c_idx_b);
  __m512i a[4], b[4], w = _mm512_loadu_si512(q8c_idx_s);
#pragma GCC unroll 4
  for (int g = 0; g < 4; g++) {
    const uint8_t *xg = x + 4 * sizeof(block_q8_0) * (size_t)g;
    const __m512i l0 = _mm512_loadu_si512(xg), l1 = _mm512_loadu_si512(xg + 64);
    a[g] = _mm512_permutex2var_epi8(l0, idx_a, l1);
    b[g] =
        _mm512_permutex2var_epi8(_mm512_loadu_si512(xg + 16), idx_b, _mm512_loadu_si512(xg + 72));
    w = _mm512_mask2_permutex2var_epi16(l0, w, (__mmask32)(0x11111111u << g), l1);
  }
  transpose4_epi32(a, q);
  transpose4_epi32(b, q + 4);
  *d = _mm512_cvtph_ps(_mm512_castsi512_si256(w));
}

/* A token's chunk (Q4C_PREP bytes): q[0..7], -128 * sum(y) and d per lane. */
static inline __attribute__((always_inline)) void q8c_prep_chunk(const uint8_t *y, uint8_t *out) {
  const __m512i k128 = _mm512_set1_epi8((char)0x80);
  __m512i q[8];
  __m512 d;
  q8c_unpack(y, q, &d);
  __m512i sa = _mm512_setzero_si512(), sb = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++) {
    _mm512_storeu_si512(out + 128 * j, q[2 * j]);
    _mm512_storeu_si512(out + 128 * j + 64, q[2 * j + 1]);
    sa = _mm512_dpbusd_epi32(sa, k128, q[2 * j]);
    sb = _mm512_dpbusd_epi32(sb, k128, q[2 * j + 1]);
  }
  _mm512_storeu_si512(out + 512,
                      _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_add_epi32(sa, sb)));
  _mm512_storeu_ps(out + 576, d);
}

/* The row's chunk with the quants made unsigned. */
static inline __attribute__((always_inline)) void q8c_unpack_x(const uint8_t *x, __m512i q[8],
                                                               __m512 *d) {
  const __m512i k128 = _mm512_set1_epi8((char)0x80);
  q8c_unpack(x, q, d);
#pragma GCC unroll 8
  for (int j = 0; j < 8; j++) q[j] = _mm512_xor_si512(q[j], k128);
}

/* acc + four blocks of a row times a token's prepared by q8_0_prep_avx512, two blocks a
 * register. */
static inline __attribute__((always_inline)) __m512 q8g_dot(const uint8_t *x, const uint8_t *py,
                                                            __m512 acc) {
  const __m512i k128 = _mm512_set1_epi8((char)0x80);
  const __m512i l0 = _mm512_loadu_si512(x), l1 = _mm512_loadu_si512(x + 64);
  const __m512i w = _mm512_permutex2var_epi16(l0, _mm512_loadu_si512(q8_0_w), l1);
#pragma GCC unroll 2
  for (int h = 0; h < 2; h++) {
    const __m512i xq = _mm512_xor_si512(
        h == 0
            ? _mm512_permutex2var_epi8(l0, _mm512_loadu_si512(q8_0_qa), l1)
            : _mm512_permutex2var_epi8(l1, _mm512_loadu_si512(q8_0_qb), _mm512_loadu_si512(x + 72)),
        k128);
    const __m512 dx =
        _mm512_cvtph_ps(h == 0 ? _mm512_castsi512_si256(w) : _mm512_extracti64x4_epi64(w, 1));
    const uint8_t *ph = py + 64 * h;
    const __m512i p = _mm512_dpbusd_epi32(_mm512_loadu_si512(ph + 128), xq, _mm512_loadu_si512(ph));
    acc = _mm512_fmadd_ps(_mm512_mul_ps(dx, _mm512_loadu_ps(ph + 256)), _mm512_cvtepi32_ps(p), acc);
  }
  return acc;
}

/* A prepared row: chunks (Q4C_PREP bytes), then four-block groups (384 bytes). */
static void q8_0_prep_chunks_avx512(int64_t n, const void *vy, void *vp) {
  const uint8_t *y = vy;
  uint8_t *out = vp;
  const int64_t nb = n / QK, nc = nb / Q4C_BLOCKS;
  for (int64_t c = 0; c < nc; c++, out += Q4C_PREP) q8c_prep_chunk(y + (size_t)c * Q8C_XBYTES, out);
  if (nb > nc * Q4C_BLOCKS)
    q8_0_prep_avx512(n - nc * Q4C_BLOCKS * QK, y + (size_t)nc * Q8C_XBYTES, out);
}

/* The prompt tiles of both chunk formats (q8: 0 Q4_0, 1 Q8_0). Four rows by T tokens, the rows
 * one at a time: a row's unpacked chunk (nine registers) meets every token of the tile (one
 * accumulator each), whose prepared chunks come from L1; the four-block groups after the last
 * chunk take the format's group kernel on what its prep wrote there (256 bytes a group for
 * Q4_0, 384 for Q8_0). Eight tokens a call (the unpacking paid once per eight) was measured
 * slower on a quiet host (1.1B pp128, 2 threads: Q4_0 209-224 against 259-285 t/s, Q8_0 191-193
 * against 204-216; 16 sequences no faster): the accumulators and the tokens' prepared chunks
 * crowd the registers and L1. */
static inline __attribute__((always_inline)) void chunk_gemm(const int q8, const int T, int64_t n,
                                                             float *s, size_t ss, const uint8_t *x0,
                                                             size_t bx, const uint8_t *p0,
                                                             size_t ps) {
  const size_t xs = q8 ? sizeof(block_q8_0) : sizeof(block_q4_0);
  const size_t xc = Q4C_BLOCKS * xs, pblock = q8 ? 96 : 64;
  const int64_t nb = n / QK, nc = nb / Q4C_BLOCKS;
  const size_t tail = (size_t)nc * Q4C_PREP;
  for (int r = 0; r < 4; r++) {
    const uint8_t *x = x0 + (size_t)r * bx;
    /* the sums are reduced four tokens at once: unused tokens stay zero */
    __m512 acc[NLLM_GEMM_TOK], acc4[NLLM_GEMM_TOK];
    for (int t = 0; t < NLLM_GEMM_TOK; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t c = 0; c < nc; c++) {
      nllm_prefetch_span(x + NLLM_PREFETCH_ROWS * bx + (size_t)c * xc, xc);
      __m512i q[8];
      __m512 dx;
      if (q8)
        q8c_unpack_x(x + (size_t)c * xc, q, &dx);
      else
        q4c_unpack(x + (size_t)c * xc, q, &dx);
#pragma GCC unroll 4
      for (int t = 0; t < T; t++)
        acc[t] = chunk_dot(q, dx, p0 + (size_t)t * ps + (size_t)c * Q4C_PREP, acc[t]);
    }
    /* the tail's sums start only here, so the chunks' loop keeps T accumulators live */
    for (int t = 0; t < NLLM_GEMM_TOK; t++) acc4[t] = _mm512_setzero_ps();
    for (int64_t b = nc * Q4C_BLOCKS; b < nb; b += 4)
      for (int t = 0; t < T; t++) {
        const uint8_t *xb = x + (size_t)b * xs;
        const uint8_t *pb = p0 + (size_t)t * ps + tail + (size_t)(b - nc * Q4C_BLOCKS) * pblock;
        acc4[t] = q8 ? q8g_dot(xb, pb, acc4[t]) : q4g_dot(xb, pb, acc4[t]);
      }
    store_tokens(s + r, ss, q4c_sums(acc, acc4, nb > nc * Q4C_BLOCKS), T);
  }
}
#define Q4_0_GEMM(T, ...) chunk_gemm(0, T, __VA_ARGS__)
#define Q8C_GEMM(T, ...) chunk_gemm(1, T, __VA_ARGS__)
NLLM_GEMM4_BY_TOKENS(q4_0_gemm4_avx512, Q4_0_GEMM)
NLLM_GEMM4_BY_TOKENS(q8_0_gemm4_chunks_avx512, Q8C_GEMM)

/* One token, four rows, in the tiles' steps with the token's chunks prepared as they come (q8:
 * 0 Q4_0's decode kernel, 1 Q8_0's vec_dot4_tile). */
static inline __attribute__((always_inline)) void chunk_dot4(const int q8, int64_t n, float *s,
                                                             const uint8_t *x0, size_t bx,
                                                             const uint8_t *y0) {
  const size_t xs = q8 ? sizeof(block_q8_0) : sizeof(block_q4_0), ys = sizeof(block_q8_0);
  const size_t xc = Q4C_BLOCKS * xs;
  const int64_t nb = n / QK, nc = nb / Q4C_BLOCKS, nq = nb / 4 * 4;
  __m512 acc[4], acc4[4];
  for (int r = 0; r < 4; r++) acc[r] = acc4[r] = _mm512_setzero_ps();
  _Alignas(64) uint8_t py[Q4C_PREP];
  for (int64_t c = 0; c < nc; c++) {
    const uint8_t *yc = y0 + (size_t)(c * Q4C_BLOCKS) * ys;
    if (q8)
      q8c_prep_chunk(yc, py);
    else
      q4c_prep_chunk(yc, py);
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)c * xc, 4 * xc);
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      __m512i q[8];
      __m512 dx;
      if (q8)
        q8c_unpack_x(x0 + (size_t)r * bx + (size_t)c * xc, q, &dx);
      else
        q4c_unpack(x0 + (size_t)r * bx + (size_t)c * xc, q, &dx);
      acc[r] = chunk_dot(q, dx, py, acc[r]);
    }
  }
  for (int64_t b = nc * Q4C_BLOCKS; b < nq; b += 4) {
    if (q8)
      q8_0_prep_avx512(4 * QK, y0 + (size_t)b * ys, py);
    else
      prep_32b(K_Q4_0, 4 * QK, y0 + (size_t)b * ys, py);
    for (int r = 0; r < 4; r++) {
      const uint8_t *xb = x0 + (size_t)r * bx + (size_t)b * xs;
      acc4[r] = q8 ? q8g_dot(xb, py, acc4[r]) : q4g_dot(xb, py, acc4[r]);
    }
  }
  _mm_storeu_ps(s, q4c_sums(acc, acc4, nq > nc * Q4C_BLOCKS));
  for (int r = 0; r < 4 && nq < nb; r++) { /* the last one to three blocks: the one-row kernel */
    float tail;
    (q8 ? q8_0_vec_dot_avx2 : q4_0_vec_dot_avx2)(
        (nb - nq) * QK, &tail, x0 + (size_t)r * bx + (size_t)nq * xs, y0 + (size_t)nq * ys);
    s[r] += tail;
  }
}

static void q4_0_vec_dot4_avx512(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  chunk_dot4(0, n, s, x, bx, y);
}
static void q8_0_vec_dot4_chunks_avx512(int64_t n, float *s, const void *x, size_t bx,
                                        const void *y) {
  chunk_dot4(1, n, s, x, bx, y);
}

/* IQ4_XS: 8 sub-blocks of 32 values with 6-bit scales (4 low bits in scales_l, 2 high bits in
 * scales_h), levels from the IQ4_NL table. A register holds four sub-blocks' 16 bytes of
 * nibbles, one per 128-bit lane, so the y order is that of the 32-value kernel; levels go
 * through the table + 128 (unsigned for dpbusd) and 128 * sum(y) comes off per lane. Each
 * lane's exact sum takes its sub-block's scale as an int32 multiply, and each row's super-block
 * sum is then the reference's isum, whose float step (d * dy) * isum is the reference's too: the
 * sixteen-row prompt kernel (quant_iq4_xs_packed16_avx512.c) and the AVX2 tier's tiles add the
 * same way, so a prompt's rows equal decode's bit for bit. */
static void iq4_xs_vec_dot4_avx512(int64_t n, float *s, const void *vx, size_t bx, const void *vy) {
  const uint8_t *x0 = vx;
  const block_q8_K *y = vy;
  const size_t xs = sizeof(block_iq4_xs);
  const int64_t nb = n / QK_K;
  const __m512i m4 = _mm512_set1_epi8(15), k128 = _mm512_set1_epi8((char)0x80);
  const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)iq4nl_u8));
  const __m256i sh_lo = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28),
                sh_hi = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  const __m512i lanes_lo = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                lanes_hi = _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7);
  __m128 acc = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    __m512i ylo[2], yhi[2], yoff[2];
    for (int c = 0; c < 2; c++) {
      y_quad_k(y[b].qs + 128 * c, &ylo[c], &yhi[c]);
      yoff[c] = _mm512_sub_epi32(
          _mm512_setzero_si512(),
          _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, ylo[c]), k128,
                              yhi[c]));
    }
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * xs);
    __m128i isum[4];
    float d[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const block_iq4_xs *x = (const block_iq4_xs *)(x0 + (size_t)r * bx + (size_t)b * xs);
      /* scale k: bits 4k..4k+3 of scales_l (as one word) and 2k..2k+1 of scales_h, less 32 */
      const __m256i ls = _mm256_or_si256(
          _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)load_u32(x->scales_l)), sh_lo),
                           _mm256_set1_epi32(15)),
          _mm256_slli_epi32(
              _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(x->scales_h), sh_hi),
                               _mm256_set1_epi32(3)),
              4));
      const __m512i ls512 = _mm512_castsi256_si512(_mm256_sub_epi32(ls, _mm256_set1_epi32(32)));
      d[r] = _cvtsh_ss(x->d);
      __m512i t = _mm512_setzero_si512();
#pragma GCC unroll 2
      for (int c = 0; c < 2; c++) {
        const __m512i q = _mm512_loadu_si512(x->qs + 64 * c);
        const __m512i lo = _mm512_shuffle_epi8(lut, _mm512_and_si512(q, m4));
        const __m512i hi = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
        const __m512i p = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(yoff[c], lo, ylo[c]), hi, yhi[c]);
        t = _mm512_add_epi32(
            t, _mm512_mullo_epi32(p, _mm512_permutexvar_epi32(c ? lanes_hi : lanes_lo, ls512)));
      }
      const __m256i h =
          _mm256_add_epi32(_mm512_castsi512_si256(t), _mm512_extracti64x4_epi64(t, 1));
      isum[r] = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    }
    /* lane r: row r's isum (integer sums: any order is exact) */
    const __m128i is =
        _mm_hadd_epi32(_mm_hadd_epi32(isum[0], isum[1]), _mm_hadd_epi32(isum[2], isum[3]));
    const __m128 dd = _mm_mul_ps(_mm_setr_ps(d[0], d[1], d[2], d[3]), _mm_set1_ps(y[b].d));
    acc = _mm_add_ps(acc, _mm_mul_ps(dd, _mm_cvtepi32_ps(is)));
  }
  _mm_storeu_ps(s, acc);
}

/* Q2_K and Q3_K: 2-bit levels (Q3_K: plus a high bit from hmask, level - 4) with a scale per
 * 16 values (Q2_K: 4-bit scale and min; Q3_K: signed 6-bit scale). The 64 bytes of qs are one
 * register: shift 2j gives elements 32j..32j+31 of each 128-value half, whose y is two 32-byte
 * runs (prepared once for the four rows). Q3_K's offset -4 and Q2_K's mins come in through the
 * activation's 16-value sums. */
enum { K_Q2_K, K_Q3_K };
static inline __attribute__((always_inline)) void dot4_k23(const int kind, int64_t n, float *s,
                                                           const uint8_t *x0, size_t bx,
                                                           const block_q8_K *y) {
  const size_t xs = kind == K_Q2_K ? sizeof(block_q2_K) : sizeof(block_q3_K);
  const size_t off_qs = kind == K_Q2_K ? offsetof(block_q2_K, qs) : offsetof(block_q3_K, qs);
  const int64_t nb = n / QK_K;
  const __m512i m3 = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
  const __m128i m15 = _mm_set1_epi8(15);
  __m512i isc[4]; /* scales 2j, 2j+1 (first half), 8+2j, 9+2j (second), 8 lanes each */
  for (int j = 0; j < 4; j++)
    isc[j] = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_setr_epi16(
            (short)(2 * j), (short)(2 * j), (short)(2 * j), (short)(2 * j), (short)(2 * j),
            (short)(2 * j), (short)(2 * j), (short)(2 * j), (short)(2 * j + 1), (short)(2 * j + 1),
            (short)(2 * j + 1), (short)(2 * j + 1), (short)(2 * j + 1), (short)(2 * j + 1),
            (short)(2 * j + 1), (short)(2 * j + 1))),
        _mm256_add_epi16(
            _mm256_setr_epi16((short)(2 * j), (short)(2 * j), (short)(2 * j), (short)(2 * j),
                              (short)(2 * j), (short)(2 * j), (short)(2 * j), (short)(2 * j),
                              (short)(2 * j + 1), (short)(2 * j + 1), (short)(2 * j + 1),
                              (short)(2 * j + 1), (short)(2 * j + 1), (short)(2 * j + 1),
                              (short)(2 * j + 1), (short)(2 * j + 1)),
            _mm256_set1_epi16(8)),
        1);
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
  __m256 accm[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                    _mm256_setzero_ps()};
  for (int64_t b = 0; b < nb; b++) {
    __m512i yj[4];
    for (int j = 0; j < 4; j++)
      yj[j] = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(y[b].qs + 32 * j))),
          _mm256_loadu_si256((const __m256i *)(y[b].qs + 128 + 32 * j)), 1);
    const __m256i bsums = _mm256_loadu_si256((const __m256i *)y[b].bsums);
    const float dy = y[b].d;
    nllm_prefetch_span(x0 + NLLM_PREFETCH_ROWS * bx + 4 * (size_t)b * xs, 4 * xs);
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
      const uint8_t *x = x0 + (size_t)r * bx + (size_t)b * xs;
      const __m512i q = _mm512_loadu_si512(x + off_qs);
      __m256i sc16, mn16 = _mm256_setzero_si256();
      __m512i hm = _mm512_setzero_si512();
      float d;
      if (kind == K_Q2_K) {
        const block_q2_K *xb = (const block_q2_K *)x;
        const __m128i raw = _mm_loadu_si128((const __m128i *)xb->scales);
        sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m15));
        mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m15));
        d = _cvtsh_ss(xb->d);
      } else {
        const block_q3_K *xb = (const block_q3_K *)x;
        /* scale k: low 4 bits from nibble k of bytes 0..7 (low nibbles first), top 2 bits
         * from bits 2(k/4).. of byte 8 + k%4; less 32 */
        const __m128i s8 = _mm_loadl_epi64((const __m128i *)xb->scales);
        const __m128i lo =
            _mm_unpacklo_epi64(_mm_and_si128(s8, m15), _mm_and_si128(_mm_srli_epi16(s8, 4), m15));
        const __m128i hi =
            _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32((int)load_u32(xb->scales + 8)),
                                         _mm_setr_epi32(0, 2, 4, 6)),
                          _mm_set1_epi8(3));
        sc16 = _mm256_cvtepi8_epi16(
            _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32)));
        /* (hmask | hmask >> 4 in the second half): bit j is the high bit of shift j */
        const __m256i h = _mm256_loadu_si256((const __m256i *)xb->hmask);
        hm = _mm512_inserti64x4(_mm512_castsi256_si512(h), _mm256_srli_epi16(h, 4), 1);
        d = _cvtsh_ss(xb->d);
      }
      const __m512i scz = _mm512_castsi256_si512(sc16);
      __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) {
        __m512i v = _mm512_and_si512(j ? _mm512_srli_epi16(q, 2 * j) : q, m3);
        if (kind == K_Q3_K)
          v = _mm512_or_si512(
              v, _mm512_slli_epi16(_mm512_and_si512(j ? _mm512_srli_epi16(hm, j) : hm, one), 2));
        sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(v, yj[j]),
                                   _mm512_permutexvar_epi16(isc[j], scz));
      }
      if (kind == K_Q2_K) {
        const float dmin = _cvtsh_ss(((const block_q2_K *)x)->dmin);
        accm[r] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * dy),
                                  _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums, mn16)), accm[r]);
      } else {
        sumi = _mm512_sub_epi32(
            sumi, _mm512_zextsi256_si512(_mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), 2)));
      }
      acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(d * dy), _mm512_cvtepi32_ps(sumi), acc[r]);
    }
  }
  for (int r = 0; r < 4; r++) {
    s[r] = _mm512_reduce_add_ps(acc[r]) - hsum_ymm(accm[r]);
  }
}

static void q2_K_vec_dot4_avx512(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_k23(K_Q2_K, n, s, x, bx, y);
}
static void q3_K_vec_dot4_avx512(int64_t n, float *s, const void *x, size_t bx, const void *y) {
  dot4_k23(K_Q3_K, n, s, x, bx, y);
}

void nllm_avx512_init(void) {
  for (int kind = 0; kind <= K_Q5_1; kind++) k32_tables_init(kind);
  q4c_tables_init();
  q8c_tables_init();
  for (int i = 0; i < 16; i++) iq4nl_u8[i] = (uint8_t)(nllm_iq4nl_values[i] + 128);
  for (int j = 0; j < 32; j++) {
    /* Q8_0: blocks 0, 1 from (bytes 0..63, 64..127); blocks 2, 3 from (64..127, 72..135) */
    q8_0_qa[j] = (uint8_t)(2 + j);
    q8_0_qa[32 + j] = (uint8_t)(36 + j); /* index p is byte p of the first two loads */
    q8_0_qb[j] = (uint8_t)(70 + j - 64);
    const int p = 104 + j;
    q8_0_qb[32 + j] = (uint8_t)(p < 128 ? p - 64 : 64 + p - 72);
    /* scale words: blocks 0, 1 at bytes 0 and 34 of the first load, 2, 3 at 68 and 102
     * (words 2 and 19 of the second) */
    q8_0_w[j] = (uint16_t)(j < 8 ? 0 : j < 16 ? 17 : j < 24 ? 32 + 2 : 32 + 19);
  }
}

/* The AVX-512 tier's rows, over the AVX2 ones. Q8_0's kernel serves the prompt tiles only: it
 * wins where each weight row meets many tokens and loses in decode (see docs/performance.md), so
 * decode keeps the AVX2 four-row kernel; the one-row kernels of the 32-value formats are the AVX2
 * ones in their lane order (the AVX2 rows now take others in the reference's order).
 * Crossovers: past blas_min_tokens this tier multiplies dequantized chunks with its own f32
 * GEMM (matmul.c; 150-170 GFLOP/s on one thread from 128 tokens, where sgemm ran at ~90 and
 * took turns between threads). Measured against each format's tiles (2048 x 2048, one thread,
 * docs/performance.md "BLAS crossovers"): it wins from 128 tokens for Q4_1 and Q5_1 (four-row
 * kernels only) and at 512 for Q3_K; the tiles of Q8_0, Q4_0, Q5_0, IQ4_NL, IQ4_XS and Q2_K
 * stay ahead at every count (never). Q4_K, Q5_K and Q6_K have no row here: the AVX2 tier's
 * groups, kept packed from load, are read sixteen rows at a time by quant_k_packed16_avx512.c
 * (prompts 1.6-2x this tier's former tiles; docs/performance.md, nineteenth round), and the rest
 * of their rows (tails, weights not packed) take the AVX2 kernels, whose sums it equals.
 * Tile crossovers (gemm_min_tokens): every format's tiles here serve batches from 2 tokens.
 * On weights read from DRAM (a decode step of a few sequences) tiles without the four-row
 * kernels' linear prefetch lost to them below 20-32 tokens (Q6_K at 4 tokens: 1.87 against
 * 0.94 ms for a 5632 x 2048 matrix, one thread); with it they win from 2 tokens
 * (docs/performance.md, "Many sequences"). */
static const nllm_qtype_kernels avx512_rows[] = {
    {.type = NLLM_TYPE_Q8_0,
     .vec_dot = q8_0_vec_dot_avx2,
     .vec_dot4 = q8_0_vec_dot4_avx2,
     .vec_dot4_tile = q8_0_vec_dot4_chunks_avx512,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = q8_0_prep_chunks_avx512,
     .gemm4 = q8_0_gemm4_chunks_avx512},
    {.type = NLLM_TYPE_Q4_0,
     .vec_dot = q4_0_vec_dot_avx2,
     .vec_dot4 = q4_0_vec_dot4_avx512,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = q4_0_prep_avx512,
     .gemm4 = q4_0_gemm4_avx512},
    {.type = NLLM_TYPE_Q4_1, .vec_dot4 = q4_1_vec_dot4_avx512, .blas_min_tokens = 128},
    {.type = NLLM_TYPE_Q5_0,
     .vec_dot = q5_0_vec_dot_avx2,
     .vec_dot4 = q5_0_vec_dot4_avx512,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = q5_0_prep_avx512,
     .gemm4 = q5_0_gemm4_avx512},
    {.type = NLLM_TYPE_Q5_1, .vec_dot4 = q5_1_vec_dot4_avx512, .blas_min_tokens = 128},
    {.type = NLLM_TYPE_IQ4_NL,
     .vec_dot = iq4_nl_vec_dot_avx2,
     .vec_dot4 = iq4_nl_vec_dot4_avx512,
     .blas_min_tokens = NLLM_BLAS_NEVER,
     .gemm_prep = iq4_nl_prep_avx512,
     .gemm4 = iq4_nl_gemm4_avx512},
    {.type = NLLM_TYPE_Q2_K, .vec_dot4 = q2_K_vec_dot4_avx512, .blas_min_tokens = NLLM_BLAS_NEVER},
    {.type = NLLM_TYPE_Q3_K, .vec_dot4 = q3_K_vec_dot4_avx512, .blas_min_tokens = 512},
    /* IQ4_XS batches: the AVX2 tier's tiles (the reference's sums, as this row's vec_dot4),
     * then the sixteen-row kernel (quant_iq4_xs_packed16_avx512.c) */
    {.type = NLLM_TYPE_IQ4_XS,
     .vec_dot4 = iq4_xs_vec_dot4_avx512,
     .blas_min_tokens = NLLM_BLAS_NEVER},
};
const nllm_kernel_set nllm_kernels_avx512 = {avx512_rows,
                                             sizeof avx512_rows / sizeof avx512_rows[0]};
