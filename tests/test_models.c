/* Real models against golden outputs of other implementations (../shared/testdata): logits of
 * every position within the README's bounds, greedy sequences exact. Golden generated ids are
 * fed back (teacher forcing) so every row is comparable even after a near-tie. */
#include "convert/convert.h"
#include "modelutil.h"

START_TEST(stories260k_logits) {
  char golden[1024];
  if (!testdata_path(golden, sizeof golden, "golden/logits/stories260K-F32.logits.txt")) return;
  cmp_result r;
  /* F32 cache: the remaining difference is llama.cpp's own F16 cache (measured 7.7e-4). */
  compare_golden("models/stories260K.gguf", golden, NLLM_TYPE_F32, &r);
  ck_assert_int_eq(r.n_rows, 28);
  ck_assert_msg(r.max_rel < 2e-3, "max rel RMS %g", r.max_rel);
  ck_assert_int_eq(r.argmax_agree, 16);
  compare_golden("models/stories260K.gguf", golden, NLLM_TYPE_F16, &r);
  ck_assert_msg(r.max_rel < 2e-3, "F16 cache: max rel RMS %g", r.max_rel);
  ck_assert_int_eq(r.argmax_agree, 16);
}
END_TEST

START_TEST(stories260k_greedy250) {
  char golden[1024];
  if (!testdata_path(golden, sizeof golden, "golden/logits/stories260K-F32.greedy250.ids.txt"))
    return;
  golden_logits *g = golden_logits_load(golden);
  ck_assert_int_eq(g->n_gen, 250);
  nllm_model *m = NULL;
  ck_assert_int_eq(nllm_model_load("models/stories260K.gguf", NULL, &m), NLLM_OK);
  nllm_context *ctx = NULL;
  ck_assert_int_eq(nllm_context_create(m, NULL, &ctx), NLLM_OK);
  ck_assert_int_eq(nllm_decode(ctx, g->prompt_ids, g->n_prompt), NLLM_OK);
  for (int j = 0; j < 250; j++) {
    int t = argmax(nllm_get_logits(ctx), nllm_model_n_vocab(m));
    ck_assert_msg(t == g->gen_ids[j], "greedy token %d: got %d, golden %d", j, t, g->gen_ids[j]);
    ck_assert_int_eq(nllm_decode(ctx, &t, 1), NLLM_OK);
  }
  nllm_context_free(ctx);
  nllm_model_free(m);
  golden_logits_free(g);
}
END_TEST

/* Every tiny-a quantization against llama.cpp's answer and the exact (dequantized) answer. The
 * README: llama.cpp's own quantized-file logits land 2-9% from the exact answer (F16 < 0.5%,
 * BF16 < 3%), because it quantizes activations to 8 bits; we do too, with other rounding, so we
 * land 3-7% from exact and about sqrt(2) x that from llama.cpp (two independent noise draws of
 * this sensitive random model). A wrong block layout, scale or nibble order shows as 30%+. */
static const struct {
  const char *type;
  double vs_llamacpp, vs_exact;
} tiny_a[] = {
    {"F16", 0.005, 0.005},  {"BF16", 0.03, 0.03},   {"Q8_0", 0.13, 0.09},   {"Q4_0", 0.13, 0.09},
    {"Q4_1", 0.13, 0.09},   {"Q5_0", 0.13, 0.09},   {"Q5_1", 0.13, 0.09},   {"Q2_K", 0.13, 0.09},
    {"Q3_K_M", 0.13, 0.09}, {"Q4_K_M", 0.13, 0.09}, {"Q5_K_M", 0.13, 0.09}, {"Q6_K", 0.13, 0.09},
    {"IQ4_NL", 0.13, 0.09}, {"IQ4_XS", 0.13, 0.09},
};

static void check_tiny_a(const char *dir, const char *type, double vs_llamacpp, double vs_exact) {
  char model[1024], golden[1024], exact[1024], rel[256];
  snprintf(rel, sizeof rel, "golden/models/%stiny-a-%s.gguf", dir, type);
  if (!testdata_path(model, sizeof model, rel)) return;
  snprintf(rel, sizeof rel, "golden/logits/tiny-a-%s.logits.txt", type);
  if (!testdata_path(golden, sizeof golden, rel)) return;
  nllm_model *m = NULL;
  nllm_status st = nllm_model_load(model, NULL, &m);
  if (st == NLLM_ERR_UNSUPPORTED) {
    /* A format this build cannot compute yet is a failure, not a skip. */
    ck_abort_msg("tiny-a-%s: %s", type, nllm_last_error());
  }
  nllm_model_free(m);
  cmp_result r;
  compare_golden(model, golden, NLLM_TYPE_F16, &r);
  fprintf(stderr, "tiny-a-%-7s vs llama.cpp: max rel RMS %.4f over %d rows, greedy agree %d\n",
          type, r.max_rel, r.n_rows, r.argmax_agree);
  ck_assert_msg(r.max_rel < vs_llamacpp, "tiny-a-%s vs llama.cpp: %g", type, r.max_rel);
  snprintf(rel, sizeof rel, "golden/logits/tiny-a-%s.dequant.logits.txt", type);
  snprintf(exact, sizeof exact, "%s/%s", testdata_dir(), rel);
  if (access(exact, R_OK) == 0) {
    compare_golden(model, exact, NLLM_TYPE_F32, &r);
    fprintf(stderr, "tiny-a-%-7s vs exact:     max rel RMS %.4f over %d rows\n", type, r.max_rel,
            r.n_rows);
    ck_assert_msg(r.max_rel < vs_exact, "tiny-a-%s vs exact: %g", type, r.max_rel);
  }
}

START_TEST(tiny_a_logits) {
  check_tiny_a("", tiny_a[_i].type, tiny_a[_i].vs_llamacpp, tiny_a[_i].vs_exact);
}
END_TEST

/* bf16_activations touches BF16 weights only: a quantized model's logits are the same bits
 * with the activations' rounding on (the default where the CPU has AVX512_BF16) as off. With it
 * on, these models now take the grouped q/k/v and gate/up matmuls (kernels/cpu/forward_ops.c),
 * which must add as the single ones do. */
START_TEST(bf16_mode_leaves_quantized_models) {
  static const char *types[] = {"Q8_0", "Q4_K_M", "Q4_0"};
  char model[1024], golden[1024], rel[256];
  snprintf(rel, sizeof rel, "golden/models/tiny-a-%s.gguf", types[_i]);
  if (!testdata_path(model, sizeof model, rel)) return;
  snprintf(rel, sizeof rel, "golden/logits/tiny-a-%s.logits.txt", types[_i]);
  if (!testdata_path(golden, sizeof golden, rel)) return;
  golden_logits *g = golden_logits_load(golden);
  ck_assert_ptr_nonnull(g);
  nllm_model *m = NULL;
  ck_assert_int_eq(nllm_model_load(model, NULL, &m), NLLM_OK);
  float *rows[2];
  const size_t n_row = (size_t)g->n_vocab * (size_t)g->n_prompt;
  for (int mode = 0; mode < 2; mode++) {
    nllm_context *ctx =
        golden_context_mode(m, g, NLLM_TYPE_F16, mode ? NLLM_BF16_ACT_ROUND : NLLM_BF16_ACT_EXACT);
    ck_assert_int_eq(nllm_decode(ctx, g->prompt_ids, g->n_prompt), NLLM_OK);
    rows[mode] = malloc(n_row * sizeof(float));
    for (int pos = 0; pos < g->n_prompt; pos++) {
      const float *row = nllm_get_logits_ith(ctx, pos);
      ck_assert_ptr_nonnull(row);
      memcpy(rows[mode] + (size_t)pos * (size_t)g->n_vocab, row,
             (size_t)g->n_vocab * sizeof(float));
    }
    nllm_context_free(ctx);
  }
  ck_assert_msg(memcmp(rows[0], rows[1], n_row * sizeof(float)) == 0,
                "tiny-a-%s: logits differ with BF16 activations on", types[_i]);
  free(rows[0]);
  free(rows[1]);
  nllm_model_free(m);
  golden_logits_free(g);
}
END_TEST

/* The load-only low-bit files (golden/models/lowbit/). The README's calibration: llama.cpp's
 * own run lands 3.9% (mean) / 6.0% (max) from the exact answer for TQ1_0 / TQ2_0 (the same
 * ternary values); the bounds are the other types'. */
static const struct {
  const char *type;
  double vs_llamacpp, vs_exact;
} tiny_a_lowbit[] = {
    {"TQ1_0", 0.13, 0.09},  {"TQ2_0", 0.13, 0.09}, {"IQ2_XXS", 0.13, 0.09},
    {"IQ2_XS", 0.13, 0.09}, {"IQ2_S", 0.13, 0.09}, {"IQ3_XXS", 0.13, 0.09},
    {"IQ3_S", 0.13, 0.09},  {"IQ1_S", 0.13, 0.09}, {"IQ1_M", 0.13, 0.09},
};

START_TEST(tiny_a_lowbit_logits) {
  check_tiny_a("lowbit/", tiny_a_lowbit[_i].type, tiny_a_lowbit[_i].vs_llamacpp,
               tiny_a_lowbit[_i].vs_exact);
}
END_TEST

/* The 8-expert top-2 moe-a files (README "Mixture-of-Experts: moe-a"). The dequantized run
 * checks the arithmetic exactly. The quantized runs: routing is discrete, and where two router
 * logits nearly tie (gaps down to 0.004 in these files) the rounding of the 8-bit activations
 * decides which expert runs; a swapped expert moves that position by 10-30% (README), and a
 * swap in an early prompt position reaches every later one through its K/V. We round the
 * activations as llama.cpp does, so against its run (same F16 cache) we land 2-4% (mean);
 * against the exact answer (F32 cache) moe-a-Q4_0 swaps at position 1 and lands 8% (mean),
 * with the F16 cache 3%. Bounds: the mean within those, any row within one swap. */
static const char *const moe_a[] = {"Q8_0", "Q4_K_M", "Q4_0"};

START_TEST(moe_a_logits) {
  char model[1024], golden[1024], exact[1024], rel[256];
  const char *type = moe_a[_i];
  snprintf(rel, sizeof rel, "golden/models/moe-a-%s.gguf", type);
  if (!testdata_path(model, sizeof model, rel)) return;
  snprintf(rel, sizeof rel, "golden/logits/moe-a-%s.logits.txt", type);
  if (!testdata_path(golden, sizeof golden, rel)) return;
  snprintf(rel, sizeof rel, "golden/logits/moe-a-%s.dequant.logits.txt", type);
  if (!testdata_path(exact, sizeof exact, rel)) return;
  cmp_result r;
  /* The file's weights dequantized to F32 (nllm convert) against llama.cpp on the same
   * dequantized weights: the experts' arithmetic itself, exact to F32 rounding. */
  char out[256];
  snprintf(out, sizeof out, "/tmp/nllm-test-%d-moe-a-%s-F32.gguf", (int)getpid(), type);
  nllm_source src;
  ck_assert_int_eq(nllm_source_open(model, 1, &src), NLLM_OK);
  nllm_status st = nllm_convert_source(&src, out, "F32", 1, NULL, NULL);
  nllm_source_free(&src);
  ck_assert_msg(st == NLLM_OK, "convert: %s", nllm_last_error());
  compare_golden(out, exact, NLLM_TYPE_F32, &r);
  remove(out);
  fprintf(stderr, "moe-a-%-7s dequantized:  max rel RMS %.2e over %d rows, greedy agree %d\n", type,
          r.max_rel, r.n_rows, r.argmax_agree);
  ck_assert_msg(r.max_rel < 1e-4, "moe-a-%s dequantized vs exact: %g", type, r.max_rel);
  compare_golden(model, golden, NLLM_TYPE_F16, &r);
  fprintf(stderr,
          "moe-a-%-7s vs llama.cpp: rel RMS mean %.4f max %.4f over %d rows, greedy agree %d\n",
          type, r.mean_rel, r.max_rel, r.n_rows, r.argmax_agree);
  ck_assert_msg(r.mean_rel < 0.06 && r.max_rel < 0.35, "moe-a-%s vs llama.cpp: mean %g max %g",
                type, r.mean_rel, r.max_rel);
  compare_golden(model, exact, NLLM_TYPE_F32, &r);
  fprintf(stderr,
          "moe-a-%-7s vs exact:     rel RMS mean %.4f max %.4f over %d rows, greedy agree %d\n",
          type, r.mean_rel, r.max_rel, r.n_rows, r.argmax_agree);
  ck_assert_msg(r.mean_rel < 0.12 && r.max_rel < 0.35, "moe-a-%s vs exact: mean %g max %g", type,
                r.mean_rel, r.max_rel);
}
END_TEST

/* The BF16 folders against their float64 references, in both BF16 activation modes (the loop's
 * second half rounds them to BF16, which the default does on CPUs with AVX512_BF16). */
START_TEST(hf_folders) {
  static const char *dirs[] = {"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-mixtral",
                               "tiny-qwen3-moe"};
  const char *name = dirs[_i % 5];
  const int round = _i / 5;
  char dir[1024], golden[1024], rel[256];
  snprintf(rel, sizeof rel, "hf/%s/golden.logits.txt", name);
  if (!testdata_path(golden, sizeof golden, rel)) return;
  snprintf(dir, sizeof dir, "%s/hf/%s", testdata_dir(), name);
  cmp_result r;
  compare_golden_mode(dir, golden, NLLM_TYPE_F32, round ? NLLM_BF16_ACT_ROUND : NLLM_BF16_ACT_EXACT,
                      &r);
  fprintf(stderr, "%s%s: max rel RMS %.2e over %d rows, greedy agree %d\n", name,
          round ? " (BF16 activations)" : "", r.max_rel, r.n_rows, r.argmax_agree);
  /* F32 compute on BF16 weights: the bound is 1e-3; we land near the files' rounding.
   * Rounded activations: the references' README expects 1e-3..1e-2. */
  ck_assert_msg(r.max_rel < (round ? 2e-2 : 1e-4), "%s: %g", name, r.max_rel);
  golden_logits *g = golden_logits_load(golden);
  ck_assert_int_eq(r.argmax_agree, g->n_gen);
  golden_logits_free(g);
}
END_TEST

/* nllm convert: the GGUF written from each HF folder gives the same logits (tiny-llama's q/k rows
 * are permuted into GGUF's rope layout on the way, so this also checks that permutation). */
START_TEST(hf_converted_to_gguf) {
  static const char *dirs[] = {"tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-mixtral",
                               "tiny-qwen3-moe"};
  char dir[1024], golden[1024], rel[256], out[256];
  snprintf(rel, sizeof rel, "hf/%s/golden.logits.txt", dirs[_i]);
  if (!testdata_path(golden, sizeof golden, rel)) return;
  snprintf(dir, sizeof dir, "%s/hf/%s", testdata_dir(), dirs[_i]);
  snprintf(out, sizeof out, "/tmp/nllm-test-%d-%s.gguf", (int)getpid(), dirs[_i]);
  nllm_source src;
  ck_assert_int_eq(nllm_source_open(dir, 1, &src), NLLM_OK);
  nllm_status st = nllm_convert_source(&src, out, "F32", 1, NULL, NULL);
  nllm_source_free(&src);
  ck_assert_msg(st == NLLM_OK, "convert: %s", nllm_last_error());
  cmp_result r;
  compare_golden(out, golden, NLLM_TYPE_F32, &r);
  remove(out);
  fprintf(stderr, "%s converted: max rel RMS %.2e, greedy agree %d\n", dirs[_i], r.max_rel,
          r.argmax_agree);
  ck_assert_msg(r.max_rel < 1e-4, "%s converted: %g", dirs[_i], r.max_rel);
}
END_TEST

START_TEST(llama2_tiny_random_loads) {
  char model[1024], golden[1024];
  if (!testdata_path(model, sizeof model, "models/llama-2-tiny-random/llama-2-tiny-random.gguf") ||
      !testdata_path(golden, sizeof golden, "golden/logits/llama-2-tiny-random.logits.txt"))
    return;
  golden_logits *g = golden_logits_load(golden);
  nllm_model *m = NULL;
  ck_assert_msg(nllm_model_load(model, NULL, &m) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(nllm_model_n_vocab(m), 32000);
  ck_assert_int_eq(nllm_model_n_embd(m), 8);
  /* The full Llama 2 vocabulary tokenizes the README prompt to llama.cpp's ids. */
  int ids[64], n = 0;
  ck_assert_int_eq(
      nllm_tokenize(m, "Once upon a time, there was a little dog", -1, 1, 0, ids, 64, &n), NLLM_OK);
  ck_assert_int_eq(n, g->n_prompt);
  ck_assert_mem_eq(ids, g->prompt_ids, sizeof(int) * (size_t)n);
  /* ...and greedy decoding on its F16 weights picks llama.cpp's 16 tokens. */
  nllm_context *ctx = NULL;
  ck_assert_int_eq(nllm_context_create(m, NULL, &ctx), NLLM_OK);
  ck_assert_int_eq(nllm_decode(ctx, ids, n), NLLM_OK);
  for (int j = 0; j < g->n_gen; j++) {
    const float *l = nllm_get_logits(ctx);
    for (int i = 0; i < 32000; i++) ck_assert(isfinite(l[i]));
    int t = argmax(l, 32000);
    ck_assert_msg(t == g->gen_ids[j], "greedy %d: %d vs golden %d", j, t, g->gen_ids[j]);
    ck_assert_int_eq(nllm_decode(ctx, &t, 1), NLLM_OK);
  }
  nllm_context_free(ctx);
  nllm_model_free(m);
  golden_logits_free(g);
}
END_TEST

int main(void) {
  Suite *s = suite_create("models");
  TCase *tc = tcase_create("golden");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, stories260k_logits);
  tcase_add_test(tc, stories260k_greedy250);
  tcase_add_loop_test(tc, tiny_a_logits, 0, (int)(sizeof tiny_a / sizeof tiny_a[0]));
  tcase_add_loop_test(tc, tiny_a_lowbit_logits, 0,
                      (int)(sizeof tiny_a_lowbit / sizeof tiny_a_lowbit[0]));
  tcase_add_loop_test(tc, moe_a_logits, 0, (int)(sizeof moe_a / sizeof moe_a[0]));
  tcase_add_loop_test(tc, bf16_mode_leaves_quantized_models, 0, 3);
  tcase_add_loop_test(tc, hf_folders, 0, 10);
  tcase_add_loop_test(tc, hf_converted_to_gguf, 0, 5);
  tcase_add_test(tc, llama2_tiny_random_loads);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
