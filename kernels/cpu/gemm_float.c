/* The driver of the float GEMM (gemm_float.h): activations packed once per call (all threads
 * together; one call may hold several matrices of that input), then each work item is a group
 * of micro tiles of one matrix's weight rows that pass over every token block, column chunk by
 * column chunk: a chunk of a tile's rows (converted to f32 for F16) stays in L1 while the
 * tokens' chunks stream past it. Items are independent, so any number of
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

/* One matrix of a job: its items are [first, first + its tiles / tiles per item). */
typedef struct gemmf_part {
  float *y;
  const uint8_t *W;
  size_t w_rs;
  int64_t rows, first;
} gemmf_part;

typedef struct gemmf_job {
  const nllm_gemmf *g;
  gemmf_part part[NLLM_GEMMF_PARTS_MAX];
  int n_p;
  int64_t cols, n_tok, n_items;
  const float *x;
  const nllm_qtype *dq; /* weights dequantized into the panel (nllm_gemmf_run_dequant), or NULL */
  uint8_t *xp;
  int64_t n_blk, n_chunk;
  int tiles; /* micro tiles per item */
  size_t chunk_bytes, worker_bytes;
  uint8_t *work;
} gemmf_job;

/* The part that item belongs to, and the item's first row in it. */
static const gemmf_part *item_part(const gemmf_job *j, int64_t item, int64_t *r0) {
  int p = 0;
  while (p + 1 < j->n_p && item >= j->part[p + 1].first) p++;
  *r0 = (item - j->part[p].first) * j->tiles * j->g->rm;
  return &j->part[p];
}

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
static void store_tile(const gemmf_job *j, const gemmf_part *pt, const float *c, int64_t r0,
                       int n) {
  const nllm_gemmf *g = j->g;
  const int tb = g->tb;
  const int64_t rows = pt->rows;
  const size_t tile = (size_t)g->rm * (size_t)tb;
  float *restrict y = pt->y + r0;
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
static const void *dequant_w(const gemmf_job *j, const gemmf_part *pt, const uint8_t *W, int n,
                             int64_t k0, int64_t kc, uint8_t *panel, size_t *p_rs) {
  const nllm_qtype *q = j->dq;
  const size_t rs = (size_t)kc * sizeof(float) + 64;
  const size_t off = (size_t)(k0 / q->block_size) * (size_t)q->type_size;
  for (int r = 0; r < j->g->rm; r++) {
    float *p = (float *)(panel + (size_t)r * rs);
    if (r < n)
      q->to_float(W + (size_t)r * pt->w_rs + off, p, kc);
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
  int write; /* the item's own rows of y, for the stores at its end */
} next_chunk;

static void prefetch_lines(next_chunk *p, int64_t lines) {
  for (; lines > 0 && p->rows_left > 0; lines--) {
    if (p->write)
      __builtin_prefetch(p->row + p->off, 1);
    else
      __builtin_prefetch(p->row + p->off);
    p->off += 64;
    if (p->off >= p->bytes) {
      p->off = 0;
      p->row += p->rs;
      p->rows_left--;
    }
  }
}

/* Prefetch stream of the weight rows [r0, r0 + n_rows) of a part, columns of chunk ch. */
static next_chunk weight_lines(const gemmf_job *j, const gemmf_part *pt, int64_t r0,
                               int64_t n_rows, int64_t ch) {
  const size_t off = (size_t)ch * (size_t)j->g->kc * pt->w_rs / (size_t)j->cols;
  return (next_chunk){.row = pt->W + (size_t)r0 * pt->w_rs + off,
                      .rs = pt->w_rs,
                      .bytes = (size_t)chunk_cols(j, ch) * pt->w_rs / (size_t)j->cols,
                      .rows_left = n_rows};
}

static int64_t lines_per_call(const next_chunk *p, int64_t calls) {
  const int64_t lines = p->rows_left * (int64_t)((p->bytes + 63) / 64);
  return (lines + calls - 1) / calls;
}

static void tile_item(void *vjob, int64_t item, int worker) {
  const gemmf_job *j = vjob;
  const nllm_gemmf *g = j->g;
  int64_t r0;
  const gemmf_part *pt = item_part(j, item, &r0);
  int n[TILES], n_tiles = 0;
  for (; n_tiles < j->tiles && r0 + n_tiles * g->rm < pt->rows; n_tiles++) {
    const int64_t left = pt->rows - r0 - n_tiles * g->rm;
    n[n_tiles] = (int)(left < g->rm ? left : g->rm);
  }
  int64_t n_rows = 0;
  for (int i = 0; i < n_tiles; i++) n_rows += n[i];
  uint8_t *ws = j->work + (size_t)worker * j->worker_bytes;
  float *c = (float *)ws;
  const size_t tile = (size_t)g->rm * (size_t)g->tb, c_tile = (size_t)j->n_blk * tile;
  uint8_t *panel = ws + round64((size_t)TILES * c_tile * sizeof(float));
  const size_t panel_bytes = (size_t)g->rm * ((size_t)g->kc * sizeof(float) + 64);
  const int64_t calls = j->n_blk * n_tiles;
  for (int64_t ch = 0; ch < j->n_chunk; ch++) {
    const void *p[TILES];
    size_t p_rs[TILES];
    const int64_t kc = chunk_cols(j, ch);
    for (int i = 0; i < n_tiles; i++) {
      const uint8_t *w = pt->W + (size_t)(r0 + i * g->rm) * pt->w_rs;
      uint8_t *pi = panel + (size_t)i * panel_bytes;
      p[i] = j->dq ? dequant_w(j, pt, w, n[i], ch * g->kc, kc, pi, &p_rs[i])
                   : g->pack_w(w, pt->w_rs, n[i], ch * g->kc, kc, pi, &p_rs[i]);
    }
    /* the rows' next chunk from memory while this one computes (1.1B F16 pp128, 1 thread: the
     * F16 packing fell from 27% to 19% of the micro kernel's samples with it at once) */
    next_chunk nx = {0}, nx2 = {0};
    int64_t per_call = 0, per_call2 = 0;
    if (ch + 1 < j->n_chunk) {
      nx = weight_lines(j, pt, r0, n_rows, ch + 1);
      per_call = lines_per_call(&nx, calls);
    } else {
      /* the last chunk: the lines of y the item stores into at its end, for writing. Each
       * token's n_rows sums are a short run in a line y's previous user left in L3; stored
       * cold, the transposes stalled on one read-for-ownership after another (110M F16 pp128,
       * 1 thread: store_y 5% of the user time) */
      const uintptr_t a0 = (uintptr_t)(pt->y + r0) & ~(uintptr_t)63;
      const uintptr_t a1 = (uintptr_t)(pt->y + r0 + n_rows);
      nx = (next_chunk){.row = (const uint8_t *)a0,
                        .rs = (size_t)pt->rows * sizeof(float),
                        .bytes = (size_t)(a1 - a0),
                        .rows_left = j->n_tok,
                        .write = 1};
      per_call = lines_per_call(&nx, calls);
      /* and the first chunk of the item this worker most likely runs next (the pool hands
       * each worker a contiguous range of items), which was read cold. The two together: a
       * 110M layer's F16 GEMMs at 128 tokens, 1 thread, best of 15 interleaved passes of 12
       * layers, 76.2-77.0 -> 78.5-78.6 GFLOP/s of thread CPU time (each alone +0.3, +1.5%) */
      if (item + 1 < j->n_items) {
        int64_t r1;
        const gemmf_part *nt = item_part(j, item + 1, &r1);
        const int64_t left = nt->rows - r1, want = (int64_t)j->tiles * g->rm;
        nx2 = weight_lines(j, nt, r1, left < want ? left : want, 0);
        per_call2 = lines_per_call(&nx2, calls);
      }
    }
    for (int64_t b = 0; b < j->n_blk; b++) {
      const uint8_t *xc = j->xp + (size_t)(b * j->n_chunk + ch) * j->chunk_bytes;
      for (int i = 0; i < n_tiles; i++) {
        g->micro(kc, p[i], p_rs[i], xc, c + (size_t)i * c_tile + (size_t)b * tile, ch > 0);
        prefetch_lines(&nx, per_call);
        prefetch_lines(&nx2, per_call2);
      }
    }
  }
  for (int i = 0; i < n_tiles; i++)
    store_tile(j, pt, c + (size_t)i * c_tile, r0 + i * g->rm, n[i]);
}

static void gemmf_run(const nllm_gemmf *g, const nllm_qtype *dq, int n_p, float *const *y,
                      const void *const *W, const size_t *w_rs, const int64_t *rows, int64_t cols,
                      const float *x, int64_t n_tok, void *scratch, int n_threads) {
  if (n_p <= 0 || n_p > NLLM_GEMMF_PARTS_MAX || n_tok <= 0 || cols <= 0) return;
  if (n_threads < 1) n_threads = 1;
  gemmf_job j = {.g = g,
                 .dq = dq,
                 .n_p = n_p,
                 .cols = cols,
                 .n_tok = n_tok,
                 .x = x,
                 .n_blk = (n_tok + g->tb - 1) / g->tb,
                 .n_chunk = (cols + g->kc - 1) / g->kc,
                 .chunk_bytes = (size_t)g->kc * (size_t)g->tb * sizeof(float)};
  int64_t n_tiles = 0;
  for (int p = 0; p < n_p; p++) {
    j.part[p] = (gemmf_part){.y = y[p], .W = W[p], .w_rs = w_rs[p], .rows = rows[p]};
    if (rows[p] > 0) n_tiles += (rows[p] + g->rm - 1) / g->rm;
  }
  if (n_tiles == 0) return;
  j.xp = align64(scratch);
  j.work = j.xp + round64((size_t)(j.n_blk * j.n_chunk) * j.chunk_bytes);
  j.worker_bytes = worker_bytes(j.n_blk, g->rm, g->tb, g->kc);
  nllm_pool_run(n_threads, j.n_blk * j.n_chunk, pack_item, &j);
  const int64_t per_item = (n_tiles + 4 * n_threads - 1) / (4 * n_threads);
  j.tiles = per_item < 1 ? 1 : per_item > TILES ? TILES : (int)per_item;
  for (int p = 0; p < n_p; p++) {
    j.part[p].first = j.n_items;
    if (rows[p] > 0) j.n_items += ((rows[p] + g->rm - 1) / g->rm + j.tiles - 1) / j.tiles;
  }
  nllm_pool_run(n_threads, j.n_items, tile_item, &j);
}

void nllm_gemmf_run(const nllm_gemmf *g, float *y, const void *W, size_t w_rs, int64_t rows,
                    int64_t cols, const float *x, int64_t n_tok, void *scratch, int n_threads) {
  gemmf_run(g, NULL, 1, &y, &W, &w_rs, &rows, cols, x, n_tok, scratch, n_threads);
}

void nllm_gemmf_run_group(const nllm_gemmf *g, int n_p, float *const *y, const void *const *W,
                          const size_t *w_rs, const int64_t *rows, int64_t cols, const float *x,
                          int64_t n_tok, void *scratch, int n_threads) {
  gemmf_run(g, NULL, n_p, y, W, w_rs, rows, cols, x, n_tok, scratch, n_threads);
}

void nllm_gemmf_run_dequant(const nllm_gemmf *g, const nllm_qtype *q, float *y, const void *W,
                            size_t w_rs, int64_t rows, int64_t cols, const float *x, int64_t n_tok,
                            void *scratch, int n_threads) {
  gemmf_run(g, q, 1, &y, &W, &w_rs, &rows, cols, x, n_tok, scratch, n_threads);
}
