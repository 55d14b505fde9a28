/* Which sequence holds which KV cache cell at which position: the bookkeeping of the one pool
 * of n_ctx cells that all sequences of a context share. The cached data itself lives in the
 * forward state (model/forward.h), one row per cell; this file never touches it.
 *
 * A cell is a page of one token. Its reference count is the number of sequences holding it, so
 * a prefix copied into another sequence is stored once and freed when its last holder drops
 * it. Its keys are rotated for one position (cell_pos), which is therefore the same in every
 * sequence holding it. Each sequence keeps its cells sorted by position: the cells a query at
 * position p attends to are a prefix of that list. */
#ifndef NLLM_KV_CELLS_H
#define NLLM_KV_CELLS_H

#include <stdint.h>

#include "core/core.h"

typedef struct nllm_kv_seq {
  int32_t n, cap;
  int32_t *pos;  /* [n] ascending */
  int32_t *cell; /* [n] the cell of pos[i] */
} nllm_kv_seq;

typedef struct nllm_kv_cells {
  int32_t n_cells, n_used, n_seq;
  int32_t *ref;      /* [n_cells] sequences holding the cell; 0 = free */
  int32_t *cell_pos; /* [n_cells] position the cell's keys are rotated for */
  int32_t free_hint; /* no free cell below this index */
  nllm_kv_seq *seq;  /* [n_seq] */
} nllm_kv_cells;

nllm_status nllm_kv_cells_init(nllm_kv_cells *kc, int32_t n_cells, int32_t n_seq);
void nllm_kv_cells_free(nllm_kv_cells *kc);
/* Every sequence empty, every cell free. */
void nllm_kv_cells_clear(nllm_kv_cells *kc);

/* Room for `extra` more entries in seq s (the only call here that allocates; run it before
 * changing anything so that a failure leaves the state as it was). */
nllm_status nllm_kv_seq_reserve(nllm_kv_cells *kc, int32_t s, int32_t extra);
/* Index of the first entry of s with position >= pos (n if none). */
int32_t nllm_kv_seq_lower(const nllm_kv_seq *q, int32_t pos);
/* 1 if s holds position pos. */
int nllm_kv_seq_has(const nllm_kv_seq *q, int32_t pos);

/* Takes the lowest free cell (the caller checked n_used < n_cells) for position pos. */
int32_t nllm_kv_cell_take(nllm_kv_cells *kc, int32_t pos);
/* Adds (pos, cell) to s (reserved before; pos not in s) and counts the reference. */
void nllm_kv_seq_insert(nllm_kv_cells *kc, int32_t s, int32_t pos, int32_t cell);
/* Drops s's entries with positions in [p0, p1), releasing their references. */
void nllm_kv_seq_remove(nllm_kv_cells *kc, int32_t s, int32_t p0, int32_t p1);

#endif
