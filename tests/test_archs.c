/* Every architecture in the table against a float64 reference of its Hugging Face modeling
 * equations: tests/data/hf/<name>/ are tiny Hub-style folders written by
 * tools/make_hf_testmodels.py (random BF16 weights; see tests/data/hf/README.md). Each must match
 * its golden logits at every position when loaded as a folder, and again after `nllm convert` to
 * GGUF. The reference is exact for the stored weights, so F32 compute lands near 1e-6. */
#include "convert/convert.h"
#include "modelutil.h"

static const char *const folders[] = {"tiny-gemma", "tiny-gemma2", "tiny-phi3", "tiny-mistral"};
enum { N_FOLDERS = sizeof folders / sizeof folders[0] };

/* Generated files ship with the repository, so unlike ../shared data they must be there. */
static void folder_paths(int i, char *dir, size_t dcap, char *golden, size_t gcap) {
  snprintf(dir, dcap, "tests/data/hf/%s", folders[i]);
  snprintf(golden, gcap, "%s/golden.logits.txt", dir);
  ck_assert_msg(access(golden, R_OK) == 0, "%s is missing (tools/make_hf_testmodels.py writes it)",
                golden);
}

static void check(const char *what, const char *model, const char *golden) {
  cmp_result r;
  compare_golden(model, golden, NLLM_TYPE_F32, &r);
  golden_logits *g = golden_logits_load(golden);
  fprintf(stderr, "%-28s max rel RMS %.2e over %d rows, greedy agree %d/%d\n", what, r.max_rel,
          r.n_rows, r.argmax_agree, g->n_gen);
  ck_assert_int_eq(r.n_rows, g->n_pos);
  ck_assert_msg(r.max_rel < 1e-4, "%s: max rel RMS %g", what, r.max_rel);
  ck_assert_int_eq(r.argmax_agree, g->n_gen);
  golden_logits_free(g);
}

START_TEST(folder_matches_golden) {
  char dir[256], golden[320];
  folder_paths(_i, dir, sizeof dir, golden, sizeof golden);
  check(folders[_i], dir, golden);
}
END_TEST

static const struct {
  const char *folder, *key;
  double value;
} gguf_keys[] = {
    {"tiny-gemma", "gemma.attention.key_length", 16},
    {"tiny-gemma", "gemma.attention.head_count_kv", 1},
    {"tiny-gemma2", "gemma2.attn_logit_softcapping", 4},
    {"tiny-gemma2", "gemma2.final_logit_softcapping", 3},
    {"tiny-gemma2", "gemma2.attention.sliding_window", 4},
    {"tiny-gemma2", "gemma2.attention.key_length", 16},
    {"tiny-phi3", "phi3.rope.dimension_count", 12},
    {"tiny-phi3", "phi3.attention.sliding_window", 262144},
    {"tiny-mistral", "llama.attention.sliding_window", 5},
};

START_TEST(converted_gguf_matches_golden) {
  char dir[256], golden[320], out[256], what[64];
  folder_paths(_i, dir, sizeof dir, golden, sizeof golden);
  snprintf(out, sizeof out, "/tmp/nllm-test-archs-%d-%s.gguf", (int)getpid(), folders[_i]);
  nllm_source src;
  ck_assert_int_eq(nllm_source_open(dir, 1, &src), NLLM_OK);
  nllm_status st = nllm_convert_source(&src, out, "F32", 1, NULL, NULL);
  nllm_source_free(&src);
  ck_assert_msg(st == NLLM_OK, "convert %s: %s", dir, nllm_last_error());
  snprintf(what, sizeof what, "%s (GGUF)", folders[_i]);
  check(what, out, golden);
  /* the keys llama.cpp's converter writes for these architectures, under its names */
  ck_assert_int_eq(nllm_source_open(out, 1, &src), NLLM_OK);
  for (size_t k = 0; k < sizeof gguf_keys / sizeof gguf_keys[0]; k++) {
    if (strcmp(gguf_keys[k].folder, folders[_i]) != 0) continue;
    double v = -1;
    ck_assert_msg(nllm_source_get_float(&src, gguf_keys[k].key, &v) == NLLM_OK, "%s: %s missing",
                  out, gguf_keys[k].key);
    ck_assert_msg(v == gguf_keys[k].value, "%s: %s = %g, expected %g", out, gguf_keys[k].key, v,
                  gguf_keys[k].value);
  }
  for (int64_t k = 0; k < src.n_kv; k++) /* engine-private keys stay out, except the eog list */
    ck_assert_msg(!strstr(src.kv[k].key, "nllm.") || !strcmp(src.kv[k].key, "nllm.eog_token_ids"),
                  "%s: stray key %s", out, src.kv[k].key);
  nllm_source_free(&src);
  remove(out);
}
END_TEST

int main(void) {
  Suite *s = suite_create("archs");
  TCase *tc = tcase_create("golden");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, folder_matches_golden, 0, N_FOLDERS);
  tcase_add_loop_test(tc, converted_gguf_matches_golden, 0, N_FOLDERS);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
