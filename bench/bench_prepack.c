/* One 5632 x 2048 matmul (the 1.1B FFN shape) from DRAM at 1, 2, 4, 8, 16, 32, 64 tokens: the plain rows
 * (nllm_matmul: row kernels, tiles, or per-call repacking) against the rows kept packed since
 * load (nllm_matmul_pk on nllm_prepack's copy), for the formats whose row has prepack.
 * `bench_prepack [threads [FORMAT,...]]`; thread CPU time, medians of RUNS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "ops.h"
#include "qtypes.h"

#define ROWS 5632
#define COLS 2048
#define WORKING_SET (256u << 20)
#define RUNS 41

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  const int nt = argc > 1 ? atoi(argv[1]) : 1;
  const char *only = argc > 2 ? argv[2] : NULL;
  static const int32_t types[] = {NLLM_TYPE_Q4_0, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_K, NLLM_TYPE_Q5_K,
                                  NLLM_TYPE_Q6_K};
  static const int toks[] = {1, 2, 4, 8, 16, 32, 64};
  float *x = malloc(sizeof(float) * COLS * 64), *y = malloc(sizeof(float) * ROWS * 64);
  for (int i = 0; i < COLS * 64; i++) x[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
  printf("%d thread(s), %d x %d, weights cycling through %u MiB; CPU ms per matmul (median)\n", nt,
         ROWS, COLS, WORKING_SET >> 20);
  printf("%-6s %4s %10s %10s %7s\n", "format", "tok", "plain", "prepacked", "ratio");
  for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
    const nllm_qtype *q = nllm_qtype_get(types[ti]);
    if (only && !strstr(only, q->name)) continue;
    const size_t rs = nllm_row_size(q->type, COLS), mat = rs * ROWS;
    const size_t pbytes = nllm_prepack_size(q->type, ROWS, COLS);
    if (!pbytes) {
      printf("%-6s no prepack in this tier\n", q->name);
      continue;
    }
    const int nmat = (int)(WORKING_SET / mat);
    uint8_t *W = nllm_aligned_alloc((size_t)nmat * mat),
            *P = nllm_aligned_alloc((size_t)nmat * pbytes);
    float *row = malloc(sizeof(float) * COLS);
    for (int r = 0; r < 256; r++) {
      for (int i = 0; i < COLS; i++)
        row[i] = (float)(((r + 1) * (i + 3) * 2654435761u) % 2001) / 1000.0f - 1.0f;
      q->from_float_ref(row, W + (size_t)r * rs, COLS);
    }
    for (size_t off = 256 * rs; off + 256 * rs <= (size_t)nmat * mat; off += 256 * rs)
      memcpy(W + off, W, 256 * rs);
    nllm_packed pk[64];
    for (int m = 0; m < nmat && m < 64; m++)
      nllm_prepack(W + (size_t)m * mat, q->type, ROWS, COLS, P + (size_t)m * pbytes, nt, &pk[m]);
    void *wd = nllm_aligned_alloc(nllm_matmul_wsize(q->type, COLS, 64, nt));
    for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
      double t[2][RUNS];
      for (int r = 0; r < RUNS; r++)
        for (int v = 0; v < 2; v++) {
          const int m = r % nmat;
          double t0 = cpu_ms();
          nllm_matmul_pk(y, W + (size_t)m * mat, v ? &pk[m] : NULL, q->type, ROWS, COLS, x, toks[k],
                         wd, nt, NLLM_MATMUL_EXACT);
          t[v][r] = cpu_ms() - t0;
        }
      qsort(t[0], RUNS, sizeof(double), cmp_d);
      qsort(t[1], RUNS, sizeof(double), cmp_d);
      printf("%-6s %4d %10.3f %10.3f %7.2f\n", q->name, toks[k], t[0][RUNS / 2], t[1][RUNS / 2],
             t[0][RUNS / 2] / t[1][RUNS / 2]);
    }
    nllm_aligned_free(wd);
    nllm_aligned_free(W);
    nllm_aligned_free(P);
    free(row);
  }
  free(x);
  free(y);
  return 0;
}
