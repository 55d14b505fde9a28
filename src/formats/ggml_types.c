/* The GGUF tensor type table: names, block sizes and bytes per block of every type number a
 * GGUF file may carry. Types whose layout was retired from GGUF (Q4_2, the interleaved
 * Q4_0_4_4 family, ...) keep their names so messages can say what a file holds, but no size:
 * nothing current writes them. */
#include "ggml_types.h"

#include <stddef.h>

#include "nativellm.h"

static const nllm_ggml_type_info ggml_types[NLLM_GGML_TYPE_COUNT] = {
    [NLLM_TYPE_F32] = {.name = "F32", .block_size = 1, .type_size = 4, .computed = 1},
    [NLLM_TYPE_F16] = {.name = "F16", .block_size = 1, .type_size = 2, .computed = 1},
    [NLLM_TYPE_Q4_0] = {.name = "Q4_0", .block_size = 32, .type_size = 18, .computed = 1},
    [NLLM_TYPE_Q4_1] = {.name = "Q4_1", .block_size = 32, .type_size = 20, .computed = 1},
    [4] = {.name = "Q4_2"},
    [5] = {.name = "Q4_3"},
    [NLLM_TYPE_Q5_0] = {.name = "Q5_0", .block_size = 32, .type_size = 22, .computed = 1},
    [NLLM_TYPE_Q5_1] = {.name = "Q5_1", .block_size = 32, .type_size = 24, .computed = 1},
    [NLLM_TYPE_Q8_0] = {.name = "Q8_0", .block_size = 32, .type_size = 34, .computed = 1},
    [NLLM_TYPE_Q8_1] = {.name = "Q8_1", .block_size = 32, .type_size = 36, .computed = 1},
    [NLLM_TYPE_Q2_K] = {.name = "Q2_K", .block_size = 256, .type_size = 84, .computed = 1},
    [NLLM_TYPE_Q3_K] = {.name = "Q3_K", .block_size = 256, .type_size = 110, .computed = 1},
    [NLLM_TYPE_Q4_K] = {.name = "Q4_K", .block_size = 256, .type_size = 144, .computed = 1},
    [NLLM_TYPE_Q5_K] = {.name = "Q5_K", .block_size = 256, .type_size = 176, .computed = 1},
    [NLLM_TYPE_Q6_K] = {.name = "Q6_K", .block_size = 256, .type_size = 210, .computed = 1},
    [NLLM_TYPE_Q8_K] = {.name = "Q8_K", .block_size = 256, .type_size = 292, .computed = 1},
    [NLLM_TYPE_IQ2_XXS] = {.name = "IQ2_XXS", .block_size = 256, .type_size = 66, .computed = 1},
    [NLLM_TYPE_IQ2_XS] = {.name = "IQ2_XS", .block_size = 256, .type_size = 74, .computed = 1},
    [NLLM_TYPE_IQ3_XXS] = {.name = "IQ3_XXS", .block_size = 256, .type_size = 98, .computed = 1},
    [NLLM_TYPE_IQ1_S] = {.name = "IQ1_S", .block_size = 256, .type_size = 50, .computed = 1},
    [NLLM_TYPE_IQ4_NL] = {.name = "IQ4_NL", .block_size = 32, .type_size = 18, .computed = 1},
    [NLLM_TYPE_IQ3_S] = {.name = "IQ3_S", .block_size = 256, .type_size = 110, .computed = 1},
    [NLLM_TYPE_IQ2_S] = {.name = "IQ2_S", .block_size = 256, .type_size = 82, .computed = 1},
    [NLLM_TYPE_IQ4_XS] = {.name = "IQ4_XS", .block_size = 256, .type_size = 136, .computed = 1},
    [24] = {.name = "I8", .block_size = 1, .type_size = 1},
    [25] = {.name = "I16", .block_size = 1, .type_size = 2},
    [26] = {.name = "I32", .block_size = 1, .type_size = 4},
    [27] = {.name = "I64", .block_size = 1, .type_size = 8},
    [28] = {.name = "F64", .block_size = 1, .type_size = 8},
    [NLLM_TYPE_IQ1_M] = {.name = "IQ1_M", .block_size = 256, .type_size = 56, .computed = 1},
    [NLLM_TYPE_BF16] = {.name = "BF16", .block_size = 1, .type_size = 2, .computed = 1},
    [31] = {.name = "Q4_0_4_4"},
    [32] = {.name = "Q4_0_4_8"},
    [33] = {.name = "Q4_0_8_8"},
    [NLLM_TYPE_TQ1_0] = {.name = "TQ1_0", .block_size = 256, .type_size = 54, .computed = 1},
    [NLLM_TYPE_TQ2_0] = {.name = "TQ2_0", .block_size = 256, .type_size = 66, .computed = 1},
    [36] = {.name = "IQ4_NL_4_4"},
    [37] = {.name = "IQ4_NL_4_8"},
    [38] = {.name = "IQ4_NL_8_8"},
    [NLLM_TYPE_MXFP4] = {.name = "MXFP4", .block_size = 32, .type_size = 17, .computed = 1},
};

const nllm_ggml_type_info *nllm_ggml_type_get(int32_t type) {
  if (type < 0 || type >= NLLM_GGML_TYPE_COUNT) return NULL;
  return &ggml_types[type];
}

const char *nllm_ggml_type_name(int32_t type) {
  const nllm_ggml_type_info *r = nllm_ggml_type_get(type);
  return r ? r->name : NULL;
}

int nllm_ggml_type_block(int32_t type, int32_t *block_size, int32_t *type_size) {
  const nllm_ggml_type_info *r = nllm_ggml_type_get(type);
  if (!r || !r->block_size) return 0;
  if (block_size) *block_size = r->block_size;
  if (type_size) *type_size = r->type_size;
  return 1;
}

int nllm_ggml_tensor_bytes(int32_t type, uint64_t ne0, uint64_t rows, uint64_t *bytes) {
  int32_t bs, ts;
  uint64_t row;
  if (!nllm_ggml_type_block(type, &bs, &ts) || ne0 % (uint64_t)bs) return 0;
  return !__builtin_mul_overflow(ne0 / (uint64_t)bs, (uint64_t)ts, &row) &&
         !__builtin_mul_overflow(row, rows, bytes);
}

int nllm_ggml_type_computed(int32_t type) {
  const nllm_ggml_type_info *r = nllm_ggml_type_get(type);
  return r ? r->computed : 0;
}
