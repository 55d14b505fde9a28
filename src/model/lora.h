/* LoRA adapters: low-rank deltas B A added to a model's weight matrices at run time, loaded from
 * a PEFT folder (adapter_config.json + adapter_model.safetensors) or a GGUF adapter, checked
 * against the base model they were loaded for, kept in F32, F16 or BF16 next to the (possibly
 * quantized) base weights. */
#ifndef NLLM_LORA_H
#define NLLM_LORA_H

#include <stdatomic.h>

#include "model/model.h"

/* The matrices of a layer an adapter may change, in the order of nllm_layer's fields. A fused
 * q/k/v (Phi-3) is the Q slot, a fused gate/up the UP slot: the weight the pass multiplies. */
enum {
  NLLM_LORA_Q,
  NLLM_LORA_K,
  NLLM_LORA_V,
  NLLM_LORA_O,
  NLLM_LORA_GATE,
  NLLM_LORA_UP,
  NLLM_LORA_DOWN,
  NLLM_LORA_SLOTS
};

/* One adapted matrix: y += scale * user_scale * B (A x). A pair of F16 (or BF16) tensors stays
 * F16 (BF16), half the bytes a decode step reads; any other pair is kept as the load asked
 * (lora.c kept_type): F32, or rounded to BF16, or to F16 after scaling each of A and B by a
 * power of two (scale holds the inverse). */
typedef struct nllm_lora_mat {
  void *a;      /* [r][in] */
  void *bt;     /* B packed in panels (kernels/ops.h), its rows in the base weight's layout (q/k
                   rope order included) */
  int32_t type; /* of a and bt: NLLM_TYPE_F32, NLLM_TYPE_F16 or NLLM_TYPE_BF16 */
  int32_t r;    /* 0: this matrix is not adapted */
  float scale;  /* alpha / r (alpha / sqrt(r) with rsLoRA; 1 for a GGUF alpha of 0), times the
                   inverse of F16 storage's powers of two */
} nllm_lora_mat;

struct nllm_lora_adapter {
  const nllm_model *model; /* the base it was checked against; must outlive the adapter */
  char *name;              /* general.name, else the file or folder name */
  char *path;
  float alpha;
  int32_t max_rank;
  int32_t n_mats;      /* adapted matrices */
  nllm_lora_mat *mats; /* [n_layer][NLLM_LORA_SLOTS] */
  atomic_int refs;     /* the user's handle + each context it is attached to */
};

/* An adapter attached to a context with the user's scale (0 switches it off). */
typedef struct nllm_lora_active {
  nllm_lora_adapter *a;
  float scale;
} nllm_lora_active;

/* A set of attached adapters; n < 0 on a sequence: none of its own (it uses the context's). */
typedef struct nllm_lora_set {
  nllm_lora_active *a;
  int32_t n;
} nllm_lora_set;

static inline const nllm_lora_mat *nllm_lora_mat_of(const nllm_lora_adapter *a, int il, int slot) {
  return &a->mats[(size_t)il * NLLM_LORA_SLOTS + (size_t)slot];
}

/* Loads a PEFT folder (or its adapter_model.safetensors) or a GGUF adapter file and checks
 * every tensor against m: architecture, a base tensor of that name, shapes, ranks. weight_type:
 * what F32 pairs are kept in (nllm_lora_adapter_params.weight_type; NLLM_TYPE_NONE: F16 next
 * to quantized base matrices, F32 next to float ones). */
nllm_status nllm_lora_load(const nllm_model *m, const char *path, int32_t weight_type,
                           nllm_lora_adapter **out);
/* The same from a GGUF adapter image in memory (fuzzing, tests), weight_type NLLM_TYPE_NONE. */
nllm_status nllm_lora_load_gguf_buffer(const nllm_model *m, const uint8_t *buf, uint64_t size,
                                       const char *name, nllm_lora_adapter **out);
/* The same from a PEFT config text and safetensors image in memory (fuzzing, tests). */
nllm_status nllm_lora_load_peft_buffer(const nllm_model *m, const char *config, size_t config_len,
                                       const uint8_t *st, uint64_t st_size, const char *name,
                                       nllm_lora_adapter **out);
void nllm_lora_retain(nllm_lora_adapter *a);
/* Drops one reference; the last one frees the adapter. */
void nllm_lora_release(nllm_lora_adapter *a);

/* The slot a base tensor name ("blk.3.attn_q.weight") is, with its layer; -1 if no slot. */
int nllm_lora_slot_of(const char *tensor_name, int32_t n_layer, int *il);
/* The base weight of a slot (NULL where the architecture has none). */
const nllm_weight *nllm_lora_base_weight(const nllm_model *m, int il, int slot);

/* w[rows][cols] (F32, the base's layout) += s * scale * b @ a: merging into a copy. */
void nllm_lora_merge(const nllm_lora_mat *lm, float s, float *w, int64_t rows, int64_t cols);

#endif
