/* Random sentences of a grammar, for tests: the schema tests validate them with an independent
 * JSON Schema validator. Alternatives are chosen at random until the text grows past a budget,
 * then each rule takes its shortest alternative so the sentence closes. */
#include <stdlib.h>

#include "grammar/grammar_internal.h"

typedef struct {
  const nllm_grammar *g;
  uint64_t *rng;
  uint32_t *minlen; /* shortest completion of each rule, in code points */
  char *buf;
  size_t n, cap, max_len;
  int failed;
} gen;

#define INF_LEN 0x3fffffffu

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static uint32_t alt_len(const nllm_grammar *g, const uint32_t *minlen, uint32_t p) {
  uint64_t s = 0;
  for (; g->el[p].type != GE_END; p++) s += g->el[p].type == GE_CHARS ? 1 : minlen[g->el[p].val];
  return s > INF_LEN ? INF_LEN : (uint32_t)s;
}

static void put_cp(gen *G, uint32_t cp) {
  if (G->n + 4 >= G->cap) {
    size_t nc = G->cap * 2 + 64;
    char *b = realloc(G->buf, nc);
    if (!b) {
      G->failed = 1;
      return;
    }
    G->buf = b;
    G->cap = nc;
  }
  char *o = G->buf + G->n;
  if (cp < 0x80)
    o[0] = (char)cp, G->n += 1;
  else if (cp < 0x800)
    o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), G->n += 2;
  else if (cp < 0x10000)
    o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
    o[2] = (char)(0x80 | (cp & 0x3f)), G->n += 3;
  else
    o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f)), G->n += 4;
}

static void pick_char(gen *G, const nllm_gset *s) {
  const nllm_grammar *g = G->g;
  /* Mostly printable ASCII, sometimes other scripts, so UTF-8 paths get exercised. */
  static const uint32_t extra[] = {0xe9, 0x3b1, 0x4e2d, 0x1f600, 0x20ac, '\n', '\t', 0x7f};
  for (int tries = 0; tries < 200; tries++) {
    uint32_t cp;
    uint64_t r = xorshift(G->rng);
    if (!s->neg && s->n && tries < 100) {
      const nllm_grange *rg = &g->ranges[s->first + (uint32_t)(r % s->n)];
      cp = rg->lo + (uint32_t)((r >> 20) % ((uint64_t)rg->hi - rg->lo + 1));
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
    } else {
      cp = r % 4 ? 0x20 + (uint32_t)((r >> 8) % 95) : extra[(r >> 8) % 8];
    }
    if (nllm_gset_has(g, s, cp)) return put_cp(G, cp);
  }
  G->failed = 1;
}

static void gen_rule(gen *G, uint32_t r, int depth) {
  const nllm_grammar *g = G->g;
  if (G->failed || depth > 400 || G->minlen[r] >= INF_LEN) {
    G->failed = 1;
    return;
  }
  uint32_t na = g->rule_nalt[r], a0 = g->rule_alt0[r], pick = 0;
  if (G->n < G->max_len / 2) {
    /* Random among alternatives that can still finish. */
    uint32_t ok[64], k = 0;
    for (uint32_t a = 0; a < na && k < 64; a++)
      if (alt_len(g, G->minlen, g->alts[a0 + a]) < INF_LEN) ok[k++] = a;
    if (!k) {
      G->failed = 1;
      return;
    }
    pick = ok[xorshift(G->rng) % k];
  } else {
    uint32_t best = INF_LEN;
    for (uint32_t a = 0; a < na; a++) {
      uint32_t l = alt_len(g, G->minlen, g->alts[a0 + a]);
      if (l < best) best = l, pick = a;
    }
  }
  for (uint32_t p = g->alts[a0 + pick]; g->el[p].type != GE_END && !G->failed; p++) {
    if (g->el[p].type == GE_CHARS)
      pick_char(G, &g->sets[g->el[p].val]);
    else
      gen_rule(G, g->el[p].val, depth + 1);
    if (G->n > G->max_len * 4 + 4096) G->failed = 1;
  }
}

nllm_status nllm_grammar_sample_text(const nllm_grammar *g, uint64_t *rng, size_t max_len,
                                     char **out) {
  *out = NULL;
  gen G = {.g = g, .rng = rng, .max_len = max_len};
  G.minlen = malloc((size_t)g->n_rules * sizeof *G.minlen);
  if (!G.minlen) return nllm_err(NLLM_ERR_NOMEM, "grammar: out of memory");
  for (uint32_t r = 0; r < g->n_rules; r++) G.minlen[r] = INF_LEN;
  for (int changed = 1; changed;) {
    changed = 0;
    for (uint32_t r = 0; r < g->n_rules; r++)
      for (uint32_t a = 0; a < g->rule_nalt[r]; a++) {
        uint32_t l = alt_len(g, G.minlen, g->alts[g->rule_alt0[r] + a]);
        if (l < G.minlen[r]) G.minlen[r] = l, changed = 1;
      }
  }
  gen_rule(&G, g->root, 0);
  free(G.minlen);
  if (G.failed || !G.buf) {
    free(G.buf);
    if (!G.failed) return (*out = nllm_strdup("")) ? NLLM_OK : NLLM_ERR_NOMEM;
    return nllm_err(NLLM_ERR_INVALID_ARG, "grammar: no short random sentence found");
  }
  G.buf[G.n] = 0;
  *out = G.buf;
  return NLLM_OK;
}
