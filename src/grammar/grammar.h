/* GBNF grammars (the llama.cpp language) compiled to flat rules, and a matcher that consumes
 * output bytes. The sampler uses the matcher to keep generated text inside the grammar.
 *
 * A compiled grammar is immutable (share it freely); a matcher is one output's parse state. */
#ifndef NLLM_GRAMMAR_H
#define NLLM_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* Resource caps. They make every grammar and input finish in bounded time and memory. */
#define NLLM_GRAMMAR_MAX_TEXT (4u << 20)  /* bytes of GBNF text */
#define NLLM_GRAMMAR_MAX_ELEMS (1u << 20) /* compiled elements (repetitions expand) */
#define NLLM_GRAMMAR_MAX_RULES (1u << 16) /* rules, including generated ones */
#define NLLM_GRAMMAR_MAX_NEST 256         /* nested parentheses */
#define NLLM_GRAMMAR_MAX_STACKS 1024      /* parse stacks alive at once */
#define NLLM_GRAMMAR_MAX_DEPTH 2048       /* rule nesting while expanding one stack */
#define NLLM_GRAMMAR_MAX_STEPS (1u << 18) /* expansion steps for one code point */

typedef struct nllm_grammar nllm_grammar;

/* Parses and compiles GBNF text (len bytes; need not be NUL-terminated). root names the start
 * rule (NULL = "root"). Errors are NLLM_ERR_INVALID_ARG with "line L, column C: ..." in
 * nllm_last_error(): syntax, undefined or redefined rules, left recursion, caps. */
nllm_status nllm_grammar_parse(const char *text, size_t len, const char *root, nllm_grammar **out);
void nllm_grammar_free(nllm_grammar *g);

/* The parse state of one output. Not thread-safe; one per sequence. */
typedef struct nllm_gmatch nllm_gmatch;

nllm_status nllm_gmatch_new(const nllm_grammar *g, nllm_gmatch **out);
void nllm_gmatch_free(nllm_gmatch *m);
/* Back to the start of the grammar. */
void nllm_gmatch_reset(nllm_gmatch *m);
/* Whether bytes would be accepted from the current state (state unchanged). *ok = 1/0. An
 * error status only for exhausted caps (a grammar too ambiguous). */
nllm_status nllm_gmatch_check(nllm_gmatch *m, const uint8_t *bytes, size_t n, int *ok);
/* Consumes bytes if accepted (*ok = 1); otherwise the state is unchanged (*ok = 0). */
nllm_status nllm_gmatch_accept(nllm_gmatch *m, const uint8_t *bytes, size_t n, int *ok);
/* The text so far is a complete sentence of the grammar (it may still continue). */
int nllm_gmatch_can_end(const nllm_gmatch *m);
/* The text so far is complete and nothing may follow. */
int nllm_gmatch_must_end(const nllm_gmatch *m);

/* Checking many byte strings that share prefixes (a token trie): the walker keeps one state per
 * depth. walk_begin snapshots the current state at depth 0; walk_step(d, byte) derives the state
 * at depth d + 1 from the one at depth d (*ok = 0 when the byte is rejected); walk_end drops
 * everything the walk created. */
nllm_status nllm_gmatch_walk_begin(nllm_gmatch *m, int32_t max_depth);
nllm_status nllm_gmatch_walk_step(nllm_gmatch *m, int32_t depth, uint8_t byte, int *ok);
void nllm_gmatch_walk_end(nllm_gmatch *m);

/* A byte trie of token pieces, flat in preorder: node i is byte[i] at depth[i] (0 = a piece's
 * first byte), its subtree ends before node end[i], and the pieces that end at node i are those
 * of tokens tok[first[i] .. first[i] + count[i]). Tokens are in preorder, so first[] (n_nodes + 1
 * entries, first[n_nodes] = n_tokens) also gives a subtree's run: tok[first[i] ..
 * first[end[i]]). plain[i] > 0: every byte of node i's subtree is plain text (NLLM_GTRIE_PLAIN)
 * and its longest path, node i included, has plain[i] bytes (0 also above 255). Immutable once
 * built: share it freely. */
#define NLLM_GTRIE_PLAIN(b) ((b) >= 0x20 && (b) < 0x7f && (b) != '"' && (b) != '\\')
typedef struct {
  uint8_t *byte;
  uint16_t *depth;
  uint32_t *end, *first, *count;
  int32_t *tok;
  uint8_t *plain;
  uint32_t n_nodes;
  int32_t n_tokens;
  int32_t max_depth; /* the longest piece */
} nllm_gtrie;

/* The trie of n pieces: piece k is bytes[off[k] .. off[k] + len[k]), len 0 = left out (never
 * allowed). Pieces longer than 65535 bytes are refused. */
nllm_status nllm_gtrie_build(const char *bytes, const uint32_t *off, const uint32_t *len, int32_t n,
                             nllm_gtrie **out);
void nllm_gtrie_free(nllm_gtrie *t);

/* Sets bit t of bits for every token t of the trie whose piece the current state accepts (bits
 * are only set, never cleared). One walk of the trie that skips a subtree at its first rejected
 * byte; the same answers as walk_step over each piece. */
nllm_status nllm_gmatch_mask(nllm_gmatch *m, const nllm_gtrie *t, uint64_t *bits);

/* A key of the current state that does not depend on how it was reached: equal keys, equal
 * answers to every check. Writes at most cap words and returns how many it needs (more than
 * cap: the key is incomplete, do not use it). */
size_t nllm_gmatch_state_key(const nllm_gmatch *m, uint32_t *key, size_t cap);

/* A random sentence of the grammar (for tests): expands rules choosing alternatives with the
 * given xorshift state, preferring to close once depth or length grows. Returns NLLM_OK and a
 * malloc'd NUL-terminated string, or an error when no short sentence was found. */
nllm_status nllm_grammar_sample_text(const nllm_grammar *g, uint64_t *rng, size_t max_len,
                                     char **out);

/* JSON Schema (text) to GBNF text (malloc'd, NUL-terminated, root rule "root"). Errors name the
 * schema location, e.g. "json_schema: /properties/a/pattern: ...". "{}" or "true" gives any JSON
 * value. */
nllm_status nllm_json_schema_to_gbnf(const char *schema, size_t len, char **out);

#endif
