/* Token pieces in a flat byte trie (preorder, each node knowing where its subtree ends), the
 * structure nllm_gmatch_mask walks. */
#include <stdlib.h>

#include "grammar/grammar.h"

void nllm_gtrie_free(nllm_gtrie *t) {
  if (!t) return;
  free(t->byte), free(t->depth), free(t->end), free(t->first), free(t->count), free(t->tok);
  free(t->plain);
  free(t);
}

typedef struct {
  const char *bytes;
  const uint32_t *off, *len;
} pieces;

static _Thread_local pieces tl_p;
static int cmp_piece(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  uint32_t lx = tl_p.len[x], ly = tl_p.len[y];
  int c = memcmp(tl_p.bytes + tl_p.off[x], tl_p.bytes + tl_p.off[y], lx < ly ? lx : ly);
  if (c) return c;
  if (lx != ly) return lx < ly ? -1 : 1;
  return x < y ? -1 : x > y;
}

nllm_status nllm_gtrie_build(const char *bytes, const uint32_t *off, const uint32_t *len, int32_t n,
                             nllm_gtrie **out) {
  *out = NULL;
  nllm_gtrie *t = calloc(1, sizeof *t);
  uint32_t *path = NULL, *high = NULL;
  uint8_t *allp = NULL;
  if (!t) goto nomem;
  size_t total = 0;
  int32_t n_tok = 0, max_depth = 0;
  for (int32_t k = 0; k < n; k++) {
    if (!len[k]) continue;
    if (len[k] > 65535) {
      nllm_gtrie_free(t);
      return nllm_err(NLLM_ERR_INVALID_ARG, "grammar: token piece %d is longer than 65535 bytes",
                      k);
    }
    total += len[k];
    n_tok++;
    if ((int32_t)len[k] > max_depth) max_depth = (int32_t)len[k];
  }
  t->tok = malloc(((size_t)n_tok + 1) * sizeof *t->tok);
  /* Nodes: at most one per piece byte. */
  size_t cap = total ? total : 1;
  t->byte = malloc(cap);
  t->depth = malloc(cap * sizeof *t->depth);
  t->end = malloc(cap * sizeof *t->end);
  t->first = malloc((cap + 1) * sizeof *t->first);
  t->count = calloc(cap, sizeof *t->count);
  t->plain = malloc(cap);
  path = malloc(((size_t)max_depth + 1) * sizeof *path);
  high = calloc((size_t)max_depth + 2, sizeof *high);
  allp = malloc((size_t)max_depth + 2);
  if (!t->tok || !t->byte || !t->depth || !t->end || !t->first || !t->count || !t->plain || !path ||
      !high || !allp)
    goto nomem;
  n_tok = 0;
  for (int32_t k = 0; k < n; k++)
    if (len[k]) t->tok[n_tok++] = k;
  tl_p = (pieces){bytes, off, len};
  qsort(t->tok, (size_t)n_tok, sizeof *t->tok, cmp_piece);
  uint32_t N = 0;
  int32_t plen = 0, prev = -1;
  for (int32_t k = 0; k < n_tok; k++) {
    const int32_t id = t->tok[k];
    const uint8_t *p = (const uint8_t *)bytes + off[id];
    int32_t L = (int32_t)len[id], c = 0;
    if (prev >= 0) {
      const uint8_t *q = (const uint8_t *)bytes + off[prev];
      int32_t lq = (int32_t)len[prev];
      while (c < plen && c < L && c < lq && p[c] == q[c]) c++;
    }
    for (int32_t d = c; d < plen; d++) t->end[path[d]] = N;
    for (int32_t d = c; d < L; d++) {
      t->byte[N] = p[d];
      t->depth[N] = (uint16_t)d;
      path[d] = N++;
    }
    plen = L;
    t->count[path[L - 1]]++;
    prev = id;
  }
  for (int32_t d = 0; d < plen; d++) t->end[path[d]] = N;
  /* Pieces are sorted, so their tokens come in the nodes' preorder: first[] is a running count. */
  uint32_t run = 0;
  for (uint32_t i = 0; i < N; i++) {
    t->first[i] = run;
    run += t->count[i];
  }
  t->first[N] = run;
  /* Plain subtrees and their heights, from the last node back: by then a node's children are
   * done, their highest height in high[d + 1] and whether all are plain in allp[d + 1] (both
   * reset for the children of the previous parent). */
  memset(allp, 1, (size_t)max_depth + 2);
  for (uint32_t i = N; i-- > 0;) {
    const int32_t d = t->depth[i];
    const int plain = NLLM_GTRIE_PLAIN(t->byte[i]) && allp[d + 1];
    const uint32_t h = plain ? 1 + high[d + 1] : 0;
    high[d + 1] = 0, allp[d + 1] = 1;
    if (h > high[d]) high[d] = h;
    allp[d] &= (uint8_t)plain;
    t->plain[i] = (uint8_t)(h <= 255 ? h : 0);
  }
  t->n_nodes = N;
  t->n_tokens = n_tok;
  t->max_depth = max_depth;
  free(path), free(high), free(allp);
  *out = t;
  return NLLM_OK;
nomem:
  free(path), free(high), free(allp);
  nllm_gtrie_free(t);
  return nllm_err(NLLM_ERR_NOMEM, "out of memory (grammar token trie)");
}
