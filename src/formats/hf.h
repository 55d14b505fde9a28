/* Hugging Face folder loader internals shared with the converter and tests (hf_open itself is
 * declared in source.h). */
#ifndef NLLM_HF_H
#define NLLM_HF_H

#include "formats/source.h"

/* JSON side files (config, index, tokenizer_config) above this size are refused as corrupt;
 * real ones are under a few MB (a chat template is the largest part). */
#define NLLM_HF_MAX_JSON (64u * 1024u * 1024u)
/* tokenizer.json above this size is refused before it is read: the largest real ones
 * (262k-token vocabularies with their merges) are about 35 MB. */
#define NLLM_HF_MAX_TOKENIZER_JSON (256u * 1024u * 1024u)

/* Returned (positive, not an error) by hf_map_tensor_name for buffers HF saves but no forward
 * pass reads (rotary_emb.inv_freq). */
#define NLLM_HF_SKIP 1

/* Mixture of experts: at most this many experts per layer (a stacked tensor's ne[2]). */
#define NLLM_HF_MAX_EXPERTS 4096

typedef struct hf_model_info {
  int64_t n_layers;
  int tied; /* tie_word_embeddings (with HF's per-class default when absent) */
  /* experts per sparse layer (0: dense model); which layers are sparse: every
   * decoder_sparse_step-th one not listed in mlp_only_layers (sparse[il], n_layers entries) */
  int64_t n_expert;
  unsigned char *sparse;
} hf_model_info;

/* HF tensor name -> GGUF tensor name for an architecture ("llama", "gemma2", ...).
 * *plus_one is set for Gemma norm weights that must be stored as 1 + w. One expert's matrix
 * (experts.E.w1 / experts.E.gate_proj, ...) maps to the stacked GGUF tensor (ffn_gate_exps)
 * with *expert = E; every other name gives *expert = -1.
 * NLLM_OK, NLLM_HF_SKIP, or NLLM_ERR_FORMAT for a name this engine does not know. */
nllm_status hf_map_tensor_name(const char *arch, const char *hf, int64_t n_layers, char *out,
                               size_t cap, int *plus_one, int64_t *expert);

#endif
