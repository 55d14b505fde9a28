/* The block layouts of GGUF's codebook ("IQ") formats, read in one place for every kernel tier.
 * All seven share one shape: a block of 256 values with an F16 scale d, read in chunks of 32
 * values = 4 groups of 8; a group is a point of a grid (8 bytes), and either 8 sign bits
 * (IQ2/IQ3: the grid bytes are magnitudes) or the sign of a +-1/8 shift (IQ1: the grid bytes
 * are ternary int8 -1, 0, 1); each group has an odd integer scale 2s + 1. Value j of group g is
 *   d * odd[g] * group_mul * (IQ2/IQ3: +-grid byte j;  IQ1: (8 * grid byte j +- 1) / 8).
 * Internal to the kernels. */
#ifndef NLLM_IQ_LAYOUT_H
#define NLLM_IQ_LAYOUT_H

#include "cpu/lowbit_grids.h"
#include "cpu/quant.h"

/* Byte l of signs and odd belongs to group l: packed in one word each so that a SIMD tier takes
 * them from a register (byte stores read back as a word stall the store-forwarding path). */
typedef struct {
  uint64_t grid[4];
  uint32_t signs; /* IQ2/IQ3: bit j negates byte j of the group; IQ1: bit 0 = the shift is -1/8 */
  uint32_t odd;   /* 2s + 1 */
} iq_chunk;

/* Unrolled, the four groups' values stay in registers; as a loop the SIMD tiers read the grid
 * points back from memory as one vector, which stalls on the four separate stores. */
#define IQ_UNROLL4 _Pragma("GCC unroll 4")

static inline unsigned iq_byte(uint32_t w, int l) {
  return (w >> (8 * l)) & 255;
}

static inline uint16_t iq_rd16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t iq_rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t iq_pair4(uint32_t a, uint32_t b) {
  return (uint64_t)a | (uint64_t)b << 32;
}

/* IQ2_XXS: per chunk four uint16: the first two hold four 8-bit grid indices, the last two four
 * 7-bit sign indices and the 4-bit scale on top. */
static inline void iq2_xxs_chunk(const uint8_t *blk, int c, iq_chunk *o) {
  const uint8_t *q = blk + 2 + 8 * c;
  uint32_t idx = iq_rd32(q), sgn = iq_rd32(q + 4);
  uint32_t sg = 0, od = 0;
  IQ_UNROLL4
  for (int l = 0; l < 4; l++) {
    o->grid[l] = nllm_iq2xxs_grid[(idx >> (8 * l)) & 255];
    sg |= (uint32_t)(nllm_iq_signs8((sgn >> (7 * l)) & 127)) << (8 * l);
    od |= (uint32_t)(2 * (sgn >> 28) + 1) << (8 * l);
  }
  o->signs = sg;
  o->odd = od;
}

/* IQ2_XS: per group a uint16 of a 9-bit grid index and a 7-bit sign index; a 4-bit scale per
 * 16 values (low nibble first). */
static inline void iq2_xs_chunk(const uint8_t *blk, int c, iq_chunk *o) {
  const uint8_t *q = blk + 2 + 8 * c, sc = blk[2 + QK_K / 4 + c];
  uint32_t sg = 0, od = 0;
  IQ_UNROLL4
  for (int l = 0; l < 4; l++) {
    uint16_t v = iq_rd16(q + 2 * l);
    o->grid[l] = nllm_iq2xs_grid[v & 511];
    sg |= (uint32_t)(nllm_iq_signs8(v >> 9)) << (8 * l);
    od |= (uint32_t)(2 * ((sc >> (4 * (l / 2))) & 15) + 1) << (8 * l);
  }
  o->signs = sg;
  o->odd = od;
}

/* IQ2_S: per group a 10-bit grid index (a qs byte, 2 bits of the chunk's qh byte) and a byte of
 * explicit signs (qs' second half); a 4-bit scale per 16 values. */
static inline void iq2_s_chunk(const uint8_t *blk, int c, iq_chunk *o) {
  const uint8_t *qs = blk + 2 + 4 * c, *signs = blk + 2 + QK_K / 8 + 4 * c;
  unsigned qh = blk[2 + QK_K / 4 + c], sc = blk[2 + QK_K / 4 + QK_K / 32 + c];
  uint32_t sg = 0, od = 0;
  IQ_UNROLL4
  for (int l = 0; l < 4; l++) {
    o->grid[l] = nllm_iq2s_grid[qs[l] | (qh << (8 - 2 * l) & 0x300)];
    sg |= (uint32_t)(signs[l]) << (8 * l);
    od |= (uint32_t)(2 * ((sc >> (4 * (l / 2))) & 15) + 1) << (8 * l);
  }
  o->signs = sg;
  o->odd = od;
}

/* IQ3_XXS: 64 bytes of 8-bit indices into a grid of 4-value points (two per group), then per
 * chunk a uint32 of four 7-bit sign indices and the 4-bit scale on top. */
static inline void iq3_xxs_chunk(const uint8_t *blk, int c, iq_chunk *o) {
  const uint8_t *q = blk + 2 + 8 * c;
  uint32_t aux = iq_rd32(blk + 2 + QK_K / 4 + 4 * c);
  uint32_t sg = 0, od = 0;
  IQ_UNROLL4
  for (int l = 0; l < 4; l++) {
    o->grid[l] = iq_pair4(nllm_iq3xxs_grid[q[2 * l]], nllm_iq3xxs_grid[q[2 * l + 1]]);
    sg |= (uint32_t)(nllm_iq_signs8((aux >> (7 * l)) & 127)) << (8 * l);
    od |= (uint32_t)(2 * (aux >> 28) + 1) << (8 * l);
  }
  o->signs = sg;
  o->odd = od;
}

/* IQ3_S: per 4 values a 9-bit grid index (a qs byte and a bit of the chunk's qh byte), per group
 * a byte of explicit signs, per chunk a 4-bit scale (two to a byte). */
static inline void iq3_s_chunk(const uint8_t *blk, int c, iq_chunk *o) {
  const uint8_t *q = blk + 2 + 8 * c, *signs = blk + 2 + QK_K / 4 + QK_K / 32 + 4 * c;
  unsigned qh = blk[2 + QK_K / 4 + c];
  unsigned s = (blk[2 + QK_K / 4 + QK_K / 32 + QK_K / 8 + c / 2] >> (4 * (c % 2))) & 15;
  uint32_t sg = 0, od = 0;
  IQ_UNROLL4
  for (int l = 0; l < 4; l++) {
    unsigned i0 = q[2 * l] | (qh << (8 - 2 * l) & 256),
             i1 = q[2 * l + 1] | (qh << (7 - 2 * l) & 256);
    o->grid[l] = iq_pair4(nllm_iq3s_grid[i0], nllm_iq3s_grid[i1]);
    sg |= (uint32_t)(signs[l]) << (8 * l);
    od |= (uint32_t)(2 * s + 1) << (8 * l);
  }
  o->signs = sg;
  o->odd = od;
}

/* IQ1_S: per group an 11-bit ternary grid index (a qs byte, 3 bits of the chunk's uint16 qh);
 * qh bits 12..14 are the chunk's scale and bit 15 the sign of its shift. */
static inline void iq1_s_chunk(const uint8_t *blk, int c, iq_chunk *o) {
  const uint8_t *qs = blk + 2 + 4 * c;
  unsigned qh = iq_rd16(blk + 2 + QK_K / 8 + 2 * c);
  uint32_t sg = 0, od = 0;
  IQ_UNROLL4
  for (int l = 0; l < 4; l++) {
    o->grid[l] = nllm_iq1s_grid[qs[l] | ((qh >> (3 * l)) & 7) << 8];
    sg |= (uint32_t)((uint8_t)(qh >> 15)) << (8 * l);
    od |= (uint32_t)(2 * ((qh >> 12) & 7) + 1) << (8 * l);
  }
  o->signs = sg;
  o->odd = od;
}

/* IQ1_M: per group 11 index bits (a qs byte, 3 bits of a qh nibble) and the shift's sign (the
 * nibble's top bit); a 3-bit scale per 16 values in the four uint16 scale words. */
static inline void iq1_m_chunk(const uint8_t *blk, int c, iq_chunk *o) {
  const uint8_t *qs = blk + 4 * c, *qh = blk + QK_K / 8 + 2 * c;
  unsigned sc = iq_rd16(blk + QK_K / 8 + QK_K / 16 + 2 * (c / 2)) >> (6 * (c % 2));
  uint32_t sg = 0, od = 0;
  IQ_UNROLL4
  for (int l = 0; l < 4; l++) {
    unsigned nib = (qh[l / 2] >> (4 * (l % 2))) & 15;
    o->grid[l] = nllm_iq1s_grid[qs[l] | (nib & 7) << 8];
    sg |= (uint32_t)((uint8_t)(nib >> 3)) << (8 * l);
    od |= (uint32_t)(2 * ((sc >> (3 * (l / 2))) & 7) + 1) << (8 * l);
  }
  o->signs = sg;
  o->odd = od;
}

/* The block scale: the leading F16 of all but IQ1_M, whose F16 is spread over the top nibbles of
 * its four scale words. */
static inline float iq_block_d(const uint8_t *blk) {
  return q_h2f(iq_rd16(blk));
}
static inline uint16_t iq1_m_block_h(const uint8_t *blk) {
  const uint8_t *s = blk + QK_K / 8 + QK_K / 16;
  uint16_t w0 = iq_rd16(s), w1 = iq_rd16(s + 2), w2 = iq_rd16(s + 4), w3 = iq_rd16(s + 6);
  return (uint16_t)((w0 >> 12) | ((w1 >> 8) & 0x00f0) | ((w2 >> 4) & 0x0f00) | (w3 & 0xf000));
}
static inline float iq1_m_block_d(const uint8_t *blk) {
  return q_h2f(iq1_m_block_h(blk));
}

#endif
