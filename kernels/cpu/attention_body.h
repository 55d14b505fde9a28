/* The attention pipeline of one (token, KV head) pair over a span of the cache, shared by the
 * AVX2 file and the AVX-512 one (see attention_avx2.c for what it does): each includes it once
 * with ATTN_FN (the exported names' suffix) and ATTN_WIDE (1: the V pass in sixteen-lane
 * tiles, whose sums are the eight-lane tiles' bit for bit) defined. */
#if !defined(ATTN_FN) || !defined(ATTN_WIDE)
#error "define ATTN_FN and ATTN_WIDE before including attention_body.h"
#endif

#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#include "attention.h"
#include "cpu/exp_avx2.h"
#include "cpu/quant.h"
#include "nativellm.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Positions per block of the V pass: 64 rows of head_dim 128 in F16 are 16 KiB, L1-resident. */
#define PV_BLOCK 64
/* Positions ahead of the score pass whose K and V rows are prefetched (-D: the A/B) */
#ifndef ATTN_PF_AHEAD
#define ATTN_PF_AHEAD 16
#endif
/* Fewest score-tile lanes per position (NRP) that prefetch (-D: the A/B) */
#ifndef ATTN_PF_MIN_NRP
#define ATTN_PF_MIN_NRP 1
#endif

ALWAYS_INLINE __m256 load8(const char *p, int f16) {
  return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p))
             : _mm256_loadu_ps((const float *)p);
}

/* Lane i of the result is the full horizontal sum of ai. */
ALWAYS_INLINE __m256 hsum8x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                             __m256 a6, __m256 a7) {
  __m256 h01 = _mm256_hadd_ps(a0, a1), h23 = _mm256_hadd_ps(a2, a3);
  __m256 h45 = _mm256_hadd_ps(a4, a5), h67 = _mm256_hadd_ps(a6, a7);
  __m256 lo = _mm256_hadd_ps(h01, h23), hi = _mm256_hadd_ps(h45, h67);
  /* lo = [s0 s1 s2 s3 | s0' s1' s2' s3'] with ' the upper-half partial sums */
  return _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20), _mm256_permute2f128_ps(lo, hi, 0x31));
}

/* The 8 accumulators of the tiles below are named variables, not an array, each guarded by
 * a condition that is constant once NR / NC are: both compilers then keep them in registers
 * (an array indexed in unrolled loops stayed on the stack with clang). */
#define FOR8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
/* v0 .. v7 by an index that is constant once NR / NC are */
#define SEL8(v, i)   \
  ((i) == 0   ? v##0 \
   : (i) == 1 ? v##1 \
   : (i) == 2 ? v##2 \
   : (i) == 3 ? v##3 \
   : (i) == 4 ? v##4 \
   : (i) == 5 ? v##5 \
   : (i) == 6 ? v##6 \
              : v##7)

/* Raw scores of NR query rows (q, rows qstride floats apart, hd long) at up to 8/NRP positions
 * j.. of k (rows kstride bytes apart; position x is row idx[x], or row x without idx; np of them
 * real). Lane l = p * NRP + r of the result is row r at position p; NRP is NR rounded up to a
 * power of two and the padding lanes are 0. Positions past np re-read the last real row so that
 * no load leaves the cache. Each lane is one accumulator reduced by the same tree, so a row's
 * scores do not depend on which rows share the tile. */
ALWAYS_INLINE __m256 score_tile(const float *q, int64_t qstride, int64_t hd, const char *k,
                                const int32_t *idx, int64_t j, int64_t kstride, int64_t np, int NR,
                                int NRP, int f16) {
  const int P = 8 / NRP, esz = f16 ? 2 : 4;
#define KP_ROW(p) (j + ((p) < np ? (p) : np - 1))
#define KP_DECL(p) const char *kp##p = k + (idx ? idx[KP_ROW(p)] : KP_ROW(p)) * kstride;
#define ACC_DECL(l) __m256 acc##l = _mm256_setzero_ps();
  FOR8(KP_DECL)
  FOR8(ACC_DECL)
  for (int64_t i = 0; i < hd; i += 8) {
#define KV_LOAD(p) const __m256 kv##p = (p) < P ? load8(kp##p + i * esz, f16) : _mm256_setzero_ps();
#define LANE_FMA(l)                                                                               \
  if ((l) % NRP < NR && (l) / NRP < P)                                                            \
    acc##l = _mm256_fmadd_ps(_mm256_loadu_ps(q + ((l) % NRP) * qstride + i), SEL8(kv, (l) / NRP), \
                             acc##l);
    FOR8(KV_LOAD)
    FOR8(LANE_FMA)
  }
  return hsum8x8(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
#undef KP_ROW
#undef KP_DECL
#undef ACC_DECL
#undef KV_LOAD
#undef LANE_FMA
}

#if ATTN_WIDE
/* [lo | hi] and the high half back (AVX512F alone: no DQ's f32x8 forms) */
ALWAYS_INLINE __m512 join_ps(__m256 lo, __m256 hi) {
  return _mm512_castpd_ps(
      _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
}
ALWAYS_INLINE __m256 high_ps(__m512 x) {
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1));
}

/* Rows of q duplicated for score_tile2: row r's values i .. i + 7 twice, at qq + 2 (r hd + i) */
#define QQ_MAX_HD 256
ALWAYS_INLINE void dup_q(float *qq, const float *q, int64_t qstride, int64_t hd, int NR) {
  for (int r = 0; r < NR; r++)
    for (int64_t i = 0; i < hd; i += 8) {
      const __m256 x = _mm256_loadu_ps(q + r * qstride + i);
      _mm512_storeu_ps(qq + 2 * (r * hd + i), join_ps(x, x));
    }
}

/* Two score tiles at once, sixteen lanes wide: the tile at positions j.. (all P real) in the low
 * halves, the next one (np2 real) in the high halves. Each half takes score_tile's fused
 * multiply-adds in its order and the same reduction tree, so both tiles are score_tile's bit for
 * bit. Only for four or more rows (NRP >= 4): a K vector then serves four lanes or more, while
 * with one or two rows putting two positions' K rows together costs what the wider FMAs save
 * (one row, a decode step at 1,024 positions: 83 -> 95 us). */
ALWAYS_INLINE void score_tile2(__m256 *ta, __m256 *tb, const float *qq, int64_t hd, const char *k,
                               const int32_t *idx, int64_t j, int64_t kstride, int64_t np2, int NR,
                               int NRP, int f16) {
  const int P = 8 / NRP, esz = f16 ? 2 : 4;
#define KA_ROW(p) (j + ((p) < P ? (p) : P - 1))
#define KB_ROW(p) (j + P + ((p) < np2 ? (p) : np2 - 1))
#define KP_DECL(p)                                                      \
  const char *ka##p = k + (idx ? idx[KA_ROW(p)] : KA_ROW(p)) * kstride; \
  const char *kb##p = k + (idx ? idx[KB_ROW(p)] : KB_ROW(p)) * kstride;
#define ACC_DECL(l) __m512 acc##l = _mm512_setzero_ps();
  FOR8(KP_DECL)
  FOR8(ACC_DECL)
  for (int64_t i = 0; i < hd; i += 8) {
#define KV_LOAD(p)                                                                                \
  const __m512 kv##p =                                                                            \
      (p) >= P ? _mm512_setzero_ps()                                                              \
      : f16    ? _mm512_cvtph_ps(_mm256_inserti128_si256(                                         \
                     _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(ka##p + i * esz))), \
                     _mm_loadu_si128((const __m128i *)(kb##p + i * esz)), 1))                     \
               : join_ps(_mm256_loadu_ps((const float *)(ka##p + i * esz)),                       \
                         _mm256_loadu_ps((const float *)(kb##p + i * esz)));
#define LANE_FMA(l)                                                            \
  if ((l) % NRP < NR && (l) / NRP < P)                                         \
    acc##l = _mm512_fmadd_ps(_mm512_loadu_ps(qq + 2 * (((l) % NRP) * hd + i)), \
                             SEL8(kv, (l) / NRP), acc##l);
    FOR8(KV_LOAD)
    FOR8(LANE_FMA)
  }
#define LO(l) _mm512_castps512_ps256(acc##l)
#define HI(l) high_ps(acc##l)
  *ta = hsum8x8(LO(0), LO(1), LO(2), LO(3), LO(4), LO(5), LO(6), LO(7));
  *tb = hsum8x8(HI(0), HI(1), HI(2), HI(3), HI(4), HI(5), HI(6), HI(7));
#undef KA_ROW
#undef KB_ROW
#undef KP_DECL
#undef ACC_DECL
#undef KV_LOAD
#undef LANE_FMA
#undef LO
#undef HI
}
#endif

/* out[r][i0 .. i0 + 8 NC) (+)= sum over j in [j0, j1) of p[j * pstep + r * prow] * v_j, for NR
 * rows. Rows of out are ostride apart; `first` starts from 0 instead of out, and `inv` (non-NULL
 * on the last block) scales the result by each row's 1/sum. Accumulator a is row a / NC, slice
 * a % NC; NR * NC <= 8. Every output element sums its positions in order, whatever the tile. */
ALWAYS_INLINE void pv_tile(float *out, int64_t ostride, const float *p, int64_t pstep, int64_t prow,
                           const char *v, const int32_t *idx, int64_t vstride, int64_t j0,
                           int64_t j1, int64_t i0, int first, const float *inv, int NR, int NC,
                           int f16) {
  const int esz = f16 ? 2 : 4;
#define OUT_AT(a) (out + ((a) / NC) * ostride + i0 + 8 * ((a) % NC))
#define ACC_INIT(a)                    \
  __m256 acc##a = _mm256_setzero_ps(); \
  if ((a) < NR * NC && !first) acc##a = _mm256_loadu_ps(OUT_AT(a));
  FOR8(ACC_INIT)
  for (int64_t j = j0; j < j1; j++) {
    const char *vr = v + (idx ? idx[j] : j) * vstride + i0 * esz;
    const float *pj = p + j * pstep;
#define V_LOAD(c) \
  const __m256 vv##c = (c) < NC ? load8(vr + 8 * (c)*esz, f16) : _mm256_setzero_ps();
#define ACC_FMA(a)   \
  if ((a) < NR * NC) \
    acc##a =         \
        _mm256_fmadd_ps(_mm256_broadcast_ss(pj + ((a) / NC) * prow), SEL8(vv, (a) % NC), acc##a);
    FOR8(V_LOAD)
    FOR8(ACC_FMA)
  }
#define ACC_STORE(a)            \
  if ((a) < NR * NC)            \
    _mm256_storeu_ps(OUT_AT(a), \
                     inv ? _mm256_mul_ps(acc##a, _mm256_set1_ps(inv[(a) / NC])) : acc##a);
  FOR8(ACC_STORE)
#undef OUT_AT
#undef ACC_INIT
#undef V_LOAD
#undef ACC_FMA
#undef ACC_STORE
}

#if ATTN_WIDE
/* pv_tile sixteen lanes wide: accumulator a is row a / NC, 16-value slice a % NC (NR * NC <= 16,
 * 32 zmm registers). Every output element takes the same fused multiply-adds in the same order
 * as in pv_tile, so the results are the eight-lane tiles' bit for bit. */
#define FOR16(X) FOR8(X) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
ALWAYS_INLINE void pv_tile16(float *out, int64_t ostride, const float *p, int64_t pstep,
                             int64_t prow, const char *v, const int32_t *idx, int64_t vstride,
                             int64_t j0, int64_t j1, int64_t i0, int first, const float *inv,
                             int NR, int NC, int f16) {
  const int esz = f16 ? 2 : 4;
#define OUT_AT(a) (out + ((a) / NC) * ostride + i0 + 16 * ((a) % NC))
#define ACC_INIT(a)                    \
  __m512 acc##a = _mm512_setzero_ps(); \
  if ((a) < NR * NC && !first) acc##a = _mm512_loadu_ps(OUT_AT(a));
  FOR16(ACC_INIT)
  for (int64_t j = j0; j < j1; j++) {
    const char *vr = v + (idx ? idx[j] : j) * vstride + i0 * esz;
    const float *pj = p + j * pstep;
#define V_LOAD(c)                                                                           \
  const __m512 vv##c =                                                                      \
      (c) >= NC ? _mm512_setzero_ps()                                                       \
      : f16     ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vr + 16 * (c)*esz))) \
                : _mm512_loadu_ps((const float *)(vr + 16 * (c)*esz));
#define ACC_FMA(a)   \
  if ((a) < NR * NC) \
    acc##a = _mm512_fmadd_ps(_mm512_set1_ps(pj[((a) / NC) * prow]), SEL8(vv, (a) % NC), acc##a);
    FOR8(V_LOAD)
    FOR16(ACC_FMA)
  }
#define ACC_STORE(a)            \
  if ((a) < NR * NC)            \
    _mm512_storeu_ps(OUT_AT(a), \
                     inv ? _mm512_mul_ps(acc##a, _mm512_set1_ps(inv[(a) / NC])) : acc##a);
  FOR16(ACC_STORE)
#undef OUT_AT
#undef ACC_INIT
#undef V_LOAD
#undef ACC_FMA
#undef ACC_STORE
}
#endif

/* One block [j0, j1) of the V pass over all hd values of NR rows (tiles of NC eight-value
 * slices; the sixteen-lane tiles where built with them and hd allows). */
ALWAYS_INLINE void pv_pass(float *out, int64_t ostride, int64_t hd, const float *p, int64_t pstep,
                           int64_t prow, const char *v, const int32_t *idx, int64_t vstride,
                           int64_t j0, int64_t j1, const float *inv, int NR, int NC, int f16) {
  int64_t i = 0;
#if ATTN_WIDE
  /* 16-value slices, two or four a tile: at least eight accumulators, eight independent chains
   * of FMAs (one row has only four over 64 values, and ran 11% slower than eight lanes wide) */
  const int NC16 = NR <= 4 ? 4 : 2;
  for (; NR >= 2 && i + 16 * NC16 <= hd; i += 16 * NC16)
    pv_tile16(out, ostride, p, pstep, prow, v, idx, vstride, j0, j1, i, j0 == 0, inv, NR, NC16,
              f16);
#endif
  for (; i + 8 * NC <= hd; i += 8 * NC)
    pv_tile(out, ostride, p, pstep, prow, v, idx, vstride, j0, j1, i, j0 == 0, inv, NR, NC, f16);
  for (; i < hd; i += 8)
    pv_tile(out, ostride, p, pstep, prow, v, idx, vstride, j0, j1, i, j0 == 0, inv, NR, 1, f16);
}

/* Within a vector whose lane l belongs to head l % NRP, combines (op = max or add) the lanes
 * of each head, so every lane ends up holding its head's total. */
ALWAYS_INLINE __m256 fold_heads(__m256 x, int NRP, int is_max) {
#define FOLD_OP(a, b) (is_max ? _mm256_max_ps(a, b) : _mm256_add_ps(a, b))
  if (NRP <= 4) x = FOLD_OP(x, _mm256_permute2f128_ps(x, x, 1));
  if (NRP <= 2) x = FOLD_OP(x, _mm256_permute_ps(x, _MM_SHUFFLE(1, 0, 3, 2)));
  if (NRP <= 1) x = FOLD_OP(x, _mm256_permute_ps(x, _MM_SHUFFLE(2, 3, 0, 1)));
#undef FOLD_OP
  return x;
}

/* The softmax of n_tiles score tiles in place (lanes of NRP heads; padding lanes -inf): each
 * head's max score and sum of exp in every lane of mx and sums. */
ALWAYS_INLINE void softmax_tiles(float *s, int64_t n_tiles, int NRP, __m256 *mx_out,
                                 __m256 *sums_out) {
  __m256 mx = _mm256_set1_ps(-INFINITY);
  for (int64_t ti = 0; ti < n_tiles; ti++) mx = _mm256_max_ps(mx, _mm256_loadu_ps(s + 8 * ti));
  mx = fold_heads(mx, NRP, 1);
  __m256 sum = _mm256_setzero_ps();
  for (int64_t ti = 0; ti < n_tiles; ti++) {
    const __m256 e = nllm_exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(s + 8 * ti), mx));
    _mm256_storeu_ps(s + 8 * ti, e);
    sum = _mm256_add_ps(sum, e);
  }
  *mx_out = mx;
  *sums_out = fold_heads(sum, NRP, 0);
}

/* The whole pipeline for NR (1..8) query heads q (rows of hd) over the n_vis visible rows of
 * k and v (stride bytes apart; visible position j is row idx[j], or row j without idx),
 * writing out (rows of hd). Scores live in s as the score tiles
 * make them: s[j * NRP + r], 8 lanes a tile, so the softmax runs on whole vectors and the
 * padding lanes cost nothing but their share of the exp. s: NRP * n_vis + 8 floats.
 * With m_out NULL out is normalized; else out stays unnormalized and each head's max score and
 * sum of exp go to m_out[r] and l_out[r]. */
ALWAYS_INLINE void attn_heads(float *out, const float *q, const char *k, const char *v,
                              const int32_t *idx, int64_t stride, int64_t n_vis, int64_t hd,
                              float scale, float softcap, float *s, float *m_out, float *l_out,
                              int NR, int f16, int pf) {
  const int NRP = NR == 1 ? 1 : NR == 2 ? 2 : NR <= 4 ? 4 : 8;
  const int P = 8 / NRP;
  /* V slice width in vectors: NR * NC accumulators, at most 8 so nothing spills */
  const int NC = 8 / NRP;
  const int64_t n_tiles = (n_vis + P - 1) / P;

  const __m256 scv = _mm256_set1_ps(scale);
  const int64_t row_bytes = hd * (f16 ? 2 : 4);
  const int prefetch = pf && NRP >= ATTN_PF_MIN_NRP;
#if ATTN_WIDE
  float qq[8 * 2 * QQ_MAX_HD] __attribute__((aligned(64)));
  const int wide = hd <= QQ_MAX_HD && NRP >= 4;
  if (wide) dup_q(qq, q, hd, hd, NR);
#endif
  for (int64_t ti = 0; ti < n_tiles;) {
    const int64_t j = ti * P, np = n_vis - j < P ? n_vis - j : P;
#if ATTN_WIDE
    const int pair = wide && ti + 1 < n_tiles;
#else
    const int pair = 0;
#endif
    /* A decode step reads each sequence's rows once, from memory, and a paged cache's rows by
     * index are a pattern the hardware prefetcher does not follow: ask for the K rows (to L1)
     * and the V rows (to L2, for the pass after the softmax) ATTN_PF_AHEAD positions ahead.
     * Rows in order (pf 0) are left to the hardware: there the loop only cost time (hot cache,
     * bench_attention 6-15%). */
    for (int64_t x = j + ATTN_PF_AHEAD;
         prefetch && x < j + ATTN_PF_AHEAD + (pair + 1) * P && x < n_vis; x++) {
      const int64_t o = idx[x] * stride;
      for (int64_t b = 0; b < row_bytes; b += 64) {
        __builtin_prefetch(k + o + b, 0, 3);
        __builtin_prefetch(v + o + b, 0, 2);
      }
    }
#if ATTN_WIDE
    if (pair) {
      const int64_t np2 = n_vis - j - P < P ? n_vis - j - P : P;
      __m256 ta, tb;
      score_tile2(&ta, &tb, qq, hd, k, idx, j, stride, np2, NR, NRP, f16);
      _mm256_storeu_ps(s + 8 * ti, _mm256_mul_ps(ta, scv));
      _mm256_storeu_ps(s + 8 * ti + 8, _mm256_mul_ps(tb, scv));
      ti += 2;
      continue;
    }
#endif
    _mm256_storeu_ps(
        s + 8 * ti, _mm256_mul_ps(score_tile(q, hd, hd, k, idx, j, stride, np, NR, NRP, f16), scv));
    ti++;
  }
  if (softcap > 0) nllm_softcap_avx2(s, 8 * n_tiles, softcap);
  /* lanes of positions past the end (copies of the last row) drop out of the softmax */
  for (int l = (int)(n_vis - (n_tiles - 1) * P) * NRP; l < 8; l++)
    s[8 * (n_tiles - 1) + l] = -INFINITY;

  __m256 mx, sums;
  softmax_tiles(s, n_tiles, NRP, &mx, &sums);
  float inv[8];
  _mm256_storeu_ps(inv, _mm256_div_ps(_mm256_set1_ps(1.0f), sums));
  if (m_out) { /* lane r < NRP holds head r's totals */
    float mv[8], lv[8];
    _mm256_storeu_ps(mv, mx);
    _mm256_storeu_ps(lv, sums);
    for (int r = 0; r < NR; r++) m_out[r] = mv[r], l_out[r] = lv[r];
  }

  for (int64_t j0 = 0; j0 < n_vis; j0 += PV_BLOCK) {
    const int64_t j1 = n_vis - j0 < PV_BLOCK ? n_vis : j0 + PV_BLOCK;
    const float *last = j1 == n_vis && !m_out ? inv : NULL;
    pv_pass(out, hd, hd, s, NRP, 1, v, idx, stride, j0, j1, last, NR, NC, f16);
  }
}

/* G (2..4) query rows of one head (the rows of consecutive tokens of one sequence: q rows and
 * out rows qstride floats apart) over the first n_vis[r] visible rows each, of the same k, v
 * and idx as attn_heads. The scores of all G rows against a K row come from one load of it and
 * a V row is read once for all G, but each row's arithmetic is attn_heads' with NR 1, in the
 * same order: its scores (one accumulator per position), its softmax over its own tiles, and
 * its weighted V sum position by position (zero weights past its own rows add nothing), so
 * the results equal the row-by-row ones bit for bit. s: G * (n_vis max + 16) floats. */
ALWAYS_INLINE void attn_rows(float *out, const float *q, int64_t qstride, const char *k,
                             const char *v, const int32_t *idx, int64_t stride,
                             const int64_t *n_vis, int64_t hd, float scale, float softcap, float *s,
                             int G, int f16) {
  const int NRP = G == 2 ? 2 : 4, P = 8 / NRP, NC = 8 / NRP;
  int64_t n_max = 0;
  for (int r = 0; r < G; r++) n_max = n_vis[r] > n_max ? n_vis[r] : n_max;
  const int64_t row = (n_max + 7) / 8 * 8; /* floats of one row's scores */
  const __m256 scv = _mm256_set1_ps(scale);
#if ATTN_WIDE
  float qq[4 * 2 * QQ_MAX_HD] __attribute__((aligned(64)));
  const int wide = hd <= QQ_MAX_HD && NRP >= 4;
  if (wide) dup_q(qq, q, qstride, hd, G);
#endif
  for (int64_t j = 0; j < n_max;) {
    const int64_t np = n_max - j < P ? n_max - j : P;
    float t[16];
    int64_t nt = 1; /* tiles made */
#if ATTN_WIDE
    if (wide && j + P < n_max) {
      const int64_t np2 = n_max - j - P < P ? n_max - j - P : P;
      __m256 ta, tb;
      score_tile2(&ta, &tb, qq, hd, k, idx, j, stride, np2, G, NRP, f16);
      _mm256_storeu_ps(t, _mm256_mul_ps(ta, scv));
      _mm256_storeu_ps(t + 8, _mm256_mul_ps(tb, scv));
      nt = 2;
    } else
#endif
      _mm256_storeu_ps(
          t, _mm256_mul_ps(score_tile(q, qstride, hd, k, idx, j, stride, np, G, NRP, f16), scv));
    const int64_t n_pos = n_max - j < nt * P ? n_max - j : nt * P;
    for (int64_t p = 0; p < n_pos; p++)
      for (int r = 0; r < G; r++) s[r * row + j + p] = t[p * NRP + r];
    j += nt * P;
  }
  float inv[4];
  for (int r = 0; r < G; r++) {
    float *sr = s + r * row;
    const int64_t n = n_vis[r], n_tiles = (n + 7) / 8;
    if (softcap > 0) nllm_softcap_avx2(sr, 8 * n_tiles, softcap);
    for (int64_t j = n; j < 8 * n_tiles; j++) sr[j] = -INFINITY;
    __m256 mx, sums;
    softmax_tiles(sr, n_tiles, 1, &mx, &sums);
    float iv[8];
    _mm256_storeu_ps(iv, _mm256_div_ps(_mm256_set1_ps(1.0f), sums));
    inv[r] = iv[0];
    for (int64_t j = 8 * n_tiles; j < row; j++) sr[j] = 0.0f;
  }
  for (int64_t j0 = 0; j0 < n_max; j0 += PV_BLOCK) {
    const int64_t j1 = n_max - j0 < PV_BLOCK ? n_max : j0 + PV_BLOCK;
    const float *last = j1 == n_max ? inv : NULL;
    pv_pass(out, qstride, hd, s, 1, row, v, idx, stride, j0, j1, last, G, NC, f16);
  }
}

#define ROWS_CASE(g)                                                                     \
  case g:                                                                                \
    if (f16)                                                                             \
      attn_rows(out, q, qstride, k, v, idx, stride, n_vis, hd, scale, softcap, s, g, 1); \
    else                                                                                 \
      attn_rows(out, q, qstride, k, v, idx, stride, n_vis, hd, scale, softcap, s, g, 0); \
    break;

void ATTN_FN(nllm_attn_rows)(const nllm_attn_args *a, int64_t t0, int64_t n_rows, int64_t kvh,
                             float *scratch) {
  const int64_t hd = a->attn.head_dim, qstride = a->attn.n_head * hd;
  const int f16 = a->kv_type != NLLM_TYPE_F32;
  const int64_t esz = f16 ? 2 : 4;
  const int64_t stride = (nllm_attn_kv_offset(a, 1, 0) - nllm_attn_kv_offset(a, 0, 0)) * esz;
  /* the rows share one sequence's cells (or the contiguous cache), seen from position 0 */
  const int32_t *idx = a->vis_cell ? a->vis_cell[t0] : NULL;
  const char *k = (const char *)a->attn.k + nllm_attn_kv_offset(a, 0, kvh) * esz;
  const char *v = (const char *)a->attn.v + nllm_attn_kv_offset(a, 0, kvh) * esz;
  const float scale = a->attn.scale, softcap = a->attn.softcap,
              *q = a->attn.q + t0 * qstride + kvh * hd;
  float *out = a->attn.out + t0 * qstride + kvh * hd, *s = scratch;
  int64_t n_vis[4];
  for (int64_t r = 0; r < n_rows && r < 4; r++)
    n_vis[r] = a->vis_cell ? a->n_vis[t0 + r] : a->pos0 + t0 + r + 1;
  switch (n_rows) {
    ROWS_CASE(2)
    ROWS_CASE(3)
    ROWS_CASE(4)
    default: break;
  }
}

#define HEADS_CALL(nr, f16_, pf_) \
  attn_heads(out, q, k, v, idx, stride, n, hd, scale, softcap, s, mo, lo, nr, f16_, pf_)
#define HEADS_CASE(nr)      \
  case nr:                  \
    if (f16 && idx)         \
      HEADS_CALL(nr, 1, 1); \
    else if (f16)           \
      HEADS_CALL(nr, 1, 0); \
    else if (idx)           \
      HEADS_CALL(nr, 0, 1); \
    else                    \
      HEADS_CALL(nr, 0, 0); \
    break;

void ATTN_FN(nllm_attn_span)(const nllm_attn_args *a, int64_t t, int64_t kvh, int64_t j0, int64_t n,
                             float *out_rows, float *m, float *l, float *scratch) {
  const int64_t hd = a->attn.head_dim, n_rep = a->attn.n_head / a->attn.n_head_kv;
  const int f16 = a->kv_type != NLLM_TYPE_F32;
  const int64_t esz = f16 ? 2 : 4;
  /* bytes from one position to the next */
  const int64_t stride = (nllm_attn_kv_offset(a, 1, 0) - nllm_attn_kv_offset(a, 0, 0)) * esz;
  /* a paged cache: rows by index from the head's first row; else from position j0 on */
  const int32_t *idx = a->vis_cell ? a->vis_cell[t] + j0 : NULL;
  const int64_t row0 = idx ? 0 : j0;
  const char *k = (const char *)a->attn.k + nllm_attn_kv_offset(a, row0, kvh) * esz;
  const char *v = (const char *)a->attn.v + nllm_attn_kv_offset(a, row0, kvh) * esz;
  const float scale = a->attn.scale, softcap = a->attn.softcap;
  /* More than 8 heads per KV head: chunks of at most 8, as even as possible, each rereading K/V */
  const int64_t n_chunks = (n_rep + 7) / 8;
  for (int64_t ch = 0, r0 = 0; ch < n_chunks; ch++) {
    const int64_t r1 = n_rep * (ch + 1) / n_chunks;
    const float *q = a->attn.q + t * a->attn.n_head * hd + (kvh * n_rep + r0) * hd;
    float *out = out_rows + r0 * hd, *s = scratch;
    float *mo = m ? m + r0 : NULL, *lo = m ? l + r0 : NULL;
    switch (r1 - r0) {
      HEADS_CASE(1)
      HEADS_CASE(2)
      HEADS_CASE(3)
      HEADS_CASE(4)
      HEADS_CASE(5)
      HEADS_CASE(6)
      HEADS_CASE(7)
      HEADS_CASE(8)
      default: break;
    }
    r0 = r1;
  }
}
