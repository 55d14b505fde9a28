/* Tensor conversion between weight types (through F32, rows across threads), and
 * quantize-on-load. The model layer uses it while loading; src/convert/ while writing files. */
#ifndef NLLM_QUANTIZE_LOAD_H
#define NLLM_QUANTIZE_LOAD_H

#include "formats/source.h"

static inline int nllm_type_is_float(int32_t t) {
  return t == NLLM_TYPE_F32 || t == NLLM_TYPE_F16 || t == NLLM_TYPE_BF16;
}

/* One tensor's conversion: out_type, and for llama q/k from a rotate_half source, the number of
 * heads whose rows are reordered into GGUF's interleaved pairs (0: no reordering). */
typedef struct nllm_tensor_job {
  const nllm_tensor *t;
  int32_t out_type;
  int64_t permute_heads;
  void *out; /* NULL when the source bytes are written as they are */
  uint64_t out_bytes;
} nllm_tensor_job;

/* Converts job->t into job->out (allocated by the caller, job->out_bytes). n_threads 0 = all
 * cores. NLLM_ERR_UNSUPPORTED if either type has no converter in this build. */
nllm_status nllm_tensor_convert(const nllm_tensor_job *job, int n_threads);

/* Quantize-on-load: every F32/F16/BF16 weight matrix (2-D) becomes `type` in source-owned
 * buffers; vectors stay as they are. Data is converted in the source's layout (no
 * permutation). Rows whose length does not fit the type's block fall back to Q8_0 or F16. */
nllm_status nllm_source_quantize_inplace(nllm_source *src, int32_t type, int n_threads,
                                         nllm_progress_fn progress, void *user_data);

/* Converts n elements of a row from one type to another through F32 (tests use it too).
 * tmp must hold n floats. */
nllm_status nllm_convert_row(const void *src, int32_t src_type, void *dst, int32_t dst_type,
                             int64_t n, float *tmp);

#endif
