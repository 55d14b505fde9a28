/* The forward pass's operations on the GPU (backend.h): each a call of backend_cuda.h on device
 * buffers (docs/cuda.md maps them one to one), a context's device state (its own stream, the
 * activations, the KV cache of the offloaded layers), and the store of a model's device weights.
 * Compiled in every build; without CUDA=1 the entry points only refuse. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/core.h"
#include "qtypes.h"

#ifdef NLLM_CUDA
#include "cuda/backend_cuda.h"

/* ---- a model's weights on the device */

struct nllm_cuda_store {
  nllm_cuda *cu; /* uploads and frees the weights; contexts have their own */
  nllm_cuda_weight *mats;
  float **vecs;
  int32_t cap, n_mats, n_vecs;
};

void nllm_cuda_store_free(nllm_cuda_store *s) {
  if (!s) return;
  for (int32_t i = 0; i < s->n_mats; i++) nllm_cuda_weight_free(s->cu, &s->mats[i]);
  for (int32_t i = 0; i < s->n_vecs; i++) nllm_cuda_dfree(s->cu, s->vecs[i]);
  free(s->mats);
  free(s->vecs);
  if (s->cu) nllm_cuda_free(s->cu);
  free(s);
}

nllm_status nllm_cuda_store_new(int32_t capacity, nllm_cuda_store **out, char *name,
                                size_t name_cap, int32_t *cc, size_t *free_bytes,
                                size_t *total_bytes) {
  *out = NULL;
  nllm_cuda_store *s = nllm_calloc(1, sizeof *s);
  if (!s) return nllm_err(NLLM_ERR_NOMEM, "out of memory planning the GPU offload");
  s->cap = capacity;
  s->mats = nllm_calloc((size_t)capacity + 1, sizeof *s->mats);
  s->vecs = nllm_calloc((size_t)capacity + 1, sizeof *s->vecs);
  nllm_status st = NLLM_OK;
  if (!s->mats || !s->vecs)
    st = nllm_err(NLLM_ERR_NOMEM, "out of memory planning the GPU offload");
  else if (!(st = nllm_cuda_init(0, &s->cu)))
    st = nllm_cuda_device_info(s->cu, name, name_cap, cc, free_bytes, total_bytes);
  if (st) {
    nllm_cuda_store_free(s);
    return st;
  }
  *out = s;
  return NLLM_OK;
}

size_t nllm_cuda_store_bytes(const nllm_weight *w, int matrix) {
  return matrix ? nllm_cuda_weight_bytes(w->type, w->rows, w->cols)
                : (size_t)w->cols * sizeof(float);
}

nllm_status nllm_cuda_store_put(nllm_cuda_store *s, nllm_weight *w, int matrix, const char *name) {
  if (s->n_mats + s->n_vecs >= s->cap)
    return nllm_err(NLLM_ERR_INTERNAL, "GPU offload: more weights than planned (%d)", s->cap);
  nllm_status st;
  if (matrix) {
    nllm_cuda_weight *cw = &s->mats[s->n_mats];
    if ((st = nllm_cuda_weight_upload(s->cu, w->data, w->type, w->rows, w->cols, name, cw)))
      return st;
    s->n_mats++;
    w->dev = cw;
  } else {
    float *d = NULL;
    if ((st = nllm_cuda_upload_f32(s->cu, w->data, w->cols, name, &d))) return st;
    s->vecs[s->n_vecs++] = d;
    w->dev = d;
  }
  return NLLM_OK;
}

nllm_status nllm_cuda_store_sync(nllm_cuda_store *s) {
  return nllm_cuda_sync(s->cu);
}

/* ---- a context's device backend */

typedef struct cuda_fw {
  nllm_cuda *cu;
  int32_t *d_ids; /* [n_batch] the rows' ids of get_rows, uploaded; then the step's position */
  int32_t kv_type;
  int64_t kv_row; /* floats of a cache row: n_head_kv * head_dim */
  /* the one-token step as a graph: recorded at the first such step, replayed after */
  nllm_cuda_graph *graph;
  uint64_t graph_gen; /* the scratch generation it was recorded with */
  int graph_off;      /* NLLM_CUDA_GRAPH=0, or a recording failed */
  int recording;     /* between step_begin and step_end: ids are in place, downloads wait */
  const void *d_out; /* the recorded step's logits on the device, and their size */
  size_t out_bytes;
} cuda_fw;

static cuda_fw *cuda_of(const nllm_fw_backend *be) {
  return be->ctx;
}

/* The device copy of a weight (nllm_cuda_store_put set it). */
static const nllm_cuda_weight *dmat(const nllm_weight *w) {
  return (const nllm_cuda_weight *)w->dev;
}

/* Records the first failure; an op after it does nothing. */
#define RUN(be, call)                           \
  do {                                          \
    if ((be)->st == NLLM_OK) (be)->st = (call); \
  } while (0)

static void cuda_get_rows(nllm_fw_backend *be, float *out, const nllm_weight *w, const int32_t *ids,
                          int64_t n, float scale) {
  cuda_fw *c = cuda_of(be);
  if (!c->recording) /* else step_begin put the token there */
    RUN(be, nllm_cuda_upload(c->cu, c->d_ids, ids, (size_t)n * sizeof(int32_t)));
  RUN(be, nllm_cuda_get_rows(c->cu, out, dmat(w), c->d_ids, n, scale));
}

static void cuda_rmsnorm(nllm_fw_backend *be, float *out, const float *x, const nllm_weight *w,
                         int64_t width, int64_t rows, float eps) {
  RUN(be, nllm_cuda_rmsnorm(cuda_of(be)->cu, out, x, w->dev, width, rows, eps));
}

static void cuda_matmul(nllm_fw_backend *be, float *y, const nllm_weight *w, const float *x,
                        int64_t n) {
  RUN(be, nllm_cuda_matmul(cuda_of(be)->cu, y, dmat(w), x, n));
}

static void cuda_matmul_group(nllm_fw_backend *be, float *const *y, const nllm_weight *const *w,
                              int n_w, const float *x, int64_t n) {
  const nllm_cuda_weight *dw[4];
  for (int i = 0; i < n_w; i++) dw[i] = dmat(w[i]);
  RUN(be, nllm_cuda_matmul_group(cuda_of(be)->cu, y, dw, n_w, x, n));
}

static void cuda_add_bias(nllm_fw_backend *be, float *y, const nllm_weight *b, int64_t n,
                          int64_t stride) {
  if (!b->data) return;
  RUN(be, nllm_cuda_add_bias(cuda_of(be)->cu, y, b->dev, b->cols, n, stride));
}

/* The device splits from a separate buffer (q is never qkv here). */
static void cuda_split_qkv(nllm_fw_backend *be, float *q, float *k, float *v, const float *qkv,
                           int64_t qd, int64_t kvd, int64_t n) {
  nllm_cuda *cu = cuda_of(be)->cu;
  const int64_t w = qd + 2 * kvd;
  RUN(be, nllm_cuda_copy_rows(cu, q, qd, qkv, w, qd, n));
  RUN(be, nllm_cuda_copy_rows(cu, k, kvd, qkv + qd, w, kvd, n));
  RUN(be, nllm_cuda_copy_rows(cu, v, kvd, qkv + qd + kvd, w, kvd, n));
}

static void cuda_rope(nllm_fw_backend *be, float *x, int64_t heads, int64_t head_dim, int64_t n_rot,
                      const nllm_weight *inv_freq, int neox, const nllm_fw_rows *rows) {
  RUN(be, nllm_cuda_rope(cuda_of(be)->cu, x, rows->n, heads * head_dim, heads, head_dim, n_rot,
                         rows->pos0, inv_freq->dev, neox));
}

static void cuda_kv_store(nllm_fw_backend *be, uint8_t *cache, const float *src, int is_v,
                          const nllm_fw_rows *rows) {
  (void)is_v; /* K and V have one type on the GPU */
  const cuda_fw *c = cuda_of(be);
  RUN(be, nllm_cuda_kv_store(c->cu, cache, c->kv_type, src, rows->n, c->kv_row, rows->pos0));
}

static void cuda_attention(nllm_fw_backend *be, const nllm_attn *a, const nllm_fw_rows *rows) {
  const cuda_fw *c = cuda_of(be);
  const nllm_cuda_attn_args ca = {
      .attn = *a, .kv_type = c->kv_type, .n_tok = rows->n, .pos0 = rows->pos0};
  RUN(be, nllm_cuda_attention(c->cu, &ca));
}

static void cuda_add(nllm_fw_backend *be, float *x, const float *y, int64_t count) {
  RUN(be, nllm_cuda_add(cuda_of(be)->cu, x, y, count));
}

static void cuda_glu(nllm_fw_backend *be, float *out, const float *gate, const float *up,
                     int64_t in_stride, int64_t width, int64_t n, int gelu) {
  RUN(be, nllm_cuda_glu(cuda_of(be)->cu, out, width, gate, up, in_stride, width, n, gelu));
}

static void cuda_softcap(nllm_fw_backend *be, float *y, float c, int64_t count) {
  RUN(be, nllm_cuda_softcap(cuda_of(be)->cu, y, c, count));
}

static void cuda_from_host(nllm_fw_backend *be, void *dst, const void *src, size_t bytes) {
  RUN(be, nllm_cuda_upload(cuda_of(be)->cu, dst, src, bytes));
}

static void cuda_to_host(nllm_fw_backend *be, void *dst, const void *src, size_t bytes) {
  cuda_fw *c = cuda_of(be);
  if (c->recording) { /* the logits: step_end downloads them after the replay */
    c->d_out = src, c->out_bytes = bytes;
    return;
  }
  RUN(be, nllm_cuda_download(c->cu, dst, src, bytes));
}

/* d_ids[0] the token, d_ids[1] the position (d_ids holds n_batch + 1 entries) */
static int cuda_step_begin(nllm_fw_backend *be, int32_t token, int32_t pos0, float *logits) {
  cuda_fw *c = cuda_of(be);
  if (c->graph_off) return -1;
  if (c->graph && c->graph_gen != nllm_cuda_scratch_generation(c->cu)) {
    nllm_cuda_graph_free(c->graph); /* recorded over a scratch buffer since replaced */
    c->graph = NULL;
  }
  const int32_t step[2] = {token, pos0};
  RUN(be, nllm_cuda_upload_async(c->cu, c->d_ids, step, sizeof step));
  if (be->st) return 1;
  if (c->graph) {
    RUN(be, nllm_cuda_graph_launch(c->cu, c->graph));
    RUN(be, nllm_cuda_download(c->cu, logits, c->d_out, c->out_bytes));
    return 1;
  }
  RUN(be, nllm_cuda_capture_begin(c->cu, c->d_ids + 1));
  if (be->st) {
    c->graph_off = 1;
    be->st = NLLM_OK;
    return -1;
  }
  c->recording = 1;
  c->d_out = NULL;
  return 0;
}

static nllm_status cuda_step_end(nllm_fw_backend *be, nllm_status st, float *logits) {
  cuda_fw *c = cuda_of(be);
  c->recording = 0;
  nllm_cuda_graph *g = NULL;
  const nllm_status end = nllm_cuda_capture_end(c->cu, &g);
  if (!st) st = end;
  if (!st && !c->d_out) st = nllm_err(NLLM_ERR_INTERNAL, "a recorded step without logits");
  if (st) {
    nllm_cuda_graph_free(g);
    c->graph_off = 1;
    nllm_log(NLLM_LOG_INFO,
             "CUDA graph: recording the decode step failed (%s); steps run kernel by kernel",
             nllm_last_error());
    be->st = NLLM_OK;
    return st;
  }
  c->graph = g;
  c->graph_gen = nllm_cuda_scratch_generation(c->cu);
  RUN(be, nllm_cuda_graph_launch(c->cu, g));
  RUN(be, nllm_cuda_download(c->cu, logits, c->d_out, c->out_bytes));
  return be->st;
}

static const nllm_fw_ops cuda_ops = {
    .get_rows = cuda_get_rows,
    .rmsnorm = cuda_rmsnorm,
    .matmul = cuda_matmul,
    .matmul_group = cuda_matmul_group,
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
    .step_begin = cuda_step_begin,
    .step_end = cuda_step_end,
};

static int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

void nllm_cuda_fw_free(nllm_fw_backend *be) {
  cuda_fw *c = be->ctx;
  if (!c) return;
  nllm_fw_bufs *b = &be->b;
  void *bufs[] = {b->x,    b->xb, b->q,       b->qkv,     b->k,     b->v,     b->att,
                  b->gate, b->up, b->k_cache, b->v_cache, c->d_ids, b->logits};
  nllm_cuda_graph_free(c->graph);
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) nllm_cuda_dfree(c->cu, bufs[i]);
  nllm_cuda_free(c->cu);
  free(c);
  memset(be, 0, sizeof *be);
}

nllm_status nllm_cuda_fw_init(nllm_fw_backend *be, const nllm_fw_shape *s) {
  memset(be, 0, sizeof *be);
  cuda_fw *c = nllm_calloc(1, sizeof *c);
  if (!c) return nllm_err(NLLM_ERR_NOMEM, "out of memory for the GPU context");
  nllm_status st = nllm_cuda_init(0, &c->cu);
  if (st) {
    free(c);
    return st;
  }
  be->ctx = c;
  be->ops = &cuda_ops;
  c->kv_type = s->kv_type;
  c->kv_row = s->n_head_kv * s->head_dim;
  const char *g = getenv("NLLM_CUDA_GRAPH"); /* 0: every step kernel by kernel (A/B, debugging) */
  c->graph_off = g && !strcmp(g, "0");
  nllm_cuda *cu = c->cu;
  nllm_fw_bufs *b = &be->b;
  b->first_layer = s->first_layer;
  const int64_t nb = s->n_batch, d = s->n_embd, qd = s->n_head * s->head_dim;
  const size_t f = sizeof(float);
  const size_t cache =
      (size_t)s->n_layers * (size_t)s->n_ctx * nllm_row_size(s->kv_type, c->kv_row);
  /* one table of what to allocate, so a failure names the buffer and frees the rest */
  struct {
    void **p;
    size_t bytes;
    const char *what;
  } allocs[] = {
      {(void **)&b->x, (size_t)(nb * d) * f, "activations x"},
      {(void **)&b->xb, (size_t)(nb * max64(d, qd)) * f, "activations xb"},
      {(void **)&b->q, (size_t)(nb * qd) * f, "activations q"},
      {(void **)&b->qkv, (size_t)(nb * s->qkv_width) * f, "fused qkv"},
      {(void **)&b->k, (size_t)(nb * c->kv_row) * f, "activations k"},
      {(void **)&b->v, (size_t)(nb * c->kv_row) * f, "activations v"},
      {(void **)&b->att, (size_t)(nb * qd) * f, "attention output"},
      {(void **)&b->gate, (size_t)(nb * s->ff_width) * f, "ffn gate"},
      {(void **)&b->up, (size_t)(nb * s->ff_width) * f, "ffn up"},
      {(void **)&b->k_cache, cache, "K cache"},
      {(void **)&b->v_cache, cache, "V cache"},
      {(void **)&c->d_ids, (size_t)(nb + 1) * sizeof(int32_t), "token ids"},
      {(void **)&b->logits, (size_t)s->n_logits * f, "logits"},
  };
  size_t total = 0;
  for (size_t i = 0; i < sizeof allocs / sizeof allocs[0]; i++) {
    if (!allocs[i].bytes) continue;
    total += allocs[i].bytes;
    if ((st = nllm_cuda_alloc(cu, allocs[i].bytes, allocs[i].what, allocs[i].p))) {
      nllm_cuda_fw_free(be);
      return nllm_err_prefix(st, "context for %d GPU layers (n_ctx %d, n_batch %d): ", s->n_layers,
                             s->n_ctx, s->n_batch);
    }
  }
  if ((st =
           nllm_cuda_reserve(cu, nb, s->max_cols, s->max_rows, s->n_ctx, s->n_head, s->head_dim))) {
    nllm_cuda_fw_free(be);
    return st;
  }
  nllm_log(NLLM_LOG_INFO,
           "context: %.1f MiB on the GPU (KV cache of %d layers %.1f MiB, n_ctx %d, n_batch %d)",
           (double)total / 1048576.0, s->n_layers, 2.0 * (double)cache / 1048576.0, s->n_ctx,
           s->n_batch);
  return NLLM_OK;
}

#else

static nllm_status no_cuda(void) {
  return nllm_err(NLLM_ERR_UNSUPPORTED,
                  "this libnativellm was built without CUDA (rebuild "
                  "with make CUDA=1)");
}

nllm_status nllm_cuda_store_new(int32_t capacity, nllm_cuda_store **out, char *name,
                                size_t name_cap, int32_t *cc, size_t *free_bytes,
                                size_t *total_bytes) {
  (void)capacity, (void)name, (void)name_cap, (void)cc, (void)free_bytes, (void)total_bytes;
  *out = NULL;
  return no_cuda();
}

size_t nllm_cuda_store_bytes(const nllm_weight *w, int matrix) {
  (void)w, (void)matrix;
  return 0;
}

nllm_status nllm_cuda_store_put(nllm_cuda_store *s, nllm_weight *w, int matrix, const char *name) {
  (void)s, (void)w, (void)matrix, (void)name;
  return no_cuda();
}

nllm_status nllm_cuda_store_sync(nllm_cuda_store *s) {
  (void)s;
  return no_cuda();
}

void nllm_cuda_store_free(nllm_cuda_store *s) {
  (void)s;
}

nllm_status nllm_cuda_fw_init(nllm_fw_backend *be, const nllm_fw_shape *s) {
  (void)s;
  memset(be, 0, sizeof *be);
  return no_cuda();
}

void nllm_cuda_fw_free(nllm_fw_backend *be) {
  (void)be;
}

#endif
