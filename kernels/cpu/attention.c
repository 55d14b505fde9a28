/* Causal GQA attention over the KV cache (see attention.h).
 *
 * A prompt batch is split over (token, KV head) pairs, so each cached K/V row is converted once
 * and reused by every query head sharing it. That gives decode only n_head_kv items (1 for a
 * multi-query model), so a few tokens over a long context are split further
 * (flash-decoding): item (token, chunk, KV head) covers a range of positions and leaves per
 * query head a partial result (max score m, sum of exp l, unnormalized sum of p v); the last
 * item of a token to finish merges them with the usual rescaling by exp(m_c - max m). Chunking
 * depends only on the shape and the context, never on the thread count, so results do not
 * change with it.
 *
 * attn_span below is the scalar reference; with AVX2 (and head_dim a multiple of 8) each span
 * goes to nllm_attn_span_avx2 in attention_avx2.c instead. */
#include "attention.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "nativellm.h"
#include "ops.h"
#include "qtypes.h"

#include "cpu/quant.h"
#include "pool.h"

/* Partial results per call (tokens times chunks per token): a fixed count keeps the scratch
 * linear in the context. */
#define SPLIT_SLOTS 32
#define SPLIT_MAX_CHUNKS 16 /* per token */
#define SPLIT_MAX_TOK 4     /* automatic split only for batches this small */
/* Automatic split: only when a token sees this many positions, into chunks at least this long
 * (shorter ones did not pay for their partials and merge), and into enough chunks that a
 * token has about this many items, so up to that many threads share it. */
#define SPLIT_MIN_VIS 256
#define SPLIT_MIN_CHUNK 128
#define SPLIT_ITEMS 16

static size_t partials_size(int64_t n_head, int64_t head_dim) {
  return (size_t)(SPLIT_SLOTS * n_head * (head_dim + 2));
}

size_t nllm_attention_scratch(int64_t n_ctx, int64_t n_head, int64_t n_head_kv, int64_t head_dim) {
  int64_t n_rep = n_head / n_head_kv, rows = n_rep;
  /* the SIMD path keeps the scores of up to 8 heads in lanes of a power of two of them */
  while (n_rep < 8 && (rows & (rows - 1))) rows++;
  /* the tail of thread 0's share holds the partials of a split call */
  return (size_t)(rows * n_ctx + 2 * head_dim + 16) + partials_size(n_head, head_dim);
}

/* A cached row as f32: a pointer into the cache itself for F32, else converted into tmp (the
 * row's elements start at element offset off; for a block type, a whole number of blocks). */
static inline const float *kv_row(const void *base, int32_t type, int64_t off, int64_t n,
                                  nllm_to_float_fn to_f32, float *tmp) {
  if (type == NLLM_TYPE_F32) return (const float *)base + off;
  to_f32((const uint8_t *)base + nllm_row_size(type, off), tmp, n);
  return tmp;
}

typedef struct attn_job {
  const nllm_attn_args *a;
  nllm_to_float_fn k_to_f32, v_to_f32;
  int32_t v_type;
  nllm_attn_span_fn isa_span; /* the tier's or NULL, decided once per call, not per row */
  /* split calls only */
  int64_t max_chunks, min_chunk; /* chunks per token at most; shortest chunk */
  float *partials;               /* [slot][n_head][head_dim], then [slot][n_head] m, l */
  atomic_int done[SPLIT_SLOTS];  /* chunks finished, per token */
} attn_job;

static inline void visible(const nllm_attn_args *a, int64_t t, int64_t *first, int64_t *n_vis) {
  if (a->vis_cell) {
    /* the window starts at the first visible position > pos - window */
    const int32_t *vp = a->vis_pos[t];
    int64_t lo = 0, hi = a->n_vis[t];
    if (a->attn.window > 0) {
      const int64_t from = (int64_t)a->tok_pos[t] - a->attn.window + 1;
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (vp[mid] < from)
          lo = mid + 1;
        else
          hi = mid;
      }
    }
    *first = lo;
    *n_vis = a->n_vis[t] - lo;
    return;
  }
  const int64_t pos = a->pos0 + t;
  *first = a->attn.window > 0 && pos + 1 > a->attn.window ? pos + 1 - a->attn.window : 0;
  *n_vis = pos + 1 - *first;
}

/* The n_rep query heads of (token t, KV head kvh) over positions [j0, j0 + n) into out (rows of
 * head_dim): normalized with m NULL, else unnormalized with each head's max score in m[r] and
 * sum of exp in l[r]. scratch: per-thread floats of nllm_attention_scratch. */
static void attn_span(const attn_job *job, int64_t t, int64_t kvh, int64_t j0, int64_t n,
                      float *out, float *m, float *l, float *scratch) {
  const nllm_attn_args *a = job->a;
  if (job->isa_span) {
    job->isa_span(a, t, kvh, j0, n, out, m, l, scratch);
    return;
  }
  const int64_t hd = a->attn.head_dim, n_rep = a->attn.n_head / a->attn.n_head_kv;
  float *scores = scratch, *tmp = scores + n_rep * n; /* [n_rep][n] */
  const float *qh = a->attn.q + t * a->attn.n_head * hd + kvh * n_rep * hd;

  for (int64_t j = 0; j < n; j++) {
    const float *kr =
        kv_row(a->attn.k, a->kv_type, nllm_attn_kv_offset(a, nllm_attn_row(a, t, j0 + j), kvh), hd,
               job->k_to_f32, tmp);
    for (int64_t r = 0; r < n_rep; r++) {
      float s = nllm_dot_f32(qh + r * hd, kr, hd) * a->attn.scale;
      if (a->attn.softcap > 0) s = a->attn.softcap * tanhf(s / a->attn.softcap);
      scores[r * n + j] = s;
    }
  }
  for (int64_t r = 0; r < n_rep; r++) {
    float *sr = scores + r * n, mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < n; j++) mx = sr[j] > mx ? sr[j] : mx;
    for (int64_t j = 0; j < n; j++) sum += sr[j] = expf(sr[j] - mx);
    if (m) {
      m[r] = mx;
      l[r] = sum;
    } else {
      for (int64_t j = 0; j < n; j++) sr[j] /= sum;
    }
    memset(out + r * hd, 0, (size_t)hd * sizeof(float));
  }
  for (int64_t j = 0; j < n; j++) {
    const float *vr =
        kv_row(a->attn.v, job->v_type, nllm_attn_kv_offset(a, nllm_attn_row(a, t, j0 + j), kvh), hd,
               job->v_to_f32, tmp);
    for (int64_t r = 0; r < n_rep; r++) nllm_axpy_f32(out + r * hd, scores[r * n + j], vr, hd);
  }
}

/* One (token, KV head) pair over the token's whole visible context. */
static void attn_item(void *vjob, int64_t it, int worker) {
  const attn_job *job = vjob;
  const nllm_attn_args *a = job->a;
  const int64_t t = it / a->attn.n_head_kv, kvh = it % a->attn.n_head_kv,
                n_rep = a->attn.n_head / a->attn.n_head_kv;
  int64_t first, n_vis;
  visible(a, t, &first, &n_vis);
  attn_span(job, t, kvh, first, n_vis,
            a->attn.out + (t * a->attn.n_head + kvh * n_rep) * a->attn.head_dim, NULL, NULL,
            a->scratch + (size_t)worker * a->scratch_per_thread);
}

/* Chunking of token t's visible positions into `count` near-equal chunks of at most `len`:
 * depends on the context only, never on the thread count. */
static void chunking(const attn_job *job, int64_t n_vis, int64_t *len, int64_t *count) {
  int64_t n = n_vis / job->min_chunk;
  n = n < 1 ? 1 : n > job->max_chunks ? job->max_chunks : n;
  *len = (n_vis + n - 1) / n;
  *count = (n_vis + *len - 1) / *len;
}

/* Combines token t's n_chunks partials into its output rows. */
static void merge_token(const attn_job *job, int64_t t, int64_t n_chunks) {
  const nllm_attn_args *a = job->a;
  const int64_t hd = a->attn.head_dim, nh = a->attn.n_head;
  const float *o = job->partials + (size_t)(t * job->max_chunks) * nh * hd;
  const float *ml = job->partials + (size_t)SPLIT_SLOTS * nh * hd +
                    (size_t)(t * job->max_chunks) * 2 * nh; /* per slot: m[nh], l[nh] */
  for (int64_t h = 0; h < nh; h++) {
    float mx = -INFINITY, sum = 0;
    for (int64_t c = 0; c < n_chunks; c++) mx = ml[c * 2 * nh + h] > mx ? ml[c * 2 * nh + h] : mx;
    float w[SPLIT_MAX_CHUNKS];
    for (int64_t c = 0; c < n_chunks; c++) {
      w[c] = expf(ml[c * 2 * nh + h] - mx);
      sum += w[c] * ml[c * 2 * nh + nh + h];
    }
    float *dst = a->attn.out + (t * nh + h) * hd;
    memset(dst, 0, (size_t)hd * sizeof(float));
    for (int64_t c = 0; c < n_chunks; c++)
      nllm_axpy_f32(dst, w[c] / sum, o + (size_t)(c * nh + h) * hd, hd);
  }
}

/* One (token, chunk, KV head) item. A thread's share of items is contiguous, so it takes the
 * KV heads of a chunk one after another and the cache rows the chunk spans are read whole
 * while they are still in its cache. */
static void split_item(void *vjob, int64_t it, int worker) {
  attn_job *job = vjob;
  const nllm_attn_args *a = job->a;
  const int64_t per_tok = job->max_chunks * a->attn.n_head_kv;
  const int64_t t = it / per_tok, c = it % per_tok / a->attn.n_head_kv,
                kvh = it % a->attn.n_head_kv;
  const int64_t hd = a->attn.head_dim, nh = a->attn.n_head, n_rep = nh / a->attn.n_head_kv;
  int64_t first, n_vis, len, n_chunks;
  visible(a, t, &first, &n_vis);
  chunking(job, n_vis, &len, &n_chunks);
  if (c >= n_chunks) return;
  const int64_t j0 = first + c * len, n = n_vis - c * len < len ? n_vis - c * len : len;
  const int64_t slot = t * job->max_chunks + c;
  float *o = job->partials + (size_t)slot * nh * hd;
  float *m = job->partials + (size_t)SPLIT_SLOTS * nh * hd + (size_t)slot * 2 * nh, *l = m + nh;
  attn_span(job, t, kvh, j0, n, o + kvh * n_rep * hd, m + kvh * n_rep, l + kvh * n_rep,
            a->scratch + (size_t)worker * a->scratch_per_thread);
  /* the token's last item to finish merges; acq_rel makes the others' partials visible */
  if (atomic_fetch_add_explicit(&job->done[t], 1, memory_order_acq_rel) + 1 ==
      n_chunks * a->attn.n_head_kv)
    merge_token(job, t, n_chunks);
}

void nllm_attention(const nllm_attn_args *a) {
  /* the ISA spans read F16 or F32 rows of one type for K and V */
  const int32_t vt = a->v_typed ? a->v_type : a->kv_type;
  const int simd_types =
      vt == a->kv_type && (a->kv_type == NLLM_TYPE_F16 || a->kv_type == NLLM_TYPE_F32);
  attn_job job = {
      .a = a,
      .k_to_f32 = nllm_qtype_get(a->kv_type)->to_float,
      .v_to_f32 = nllm_qtype_get(vt)->to_float,
      .v_type = vt,
      .isa_span = a->attn.head_dim % 8 == 0 && simd_types ? nllm_cpu_ops_get()->attn_span : NULL};
  int64_t first, last_vis;
  visible(a, a->n_tok - 1, &first, &last_vis);
  /* automatic: only where (token, KV head) pairs are too few to keep the threads busy */
  const int split =
      a->n_tok <= SPLIT_SLOTS &&
      (a->split > 0 || (a->split == 0 && a->n_tok <= SPLIT_MAX_TOK &&
                        a->n_tok * a->attn.n_head_kv < SPLIT_ITEMS && last_vis >= SPLIT_MIN_VIS));
  if (!split) {
    nllm_pool_run(a->n_threads, a->n_tok * a->attn.n_head_kv, attn_item, &job);
    return;
  }
  int64_t max_chunks = SPLIT_SLOTS / a->n_tok;
  if (max_chunks > SPLIT_MAX_CHUNKS) max_chunks = SPLIT_MAX_CHUNKS;
  if (a->split == 0) {
    const int64_t want =
        (SPLIT_ITEMS + a->n_tok * a->attn.n_head_kv - 1) / (a->n_tok * a->attn.n_head_kv);
    if (want < max_chunks) max_chunks = want;
  }
  job.max_chunks = max_chunks;
  job.min_chunk = a->split > 0 ? a->split : SPLIT_MIN_CHUNK;
  job.partials =
      a->scratch + a->scratch_per_thread - partials_size(a->attn.n_head, a->attn.head_dim);
  for (int64_t t = 0; t < a->n_tok; t++) atomic_init(&job.done[t], 0);
  nllm_pool_run(a->n_threads, a->n_tok * max_chunks * a->attn.n_head_kv, split_item, &job);
}
