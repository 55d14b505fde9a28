/* AVX-512 row-interleaved prompt kernels of Q4_0 and Q8_0 (see nllm_gemm_packed_fn), sixteen
 * rows a group: a zmm holds one int32 lane per row, so one dpbusd with a broadcast of four
 * activation bytes is 64 products of sixteen rows, and the rows' sums leave in the lanes of one
 * vector (no horizontal sums, no per-row unpacking per token).
 *
 * Why: the tiles of quant_avx512.c (q4_0_gemm4_avx512, q8_0_gemm4_chunks_avx512) take a row 16
 * blocks at a time and the rest four blocks at a time with the weights unpacked again for every
 * four tokens, then reduce each row's lanes; on 768-value rows (a 110M model's q, k, v, o, gate
 * and up) a third of the row is such a rest, and the unpacking and reductions cost more
 * instructions than the products.
 *
 * The sums equal the tier's four-row prompt kernels bit for bit (Q4_0: its decode kernel
 * q4_0_vec_dot4_avx512; Q8_0: its vec_dot4_tile, q8_0_vec_dot4_chunks_avx512), so a prompt's rows
 * are the same whichever path a batch takes: those kernels' steps are followed per lane.
 * Per 16-block chunk they keep 16 lanes, lane 4k + g accumulating block 4g + k of each chunk
 * (fma of dx * dy and the block's exact integer sum); the four-block groups after the last chunk
 * keep 16 more: for Q4_0 lane 4k + j accumulates the part j (elements 4j..4j+3 and
 * 16+4j..16+4j+3) of block k of each group, for Q8_0 lane 8h + e the elements 4e..4e+3 of block
 * h, then of block 2 + h; each set of 16 is added as a fixed tree (hsum4_ps's), then the two.
 * Here each of those 32 accumulators is a vector of the 16 rows, and the tree adds vectors.
 *
 * Layout of a group, per block: the 16 rows' dx (F16), then eight vectors of unsigned levels
 * (Q4_0: 0..15; Q8_0: x + 128), vector e holding row r's levels of elements 4e..4e+3 in int32
 * lane r (Q4_0 stores them as nibbles, two vectors a register, and orders its blocks; the
 * blocks lie in pairs: block_scales). The activation's prepared row: per block its 32 bytes,
 * dy and the offset of the whole block (-8 or -128 times the sum of its bytes), then, after all
 * of those, the offsets of Q4_0's four parts or of Q8_0's eight four-byte words (PREP_HEAD).
 */
#include <immintrin.h>
#include <stddef.h>

#include "cpu/packed16_avx512.h"
#include "cpu/quant.h"

#define GROUP_ROWS 16
/* A prepared row: every block's head first (its 32 bytes, dy, the whole block's offset), then
 * every block's offsets of Q4_0's four parts or Q8_0's eight words, which only the four-block
 * groups and Q8_0's one-token kernel read. The chunks read heads only: sixteen tokens' rows
 * are 40 bytes a block apart, where they were 96 (Q8_0) with the offsets between, and a
 * 2048-value matrix's 16 rows of activations (98 KiB then) do not stay in L1 beside the
 * weights. */
#define PREP_HEAD 40
#define PREP_PARTS(q8) ((q8) ? 32 : 16)
_Static_assert(PREP_HEAD + PREP_PARTS(1) <= NLLM_GEMM_PREP_BYTES(QK),
               "a prepared block fits gemm_prep's room");
static inline size_t prep_parts_at(const int q8, int64_t b, int64_t nb) {
  return (size_t)nb * PREP_HEAD + (size_t)b * PREP_PARTS(q8);
}
/* Blocks per chunk of the decode kernel (Q4C_BLOCKS there) */
#define CHUNK 16
/* Blocks ahead of the one packed that pack_rows prefetches in each row */
#define PACK_AHEAD 8
/* Tokens from which the prompt path repacks (below, the tiles run: the same sums). Measured on
 * one thread (GFLOP/s, tiles / packed): 768-value rows gain from 8 tokens (237 / 264 at 8, 234 /
 * 318 at 16), 2048-value rows, where the tiles have no four-block rest, only from 16 (411 / 308
 * at 8, 393 / 396 at 16, 374 / 462 at 32). But a 16-sequence decode step on the 1.1B shape (2
 * threads, weights from DRAM) spent 40% of its time repacking: generation 97-106 t/s against
 * 182-204 with the tiles up to 31 tokens (so 32, sixteenth round). With the layout of half the
 * bytes (block_scales) 16 again: 1.1B, 2 threads, three alternated pairs against 32, pp16
 * 178-216 against 171-208 t/s, pp24 206-261 against 182-224, 16-sequence generation 161-197
 * against 163-188; from 4 tokens, 4 sequences fell from 123-125 to 87-91 t/s (eighteenth
 * round). -D for the A/B. */
#ifndef Q4_PACKED_MIN_TOKENS
#define Q4_PACKED_MIN_TOKENS 16
#endif
/* Q8_0's crossover against its chunk tiles (q8_0_gemm4_chunks_avx512). Its repacking reads
 * twice the bytes of Q4_0's, and on weights that come from DRAM (a decode step of many
 * sequences) it did not pay below 64 tokens: 1.1B, 2 threads, pp16 / 32 / 64 / 96 t/s with
 * packing from 16 tokens 102-104 / 137-138 / 163-169 / 180-186 against the tiles' 137 /
 * 155-157 / 164-165 / 164-167 (16-sequence generation 85-91 against 138-142 t/s). */
#define Q8_PACKED_MIN_TOKENS 64
#ifndef Q8_PREPACK
#define Q8_PREPACK 1
#endif
/* Q4_0 kept packed from load too (its groups take the plain rows' bytes, block_scales), with the
 * one-token kernel streaming the groups (gemv_packed = the stream kernel, whose sums are the
 * decode kernel's). 1.1B Q4_0, 2 threads, against the plain rows, three alternated pairs:
 * 4-sequence generation 146-197 against 116-121 t/s, 16 sequences 210-287 against 137-151; one
 * sequence 60.6-70.6 against 61.5-75.4 t/s (four more pairs: 67.1-70.4 against 69.0-71.4, 1-3%
 * behind in three, 2% ahead in one), one thread and the 110M shape level or ahead. Without the
 * prefetch (a build where gcc had dropped it) one sequence fell to 0.8 of the plain rows.
 * -D for the A/B. */
#ifndef Q4_PREPACK
#define Q4_PREPACK 1
#endif

/* Where block b of a group (nb blocks, even: n is a multiple of NLLM_GEMM_COLS) lies. Both
 * formats keep their plain rows' bytes: the blocks lie in pairs, the pair's two sets of 16 F16
 * scales in its first 64 bytes, then each block's vectors (Q4_0: four, vector j holding row r's
 * bytes 4j..4j+3 in lane r, the low nibbles vector j's levels, the high ones vector 4 + j's;
 * Q8_0: eight), so that every vector load stays on one cache line. Weights kept packed from
 * load take no more memory than their file, decode reads no more bytes, and a repack writes
 * fewer. (Q8_0's scales were floats, 576 bytes a block: 6% more memory and bytes a decode step;
 * as F16, exact, one sequence 1.04x, sixteen level: docs/performance.md, twenty-sixth round.)
 * Q4_0's chunks' blocks lie in the order gemm_packed16 reads them, lane
 * position by lane position (block 16 c + blk at position L nc + c), so that a group streams
 * from memory as one line (a one-token matvec in block order, without prefetch, read 11 GB/s of
 * weights against the plain rows' 28); the blocks after the last chunk stay in order. Q8_0's
 * stay in block order: its one-token kernel follows the decode kernel's. */
#define Q4_BLOCK (GROUP_ROWS * 2 + 4 * 64)
#define Q8_BLOCK (GROUP_ROWS * 2 + 8 * 64)
_Static_assert(Q8_BLOCK == GROUP_ROWS * sizeof(block_q8_0) &&
                   Q4_BLOCK == GROUP_ROWS * sizeof(block_q4_0),
               "a packed block of sixteen rows is their plain blocks' bytes");
static inline size_t block_bytes(const int q8) {
  return q8 ? Q8_BLOCK : Q4_BLOCK;
}
static inline int64_t block_position(const int q8, int64_t b, int64_t nb) {
  const int64_t nc = nb / CHUNK, blk = b % CHUNK;
  return q8 || b >= nc * CHUNK ? b : (4 * (blk % 4) + blk / 4) * nc + b / CHUNK;
}
/* Offsets in the group of block b's scales and of its vectors (the packer writes there) */
static inline size_t scales_at(const int q8, int64_t b, int64_t nb) {
  const int64_t p = block_position(q8, b, nb);
  return (size_t)(p / 2) * 2 * block_bytes(q8) + 32 * (size_t)(p % 2);
}
static inline size_t vectors_at(const int q8, int64_t b, int64_t nb) {
  const int64_t p = block_position(q8, b, nb);
  return (size_t)(p / 2) * 2 * block_bytes(q8) + 64 + (block_bytes(q8) - 32) * (size_t)(p % 2);
}
static inline const uint8_t *block_scales(const int q8, const uint8_t *pk, int64_t b, int64_t nb) {
  return pk + scales_at(q8, b, nb);
}
static inline const uint8_t *block_vectors(const int q8, const uint8_t *pk, int64_t b, int64_t nb) {
  return pk + vectors_at(q8, b, nb);
}
static inline __m512 load_dx(const int q8, const uint8_t *pk, int64_t b, int64_t nb) {
  return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)block_scales(q8, pk, b, nb)));
}
/* Vector e (0..7) of block b: Q8_0's as stored, Q4_0's from the nibbles of vector e % 4 */
static inline __m512i load_w(const int q8, const uint8_t *pk, int64_t b, int64_t nb, int e) {
  if (q8) return _mm512_loadu_si512(block_vectors(1, pk, b, nb) + 64 * e);
  const __m512i v = _mm512_loadu_si512(block_vectors(0, pk, b, nb) + 64 * (e % 4));
  return _mm512_and_si512(e < 4 ? v : _mm512_srli_epi16(v, 4), _mm512_set1_epi8(15));
}

static void q4_0_pack16_avx512(int64_t n, const void *vx, size_t bx, void *vp) {
  const uint8_t *x0 = vx;
  uint8_t *out = vp;
  const size_t xs = sizeof(block_q4_0);
  /* of two registers of four rows' 16 quant bytes (row 4p + k in 128-bit lane k of register p):
   * lanes 0..7 word w of rows 0..7, lanes 8..15 word w + 1 */
  __m512i idx[2];
  for (int h = 0; h < 2; h++) {
    uint32_t v[16];
    for (int i = 0; i < 16; i++) {
      const int r = i % 8, w = 2 * h + i / 8;
      v[i] = (uint32_t)((r / 4) * 16 + (r % 4) * 4 + w);
    }
    idx[h] = _mm512_loadu_si512(v);
  }
  const int64_t nb = n / QK;
  for (int64_t b = 0; b < nb; b++) {
    /* sixteen rows are more streams than the hardware prefetcher follows: a weight row read
     * here for the first time (a model's layers do not stay in cache) waited for memory */
    for (int r = 0; r < GROUP_ROWS; r++)
      __builtin_prefetch(x0 + (size_t)r * bx + (size_t)(b + PACK_AHEAD) * xs, 0, 3);
    __m512i X[4];
    uint16_t d[GROUP_ROWS];
    for (int p = 0; p < 4; p++) {
      const uint8_t *x = x0 + (size_t)(4 * p) * bx + (size_t)b * xs;
      __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(x + 2)));
      v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(x + bx + 2)), 1);
      v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(x + 2 * bx + 2)), 2);
      X[p] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(x + 3 * bx + 2)), 3);
      for (int k = 0; k < 4; k++) d[4 * p + k] = load_u16(x + (size_t)k * bx);
    }
    /* A[h][q]: rows 8q..8q+7, words 2h and 2h + 1; then word j of all 16 rows */
    __m512i A[2][2], O[4];
    for (int h = 0; h < 2; h++)
      for (int q = 0; q < 2; q++)
        A[h][q] = _mm512_permutex2var_epi32(X[2 * q], idx[h], X[2 * q + 1]);
    for (int h = 0; h < 2; h++) {
      O[2 * h] = _mm512_shuffle_i64x2(A[h][0], A[h][1], _MM_SHUFFLE(1, 0, 1, 0));
      O[2 * h + 1] = _mm512_shuffle_i64x2(A[h][0], A[h][1], _MM_SHUFFLE(3, 2, 3, 2));
    }
    /* see Q4_BLOCK */
    memcpy(out + scales_at(0, b, nb), d, sizeof d);
    for (int j = 0; j < 4; j++) _mm512_storeu_si512(out + vectors_at(0, b, nb) + 64 * j, O[j]);
  }
}

/* The head of a prepared block, both formats: its 32 bytes q, dy (the block's F16 scale d) and
 * the whole block's offset, the sum of the four lanes of o. */
static inline void prep_head(uint8_t *out, __m256i q, uint16_t d, __m128i o) {
  o = _mm_add_epi32(o, _mm_shuffle_epi32(o, _MM_SHUFFLE(1, 0, 3, 2)));
  o = _mm_add_epi32(o, _mm_shuffle_epi32(o, _MM_SHUFFLE(2, 3, 0, 1)));
  const float dy = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(d)));
  const int32_t total = _mm_cvtsi128_si32(o);
  _mm256_storeu_si256((__m256i *)out, q);
  memcpy(out + 32, &dy, 4);
  memcpy(out + 36, &total, 4);
}

/* A token's row: per block its bytes, dy, -8 * sum; -8 * the parts' sums (PREP_HEAD). */
static void q4_0_packed16_prep_avx512(int64_t n, const void *vy, void *vp) {
  const block_q8_0 *y = vy;
  uint8_t *out = vp;
  const __m256i v8 = _mm256_set1_epi8(8);
  const int64_t nb = n / QK;
  for (int64_t b = 0; b < nb; b++) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)y[b].qs);
    /* 8 * the sums of bytes 4e..4e+3; the parts are e = j and e = 4 + j */
    const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), v8, q);
    const __m128i part =
        _mm_sub_epi32(_mm_setzero_si128(),
                      _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1)));
    prep_head(out + (size_t)b * PREP_HEAD, q, y[b].d, part);
    _mm_storeu_si128((__m128i *)(out + prep_parts_at(0, b, nb)), part);
  }
}

/* Sixteen Q8_0 rows: the 16 x 8 words of a block's quants turned into eight vectors of one
 * word of all 16 rows, in three rounds of two-register permutes (rows in pairs, fours, eights),
 * the bytes made unsigned (x + 128). */
static void q8_0_pack16_avx512(int64_t n, const void *vx, size_t bx, void *vp) {
  const uint8_t *x0 = vx;
  uint8_t *out = vp;
  const size_t xs = sizeof(block_q8_0);
  const __m512i k128 = _mm512_set1_epi8((char)0x80);
  /* ia[h]: words 4h..4h+3 of four rows (two registers of two rows), lane 4 * (e - 4h) + k;
   * ib[m]: words 2m, 2m+1 (of those four) of eight rows, lane 8 * (e - 2m) + k;
   * ic[u]: word u (of those two) of sixteen rows, lane r */
  __m512i ia[2], ib[2], ic[2];
  for (int h = 0; h < 2; h++) {
    uint32_t va[16], vb[16], vc[16];
    for (int i = 0; i < 16; i++) {
      const int k = i % 4, e = 4 * h + i / 4;
      va[i] = (uint32_t)(16 * (k / 2) + 8 * (k % 2) + e);
      const int k8 = i % 8, e2 = 2 * h + i / 8; /* h here stands for m */
      vb[i] = (uint32_t)(k8 < 4 ? 4 * e2 + k8 : 16 + 4 * e2 + k8 - 4);
      vc[i] = (uint32_t)(i < 8 ? 8 * h + i : 16 + 8 * h + i - 8); /* h here stands for u */
    }
    ia[h] = _mm512_loadu_si512(va);
    ib[h] = _mm512_loadu_si512(vb);
    ic[h] = _mm512_loadu_si512(vc);
  }
  const int64_t nb = n / QK;
  for (int64_t b = 0; b < nb; b++) {
    for (int r = 0; r < GROUP_ROWS; r++)
      __builtin_prefetch(x0 + (size_t)r * bx + (size_t)(b + PACK_AHEAD) * xs, 0, 3);
    __m512i Z[8], A[4][2], B[2][2][2];
    uint16_t d[GROUP_ROWS];
    for (int i = 0; i < 8; i++) {
      const uint8_t *x = x0 + (size_t)(2 * i) * bx + (size_t)b * xs;
      Z[i] =
          _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(x + 2))),
                             _mm256_loadu_si256((const __m256i *)(x + bx + 2)), 1);
      d[2 * i] = load_u16(x);
      d[2 * i + 1] = load_u16(x + bx);
    }
    for (int j = 0; j < 4; j++)
      for (int h = 0; h < 2; h++)
        A[j][h] = _mm512_permutex2var_epi32(Z[2 * j], ia[h], Z[2 * j + 1]);
    for (int jj = 0; jj < 2; jj++)
      for (int h = 0; h < 2; h++)
        for (int m = 0; m < 2; m++)
          B[jj][h][m] = _mm512_permutex2var_epi32(A[2 * jj][h], ib[m], A[2 * jj + 1][h]);
    memcpy(out + scales_at(1, b, nb), d, sizeof d);
    for (int h = 0; h < 2; h++)
      for (int m = 0; m < 2; m++)
        for (int u = 0; u < 2; u++)
          _mm512_storeu_si512(
              out + vectors_at(1, b, nb) + 64 * (4 * h + 2 * m + u),
              _mm512_xor_si512(_mm512_permutex2var_epi32(B[0][h][m], ic[u], B[1][h][m]), k128));
  }
}

/* A token's row: per block its bytes, dy, -128 * sum, -128 * the sums of its eight words
 * (PREP_HEAD). */
static void q8_0_packed16_prep_avx512(int64_t n, const void *vy, void *vp) {
  const block_q8_0 *y = vy;
  uint8_t *out = vp;
  const __m256i k128 = _mm256_set1_epi8((char)0x80);
  const int64_t nb = n / QK;
  for (int64_t b = 0; b < nb; b++) {
    const __m256i q = _mm256_loadu_si256((const __m256i *)y[b].qs);
    const __m256i w = _mm256_sub_epi32(_mm256_setzero_si256(),
                                       _mm256_dpbusd_epi32(_mm256_setzero_si256(), k128, q));
    prep_head(out + (size_t)b * PREP_HEAD, q, y[b].d,
              _mm_add_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
    _mm256_storeu_si256((__m256i *)(out + prep_parts_at(1, b, nb)), w);
  }
}

static inline __m512 bcast_ps(const uint8_t *p) {
  float f;
  memcpy(&f, p, 4);
  return _mm512_set1_ps(f);
}

/* The 16 accumulators of one set as the decode kernel's reduction adds them (hsum4_ps) */
static inline __m512 tree16(const __m512 *a) {
  __m512 u[4];
  for (int i = 0; i < 4; i++)
    u[i] = _mm512_add_ps(_mm512_add_ps(a[i], a[8 + i]), _mm512_add_ps(a[4 + i], a[12 + i]));
  return _mm512_add_ps(_mm512_add_ps(u[0], u[2]), _mm512_add_ps(u[1], u[3]));
}

/* The line at p into L1 where to_l1 (PASS_TO_L1), else into L2. The hint must be a constant:
 * one instruction per choice, the branch folded where to_l1 is a constant. */
static inline __attribute__((always_inline)) void prefetch_line(const uint8_t *p, const int to_l1) {
  if (to_l1)
    _mm_prefetch((const char *)p, _MM_HINT_T0);
  else
    _mm_prefetch((const char *)p, _MM_HINT_T1);
}

/* gemm_packed_stream's prefetch: the line at p's place in the next group (groups lie one after
 * another, nb blocks each), into L2, a group ahead. 1.1B Q8_0 shape, 2 threads, `nllm bench
 * --parallel 4,16`: 4-sequence generation 72-79 -> 111-122 t/s, 16 sequences 135-162 -> 200-211
 * (eighteenth round). In every call instead of the first pass's only, the 128-token prompt lost
 * 12-15%. always_inline: gcc took a called function that only prefetches for one without
 * effects and dropped the calls (the stream kernels compiled to the plain ones). */
static inline __attribute__((always_inline)) void prefetch_next(const uint8_t *p, int64_t nb,
                                                                const int to_l1) {
  prefetch_line(p + (size_t)nb * Q4_BLOCK, to_l1);
}
/* Q4_0's block b's lines (its pair's scales line with the pair's first block), and two lines two
 * groups ahead, of its pair's first 576 bytes (Q8_0 took this too, each block's vectors' two
 * lines, until the twenty-eighth round: now prefetch_share). A prefetch holds one
 * of the core's few line-fill buffers until its line comes, so on a host with a long way to DRAM
 * the next group's prefetches alone kept about 8 GB/s of a core's 18.7 in flight (the
 * twenty-fifth round's Intel host: 16 Q8_0 tokens on a 5632 x 2048 matrix took 1.18 ms from
 * cache, 1.62 from DRAM); the far lines open the pages of the group after next and start the L2
 * streamer on them, so that more of the group-ahead prefetches find their lines near. 1.1B,
 * 2 threads, 16 sequences: two far lines +2% on one, three -3%, nine -12% (the far prefetches
 * then fill the buffers themselves), three groups ahead -1% (docs/performance.md, twenty-fifth
 * round); for Q8_0's pairs two a block, one, or three a pair, alike (twenty-sixth). Q4_0's
 * streaming calls of up to eight tokens take it; the halves take prefetch_share. to_l1: into L1,
 * and no far lines (PASS_TO_L1). */
static inline __attribute__((always_inline)) void prefetch_next_block(const uint8_t *pk, int64_t b,
                                                                      int64_t nb, const int to_l1) {
  if (block_position(0, b, nb) % 2 == 0) { /* the pair's first block */
    const uint8_t *far = block_vectors(0, pk, b, nb) + 2 * (size_t)nb * Q4_BLOCK;
    if (!to_l1) {
      _mm_prefetch((const char *)far, _MM_HINT_T2);
      _mm_prefetch((const char *)far + 256, _MM_HINT_T2);
    }
    prefetch_next(block_scales(0, pk, b, nb), nb, to_l1);
  }
  for (int e = 0; e < 4; e++) prefetch_next(block_vectors(0, pk, b, nb) + 64 * e, nb, to_l1);
}

/* A streaming call's share of the next group's lines, in memory order, into L2, at its visit v
 * of nb (parts 1) or of the 2 nb of a call in two halves (parts 2), and one line two groups
 * ahead (every other visit for Q4_0 in halves, whose blocks are half as long), so that the
 * lines are asked for at an even rate whatever order the blocks are visited in. By line index,
 * each line once (nllm_prefetch_span_l2 on each visit's byte range would ask for every boundary
 * line twice and add its last-byte prefetch: one or two more of ~4 a visit). to_l1: into L1, and
 * no line two groups ahead (PASS_TO_L1). */
static inline __attribute__((always_inline)) void prefetch_share(const int q8, const uint8_t *pk,
                                                                 int64_t nb, int64_t v, int parts,
                                                                 const int to_l1) {
  const size_t bb = block_bytes(q8), u = 64 * (size_t)parts;
  const uint8_t *next = pk + (size_t)nb * bb;
  if (!to_l1 && (q8 || parts == 1 || v % 2 == 0))
    _mm_prefetch((const char *)next + (size_t)nb * bb + (size_t)v * bb / (size_t)parts,
                 _MM_HINT_T2);
  for (size_t l = (size_t)v * bb / u; l < (size_t)(v + 1) * bb / u; l++)
    prefetch_line(next + 64 * l, to_l1);
}

/* gemm_packed16's passes (pf): plain (weights in cache); streaming in one pass with the next
 * group's same blocks (Q4_0, whose blocks lie in the order visited) or its lines in memory order
 * (Q8_0, whose blocks lie in block order); the first and second half of a streaming call in two
 * (STREAM16) */
enum { PASS_PLAIN, PASS_SAME_BLOCKS, PASS_LINES, PASS_HALF_1, PASS_HALF_2, PASS_KINDS = 7 };
/* Or'ed into a streaming pass: the next group's lines into L1 instead of L2, and none two groups
 * ahead (nllm_kernels_packed16_l1_avx512) */
#define PASS_TO_L1 8

/* The pass's prefetch at block b, its v-th block visit in the pass */
static inline __attribute__((always_inline)) void stream_prefetch(const int q8, const int pf,
                                                                  const uint8_t *pk, int64_t b,
                                                                  int64_t v, int64_t nb) {
  const int to_l1 = (pf & PASS_TO_L1) != 0, kind = pf & PASS_KINDS;
  if (kind == PASS_SAME_BLOCKS) prefetch_next_block(pk, b, nb, to_l1); /* Q4_0 only */
  if (kind == PASS_LINES) prefetch_share(q8, pk, nb, v, 1, to_l1);
  if (kind == PASS_HALF_1 || kind == PASS_HALF_2)
    prefetch_share(q8, pk, nb, (kind - PASS_HALF_1) * nb + v, 2, to_l1);
}

/* Tokens whose dpbusd chains block_products runs side by side */
#define CHAINS 8
/* Block b's products with T tokens (prepared rows ps apart, heads pb bytes), added to f[t].
 * A token's eight dpbusd are one chain of dependent steps (five cycles each); written token
 * after token, each chain waited behind the one before it in the scheduler. Here eight tokens'
 * chains go step by step side by side (the same integer sums, the same float steps): one thread,
 * 16 tokens on a 512 x 2048 Q8_0 matrix in cache (bench_packed), 0.117-0.120 -> 0.093-0.104 ms
 * in 8-token passes, 0.134 -> 0.110-0.123 streaming; Q4_0 0.110-0.117 -> 0.089-0.101
 * (twenty-seventh round). */
static inline __attribute__((always_inline)) void block_products(const int q8, const int T,
                                                                 const uint8_t *pk, int64_t b,
                                                                 int64_t nb, const uint8_t *p0,
                                                                 size_t ps, size_t pb, __m512 *f) {
  const __m512 dx = load_dx(q8, pk, b, nb);
  __m512i w[8];
#pragma GCC unroll 8
  for (int e = 0; e < 8; e++) w[e] = load_w(q8, pk, b, nb, e);
#pragma GCC unroll 2
  for (int t0 = 0; t0 < T; t0 += CHAINS) {
    const uint8_t *yb[CHAINS];
    __m512i p[CHAINS];
    /* fixed trip counts with the tokens past T skipped (T is a constant in each instance):
     * loops to T - t0 were not all unrolled, and p went through memory */
#pragma GCC unroll 8
    for (int i = 0; i < CHAINS; i++)
      if (t0 + i < T) {
        yb[i] = p0 + (size_t)(t0 + i) * ps + (size_t)b * pb;
        p[i] = packed16_bcast(yb[i] + 36);
      }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
#pragma GCC unroll 8
      for (int i = 0; i < CHAINS; i++)
        if (t0 + i < T) p[i] = packed16_dpbusd(p[i], w[j], yb[i] + 4 * j);
#pragma GCC unroll 8
      for (int i = 0; i < CHAINS; i++)
        if (t0 + i < T) p[i] = packed16_dpbusd(p[i], w[4 + j], yb[i] + 16 + 4 * j);
    }
#pragma GCC unroll 8
    for (int i = 0; i < CHAINS; i++)
      if (t0 + i < T)
        f[t0 + i] = _mm512_fmadd_ps(_mm512_mul_ps(dx, bcast_ps(yb[i] + 32)),
                                    _mm512_cvtepi32_ps(p[i]), f[t0 + i]);
  }
}

/* Up to NLLM_PACKED_TOK_MAX tokens a call (NLLM_STREAM_TOK_MAX streaming): the reductions
 * below and the accumulators' trips through memory cost about as much as a 768-value row's
 * products of four tokens. pf: the pass (PASS_PLAIN...). */
static inline __attribute__((always_inline)) void gemm_packed16(const int q8, const int pf,
                                                                const int T, int64_t n, float *s,
                                                                size_t ss, const uint8_t *pk,
                                                                const uint8_t *p0, size_t ps) {
  const int64_t nb = n / QK, nc = nb / CHUNK;
  const size_t pb = PREP_HEAD;
  __m512 acc[NLLM_STREAM_TOK_MAX][16], acc4[NLLM_STREAM_TOK_MAX][16];
  /* the chunks: lane position L holds block 4 (L % 4) + L / 4 of each chunk, its blocks added
   * in chunk order. (Q8_0's streaming calls took its blocks in block order, as they lie, with
   * the sixteen lane positions' sums in memory, until the twenty-eighth round: in lane order
   * with the next group's lines in memory order, 1.1B Q8_0 at 4 sequences 1.049x, 8 1.024x;
   * more than eight tokens go in halves, STREAM16.) */
  for (int L = 0; L < 16; L++) {
    const int64_t blk = 4 * (L % 4) + L / 4;
    __m512 f[NLLM_STREAM_TOK_MAX];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) f[t] = _mm512_setzero_ps();
    for (int64_t c = 0; c < nc; c++) {
      const int64_t b = CHUNK * c + blk;
      stream_prefetch(q8, pf, pk, b, L * nc + c, nb);
      block_products(q8, T, pk, b, nb, p0, ps, pb, f);
    }
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) acc[t][L] = f[t];
  }
  /* the four-block groups: Q4_0's lane position 4k + j holds part j of block k of each group */
  const int groups = nb > nc * CHUNK;
  if (groups && q8)
    for (int L = 0; L < 16; L++) {
      const int h = L / 8, e = L % 8;
      __m512 f[NLLM_STREAM_TOK_MAX];
#pragma GCC unroll 16
      for (int t = 0; t < T; t++) f[t] = _mm512_setzero_ps();
      for (int64_t g = nc * CHUNK; g < nb; g += 4)
        for (int u = 0; u < 2; u++) { /* block h of the group, then block 2 + h */
          const int64_t b = g + 2 * u + h;
          if (e == 0) stream_prefetch(1, pf, pk, b, b, nb); /* on the block's first visit */
          const __m512 dx = load_dx(1, pk, b, nb);
          const __m512i w = load_w(1, pk, b, nb, e);
#pragma GCC unroll 16
          for (int t = 0; t < T; t++) {
            const uint8_t *yt = p0 + (size_t)t * ps, *yb = yt + (size_t)b * pb;
            const __m512i p = packed16_dpbusd(packed16_bcast(yt + prep_parts_at(1, b, nb) + 4 * e),
                                              w, yb + 4 * e);
            f[t] =
                _mm512_fmadd_ps(_mm512_mul_ps(dx, bcast_ps(yb + 32)), _mm512_cvtepi32_ps(p), f[t]);
          }
        }
#pragma GCC unroll 16
      for (int t = 0; t < T; t++) acc4[t][L] = f[t];
    }
  else if (groups)
    for (int L = 0; L < 16; L++) {
      const int k = L / 4, j = L % 4;
      __m512 f[NLLM_STREAM_TOK_MAX];
#pragma GCC unroll 16
      for (int t = 0; t < T; t++) f[t] = _mm512_setzero_ps();
      for (int64_t b = nc * CHUNK + k; b < nb; b += 4) {
        if (j == 0) stream_prefetch(0, pf, pk, b, b, nb); /* on the block's first visit */
        const __m512 dx = load_dx(0, pk, b, nb);
        const __m512i wl = load_w(0, pk, b, nb, j), wh = load_w(0, pk, b, nb, 4 + j);
#pragma GCC unroll 16
        for (int t = 0; t < T; t++) {
          const uint8_t *yt = p0 + (size_t)t * ps, *yb = yt + (size_t)b * pb;
          const __m512i p = packed16_dpbusd(
              packed16_dpbusd(packed16_bcast(yt + prep_parts_at(0, b, nb) + 4 * j), wl, yb + 4 * j),
              wh, yb + 16 + 4 * j);
          f[t] = _mm512_fmadd_ps(_mm512_mul_ps(dx, bcast_ps(yb + 32)), _mm512_cvtepi32_ps(p), f[t]);
        }
      }
#pragma GCC unroll 16
      for (int t = 0; t < T; t++) acc4[t][L] = f[t];
    }
#pragma GCC unroll 16
  for (int t = 0; t < T; t++) {
    __m512 h = tree16(acc[t]);
    if (groups) h = _mm512_add_ps(h, tree16(acc4[t]));
    _mm512_storeu_ps(s + (size_t)t * ss, h);
  }
}

#define Q4_0_PACKED16(T, ...) gemm_packed16(0, PASS_PLAIN, T, __VA_ARGS__)
#define Q8_0_PACKED16(T, ...) gemm_packed16(1, PASS_PLAIN, T, __VA_ARGS__)
/* A streaming call of more than eight tokens (a decode step of 9-16 sequences, a prompt's first
 * pass) as two calls over each group, eight tokens and the rest, each in lane order with its
 * sums in registers; the first meets the group from memory, the second in L1 or L2, and each
 * prefetches half of the next group's lines (prefetch_share), so that the lines are asked for
 * at an even rate. In one pass of sixteen tokens the sums do not fit beside the weights and
 * chains (Q4_0 spilled; Q8_0 kept sixteen lane positions' sums in memory). One thread
 * (bench_packed Q8_0 16): 5632 x 2048 from DRAM 1.32-1.39 -> 1.20-1.26 ms, 512 x 2048 in cache
 * 0.109-0.134 -> 0.095-0.100; Q4_0 (both shapes) 0.99-1.09 -> 0.97-1.03. 1.1B, 2 threads, 16
 * sequences (three alternated rounds): Q8_0 1.109x (prompt column +6-11%), Q4_0 1.027x. The same
 * halves with the next group's lines fetched in the first half only ran behind the one pass from
 * DRAM (5632 x 2048 1.50-1.55 ms against 1.39-1.47); so did lane order in one pass with the sums
 * through memory every one, two or four chunks (twenty-eighth round). -D for the A/B (bit 0
 * Q4_0, bit 1 Q8_0). */
#ifndef STREAM_HALVES
#define STREAM_HALVES 3
#endif
#define STREAM16(q8, l1, T, n, s, ss, pk, p, ps)                                            \
  do {                                                                                      \
    if ((STREAM_HALVES >> q8 & 1) && T > 8) {                                               \
      gemm_packed16(q8, PASS_HALF_1 | l1, 8, n, s, ss, pk, p, ps);                          \
      gemm_packed16(q8, PASS_HALF_2 | l1, T > 8 ? T - 8 : 1, n, s + 8 * ss, ss, pk,         \
                    (const uint8_t *)p + 8 * ps, ps);                                       \
    } else                                                                                  \
      gemm_packed16(q8, (q8 ? PASS_LINES : PASS_SAME_BLOCKS) | l1, T, n, s, ss, pk, p, ps); \
  } while (0)
#define Q4_0_STREAM16(...) STREAM16(0, 0, __VA_ARGS__)
#define Q8_0_STREAM16(...) STREAM16(1, 0, __VA_ARGS__)
#define Q8_0_STREAM16_L1(...) STREAM16(1, PASS_TO_L1, __VA_ARGS__)
NLLM_PACKED_BY_TOKENS(q4_0_gemm_packed16_avx512, Q4_0_PACKED16)
NLLM_PACKED_BY_TOKENS(q8_0_gemm_packed16_avx512, Q8_0_PACKED16)
/* stream_tok 16: a sixteen-sequence decode step in one call, each group visited by its two
 * halves before the next (nllm_qtype's stream_tok) */
NLLM_STREAM_BY_TOKENS(q4_0_gemm_packed16_stream_avx512, Q4_0_STREAM16)
NLLM_STREAM_BY_TOKENS(q8_0_gemm_packed16_stream_avx512, Q8_0_STREAM16)
/* The same with the next group's lines asked for into L1 (nllm_kernels_packed16_l1_avx512) */
NLLM_STREAM_BY_TOKENS(q8_0_gemm_packed16_stream_l1_avx512, Q8_0_STREAM16_L1)
/* Q4_0's one token (a one-sequence decode step) with the same prefetch */
static void q4_0_gemv_packed16_l1_avx512(int64_t n, float *s, size_t ss, const void *pk,
                                         const void *p, size_t ps, int n_tok) {
  (void)n_tok;
  gemm_packed16(0, PASS_SAME_BLOCKS | PASS_TO_L1, 1, n, s, ss, pk, p, ps);
}

/* The one-token kernel's prefetch distance in its one linear stream (the groups lie one after
 * another, each in block order): 1.1B Q8_0, 2 threads, one sequence, three rounds against no
 * software prefetch (the hardware's alone read 26 of the probe's 35 GB/s): 512 bytes 1.156x,
 * 1024 1.153x, 1536 1.162x, 2048 1.027x; 1024 to L2 only 1.135x (twenty-seventh round). */
#define GEMV_PF_DIST 1024

/* One token of Q8_0 on packed rows (weights kept packed from load), equal bit for bit to the
 * tier's decode kernel on the plain rows (q8_0_vec_dot4_avx2), so that a packed load decodes as
 * a plain one (--no-repack) does. That kernel takes blocks in pairs and keeps, per row, eight
 * float lanes: lanes 0, 1, 4, 5 the elements 0-7, 8-15, 16-23, 24-31 of the first block, lanes
 * 2, 3, 6, 7 those of the second, each lane += (dx dy) x its exact integer sum; then hsum8's
 * tree. Here each lane is a vector of the 16 rows, the integer sums come from dpbusd on the
 * unsigned levels with the prepared offsets (exact: any grouping gives the same integer).
 * (gemm_packed16 at one token runs one chain of eight dependent dpbusd per block: 20-35% slower
 * than the row kernels on weights in cache.) */
static void q8_0_gemv_packed16_avx512(int64_t n, float *s, size_t ss, const void *vpk,
                                      const void *vp, size_t ps, int n_tok) {
  (void)ss, (void)ps, (void)n_tok;
  const uint8_t *pk = vpk, *yp = vp;
  const int64_t nb = n / QK; /* even: n is a multiple of NLLM_GEMM_COLS */
  const size_t pb = PREP_HEAD;
  __m512 a[8];
  for (int l = 0; l < 8; l++) a[l] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b += 2) {
    nllm_prefetch_span(block_scales(1, pk, b, nb) + GEMV_PF_DIST, 2 * Q8_BLOCK);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) { /* the pair's first block, then its second */
      const uint8_t *xb = block_vectors(1, pk, b + h, nb), *yb = yp + (size_t)(b + h) * pb,
                    *yw = yp + prep_parts_at(1, b + h, nb);
      const __m512 d = _mm512_mul_ps(load_dx(1, pk, b + h, nb), bcast_ps(yb + 32));
#pragma GCC unroll 4
      for (int k = 0; k < 4; k++) { /* elements 8k..8k+7 */
        const __m512i off =
            _mm512_add_epi32(packed16_bcast(yw + 8 * k), packed16_bcast(yw + 4 + 8 * k));
        const __m512i i8 =
            packed16_dpbusd(packed16_dpbusd(off, _mm512_loadu_si512(xb + 128 * k), yb + 8 * k),
                            _mm512_loadu_si512(xb + 64 + 128 * k), yb + 8 * k + 4);
        const int l = (k % 2) + 2 * h + 4 * (k / 2);
        a[l] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(i8), a[l]);
      }
    }
  }
  const __m512 r =
      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[4]), _mm512_add_ps(a[2], a[6])),
                    _mm512_add_ps(_mm512_add_ps(a[1], a[5]), _mm512_add_ps(a[3], a[7])));
  _mm512_storeu_ps(s, r);
}

/* Q4_0's row, with its one-token and streaming kernels (one token takes the streaming kernel's
 * code: its sums are the decode kernel's already, and decode reads the weights from memory) */
#define Q4_0_ROW(gemv, stream)                                                          \
  {                                                                                     \
    .type = NLLM_TYPE_Q4_0, .pack_rows = q4_0_pack16_avx512,                            \
    .packed_prep = q4_0_packed16_prep_avx512, .gemm_packed = q4_0_gemm_packed16_avx512, \
    .packed_min_tokens = Q4_PACKED_MIN_TOKENS, .pack_group_rows = GROUP_ROWS,           \
    .packed_tok = NLLM_PACKED_TOK_MAX, .gemv_packed = gemv, .prepack = Q4_PREPACK,      \
    .packed_block_bytes = Q4_BLOCK, .gemm_packed_stream = stream,                       \
    .stream_tok = NLLM_STREAM_TOK_MAX                                                   \
  }
/* Q8_0's row, with its streaming kernel */
#define Q8_0_ROW(stream)                                                                 \
  {                                                                                      \
    .type = NLLM_TYPE_Q8_0, .pack_rows = q8_0_pack16_avx512,                             \
    .packed_prep = q8_0_packed16_prep_avx512, .gemm_packed = q8_0_gemm_packed16_avx512,  \
    .packed_min_tokens = Q8_PACKED_MIN_TOKENS, .pack_group_rows = GROUP_ROWS,            \
    .packed_tok = NLLM_PACKED_TOK_MAX, .gemv_packed = q8_0_gemv_packed16_avx512,         \
    .prepack = Q8_PREPACK, .packed_block_bytes = Q8_BLOCK, .gemm_packed_stream = stream, \
    .stream_tok = NLLM_STREAM_TOK_MAX                                                    \
  }
/* Laid over the AVX-512 tier's Q4_0 and Q8_0 rows (quant_avx512.c), whose tiles serve the
 * batches below the crossovers. */
static const nllm_qtype_kernels packed16_rows[] = {
    Q4_0_ROW(q4_0_gemm_packed16_stream_avx512, q4_0_gemm_packed16_stream_avx512),
    Q8_0_ROW(q8_0_gemm_packed16_stream_avx512),
};
const nllm_kernel_set nllm_kernels_packed16_avx512 = {
    packed16_rows, sizeof packed16_rows / sizeof packed16_rows[0]};

/* Laid over the rows above on CPUs where the streaming calls run ahead with the next group's
 * lines asked for into L1 and none two groups ahead (PASS_TO_L1; kernels/qtypes.c,
 * amd_rows: AMD). AMD Zen 5 (EPYC, 2 cores, 40 GB/s read a core), 1.1B, 2 threads,
 * `--parallel 1,4,16 -p 128 -n 32`, alternated rounds against these rows: Q8_0 16 sequences
 * 1.177x (four rounds, 1.154-1.197) and 1.194x (three), 4 sequences 1.131x, the prompt column
 * level; without the far line alone (into L2) 16 sequences 1.165x but 4 sequences 0.984x, into
 * L1 with the far line 0.996x. Q4_0's one token 1.077x and 1.078x (five rounds each, every one
 * ahead); its halves so ran behind (16 sequences 0.915x, pp16 0.866x) and stay. On the Intel
 * host of the twenty-fifth round prefetcht0 ran behind prefetcht1 (1.73 against 1.62 ms for 16
 * Q8_0 tokens), and the far lines ran ahead there. */
static const nllm_qtype_kernels packed16_l1_rows[] = {
    Q4_0_ROW(q4_0_gemv_packed16_l1_avx512, q4_0_gemm_packed16_stream_avx512),
    Q8_0_ROW(q8_0_gemm_packed16_stream_l1_avx512),
};
const nllm_kernel_set nllm_kernels_packed16_l1_avx512 = {
    packed16_l1_rows, sizeof packed16_l1_rows / sizeof packed16_l1_rows[0]};
