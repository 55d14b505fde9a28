/* JSON Schema -> GBNF: the input is a schema. Whatever the converter accepts must compile as a
 * grammar (a converter bug otherwise), and a random sentence of it must be accepted by its own
 * matcher. Seeds: fuzz/corpus/fuzz_json_schema (the test schemas). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "grammar/grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = NULL;
  if (nllm_json_schema_to_gbnf((const char *)data, size, &text) != NLLM_OK) {
    if (text) abort();
    return 0;
  }
  nllm_grammar *g = NULL;
  nllm_status st = nllm_grammar_parse(text, strlen(text), NULL, &g);
  if (st == NLLM_ERR_INVALID_ARG && !strstr(nllm_last_error(), "too large") &&
      !strstr(nllm_last_error(), "too many rules"))
    abort(); /* the converter wrote a grammar that does not compile */
  if (g) {
    uint64_t rng = size;
    char *s = NULL;
    nllm_gmatch *m = NULL;
    if (nllm_grammar_sample_text(g, &rng, 64, &s) == NLLM_OK && nllm_gmatch_new(g, &m) == NLLM_OK) {
      int ok = 0;
      if (nllm_gmatch_accept(m, (const uint8_t *)s, strlen(s), &ok) == NLLM_OK &&
          (!ok || !nllm_gmatch_can_end(m)))
        abort(); /* a sentence of the grammar rejected by its own matcher */
    }
    nllm_gmatch_free(m);
    free(s);
    nllm_grammar_free(g);
  }
  free(text);
  return 0;
}
