/* Scalar reference kernels: the definition of every format's meaning. The ISA versions are
 * tested against these, and CPUs without AVX2/NEON run them. */
#include <math.h>

#include "cpu/quant.h"

/* ---------------------------------------------------------------- F32 / F16 / BF16 */

void f32_to_float_ref(const void *x, float *y, int64_t n) { memcpy(y, x, (size_t)n * 4); }
void f32_from_float_ref(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * 4); }
void f32_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const float *x = vx, *y = vy;
  float sum = 0;
  for (int64_t i = 0; i < n; i++) sum += x[i] * y[i];
  *s = sum;
}

void f16_to_float_ref(const void *vx, float *y, int64_t n) {
  const uint16_t *x = vx;
  for (int64_t i = 0; i < n; i++) y[i] = q_h2f(x[i]);
}
void f16_from_float_ref(const float *x, void *vy, int64_t n) {
  uint16_t *y = vy;
  for (int64_t i = 0; i < n; i++) y[i] = q_f2h(x[i]);
}
/* Float weights dot float activations: the activation is already in cache during decode, so
 * converting it to half would save nothing and cost precision. */
void f16_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const uint16_t *x = vx;
  const float *y = vy;
  float sum = 0;
  for (int64_t i = 0; i < n; i++) sum += q_h2f(x[i]) * y[i];
  *s = sum;
}

void bf16_to_float_ref(const void *vx, float *y, int64_t n) {
  const uint16_t *x = vx;
  for (int64_t i = 0; i < n; i++) y[i] = q_bf2f(x[i]);
}
void bf16_from_float_ref(const float *x, void *vy, int64_t n) {
  uint16_t *y = vy;
  for (int64_t i = 0; i < n; i++) y[i] = nllm_fp32_to_bf16(x[i]);
}
void bf16_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
  const uint16_t *x = vx;
  const float *y = vy;
  float sum = 0;
  for (int64_t i = 0; i < n; i++) sum += q_bf2f(x[i]) * y[i];
  *s = sum;
}

/* ---------------------------------------------------------------- Q8_0 */

void q8_0_to_float_ref(const void *vx, float *y, int64_t n) {
  const block_q8_0 *x = vx;
  for (int64_t b = 0; b < n / QK; b++) {
    float d = q_h2f(x[b].d);
    for (int j = 0; j < QK; j++) y[b * QK + j] = (float)x[b].qs[j] * d;
  }
}

/* d = amax/127 so the largest magnitude maps to +-127; rounding half away from zero. */
void q8_0_from_float_ref(const float *x, void *vy, int64_t n) {
  block_q8_0 *y = vy;
  for (int64_t b = 0; b < n / QK; b++) {
    const float *xb = x + b * QK;
    float amax = 0;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
    float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = q_f2h(d);
    for (int j = 0; j < QK; j++) y[b].qs[j] = (int8_t)roundf(xb[j] * id);
  }
}

void q8_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
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

void q4_0_to_float_ref(const void *vx, float *y, int64_t n) {
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
void q4_0_from_float_ref(const float *x, void *vy, int64_t n) {
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

void q4_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy) {
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
