/* What the AVX-512 sixteen-row kernels (quant_packed16_avx512.c, quant_k_packed16_avx512.c,
 * quant_iq4_xs_packed16_avx512.c) share: a zmm's lanes are the group's sixteen rows, and an
 * activation value reaches all of them by broadcast. Include only from AVX-512 files. */
#ifndef NLLM_PACKED16_AVX512_H
#define NLLM_PACKED16_AVX512_H

#include <immintrin.h>
#include <string.h>

#include "cpu/quant.h"
#include "cpu/quant_k_packed.h"

/* Four activation bytes at p into every int32 lane */
static inline __m512i packed16_bcast(const uint8_t *p) {
  return _mm512_set1_epi32((int)load_u32(p));
}

/* Four bytes that the asm below reads in place, whatever type stored them and wherever */
typedef int32_t packed16_word __attribute__((may_alias, aligned(1)));

/* acc + the products of w's unsigned bytes with the four signed activation bytes at p in every
 * lane: dpbusd with its broadcast from memory. gcc and clang load such a broadcast apart
 * (vpbroadcastd, then dpbusd: two uops on the load and vector ports where one does). One
 * thread, 16 tokens on 512 x 2048 in cache (bench_packed): Q8_0's 8-token passes 0.108-0.111 ->
 * 0.095-0.102 ms; 1.1B Q8_0, 2 threads: 16 sequences 1.026x, prompt +2-7%, Q4_0 1.04x; Q4_K and
 * IQ4_XS from DRAM 5-10% ahead, Q6_K level (twenty-eighth round). */
static inline __attribute__((always_inline)) __m512i packed16_dpbusd(__m512i acc, __m512i w,
                                                                     const uint8_t *p) {
  __asm__("vpdpbusd %[y]%{1to16%}, %[w], %[a]"
          : [a] "+v"(acc)
          : [w] "v"(w), [y] "m"(*(const packed16_word *)p));
  return acc;
}

/* The reference's float step of a super-block whose unsigned levels carry an offset (Q6_K's
 * +32, IQ4_XS's +128): off = sum over j < n_pairs of scale pair j (int16 pairs per lane) times
 * the prepared block sums bs + 4 j, then acc + (d * dy) * (sum - (off << shift)), dy the
 * prepared super-block yt's. */
static inline __attribute__((always_inline)) __m512 packed16_offset_step(
    __m512 acc, __m512i sum, __m512 d, const __m512i *pairs, int n_pairs, const uint8_t *yt,
    size_t bs, unsigned shift) {
  __m512i off = _mm512_setzero_si512();
#pragma GCC unroll 8
  for (int j = 0; j < n_pairs; j++)
    off =
        _mm512_add_epi32(off, _mm512_madd_epi16(pairs[j], packed16_bcast(yt + bs + 4 * (size_t)j)));
  const __m512i isum = _mm512_sub_epi32(sum, _mm512_slli_epi32(off, shift));
  float dy;
  memcpy(&dy, yt + KPREP_D, sizeof dy);
  return _mm512_add_ps(
      acc, _mm512_mul_ps(_mm512_mul_ps(d, _mm512_set1_ps(dy)), _mm512_cvtepi32_ps(isum)));
}

#endif
