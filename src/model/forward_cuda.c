/* The GPU backend of the forward pass: the ops of forward.c on device buffers, each a call of
 * kernels/cuda (docs/cuda.md maps them one to one), and the context's device state (its own
 * stream, the activations, the KV cache of the offloaded layers). Built only with CUDA=1. */
#include "model/forward.h"

#ifdef NLLM_CUDA
#include <math.h>
#include <string.h>

#include "cuda/backend_cuda.h"

static nllm_cuda *cu_of(const nllm_fw_run *r) {
  return r->fs->cuda;
}

/* The device copy of a weight, which offload.c set for every weight of a GPU layer. */
static const nllm_cuda_weight *dmat(const nllm_weight *w) {
  return (const nllm_cuda_weight *)w->dev;
}

static nllm_status cuda_embed(const nllm_fw_run *r, float *x, const nllm_token *tokens) {
  const nllm_model *m = r->m;
  nllm_forward_state *fs = r->fs;
  nllm_status st =
      nllm_cuda_upload(fs->cuda, fs->d_tokens, tokens, (size_t)r->n * sizeof(nllm_token));
  if (st) return st;
  const float scale = m->arch->embed_scale ? sqrtf((float)m->hp.n_embd) : 1.0f;
  return nllm_cuda_get_rows(fs->cuda, x, dmat(&m->tok_embd), fs->d_tokens, r->n, scale);
}

static nllm_status cuda_rmsnorm(const nllm_fw_run *r, float *out, const float *x,
                                const nllm_weight *w, int64_t width, int64_t rows) {
  return nllm_cuda_rmsnorm(cu_of(r), out, x, w->dev, width, rows, r->m->hp.rms_eps);
}

static nllm_status cuda_matmul(const nllm_fw_run *r, float *y, const nllm_weight *w, const float *x,
                               int64_t n) {
  return nllm_cuda_matmul(cu_of(r), y, dmat(w), x, n);
}

static nllm_status cuda_add_bias(const nllm_fw_run *r, float *y, const nllm_weight *b,
                                 int64_t stride) {
  if (!b->data) return NLLM_OK;
  return nllm_cuda_add_bias(cu_of(r), y, b->dev, b->cols, r->n, stride);
}

static nllm_status cuda_split_qkv(const nllm_fw_run *r, const nllm_fw_bufs *b) {
  const nllm_hparams *hp = &r->m->hp;
  const int64_t qd = (int64_t)hp->n_head * hp->head_dim;
  const int64_t kvd = (int64_t)hp->n_head_kv * hp->head_dim, w = qd + 2 * kvd;
  nllm_cuda *cu = cu_of(r);
  nllm_status st;
  if ((st = nllm_cuda_copy_rows(cu, b->q, qd, b->qkv, w, qd, r->n)) ||
      (st = nllm_cuda_copy_rows(cu, b->k, kvd, b->qkv + qd, w, kvd, r->n)))
    return st;
  return nllm_cuda_copy_rows(cu, b->v, kvd, b->qkv + qd + kvd, w, kvd, r->n);
}

static nllm_status cuda_rope(const nllm_fw_run *r, float *x, int64_t heads) {
  const nllm_hparams *hp = &r->m->hp;
  return nllm_cuda_rope(cu_of(r), x, r->n, heads * hp->head_dim, heads, hp->head_dim, hp->n_rot,
                        r->pos0, r->m->dev_inv_freq, hp->rope_neox);
}

static nllm_status cuda_kv_store(const nllm_fw_run *r, uint8_t *cache, const float *src,
                                 int is_v) {
  (void)is_v; /* K and V have one type on the GPU */
  const nllm_kv_cache *kv = &r->fs->kv;
  return nllm_cuda_kv_store(cu_of(r), cache, kv->type, src, r->n, kv->row, r->pos0);
}

static nllm_status cuda_attention(const nllm_fw_run *r, const nllm_fw_bufs *b, const uint8_t *kc,
                                  const uint8_t *vc, int32_t window) {
  const nllm_hparams *hp = &r->m->hp;
  nllm_cuda_attn_args ca = {.out = b->att,
                            .q = b->q,
                            .k = kc,
                            .v = vc,
                            .kv_type = r->fs->kv.type,
                            .n_tok = r->n,
                            .pos0 = r->pos0,
                            .n_head = hp->n_head,
                            .n_head_kv = hp->n_head_kv,
                            .head_dim = hp->head_dim,
                            .scale = hp->attn_scale,
                            .softcap = hp->attn_softcap,
                            .window = window};
  return nllm_cuda_attention(cu_of(r), &ca);
}

static nllm_status cuda_add(const nllm_fw_run *r, float *x, const float *y, int64_t count) {
  return nllm_cuda_add(cu_of(r), x, y, count);
}

static nllm_status cuda_glu(const nllm_fw_run *r, const nllm_fw_bufs *b) {
  const nllm_arch *arch = r->m->arch;
  const int64_t ff = r->m->hp.n_ff;
  if (arch->fused_gate_up) /* gate and up stacked per row in b->gate */
    return nllm_cuda_glu(cu_of(r), b->up, ff, b->gate, b->gate + ff, 2 * ff, ff, r->n, arch->gelu);
  return nllm_cuda_glu(cu_of(r), b->up, ff, b->gate, b->up, ff, ff, r->n, arch->gelu);
}

static nllm_status cuda_softcap(const nllm_fw_run *r, float *y, int64_t count) {
  return nllm_cuda_softcap(cu_of(r), y, r->m->hp.final_softcap, count);
}

static nllm_status cuda_from_host(const nllm_fw_run *r, void *dst, const void *src, size_t bytes) {
  return nllm_cuda_upload(cu_of(r), dst, src, bytes);
}

static nllm_status cuda_to_host(const nllm_fw_run *r, void *dst, const void *src, size_t bytes) {
  return nllm_cuda_download(cu_of(r), dst, src, bytes);
}

const nllm_fw_ops nllm_fw_cuda_ops = {
    .embed = cuda_embed,
    .rmsnorm = cuda_rmsnorm,
    .matmul = cuda_matmul,
    .add_bias = cuda_add_bias,
    .split_qkv = cuda_split_qkv,
    .rope = cuda_rope,
    .kv_store = cuda_kv_store,
    .attention = cuda_attention,
    .add = cuda_add,
    .glu = cuda_glu,
    .softcap = cuda_softcap,
    .from_host = cuda_from_host,
    .to_host = cuda_to_host,
};

static int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

nllm_status nllm_forward_gpu_init(nllm_forward_state *fs, int32_t logit_rows) {
  const nllm_model *m = fs->model;
  const nllm_hparams *hp = &m->hp;
  const nllm_kv_cache *kv = &fs->kv;
  const int32_t g = m->n_gpu_layers;
  nllm_status st = nllm_cuda_init(0, &fs->cuda);
  if (st) return st;
  nllm_cuda *cu = fs->cuda;
  fs->gpu.ops = &nllm_fw_cuda_ops;
  nllm_fw_bufs *b = &fs->gpu.b;
  b->first_layer = hp->n_layer - g;
  const int64_t nb = fs->n_batch, d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim;
  const int64_t ff = m->arch->fused_gate_up ? 2 * (int64_t)hp->n_ff : hp->n_ff;
  const int64_t qkv = qd + 2 * kv->row;
  const size_t f = sizeof(float), cache = (size_t)g * (size_t)kv->n_ctx * kv->row_bytes;
  /* one table of what to allocate, so a failure names the buffer and frees the rest */
  struct {
    void **p;
    size_t bytes;
    const char *what;
  } allocs[] = {
      {(void **)&b->x, (size_t)(nb * d) * f, "activations x"},
      {(void **)&b->xb, (size_t)(nb * max64(d, qd)) * f, "activations xb"},
      {(void **)&b->q, (size_t)(nb * qd) * f, "activations q"},
      {(void **)&b->qkv, m->arch->fused_qkv ? (size_t)(nb * qkv) * f : 0, "fused qkv"},
      {(void **)&b->k, (size_t)(nb * kv->row) * f, "activations k"},
      {(void **)&b->v, (size_t)(nb * kv->row) * f, "activations v"},
      {(void **)&b->att, (size_t)(nb * qd) * f, "attention output"},
      {(void **)&b->gate, (size_t)(nb * ff) * f, "ffn gate"},
      {(void **)&b->up, (size_t)(nb * ff) * f, "ffn up"},
      {(void **)&b->k_cache, cache, "K cache"},
      {(void **)&b->v_cache, cache, "V cache"},
      {(void **)&fs->d_tokens, (size_t)nb * sizeof(nllm_token), "token ids"},
      {(void **)&b->logits, m->output.dev ? (size_t)logit_rows * (size_t)hp->n_vocab * f : 0,
       "logits"},
  };
  size_t total = 0;
  for (size_t i = 0; i < sizeof allocs / sizeof allocs[0]; i++) {
    if (!allocs[i].bytes) continue;
    total += allocs[i].bytes;
    if ((st = nllm_cuda_alloc(cu, allocs[i].bytes, allocs[i].what, allocs[i].p))) {
      nllm_forward_gpu_free(fs);
      return nllm_err_prefix(st, "context for %d GPU layers (n_ctx %d, n_batch %d): ", g, kv->n_ctx,
                             fs->n_batch);
    }
  }
  int64_t max_cols = max64(d, max64(qd, hp->n_ff));
  int64_t max_rows = max64(max64(d, qkv), ff);
  if (m->output.dev) max_rows = max64(max_rows, hp->n_vocab);
  if ((st = nllm_cuda_reserve(cu, nb, max_cols, max_rows, kv->n_ctx, hp->n_head, hp->head_dim))) {
    nllm_forward_gpu_free(fs);
    return st;
  }
  nllm_log(NLLM_LOG_INFO,
           "context: %.1f MiB on the GPU (KV cache of %d layers %.1f MiB, n_ctx %d, n_batch %d)",
           (double)total / 1048576.0, g, 2.0 * (double)cache / 1048576.0, kv->n_ctx, fs->n_batch);
  return NLLM_OK;
}

void nllm_forward_gpu_free(nllm_forward_state *fs) {
  nllm_cuda *cu = fs->cuda;
  if (!cu) return;
  nllm_fw_bufs *b = &fs->gpu.b;
  void *bufs[] = {b->x,    b->xb, b->q,       b->qkv,     b->k,         b->v,     b->att,
                  b->gate, b->up, b->k_cache, b->v_cache, fs->d_tokens, b->logits};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) nllm_cuda_dfree(cu, bufs[i]);
  nllm_cuda_free(cu);
  fs->cuda = NULL;
  memset(&fs->gpu, 0, sizeof fs->gpu);
  fs->d_tokens = NULL;
}

#endif
