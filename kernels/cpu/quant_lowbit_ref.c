/* Scalar reference kernels of the load-only low-bit formats: the ternary TQ1_0 / TQ2_0 and the
 * OCP microscaling MXFP4 (the IQ codebook formats are in quant_iq_ref.c), bit-compatible with
 * GGUF's block layouts. They dequantize and dot against the activation type ggml's dot uses
 * (Q8_K for TQ*, Q8_0 for MXFP4), but have no weight quantizer (from_float NULL): useful files of
 * these types come from imatrix-guided or ternary-trained producers, and `nllm quantize`
 * refuses them as targets. */
#include "quant.h"
#include "quant_tile.h"

/* TQ1_0 packs five ternary digits per byte as a base-3 fixed-point fraction: byte b holds
 * digits t0..t4 with b = ceil(256 * (t0/3 + t1/9 + ... + t4/243)), so multiplying by 3^k
 * (mod 256) shifts digit k to the top, and (top byte * 3) >> 8 reads it. The first 32 bytes
 * give 5 x 32 values, the next 16 bytes 5 x 16, and the 4 qh bytes 4 x 4 (their fifth digit
 * is unused). */
static const uint8_t tq1_pow3[5] = {1, 3, 9, 27, 81};

static inline int tq1_digit(uint8_t b, int k) {
  uint8_t q = (uint8_t)(b * tq1_pow3[k]);
  return (int)(((uint16_t)q * 3) >> 8) - 1;
}

/* The 256 ternary values (-1, 0, 1) of a TQ1_0 block, in element order. */
static void tq1_0_unpack(const block_tq1_0 *x, int8_t t[QK_K]) {
  int i = 0;
  for (int k = 0; k < 5; k++)
    for (int m = 0; m < 32; m++) t[i++] = (int8_t)tq1_digit(x->qs[m], k);
  for (int k = 0; k < 5; k++)
    for (int m = 0; m < 16; m++) t[i++] = (int8_t)tq1_digit(x->qs[32 + m], k);
  for (int k = 0; k < 4; k++)
    for (int m = 0; m < 4; m++) t[i++] = (int8_t)tq1_digit(x->qh[m], k);
}

static void tq1_0_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_tq1_0 *x = vx;
  int8_t t[QK_K];
  for (int64_t b = 0; b < n / QK_K; b++) {
    float d = q_h2f(x[b].d);
    tq1_0_unpack(&x[b], t);
    for (int i = 0; i < QK_K; i++) y[b * QK_K + i] = (float)t[i] * d;
  }
}

static void tq1_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_tq1_0 *x = vx;
  const block_q8_K *y = vy;
  int8_t t[QK_K];
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    tq1_0_unpack(&x[b], t);
    int isum = 0;
    for (int i = 0; i < QK_K; i++) isum += t[i] * y[b].qs[i];
    /* two statements in every tier: clang fuses a multiply-add within one into an FMA, and the
     * tiers would round apart */
    const float p = (float)isum * (y[b].d * q_h2f(x[b].d));
    sum += p;
  }
  *s = sum;
}

/* TQ2_0: 2-bit codes q (value q - 1; code 3 reads as 2, which no ternary writer emits). Each
 * 32-byte half of qs holds 128 values: bits 2l..2l+1 of byte m are element 32l + m. */
static inline int tq2_value(const block_tq2_0 *x, int i) {
  int half = i / 128, l = (i % 128) / 32, m = i % 32;
  return ((x->qs[32 * half + m] >> (2 * l)) & 3) - 1;
}

static void tq2_0_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_tq2_0 *x = vx;
  for (int64_t b = 0; b < n / QK_K; b++) {
    float d = q_h2f(x[b].d);
    for (int i = 0; i < QK_K; i++) y[b * QK_K + i] = (float)tq2_value(&x[b], i) * d;
  }
}

static void tq2_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_tq2_0 *x = vx;
  const block_q8_K *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; b++) {
    int isum = 0;
    for (int i = 0; i < QK_K; i++) isum += tq2_value(&x[b], i) * y[b].qs[i];
    const float p = (float)isum * (y[b].d * q_h2f(x[b].d));
    sum += p;
  }
  *s = sum;
}

/* MXFP4 (OCP Microscaling v1.0): 32 FP4 E2M1 elements sharing one E8M0 scale 2^(e - 127).
 * The E2M1 code's value times 2 is an integer, so the integer dot uses the doubled levels and
 * the scale carries the half: 2^(e - 128). Low nibbles are elements 0..15, high 16..31. */
static const int8_t mxfp4_levels2[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* 2^(e - 128) exactly, as a float (subnormal for e < 2); e = 0xFF is the format's NaN. */
static inline float mxfp4_half_scale(uint8_t e) {
  uint32_t u;
  if (e == 0xFF)
    u = 0x7fc00000u;
  else if (e < 2)
    u = 0x00200000u << e;
  else
    u = (uint32_t)(e - 1) << 23;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void mxfp4_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_mxfp4 *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    float d = mxfp4_half_scale(x[b].e);
    for (int j = 0; j < QK / 2; j++) {
      y[b * QK + j] = (float)mxfp4_levels2[x[b].qs[j] & 15] * d;
      y[b * QK + j + QK / 2] = (float)mxfp4_levels2[x[b].qs[j] >> 4] * d;
    }
  }
}

static void mxfp4_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_mxfp4 *x = vx;
  const block_q8_0 *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    int isum = 0;
    for (int j = 0; j < QK / 2; j++)
      isum += mxfp4_levels2[x[b].qs[j] & 15] * y[b].qs[j] +
              mxfp4_levels2[x[b].qs[j] >> 4] * y[b].qs[j + QK / 2];
    const float p = (float)isum * (mxfp4_half_scale(x[b].e) * q_h2f(y[b].d));
    sum += p;
  }
  *s = sum;
}

/* The scalar rows: no from_float (load-only types). */
static const nllm_qtype_kernels lowbit_ref_rows[] = {
    {.type = NLLM_TYPE_TQ1_0,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = tq1_0_to_float_ref,
     .vec_dot = tq1_0_vec_dot_ref},
    {.type = NLLM_TYPE_TQ2_0,
     .vec_dot_type = NLLM_TYPE_Q8_K,
     .to_float = tq2_0_to_float_ref,
     .vec_dot = tq2_0_vec_dot_ref},
    {.type = NLLM_TYPE_MXFP4,
     .vec_dot_type = NLLM_TYPE_Q8_0,
     .to_float = mxfp4_to_float_ref,
     .vec_dot = mxfp4_vec_dot_ref},
};
const nllm_kernel_set nllm_kernels_lowbit_ref = {
    lowbit_ref_rows, sizeof lowbit_ref_rows / sizeof lowbit_ref_rows[0]};

/* ---------------------------------------------------------------- batch tiles (quant_tile.h) */

static void tq1_0_unpack_tile(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_tq1_0 *x = (const block_tq1_0 *)(const void *)xb;
  tq1_0_unpack(x, u->w);
  u->scale[0] = 1;
  u->f[0] = q_h2f(x->d);
}

static void tq2_0_unpack_tile(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_tq2_0 *x = (const block_tq2_0 *)(const void *)xb;
  for (int i = 0; i < QK_K; i++) u->w[i] = (int8_t)tq2_value(x, i);
  u->scale[0] = 1;
  u->f[0] = q_h2f(x->d);
}

static void mxfp4_unpack_tile(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_mxfp4 *x = (const block_mxfp4 *)(const void *)xb;
  for (int j = 0; j < QK / 2; j++) {
    u->w[j] = mxfp4_levels2[x->qs[j] & 15];
    u->w[j + QK / 2] = mxfp4_levels2[x->qs[j] >> 4];
  }
  u->scale[0] = 1;
  u->f[0] = mxfp4_half_scale(x->e);
}

static const nllm_tile_codec tq1_0_tile = {
    QK_K, QK_K, NLLM_TYPE_Q8_K, sizeof(block_tq1_0), tq1_0_unpack_tile, tile_sum_tq, 1.0f};
static const nllm_tile_codec tq2_0_tile = {
    QK_K, QK_K, NLLM_TYPE_Q8_K, sizeof(block_tq2_0), tq2_0_unpack_tile, tile_sum_tq, 1.0f};
static const nllm_tile_codec mxfp4_tile = {
    QK, QK, NLLM_TYPE_Q8_0, sizeof(block_mxfp4), mxfp4_unpack_tile, tile_sum_scaled, 1.0f};
NLLM_TILE_KERNELS(tq1_0, tq1_0_tile)
NLLM_TILE_KERNELS(tq2_0, tq2_0_tile)
NLLM_TILE_KERNELS(mxfp4, mxfp4_tile)

/* Laid over the scalar tier only (kernels/qtypes.c). */
static const nllm_qtype_kernels lowbit_tile_rows[] = {
    NLLM_TILE_ROW(NLLM_TYPE_TQ1_0, tq1_0),
    NLLM_TILE_ROW(NLLM_TYPE_TQ2_0, tq2_0),
    NLLM_TILE_ROW(NLLM_TYPE_MXFP4, mxfp4),
};
const nllm_kernel_set nllm_kernels_lowbit_ref_tiles = {
    lowbit_tile_rows, sizeof lowbit_tile_rows / sizeof lowbit_tile_rows[0]};
