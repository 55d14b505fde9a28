/* GPU offload of a loaded model: the weights of the last n_gpu_layers layers (and the token
 * embedding, final norm and output head when that is all of them) are uploaded once to the
 * device; each nllm_weight's .dev then points at its copy and forward.c runs those layers with
 * the CUDA backend's ops. The model owns the store of its device weights (kernels/backend.h);
 * contexts open their own device backend for their stream. Which weights go is decided here. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "model/model.h"

/* The weights of a layer, by role: a matrix keeps its type on the device where the backend can
 * (else F16), a vector is F32 as on the host. */
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
  items[n++] = (upload_item){&m->rope_freqs, "rope inv_freq", 0};
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
  m->tok_embd.dev = m->output.dev = m->output_norm.dev = m->rope_freqs.dev = NULL;
  for (int32_t il = 0; il < m->hp.n_layer; il++)
    for (int i = 0; i < N_LAYER_WEIGHTS; i++)
      ((nllm_weight *)((char *)&m->layers[il] + layer_weights[i].off))->dev = NULL;
}

void nllm_model_offload_free(nllm_model *m) {
  if (!m->dev_weights) return;
  nllm_cuda_store_free(m->dev_weights);
  m->dev_weights = NULL;
  clear_dev(m);
  m->n_gpu_layers = 0;
}

nllm_status nllm_model_offload(nllm_model *m, int32_t n_gpu_layers) {
  const int32_t nl = m->hp.n_layer;
  const int32_t g = n_gpu_layers < 0 || n_gpu_layers > nl ? nl : n_gpu_layers;
  if (g == 0) return NLLM_OK;
  const int32_t cap = g * N_LAYER_WEIGHTS + 4;
  char dev_name[128] = "";
  int32_t cc = 0;
  size_t free_b = 0, total_b = 0;
  nllm_status st =
      nllm_cuda_store_new(cap, &m->dev_weights, dev_name, sizeof dev_name, &cc, &free_b, &total_b);
  if (st) return nllm_err_prefix(st, "n_gpu_layers = %d: ", n_gpu_layers);
  upload_item *items = nllm_calloc((size_t)cap, sizeof *items);
  if (!items) {
    nllm_model_offload_free(m);
    return nllm_err(NLLM_ERR_NOMEM, "out of memory planning the GPU offload");
  }
  const int n_items = collect(m, g, items);
  /* Fail before uploading anything when it cannot fit, naming the sizes. */
  size_t need = 0;
  for (int i = 0; i < n_items; i++) need += nllm_cuda_store_bytes(items[i].w, items[i].matrix);
  if (need > free_b) {
    st = nllm_err(NLLM_ERR_NOMEM,
                  "%s: %d GPU layers need %.1f MiB of weights on %s, which has %.1f MiB free of "
                  "%.1f MiB (use fewer GPU layers)",
                  m->src.path, g, (double)need / 1048576.0, dev_name, (double)free_b / 1048576.0,
                  (double)total_b / 1048576.0);
    goto fail;
  }
  for (int i = 0; i < n_items; i++)
    if ((st = nllm_cuda_store_put(m->dev_weights, items[i].w, items[i].matrix, items[i].name)))
      goto fail;
  if (m->output.data == m->tok_embd.data && m->tok_embd.dev) m->output.dev = m->tok_embd.dev;
  if ((st = nllm_cuda_store_sync(m->dev_weights))) goto fail;
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
