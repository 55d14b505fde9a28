/* The driver of the float GEMM (gemm_float.h): activations packed once per call (all threads
 * together), then each work item is one micro tile of weight rows that passes over every token
 * block, column chunk by column chunk: the chunk of its rows (converted to f32 for F16) stays in
 * L1 while all the tokens' chunks stream past it. Items are independent, so any number of
 * contexts and pool threads run it at once (no library-wide lock as around OpenBLAS). */
#include "cpu/gemm_float.h"

#include "pool.h"

static uint8_t *align64(void *p) {
  return (uint8_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

static size_t round64(size_t n) {
  return (n + 63) & ~(size_t)63;
}

/* Per worker: the sums of its tile over every token block, and one chunk's packed rows. */
static size_t worker_bytes(int64_t n_blk, int rm, int tb, int kc) {
  return round64((size_t)n_blk * (size_t)rm * (size_t)tb * sizeof(float)) +
         round64((size_t)rm * ((size_t)kc * sizeof(float) + 64));
}

size_t nllm_gemmf_wsize(int64_t cols, int64_t n_tok, int n_threads) {
  if (n_threads < 1) n_threads = 1;
  const int64_t n_blk = (n_tok + NLLM_GEMMF_TB_MAX - 1) / NLLM_GEMMF_TB_MAX + 1;
  const int64_t cols_pad = cols + NLLM_GEMMF_KC_MAX;
  const size_t xp = (size_t)n_blk * NLLM_GEMMF_TB_MAX * (size_t)cols_pad * sizeof(float);
  /* the bound holds for any tb <= TB_MAX: n_blk(tb) * tb <= n_tok + tb */
  return 64 + round64(xp) +
         (size_t)n_threads *
             worker_bytes(n_blk, NLLM_GEMMF_RM_MAX, NLLM_GEMMF_TB_MAX, NLLM_GEMMF_KC_MAX);
}

typedef struct gemmf_job {
  const nllm_gemmf *g;
  float *y;
  const uint8_t *W;
  size_t w_rs;
  int64_t rows, cols, n_tok;
  const float *x;
  uint8_t *xp;
  int64_t n_blk, n_chunk;
  size_t chunk_bytes, worker_bytes;
  uint8_t *work;
} gemmf_job;

static int64_t chunk_cols(const gemmf_job *j, int64_t c) {
  const int64_t k0 = c * j->g->kc;
  return j->cols - k0 < j->g->kc ? j->cols - k0 : j->g->kc;
}

static void pack_item(void *vjob, int64_t item, int worker) {
  const gemmf_job *j = vjob;
  (void)worker;
  const int64_t blk = item / j->n_chunk, c = item % j->n_chunk, t0 = blk * j->g->tb;
  const int n = (int)(j->n_tok - t0 < j->g->tb ? j->n_tok - t0 : j->g->tb);
  j->g->pack_x(j->x + t0 * j->cols, (size_t)j->cols, n, c * j->g->kc, chunk_cols(j, c),
               j->xp + (size_t)item * j->chunk_bytes);
}

static void tile_item(void *vjob, int64_t item, int worker) {
  const gemmf_job *j = vjob;
  const nllm_gemmf *g = j->g;
  const int64_t r0 = item * g->rm;
  const int n = (int)(j->rows - r0 < g->rm ? j->rows - r0 : g->rm);
  uint8_t *ws = j->work + (size_t)worker * j->worker_bytes;
  float *c = (float *)ws;
  void *panel = ws + round64((size_t)j->n_blk * (size_t)g->rm * (size_t)g->tb * sizeof(float));
  const size_t tile = (size_t)g->rm * (size_t)g->tb;
  for (int64_t ch = 0; ch < j->n_chunk; ch++) {
    size_t p_rs;
    const void *p = g->pack_w(j->W + (size_t)r0 * j->w_rs, j->w_rs, n, ch * g->kc,
                              chunk_cols(j, ch), panel, &p_rs);
    for (int64_t b = 0; b < j->n_blk; b++)
      g->micro(chunk_cols(j, ch), p, p_rs, j->xp + (size_t)(b * j->n_chunk + ch) * j->chunk_bytes,
               c + (size_t)b * tile, ch > 0);
  }
  /* from token lanes to y's rows: each token's n sums are contiguous in y */
  const int tb = g->tb;
  const int64_t rows = j->rows;
  float *restrict y = j->y + r0;
  for (int64_t b = 0; b < j->n_blk; b++) {
    const int64_t t0 = b * tb;
    const int nt = (int)(j->n_tok - t0 < tb ? j->n_tok - t0 : tb);
    if (g->store) {
      g->store(c + (size_t)b * tile, n, nt, y + t0 * rows, (size_t)rows);
      continue;
    }
    for (int t = 0; t < nt; t++) {
      const float *restrict ct = c + (size_t)b * tile + t;
      float *restrict yt = y + (t0 + t) * rows;
      for (int r = 0; r < n; r++) yt[r] = ct[r * tb];
    }
  }
}

void nllm_gemmf_run(const nllm_gemmf *g, float *y, const void *W, size_t w_rs, int64_t rows,
                    int64_t cols, const float *x, int64_t n_tok, void *scratch, int n_threads) {
  if (rows <= 0 || n_tok <= 0 || cols <= 0) return;
  if (n_threads < 1) n_threads = 1;
  gemmf_job j = {.g = g,
                 .y = y,
                 .W = W,
                 .w_rs = w_rs,
                 .rows = rows,
                 .cols = cols,
                 .n_tok = n_tok,
                 .x = x,
                 .n_blk = (n_tok + g->tb - 1) / g->tb,
                 .n_chunk = (cols + g->kc - 1) / g->kc,
                 .chunk_bytes = (size_t)g->kc * (size_t)g->tb * sizeof(float)};
  j.xp = align64(scratch);
  j.work = j.xp + round64((size_t)(j.n_blk * j.n_chunk) * j.chunk_bytes);
  j.worker_bytes = worker_bytes(j.n_blk, g->rm, g->tb, g->kc);
  nllm_pool_run(n_threads, j.n_blk * j.n_chunk, pack_item, &j);
  nllm_pool_run(n_threads, (rows + g->rm - 1) / g->rm, tile_item, &j);
}
