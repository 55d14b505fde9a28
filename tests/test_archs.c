/* Every architecture in the table against a float64 reference of its Hugging Face modeling
 * equations: tests/data/hf/<name>/ are tiny Hub-style folders written by
 * tools/make_hf_testmodels.py (random BF16 weights; see tests/data/hf/README.md). Each must match
 * its golden logits at every position when loaded as a folder, and again after `nllm convert` to
 * GGUF. The reference is exact for the stored weights, so F32 compute (BF16 activations
 * exact, not rounded) lands near 1e-6. */
#include "convert/convert.h"
#include "model/model.h"
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
  compare_golden_mode(model, golden, NLLM_TYPE_F32, NLLM_BF16_ACT_EXACT, &r);
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

/* A file of an architecture outside the table is refused with UNSUPPORTED, and the message lists
 * every row of the table by name (it is built from the table). */
START_TEST(unknown_arch_names_the_supported_ones) {
  char path[128];
  snprintf(path, sizeof path, "/tmp/nllm-test-archs-%d-mamba.gguf", (int)getpid());
  nllm_gguf_writer *w = NULL;
  ck_assert_int_eq(nllm_gguf_writer_create(&w), NLLM_OK);
  const char *toks[4] = {"<unk>", "<s>", "</s>", "a"};
  float scores[4] = {0, 0, 0, -1}, data[4 * 8] = {0};
  int32_t types[4] = {2, 3, 3, 1};
  int64_t ne[2] = {8, 4};
  ck_assert(!nllm_gguf_set_str(w, "general.architecture", "mamba") &&
            !nllm_gguf_set_str(w, "tokenizer.ggml.model", "llama") &&
            !nllm_gguf_set_str_array(w, "tokenizer.ggml.tokens", toks, 4) &&
            !nllm_gguf_set_f32_array(w, "tokenizer.ggml.scores", scores, 4) &&
            !nllm_gguf_set_i32_array(w, "tokenizer.ggml.token_type", types, 4) &&
            !nllm_gguf_add_tensor(w, "token_embd.weight", NLLM_TYPE_F32, 2, ne, data, sizeof data));
  ck_assert_int_eq(nllm_gguf_write(w, path), NLLM_OK);
  nllm_gguf_writer_free(w);
  nllm_model *m = NULL;
  nllm_status st = nllm_model_load(path, NULL, &m);
  remove(path);
  ck_assert_msg(st == NLLM_ERR_UNSUPPORTED, "%s: %s", nllm_status_name(st), nllm_last_error());
  ck_assert_ptr_null(m);
  const char *msg = nllm_last_error();
  ck_assert_msg(strstr(msg, "'mamba'"), "%s", msg);
  static const char *const names[] = {"llama", "mistral", "qwen2", "qwen3", "qwen3moe",
                                      "gemma", "gemma2",  "phi3",  "bert"};
  const char *list = strstr(msg, "supported: ");
  ck_assert_msg(list, "%s", msg);
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    ck_assert_msg(nllm_arch_find(names[i]), "%s is not in the table", names[i]);
    ck_assert_msg(strstr(list, names[i]), "%s missing from: %s", names[i], msg);
  }
  ck_assert_ptr_null(nllm_arch_find("mamba"));
}
END_TEST

int main(void) {
  Suite *s = suite_create("archs");
  TCase *tc = tcase_create("golden");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, folder_matches_golden, 0, N_FOLDERS);
  tcase_add_loop_test(tc, converted_gguf_matches_golden, 0, N_FOLDERS);
  tcase_add_test(tc, unknown_arch_names_the_supported_ones);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
