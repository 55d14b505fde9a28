/* Tokenization throughput (MB/s and tokens/s, one thread) on ~1 MB of mixed-language text built
 * by repeating llama.cpp's vocabulary test strings, for the Llama 3, Qwen2.5, Mistral and tiny
 * BERT (WordPiece) tokenizer.json files and two GGUF vocabularies (or any tokenizer.json / GGUF
 * given on the command line). Reports the best of 5 runs. A normalizing tokenizer (BERT
 * lowercases, strips accents) cannot round-trip, so its round trip reads "normalized". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "formats/source.h"
#include "tokenizer/tokenizer.h"

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  if (b) b[n] = 0, *len = (size_t)n;
  return b;
}

/* The .inp strings joined by newlines, repeated to 1 MiB. */
static char *make_corpus(const char *data, size_t *out_len) {
  const char *inps[] = {"vocab/ggml-vocab-llama-bpe.gguf.inp", "vocab/ggml-vocab-qwen2.gguf.inp",
                        "vocab/ggml-vocab-deepseek-llm.gguf.inp"};
  char *unit = NULL;
  size_t ul = 0;
  for (size_t k = 0; k < sizeof inps / sizeof *inps; k++) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", data, inps[k]);
    size_t n;
    char *s = read_all(p, &n);
    if (!s) continue;
    unit = realloc(unit, ul + n + 1);
    for (char *c = s, *e; (e = strstr(c, "\n__ggml_vocab_test__\n")); c = e + 21) {
      memcpy(unit + ul, c, (size_t)(e - c));
      ul += (size_t)(e - c);
      unit[ul++] = '\n';
    }
    free(s);
  }
  if (!ul) return NULL;
  size_t target = 1 << 20;
  char *out = malloc(target + ul);
  size_t n = 0;
  while (n < target) {
    memcpy(out + n, unit, ul);
    n += ul;
  }
  free(unit);
  *out_len = n;
  return out;
}

static void bench(const char *path, const char *text, size_t len) {
  nllm_tokenizer *tok = NULL;
  nllm_source src = {0};
  size_t pl = strlen(path);
  double t0 = nllm_time_ms();
  nllm_status st;
  if (pl > 5 && strcmp(path + pl - 5, ".json") == 0)
    st = nllm_tokenizer_from_hf(path, &tok);
  else if ((st = gguf_open(path, 1, &src)) == NLLM_OK)
    st = nllm_tokenizer_from_source(&src, &tok);
  if (st) {
    printf("%-50s skipped: %s\n", path, nllm_last_error());
    nllm_source_free(&src);
    return;
  }
  double load_ms = nllm_time_ms() - t0;
  nllm_token *ids = malloc((len + 2) * sizeof *ids);
  int32_t n = 0;
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    t0 = nllm_time_ms();
    st = nllm_tok_tokenize(tok, text, len, 0, 0, ids, (int32_t)(len + 2), &n);
    double ms = nllm_time_ms() - t0;
    if (st) {
      printf("%-50s encode failed: %s\n", path, nllm_last_error());
      free(ids);
      nllm_tokenizer_free(tok);
      nllm_source_free(&src);
      return;
    }
    if (ms < best) best = ms;
  }
  char *dec = malloc(len * 2 + 16);
  int32_t dn = 0;
  t0 = nllm_time_ms();
  nllm_tok_detokenize(tok, ids, n, 0, dec, (int32_t)(len * 2 + 16), &dn);
  double dec_ms = nllm_time_ms() - t0;
  printf(
      "%-50s load %6.0f ms  encode %7.2f MB/s %5.2f Mtok/s (%d tokens, %.1f ms)  decode %7.1f "
      "MB/s  round trip %s\n",
      path, load_ms, (double)len / 1e6 / (best / 1e3), (double)n / 1e6 / (best / 1e3), n, best,
      (double)dn / 1e6 / (dec_ms / 1e3),
      (size_t)dn == len && memcmp(dec, text, len) == 0 ? "ok"
      : strstr(path, "bert")                           ? "normalized"
                                                       : "DIFFERS");
  free(dec);
  free(ids);
  nllm_tokenizer_free(tok);
  nllm_source_free(&src);
}

int main(int argc, char **argv) {
  const char *data = getenv("NLLM_TESTDATA");
  if (!data || !*data) data = "../shared/testdata";
  size_t len = 0;
  char *text = make_corpus(data, &len);
  if (!text) {
    printf("bench_tokenizer: no test data under %s (set NLLM_TESTDATA); skipped\n", data);
    return 0;
  }
  printf("corpus: %zu bytes of mixed-language text (vocab test strings repeated), 1 thread\n", len);
  if (argc > 1) {
    for (int i = 1; i < argc; i++) bench(argv[i], text, len);
  } else {
    const char *def[] = {
        "tokenizers/hf/llama3/tokenizer.json",    "tokenizers/hf/qwen2.5/tokenizer.json",
        "tokenizers/hf/mistral7b/tokenizer.json", "embed/tiny-bert/tokenizer.json",
        "vocab/ggml-vocab-llama-spm.gguf",        "vocab/ggml-vocab-gpt-2.gguf"};
    for (size_t i = 0; i < sizeof def / sizeof *def; i++) {
      char p[1024];
      snprintf(p, sizeof p, "%s/%s", data, def[i]);
      bench(p, text, len);
    }
  }
  free(text);
  return 0;
}
