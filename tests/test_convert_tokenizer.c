/* Conversion writes the GGUF tokenizer keys from the tokenizer the model loads: every Hugging
 * Face test folder, converted to GGUF, tokenizes every test string identically to the folder,
 * renders every token to the same bytes, and keeps the same special-token ids (the Qwen2
 * folder's eos/eot 151645 stay 151645). */
#include <dirent.h>

#include "nativellm.h"
#include "testutil.h"

#define MAX_STRINGS 512

static char *strings[MAX_STRINGS];
static int n_strings;

static void add_string(const char *s, size_t n) {
  if (n_strings == MAX_STRINGS) return;
  char *c = malloc(n + 1);
  memcpy(c, s, n);
  c[n] = 0;
  strings[n_strings++] = c;
}

/* llama.cpp's tokenizer test strings (every .inp of the vocab folder), and markup with
 * special-token text. */
static void load_strings(void) {
  static const char *own[] = {
      "Hello world",
      " leading space and trailing space ",
      "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
      "<s>[INST] What is 2+2? [/INST]</s>",
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
      "<start_of_turn>user\nhello<end_of_turn>",
      "numbers 1234567 and  double  spaces\t\ttabs\n\nnewlines",
      "Ünïcödé – “quotes” 日本語 🦙",
  };
  for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) add_string(own[i], strlen(own[i]));
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/vocab", testdata_dir());
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l < 4 || strcmp(e->d_name + l - 4, ".inp")) continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    size_t len;
    char *text = read_file(path, &len);
    if (!text) continue;
    const char *sep = "\n__ggml_vocab_test__\n";
    for (char *at = text, *end; (end = strstr(at, sep)); at = end + strlen(sep))
      add_string(at, (size_t)(end - at));
    free(text);
  }
  closedir(d);
}

static void tokenize(nllm_model *m, const char *s, int special, nllm_token **ids, int32_t *n) {
  int32_t cap = (int32_t)strlen(s) + 16;
  *ids = malloc((size_t)cap * sizeof **ids);
  ck_assert_int_eq(nllm_tokenize(m, s, (int32_t)strlen(s), 1, special, *ids, cap, n), NLLM_OK);
}

static void check_folder(const char *folder) {
  char out[512];
  snprintf(out, sizeof out, "/tmp/nllm-convert-tok-%d.gguf", (int)getpid());
  nllm_status st = nllm_convert(folder, out, NULL, NULL);
  if (st == NLLM_ERR_UNSUPPORTED) { /* an architecture this build cannot load at all */
    fprintf(stderr, "SKIP: %s: %s\n", folder, nllm_last_error());
    return;
  }
  ck_assert_msg(st == NLLM_OK, "%s: %s", folder, nllm_last_error());
  nllm_model_params p;
  nllm_model_params_init(&p);
  p.vocab_only = 1;
  nllm_model *a = NULL, *b = NULL;
  ck_assert_msg(nllm_model_load(folder, &p, &a) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_msg(nllm_model_load(out, &p, &b) == NLLM_OK, "%s", nllm_last_error());
  for (int32_t w = NLLM_TOKEN_BOS; w <= NLLM_TOKEN_NEWLINE; w++) {
    nllm_token ta = nllm_model_token(a, w), tb = nllm_model_token(b, w);
    ck_assert_msg(ta == tb, "%s: special %d is %d in the folder, %d in the GGUF", folder, w, ta,
                  tb);
    if (ta >= 0) ck_assert_int_eq(nllm_model_token_is_eog(a, ta), nllm_model_token_is_eog(b, tb));
  }
  size_t fl = strlen(folder);
  if (fl >= 10 && !strcmp(folder + fl - 10, "tiny-qwen2")) {
    /* the bug this fixed: eos/eot 151645 became bos = eos = 151643 and no eot */
    ck_assert_int_eq(nllm_model_token(b, NLLM_TOKEN_EOS), 151645);
    ck_assert_int_eq(nllm_model_token(b, NLLM_TOKEN_EOT), 151645);
  }
  int mismatches = 0;
  for (int i = 0; i < n_strings; i++)
    for (int special = 0; special <= 1; special++) {
      nllm_token *ia, *ib;
      int32_t na, nb;
      tokenize(a, strings[i], special, &ia, &na);
      tokenize(b, strings[i], special, &ib, &nb);
      if (na != nb || memcmp(ia, ib, (size_t)na * sizeof *ia)) {
        if (mismatches++ < 3)
          fprintf(stderr, "%s: '%.60s' (special %d): %d tokens in the folder, %d in the GGUF\n",
                  folder, strings[i], special, na, nb);
      }
      free(ia);
      free(ib);
    }
  ck_assert_msg(mismatches == 0, "%s: %d of %d tokenizations differ", folder, mismatches,
                2 * n_strings);
  int32_t nv = nllm_model_n_vocab(a);
  ck_assert_int_le(nv, nllm_model_n_vocab(b));
  for (nllm_token t = 0; t < nv; t++) {
    char pa[256], pb[256];
    int32_t la = 0, lb = 0;
    ck_assert_int_eq(nllm_token_to_piece(a, t, 1, pa, sizeof pa, &la), NLLM_OK);
    ck_assert_int_eq(nllm_token_to_piece(b, t, 1, pb, sizeof pb, &lb), NLLM_OK);
    ck_assert_msg(la == lb && !memcmp(pa, pb, (size_t)la), "%s: token %d renders differently",
                  folder, t);
  }
  nllm_model_free(a);
  nllm_model_free(b);
  remove(out);
}

static int each_folder(const char *root, void (*fn)(const char *)) {
  DIR *d = opendir(root);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    char dir[1024], cfg[1100];
    snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
    snprintf(cfg, sizeof cfg, "%s/tokenizer.json", dir);
    if (e->d_name[0] == '.' || access(cfg, R_OK) != 0) continue;
    fn(dir);
    n++;
  }
  closedir(d);
  return n;
}

START_TEST(committed_folders) {
  ck_assert_int_gt(each_folder("tests/data/hf", check_folder), 0);
}
END_TEST

START_TEST(shared_folders) {
  char root[1024];
  if (!testdata_path(root, sizeof root, "hf")) return;
  ck_assert_int_gt(each_folder(root, check_folder), 0);
}
END_TEST

int main(void) {
  load_strings();
  Suite *s = suite_create("convert_tokenizer");
  TCase *tc = tcase_create("convert_tokenizer");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, committed_folders);
  tcase_add_test(tc, shared_folders);
  suite_add_tcase(s, tc);
  int rc = run_suite(s);
  for (int i = 0; i < n_strings; i++) free(strings[i]);
  return rc;
}
