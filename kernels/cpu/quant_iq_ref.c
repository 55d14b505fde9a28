/* Scalar reference kernels of GGUF's codebook ("IQ") formats IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS,
 * IQ2_S, IQ3_XXS and IQ3_S, bit-compatible with ggml's block layouts (ggml-common.h). Every one
 * of them reduces to the same shape: a block of 256 values in groups of 8, each value a small
 * signed integer read from a grid (with signs, or a +-1/8 shift for IQ1), and each group an odd
 * integer scale 2s + 1 times a per-format constant times the block's F16 scale. So each format
 * is only its chunk reader (iq_layout.h, shared with the SIMD tiers); dequantization and the
 * Q8_K dot product are written once.
 * Load-only types: no from_float (useful files need an importance matrix; `nllm quantize`
 * refuses them as targets). */
#include "cpu/iq_layout.h"
#include "cpu/quant_tile.h"

/* How one format is read (iq_layout.h); the value formula is there. */
typedef struct {
  size_t block_bytes;
  void (*chunk)(const uint8_t *blk, int c, iq_chunk *out);
  float (*block_d)(const uint8_t *blk);
  int ternary;     /* IQ1: grid bytes are -1/0/1 plus a +-1/8 shift */
  float group_mul; /* a power of two */
} iq_format;

static const iq_format iq2_xxs = {sizeof(block_iq2_xxs), iq2_xxs_chunk, iq_block_d, 0, 0.125f};
static const iq_format iq2_xs = {sizeof(block_iq2_xs), iq2_xs_chunk, iq_block_d, 0, 0.125f};
static const iq_format iq2_s = {sizeof(block_iq2_s), iq2_s_chunk, iq_block_d, 0, 0.125f};
static const iq_format iq3_xxs = {sizeof(block_iq3_xxs), iq3_xxs_chunk, iq_block_d, 0, 0.25f};
static const iq_format iq3_s = {sizeof(block_iq3_s), iq3_s_chunk, iq_block_d, 0, 1.0f};
static const iq_format iq1_s = {sizeof(block_iq1_s), iq1_s_chunk, iq_block_d, 1, 1.0f};
static const iq_format iq1_m = {sizeof(block_iq1_m), iq1_m_chunk, iq1_m_block_d, 1, 1.0f};

/* Value j of a group as an integer: the signed grid byte, or for IQ1 8 * grid byte +- 1. */
static inline int iq_value(const iq_format *f, const iq_chunk *ch, int l, int j) {
  int b = (int)((ch->grid[l] >> (8 * j)) & 255);
  unsigned sg = iq_byte(ch->signs, l);
  if (f->ternary) return 8 * (int8_t)b + (sg ? -1 : 1);
  return sg >> j & 1 ? -b : b;
}

/* The group factor as ggml's dequantizers compute it, so the floats are the same: d * (0.5 + s)
 * * (2 group_mul) for the IQ2 and IQ3_XXS scales, d * (2s + 1) for the others. */
static inline float iq_group_scale(const iq_format *f, float d, int odd) {
  if (f->group_mul == 1.0f) return d * (float)odd;
  return d * (0.5f + (float)(odd >> 1)) * (2 * f->group_mul);
}

static void iq_to_float(const iq_format *f, const void *vx, float *y, int64_t n) {
  const uint8_t *x = vx;
  const float vmul = f->ternary ? 0.125f : 1.0f;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const uint8_t *blk = x + (size_t)i * f->block_bytes;
    float d = f->block_d(blk);
    for (int c = 0; c < QK_K / 32; c++) {
      iq_chunk ch;
      f->chunk(blk, c, &ch);
      for (int l = 0; l < 4; l++) {
        float dl = iq_group_scale(f, d, (int)iq_byte(ch.odd, l));
        for (int j = 0; j < 8; j++)
          y[i * QK_K + 32 * c + 8 * l + j] = dl * ((float)iq_value(f, &ch, l, j) * vmul);
      }
    }
  }
}

/* Integer sums per group times its odd scale; the block's float factors come out once. */
static void iq_vec_dot(const iq_format *f, int64_t n, float *s, const void *vx, const void *vy) {
  const uint8_t *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t i = 0; i < n / QK_K; i++) {
    const uint8_t *blk = x + (size_t)i * f->block_bytes;
    int32_t bsum = 0;
    for (int c = 0; c < QK_K / 32; c++) {
      iq_chunk ch;
      f->chunk(blk, c, &ch);
      for (int l = 0; l < 4; l++) {
        int32_t gsum = 0;
        for (int j = 0; j < 8; j++) gsum += iq_value(f, &ch, l, j) * y[i].qs[32 * c + 8 * l + j];
        bsum += gsum * (int32_t)iq_byte(ch.odd, l);
      }
    }
    /* two statements: clang would fuse one into an FMA, and the tiers would round apart */
    const float p = (f->block_d(blk) * y[i].d) * (float)bsum;
    sum += p;
  }
  *s = sum * f->group_mul * (f->ternary ? 0.125f : 1.0f);
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

/* Batch tiles (quant_tile.h): a block unpacked to the values and odd group scales iq_vec_dot
 * multiplies; the row's last factor is its group_mul, an eighth more for IQ1's shift. */
static void iq_unpack(const iq_format *f, const uint8_t *restrict blk,
                      nllm_tile_block *restrict u) {
  for (int c = 0; c < QK_K / 32; c++) {
    iq_chunk ch;
    f->chunk(blk, c, &ch);
    for (int l = 0; l < 4; l++) {
      u->scale[4 * c + l] = (int32_t)iq_byte(ch.odd, l);
      for (int j = 0; j < 8; j++) u->w[32 * c + 8 * l + j] = (int8_t)iq_value(f, &ch, l, j);
    }
  }
  u->f[0] = f->block_d(blk);
}

#define IQ_TILES(name, post)                                                            \
  static void name##_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {  \
    iq_unpack(&name, xb, u);                                                            \
  }                                                                                     \
  static const nllm_tile_codec name##_tile = {                                          \
      QK_K, 8, NLLM_TYPE_Q8_K, sizeof(block_##name), name##_unpack, tile_sum_iq, post}; \
  NLLM_TILE_KERNELS(name, name##_tile)
IQ_TILES(iq2_xxs, 0.125f)
IQ_TILES(iq2_xs, 0.125f)
IQ_TILES(iq2_s, 0.125f)
IQ_TILES(iq3_xxs, 0.25f)
IQ_TILES(iq3_s, 1.0f)
IQ_TILES(iq1_s, 0.125f)
IQ_TILES(iq1_m, 0.125f)
#undef IQ_TILES

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

/* Laid over the scalar tier only (kernels/qtypes.c). */
static const nllm_qtype_kernels iq_tile_rows[] = {
    NLLM_TILE_ROW(NLLM_TYPE_IQ2_XXS, iq2_xxs), NLLM_TILE_ROW(NLLM_TYPE_IQ2_XS, iq2_xs),
    NLLM_TILE_ROW(NLLM_TYPE_IQ2_S, iq2_s),     NLLM_TILE_ROW(NLLM_TYPE_IQ3_XXS, iq3_xxs),
    NLLM_TILE_ROW(NLLM_TYPE_IQ3_S, iq3_s),     NLLM_TILE_ROW(NLLM_TYPE_IQ1_S, iq1_s),
    NLLM_TILE_ROW(NLLM_TYPE_IQ1_M, iq1_m),
};
const nllm_kernel_set nllm_kernels_iq_ref_tiles = {iq_tile_rows,
                                                   sizeof iq_tile_rows / sizeof iq_tile_rows[0]};
