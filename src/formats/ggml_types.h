/* What the GGUF file format says about every tensor type number (ggml_type), including the
 * ones nativellm refuses, so that readers and writers can validate, size and name them. These
 * are file-format facts only: the kernels' registry (kernels/qtypes.h) takes a type's name and
 * block layout from here and adds the functions that compute with it. */
#ifndef NLLM_GGML_TYPES_H
#define NLLM_GGML_TYPES_H

#include <stdint.h>

/* Number of type slots GGUF defines (0 .. NLLM_GGML_TYPE_COUNT-1). */
#define NLLM_GGML_TYPE_COUNT 40

typedef struct nllm_ggml_type_info {
  const char *name;   /* "Q4_K" */
  int32_t block_size; /* elements per block; 0: a layout retired from GGUF, cannot be sized */
  int32_t type_size;  /* bytes per block */
  /* a type of the public ABI (an NLLM_TYPE_* value): nativellm computes with it, and the
   * kernels' registry has a row for it (tests/test_kernels.c checks that the two agree) */
  int32_t computed;
} nllm_ggml_type_info;

/* The row of a type number, or NULL if GGUF defines no such number. */
const nllm_ggml_type_info *nllm_ggml_type_get(int32_t type);
/* Name of any GGUF type number, including ones we refuse ("IQ2_XXS"); NULL if unknown. */
const char *nllm_ggml_type_name(int32_t type);
/* Block size and bytes of any GGUF type number we can at least size (for validation); 0 if not. */
int nllm_ggml_type_block(int32_t type, int32_t *block_size, int32_t *type_size);
/* Bytes of `rows` rows of ne0 elements in this type: 1 and *bytes set, or 0 when the type
 * cannot be sized, ne0 is not a whole number of blocks, or the size overflows 64 bits (every
 * size product of a tensor is checked here: a hostile shape must not wrap to a small size). */
int nllm_ggml_tensor_bytes(int32_t type, uint64_t ne0, uint64_t rows, uint64_t *bytes);
/* 1 if nativellm computes with this type (its weights can be loaded), 0 otherwise. */
int nllm_ggml_type_computed(int32_t type);

#endif
