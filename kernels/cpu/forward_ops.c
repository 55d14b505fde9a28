/* The forward pass's operations on the CPU (backend.h): each a call of the kernels in ops.h,
 * attention.h and moe.h on host memory, with the team size its work deserves (none can fail),
 * and a context's CPU state: its activations, the cache of its CPU layers, and the scratch
 * those kernels need, sized here from the shapes the forward pass describes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "backend.h"
#include "core/core.h"
#include "moe.h"
#include "ops.h"
#include "pool.h"
#include "qtypes.h"

/* The state of a context's CPU backend (be->ctx): the geometry of the cache it lays out and
 * the scratch its ops use. */
typedef struct nllm_cpu_fw {
  int32_t n_threads;
  int32_t n_ctx, kv_type, kv_type_v; /* the cache: n_ctx cells per layer of these types */
  int64_t n_head_kv, head_dim;
  void *wdata;        /* activation quantization for matmuls (nllm_matmul_wsize) */
  size_t wsize;       /* its bytes */
  float *att_scratch; /* per thread: att_scratch_per_thread floats (nllm_attention_scratch) */
  size_t att_scratch_per_thread;
  float *moe_logits; /* sparse layers: [n_batch][n_expert] and nllm_moe_scratch_size bytes */
  void *moe_scratch;
  /* RoPE's cos and sin of batch row t ([n_batch][2][head_dim / 2]) at position rope_pos[t]
   * (-1: none) for the frequencies rope_freq: q and k of every layer rotate by the same
   * angles, so each row's are computed once per position, not twice per layer. */
  float *rope_cs;
  int32_t *rope_pos;
  const float *rope_freq;
  int64_t rope_half;
  int32_t n_batch;
  int32_t bf16_activations; /* nllm_fw_shape's */
} nllm_cpu_fw;

/* Below this much work a parallel region costs more than it saves (tiny models otherwise run
 * several times slower with threads than without). */
#define PARALLEL_MIN_WORK (1 << 17)

/* The team's size for that much work. */
static int nllm_cpu_fw_threads(const nllm_cpu_fw *c, int64_t work) {
  return work < PARALLEL_MIN_WORK ? 1 : c->n_threads;
}

static const nllm_cpu_fw *cpu_of(const nllm_fw_backend *be) {
  return be->ctx;
}

/* An elementwise op over count values: about 64 operations a value decides its team. */
static int elementwise_threads(const nllm_fw_backend *be, int64_t count) {
  return nllm_cpu_fw_threads(cpu_of(be), count * 64);
}

static void cpu_get_rows(nllm_fw_backend *be, float *out, const nllm_weight *w, const int32_t *ids,
                         int64_t n, float scale) {
  (void)be;
  const nllm_qtype *t = nllm_qtype_get(w->type);
  const size_t row = nllm_row_size(w->type, w->cols);
  for (int64_t r = 0; r < n; r++) {
    float *o = out + r * w->cols;
    t->to_float((const uint8_t *)w->data + (size_t)ids[r] * row, o, w->cols);
    if (scale != 1.0f)
      for (int64_t i = 0; i < w->cols; i++) o[i] *= scale;
  }
}

static void cpu_rmsnorm(nllm_fw_backend *be, float *out, const float *x, const nllm_weight *w,
                        int64_t width, int64_t rows, float eps) {
  nllm_rmsnorm(out, x, w->data, width, rows, eps, elementwise_threads(be, width * rows));
}

static void cpu_layernorm(nllm_fw_backend *be, float *out, const float *x, const nllm_weight *w,
                          const nllm_weight *b, int64_t width, int64_t rows, float eps) {
  nllm_layernorm(out, x, w->data, b->data, width, rows, eps, elementwise_threads(be, width * rows));
}

static void cpu_gelu_erf(nllm_fw_backend *be, float *x, int64_t count) {
  nllm_gelu_erf(x, count, elementwise_threads(be, count));
}

static int matmul_mode(const nllm_cpu_fw *c) {
  return c->bf16_activations ? NLLM_MATMUL_XBF16 : NLLM_MATMUL_EXACT;
}

static void cpu_matmul(nllm_fw_backend *be, float *y, const nllm_weight *w, const float *x,
                       int64_t n) {
  const nllm_cpu_fw *c = cpu_of(be);
  const nllm_packed pk = {w->packed, w->packed_layout};
  nllm_matmul_pk(y, w->data, &pk, w->type, w->rows, w->cols, x, n, c->wdata,
                 nllm_cpu_fw_threads(c, w->rows * w->cols * n), matmul_mode(c));
}

static void cpu_matmul_group(nllm_fw_backend *be, float *const *y, const nllm_weight *const *w,
                             int n_w, const float *x, int64_t n) {
  const nllm_cpu_fw *c = cpu_of(be);
  nllm_matmul_part p[4];
  nllm_packed pk[4];
  int64_t rows = 0;
  if (n_w > 4) {
    for (int i = 0; i < n_w; i++) cpu_matmul(be, y[i], w[i], x, n);
    return;
  }
  for (int i = 0; i < n_w; i++) {
    pk[i] = (nllm_packed){w[i]->packed, w[i]->packed_layout};
    p[i] = (nllm_matmul_part){y[i], w[i]->data, w[i]->type, w[i]->rows, &pk[i]};
    rows += w[i]->rows;
  }
  nllm_matmul_group_mode(p, n_w, w[0]->cols, x, n, c->wdata, c->wsize,
                         nllm_cpu_fw_threads(c, rows * w[0]->cols * n), matmul_mode(c));
}

static void cpu_add_bias(nllm_fw_backend *be, float *y, const nllm_weight *b, int64_t n,
                         int64_t stride) {
  (void)be;
  if (!b->data) return;
  const float *bias = b->data;
  for (int64_t t = 0; t < n; t++)
    for (int64_t i = 0; i < b->cols; i++) y[t * stride + i] += bias[i];
}

static void cpu_split_qkv(nllm_fw_backend *be, float *q, float *k, float *v, const float *qkv,
                          int64_t qd, int64_t kvd, int64_t n) {
  (void)be;
  /* q may be qkv: ascending, row t's destination never overlaps a later row's source */
  for (int64_t t = 0; t < n; t++) {
    const float *row = qkv + t * (qd + 2 * kvd);
    memcpy(k + t * kvd, row + qd, (size_t)kvd * sizeof(float));
    memcpy(v + t * kvd, row + qd + kvd, (size_t)kvd * sizeof(float));
    memmove(q + t * qd, row, (size_t)qd * sizeof(float));
  }
}

/* Tokens per work item of the per-token ops below (RoPE, the cache stores): a prompt's rows
 * split over the team, where they ran on one thread while the others waited (110M F16 pp128
 * at 2 threads: RoPE, the residual adds and the cache stores were ~1.4% of the samples, all
 * serial). */
#define TOK_CHUNK 8

typedef struct rope_job {
  nllm_cpu_fw *c;
  float *x;
  const nllm_fw_rows *rows;
  const float *freq;
  int64_t heads, head_dim, n_rot, stride, half, width;
  int neox;
} rope_job;

static void rope_chunk(void *vjob, int64_t item, int worker) {
  const rope_job *j = vjob;
  (void)worker;
  nllm_cpu_fw *c = j->c;
  const nllm_fw_rows *rows = j->rows;
  const int64_t t1 = (item + 1) * TOK_CHUNK < rows->n ? (item + 1) * TOK_CHUNK : rows->n;
  for (int64_t t = item * TOK_CHUNK; t < t1; t++) {
    const int32_t pos = rows->pos ? rows->pos[t] : rows->pos0 + (int32_t)t;
    float *cs = c->rope_cs + t * 2 * j->width, *sn = cs + j->width;
    if (c->rope_pos[t] != pos) { /* each token's angles and slot are its own */
      nllm_rope_angles(cs, sn, pos, j->freq, j->half);
      c->rope_pos[t] = pos;
    }
    nllm_rope_with(j->x + t * j->stride, j->heads, j->head_dim, j->n_rot, cs, sn, j->neox);
  }
}

static void cpu_rope(nllm_fw_backend *be, float *x, int64_t heads, int64_t head_dim, int64_t n_rot,
                     const nllm_weight *inv_freq, int neox, const nllm_fw_rows *rows) {
  nllm_cpu_fw *c = be->ctx;
  const int64_t stride = heads * head_dim, half = n_rot / 2, width = c->head_dim / 2;
  const float *freq = inv_freq->data;
  if (half > width) { /* wider than the table (no model has it): the angles each time */
    for (int64_t t = 0; t < rows->n; t++)
      nllm_rope(x + t * stride, heads, head_dim, n_rot,
                rows->pos ? rows->pos[t] : rows->pos0 + (int32_t)t, freq, neox);
    return;
  }
  if (c->rope_freq != freq || c->rope_half != half) {
    for (int32_t t = 0; t < c->n_batch; t++) c->rope_pos[t] = -1;
    c->rope_freq = freq;
    c->rope_half = half;
  }
  rope_job j = {c, x, rows, freq, heads, head_dim, n_rot, stride, half, width, neox};
  nllm_pool_run(elementwise_threads(be, rows->n * stride), (rows->n + TOK_CHUNK - 1) / TOK_CHUNK,
                rope_chunk, &j);
}

/* The cache of a layer is head-major, [n_head_kv][n_ctx cells][head_dim]: decode attention
 * then reads each KV head's positions as one contiguous run (a sequence's cells are mostly
 * consecutive) instead of rows n_head_kv * head_dim apart. */
typedef struct kv_store_job {
  const nllm_qtype *kv_t;
  uint8_t *cache;
  const float *src;
  const nllm_fw_rows *rows;
  int64_t hd, nkv;
  size_t hrow, head_bytes;
} kv_store_job;

static void kv_store_chunk(void *vjob, int64_t item, int worker) {
  const kv_store_job *j = vjob;
  (void)worker;
  const nllm_fw_rows *rows = j->rows;
  const int64_t t1 = (item + 1) * TOK_CHUNK < rows->n ? (item + 1) * TOK_CHUNK : rows->n;
  for (int64_t t = item * TOK_CHUNK; t < t1; t++) {
    const size_t row = (size_t)(rows->cell ? rows->cell[t] : rows->pos0 + t);
    for (int64_t h = 0; h < j->nkv; h++)
      j->kv_t->from_float(j->src + (t * j->nkv + h) * j->hd,
                          j->cache + (size_t)h * j->head_bytes + row * j->hrow, j->hd);
  }
}

static void cpu_kv_store(nllm_fw_backend *be, uint8_t *cache, const float *src, int is_v,
                         const nllm_fw_rows *rows) {
  const nllm_cpu_fw *c = cpu_of(be);
  const int32_t type = is_v ? c->kv_type_v : c->kv_type;
  const int64_t hd = c->head_dim, nkv = c->n_head_kv;
  /* one head's row of a cell: head_dim elements, whole blocks for the quantized types */
  const size_t hrow = nllm_row_size(type, hd);
  kv_store_job j = {nllm_qtype_get(type), cache, src, rows, hd, nkv, hrow, (size_t)c->n_ctx * hrow};
  nllm_pool_run(elementwise_threads(be, rows->n * nkv * hd), (rows->n + TOK_CHUNK - 1) / TOK_CHUNK,
                kv_store_chunk, &j);
}

/* Cache maintenance on that layout, over the first n_layers layers: */

static size_t head_row(int32_t type, const nllm_cpu_fw *c) {
  return nllm_row_size(type, c->head_dim);
}

void nllm_cpu_kv_shift(const nllm_fw_backend *be, int32_t n_layers, int32_t cell, int32_t delta,
                       int64_t n_rot, const float *inv_freq, int neox) {
  const nllm_cpu_fw *c = cpu_of(be);
  uint8_t *k = be->b.k_cache;
  const nllm_qtype *kv_t = nllm_qtype_get(c->kv_type);
  const int64_t hd = c->head_dim;
  const size_t hrow = head_row(c->kv_type, c), head_bytes = (size_t)c->n_ctx * hrow;
  const size_t layer_bytes = head_bytes * (size_t)c->n_head_kv;
  float *tmp = c->att_scratch; /* at least 2 head_dim floats; free between forward calls */
  for (int32_t il = 0; il < n_layers; il++)
    for (int64_t h = 0; h < c->n_head_kv; h++) {
      uint8_t *row = k + (size_t)il * layer_bytes + (size_t)h * head_bytes + (size_t)cell * hrow;
      /* the rotation is additive in the angle: rotating by delta moves the key from its old
       * position to the new one (a quantized cache re-rounds the row once per shift) */
      kv_t->to_float(row, tmp, hd);
      nllm_rope(tmp, 1, hd, n_rot, delta, inv_freq, neox);
      kv_t->from_float(tmp, row, hd);
    }
}

/* One of K or V: cache row src to dst in every layer. */
static void copy_cells(const nllm_cpu_fw *c, uint8_t *cache, int32_t type, int32_t n_layers,
                       int32_t src, int32_t dst) {
  const size_t hrow = head_row(type, c), head_bytes = (size_t)c->n_ctx * hrow;
  const size_t layer_bytes = head_bytes * (size_t)c->n_head_kv;
  for (int32_t il = 0; il < n_layers; il++)
    for (int64_t h = 0; h < c->n_head_kv; h++) {
      uint8_t *head = cache + (size_t)il * layer_bytes + (size_t)h * head_bytes;
      memcpy(head + (size_t)dst * hrow, head + (size_t)src * hrow, hrow);
    }
}

void nllm_cpu_kv_copy(const nllm_fw_backend *be, int32_t n_layers, int32_t src, int32_t dst) {
  const nllm_cpu_fw *c = cpu_of(be);
  copy_cells(c, be->b.k_cache, c->kv_type, n_layers, src, dst);
  copy_cells(c, be->b.v_cache, c->kv_type_v, n_layers, src, dst);
}

/* One cell seen as a run of bytes: per layer, K's heads then V's. */
uint64_t nllm_cpu_kv_cell_bytes(const nllm_fw_backend *be, int32_t n_layers) {
  const nllm_cpu_fw *c = cpu_of(be);
  return (uint64_t)n_layers * (uint64_t)c->n_head_kv *
         (head_row(c->kv_type, c) + head_row(c->kv_type_v, c));
}

void nllm_cpu_kv_cell_io(const nllm_fw_backend *be, int32_t n_layers, int32_t cell, uint8_t *buf,
                         int to_cache) {
  const nllm_cpu_fw *c = cpu_of(be);
  uint8_t *const caches[2] = {be->b.k_cache, be->b.v_cache};
  const int32_t types[2] = {c->kv_type, c->kv_type_v};
  for (int32_t il = 0; il < n_layers; il++)
    for (int kv = 0; kv < 2; kv++) {
      const size_t hrow = head_row(types[kv], c), head_bytes = (size_t)c->n_ctx * hrow;
      uint8_t *layer = caches[kv] + (size_t)il * head_bytes * (size_t)c->n_head_kv;
      for (int64_t h = 0; h < c->n_head_kv; h++, buf += hrow) {
        uint8_t *row = layer + (size_t)h * head_bytes + (size_t)cell * hrow;
        if (to_cache)
          memcpy(row, buf, hrow);
        else
          memcpy(buf, row, hrow);
      }
    }
}

static void cpu_attention(nllm_fw_backend *be, const nllm_attn *a, const nllm_fw_rows *rows) {
  const nllm_cpu_fw *c = cpu_of(be);
  /* attention work grows with each row's visible cells */
  int64_t seen = 0;
  for (int64_t t = 0; t < rows->n; t++) seen += rows->n_vis ? rows->n_vis[t] : rows->pos0 + t + 1;
  const nllm_attn_args aa = {.attn = *a,
                             .kv_type = c->kv_type,
                             .v_typed = 1,
                             .v_type = c->kv_type_v,
                             .n_tok = rows->n,
                             .pos0 = rows->pos0,
                             .kv_pos_stride = a->head_dim,
                             .kv_head_stride = (int64_t)c->n_ctx * a->head_dim,
                             .scratch = c->att_scratch,
                             .scratch_per_thread = c->att_scratch_per_thread,
                             .n_threads = nllm_cpu_fw_threads(c, seen * a->n_head * a->head_dim),
                             .vis_cell = rows->vis_cell,
                             .vis_pos = rows->vis_pos,
                             .n_vis = rows->n_vis,
                             .tok_pos = rows->pos};
  nllm_attention(&aa);
}

typedef struct add_job {
  float *x;
  const float *y;
  int64_t n;
} add_job;

#define ADD_CHUNK 8192

static void add_chunk(void *vjob, int64_t item, int worker) {
  const add_job *j = vjob;
  (void)worker;
  const int64_t i1 = (item + 1) * ADD_CHUNK < j->n ? (item + 1) * ADD_CHUNK : j->n;
  float *restrict x = j->x;
  const float *restrict y = j->y;
  for (int64_t i = item * ADD_CHUNK; i < i1; i++) x[i] += y[i];
}

static void cpu_add(nllm_fw_backend *be, float *x, const float *y, int64_t count) {
  add_job j = {x, y, count};
  nllm_pool_run(elementwise_threads(be, count), (count + ADD_CHUNK - 1) / ADD_CHUNK, add_chunk, &j);
}

static void cpu_glu(nllm_fw_backend *be, float *out, const float *gate, const float *up,
                    int64_t in_stride, int64_t width, int64_t n, int gelu) {
  if (in_stride == width) {
    nllm_glu(out, gate, up, n * width, gelu, elementwise_threads(be, n * width));
    return;
  }
  for (int64_t t = 0; t < n; t++)
    nllm_glu(out + t * width, gate + t * in_stride, up + t * in_stride, width, gelu, 1);
}

static void cpu_softcap(nllm_fw_backend *be, float *y, float c, int64_t count) {
  (void)be;
  for (int64_t i = 0; i < count; i++) y[i] = c * tanhf(y[i] / c);
}

static void cpu_copy(nllm_fw_backend *be, void *dst, const void *src, size_t bytes) {
  (void)be;
  memcpy(dst, src, bytes);
}

static nllm_moe_mat moe_mat(const nllm_weight *w) {
  return (nllm_moe_mat){w->data, w->type, w->rows, w->cols};
}

/* The expert kernel's arguments that the layer's shape gives (the sizing and the call). */
static nllm_moe_args moe_args_of(const nllm_fw_moe *a, int64_t n_tok, int n_threads) {
  return (nllm_moe_args){.n_tok = n_tok,
                         .d = a->d,
                         .ff = a->ff,
                         .n_expert = a->n_expert,
                         .n_used = a->n_used,
                         .norm = a->norm,
                         .gate = moe_mat(a->gate),
                         .up = moe_mat(a->up),
                         .down = moe_mat(a->down),
                         .sh_gate = moe_mat(a->sh_gate),
                         .sh_up = moe_mat(a->sh_up),
                         .sh_down = moe_mat(a->sh_down),
                         .sh_gate_inp = a->sh_gate_inp,
                         .n_threads = n_threads};
}

static void cpu_moe(nllm_fw_backend *be, float *x, int64_t n, const nllm_fw_moe *a) {
  const nllm_cpu_fw *c = cpu_of(be);
  cpu_matmul(be, c->moe_logits, a->router, x, n);
  nllm_moe_args args = moe_args_of(a, n, nllm_cpu_fw_threads(c, n * a->n_used * 3 * a->ff * a->d));
  args.out = x;
  args.x = x;
  args.logits = c->moe_logits;
  args.scratch = c->moe_scratch;
  args.matmul_mode = matmul_mode(c);
  nllm_moe_ffn(&args);
}

/* Memory-bound at decode like the base matmul (a few percent of its bytes), so the whole team
 * runs it whatever the arithmetic: a pass for every product's A x, then one for their B t. */
static void cpu_lowrank(nllm_fw_backend *be, const nllm_fw_lowrank *p, int n_p, const float *x,
                        int64_t n) {
  nllm_lowrank lr[NLLM_FW_LOWRANK_MAX];
  float *t = be->b.lora_t;
  for (int i = 0; i < n_p; i++) { /* n_p <= NLLM_FW_LOWRANK_MAX: the forward pass's groups */
    lr[i] = (nllm_lowrank){.type = p[i].type,
                           .r = p[i].r,
                           .in = p[i].in,
                           .out = p[i].out,
                           .a = p[i].a,
                           .bt = p[i].bt,
                           .s = p[i].s,
                           .t = t,
                           .y = p[i].y};
    t += n * p[i].r;
  }
  const int n_threads = cpu_of(be)->n_threads;
  nllm_lowrank_down(lr, n_p, x, n, n_threads);
  nllm_lowrank_up(lr, n_p, n, n_threads);
}

const nllm_fw_ops nllm_cpu_fw_ops = {
    .get_rows = cpu_get_rows,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .matmul_group = cpu_matmul_group,
    .add_bias = cpu_add_bias,
    .split_qkv = cpu_split_qkv,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .attention = cpu_attention,
    .add = cpu_add,
    .glu = cpu_glu,
    .softcap = cpu_softcap,
    .layernorm = cpu_layernorm,
    .gelu_erf = cpu_gelu_erf,
    .moe = cpu_moe,
    .lowrank = cpu_lowrank,
    .from_host = cpu_copy,
    .to_host = cpu_copy,
};

/* ---- a context's CPU backend */

static int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

/* The activation quantization of the widest matmul any of the matrices needs. */
static size_t matmul_scratch(const nllm_fw_shape *s) {
  size_t w = 0;
  for (int32_t i = 0; i < s->n_mats; i++) {
    const nllm_weight *m = s->mats[i];
    if (!m->data || m->rows <= 0) continue;
    const size_t need = nllm_matmul_wsize(m->type, m->cols, s->n_batch, s->n_threads);
    if (need > w) w = need;
  }
  return w;
}

/* The expert kernel's scratch for the largest of the sparse layers (same shapes; the types may
 * differ per layer in a mixed preset). */
static size_t moe_scratch(const nllm_fw_shape *s) {
  size_t w = 0;
  for (int32_t i = 0; i < s->n_moe; i++) {
    const nllm_moe_args args = moe_args_of(&s->moe[i], s->n_batch, s->n_threads);
    const size_t need = nllm_moe_scratch_size(&args);
    if (need > w) w = need;
  }
  return w;
}

nllm_status nllm_cpu_fw_reserve_lowrank(nllm_fw_backend *be, int32_t n_batch, int32_t max_rank,
                                        int32_t n_products) {
  float *t = nllm_aligned_alloc((size_t)((int64_t)n_batch * max_rank * n_products) * sizeof(float));
  if (!t) return nllm_err(NLLM_ERR_NOMEM, "out of memory for the LoRA scratch (rank %d)", max_rank);
  nllm_aligned_free(be->b.lora_t);
  be->b.lora_t = t;
  return NLLM_OK;
}

void nllm_cpu_fw_free(nllm_fw_backend *be) {
  nllm_cpu_fw *c = be->ctx;
  nllm_fw_bufs *b = &be->b;
  void *bufs[] = {b->x,    b->xb, b->q,       b->k,       b->v,     b->att,
                  b->gate, b->up, b->k_cache, b->v_cache, b->lora_t};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) nllm_aligned_free(bufs[i]);
  if (c) {
    nllm_aligned_free(c->wdata);
    nllm_aligned_free(c->att_scratch);
    nllm_aligned_free(c->moe_logits);
    nllm_aligned_free(c->moe_scratch);
    nllm_aligned_free(c->rope_cs);
    nllm_aligned_free(c->rope_pos);
    free(c);
  }
  memset(be, 0, sizeof *be);
}

nllm_status nllm_cpu_fw_init(nllm_fw_backend *be, const nllm_fw_shape *s) {
  memset(be, 0, sizeof *be);
  const int64_t nb = s->n_batch, d = s->n_embd, qd = s->n_head * s->head_dim;
  const int64_t kvd = s->n_head_kv * s->head_dim;
  const size_t att_per_thread =
      nllm_attention_scratch(s->n_ctx, s->n_head, s->n_head_kv, s->head_dim);
  /* Every size is a checked product: the hyperparameters come from the file and the counts
   * from the caller (each within its own range, but not their product). */
  const uint64_t cells = (uint64_t)s->n_layers * (uint64_t)s->n_ctx;
  const size_t row_k = nllm_row_size(s->kv_type, kvd), row_v = nllm_row_size(s->kv_type_v, kvd);
  uint64_t kv_bytes, kv_bytes_v;
  if (!nllm_mul_ok(cells, row_k, &kv_bytes) || !nllm_mul_ok(cells, row_v, &kv_bytes_v) ||
      kv_bytes > ((uint64_t)1 << 40) || kv_bytes_v > ((uint64_t)1 << 40))
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "KV cache for n_ctx %d would be too large (%d layers, %zu + %zu bytes a "
                    "position each)",
                    s->n_ctx, s->n_layers, row_k, row_v);
  const struct {
    const char *what;
    uint64_t a, b;
  } want[] = {
      {"activations", (uint64_t)nb, (uint64_t)max64(d, qd)},
      {"q/k/v rows", (uint64_t)nb, (uint64_t)max64(qd, s->qkv_width)},
      {"feed-forward rows", (uint64_t)nb, (uint64_t)s->ff_width},
      {"attention scratch", (uint64_t)att_per_thread, (uint64_t)s->n_threads},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    uint64_t n, bytes;
    if (!nllm_mul_ok(want[i].a, want[i].b, &n) || !nllm_mul_ok(n, sizeof(float), &bytes) ||
        bytes > ((uint64_t)1 << 40))
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "the context's %s for n_ctx %d, n_batch %d and %d threads would be too "
                      "large (%llu x %llu floats)",
                      want[i].what, s->n_ctx, s->n_batch, s->n_threads,
                      (unsigned long long)want[i].a, (unsigned long long)want[i].b);
  }
  nllm_cpu_fw *c = nllm_calloc(1, sizeof *c);
  if (!c) return nllm_err(NLLM_ERR_NOMEM, "out of memory for the CPU context");
  be->ctx = c;
  be->ops = &nllm_cpu_fw_ops;
  c->n_threads = s->n_threads;
  c->bf16_activations = s->bf16_activations;
  c->n_ctx = s->n_ctx;
  c->kv_type = s->kv_type;
  c->kv_type_v = s->kv_type_v;
  c->n_head_kv = s->n_head_kv;
  c->head_dim = s->head_dim;
  c->att_scratch_per_thread = att_per_thread;
  c->n_batch = s->n_batch;
  nllm_fw_bufs *b = &be->b;
  b->first_layer = s->first_layer;
  const size_t f = sizeof(float), wsize = matmul_scratch(s);
  b->x = nllm_aligned_alloc((size_t)(nb * d) * f);
  b->xb = nllm_aligned_alloc((size_t)(nb * max64(d, qd)) * f);
  b->q = nllm_aligned_alloc((size_t)(nb * max64(qd, s->qkv_width)) * f);
  b->qkv = b->q; /* a fused projection lands in q, then splits in place */
  b->k = nllm_aligned_alloc((size_t)(nb * kvd) * f);
  b->v = nllm_aligned_alloc((size_t)(nb * kvd) * f);
  b->att = nllm_aligned_alloc((size_t)(nb * qd) * f);
  b->gate = nllm_aligned_alloc((size_t)(nb * s->ff_width) * f);
  b->up = nllm_aligned_alloc((size_t)(nb * s->ff_width) * f);
  b->k_cache = nllm_aligned_alloc(kv_bytes);
  b->v_cache = nllm_aligned_alloc(kv_bytes_v);
  c->att_scratch = nllm_aligned_alloc(att_per_thread * (size_t)s->n_threads * f);
  c->wdata = nllm_aligned_alloc(wsize ? wsize : 64);
  c->rope_cs = nllm_aligned_alloc((size_t)(nb * (s->head_dim / 2 * 2 + 2)) * f);
  c->rope_pos = nllm_aligned_alloc((size_t)nb * sizeof(int32_t));
  c->wsize = wsize ? wsize : 64;
  if (!b->x || !b->xb || !b->q || !b->k || !b->v || !b->att || !b->gate || !b->up || !b->k_cache ||
      !b->v_cache || !c->att_scratch || !c->wdata || !c->rope_cs || !c->rope_pos) {
    nllm_cpu_fw_free(be);
    return nllm_err(NLLM_ERR_NOMEM,
                    "out of memory allocating the context (KV cache %.1f MiB, "
                    "n_ctx %d, n_batch %d)",
                    (double)(kv_bytes + kv_bytes_v) / 1048576.0, s->n_ctx, s->n_batch);
  }
  if (s->n_moe > 0) {
    const size_t ms = moe_scratch(s);
    c->moe_logits = nllm_aligned_alloc((size_t)(nb * s->moe[0].n_expert) * f);
    c->moe_scratch = nllm_aligned_alloc(ms ? ms : 64);
    if (!c->moe_logits || !c->moe_scratch) {
      nllm_cpu_fw_free(be);
      return nllm_err(NLLM_ERR_NOMEM,
                      "out of memory allocating the expert scratch (%.1f MiB for n_batch %d)",
                      (double)ms / 1048576.0, s->n_batch);
    }
  }
  return NLLM_OK;
}
