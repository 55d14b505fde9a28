/* safetensors: header length, JSON header, offsets, dtypes and shapes on an arbitrary buffer.
 * Seeds: fuzz/corpus/fuzz_safetensors. */
#include <stdint.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nllm_source src;
  memset(&src, 0, sizeof src);
  nllm_tensor_list list = {0};
  if (safetensors_parse(&src, data, size, "fuzz.safetensors", &list) == NLLM_OK) {
    /* Every accepted row must lie inside the buffer or in source-owned memory. */
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < list.n; i++) {
      const uint8_t *p = list.t[i].data;
      if (list.t[i].nbytes) sink ^= p[0] ^ p[list.t[i].nbytes - 1];
      sink ^= (uint8_t)strlen(list.t[i].name);
    }
    (void)sink;
  }
  nllm_tensor_list_free(&list);
  nllm_source_free(&src);
  return 0;
}
