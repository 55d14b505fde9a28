/* The transformer forward pass: one function, top to bottom, for every architecture in the
 * table (model.c). What differs between families is read from m->arch, not copied. */
#include "model/forward.h"

#include <math.h>
#include <stdlib.h>

#include "attention.h"
#include "moe.h"
#include "ops.h"
#include "qtypes.h"

#define TRY(call)             \
  do {                        \
    nllm_status st_ = (call); \
    if (st_) return st_;      \
  } while (0)

static size_t max_wsize(const nllm_model *m, int32_t n_batch, int32_t n_threads) {
  size_t w = 0;
#define MAXW(wt)                                                            \
  if ((wt).data && (wt).rows > 0) {                                         \
    size_t s = nllm_matmul_wsize((wt).type, (wt).cols, n_batch, n_threads); \
    if (s > w) w = s;                                                       \
  }
  for (int il = 0; il < m->hp.n_layer; il++) {
    const nllm_layer *L = &m->layers[il];
    const nllm_weight *mats[] = {&L->wq,     &L->wk,   &L->wv,     &L->wo,
                                 &L->w_gate, &L->w_up, &L->w_down, &L->ffn_gate_inp};
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) MAXW(*mats[i])
  }
  MAXW(m->output)
#undef MAXW
  return w;
}

/* Below this many multiply-adds a parallel region costs more than it saves (tiny models
 * otherwise run several times slower with threads than without). */
#define PARALLEL_MIN_WORK (1 << 17)

static int threads_for(const nllm_forward_state *fs, int64_t work) {
  return work < PARALLEL_MIN_WORK ? 1 : fs->n_threads;
}

/* ---- the CPU backend: the kernels exactly as the forward pass has always called them */

static nllm_status cpu_embed(const nllm_fw_run *r, float *x, const nllm_token *tokens) {
  const nllm_model *m = r->m;
  const int64_t d = m->hp.n_embd;
  const nllm_qtype *embd_t = nllm_qtype_get(m->tok_embd.type);
  const size_t embd_row = nllm_row_size(m->tok_embd.type, d);
  /* Gemma scales embeddings by sqrt(n_embd); HF casts that factor to the activation dtype (a
   * BF16 run uses a rounded sqrt), an F32 run and llama.cpp use it as is, and so do we: F32
   * compute is what the engine promises. */
  const float embd_scale = m->arch->embed_scale ? sqrtf((float)d) : 1.0f;
  for (int64_t t = 0; t < r->n; t++) {
    embd_t->to_float((const uint8_t *)m->tok_embd.data + (size_t)tokens[t] * embd_row, x + t * d,
                     d);
    if (m->arch->embed_scale)
      for (int64_t i = 0; i < d; i++) x[t * d + i] *= embd_scale;
  }
  if (m->arch->abs_pos) { /* + position row + token type 0 row (every row is of type 0) */
    const nllm_weight *pe = &m->pos_embd, *tt = &m->tok_types;
    const nllm_qtype *pt = nllm_qtype_get(pe->type), *ttt = nllm_qtype_get(tt->type);
    const size_t prow = nllm_row_size(pe->type, d);
    float *tmp = r->fs->cpu.b.xb; /* free until the first layer */
    const int32_t *pos = r->batch->pos;
    for (int64_t t = 0; t < r->n; t++) {
      const int64_t p = pos ? pos[t] : r->pos0 + t; /* < pos_embd.rows: check_encoder_batch */
      pt->to_float((const uint8_t *)pe->data + (size_t)p * prow, tmp, d);
      for (int64_t i = 0; i < d; i++) x[t * d + i] += tmp[i];
    }
    ttt->to_float(tt->data, tmp, d);
    for (int64_t t = 0; t < r->n; t++)
      for (int64_t i = 0; i < d; i++) x[t * d + i] += tmp[i];
  }
  return NLLM_OK;
}

static nllm_status cpu_layernorm(const nllm_fw_run *r, float *out, const float *x,
                                 const nllm_weight *w, const nllm_weight *b, int64_t width,
                                 int64_t rows) {
  nllm_layernorm(out, x, w->data, b->data, width, rows, r->m->hp.rms_eps, r->nt);
  return NLLM_OK;
}

static nllm_status cpu_gelu_erf(const nllm_fw_run *r, float *x, int64_t count) {
  nllm_gelu_erf(x, count, r->nt);
  return NLLM_OK;
}

static nllm_status cpu_rmsnorm(const nllm_fw_run *r, float *out, const float *x,
                               const nllm_weight *w, int64_t width, int64_t rows) {
  nllm_rmsnorm(out, x, w->data, width, rows, r->m->hp.rms_eps, r->nt);
  return NLLM_OK;
}

/* y[n][w.rows] = x[n][w.cols] @ w^T */
static nllm_status cpu_matmul(const nllm_fw_run *r, float *y, const nllm_weight *w, const float *x,
                              int64_t n) {
  nllm_forward_state *fs = r->fs;
  nllm_matmul(y, w->data, w->type, w->rows, w->cols, x, n, fs->wdata,
              threads_for(fs, w->rows * w->cols * n));
  return NLLM_OK;
}

static nllm_status cpu_add_bias(const nllm_fw_run *r, float *y, const nllm_weight *b,
                                int64_t stride) {
  if (!b->data) return NLLM_OK;
  for (int64_t t = 0; t < r->n; t++)
    for (int64_t i = 0; i < b->cols; i++) y[t * stride + i] += ((const float *)b->data)[i];
  return NLLM_OK;
}

static nllm_status cpu_split_qkv(const nllm_fw_run *r, const nllm_fw_bufs *b) {
  const nllm_hparams *hp = &r->m->hp;
  const int64_t qd = (int64_t)hp->n_head * hp->head_dim;
  const int64_t kvd = (int64_t)hp->n_head_kv * hp->head_dim;
  /* in place (qkv is q here): ascending, row t's destination never overlaps a later row's
   * source */
  for (int64_t t = 0; t < r->n; t++) {
    const float *row = b->qkv + t * (qd + 2 * kvd);
    memcpy(b->k + t * kvd, row + qd, (size_t)kvd * sizeof(float));
    memcpy(b->v + t * kvd, row + qd + kvd, (size_t)kvd * sizeof(float));
    memmove(b->q + t * qd, row, (size_t)qd * sizeof(float));
  }
  return NLLM_OK;
}

static nllm_status cpu_rope(const nllm_fw_run *r, float *x, int64_t heads) {
  const nllm_hparams *hp = &r->m->hp;
  const int64_t stride = heads * hp->head_dim;
  const int32_t *pos = r->batch->pos;
  for (int64_t t = 0; t < r->n; t++)
    nllm_rope(x + t * stride, heads, hp->head_dim, hp->n_rot, pos ? pos[t] : r->pos0 + (int32_t)t,
              r->m->inv_freq, hp->rope_neox);
  return NLLM_OK;
}

/* The CPU cache of a layer is head-major, [n_head_kv][n_ctx cells][head_dim]: decode attention
 * then reads each KV head's positions as one contiguous run (a sequence's cells are mostly
 * consecutive) instead of rows n_head_kv * head_dim apart. */
static nllm_status cpu_kv_store(const nllm_fw_run *r, uint8_t *cache, const float *src, int is_v) {
  const nllm_kv_cache *kv = &r->fs->kv;
  const int32_t type = is_v ? kv->type_v : kv->type;
  const nllm_qtype *kv_t = nllm_qtype_get(type);
  const int64_t hd = r->m->hp.head_dim, nkv = r->m->hp.n_head_kv;
  /* one head's row of a cell: head_dim elements, whole blocks for the quantized types */
  const size_t hrow = nllm_row_size(type, hd), head_bytes = (size_t)kv->n_ctx * hrow;
  const int32_t *cell = r->batch->cell;
  for (int64_t t = 0; t < r->n; t++) {
    const size_t row = (size_t)(cell ? cell[t] : r->pos0 + t);
    for (int64_t h = 0; h < nkv; h++)
      kv_t->from_float(src + t * kv->row + h * hd, cache + (size_t)h * head_bytes + row * hrow, hd);
  }
  return NLLM_OK;
}

static nllm_status cpu_attention(const nllm_fw_run *r, const nllm_fw_bufs *b, const uint8_t *kc,
                                 const uint8_t *vc, int32_t window) {
  nllm_forward_state *fs = r->fs;
  const nllm_hparams *hp = &r->m->hp;
  const int64_t qd = (int64_t)hp->n_head * hp->head_dim;
  const nllm_fw_batch *fb = r->batch;
  /* attention work grows with each row's visible cells */
  int64_t seen = 0;
  for (int64_t t = 0; t < r->n; t++) seen += fb->n_vis ? fb->n_vis[t] : r->pos0 + t + 1;
  nllm_attn_args aa = {.out = b->att,
                       .q = b->q,
                       .k = kc,
                       .v = vc,
                       .kv_type = fs->kv.type,
                       .v_typed = 1,
                       .v_type = fs->kv.type_v,
                       .n_tok = r->n,
                       .pos0 = r->pos0,
                       .n_head = hp->n_head,
                       .n_head_kv = hp->n_head_kv,
                       .head_dim = hp->head_dim,
                       .scale = hp->attn_scale,
                       .softcap = hp->attn_softcap,
                       .window = window,
                       .kv_pos_stride = hp->head_dim,
                       .kv_head_stride = (int64_t)fs->kv.n_ctx * hp->head_dim,
                       .scratch = fs->att_scratch,
                       .scratch_per_thread = fs->att_scratch_per_thread,
                       .n_threads = threads_for(fs, seen * qd),
                       .vis_cell = fb->vis_cell,
                       .vis_pos = fb->vis_pos,
                       .n_vis = fb->n_vis,
                       .tok_pos = fb->pos};
  nllm_attention(&aa);
  return NLLM_OK;
}

static nllm_status cpu_add(const nllm_fw_run *r, float *x, const float *y, int64_t count) {
  (void)r;
  for (int64_t i = 0; i < count; i++) x[i] += y[i];
  return NLLM_OK;
}

static nllm_status cpu_glu(const nllm_fw_run *r, const nllm_fw_bufs *b) {
  const nllm_arch *arch = r->m->arch;
  const int64_t ff = r->m->hp.n_ff;
  if (arch->fused_gate_up) {
    for (int64_t t = 0; t < r->n; t++)
      nllm_glu(b->up + t * ff, b->gate + t * 2 * ff, b->gate + t * 2 * ff + ff, ff, arch->gelu, 1);
  } else {
    nllm_glu(b->up, b->gate, b->up, r->n * ff, arch->gelu, r->nt);
  }
  return NLLM_OK;
}

static nllm_status cpu_softcap(const nllm_fw_run *r, float *y, int64_t count) {
  const float c = r->m->hp.final_softcap;
  for (int64_t i = 0; i < count; i++) y[i] = c * tanhf(y[i] / c);
  return NLLM_OK;
}

static nllm_status cpu_copy(const nllm_fw_run *r, void *dst, const void *src, size_t bytes) {
  (void)r;
  memcpy(dst, src, bytes);
  return NLLM_OK;
}

static nllm_status cpu_moe(const nllm_fw_run *r, const nllm_fw_bufs *b, const nllm_layer *L) {
  nllm_forward_state *fs = r->fs;
  const nllm_hparams *hp = &r->m->hp;
  TRY(cpu_matmul(r, fs->moe_logits, &L->ffn_gate_inp, b->xb, r->n));
  const nllm_moe_args a = {
      .out = b->xb,
      .x = b->xb,
      .logits = fs->moe_logits,
      .n_tok = r->n,
      .d = hp->n_embd,
      .ff = hp->n_ff_exp,
      .n_expert = hp->n_expert,
      .n_used = hp->n_expert_used,
      .norm = hp->expert_norm,
      .gate = {L->ffn_gate_exps.data, L->ffn_gate_exps.type, L->ffn_gate_exps.rows,
               L->ffn_gate_exps.cols},
      .up = {L->ffn_up_exps.data, L->ffn_up_exps.type, L->ffn_up_exps.rows, L->ffn_up_exps.cols},
      .down = {L->ffn_down_exps.data, L->ffn_down_exps.type, L->ffn_down_exps.rows,
               L->ffn_down_exps.cols},
      .scratch = fs->moe_scratch,
      .n_threads = threads_for(fs, r->n * hp->n_expert_used * 3 * hp->n_ff_exp * hp->n_embd)};
  nllm_moe_ffn(&a);
  return NLLM_OK;
}

static const nllm_fw_ops cpu_ops = {
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
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

nllm_status nllm_forward_state_init(nllm_forward_state *fs, const nllm_model *m, int32_t n_ctx,
                                    int32_t n_batch, int32_t kv_type, int32_t kv_type_v,
                                    int32_t n_threads, int32_t logit_rows) {
  memset(fs, 0, sizeof *fs);
  const nllm_hparams *hp = &m->hp;
  fs->model = m;
  fs->n_batch = n_batch;
  fs->n_threads = n_threads;
  nllm_kv_cache *kv = &fs->kv;
  kv->type = kv_type;
  kv->n_ctx = n_ctx;
  kv->row = (int64_t)hp->n_head_kv * hp->head_dim;
  kv->type_v = kv_type_v;
  kv->row_bytes = nllm_row_size(kv_type, kv->row);
  kv->row_bytes_v = nllm_row_size(kv_type_v, kv->row);
  if (!kv->row_bytes || !kv->row_bytes_v || nllm_row_size(kv_type, hp->head_dim) == 0 ||
      nllm_row_size(kv_type_v, hp->head_dim) == 0)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "KV cache types %s/%s need head_dim (%d) to be a multiple of their block size",
                    nllm_qtype_get(kv_type)->name, nllm_qtype_get(kv_type_v)->name, hp->head_dim);
  /* The host cache holds the CPU layers only (one layer's worth when all are offloaded, so
   * the allocation is never empty). */
  const int32_t n_cpu_layers = hp->n_layer - m->n_gpu_layers;
  uint64_t kv_bytes, kv_bytes_v;
  const uint64_t cells = (uint64_t)(n_cpu_layers > 0 ? n_cpu_layers : 1) * (uint64_t)n_ctx;
  if (!nllm_mul_ok(cells, kv->row_bytes, &kv_bytes) ||
      !nllm_mul_ok(cells, kv->row_bytes_v, &kv_bytes_v) || kv_bytes > ((uint64_t)1 << 40) ||
      kv_bytes_v > ((uint64_t)1 << 40))
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "KV cache for n_ctx %d would be too large (%d layers, %zu + %zu bytes a "
                    "position each)",
                    n_ctx, n_cpu_layers > 0 ? n_cpu_layers : 1, kv->row_bytes, kv->row_bytes_v);

  const int64_t nb = n_batch, d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim;
  const int64_t ff = m->arch->fused_gate_up ? 2 * (int64_t)hp->n_ff : hp->n_ff;
  const int64_t qkv = qd + 2 * kv->row; /* fused projections land in q, then split */
  fs->att_scratch_per_thread =
      nllm_attention_scratch(n_ctx, hp->n_head, hp->n_head_kv, hp->head_dim);
  /* Every size is a checked product: the hyperparameters come from the file and the counts
   * from the caller (each within its own range, but not their product). */
  const struct {
    const char *what;
    uint64_t a, b;
  } want[] = {
      {"activations", (uint64_t)nb, (uint64_t)(d > qd ? d : qd)},
      {"q/k/v rows", (uint64_t)nb, (uint64_t)qkv},
      {"feed-forward rows", (uint64_t)nb, (uint64_t)ff},
      {"attention scratch", (uint64_t)fs->att_scratch_per_thread, (uint64_t)n_threads},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    uint64_t n, bytes;
    if (!nllm_mul_ok(want[i].a, want[i].b, &n) || !nllm_mul_ok(n, sizeof(float), &bytes) ||
        bytes > ((uint64_t)1 << 40))
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "the context's %s for n_ctx %d, n_batch %d and %d threads would be too "
                      "large (%llu x %llu floats)",
                      want[i].what, n_ctx, n_batch, n_threads, (unsigned long long)want[i].a,
                      (unsigned long long)want[i].b);
  }
  kv->k = nllm_aligned_alloc(kv_bytes);
  kv->v = nllm_aligned_alloc(kv_bytes_v);
  nllm_fw_bufs *b = &fs->cpu.b;
  fs->cpu.ops = &cpu_ops;
  b->x = nllm_aligned_alloc((size_t)(nb * d) * sizeof(float));
  b->xb = nllm_aligned_alloc((size_t)(nb * (d > qd ? d : qd)) * sizeof(float));
  b->q = nllm_aligned_alloc((size_t)(nb * qkv) * sizeof(float));
  b->qkv = b->q;
  b->k = nllm_aligned_alloc((size_t)(nb * kv->row) * sizeof(float));
  b->v = nllm_aligned_alloc((size_t)(nb * kv->row) * sizeof(float));
  b->att = nllm_aligned_alloc((size_t)(nb * qd) * sizeof(float));
  b->gate = nllm_aligned_alloc((size_t)(nb * ff) * sizeof(float));
  b->up = nllm_aligned_alloc((size_t)(nb * ff) * sizeof(float));
  b->k_cache = kv->k;
  b->v_cache = kv->v;
  fs->att_scratch =
      nllm_aligned_alloc(fs->att_scratch_per_thread * (size_t)n_threads * sizeof(float));
  if (hp->n_expert > 0) {
    /* every sparse layer has the same shapes; the types may differ per layer (a mixed preset) */
    size_t ms = 0;
    for (int il = 0; il < hp->n_layer; il++) {
      const nllm_layer *L = &m->layers[il];
      if (!L->ffn_gate_inp.data) continue;
      size_t s = nllm_moe_scratch_size(nb, d, hp->n_ff_exp, hp->n_expert, hp->n_expert_used,
                                       L->ffn_gate_exps.type, L->ffn_up_exps.type,
                                       L->ffn_down_exps.type, n_threads);
      if (s > ms) ms = s;
    }
    fs->moe_logits = nllm_aligned_alloc((size_t)(nb * hp->n_expert) * sizeof(float));
    fs->moe_scratch = nllm_aligned_alloc(ms ? ms : 64);
    if (!fs->moe_logits || !fs->moe_scratch) {
      nllm_forward_state_free(fs);
      return nllm_err(NLLM_ERR_NOMEM,
                      "out of memory allocating the expert scratch (%.1f MiB for n_batch %d)",
                      (double)ms / 1048576.0, n_batch);
    }
  }
  size_t ws = max_wsize(m, n_batch, n_threads);
  fs->wdata = nllm_aligned_alloc(ws ? ws : 64);
  if (!kv->k || !kv->v || !b->x || !b->xb || !b->q || !b->k || !b->v || !b->att || !b->gate ||
      !b->up || !fs->att_scratch || !fs->wdata) {
    nllm_forward_state_free(fs);
    return nllm_err(NLLM_ERR_NOMEM,
                    "out of memory allocating the context (KV cache %.1f MiB, "
                    "n_ctx %d, n_batch %d)",
                    (double)(kv_bytes + kv_bytes_v) / 1048576.0, n_ctx, n_batch);
  }
  if (m->n_gpu_layers > 0) {
#ifdef NLLM_CUDA
    nllm_status st = nllm_forward_gpu_init(fs, logit_rows);
    if (st) {
      nllm_forward_state_free(fs);
      return st;
    }
#else
    nllm_forward_state_free(fs);
    return nllm_err(NLLM_ERR_UNSUPPORTED, "the model has GPU layers but this build has no CUDA");
#endif
  }
  (void)logit_rows;
  return NLLM_OK;
}

void nllm_forward_state_free(nllm_forward_state *fs) {
#ifdef NLLM_CUDA
  nllm_forward_gpu_free(fs);
#endif
  nllm_aligned_free(fs->kv.k);
  nllm_aligned_free(fs->kv.v);
  nllm_fw_bufs *b = &fs->cpu.b;
  nllm_aligned_free(b->x);
  nllm_aligned_free(b->xb);
  nllm_aligned_free(b->q);
  nllm_aligned_free(b->k);
  nllm_aligned_free(b->v);
  nllm_aligned_free(b->att);
  nllm_aligned_free(b->gate);
  nllm_aligned_free(b->up);
  nllm_aligned_free(fs->att_scratch);
  nllm_aligned_free(fs->wdata);
  nllm_aligned_free(fs->lora_t);
  nllm_aligned_free(fs->lora_u);
  nllm_aligned_free(fs->moe_logits);
  nllm_aligned_free(fs->moe_scratch);
  memset(fs, 0, sizeof *fs);
}

/* x (n rows) crosses between the host and the device at a CPU/GPU boundary. */
static nllm_status move_x(const nllm_fw_run *r, const nllm_fw_backend *from,
                          const nllm_fw_backend *to) {
  const size_t bytes = (size_t)(r->n * r->m->hp.n_embd) * sizeof(float);
  if (from == &r->fs->cpu) return to->ops->from_host(r, to->b.x, from->b.x, bytes);
  return from->ops->to_host(r, to->b.x, from->b.x, bytes);
}

/* The sparse FFN on b->xb. A backend without an expert kernel (CUDA so far) hands its rows to
 * the CPU's kernel and takes the result back. */
static nllm_status moe_step(const nllm_fw_run *r, const nllm_fw_backend *be, const nllm_layer *L) {
  if (be->ops->moe) return be->ops->moe(r, &be->b, L);
  const nllm_fw_backend *cpu = &r->fs->cpu;
  const size_t bytes = (size_t)(r->n * r->m->hp.n_embd) * sizeof(float);
  TRY(be->ops->to_host(r, cpu->b.xb, be->b.xb, bytes));
  TRY(cpu->ops->moe(r, &cpu->b, L));
  return be->ops->from_host(r, be->b.xb, cpu->b.xb, bytes);
}

nllm_status nllm_forward_lora_reserve(nllm_forward_state *fs, int32_t max_rank) {
  const nllm_model *m = fs->model;
  if (max_rank > 0 && m->n_gpu_layers > 0)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "LoRA adapters are applied on the CPU only; the model has %d GPU layers "
                    "(merge the adapter with nllm convert --lora instead)",
                    m->n_gpu_layers);
  if (max_rank <= fs->lora_rank) return NLLM_OK;
  int64_t width = 1;
  for (int il = 0; il < m->hp.n_layer; il++)
    for (int slot = 0; slot < NLLM_LORA_SLOTS; slot++) {
      const nllm_weight *w = nllm_lora_base_weight(m, il, slot);
      if (w && w->rows > width) width = w->rows;
    }
  float *t = nllm_aligned_alloc((size_t)(fs->n_batch * (int64_t)max_rank) * sizeof(float));
  float *u =
      fs->lora_u ? fs->lora_u : nllm_aligned_alloc((size_t)(fs->n_batch * width) * sizeof(float));
  if (!t || !u) {
    nllm_aligned_free(t);
    if (u != fs->lora_u) nllm_aligned_free(u);
    return nllm_err(NLLM_ERR_NOMEM, "out of memory for the LoRA scratch (rank %d)", max_rank);
  }
  nllm_aligned_free(fs->lora_t);
  fs->lora_t = t;
  fs->lora_u = u;
  fs->lora_rank = max_rank;
  return NLLM_OK;
}

/* A LoRA product is about r (in + out) / (in out) of its base matmul's work (1-2% at rank 16):
 * splitting one that small over the team measured no gain (docs/performance.md), so only large
 * ones (long prompts) are split. */
#define LORA_PARALLEL_MIN_WORK (1 << 23)

static int lora_threads(const nllm_forward_state *fs, int64_t work) {
  return work < LORA_PARALLEL_MIN_WORK ? 1 : fs->n_threads;
}

/* y = W x for a layer matrix, plus s * scale * B (A x) of every adapter of each row that adapts
 * it: the adapters stay unmerged, so one base (quantized or not) serves any set of them, and
 * rows of sequences with different sets share the base product. Consecutive rows with the same
 * set (a sequence's prompt chunk) go through each adapter together. */
static nllm_status matmul_lora(const nllm_fw_run *r, const nllm_fw_ops *op, float *y,
                               const nllm_weight *w, int il, int slot, const float *x, int64_t n) {
  TRY(op->matmul(r, y, w, x, n));
  const nllm_lora_set *const *row_set = r->batch->row_lora;
  if (!row_set) return NLLM_OK;
  nllm_forward_state *fs = r->fs;
  for (int64_t t0 = 0, t1; t0 < n; t0 = t1) {
    const nllm_lora_set *set = row_set[t0];
    for (t1 = t0 + 1; t1 < n && row_set[t1] == set;) t1++;
    const int64_t rows = t1 - t0;
    for (int32_t k = 0; k < set->n; k++) {
      const nllm_lora_mat *lm = nllm_lora_mat_of(set->a[k].a, il, slot);
      const float s = set->a[k].scale * lm->scale;
      if (!lm->r || s == 0.0f) continue;
      nllm_matmul(fs->lora_t, lm->a, NLLM_TYPE_F32, lm->r, w->cols, x + t0 * w->cols, rows,
                  fs->wdata, lora_threads(fs, lm->r * w->cols * rows));
      nllm_matmul(fs->lora_u, lm->b, NLLM_TYPE_F32, w->rows, lm->r, fs->lora_t, rows, fs->wdata,
                  lora_threads(fs, w->rows * lm->r * rows));
      const int64_t count = rows * w->rows;
      const float *u = fs->lora_u;
      float *yr = y + t0 * w->rows;
      for (int64_t i = 0; i < count; i++) yr[i] += s * u[i];
    }
  }
  return NLLM_OK;
}

/* The arch's normalization: RMSNorm, or LayerNorm with its bias. */
static nllm_status norm(const nllm_fw_run *r, const nllm_fw_ops *op, float *out, const float *x,
                        const nllm_weight *w, const nllm_weight *bias, int64_t rows) {
  if (r->m->arch->layernorm) return op->layernorm(r, out, x, w, bias, r->m->hp.n_embd, rows);
  return op->rmsnorm(r, out, x, w, r->m->hp.n_embd, rows);
}

nllm_status nllm_forward(nllm_forward_state *fs, const nllm_fw_batch *fb, float *logits) {
  const nllm_model *m = fs->model;
  const nllm_hparams *hp = &m->hp;
  const nllm_arch *arch = m->arch;
  const int64_t d = hp->n_embd, hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv;
  const int64_t qd = nh * hd, kvd = nkv * hd;
  const int64_t n = fb->n;
  const nllm_token *tokens = fb->tokens;
  const nllm_fw_run r = {
      .fs = fs, .m = m, .n = n, .pos0 = fb->pos0, .nt = threads_for(fs, n * d * 64), .batch = fb};
  if (fb->cell && m->n_gpu_layers > 0)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "a paged (many-sequence) batch is not supported on the "
                    "CUDA backend yet");
  const nllm_kv_cache *kv = &fs->kv;
  /* Every step runs on the backend its weights live on (model/offload.c): layer il on the GPU
   * when it is one of the last n_gpu_layers, the embedding and the head there when all are.
   * `op` and `b` are that backend's operations and buffers; x moves at each change. */
  const nllm_fw_backend *be = m->tok_embd.dev ? &fs->gpu : &fs->cpu;
  const nllm_fw_ops *op = be->ops;
  const nllm_fw_bufs *b = &be->b;

  TRY(op->embed(&r, b->x, tokens));
  if (arch->abs_pos) TRY(norm(&r, op, b->x, b->x, &m->tok_embd_norm, &m->tok_embd_norm_b, n));

  for (int il = 0; il < hp->n_layer; il++) {
    const nllm_layer *L = &m->layers[il];
    if (fs->abort_cb && fs->abort_cb(fs->abort_ud)) return nllm_err(NLLM_ERR_ABORTED, "aborted");
    const nllm_fw_backend *lb = nllm_layer_on_gpu(m, il) ? &fs->gpu : &fs->cpu;
    if (lb != be) {
      TRY(move_x(&r, be, lb));
      be = lb, op = be->ops, b = &be->b;
    }
    float *x = b->x, *xb = b->xb, *q = b->q, *k = b->k, *v = b->v;

    /* attention: norm (pre-norm archs), q/k/v projections (+bias), per-head q/k norm, RoPE */
    const float *in = x; /* post-norm archs project x itself */
    if (!arch->norm_after_residual) {
      TRY(norm(&r, op, xb, x, &L->attn_norm, &L->attn_norm_b, n));
      in = xb;
    }
    if (arch->fused_qkv) {
      TRY(matmul_lora(&r, op, b->qkv, &L->wq, il, NLLM_LORA_Q, in,
                      n)); /* [n][qd + 2 kvd]: split into q, k, v */
      TRY(op->split_qkv(&r, b));
    } else {
      TRY(matmul_lora(&r, op, q, &L->wq, il, NLLM_LORA_Q, in, n));
      TRY(matmul_lora(&r, op, k, &L->wk, il, NLLM_LORA_K, in, n));
      TRY(matmul_lora(&r, op, v, &L->wv, il, NLLM_LORA_V, in, n));
    }
    TRY(op->add_bias(&r, q, &L->bq, qd));
    TRY(op->add_bias(&r, k, &L->bk, kvd));
    TRY(op->add_bias(&r, v, &L->bv, kvd));
    if (L->q_norm.data) {
      TRY(op->rmsnorm(&r, q, q, &L->q_norm, hd, n * nh));
      TRY(op->rmsnorm(&r, k, k, &L->k_norm, hd, n * nkv));
    }
    if (!arch->abs_pos) {
      TRY(op->rope(&r, q, nh));
      TRY(op->rope(&r, k, nkv));
    }

    /* append this batch's k, v to the cache, then attend over everything up to each token */
    const size_t cells = (size_t)(il - b->first_layer) * (size_t)kv->n_ctx;
    uint8_t *kc = b->k_cache + cells * kv->row_bytes, *vc = b->v_cache + cells * kv->row_bytes_v;
    TRY(op->kv_store(&r, kc, k, 0));
    TRY(op->kv_store(&r, vc, v, 1));
    TRY(op->attention(&r, b, kc, vc, L->window));

    /* output projection (+bias) and residual (then the norm, post-norm archs) */
    TRY(matmul_lora(&r, op, xb, &L->wo, il, NLLM_LORA_O, b->att, n));
    if (L->bo.data) TRY(op->add_bias(&r, xb, &L->bo, d));
    if (L->post_attn_norm.data) TRY(op->rmsnorm(&r, xb, xb, &L->post_attn_norm, d, n));
    TRY(op->add(&r, x, xb, n * d));
    if (arch->norm_after_residual) {
      TRY(norm(&r, op, x, x, &L->attn_norm, &L->attn_norm_b, n));
      in = x;
    } else {
      /* feed-forward input: the norm of x */
      TRY(norm(&r, op, xb, x, &L->ffn_norm, &L->ffn_norm_b, n));
      in = xb;
    }

    /* feed-forward: gate/up, GLU (or up, GELU), down (or in a sparse layer the same through
     * the k experts its router picks per token, on xb in place: pre-norm archs), residual */
    if (L->ffn_gate_inp.data) {
      TRY(moe_step(&r, be, L));
    } else {
      if (arch->ffn_gelu_erf) {
        TRY(matmul_lora(&r, op, b->up, &L->w_up, il, NLLM_LORA_UP, in, n));
        if (L->b_up.data) TRY(op->add_bias(&r, b->up, &L->b_up, hp->n_ff));
        TRY(op->gelu_erf(&r, b->up, n * hp->n_ff));
      } else {
        if (arch->fused_gate_up) {
          TRY(matmul_lora(&r, op, b->gate, &L->w_up, il, NLLM_LORA_UP, in,
                          n)); /* [n][2 ff]: gate then up */
        } else {
          TRY(matmul_lora(&r, op, b->gate, &L->w_gate, il, NLLM_LORA_GATE, in, n));
          TRY(matmul_lora(&r, op, b->up, &L->w_up, il, NLLM_LORA_UP, in, n));
        }
        TRY(op->glu(&r, b));
      }
      TRY(matmul_lora(&r, op, xb, &L->w_down, il, NLLM_LORA_DOWN, b->up, n));
      if (L->b_down.data) TRY(op->add_bias(&r, xb, &L->b_down, d));
    }
    if (L->post_ffn_norm.data) TRY(op->rmsnorm(&r, xb, xb, &L->post_ffn_norm, d, n));
    TRY(op->add(&r, x, xb, n * d));
    if (arch->norm_after_residual) TRY(norm(&r, op, x, x, &L->ffn_norm, &L->ffn_norm_b, n));
  }

  /* embeddings: every row's final hidden state, normed as the head would see it (CPU) */
  if (fb->embd) {
    if (be != &fs->cpu) {
      TRY(move_x(&r, be, &fs->cpu));
      be = &fs->cpu, op = be->ops, b = &be->b;
    }
    if (m->output_norm.data)
      TRY(norm(&r, op, fb->embd, b->x, &m->output_norm, &m->output_norm_b, n));
    else
      memcpy(fb->embd, b->x, (size_t)(n * d) * sizeof(float));
  }

  /* final norm and logits: the rows asked for (every row, or only the last, or a list), or none
   * (a prompt chunk) */
  if (!logits) return NLLM_OK;
  const nllm_fw_backend *hb = m->output.dev ? &fs->gpu : &fs->cpu;
  if (hb != be) {
    TRY(move_x(&r, be, hb));
    be = hb, op = be->ops, b = &be->b;
  }
  int64_t first = fb->all_logits ? 0 : n - 1, n_out = n - first;
  if (fb->out_rows) {
    n_out = fb->n_out;
    first = fb->out_rows[0];
    if (fb->out_rows[n_out - 1] - first + 1 != n_out) {
      /* scattered rows (one per sequence of a batch): gather them first; out_rows is ascending
       * so row i's destination never overwrites a later source (CPU paged batches only) */
      for (int64_t i = 0; i < n_out; i++)
        memmove(b->x + i * d, b->x + (int64_t)fb->out_rows[i] * d, (size_t)d * sizeof(float));
      first = 0;
    }
  }
  float *out = b->logits ? b->logits : logits; /* the device's, then downloaded */
  TRY(norm(&r, op, b->xb, b->x + first * d, &m->output_norm, &m->output_norm_b, n_out));
  TRY(op->matmul(&r, out, &m->output, b->xb, n_out));
  if (hp->final_softcap > 0) TRY(op->softcap(&r, out, n_out * hp->n_vocab));
  if (out != logits)
    TRY(op->to_host(&r, logits, out, (size_t)(n_out * hp->n_vocab) * sizeof(float)));
  return NLLM_OK;
}

void nllm_forward_kv_shift(nllm_forward_state *fs, int32_t cell, int32_t delta) {
  const nllm_model *m = fs->model;
  const nllm_hparams *hp = &m->hp;
  const nllm_kv_cache *kv = &fs->kv;
  const nllm_qtype *kv_t = nllm_qtype_get(kv->type);
  const int64_t hd = hp->head_dim, nkv = hp->n_head_kv;
  const size_t hrow = nllm_row_size(kv->type, hd), head_bytes = (size_t)kv->n_ctx * hrow;
  const size_t layer_bytes = (size_t)kv->n_ctx * kv->row_bytes;
  float *tmp = fs->att_scratch; /* at least 2 head_dim floats; free between forward calls */
  const int32_t n_cpu = hp->n_layer - m->n_gpu_layers;
  for (int32_t il = 0; il < n_cpu; il++)
    for (int64_t h = 0; h < nkv; h++) {
      uint8_t *row =
          kv->k + (size_t)il * layer_bytes + (size_t)h * head_bytes + (size_t)cell * hrow;
      /* the rotation is additive in the angle: rotating by delta moves the key from its old
       * position to the new one (a quantized cache re-rounds the row once per shift) */
      kv_t->to_float(row, tmp, hd);
      nllm_rope(tmp, 1, hd, hp->n_rot, delta, m->inv_freq, hp->rope_neox);
      kv_t->from_float(tmp, row, hd);
    }
}

/* One of K or V: cache row src to dst in every CPU layer. */
static void copy_cells(uint8_t *cache, int32_t type, const nllm_forward_state *fs, int32_t src,
                       int32_t dst) {
  const nllm_hparams *hp = &fs->model->hp;
  const size_t hrow = nllm_row_size(type, hp->head_dim), head_bytes = (size_t)fs->kv.n_ctx * hrow;
  const size_t layer_bytes = head_bytes * (size_t)hp->n_head_kv;
  const int32_t n_cpu = hp->n_layer - fs->model->n_gpu_layers;
  for (int32_t il = 0; il < n_cpu; il++)
    for (int64_t h = 0; h < hp->n_head_kv; h++) {
      uint8_t *head = cache + (size_t)il * layer_bytes + (size_t)h * head_bytes;
      memcpy(head + (size_t)dst * hrow, head + (size_t)src * hrow, hrow);
    }
}

void nllm_forward_kv_copy(nllm_forward_state *fs, int32_t src, int32_t dst) {
  copy_cells(fs->kv.k, fs->kv.type, fs, src, dst);
  copy_cells(fs->kv.v, fs->kv.type_v, fs, src, dst);
}

/* The head-major layout of cpu_kv_store seen one cell at a time: per layer, K's heads then V's. */
uint64_t nllm_forward_kv_cell_bytes(const nllm_forward_state *fs) {
  const nllm_hparams *hp = &fs->model->hp;
  const uint64_t n_cpu = (uint64_t)(hp->n_layer - fs->model->n_gpu_layers);
  return n_cpu * (uint64_t)hp->n_head_kv *
         (nllm_row_size(fs->kv.type, hp->head_dim) + nllm_row_size(fs->kv.type_v, hp->head_dim));
}

static void cell_io(const nllm_forward_state *fs, int32_t cell, uint8_t *buf, int to_cache) {
  const nllm_hparams *hp = &fs->model->hp;
  const int32_t n_cpu = hp->n_layer - fs->model->n_gpu_layers;
  uint8_t *const caches[2] = {fs->kv.k, fs->kv.v};
  const int32_t types[2] = {fs->kv.type, fs->kv.type_v};
  for (int32_t il = 0; il < n_cpu; il++)
    for (int kv = 0; kv < 2; kv++) {
      const size_t hrow = nllm_row_size(types[kv], hp->head_dim);
      const size_t head_bytes = (size_t)fs->kv.n_ctx * hrow;
      uint8_t *layer = caches[kv] + (size_t)il * head_bytes * (size_t)hp->n_head_kv;
      for (int64_t h = 0; h < hp->n_head_kv; h++, buf += hrow) {
        uint8_t *row = layer + (size_t)h * head_bytes + (size_t)cell * hrow;
        if (to_cache)
          memcpy(row, buf, hrow);
        else
          memcpy(buf, row, hrow);
      }
    }
}

void nllm_forward_kv_cell_get(const nllm_forward_state *fs, int32_t cell, uint8_t *buf) {
  cell_io(fs, cell, buf, 0);
}

void nllm_forward_kv_cell_set(nllm_forward_state *fs, int32_t cell, const uint8_t *buf) {
  cell_io(fs, cell, (uint8_t *)buf, 1);
}
