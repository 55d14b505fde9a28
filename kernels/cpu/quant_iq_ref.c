/* Scalar reference kernels of GGUF's codebook ("IQ") formats IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS,
 * IQ2_S, IQ3_XXS and IQ3_S, bit-compatible with ggml's block layouts (ggml-common.h). Every one
 * of them reduces to the same shape: a block of 256 values in groups of 8, each value a small
 * signed integer read from a grid (with signs, or a +-1/8 shift for IQ1), and each group an odd
 * integer scale 2s + 1 times a per-format constant times the block's F16 scale. So each format
 * here is only its unpacker; dequantization and the Q8_K dot product are written once.
 * Load-only types: no from_float (useful files need an importance matrix; `nllm quantize`
 * refuses them as targets). */
#include "quant.h"

#include "cpu/lowbit_grids.h"

/* A block unpacked: v[i] is value i as an integer (grid level with its sign; for IQ1 eight
 * times grid + shift, so that it stays an integer), odd[g] the odd scale 2s + 1 of group g. */
typedef struct {
  int16_t v[QK_K];
  int16_t odd[QK_K / 8];
  float d; /* the block's scale as stored */
} iq_block;

/* value = d * odd * group_mul * v * value_mul; group_mul and value_mul are powers of two,
 * so the order the reference dequantizer multiplies in gives the same floats. */
typedef struct {
  size_t block_bytes;
  void (*unpack)(const uint8_t *blk, iq_block *out);
  float group_mul, value_mul;
} iq_format;

static inline uint16_t rd16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Eight grid bytes with sign bits (bit j set: element j negative). */
static inline void put8_signed(int16_t *v, uint64_t pt, unsigned signs) {
  for (int j = 0; j < 8; j++) {
    int m = (int)((pt >> (8 * j)) & 255);
    v[j] = (int16_t)(signs >> j & 1 ? -m : m);
  }
}

/* Two 4-value grid points (IQ3) as one group of 8. */
static inline uint64_t pair4(uint32_t a, uint32_t b) {
  return (uint64_t)a | (uint64_t)b << 32;
}

/* Eight ternary grid values (int8 bytes) shifted by +-1/8, times 8. */
static inline void put8_ternary(int16_t *v, uint64_t pt, int shift_negative) {
  for (int j = 0; j < 8; j++)
    v[j] = (int16_t)(8 * (int8_t)((pt >> (8 * j)) & 255) + (shift_negative ? -1 : 1));
}

/* IQ2_XXS: per 32 values four uint16; the first two hold four 8-bit grid indices, the second two
 * four 7-bit sign indices and the 4-bit scale in the top bits. Scale d * (0.5 + s) / 4. */
static void iq2_xxs_unpack(const uint8_t *blk, iq_block *b) {
  b->d = q_h2f(rd16(blk));
  for (int g = 0; g < QK_K / 32; g++) {
    const uint8_t *q = blk + 2 + 8 * g;
    uint32_t idx = rd32(q), sgn = rd32(q + 4);
    for (int l = 0; l < 4; l++) {
      put8_signed(b->v + 32 * g + 8 * l, nllm_iq2xxs_grid[(idx >> (8 * l)) & 255],
                  nllm_iq_signs8((sgn >> (7 * l)) & 127));
      b->odd[4 * g + l] = (int16_t)(2 * (sgn >> 28) + 1);
    }
  }
}

/* IQ2_XS: per 8 values a uint16 of a 9-bit grid index and a 7-bit sign index; a 4-bit scale per
 * 16 values (low nibble first). */
static void iq2_xs_unpack(const uint8_t *blk, iq_block *b) {
  b->d = q_h2f(rd16(blk));
  const uint8_t *scales = blk + 2 + QK_K / 4;
  for (int k = 0; k < QK_K / 8; k++) {
    uint16_t q = rd16(blk + 2 + 2 * k);
    put8_signed(b->v + 8 * k, nllm_iq2xs_grid[q & 511], nllm_iq_signs8(q >> 9));
    b->odd[k] = (int16_t)(2 * ((scales[k / 4] >> (4 * (k / 2 % 2))) & 15) + 1);
  }
}

/* IQ2_S: per 8 values a 10-bit grid index (8 bits in qs, 2 in qh per 32 values) and a byte of
 * explicit signs (qs' second half); a 4-bit scale per 16 values. */
static void iq2_s_unpack(const uint8_t *blk, iq_block *b) {
  b->d = q_h2f(rd16(blk));
  const uint8_t *qs = blk + 2, *signs = qs + QK_K / 8, *qh = qs + QK_K / 4;
  const uint8_t *scales = qh + QK_K / 32;
  for (int k = 0; k < QK_K / 8; k++) {
    int g = k / 4, l = k % 4;
    unsigned idx = qs[k] | ((unsigned)qh[g] << (8 - 2 * l) & 0x300);
    put8_signed(b->v + 8 * k, nllm_iq2s_grid[idx], signs[k]);
    b->odd[k] = (int16_t)(2 * ((scales[g] >> (4 * (l / 2))) & 15) + 1);
  }
}

/* IQ3_XXS: 64 bytes of 8-bit indices into a grid of 4-value points, then per 32 values a uint32
 * of four 7-bit sign indices and the 4-bit scale on top. Scale d * (0.5 + s) / 2. */
static void iq3_xxs_unpack(const uint8_t *blk, iq_block *b) {
  b->d = q_h2f(rd16(blk));
  const uint8_t *qs = blk + 2, *ss = qs + QK_K / 4;
  for (int g = 0; g < QK_K / 32; g++) {
    uint32_t aux = rd32(ss + 4 * g);
    for (int l = 0; l < 4; l++) {
      const uint8_t *q = qs + 8 * g + 2 * l;
      put8_signed(b->v + 32 * g + 8 * l, pair4(nllm_iq3xxs_grid[q[0]], nllm_iq3xxs_grid[q[1]]),
                  nllm_iq_signs8((aux >> (7 * l)) & 127));
      b->odd[4 * g + l] = (int16_t)(2 * (aux >> 28) + 1);
    }
  }
}

/* IQ3_S: per 4 values a 9-bit grid index (a qs byte and one qh bit), per 8 values a byte of
 * explicit signs, per 32 values a 4-bit scale (two to a byte). Scale d * (1 + 2s). */
static void iq3_s_unpack(const uint8_t *blk, iq_block *b) {
  b->d = q_h2f(rd16(blk));
  const uint8_t *qs = blk + 2, *qh = qs + QK_K / 4, *signs = qh + QK_K / 32;
  const uint8_t *scales = signs + QK_K / 8;
  for (int k = 0; k < QK_K / 8; k++) {
    int g = k / 4, l = k % 4;
    const uint8_t *q = qs + 2 * k;
    unsigned i0 = q[0] | ((unsigned)qh[g] << (8 - 2 * l) & 256);
    unsigned i1 = q[1] | ((unsigned)qh[g] << (7 - 2 * l) & 256);
    put8_signed(b->v + 8 * k, pair4(nllm_iq3s_grid[i0], nllm_iq3s_grid[i1]), signs[k]);
    b->odd[k] = (int16_t)(2 * ((scales[g / 2] >> (4 * (g % 2))) & 15) + 1);
  }
}

/* IQ1_S: per 8 values an 11-bit ternary grid index (qs byte + 3 bits of the group's uint16 qh),
 * per 32 values qh's bits 12..14 are the scale and bit 15 the sign of the 1/8 shift. */
static void iq1_s_unpack(const uint8_t *blk, iq_block *b) {
  b->d = q_h2f(rd16(blk));
  const uint8_t *qs = blk + 2, *qhb = qs + QK_K / 8;
  for (int g = 0; g < QK_K / 32; g++) {
    unsigned qh = rd16(qhb + 2 * g);
    for (int l = 0; l < 4; l++) {
      unsigned idx = qs[4 * g + l] | ((qh >> (3 * l)) & 7) << 8;
      put8_ternary(b->v + 32 * g + 8 * l, nllm_iq1s_grid[idx], (qh & 0x8000) != 0);
      b->odd[4 * g + l] = (int16_t)(2 * ((qh >> 12) & 7) + 1);
    }
  }
}

/* IQ1_M: per 8 values an 11-bit index (qs byte + a qh nibble's 3 bits) and a shift sign (the
 * nibble's top bit); per 16 values a 3-bit scale; the block's F16 scale is spread over the top
 * nibbles of the four uint16 scale words. */
static void iq1_m_unpack(const uint8_t *blk, iq_block *b) {
  const uint8_t *qs = blk, *qh = qs + QK_K / 8, *scb = qh + QK_K / 16;
  uint16_t sc[4];
  for (int i = 0; i < 4; i++) sc[i] = rd16(scb + 2 * i);
  b->d = q_h2f((uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) |
                          (sc[3] & 0xf000)));
  for (int k = 0; k < QK_K / 8; k++) {
    int g = k / 4, l = k % 4;
    unsigned nib = (qh[2 * g + l / 2] >> (4 * (l % 2))) & 15;
    put8_ternary(b->v + 8 * k, nllm_iq1s_grid[qs[k] | (nib & 7) << 8], (nib & 8) != 0);
    int s = (sc[g / 2] >> (6 * (g % 2) + 3 * (l / 2))) & 7;
    b->odd[k] = (int16_t)(2 * s + 1);
  }
}

static const iq_format iq2_xxs = {sizeof(block_iq2_xxs), iq2_xxs_unpack, 0.125f, 1.0f};
static const iq_format iq2_xs = {sizeof(block_iq2_xs), iq2_xs_unpack, 0.125f, 1.0f};
static const iq_format iq2_s = {sizeof(block_iq2_s), iq2_s_unpack, 0.125f, 1.0f};
static const iq_format iq3_xxs = {sizeof(block_iq3_xxs), iq3_xxs_unpack, 0.25f, 1.0f};
static const iq_format iq3_s = {sizeof(block_iq3_s), iq3_s_unpack, 1.0f, 1.0f};
static const iq_format iq1_s = {sizeof(block_iq1_s), iq1_s_unpack, 1.0f, 0.125f};
static const iq_format iq1_m = {sizeof(block_iq1_m), iq1_m_unpack, 1.0f, 0.125f};

/* The group factor as the reference dequantizers compute it, so the floats are the same: the
 * IQ2 and IQ3_XXS scales are d * (0.5 + s) * (2 group_mul) (= d * odd * group_mul), the others
 * d * (2s + 1). */
static inline float iq_group_scale(const iq_format *f, float d, int odd) {
  if (f->group_mul == 1.0f) return d * (float)odd;
  return d * (0.5f + (float)(odd >> 1)) * (2 * f->group_mul);
}

static void iq_to_float(const iq_format *f, const void *vx, float *y, int64_t n) {
  const uint8_t *x = vx;
  iq_block b;
  for (int64_t i = 0; i < n / QK_K; i++) {
    f->unpack(x + (size_t)i * f->block_bytes, &b);
    for (int k = 0; k < QK_K / 8; k++) {
      float dl = iq_group_scale(f, b.d, b.odd[k]);
      for (int j = 0; j < 8; j++)
        y[i * QK_K + 8 * k + j] = dl * ((float)b.v[8 * k + j] * f->value_mul);
    }
  }
}

/* Integer sums per group times its odd scale; the block's float factors come out once. */
static void iq_vec_dot(const iq_format *f, int64_t n, float *s, const void *vx, const void *vy) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  iq_block b;
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    f->unpack(x + (size_t)i * f->block_bytes, &b);
    int32_t bsum = 0;
    for (int k = 0; k < QK_K / 8; k++) {
      int32_t gsum = 0;
      for (int j = 0; j < 8; j++) gsum += b.v[8 * k + j] * y[i].qs[8 * k + j];
      bsum += gsum * b.odd[k];
    }
    sum += (b.d * y[i].d) * (float)bsum;
  }
  *s = sum * f->group_mul * f->value_mul;
}

#define IQ_KERNELS(name)                                                                \
  static void name##_to_float_ref(const void *vx, float *y, int64_t n) {                \
    iq_to_float(&name, vx, y, n);                                                       \
  }                                                                                     \
  static void name##_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) { \
    iq_vec_dot(&name, n, s, vx, vy);                                                    \
  }
IQ_KERNELS(iq2_xxs)
IQ_KERNELS(iq2_xs)
IQ_KERNELS(iq2_s)
IQ_KERNELS(iq3_xxs)
IQ_KERNELS(iq3_s)
IQ_KERNELS(iq1_s)
IQ_KERNELS(iq1_m)
#undef IQ_KERNELS

static const nllm_qtype_kernels iq_ref_rows[] = {
    {.type = NLLM_TYPE_IQ2_XXS,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = iq2_xxs_to_float_ref,
     .vec_dot = iq2_xxs_vec_dot_ref},
    {.type = NLLM_TYPE_IQ2_XS,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = iq2_xs_to_float_ref,
     .vec_dot = iq2_xs_vec_dot_ref},
    {.type = NLLM_TYPE_IQ2_S,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = iq2_s_to_float_ref,
     .vec_dot = iq2_s_vec_dot_ref},
    {.type = NLLM_TYPE_IQ3_XXS,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = iq3_xxs_to_float_ref,
     .vec_dot = iq3_xxs_vec_dot_ref},
    {.type = NLLM_TYPE_IQ3_S,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = iq3_s_to_float_ref,
     .vec_dot = iq3_s_vec_dot_ref},
    {.type = NLLM_TYPE_IQ1_S,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = iq1_s_to_float_ref,
     .vec_dot = iq1_s_vec_dot_ref},
    {.type = NLLM_TYPE_IQ1_M,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = iq1_m_to_float_ref,
     .vec_dot = iq1_m_vec_dot_ref},
};
const nllm_kernel_set nllm_kernels_iq_ref = {iq_ref_rows,
                                             sizeof iq_ref_rows / sizeof iq_ref_rows[0]};
