/* NEON dot products of the IQ codebook formats against Q8_K activations: their rows of the NEON
 * tier (dequantization stays the scalar reference's). The layouts are read by the same chunk
 * readers as the scalar kernels (iq_layout.h). All seven formats, and the one-row, four-row and
 * batch kernels, share one body: a chunk's 32 values become signed int8 weights (IQ2 / IQ3: the
 * grid byte under its sign; IQ1: 8 * point +- 1, the reference's value times 8) and its group
 * scales a vector, once per row and block, and each token then costs its products (SDOT with the
 * dotprod extension, else widened to 16 bits: no saturation, no sign trick) and the scale step.
 * The integer sums equal the scalar ones and the float steps are the same, in the same order,
 * so the results are bit-identical to quant_iq_ref.c. */
#include <arm_neon.h>

#include "cpu/iq_layout.h"

/* The token loops unrolled, so that each token's accumulator stays in a register */
#define IQ_UNROLL_TOK _Pragma("GCC unroll 4")

typedef void (*iq_chunk_fn)(const uint8_t *blk, int c, iq_chunk *out);

/* The odd scales of 16 values (groups a, b), laid out for iq_dot16's products: SDOT's four
 * lanes {a, a, b, b} (four products each), or the sixteen-bit pair sums' {a x4, b x4}. */
#if defined(__ARM_FEATURE_DOTPROD)
typedef int32x4_t iq_odd16;
#else
typedef int16x8_t iq_odd16;
#endif

/* acc += the products of 16 weights and activations, each group's sum times its odd scale.
 * Without SDOT: |w| <= 62, so a pair of products stays within int16 (2 * 62 * 128). */
static inline int32x4_t iq_dot16(int32x4_t acc, int8x16_t w, int8x16_t q, iq_odd16 o) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vmlaq_s32(acc, vdotq_s32(vdupq_n_s32(0), w, q), o);
#else
  const int16x8_t ps = vpaddq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(q)), vmull_high_s8(w, q));
  acc = vmlal_s16(acc, vget_low_s16(ps), vget_low_s16(o));
  return vmlal_high_s16(acc, ps, o);
#endif
}

/* Chunk c of a block as signed weights w[h] (values 16 h .. 16 h + 15) and their scales o[h].
 * The chunk's sign and odd bytes sit in one vector, from which table lookups spread them: each
 * sign byte over its group's 8 bytes (a bit test then makes the mask), each odd byte into the
 * lanes iq_dot16 takes (indices past 15 read 0, the upper bytes of the wider lanes). */
static inline __attribute__((always_inline)) void iq_weights(const uint8_t *blk, int c,
                                                             iq_chunk_fn chunk, int ternary,
                                                             int8x16_t w[2], iq_odd16 o[2]) {
  static const uint8_t spread[2][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
                                        {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3}};
#if defined(__ARM_FEATURE_DOTPROD)
  static const uint8_t odd_ix[2][16] = {
      {4, 99, 99, 99, 4, 99, 99, 99, 5, 99, 99, 99, 5, 99, 99, 99},
      {6, 99, 99, 99, 6, 99, 99, 99, 7, 99, 99, 99, 7, 99, 99, 99}};
#else
  static const uint8_t odd_ix[2][16] = {{4, 99, 4, 99, 4, 99, 4, 99, 5, 99, 5, 99, 5, 99, 5, 99},
                                        {6, 99, 6, 99, 6, 99, 6, 99, 7, 99, 7, 99, 7, 99, 7, 99}};
#endif
  iq_chunk ch;
  chunk(blk, c, &ch);
  const uint8x16_t so = vreinterpretq_u8_u64(vdupq_n_u64((uint64_t)ch.signs | (uint64_t)ch.odd << 32));
  const uint8x16_t bits = vreinterpretq_u8_u64(vdupq_n_u64(0x8040201008040201ull));
  IQ_UNROLL4
  for (int h = 0; h < 2; h++) {
    const int8x16_t g = vreinterpretq_s8_u64(vcombine_u64(vcreate_u64(ch.grid[2 * h]),
                                                          vcreate_u64(ch.grid[2 * h + 1])));
    const uint8x16_t sb = vqtbl1q_u8(so, vld1q_u8(spread[h]));
    if (ternary) {
      /* 8 * point + 1, or - 1 where the group's shift is negative (its byte is 1) */
      const int8x16_t sh = vsubq_s8(vdupq_n_s8(1), vreinterpretq_s8_u8(vshlq_n_u8(sb, 1)));
      w[h] = vaddq_s8(vshlq_n_s8(g, 3), sh);
    } else {
      const int8x16_t m = vreinterpretq_s8_u8(vtstq_u8(sb, bits));
      w[h] = vsubq_s8(veorq_s8(g, m), m); /* negate where m = -1 */
    }
#if defined(__ARM_FEATURE_DOTPROD)
    o[h] = vreinterpretq_s32_u8(vqtbl1q_u8(so, vld1q_u8(odd_ix[h])));
#else
    o[h] = vreinterpretq_s16_u8(vqtbl1q_u8(so, vld1q_u8(odd_ix[h])));
#endif
  }
}

/* nr rows (x_stride bytes apart) by nt tokens (y_stride bytes apart):
 * s[t * s_stride + r] = dot(row r, token t). A block's weights are made once per row for the
 * tokens; each token's block sum is exact and its float steps are vec_dot's, in its order. nr,
 * nt and the format's arguments are constants in every caller. */
static inline __attribute__((always_inline)) void iq_dot_neon(
    int nr, int nt, int64_t n, float *s, size_t s_stride, const void *vx, size_t x_stride,
    const void *vy, size_t y_stride, size_t block_bytes, iq_chunk_fn chunk, int ternary,
    int iq1m_scale, float group_mul) {
  const int64_t nb = n / QK_K;
  const block_q8_K *y[4];
  for (int k = 0; k < nt; k++) y[k] = (const block_q8_K *)((const uint8_t *)vy + k * y_stride);
  for (int r = 0; r < nr; r++) {
    const uint8_t *x = (const uint8_t *)vx + r * x_stride;
    float sum[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < nb; i++) {
      const uint8_t *blk = x + (size_t)i * block_bytes;
      int32x4_t acc[4];
      IQ_UNROLL_TOK
      for (int k = 0; k < nt; k++) acc[k] = vdupq_n_s32(0);
      for (int c = 0; c < QK_K / 32; c++) {
        int8x16_t w[2];
        iq_odd16 o[2];
        iq_weights(blk, c, chunk, ternary, w, o);
        IQ_UNROLL_TOK
        for (int k = 0; k < nt; k++) {
          const int8_t *q8 = y[k][i].qs + 32 * c;
          acc[k] = iq_dot16(acc[k], w[0], vld1q_s8(q8), o[0]);
          acc[k] = iq_dot16(acc[k], w[1], vld1q_s8(q8 + 16), o[1]);
        }
      }
      const float d = iq1m_scale ? iq1_m_block_d(blk) : iq_block_d(blk);
      IQ_UNROLL_TOK
      for (int k = 0; k < nt; k++) {
        const float p = (d * y[k][i].d) * (float)vaddvq_s32(acc[k]); /* not fused */
        sum[k] += p;
      }
    }
    IQ_UNROLL_TOK
    for (int k = 0; k < nt; k++)
      s[k * s_stride + r] = sum[k] * group_mul * (ternary ? 0.125f : 1.0f);
  }
}

/* One format's rows: vec_dot; vec_dot4 (four rows one after another: decode has no work to
 * share between rows, but the matmul takes the batch kernels only along a four-row one);
 * vec_dot4x4 and vec_dot4xt. */
#define IQ_NEON_ROWS(name, blk_t, chunk, ternary, iq1m, mul)                                  \
  static void name##_vec_dot_neon(int64_t n, float *s, const void *vx, const void *vy) {     \
    iq_dot_neon(1, 1, n, s, 0, vx, 0, vy, 0, sizeof(blk_t), chunk, ternary, iq1m, mul);      \
  }                                                                                           \
  static void name##_vec_dot4_neon(int64_t n, float *s, const void *vx, size_t x_stride,     \
                                   const void *vy) {                                          \
    iq_dot_neon(4, 1, n, s, 0, vx, x_stride, vy, 0, sizeof(blk_t), chunk, ternary, iq1m,     \
                mul);                                                                         \
  }                                                                                           \
  static void name##_vec_dot4x4_neon(int64_t n, float *s, size_t s_stride, const void *vx,   \
                                     size_t x_stride, const void *vy, size_t y_stride) {     \
    iq_dot_neon(4, 4, n, s, s_stride, vx, x_stride, vy, y_stride, sizeof(blk_t), chunk,      \
                ternary, iq1m, mul);                                                          \
  }                                                                                           \
  static void name##_vec_dot4xt_neon(int64_t n, float *s, size_t s_stride, const void *vx,   \
                                     size_t x_stride, const void *vy, size_t y_stride,       \
                                     int n_tok) {                                             \
    if (n_tok == 3)                                                                           \
      iq_dot_neon(4, 3, n, s, s_stride, vx, x_stride, vy, y_stride, sizeof(blk_t), chunk,    \
                  ternary, iq1m, mul);                                                        \
    else                                                                                      \
      iq_dot_neon(4, 2, n, s, s_stride, vx, x_stride, vy, y_stride, sizeof(blk_t), chunk,    \
                  ternary, iq1m, mul);                                                        \
  }
IQ_NEON_ROWS(iq2_xxs, block_iq2_xxs, iq2_xxs_chunk, 0, 0, 0.125f)
IQ_NEON_ROWS(iq2_xs, block_iq2_xs, iq2_xs_chunk, 0, 0, 0.125f)
IQ_NEON_ROWS(iq2_s, block_iq2_s, iq2_s_chunk, 0, 0, 0.125f)
IQ_NEON_ROWS(iq3_xxs, block_iq3_xxs, iq3_xxs_chunk, 0, 0, 0.25f)
IQ_NEON_ROWS(iq3_s, block_iq3_s, iq3_s_chunk, 0, 0, 1.0f)
IQ_NEON_ROWS(iq1_s, block_iq1_s, iq1_s_chunk, 1, 0, 1.0f)
IQ_NEON_ROWS(iq1_m, block_iq1_m, iq1_m_chunk, 1, 1, 1.0f)
#undef IQ_NEON_ROWS

#define IQ_NEON_ROW(T, name)                                                                  \
  {.type = T,                                                                                 \
   .vec_dot = name##_vec_dot_neon,                                                            \
   .vec_dot4 = name##_vec_dot4_neon,                                                          \
   .vec_dot4x4 = name##_vec_dot4x4_neon,                                                      \
   .vec_dot4xt = name##_vec_dot4xt_neon}
static const nllm_qtype_kernels iq_neon_rows[] = {
    IQ_NEON_ROW(NLLM_TYPE_IQ2_XXS, iq2_xxs), IQ_NEON_ROW(NLLM_TYPE_IQ2_XS, iq2_xs),
    IQ_NEON_ROW(NLLM_TYPE_IQ2_S, iq2_s),     IQ_NEON_ROW(NLLM_TYPE_IQ3_XXS, iq3_xxs),
    IQ_NEON_ROW(NLLM_TYPE_IQ3_S, iq3_s),     IQ_NEON_ROW(NLLM_TYPE_IQ1_S, iq1_s),
    IQ_NEON_ROW(NLLM_TYPE_IQ1_M, iq1_m),
};
#undef IQ_NEON_ROW
const nllm_kernel_set nllm_kernels_iq_neon = {iq_neon_rows,
                                              sizeof iq_neon_rows / sizeof iq_neon_rows[0]};
