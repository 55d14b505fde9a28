/* The compiled form shared by the GBNF compiler and the matcher. */
#ifndef NLLM_GRAMMAR_INTERNAL_H
#define NLLM_GRAMMAR_INTERNAL_H

#include "grammar/grammar.h"

enum { GE_END = 0, GE_REF = 1, GE_CHARS = 2 };

/* One element of an alternative. Every alternative ends with GE_END. */
typedef struct {
  uint32_t type;
  uint32_t val; /* GE_REF: rule index; GE_CHARS: set index */
} nllm_gelem;

typedef struct {
  uint32_t lo, hi;
} nllm_grange;

/* A character class: code points in any range (or in none when neg). ascii caches the answer
 * for code points below 128. */
typedef struct {
  uint32_t first, n;
  uint32_t neg;
  uint64_t ascii[2];
} nllm_gset;

struct nllm_grammar {
  nllm_gelem *el;
  uint32_t n_el;
  uint32_t *alts; /* start element of each alternative, grouped by rule */
  uint32_t *rule_alt0, *rule_nalt;
  uint32_t n_rules, root;
  nllm_gset *sets;
  uint32_t n_sets;
  nllm_grange *ranges;
  uint32_t n_ranges;
};

static inline int nllm_gset_has(const nllm_grammar *g, const nllm_gset *s, uint32_t cp) {
  if (cp < 128) return (int)((s->ascii[cp >> 6] >> (cp & 63)) & 1);
  int in = 0;
  for (uint32_t i = 0; i < s->n && !in; i++)
    in = cp >= g->ranges[s->first + i].lo && cp <= g->ranges[s->first + i].hi;
  return in != (int)s->neg;
}

/* Whether some code point in [lo, hi] is in the set (exact for plain sets; for negated sets it
 * only says no when one excluded range covers the whole span). */
static inline int nllm_gset_meets(const nllm_grammar *g, const nllm_gset *s, uint32_t lo,
                                  uint32_t hi) {
  for (uint32_t i = 0; i < s->n; i++) {
    const nllm_grange *r = &g->ranges[s->first + i];
    if (s->neg) {
      if (r->lo <= lo && r->hi >= hi) return 0;
    } else if (r->lo <= hi && r->hi >= lo) {
      return 1;
    }
  }
  return (int)s->neg;
}

#endif
