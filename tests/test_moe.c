/* The mixture-of-experts block: the router's choice (ties, renormalization), the grouped expert
 * kernel against the plain per-token reference in every weight kind and kernel tier, the batch
 * shapes routing makes (an expert no token chose, every token on one expert), and a prompt
 * run as one grouped batch against the same tokens decoded one at a time. */
#include <unistd.h>

#include "convert/convert.h"
#include "modelutil.h"
#include "moe.h"
#include "ops.h"
#include "qtypes.h"

START_TEST(route_ties_lowest_index) {
  int32_t ids[4];
  float w[4];
  /* all equal: the first k experts, equal weights */
  const float eq[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  nllm_moe_route(eq, 1, 6, 3, 1, ids, w);
  ck_assert_int_eq(ids[0], 0);
  ck_assert_int_eq(ids[1], 1);
  ck_assert_int_eq(ids[2], 2);
  for (int j = 0; j < 3; j++) ck_assert_float_eq_tol(w[j], 1.0f / 3.0f, 1e-6f);
  /* a tie for second place between experts 4 and 2: 2 wins, best first */
  const float tie[5] = {-1.0f, 0.25f, 2.0f, 3.0f, 2.0f};
  nllm_moe_route(tie, 1, 5, 2, 0, ids, w);
  ck_assert_int_eq(ids[0], 3);
  ck_assert_int_eq(ids[1], 2);
  /* without renormalization the weights are the softmax over all experts */
  double z = 0;
  for (int e = 0; e < 5; e++) z += exp((double)tie[e]);
  ck_assert_float_eq_tol(w[0], (float)(exp(3.0) / z), 1e-6f);
  ck_assert_float_eq_tol(w[1], (float)(exp(2.0) / z), 1e-6f);
  /* with it, they sum to one in the same ratio */
  nllm_moe_route(tie, 1, 5, 2, 1, ids, w);
  ck_assert_float_eq_tol(w[0] + w[1], 1.0f, 1e-6f);
  ck_assert_float_eq_tol(w[0] / w[1], (float)exp(1.0), 1e-5f);
  /* k = n_expert takes every expert; huge logits do not overflow */
  const float big[3] = {1e30f, -1e30f, 1e30f};
  nllm_moe_route(big, 1, 3, 3, 1, ids, w);
  ck_assert_int_eq(ids[0], 0);
  ck_assert_int_eq(ids[1], 2);
  ck_assert_int_eq(ids[2], 1);
  ck_assert_float_eq_tol(w[0], 0.5f, 1e-6f);
  ck_assert_float_eq_tol(w[2], 0.0f, 1e-6f);
}
END_TEST

/* A random stacked expert tensor of n_expert rows x cols matrices in type. */
static void *make_experts(int32_t type, int64_t n_expert, int64_t rows, int64_t cols, float scale,
                          uint64_t *rng) {
  const nllm_qtype *q = nllm_qtype_get(type);
  const size_t rs = nllm_row_size(type, cols);
  uint8_t *w = malloc(rs * (size_t)(rows * n_expert));
  float *row = malloc(sizeof(float) * (size_t)cols);
  for (int64_t r = 0; r < rows * n_expert; r++) {
    for (int64_t c = 0; c < cols; c++) row[c] = scale * test_frand(rng);
    q->from_float_ref(row, w + (size_t)r * rs, cols);
  }
  free(row);
  return w;
}

typedef struct moe_case {
  nllm_moe_args a;
  void *gate, *up, *down;
  float *x, *logits, *out, *ref;
  void *scratch, *ref_scratch;
} moe_case;

static void case_init(moe_case *c, int32_t type, int64_t n_tok, int64_t d, int64_t ff, int32_t ne,
                      int32_t k, uint64_t seed) {
  memset(c, 0, sizeof *c);
  uint64_t rng = seed;
  c->gate = make_experts(type, ne, ff, d, 1.0f / sqrtf((float)d), &rng);
  c->up = make_experts(type, ne, ff, d, 1.0f / sqrtf((float)d), &rng);
  c->down = make_experts(type, ne, d, ff, 1.0f / sqrtf((float)ff), &rng);
  c->x = malloc(sizeof(float) * (size_t)(n_tok * d));
  c->logits = malloc(sizeof(float) * (size_t)(n_tok * ne));
  c->out = malloc(sizeof(float) * (size_t)(n_tok * d));
  c->ref = malloc(sizeof(float) * (size_t)(n_tok * d));
  for (int64_t i = 0; i < n_tok * d; i++) c->x[i] = test_frand(&rng);
  for (int64_t i = 0; i < n_tok * ne; i++) c->logits[i] = 2.0f * test_frand(&rng);
  c->a = (nllm_moe_args){.out = c->out,
                         .x = c->x,
                         .logits = c->logits,
                         .n_tok = n_tok,
                         .d = d,
                         .ff = ff,
                         .n_expert = ne,
                         .n_used = k,
                         .norm = 1,
                         .gate = {c->gate, type, ff, d},
                         .up = {c->up, type, ff, d},
                         .down = {c->down, type, d, ff},
                         .n_threads = 4};
  c->scratch = malloc(nllm_moe_scratch_size(&c->a));
  c->ref_scratch = malloc(nllm_moe_ref_scratch_size(&c->a));
  c->a.scratch = c->scratch;
}

static void case_free(moe_case *c) {
  free(c->gate);
  free(c->up);
  free(c->down);
  free(c->x);
  free(c->logits);
  free(c->out);
  free(c->ref);
  free(c->scratch);
  free(c->ref_scratch);
}

/* rel RMS of the kernel's rows against the reference's */
static double case_run(moe_case *c) {
  nllm_moe_ffn(&c->a);
  nllm_moe_args r = c->a;
  r.out = c->ref;
  r.scratch = c->ref_scratch;
  nllm_moe_ffn_ref(&r);
  double worst = 0;
  for (int64_t t = 0; t < c->a.n_tok; t++) {
    for (int64_t i = 0; i < c->a.d; i++) ck_assert(isfinite(c->out[t * c->a.d + i]));
    double e = rel_rms(c->out + t * c->a.d, c->ref + t * c->a.d, (int)c->a.d);
    if (e > worst) worst = e;
  }
  return worst;
}

/* Weight kinds: float rows dotted in float (tight), and the integer kinds whose activations
 * are rounded to 8 bits first (as every matmul of those types: about 1% per product). */
static const struct {
  int32_t type;
  double tol;
} kinds[] = {
    {NLLM_TYPE_F32, 1e-5},  {NLLM_TYPE_F16, 4e-3},  {NLLM_TYPE_BF16, 2e-2}, {NLLM_TYPE_Q8_0, 4e-2},
    {NLLM_TYPE_Q4_0, 4e-2}, {NLLM_TYPE_Q4_K, 4e-2}, {NLLM_TYPE_Q6_K, 4e-2},
};

START_TEST(grouped_vs_reference) {
  const int32_t type = kinds[_i].type;
  const int top = nllm_qtypes_isa_max();
  /* 1 token (decode), a few (integer groups), 48 (groups past the sgemm crossover) */
  const int64_t toks[] = {1, 7, 48};
  for (int isa = NLLM_ISA_SCALAR; isa <= top; isa++) {
    nllm_qtypes_set_isa(isa);
    for (size_t j = 0; j < sizeof toks / sizeof toks[0]; j++) {
      moe_case c;
      case_init(&c, type, toks[j], 256, 512, 8, 2, 0x1234 + j);
      double e = case_run(&c);
      ck_assert_msg(e < kinds[_i].tol, "%s isa %d n_tok %lld: rel RMS %g vs the reference",
                    nllm_qtype_get(type)->name, isa, (long long)toks[j], e);
      case_free(&c);
    }
  }
  nllm_qtypes_set_isa(top);
}
END_TEST

/* Qwen2-MoE's shared expert (another width than the routed ones, its own sigmoid gate) on top of
 * the routed experts, with gate, up and down each of another type (gate and up then take
 * separate activation rows), at every tier and batch shape. */
START_TEST(shared_expert_vs_reference) {
  const int top = nllm_qtypes_isa_max();
  const int64_t toks[] = {1, 7, 40};
  const int64_t d = 256, ff = 128, fsh = 512; /* K-quant rows: multiples of 256 */
  for (int isa = NLLM_ISA_SCALAR; isa <= top; isa++) {
    nllm_qtypes_set_isa(isa);
    for (size_t j = 0; j < sizeof toks / sizeof toks[0]; j++) {
      moe_case c;
      case_init(&c, NLLM_TYPE_Q8_0, toks[j], d, ff, 8, 2, 0x5e7 + j);
      uint64_t rng = 0xabc + j;
      free(c.gate);
      c.gate = make_experts(NLLM_TYPE_Q4_K, 8, ff, d, 1.0f / 16, &rng);
      c.a.gate = (nllm_moe_mat){c.gate, NLLM_TYPE_Q4_K, ff, d};
      void *sg = make_experts(NLLM_TYPE_Q4_K, 1, fsh, d, 1.0f / 16, &rng);
      void *su = make_experts(NLLM_TYPE_Q8_0, 1, fsh, d, 1.0f / 16, &rng);
      void *sd = make_experts(NLLM_TYPE_Q6_K, 1, d, fsh, 1.0f / sqrtf((float)fsh), &rng);
      float gin[256];
      for (int i = 0; i < 256; i++) gin[i] = 0.2f * test_frand(&rng);
      c.a.sh_gate = (nllm_moe_mat){sg, NLLM_TYPE_Q4_K, fsh, d};
      c.a.sh_up = (nllm_moe_mat){su, NLLM_TYPE_Q8_0, fsh, d};
      c.a.sh_down = (nllm_moe_mat){sd, NLLM_TYPE_Q6_K, d, fsh};
      c.a.sh_gate_inp = gin;
      c.a.norm = 0;
      free(c.scratch);
      free(c.ref_scratch);
      c.scratch = malloc(nllm_moe_scratch_size(&c.a));
      c.ref_scratch = malloc(nllm_moe_ref_scratch_size(&c.a));
      c.a.scratch = c.scratch;
      double e = case_run(&c);
      ck_assert_msg(e < 4e-2, "isa %d n_tok %lld: rel RMS %g vs the reference", isa,
                    (long long)toks[j], e);
      /* the shared expert is really in the sum: without it the output moves well past that */
      nllm_moe_args plain = c.a;
      plain.sh_gate.data = NULL;
      plain.out = c.ref;
      nllm_moe_ffn(&plain);
      double moved = 0;
      for (int64_t t = 0; t < toks[j]; t++) {
        double m = rel_rms(c.ref + t * d, c.out + t * d, (int)d);
        if (m > moved) moved = m;
      }
      ck_assert_msg(moved > 0.2, "the shared expert moved the output by %g only", moved);
      free(sg);
      free(su);
      free(sd);
      case_free(&c);
    }
  }
  nllm_qtypes_set_isa(top);
}
END_TEST

/* Experts no token chose are never read: their weights are NaN here, and the output stays
 * finite and equal to the reference. */
START_TEST(unchosen_experts_not_read) {
  moe_case c;
  const int32_t ne = 8;
  case_init(&c, NLLM_TYPE_F32, 20, 64, 96, ne, 2, 77);
  for (int64_t t = 0; t < 20; t++)
    for (int32_t e = 0; e < ne; e++) c.logits[t * ne + e] = e == 1 || e == 6 ? (float)(t % 3) : -50;
  const size_t per_gate = (size_t)(96 * 64), per_down = (size_t)(64 * 96);
  for (int32_t e = 0; e < ne; e++) {
    if (e == 1 || e == 6) continue;
    for (size_t i = 0; i < per_gate; i++) {
      ((float *)c.gate)[e * per_gate + i] = NAN;
      ((float *)c.up)[e * per_gate + i] = NAN;
    }
    for (size_t i = 0; i < per_down; i++) ((float *)c.down)[e * per_down + i] = NAN;
  }
  ck_assert(case_run(&c) < 1e-5);
  case_free(&c);
}
END_TEST

/* Every token's first choice is one expert (a group as large as the batch, past the sgemm
 * crossover for float weights), and with k = 1 every token only on it. */
START_TEST(all_tokens_on_one_expert) {
  const int32_t types[] = {NLLM_TYPE_F32, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_K};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    for (int32_t k = 1; k <= 2; k++) {
      moe_case c;
      case_init(&c, types[i], 64, 256, 256, 4, k, 99 + (uint64_t)k);
      for (int64_t t = 0; t < 64; t++) c.logits[t * 4 + 3] = 10.0f;
      double e = case_run(&c);
      ck_assert_msg(e < (types[i] == NLLM_TYPE_F32 ? 1e-5 : 3e-2), "%s k %d: %g",
                    nllm_qtype_get(types[i])->name, k, e);
      case_free(&c);
    }
}
END_TEST

/* A batch routed and grouped at once gives each token what it gets alone: the same bits where
 * every group stays on integer kernels that sum as the decode kernel does (one fixed summation
 * order per token), float rounding where a group goes through sgemm or where the type's prompt
 * kernels are another four-row kernel than decode's (vec_dot4_tile: AVX-512 Q8_0). */
START_TEST(batch_equals_one_at_a_time) {
  const int32_t types[] = {NLLM_TYPE_F32, NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_K, NLLM_TYPE_Q4_0};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    for (int64_t n = 6; n <= 64; n += 58) {
      moe_case c;
      case_init(&c, types[i], n, 256, 256, 8, 2, 5 + (uint64_t)n);
      nllm_moe_ffn(&c.a);
      nllm_moe_args one = c.a;
      one.n_tok = 1;
      one.out = c.ref;
      const nllm_qtype *q = nllm_qtype_get(types[i]);
      int any_blas = q->vec_dot4_tile && q->vec_dot4_tile != q->vec_dot4;
      for (int e = 0; e < 8; e++)
        any_blas |= nllm_matmul_uses_gemm(types[i], n, c.a.n_threads); /* upper bound */
      for (int64_t t = 0; t < n; t++) {
        one.x = c.x + t * 256;
        one.logits = c.logits + t * 8;
        one.out = c.ref + t * 256;
        nllm_moe_ffn(&one);
      }
      if (!any_blas) {
        ck_assert_msg(memcmp(c.out, c.ref, sizeof(float) * (size_t)(n * 256)) == 0,
                      "%s n %lld: batch differs from one at a time", nllm_qtype_get(types[i])->name,
                      (long long)n);
      } else {
        for (int64_t t = 0; t < n; t++) {
          double e = rel_rms(c.out + t * 256, c.ref + t * 256, 256);
          ck_assert_msg(
              e < (types[i] == NLLM_TYPE_F32 || !nllm_matmul_uses_blas(types[i], n, 1) ? 1e-5
                                                                                       : 3e-2),
              "%s n %lld row %lld: %g", nllm_qtype_get(types[i])->name, (long long)n, (long long)t,
              e);
        }
      }
      case_free(&c);
    }
}
END_TEST

/* The whole model: a prompt decoded as one batch (tokens grouped by expert in every layer) and
 * the same tokens decoded one at a time give the same logits; also with bf16_activations
 * rounding (the loop's second half), where every path rounds the activations of these BF16
 * models alike (a prompt-only rounding moved tiny-qwen3-moe's logits 2.2%: a router near a
 * tie), and the logits then differ from the exact mode's by about BF16's rounding. The default
 * (AUTO) gives bit for bit the mode the kernel tier settles it to. */
START_TEST(model_prompt_equals_decode) {
  /* float weights: a quantized model's dense matmuls themselves take another path (sgemm on
   * float activations, or the prompt tiles) for a batch than for one token */
  static const char *models[] = {"hf/tiny-mixtral", "hf/tiny-qwen3-moe"};
  const char *name = models[_i % 2];
  const int bf16_act = _i / 2;
  char path[1024];
  char rel[256];
  snprintf(rel, sizeof rel, "%s/config.json", name);
  if (!testdata_path(path, sizeof path, rel)) return;
  snprintf(path, sizeof path, "%s/%s", testdata_dir(), name);
  nllm_model *m = NULL;
  ck_assert_msg(nllm_model_load(path, NULL, &m) == NLLM_OK, "%s", nllm_last_error());
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.all_logits = 1;
  cp.kv_type = NLLM_TYPE_F32;
  cp.n_ctx = 64;
  nllm_context *batch = NULL, *single = NULL, *exact = NULL, *deflt = NULL;
  ck_assert_int_eq(cp.bf16_activations, NLLM_BF16_ACT_AUTO);
  ck_assert_int_eq(nllm_context_create(m, &cp, &deflt), NLLM_OK);
  cp.bf16_activations = NLLM_BF16_ACT_EXACT;
  ck_assert_int_eq(nllm_context_create(m, &cp, &exact), NLLM_OK);
  for (int bad = -2; bad <= 2; bad += 4) {
    cp.bf16_activations = bad;
    ck_assert_int_eq(nllm_context_create(m, &cp, &batch), NLLM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(nllm_last_error(), "bf16_activations"));
    ck_assert_ptr_null(batch);
  }
  cp.bf16_activations = bf16_act ? NLLM_BF16_ACT_ROUND : NLLM_BF16_ACT_EXACT;
  ck_assert_int_eq(nllm_context_create(m, &cp, &batch), NLLM_OK);
  ck_assert_int_eq(nllm_context_create(m, &cp, &single), NLLM_OK);
  int ids[40];
  const int nv = nllm_model_n_vocab(m);
  uint64_t rng = 42;
  for (int i = 0; i < 40; i++)
    ids[i] = 3 + (int)((test_frand(&rng) + 1.0f) * 0.5f * (float)(nv - 4));
  ck_assert_int_eq(nllm_decode(batch, ids, 40), NLLM_OK);
  double worst = 0;
  for (int i = 0; i < 40; i++) {
    ck_assert_int_eq(nllm_decode(single, &ids[i], 1), NLLM_OK);
    double e = rel_rms(nllm_get_logits_ith(batch, i), nllm_get_logits(single), nv);
    if (e > worst) worst = e;
  }
  ck_assert_int_eq(nllm_decode(exact, ids, 40), NLLM_OK);
  const double vs_exact = rel_rms(nllm_get_logits_ith(batch, 39), nllm_get_logits(exact), nv);
  if (bf16_act == nllm_matmul_xbf16_fast()) {
    ck_assert_int_eq(nllm_decode(deflt, ids, 40), NLLM_OK);
    for (int i = 0; i < 40; i++)
      ck_assert_msg(!memcmp(nllm_get_logits_ith(deflt, i), nllm_get_logits_ith(batch, i),
                            (size_t)nv * sizeof(float)),
                    "%s: the default differs from the mode it settles to at row %d", name, i);
  }
  fprintf(stderr,
          "%s%s: prompt batch vs one at a time: max rel RMS %.2e over 40 positions; last vs "
          "exact %.2e\n",
          name, bf16_act ? " (bf16 activations)" : "", worst, vs_exact);
  /* With bf16_activations a last-bit difference between a tier's batch and one-token sums
   * (AVX2: the float GEMM against the row kernels) can round one activation to the next BF16
   * value, so the bound there is the mode's own scale, still well under the 2.2% a prompt-only
   * rounding caused. */
  ck_assert_msg(worst < (bf16_act ? 1e-2 : 1e-4), "%s: %g", name, worst);
  if (bf16_act)
    ck_assert_msg(vs_exact > 1e-5 && vs_exact < 0.1, "%s: %g from the exact mode", name, vs_exact);
  else
    ck_assert_msg(vs_exact < 1e-4, "%s: %g", name, vs_exact);
  nllm_context_free(deflt);
  nllm_context_free(exact);
  nllm_context_free(batch);
  nllm_context_free(single);
  nllm_model_free(m);
}
END_TEST

/* Qwen2-MoE (shared expert, q/k/v biases, a dense layer among sparse ones) and OLMoE (q/k norm
 * over the whole projection, GQA) against tests/moe_ref.py's float64 implementation of their HF
 * definitions: the tiny folders it writes load and match, greedy ids included, and so do the
 * GGUF files nllm convert makes of them. */
START_TEST(python_reference_models) {
  static const char *names[] = {"tiny-qwen2-moe", "tiny-olmoe"};
  char dir[128], cmd[512], model[256], golden[320], gguf[320];
  snprintf(dir, sizeof dir, "/tmp/nllm-moe-ref-%d-%d", (int)getpid(), _i);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/moe_ref.py %s > /dev/null", dir);
  if (system("/usr/bin/python3 -c 'import numpy' 2> /dev/null") != 0) {
    fprintf(stderr, "SKIP: /usr/bin/python3 with numpy is missing: %s not checked\n", names[_i]);
    return;
  }
  ck_assert_msg(system(cmd) == 0, "%s failed", cmd);
  snprintf(model, sizeof model, "%s/%s", dir, names[_i]);
  snprintf(golden, sizeof golden, "%s/golden.logits.txt", model);
  snprintf(gguf, sizeof gguf, "%s/%s.gguf", dir, names[_i]);
  golden_logits *g = golden_logits_load(golden);
  ck_assert_ptr_nonnull(g);
  cmp_result r;
  compare_golden(model, golden, NLLM_TYPE_F32, &r);
  fprintf(stderr, "%s: max rel RMS %.2e over %d rows, greedy agree %d of %d\n", names[_i],
          r.max_rel, r.n_rows, r.argmax_agree, g->n_gen);
  ck_assert_msg(r.max_rel < 1e-4, "%s: %g", names[_i], r.max_rel);
  ck_assert_int_eq(r.argmax_agree, g->n_gen);
  nllm_source src;
  ck_assert_int_eq(nllm_source_open(model, 1, &src), NLLM_OK);
  nllm_status st = nllm_convert_source(&src, gguf, "F32", 1, NULL, NULL);
  nllm_source_free(&src);
  ck_assert_msg(st == NLLM_OK, "convert: %s", nllm_last_error());
  compare_golden(gguf, golden, NLLM_TYPE_F32, &r);
  fprintf(stderr, "%s converted: max rel RMS %.2e, greedy agree %d\n", names[_i], r.max_rel,
          r.argmax_agree);
  ck_assert_msg(r.max_rel < 1e-4, "%s converted: %g", names[_i], r.max_rel);
  ck_assert_int_eq(r.argmax_agree, g->n_gen);
  /* quantized, the router and the shared expert's gate stay F32 and the experts do not */
  ck_assert_int_eq(nllm_source_open(model, 1, &src), NLLM_OK);
  st = nllm_convert_source(&src, gguf, "Q8_0", 1, NULL, NULL);
  nllm_source_free(&src);
  ck_assert_msg(st == NLLM_OK, "convert: %s", nllm_last_error());
  ck_assert_int_eq(nllm_source_open(gguf, 1, &src), NLLM_OK);
  ck_assert_int_eq(nllm_source_tensor(&src, "blk.0.ffn_gate_inp.weight")->type, NLLM_TYPE_F32);
  ck_assert_int_eq(nllm_source_tensor(&src, "blk.0.ffn_up_exps.weight")->type, NLLM_TYPE_Q8_0);
  const nllm_tensor *shg = nllm_source_tensor(&src, "blk.0.ffn_gate_inp_shexp.weight");
  ck_assert(_i == 1 ? shg == NULL : shg != NULL && shg->type == NLLM_TYPE_F32);
  nllm_source_free(&src);
  golden_logits_free(g);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("moe");
  TCase *tc = tcase_create("moe");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, route_ties_lowest_index);
  tcase_add_loop_test(tc, grouped_vs_reference, 0, (int)(sizeof kinds / sizeof kinds[0]));
  tcase_add_test(tc, shared_expert_vs_reference);
  tcase_add_test(tc, unchosen_experts_not_read);
  tcase_add_test(tc, all_tokens_on_one_expert);
  tcase_add_test(tc, batch_equals_one_at_a_time);
  tcase_add_loop_test(tc, model_prompt_equals_decode, 0, 4);
  tcase_add_loop_test(tc, python_reference_models, 0, 2);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
