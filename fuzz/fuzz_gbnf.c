/* GBNF parser and matcher: the input is split at the first NUL byte into grammar text and an
 * input string. If the grammar compiles, the string is fed to a matcher whole and byte by byte,
 * the mask of a small token trie at the state reached is checked against each piece on its own,
 * and a random sentence is drawn, so hostile grammars reach expansion and the caps, not just
 * the parser. Seeds: fuzz/corpus/fuzz_gbnf. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "grammar/grammar.h"

/* Pieces like a vocabulary's: plain words of many lengths (bounded strings), JSON punctuation,
 * digits, escapes, UTF-8 whole and in halves, a repeated piece, one longer than the plain-run
 * proof goes. */
static const char *const WORDS[] = {"a",
                                    "ab",
                                    "abc",
                                    "abcd",
                                    "abcdefgh",
                                    "hello world",
                                    " ",
                                    "  ",
                                    "\n",
                                    "\t",
                                    "\"",
                                    "\\",
                                    "\\n",
                                    "\\u00e9",
                                    "{",
                                    "}",
                                    "[",
                                    "]",
                                    ",",
                                    ":",
                                    "\":",
                                    "\",",
                                    "0",
                                    "1",
                                    "12",
                                    "-",
                                    "-5",
                                    "1.5",
                                    "e+",
                                    "true",
                                    "false",
                                    "null",
                                    "a\"",
                                    "ab\"}",
                                    "\xc3\xa9",
                                    "\xc3",
                                    "\xa9",
                                    "\xe4\xb8\xad",
                                    "x\xc3\xa9y",
                                    "\x7f",
                                    "\x01",
                                    "ab",
                                    ("A quick brown fox jumps over the lazy dog, and then another "
                                     "fox jumps over it")};
enum { N_WORDS = sizeof WORDS / sizeof *WORDS };

static const nllm_gtrie *word_trie(void) {
  static nllm_gtrie *t;
  static char bytes[1024];
  static uint32_t off[N_WORDS], len[N_WORDS];
  if (!t) {
    uint32_t at = 0;
    for (int i = 0; i < N_WORDS; i++) {
      off[i] = at;
      len[i] = (uint32_t)strlen(WORDS[i]);
      memcpy(bytes + at, WORDS[i], len[i]);
      at += len[i];
    }
    if (nllm_gtrie_build(bytes, off, len, N_WORDS, &t) != NLLM_OK) abort();
  }
  return t;
}

/* The trie mask at m's state equals checking each word. */
static void check_mask(nllm_gmatch *m) {
  uint64_t bits[(N_WORDS + 63) / 64] = {0};
  if (nllm_gmatch_mask(m, word_trie(), bits) != NLLM_OK) return; /* a cap: fine */
  for (int i = 0; i < N_WORDS; i++) {
    int ok = 0;
    if (nllm_gmatch_check(m, (const uint8_t *)WORDS[i], strlen(WORDS[i]), &ok) != NLLM_OK) return;
    if (ok != (int)((bits[i / 64] >> (i % 64)) & 1)) abort();
  }
}

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
    check_mask(m);
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
