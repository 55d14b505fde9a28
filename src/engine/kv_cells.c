/* The KV cell pool's bookkeeping (see kv_cells.h). */
#include "engine/kv_cells.h"

#include <stdlib.h>
#include <string.h>

nllm_status nllm_kv_cells_init(nllm_kv_cells *kc, int32_t n_cells, int32_t n_seq) {
  memset(kc, 0, sizeof *kc);
  kc->n_cells = n_cells;
  kc->n_seq = n_seq;
  kc->ref = nllm_calloc((size_t)n_cells, sizeof *kc->ref);
  kc->cell_pos = nllm_calloc((size_t)n_cells, sizeof *kc->cell_pos);
  kc->seq = nllm_calloc((size_t)n_seq, sizeof *kc->seq);
  if (!kc->ref || !kc->cell_pos || !kc->seq) {
    nllm_kv_cells_free(kc);
    return nllm_err(NLLM_ERR_NOMEM, "out of memory (KV cell table: %d cells, %d sequences)",
                    n_cells, n_seq);
  }
  return NLLM_OK;
}

void nllm_kv_cells_free(nllm_kv_cells *kc) {
  if (kc->seq)
    for (int32_t s = 0; s < kc->n_seq; s++) {
      free(kc->seq[s].pos);
      free(kc->seq[s].cell);
    }
  free(kc->seq);
  free(kc->ref);
  free(kc->cell_pos);
  memset(kc, 0, sizeof *kc);
}

void nllm_kv_cells_clear(nllm_kv_cells *kc) {
  for (int32_t s = 0; s < kc->n_seq; s++) kc->seq[s].n = 0;
  memset(kc->ref, 0, (size_t)kc->n_cells * sizeof *kc->ref);
  kc->n_used = 0;
  kc->free_hint = 0;
}

nllm_status nllm_kv_seq_reserve(nllm_kv_cells *kc, int32_t s, int32_t extra) {
  nllm_kv_seq *q = &kc->seq[s];
  if ((int64_t)q->n + extra <= q->cap) return NLLM_OK;
  int64_t cap = q->cap ? q->cap : 16;
  while (cap < (int64_t)q->n + extra) cap *= 2;
  /* a sequence never holds more entries than there are cells */
  if (cap > kc->n_cells) cap = kc->n_cells;
  int32_t *pos = nllm_realloc(q->pos, (size_t)cap * sizeof *pos);
  if (!pos) return nllm_err(NLLM_ERR_NOMEM, "out of memory (cell list of sequence %d)", s);
  q->pos = pos;
  int32_t *cell = nllm_realloc(q->cell, (size_t)cap * sizeof *cell);
  if (!cell) return nllm_err(NLLM_ERR_NOMEM, "out of memory (cell list of sequence %d)", s);
  q->cell = cell;
  q->cap = (int32_t)cap;
  return NLLM_OK;
}

int32_t nllm_kv_seq_lower(const nllm_kv_seq *q, int32_t pos) {
  int32_t lo = 0, hi = q->n;
  while (lo < hi) {
    int32_t mid = lo + (hi - lo) / 2;
    if (q->pos[mid] < pos)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

int nllm_kv_seq_has(const nllm_kv_seq *q, int32_t pos) {
  int32_t i = nllm_kv_seq_lower(q, pos);
  return i < q->n && q->pos[i] == pos;
}

int32_t nllm_kv_cell_take(nllm_kv_cells *kc, int32_t pos) {
  int32_t c = kc->free_hint;
  while (kc->ref[c]) c++;
  kc->free_hint = c + 1;
  kc->cell_pos[c] = pos;
  return c; /* its reference is counted when a sequence takes it in */
}

void nllm_kv_seq_insert(nllm_kv_cells *kc, int32_t s, int32_t pos, int32_t cell) {
  nllm_kv_seq *q = &kc->seq[s];
  /* decoding appends: the common case needs no search and no move */
  int32_t i = q->n == 0 || q->pos[q->n - 1] < pos ? q->n : nllm_kv_seq_lower(q, pos);
  memmove(q->pos + i + 1, q->pos + i, (size_t)(q->n - i) * sizeof *q->pos);
  memmove(q->cell + i + 1, q->cell + i, (size_t)(q->n - i) * sizeof *q->cell);
  q->pos[i] = pos;
  q->cell[i] = cell;
  q->n++;
  if (kc->ref[cell]++ == 0) kc->n_used++;
}

void nllm_kv_seq_remove(nllm_kv_cells *kc, int32_t s, int32_t p0, int32_t p1) {
  nllm_kv_seq *q = &kc->seq[s];
  const int32_t i0 = nllm_kv_seq_lower(q, p0), i1 = nllm_kv_seq_lower(q, p1);
  if (i0 >= i1) return;
  for (int32_t i = i0; i < i1; i++) {
    const int32_t c = q->cell[i];
    if (--kc->ref[c] == 0) {
      kc->n_used--;
      if (c < kc->free_hint) kc->free_hint = c;
    }
  }
  memmove(q->pos + i0, q->pos + i1, (size_t)(q->n - i1) * sizeof *q->pos);
  memmove(q->cell + i0, q->cell + i1, (size_t)(q->n - i1) * sizeof *q->cell);
  q->n -= i1 - i0;
}
