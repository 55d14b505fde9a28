/* AVX-512 kernel of IQ4_XS groups of sixteen rows kept packed from load, for prompts, batched
 * decode and one token alike.
 *
 * Why: the tier's IQ4_XS prompts ran four-row tiles (one row's 16 float lanes per token), the
 * slowest 4-bit prompt on this tier after the K-quants moved to sixteen-row kernels (1.1B, one
 * thread, pp128 110-117 t/s against Q4_K_M's 176-202). Here one dpbusd with a broadcast of four
 * activation bytes is 64 products of sixteen rows, and the sub-block scale is an int32 multiply
 * (docs/performance.md, "Twentieth round": 1.1B prompts 1.7-2x, decode 1.15-1.2x).
 *
 * The sums are the reference's (iq4_xs_vec_dot_ref): each row's exact integer sum per
 * super-block, then (d * dy) * isum added in super-block order, as the tier's four-row decode
 * kernel adds, so prompts and decode agree bit for bit. The levels go through the IQ4_NL table
 * + 128 (unsigned for dpbusd); 128 * (scale * sum of the sub-block's activations) comes off
 * through the prepared block sums of 32 (the K-quants' preparation, quant_k_packed.h). */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "cpu/packed16_avx512.h"
#include "cpu/quant.h"
#include "cpu/quant_k_packed.h"

#define GROUP_ROWS 16

/* A packed super-block of sixteen rows: their d as halves; per pair j of sub-blocks row r's two
 * scales (less 32, int8) at 32 j + 2 r, 2 r + 1 (an int16 pair per lane once widened); then per
 * sub-block k four vectors, vector v holding row r's qs bytes 16 k + 4 v .. + 3 in lane r (the
 * low nibbles are the sub-block's values 4v..4v+3, the high ones 16 + 4v..). */
#define IQ16_D 0
#define IQ16_SC 32
#define IQ16_Q 160
#define IQ16_BLOCK (IQ16_Q + 8 * 256)
_Static_assert(IQ16_BLOCK <= NLLM_PACK_BYTES(QK_K) / NLLM_PACK_ROWS * GROUP_ROWS,
               "a packed super-block fits the repacking buffer");
/* Super-blocks ahead whose rows the packer prefetches */
#define IQ16_AHEAD 2

static void iq4_xs_pack16(int64_t n, const void *vx, size_t bx, void *vp) {
  const uint8_t *x0 = vx;
  uint8_t *out = vp;
  const size_t xs = sizeof(block_iq4_xs);
  for (int64_t b = 0; b < n / QK_K; b++, out += IQ16_BLOCK) {
    for (int r = 0; r < GROUP_ROWS; r++) {
      const uint8_t *ahead = x0 + (size_t)r * bx + (size_t)(b + IQ16_AHEAD) * xs;
      __builtin_prefetch(ahead, 0, 3);
      __builtin_prefetch(ahead + xs - 1, 0, 3);
      block_iq4_xs x;
      memcpy(&x, x0 + (size_t)r * bx + (size_t)b * xs, sizeof x);
      memcpy(out + IQ16_D + 2 * r, &x.d, 2);
      for (int k = 0; k < 8; k++) {
        const int lo = (x.scales_l[k / 2] >> (4 * (k % 2))) & 15, hi = (x.scales_h >> (2 * k)) & 3;
        out[IQ16_SC + 32 * (k / 2) + 2 * r + k % 2] = (uint8_t)(int8_t)((lo | hi << 4) - 32);
        for (int v = 0; v < 4; v++)
          memcpy(out + IQ16_Q + 256 * k + 64 * v + 4 * r, x.qs + 16 * k + 4 * v, 4);
      }
    }
  }
}

/* From this many tokens the next group's super-block is asked for an eighth at each sub-block
 * step, into L2, as the K-quants' streaming calls do (a burst fills the line-fill buffers);
 * below it the visit is short and one burst at its start is faster. bench_packed IQ4_XS from
 * DRAM, one thread: 8 tokens 1.55-1.61 -> 1.40-1.45 ms, 16 tokens 2.10-2.23 -> 1.96-1.99; spread
 * from 4 tokens too, 4 tokens 1.20-1.25 -> 1.18-1.41. 1.1B IQ4_XS, 2 threads, --parallel 16:
 * 1.13x (three alternated rounds), one sequence level. */
#ifndef IQ_SPREAD_MIN
#define IQ_SPREAD_MIN 8
#endif
/* The passes over a group that take the streaming kernel (stream_passes; -D for the A/B) */
#ifndef ISTREAM_PASSES
#define ISTREAM_PASSES 2
#endif

/* T tokens (prepared rows ps apart) over a group: per sub-block the levels looked up once for
 * every token, then per super-block the reference's float step per token. */
static inline __attribute__((always_inline)) void gemm_packed16(const int pf, const int T,
                                                                int64_t n, float *s, size_t ss,
                                                                const uint8_t *pk,
                                                                const uint8_t *p0, size_t ps) {
  /* the table's levels + 128 (v ^ 0x80 for an int8 v) */
  const __m512i lut = _mm512_xor_si512(
                    _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)nllm_iq4nl_values)),
                    _mm512_set1_epi8((char)0x80)),
                m4 = _mm512_set1_epi8(15);
  __m512 acc[NLLM_STREAM_TOK_MAX];
#pragma GCC unroll 16
  for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
  const size_t group = (size_t)(n / QK_K) * IQ16_BLOCK;
  for (int64_t b = 0; b < n / QK_K; b++) {
    const uint8_t *xb = pk + (size_t)b * IQ16_BLOCK, *yb = p0 + (size_t)b * KPREP_BLOCK;
    /* the next group's same super-block: groups kept packed from load come from memory, in an
     * order of sixteen rows the hardware prefetcher does not follow */
    if (pf) nllm_prefetch_next_step(xb + group, IQ16_BLOCK, -1, T >= IQ_SPREAD_MIN, 1);
    __m512i sp[4]; /* lane r: row r's scales 2j, 2j + 1 as int16 */
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
      sp[j] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(xb + IQ16_SC + 32 * j)));
    __m512i sum[NLLM_STREAM_TOK_MAX];
#pragma GCC unroll 16
    for (int t = 0; t < T; t++) sum[t] = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int k = 0; k < 8; k++) {
      if (pf) nllm_prefetch_next_step(xb + group, IQ16_BLOCK, k, T >= IQ_SPREAD_MIN, 1);
      const __m512i sc = k % 2 ? _mm512_srai_epi32(sp[k / 2], 16)
                               : _mm512_srai_epi32(_mm512_slli_epi32(sp[k / 2], 16), 16);
      __m512i lvl[8]; /* 0..3: values 4v..4v+3 of each row, 4..7: 16 + 4v.. */
#pragma GCC unroll 4
      for (int v = 0; v < 4; v++) {
        const __m512i q = _mm512_loadu_si512(xb + IQ16_Q + 256 * (size_t)k + 64 * (size_t)v);
        lvl[v] = _mm512_shuffle_epi8(lut, _mm512_and_si512(q, m4));
        lvl[4 + v] = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
      }
#pragma GCC unroll 16
      for (int t = 0; t < T; t++) {
        const uint8_t *y = yb + (size_t)t * ps + 32 * (size_t)k;
        __m512i s32 = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
          s32 = packed16_dpbusd(s32, lvl[v], y + 4 * v);
          s32 = packed16_dpbusd(s32, lvl[4 + v], y + 16 + 4 * v);
        }
        sum[t] = _mm512_add_epi32(sum[t], _mm512_mullo_epi32(s32, sc));
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(xb + IQ16_D)));
    /* the levels' +128: 128 * sum over the sub-blocks of scale * the activations' sum */
#pragma GCC unroll 16
    for (int t = 0; t < T; t++)
      acc[t] = packed16_offset_step(acc[t], sum[t], d, sp, 4, yb + (size_t)t * ps, KPREP_BS32, 7);
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; t++) _mm512_storeu_ps(s + (size_t)t * ss, acc[t]);
}

/* As the K-quants: the first two passes over a group (a decode step's one, of up to sixteen
 * tokens; a prompt's first two) prefetch the next group, later passes find theirs in cache.
 * Before, every pass prefetched and took at most eight tokens, so a sixteen-sequence step went
 * over each group twice, the second time with no fetch to hide. 1.1B IQ4_XS, 2 threads, three
 * alternated rounds: 16 sequences 1.134x (the prompt column 0.99-1.10x), 4 and 1 level; one
 * streaming pass instead of two, alike. */
#define IQ4_XS_PACKED16(T, ...) gemm_packed16(0, T, __VA_ARGS__)
#define IQ4_XS_STREAM16(T, ...) gemm_packed16(1, T, __VA_ARGS__)
NLLM_PACKED_BY_TOKENS(iq4_xs_gemm_packed16_avx512, IQ4_XS_PACKED16)
NLLM_STREAM_BY_TOKENS(iq4_xs_gemm_packed16_stream_avx512, IQ4_XS_STREAM16)

/* Kept packed from load: every batch, decode's one token too, runs this kernel on the groups (the
 * rows past the last group take the four-row kernel: the same sums). Repacked per work item
 * (--no-repack) from the K-quants' crossover on. stok and passes: the streaming passes' width
 * and count (stream_tok, stream_passes). */
#define IQ16_ROW(stok, passes)                                                                    \
  {                                                                                               \
    .type = NLLM_TYPE_IQ4_XS, .pack_rows = iq4_xs_pack16, .packed_prep = nllm_k_packed_prep_avx2, \
    .gemm_packed = iq4_xs_gemm_packed16_avx512, .packed_min_tokens = K_PACKED_MIN_TOKENS,         \
    .pack_group_rows = GROUP_ROWS, .packed_tok = NLLM_PACKED_TOK_MAX, .prepack = 1,               \
    .packed_block_bytes = IQ16_BLOCK, .gemm_packed_stream = iq4_xs_gemm_packed16_stream_avx512,   \
    .stream_passes = passes, .stream_tok = stok                                                   \
  }
static const nllm_qtype_kernels iq4_xs_packed16_rows[] = {
    IQ16_ROW(NLLM_STREAM_TOK_MAX, ISTREAM_PASSES)};
const nllm_kernel_set nllm_kernels_iq4_xs_packed16_avx512 = {
    iq4_xs_packed16_rows, sizeof iq4_xs_packed16_rows / sizeof iq4_xs_packed16_rows[0]};

/* Laid over the row above on AMD (kernels/qtypes.c, amd_rows), as the K-quants' AMD rows
 * (quant_k_packed16_avx512.c): streaming passes of eight tokens, the first alone streaming, so
 * that a 16-sequence step runs one streaming call on eight tokens and one in-cache call on the
 * other eight. On Zen 5 the call of sixteen tokens costs more a token than two of eight
 * (bench_packed one thread, sixteen tokens on 512 x 2048 in cache: 0.085 against 0.074 ms).
 * 1.1B IQ4_XS, 2 threads, `--parallel 16 -p 128 -n 32` against the row above: 16 sequences
 * 1.115x and 1.117x (six and eight alternated rounds, every one ahead), their prompt 1.08x; both
 * passes of eight streaming alike (1.118x); `--parallel 1,4,16`, the same binary against
 * NLLM_PREFETCH=l2: 16 sequences 1.093x (six rounds, every one ahead), the prompt columns
 * 1.07-1.09x, 1 and 4 sequences level (thirty-sixth round). */
#ifndef IQ_AMD_STREAM_TOK /* -D for the A/B */
#define IQ_AMD_STREAM_TOK NLLM_PACKED_TOK_MAX
#define IQ_AMD_STREAM_PASSES 1
#endif
static const nllm_qtype_kernels iq4_xs_packed16_amd_rows[] = {
    IQ16_ROW(IQ_AMD_STREAM_TOK, IQ_AMD_STREAM_PASSES)};
const nllm_kernel_set nllm_kernels_iq4_xs_packed16_amd_avx512 = {
    iq4_xs_packed16_amd_rows, sizeof iq4_xs_packed16_amd_rows / sizeof iq4_xs_packed16_amd_rows[0]};
