/* The public machine facts tools report against (`nllm bench`): the default thread count, the
 * measured memory-read bandwidth, and the bytes a row of a weight type takes. */
#include <stdint.h>

#include "bandwidth.h"
#include "core/core.h"
#include "qtypes.h"

NLLM_API int32_t nllm_default_n_threads(void) {
  return nllm_default_threads();
}

NLLM_API double nllm_read_bandwidth_gbs(uint64_t bytes, int32_t n_threads, int32_t runs) {
  if (bytes < 4096 || bytes > SIZE_MAX / 2 || runs < 1 || n_threads < 0) {
    nllm_err(NLLM_ERR_INVALID_ARG,
             "nllm_read_bandwidth_gbs: bytes %llu (>= 4096), runs %d (>= 1) or n_threads %d "
             "(>= 0) out of range",
             (unsigned long long)bytes, runs, n_threads);
    return 0;
  }
  return nllm_probe_read_gbs((size_t)bytes, n_threads > 0 ? n_threads : nllm_default_threads(),
                             runs);
}

NLLM_API uint64_t nllm_type_row_size(int32_t type, int64_t n) {
  return (uint64_t)nllm_row_size(type, n);
}
