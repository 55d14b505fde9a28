/* Shared helpers of the grammar and JSON-schema tests: compiling a grammar that must compile,
 * and whether a whole string is a sentence of it. */
#ifndef NLLM_GRAMMAR_TESTUTIL_H
#define NLLM_GRAMMAR_TESTUTIL_H

#include "grammar/grammar.h"
#include "testutil.h"

static inline nllm_grammar *grammar_compile_ok(const char *text) {
  nllm_grammar *g = NULL;
  nllm_status st = nllm_grammar_parse(text, strlen(text), NULL, &g);
  if (st) fprintf(stderr, "grammar failed: %s\n%s\n", nllm_last_error(), text);
  ck_assert_int_eq(st, NLLM_OK);
  return g;
}

/* The grammar of a schema, which must convert and compile. */
static inline nllm_grammar *schema_grammar(const char *schema) {
  char *text = NULL;
  nllm_status st = nllm_json_schema_to_gbnf(schema, strlen(schema), &text);
  if (st) fprintf(stderr, "schema failed: %s\n", nllm_last_error());
  ck_assert_int_eq(st, NLLM_OK);
  nllm_grammar *g = grammar_compile_ok(text);
  free(text);
  return g;
}

/* Whether the whole string is a sentence of the grammar. */
static inline int grammar_full_match(const nllm_grammar *g, const char *s) {
  nllm_gmatch *m;
  ck_assert_int_eq(nllm_gmatch_new(g, &m), NLLM_OK);
  int ok = 0;
  ck_assert_int_eq(nllm_gmatch_accept(m, (const uint8_t *)s, strlen(s), &ok), NLLM_OK);
  int r = ok && nllm_gmatch_can_end(m);
  nllm_gmatch_free(m);
  return r;
}

#endif
