/* Conversion and quantization: any nllm_source (GGUF or HF folder) written as a GGUF v3 file
 * other engines load, optionally quantized per tensor; and quantize-on-load in memory. */
#ifndef NLLM_CONVERT_H
#define NLLM_CONVERT_H

#include "convert/gguf_write.h"
#include "formats/source.h"
#include "model/lora.h"
#include "model/quantize_load.h"
#include "tokenizer/tokenizer.h"

/* A target: one type for every weight matrix ("Q8_0", "F16"), or a mixed preset following the
 * usual per-tensor rules ("Q4_K_M": attn_v/ffn_down on some layers one step up, output Q6_K). */
typedef enum nllm_preset_kind {
  NLLM_PRESET_KEEP = 0, /* keep each tensor's type (plain conversion) */
  NLLM_PRESET_PURE,     /* every matrix `type`; output Q6_K as the usual quantizers do */
  NLLM_PRESET_Q2_K,
  NLLM_PRESET_Q3_K_M,
  NLLM_PRESET_Q4_K_M,
  NLLM_PRESET_Q5_K_M,
} nllm_preset_kind;

typedef struct nllm_quant_target {
  nllm_preset_kind kind;
  int32_t type;      /* base NLLM_TYPE_* of matrices; NLLM_TYPE_NONE for KEEP */
  int32_t file_type; /* general.file_type (llama_ftype numbering), -1 if none */
  const char *name;
  /* experts per sparse layer of the model being written (0: dense; the parser leaves 0 and
   * the converter sets it): 8-expert models get their attention matrices one step up, as the
   * usual quantizer does */
  int64_t n_expert;
} nllm_quant_target;

/* "Q4_K_M", "q8_0", "F16", ... (any case). NULL or "" -> KEEP. NLLM_ERR_INVALID_ARG naming it
 * and listing the valid names otherwise. The one parser of weight-type names: the public
 * nllm_type_parse and every command use it. */
nllm_status nllm_quant_target_parse(const char *name, nllm_quant_target *out);
/* The names it accepts, space-separated, in table order. Static storage. */
const char *nllm_quant_target_names(void);

/* The type a tensor gets under a target. n_layers and has_output come from the whole model
 * (a tied model's token_embd is its output matrix and is treated as one). Rows whose length
 * does not fit the chosen type's block fall back to Q8_0 or F16 (logged by the callers). */
int32_t nllm_quant_tensor_type(const nllm_quant_target *t, const nllm_tensor *tensor,
                               int64_t n_layers, int has_output);

/* Writes src as GGUF v3 at out_path (temp file + rename: never a half-written file under that
 * name). HF sources get GGUF tokenizer keys from tokenizer.json and, for arch llama, q/k rows
 * permuted to GGUF's interleaved rope layout. n_threads 0 = all cores. progress may be NULL;
 * returning non-zero from it aborts with NLLM_ERR_ABORTED. */
nllm_status nllm_convert_source(const nllm_source *src, const char *out_path,
                                const char *type_or_preset, int n_threads,
                                nllm_progress_fn progress, void *user_data);
/* The same with LoRA adapters merged into the matrices they adapt: each such tensor becomes
 * F32 W + sum s * scale * B A (in src's layout: the adapters were loaded for a model built
 * from src) before conversion to its target type. n_lora 0: nllm_convert_source. */
nllm_status nllm_convert_source_merged(const nllm_source *src, const char *out_path,
                                       const char *type_or_preset, int n_threads,
                                       nllm_progress_fn progress, void *user_data,
                                       const nllm_lora_active *lora, int32_t n_lora);

/* The tokenizer.ggml.* keys of a tokenizer (as conversion writes them for an HF folder), padded
 * to n_vocab_model tokens when that is larger (0: no padding). */
nllm_status nllm_convert_tokenizer_keys(gguf_writer *w, const nllm_tokenizer *tok,
                                        int64_t n_vocab_model);

#endif
