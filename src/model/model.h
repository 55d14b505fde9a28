/* A loaded model: hyperparameters, the architecture's row of the table, the tensors bound to
 * each layer, and the tokenizer. Built from an nllm_source (GGUF or HF) and immutable after. */
#ifndef NLLM_MODEL_H
#define NLLM_MODEL_H

#include "formats/source.h"
#include "tokenizer/tokenizer.h"

/* One row per architecture family: what differs between them is data, not code. */
typedef struct nllm_arch {
  const char *name;  /* general.architecture */
  int rope_neox;     /* 1: rotate_half pairing (i, i+d/2) is the file's layout */
  int qk_norm;       /* Qwen3: per-head RMSNorm of q and k before RoPE */
  int fused_qkv;     /* Phi-3: one attn_qkv matrix */
  int fused_gate_up; /* Phi-3: ffn_up holds gate and up stacked */
  int gelu;          /* Gemma: GeGLU instead of SwiGLU */
  int embed_scale;   /* Gemma: embeddings scaled by sqrt(n_embd) */
  int post_norms;    /* Gemma 2: extra norms after attention and FFN */
  /* Which layers a sliding window (attention.sliding_window) applies to: 0 = all of them
   * (Mistral, Phi-3); n > 0 = all but every n-th, i.e. layer il attends globally when
   * il % n == n - 1 (Gemma 2: n = 2, layers 0, 2, 4.. slide, as HF's layer_types say). */
  int swa_global_every;
  /* BERT-style encoders (embeddings only, no output head): */
  int bidirectional;       /* a row attends to every row of its sequence, not only earlier ones */
  int layernorm;           /* LayerNorm with bias (mean and variance) instead of RMSNorm */
  int norm_after_residual; /* post-norm: x = norm(x + sublayer(x)) instead of pre-norm */
  int abs_pos;             /* learned absolute position and token-type embeddings (no RoPE), and a
                            * norm of the embedding sum */
  int ffn_gelu_erf;        /* FFN up, erf GELU, down (not gated), with biases */
  /* Mixture of experts (Mixtral as GGUF "llama" with expert_count, Qwen3-MoE): whether the
   * chosen experts' weights are renormalized to sum 1 when the file does not say
   * (expert_weights_norm). A layer is sparse when it has a router (ffn_gate_inp). */
  int expert_norm;
} nllm_arch;

const nllm_arch *nllm_arch_find(const char *name);

typedef struct nllm_hparams {
  int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train, n_rot;
  float rms_eps, rope_base;
  int32_t rope_neox;
  float attn_softcap, final_softcap; /* 0 = off */
  int32_t sliding_window;            /* 0 = off */
  float attn_scale;                  /* 1/sqrt(head_dim) unless the file says otherwise */
  /* Embeddings (nativellm.h NLLM_POOLING_*): the model's default pooling and whether its
   * vectors are L2-normalized by default (GGUF <arch>.pooling_type, sentence-transformers'
   * modules.json in HF folders). */
  int32_t pooling, normalize;
  /* Mixture of experts: 0 experts = a dense model. n_ff_exp is one expert's hidden width
   * (n_ff stays the dense layers' width where a model mixes both). */
  int32_t n_expert, n_expert_used, n_ff_exp, expert_norm;
} nllm_hparams;

/* A matrix or vector the forward pass uses; vectors are always F32 (converted at load). */
typedef struct nllm_weight {
  const void *data;
  int32_t type;
  int64_t rows, cols; /* rows = output features, cols = input features (ne[1], ne[0]) */
  /* The device copy when the weight is offloaded (CUDA builds), else NULL: a matrix points to
   * an nllm_cuda_weight, a vector to its device floats. */
  const void *dev;
} nllm_weight;

typedef struct nllm_layer {
  nllm_weight attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm;
  nllm_weight ffn_norm, w_gate, w_up, w_down;
  nllm_weight post_attn_norm, post_ffn_norm;
  /* biases of LayerNorm archs (BERT): the norms', the output projection's and the FFN's */
  nllm_weight attn_norm_b, ffn_norm_b, bo, b_up, b_down;
  /* A sparse layer: the router ([n_expert][n_embd]) and the experts' matrices stacked, rows and
   * cols giving one expert's matrix (expert e at data + e * rows * row size). */
  nllm_weight ffn_gate_inp, ffn_gate_exps, ffn_up_exps, ffn_down_exps;
  int32_t window; /* attention sees the last `window` positions (itself included); 0 = all */
} nllm_layer;

struct nllm_model {
  nllm_source src;
  nllm_tokenizer *tok;
  const nllm_arch *arch;
  nllm_hparams hp;
  nllm_weight tok_embd, output_norm, output, output_norm_b;
  /* abs_pos archs: position and token-type embedding tables, the norm of the embedding sum */
  nllm_weight pos_embd, tok_types, tok_embd_norm, tok_embd_norm_b;
  nllm_layer *layers;
  float *inv_freq;  /* n_rot/2 rotary frequencies, scaling applied */
  int32_t *eog_ids; /* extra end-of-generation ids from metadata (nllm.eog_token_ids) */
  int32_t n_eog;
  int32_t n_ctx_default;
  int32_t n_threads;
  int32_t vocab_only;
  uint64_t n_params, n_bytes;
  const char *name;
  /* GPU offload (model/offload.c): the last n_gpu_layers layers run on the device; the token
   * embedding and the output head too when that is all of them. */
  int32_t n_gpu_layers;
  struct nllm_cuda *cuda; /* uploads and frees the weights; contexts have their own */
  void *dev_mats;         /* nllm_cuda_weight[n_dev_mats] the layers' .dev point into */
  float **dev_vecs;       /* [n_dev_vecs] device vectors */
  int32_t n_dev_mats, n_dev_vecs;
  const float *dev_inv_freq;
  /* The pieces' byte trie of grammar-constrained sampling (engine/token_trie.h): made by the
   * first sampler with a grammar, shared by all, freed by nllm_model_free. */
  struct nllm_token_trie *_Atomic token_trie;
};

/* Loads and validates everything (shapes vs hyperparameters, types, required tensors). */
nllm_status nllm_mdl_load(const char *path, const nllm_model_params *params, nllm_model **out);
void nllm_mdl_free(nllm_model *model);
/* Uploads the last n_gpu_layers (-1 = all) layers' weights to the GPU. CUDA builds only; the
 * model is unchanged on failure. */
nllm_status nllm_model_offload(nllm_model *m, int32_t n_gpu_layers);
void nllm_model_offload_free(nllm_model *m);
/* Whether layer il runs on the GPU. */
static inline int nllm_layer_on_gpu(const nllm_model *m, int il) {
  return il >= m->hp.n_layer - m->n_gpu_layers;
}
/* End of generation: the tokenizer's set plus the file's nllm.eog_token_ids. */
int nllm_model_is_eog(const nllm_model *model, nllm_token t);

#endif
