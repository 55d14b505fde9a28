/* AVX2 + FMA helpers of the CPU ops (ops.c's float dot, axpy, erf GELU and GLU): the AVX2 tier's
 * nllm_cpu_ops, which qtypes.c installs only after cpuid says the CPU has the instructions. */
#include <immintrin.h>

#include "cpu/exp_avx2.h"
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "cpu/quant.h"
#include "cpu/quant_avx2.h"

float nllm_dot_f32_avx2(const float *a, const float *b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

static void nllm_axpy_f32_avx2(float *y, float a, const float *x, int64_t n) {
  __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

/* gelu(x) = x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2. erfc(z) for z >= 0 by Abramowitz and
 * Stegun 7.1.26 (t = 1 / (1 + p z), a polynomial in t times e^-z^2; absolute error below
 * 1.5e-7), reflected for the other sign: no call into libm, 8 values at a time. */
static void nllm_gelu_erf_avx2(float *x, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 z = _mm256_andnot_ps(sign, _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f)));
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), z, one));
    __m256 q = _mm256_set1_ps(1.061405429f);
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-1.453152027f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(1.421413741f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(-0.284496736f));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(0.254829592f));
    /* half of erfc(|z|) */
    const __m256 h = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(q, t), _mm256_set1_ps(0.5f)),
                                   nllm_exp8_nonpos(_mm256_mul_ps(_mm256_xor_ps(z, sign), z)));
    /* Phi: h for negative x, 1 - h for positive */
    const __m256 neg = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 phi = _mm256_blendv_ps(_mm256_sub_ps(one, h), h, neg);
    _mm256_storeu_ps(x + i, _mm256_mul_ps(v, phi));
  }
  for (; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

/* act(g) up for 8 lanes, act(g) = g sigmoid(z), z = g (SiLU) or 2 sqrt(2/pi) (g + 0.044715 g^3)
 * (tanh GELU: 0.5 (1 + tanh(z/2)) = sigmoid(z)). sigmoid from e = e^-|z| only, which never
 * overflows: 1 / (1 + e) for z >= 0, e / (1 + e) below. */
static inline __m256 glu8(__m256 g, __m256 u, int gelu) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  /* -z, rounded as the reference rounds it (e^z magnifies a different rounding of z) */
  __m256 mz = _mm256_xor_ps(g, sign);
  if (gelu) {
    const __m256 c =
        _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), g), g), g);
    mz = _mm256_mul_ps(_mm256_set1_ps(-2.0f * 0.7978845608028654f), _mm256_add_ps(g, c));
  }
  const __m256 e = nllm_exp8_nonpos(_mm256_or_ps(mz, sign)); /* e^-|z| */
  const __m256 pos = _mm256_div_ps(one, _mm256_add_ps(one, e));
  const __m256 neg = _mm256_cmp_ps(mz, _mm256_setzero_ps(), _CMP_GT_OQ); /* z < 0 */
  const __m256 s = _mm256_blendv_ps(pos, _mm256_mul_ps(e, pos), neg);
  return _mm256_mul_ps(_mm256_mul_ps(g, s), u);
}

/* out = act(gate) up (see glu8). libm's expf per element was ~3% of a batched decode step
 * (perf, 1.1B at 64 rows). The tail goes through the same lanes (padded), so an element's
 * result does not depend on where it falls in the array: a row of a batch equals the same row
 * decoded alone (test_state compares them bit for bit). */
static void nllm_glu_avx2(float *out, const float *gate, const float *up, int64_t n, int gelu) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, glu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i), gelu));
  if (i < n) {
    float g[8] = {0}, u[8] = {0}, o[8];
    memcpy(g, gate + i, (size_t)(n - i) * sizeof(float));
    memcpy(u, up + i, (size_t)(n - i) * sizeof(float));
    _mm256_storeu_ps(o, glu8(_mm256_loadu_ps(g), _mm256_loadu_ps(u), gelu));
    memcpy(out + i, o, (size_t)(n - i) * sizeof(float));
  }
}

const nllm_cpu_ops nllm_cpu_ops_avx2 = {.dot_f32 = nllm_dot_f32_avx2,
                                        .axpy_f32 = nllm_axpy_f32_avx2,
                                        .attn_span = nllm_attn_span_avx2,
                                        .attn_rows = nllm_attn_rows_avx2,
                                        .gelu_erf = nllm_gelu_erf_avx2,
                                        .lowrank_dot = nllm_lowrank_dot_avx2,
                                        .lowrank_axpy = nllm_lowrank_axpy_avx2,
                                        .glu = nllm_glu_avx2};
