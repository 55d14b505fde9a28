/* The mixture-of-experts FFN. A batch's (token, chosen expert) pairs are sorted into slots by
 * expert, so each expert's tokens sit next to each other: an expert then runs like one small
 * matmul over its token group and its weight rows are read once for the whole batch. Groups
 * small enough for the integer dot kernels (every group of a decode step) run as one job whose
 * work items span all the experts' rows, so one token's k experts are split over the threads
 * together instead of one expert after another; a group large enough for sgemm goes through
 * nllm_matmul on its gathered rows. */
#include "moe.h"

#include <math.h>
#include <string.h>

#include "nativellm.h"
#include "ops.h"
#include "pool.h"
#include "qtypes.h"

static uint8_t *align64(void *p) {
  return (uint8_t *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

static size_t round64(size_t n) {
  return (n + 63) & ~(size_t)63;
}

void nllm_moe_route(const float *logits, int64_t n_tok, int32_t n_expert, int32_t k, int norm,
                    int32_t *ids, float *w) {
  for (int64_t t = 0; t < n_tok; t++) {
    const float *l = logits + t * n_expert;
    int32_t *id = ids + t * k;
    float *wt = w + t * k;
    float mx = l[0];
    for (int32_t e = 1; e < n_expert; e++)
      if (l[e] > mx) mx = l[e];
    double sum = 0;
    for (int32_t e = 0; e < n_expert; e++) sum += exp((double)(l[e] - mx));
    /* Choosing on the logits picks the same experts as on p (exp is monotonic) but keeps two
     * logits that round to the same p apart; a true tie goes to the lower index because the
     * scan takes a later expert only when it is strictly larger. */
    for (int32_t j = 0; j < k; j++) {
      int32_t best = -1;
      for (int32_t e = 0; e < n_expert; e++) {
        int taken = 0;
        for (int32_t i = 0; i < j; i++) taken |= id[i] == e;
        if (!taken && (best < 0 || l[e] > l[best])) best = e;
      }
      id[j] = best;
      wt[j] = (float)(exp((double)(l[best] - mx)) / sum);
    }
    if (norm) {
      double s = 0;
      for (int32_t j = 0; j < k; j++) s += wt[j];
      for (int32_t j = 0; j < k; j++) wt[j] = (float)(wt[j] / s);
    }
  }
}

/* One expert matrix applied to its slot group: y[s][r] = W_e[r] . act row s for the group's
 * slots s in [s0, s1). The activations sit in slot order (gathered per slot), so a group's
 * tokens are rows of one stride and the multi-token kernels run on them as on a prompt. */
typedef struct moe_task {
  const uint8_t *W;
  const nllm_qtype *q;
  float *y; /* row s of the result at y + s * rows */
  int64_t rows, cols, s0, s1;
  const uint8_t *act;  /* row s at act + s * a_rs, in the weight's vec_dot_type */
  const uint8_t *prep; /* gemm_prep of row s at prep + s * p_rs; NULL: no register tiles */
  size_t a_rs, w_rs, p_rs;
  int64_t first_item; /* items of earlier tasks */
} moe_task;

/* ---- scratch layout */

typedef struct moe_layout {
  size_t ids, wts, off, slot_tok, slot_of, x, g, u, dn, act_gate, act_up, act_down, mm, total;
  size_t sh_g, sh_u, sh_d, sh_w; /* the shared expert's gate, up/hidden, output, sigmoid gate */
  size_t slot_gate, slot_up, prep_gate, prep_up, prep_down;
  size_t rs_gate, rs_up, rs_down; /* activation row sizes in the vec_dot types */
  size_t ps_gate, ps_up, ps_down; /* prepared row sizes (0: no register tiles for the matrix) */
  size_t tasks, items;
} moe_layout;

static size_t act_row(int32_t wtype, int64_t cols) {
  const nllm_qtype *q = nllm_qtype_get(wtype);
  return q ? nllm_row_size(q->vec_dot_type, cols) : 0;
}

/* Register tiles need a multi-token batch and rows a multiple of NLLM_GEMM_COLS; the space is
 * kept whichever tier runs (a scratch sized under one tier stays safe if the tier is capped). */
static size_t prep_row(int32_t wtype, int64_t cols, int64_t n_tok) {
  const nllm_qtype *q = nllm_qtype_get(wtype);
  if (!q || q->vec_dot_type == NLLM_TYPE_F32 || n_tok < 2 || cols % NLLM_GEMM_COLS) return 0;
  return NLLM_GEMM_PREP_BYTES(cols);
}

static size_t max3(size_t a, size_t b, size_t c) {
  size_t m = a > b ? a : b;
  return m > c ? m : c;
}

static moe_layout layout(const nllm_moe_args *a, int64_t n_tok, int n_threads) {
  moe_layout L;
  const int64_t d = a->d, ff = a->ff, fsh = a->sh_gate.data ? a->sh_gate.rows : 0;
  const int32_t tg = a->gate.type, tu = a->up.type, td = a->down.type;
  const size_t S = (size_t)n_tok * (size_t)a->n_used, f = sizeof(float);
  size_t o = 0;
#define PLACE(field, bytes) (L.field = o, o += round64(bytes))
  PLACE(ids, S * sizeof(int32_t));
  PLACE(wts, S * f);
  PLACE(off, ((size_t)a->n_expert + 1) * sizeof(int64_t));
  PLACE(slot_tok, S * sizeof(int32_t));
  PLACE(slot_of, S * sizeof(int32_t));
  PLACE(x, (size_t)n_tok * (size_t)d * f);
  PLACE(g, S * (size_t)ff * f);
  PLACE(u, S * (size_t)ff * f);
  PLACE(dn, S * (size_t)d * f);
  L.rs_gate = act_row(tg, d), L.rs_up = act_row(tu, d), L.rs_down = act_row(td, ff);
  PLACE(act_gate, (size_t)n_tok * L.rs_gate);
  PLACE(act_up, (size_t)n_tok * L.rs_up);
  PLACE(act_down, S * L.rs_down);
  PLACE(slot_gate, S * L.rs_gate);
  PLACE(slot_up, S * L.rs_up);
  L.ps_gate = prep_row(tg, d, n_tok), L.ps_up = prep_row(tu, d, n_tok);
  L.ps_down = prep_row(td, ff, n_tok);
  PLACE(prep_gate, S * L.ps_gate);
  PLACE(prep_up, S * L.ps_up);
  PLACE(prep_down, S * L.ps_down);
  size_t mm =
      max3(nllm_matmul_wsize(tg, d, n_tok, n_threads), nllm_matmul_wsize(tu, d, n_tok, n_threads),
           nllm_matmul_wsize(td, ff, n_tok, n_threads));
  if (fsh) {
    mm = max3(mm, nllm_matmul_wsize(a->sh_gate.type, d, n_tok, n_threads),
              nllm_matmul_wsize(a->sh_up.type, d, n_tok, n_threads));
    mm = max3(mm, nllm_matmul_wsize(a->sh_down.type, fsh, n_tok, n_threads), 0);
  }
  PLACE(mm, mm);
  PLACE(sh_g, (size_t)n_tok * (size_t)fsh * f);
  PLACE(sh_u, (size_t)n_tok * (size_t)fsh * f);
  PLACE(sh_d, fsh ? (size_t)n_tok * (size_t)d * f : 0);
  PLACE(sh_w, fsh ? (size_t)n_tok * f : 0);
  PLACE(tasks, 2 * ((size_t)a->n_expert + 1) * sizeof(moe_task));
#undef PLACE
  L.items = 0;
  L.total = o + 64;
  return L;
}

size_t nllm_moe_scratch_size(const nllm_moe_args *a) {
  return layout(a, a->n_tok < 1 ? 1 : a->n_tok, a->n_threads < 1 ? 1 : a->n_threads).total;
}

/* ---- the job over many experts' rows */

typedef struct moe_job {
  moe_task *tasks;
  int n_tasks;
  int64_t item_rows;
} moe_job;

static void task_item(void *vjob, int64_t item, int worker) {
  const moe_job *j = vjob;
  (void)worker;
  int lo = 0, hi = j->n_tasks - 1; /* the last task whose first_item <= item */
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (j->tasks[mid].first_item <= item)
      lo = mid;
    else
      hi = mid - 1;
  }
  const moe_task *tk = &j->tasks[lo];
  const int64_t r0 = (item - tk->first_item) * j->item_rows;
  const int64_t r1 = r0 + j->item_rows < tk->rows ? r0 + j->item_rows : tk->rows;
  /* a group of one token runs the decode kernels, as a decode step does */
  const uint8_t *prep = tk->s1 - tk->s0 > 1 ? tk->prep : NULL;
  nllm_matmul_rows(tk->q, tk->cols, tk->W, tk->w_rs, r0, r1, tk->act, tk->a_rs, prep, tk->p_rs,
                   tk->s0, tk->s1, tk->y, (size_t)tk->rows);
}

/* Splits every task's rows into work items of one size and runs them. One token: about 16
 * items per thread over all the tasks' rows (multiples of 4 for the four-row kernels), so the
 * k experts are read by all threads at once. Several: 16 rows, which stay in L1/L2 while the
 * group's tokens pass over them (as nllm_matmul's prompt items). */
static void run_tasks(moe_job *job, int64_t n_tok, int64_t rows_total, int nt) {
  if (!job->n_tasks) return;
  int64_t r = (rows_total + 16 * nt - 1) / (16 * nt);
  r = (r + 3) & ~(int64_t)3;
  job->item_rows = n_tok > 1 ? 16 : r < 4 ? 4 : r > 256 ? 256 : r;
  int64_t n_items = 0;
  for (int i = 0; i < job->n_tasks; i++) {
    moe_task *tk = &job->tasks[i];
    tk->first_item = n_items;
    n_items += (tk->rows + job->item_rows - 1) / job->item_rows;
  }
  nllm_pool_run(nt, n_items, task_item, job);
}

typedef struct quant_job {
  const float *x;
  int64_t cols;
  uint8_t *out;
  size_t rs;
  const nllm_qtype *vq;
} quant_job;

static void quant_item(void *vjob, int64_t t, int worker) {
  const quant_job *j = vjob;
  (void)worker;
  j->vq->from_float(j->x + t * j->cols, j->out + (size_t)t * j->rs, j->cols);
}

/* Activation rows in the weight's vec_dot type (F32 types read the floats as they are, BF16
 * weights in NLLM_MATMUL_XBF16 the floats rounded to BF16 as nllm_matmul_mode does). */
static const uint8_t *quantize_rows(const nllm_moe_mat *w, const float *x, int64_t n, int64_t cols,
                                    uint8_t *buf, size_t rs, int n_threads, int mode) {
  const nllm_qtype *q = nllm_qtype_get(w->type);
  if (q->vec_dot_type == NLLM_TYPE_F32) {
    if (mode != NLLM_MATMUL_XBF16 || w->type != NLLM_TYPE_BF16) return (const uint8_t *)x;
    nllm_round_bf16_rows((float *)buf, x, n, cols, n_threads);
    return buf;
  }
  quant_job qj = {x, cols, buf, rs, nllm_qtype_get(q->vec_dot_type)};
  nllm_pool_run(n > 1 ? n_threads : 1, n, quant_item, &qj);
  return buf;
}

typedef struct gather_job {
  const uint8_t *act; /* per token */
  uint8_t *out;       /* per slot */
  uint8_t *prep;      /* per slot, or NULL */
  const int32_t *slot_tok;
  size_t rs, ps;
  int64_t cols;
  const nllm_qtype *q;
} gather_job;

static void gather_item(void *vjob, int64_t s, int worker) {
  const gather_job *j = vjob;
  (void)worker;
  uint8_t *o = j->out + (size_t)s * j->rs;
  memcpy(o, j->act + (size_t)j->slot_tok[s] * j->rs, j->rs);
  if (j->prep) j->q->gemm_prep(j->cols, o, j->prep + (size_t)s * j->ps);
}

typedef struct prep_job {
  const uint8_t *act;
  uint8_t *prep;
  size_t rs, ps;
  int64_t cols;
  const nllm_qtype *q;
} prep_job;

static void prep_item(void *vjob, int64_t s, int worker) {
  const prep_job *j = vjob;
  (void)worker;
  j->q->gemm_prep(j->cols, j->act + (size_t)s * j->rs, j->prep + (size_t)s * j->ps);
}

/* The register tiles' prepared rows for a matrix, or NULL where they do not run. */
static uint8_t *tiles_prep(const nllm_qtype *q, size_t ps, int64_t n_tok, uint8_t *buf) {
  return q->gemm4 && q->gemm_prep && ps && n_tok > 1 ? buf : NULL;
}

static size_t expert_bytes(const nllm_moe_mat *w) {
  return nllm_row_size(w->type, w->cols) * (size_t)w->rows;
}

typedef struct combine_job {
  const nllm_moe_args *a;
  const int32_t *slot_of;
  const float *wts, *dn;
  const float *sh_d, *sh_w; /* the shared expert's rows and gates, or NULL */
} combine_job;

/* out[t] = sum over t's choices, best first, of w * down output: one fixed order whatever the
 * batch, so a token gets the same sum in a prompt as in a decode step. */
static void combine_item(void *vjob, int64_t t, int worker) {
  const combine_job *j = vjob;
  (void)worker;
  const int64_t d = j->a->d;
  const int32_t k = j->a->n_used;
  float *o = j->a->out + t * d;
  for (int64_t i = 0; i < d; i++) o[i] = 0.0f;
  for (int32_t c = 0; c < k; c++)
    nllm_axpy_f32(o, j->wts[t * k + c], j->dn + (size_t)j->slot_of[t * k + c] * (size_t)d, d);
  if (j->sh_d) nllm_axpy_f32(o, j->sh_w[t], j->sh_d + t * d, d);
}

void nllm_moe_ffn(const nllm_moe_args *a) {
  const int64_t n = a->n_tok, d = a->d, ff = a->ff;
  const int32_t k = a->n_used, ne = a->n_expert;
  const int nt = a->n_threads < 1 ? 1 : a->n_threads, mode = a->matmul_mode;
  if (n <= 0) return;
  moe_layout L = layout(a, n, nt);
  uint8_t *base = align64(a->scratch);
  int32_t *ids = (int32_t *)(base + L.ids), *slot_tok = (int32_t *)(base + L.slot_tok);
  int32_t *slot_of = (int32_t *)(base + L.slot_of);
  float *wts = (float *)(base + L.wts), *X = (float *)(base + L.x);
  float *G = (float *)(base + L.g), *U = (float *)(base + L.u), *D = (float *)(base + L.dn);
  int64_t *off = (int64_t *)(base + L.off);
  moe_task *tasks = (moe_task *)(base + L.tasks);

  nllm_moe_route(a->logits, n, ne, k, a->norm, ids, wts);

  /* counting sort of the (token, choice) pairs by expert: token order within a group */
  memset(off, 0, ((size_t)ne + 1) * sizeof *off);
  for (int64_t s = 0; s < n * k; s++) off[ids[s] + 1]++;
  for (int32_t e = 0; e < ne; e++) off[e + 1] += off[e];
  for (int64_t s = 0; s < n * k; s++) {
    int64_t slot = off[ids[s]]++;
    slot_tok[slot] = (int32_t)(s / k);
    slot_of[s] = (int32_t)slot;
  }
  for (int32_t e = ne; e > 0; e--) off[e] = off[e - 1];
  off[0] = 0;

  const nllm_qtype *qg = nllm_qtype_get(a->gate.type), *qu = nllm_qtype_get(a->up.type),
                   *qd = nllm_qtype_get(a->down.type);
  const size_t wg = expert_bytes(&a->gate), wu = expert_bytes(&a->up), wdn = expert_bytes(&a->down);
  int any_int = 0, any_blas = 0;
  for (int32_t e = 0; e < ne; e++) {
    int64_t cnt = off[e + 1] - off[e];
    if (!cnt) continue; /* an expert no token chose is never read */
    if (nllm_matmul_uses_gemm(a->gate.type, cnt, nt))
      any_blas = 1;
    else
      any_int = 1;
  }

  /* gate and up: the integer groups as one job over every used expert's rows, on activation
   * rows quantized once per token and gathered into slot order */
  const uint8_t *act_g = NULL, *act_u = NULL, *prep_g = NULL, *prep_u = NULL;
  if (any_int) {
    const uint8_t *tok_g =
        quantize_rows(&a->gate, a->x, n, d, base + L.act_gate, L.rs_gate, nt, mode);
    const int same = a->up.type == a->gate.type;
    const uint8_t *tok_u =
        same ? tok_g : quantize_rows(&a->up, a->x, n, d, base + L.act_up, L.rs_up, nt, mode);
    prep_g = tiles_prep(qg, L.ps_gate, n, base + L.prep_gate);
    gather_job gj = {
        tok_g, base + L.slot_gate, (uint8_t *)prep_g, slot_tok, L.rs_gate, L.ps_gate, d, qg};
    nllm_pool_run(n > 1 ? nt : 1, n * k, gather_item, &gj);
    act_g = base + L.slot_gate;
    if (same) {
      act_u = act_g, prep_u = prep_g;
    } else {
      prep_u = tiles_prep(qu, L.ps_up, n, base + L.prep_up);
      gather_job gu = {tok_u, base + L.slot_up, (uint8_t *)prep_u, slot_tok, L.rs_up, L.ps_up, d,
                       qu};
      nllm_pool_run(n > 1 ? nt : 1, n * k, gather_item, &gu);
      act_u = base + L.slot_up;
    }
  }
  int n_tasks = 0;
  int64_t total_rows = 0;
  for (int pass = 0; pass < 2 && any_int; pass++) {
    const nllm_moe_mat *w = pass ? &a->up : &a->gate;
    for (int32_t e = 0; e < ne; e++) {
      int64_t cnt = off[e + 1] - off[e];
      if (!cnt || nllm_matmul_uses_gemm(a->gate.type, cnt, nt)) continue;
      tasks[n_tasks++] = (moe_task){.W = (const uint8_t *)w->data + (size_t)e * (pass ? wu : wg),
                                    .q = pass ? qu : qg,
                                    .y = pass ? U : G,
                                    .rows = ff,
                                    .cols = d,
                                    .s0 = off[e],
                                    .s1 = off[e + 1],
                                    .act = pass ? act_u : act_g,
                                    .prep = pass ? prep_u : prep_g,
                                    .a_rs = pass ? L.rs_up : L.rs_gate,
                                    .w_rs = nllm_row_size(w->type, d),
                                    .p_rs = pass ? L.ps_up : L.ps_gate};
      total_rows += ff * cnt;
    }
  }
  moe_job job = {.tasks = tasks, .n_tasks = n_tasks};
  run_tasks(&job, n, total_rows, nt);
  uint8_t *mm = base + L.mm;
  if (any_blas)
    for (int32_t e = 0; e < ne; e++) {
      int64_t cnt = off[e + 1] - off[e];
      if (!cnt || !nllm_matmul_uses_gemm(a->gate.type, cnt, nt)) continue;
      for (int64_t s = off[e]; s < off[e + 1]; s++)
        memcpy(X + (s - off[e]) * d, a->x + (int64_t)slot_tok[s] * d, (size_t)d * sizeof(float));
      nllm_matmul_mode(G + off[e] * ff, (const uint8_t *)a->gate.data + (size_t)e * wg,
                       a->gate.type, ff, d, X, cnt, mm, nt, mode);
      nllm_matmul_mode(U + off[e] * ff, (const uint8_t *)a->up.data + (size_t)e * wu, a->up.type,
                       ff, d, X, cnt, mm, nt, mode);
    }

  /* h = silu(gate) * up, in U */
  nllm_glu(U, G, U, n * k * ff, 0, n * k * ff >= (1 << 16) ? nt : 1);

  /* down: the same split; each slot's result lands in its own row of D */
  n_tasks = 0;
  total_rows = 0;
  const uint8_t *act_d = NULL, *prep_d = NULL;
  if (any_int) {
    act_d = quantize_rows(&a->down, U, n * k, ff, base + L.act_down, L.rs_down, nt, mode);
    prep_d = tiles_prep(qd, L.ps_down, n, base + L.prep_down);
    if (prep_d) {
      prep_job pj = {act_d, (uint8_t *)prep_d, L.rs_down, L.ps_down, ff, qd};
      nllm_pool_run(nt, n * k, prep_item, &pj);
    }
  }
  for (int32_t e = 0; e < ne && any_int; e++) {
    int64_t cnt = off[e + 1] - off[e];
    if (!cnt || nllm_matmul_uses_gemm(a->gate.type, cnt, nt)) continue;
    tasks[n_tasks++] = (moe_task){.W = (const uint8_t *)a->down.data + (size_t)e * wdn,
                                  .q = qd,
                                  .y = D,
                                  .rows = d,
                                  .cols = ff,
                                  .s0 = off[e],
                                  .s1 = off[e + 1],
                                  .act = act_d,
                                  .prep = prep_d,
                                  .a_rs = L.rs_down,
                                  .w_rs = nllm_row_size(a->down.type, ff),
                                  .p_rs = L.ps_down};
    total_rows += d * cnt;
  }
  job.n_tasks = n_tasks;
  run_tasks(&job, n, total_rows, nt);
  if (any_blas)
    for (int32_t e = 0; e < ne; e++) {
      int64_t cnt = off[e + 1] - off[e];
      if (!cnt || !nllm_matmul_uses_gemm(a->gate.type, cnt, nt)) continue;
      nllm_matmul_mode(D + off[e] * d, (const uint8_t *)a->down.data + (size_t)e * wdn,
                       a->down.type, d, ff, U + off[e] * ff, cnt, mm, nt, mode);
    }

  /* the shared expert: every token, as three plain matmuls over the batch */
  const float *sh_d = NULL, *sh_w = NULL;
  if (a->sh_gate.data) {
    const int64_t fsh = a->sh_gate.rows;
    float *SG = (float *)(base + L.sh_g), *SU = (float *)(base + L.sh_u);
    float *SD = (float *)(base + L.sh_d), *SW = (float *)(base + L.sh_w);
    nllm_matmul_mode(SG, a->sh_gate.data, a->sh_gate.type, fsh, d, a->x, n, mm, nt, mode);
    nllm_matmul_mode(SU, a->sh_up.data, a->sh_up.type, fsh, d, a->x, n, mm, nt, mode);
    nllm_glu(SU, SG, SU, n * fsh, 0, n * fsh >= (1 << 16) ? nt : 1);
    nllm_matmul_mode(SD, a->sh_down.data, a->sh_down.type, d, fsh, SU, n, mm, nt, mode);
    for (int64_t t = 0; t < n; t++)
      SW[t] = 1.0f / (1.0f + expf(-nllm_dot_f32(a->sh_gate_inp, a->x + t * d, d)));
    sh_d = SD, sh_w = SW;
  }

  combine_job cj = {a, slot_of, wts, D, sh_d, sh_w};
  nllm_pool_run(n * d * k >= (1 << 16) ? nt : 1, n, combine_item, &cj);
}

size_t nllm_moe_ref_scratch_size(const nllm_moe_args *a) {
  const int64_t d = a->d, ff = a->ff > a->sh_gate.rows ? a->ff : a->sh_gate.rows;
  return 64 + 2 * round64((size_t)a->n_used * 4) + (size_t)((d > ff ? d : ff) + 2 * ff + d) * 4;
}

/* y = the SwiGLU MLP of x through expert e of (gate, up, down), rows dequantized by the scalar
 * reference and dotted in float64; row, g, u: scratch of the widest row, ff and ff floats. */
static void ref_mlp(const nllm_moe_mat *gate, const nllm_moe_mat *up, const nllm_moe_mat *down,
                    int32_t e, const float *x, float *y, float *row, float *g, float *u) {
  const nllm_moe_mat *mats[3] = {gate, up, down};
  for (int m = 0; m < 3; m++) {
    const nllm_moe_mat *w = mats[m];
    const nllm_qtype *q = nllm_qtype_get(w->type);
    const size_t rs = nllm_row_size(w->type, w->cols);
    const uint8_t *W = (const uint8_t *)w->data + (size_t)e * rs * (size_t)w->rows;
    const float *in = m < 2 ? x : g;
    float *res = m == 0 ? g : m == 1 ? u : y;
    for (int64_t r = 0; r < w->rows; r++) {
      q->to_float_ref(W + (size_t)r * rs, row, w->cols);
      double s = 0;
      for (int64_t i = 0; i < w->cols; i++) s += (double)row[i] * in[i];
      res[r] = (float)s;
    }
    if (m == 1)
      for (int64_t i = 0; i < gate->rows; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
  }
}

void nllm_moe_ffn_ref(const nllm_moe_args *a) {
  const int64_t d = a->d, ff = a->ff > a->sh_gate.rows ? a->ff : a->sh_gate.rows;
  const int32_t k = a->n_used;
  /* scratch: ids, weights, one dequantized row, g, u, y */
  uint8_t *base = align64(a->scratch);
  int32_t *ids = (int32_t *)base;
  float *wts = (float *)(base + round64((size_t)k * sizeof(int32_t)));
  float *row = wts + round64((size_t)k * sizeof(float)) / sizeof(float);
  float *g = row + (d > ff ? d : ff), *u = g + ff, *y = u + ff;
  for (int64_t t = 0; t < a->n_tok; t++) {
    const float *x = a->x + t * d;
    float *o = a->out + t * d;
    nllm_moe_route(a->logits + t * a->n_expert, 1, a->n_expert, k, a->norm, ids, wts);
    for (int64_t i = 0; i < d; i++) o[i] = 0.0f;
    for (int32_t c = 0; c < k; c++) {
      ref_mlp(&a->gate, &a->up, &a->down, ids[c], x, y, row, g, u);
      for (int64_t i = 0; i < d; i++) o[i] += wts[c] * y[i];
    }
    if (a->sh_gate.data) {
      double s = 0;
      for (int64_t i = 0; i < d; i++) s += (double)a->sh_gate_inp[i] * x[i];
      const float w = (float)(1.0 / (1.0 + exp(-s)));
      ref_mlp(&a->sh_gate, &a->sh_up, &a->sh_down, 0, x, y, row, g, u);
      for (int64_t i = 0; i < d; i++) o[i] += w * y[i];
    }
  }
}
