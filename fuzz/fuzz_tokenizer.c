/* Tokenizer encode/decode on arbitrary bytes. Input: byte 0 picks the tokenizer, byte 1 the
 * flags (add_bos, parse_special, render_special), the rest is the text; the same bytes read as
 * token ids (in and out of range) go through piece, decode and the streaming detokenizer.
 * Tokenizers: the bundled stories260K (SentencePiece), and where ../shared/testdata is present
 * the llama-spm and gpt-2 GGUF vocabularies, the Qwen2.5 / Llama 3 tokenizer.json files and the
 * tiny BERT's WordPiece tokenizer.json.
 * Seeds: fuzz/corpus/fuzz_tokenizer. */
#include <stdint.h>

#include "fuzz_common.h"
#include "formats/source.h"
#include "tokenizer/tokenizer.h"

#define MAX_TOK 8
static nllm_tokenizer *toks[MAX_TOK];
static int n_toks;

static void add_gguf(const char *path) {
  nllm_source src;
  if (access(path, R_OK) != 0 || gguf_open(path, 1, &src) != NLLM_OK) return;
  if (nllm_tokenizer_from_source(&src, &toks[n_toks]) == NLLM_OK) n_toks++;
  /* The tokenizer copies what it keeps; the source (and its mapping) can go. */
  nllm_source_free(&src);
}

static void add_hf(const char *path) {
  if (access(path, R_OK) == 0 && nllm_tokenizer_from_hf(path, &toks[n_toks]) == NLLM_OK) n_toks++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *td = getenv("NLLM_TESTDATA");
  if (!td || !*td) td = "../shared/testdata";
  char p[1024];
  add_gguf("models/stories260K.gguf");
  if (n_toks == 0) {
    fprintf(stderr, "fuzz_tokenizer: run from the repository root (models/stories260K.gguf)\n");
    abort();
  }
  snprintf(p, sizeof p, "%s/vocab/ggml-vocab-llama-spm.gguf", td);
  add_gguf(p);
  snprintf(p, sizeof p, "%s/vocab/ggml-vocab-gpt-2.gguf", td);
  add_gguf(p);
  snprintf(p, sizeof p, "%s/tokenizers/hf/qwen2.5/tokenizer.json", td);
  add_hf(p);
  snprintf(p, sizeof p, "%s/tokenizers/hf/llama3/tokenizer.json", td);
  add_hf(p);
  snprintf(p, sizeof p, "%s/embed/tiny-bert/tokenizer.json", td);
  add_hf(p);
  fprintf(stderr, "fuzz_tokenizer: %d tokenizers\n", n_toks);
  return 0;
}

static nllm_token ids[16384];
static char out[65536];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const nllm_tokenizer *tok = toks[data[0] % n_toks];
  int flags = data[1];
  const char *text = (const char *)data + 2;
  size_t len = size - 2;
  int32_t n = 0, n_text = 0;
  nllm_status st = nllm_tok_tokenize(tok, text, len, flags & 1, (flags >> 1) & 1, ids,
                                     (int32_t)(sizeof ids / sizeof ids[0]), &n);
  if (st == NLLM_OK) {
    int32_t vocab = nllm_tokenizer_n_vocab(tok);
    for (int32_t i = 0; i < n; i++)
      if (ids[i] < 0 || ids[i] >= vocab) abort(); /* encode must only produce valid ids */
    st = nllm_tok_detokenize(tok, ids, n, (flags >> 2) & 1, out, sizeof out, &n_text);
    /* Without BOS, specials, or invalid UTF-8, decode(encode(text)) is the text itself;
     * normalizers may change it, so this only checks the output is bounded. */
    if (st == NLLM_OK && n_text >= (int32_t)sizeof out) abort();
    /* A too-small buffer must say so and report the size, never write past cap. */
    if (n > 0) {
      char small[4];
      int32_t need = 0;
      nllm_status s2 =
          nllm_tok_detokenize(tok, ids, n, (flags >> 2) & 1, small, sizeof small, &need);
      if (s2 == NLLM_ERR_BUFFER_TOO_SMALL && need < (int32_t)sizeof small) abort();
    }
  }
  /* The raw bytes as ids, including negative and too-large ones. */
  int32_t n_ids = (int32_t)(len / 4);
  if (n_ids > 4096) n_ids = 4096;
  memcpy(ids, text, (size_t)n_ids * 4);
  nllm_tok_detokenize(tok, ids, n_ids, flags & 4, out, sizeof out, &n_text);
  nllm_detokenizer ds;
  nllm_detokenizer_init(&ds, (flags >> 3) & 1);
  for (int32_t i = 0; i < n_ids; i++) {
    char piece[512];
    int32_t np;
    nllm_tok_token_to_piece(tok, ids[i], flags & 4, piece, sizeof piece, &np);
    nllm_detokenizer_push(tok, &ds, ids[i], piece, sizeof piece, &np);
  }
  char tail[16];
  int32_t nt;
  nllm_detokenizer_flush(&ds, tail, sizeof tail, &nt);
  return 0;
}
