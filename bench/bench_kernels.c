/* Kernel speed as ratios measured in one run: matvec (decode) GB/s of weight data per format
 * against this machine's measured read bandwidth, and batched matmul GFLOP/s against OpenBLAS
 * sgemm on the same shape. 1 thread and all threads. `bench_kernels [threads [FORMAT,...]]`: the
 * second argument keeps only the named formats' rows (e.g. IQ1_S,IQ2_XXS). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "bandwidth.h"
#include "ops.h"
#include "qtypes.h"

#define ROWS 5632 /* a 1.1B model's FFN: 5632 x 2048 */
#define COLS 2048
#define WORKING_SET (192u << 20) /* well past any L3, so every matvec reads DRAM */
#define RUNS 9

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return v[n / 2];
}

/* A row of a format: quantized from x where the format has a quantizer; for the load-only ones
 * (no quantizer) random bytes with the block scale set to a small finite value, which reads the
 * same memory and does the same work per block. */
static void make_row(const nllm_qtype *q, const float *x, uint8_t *row, int64_t n, uint32_t seed) {
  if (q->from_float_ref) {
    q->from_float_ref(x, row, n);
    return;
  }
  size_t rs = nllm_row_size(q->type, n);
  for (size_t i = 0; i < rs; i++) {
    seed = seed * 1664525u + 1013904223u;
    row[i] = (uint8_t)(seed >> 24);
  }
  const uint16_t h = 0x2000; /* F16 2^-7 */
  for (uint8_t *b = row; b < row + rs; b += q->type_size) {
    if (q->type == NLLM_TYPE_MXFP4) {
      b[0] = 120;
    } else if (q->type == NLLM_TYPE_TQ1_0 || q->type == NLLM_TYPE_TQ2_0) {
      memcpy(b + q->type_size - 2, &h, 2);
    } else if (q->type == NLLM_TYPE_IQ1_M) { /* the F16 sits in the scale words' top nibbles */
      for (int k = 0; k < 4; k++) {
        uint8_t *hi = b + q->type_size - 8 + 2 * k + 1;
        *hi = (uint8_t)((*hi & 0x0f) | ((h >> (4 * k)) & 15) << 4);
      }
    } else {
      memcpy(b, &h, 2);
    }
  }
}

/* whether the format is in the comma-separated list (NULL: every format) */
static int selected(const char *list, const char *name) {
  if (!list) return 1;
  const size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
    if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
  return 0;
}

int main(int argc, char **argv) {
  int all = argc > 1 ? atoi(argv[1]) : omp_get_num_procs();
  const char *only = argc > 2 ? argv[2] : NULL;
  int thr[2] = {1, all};
  printf("cpu: %s, threads 1 and %d, matrix %d x %d\n", nllm_cpu_features(), all, ROWS, COLS);
  float *buf = nllm_aligned_alloc(WORKING_SET);
  if (!buf) return 1;
  for (size_t i = 0; i < WORKING_SET / 4; i++) buf[i] = (float)(i & 7);
  double bw[2];
  for (int k = 0; k < 2; k++) bw[k] = nllm_probe_read_gbs(WORKING_SET, thr[k], RUNS);
  printf("read bandwidth: %.1f GB/s (1 thread), %.1f GB/s (%d threads)\n", bw[0], bw[1], all);

  static const int32_t types[] = {
      NLLM_TYPE_F16, NLLM_TYPE_BF16, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_0, NLLM_TYPE_Q4_1, NLLM_TYPE_Q5_0,
      NLLM_TYPE_Q5_1, NLLM_TYPE_Q2_K, NLLM_TYPE_Q3_K, NLLM_TYPE_Q4_K, NLLM_TYPE_Q5_K,
      NLLM_TYPE_Q6_K, NLLM_TYPE_IQ4_NL, NLLM_TYPE_IQ4_XS,
      /* load-only */
      NLLM_TYPE_TQ1_0, NLLM_TYPE_TQ2_0, NLLM_TYPE_MXFP4, NLLM_TYPE_IQ1_S, NLLM_TYPE_IQ1_M,
      NLLM_TYPE_IQ2_XXS, NLLM_TYPE_IQ2_XS, NLLM_TYPE_IQ2_S, NLLM_TYPE_IQ3_XXS, NLLM_TYPE_IQ3_S};
  float *x = malloc(sizeof(float) * COLS * 64), *y = malloc(sizeof(float) * ROWS * 64);
  for (int i = 0; i < COLS * 64; i++) x[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
  /* every kernel tier this CPU has, the best last: on an AVX-512 machine the AVX2 row of a
   * format shows what the tier above it adds */
  const int top = nllm_qtypes_isa_max();
  for (int isa = top > NLLM_ISA_SCALAR ? NLLM_ISA_SIMD : NLLM_ISA_SCALAR; isa <= top; isa++) {
    nllm_qtypes_set_isa(isa);
    printf("\nkernels: %s\n%-7s %10s %9s %7s %10s %9s %7s\n", nllm_cpu_features(), "format",
           "1t ms", "GB/s", "of bw", "Nt ms", "GB/s", "of bw");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
      const nllm_qtype *q = nllm_qtype_get(types[ti]);
      if (!selected(only, q->name)) continue;
      size_t rs = nllm_row_size(q->type, COLS), mat = rs * ROWS;
      int nmat = (int)(WORKING_SET / mat);
      uint8_t *W = (uint8_t *)buf; /* the probe buffer, refilled: matrices cycle through it */
      /* 256 quantized rows copied over the whole working set: quantizing everything would
       * take longer than the measurement */
      for (int r = 0; r < 256; r++) {
        for (int i = 0; i < COLS; i++)
          x[i] = (float)(((r + 1) * (i + 3) * 2654435761u) % 2001) / 1000.0f - 1.0f;
        make_row(q, x, W + (size_t)r * rs, COLS, (uint32_t)r);
      }
      for (size_t off = 256 * rs; off + 256 * rs <= (size_t)nmat * mat; off += 256 * rs)
        memcpy(W + off, W, 256 * rs);
      void *wd = nllm_aligned_alloc(nllm_matmul_wsize(q->type, COLS, 1, all));
      double ms[2];
      for (int k = 0; k < 2; k++) {
        double t[RUNS * 4];
        for (int r = 0; r < RUNS * 4; r++) {
          double t0 = nllm_time_ms();
          nllm_matmul(y, W + (size_t)(r % nmat) * mat, q->type, ROWS, COLS, x, 1, wd, thr[k]);
          t[r] = nllm_time_ms() - t0;
        }
        ms[k] = median(t, RUNS * 4);
      }
      printf("%-7s %10.3f %9.1f %6.0f%% %10.3f %9.1f %6.0f%%\n", q->name, ms[0], mat / ms[0] / 1e6,
             100 * mat / ms[0] / 1e6 / bw[0], ms[1], mat / ms[1] / 1e6,
             100 * mat / ms[1] / 1e6 / bw[1]);
      nllm_aligned_free(wd);
    }
  }

  /* prefill: 64 tokens */
  const int NT = 64;
  float *wf = (float *)buf;
  for (size_t i = 0; i < (size_t)ROWS * COLS; i++)
    wf[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
  double flops = 2.0 * ROWS * COLS * NT, blas[2];
  /* OpenBLAS is the serial build (Makefile): sgemm itself runs on one thread; the N-thread
   * figure is the pool splitting the rows between single-threaded sgemm calls, as nllm_matmul
   * does for float weights. */
  void *wdf = nllm_aligned_alloc(nllm_matmul_wsize(NLLM_TYPE_F32, COLS, NT, all));
  for (int k = 0; k < 2; k++) {
    double t[RUNS];
    for (int r = 0; r < RUNS; r++) {
      double t0 = nllm_time_ms();
      if (k == 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, NT, ROWS, COLS, 1, x, COLS, wf, COLS,
                    0, y, ROWS);
      else
        nllm_matmul(y, wf, NLLM_TYPE_F32, ROWS, COLS, x, NT, wdf, thr[k]);
      t[r] = nllm_time_ms() - t0;
    }
    blas[k] = flops / median(t, RUNS) / 1e6;
  }
  nllm_aligned_free(wdf);
  printf("\nmatmul %d tokens (prompt processing), kernels: %s\n", NT, nllm_cpu_features());
  printf("OpenBLAS sgemm f32 on the same shape: %.1f GFLOP/s (1 thread), %.1f (%d threads)\n",
         blas[0], blas[1], all);
  printf("%-7s %9s %8s %9s %8s  %s\n", "format", "1t GF/s", "of sgemm", "Nt GF/s", "of sgemm",
         "path");
  static const int32_t mt[] = {
      NLLM_TYPE_F32,   NLLM_TYPE_F16,   NLLM_TYPE_BF16,  NLLM_TYPE_Q8_0,    NLLM_TYPE_Q4_0,
      NLLM_TYPE_Q4_1,  NLLM_TYPE_Q5_0,  NLLM_TYPE_Q5_1,  NLLM_TYPE_Q2_K,    NLLM_TYPE_Q3_K,
      NLLM_TYPE_Q4_K,  NLLM_TYPE_Q5_K,  NLLM_TYPE_Q6_K,  NLLM_TYPE_IQ4_NL,  NLLM_TYPE_IQ4_XS,
      NLLM_TYPE_TQ1_0, NLLM_TYPE_MXFP4, NLLM_TYPE_IQ1_S, NLLM_TYPE_IQ2_XXS, NLLM_TYPE_IQ3_S};
  uint8_t *Wq = malloc(nllm_row_size(NLLM_TYPE_F32, COLS) * ROWS);
  for (size_t m = 0; m < sizeof mt / sizeof mt[0]; m++) {
    const nllm_qtype *q = nllm_qtype_get(mt[m]);
    if (!selected(only, q->name)) continue;
    size_t rs = nllm_row_size(q->type, COLS);
    for (int r = 0; r < ROWS; r++) {
      if (r < 64)
        make_row(q, wf + (size_t)r * COLS, Wq + (size_t)r * rs, COLS, (uint32_t)r);
      else
        memcpy(Wq + (size_t)r * rs, Wq + (size_t)(r % 64) * rs, rs);
    }
    void *wd = nllm_aligned_alloc(nllm_matmul_wsize(q->type, COLS, NT, all));
    double gf[2];
    for (int k = 0; k < 2; k++) {
      double t[RUNS];
      for (int r = 0; r < RUNS; r++) {
        double t0 = nllm_time_ms();
        nllm_matmul(y, Wq, q->type, ROWS, COLS, x, NT, wd, thr[k]);
        t[r] = nllm_time_ms() - t0;
      }
      gf[k] = flops / median(t, RUNS) / 1e6;
    }
    printf("%-7s %9.1f %7.0f%% %9.1f %7.0f%%  %s\n", q->name, gf[0], 100 * gf[0] / blas[0], gf[1],
           100 * gf[1] / blas[1],
           nllm_matmul_uses_blas(q->type, NT, thr[1]) ? "dequantized to f32 + GEMM"
                                                      : "integer kernels");
    nllm_aligned_free(wd);
  }
  free(Wq);
  free(x);
  free(y);
  nllm_aligned_free(buf);
  return 0;
}
