/* AVX-512 kernels of Q4_K, Q5_K and Q6_K groups kept packed from load, sixteen rows at a time: two
 * of the AVX2 tier's compact eight-row groups (quant_k_packed.h) side by side, group A's rows in
 * the low eight int32 lanes of a zmm and group B's in the high eight. One dpbusd with a broadcast
 * of four activation bytes is then 64 products of sixteen rows, where the AVX2 kernel spends a
 * maddubs and an add on 32 products of eight rows; the per-sub-block scale is an int32 multiply
 * of the dpbusd sums (a sub-block's sum of 32 products, <= 32 * 15 * 128, fits).
 *
 * Why: the AVX2 kernel is instruction-bound (a few sequences' decode), and prompts there expand
 * the groups per work item into a byte layout for a kernel of four tokens a pass; this one, eight
 * tokens a call on the compact groups, ran 1.1B Q4_K_M prompts 1.6-1.8x as fast as that at two
 * threads, and a 16-sequence decode step 1.5x (docs/performance.md, nineteenth round). The
 * streaming variants take up to sixteen tokens a call (stream_tok), so that such a step is one
 * pass that does all its products on a group while the next group arrives (twenty-fourth); on
 * AMD the rows pass them eight (k_packed16_amd_rows).
 *
 * The sums are the AVX2 kernel's, which are the scalar reference's (exact integer sums per
 * super-block, then its float step in each row's lane), so packed, repacked and decoded rows
 * agree bit for bit. The rest of the format's packed row is the AVX2 tier's: the group layout
 * (a sixteen-row group is group A then group B, so weights packed from load are the same bytes
 * as that tier's) and the activations' preparation. */
#include <immintrin.h>
#include <stddef.h>

#include "cpu/packed16_avx512.h"
#include "cpu/quant.h"
#include "cpu/quant_k_packed.h"

#define GROUP_ROWS 16

/* A compact group's super-block */
static inline size_t block_bytes(const int q5) {
  return q5 ? KQ5_BLOCK : KQ4_BLOCK;
}

/* Group B of a sixteen-row group of n values: after group A's super-blocks */
static inline size_t half_bytes(const int q5, int64_t n) {
  return (size_t)(n / QK_K) * block_bytes(q5);
}

/* 32 bytes at offset o of group A's super-block xa in the low half, of group B's (xb) in the
 * high */
static inline __m512i load_ab(const uint8_t *xa, const uint8_t *xb, size_t o) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(xa + o))),
                            _mm256_loadu_si256((const __m256i *)(xb + o)), 1);
}

/* 16 halves at offset o (eight of each group) as floats */
static inline __m512 halves_ab(const uint8_t *xa, const uint8_t *xb, size_t o) {
  const __m128i a = _mm_loadu_si128((const __m128i *)(xa + o)),
                b = _mm_loadu_si128((const __m128i *)(xb + o));
  return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
}

/* The shuffle that puts byte a of each 32-bit lane in the lane's low byte, zeros above it;
 * b >= 0: and byte b in its third byte (the lane's two int16: a, b) */
static inline __m512i pick(int a, int b) {
  const int c = (int)(0x80008000u | (unsigned)a | (b < 0 ? 0x80u : (unsigned)b) << 16);
  const __m512i lane = _mm512_set4_epi32(0xc000c, 0x80008, 0x40004, 0);
  return _mm512_add_epi32(_mm512_set1_epi32(c), lane);
}

/* Every row's 6-bit scales and mins as bytes (kq4_unpack8 of both groups): sc8[0] lane r holds
 * row r's scales 0..3, sc8[1] 4..7, mn8[0], mn8[1] its mins */
static inline __attribute__((always_inline)) void unpack16(const uint8_t *xa, const uint8_t *xb,
                                                           __m512i sc8[2], __m512i mn8[2]) {
  const __m512i u0 = load_ab(xa, xb, KQ4_U), u1 = load_ab(xa, xb, KQ4_U + 32),
                u2 = load_ab(xa, xb, KQ4_U + 64);
  const __m512i m6 = _mm512_set1_epi8(0x3f), m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(3);
  sc8[0] = _mm512_and_si512(u0, m6);
  mn8[0] = _mm512_and_si512(u1, m6);
  sc8[1] = _mm512_or_si512(_mm512_and_si512(u2, m4),
                           _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), m2), 4));
  mn8[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m4),
                           _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), m2), 4));
}

/* Bit k of each byte of qh at bit 4, the rest zero */
static inline __m512i bit4(__m512i qh, int k) {
  const __m512i t = k < 4   ? _mm512_slli_epi16(qh, (unsigned)(4 - k))
                    : k > 4 ? _mm512_srli_epi16(qh, (unsigned)(k - 4))
                            : qh;
  return _mm512_and_si512(t, _mm512_set1_epi8(16));
}

/* A streaming call of more than one token prefetches the next group's super-block an eighth at
 * each sub-block step, not all at the super-block's start: a prefetch holds one of the core's
 * few line-fill buffers until its line comes, and a burst of 36 (Q4_K) or 53 (Q6_K) lines kept
 * them full while the burst drained, so the lines were asked for at an uneven rate. One thread,
 * 16 tokens from DRAM (bench_packed): Q6_K 2.0-2.3 -> 1.5-1.6 ms, Q4_K 1.29-1.38 -> 1.06-1.40;
 * 8 tokens Q6_K 1.30-1.35 -> 1.03-1.14. 1.1B Q4_K_M, 2 threads, `--parallel 1,4,16 -p 128 -n
 * 64`, three rounds: 4 sequences 1.107x, 16 sequences 1.126x (92-93% of the prompt column),
 * one 1.025x (one token keeps the burst: its visit is short; thirtieth round). The AVX2 tier's
 * compact groups, spread alike, were level (its kernel is slower a byte: 0.985-0.989x). -D for the
 * A/B. */
#ifndef KPF_SPREAD
#define KPF_SPREAD 1
#endif
/* A call's prefetch (pf): none (a prompt's later passes), the next group's lines into L2, or
 * at one token into L1 (the one-token kernels laid over on AMD, k_packed16_amd_rows) */
enum { PF_NONE, PF_L2, PF_L1 };
/* A streaming call's prefetch of the next group's super-block (its halves xa, xb hb bytes on,
 * bytes each) at step k of the current one's: k -1 at the super-block's start, 0..7 at its
 * sub-block steps */
static inline __attribute__((always_inline)) void prefetch_next_sb(const int pf, const int T,
                                                                   const uint8_t *xa,
                                                                   const uint8_t *xb, size_t hb,
                                                                   size_t bytes, int k) {
  if (pf == PF_NONE) return;
  const int spread = T > 1 && KPF_SPREAD;
  nllm_prefetch_next_step(xa + 2 * hb, bytes, k, spread, pf == PF_L1);
  nllm_prefetch_next_step(xb + 2 * hb, bytes, k, spread, pf == PF_L1);
}

/* T tokens (prepared rows ps apart) over a sixteen-row group: per super-block each sub-block's
 * levels unpacked once for every token, then the reference's float step per token. */
static inline __attribute__((always_inline)) void gemm_packed16(const int q5, const int pf,
                                                                const int T, int64_t n, float *s,
                                                                size_t ss, const uint8_t *pk,
                                                                const uint8_t *p0, size_t ps) {
  const size_t hb = half_bytes(q5, n), xbytes = block_bytes(q5);
  __m512 acc[NLLM_STREAM_TOK_MAX];
#pragma GCC unroll 16
  for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    const uint8_t *xa = pk + (size_t)b * xbytes, *xb = xa + hb;
    const uint8_t *yb = p0 + (size_t)b * KPREP_BLOCK;
    /* the next group's same super-blocks, into L2 (to L1 they pushed out the prepared rows and
     * this group's levels: 1.1B Q4_K_M, 2 threads, `--parallel 4,16 -p 128 -n 64`: 4 sequences
     * 1.078x, 16 sequences 1.038x, one 1.05x; Q6_K's below alike; twenty-fifth round); more
     * than one token spreads them over the sub-block steps (KPF_SPREAD) */
    prefetch_next_sb(pf, T, xa, xb, hb, xbytes, -1);
    __m512i sc8[2], mn8[2];
    unpack16(xa, xb, sc8, mn8);
    __m512i sum[NLLM_STREAM_TOK_MAX];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) sum[t] = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int k = 0; k < 8; k++) {
      prefetch_next_sb(pf, T, xa, xb, hb, xbytes, k);
      const __m512i sc = _mm512_shuffle_epi8(sc8[k / 4], pick(k % 4, -1));
      const size_t o = KQ4_Q + 256 * (size_t)(k / 2);
      __m512i lvl[8];
#pragma GCC unroll 8
      for (int v = 0; v < 8; v++) {
        const __m512i q = load_ab(xa, xb, o + 32 * (size_t)v);
        lvl[v] = _mm512_and_si512(k % 2 ? _mm512_srli_epi16(q, 4) : q, _mm512_set1_epi8(15));
        if (q5) /* bit k of the qh bytes: the fifth bit, to bit 4 */
          lvl[v] = _mm512_or_si512(lvl[v], bit4(load_ab(xa, xb, KQ5_QH + 32 * (size_t)v), k));
      }
#pragma GCC unroll 16
      for (int t = 0; t < T; t++) {
        const uint8_t *y = yb + (size_t)t * ps + 32 * (size_t)k;
        __m512i s32 = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) s32 = packed16_dpbusd(s32, lvl[v], y + 4 * v);
        sum[t] = _mm512_add_epi32(sum[t], _mm512_mullo_epi32(s32, sc));
      }
    }
    const __m512 d = halves_ab(xa, xb, KQ4_D), dmin = halves_ab(xa, xb, KQ4_DMIN);
    /* lane r: row r's mins 2j, 2j + 1 as int16 */
    const __m512i mn[4] = {
        _mm512_shuffle_epi8(mn8[0], pick(0, 1)), _mm512_shuffle_epi8(mn8[0], pick(2, 3)),
        _mm512_shuffle_epi8(mn8[1], pick(0, 1)), _mm512_shuffle_epi8(mn8[1], pick(2, 3))};
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) {
      const uint8_t *yt = yb + (size_t)t * ps;
      __m512i msum = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++)
        msum = _mm512_add_epi32(msum,
                                _mm512_madd_epi16(mn[j], packed16_bcast(yt + KPREP_BS32 + 4 * j)));
      float dy;
      memcpy(&dy, yt + KPREP_D, sizeof dy);
      /* the reference's step: dy * (d * sum - dmin * msum) */
      const __m512 f = _mm512_sub_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(sum[t])),
                                     _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(msum)));
      acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_set1_ps(dy), f));
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; t++) _mm512_storeu_ps(s + (size_t)t * ss, acc[t]);
}

/* Q6_K: sub-block k = 4 c + g's levels 0..63 from ql's chunk 2 c + g % 2 (low nibbles for g < 2,
 * high ones else) and qh's chunk c (bits 2 g, 2 g + 1 to bits 4, 5), vectors 0..3 its first 16
 * values (int8 scale 2 k), 4..7 its next 16 (2 k + 1); the sums take the levels unsigned and
 * the -32 comes off through the block sums, as the AVX2 kernel and the reference add. */
static inline __m512i q6_combine(__m512i l, __m512i h, int g) {
  const __m512i lv = g < 2 ? l : _mm512_srli_epi16(l, 4);
  const __m512i hv = g == 0   ? _mm512_slli_epi16(h, 4)
                     : g == 1 ? _mm512_slli_epi16(h, 2)
                     : g == 2 ? h
                              : _mm512_srli_epi16(h, 2);
  return _mm512_or_si512(_mm512_and_si512(lv, _mm512_set1_epi8(15)),
                         _mm512_and_si512(hv, _mm512_set1_epi8(0x30)));
}
static inline __m512i q6_levels(const uint8_t *xa, const uint8_t *xb, size_t ol, size_t oh, int g) {
  return q6_combine(load_ab(xa, xb, ol), load_ab(xa, xb, oh), g);
}

/* 16 bytes at offset o of each group as int16 pairs (lane r: row r's two int8) */
static inline __m512i scales_ab(const uint8_t *xa, const uint8_t *xb, size_t o) {
  const __m128i a = _mm_loadu_si128((const __m128i *)(xa + o)),
                b = _mm_loadu_si128((const __m128i *)(xb + o));
  return _mm512_cvtepi8_epi16(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
}

static inline __attribute__((always_inline)) void gemm_packed16_q6(const int pf, const int T,
                                                                   int64_t n, float *s, size_t ss,
                                                                   const uint8_t *pk,
                                                                   const uint8_t *p0, size_t ps) {
  const size_t hb = (size_t)(n / QK_K) * KQ6_BLOCK;
  __m512 acc[NLLM_STREAM_TOK_MAX];
#pragma GCC unroll 16
  for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < n / QK_K; b++) {
    const uint8_t *xa = pk + (size_t)b * KQ6_BLOCK, *xb = xa + hb;
    const uint8_t *yb = p0 + (size_t)b * KPREP_BLOCK;
    prefetch_next_sb(pf, T, xa, xb, hb, KQ6_BLOCK, -1);
    __m512i sum[NLLM_STREAM_TOK_MAX];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) sum[t] = _mm512_setzero_si512();
    if (T == 1) {
      /* one token: each ql and qh vector loaded once for the sub-blocks it holds (the loop
       * below reloads them per sub-block for its tokens' sake), a sum per 16 values */
      const uint8_t *y = yb;
#pragma GCC unroll 1
      for (int c = 0; c < 2; c++) {
        __m512i s16[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) s16[i] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) {
          const __m512i l0 = load_ab(xa, xb, KQ6_QL + 256 * (size_t)(2 * c) + 32 * (size_t)v),
                        l1 = load_ab(xa, xb, KQ6_QL + 256 * (size_t)(2 * c + 1) + 32 * (size_t)v),
                        h = load_ab(xa, xb, KQ6_QH + 256 * (size_t)c + 32 * (size_t)v);
#pragma GCC unroll 4
          for (int g = 0; g < 4; g++) {
            const int k = 4 * c + g;
            const __m512i lvl = q6_combine(g % 2 ? l1 : l0, h, g);
            const int i = 2 * g + v / 4;
            s16[i] = packed16_dpbusd(s16[i], lvl, y + 32 * (size_t)k + 4 * (size_t)v);
          }
        }
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) {
          const __m512i sp = scales_ab(xa, xb, KQ6_SC + 16 * (size_t)(4 * c + g));
          sum[0] = _mm512_add_epi32(
              sum[0],
              _mm512_add_epi32(
                  _mm512_mullo_epi32(s16[2 * g], _mm512_srai_epi32(_mm512_slli_epi32(sp, 16), 16)),
                  _mm512_mullo_epi32(s16[2 * g + 1], _mm512_srai_epi32(sp, 16))));
        }
      }
    }
#pragma GCC unroll 1
    for (int k = 0; k < 8 && T > 1; k++) {
      prefetch_next_sb(pf, T, xa, xb, hb, KQ6_BLOCK, k);
      const int c = k / 4, g = k % 4;
      const __m512i sp = scales_ab(xa, xb, KQ6_SC + 16 * (size_t)k);
      const __m512i sc0 = _mm512_srai_epi32(_mm512_slli_epi32(sp, 16), 16),
                    sc1 = _mm512_srai_epi32(sp, 16);
      __m512i lvl[8];
#pragma GCC unroll 8
      for (int v = 0; v < 8; v++)
        lvl[v] = q6_levels(xa, xb, KQ6_QL + 256 * (size_t)(2 * c + g % 2) + 32 * (size_t)v,
                           KQ6_QH + 256 * (size_t)c + 32 * (size_t)v, g);
#pragma GCC unroll 16
      for (int t = 0; t < T; t++) {
        const uint8_t *y = yb + (size_t)t * ps + 32 * (size_t)k;
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
          s0 = packed16_dpbusd(s0, lvl[v], y + 4 * v);
          s1 = packed16_dpbusd(s1, lvl[v + 4], y + 16 + 4 * v);
        }
        sum[t] = _mm512_add_epi32(
            sum[t], _mm512_add_epi32(_mm512_mullo_epi32(s0, sc0), _mm512_mullo_epi32(s1, sc1)));
      }
    }
    const __m512 d = halves_ab(xa, xb, KQ6_D);
    __m512i sj[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) sj[j] = scales_ab(xa, xb, KQ6_SC + 16 * (size_t)j);
      /* the levels' -32: 32 * sum over the 16-value groups of scale * block sum */
#pragma GCC unroll 16
    for (int t = 0; t < T; t++)
      acc[t] = packed16_offset_step(acc[t], sum[t], d, sj, 8, yb + (size_t)t * ps, KPREP_BS16, 5);
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; t++) _mm512_storeu_ps(s + (size_t)t * ss, acc[t]);
}

/* The first two passes over a group (gemm_packed_stream, stream_passes) prefetch the next
 * group; later passes (a prompt's) find their group in cache and skip the prefetches */
#define Q4_K_PACKED16(T, ...) gemm_packed16(0, PF_NONE, T, __VA_ARGS__)
#define Q5_K_PACKED16(T, ...) gemm_packed16(1, PF_NONE, T, __VA_ARGS__)
#define Q6_K_PACKED16(T, ...) gemm_packed16_q6(PF_NONE, T, __VA_ARGS__)
#define Q4_K_STREAM16(T, ...) gemm_packed16(0, PF_L2, T, __VA_ARGS__)
#define Q5_K_STREAM16(T, ...) gemm_packed16(1, PF_L2, T, __VA_ARGS__)
#define Q6_K_STREAM16(T, ...) gemm_packed16_q6(PF_L2, T, __VA_ARGS__)
NLLM_PACKED_BY_TOKENS(q4_K_gemm_packed16_avx512, Q4_K_PACKED16)
NLLM_PACKED_BY_TOKENS(q5_K_gemm_packed16_avx512, Q5_K_PACKED16)
NLLM_PACKED_BY_TOKENS(q6_K_gemm_packed16_avx512, Q6_K_PACKED16)
NLLM_STREAM_BY_TOKENS(q4_K_gemm_packed16_stream_avx512, Q4_K_STREAM16)
NLLM_STREAM_BY_TOKENS(q5_K_gemm_packed16_stream_avx512, Q5_K_STREAM16)
NLLM_STREAM_BY_TOKENS(q6_K_gemm_packed16_stream_avx512, Q6_K_STREAM16)
/* One token (a one-sequence decode step) with the next group's lines asked for into L1 */
#define K_GEMV_L1(name, call)                                                                \
  static void name(int64_t n, float *s, size_t ss, const void *pk, const void *p, size_t ps, \
                   int n_tok) {                                                              \
    (void)n_tok;                                                                             \
    call;                                                                                    \
  }
K_GEMV_L1(q4_K_gemv_packed16_l1_avx512, gemm_packed16(0, PF_L1, 1, n, s, ss, pk, p, ps))
K_GEMV_L1(q5_K_gemv_packed16_l1_avx512, gemm_packed16(1, PF_L1, 1, n, s, ss, pk, p, ps))
K_GEMV_L1(q6_K_gemv_packed16_l1_avx512, gemm_packed16_q6(PF_L1, 1, n, s, ss, pk, p, ps))

/* Sixteen rows as the AVX2 tier's two eight-row groups (group B half a group's bytes on) */
static inline void pack_pair(void (*pack8)(int64_t, const void *, size_t, void *), size_t block,
                             int64_t n, const void *x, size_t bx, void *p) {
  pack8(n, x, bx, p);
  pack8(n, (const uint8_t *)x + 8 * bx, bx, (uint8_t *)p + (size_t)(n / QK_K) * block);
}
static void q4_K_pack16(int64_t n, const void *x, size_t bx, void *p) {
  pack_pair(nllm_q4_K_pack_rows_avx2, KQ4_BLOCK, n, x, bx, p);
}
static void q5_K_pack16(int64_t n, const void *x, size_t bx, void *p) {
  pack_pair(nllm_q5_K_pack_rows_avx2, KQ5_BLOCK, n, x, bx, p);
}
static void q6_K_pack16(int64_t n, const void *x, size_t bx, void *p) {
  pack_pair(nllm_q6_K_pack_rows_avx2, KQ6_BLOCK, n, x, bx, p);
}

/* Crossover and tokens a call as the AVX2 rows'; one token takes the streaming kernel's code
 * (gemv NULL) or a one-token instance of it; stok and passes: the streaming passes' width and
 * count (stream_tok, stream_passes) */
#define K16_ROW(TYPE, fmt, gemv, stok, passes)                                             \
  {                                                                                        \
    .type = TYPE, .pack_rows = fmt##_pack16, .packed_prep = nllm_k_packed_prep_avx2,       \
    .gemm_packed = fmt##_gemm_packed16_avx512, .packed_min_tokens = K_PACKED_MIN_TOKENS,   \
    .pack_group_rows = GROUP_ROWS, .packed_tok = NLLM_PACKED_TOK_MAX, .gemv_packed = gemv, \
    .prepack = 1, .gemm_packed_stream = fmt##_gemm_packed16_stream_avx512,                 \
    .stream_passes = passes, .stream_tok = stok                                            \
  }
/* The three formats' rows, with their one-token kernels and streaming passes */
#define K16_ROWS(gemv_q4, gemv_q5, gemv_q6, stok, passes)     \
  {                                                           \
    K16_ROW(NLLM_TYPE_Q4_K, q4_K, gemv_q4, stok, passes),     \
        K16_ROW(NLLM_TYPE_Q5_K, q5_K, gemv_q5, stok, passes), \
        K16_ROW(NLLM_TYPE_Q6_K, q6_K, gemv_q6, stok, passes)  \
  }
static const nllm_qtype_kernels k_packed16_rows[] =
    K16_ROWS(NULL, NULL, NULL, NLLM_STREAM_TOK_MAX, 2);
const nllm_kernel_set nllm_kernels_k_packed16_avx512 = {
    k_packed16_rows, sizeof k_packed16_rows / sizeof k_packed16_rows[0]};

/* Laid over the rows above on AMD (kernels/qtypes.c, amd_rows), with two differences.
 *
 * Streaming passes of eight tokens, the first pass alone streaming: Q4_K's call of sixteen
 * tokens costs more a token than two of eight on Zen 5 (bench_packed one thread, the group in
 * cache: 0.087 against 2 x 0.038 ms on 512 x 2048; Q6_K's level, 0.103 against 0.102), and a
 * 16-sequence step then runs the streaming call on eight tokens and the in-cache one on the
 * other eight, as a prompt's later passes do. 1.1B Q4_K_M, 2 threads, `--parallel 1,4,16 -p 128
 * -n 32`, six rounds against these rows with the sixteen-token passes: 16 sequences 1.094x
 * (every round ahead), their prompt 1.074x, pp128 1.024x (thirty-fifth round). On the Intel host
 * of the twenty-fourth round one pass of sixteen had run 1.10x ahead of two of eight: other CPUs
 * keep it.
 *
 * One token asks for the next group's lines into L1, as Q4_0's one token does
 * (quant_packed16_avx512.c). AMD Zen 5 (EPYC, 2 cores), 1.1B, 2 threads, `--parallel 1 -p 16 -n
 * 64`, the same binary alternated with NLLM_PREFETCH=l2: Q4_K_M 1.092x (eight rounds, every one
 * ahead) and 1.107x (four), Q5_K_M 1.064x (six, every one ahead). The streaming calls of 2-16
 * tokens the same way measured 1.007-1.048x at 16 sequences and 1.017-1.117x at 4 in three runs
 * of four to six rounds, within this host's swings, and those of 2-8 tokens alone 0.961x at 4
 * sequences (eight rounds, seven behind): they keep their spread prefetch into L2 (thirty-fourth
 * round). */
#ifndef K_AMD_STREAM_TOK /* -D for the A/B */
#define K_AMD_STREAM_TOK NLLM_PACKED_TOK_MAX
#define K_AMD_STREAM_PASSES 1
#endif
static const nllm_qtype_kernels k_packed16_amd_rows[] =
    K16_ROWS(q4_K_gemv_packed16_l1_avx512, q5_K_gemv_packed16_l1_avx512,
             q6_K_gemv_packed16_l1_avx512, K_AMD_STREAM_TOK, K_AMD_STREAM_PASSES);
const nllm_kernel_set nllm_kernels_k_packed16_amd_avx512 = {
    k_packed16_amd_rows, sizeof k_packed16_amd_rows / sizeof k_packed16_amd_rows[0]};
