/* The driver of the float GEMM (gemm_float.h): activations packed once per call (all threads
 * together), then each work item is a group of micro tiles of weight rows that pass over every
 * token block, column chunk by column chunk: a chunk of a tile's rows (converted to f32 for F16)
 * stays in L1 while the tokens' chunks stream past it. Items are independent, so any number of
 * contexts and pool threads run it at once (no library-wide lock as around OpenBLAS). */
#include "cpu/gemm_float.h"

#include <string.h>

#include "pool.h"
#include "qtypes.h"

static uint8_t *align64(void *p) {
  return (uint8_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

static size_t round64(size_t n) {
  return (n + 63) & ~(size_t)63;
}

/* Micro tiles per work item, at most: the tiles of an item share each activation chunk while
 * it sits in L2, so long rows' activations are streamed from L3 once per item rather than once
 * per tile (2048 x 5632 x 512 tokens, 1 thread, thread CPU time: F16 77 -> 178 GFLOP/s on
 * AVX-512, 61 -> 88 on AVX2, BF16 251 -> 304 with 16 tiles). Fewer where that leaves a thread
 * fewer than 4 items (a 256-row matrix on 2 threads). */
#define TILES 16

/* Per worker: the sums of its tiles over every token block, and one chunk of its packed rows. */
static size_t worker_bytes(int64_t n_blk, int rm, int tb, int kc) {
  return round64((size_t)TILES * (size_t)n_blk * (size_t)rm * (size_t)tb * sizeof(float)) +
         round64((size_t)TILES * (size_t)rm * ((size_t)kc * sizeof(float) + 64));
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
  const nllm_qtype *dq; /* weights dequantized into the panel (nllm_gemmf_run_dequant), or NULL */
  uint8_t *xp;
  int64_t n_blk, n_chunk;
  int tiles; /* micro tiles per item */
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

/* One micro tile's sums (c, token lanes) into y's rows: each token's n sums are contiguous. */
static void store_tile(const gemmf_job *j, const float *c, int64_t r0, int n) {
  const nllm_gemmf *g = j->g;
  const int tb = g->tb;
  const int64_t rows = j->rows;
  const size_t tile = (size_t)g->rm * (size_t)tb;
  float *restrict y = j->y + r0;
  for (int64_t b = 0; b < j->n_blk; b++, c += tile) {
    const int64_t t0 = b * tb;
    const int nt = (int)(j->n_tok - t0 < tb ? j->n_tok - t0 : tb);
    if (g->store) {
      g->store(c, n, nt, y + t0 * rows, (size_t)rows);
      continue;
    }
    for (int t = 0; t < nt; t++) {
      const float *restrict ct = c + t;
      float *restrict yt = y + (t0 + t) * rows;
      for (int r = 0; r < n; r++) yt[r] = ct[r * tb];
    }
  }
}

/* Rows [0, n) of a quantized tile, columns [k0, k0 + kc), dequantized into the panel as the f32
 * micro kernel reads it (rows rs bytes apart, rows n..rm-1 zero). */
static const void *dequant_w(const gemmf_job *j, const uint8_t *W, int n, int64_t k0, int64_t kc,
                             uint8_t *panel, size_t *p_rs) {
  const nllm_qtype *q = j->dq;
  const size_t rs = (size_t)kc * sizeof(float) + 64;
  const size_t off = (size_t)(k0 / q->block_size) * (size_t)q->type_size;
  for (int r = 0; r < j->g->rm; r++) {
    float *p = (float *)(panel + (size_t)r * rs);
    if (r < n)
      q->to_float(W + (size_t)r * j->w_rs + off, p, kc);
    else
      memset(p, 0, (size_t)kc * sizeof(float));
  }
  *p_rs = rs;
  return panel;
}

/* The rows' next chunk, fetched a few lines at a time between micro kernel calls: a row's chunk
 * is a short run of lines the hardware prefetcher does not pick up, and the whole next chunk of
 * an item's rows prefetched at once (up to 1,536 lines) stalled on the core's few outstanding
 * misses before the compute could start. */
typedef struct next_chunk {
  const uint8_t *row; /* the row being prefetched, at its chunk's start */
  size_t rs, bytes, off;
  int64_t rows_left;
} next_chunk;

static void prefetch_lines(next_chunk *p, int64_t lines) {
  for (; lines > 0 && p->rows_left > 0; lines--) {
    __builtin_prefetch(p->row + p->off);
    p->off += 64;
    if (p->off >= p->bytes) {
      p->off = 0;
      p->row += p->rs;
      p->rows_left--;
    }
  }
}

static void tile_item(void *vjob, int64_t item, int worker) {
  const gemmf_job *j = vjob;
  const nllm_gemmf *g = j->g;
  const int64_t r0 = item * j->tiles * g->rm;
  int n[TILES], n_tiles = 0;
  for (; n_tiles < j->tiles && r0 + n_tiles * g->rm < j->rows; n_tiles++) {
    const int64_t left = j->rows - r0 - n_tiles * g->rm;
    n[n_tiles] = (int)(left < g->rm ? left : g->rm);
  }
  int64_t n_rows = 0;
  for (int i = 0; i < n_tiles; i++) n_rows += n[i];
  uint8_t *ws = j->work + (size_t)worker * j->worker_bytes;
  float *c = (float *)ws;
  const size_t tile = (size_t)g->rm * (size_t)g->tb, c_tile = (size_t)j->n_blk * tile;
  uint8_t *panel = ws + round64((size_t)TILES * c_tile * sizeof(float));
  const size_t panel_bytes = (size_t)g->rm * ((size_t)g->kc * sizeof(float) + 64);
  for (int64_t ch = 0; ch < j->n_chunk; ch++) {
    const void *p[TILES];
    size_t p_rs[TILES];
    const int64_t kc = chunk_cols(j, ch);
    for (int i = 0; i < n_tiles; i++) {
      const uint8_t *w = j->W + (size_t)(r0 + i * g->rm) * j->w_rs;
      uint8_t *pi = panel + (size_t)i * panel_bytes;
      p[i] = j->dq ? dequant_w(j, w, n[i], ch * g->kc, kc, pi, &p_rs[i])
                   : g->pack_w(w, j->w_rs, n[i], ch * g->kc, kc, pi, &p_rs[i]);
    }
    /* the rows' next chunk from memory while this one computes (1.1B F16 pp128, 1 thread: the
     * F16 packing fell from 27% to 19% of the micro kernel's samples with it at once) */
    next_chunk nx = {0};
    int64_t per_call = 0;
    if (ch + 1 < j->n_chunk) {
      const size_t off = (size_t)(ch + 1) * (size_t)g->kc * j->w_rs / (size_t)j->cols;
      nx = (next_chunk){.row = j->W + (size_t)r0 * j->w_rs + off,
                        .rs = j->w_rs,
                        .bytes = (size_t)chunk_cols(j, ch + 1) * j->w_rs / (size_t)j->cols,
                        .rows_left = n_rows};
      const int64_t lines = n_rows * (int64_t)((nx.bytes + 63) / 64), calls = j->n_blk * n_tiles;
      per_call = (lines + calls - 1) / calls;
    }
    for (int64_t b = 0; b < j->n_blk; b++) {
      const uint8_t *xc = j->xp + (size_t)(b * j->n_chunk + ch) * j->chunk_bytes;
      for (int i = 0; i < n_tiles; i++) {
        g->micro(kc, p[i], p_rs[i], xc, c + (size_t)i * c_tile + (size_t)b * tile, ch > 0);
        prefetch_lines(&nx, per_call);
      }
    }
  }
  for (int i = 0; i < n_tiles; i++) store_tile(j, c + (size_t)i * c_tile, r0 + i * g->rm, n[i]);
}

static void gemmf_run(const nllm_gemmf *g, const nllm_qtype *dq, float *y, const void *W,
                      size_t w_rs, int64_t rows, int64_t cols, const float *x, int64_t n_tok,
                      void *scratch, int n_threads) {
  if (rows <= 0 || n_tok <= 0 || cols <= 0) return;
  if (n_threads < 1) n_threads = 1;
  gemmf_job j = {.g = g,
                 .dq = dq,
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
  const int64_t n_tiles = (rows + g->rm - 1) / g->rm;
  const int64_t per_item = (n_tiles + 4 * n_threads - 1) / (4 * n_threads);
  j.tiles = per_item < 1 ? 1 : per_item > TILES ? TILES : (int)per_item;
  nllm_pool_run(n_threads, (n_tiles + j.tiles - 1) / j.tiles, tile_item, &j);
}

void nllm_gemmf_run(const nllm_gemmf *g, float *y, const void *W, size_t w_rs, int64_t rows,
                    int64_t cols, const float *x, int64_t n_tok, void *scratch, int n_threads) {
  gemmf_run(g, NULL, y, W, w_rs, rows, cols, x, n_tok, scratch, n_threads);
}

void nllm_gemmf_run_dequant(const nllm_gemmf *g, const nllm_qtype *q, float *y, const void *W,
                            size_t w_rs, int64_t rows, int64_t cols, const float *x, int64_t n_tok,
                            void *scratch, int n_threads) {
  gemmf_run(g, q, y, W, w_rs, rows, cols, x, n_tok, scratch, n_threads);
}
