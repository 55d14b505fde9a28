/* Read-bandwidth probe (see bandwidth.h). Each byte is loaded once through the vectorized dot
 * product x.x, the same loads a matvec issues, so kernel GB/s and probe GB/s compare directly. */
#include "bandwidth.h"

#include <stdlib.h>

#include "core/core.h"
#include "ops.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double nllm_probe_read_gbs(size_t bytes, int threads, int runs) {
  const size_t chunk = 4096, n = bytes / sizeof(float) / chunk * chunk;
  if (runs < 1) runs = 1;
  if (runs > 64) runs = 64;
  float *buf = nllm_aligned_alloc(n * sizeof(float));
  if (!buf || n == 0) {
    nllm_aligned_free(buf);
    return 0;
  }
  for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
  double t[64];
  volatile float sink = 0;
  for (int r = 0; r < runs; r++) {
    double t0 = nllm_time_ms();
    float tot = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : tot)
    for (size_t c = 0; c < n / chunk; c++)
      tot += nllm_dot_f32(buf + c * chunk, buf + c * chunk, (int64_t)chunk);
    t[r] = nllm_time_ms() - t0;
    sink += tot;
  }
  (void)sink;
  nllm_aligned_free(buf);
  qsort(t, (size_t)runs, sizeof *t, cmp_double);
  return (double)(n * sizeof(float)) / t[runs / 2] / 1e6;
}
