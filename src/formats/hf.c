/* Placeholder so the library links until the Hugging Face loader lands: the helper that owns
 * the HF directory format replaces this whole file. */
#include "formats/source.h"

nllm_status hf_open(const char *dir, int use_mmap, nllm_source *out) {
  if (out) memset(out, 0, sizeof *out);
  return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: HF directories: not yet supported", dir ? dir : "");
}
