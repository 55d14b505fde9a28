/* Matrix times activations for every weight format. Decode (one token) is bound by reading the
 * weights once, so rows are split evenly over threads and each row is read exactly once. With
 * several tokens each block of weight rows is reused for all tokens while it sits in cache;
 * float weights with many tokens go to OpenBLAS, which is compute-bound territory. */
#include <omp.h>
#include <stdint.h>

#include "cpu/quant.h"
#include "ops.h"
#include "qtypes.h"

#if !defined(NLLM_NO_BLAS)
#include <cblas.h>
#endif

/* Weight rows dequantized per sgemm call: large enough for sgemm to reach its speed, small
 * enough (256 x 8192 x 4 = 8 MiB at most for real models) to stay a modest scratch. */
#define BLAS_TILE_ROWS 256
/* Float weights go to sgemm from this many tokens on (measured in bench/bench_kernels.c). */
#define BLAS_MIN_TOKENS 16
/* Weight rows per work item: enough items for balance, and a block small enough to stay in L2
 * while every token of a tile passes over it. */
#define ROW_BLOCK 16
#define TOK_TILE 16

static int use_blas(int32_t wtype, int64_t n_tok) {
#if defined(NLLM_NO_BLAS)
  (void)wtype;
  (void)n_tok;
  return 0;
#else
  return n_tok >= BLAS_MIN_TOKENS &&
         (wtype == NLLM_TYPE_F32 || wtype == NLLM_TYPE_F16 || wtype == NLLM_TYPE_BF16);
#endif
}

static uint8_t *align64(void *p) {
  return (uint8_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

size_t nllm_matmul_wsize(int32_t wtype, int64_t cols, int64_t n_tok) {
  const nllm_qtype *q = nllm_qtype_get(wtype);
  if (!q) return 0;
  size_t need = 64; /* alignment slack */
  if (use_blas(wtype, n_tok)) {
    if (wtype != NLLM_TYPE_F32) need += (size_t)BLAS_TILE_ROWS * (size_t)cols * sizeof(float);
    return need;
  }
  if (q->vec_dot_type != NLLM_TYPE_F32)
    need += (size_t)n_tok * nllm_row_size(q->vec_dot_type, cols);
  return need;
}

#if !defined(NLLM_NO_BLAS)
/* Each OpenMP thread dequantizes its share of a row tile and runs a single-threaded sgemm on
 * it. OpenBLAS's own threads would compete with OpenMP's spinning workers for the same cores
 * (measured: 20x slower on 2 cores), so OpenBLAS is kept to one thread here. */
static void matmul_blas(float *y, const void *W, const nllm_qtype *q, int64_t rows, int64_t cols,
                        const float *x, int64_t n_tok, void *wdata, int n_threads) {
  openblas_set_num_threads(1);
  float *tile = (float *)align64(wdata);
  const size_t rs = nllm_row_size(q->type, cols);
  const int is_f32 = q->type == NLLM_TYPE_F32;
  const int64_t step = is_f32 ? rows : BLAS_TILE_ROWS; /* float rows need no tile */
  /* one parallel region: a thread only ever touches its own rows of each tile, so the
   * tiles need no barrier between them */
#pragma omp parallel num_threads(n_threads)
  {
    int nt = omp_get_num_threads(), it = omp_get_thread_num();
    for (int64_t r0 = 0; r0 < rows; r0 += step) {
      int64_t nr = rows - r0 < step ? rows - r0 : step;
      int64_t a = nr * it / nt, b = nr * (it + 1) / nt;
      if (b <= a) continue;
      const float *w;
      if (is_f32) {
        w = (const float *)W + (size_t)(r0 + a) * (size_t)cols;
      } else {
        for (int64_t r = a; r < b; r++)
          q->to_float((const uint8_t *)W + (size_t)(r0 + r) * rs, tile + r * cols, cols);
        w = tile + a * cols;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_tok, (int)(b - a), (int)cols,
                  1.0f, x, (int)cols, w, (int)cols, 0.0f, y + r0 + a, (int)rows);
    }
  }
}
#endif

void nllm_matmul(float *y, const void *W, int32_t wtype, int64_t rows, int64_t cols,
                 const float *x, int64_t n_tok, void *wdata, int n_threads) {
  const nllm_qtype *q = nllm_qtype_get(wtype);
  if (!q || rows <= 0 || n_tok <= 0) return;
  if (n_threads < 1) n_threads = 1;
#if !defined(NLLM_NO_BLAS)
  if (use_blas(wtype, n_tok)) {
    matmul_blas(y, W, q, rows, cols, x, n_tok, wdata, n_threads);
    return;
  }
#endif
  const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
  const size_t w_rs = nllm_row_size(wtype, cols);
  const uint8_t *act = (const uint8_t *)x;
  size_t a_rs = (size_t)cols * sizeof(float);
  if (q->vec_dot_type != NLLM_TYPE_F32) {
    act = align64(wdata);
    a_rs = nllm_row_size(q->vec_dot_type, cols);
  }
  const int64_t n_blocks = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
  const nllm_vec_dot_fn dot = q->vec_dot;

#pragma omp parallel num_threads(n_threads)
  {
    if (q->vec_dot_type != NLLM_TYPE_F32) {
      /* each activation row is quantized once, then shared by every weight row */
#pragma omp for schedule(static)
      for (int64_t t = 0; t < n_tok; t++)
        vq->from_float(x + t * cols, (uint8_t *)act + (size_t)t * a_rs, cols);
    }
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < n_blocks; blk++) {
      int64_t r0 = blk * ROW_BLOCK, r1 = r0 + ROW_BLOCK < rows ? r0 + ROW_BLOCK : rows;
      for (int64_t t0 = 0; t0 < n_tok; t0 += TOK_TILE) {
        int64_t t1 = t0 + TOK_TILE < n_tok ? t0 + TOK_TILE : n_tok;
        for (int64_t r = r0; r < r1; r++) {
          const uint8_t *wr = (const uint8_t *)W + (size_t)r * w_rs;
          for (int64_t t = t0; t < t1; t++) dot(cols, &y[t * rows + r], wr, act + (size_t)t * a_rs);
        }
      }
    }
  }
}
