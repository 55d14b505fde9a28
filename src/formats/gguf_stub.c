/* Temporary stand-in until the GGUF reader lands (branch gguf); deleted by that merge. */
#include "formats/source.h"

nllm_status gguf_open(const char *path, int use_mmap, nllm_source *out) {
  memset(out, 0, sizeof *out);
  return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: GGUF reader not built yet", path);
}

nllm_status gguf_parse_buffer(const uint8_t *buf, uint64_t size, const char *name,
                              nllm_source *out) {
  memset(out, 0, sizeof *out);
  return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: GGUF reader not built yet", name);
}
