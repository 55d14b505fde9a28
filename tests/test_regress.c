/* Replays every input under tests/regress/ (crashes found by the fuzzers of fuzz/, kept after the
 * fix) through the same entry point as its harness, and asserts a clean outcome: a status, a
 * message, no handle on failure. A crash here is a regression. The subfolder names the harness:
 *   gguf/         nllm_model_load on the file (GGUF parser, hparams, shapes, tokenizer)
 *   safetensors/  safetensors_parse on the bytes
 *   tokenizer/    stories260K tokenizer: encode the bytes, decode them as ids
 *   chat/         chat template (first NUL-terminated string) with one user message
 *   tokjson/      nllm_tokenizer_from_hf on the file as a tokenizer.json */
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>

#include "formats/safetensors.h"
#include "nativellm.h"
#include "testutil.h"
#include "tokenizer/tokenizer.h"

typedef void (*replay_fn)(const char *path, const uint8_t *data, size_t size);

static int replay_dir(const char *sub, replay_fn fn) {
  char dir[512];
  snprintf(dir, sizeof dir, "tests/regress/%s", sub);
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    size_t size = 0;
    char *data = read_file(path, &size);
    ck_assert_msg(data != NULL, "cannot read %s", path);
    fn(path, (const uint8_t *)data, size);
    free(data);
    n++;
  }
  closedir(d);
  return n;
}

static void replay_gguf(const char *path, const uint8_t *data, size_t size) {
  (void)data;
  (void)size;
  for (int use_mmap = 0; use_mmap < 2; use_mmap++) {
    nllm_model_params mp;
    nllm_model_params_init(&mp);
    mp.use_mmap = use_mmap;
    nllm_model *m = (nllm_model *)1;
    nllm_status st = nllm_model_load(path, &mp, &m);
    if (st == NLLM_OK) { /* some inputs are valid after the fix: they must then work */
      nllm_context_params cp;
      nllm_context_params_init(&cp);
      cp.n_ctx = 4;
      nllm_context *c = NULL;
      if (nllm_context_create(m, &cp, &c) == NLLM_OK) {
        nllm_token t = 0;
        nllm_decode(c, &t, 1);
        nllm_context_free(c);
      }
      nllm_model_free(m);
      continue;
    }
    ck_assert_msg(st < 0 && st >= NLLM_ERR_INTERNAL && st != NLLM_ERR_INTERNAL,
                  "%s: unexpected status %d", path, st);
    ck_assert_msg(m == NULL, "%s: handle left after failure", path);
    ck_assert_msg(strlen(nllm_last_error()) > 0, "%s: failed without a message", path);
  }
}

static void replay_safetensors(const char *path, const uint8_t *data, size_t size) {
  nllm_source src;
  memset(&src, 0, sizeof src);
  nllm_tensor_list list = {0};
  nllm_status st = safetensors_parse(&src, data, size, path, &list);
  ck_assert_msg(st == NLLM_OK || strlen(nllm_last_error()) > 0, "%s: no message", path);
  nllm_tensor_list_free(&list);
  nllm_source_free(&src);
}

static nllm_model *stories;

static void replay_tokenizer(const char *path, const uint8_t *data, size_t size) {
  static nllm_token ids[1 << 16];
  static char out[1 << 18];
  int32_t n = 0, len = 0;
  nllm_status st = nllm_tokenize(stories, (const char *)data, (int32_t)size, 1, 1, ids,
                                 (int32_t)(sizeof ids / sizeof ids[0]), &n);
  ck_assert_msg(st == NLLM_OK, "%s: tokenize: %s", path, nllm_last_error());
  ck_assert_int_eq(nllm_detokenize(stories, ids, n, 1, out, sizeof out, &len), NLLM_OK);
  int32_t n_raw = (int32_t)(size / 4);
  memcpy(ids, data, (size_t)n_raw * 4);
  nllm_detokenize(stories, ids, n_raw, 1, out, sizeof out, &len); /* any status, no crash */
}

static void replay_chat(const char *path, const uint8_t *data, size_t size) {
  char *tmpl = malloc(size + 1);
  memcpy(tmpl, data, size);
  tmpl[size] = 0;
  nllm_chat_message msg = {"user", "hi"};
  static char out[1 << 16];
  int32_t n = 0;
  nllm_status st = nllm_chat_format_template(tmpl, &msg, 1, 1, out, sizeof out, &n);
  ck_assert_msg(st == NLLM_OK || strlen(nllm_last_error()) > 0, "%s: no message", path);
  free(tmpl);
}

static void replay_tokjson(const char *path, const uint8_t *data, size_t size) {
  (void)data;
  (void)size;
  nllm_tokenizer *tok = NULL;
  nllm_status st = nllm_tokenizer_from_hf(path, &tok);
  if (st == NLLM_OK) {
    nllm_token ids[64];
    int32_t n;
    nllm_tok_tokenize(tok, "Hello world", 11, 1, 1, ids, 64, &n);
    nllm_tokenizer_free(tok);
    return;
  }
  ck_assert_msg(tok == NULL && strlen(nllm_last_error()) > 0, "%s: unclean failure", path);
}

START_TEST(replay_all) {
  ck_assert_int_eq(nllm_model_load("models/stories260K.gguf", NULL, &stories), NLLM_OK);
  int n = replay_dir("gguf", replay_gguf) + replay_dir("safetensors", replay_safetensors) +
          replay_dir("tokenizer", replay_tokenizer) + replay_dir("chat", replay_chat) +
          replay_dir("tokjson", replay_tokjson);
  fprintf(stderr, "test_regress: %d inputs replayed\n", n);
  nllm_model_free(stories);
}
END_TEST

int main(void) {
  Suite *s = suite_create("regress");
  TCase *tc = tcase_create("regress");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, replay_all);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
