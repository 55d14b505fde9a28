/* Matrix times activations for every weight format. Decode (one token) is bound by reading the
 * weights once, so each block of rows is read exactly once (each thread streams its own share
 * of the rows and then helps with what others have left; see pool.h). With
 * several tokens each block of weight rows is reused for all tokens while it sits in cache;
 * from a format's crossover on (blas_min_tokens, a field of its registry row in each tier: see
 * kernels/qtypes.h), the weights are dequantized to f32 once per weight and multiplied with the
 * f32 activations: by the tier's own f32 GEMM (cpu/gemm_float.h: AVX2, AVX-512), which
 * dequantizes each chunk of rows into its panel, or elsewhere by OpenBLAS sgemm on dequantized
 * weight tiles. */
#include <stdatomic.h>
#include <stdint.h>

#include "cpu/gemm_float.h"
#include "cpu/quant.h"
#include "ops.h"
#include "pool.h"
#include "qtypes.h"

#if !defined(NLLM_NO_BLAS)
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>
#endif

/* Weight rows one thread dequantizes per sgemm call: enough for sgemm to reach its speed and
 * to amortize its packing of the activations (128), fewer for long rows so that a thread's
 * tile stays within BLAS_TILE_BYTES. */
#define BLAS_TILE_ROWS 128
#define BLAS_TILE_BYTES (4u << 20)
/* Tokens per tile of the integer path: the weight rows of a work item stay in L1/L2 while
 * every token of the tile passes over them. */
#define TOK_TILE 16
/* Rows per work item with several tokens: a multiple of every pack_group_rows (8 or 16). */
#define ITEM_ROWS_MANY 16
#define PACK_GROUPS (ITEM_ROWS_MANY / NLLM_PACK_ROWS)

#if defined(NLLM_NO_BLAS)
int nllm_blas_is_serial(void) {
  return 0;
}
#endif

#if !defined(NLLM_NO_BLAS)
static int blas_memory_ok(int n_threads);
#endif

/* Float weights' own GEMM (cpu/gemm_float.h) for this batch, ahead of sgemm. */
static int uses_gemmf(const nllm_qtype *q, int64_t n_tok) {
  return q && q->gemmf && n_tok >= q->gemmf->min_tokens;
}

/* The tier's f32 GEMM, which quantized weights past their crossover take with their chunks
 * dequantized into its panel (NULL on tiers without one: scalar, NEON). Its chunks must hold
 * whole blocks. */
static const nllm_gemmf *dequant_gemmf(const nllm_qtype *q) {
  const nllm_qtype *f = nllm_qtype_get(NLLM_TYPE_F32);
  if (!q || q->type == NLLM_TYPE_F32 || !f || !f->gemmf) return NULL;
  return f->gemmf->kc % q->block_size == 0 ? f->gemmf : NULL;
}

int nllm_matmul_uses_gemm(int32_t wtype, int64_t n_tok, int n_threads) {
  return uses_gemmf(nllm_qtype_get(wtype), n_tok) || nllm_matmul_uses_blas(wtype, n_tok, n_threads);
}

int nllm_matmul_uses_blas(int32_t wtype, int64_t n_tok, int n_threads) {
  const nllm_qtype *q = nllm_qtype_get(wtype);
  if (!q || n_tok < q->blas_min_tokens) return 0;
  if (dequant_gemmf(q)) return 1;
#if defined(NLLM_NO_BLAS)
  (void)n_threads;
  return 0;
#else
  /* sgemm calls take turns (blas_call_lock): on T threads the dequantized path runs at about
   * one core's sgemm speed while a SIMD tier's integer kernels run on all T, so the crossover
   * that tier measured on one thread moves to T times its count. The default crossover (scalar
   * tier, NEON) stays: those kernels lose to sgemm by more than any thread count here. */
  int64_t at = q->blas_min_tokens;
  if (at > NLLM_BLAS_MIN_TOKENS && at != NLLM_BLAS_NEVER) at *= n_threads < 1 ? 1 : n_threads;
  return n_tok >= at && nllm_blas_is_serial() && blas_memory_ok(n_threads);
#endif
}

#if !defined(NLLM_NO_BLAS)
/* The pool's threads each run a single-threaded sgemm: OpenBLAS's own threads would compete
 * with them for the same cores (many times slower, docs/performance.md). The library links
 * OpenBLAS's serial build (Makefile), which has no threads and no thread count; changing a
 * threaded build's count would change it for the whole host process (numpy on the same
 * OpenBLAS). So when the OpenBLAS loaded at run time is a threaded one anyway (a build machine
 * without the serial package, or a host that loaded another libopenblas.so.0 first), sgemm is
 * not used and every format takes its own kernels. */
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static int blas_serial;
/* The serial build has no locking of its own (Debian builds it without USE_LOCKING): two
 * threads inside sgemm at once can take the same slot of its work-buffer table and return wrong
 * products (test_batch failed about one run in two). So one sgemm runs at a time, from any
 * context; the other pool threads meanwhile dequantize their next tiles. */
static pthread_mutex_t blas_call_lock = PTHREAD_MUTEX_INITIALIZER;

static void blas_probe(void) {
  blas_serial = openblas_get_parallel() == 0;
}

int nllm_blas_is_serial(void) {
  pthread_once(&blas_once, blas_probe);
  return blas_serial;
}

/* OpenBLAS (0.3.21) maps a buffer of 128 MiB for each thread the first time that thread calls
 * sgemm and, when the mapping fails, retries forever (blas_memory_alloc): a process under
 * `ulimit -v` (or a data limit) hung in the first prompt instead of going on without sgemm. So
 * under a limit sgemm is used only while the room left holds such a buffer for every pool thread;
 * the integer and float kernels do the work otherwise. Without limits (the usual case) this is
 * two getrlimit calls per prompt matmul. */
#define BLAS_THREAD_BUFFER ((uint64_t)160 << 20)

static int blas_memory_ok(int n_threads) {
  struct rlimit as, data;
  if (getrlimit(RLIMIT_AS, &as) != 0 || getrlimit(RLIMIT_DATA, &data) != 0) return 0;
  rlim_t lim = as.rlim_cur < data.rlim_cur ? as.rlim_cur : data.rlim_cur;
  if (lim == RLIM_INFINITY) return 1;
  /* the whole address space in use (first field of statm, in pages) against the lower limit */
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long long pages = 0;
  int ok = f && fscanf(f, "%llu", &pages) == 1;
  if (f) fclose(f);
  if (!ok) return 0;
  uint64_t used = (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
  uint64_t need = (uint64_t)(n_threads < 1 ? 1 : n_threads) * BLAS_THREAD_BUFFER;
  return used < (uint64_t)lim && (uint64_t)lim - used >= need;
}

static int64_t blas_tile_rows(int64_t cols) {
  int64_t r = (int64_t)(BLAS_TILE_BYTES / sizeof(float)) / (cols > 0 ? cols : 1);
  r &= ~(int64_t)15;
  return r < 16 ? 16 : r > BLAS_TILE_ROWS ? BLAS_TILE_ROWS : r;
}
#endif

static uint8_t *align64(void *p) {
  return (uint8_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* Enough for either path: which one a call takes depends on the kernel tier in use, and a
 * context sized under one tier must stay safe if the tier is capped later (tests do). */
size_t nllm_matmul_wsize(int32_t wtype, int64_t cols, int64_t n_tok, int n_threads) {
  const nllm_qtype *q = nllm_qtype_get(wtype);
  if (!q) return 0;
  if (n_threads < 1) n_threads = 1;
  size_t blas = 0, ints = 0;
#if !defined(NLLM_NO_BLAS)
  if (n_tok >= NLLM_BLAS_MIN_TOKENS && wtype != NLLM_TYPE_F32) /* the lowest crossover */
    blas = (size_t)n_threads * (size_t)blas_tile_rows(cols) * (size_t)cols * sizeof(float);
#endif
  if (q->vec_dot_type != NLLM_TYPE_F32) ints = (size_t)n_tok * nllm_row_size(q->vec_dot_type, cols);
  if (q->vec_dot_type == NLLM_TYPE_F32 && n_tok > 1) /* float weights: any tier's GEMM */
    ints = nllm_gemmf_wsize(cols, n_tok, n_threads);
  /* past the lowest crossover: the f32 GEMM on dequantized chunks (x itself, not quantized) */
  size_t deq = 0;
  if (n_tok >= NLLM_BLAS_MIN_TOKENS && wtype != NLLM_TYPE_F32)
    deq = nllm_gemmf_wsize(cols, n_tok, n_threads);
  if (deq > blas) blas = deq;
  /* (one token too: on packed weights, nllm_matmul_pk) */
  if (q->vec_dot_type != NLLM_TYPE_F32 && cols % NLLM_GEMM_COLS == 0)
    ints += 64 + (size_t)n_tok * NLLM_GEMM_PREP_BYTES(cols) + /* any tier's tiles may run */
            64 + (size_t)n_threads * PACK_GROUPS * NLLM_PACK_BYTES(cols); /* and repack rows */
  /* NLLM_MATMUL_XBF16 off the vdpbf16ps GEMM: the rounded activations ahead of the rest */
  const size_t xbf16 =
      wtype == NLLM_TYPE_BF16 ? 64 + (size_t)n_tok * (size_t)cols * sizeof(float) : 0;
  return 64 /* alignment slack */ + xbf16 + (blas > ints ? blas : ints);
}

/* Rows per work item: about 16 items per thread, so that a thread slowed down by another
 * process costs little at the end, in multiples of 4 rows. */
static int64_t rows_per_item(int64_t rows, int n_threads, int64_t lo, int64_t hi) {
  int64_t r = (rows + 16 * n_threads - 1) / (16 * n_threads);
  r = (r + 3) & ~(int64_t)3;
  return r < lo ? lo : r > hi ? hi : r;
}

typedef struct matmul_job {
  float *y;
  const uint8_t *W;
  const nllm_qtype *q;
  int64_t rows, cols, n_tok, item_rows;
  int64_t tok0, tok1; /* the tokens this pass of the dot items covers (every dot path) */
  size_t w_rs;
  const float *x;
  const uint8_t *act; /* activations in vec_dot_type */
  size_t a_rs;
  const nllm_qtype *vq;
  uint8_t *prep; /* register tiles: the activations prepared by gemm_prep, NULL without */
  size_t p_rs;
  uint8_t *pack;     /* interleaved kernels: PACK_GROUPS groups per worker (prep by packed_prep) */
  const uint8_t *pw; /* interleaved kernels on the weight's own packed rows (prep by packed_prep) */
  float *tiles;      /* BLAS path: item_rows x cols per worker */
} matmul_job;

#if !defined(NLLM_NO_BLAS)
static void blas_item(void *vjob, int64_t item, int worker) {
  const matmul_job *j = vjob;
  const int64_t r0 = item * j->item_rows;
  const int64_t nr = j->rows - r0 < j->item_rows ? j->rows - r0 : j->item_rows;
  const float *w;
  if (j->q->type == NLLM_TYPE_F32) {
    w = (const float *)j->W + (size_t)r0 * (size_t)j->cols;
  } else {
    float *tile = j->tiles + (size_t)worker * (size_t)j->item_rows * (size_t)j->cols;
    for (int64_t r = 0; r < nr; r++)
      j->q->to_float(j->W + (size_t)(r0 + r) * j->w_rs, tile + r * j->cols, j->cols);
    w = tile;
  }
  pthread_mutex_lock(&blas_call_lock);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->n_tok, (int)nr, (int)j->cols, 1.0f,
              j->x, (int)j->cols, w, (int)j->cols, 0.0f, j->y + r0, (int)j->rows);
  pthread_mutex_unlock(&blas_call_lock);
}
#endif

/* How a job's activations are prepared: for its interleaved kernels or for its tiles. */
static nllm_gemm_prep_fn prep_fn(const matmul_job *j) {
  return j->pack || j->pw ? j->q->packed_prep : j->q->gemm_prep;
}

static void quantize_item(void *vjob, int64_t t, int worker) {
  const matmul_job *j = vjob;
  (void)worker;
  const uint8_t *a = j->act + (size_t)t * j->a_rs;
  j->vq->from_float(j->x + t * j->cols, (uint8_t *)a, j->cols);
  if (j->prep) prep_fn(j)(j->cols, a, j->prep + (size_t)t * j->p_rs);
}

void nllm_matmul_rows(const nllm_qtype *q, int64_t cols, const uint8_t *W, size_t w_rs, int64_t r0,
                      int64_t r1, const uint8_t *act, size_t a_rs, const uint8_t *prep, size_t p_rs,
                      int64_t t_begin, int64_t t_end, float *y, size_t y_rs) {
  const nllm_vec_dot_fn dot = q->vec_dot;
  const int many = t_end - t_begin > 1;
  const nllm_vec_dot4_fn dot4 = many && q->vec_dot4_tile ? q->vec_dot4_tile : q->vec_dot4;
  const nllm_vec_dot4x4_fn dot4x4 = t_end - t_begin >= 4 ? q->vec_dot4x4 : NULL;
  const nllm_vec_dot4xt_fn dot4xt = many ? q->vec_dot4xt : NULL;
  for (int64_t t0 = t_begin; t0 < t_end; t0 += TOK_TILE) {
    const int64_t t1 = t0 + TOK_TILE < t_end ? t0 + TOK_TILE : t_end;
    int64_t r = r0;
    for (; (prep || dot4) && r + 4 <= r1; r += 4) {
      const uint8_t *wr = W + (size_t)r * w_rs;
      int64_t t = t0;
      if (prep)
        for (; t < t1; t += NLLM_GEMM_TOK)
          q->gemm4(cols, &y[(size_t)t * y_rs + (size_t)r], y_rs, wr, w_rs, prep + (size_t)t * p_rs,
                   p_rs, (int)(t1 - t < NLLM_GEMM_TOK ? t1 - t : NLLM_GEMM_TOK));
      if (dot4x4)
        for (; t + 4 <= t1; t += 4)
          dot4x4(cols, &y[(size_t)t * y_rs + (size_t)r], y_rs, wr, w_rs, act + (size_t)t * a_rs,
                 a_rs);
      if (dot4xt && t1 - t >= 2 && t1 - t <= 3) {
        dot4xt(cols, &y[(size_t)t * y_rs + (size_t)r], y_rs, wr, w_rs, act + (size_t)t * a_rs, a_rs,
               (int)(t1 - t));
        t = t1;
      }
      for (; t < t1; t++)
        dot4(cols, &y[(size_t)t * y_rs + (size_t)r], wr, w_rs, act + (size_t)t * a_rs);
    }
    for (; r < r1; r++) {
      const uint8_t *wr = W + (size_t)r * w_rs;
      for (int64_t t = t0; t < t1; t++)
        dot(cols, &y[(size_t)t * y_rs + (size_t)r], wr, act + (size_t)t * a_rs);
    }
  }
}

/* Rows [r, r1) of a matmul on packed groups that make no whole group, tokens [t0, t1): decode's
 * kernels a token at a time (a tier's four-by-four kernel need not add in its four-row kernel's
 * order), or in a batch the tier's four-row prompt kernel where it has one (AVX-512 Q8_0), whose
 * order its interleaved kernels and its tiles keep: the plain rows' batch takes those tiles. */
static void tail_rows(const matmul_job *j, int64_t r, int64_t r1, int64_t t0, int64_t t1) {
  const nllm_qtype *q = j->q;
  const size_t ys = (size_t)j->rows;
  if (j->n_tok > 1 && q->vec_dot4_tile) {
    for (int64_t t = t0; r < r1 && t < t1; t++) {
      const uint8_t *a = j->act + (size_t)t * j->a_rs;
      int64_t i = r;
      for (; i + 4 <= r1; i += 4)
        q->vec_dot4_tile(j->cols, &j->y[(size_t)t * ys + (size_t)i], j->W + (size_t)i * j->w_rs,
                         j->w_rs, a);
      for (; i < r1; i++)
        q->vec_dot(j->cols, &j->y[(size_t)t * ys + (size_t)i], j->W + (size_t)i * j->w_rs, a);
    }
    return;
  }
  for (int64_t t = t0; r < r1 && t < t1; t++)
    nllm_matmul_rows(q, j->cols, j->W, j->w_rs, r, r1, j->act, j->a_rs, NULL, 0, t, t + 1, j->y,
                     ys);
}

/* Whether a batch on packed rows expands them per work item first (expand_packed). */
static int expands(const nllm_qtype *q, int64_t n_tok) {
  return q->expand_packed && q->gemm_expanded && q->expand_min_tokens &&
         n_tok >= q->expand_min_tokens;
}

/* The interleaved kernels: the item's rows repacked once into the worker's groups (of the
 * format's pack_group_rows), then every token over them, packed_tok at a time. */
static void packed_rows(const matmul_job *j, int64_t r0, int64_t r1, int worker) {
  const nllm_qtype *q = j->q;
  const int64_t gr = q->pack_group_rows;
  const size_t gb = NLLM_PACK_BYTES(j->cols) / NLLM_PACK_ROWS * (size_t)gr, ys = (size_t)j->rows;
  uint8_t *pk = j->pack + (size_t)worker * PACK_GROUPS * NLLM_PACK_BYTES(j->cols);
  const int64_t ng = (r1 - r0) / gr;
  /* a large batch takes the layout that packed weights expand into (pack_expanded) */
  const int ex = q->pack_expanded && expands(q, j->n_tok);
  const nllm_pack_rows_fn pack = ex ? q->pack_expanded : q->pack_rows;
  const nllm_gemm_packed_fn gemm = ex ? q->gemm_expanded : q->gemm_packed;
  for (int64_t g = 0; g < ng; g++)
    pack(j->cols, j->W + (size_t)(r0 + g * gr) * j->w_rs, j->w_rs, pk + (size_t)g * gb);
  const int64_t tok = q->packed_tok;
  for (int64_t t = j->tok0; t < j->tok1; t += tok) {
    const int nt = (int)(j->tok1 - t < tok ? j->tok1 - t : tok);
    for (int64_t g = 0; g < ng; g++)
      gemm(j->cols, &j->y[(size_t)t * ys + (size_t)(r0 + g * gr)], ys, pk + (size_t)g * gb,
           j->prep + (size_t)t * j->p_rs, j->p_rs, nt);
  }
  tail_rows(j, r0 + ng * gr, r1, j->tok0, j->tok1);
}

/* Bytes of one packed group of rows cols long (qtypes.h packed_block_bytes) */
static size_t packed_group_bytes(const nllm_qtype *q, int64_t cols) {
  const size_t per_block = q->packed_block_bytes ? (size_t)q->packed_block_bytes
                                                 : (size_t)q->pack_group_rows * q->type_size;
  return (size_t)(cols / q->block_size) * per_block;
}

/* The interleaved kernels on the weight's packed groups (no repacking): every token over the
 * item's groups, packed_tok at a time (one token: gemv_packed where the format has one); rows
 * past the last whole group as in packed_rows. */
static void prepacked_rows(const matmul_job *j, int64_t r0, int64_t r1, int worker) {
  const nllm_qtype *q = j->q;
  const int64_t gr = q->pack_group_rows, whole = j->rows / gr * gr;
  size_t gb = packed_group_bytes(q, j->cols);
  const size_t ys = (size_t)j->rows;
  const int64_t g0 = r0 / gr, g1 = (r1 < whole ? r1 : whole) / gr;
  int64_t gbase = 0; /* the group pw + (g - gbase) * gb holds */
  const int64_t tok = q->packed_tok;
  const uint8_t *pw = j->pw;
  nllm_gemm_packed_fn fn_many = q->gemm_packed;
  if (j->pack) { /* expanded once for every token (expand_packed) */
    const size_t eb = NLLM_PACK_BYTES(j->cols) / NLLM_PACK_ROWS * (size_t)gr;
    uint8_t *pk = j->pack + (size_t)worker * PACK_GROUPS * NLLM_PACK_BYTES(j->cols);
    for (int64_t g = g0; g < g1; g++)
      q->expand_packed(j->cols, j->pw + (size_t)g * gb, 0, pk + (size_t)(g - g0) * eb);
    pw = pk;
    gb = eb;
    gbase = g0;
    fn_many = q->gemm_expanded;
  }
  for (int64_t t = j->tok0, pass = 0, nt; t < j->tok1; t += nt, pass++) {
    /* gemv_packed: a decode step (one token in all), whose sums are the decode kernel's; a
     * prompt's last token takes the prompt kernel's, as its other tokens. The first pass over
     * the groups reads them from memory: gemm_packed_stream prefetches as it goes (in the
     * format's first stream_passes passes, stream_tok tokens each). */
    nt = j->pack ? (j->tok1 - t < tok ? j->tok1 - t : tok)
                 : nllm_qtype_pass_tokens(q, pass, j->tok1 - t);
    const nllm_gemm_packed_fn fn = j->pack ? fn_many : nllm_qtype_packed_kernel(q, j->n_tok, pass);
    for (int64_t g = g0; g < g1; g++)
      fn(j->cols, &j->y[(size_t)t * ys + (size_t)(g * gr)], ys, pw + (size_t)(g - gbase) * gb,
         j->prep + (size_t)t * j->p_rs, j->p_rs, (int)nt);
  }
  tail_rows(j, r0 > whole ? r0 : whole, r1, j->tok0, j->tok1);
}

/* Tokens a pass of the dot items over packed weights takes. Every group meets all the pass's
 * tokens, whose prepared rows (about 1.25 bytes a value) are read again for each group: a 512-
 * token prompt's (1.3-3.5 MB at 2048 to 5632 values) came from L3 for every group, and 1.1B
 * pp512 ran 12-16% under pp128 at one thread. Passes of 64 tokens (of as many as 128 KiB of
 * rows hold, at least 64) measured best against 32 tokens and 192 or 384 KiB a pass (1.1B Q8_0
 * 1 thread pp128 / pp512 181 / 165 at 384 KiB, 192 / 183 at 64 tokens; docs/performance.md,
 * twenty-first round); the weights are then read once per pass, as a 16-sequence decode step
 * reads them per 16. */
#define TOK_BLOCK_BYTES (128u << 10)
#define TOK_BLOCK_MIN 64
static _Atomic size_t tok_block_bytes = TOK_BLOCK_BYTES;

void nllm_matmul_set_token_block_bytes(size_t bytes) {
  atomic_store(&tok_block_bytes, bytes ? bytes : TOK_BLOCK_BYTES);
}

static int64_t token_block(const matmul_job *j) {
  if (!j->pw || j->pack) return j->n_tok;
  int64_t tb = (int64_t)(atomic_load(&tok_block_bytes) / (size_t)(j->cols * 5 / 4)) / 8 * 8;
  if (tb < TOK_BLOCK_MIN) tb = TOK_BLOCK_MIN;
  return tb < j->n_tok ? tb : j->n_tok;
}

/* The dot items of jobs j[0..n) (a matmul, or a group's parts: one n_tok) in passes of tb
 * tokens, each pass one run of the pool */
static void run_token_passes(matmul_job *j, int n, int64_t tb, int n_threads, int64_t n_items,
                             nllm_pool_fn fn, void *ctx) {
  const int64_t n_tok = j[0].n_tok;
  for (int64_t t0 = 0; t0 < n_tok; t0 += tb) {
    for (int i = 0; i < n; i++) {
      j[i].tok0 = t0;
      j[i].tok1 = t0 + tb < n_tok ? t0 + tb : n_tok;
    }
    nllm_pool_run(n_threads, n_items, fn, ctx);
  }
}

/* Whether the weight's packed rows serve this matmul: made by the tier's pack_rows. */
static const uint8_t *prepacked(const nllm_qtype *q, const nllm_packed *pk, int64_t cols) {
  if (!pk || !pk->data || !q->gemm_packed || cols % NLLM_GEMM_COLS) return NULL;
  return pk->layout == (void (*)(void))q->pack_rows ? pk->data : NULL;
}

size_t nllm_prepack_size(int32_t wtype, int64_t rows, int64_t cols) {
  const nllm_qtype *q = nllm_qtype_get(wtype);
  if (!q || !q->prepack || !q->gemm_packed || cols % NLLM_GEMM_COLS || rows < q->pack_group_rows)
    return 0;
  return (size_t)(rows / q->pack_group_rows) * packed_group_bytes(q, cols);
}

size_t nllm_prepack_plain_size(int32_t wtype, int64_t rows, int64_t cols) {
  if (!nllm_prepack_size(wtype, rows, cols)) return 0;
  const nllm_qtype *q = nllm_qtype_get(wtype);
  return (size_t)(rows / q->pack_group_rows * q->pack_group_rows) * nllm_row_size(wtype, cols);
}

typedef struct prepack_job {
  const nllm_qtype *q;
  const uint8_t *W;
  uint8_t *out;
  int64_t cols, groups_per_item, groups;
  size_t gb, w_rs;
} prepack_job;

static void prepack_item(void *vjob, int64_t item, int worker) {
  const prepack_job *j = vjob;
  (void)worker;
  const int64_t gr = j->q->pack_group_rows;
  for (int64_t g = item * j->groups_per_item; g < (item + 1) * j->groups_per_item && g < j->groups;
       g++)
    j->q->pack_rows(j->cols, j->W + (size_t)(g * gr) * j->w_rs, j->w_rs,
                    j->out + (size_t)g * j->gb);
}

void nllm_prepack(const void *W, int32_t wtype, int64_t rows, int64_t cols, void *out,
                  int n_threads, nllm_packed *pk) {
  const nllm_qtype *q = nllm_qtype_get(wtype);
  *pk = (nllm_packed){0};
  if (!nllm_prepack_size(wtype, rows, cols)) return;
  const size_t w_rs = nllm_row_size(wtype, cols);
  prepack_job j = {.q = q,
                   .W = W,
                   .out = out,
                   .cols = cols,
                   .groups_per_item = 16,
                   .groups = rows / q->pack_group_rows,
                   .gb = packed_group_bytes(q, cols),
                   .w_rs = w_rs};
  nllm_pool_run(n_threads < 1 ? 1 : n_threads,
                (j.groups + j.groups_per_item - 1) / j.groups_per_item, prepack_item, &j);
  *pk = (nllm_packed){.data = out, .layout = (void (*)(void))q->pack_rows};
}

/* Whether the integer path runs this batch on the format's interleaved kernels (packed), or
 * on its register tiles. */
static int uses_packed(const nllm_qtype *q, int64_t cols, int64_t n_tok) {
  _Static_assert(ITEM_ROWS_MANY % (2 * NLLM_PACK_ROWS) == 0, "an item holds whole groups");
  return q->gemm_packed && n_tok > 1 && n_tok >= q->packed_min_tokens && cols % NLLM_GEMM_COLS == 0;
}

static int uses_tiles(const nllm_qtype *q, int64_t cols, int64_t n_tok) {
  return q->gemm4 && n_tok > 1 && n_tok >= q->gemm_min_tokens && cols % NLLM_GEMM_COLS == 0;
}

/* Four rows at a time by tokens (the register tiles where prepared, else the four-row kernels);
 * the last rows of an item that do not make four go through vec_dot. */
static void dot_item(void *vjob, int64_t item, int worker) {
  const matmul_job *j = vjob;
  const int64_t r0 = item * j->item_rows;
  const int64_t r1 = r0 + j->item_rows < j->rows ? r0 + j->item_rows : j->rows;
  if (j->pw) {
    prepacked_rows(j, r0, r1, worker);
    return;
  }
  if (j->pack) {
    packed_rows(j, r0, r1, worker);
    return;
  }
  nllm_matmul_rows(j->q, j->cols, j->W, j->w_rs, r0, r1, j->act, j->a_rs, j->prep, j->p_rs, j->tok0,
                   j->tok1, j->y, (size_t)j->rows);
}

/* x rounded to the nearest BF16, ties to even (nllm_fp32_to_bf16, here inline for the loop) */
static inline float round_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    u |= 0x00400000u; /* NaN: quiet */
  else
    u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  memcpy(&x, &u, 4);
  return x;
}

typedef struct round_job {
  const float *x;
  float *xr;
  int64_t cols;
} round_job;

static void round_item(void *vjob, int64_t t, int worker) {
  const round_job *j = vjob;
  (void)worker;
  const float *x = j->x + t * j->cols;
  float *xr = j->xr + t * j->cols;
  for (int64_t i = 0; i < j->cols; i++) xr[i] = round_bf16(x[i]);
}

int nllm_matmul_xbf16_fast(void) {
  const nllm_qtype *q = nllm_qtype_get(NLLM_TYPE_BF16);
  return q && q->gemmf_xbf16;
}

void nllm_round_bf16_rows(float *out, const float *x, int64_t n, int64_t cols, int n_threads) {
  round_job rj = {.x = x, .xr = out, .cols = cols};
  nllm_pool_run(n * cols >= 4096 ? n_threads : 1, n, round_item, &rj);
}

void nllm_matmul(float *y, const void *W, int32_t wtype, int64_t rows, int64_t cols, const float *x,
                 int64_t n_tok, void *wdata, int n_threads) {
  nllm_matmul_mode(y, W, wtype, rows, cols, x, n_tok, wdata, n_threads, NLLM_MATMUL_EXACT);
}

void nllm_matmul_mode(float *y, const void *W, int32_t wtype, int64_t rows, int64_t cols,
                      const float *x, int64_t n_tok, void *wdata, int n_threads, int mode) {
  nllm_matmul_pk(y, W, NULL, wtype, rows, cols, x, n_tok, wdata, n_threads, mode);
}

/* Items of rows for a token on packed groups: whole groups */
static int64_t group_items(int64_t item_rows, const nllm_qtype *q) {
  const int64_t gr = q->pack_group_rows;
  return (item_rows + gr - 1) / gr * gr;
}

void nllm_matmul_pk(float *y, const void *W, const nllm_packed *pk, int32_t wtype, int64_t rows,
                    int64_t cols, const float *x, int64_t n_tok, void *wdata, int n_threads,
                    int mode) {
  const nllm_qtype *q = nllm_qtype_get(wtype);
  if (!q || rows <= 0 || n_tok <= 0) return;
  if (n_threads < 1) n_threads = 1;
  if (mode == NLLM_MATMUL_XBF16 && wtype == NLLM_TYPE_BF16) {
    if (q->gemmf_xbf16 && n_tok >= q->gemmf_xbf16->min_tokens) {
      nllm_gemmf_run(q->gemmf_xbf16, y, W, nllm_row_size(wtype, cols), rows, cols, x, n_tok, wdata,
                     n_threads);
      return;
    }
    /* the same rounding before the exact kernels: products of two BF16 values are exact in
     * f32, so every path computes the same sums up to their order */
    float *xr = (float *)align64(wdata);
    nllm_round_bf16_rows(xr, x, n_tok, cols, n_threads);
    x = xr;
    wdata = xr + (size_t)n_tok * (size_t)cols;
  }
  matmul_job j = {.y = y,
                  .W = W,
                  .q = q,
                  .rows = rows,
                  .cols = cols,
                  .n_tok = n_tok,
                  .w_rs = nllm_row_size(wtype, cols),
                  .x = x};
  if (uses_gemmf(q, n_tok)) {
    nllm_gemmf_run(q->gemmf, y, W, j.w_rs, rows, cols, x, n_tok, wdata, n_threads);
    return;
  }
  /* past the crossover only a matrix of NLLM_BLAS_MIN_ROWS rows or more (see ops.h) */
  const int wide = rows >= NLLM_BLAS_MIN_ROWS;
  const nllm_gemmf *dg = dequant_gemmf(q);
  if (dg && wide && n_tok >= q->blas_min_tokens) {
    nllm_gemmf_run_dequant(dg, q, y, W, j.w_rs, rows, cols, x, n_tok, wdata, n_threads);
    return;
  }
#if !defined(NLLM_NO_BLAS)
  if (wide && nllm_matmul_uses_blas(wtype, n_tok, n_threads)) {
    j.tiles = (float *)align64(wdata);
    j.item_rows = rows_per_item(rows, n_threads, 16, blas_tile_rows(cols));
    nllm_pool_run(n_threads, (rows + j.item_rows - 1) / j.item_rows, blas_item, &j);
    return;
  }
#endif
  j.act = (const uint8_t *)x;
  j.a_rs = (size_t)cols * sizeof(float);
  if (q->vec_dot_type != NLLM_TYPE_F32) {
    /* each activation row is quantized once, then shared by every weight row */
    j.vq = nllm_qtype_get(q->vec_dot_type);
    j.act = align64(wdata);
    j.a_rs = nllm_row_size(q->vec_dot_type, cols);
    j.pw = prepacked(q, pk, cols);
    const int packed = !j.pw && uses_packed(q, cols, n_tok);
    if (j.pw || packed || uses_tiles(q, cols, n_tok)) {
      j.prep = align64((uint8_t *)wdata + 64 + (size_t)n_tok * j.a_rs);
      j.p_rs = NLLM_GEMM_PREP_BYTES(cols);
      if (packed || (j.pw && expands(q, n_tok))) j.pack = align64(j.prep + (size_t)n_tok * j.p_rs);
    }
    nllm_pool_run(n_threads, n_tok, quantize_item, &j);
  }
  j.item_rows = n_tok == 1 ? rows_per_item(rows, n_threads, 4, 256) : ITEM_ROWS_MANY;
  if (j.pw && n_tok == 1) j.item_rows = group_items(j.item_rows, q);
  run_token_passes(&j, 1, token_block(&j), n_threads, (rows + j.item_rows - 1) / j.item_rows,
                   dot_item, &j);
}

/* ---------------------------------------------------------------- matrices of one input
 * A layer's q, k and v (gate and up) read the same activations: quantizing them once per
 * vec_dot_type (and preparing them once per tile or interleaved format) for all the matrices,
 * every interleaved matrix repacking into the same per-worker groups, and running
 * every matrix's rows as the items of one pass of the team, saves a quantization pass and two
 * hand-offs of the team per extra matrix, and lets the small k and v fill the threads' share
 * next to q. */
#define GROUP_MAX 4

typedef struct group_job {
  matmul_job part[GROUP_MAX];
  int64_t first[GROUP_MAX + 1]; /* work items of part p: [first[p], first[p + 1]) */
  uint8_t owns[GROUP_MAX];      /* 1: part p quantizes the activations, 2: prepares them too */
  int n;
} group_job;

static void group_quantize_item(void *vjob, int64_t t, int worker) {
  const group_job *g = vjob;
  (void)worker;
  for (int p = 0; p < g->n; p++) {
    const matmul_job *j = &g->part[p];
    const uint8_t *a = j->act + (size_t)t * j->a_rs;
    if (g->owns[p] & 1) j->vq->from_float(j->x + t * j->cols, (uint8_t *)a, j->cols);
    if (g->owns[p] & 2) prep_fn(j)(j->cols, a, j->prep + (size_t)t * j->p_rs);
  }
}

static void group_dot_item(void *vjob, int64_t item, int worker) {
  group_job *g = vjob;
  int p = 0;
  while (item >= g->first[p + 1]) p++;
  dot_item(&g->part[p], item - g->first[p], worker);
}

/* Whether the group takes the shared integer path: every matrix quantized, none on a GEMM. */
static int group_shares(const nllm_matmul_part *p, int n_p, int64_t cols, int64_t n_tok,
                        int n_threads) {
  if (n_p < 2 || n_p > GROUP_MAX) return 0;
  for (int i = 0; i < n_p; i++) {
    const nllm_qtype *q = nllm_qtype_get(p[i].wtype);
    if (!q || q->vec_dot_type == NLLM_TYPE_F32 ||
        nllm_matmul_uses_gemm(p[i].wtype, n_tok, n_threads))
      return 0;
  }
  return 1;
}

size_t nllm_matmul_group_wsize(const nllm_matmul_part *p, int n_p, int64_t cols, int64_t n_tok,
                               int n_threads) {
  size_t one = 0, shared = 64, pack = 0;
  for (int i = 0; i < n_p; i++) {
    const size_t s = nllm_matmul_wsize(p[i].wtype, cols, n_tok, n_threads);
    if (s > one) one = s;
    const nllm_qtype *q = nllm_qtype_get(p[i].wtype);
    /* any tier may be in use when the group runs: room for every matrix's own forms, and for
     * the workers' repacked groups that the interleaved ones share */
    if (q && q->vec_dot_type != NLLM_TYPE_F32) {
      shared += 64 + (size_t)n_tok * nllm_row_size(q->vec_dot_type, cols) + 64 +
                (size_t)n_tok * NLLM_GEMM_PREP_BYTES(cols);
      pack = 64 + (size_t)n_threads * PACK_GROUPS * NLLM_PACK_BYTES(cols);
    }
  }
  shared += pack;
  return one > shared ? one : shared;
}

/* Float matrices of one format on its GEMM: the activations packed once for all of them and
 * every matrix's tiles in one pass of the pool (110M F16 pp128: q, k, v and gate, up were five
 * packs and ten hand-offs a layer). The scratch of one matrix is enough. */
static int group_gemmf(const nllm_matmul_part *p, int n_p, int64_t cols, const float *x,
                       int64_t n_tok, void *wdata, int n_threads) {
  if (n_p < 2 || n_p > NLLM_GEMMF_PARTS_MAX) return 0;
  const nllm_qtype *q = nllm_qtype_get(p[0].wtype);
  if (!uses_gemmf(q, n_tok)) return 0;
  float *y[NLLM_GEMMF_PARTS_MAX];
  const void *W[NLLM_GEMMF_PARTS_MAX];
  size_t w_rs[NLLM_GEMMF_PARTS_MAX];
  int64_t rows[NLLM_GEMMF_PARTS_MAX];
  for (int i = 0; i < n_p; i++) {
    if (p[i].wtype != p[0].wtype) return 0;
    y[i] = p[i].y, W[i] = p[i].W, rows[i] = p[i].rows;
    w_rs[i] = nllm_row_size(p[i].wtype, cols);
  }
  nllm_gemmf_run_group(q->gemmf, n_p, y, W, w_rs, rows, cols, x, n_tok, wdata, n_threads);
  return 1;
}

/* Each matrix alone (a group that does not share, or whose forms do not fit the scratch). */
static void group_each(const nllm_matmul_part *p, int n_p, int64_t cols, const float *x,
                       int64_t n_tok, void *wdata, int n_threads, int mode) {
  for (int i = 0; i < n_p; i++)
    nllm_matmul_pk(p[i].y, p[i].W, p[i].packed, p[i].wtype, p[i].rows, cols, x, n_tok, wdata,
                   n_threads, mode);
}

void nllm_matmul_group(const nllm_matmul_part *p, int n_p, int64_t cols, const float *x,
                       int64_t n_tok, void *wdata, size_t wsize, int n_threads) {
  nllm_matmul_group_mode(p, n_p, cols, x, n_tok, wdata, wsize, n_threads, NLLM_MATMUL_EXACT);
}

void nllm_matmul_group_mode(const nllm_matmul_part *p, int n_p, int64_t cols, const float *x,
                            int64_t n_tok, void *wdata, size_t wsize, int n_threads, int mode) {
  if (n_p <= 0 || n_tok <= 0) return;
  if (n_threads < 1) n_threads = 1;
  /* NLLM_MATMUL_XBF16 rounds the activations per BF16 matrix (nllm_matmul_mode), which the
   * shared forms below do not: such a group runs one by one. Other formats ignore the mode, so
   * a quantized group shares whatever it is (the mode's default is on wherever the CPU has
   * AVX512_BF16). */
  int rounds = 0;
  for (int i = 0; i < n_p; i++) rounds |= mode == NLLM_MATMUL_XBF16 && p[i].wtype == NLLM_TYPE_BF16;
  if (rounds) {
    group_each(p, n_p, cols, x, n_tok, wdata, n_threads, mode);
    return;
  }
  if (group_gemmf(p, n_p, cols, x, n_tok, wdata, n_threads)) return;
  if (!group_shares(p, n_p, cols, n_tok, n_threads)) {
    group_each(p, n_p, cols, x, n_tok, wdata, n_threads, mode);
    return;
  }
  group_job g = {.n = n_p};
  uint8_t *mem = (uint8_t *)wdata, *pack = NULL;
  for (int i = 0; i < n_p; i++) {
    const nllm_qtype *q = nllm_qtype_get(p[i].wtype);
    matmul_job *j = &g.part[i];
    *j = (matmul_job){.y = p[i].y,
                      .W = p[i].W,
                      .q = q,
                      .rows = p[i].rows,
                      .cols = cols,
                      .n_tok = n_tok,
                      .w_rs = nllm_row_size(p[i].wtype, cols),
                      .x = x,
                      .vq = nllm_qtype_get(q->vec_dot_type),
                      .a_rs = nllm_row_size(q->vec_dot_type, cols)};
    j->pw = prepacked(q, p[i].packed, cols);
    j->item_rows = n_tok == 1 ? rows_per_item(j->rows, n_threads, 4, 256) : ITEM_ROWS_MANY;
    if (j->pw && n_tok == 1) j->item_rows = group_items(j->item_rows, q);
    g.first[i + 1] = g.first[i] + (j->rows + j->item_rows - 1) / j->item_rows;
    const int packed = !j->pw && uses_packed(q, cols, n_tok),
              tiles = !j->pw && !packed && uses_tiles(q, cols, n_tok);
    int k = 0;
    while (k < i && g.part[k].vq != j->vq) k++;
    if (k < i) {
      j->act = g.part[k].act;
    } else {
      j->act = align64(mem);
      mem = (uint8_t *)j->act + (size_t)n_tok * j->a_rs;
      g.owns[i] |= 1;
    }
    if (packed || (j->pw && expands(q, n_tok))) {
      if (!pack) {
        pack = align64(mem);
        mem = pack + (size_t)n_threads * PACK_GROUPS * NLLM_PACK_BYTES(cols);
      }
      j->pack = pack;
    }
    if (j->pw || packed || tiles) {
      j->p_rs = NLLM_GEMM_PREP_BYTES(cols);
      for (k = 0; k < i && !(g.part[k].prep && prep_fn(&g.part[k]) == prep_fn(j) &&
                             g.part[k].act == j->act);)
        k++;
      if (k < i) {
        j->prep = g.part[k].prep;
      } else {
        j->prep = align64(mem);
        mem = j->prep + (size_t)n_tok * j->p_rs;
        g.owns[i] |= 2;
      }
    }
  }
  /* one format's matrices need what one matrix does; mixed ones may need more than the
   * caller's scratch holds */
  if ((size_t)(mem - (uint8_t *)wdata) > wsize) {
    group_each(p, n_p, cols, x, n_tok, wdata, n_threads, mode);
    return;
  }
  nllm_pool_run(n_threads, n_tok, group_quantize_item, &g);
  /* passes of a token block when every matrix is packed from load (a matrix repacked per work
   * item would repack once per pass) */
  int64_t tb = token_block(&g.part[0]);
  for (int i = 1; i < n_p; i++)
    if (token_block(&g.part[i]) != tb) tb = n_tok;
  run_token_passes(g.part, n_p, tb, n_threads, g.first[n_p], group_dot_item, &g);
}
