/* A context: the KV cache of its sequences (one pool of cells, kv_cells.h), the per-call
 * scratch, and the decode loop that feeds the forward pass in chunks of at most n_batch rows.
 *
 * A batch is all or nothing: it is checked whole, every row gets its cell before the first
 * chunk runs, and a failing chunk (abort, backend error) takes every row's cell back, so the
 * sequences are exactly as before the call. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

/* Positions stay far from INT32_MAX so that pos + 1 and shifts never overflow. */
#define POS_MAX (1 << 30)

static int32_t seq_pos_max(const nllm_context *ctx, int32_t s) {
  const nllm_kv_seq *q = &ctx->cells.seq[s];
  return q->n ? q->pos[q->n - 1] : -1;
}

void nllm_ctx_sync_pos(nllm_context *ctx) {
  ctx->pos = seq_pos_max(ctx, 0) + 1;
}

/* The GPU backend's cache is indexed by position: it runs one sequence whose cell i holds
 * position i, which lowest-free allocation keeps as long as only a tail is ever removed. */
static int gpu_ctx(const nllm_context *ctx) {
  return ctx->model->n_gpu_layers > 0;
}

static nllm_status grow_rows(nllm_context *ctx, int32_t n) {
  if (n <= ctx->rows_cap) return NLLM_OK;
  int32_t *p = nllm_realloc(ctx->row_pos, (size_t)n * sizeof *p);
  if (!p) goto nomem;
  ctx->row_pos = p;
  p = nllm_realloc(ctx->row_cell, (size_t)n * sizeof *p);
  if (!p) goto nomem;
  ctx->row_cell = p;
  p = nllm_realloc(ctx->row_out, (size_t)n * sizeof *p);
  if (!p) goto nomem;
  ctx->row_out = p;
  ctx->rows_cap = n;
  return NLLM_OK;
nomem:
  return nllm_err(NLLM_ERR_NOMEM, "out of memory (a batch of %d rows)", n);
}

/* Room for the per-row vectors of a call of n rows (embedding contexts). */
static nllm_status grow_embd(nllm_context *ctx, int32_t n) {
  if (!ctx->p.embeddings || n <= ctx->embd_cap) return NLLM_OK;
  float *e = nllm_aligned_alloc((size_t)n * (size_t)ctx->model->hp.n_embd * sizeof(float));
  if (!e) return nllm_err(NLLM_ERR_NOMEM, "out of memory for %d rows of embeddings", n);
  nllm_aligned_free(ctx->embd);
  ctx->embd = e;
  ctx->embd_cap = n;
  ctx->n_embd_rows = 0;
  return NLLM_OK;
}

static nllm_status grow_logits(nllm_context *ctx, int64_t rows) {
  if (rows <= ctx->logits_cap) return NLLM_OK;
  /* Grows only for more kept rows than any call before: not on the per-token path. */
  uint64_t n, bytes;
  if (!nllm_mul_ok((uint64_t)rows, (uint64_t)ctx->model->hp.n_vocab, &n) ||
      !nllm_mul_ok(n, sizeof(float), &bytes))
    return nllm_err(NLLM_ERR_NOMEM, "%lld rows of %d logits would be too large", (long long)rows,
                    ctx->model->hp.n_vocab);
  float *l = nllm_aligned_alloc((size_t)bytes);
  if (!l) return nllm_err(NLLM_ERR_NOMEM, "out of memory for %lld rows of logits", (long long)rows);
  nllm_aligned_free(ctx->logits);
  ctx->logits = l;
  ctx->logits_cap = rows;
  ctx->n_logits = 0;
  return NLLM_OK;
}

nllm_status nllm_ctx_reserve_out(nllm_context *ctx, int32_t rows, int64_t logit_rows) {
  nllm_status st = grow_rows(ctx, rows);
  return st ? st : grow_logits(ctx, logit_rows);
}

nllm_status nllm_ctx_create(const nllm_model *m, const nllm_context_params *p, nllm_context **out) {
  *out = NULL;
  if (m->vocab_only)
    return nllm_err(NLLM_ERR_INVALID_ARG, "model was loaded with vocab_only: it cannot decode");
  int32_t n_ctx = p->n_ctx > 0 ? p->n_ctx : m->n_ctx_default;
  int32_t n_batch = p->n_batch > 0 ? p->n_batch : 512;
  if (n_batch > n_ctx) n_batch = n_ctx;
  int32_t nt = p->n_threads > 0 ? p->n_threads : nllm_default_threads();
  int32_t n_seq = p->n_seq_max > 0 ? p->n_seq_max : 1;
  if (n_seq > 1 && m->n_gpu_layers > 0)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "n_seq_max %d: many sequences per context are not "
                    "supported on the CUDA backend yet (n_gpu_layers > 0)",
                    n_seq);
  if (m->arch->bidirectional && p->embeddings != NLLM_EMBEDDINGS_ONLY)
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "'%s' is an encoder: it has no output head and gives embeddings only "
                    "(create the context with embeddings = NLLM_EMBEDDINGS_ONLY)",
                    m->arch->name);
  if (p->embeddings && m->n_gpu_layers > 0)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "embeddings are not supported on the CUDA backend yet (n_gpu_layers > 0)");
  int32_t kv_v = p->kv_type_v == NLLM_TYPE_NONE ? p->kv_type : p->kv_type_v;
  if (m->n_gpu_layers > 0 &&
      (kv_v != p->kv_type || (p->kv_type != NLLM_TYPE_F16 && p->kv_type != NLLM_TYPE_F32)))
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "KV cache types %s/%s: the CUDA backend (n_gpu_layers "
                    "> 0) supports F16 or F32, the same for K and V",
                    nllm_type_name(p->kv_type), nllm_type_name(kv_v));
  nllm_context *c = nllm_calloc(1, sizeof *c);
  if (!c) return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  c->model = m;
  c->pooling = p->pooling == NLLM_POOLING_MODEL ? m->hp.pooling : p->pooling;
  c->normalize = p->normalize < 0 ? m->hp.normalize : p->normalize;
  c->p = *p;
  c->n_ctx = n_ctx;
  c->n_batch = n_batch;
  c->n_threads = nt;
  c->n_seq = n_seq;
  int32_t kv_k = p->kv_type;
  /* an encoder's cache is scratch for one call (no memory to save): keep its K/V exact */
  if (m->arch->bidirectional) kv_k = kv_v = NLLM_TYPE_F32;
  nllm_status st = nllm_forward_state_init(&c->fs, m, n_ctx, n_batch, kv_k, kv_v, nt,
                                           p->all_logits ? n_batch : 1, p->bf16_activations);
  if (st) {
    free(c);
    return st;
  }
  c->fs.abort_cb = p->abort_callback;
  c->fs.abort_ud = p->abort_user_data;
  if ((st = nllm_kv_cells_init(&c->cells, n_ctx, n_seq))) {
    nllm_ctx_free(c);
    return st;
  }
  c->vis_cell = nllm_calloc((size_t)n_batch, sizeof *c->vis_cell);
  c->vis_pos = nllm_calloc((size_t)n_batch, sizeof *c->vis_pos);
  c->n_vis = nllm_calloc((size_t)n_batch, sizeof *c->n_vis);
  c->out_rows = nllm_calloc((size_t)n_batch, sizeof *c->out_rows);
  c->seq_out = nllm_calloc((size_t)n_seq, sizeof *c->seq_out);
  c->seq_scratch = nllm_calloc((size_t)n_seq, sizeof *c->seq_scratch);
  if (p->embeddings) {
    c->embd_seq = nllm_aligned_alloc((size_t)n_seq * (size_t)m->hp.n_embd * sizeof(float));
    c->seq_has_embd = nllm_calloc((size_t)n_seq, 1);
    c->seq_rows = nllm_calloc((size_t)n_seq, sizeof *c->seq_rows);
    if (!c->embd_seq || !c->seq_has_embd || !c->seq_rows) {
      nllm_ctx_free(c);
      return nllm_err(NLLM_ERR_NOMEM, "out of memory (embeddings of %d sequences)", n_seq);
    }
  }
  /* one row per sequence covers a decode step of all of them */
  const int64_t rows = p->all_logits ? n_batch : n_seq < n_batch ? n_seq : n_batch;
  st = grow_logits(c, rows);
  if (!st) st = grow_rows(c, n_batch);
  if (st || !c->vis_cell || !c->vis_pos || !c->n_vis || !c->out_rows || !c->seq_out ||
      !c->seq_scratch) {
    nllm_ctx_free(c);
    return nllm_err(NLLM_ERR_NOMEM, "out of memory (context scratch for %d sequences)", n_seq);
  }
  for (int32_t s = 0; s < n_seq; s++) c->seq_out[s] = -1;
  c->tm.struct_size = sizeof c->tm;
  *out = c;
  return NLLM_OK;
}

void nllm_ctx_free(nllm_context *ctx) {
  if (!ctx) return;
  nllm_ctx_lora_free(ctx);
  nllm_forward_state_free(&ctx->fs);
  nllm_kv_cells_free(&ctx->cells);
  nllm_aligned_free(ctx->logits);
  free(ctx->row_out);
  free(ctx->row_pos);
  free(ctx->row_cell);
  free(ctx->vis_cell);
  free(ctx->vis_pos);
  free(ctx->n_vis);
  free(ctx->out_rows);
  free(ctx->seq_out);
  free(ctx->seq_scratch);
  nllm_aligned_free(ctx->embd);
  nllm_aligned_free(ctx->embd_seq);
  free(ctx->seq_has_embd);
  free(ctx->seq_rows);
  free(ctx);
}

void nllm_ctx_clear(nllm_context *ctx) {
  nllm_kv_cells_clear(&ctx->cells);
  ctx->pos = 0;
  ctx->n_logits = 0;
  ctx->last_n = 0;
  ctx->n_embd_rows = 0;
  if (ctx->seq_has_embd) memset(ctx->seq_has_embd, 0, (size_t)ctx->n_seq);
}

/* Rows whose logits are kept: the caller's flags, else each sequence's last row (every row
 * with all_logits). */
static int row_keeps(const nllm_context *ctx, const nllm_batch *b, int32_t i) {
  if (ctx->p.embeddings == NLLM_EMBEDDINGS_ONLY) return 0;
  if (b->logits) return b->logits[i] != 0;
  if (ctx->p.all_logits) return 1;
  const int32_t s = b->seq_id ? b->seq_id[i] : 0;
  return ctx->seq_scratch[s] == i; /* the last row of s (set by decode_batch) */
}

/* An encoder sees a sequence whole: its rows must be contiguous (so a chunk boundary never
 * falls inside it), at most n_batch of them, at positions its position table covers. */
static nllm_status check_encoder_batch(nllm_context *ctx, const nllm_batch *b) {
  const int32_t n = b->n_tokens, n_pos = (int32_t)ctx->model->pos_embd.rows;
  for (int32_t s = 0; s < ctx->n_seq; s++) ctx->seq_scratch[s] = -1;
  int32_t start = 0;
  for (int32_t i = 0; i < n; i++) {
    const int32_t s = b->seq_id ? b->seq_id[i] : 0;
    if (i > 0 && s != (b->seq_id ? b->seq_id[i - 1] : 0)) {
      if (ctx->seq_scratch[s] >= 0)
        return nllm_err(NLLM_ERR_INVALID_ARG,
                        "decode: the rows of sequence %d are not contiguous (index %d): an encoder "
                        "evaluates each sequence whole, give its rows one after another",
                        s, i);
      start = i;
    }
    ctx->seq_scratch[s] = i;
    if (i - start + 1 > ctx->n_batch)
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "decode: sequence %d has more than n_batch = %d rows: an encoder evaluates a "
                      "sequence in one step (create the context with a larger n_batch)",
                      s, ctx->n_batch);
    if (ctx->row_pos[i] >= n_pos)
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "decode: position %d (index %d) is beyond the model's %d position "
                      "embeddings",
                      ctx->row_pos[i], i, n_pos);
  }
  return NLLM_OK;
}

/* Checks the batch and fills row_pos; changes nothing a caller could see. */
static nllm_status check_batch(nllm_context *ctx, const nllm_batch *b, int32_t *n_keep) {
  const nllm_model *m = ctx->model;
  const int32_t n = b->n_tokens;
  for (int32_t i = 0; i < n; i++)
    if (b->tokens[i] < 0 || b->tokens[i] >= m->hp.n_vocab)
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "decode: token %d at index %d is outside the vocabulary [0, %d)",
                      b->tokens[i], i, m->hp.n_vocab);
  if (b->seq_id)
    for (int32_t i = 0; i < n; i++)
      if (b->seq_id[i] < 0 || b->seq_id[i] >= ctx->n_seq)
        return nllm_err(NLLM_ERR_INVALID_ARG,
                        "decode: sequence id %d at index %d is outside [0, %d) (n_seq_max)",
                        b->seq_id[i], i, ctx->n_seq);
  nllm_status st = grow_rows(ctx, n);
  if (st) return st;
  /* positions: seq_scratch holds each sequence's last position so far */
  for (int32_t s = 0; s < ctx->n_seq; s++) ctx->seq_scratch[s] = seq_pos_max(ctx, s);
  for (int32_t i = 0; i < n; i++) {
    const int32_t s = b->seq_id ? b->seq_id[i] : 0;
    int32_t p = ctx->seq_scratch[s] + 1;
    if (b->pos) {
      p = b->pos[i];
      if (p < 0 || p > POS_MAX)
        return nllm_err(NLLM_ERR_INVALID_ARG, "decode: position %d at index %d is outside [0, %d]",
                        p, i, POS_MAX);
      if (nllm_kv_seq_has(&ctx->cells.seq[s], p))
        return nllm_err(NLLM_ERR_INVALID_ARG,
                        "decode: sequence %d already holds position %d (index %d); remove it "
                        "first",
                        s, p, i);
    } else if (p > POS_MAX) {
      return nllm_err(NLLM_ERR_INVALID_ARG, "decode: sequence %d passed position %d", s, POS_MAX);
    }
    ctx->row_pos[i] = ctx->seq_scratch[s] = p;
  }
  /* rows of one sequence in increasing order (checked on a second pass: a row may precede
   * positions the sequence already holds, but not an earlier row of the batch) */
  for (int32_t s = 0; s < ctx->n_seq; s++) ctx->seq_scratch[s] = -1;
  for (int32_t i = 0; i < n; i++) {
    const int32_t s = b->seq_id ? b->seq_id[i] : 0, prev = ctx->seq_scratch[s];
    if (prev >= 0 && ctx->row_pos[prev] >= ctx->row_pos[i])
      return nllm_err(NLLM_ERR_INVALID_ARG,
                      "decode: rows %d and %d of sequence %d have positions %d and %d: a "
                      "sequence's rows must have increasing positions",
                      prev, i, s, ctx->row_pos[prev], ctx->row_pos[i]);
    ctx->seq_scratch[s] = i; /* from here on: the last row of s, for row_keeps */
  }
  if (m->arch->bidirectional && (st = check_encoder_batch(ctx, b))) return st;
  int32_t keep = 0;
  for (int32_t i = 0; i < n; i++) keep += row_keeps(ctx, b, i);
  if (gpu_ctx(ctx)) {
    /* one sequence, appended at its end, logits of every row or of the last only */
    int ok = 1, all = keep == n, last_only = keep == 1 && row_keeps(ctx, b, n - 1);
    for (int32_t i = 0; i < n; i++) ok &= ctx->row_pos[i] == ctx->pos + i;
    if (!ok || !(all || last_only || keep == 0))
      return nllm_err(NLLM_ERR_UNSUPPORTED,
                      "decode: on the CUDA backend a batch must continue sequence 0 at its end "
                      "and keep the logits of every row or of the last only");
  }
  *n_keep = keep;
  return NLLM_OK;
}

static void l2_normalize(float *v, int64_t n) {
  double ss = 0;
  for (int64_t i = 0; i < n; i++) ss += (double)v[i] * v[i];
  if (ss <= 0) return; /* a zero vector stays zero rather than becoming NaN */
  const float inv = (float)(1.0 / sqrt(ss));
  for (int64_t i = 0; i < n; i++) v[i] *= inv;
}

/* Each sequence's rows of this call pooled into its vector (from the raw rows), then every
 * vector normalized when asked. */
static void pool_embeddings(nllm_context *ctx, const nllm_batch *b) {
  const int64_t d = ctx->model->hp.n_embd;
  const int32_t n = b->n_tokens;
  for (int32_t s = 0; s < ctx->n_seq; s++) ctx->seq_rows[s] = 0;
  for (int32_t i = 0; i < n; i++) {
    const int32_t s = b->seq_id ? b->seq_id[i] : 0;
    const float *row = ctx->embd + (size_t)i * (size_t)d;
    float *out = ctx->embd_seq + (size_t)s * (size_t)d;
    const int first = ctx->seq_rows[s]++ == 0;
    ctx->seq_has_embd[s] = 1;
    switch (ctx->pooling) {
      case NLLM_POOLING_MEAN:
        if (first) memset(out, 0, (size_t)d * sizeof *out);
        for (int64_t k = 0; k < d; k++) out[k] += row[k];
        break;
      case NLLM_POOLING_CLS:
        if (first) memcpy(out, row, (size_t)d * sizeof *out);
        break;
      case NLLM_POOLING_LAST: memcpy(out, row, (size_t)d * sizeof *out); break;
      default: /* NONE: per-token vectors only */ ctx->seq_has_embd[s] = 0; break;
    }
  }
  for (int32_t s = 0; s < ctx->n_seq; s++) {
    if (!ctx->seq_has_embd[s]) continue;
    float *out = ctx->embd_seq + (size_t)s * (size_t)d;
    if (ctx->pooling == NLLM_POOLING_MEAN)
      for (int64_t k = 0; k < d; k++) out[k] /= (float)ctx->seq_rows[s];
    if (ctx->normalize) l2_normalize(out, d);
  }
  if (ctx->normalize)
    for (int32_t i = 0; i < n; i++) l2_normalize(ctx->embd + (size_t)i * (size_t)d, d);
  ctx->n_embd_rows = n;
}

nllm_status nllm_ctx_decode_batch(nllm_context *ctx, const nllm_batch *b) {
  const nllm_model *m = ctx->model;
  nllm_kv_cells *kc = &ctx->cells;
  const int32_t n = b->n_tokens, nv = m->hp.n_vocab;
  if (n <= 0) return nllm_err(NLLM_ERR_INVALID_ARG, "decode: n_tokens must be > 0 (got %d)", n);
  /* before a single row is read: a huge n_tokens cannot overrun the caller's arrays */
  if (n > kc->n_cells - kc->n_used)
    return nllm_err(NLLM_ERR_CONTEXT_FULL,
                    "context full: %d tokens need as many free KV cells, %d of n_ctx %d are free "
                    "(remove positions or sequences, or create the context with a larger n_ctx)",
                    n, kc->n_cells - kc->n_used, kc->n_cells);
  if (!b->tokens) return nllm_err(NLLM_ERR_INVALID_ARG, "decode: tokens is NULL");
  int32_t n_keep = 0;
  nllm_status st = check_batch(ctx, b, &n_keep);
  if (st) return st;
  if ((st = grow_logits(ctx, n_keep)) || (st = grow_embd(ctx, n))) return st;
  /* room in each sequence's cell list (seq_scratch: rows per sequence) */
  for (int32_t s = 0; s < ctx->n_seq; s++) ctx->seq_scratch[s] = 0;
  for (int32_t i = 0; i < n; i++) ctx->seq_scratch[b->seq_id ? b->seq_id[i] : 0]++;
  for (int32_t s = 0; s < ctx->n_seq; s++)
    if (ctx->seq_scratch[s] && (st = nllm_kv_seq_reserve(kc, s, ctx->seq_scratch[s]))) return st;
  /* the row-to-logits map is computed now: row_keeps needs the last row of each sequence */
  for (int32_t s = 0; s < ctx->n_seq; s++) ctx->seq_scratch[s] = -1;
  for (int32_t i = 0; i < n; i++) ctx->seq_scratch[b->seq_id ? b->seq_id[i] : 0] = i;
  for (int32_t i = 0, k = 0; i < n; i++) ctx->row_out[i] = row_keeps(ctx, b, i) ? k++ : -1;

  /* from here on the state changes: every row takes its cell */
  for (int32_t i = 0; i < n; i++) {
    const int32_t s = b->seq_id ? b->seq_id[i] : 0;
    ctx->row_cell[i] = nllm_kv_cell_take(kc, ctx->row_pos[i]);
    nllm_kv_seq_insert(kc, s, ctx->row_pos[i], ctx->row_cell[i]);
  }
  ctx->n_logits = 0;
  ctx->last_n = 0;
  ctx->n_embd_rows = 0;
  if (ctx->seq_has_embd) memset(ctx->seq_has_embd, 0, (size_t)ctx->n_seq);
  const int paged = !gpu_ctx(ctx), encoder = m->arch->bidirectional;
  const int64_t d = m->hp.n_embd;
  const double t0 = nllm_time_ms();
  for (int32_t done = 0; done < n;) {
    int32_t nb = n - done < ctx->n_batch ? n - done : ctx->n_batch;
    if (encoder && done + nb < n) {
      /* end the chunk before the sequence that would cross it (check_encoder_batch: every
       * sequence fits in n_batch and its rows are contiguous) */
      const int32_t s_cut = b->seq_id ? b->seq_id[done + nb] : 0;
      while (nb > 0 && (b->seq_id ? b->seq_id[done + nb - 1] : 0) == s_cut) nb--;
    }
    int32_t n_out = 0, first_out = -1;
    for (int32_t t = 0; t < nb; t++) {
      const int32_t i = done + t, s = b->seq_id ? b->seq_id[i] : 0;
      const nllm_kv_seq *q = &kc->seq[s];
      /* a row sees its sequence's cells up to its own position, itself included; an
       * encoder's row sees all of them (the sequence is whole in this chunk) */
      ctx->vis_cell[t] = q->cell;
      ctx->vis_pos[t] = q->pos;
      ctx->n_vis[t] = encoder ? q->n : nllm_kv_seq_lower(q, ctx->row_pos[i] + 1);
      if (ctx->row_out[i] >= 0) {
        if (first_out < 0) first_out = ctx->row_out[i];
        ctx->out_rows[n_out++] = t;
      }
    }
    nllm_fw_batch fb = {.tokens = b->tokens + done, .n = nb, .pos0 = ctx->row_pos[done]};
    if (paged) {
      fb.pos = ctx->row_pos + done;
      fb.cell = ctx->row_cell + done;
      fb.vis_cell = ctx->vis_cell;
      fb.vis_pos = ctx->vis_pos;
      fb.n_vis = ctx->n_vis;
      fb.out_rows = ctx->out_rows;
      fb.n_out = n_out;
    } else {
      fb.all_logits = n_out == nb; /* else the last row only (check_batch) */
    }
    fb.row_lora = nllm_ctx_lora_rows(ctx, b->seq_id ? b->seq_id + done : NULL, nb);
    if (ctx->p.embeddings) fb.embd = ctx->embd + (size_t)done * (size_t)d;
    st = nllm_forward(&ctx->fs, &fb, n_out ? ctx->logits + (size_t)first_out * nv : NULL);
    if (st || encoder) {
      /* an encoder keeps nothing between calls: its next call starts at position 0 again */
      if (st || done + nb == n)
        for (int32_t i = 0; i < n; i++)
          nllm_kv_seq_remove(kc, b->seq_id ? b->seq_id[i] : 0, ctx->row_pos[i],
                             ctx->row_pos[i] + 1);
      if (st) return st;
    }
    done += nb;
  }
  if (ctx->p.embeddings) pool_embeddings(ctx, b);
  for (int32_t s = 0; s < ctx->n_seq; s++) ctx->seq_out[s] = -1;
  for (int32_t i = 0; i < n; i++)
    if (ctx->row_out[i] >= 0) ctx->seq_out[b->seq_id ? b->seq_id[i] : 0] = ctx->row_out[i];
  ctx->n_logits = n_keep;
  ctx->last_n = n;
  nllm_ctx_sync_pos(ctx);
  /* a sequence's single row is a generation step, several rows are a prompt chunk (seq_scratch:
   * rows per sequence) */
  const double dt = nllm_time_ms() - t0;
  for (int32_t s = 0; s < ctx->n_seq; s++) ctx->seq_scratch[s] = 0;
  for (int32_t i = 0; i < n; i++) ctx->seq_scratch[b->seq_id ? b->seq_id[i] : 0]++;
  int32_t n_gen = 0;
  for (int32_t i = 0; i < n; i++) n_gen += ctx->seq_scratch[b->seq_id ? b->seq_id[i] : 0] == 1;
  ctx->tm.n_gen_tokens += n_gen;
  ctx->tm.gen_ms += dt * n_gen / n;
  ctx->tm.n_prompt_tokens += n - n_gen;
  ctx->tm.prompt_ms += dt * (n - n_gen) / n;
  return NLLM_OK;
}

nllm_status nllm_ctx_decode(nllm_context *ctx, const nllm_token *tokens, int32_t n) {
  nllm_batch b = {.struct_size = sizeof b, .n_tokens = n, .tokens = tokens};
  return nllm_ctx_decode_batch(ctx, &b);
}

/* ---- sequence operations */

static void range(int32_t *p0, int32_t *p1) {
  if (*p0 < 0) *p0 = 0;
  if (*p1 < 0) *p1 = INT32_MAX;
}

nllm_status nllm_ctx_seq_remove(nllm_context *ctx, int32_t seq, int32_t p0, int32_t p1) {
  range(&p0, &p1);
  if (gpu_ctx(ctx) && p1 <= seq_pos_max(ctx, 0) && p0 < p1)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "sequence remove: on the CUDA backend only the tail of a sequence can be "
                    "removed ([%d, %d) leaves position %d behind it)",
                    p0, p1, seq_pos_max(ctx, 0));
  for (int32_t s = 0; s < ctx->n_seq; s++)
    if (seq == NLLM_SEQ_ALL || s == seq) nllm_kv_seq_remove(&ctx->cells, s, p0, p1);
  nllm_ctx_sync_pos(ctx);
  return NLLM_OK;
}

nllm_status nllm_ctx_seq_copy(nllm_context *ctx, int32_t src, int32_t dst, int32_t p0, int32_t p1) {
  range(&p0, &p1);
  if (src == dst || p0 >= p1) return NLLM_OK;
  nllm_kv_cells *kc = &ctx->cells;
  const nllm_kv_seq *qs = &kc->seq[src];
  const int32_t i0 = nllm_kv_seq_lower(qs, p0), i1 = nllm_kv_seq_lower(qs, p1);
  nllm_status st = nllm_kv_seq_reserve(kc, dst, i1 - i0);
  if (st) return st;
  nllm_kv_seq_remove(kc, dst, p0, p1);
  /* qs->pos/cell are not reallocated by inserting into dst (another sequence) */
  for (int32_t i = i0; i < i1; i++) nllm_kv_seq_insert(kc, dst, qs->pos[i], qs->cell[i]);
  nllm_ctx_sync_pos(ctx);
  return NLLM_OK;
}

nllm_status nllm_ctx_seq_keep(nllm_context *ctx, int32_t seq) {
  for (int32_t s = 0; s < ctx->n_seq; s++)
    if (s != seq) nllm_kv_seq_remove(&ctx->cells, s, 0, INT32_MAX);
  nllm_ctx_sync_pos(ctx);
  return NLLM_OK;
}

nllm_status nllm_ctx_seq_shift(nllm_context *ctx, int32_t seq, int32_t p0, int32_t p1,
                               int32_t delta) {
  range(&p0, &p1);
  nllm_kv_cells *kc = &ctx->cells;
  nllm_kv_seq *q = &kc->seq[seq];
  const int32_t i0 = nllm_kv_seq_lower(q, p0), i1 = nllm_kv_seq_lower(q, p1);
  if (delta == 0 || i0 >= i1) return NLLM_OK;
  if (gpu_ctx(ctx))
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "sequence shift: not supported on the CUDA backend yet (n_gpu_layers > 0)");
  const int64_t lo = (int64_t)q->pos[i0] + delta, hi = (int64_t)q->pos[i1 - 1] + delta;
  if (lo < 0 || hi > POS_MAX)
    return nllm_err(NLLM_ERR_INVALID_ARG,
                    "sequence shift: positions [%d, %d] of sequence %d shifted by %d leave [0, %d]",
                    q->pos[i0], q->pos[i1 - 1], seq, delta, POS_MAX);
  /* collisions with the entries that stay: both lists are sorted, so one merge pass */
  int32_t shared = 0;
  for (int32_t i = i0; i < i1; i++) shared += kc->ref[q->cell[i]] > 1;
  {
    int32_t a = i0, o = 0;
    while (a < i1 && o < q->n) {
      if (o == i0) {
        o = i1;
        continue;
      }
      const int64_t pa = (int64_t)q->pos[a] + delta, po = q->pos[o];
      if (pa == po)
        return nllm_err(NLLM_ERR_INVALID_ARG,
                        "sequence shift: position %d of sequence %d shifted by %d lands on its "
                        "position %d",
                        q->pos[a], seq, delta, q->pos[o]);
      if (pa < po)
        a++;
      else
        o++;
    }
  }
  if (shared > kc->n_cells - kc->n_used)
    return nllm_err(NLLM_ERR_CONTEXT_FULL,
                    "sequence shift: %d cells of sequence %d are shared with other sequences and "
                    "need copies, but only %d KV cells are free",
                    shared, seq, kc->n_cells - kc->n_used);
  int32_t *tmp = nllm_malloc((size_t)q->n * 2 * sizeof *tmp);
  if (!tmp) return nllm_err(NLLM_ERR_NOMEM, "out of memory (sequence shift)");
  for (int32_t i = i0; i < i1; i++) {
    int32_t c = q->cell[i];
    const int32_t np = q->pos[i] + delta;
    if (kc->ref[c] > 1) { /* copy on write: the other holders keep the old rotation */
      const int32_t nc = nllm_kv_cell_take(kc, np);
      nllm_forward_kv_copy(&ctx->fs, c, nc);
      kc->ref[c]--;
      kc->ref[nc] = 1;
      kc->n_used++;
      c = nc;
    }
    kc->cell_pos[c] = np;
    nllm_forward_kv_shift(&ctx->fs, c, delta);
    q->pos[i] = np;
    q->cell[i] = c;
  }
  /* merge the moved run back into order */
  int32_t *tp = tmp, *tc = tmp + q->n, a = i0, o = 0, k = 0;
  for (;;) {
    if (o == i0) o = i1;
    const int has_a = a < i1, has_o = o < q->n;
    if (!has_a && !has_o) break;
    const int32_t from = has_a && (!has_o || q->pos[a] < q->pos[o]) ? a++ : o++;
    tp[k] = q->pos[from];
    tc[k++] = q->cell[from];
  }
  memcpy(q->pos, tp, (size_t)k * sizeof *tp);
  memcpy(q->cell, tc, (size_t)k * sizeof *tc);
  free(tmp);
  nllm_ctx_sync_pos(ctx);
  return NLLM_OK;
}
