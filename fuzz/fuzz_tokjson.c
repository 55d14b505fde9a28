/* Hugging Face tokenizer.json loading: the input is the file. If it loads, text is encoded and
 * decoded with it, so hostile vocabularies, merges, normalizers, pre-tokenizer regexes, added
 * tokens and post-processor templates reach the tokenizer, not just the JSON reader.
 * Seeds: fuzz/corpus/fuzz_tokjson (real families cut down by shrink_tokenizer_json.py, and a
 * small WordPiece one written by hand). */
#include <stdint.h>

#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

static char path[512];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  char dir[256];
  snprintf(dir, sizeof dir, "%s/nllm-fuzz-tokjson-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(dir)) abort();
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_write_file(path, data, size);
  nllm_tokenizer *tok = NULL;
  if (nllm_tokenizer_from_hf(path, &tok) != NLLM_OK) return 0;
  /* the second text is valid UTF-8: WordPiece refuses the first one as a whole */
  static const char *const texts[2] = {
      "Hello world! <s>It's 2024, caf\xc3\xa9 \xe7\x8b\x97 \xff  end\n",
      "[CLS] Hello WORLD, it's Caf\xc3\xa9 \xe6\x88\x91\xe6\x83\xb3 \xec\x84\x9c x+y [SEP]\n"};
  nllm_token ids[256];
  int32_t n = 0, len = 0;
  char out[2048];
  int32_t vocab = nllm_tokenizer_n_vocab(tok);
  for (int flags = 0; flags < 8; flags++) {
    const char *text = texts[flags >> 2];
    if (nllm_tok_tokenize(tok, text, strlen(text), flags & 1, (flags >> 1) & 1, ids, 256, &n) ==
        NLLM_OK) {
      for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) abort();
      nllm_tok_detokenize(tok, ids, n, flags & 1, out, sizeof out, &len);
    }
  }
  for (nllm_token t = -1; t < 40; t++) nllm_tok_token_to_piece(tok, t, 1, out, sizeof out, &len);
  for (int w = 0; w < 6; w++) (void)nllm_tokenizer_special(tok, w);
  nllm_tokenizer_free(tok);
  return 0;
}
