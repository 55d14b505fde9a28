/* GGUF: the buffer parser first (cheap, every structural check), then the same bytes through
 * nllm_model_load so hyperparameter, shape, tokenizer and forward-pass checks see hostile files
 * too. Seeds: fuzz/corpus/fuzz_gguf (tiny complete models written by fuzz/gen_seeds.c). */
#include <stdint.h>

#include "fuzz_common.h"
#include "formats/source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nllm_source src;
  if (gguf_parse_buffer(data, size, "fuzz.gguf", &src) != NLLM_OK) return 0;
  char text[256];
  for (int64_t i = 0; i < src.n_kv; i++) nllm_value_to_text(&src.kv[i].val, text, sizeof text);
  int vocab_only = nllm_source_tensor(&src, "token_embd.weight") == NULL;
  nllm_source_free(&src);

  char path[64];
  int fd = fuzz_memfd(data, size, path, sizeof path);
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.n_threads = 1;
  mp.use_mmap = size & 1; /* both the mapped and the copied path, chosen by the input */
  mp.vocab_only = vocab_only;
  nllm_model *m = NULL;
  if (nllm_model_load(path, &mp, &m) == NLLM_OK) {
    fuzz_use_model(m);
    nllm_model_free(m);
  }
  close(fd);
  return 0;
}
