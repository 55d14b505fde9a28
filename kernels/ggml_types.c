/* The GGUF tensor type table: names, block sizes and bytes per block of every type number a
 * GGUF file may carry. Types whose layout was retired from GGUF (Q4_2, the interleaved
 * Q4_0_4_4 family, ...) keep their names so messages can say what a file holds, but no size:
 * nothing current writes them. */
#include "ggml_types.h"

#include <stddef.h>

typedef struct ggml_type_row {
  const char *name;
  int32_t block_size; /* 0: layout retired, cannot be sized */
  int32_t type_size;
  int32_t computed; /* nativellm has kernels for it */
} ggml_type_row;

static const ggml_type_row ggml_types[NLLM_GGML_TYPE_COUNT] = {
    [0] = {"F32", 1, 4, 1},         [1] = {"F16", 1, 2, 1},         [2] = {"Q4_0", 32, 18, 1},
    [3] = {"Q4_1", 32, 20, 1},      [4] = {"Q4_2", 0, 0, 0},        [5] = {"Q4_3", 0, 0, 0},
    [6] = {"Q5_0", 32, 22, 1},      [7] = {"Q5_1", 32, 24, 1},      [8] = {"Q8_0", 32, 34, 1},
    [9] = {"Q8_1", 32, 36, 1},      [10] = {"Q2_K", 256, 84, 1},    [11] = {"Q3_K", 256, 110, 1},
    [12] = {"Q4_K", 256, 144, 1},   [13] = {"Q5_K", 256, 176, 1},   [14] = {"Q6_K", 256, 210, 1},
    [15] = {"Q8_K", 256, 292, 1},   [16] = {"IQ2_XXS", 256, 66, 0}, [17] = {"IQ2_XS", 256, 74, 0},
    [18] = {"IQ3_XXS", 256, 98, 0}, [19] = {"IQ1_S", 256, 50, 0},   [20] = {"IQ4_NL", 32, 18, 1},
    [21] = {"IQ3_S", 256, 110, 0},  [22] = {"IQ2_S", 256, 82, 0},   [23] = {"IQ4_XS", 256, 136, 1},
    [24] = {"I8", 1, 1, 0},         [25] = {"I16", 1, 2, 0},        [26] = {"I32", 1, 4, 0},
    [27] = {"I64", 1, 8, 0},        [28] = {"F64", 1, 8, 0},        [29] = {"IQ1_M", 256, 56, 0},
    [30] = {"BF16", 1, 2, 1},       [31] = {"Q4_0_4_4", 0, 0, 0},   [32] = {"Q4_0_4_8", 0, 0, 0},
    [33] = {"Q4_0_8_8", 0, 0, 0},   [34] = {"TQ1_0", 256, 54, 0},   [35] = {"TQ2_0", 256, 66, 0},
    [36] = {"IQ4_NL_4_4", 0, 0, 0}, [37] = {"IQ4_NL_4_8", 0, 0, 0}, [38] = {"IQ4_NL_8_8", 0, 0, 0},
    [39] = {"MXFP4", 32, 17, 0},
};

static const ggml_type_row *type_row(int32_t type) {
  if (type < 0 || type >= NLLM_GGML_TYPE_COUNT) return NULL;
  return &ggml_types[type];
}

const char *nllm_ggml_type_name(int32_t type) {
  const ggml_type_row *r = type_row(type);
  return r ? r->name : NULL;
}

int nllm_ggml_type_block(int32_t type, int32_t *block_size, int32_t *type_size) {
  const ggml_type_row *r = type_row(type);
  if (!r || !r->block_size) return 0;
  if (block_size) *block_size = r->block_size;
  if (type_size) *type_size = r->type_size;
  return 1;
}

int nllm_ggml_type_computed(int32_t type) {
  const ggml_type_row *r = type_row(type);
  return r ? r->computed : 0;
}
