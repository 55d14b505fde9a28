/* Weights kept packed from load (qtypes.h prepack, kernels/ops.h nllm_matmul_pk): the packed
 * kernels on packed rows give the four-row kernels' sums bit for bit at every token count, and
 * a model loaded with them gives the logits of the same model loaded with no_repack bit for bit,
 * whatever the batch; no_repack keeps every weight plain; a tier capped after the load reads the
 * plain rows (whose pages the load gave back to the file). */
#include "cpu/quant.h"
#include "model/model.h"
#include "modelutil.h"
#include "ops.h"
#include "qtypes.h"
#include "random_blocks.h"

#include <unistd.h>

/* The suite runs on the SIMD tier where it keeps Q4_K packed (AVX2, NEON), so that it runs the
 * same on every host with that tier, and again on the CPU's own tier where that one differs and
 * packs any format (AVX-512: its own Q4_0, Q8_0 and sixteen-row K-quant groups); the best tier
 * where Q4_K packs in neither. Chosen in main, set by each case's fixture. */
static int packed_tier, top_tier, test_tier;

static void best_tier(void) {
  nllm_qtypes_set_isa(test_tier);
}

static void at_packed_tier(void) {
  test_tier = packed_tier;
  best_tier();
}

static void at_top_tier(void) {
  test_tier = top_tier;
  best_tier();
}

static const int32_t packed_types[] = {NLLM_TYPE_Q4_0, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_K,
                                       NLLM_TYPE_Q5_K, NLLM_TYPE_Q6_K, NLLM_TYPE_IQ4_XS};

/* The AVX-512 tier's rows of q's type in the sets laid over by CPU vendor (kernels/qtypes.c,
 * amd_rows) and in the sets they replace, into rows[]; how many (none in other tiers) */
#define MAX_VENDOR_ROWS 4
static int vendor_rows(const nllm_qtype *q, const nllm_qtype_kernels *rows[MAX_VENDOR_ROWS]) {
  int n = 0;
#if defined(__x86_64__)
  static const nllm_kernel_set *const sets[] = {
      &nllm_kernels_packed16_avx512,        &nllm_kernels_packed16_l1_avx512,
      &nllm_kernels_k_packed16_avx512,      &nllm_kernels_k_packed16_amd_avx512,
      &nllm_kernels_iq4_xs_packed16_avx512, &nllm_kernels_iq4_xs_packed16_amd_avx512};
  if (test_tier != NLLM_ISA_AVX512) return 0;
  for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++)
    for (size_t i = 0; i < sets[s]->n_rows; i++)
      if (sets[s]->rows[i].type == q->type && n < MAX_VENDOR_ROWS) rows[n++] = &sets[s]->rows[i];
#else
  (void)q, (void)rows;
#endif
  return n;
}

/* The kernel for nt tokens of the type's other vendor choice where this host's table holds
 * another: the AVX-512 tier's Q8_0 streaming and Q4_0, Q4_K, Q5_K and Q6_K one-token kernels
 * (one token takes the streaming kernel where the row has no gemv_packed, as
 * nllm_qtype_packed_kernel chooses) */
static nllm_gemm_packed_fn other_kernel(const nllm_qtype *q, int nt) {
  const nllm_qtype_kernels *rows[MAX_VENDOR_ROWS];
  const nllm_gemm_packed_fn own = nllm_qtype_packed_kernel(q, nt, 0);
  for (int i = 0, n = vendor_rows(q, rows); i < n; i++) {
    const nllm_gemm_packed_fn fn =
        nt == 1 && rows[i]->gemv_packed ? rows[i]->gemv_packed : rows[i]->gemm_packed_stream;
    if (fn && fn != own) return fn;
  }
  return NULL;
}

/* The most tokens a call of the type's streaming kernel takes in either vendor choice's rows:
 * the same kernel serves both, and on AMD the K-quants' and IQ4_XS's rows pass it eight tokens,
 * the others' sixteen, which this host's table would then leave untested */
static int stream_tok_max(const nllm_qtype *q) {
  const nllm_qtype_kernels *rows[MAX_VENDOR_ROWS];
  int most = q->stream_tok;
  for (int i = 0, n = vendor_rows(q, rows); i < n; i++)
    if (rows[i]->gemm_packed_stream == q->gemm_packed_stream && rows[i]->stream_tok > most)
      most = rows[i]->stream_tok;
  return most;
}

/* gemm_packed (gemv_packed at one token) on nllm_prepack's rows against vec_dot4 on the plain
 * rows, random blocks with every level and extreme scales, 1..8 tokens */
START_TEST(kernels_equal_vec_dot4) {
  const int32_t type = packed_types[_i];
  const nllm_qtype *q = nllm_qtype_get(type);
  if (!q->prepack) {
    fprintf(stderr, "SKIP: %s has no prepack in this tier\n", q->name);
    return;
  }
  const nllm_qtype *vq = nllm_qtype_get(q->vec_dot_type);
  uint64_t rng = 0x9e3779b97f4a7c15ull + (uint64_t)type;
  /* (three super-blocks for the 256-value formats) */
  const int64_t cols = (q->block_size == 256 ? 6 : 3) * NLLM_GEMM_COLS,
                rows = 2 * q->pack_group_rows, nb = cols / q->block_size;
  const size_t rs = nllm_row_size(type, cols), as = nllm_row_size(vq->type, cols);
  uint8_t *W = malloc(rs * (size_t)rows), *P = malloc(nllm_prepack_size(type, rows, cols));
  uint8_t *act = malloc(as * NLLM_STREAM_TOK_MAX);
  uint8_t *prep = malloc(NLLM_GEMM_PREP_BYTES(cols) * NLLM_STREAM_TOK_MAX);
  float *got = malloc(sizeof(float) * (size_t)rows * NLLM_STREAM_TOK_MAX), ref[4];
  /* expand_packed's groups, and pack_expanded's from the plain rows */
  uint8_t *E = malloc(NLLM_PACK_BYTES(cols) / NLLM_PACK_ROWS * (size_t)rows),
          *E2 = malloc(NLLM_PACK_BYTES(cols) / NLLM_PACK_ROWS * (size_t)rows);
  for (int rep = 0; rep < 4; rep++) {
    ck_assert(random_blocks(&rng, type, W, nb * rows, (size_t)q->type_size, 0));
    /* activations from the quantizer (|q| <= 127, as the sign trick needs) */
    float *x = malloc(sizeof(float) * (size_t)cols);
    for (int t = 0; t < NLLM_STREAM_TOK_MAX; t++) {
      for (int64_t i = 0; i < cols; i++) x[i] = random_blocks_float(&rng, rep == 3 ? 1e4f : 2.0f);
      if (t == 1) memset(x, 0, sizeof(float) * 64); /* zero blocks */
      vq->from_float(x, act + (size_t)t * as, cols);
      q->packed_prep(cols, act + (size_t)t * as, prep + (size_t)t * NLLM_GEMM_PREP_BYTES(cols));
    }
    free(x);
    nllm_packed pk;
    nllm_prepack(W, type, rows, cols, P, 1, &pk);
    ck_assert_ptr_eq(pk.data, P);
    const size_t gb = nllm_prepack_size(type, q->pack_group_rows, cols),
                 eb = NLLM_PACK_BYTES(cols) / NLLM_PACK_ROWS * (size_t)q->pack_group_rows;
    if (q->expand_packed)
      for (int64_t g = 0; g < rows / q->pack_group_rows; g++) {
        q->expand_packed(cols, P + (size_t)g * gb, 0, E + (size_t)g * eb);
        if (q->pack_expanded) {
          memset(E2 + (size_t)g * eb, 0, eb);
          q->pack_expanded(cols, W + (size_t)(g * q->pack_group_rows) * rs, rs,
                           E2 + (size_t)g * eb);
        }
      }
    const int stream_max = stream_tok_max(q);
    /* pass 0 the packed rows, 1 and 2 the expanded ones, 3 the packed rows streamed (calls of up
     * to stream_max tokens), 4 the other prefetch choice's kernels where they differ (one
     * token and streamed) */
    for (int pass = 0; pass < 5; pass++)
      for (int nt = 1; nt <= (pass >= 3 ? stream_max : q->packed_tok); nt++) {
        if ((pass == 1 || pass == 2) && !q->expand_packed) break;
        if (pass == 3 && !q->gemm_packed_stream) break;
        if (pass == 3 && nt == 1) continue; /* one token in all takes gemv_packed */
        const nllm_gemm_packed_fn other = pass == 4 ? other_kernel(q, nt) : NULL;
        if (pass == 4 && !other) continue;
        for (int64_t g = 0; g < rows / q->pack_group_rows; g++) {
          const nllm_gemm_packed_fn fn = pass == 4                   ? other
                                         : pass == 3                 ? q->gemm_packed_stream
                                         : pass                      ? q->gemm_expanded
                                         : nt == 1 && q->gemv_packed ? q->gemv_packed
                                                                     : q->gemm_packed;
          const uint8_t *grp = pass == 0 || pass >= 3           ? P + (size_t)g * gb
                               : pass == 1 || !q->pack_expanded ? E + (size_t)g * eb
                                                                : E2 + (size_t)g * eb;
          fn(cols, got + g * q->pack_group_rows, (size_t)rows, grp, prep,
             NLLM_GEMM_PREP_BYTES(cols), nt);
        }
        for (int t = 0; t < nt; t++)
          for (int64_t r = 0; r < rows; r += 4) {
            /* one token: the decode kernel's sums; more: the prompt path's (vec_dot4_tile);
             * a tier without four-row kernels decodes row by row (vec_dot) */
            const nllm_vec_dot4_fn dot4 =
                nt > 1 && q->vec_dot4_tile ? q->vec_dot4_tile : q->vec_dot4;
            if (dot4)
              dot4(cols, ref, W + (size_t)r * rs, rs, act + (size_t)t * as);
            else
              for (int k = 0; k < 4; k++)
                q->vec_dot(cols, &ref[k], W + (size_t)(r + k) * rs, act + (size_t)t * as);
            for (int k = 0; k < 4; k++) {
              const float a = got[(size_t)t * (size_t)rows + (size_t)(r + k)], b = ref[k];
              ck_assert_msg(memcmp(&a, &b, sizeof a) == 0,
                            "%s pass %d rep %d tok %d/%d row %lld: %.9g != %.9g", q->name, pass,
                            rep, t, nt, (long long)(r + k), (double)a, (double)b);
            }
          }
      }
  }
  free(W);
  free(P);
  free(E);
  free(E2);
  free(act);
  free(prep);
  free(got);
}
END_TEST

/* nllm_matmul_pk on packed rows against nllm_matmul on the plain ones, rows not a multiple of
 * the group (the tail rows read plain: three, or seven, four of which take a four-row kernel),
 * 1..40 tokens, 1 and 2 threads */
START_TEST(matmul_equals_plain) {
  const int32_t type = packed_types[_i / 2];
  const nllm_qtype *q = nllm_qtype_get(type);
  if (!q->prepack) {
    fprintf(stderr, "SKIP: %s has no prepack in this tier\n", q->name);
    return;
  }
  uint64_t rng = 12345 + (uint64_t)type;
  const int64_t cols = 2 * NLLM_GEMM_COLS, rows = 5 * q->pack_group_rows + (_i % 2 ? 7 : 3);
  const size_t rs = nllm_row_size(type, cols);
  uint8_t *W = malloc(rs * (size_t)rows);
  ck_assert(random_blocks(&rng, type, W, cols / q->block_size * rows, (size_t)q->type_size, 0));
  const size_t pb = nllm_prepack_size(type, rows, cols);
  ck_assert_uint_eq(pb, 5 * nllm_prepack_size(type, q->pack_group_rows, cols));
  ck_assert_uint_eq(nllm_prepack_plain_size(type, rows, cols),
                    (size_t)(5 * q->pack_group_rows) * rs);
  uint8_t *P = malloc(pb);
  nllm_packed pk;
  nllm_prepack(W, type, rows, cols, P, 2, &pk);
  float *x = malloc(sizeof(float) * (size_t)cols * 40);
  for (int64_t i = 0; i < cols * 40; i++) x[i] = random_blocks_float(&rng, 3.0f);
  float *a = malloc(sizeof(float) * (size_t)rows * 40),
        *b = malloc(sizeof(float) * (size_t)rows * 40);
  void *wd = malloc(nllm_matmul_wsize(type, cols, 40, 2) + 64);
  /* (from 32 tokens Q4_0 expands its packed groups: expand_packed) */
  static const int toks[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 32, 40};
  for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++)
    for (int th = 1; th <= 2; th++) {
      nllm_matmul(a, W, type, rows, cols, x, toks[k], wd, th);
      nllm_matmul_pk(b, W, &pk, type, rows, cols, x, toks[k], wd, th, NLLM_MATMUL_EXACT);
      ck_assert_msg(memcmp(a, b, sizeof(float) * (size_t)rows * (size_t)toks[k]) == 0,
                    "%s, %lld rows: %d tokens, %d threads", q->name, (long long)rows, toks[k], th);
    }
  /* a packed copy of another layout (another tier's) is not read: W is */
  nllm_packed other = {P, (void (*)(void))best_tier};
  nllm_matmul_pk(b, W, &other, type, rows, cols, x, 4, wd, 2, NLLM_MATMUL_EXACT);
  nllm_matmul(a, W, type, rows, cols, x, 4, wd, 2);
  ck_assert(memcmp(a, b, sizeof(float) * (size_t)rows * 4) == 0);
  free(W);
  free(P);
  free(x);
  free(a);
  free(b);
  free(wd);
}
END_TEST

/* Prompts over packed weights in passes of a token block (nllm_matmul_set_token_block_bytes
 * shrunk so that 150 tokens make three passes of 64, 64 and 22) equal one pass over all of them
 * (this matrix's default), alone and in a group of two matrices of one input, at 1 and 2
 * threads. */
START_TEST(token_blocks_equal_plain) {
  const int32_t type = packed_types[_i];
  const nllm_qtype *q = nllm_qtype_get(type);
  enum { NT = 150 };
  uint64_t rng = 777 + (uint64_t)type;
  const int64_t cols = 2 * NLLM_GEMM_COLS, rows = 3 * q->pack_group_rows + 5;
  const size_t rs = nllm_row_size(type, cols);
  uint8_t *W[2];
  uint8_t *P[2];
  nllm_packed pk[2];
  for (int i = 0; i < 2; i++) {
    W[i] = malloc(rs * (size_t)rows);
    ck_assert(
        random_blocks(&rng, type, W[i], cols / q->block_size * rows, (size_t)q->type_size, 0));
    P[i] = malloc(nllm_prepack_size(type, rows, cols));
    nllm_prepack(W[i], type, rows, cols, P[i], 2, &pk[i]);
  }
  float *x = malloc(sizeof(float) * (size_t)cols * NT);
  for (int64_t i = 0; i < cols * NT; i++) x[i] = random_blocks_float(&rng, 3.0f);
  float *ref[2], *got[2];
  for (int i = 0; i < 2; i++) {
    ref[i] = malloc(sizeof(float) * (size_t)rows * NT);
    got[i] = malloc(sizeof(float) * (size_t)rows * NT);
  }
  const nllm_matmul_part parts[2] = {{got[0], W[0], type, rows, &pk[0]},
                                     {got[1], W[1], type, rows, &pk[1]}};
  const size_t ws = nllm_matmul_group_wsize(parts, 2, cols, NT, 2);
  void *wd = malloc(ws + 64);
  for (int th = 1; th <= 2; th++) {
    nllm_matmul_set_token_block_bytes(0);
    for (int i = 0; i < 2; i++)
      nllm_matmul_pk(ref[i], W[i], &pk[i], type, rows, cols, x, NT, wd, th, NLLM_MATMUL_EXACT);
    nllm_matmul_set_token_block_bytes(1);
    nllm_matmul_pk(got[0], W[0], &pk[0], type, rows, cols, x, NT, wd, th, NLLM_MATMUL_EXACT);
    ck_assert_msg(memcmp(got[0], ref[0], sizeof(float) * (size_t)rows * NT) == 0,
                  "%s, %d threads: passes of token blocks differ from one pass", q->name, th);
    for (int i = 0; i < 2; i++)
      for (int64_t k = 0; k < rows * NT; k++) got[i][k] = NAN;
    nllm_matmul_group(parts, 2, cols, x, NT, wd, ws, th);
    for (int i = 0; i < 2; i++)
      ck_assert_msg(memcmp(got[i], ref[i], sizeof(float) * (size_t)rows * NT) == 0,
                    "%s, %d threads, group matrix %d: token blocks differ from one pass", q->name,
                    th, i);
  }
  nllm_matmul_set_token_block_bytes(0);
  for (int i = 0; i < 2; i++) {
    free(W[i]);
    free(P[i]);
    free(ref[i]);
    free(got[i]);
  }
  free(x);
  free(wd);
}
END_TEST

static nllm_model *load(const char *rel, int no_repack) {
  char path[1024];
  if (!testdata_path(path, sizeof path, rel)) return NULL;
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.no_repack = no_repack;
  nllm_model *m = NULL;
  ck_assert_msg(nllm_model_load(path, &mp, &m) == NLLM_OK, "%s: %s", path, nllm_last_error());
  return m;
}

/* weights of the model kept packed */
static int n_packed(const nllm_model *m) {
  int n = 0;
  for (int il = 0; il < m->hp.n_layer; il++) {
    const nllm_layer *L = &m->layers[il];
    n += !!L->wq.packed + !!L->wk.packed + !!L->wv.packed + !!L->wo.packed + !!L->w_gate.packed +
         !!L->w_up.packed + !!L->w_down.packed;
  }
  return n + !!m->output.packed + !!m->tok_embd.packed;
}

/* Matrices kept packed in a format whose row has no prepack in the tier (none should be) */
static int packed_without_prepack(const nllm_model *m) {
  int n = 0;
  for (int il = 0; il < m->hp.n_layer; il++) {
    const nllm_layer *L = &m->layers[il];
    const nllm_weight *w[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
      n += w[i]->packed && !nllm_qtype_get(w[i]->type)->prepack;
  }
  return n + (m->output.packed && !nllm_qtype_get(m->output.type)->prepack);
}

static const char *const models[] = {
    "golden/models/tiny-a-Q4_0.gguf",   "golden/models/tiny-a-Q8_0.gguf",
    "golden/models/tiny-a-Q4_K_M.gguf", "golden/models/tiny-a-Q5_0.gguf",
    "golden/models/tiny-a-IQ4_NL.gguf", "golden/models/tiny-a-F16.gguf",
    "golden/models/moe-a-Q4_0.gguf",    "golden/models/moe-a-Q8_0.gguf",
    "golden/models/tiny-a-Q6_K.gguf",   "golden/models/tiny-a-Q5_K_M.gguf",
};

/* All logits of ids decoded as a prompt of n tokens, then four tokens one at a time. */
static float *run(nllm_model *m, const int *ids, int n, int *rows_out) {
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.all_logits = 1;
  cp.n_ctx = 64;
  cp.n_batch = 16;
  cp.n_threads = 2;
  nllm_context *c = NULL;
  ck_assert_msg(nllm_context_create(m, &cp, &c) == NLLM_OK, "%s", nllm_last_error());
  const int nv = nllm_model_n_vocab(m), rows = n + 4;
  float *out = malloc(sizeof(float) * (size_t)nv * (size_t)rows);
  ck_assert_int_eq(nllm_decode(c, ids, n), NLLM_OK);
  for (int i = 0; i < n; i++)
    memcpy(out + (size_t)i * (size_t)nv, nllm_get_logits_ith(c, i), sizeof(float) * (size_t)nv);
  for (int i = n; i < rows; i++) {
    ck_assert_int_eq(nllm_decode(c, &ids[i], 1), NLLM_OK);
    memcpy(out + (size_t)i * (size_t)nv, nllm_get_logits(c), sizeof(float) * (size_t)nv);
  }
  nllm_context_free(c);
  *rows_out = rows;
  return out;
}

/* a and b give the same logits bit for bit for a prompt of n ids (3 + i * step mod 500). */
static void assert_same_logits(nllm_model *a, nllm_model *b, int step, int n) {
  int ids[20];
  for (int i = 0; i < 20; i++) ids[i] = 3 + (i * step) % 500;
  int ra, rb;
  float *la = run(a, ids, n, &ra), *lb = run(b, ids, n, &rb);
  ck_assert(memcmp(la, lb, sizeof(float) * (size_t)ra * (size_t)nllm_model_n_vocab(a)) == 0);
  free(la);
  free(lb);
}

/* the golden's prompt and generated ids: prompts of 1, 2, 4, 8, 16 tokens on both loads */
static void compare_loads(const char *rel) {
  nllm_model *a = load(rel, 0);
  if (!a) return;
  nllm_model *b = load(rel, 1);
  char gpath[1024], grel[512];
  const char *base = strrchr(rel, '/') + 1;
  snprintf(grel, sizeof grel, "golden/logits/%.*s.logits.txt", (int)(strlen(base) - 5), base);
  ck_assert(testdata_path(gpath, sizeof gpath, grel));
  golden_logits *g = golden_logits_load(gpath);
  ck_assert_ptr_nonnull(g);
  int ids[32], n_ids = 0;
  for (int i = 0; i < g->n_prompt && n_ids < 32; i++) ids[n_ids++] = g->prompt_ids[i];
  for (int i = 0; i < g->n_gen && n_ids < 32; i++) ids[n_ids++] = g->gen_ids[i];
  for (int i = n_ids; i < 32; i++) ids[i] = 3 + (i * 37) % 500;
  ck_assert_int_eq(n_packed(b), 0);
  static const int ns[] = {1, 2, 4, 8, 16};
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    int ra, rb;
    float *la = run(a, ids, ns[k], &ra), *lb = run(b, ids, ns[k], &rb);
    ck_assert_int_eq(ra, rb);
    ck_assert_msg(memcmp(la, lb, sizeof(float) * (size_t)ra * (size_t)nllm_model_n_vocab(a)) == 0,
                  "%s: prompt of %d tokens: packed and plain loads differ", rel, ns[k]);
    free(la);
    free(lb);
  }
  golden_logits_free(g);
  nllm_model_free(a);
  nllm_model_free(b);
}

START_TEST(packed_load_equals_plain) {
  const char *rel = models[_i];
  nllm_model *a = load(rel, 0);
  if (!a) return;
  /* the dense matrices of a format with prepack, and never the embedding */
  const int32_t t = a->layers[0].wq.type;
  const nllm_qtype *q = nllm_qtype_get(t);
  if (q->prepack)
    ck_assert_msg(n_packed(a) > 0 && a->layers[0].wq.packed, "%s: nothing packed", rel);
  /* (other matrices in another format may be: a Q6_K head, Q8_0 ones where that one packs) */
  ck_assert_int_eq(packed_without_prepack(a), 0);
  /* a Q6_K head (the Q4_K_M, Q5_0 and IQ4_NL files) kept packed where Q6_K is */
  if (a->output.data != a->tok_embd.data && a->output.type == NLLM_TYPE_Q6_K)
    ck_assert_int_eq(!!a->output.packed, nllm_qtype_get(NLLM_TYPE_Q6_K)->prepack);
  ck_assert_ptr_null(a->tok_embd.packed);
  nllm_model_free(a);
  compare_loads(rel);
}
END_TEST

/* A load under the best tier, run under the scalar one: the plain rows (given back to the file)
 * read again, the same logits as a plain load's under the scalar tier. */
START_TEST(tier_capped_after_load) {
  const char *rel = models[_i];
  nllm_model *a = load(rel, 0);
  if (!a) return;
  nllm_model *b = load(rel, 1);
  nllm_qtypes_set_isa(NLLM_ISA_SCALAR);
  assert_same_logits(a, b, 53, 8);
  best_tier();
  nllm_model_free(a);
  nllm_model_free(b);
}
END_TEST

/* use_mmap: the packed weights as with a read load */
START_TEST(mmap_load_equals_plain) {
  char path[1024];
  if (!testdata_path(path, sizeof path, models[_i])) return;
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.use_mmap = 1;
  nllm_model *a = NULL;
  ck_assert_int_eq(nllm_model_load(path, &mp, &a), NLLM_OK);
  nllm_model *b = load(models[_i], 1);
  assert_same_logits(a, b, 41, 16);
  nllm_model_free(a);
  nllm_model_free(b);
}
END_TEST

/* A read load keeps its promise with packed weights: a file truncated after the load leaves the
 * model working (the packed rows, the other tensors and the metadata are the model's own). */
START_TEST(file_truncated_after_load) {
  char src[1024];
  if (!testdata_path(src, sizeof src, models[_i])) return;
  size_t len = 0;
  char *bytes = read_file(src, &len);
  ck_assert_ptr_nonnull(bytes);
  char path[] = "/tmp/nllm-prepack-XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq((int)write(fd, bytes, len), (int)len);
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  nllm_model *a = NULL;
  ck_assert_int_eq(nllm_model_load(path, &mp, &a), NLLM_OK);
  ck_assert_int_gt(n_packed(a), 0);
  nllm_model *b = load(models[_i], 1);
  ck_assert_int_eq(ftruncate(fd, 4096), 0);
  close(fd);
  const char *arch = NULL;
  ck_assert_int_eq(nllm_model_meta_str(a, "general.architecture", &arch), NLLM_OK);
  ck_assert_str_eq(arch, "llama");
  assert_same_logits(a, b, 29, 16);
  nllm_model_free(a);
  nllm_model_free(b);
  unlink(path);
  free(bytes);
}
END_TEST

static TCase *prepack_case(const char *name, void (*at_tier)(void)) {
  TCase *tc = tcase_create(name);
  tcase_set_timeout(tc, 300);
  tcase_add_checked_fixture(tc, at_tier, NULL);
  /* the formats this tier keeps packed (on an AVX-512 CPU's own tier: all of packed_types) */
  for (int i = 0; i < (int)(sizeof packed_types / sizeof packed_types[0]); i++)
    if (nllm_qtype_get(packed_types[i])->prepack) {
      tcase_add_loop_test(tc, kernels_equal_vec_dot4, i, i + 1);
      tcase_add_loop_test(tc, matmul_equals_plain, 2 * i, 2 * i + 2);
      tcase_add_loop_test(tc, token_blocks_equal_plain, i, i + 1);
    }
  const int n_models = (int)(sizeof models / sizeof models[0]);
  tcase_add_loop_test(tc, packed_load_equals_plain, 0, n_models);
  tcase_add_loop_test(tc, tier_capped_after_load, 0, 2);
  tcase_add_loop_test(tc, mmap_load_equals_plain, 0, 2);
  if (nllm_qtype_get(NLLM_TYPE_Q4_0)->prepack)
    tcase_add_loop_test(tc, file_truncated_after_load, 0, 2);
  return tc;
}

/* whether the tier in use keeps any format packed */
static int any_prepack(void) {
  for (size_t i = 0; i < sizeof packed_types / sizeof packed_types[0]; i++)
    if (nllm_qtype_get(packed_types[i])->prepack) return 1;
  return 0;
}

int main(void) {
  top_tier = packed_tier = nllm_qtypes_isa_max();
  const int first = top_tier < NLLM_ISA_SIMD ? top_tier : NLLM_ISA_SIMD;
  for (int isa = first; isa >= NLLM_ISA_SCALAR; isa--) {
    nllm_qtypes_set_isa(isa);
    if (nllm_qtype_get(NLLM_TYPE_Q4_K)->prepack) {
      packed_tier = isa;
      break;
    }
  }
  Suite *s = suite_create("prepack");
  at_packed_tier();
  suite_add_tcase(s, prepack_case("prepack", at_packed_tier));
  at_top_tier();
  if (top_tier != packed_tier && any_prepack())
    suite_add_tcase(s, prepack_case("prepack_top_tier", at_top_tier));
  at_packed_tier();
  return run_suite(s);
}
