/* The transformer forward pass: one function, top to bottom, for every architecture in the
 * table (model.c). What differs between families is read from m->arch, not copied. */
#include "model/forward.h"

#include <math.h>
#include <stdlib.h>

#include "attention.h"
#include "ops.h"
#include "qtypes.h"

static size_t max_wsize(const nllm_model *m, int32_t n_batch, int32_t n_threads) {
  size_t w = 0;
#define MAXW(wt)                                                            \
  if ((wt).data && (wt).rows > 0) {                                         \
    size_t s = nllm_matmul_wsize((wt).type, (wt).cols, n_batch, n_threads); \
    if (s > w) w = s;                                                       \
  }
  for (int il = 0; il < m->hp.n_layer; il++) {
    const nllm_layer *L = &m->layers[il];
    MAXW(L->wq) MAXW(L->wk) MAXW(L->wv) MAXW(L->wo) MAXW(L->w_gate) MAXW(L->w_up) MAXW(L->w_down)
  }
  MAXW(m->output)
#undef MAXW
  return w;
}

nllm_status nllm_forward_state_init(nllm_forward_state *fs, const nllm_model *m, int32_t n_ctx,
                                    int32_t n_batch, int32_t kv_type, int32_t n_threads) {
  memset(fs, 0, sizeof *fs);
  const nllm_hparams *hp = &m->hp;
  fs->model = m;
  fs->n_batch = n_batch;
  fs->n_threads = n_threads;
  nllm_kv_cache *kv = &fs->kv;
  kv->type = kv_type;
  kv->n_ctx = n_ctx;
  kv->row = (int64_t)hp->n_head_kv * hp->head_dim;
  kv->row_bytes = (size_t)kv->row * (kv_type == NLLM_TYPE_F16 ? 2 : 4);
  uint64_t kv_bytes;
  if (!nllm_mul_ok((uint64_t)hp->n_layer * (uint64_t)n_ctx, kv->row_bytes, &kv_bytes) ||
      kv_bytes > ((uint64_t)1 << 40))
    return nllm_err(NLLM_ERR_INVALID_ARG, "KV cache for n_ctx %d would be too large", n_ctx);
  kv->k = nllm_aligned_alloc(kv_bytes);
  kv->v = nllm_aligned_alloc(kv_bytes);

  const int64_t nb = n_batch, d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim;
  const int64_t ff = m->arch->fused_gate_up ? 2 * (int64_t)hp->n_ff : hp->n_ff;
  const int64_t qkv = qd + 2 * kv->row; /* fused projections land in q, then split */
  fs->x = nllm_aligned_alloc((size_t)(nb * d) * sizeof(float));
  fs->xb = nllm_aligned_alloc((size_t)(nb * (d > qd ? d : qd)) * sizeof(float));
  fs->q = nllm_aligned_alloc((size_t)(nb * qkv) * sizeof(float));
  fs->k = nllm_aligned_alloc((size_t)(nb * kv->row) * sizeof(float));
  fs->v = nllm_aligned_alloc((size_t)(nb * kv->row) * sizeof(float));
  fs->att = nllm_aligned_alloc((size_t)(nb * qd) * sizeof(float));
  fs->gate = nllm_aligned_alloc((size_t)(nb * ff) * sizeof(float));
  fs->up = nllm_aligned_alloc((size_t)(nb * ff) * sizeof(float));
  fs->att_scratch_per_thread =
      nllm_attention_scratch(n_ctx, hp->n_head, hp->n_head_kv, hp->head_dim);
  fs->att_scratch =
      nllm_aligned_alloc(fs->att_scratch_per_thread * (size_t)n_threads * sizeof(float));
  size_t ws = max_wsize(m, n_batch, n_threads);
  fs->wdata = nllm_aligned_alloc(ws ? ws : 64);
  if (!kv->k || !kv->v || !fs->x || !fs->xb || !fs->q || !fs->k || !fs->v || !fs->att ||
      !fs->gate || !fs->up || !fs->att_scratch || !fs->wdata) {
    nllm_forward_state_free(fs);
    return nllm_err(NLLM_ERR_NOMEM,
                    "out of memory allocating the context (KV cache %.1f MiB, "
                    "n_ctx %d, n_batch %d)",
                    2.0 * (double)kv_bytes / 1048576.0, n_ctx, n_batch);
  }
  return NLLM_OK;
}

void nllm_forward_state_free(nllm_forward_state *fs) {
  nllm_aligned_free(fs->kv.k);
  nllm_aligned_free(fs->kv.v);
  nllm_aligned_free(fs->x);
  nllm_aligned_free(fs->xb);
  nllm_aligned_free(fs->q);
  nllm_aligned_free(fs->k);
  nllm_aligned_free(fs->v);
  nllm_aligned_free(fs->att);
  nllm_aligned_free(fs->gate);
  nllm_aligned_free(fs->up);
  nllm_aligned_free(fs->att_scratch);
  nllm_aligned_free(fs->wdata);
  memset(fs, 0, sizeof *fs);
}

/* Below this many multiply-adds a parallel region costs more than it saves (tiny models
 * otherwise run several times slower with threads than without). */
#define PARALLEL_MIN_WORK (1 << 17)

static int threads_for(const nllm_forward_state *fs, int64_t work) {
  return work < PARALLEL_MIN_WORK ? 1 : fs->n_threads;
}

/* y[n][w.rows] = x[n][w.cols] @ w^T */
static void matmul(nllm_forward_state *fs, float *y, const nllm_weight *w, const float *x,
                   int64_t n) {
  nllm_matmul(y, w->data, w->type, w->rows, w->cols, x, n, fs->wdata,
              threads_for(fs, w->rows * w->cols * n));
}

static void add_bias(float *y, const nllm_weight *b, int64_t n, int64_t stride) {
  if (!b->data) return;
  for (int64_t t = 0; t < n; t++)
    for (int64_t i = 0; i < b->cols; i++) y[t * stride + i] += ((const float *)b->data)[i];
}

static void add_rows(float *x, const float *y, int64_t count) {
  for (int64_t i = 0; i < count; i++) x[i] += y[i];
}

nllm_status nllm_forward(nllm_forward_state *fs, const nllm_token *tokens, int32_t n, int32_t pos0,
                         float *logits, int all_logits) {
  const nllm_model *m = fs->model;
  const nllm_hparams *hp = &m->hp;
  const nllm_arch *arch = m->arch;
  const int64_t d = hp->n_embd, hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv;
  const int64_t qd = nh * hd, kvd = nkv * hd, ff = hp->n_ff;
  const int nt = threads_for(fs, n * d * 64); /* for the elementwise ops */
  nllm_kv_cache *kv = &fs->kv;
  float *x = fs->x, *xb = fs->xb, *q = fs->q, *k = fs->k, *v = fs->v;
  const nllm_qtype *embd_t = nllm_qtype_get(m->tok_embd.type);
  const size_t embd_row = nllm_row_size(m->tok_embd.type, d);
  const nllm_qtype *kv_t = nllm_qtype_get(kv->type);

  /* token embeddings. Gemma scales them by sqrt(n_embd); HF casts that factor to the
   * activation dtype (a BF16 run uses a rounded sqrt), an F32 run and llama.cpp use it as is,
   * and so do we: F32 compute is what the engine promises. */
  const float embd_scale = arch->embed_scale ? sqrtf((float)d) : 1.0f;
  for (int64_t t = 0; t < n; t++) {
    embd_t->to_float((const uint8_t *)m->tok_embd.data + (size_t)tokens[t] * embd_row, x + t * d,
                     d);
    if (arch->embed_scale)
      for (int64_t i = 0; i < d; i++) x[t * d + i] *= embd_scale;
  }

  for (int il = 0; il < hp->n_layer; il++) {
    const nllm_layer *L = &m->layers[il];
    if (fs->abort_cb && fs->abort_cb(fs->abort_ud)) return nllm_err(NLLM_ERR_ABORTED, "aborted");

    /* attention: norm, q/k/v projections (+bias), per-head q/k norm, RoPE */
    nllm_rmsnorm(xb, x, L->attn_norm.data, 0.0f, d, n, hp->rms_eps, nt);
    if (arch->fused_qkv) {
      matmul(fs, q, &L->wq, xb, n); /* [n][qd + 2 kvd]: split into q, k, v */
      /* ascending: row t's destination never overlaps a later row's source */
      for (int64_t t = 0; t < n; t++) {
        const float *row = q + t * (qd + 2 * kvd);
        memcpy(k + t * kvd, row + qd, (size_t)kvd * sizeof(float));
        memcpy(v + t * kvd, row + qd + kvd, (size_t)kvd * sizeof(float));
        memmove(q + t * qd, row, (size_t)qd * sizeof(float));
      }
    } else {
      matmul(fs, q, &L->wq, xb, n);
      matmul(fs, k, &L->wk, xb, n);
      matmul(fs, v, &L->wv, xb, n);
    }
    add_bias(q, &L->bq, n, qd);
    add_bias(k, &L->bk, n, kvd);
    add_bias(v, &L->bv, n, kvd);
    if (L->q_norm.data) {
      nllm_rmsnorm(q, q, L->q_norm.data, 0.0f, hd, n * nh, hp->rms_eps, nt);
      nllm_rmsnorm(k, k, L->k_norm.data, 0.0f, hd, n * nkv, hp->rms_eps, nt);
    }
    for (int64_t t = 0; t < n; t++) {
      nllm_rope(q + t * qd, nh, hd, hp->n_rot, pos0 + (int32_t)t, m->inv_freq, hp->rope_neox);
      nllm_rope(k + t * kvd, nkv, hd, hp->n_rot, pos0 + (int32_t)t, m->inv_freq, hp->rope_neox);
    }

    /* append this batch's k, v to the cache, then attend over everything up to each token */
    uint8_t *kc = kv->k + (size_t)il * kv->n_ctx * kv->row_bytes;
    uint8_t *vc = kv->v + (size_t)il * kv->n_ctx * kv->row_bytes;
    for (int64_t t = 0; t < n; t++) {
      kv_t->from_float(k + t * kvd, kc + (size_t)(pos0 + t) * kv->row_bytes, kvd);
      kv_t->from_float(v + t * kvd, vc + (size_t)(pos0 + t) * kv->row_bytes, kvd);
    }
    nllm_attn_args aa = {.out = fs->att,
                         .q = q,
                         .k = kc,
                         .v = vc,
                         .kv_type = kv->type,
                         .n_tok = n,
                         .pos0 = pos0,
                         .n_head = nh,
                         .n_head_kv = nkv,
                         .head_dim = hd,
                         .scale = hp->attn_scale,
                         .softcap = hp->attn_softcap,
                         .window = L->window,
                         .scratch = fs->att_scratch,
                         .scratch_per_thread = fs->att_scratch_per_thread,
                         .n_threads = threads_for(fs, n * (pos0 + n) * qd)};
    nllm_attention(&aa);

    /* output projection and residual */
    matmul(fs, xb, &L->wo, fs->att, n);
    if (L->post_attn_norm.data)
      nllm_rmsnorm(xb, xb, L->post_attn_norm.data, 0.0f, d, n, hp->rms_eps, nt);
    add_rows(x, xb, n * d);

    /* feed-forward: norm, gate/up, GLU, down, residual */
    nllm_rmsnorm(xb, x, L->ffn_norm.data, 0.0f, d, n, hp->rms_eps, nt);
    if (arch->fused_gate_up) {
      matmul(fs, fs->gate, &L->w_up, xb, n); /* [n][2 ff]: gate then up */
      for (int64_t t = 0; t < n; t++)
        nllm_glu(fs->up + t * ff, fs->gate + t * 2 * ff, fs->gate + t * 2 * ff + ff, ff, arch->gelu,
                 1);
    } else {
      matmul(fs, fs->gate, &L->w_gate, xb, n);
      matmul(fs, fs->up, &L->w_up, xb, n);
      nllm_glu(fs->up, fs->gate, fs->up, n * ff, arch->gelu, nt);
    }
    matmul(fs, xb, &L->w_down, fs->up, n);
    if (L->post_ffn_norm.data)
      nllm_rmsnorm(xb, xb, L->post_ffn_norm.data, 0.0f, d, n, hp->rms_eps, nt);
    add_rows(x, xb, n * d);
  }

  /* final norm and logits: every row, or only the last, or none (a prompt chunk) */
  if (!logits) return NLLM_OK;
  const int64_t first = all_logits ? 0 : n - 1, n_out = n - first;
  nllm_rmsnorm(xb, x + first * d, m->output_norm.data, 0.0f, d, n_out, hp->rms_eps, nt);
  matmul(fs, logits, &m->output, xb, n_out);
  if (hp->final_softcap > 0) {
    const float c = hp->final_softcap;
    for (int64_t i = 0; i < n_out * hp->n_vocab; i++) logits[i] = c * tanhf(logits[i] / c);
  }
  return NLLM_OK;
}
