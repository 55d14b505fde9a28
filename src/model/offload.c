/* GPU offload of a loaded model: the weights of the last n_gpu_layers layers (and the token
 * embedding, final norm and output head when that is all of them) are uploaded once to the
 * device; each nllm_weight's .dev then points at its copy and forward.c runs those layers with
 * the CUDA ops. The model owns one nllm_cuda context for the uploads; contexts create their own
 * for their stream. Without CUDA this file only refuses. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/model.h"

#ifdef NLLM_CUDA
#include "cuda/backend_cuda.h"
#include "qtypes.h"

/* The weights of a layer, by role: matrices go through nllm_cuda_weight_upload, vectors
 * (already F32 on the host) through nllm_cuda_upload_f32. */
static const struct {
  size_t off;
  const char *name;
  int matrix;
} layer_weights[] = {
    {offsetof(nllm_layer, attn_norm), "attn_norm", 0},
    {offsetof(nllm_layer, wq), "attn_q", 1},
    {offsetof(nllm_layer, wk), "attn_k", 1},
    {offsetof(nllm_layer, wv), "attn_v", 1},
    {offsetof(nllm_layer, wo), "attn_output", 1},
    {offsetof(nllm_layer, bq), "attn_q.bias", 0},
    {offsetof(nllm_layer, bk), "attn_k.bias", 0},
    {offsetof(nllm_layer, bv), "attn_v.bias", 0},
    {offsetof(nllm_layer, q_norm), "attn_q_norm", 0},
    {offsetof(nllm_layer, k_norm), "attn_k_norm", 0},
    {offsetof(nllm_layer, ffn_norm), "ffn_norm", 0},
    {offsetof(nllm_layer, w_gate), "ffn_gate", 1},
    {offsetof(nllm_layer, w_up), "ffn_up", 1},
    {offsetof(nllm_layer, w_down), "ffn_down", 1},
    {offsetof(nllm_layer, post_attn_norm), "post_attention_norm", 0},
    {offsetof(nllm_layer, post_ffn_norm), "post_ffw_norm", 0},
};
#define N_LAYER_WEIGHTS ((int)(sizeof layer_weights / sizeof layer_weights[0]))

typedef struct upload_item {
  nllm_weight *w;
  char name[64];
  int matrix;
} upload_item;

/* Everything to upload, in order; the tied output head (output == tok_embd) appears once. */
static int collect(nllm_model *m, int32_t g, upload_item *items) {
  int n = 0;
  const int32_t nl = m->hp.n_layer;
  if (g == nl) {
    items[n++] = (upload_item){&m->tok_embd, "token_embd", 1};
    if (m->output.data != m->tok_embd.data) items[n++] = (upload_item){&m->output, "output", 1};
    items[n++] = (upload_item){&m->output_norm, "output_norm", 0};
  }
  for (int32_t il = nl - g; il < nl; il++)
    for (int i = 0; i < N_LAYER_WEIGHTS; i++) {
      nllm_weight *w = (nllm_weight *)((char *)&m->layers[il] + layer_weights[i].off);
      if (!w->data) continue;
      upload_item *it = &items[n++];
      it->w = w;
      it->matrix = layer_weights[i].matrix;
      snprintf(it->name, sizeof it->name, "blk.%d.%s", il, layer_weights[i].name);
    }
  return n;
}

static void clear_dev(nllm_model *m) {
  m->tok_embd.dev = m->output.dev = m->output_norm.dev = NULL;
  for (int32_t il = 0; il < m->hp.n_layer; il++)
    for (int i = 0; i < N_LAYER_WEIGHTS; i++)
      ((nllm_weight *)((char *)&m->layers[il] + layer_weights[i].off))->dev = NULL;
}

void nllm_model_offload_free(nllm_model *m) {
  if (!m->cuda) return;
  nllm_cuda_weight *mats = m->dev_mats;
  for (int32_t i = 0; i < m->n_dev_mats; i++) nllm_cuda_weight_free(m->cuda, &mats[i]);
  for (int32_t i = 0; i < m->n_dev_vecs; i++) nllm_cuda_dfree(m->cuda, m->dev_vecs[i]);
  free(m->dev_mats);
  free(m->dev_vecs);
  nllm_cuda_free(m->cuda);
  clear_dev(m);
  m->cuda = NULL;
  m->dev_mats = NULL;
  m->dev_vecs = NULL;
  m->n_dev_mats = m->n_dev_vecs = 0;
  m->dev_inv_freq = NULL;
  m->n_gpu_layers = 0;
}

nllm_status nllm_model_offload(nllm_model *m, int32_t n_gpu_layers) {
  const int32_t nl = m->hp.n_layer;
  const int32_t g = n_gpu_layers < 0 || n_gpu_layers > nl ? nl : n_gpu_layers;
  if (g == 0) return NLLM_OK;
  nllm_cuda *cu = NULL;
  nllm_status st = nllm_cuda_init(0, &cu);
  if (st) return nllm_err_prefix(st, "n_gpu_layers = %d: ", n_gpu_layers);
  m->cuda = cu;

  upload_item *items = nllm_calloc((size_t)g * N_LAYER_WEIGHTS + 3, sizeof *items);
  if (!items) {
    nllm_model_offload_free(m);
    return nllm_err(NLLM_ERR_NOMEM, "out of memory planning the GPU offload");
  }
  const int n_items = collect(m, g, items);
  /* Fail before uploading anything when it cannot fit, naming the sizes. */
  size_t need = (size_t)(m->hp.n_rot / 2) * sizeof(float);
  int n_mats = 0;
  for (int i = 0; i < n_items; i++) {
    const nllm_weight *w = items[i].w;
    if (items[i].matrix) {
      need += nllm_cuda_weight_bytes(w->type, w->rows, w->cols);
      n_mats++;
    } else {
      need += (size_t)w->cols * sizeof(float);
    }
  }
  char dev_name[128] = "";
  int32_t cc = 0;
  size_t free_b = 0, total_b = 0;
  if ((st = nllm_cuda_device_info(cu, dev_name, sizeof dev_name, &cc, &free_b, &total_b)))
    goto fail;
  if (need > free_b) {
    st = nllm_err(NLLM_ERR_NOMEM,
                  "%s: %d GPU layers need %.1f MiB of weights on %s, which has %.1f MiB free of "
                  "%.1f MiB (use fewer GPU layers)",
                  m->src.path, g, (double)need / 1048576.0, dev_name, (double)free_b / 1048576.0,
                  (double)total_b / 1048576.0);
    goto fail;
  }
  m->dev_mats = nllm_calloc((size_t)n_mats + 1, sizeof(nllm_cuda_weight));
  m->dev_vecs = nllm_calloc((size_t)(n_items - n_mats) + 2, sizeof(float *));
  if (!m->dev_mats || !m->dev_vecs) {
    st = nllm_err(NLLM_ERR_NOMEM, "out of memory planning the GPU offload");
    goto fail;
  }
  nllm_cuda_weight *mats = m->dev_mats;
  for (int i = 0; i < n_items; i++) {
    nllm_weight *w = items[i].w;
    if (items[i].matrix) {
      nllm_cuda_weight *cw = &mats[m->n_dev_mats];
      if ((st = nllm_cuda_weight_upload(cu, w->data, w->type, w->rows, w->cols, items[i].name, cw)))
        goto fail;
      m->n_dev_mats++;
      w->dev = cw;
    } else {
      float *d = NULL;
      if ((st = nllm_cuda_upload_f32(cu, w->data, w->cols, items[i].name, &d))) goto fail;
      m->dev_vecs[m->n_dev_vecs++] = d;
      w->dev = d;
    }
  }
  if (m->output.data == m->tok_embd.data && m->tok_embd.dev) m->output.dev = m->tok_embd.dev;
  float *d_freq = NULL;
  if ((st = nllm_cuda_upload_f32(cu, m->inv_freq, m->hp.n_rot / 2, "rope inv_freq", &d_freq)))
    goto fail;
  m->dev_vecs[m->n_dev_vecs++] = d_freq;
  m->dev_inv_freq = d_freq;
  if ((st = nllm_cuda_sync(cu))) goto fail;
  m->n_gpu_layers = g;
  free(items);
  int n_sparse = 0;
  for (int32_t il = nl - g; il < nl; il++) n_sparse += m->layers[il].ffn_gate_inp.data != NULL;
  /* The experts are not in layer_weights: they stay in host memory and forward.c runs the
   * sparse FFN step with the CPU's kernel (the rest of the layer stays on the GPU). */
  if (n_sparse)
    nllm_log(NLLM_LOG_INFO,
             "%s: the CUDA backend has no expert kernel yet: the sparse FFN of %d GPU layers "
             "runs on the CPU (router and experts in host memory)",
             m->src.path, n_sparse);
  nllm_log(NLLM_LOG_INFO,
           "%s: layers %d..%d of %d on %s (sm_%d), %.1f MiB of weights; embedding and output "
           "head on the %s",
           m->src.path, nl - g, nl - 1, nl, dev_name, cc, (double)need / 1048576.0,
           g == nl ? "GPU" : "CPU");
  return NLLM_OK;
fail:
  free(items);
  nllm_model_offload_free(m);
  return st;
}

#else

nllm_status nllm_model_offload(nllm_model *m, int32_t n_gpu_layers) {
  (void)m;
  return nllm_err(NLLM_ERR_UNSUPPORTED,
                  "n_gpu_layers = %d, but this libnativellm was built without CUDA (rebuild "
                  "with make CUDA=1)",
                  n_gpu_layers);
}

void nllm_model_offload_free(nllm_model *m) {
  (void)m;
}

#endif
