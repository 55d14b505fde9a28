/* The transformer forward pass: one function, top to bottom, for every architecture in the
 * table (model.c). What differs between families is read from m->arch, not copied; the math
 * runs on a backend's ops (kernels/backend.h): the CPU's, and the GPU's for offloaded layers. */
#include "model/forward.h"

#include <math.h>
#include <stdlib.h>

#include "ops.h"
#include "qtypes.h"

static int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

/* A sparse layer's FFN as the backends take it. */
static nllm_fw_moe moe_of(const nllm_model *m, const nllm_layer *L) {
  const nllm_hparams *hp = &m->hp;
  return (nllm_fw_moe){.router = &L->ffn_gate_inp,
                       .gate = &L->ffn_gate_exps,
                       .up = &L->ffn_up_exps,
                       .down = &L->ffn_down_exps,
                       .sh_gate = &L->ffn_gate_shexp,
                       .sh_up = &L->ffn_up_shexp,
                       .sh_down = &L->ffn_down_shexp,
                       .sh_gate_inp = L->ffn_gate_inp_shexp.data,
                       .d = hp->n_embd,
                       .ff = hp->n_ff_exp,
                       .n_expert = hp->n_expert,
                       .n_used = hp->n_expert_used,
                       .norm = hp->expert_norm};
}

/* What both backends size their buffers from: the model's widths and this context's counts. */
static nllm_fw_shape shape_of(const nllm_forward_state *fs) {
  const nllm_model *m = fs->model;
  const nllm_hparams *hp = &m->hp;
  const int64_t d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim, kvd = fs->kv.row;
  const int64_t ff = m->arch->fused_gate_up ? 2 * (int64_t)hp->n_ff : hp->n_ff;
  return (nllm_fw_shape){
      .n_batch = fs->n_batch,
      .n_ctx = fs->kv.n_ctx,
      .n_embd = d,
      .n_head = hp->n_head,
      .n_head_kv = hp->n_head_kv,
      .head_dim = hp->head_dim,
      .ff_width = ff,
      .qkv_width = m->arch->fused_qkv ? qd + 2 * kvd : 0,
      .max_cols = max64(d, max64(qd, hp->n_ff)),
      .kv_type = fs->kv.type,
      .kv_type_v = fs->kv.type_v,
      .n_threads = fs->n_threads,
      .bf16_activations = fs->bf16_activations,
  };
}

/* The CPU backend: every layer's matrices and sparse FFNs (a GPU layer's experts run on the
 * CPU's kernel), the cache of the CPU layers (one layer's worth when all are offloaded, so no
 * allocation is empty). */
static nllm_status cpu_init(nllm_forward_state *fs) {
  const nllm_model *m = fs->model;
  const int32_t n_layer = m->hp.n_layer, n_cpu_layers = n_layer - m->n_gpu_layers;
  const nllm_weight **mats = nllm_calloc((size_t)n_layer * 8 + 1, sizeof *mats);
  nllm_fw_moe *moe = nllm_calloc((size_t)n_layer + 1, sizeof *moe);
  if (!mats || !moe) {
    free(mats);
    free(moe);
    return nllm_err(NLLM_ERR_NOMEM, "out of memory planning the context");
  }
  int32_t n_mats = 0, n_moe = 0;
  for (int il = 0; il < n_layer; il++) {
    const nllm_layer *L = &m->layers[il];
    const nllm_weight *lm[] = {&L->wq,     &L->wk,   &L->wv,     &L->wo,
                               &L->w_gate, &L->w_up, &L->w_down, &L->ffn_gate_inp};
    for (size_t i = 0; i < sizeof lm / sizeof lm[0]; i++) mats[n_mats++] = lm[i];
    if (L->ffn_gate_inp.data) moe[n_moe++] = moe_of(m, L);
  }
  mats[n_mats++] = &m->output;
  nllm_fw_shape s = shape_of(fs);
  s.n_layers = n_cpu_layers > 0 ? n_cpu_layers : 1;
  s.mats = mats;
  s.n_mats = n_mats;
  s.moe = moe;
  s.n_moe = n_moe;
  nllm_status st = nllm_cpu_fw_init(&fs->cpu, &s);
  free(mats);
  free(moe);
  return st;
}

/* The device backend of a model with GPU layers: the same buffers as the CPU's, and the cache
 * of the offloaded layers. */
static nllm_status gpu_init(nllm_forward_state *fs, int32_t logit_rows) {
  const nllm_model *m = fs->model;
  const nllm_hparams *hp = &m->hp;
  const int64_t d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim, kvd = fs->kv.row;
  nllm_fw_shape s = shape_of(fs);
  s.max_rows = max64(max64(max64(d, qd + 2 * kvd), s.ff_width), m->output.dev ? hp->n_vocab : 0);
  s.n_layers = m->n_gpu_layers;
  s.first_layer = hp->n_layer - m->n_gpu_layers;
  s.n_logits = m->output.dev ? (int64_t)logit_rows * hp->n_vocab : 0;
  return nllm_cuda_fw_init(&fs->gpu, &s);
}

nllm_status nllm_forward_state_init(nllm_forward_state *fs, const nllm_model *m, int32_t n_ctx,
                                    int32_t n_batch, int32_t kv_type, int32_t kv_type_v,
                                    int32_t n_threads, int32_t logit_rows,
                                    int32_t bf16_activations) {
  memset(fs, 0, sizeof *fs);
  const nllm_hparams *hp = &m->hp;
  fs->model = m;
  fs->n_batch = n_batch;
  /* AUTO is settled here, once, so that every call of the context rounds alike (a prompt and
   * its tokens decoded one at a time agree) even if the kernel tier is capped later */
  fs->bf16_activations =
      bf16_activations == NLLM_BF16_ACT_AUTO ? nllm_matmul_xbf16_fast() : bf16_activations;
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
  nllm_status st = cpu_init(fs);
  if (st) return st;
  if (m->arch->abs_pos) {
    fs->row_ids = nllm_aligned_alloc((size_t)n_batch * sizeof(int32_t));
    if (!fs->row_ids) {
      nllm_forward_state_free(fs);
      return nllm_err(NLLM_ERR_NOMEM, "out of memory allocating the context's position ids");
    }
  }
  if (m->n_gpu_layers > 0 && (st = gpu_init(fs, logit_rows))) {
    nllm_forward_state_free(fs);
    return st;
  }
  return NLLM_OK;
}

void nllm_forward_state_free(nllm_forward_state *fs) {
  nllm_cuda_fw_free(&fs->gpu);
  nllm_cpu_fw_free(&fs->cpu);
  nllm_aligned_free(fs->row_ids);
  memset(fs, 0, sizeof *fs);
}

/* One forward call, for the steps below that are more than one op. */
typedef struct fw_run {
  nllm_forward_state *fs;
  const nllm_fw_batch *fb;
  nllm_fw_rows rows;
} fw_run;

/* The first failure of an op in this call (the backends record it; later ops did nothing). */
static nllm_status failed(const nllm_forward_state *fs) {
  return fs->cpu.st ? fs->cpu.st : fs->gpu.st;
}

/* x (n rows) crosses between the host and the device at a CPU/GPU boundary. */
static void move_x(const fw_run *r, nllm_fw_backend *from, nllm_fw_backend *to) {
  const size_t bytes = (size_t)(r->rows.n * r->fs->model->hp.n_embd) * sizeof(float);
  if (from == &r->fs->cpu)
    to->ops->from_host(to, to->b.x, from->b.x, bytes);
  else
    from->ops->to_host(from, to->b.x, from->b.x, bytes);
}

/* The sparse FFN on b->xb. A backend without an expert kernel (CUDA so far) hands its rows to
 * the CPU's kernel and takes the result back. */
static void moe_step(const fw_run *r, nllm_fw_backend *be, const nllm_layer *L) {
  const nllm_hparams *hp = &r->fs->model->hp;
  const int64_t n = r->rows.n;
  const nllm_fw_moe a = moe_of(r->fs->model, L);
  if (be->ops->moe) {
    be->ops->moe(be, be->b.xb, n, &a);
    return;
  }
  nllm_fw_backend *cpu = &r->fs->cpu;
  const size_t bytes = (size_t)(n * hp->n_embd) * sizeof(float);
  be->ops->to_host(be, cpu->b.xb, be->b.xb, bytes);
  cpu->ops->moe(cpu, cpu->b.xb, n, &a);
  be->ops->from_host(be, be->b.xb, cpu->b.xb, bytes);
}

nllm_status nllm_forward_lora_reserve(nllm_forward_state *fs, int32_t max_rank) {
  const nllm_model *m = fs->model;
  if (max_rank > 0 && m->n_gpu_layers > 0 && !fs->gpu.ops->lowrank)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "LoRA adapters are applied on the CPU only; the model has %d GPU layers "
                    "(merge the adapter with nllm convert --lora instead)",
                    m->n_gpu_layers);
  if (max_rank <= fs->lora_rank) return NLLM_OK;
  nllm_status st =
      nllm_cpu_fw_reserve_lowrank(&fs->cpu, fs->n_batch, max_rank, NLLM_FW_LOWRANK_MAX);
  if (st) return st;
  fs->lora_rank = max_rank;
  return NLLM_OK;
}

typedef struct lora_proj {
  float *y;
  const nllm_weight *w;
  int slot;
} lora_proj;

/* y = W x for each layer matrix of one input x, plus s * scale * B (A x) of every adapter of
 * each row that adapts it: the adapters stay unmerged, so one base (quantized or not) serves any
 * set of them, and rows of sequences with different sets share the base products. An adapter's
 * products of one input are one lowrank op (one pass over x for all their A x); consecutive
 * rows with the same set (a sequence's prompt chunk) go through it together. */
static void project(const fw_run *r, nllm_fw_backend *be, int il, const float *x, int64_t n,
                    const lora_proj *p, int n_p) {
  if (n_p > 1 && n_p <= 4 && be->ops->matmul_group) {
    float *y[4];
    const nllm_weight *w[4];
    for (int i = 0; i < n_p; i++) y[i] = p[i].y, w[i] = p[i].w;
    be->ops->matmul_group(be, y, w, n_p, x, n);
  } else {
    for (int i = 0; i < n_p; i++) be->ops->matmul(be, p[i].y, p[i].w, x, n);
  }
  const nllm_lora_set *const *row_set = r->fb->row_lora;
  if (!row_set) return; /* a backend without lowrank has none: nllm_forward_lora_reserve */
  const int64_t in = p[0].w->cols;
  for (int64_t t0 = 0, t1; t0 < n; t0 = t1) {
    const nllm_lora_set *set = row_set[t0];
    for (t1 = t0 + 1; t1 < n && row_set[t1] == set;) t1++;
    for (int32_t k = 0; k < set->n; k++) {
      nllm_fw_lowrank lr[NLLM_FW_LOWRANK_MAX];
      int n_lr = 0;
      for (int i = 0; i < n_p; i++) {
        const nllm_lora_mat *lm = nllm_lora_mat_of(set->a[k].a, il, p[i].slot);
        const float s = set->a[k].scale * lm->scale;
        if (!lm->r || s == 0.0f) continue;
        lr[n_lr++] = (nllm_fw_lowrank){.type = lm->type,
                                       .r = lm->r,
                                       .in = in,
                                       .out = p[i].w->rows,
                                       .a = lm->a,
                                       .bt = lm->bt,
                                       .s = s,
                                       .y = p[i].y + t0 * p[i].w->rows};
      }
      if (n_lr) be->ops->lowrank(be, lr, n_lr, x + t0 * in, t1 - t0);
    }
  }
}

/* One matrix of its own input (the output and down projections, a fused q/k/v or gate/up). */
static void matmul_lora(const fw_run *r, nllm_fw_backend *be, float *y, const nllm_weight *w,
                        int il, int slot, const float *x, int64_t n) {
  const lora_proj p = {y, w, slot};
  project(r, be, il, x, n, &p, 1);
}

/* The arch's normalization: RMSNorm, or LayerNorm with its bias. */
static void norm(const fw_run *r, nllm_fw_backend *be, float *out, const float *x,
                 const nllm_weight *w, const nllm_weight *bias, int64_t rows) {
  const nllm_hparams *hp = &r->fs->model->hp;
  if (r->fs->model->arch->layernorm)
    be->ops->layernorm(be, out, x, w, bias, hp->n_embd, rows, hp->rms_eps);
  else
    be->ops->rmsnorm(be, out, x, w, hp->n_embd, rows, hp->rms_eps);
}

static nllm_status forward_pass(nllm_forward_state *fs, const nllm_fw_batch *fb, float *logits) {
  const nllm_model *m = fs->model;
  const nllm_hparams *hp = &m->hp;
  const nllm_arch *arch = m->arch;
  const int64_t d = hp->n_embd, hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv;
  const int64_t qd = nh * hd, kvd = nkv * hd, ff = hp->n_ff;
  const int64_t n = fb->n;
  const float eps = hp->rms_eps;
  const fw_run r = {.fs = fs,
                    .fb = fb,
                    .rows = {.n = n,
                             .pos0 = fb->pos0,
                             .pos = fb->pos,
                             .cell = fb->cell,
                             .vis_cell = fb->vis_cell,
                             .vis_pos = fb->vis_pos,
                             .n_vis = fb->n_vis}};
  const nllm_fw_rows *rows = &r.rows;
  if (fb->cell && m->n_gpu_layers > 0)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "a paged (many-sequence) batch is not supported on the "
                    "CUDA backend yet");
  const nllm_kv_cache *kv = &fs->kv;
  nllm_status st;
  fs->cpu.st = fs->gpu.st = NLLM_OK;
  /* Every step runs on the backend its weights live on (model/offload.c): layer il on the GPU
   * when it is one of the last n_gpu_layers, the embedding and the head there when all are.
   * `op` and `b` are that backend's operations and buffers; x moves at each change. A failed
   * op is recorded by its backend (later ops do nothing) and found by the check of each layer. */
  nllm_fw_backend *be = m->tok_embd.dev ? &fs->gpu : &fs->cpu;
  const nllm_fw_ops *op = be->ops;
  const nllm_fw_bufs *b = &be->b;

  /* Gemma scales embeddings by sqrt(n_embd); HF casts that factor to the activation dtype (a
   * BF16 run uses a rounded sqrt), an F32 run and llama.cpp use it as is, and so do we: F32
   * compute is what the engine promises. */
  op->get_rows(be, b->x, &m->tok_embd, fb->tokens, n, arch->embed_scale ? sqrtf((float)d) : 1.0f);
  if (arch->abs_pos) {
    /* + the position's row (< pos_embd.rows: check_encoder_batch) and the token-type row (every
     * row is of type 0), then the norm of the sum */
    int32_t *ids = fs->row_ids;
    for (int64_t t = 0; t < n; t++) ids[t] = fb->pos ? fb->pos[t] : fb->pos0 + (int32_t)t;
    op->get_rows(be, b->xb, &m->pos_embd, ids, n, 1.0f);
    op->add(be, b->x, b->xb, n * d);
    memset(ids, 0, (size_t)n * sizeof *ids);
    op->get_rows(be, b->xb, &m->tok_types, ids, n, 1.0f);
    op->add(be, b->x, b->xb, n * d);
    norm(&r, be, b->x, b->x, &m->tok_embd_norm, &m->tok_embd_norm_b, n);
  }

  for (int il = 0; il < hp->n_layer; il++) {
    const nllm_layer *L = &m->layers[il];
    if ((st = failed(fs))) return st;
    if (fs->abort_cb && fs->abort_cb(fs->abort_ud)) return nllm_err(NLLM_ERR_ABORTED, "aborted");
    nllm_fw_backend *lb = nllm_layer_on_gpu(m, il) ? &fs->gpu : &fs->cpu;
    if (lb != be) {
      move_x(&r, be, lb);
      be = lb, op = be->ops, b = &be->b;
    }
    float *x = b->x, *xb = b->xb, *q = b->q, *k = b->k, *v = b->v;

    /* attention: norm (pre-norm archs), q/k/v projections (+bias), per-head q/k norm, RoPE */
    const float *in = x; /* post-norm archs project x itself */
    if (!arch->norm_after_residual) {
      norm(&r, be, xb, x, &L->attn_norm, &L->attn_norm_b, n);
      in = xb;
    }
    if (arch->fused_qkv) { /* [n][qd + 2 kvd]: split into q, k, v */
      matmul_lora(&r, be, b->qkv, &L->wq, il, NLLM_LORA_Q, in, n);
      op->split_qkv(be, q, k, v, b->qkv, qd, kvd, n);
    } else {
      const lora_proj qkv[] = {
          {q, &L->wq, NLLM_LORA_Q}, {k, &L->wk, NLLM_LORA_K}, {v, &L->wv, NLLM_LORA_V}};
      project(&r, be, il, in, n, qkv, 3);
    }
    op->add_bias(be, q, &L->bq, n, qd);
    op->add_bias(be, k, &L->bk, n, kvd);
    op->add_bias(be, v, &L->bv, n, kvd);
    if (L->q_norm.data) { /* per head, or over the whole row (q_norm's width) */
      op->rmsnorm(be, q, q, &L->q_norm, L->q_norm.cols, n * qd / L->q_norm.cols, eps);
      op->rmsnorm(be, k, k, &L->k_norm, L->k_norm.cols, n * kvd / L->k_norm.cols, eps);
    }
    if (!arch->abs_pos) {
      op->rope(be, q, nh, hd, hp->n_rot, &m->rope_freqs, hp->rope_neox, rows);
      op->rope(be, k, nkv, hd, hp->n_rot, &m->rope_freqs, hp->rope_neox, rows);
    }

    /* append this batch's k, v to the cache, then attend over everything up to each token */
    const size_t cells = (size_t)(il - b->first_layer) * (size_t)kv->n_ctx;
    uint8_t *kc = b->k_cache + cells * kv->row_bytes, *vc = b->v_cache + cells * kv->row_bytes_v;
    op->kv_store(be, kc, k, 0, rows);
    op->kv_store(be, vc, v, 1, rows);
    const nllm_attn att = {.out = b->att,
                           .q = q,
                           .k = kc,
                           .v = vc,
                           .n_head = nh,
                           .n_head_kv = nkv,
                           .head_dim = hd,
                           .scale = hp->attn_scale,
                           .softcap = hp->attn_softcap,
                           .window = L->window};
    op->attention(be, &att, rows);

    /* output projection (+bias) and residual (then the norm, post-norm archs) */
    matmul_lora(&r, be, xb, &L->wo, il, NLLM_LORA_O, b->att, n);
    op->add_bias(be, xb, &L->bo, n, d);
    if (L->post_attn_norm.data) op->rmsnorm(be, xb, xb, &L->post_attn_norm, d, n, eps);
    op->add(be, x, xb, n * d);
    if (arch->norm_after_residual) {
      norm(&r, be, x, x, &L->attn_norm, &L->attn_norm_b, n);
      in = x;
    } else {
      /* feed-forward input: the norm of x */
      norm(&r, be, xb, x, &L->ffn_norm, &L->ffn_norm_b, n);
      in = xb;
    }

    /* feed-forward: gate/up, GLU (or up, GELU), down (or in a sparse layer the same through
     * the k experts its router picks per token, on xb in place: pre-norm archs), residual */
    if (L->ffn_gate_inp.data) {
      moe_step(&r, be, L);
    } else {
      if (arch->ffn_gelu_erf) {
        matmul_lora(&r, be, b->up, &L->w_up, il, NLLM_LORA_UP, in, n);
        op->add_bias(be, b->up, &L->b_up, n, ff);
        op->gelu_erf(be, b->up, n * ff);
      } else if (arch->fused_gate_up) { /* [n][2 ff]: each row's gate, then its up */
        matmul_lora(&r, be, b->gate, &L->w_up, il, NLLM_LORA_UP, in, n);
        op->glu(be, b->up, b->gate, b->gate + ff, 2 * ff, ff, n, arch->gelu);
      } else {
        const lora_proj gate_up[] = {{b->gate, &L->w_gate, NLLM_LORA_GATE},
                                     {b->up, &L->w_up, NLLM_LORA_UP}};
        project(&r, be, il, in, n, gate_up, 2);
        op->glu(be, b->up, b->gate, b->up, ff, ff, n, arch->gelu);
      }
      matmul_lora(&r, be, xb, &L->w_down, il, NLLM_LORA_DOWN, b->up, n);
      op->add_bias(be, xb, &L->b_down, n, d);
    }
    if (L->post_ffn_norm.data) op->rmsnorm(be, xb, xb, &L->post_ffn_norm, d, n, eps);
    op->add(be, x, xb, n * d);
    if (arch->norm_after_residual) norm(&r, be, x, x, &L->ffn_norm, &L->ffn_norm_b, n);
  }
  if ((st = failed(fs))) return st;

  /* embeddings: every row's final hidden state, normed as the head would see it (CPU) */
  if (fb->embd) {
    if (be != &fs->cpu) {
      move_x(&r, be, &fs->cpu);
      if ((st = failed(fs))) return st;
      be = &fs->cpu, op = be->ops, b = &be->b;
    }
    if (m->output_norm.data)
      norm(&r, be, fb->embd, b->x, &m->output_norm, &m->output_norm_b, n);
    else
      memcpy(fb->embd, b->x, (size_t)(n * d) * sizeof(float));
  }

  /* final norm and logits: the rows asked for (every row, or only the last, or a list), or none
   * (a prompt chunk) */
  if (!logits) return failed(fs);
  nllm_fw_backend *hb = m->output.dev ? &fs->gpu : &fs->cpu;
  if (hb != be) {
    move_x(&r, be, hb);
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
  norm(&r, be, b->xb, b->x + first * d, &m->output_norm, &m->output_norm_b, n_out);
  op->matmul(be, out, &m->output, b->xb, n_out);
  if (hp->final_softcap > 0) op->softcap(be, out, hp->final_softcap, n_out * hp->n_vocab);
  if (out != logits) op->to_host(be, logits, out, (size_t)(n_out * hp->n_vocab) * sizeof(float));
  return failed(fs);
}

/* A one-token step that the device can replay as a recorded graph: the whole model on it, one
 * sequence's next position, logits wanted, nothing that moves rows through the host (adapters,
 * experts on the CPU, position embeddings looked up on the host). */
static int graph_step(const nllm_forward_state *fs, const nllm_fw_batch *fb, const float *logits) {
  const nllm_model *m = fs->model;
  if (fb->n != 1 || !logits || fb->embd || fb->row_lora || fb->cell || fb->pos || fb->out_rows ||
      !fs->gpu.ops || !fs->gpu.ops->step_begin || m->n_gpu_layers < m->hp.n_layer ||
      !m->tok_embd.dev || !m->output.dev || m->arch->abs_pos || m->hp.n_expert > 0)
    return 0;
  return 1;
}

nllm_status nllm_forward(nllm_forward_state *fs, const nllm_fw_batch *fb, float *logits) {
  if (!graph_step(fs, fb, logits)) return forward_pass(fs, fb, logits);
  nllm_fw_backend *g = &fs->gpu;
  g->st = NLLM_OK;
  const int begun = g->ops->step_begin(g, fb->tokens[0], fb->pos0, logits);
  if (begun > 0) return g->st;
  if (begun < 0) return forward_pass(fs, fb, logits);
  /* recording: the pass enqueues into the graph, step_end runs it; a failed recording ran
   * nothing (the cache is as it was) and turned graphs off: run the step as usual */
  nllm_status st = g->ops->step_end(g, forward_pass(fs, fb, logits), logits);
  if (st) st = forward_pass(fs, fb, logits);
  return st;
}

/* The CPU layers' cache, in the CPU backend's layout. */
static int32_t cpu_layers(const nllm_forward_state *fs) {
  return fs->model->hp.n_layer - fs->model->n_gpu_layers;
}

void nllm_forward_kv_shift(nllm_forward_state *fs, int32_t cell, int32_t delta) {
  const nllm_hparams *hp = &fs->model->hp;
  nllm_cpu_kv_shift(&fs->cpu, cpu_layers(fs), cell, delta, hp->n_rot, fs->model->inv_freq,
                    hp->rope_neox);
}

void nllm_forward_kv_copy(nllm_forward_state *fs, int32_t src, int32_t dst) {
  nllm_cpu_kv_copy(&fs->cpu, cpu_layers(fs), src, dst);
}

uint64_t nllm_forward_kv_cell_bytes(const nllm_forward_state *fs) {
  return nllm_cpu_kv_cell_bytes(&fs->cpu, cpu_layers(fs));
}

void nllm_forward_kv_cell_get(const nllm_forward_state *fs, int32_t cell, uint8_t *buf) {
  nllm_cpu_kv_cell_io(&fs->cpu, cpu_layers(fs), cell, buf, 0);
}

void nllm_forward_kv_cell_set(nllm_forward_state *fs, int32_t cell, const uint8_t *buf) {
  nllm_cpu_kv_cell_io(&fs->cpu, cpu_layers(fs), cell, (uint8_t *)buf, 1);
}
