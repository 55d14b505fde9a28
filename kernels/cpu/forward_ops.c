/* The forward pass's operations on the CPU (backend.h): each a call of the kernels in ops.h,
 * attention.h and moe.h on host memory, with the team size its work deserves. None can fail. */
#include <math.h>
#include <string.h>

#include "attention.h"
#include "backend.h"
#include "moe.h"
#include "ops.h"
#include "qtypes.h"

#define PARALLEL_MIN_WORK (1 << 17)

int nllm_cpu_fw_threads(const nllm_cpu_fw *c, int64_t work) {
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

static void cpu_matmul(nllm_fw_backend *be, float *y, const nllm_weight *w, const float *x,
                       int64_t n) {
  const nllm_cpu_fw *c = cpu_of(be);
  nllm_matmul(y, w->data, w->type, w->rows, w->cols, x, n, c->wdata,
              nllm_cpu_fw_threads(c, w->rows * w->cols * n));
}

static void cpu_matmul_group(nllm_fw_backend *be, float *const *y, const nllm_weight *const *w,
                             int n_w, const float *x, int64_t n) {
  const nllm_cpu_fw *c = cpu_of(be);
  nllm_matmul_part p[4];
  int64_t rows = 0;
  if (n_w > 4) {
    for (int i = 0; i < n_w; i++) cpu_matmul(be, y[i], w[i], x, n);
    return;
  }
  for (int i = 0; i < n_w; i++) {
    p[i] = (nllm_matmul_part){y[i], w[i]->data, w[i]->type, w[i]->rows};
    rows += w[i]->rows;
  }
  nllm_matmul_group(p, n_w, w[0]->cols, x, n, c->wdata,
                    nllm_cpu_fw_threads(c, rows * w[0]->cols * n));
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

static void cpu_rope(nllm_fw_backend *be, float *x, int64_t heads, int64_t head_dim, int64_t n_rot,
                     const nllm_weight *inv_freq, int neox, const nllm_fw_rows *rows) {
  (void)be;
  const int64_t stride = heads * head_dim;
  for (int64_t t = 0; t < rows->n; t++)
    nllm_rope(x + t * stride, heads, head_dim, n_rot,
              rows->pos ? rows->pos[t] : rows->pos0 + (int32_t)t, inv_freq->data, neox);
}

/* The cache of a layer is head-major, [n_head_kv][n_ctx cells][head_dim]: decode attention
 * then reads each KV head's positions as one contiguous run (a sequence's cells are mostly
 * consecutive) instead of rows n_head_kv * head_dim apart. */
static void cpu_kv_store(nllm_fw_backend *be, uint8_t *cache, const float *src, int is_v,
                         const nllm_fw_rows *rows) {
  const nllm_cpu_fw *c = cpu_of(be);
  const int32_t type = is_v ? c->kv_type_v : c->kv_type;
  const nllm_qtype *kv_t = nllm_qtype_get(type);
  const int64_t hd = c->head_dim, nkv = c->n_head_kv;
  /* one head's row of a cell: head_dim elements, whole blocks for the quantized types */
  const size_t hrow = nllm_row_size(type, hd), head_bytes = (size_t)c->n_ctx * hrow;
  for (int64_t t = 0; t < rows->n; t++) {
    const size_t row = (size_t)(rows->cell ? rows->cell[t] : rows->pos0 + t);
    for (int64_t h = 0; h < nkv; h++)
      kv_t->from_float(src + (t * nkv + h) * hd, cache + (size_t)h * head_bytes + row * hrow, hd);
  }
}

/* Cache maintenance on that layout, over the first n_layers layers: */

static size_t head_row(int32_t type, const nllm_cpu_fw *c) {
  return nllm_row_size(type, c->head_dim);
}

void nllm_cpu_kv_shift(const nllm_cpu_fw *c, uint8_t *k, int32_t n_layers, int32_t cell,
                       int32_t delta, int64_t n_rot, const float *inv_freq, int neox) {
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

void nllm_cpu_kv_copy(const nllm_cpu_fw *c, uint8_t *k, uint8_t *v, int32_t n_layers, int32_t src,
                      int32_t dst) {
  copy_cells(c, k, c->kv_type, n_layers, src, dst);
  copy_cells(c, v, c->kv_type_v, n_layers, src, dst);
}

/* One cell seen as a run of bytes: per layer, K's heads then V's. */
uint64_t nllm_cpu_kv_cell_bytes(const nllm_cpu_fw *c, int32_t n_layers) {
  return (uint64_t)n_layers * (uint64_t)c->n_head_kv *
         (head_row(c->kv_type, c) + head_row(c->kv_type_v, c));
}

void nllm_cpu_kv_cell_io(const nllm_cpu_fw *c, uint8_t *k, uint8_t *v, int32_t n_layers,
                         int32_t cell, uint8_t *buf, int to_cache) {
  uint8_t *const caches[2] = {k, v};
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

static void cpu_attention(nllm_fw_backend *be, const nllm_fw_attn *a, const nllm_fw_rows *rows) {
  const nllm_cpu_fw *c = cpu_of(be);
  /* attention work grows with each row's visible cells */
  int64_t seen = 0;
  for (int64_t t = 0; t < rows->n; t++) seen += rows->n_vis ? rows->n_vis[t] : rows->pos0 + t + 1;
  nllm_attn_args aa = {.out = a->out,
                       .q = a->q,
                       .k = a->k_cache,
                       .v = a->v_cache,
                       .kv_type = c->kv_type,
                       .v_typed = 1,
                       .v_type = c->kv_type_v,
                       .n_tok = rows->n,
                       .pos0 = rows->pos0,
                       .n_head = a->n_head,
                       .n_head_kv = a->n_head_kv,
                       .head_dim = a->head_dim,
                       .scale = a->scale,
                       .softcap = a->softcap,
                       .window = a->window,
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

static void cpu_add(nllm_fw_backend *be, float *x, const float *y, int64_t count) {
  (void)be;
  for (int64_t i = 0; i < count; i++) x[i] += y[i];
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

static void cpu_moe(nllm_fw_backend *be, float *x, int64_t n, const nllm_fw_moe *a) {
  const nllm_cpu_fw *c = cpu_of(be);
  cpu_matmul(be, c->moe_logits, a->router, x, n);
  const nllm_moe_args args = {
      .out = x,
      .x = x,
      .logits = c->moe_logits,
      .n_tok = n,
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
      .scratch = c->moe_scratch,
      .n_threads = nllm_cpu_fw_threads(c, n * a->n_used * 3 * a->ff * a->d)};
  nllm_moe_ffn(&args);
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
    .from_host = cpu_copy,
    .to_host = cpu_copy,
};
