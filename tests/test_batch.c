/* Many sequences in one context (nllm_decode_batch, the sequence operations, the shared cell
 * pool): every sequence must behave exactly as if it were alone in its own context, whatever
 * the others do in the same batches. References are single-sequence runs of the same library
 * on the real models of ../shared/testdata. */
#include "modelutil.h"
#include "qtypes.h"

#define MAX_SEQ 8

typedef struct model_case {
  const char *rel;    /* under testdata, or a path from the project root when local */
  int local;          /* 1: path is relative to the project root */
  double bound_f32;   /* rel RMS of a batched row against the single-sequence row (F32 cache) */
  double bound_shift; /* shifted against unshifted (0: 1e-4) */
  int32_t bf16_act;   /* the contexts' bf16_activations (NLLM_BF16_ACT_*; 0: exact) */
} model_case;

/* Batching changes which matmul kernel runs (one row: matrix-vector; many: tiles or BLAS) and
 * the summation order of attention; measured differences are below 2e-6 with an F32 cache and
 * below 2e-4 with F16 (whose rounding of a K/V row then differs by an ulp). */
static const model_case models[] = {
    {"models/stories260K.gguf", 1, 1e-5, 0, NLLM_BF16_ACT_EXACT},
    {"golden/models/tiny-a-F16.gguf", 0, 1e-5, 0, NLLM_BF16_ACT_EXACT},
    {"golden/models/tiny-a-Q8_0.gguf", 0, 1e-5, 0, NLLM_BF16_ACT_EXACT},
    {"golden/models/tiny-a-Q4_K_M.gguf", 0, 1e-5, 0, NLLM_BF16_ACT_EXACT},
    {"hf/tiny-llama", 0, 1e-5, 0, NLLM_BF16_ACT_EXACT},
    {"hf/tiny-qwen2", 0, 1e-5, 0, NLLM_BF16_ACT_EXACT},
    {"hf/tiny-qwen3", 0, 1e-5, 0, NLLM_BF16_ACT_EXACT},
    /* mixture of experts: the rows of all sequences grouped by expert in one step */
    {"hf/tiny-mixtral", 0, 1e-5, 0, NLLM_BF16_ACT_EXACT},
    {"hf/tiny-qwen3-moe", 0, 1e-5, 0, NLLM_BF16_ACT_EXACT},
    /* a shifted key differs from the unshifted one by rounding, which the 8-bit activations
     * of this quantized file can carry across one of its router near-ties (gaps down to
     * 0.004): a swapped expert there moves a row by about 1.5% */
    {"golden/models/moe-a-Q4_K_M.gguf", 0, 1e-5, 3e-2, NLLM_BF16_ACT_EXACT},
    /* BF16 activations rounded (the default on CPUs with AVX512_BF16): a batch and one
     * sequence alone sum a product in different orders (the vdpbf16ps GEMM, the row kernels),
     * and where that last-bit difference sits on a BF16 rounding boundary the next layer's
     * activation rounds to the neighbouring BF16 value, 2^-8 relative: measured up to 3.1e-3
     * (tiny-mixtral), against 1.5e-6 in the exact mode above. */
    {"hf/tiny-llama", 0, 1e-2, 1e-2, NLLM_BF16_ACT_ROUND},
    {"hf/tiny-mixtral", 0, 1e-2, 1e-2, NLLM_BF16_ACT_ROUND},
};

/* The BF16 activation mode of the case loaded last: ctx_make's contexts use it. */
static int32_t case_bf16_act;

static nllm_model *load_case(int i) {
  case_bf16_act = models[i].bf16_act;
  return load_test_model(models[i].rel, models[i].local);
}

static nllm_context *ctx_make(nllm_model *m, int n_seq, int n_ctx, int n_batch, int32_t kv_type) {
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_seq_max = n_seq;
  cp.n_ctx = n_ctx;
  cp.n_batch = n_batch;
  cp.kv_type = kv_type;
  cp.n_threads = 2;
  cp.bf16_activations = case_bf16_act;
  nllm_context *c = NULL;
  ck_assert_msg(nllm_context_create(m, &cp, &c) == NLLM_OK, "%s", nllm_last_error());
  return c;
}

static void random_ids(uint64_t *rng, int n_vocab, nllm_token *ids, int n) {
  for (int i = 0; i < n; i++) ids[i] = 3 + (int)(test_xorshift(rng) % (uint64_t)(n_vocab - 3));
}

/* Logits of the last of ids[0..n) decoded alone (positions 0..n-1) into out. */
static void single_run(nllm_model *m, int32_t kv_type, const nllm_token *ids, int n, float *out) {
  nllm_context *c = ctx_make(m, 1, 256, 64, kv_type);
  ck_assert_int_eq(nllm_decode(c, ids, n), NLLM_OK);
  memcpy(out, nllm_get_logits(c), sizeof(float) * (size_t)nllm_model_n_vocab(m));
  nllm_context_free(c);
}

/* Prompt chunks of some sequences and single tokens of others in the same batches, sequences
 * finishing and new ones joining mid-way: every kept row equals the single-sequence run. */
START_TEST(batch_matches_single) {
  nllm_model *m = load_case(_i);
  if (!m) return;
  const int nv = nllm_model_n_vocab(m);
  uint64_t rng = 1234 + (uint64_t)_i;
  enum { NS = 4, LEN = 24 };
  nllm_token ids[NS + 1][LEN];
  for (int s = 0; s <= NS; s++) random_ids(&rng, nv, ids[s], LEN);
  float *ref = malloc(sizeof(float) * (size_t)nv);
  for (int kv = 0; kv < 2; kv++) {
    const int32_t kv_type = kv ? NLLM_TYPE_F16 : NLLM_TYPE_F32;
    const double bound_f32 = models[_i].bound_f32;
    const double bound = kv ? (bound_f32 > 1e-3 ? bound_f32 : 1e-3) : bound_f32;
    /* n_batch 8: batches of more rows run in several chunks */
    nllm_context *c = ctx_make(m, NS, 256, 8, kv_type);
    int done[NS] = {0};           /* tokens of ids[s] decoded into sequence s */
    int which[NS] = {0, 1, 2, 3}; /* prompt the sequence is running */
    /* per step, how many tokens each sequence takes (0: idle this step) */
    static const int plan[][NS] = {{7, 3, 12, 0}, {1, 9, 1, 5}, {1, 1, 1, 1}, {2, 1, 0, 1},
                                   {1, 1, 4, 1},  {1, 1, 1, 1}, {1, 0, 1, 1}};
    double worst = 0;
    for (size_t step = 0; step < sizeof plan / sizeof plan[0]; step++) {
      if (step == 4) {
        /* sequence 1 finishes; a new prompt joins under its id */
        ck_assert_int_eq(nllm_seq_remove(c, 1, 0, -1), NLLM_OK);
        ck_assert_int_eq(nllm_seq_pos_max(c, 1), -1);
        which[1] = NS;
        done[1] = 0;
      }
      nllm_token tok[64];
      int32_t sid[64];
      int32_t keep[64];
      int n = 0;
      /* rows of different sequences interleaved: one round-robin pass per token index */
      for (int k = 0; k < 12; k++)
        for (int s = 0; s < NS; s++)
          if (k < plan[step][s]) {
            tok[n] = ids[which[s]][done[s] + k];
            sid[n] = s;
            keep[n] = 1;
            n++;
          }
      nllm_batch b;
      nllm_batch_init(&b);
      b.n_tokens = n;
      b.tokens = tok;
      b.seq_id = sid;
      b.logits = keep;
      ck_assert_msg(nllm_decode_batch(c, &b) == NLLM_OK, "%s", nllm_last_error());
      int seen[NS] = {0};
      for (int i = 0; i < n; i++) {
        const int s = sid[i];
        seen[s]++;
        single_run(m, kv_type, ids[which[s]], done[s] + seen[s], ref);
        const float *row = nllm_get_logits_ith(c, i);
        ck_assert_ptr_nonnull(row);
        double e = rel_rms(row, ref, nv);
        if (e > worst) worst = e;
        if (seen[s] == plan[step][s]) ck_assert_ptr_eq(nllm_get_logits_seq(c, s), row);
      }
      for (int s = 0; s < NS; s++) {
        done[s] += plan[step][s];
        ck_assert_int_eq(nllm_seq_pos_max(c, s), done[s] - 1);
        if (!plan[step][s]) ck_assert_ptr_null(nllm_get_logits_seq(c, s));
      }
    }
    int32_t used = 0, total = 0;
    ck_assert_int_eq(nllm_context_kv_cells(c, &used, &total), NLLM_OK);
    ck_assert_int_eq(used, done[0] + done[1] + done[2] + done[3]);
    ck_assert_int_eq(total, 256);
    fprintf(stderr, "%-34s %s cache: batched vs single max rel RMS %.2e\n", models[_i].rel,
            kv ? "F16" : "F32", worst);
    ck_assert_msg(worst < bound, "%s: %g", models[_i].rel, worst);
    nllm_context_free(c);
  }
  free(ref);
  nllm_model_free(m);
}
END_TEST

/* The scalar tier, whose quantized formats have no batch kernels: a prompt of 16 tokens or more
 * must not take another path than the same prompt in chunks of 8 (sgemm on float activations
 * did: 1-5% off, and so did an 8-row router through sgemm). A 32-value and a K-quant format, the
 * latter with experts. */
static const int scalar_models[] = {2, 9}; /* tiny-a Q8_0, moe-a Q4_K_M */

START_TEST(prompt_matches_chunks_scalar) {
  nllm_model *m = load_case(scalar_models[_i]);
  if (!m) return;
  const int nv = nllm_model_n_vocab(m);
  uint64_t rng = 77;
  enum { LEN = 20 };
  nllm_token ids[LEN];
  random_ids(&rng, nv, ids, LEN);
  float *ref = malloc(sizeof(float) * (size_t)nv);
  single_run(m, NLLM_TYPE_F32, ids, LEN, ref); /* one batch of 20 */
  nllm_context *c = ctx_make(m, 1, 256, 8, NLLM_TYPE_F32);
  ck_assert_int_eq(nllm_decode(c, ids, LEN), NLLM_OK);
  const double e = rel_rms(nllm_get_logits(c), ref, nv);
  fprintf(stderr, "%-34s scalar tier: 20 tokens at once vs in chunks of 8: rel RMS %.2e\n",
          models[scalar_models[_i]].rel, e);
  ck_assert_msg(e < models[scalar_models[_i]].bound_f32, "%s: %g", models[scalar_models[_i]].rel,
                e);
  nllm_context_free(c);
  free(ref);
  nllm_model_free(m);
}
END_TEST

static void scalar_tier(void) {
  nllm_qtypes_set_isa(NLLM_ISA_SCALAR);
}

static void best_tier(void) {
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
}

/* A prefix decoded once and copied into other sequences is stored once and gives each of them
 * the logits of recomputing it; shared cells diverge only into new cells. */
START_TEST(shared_prefix_equals_recompute) {
  nllm_model *m = load_case(_i);
  if (!m) return;
  const int nv = nllm_model_n_vocab(m);
  uint64_t rng = 99 + (uint64_t)_i;
  enum { NS = 5, PRE = 20, SUF = 6 };
  nllm_token all[NS][PRE + SUF];
  random_ids(&rng, nv, all[0], PRE + SUF);
  for (int s = 1; s < NS; s++) {
    memcpy(all[s], all[0], sizeof(nllm_token) * PRE);
    random_ids(&rng, nv, all[s] + PRE, SUF);
  }
  nllm_context *c = ctx_make(m, NS, 128, 64, NLLM_TYPE_F32);
  nllm_batch b;
  nllm_batch_init(&b);
  b.n_tokens = PRE;
  b.tokens = all[0];
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_OK);
  for (int s = 1; s < NS; s++) ck_assert_int_eq(nllm_seq_copy(c, 0, s, 0, -1), NLLM_OK);
  int32_t used = 0;
  nllm_context_kv_cells(c, &used, NULL);
  ck_assert_int_eq(used, PRE); /* stored once */
  ck_assert_int_eq(nllm_seq_n_tokens(c, NS - 1), PRE);
  /* every sequence continues with its own suffix, in one batch */
  nllm_token tok[NS * SUF];
  int32_t sid[NS * SUF];
  int n = 0;
  for (int s = 0; s < NS; s++)
    for (int k = 0; k < SUF; k++) tok[n] = all[s][PRE + k], sid[n++] = s;
  b.n_tokens = n;
  b.tokens = tok;
  b.seq_id = sid;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_OK);
  nllm_context_kv_cells(c, &used, NULL);
  ck_assert_int_eq(used, PRE + NS * SUF);
  float *ref = malloc(sizeof(float) * (size_t)nv);
  for (int s = 0; s < NS; s++) {
    single_run(m, NLLM_TYPE_F32, all[s], PRE + SUF, ref);
    double e = rel_rms(nllm_get_logits_seq(c, s), ref, nv);
    ck_assert_msg(e < models[_i].bound_f32, "%s seq %d: %g", models[_i].rel, s, e);
  }
  /* dropping the source keeps the prefix alive for the copies */
  ck_assert_int_eq(nllm_seq_remove(c, 0, 0, -1), NLLM_OK);
  nllm_context_kv_cells(c, &used, NULL);
  ck_assert_int_eq(used, PRE + (NS - 1) * SUF);
  ck_assert_int_eq(nllm_seq_keep(c, 2), NLLM_OK);
  nllm_context_kv_cells(c, &used, NULL);
  ck_assert_int_eq(used, PRE + SUF);
  free(ref);
  nllm_context_free(c);
  nllm_model_free(m);
}
END_TEST

/* Full pool: the batch fails whole and every sequence is as it was; bad ids and positions give
 * INVALID_ARG with a message. */
START_TEST(full_and_invalid) {
  nllm_model *m = load_case(0);
  nllm_context *c = ctx_make(m, 3, 16, 16, NLLM_TYPE_F16);
  nllm_token t[16];
  uint64_t rng = 5;
  random_ids(&rng, nllm_model_n_vocab(m), t, 16);
  int32_t sid[16] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2};
  nllm_batch b;
  nllm_batch_init(&b);
  b.tokens = t;
  b.seq_id = sid;
  b.n_tokens = 10;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_OK);
  const float *l1 = nllm_get_logits_seq(c, 1);
  ck_assert_ptr_nonnull(l1);
  float keep0 = l1[0];
  b.n_tokens = 7; /* 6 free */
  b.seq_id = sid + 9;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_ERR_CONTEXT_FULL);
  ck_assert(strstr(nllm_last_error(), "context full"));
  ck_assert_int_eq(nllm_seq_pos_max(c, 1), 4);
  ck_assert_int_eq(nllm_seq_pos_max(c, 2), -1);
  int32_t used;
  nllm_context_kv_cells(c, &used, NULL);
  ck_assert_int_eq(used, 10);
  ck_assert_ptr_eq(nllm_get_logits_seq(c, 1), l1);
  ck_assert(l1[0] == keep0);
  /* invalid sequence ids, positions, ranges */
  int32_t bad_sid[2] = {0, 3};
  b.n_tokens = 2;
  b.seq_id = bad_sid;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_ERR_INVALID_ARG);
  ck_assert(strstr(nllm_last_error(), "sequence id 3"));
  int32_t pos[2] = {2, 7};
  int32_t sid2[2] = {0, 2};
  b.seq_id = sid2;
  b.pos = pos;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_ERR_INVALID_ARG); /* 0 holds position 2 */
  ck_assert(strstr(nllm_last_error(), "already holds position 2"));
  int32_t pos_dec[2] = {9, 8};
  int32_t same[2] = {2, 2};
  b.pos = pos_dec;
  b.seq_id = same;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_ERR_INVALID_ARG);
  ck_assert(strstr(nllm_last_error(), "increasing"));
  /* positions with a gap are fine: sequence 2 starts at 8 */
  int32_t pos_ok[2] = {8, 9};
  b.pos = pos_ok;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_OK);
  ck_assert_int_eq(nllm_seq_pos_min(c, 2), 8);
  ck_assert_int_eq(nllm_seq_remove(c, 5, 0, -1), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_seq_remove(c, NLLM_SEQ_ALL, 3, -1), NLLM_OK);
  ck_assert_int_eq(nllm_seq_n_tokens(c, 0), 3);
  ck_assert_int_eq(nllm_seq_n_tokens(c, 2), 0);
  ck_assert_int_eq(nllm_seq_copy(c, 0, -1, 0, -1), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_seq_keep(c, NLLM_SEQ_ALL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_seq_shift(c, 0, 0, -1, -1), NLLM_ERR_INVALID_ARG); /* below 0 */
  ck_assert_int_eq(nllm_seq_shift(c, 0, 1, 2, 1), NLLM_ERR_INVALID_ARG);   /* lands on 2 */
  ck_assert_int_eq(nllm_seq_shift(c, 0, 0, -1, 5), NLLM_OK);
  ck_assert_int_eq(nllm_seq_pos_min(c, 0), 5);
  ck_assert_int_eq(nllm_seq_pos_max(c, 9), -1);
  ck_assert_int_eq(nllm_context_n_seq_max(c), 3);
  ck_assert_int_eq(nllm_decode_batch(c, NULL), NLLM_ERR_INVALID_ARG);
  b.n_tokens = 0;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_ERR_INVALID_ARG);
  nllm_context_free(c);
  nllm_model_free(m);
}
END_TEST

/* ---- random interleaved operations against a replay of each sequence alone */

enum { OP_DECODE, OP_REMOVE, OP_SHIFT };
typedef struct hist_op {
  int kind, a, b, c; /* decode: token a at position b; remove [a, b); shift [a, b) by c */
} hist_op;
typedef struct history {
  hist_op *ops;
  int n, cap;
} history;

static void hist_push(history *h, int kind, int a, int b, int c) {
  if (h->n == h->cap) {
    h->cap = h->cap ? 2 * h->cap : 64;
    h->ops = realloc(h->ops, sizeof *h->ops * (size_t)h->cap);
  }
  h->ops[h->n++] = (hist_op){kind, a, b, c};
}

/* Replays h alone in a fresh one-sequence context; the logits of its last decode into out. */
static void replay(nllm_model *m, const history *h, float *out) {
  nllm_context *c = ctx_make(m, 1, 128, 32, NLLM_TYPE_F32);
  int last = -1;
  for (int i = 0; i < h->n; i++) last = h->ops[i].kind == OP_DECODE ? i : last;
  for (int i = 0; i <= last; i++) {
    const hist_op *o = &h->ops[i];
    if (o->kind == OP_DECODE) {
      nllm_batch b;
      nllm_batch_init(&b);
      b.n_tokens = 1;
      b.tokens = &o->a;
      b.pos = &o->b;
      ck_assert_msg(nllm_decode_batch(c, &b) == NLLM_OK, "%s", nllm_last_error());
    } else if (o->kind == OP_REMOVE) {
      ck_assert_int_eq(nllm_seq_remove(c, 0, o->a, o->b), NLLM_OK);
    } else {
      ck_assert_int_eq(nllm_seq_shift(c, 0, o->a, o->b, o->c), NLLM_OK);
    }
  }
  memcpy(out, nllm_get_logits(c), sizeof(float) * (size_t)nllm_model_n_vocab(m));
  nllm_context_free(c);
}

/* Decodes into random sequences interleaved with remove / copy / keep / shift and the pool
 * running full, for many steps: each sequence's logits must equal replaying its own history
 * alone (a copy's history is its source's plus the removals that cut the copied range). */
START_TEST(random_ops_vs_replay) {
  nllm_model *m = load_case(0);
  const int nv = nllm_model_n_vocab(m);
  enum { NS = 4, NCTX = 24 };
  nllm_context *c = ctx_make(m, NS, NCTX, 8, NLLM_TYPE_F32);
  history h[NS] = {{0}};
  float *ref = malloc(sizeof(float) * (size_t)nv);
  uint64_t rng = 777;
  int n_cmp = 0, n_full = 0, n_shift = 0, n_copy = 0;
  double worst = 0;
  for (int step = 0; step < 120; step++) {
    const int r = (int)(test_xorshift(&rng) % 100), s = (int)(test_xorshift(&rng) % NS);
    const int hi = nllm_seq_pos_max(c, s) + 2;
    const int p0 = (int)(test_xorshift(&rng) % (uint64_t)hi);
    const int p1 = p0 + 1 + (int)(test_xorshift(&rng) % (uint64_t)hi);
    if (r < 55) { /* decode 1-3 tokens into each of a random subset of the sequences */
      nllm_token tok[16];
      int32_t sid[16], n = 0, take[NS];
      for (int q = 0; q < NS; q++)
        take[q] = test_xorshift(&rng) % 2 ? 1 + (int)(test_xorshift(&rng) % 3) : 0;
      for (int q = 0; q < NS; q++)
        for (int k = 0; k < take[q]; k++) {
          tok[n] = 3 + (int)(test_xorshift(&rng) % (uint64_t)(nv - 3));
          sid[n++] = q;
        }
      if (!n) continue;
      int32_t used_before = 0;
      nllm_context_kv_cells(c, &used_before, NULL);
      int pmax[NS];
      for (int q = 0; q < NS; q++) pmax[q] = nllm_seq_pos_max(c, q);
      nllm_batch b;
      nllm_batch_init(&b);
      b.n_tokens = n;
      b.tokens = tok;
      b.seq_id = sid;
      nllm_status st = nllm_decode_batch(c, &b);
      if (st == NLLM_ERR_CONTEXT_FULL) { /* nothing changed; make room */
        n_full++;
        int32_t used_after = 0;
        nllm_context_kv_cells(c, &used_after, NULL);
        ck_assert_int_eq(used_after, used_before);
        for (int q = 0; q < NS; q++) ck_assert_int_eq(nllm_seq_pos_max(c, q), pmax[q]);
        ck_assert_int_eq(nllm_seq_remove(c, s, 0, -1), NLLM_OK);
        h[s].n = 0;
        continue;
      }
      ck_assert_msg(st == NLLM_OK, "%s", nllm_last_error());
      int next[NS];
      for (int q = 0; q < NS; q++) next[q] = pmax[q] + 1;
      for (int i = 0; i < n; i++) hist_push(&h[sid[i]], OP_DECODE, tok[i], next[sid[i]]++, 0);
      for (int q = 0; q < NS; q++) {
        if (!take[q]) continue;
        replay(m, &h[q], ref);
        const double e = rel_rms(nllm_get_logits_seq(c, q), ref, nv);
        if (e > worst) worst = e;
        n_cmp++;
      }
    } else if (r < 70) {
      ck_assert_int_eq(nllm_seq_remove(c, s, p0, p1), NLLM_OK);
      hist_push(&h[s], OP_REMOVE, p0, p1, 0);
    } else if (r < 82) { /* dst := src's [p0, p1) */
      const int d = (s + 1 + (int)(test_xorshift(&rng) % (NS - 1))) % NS;
      ck_assert_int_eq(nllm_seq_remove(c, d, 0, -1), NLLM_OK);
      ck_assert_int_eq(nllm_seq_copy(c, s, d, p0, p1), NLLM_OK);
      h[d].n = 0;
      for (int i = 0; i < h[s].n; i++)
        hist_push(&h[d], h[s].ops[i].kind, h[s].ops[i].a, h[s].ops[i].b, h[s].ops[i].c);
      hist_push(&h[d], OP_REMOVE, 0, p0, 0);
      hist_push(&h[d], OP_REMOVE, p1, 1 << 30, 0);
      n_copy++;
    } else if (r < 97) {
      const int delta = (int)(test_xorshift(&rng) % 17) - 8;
      const int32_t n_before = nllm_seq_n_tokens(c, s);
      nllm_status st = nllm_seq_shift(c, s, p0, p1, delta);
      if (st == NLLM_OK) {
        hist_push(&h[s], OP_SHIFT, p0, p1, delta);
        n_shift++;
      } else {
        ck_assert_int_eq(st, NLLM_ERR_INVALID_ARG); /* below 0 or a collision: unchanged */
      }
      ck_assert_int_eq(nllm_seq_n_tokens(c, s), n_before);
    } else {
      ck_assert_int_eq(nllm_seq_keep(c, s), NLLM_OK);
      for (int q = 0; q < NS; q++)
        if (q != s) h[q].n = 0;
    }
    int32_t used = 0, held = 0;
    nllm_context_kv_cells(c, &used, NULL);
    for (int q = 0; q < NS; q++) held += nllm_seq_n_tokens(c, q);
    ck_assert(used <= held && used <= NCTX);
  }
  fprintf(stderr,
          "random ops: %d compared rows (max rel RMS %.2e), %d full batches, %d shifts, %d "
          "copies\n",
          n_cmp, worst, n_full, n_shift, n_copy);
  ck_assert_msg(worst < 1e-5, "%g", worst);
  ck_assert(n_cmp > 50 && n_full > 0 && n_shift > 5 && n_copy > 5);
  for (int q = 0; q < NS; q++) free(h[q].ops);
  free(ref);
  nllm_context_free(c);
  nllm_model_free(m);
}
END_TEST

/* RoPE scores depend only on relative positions: shifting a whole sequence (the context-shift
 * pattern of dropping a prefix and sliding the rest back) and continuing gives the logits of
 * continuing unshifted, within rounding. Shared cells are copied, not re-rotated in place. */
START_TEST(shift_keeps_relative_positions) {
  nllm_model *m = load_case(_i);
  if (!m) return;
  const int nv = nllm_model_n_vocab(m);
  uint64_t rng = 4242;
  nllm_token ids[40];
  random_ids(&rng, nv, ids, 40);
  nllm_context *c = ctx_make(m, 2, 128, 64, NLLM_TYPE_F32);
  nllm_batch b;
  nllm_batch_init(&b);
  b.n_tokens = 30;
  b.tokens = ids;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_OK);
  ck_assert_int_eq(nllm_seq_copy(c, 0, 1, 0, -1), NLLM_OK);
  /* sequence 1: drop [0, 10), slide [10, 30) to [0, 20) */
  ck_assert_int_eq(nllm_seq_remove(c, 1, 0, 10), NLLM_OK);
  ck_assert_int_eq(nllm_seq_shift(c, 1, 10, -1, -10), NLLM_OK);
  ck_assert_int_eq(nllm_seq_pos_min(c, 1), 0);
  ck_assert_int_eq(nllm_seq_pos_max(c, 1), 19);
  int32_t used = 0;
  nllm_context_kv_cells(c, &used, NULL);
  ck_assert_int_eq(used, 50); /* the 20 shared cells were copied before rotating */
  /* sequence 0 drops its prefix too but keeps positions: both continue with the same tokens */
  ck_assert_int_eq(nllm_seq_remove(c, 0, 0, 10), NLLM_OK);
  nllm_token tok[20];
  int32_t sid[20], keep[20];
  for (int k = 0; k < 10; k++) {
    tok[2 * k] = tok[2 * k + 1] = ids[30 + k];
    sid[2 * k] = 0, sid[2 * k + 1] = 1;
    keep[2 * k] = keep[2 * k + 1] = 1;
  }
  b.n_tokens = 20;
  b.tokens = tok;
  b.seq_id = sid;
  b.logits = keep;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_OK);
  ck_assert_int_eq(nllm_seq_pos_max(c, 0), 39);
  ck_assert_int_eq(nllm_seq_pos_max(c, 1), 29);
  double worst = 0;
  for (int k = 0; k < 10; k++) {
    double e = rel_rms(nllm_get_logits_ith(c, 2 * k + 1), nllm_get_logits_ith(c, 2 * k), nv);
    if (e > worst) worst = e;
  }
  fprintf(stderr, "%-34s shifted vs unshifted: max rel RMS %.2e\n", models[_i].rel, worst);
  const double bound = models[_i].bound_shift > 0 ? models[_i].bound_shift : 1e-4;
  ck_assert_msg(worst < bound, "%s: %g", models[_i].rel, worst);
  nllm_context_free(c);
  nllm_model_free(m);
}
END_TEST

/* Quantized and other KV cache types, K and V separately, against the F16 cache (the default)
 * on the golden models whose head_dim (32) is whole blocks: a prompt, then 8 teacher-forced
 * steps of 3 sequences in batches; max rel RMS of all step logits. tiny-a is a random,
 * sensitive model (test_models.c): measured on tiny-a-F16, F32 9.2e-4, BF16 9.2e-3, Q8_0
 * 2.4e-2, Q4_0 0.37 (16x Q8_0's, as 4 bits against 8 predict), K Q8_0 + V F16 2.6e-2, K F16 + V
 * Q4_0 0.16. The Q8_0 model quantizes its activations, so there an F32 and an F16 cache
 * already differ by 3.3e-2: its bounds get that much more. */
static const struct {
  int32_t k, v;
  double bound;
} kv_types[] = {
    {NLLM_TYPE_F32, NLLM_TYPE_F32, 2e-3},   {NLLM_TYPE_BF16, NLLM_TYPE_BF16, 2e-2},
    {NLLM_TYPE_Q8_0, NLLM_TYPE_Q8_0, 5e-2}, {NLLM_TYPE_Q4_0, NLLM_TYPE_Q4_0, 5e-1},
    {NLLM_TYPE_Q8_0, NLLM_TYPE_F16, 5e-2},  {NLLM_TYPE_F16, NLLM_TYPE_Q4_0, 2.5e-1},
};

static double kv_type_run(nllm_model *m, int32_t k, int32_t v, const nllm_token *ids, float *out) {
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_seq_max = 3;
  cp.n_ctx = 128;
  cp.n_threads = 2;
  cp.kv_type = k;
  cp.kv_type_v = v;
  nllm_context *c = NULL;
  ck_assert_msg(nllm_context_create(m, &cp, &c) == NLLM_OK, "%s", nllm_last_error());
  const int nv = nllm_model_n_vocab(m);
  nllm_token tok[3 * 20];
  int32_t sid[3 * 20];
  int n = 0;
  for (int s = 0; s < 3; s++)
    for (int i = 0; i < 20; i++) tok[n] = ids[s * 20 + i], sid[n++] = s;
  nllm_batch b;
  nllm_batch_init(&b);
  b.n_tokens = n;
  b.tokens = tok;
  b.seq_id = sid;
  ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_OK);
  for (int step = 0; step < 8; step++) {
    for (int s = 0; s < 3; s++) {
      memcpy(out + (size_t)(step * 3 + s) * nv, nllm_get_logits_seq(c, s), sizeof(float) * nv);
      tok[s] = ids[60 + step * 3 + s]; /* teacher-forced: every type sees the same tokens */
      sid[s] = s;
    }
    b.n_tokens = 3;
    ck_assert_int_eq(nllm_decode_batch(c, &b), NLLM_OK);
  }
  nllm_context_free(c);
  return 0;
}

START_TEST(kv_cache_types) {
  static const char *rels[] = {"golden/models/tiny-a-F16.gguf", "golden/models/tiny-a-Q8_0.gguf"};
  char path[1024];
  if (!testdata_path(path, sizeof path, rels[_i])) return;
  nllm_model *m = NULL;
  ck_assert_int_eq(nllm_model_load(path, NULL, &m), NLLM_OK);
  const int nv = nllm_model_n_vocab(m);
  uint64_t rng = 31;
  nllm_token ids[84];
  random_ids(&rng, nv, ids, 84);
  float *ref = malloc(sizeof(float) * (size_t)nv * 24),
        *got = malloc(sizeof(float) * (size_t)nv * 24);
  kv_type_run(m, NLLM_TYPE_F16, NLLM_TYPE_F16, ids, ref);
  for (size_t i = 0; i < sizeof kv_types / sizeof kv_types[0]; i++) {
    kv_type_run(m, kv_types[i].k, kv_types[i].v, ids, got);
    double worst = 0;
    for (int r = 0; r < 24; r++) {
      double e = rel_rms(got + (size_t)r * nv, ref + (size_t)r * nv, nv);
      if (e > worst) worst = e;
    }
    fprintf(stderr, "%-30s K %-4s V %-4s vs F16 cache: max rel RMS %.2e\n", rels[_i],
            nllm_type_name(kv_types[i].k), nllm_type_name(kv_types[i].v), worst);
    ck_assert_msg(worst < kv_types[i].bound + (_i ? 5e-2 : 0), "%s %s/%s: %g", rels[_i],
                  nllm_type_name(kv_types[i].k), nllm_type_name(kv_types[i].v), worst);
  }
  /* a head_dim that is not whole blocks: a clear UNSUPPORTED (stories260K: head_dim 8) */
  nllm_model *small = load_case(0);
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.kv_type = NLLM_TYPE_Q8_0;
  nllm_context *c = NULL;
  ck_assert_int_eq(nllm_context_create(small, &cp, &c), NLLM_ERR_UNSUPPORTED);
  ck_assert(strstr(nllm_last_error(), "head_dim"));
  cp.kv_type = NLLM_TYPE_Q4_1;
  ck_assert_int_eq(nllm_context_create(small, &cp, &c), NLLM_ERR_INVALID_ARG);
  nllm_model_free(small);
  free(ref);
  free(got);
  nllm_model_free(m);
}
END_TEST

int main(void) {
  Suite *s = suite_create("batch");
  TCase *tc = tcase_create("batch");
  tcase_set_timeout(tc, 300);
  const int n_models = (int)(sizeof models / sizeof models[0]);
  tcase_add_loop_test(tc, batch_matches_single, 0, n_models);
  tcase_add_loop_test(tc, shared_prefix_equals_recompute, 0, n_models);
  tcase_add_test(tc, full_and_invalid);
  tcase_add_test(tc, random_ops_vs_replay);
  tcase_add_loop_test(tc, kv_cache_types, 0, 2);
  tcase_add_loop_test(tc, shift_keeps_relative_positions, 0, n_models);
  suite_add_tcase(s, tc);
  TCase *scalar = tcase_create("scalar");
  tcase_set_timeout(scalar, 300);
  tcase_add_checked_fixture(scalar, scalar_tier, best_tier);
  tcase_add_loop_test(scalar, prompt_matches_chunks_scalar, 0,
                      (int)(sizeof scalar_models / sizeof scalar_models[0]));
  suite_add_tcase(s, scalar);
  return run_suite(s);
}
