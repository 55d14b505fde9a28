/* Sizing facts about every GGUF tensor type number, including the ones nativellm refuses, so
 * the file reader can validate and name them. The compute side lives in qtypes.h. */
#ifndef NLLM_GGML_TYPES_H
#define NLLM_GGML_TYPES_H

#include <stdint.h>

#include "qtypes.h"

/* Number of type slots GGUF defines (0 .. NLLM_GGML_TYPE_COUNT-1). */
#define NLLM_GGML_TYPE_COUNT 40

/* 1 if nativellm computes with this type (its weights can be loaded), 0 otherwise. */
int nllm_ggml_type_computed(int32_t type);

#endif
