/* LoRA's low-rank products y += s B (A x) next to a layer's (possibly quantized) matmul. At
 * rank 16 they are 1-2% of the layer's arithmetic but, at decode, a few percent of the bytes
 * read: so A and B may be F16 or BF16 (half the bytes) while the activations stay F32 (a
 * half activation would round the adapter's input, 1e-3 relative), and each pass is split over the
 * team like the base matmul. A is [r][in] and dotted with x; B is kept transposed, [r][out], so
 * B t adds r scaled weight rows into y. This file has the threaded passes and the scalar
 * reference kernels; the tiers' kernels are lowrank_body.h, instantiated at each vector width by
 * lowrank_{avx2,avx512,neon}.c. */
#include "ops.h"
#include "pool.h"
#include "qtypes.h"

#include "cpu/quant.h"

static inline float weight(int32_t type, const void *w, int64_t i) {
  return type == NLLM_TYPE_F16    ? q_h2f(((const uint16_t *)w)[i])
         : type == NLLM_TYPE_BF16 ? q_bf2f(((const uint16_t *)w)[i])
                                  : ((const float *)w)[i];
}

void nllm_lowrank_dot_ref(int32_t wtype, int64_t n, float *s, int64_t s_stride, const void *w,
                          int64_t w_stride, int n_rows, const float *x, int64_t x_stride, int n_tok,
                          float scale) {
  for (int t = 0; t < n_tok; t++)
    for (int j = 0; j < n_rows; j++) {
      float acc = 0;
      for (int64_t i = 0; i < n; i++)
        acc += weight(wtype, w, j * w_stride + i) * x[t * x_stride + i];
      s[t * s_stride + j] = scale * acc;
    }
}

void nllm_lowrank_axpy_ref(int32_t wtype, int64_t n, float *y, int64_t y_stride, const void *w,
                           int64_t w_stride, int64_t r, const float *c, int64_t c_stride,
                           int n_tok) {
  for (int t = 0; t < n_tok; t++)
    for (int64_t i = 0; i < n; i++) {
      float acc = y[t * y_stride + i];
      for (int64_t j = 0; j < r; j++)
        acc += c[t * c_stride + j] * weight(wtype, w, j * w_stride + i);
      y[t * y_stride + i] = acc;
    }
}

/* Work items: a product's rows (down: 4 rows of A; up: OUT_CHUNK outputs, whole panels) by
 * TOK_BLOCK tokens,
 * so a decode step of q, k and v at rank 16 is 12 + 10 items and a prompt has enough for any
 * team while each item's weights stay in L1 as its tokens pass. */
#define DOWN_ROWS 4
#define OUT_CHUNK 256
#define TOK_BLOCK 64
#define TILE_TOK 4

typedef struct lowrank_job {
  const nllm_lowrank *p;
  int n_p;
  const float *x;
  int64_t n_tok, tok_blocks;
  int up;
  nllm_lowrank_dot_fn dot;
  nllm_lowrank_axpy_fn axpy;
} lowrank_job;

static int64_t row_items(const lowrank_job *j, const nllm_lowrank *p) {
  return j->up ? (p->out + OUT_CHUNK - 1) / OUT_CHUNK : (p->r + DOWN_ROWS - 1) / DOWN_ROWS;
}

static size_t elem_size(int32_t type) {
  return type == NLLM_TYPE_F32 ? 4 : 2;
}

static void lowrank_item(void *vjob, int64_t item, int worker) {
  const lowrank_job *j = vjob;
  (void)worker;
  int64_t tb = item % j->tok_blocks, ri = item / j->tok_blocks;
  const nllm_lowrank *p = j->p;
  for (int64_t k = row_items(j, p); ri >= k; k = row_items(j, p)) ri -= k, p++;
  const int64_t t0 = tb * TOK_BLOCK;
  const int64_t t1 = t0 + TOK_BLOCK < j->n_tok ? t0 + TOK_BLOCK : j->n_tok;
  const size_t es = elem_size(p->type);
  if (!j->up) {
    const int64_t r0 = ri * DOWN_ROWS;
    const int nr = (int)(p->r - r0 < DOWN_ROWS ? p->r - r0 : DOWN_ROWS);
    const void *a = (const uint8_t *)p->a + (size_t)(r0 * p->in) * es;
    for (int64_t t = t0; t < t1; t += TILE_TOK)
      j->dot(p->type, p->in, p->t + t * p->r + r0, p->r, a, p->in, nr, j->x + t * p->in, p->in,
             (int)(t1 - t < TILE_TOK ? t1 - t : TILE_TOK), p->s);
  } else {
    const int64_t o1 = (ri + 1) * OUT_CHUNK < p->out ? (ri + 1) * OUT_CHUNK : p->out;
    for (int64_t o = ri * OUT_CHUNK; o < o1; o += NLLM_LOWRANK_PANEL) {
      const int64_t no = o1 - o < NLLM_LOWRANK_PANEL ? o1 - o : NLLM_LOWRANK_PANEL;
      const void *panel = (const uint8_t *)p->bt + (size_t)nllm_lowrank_bt_index(p->r, o, 0) * es;
      for (int64_t t = t0; t < t1; t += TILE_TOK)
        j->axpy(p->type, no, p->y + t * p->out + o, p->out, panel, NLLM_LOWRANK_PANEL, p->r,
                p->t + t * p->r, p->r, (int)(t1 - t < TILE_TOK ? t1 - t : TILE_TOK));
    }
  }
}

static void lowrank_run(const nllm_lowrank *p, int n_p, const float *x, int64_t n_tok,
                        int n_threads, int up) {
  if (n_p <= 0 || n_tok <= 0) return;
  const nllm_cpu_ops *isa = nllm_cpu_ops_get();
  lowrank_job j = {.p = p,
                   .n_p = n_p,
                   .x = x,
                   .n_tok = n_tok,
                   .tok_blocks = (n_tok + TOK_BLOCK - 1) / TOK_BLOCK,
                   .up = up,
                   .dot = isa->lowrank_dot ? isa->lowrank_dot : nllm_lowrank_dot_ref,
                   .axpy = isa->lowrank_axpy ? isa->lowrank_axpy : nllm_lowrank_axpy_ref};
  int64_t items = 0;
  for (int k = 0; k < n_p; k++) items += row_items(&j, &p[k]);
  nllm_pool_run(n_threads, items * j.tok_blocks, lowrank_item, &j);
}

void nllm_lowrank_down(const nllm_lowrank *p, int n_p, const float *x, int64_t n_tok,
                       int n_threads) {
  lowrank_run(p, n_p, x, n_tok, n_threads, 0);
}

void nllm_lowrank_up(const nllm_lowrank *p, int n_p, int64_t n_tok, int n_threads) {
  lowrank_run(p, n_p, NULL, n_tok, n_threads, 1);
}
