/* Weights kept packed from load against today's matmul on the plain rows, one thread: per format
 * and token count, the thread CPU time of nllm_matmul on plain rows (vec_dot4 at one token, the
 * tiles, the interleaved kernels with their repacking from packed_min_tokens) and of the packed
 * kernels on rows packed once beforehand (gemv_packed at one token, gemm_packed packed_tok tokens
 * a call, each group's rows under every token before the next group's), both with the
 * activations' quantization and preparation. Several matrices are cycled so that every call
 * reads its weights from DRAM, on huge pages where the OS gives them as a model's weights get
 * them (nllm_aligned_alloc; on 4 KiB pages Q8_0's 16 tokens ran 1.75 against 1.62 ms); the two
 * sides alternate and medians are quoted.
 * `bench_packed [FORMAT,...] [counts,...] [runs]`, e.g. bench_packed Q4_K,Q6_K 1,2,4,8 15.
 * Env: BENCH_PACKED_ROWS (rows instead of the 1.1B shapes'), BENCH_PACKED_COLS (their row
 * length), BENCH_PACKED_WS_MB (each side's
 * working set; 0: one matrix, in cache with few rows), BENCH_PACKED_TOK_OUTER (the packed side
 * calls by tokens first, each call over every group), BENCH_PACKED_NO_STREAM (no streaming pass:
 * gemm_packed in every pass, as a prompt's passes after the first). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "ops.h"
#include "qtypes.h"

#define WORKING_SET (160u << 20) /* each side's matrices, well past the L3 */

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return v[n / 2];
}
static double thread_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}
static int selected(const char *list, const char *name) {
  if (!list) return 1;
  const size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
    if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
  return 0;
}

/* The packed side of one matmul: what a loader's packed weights would run. */
/* The stride of packed groups in a weight packed from load: its rows' bytes, as a loader lays
 * them out (kernels/cpu/matmul.c), where the format's layout fits in them, else
 * NLLM_PACK_BYTES (the repacking path's). Found by what pack_rows writes. */
static size_t packed_group_bytes(const nllm_qtype *q, int64_t cols, size_t rs) {
  const int64_t gr = q->pack_group_rows;
  const size_t cap = NLLM_PACK_BYTES(cols) / NLLM_PACK_ROWS * (size_t)gr;
  uint8_t *w = calloc((size_t)gr, rs), *a = malloc(cap), *b = malloc(cap);
  for (size_t i = 0; i < (size_t)gr * rs; i++) w[i] = (uint8_t)(i * 2654435761u >> 13);
  memset(a, 0xa5, cap);
  memset(b, 0x5a, cap);
  q->pack_rows(cols, w, rs, a);
  q->pack_rows(cols, w, rs, b);
  size_t end = cap;
  while (end > 0 && a[end - 1] == 0xa5 && b[end - 1] == 0x5a) end--;
  free(w);
  free(a);
  free(b);
  return end <= (size_t)gr * rs ? (size_t)gr * rs : cap;
}

static void packed_matmul(const nllm_qtype *q, const nllm_qtype *vq, float *y, const uint8_t *pk,
                          size_t gb, int64_t rows, int64_t cols, const float *x, int64_t n_tok,
                          uint8_t *act, uint8_t *prep) {
  const size_t a_rs = nllm_row_size(vq->type, cols), p_rs = NLLM_GEMM_PREP_BYTES(cols);
  const int64_t gr = q->pack_group_rows;
  for (int64_t t = 0; t < n_tok; t++) {
    vq->from_float(x + t * cols, act + (size_t)t * a_rs, cols);
    q->packed_prep(cols, act + (size_t)t * a_rs, prep + (size_t)t * p_rs);
  }
  if (getenv("BENCH_PACKED_TOK_OUTER")) { /* every group under a call's tokens, call by call */
    for (int64_t t = 0, pass = 0, nt; t < n_tok; t += nt, pass++) {
      nt = nllm_qtype_pass_tokens(q, pass, n_tok - t);
      for (int64_t g = 0; g < rows / gr; g++)
        nllm_qtype_packed_kernel(q, n_tok, pass)(
            cols, y + (size_t)t * (size_t)rows + (size_t)(g * gr), (size_t)rows,
            pk + (size_t)g * gb, prep + (size_t)t * p_rs, p_rs, (int)nt);
    }
    return;
  }
  for (int64_t g = 0; g < rows / gr; g++) {
    const uint8_t *pg = pk + (size_t)g * gb;
    if (n_tok == 1 && q->gemv_packed) {
      q->gemv_packed(cols, y + g * gr, (size_t)rows, pg, prep, p_rs, 1);
      continue;
    }
    for (int64_t t = 0, pass = 0, nt; t < n_tok; t += nt, pass++) {
      nt = nllm_qtype_pass_tokens(q, pass, n_tok - t);
      nllm_qtype_packed_kernel(q, n_tok, pass)(
          cols, y + (size_t)t * (size_t)rows + (size_t)(g * gr), (size_t)rows, pg,
          prep + (size_t)t * p_rs, p_rs, (int)nt);
    }
  }
}

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : "Q4_K,Q5_K,Q6_K";
  const char *counts = argc > 2 ? argv[2] : "1,2,3,4,6,8,16";
  const int runs = argc > 3 ? atoi(argv[3]) : 9;
  static const int64_t shapes[][2] = {{5632, 2048}, {2048, 5632}};
  enum { TMAX = 64 };
  int tl[TMAX], nt_list = 0;
  for (const char *p = counts; *p && nt_list < TMAX;) {
    tl[nt_list++] = atoi(p);
    p = strchr(p, ',');
    if (!p) break;
    p++;
  }
  printf(
      "format rows x cols tokens: plain ms, packed ms, plain/packed (1 thread, thread CPU time, "
      "medians of %d alternated runs)\n",
      runs);
  static const int32_t types[] = {NLLM_TYPE_Q4_0, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_K,
                                  NLLM_TYPE_Q5_K, NLLM_TYPE_Q6_K, NLLM_TYPE_IQ4_XS};
  for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
    const nllm_qtype *q = nllm_qtype_get(types[ti]);
    if (!q || !selected(only, q->name) || !q->gemm_packed) continue;
    nllm_qtype no_stream = *q;
    if (getenv("BENCH_PACKED_NO_STREAM")) { /* every pass on gemm_packed, as a prompt's later ones */
      no_stream.stream_passes = 0;
      q = &no_stream;
    }
    const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
    for (int si = 0; si < 2; si++) {
      const char *rows_env = getenv("BENCH_PACKED_ROWS"); /* fewer rows: a matrix in cache */
      const char *cols_env = getenv("BENCH_PACKED_COLS");
      const int64_t rows = rows_env ? atoi(rows_env) : shapes[si][0],
                    cols = cols_env ? atoi(cols_env) : shapes[si][1];
      const size_t rs = nllm_row_size(q->type, cols), wsz = rs * (size_t)rows;
      const int64_t gr = q->pack_group_rows;
      const size_t gb = packed_group_bytes(q, cols, rs);
      const size_t psz = gb * (size_t)(rows / gr);
      /* env BENCH_PACKED_WS_MB: another working set (small: the kernels' compute alone) */
      const char *ws_env = getenv("BENCH_PACKED_WS_MB");
      const size_t ws = ws_env ? (size_t)atoi(ws_env) << 20 : WORKING_SET;
      const int nm = (int)(ws / wsz) + 1, np = (int)(ws / psz) + 1;
      uint8_t **W = malloc(sizeof *W * (size_t)nm), **P = malloc(sizeof *P * (size_t)np);
      float *row = malloc(sizeof(float) * (size_t)cols);
      float *x = malloc(sizeof(float) * (size_t)cols * 16 * 4);
      float *y = malloc(sizeof(float) * (size_t)rows * 16 * 4);
      const int64_t tmax = 64;
      void *wd = malloc(nllm_matmul_wsize(q->type, cols, tmax, 1));
      uint8_t *act = aligned_alloc(64, nllm_row_size(vq->type, cols) * tmax + 64);
      uint8_t *prep = aligned_alloc(64, NLLM_GEMM_PREP_BYTES(cols) * tmax + 64);
      uint32_t seed = 12345;
      for (int64_t i = 0; i < cols * tmax; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((int32_t)seed >> 8) * (1.0f / (1 << 23));
      }
      for (int m = 0; m < nm; m++) {
        W[m] = nllm_aligned_alloc(wsz); /* huge pages, as a model's weights */
        if (m >= 2) { /* copies: what matters is that they are elsewhere in memory */
          memcpy(W[m], W[m % 2], wsz);
          continue;
        }
        for (int64_t r = 0; r < rows; r++) {
          for (int64_t i = 0; i < cols; i++) {
            seed = seed * 1664525u + 1013904223u;
            row[i] = (float)((int32_t)seed >> 8) * (1.0f / (1 << 23));
          }
          q->from_float_ref(row, W[m] + (size_t)r * rs, cols);
        }
      }
      for (int m = 0; m < np; m++) {
        P[m] = nllm_aligned_alloc(psz);
        for (int64_t g = 0; g < rows / gr; g++)
          q->pack_rows(cols, W[m % nm] + (size_t)(g * gr) * rs, rs, P[m] + (size_t)g * gb);
      }
      for (int c = 0; c < nt_list; c++) {
        const int64_t T = tl[c];
        if (T < 1 || T > tmax) continue;
        double a[64], b[64];
        int im = 0, ip = 0;
        for (int k = 0; k < runs && k < 64; k++) {
          /* each side: enough calls to take a few ms, every one on a matrix from DRAM */
          const int calls = 4;
          double t0 = thread_ms();
          for (int i = 0; i < calls; i++, im = (im + 1) % nm)
            nllm_matmul(y, W[im], q->type, rows, cols, x, T, wd, 1);
          a[k] = (thread_ms() - t0) / calls;
          t0 = thread_ms();
          for (int i = 0; i < calls; i++, ip = (ip + 1) % np)
            packed_matmul(q, vq, y, P[ip], gb, rows, cols, x, T, act, prep);
          b[k] = (thread_ms() - t0) / calls;
        }
        const int n = runs < 64 ? runs : 64;
        const double ma = median(a, n), mb = median(b, n);
        printf("%-6s %5lld x %5lld %3lld: %8.3f %8.3f  %5.2f%s\n", q->name, (long long)rows,
               (long long)cols, (long long)T, ma, mb, ma / mb,
               gb > (size_t)gr * rs ? "  (packed groups larger than their rows)" : "");
        fflush(stdout);
      }
      for (int m = 0; m < nm; m++) nllm_aligned_free(W[m]);
      for (int m = 0; m < np; m++) nllm_aligned_free(P[m]);
      free(W);
      free(P);
      free(row);
      free(x);
      free(y);
      free(wd);
      free(act);
      free(prep);
    }
  }
  return 0;
}
