/* GBNF parser and matcher: the input is split at the first NUL byte into grammar text and an
 * input string. If the grammar compiles, the string is fed to a matcher whole and byte by byte,
 * and a random sentence is drawn, so hostile grammars reach expansion and the caps, not just
 * the parser. Seeds: fuzz/corpus/fuzz_gbnf. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "grammar/grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t glen = nul ? (size_t)(nul - data) : size;
  const uint8_t *in = nul ? nul + 1 : data + size;
  size_t inlen = size - glen - (nul ? 1 : 0);
  nllm_grammar *g = NULL;
  if (nllm_grammar_parse((const char *)data, glen, NULL, &g) != NLLM_OK) {
    if (g) abort();
    return 0;
  }
  nllm_gmatch *m = NULL;
  if (nllm_gmatch_new(g, &m) == NLLM_OK) {
    int ok = 0, whole = 0, each = 1, errs = 0;
    errs |= nllm_gmatch_check(m, in, inlen, &whole) != NLLM_OK;
    for (size_t i = 0; i < inlen && each; i++) {
      errs |= nllm_gmatch_accept(m, in + i, 1, &each) != NLLM_OK;
      nllm_gmatch_can_end(m);
    }
    /* Whole-string and byte-by-byte feeding must agree when no cap was hit. */
    if (!errs && whole != each) abort();
    nllm_gmatch_reset(m);
    if (nllm_gmatch_walk_begin(m, 4) == NLLM_OK) {
      for (int b = 0; b < 256; b += 17) {
        nllm_gmatch_walk_step(m, 0, (uint8_t)b, &ok);
        if (ok) nllm_gmatch_walk_step(m, 1, (uint8_t)(255 - b), &ok);
      }
      nllm_gmatch_walk_end(m);
    }
    nllm_gmatch_free(m);
  }
  uint64_t rng = size;
  char *s = NULL;
  if (nllm_grammar_sample_text(g, &rng, 64, &s) == NLLM_OK) free(s);
  nllm_grammar_free(g);
  return 0;
}
