/* Runs the CUDA backend's weight-unpacking code on the CPU (its helpers are __host__
 * __device__; dp4a is emulated) against the library's scalar reference, so the bit layouts of
 * the matrix-vector dot products and the dequantizer are checked on machines without a GPU.
 * Built with nvcc by `make CUDA=1 test-gpu-host`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/matmul.cu" /* the templates under test, compiled for the host as well */

extern "C" {
#include "qtypes.h"
}

static int n_pass, n_fail;
static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float frand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* quantize_act_kernel's arithmetic, on the host */
static void quantize_act_host(const float *x, int64_t n, int8_t *q, float2 *ds) {
  for (int64_t b = 0; b < n / 32; b++) {
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[32 * b + i]));
    const float d = amax / 127.0f;
    int sum = 0;
    for (int i = 0; i < 32; i++) {
      const int qi = amax == 0.0f ? 0 : (int)rintf(x[32 * b + i] / d);
      q[32 * b + i] = (int8_t)qi;
      sum += qi;
    }
    ds[b] = make_float2(d, d * (float)sum);
  }
}

template <int T>
static void check_type(int64_t cols) {
  const nllm_qtype *qt = nllm_qtype_get(T);
  const int64_t rows = 5;
  const size_t rs = nllm_row_size(T, cols);
  float *w = (float *)malloc(sizeof(float) * rows * cols),
        *wr = (float *)malloc(sizeof(float) * rows * cols);
  float *x = (float *)malloc(sizeof(float) * cols);
  uint8_t *wq = (uint8_t *)malloc(rs * rows);
  int8_t *aq = (int8_t *)aligned_alloc(64, (size_t)cols);
  float2 *ads = (float2 *)malloc(sizeof(float2) * (cols / 32));
  for (int64_t i = 0; i < rows * cols; i++) w[i] = frand() * (1 + (i % 7));
  for (int64_t i = 0; i < cols; i++) x[i] = frand();
  for (int64_t r = 0; r < rows; r++) {
    qt->from_float_ref(w + r * cols, wq + r * rs, cols);
    qt->to_float_ref(wq + r * rs, wr + r * cols, cols);
  }
  quantize_act_host(x, cols, aq, ads);
  int bad_deq = 0, bad_dot = 0;
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t e0 = 0; e0 < cols; e0 += 8) {
      float v[8];
      dequant8<T>(wq + r * rs, e0, v);
      for (int i = 0; i < 8; i++)
        if (fabsf(v[i] - wr[r * cols + e0 + i]) > 1e-6f * fabsf(wr[r * cols + e0 + i]) + 1e-30f)
          bad_deq++;
    }
    if constexpr (T != NLLM_TYPE_F16) {
      /* the dot with the int8 activations must equal the exact dot with their dequantized values */
      float acc = 0;
      for (int64_t u = 0; u < cols / unit_info<T>::elems; u++)
        unit_dot<T, 1>(wq + r * rs, u, aq, ads, cols, &acc);
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < cols; c++) {
        const double xa = (double)ads[c / 32].x * aq[c];
        ref += (double)wr[r * cols + c] * xa;
        mag += fabs((double)wr[r * cols + c] * xa);
      }
      if (!(fabs(acc - ref) <= 1e-5 * mag + 1e-6)) {
        bad_dot++;
        printf("  %s row %lld: unit_dot %g ref %g\n", qt->name, (long long)r, (double)acc, ref);
      }
    }
  }
  if (bad_deq || bad_dot) {
    n_fail++;
    printf("FAIL: %s cols %lld: %d dequantized elements and %d row dots differ\n", qt->name,
           (long long)cols, bad_deq, bad_dot);
  } else {
    n_pass++;
  }
  free(w);
  free(wr);
  free(x);
  free(wq);
  free(aq);
  free(ads);
}

int main(void) {
  static const int64_t cols[] = {256, 768, 4096};
  for (int i = 0; i < 3; i++) {
    const int64_t n = cols[i];
    nllm_cuda_native_types::each([n](auto t) { check_type<decltype(t)::value>(n); });
  }
  printf("%d passed, %d failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
