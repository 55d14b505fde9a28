/* Scalar reference kernels: the definition of every format's meaning. The ISA versions are
 * tested against these, and CPUs without AVX2/NEON run them. */
#include <math.h>

#include "cpu/quant.h"
#include "cpu/quant_tile.h"

/* ---------------------------------------------------------------- F32 / F16 / BF16 */

static void f32_to_float_ref(const void *x, float *y, int64_t n) {
  memcpy(y, x, (size_t)n * 4);
}
static void f32_from_float_ref(const float *x, void *y, int64_t n) {
  memcpy(y, x, (size_t)n * 4);
}
static void f32_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const float *x = vx, *y = vy;
  float sum = 0;
  for (int64_t i = 0; i < n; i++) sum += x[i] * y[i];
  *s = sum;
}

static void f16_to_float_ref(const void *vx, float *y, int64_t n) {
  const uint16_t *x = vx;
  for (int64_t i = 0; i < n; i++) y[i] = q_h2f(x[i]);
}
static void f16_from_float_ref(const float *x, void *vy, int64_t n) {
  uint16_t *y = vy;
  for (int64_t i = 0; i < n; i++) y[i] = q_f2h(x[i]);
}
/* Float weights dot float activations: the activation is already in cache during decode, so
 * converting it to half would save nothing and cost precision. */
static void f16_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const uint16_t *x = vx;
  const float *y = vy;
  float sum = 0;
  for (int64_t i = 0; i < n; i++) sum += q_h2f(x[i]) * y[i];
  *s = sum;
}

static void bf16_to_float_ref(const void *vx, float *y, int64_t n) {
  const uint16_t *x = vx;
  for (int64_t i = 0; i < n; i++) y[i] = q_bf2f(x[i]);
}
static void bf16_from_float_ref(const float *x, void *vy, int64_t n) {
  uint16_t *y = vy;
  for (int64_t i = 0; i < n; i++) y[i] = nllm_fp32_to_bf16(x[i]);
}
static void bf16_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const uint16_t *x = vx;
  const float *y = vy;
  float sum = 0;
  for (int64_t i = 0; i < n; i++) sum += q_bf2f(x[i]) * y[i];
  *s = sum;
}

/* ---------------------------------------------------------------- Q8_0 */

static void q8_0_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q8_0 *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    float d = q_h2f(x[b].d);
    for (int j = 0; j < QK; j++) y[b * QK + j] = (float)x[b].qs[j] * d;
  }
}

/* Activations quantized to 8 bits can hold NaN or inf when a model's weights do; converting
 * those to int8 is undefined in C, so they saturate (NaN becomes 0) instead. */
static inline int8_t round_i8(float v) {
  if (v >= -127.0f && v <= 127.0f) return (int8_t)roundf(v);
  return (int8_t)(v > 0 ? 127 : v < 0 ? -127 : 0);
}

/* d = amax/127 so the largest magnitude maps to +-127; rounding half away from zero. */
static void q8_0_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q8_0 *y = vy;
  for (int64_t b = 0; b < n / QK; b++) {
    const float *xb = x + b * QK;
    float amax = 0;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = q_f2h(d);
    for (int j = 0; j < QK; j++) y[b].qs[j] = round_i8(xb[j] * id);
  }
}

static void q8_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q8_0 *x = vx, *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    int isum = 0;
    for (int j = 0; j < QK; j++) isum += x[b].qs[j] * y[b].qs[j];
    sum += (float)isum * (q_h2f(x[b].d) * q_h2f(y[b].d));
  }
  *s = sum;
}

/* ---------------------------------------------------------------- Q4_0 */

static void q4_0_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q4_0 *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    float d = q_h2f(x[b].d);
    for (int j = 0; j < QK / 2; j++) {
      y[b * QK + j] = (float)((x[b].qs[j] & 15) - 8) * d;
      y[b * QK + j + QK / 2] = (float)((x[b].qs[j] >> 4) - 8) * d;
    }
  }
}

/* The signed extreme maps to -8 exactly (the side with one more level), so d keeps its sign. */
static void q4_0_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q4_0 *y = vy;
  for (int64_t b = 0; b < n / QK; b++) {
    const float *xb = x + b * QK;
    float amax = 0, max = 0;
    for (int j = 0; j < QK; j++) {
      if (fabsf(xb[j]) > amax) {
        amax = fabsf(xb[j]);
        max = xb[j];
      }
    }
    float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = q_f2h(d);
    for (int j = 0; j < QK / 2; j++) {
      int q0 = (int8_t)(xb[j] * id + 8.5f), q1 = (int8_t)(xb[j + QK / 2] * id + 8.5f);
      q0 = q0 < 15 ? q0 : 15;
      q1 = q1 < 15 ? q1 : 15;
      y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
  }
}

static void q4_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q4_0 *x = vx;
  const block_q8_0 *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    int isum = 0;
    for (int j = 0; j < QK / 2; j++) {
      isum += ((x[b].qs[j] & 15) - 8) * y[b].qs[j];
      isum += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + QK / 2];
    }
    sum += (float)isum * (q_h2f(x[b].d) * q_h2f(y[b].d));
  }
  *s = sum;
}

/* ---------------------------------------------------------------- Q4_1 / Q5_0 / Q5_1 / Q8_1 */

static void q4_1_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q4_1 *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    float d = q_h2f(x[b].d), m = q_h2f(x[b].m);
    for (int j = 0; j < QK / 2; j++) {
      y[b * QK + j] = (float)(x[b].qs[j] & 15) * d + m;
      y[b * QK + j + QK / 2] = (float)(x[b].qs[j] >> 4) * d + m;
    }
  }
}

/* Offset formats span [min, max] with their levels. */
static void minmax(const float *x, int n, float *mn, float *mx) {
  *mn = INFINITY;
  *mx = -INFINITY;
  for (int i = 0; i < n; i++) {
    *mn = fminf(*mn, x[i]);
    *mx = fmaxf(*mx, x[i]);
  }
}

static void q4_1_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q4_1 *y = vy;
  for (int64_t b = 0; b < n / QK; b++) {
    const float *xb = x + b * QK;
    float mn, mx;
    minmax(xb, QK, &mn, &mx);
    float d = (mx - mn) / 15.0f, id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = q_f2h(d);
    y[b].m = q_f2h(mn);
    for (int j = 0; j < QK / 2; j++) {
      int q0 = clampi((int8_t)((xb[j] - mn) * id + 0.5f), 0, 15);
      int q1 = clampi((int8_t)((xb[j + QK / 2] - mn) * id + 0.5f), 0, 15);
      y[b].qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
  }
}

static void q4_1_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q4_1 *x = vx;
  const block_q8_1 *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    int isum = 0;
    for (int j = 0; j < QK / 2; j++)
      isum += (x[b].qs[j] & 15) * y[b].qs[j] + (x[b].qs[j] >> 4) * y[b].qs[j + QK / 2];
    /* y's s = dy * sum(qy) carries the offset term m * sum(y) */
    sum += (float)isum * (q_h2f(x[b].d) * q_h2f(y[b].d)) + q_h2f(x[b].m) * q_h2f(y[b].s);
  }
  *s = sum;
}

/* The 5th bit of element j sits in bit j of qh (little-endian 32-bit). */
static inline uint32_t load_qh(const uint8_t qh[4]) {
  return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}
static inline void store_qh(uint8_t qh[4], uint32_t h) {
  for (int i = 0; i < 4; i++) qh[i] = (uint8_t)(h >> (8 * i));
}
static inline int q5_level(const uint8_t *qs, uint32_t qh, int j) {
  int lo = j < QK / 2 ? qs[j] & 15 : qs[j - QK / 2] >> 4;
  return lo | (int)((qh >> j) & 1) << 4;
}

static void q5_0_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q5_0 *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    float d = q_h2f(x[b].d);
    uint32_t qh = load_qh(x[b].qh);
    for (int j = 0; j < QK; j++) y[b * QK + j] = (float)(q5_level(x[b].qs, qh, j) - 16) * d;
  }
}

static void q5_0_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q5_0 *y = vy;
  for (int64_t b = 0; b < n / QK; b++) {
    const float *xb = x + b * QK;
    float d = signed_absmax(xb, QK) / -16.0f, id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = q_f2h(d);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; j++) {
      int q0 = (int8_t)(xb[j] * id + 16.5f), q1 = (int8_t)(xb[j + QK / 2] * id + 16.5f);
      q0 = q0 < 31 ? q0 : 31;
      q1 = q1 < 31 ? q1 : 31;
      y[b].qs[j] = (uint8_t)((q0 & 15) | ((q1 & 15) << 4));
      qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + QK / 2);
    }
    store_qh(y[b].qh, qh);
  }
}

static void q5_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q5_0 *x = vx;
  const block_q8_0 *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    uint32_t qh = load_qh(x[b].qh);
    int isum = 0;
    for (int j = 0; j < QK; j++) isum += (q5_level(x[b].qs, qh, j) - 16) * y[b].qs[j];
    sum += (float)isum * (q_h2f(x[b].d) * q_h2f(y[b].d));
  }
  *s = sum;
}

static void q5_1_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q5_1 *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    float d = q_h2f(x[b].d), m = q_h2f(x[b].m);
    uint32_t qh = load_qh(x[b].qh);
    for (int j = 0; j < QK; j++) y[b * QK + j] = (float)q5_level(x[b].qs, qh, j) * d + m;
  }
}

static void q5_1_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q5_1 *y = vy;
  for (int64_t b = 0; b < n / QK; b++) {
    const float *xb = x + b * QK;
    float mn, mx;
    minmax(xb, QK, &mn, &mx);
    float d = (mx - mn) / 31.0f, id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = q_f2h(d);
    y[b].m = q_f2h(mn);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; j++) {
      int q0 = clampi((int)((xb[j] - mn) * id + 0.5f), 0, 31);
      int q1 = clampi((int)((xb[j + QK / 2] - mn) * id + 0.5f), 0, 31);
      y[b].qs[j] = (uint8_t)((q0 & 15) | ((q1 & 15) << 4));
      qh |= (uint32_t)(q0 >> 4) << j | (uint32_t)(q1 >> 4) << (j + QK / 2);
    }
    store_qh(y[b].qh, qh);
  }
}

static void q5_1_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q5_1 *x = vx;
  const block_q8_1 *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    uint32_t qh = load_qh(x[b].qh);
    int isum = 0;
    for (int j = 0; j < QK; j++) isum += q5_level(x[b].qs, qh, j) * y[b].qs[j];
    sum += (float)isum * (q_h2f(x[b].d) * q_h2f(y[b].d)) + q_h2f(x[b].m) * q_h2f(y[b].s);
  }
  *s = sum;
}

static void q8_1_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q8_1 *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    float d = q_h2f(x[b].d);
    for (int j = 0; j < QK; j++) y[b * QK + j] = (float)x[b].qs[j] * d;
  }
}

static void q8_1_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q8_1 *y = vy;
  for (int64_t b = 0; b < n / QK; b++) {
    const float *xb = x + b * QK;
    float amax = 0;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK; j++) {
      y[b].qs[j] = round_i8(xb[j] * id);
      sum += y[b].qs[j];
    }
    /* s from the stored d, so that s = d * sum(q) holds for the values a dot actually sees
     * (and stays 0 where d underflows in fp16) */
    y[b].d = q_f2h(d);
    y[b].s = q_f2h((float)sum * q_h2f(y[b].d));
  }
}

static void q8_1_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_q8_1 *x = vx, *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    int isum = 0;
    for (int j = 0; j < QK; j++) isum += x[b].qs[j] * y[b].qs[j];
    sum += (float)isum * (q_h2f(x[b].d) * q_h2f(y[b].d));
  }
  *s = sum;
}

/* ---------------------------------------------------------------- IQ4_NL */

const int8_t nllm_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113};

static void iq4_nl_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_iq4_nl *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    float d = q_h2f(x[b].d);
    for (int j = 0; j < QK / 2; j++) {
      y[b * QK + j] = d * (float)nllm_iq4nl_values[x[b].qs[j] & 15];
      y[b * QK + j + QK / 2] = d * (float)nllm_iq4nl_values[x[b].qs[j] >> 4];
    }
  }
}

/* Best scale for one 32-block of the non-uniform grid: try scales that put the extreme value
 * near each end of the grid and keep the one with the least x^2-weighted error (the weighted
 * least-squares scale for the chosen levels). Returns the scale, levels in q. */
static float iq4_block_scale(const float *x, uint8_t *q, int n) {
  const int8_t *L = nllm_iq4nl_values;
  float max = signed_absmax(x, n);
  if (max == 0) {
    memset(q, 0, (size_t)n);
    return 0;
  }
  float best_d = 0, best = -1;
  for (int itry = -7; itry <= 7; itry++) {
    float id = ((float)itry + (float)L[0]) / max;
    float sqx = 0, sq2 = 0;
    uint8_t tmp[QK];
    for (int j = 0; j < n; j++) {
      tmp[j] = (uint8_t)nllm_iq4nl_nearest(id * x[j]);
      float w = x[j] * x[j], l = (float)L[tmp[j]];
      sqx += w * l * x[j];
      sq2 += w * l * l;
    }
    if (sq2 > 0 && (best < 0 || sqx * sqx > best * sq2)) {
      best_d = sqx / sq2;
      best = best_d * sqx;
      memcpy(q, tmp, (size_t)n);
    }
  }
  return best_d;
}

static void iq4_nl_from_float_ref(const float *x, void *vy, int64_t n) {
  block_iq4_nl *y = vy;
  for (int64_t b = 0; b < n / QK; b++) {
    uint8_t q[QK];
    float d = iq4_block_scale(x + b * QK, q, QK);
    y[b].d = q_f2h(d);
    /* levels for the scale as stored */
    float dh = q_h2f(y[b].d), id = dh != 0 ? 1.0f / dh : 0.0f;
    for (int j = 0; j < QK; j++) q[j] = (uint8_t)nllm_iq4nl_nearest(id * x[b * QK + j]);
    for (int j = 0; j < QK / 2; j++) y[b].qs[j] = (uint8_t)(q[j] | q[j + QK / 2] << 4);
  }
}

static void iq4_nl_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const block_iq4_nl *x = vx;
  const block_q8_0 *y = vy;
  float sum = 0;
  for (int64_t b = 0; b < n / QK; b++) {
    int isum = 0;
    for (int j = 0; j < QK / 2; j++)
      isum += nllm_iq4nl_values[x[b].qs[j] & 15] * y[b].qs[j] +
              nllm_iq4nl_values[x[b].qs[j] >> 4] * y[b].qs[j + QK / 2];
    sum += (float)isum * (q_h2f(x[b].d) * q_h2f(y[b].d));
  }
  *s = sum;
}

/* The scalar rows: every function of each type, and the type its activations take. */
static const nllm_qtype_kernels ref_rows[] = {
    {.type = NLLM_TYPE_F32,
     .vec_dot_type = NLLM_TYPE_F32,
     .to_float = f32_to_float_ref,
     .from_float = f32_from_float_ref,
     .vec_dot = f32_vec_dot_ref},
    {.type = NLLM_TYPE_F16,
     .vec_dot_type = NLLM_TYPE_F32,
     .to_float = f16_to_float_ref,
     .from_float = f16_from_float_ref,
     .vec_dot = f16_vec_dot_ref},
    {.type = NLLM_TYPE_BF16,
     .vec_dot_type = NLLM_TYPE_F32,
     .to_float = bf16_to_float_ref,
     .from_float = bf16_from_float_ref,
     .vec_dot = bf16_vec_dot_ref},
    {.type = NLLM_TYPE_Q8_0,
     .vec_dot_type = NLLM_TYPE_Q8_0,
     .to_float = q8_0_to_float_ref,
     .from_float = q8_0_from_float_ref,
     .vec_dot = q8_0_vec_dot_ref},
    {.type = NLLM_TYPE_Q4_0,
     .vec_dot_type = NLLM_TYPE_Q8_0,
     .to_float = q4_0_to_float_ref,
     .from_float = q4_0_from_float_ref,
     .vec_dot = q4_0_vec_dot_ref},
    {.type = NLLM_TYPE_Q4_1,
     .vec_dot_type = NLLM_TYPE_Q8_1,
     .to_float = q4_1_to_float_ref,
     .from_float = q4_1_from_float_ref,
     .vec_dot = q4_1_vec_dot_ref},
    {.type = NLLM_TYPE_Q5_0,
     .vec_dot_type = NLLM_TYPE_Q8_0,
     .to_float = q5_0_to_float_ref,
     .from_float = q5_0_from_float_ref,
     .vec_dot = q5_0_vec_dot_ref},
    {.type = NLLM_TYPE_Q5_1,
     .vec_dot_type = NLLM_TYPE_Q8_1,
     .to_float = q5_1_to_float_ref,
     .from_float = q5_1_from_float_ref,
     .vec_dot = q5_1_vec_dot_ref},
    {.type = NLLM_TYPE_Q8_1,
     .vec_dot_type = NLLM_TYPE_Q8_1,
     .to_float = q8_1_to_float_ref,
     .from_float = q8_1_from_float_ref,
     .vec_dot = q8_1_vec_dot_ref},
    {.type = NLLM_TYPE_IQ4_NL,
     .vec_dot_type = NLLM_TYPE_Q8_0,
     .to_float = iq4_nl_to_float_ref,
     .from_float = iq4_nl_from_float_ref,
     .vec_dot = iq4_nl_vec_dot_ref},
};
const nllm_kernel_set nllm_kernels_ref = {ref_rows, sizeof ref_rows / sizeof ref_rows[0]};

/* ---------------------------------------------------------------- batch tiles (quant_tile.h) */
/* Each block unpacked to the levels its vec_dot above multiplies, with the same factors. */

static void q8_0_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_q8_0 *x = (const block_q8_0 *)(const void *)xb;
  memcpy(u->w, x->qs, QK);
  u->scale[0] = 1;
  u->f[0] = q_h2f(x->d);
}

static void q8_1_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_q8_1 *x = (const block_q8_1 *)(const void *)xb;
  memcpy(u->w, x->qs, QK);
  u->scale[0] = 1;
  u->f[0] = q_h2f(x->d);
}

/* Q4_0 and Q4_1: the nibbles, less 8 where the format is symmetric */
static void q4_0_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_q4_0 *x = (const block_q4_0 *)(const void *)xb;
  for (int j = 0; j < QK / 2; j++) {
    u->w[j] = (int8_t)((x->qs[j] & 15) - 8);
    u->w[j + QK / 2] = (int8_t)((x->qs[j] >> 4) - 8);
  }
  u->scale[0] = 1;
  u->f[0] = q_h2f(x->d);
}

static void q4_1_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_q4_1 *x = (const block_q4_1 *)(const void *)xb;
  for (int j = 0; j < QK / 2; j++) {
    u->w[j] = (int8_t)(x->qs[j] & 15);
    u->w[j + QK / 2] = (int8_t)(x->qs[j] >> 4);
  }
  u->scale[0] = 1;
  u->f[0] = q_h2f(x->d);
  u->f[1] = q_h2f(x->m);
}

static void q5_0_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_q5_0 *x = (const block_q5_0 *)(const void *)xb;
  const uint32_t qh = load_qh(x->qh);
  for (int j = 0; j < QK; j++) u->w[j] = (int8_t)(q5_level(x->qs, qh, j) - 16);
  u->scale[0] = 1;
  u->f[0] = q_h2f(x->d);
}

static void q5_1_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_q5_1 *x = (const block_q5_1 *)(const void *)xb;
  const uint32_t qh = load_qh(x->qh);
  for (int j = 0; j < QK; j++) u->w[j] = (int8_t)q5_level(x->qs, qh, j);
  u->scale[0] = 1;
  u->f[0] = q_h2f(x->d);
  u->f[1] = q_h2f(x->m);
}

static void iq4_nl_unpack(const uint8_t *restrict xb, nllm_tile_block *restrict u) {
  const block_iq4_nl *x = (const block_iq4_nl *)(const void *)xb;
  for (int j = 0; j < QK / 2; j++) {
    u->w[j] = nllm_iq4nl_values[x->qs[j] & 15];
    u->w[j + QK / 2] = nllm_iq4nl_values[x->qs[j] >> 4];
  }
  u->scale[0] = 1;
  u->f[0] = q_h2f(x->d);
}

#define TILE_CODEC(name, vtype, sum)           \
  static const nllm_tile_codec name##_tile = { \
      QK, QK, vtype, sizeof(block_##name), name##_unpack, sum, 1.0f}
TILE_CODEC(q8_0, NLLM_TYPE_Q8_0, tile_sum_scaled);
TILE_CODEC(q8_1, NLLM_TYPE_Q8_1, tile_sum_scaled);
TILE_CODEC(q4_0, NLLM_TYPE_Q8_0, tile_sum_scaled);
TILE_CODEC(q4_1, NLLM_TYPE_Q8_1, tile_sum_offset);
TILE_CODEC(q5_0, NLLM_TYPE_Q8_0, tile_sum_scaled);
TILE_CODEC(q5_1, NLLM_TYPE_Q8_1, tile_sum_offset);
TILE_CODEC(iq4_nl, NLLM_TYPE_Q8_0, tile_sum_scaled);
#undef TILE_CODEC
NLLM_TILE_KERNELS(q8_0, q8_0_tile)
NLLM_TILE_KERNELS(q8_1, q8_1_tile)
NLLM_TILE_KERNELS(q4_0, q4_0_tile)
NLLM_TILE_KERNELS(q4_1, q4_1_tile)
NLLM_TILE_KERNELS(q5_0, q5_0_tile)
NLLM_TILE_KERNELS(q5_1, q5_1_tile)
NLLM_TILE_KERNELS(iq4_nl, iq4_nl_tile)

/* Laid over the scalar tier only (kernels/qtypes.c). */
static const nllm_qtype_kernels ref_tile_rows[] = {
    NLLM_TILE_ROW(NLLM_TYPE_Q8_0, q8_0),     NLLM_TILE_ROW(NLLM_TYPE_Q8_1, q8_1),
    NLLM_TILE_ROW(NLLM_TYPE_Q4_0, q4_0),     NLLM_TILE_ROW(NLLM_TYPE_Q4_1, q4_1),
    NLLM_TILE_ROW(NLLM_TYPE_Q5_0, q5_0),     NLLM_TILE_ROW(NLLM_TYPE_Q5_1, q5_1),
    NLLM_TILE_ROW(NLLM_TYPE_IQ4_NL, iq4_nl),
};
const nllm_kernel_set nllm_kernels_ref_tiles = {ref_tile_rows,
                                                sizeof ref_tile_rows / sizeof ref_tile_rows[0]};
