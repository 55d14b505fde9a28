/* CUDA backend benchmarks, reported as fractions of what the device measurably does:
 * - copy: device-to-device memcpy bandwidth (read + write bytes / time, median of runs), the
 *   yardstick for the memory-bound decode kernels;
 * - matvec: one token through a weight of each device format and model shape, as GB/s of
 *   weight bytes read, and as a fraction of the copy bandwidth (target >= 0.8 on H100/H200);
 * - GEMM: prompt-sized products in TFLOP/s, against cuBLAS's own F16 rate on an 8192^3 product
 *   (target >= 0.5);
 * - attention: decode over a 4k context and a 4k-token prompt.
 * Kernel time is taken with CUDA events; matvecs run over enough weight copies to exceed the L2
 * cache, so cache hits do not flatter the numbers (each is one launch, as in the forward pass). */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "cuda/backend_cuda.h"
#include "qtypes.h"

static nllm_cuda *cu;
static cudaStream_t stream;

#define OK(call)                                                                \
  do {                                                                          \
    nllm_status st_ = (call);                                                   \
    if (st_ != NLLM_OK) {                                                       \
      fprintf(stderr, "bench_cuda: %s failed: %s\n", #call, nllm_last_error()); \
      exit(1);                                                                  \
    }                                                                           \
  } while (0)

typedef struct {
  cudaEvent_t a, b;
} timer;
static void t_start(timer *t) {
  cudaEventCreate(&t->a);
  cudaEventCreate(&t->b);
  cudaEventRecord(t->a, stream);
}
static double t_stop_ms(timer *t) {
  float ms = 0;
  cudaEventRecord(t->b, stream);
  cudaEventSynchronize(t->b);
  cudaEventElapsedTime(&ms, t->a, t->b);
  cudaEventDestroy(t->a);
  cudaEventDestroy(t->b);
  return ms;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static uint64_t rng = 88172645463325252ull;
static void fill_bytes(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    memcpy(p + i, &rng, n - i < 8 ? n - i : 8);
  }
}

/* Random blocks with every F16 field set to a small finite value, so no NaN/inf flows. */
static void fill_weight(uint8_t *p, int32_t type, int64_t rows, int64_t cols) {
  const size_t rs = nllm_row_size(type, cols), n = rs * (size_t)rows;
  fill_bytes(p, n);
  const uint16_t h = nllm_fp32_to_fp16(0.01f);
  if (type == NLLM_TYPE_F16) {
    for (size_t i = 0; i < n / 2; i++) ((uint16_t *)p)[i] = (uint16_t)(h ^ (p[2 * i] & 0x8300));
    return;
  }
  const nllm_qtype *q = nllm_qtype_get(type);
  const size_t nb = n / (size_t)q->type_size;
  for (size_t b = 0; b < nb; b++) {
    uint8_t *blk = p + b * (size_t)q->type_size;
    switch (type) {
      case NLLM_TYPE_Q4_K:
      case NLLM_TYPE_Q5_K:
        memcpy(blk, &h, 2);
        memcpy(blk + 2, &h, 2);
        break;
      case NLLM_TYPE_Q6_K: memcpy(blk + 208, &h, 2); break;
      default: memcpy(blk, &h, 2); break; /* Q4_0, Q8_0: d first */
    }
  }
}

static double copy_bandwidth(void) {
  const size_t bytes = (size_t)1 << 30;
  void *a, *b;
  OK(nllm_cuda_alloc(cu, bytes, "copy probe src", &a));
  OK(nllm_cuda_alloc(cu, bytes, "copy probe dst", &b));
  OK(nllm_cuda_memset(cu, a, 1, bytes));
  double ms[15];
  for (int i = 0; i < 15; i++) {
    timer t;
    t_start(&t);
    OK(nllm_cuda_copy(cu, b, a, bytes));
    ms[i] = t_stop_ms(&t);
  }
  qsort(ms, 15, sizeof ms[0], cmp_double);
  nllm_cuda_dfree(cu, a);
  nllm_cuda_dfree(cu, b);
  const double gbs = 2.0 * (double)bytes / (ms[7] * 1e-3) / 1e9;
  printf("copy: device-to-device 1 GiB, median %.3f ms: %.0f GB/s (read + write)\n", ms[7], gbs);
  return gbs;
}

static const int32_t mv_types[] = {NLLM_TYPE_Q4_0, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_K,
                                   NLLM_TYPE_Q5_K, NLLM_TYPE_Q6_K, NLLM_TYPE_F16};
static const struct {
  const char *what;
  int64_t rows, cols;
} mv_shapes[] = {
    {"1.1B ffn up/gate", 5632, 2048}, {"1.1B ffn down", 2048, 5632},
    {"1.1B attn q/o", 2048, 2048},    {"8B attn q/o", 4096, 4096},
    {"8B ffn up/gate", 14336, 4096},  {"8B ffn down", 4096, 14336},
    {"8B output", 128256, 4096},
};

static void bench_matvec(double copy_gbs, int64_t n_tok) {
  printf("\nmatvec (n_tok %lld): GB/s of weights read, fraction of copy bandwidth\n",
         (long long)n_tok);
  printf("%-18s %12s", "shape", "");
  for (size_t ti = 0; ti < sizeof mv_types / sizeof mv_types[0]; ti++)
    printf(" %14s", nllm_qtype_get(mv_types[ti])->name);
  printf("\n");
  for (size_t si = 0; si < sizeof mv_shapes / sizeof mv_shapes[0]; si++) {
    const int64_t rows = mv_shapes[si].rows, cols = mv_shapes[si].cols;
    printf("%-18s %5lldx%-6lld", mv_shapes[si].what, (long long)rows, (long long)cols);
    float *x, *y;
    OK(nllm_cuda_alloc(cu, (size_t)(n_tok * cols) * 4, "x", (void **)&x));
    OK(nllm_cuda_alloc(cu, (size_t)(n_tok * rows) * 4, "y", (void **)&y));
    OK(nllm_cuda_memset(cu, x, 0x3c, (size_t)(n_tok * cols) * 4)); /* ~0.0116 */
    for (size_t ti = 0; ti < sizeof mv_types / sizeof mv_types[0]; ti++) {
      const int32_t type = mv_types[ti];
      const size_t bytes = nllm_row_size(type, cols) * (size_t)rows;
      int copies = (int)(((size_t)512 << 20) / bytes) + 1; /* > 512 MiB in all: no L2 reuse */
      if (copies > 64) copies = 64;
      uint8_t *h = malloc(bytes);
      fill_weight(h, type, rows, cols);
      nllm_cuda_weight *w = calloc((size_t)copies, sizeof *w);
      OK(nllm_cuda_weight_upload(cu, h, type, rows, cols, "bench", &w[0]));
      free(h);
      for (int c = 1; c < copies; c++) { /* device copies: no second trip over PCIe */
        w[c] = w[0];
        OK(nllm_cuda_alloc(cu, bytes, "bench weight copy", &w[c].data));
        OK(nllm_cuda_copy(cu, w[c].data, w[0].data, bytes));
      }
      OK(nllm_cuda_reserve(cu, n_tok, cols, rows, 16, 1, 64));
      /* warm-up run, then every copy once per repetition */
      for (int c = 0; c < copies; c++) OK(nllm_cuda_matmul(cu, y, &w[c], x, n_tok));
      OK(nllm_cuda_sync(cu));
      const int reps = 5;
      timer t;
      t_start(&t);
      for (int r = 0; r < reps; r++)
        for (int c = 0; c < copies; c++) OK(nllm_cuda_matmul(cu, y, &w[c], x, n_tok));
      const double ms = t_stop_ms(&t);
      const double gbs = (double)bytes * copies * reps / (ms * 1e-3) / 1e9;
      printf(" %6.0f (%4.2f)", gbs, gbs / copy_gbs);
      for (int c = 0; c < copies; c++) nllm_cuda_weight_free(cu, &w[c]);
      free(w);
    }
    printf("\n");
    nllm_cuda_dfree(cu, x);
    nllm_cuda_dfree(cu, y);
  }
}

static double gemm_tflops(int32_t type, int64_t rows, int64_t cols, int64_t n_tok, int reps) {
  const size_t bytes = nllm_row_size(type, cols) * (size_t)rows;
  uint8_t *h = malloc(bytes);
  fill_weight(h, type, rows, cols);
  nllm_cuda_weight w;
  OK(nllm_cuda_weight_upload(cu, h, type, rows, cols, "bench", &w));
  free(h);
  float *x, *y;
  OK(nllm_cuda_alloc(cu, (size_t)(n_tok * cols) * 4, "x", (void **)&x));
  OK(nllm_cuda_alloc(cu, (size_t)(n_tok * rows) * 4, "y", (void **)&y));
  OK(nllm_cuda_memset(cu, x, 0x3c, (size_t)(n_tok * cols) * 4));
  OK(nllm_cuda_matmul(cu, y, &w, x, n_tok)); /* warm-up: cuBLAS picks its kernel, scratch grows */
  timer t;
  t_start(&t);
  for (int r = 0; r < reps; r++) OK(nllm_cuda_matmul(cu, y, &w, x, n_tok));
  const double ms = t_stop_ms(&t) / reps;
  nllm_cuda_weight_free(cu, &w);
  nllm_cuda_dfree(cu, x);
  nllm_cuda_dfree(cu, y);
  return 2.0 * (double)rows * (double)cols * (double)n_tok / (ms * 1e-3) / 1e12;
}

static void bench_gemm(void) {
  const double peak = gemm_tflops(NLLM_TYPE_F16, 8192, 8192, 8192, 5);
  printf("\nGEMM: cuBLAS F16 8192^3 through nllm_cuda_matmul: %.0f TFLOP/s (the reference)\n",
         peak);
  static const struct {
    int64_t rows, cols, n_tok;
  } shapes[] = {{4096, 4096, 512}, {14336, 4096, 512}, {4096, 14336, 512},
                {5632, 2048, 512}, {4096, 4096, 2048}, {14336, 4096, 2048}};
  static const int32_t types[] = {NLLM_TYPE_F16, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_K, NLLM_TYPE_Q6_K};
  printf("%-20s", "rows x cols x n_tok");
  for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
    printf(" %15s", nllm_qtype_get(types[ti])->name);
  printf("   TFLOP/s (fraction of the reference; quantized rows include dequantization)\n");
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    printf("%5lldx%5lldx%5lld   ", (long long)shapes[si].rows, (long long)shapes[si].cols,
           (long long)shapes[si].n_tok);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
      double tf = gemm_tflops(types[ti], shapes[si].rows, shapes[si].cols, shapes[si].n_tok, 10);
      printf(" %7.0f (%4.2f)", tf, tf / peak);
    }
    printf("\n");
  }
}

static void bench_attention(void) {
  const int64_t n_head = 32, n_kv = 8, hd = 128, n_ctx = 4096, kv_row = n_kv * hd;
  void *k, *v;
  float *q, *out;
  OK(nllm_cuda_alloc(cu, (size_t)(n_ctx * kv_row) * 2, "k", &k));
  OK(nllm_cuda_alloc(cu, (size_t)(n_ctx * kv_row) * 2, "v", &v));
  OK(nllm_cuda_alloc(cu, (size_t)(n_ctx * n_head * hd) * 4, "q", (void **)&q));
  OK(nllm_cuda_alloc(cu, (size_t)(n_ctx * n_head * hd) * 4, "out", (void **)&out));
  OK(nllm_cuda_memset(cu, k, 0x2a, (size_t)(n_ctx * kv_row) * 2));
  OK(nllm_cuda_memset(cu, v, 0x2a, (size_t)(n_ctx * kv_row) * 2));
  OK(nllm_cuda_memset(cu, q, 0x3c, (size_t)(n_ctx * n_head * hd) * 4));
  nllm_cuda_attn_args a = {.attn.out = out,
                           .attn.q = q,
                           .attn.k = k,
                           .attn.v = v,
                           .attn.n_head = n_head,
                           .attn.n_head_kv = n_kv,
                           .attn.head_dim = hd,
                           .attn.scale = 0.088f,
                           .kv_type = NLLM_TYPE_F16,
                           .n_tok = 1,
                           .pos0 = n_ctx - 1};
  OK(nllm_cuda_attention(cu, &a));
  timer t;
  t_start(&t);
  for (int r = 0; r < 50; r++) OK(nllm_cuda_attention(cu, &a));
  double ms = t_stop_ms(&t) / 50;
  printf(
      "\nattention decode, 32/8 heads x 128, context 4096, F16 cache: %.1f us, %.0f GB/s of K/V\n",
      ms * 1e3, 2.0 * (double)(n_ctx * kv_row) * 2 / (ms * 1e-3) / 1e9);
  a.n_tok = n_ctx;
  a.pos0 = 0;
  OK(nllm_cuda_attention(cu, &a));
  t_start(&t);
  for (int r = 0; r < 3; r++) OK(nllm_cuda_attention(cu, &a));
  ms = t_stop_ms(&t) / 3;
  /* causal: half of the n^2 score and value products */
  const double flop = 4.0 * (double)n_head * hd * (double)n_ctx * (double)n_ctx / 2.0;
  printf("attention prompt, 4096 tokens: %.2f ms, %.1f TFLOP/s (%s)\n", ms,
         flop / (ms * 1e-3) / 1e12,
         nllm_cuda_attention_mma(&a) ? "tensor cores, WMMA F16" : "FP32 CUDA-core kernel");
  nllm_cuda_dfree(cu, k);
  nllm_cuda_dfree(cu, v);
  nllm_cuda_dfree(cu, q);
  nllm_cuda_dfree(cu, out);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (nllm_cuda_device_count() == 0) {
    printf("SKIP: no CUDA device\n");
    return 0;
  }
  OK(nllm_cuda_init(0, &cu));
  stream = (cudaStream_t)nllm_cuda_stream(cu);
  char name[256];
  int32_t cc;
  size_t fr, tot;
  OK(nllm_cuda_device_info(cu, name, sizeof name, &cc, &fr, &tot));
  printf("device: %s (compute %d.%d), %.1f GiB\n", name, cc / 10, cc % 10,
         (double)tot / 1073741824.0);
  const double copy_gbs = copy_bandwidth();
  bench_matvec(copy_gbs, 1);
  bench_matvec(copy_gbs, 4);
  bench_gemm();
  bench_attention();
  nllm_cuda_free(cu);
  return 0;
}
