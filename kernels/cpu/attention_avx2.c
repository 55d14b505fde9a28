/* AVX2 + FMA + F16C attention of one (token, KV head) pair over a span of the cache (see
 * attention.h): the whole visible context, normalized, or one chunk of it as a partial result
 * (max score, sum of exp, unnormalized weighted V sum) that attention.c merges.
 * The scalar attn_item in attention.c is the reference; this file runs only after
 * nllm_cpu_has_avx2() said yes, and only for head_dim a multiple of 8.
 *
 * Per chunk of up to 8 query heads sharing the KV head:
 *   scores: every K row is read and widened once, then FMA'd into one accumulator per
 *           (query head, position) lane; 8 accumulators are reduced together by a hadd tree.
 *   softmax: vector max and a polynomial exp; 1/sum is applied to the output, not to p.
 *   V:      output accumulators stay in registers over a block of positions whose V rows
 *           fit in L1, so each V row is widened once per slice of head_dim.
 * The pipeline is cpu/attention_body.h, which attention_avx512.c builds too; the helpers below
 * are this tier's alone. */
#define ATTN_FN(name) name##_avx2
#define ATTN_WIDE 0
#include "cpu/attention_body.h"

void nllm_exp_nonpos_avx2(float *x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, nllm_exp8_nonpos(_mm256_loadu_ps(x + i)));
  if (i < n) {
    float t[8] = {0};
    for (int64_t k = i; k < n; k++) t[k - i] = x[k];
    _mm256_storeu_ps(t, nllm_exp8_nonpos(_mm256_loadu_ps(t)));
    for (int64_t k = i; k < n; k++) x[k] = t[k - i];
  }
}

/* softcap * tanh(x / softcap). tanh(y) = sign(y) (1 - e) / (1 + e) with e = exp(-2|y|); near 0
 * that cancels, so |y| < 1/8 takes the odd series, whose next term is below 1e-10. */
ALWAYS_INLINE __m256 softcap_avx2(__m256 x, float softcap) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 y = _mm256_mul_ps(x, _mm256_set1_ps(1.0f / softcap));
  const __m256 ay = _mm256_andnot_ps(sign, y);
  const __m256 e = nllm_exp8_nonpos(_mm256_mul_ps(ay, _mm256_set1_ps(-2.0f)));
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 big = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
  big = _mm256_or_ps(big, _mm256_and_ps(sign, y));
  const __m256 y2 = _mm256_mul_ps(y, y);
  __m256 p = _mm256_set1_ps(62.0f / 2835);
  p = _mm256_fmadd_ps(p, y2, _mm256_set1_ps(-17.0f / 315));
  p = _mm256_fmadd_ps(p, y2, _mm256_set1_ps(2.0f / 15));
  p = _mm256_fmadd_ps(p, y2, _mm256_set1_ps(-1.0f / 3));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, y2), y, y);
  const __m256 t =
      _mm256_blendv_ps(big, small, _mm256_cmp_ps(ay, _mm256_set1_ps(0.125f), _CMP_LT_OQ));
  return _mm256_mul_ps(t, _mm256_set1_ps(softcap));
}

void nllm_softcap_avx2(float *x, int64_t n, float softcap) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, softcap_avx2(_mm256_loadu_ps(x + i), softcap));
  for (; i < n; i++) {
    float t[8] = {x[i]};
    _mm256_storeu_ps(t, softcap_avx2(_mm256_loadu_ps(t), softcap));
    x[i] = t[0];
  }
}
