/* e^x for x <= 0 in AVX2 + FMA, shared by the AVX2 kernels that need it (softmax in attention,
 * erf GELU). Include only from files compiled with those flags (*_avx2.c). */
#ifndef NLLM_EXP_AVX2_H
#define NLLM_EXP_AVX2_H

#include <immintrin.h>

/* e^x for x <= 0 (softmax arguments after subtracting the max). Cody-Waite reduction to
 * r in [-ln2/2, ln2/2] and a degree-7 Taylor polynomial, whose truncation error (< 1e-8) is
 * below float rounding. Results under the smallest normal flush to 0; NaN stays NaN. */
static inline __m256 nllm_exp8_nonpos(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.33654f); /* ln(2^-126) */
  const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(lo, x); /* NaN in the second operand passes through */
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  /* n >= -126 after the clamp, so the biased exponent is at least 1 (a normal 2^n) */
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

#endif
