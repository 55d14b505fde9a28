/* The nllm command line as other programs drive it: exact output formats, one-line errors with a
 * non-zero exit, and the golden story from `nllm run --temp 0`. */
#include "cliutil.h"

START_TEST(run_greedy_ids_golden) {
  char golden[1024], cmd[2048];
  if (!testdata_path(golden, sizeof golden, "golden/logits/stories260K-F32.greedy250.ids.txt"))
    return;
  golden_logits *g = golden_logits_load(golden);
  snprintf(cmd, sizeof cmd, "%s run -p 'Once upon a time' -n 250 --temp 0 --ids", nllm_bin);
  char *out = NULL, *err = NULL;
  ck_assert_int_eq(run(cmd, &out, &err), 0);
  int ids[512];
  int n = parse_ids(out, ids, 512);
  ck_assert_int_gt(n, 100); /* the story may end with EOS before 250 */
  ck_assert_mem_eq(ids, g->gen_ids, sizeof(int) * (size_t)n);
  ck_assert_msg(strstr(err, "tokens/s"), "timings on stderr: %s", err);
  free(out);
  free(err);
  /* text mode prints the prompt, then the Lily story */
  snprintf(cmd, sizeof cmd, "%s run -p 'Once upon a time' -n 40 --temp 0", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_msg(strncmp(out, "Once upon a time, there was a little girl named Lily", 52) == 0, "%s",
                out);
  free(out);
  golden_logits_free(g);
}
END_TEST

START_TEST(tokenize_formats) {
  char cmd[2048], *out;
  snprintf(cmd, sizeof cmd, "%s tokenize -p 'Once upon a time'", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_str_eq(out, "1 403 407 261 378\n");
  free(out);
  snprintf(cmd, sizeof cmd, "%s tokenize -p 'Once upon a time' --no-bos", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_str_eq(out, "403 407 261 378\n");
  free(out);
  /* -f: the file's bytes exactly, trailing newline included */
  FILE *f = fopen("/tmp/nllm-cli-prompt.txt", "w");
  fputs("Once upon a time\n", f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "%s tokenize -f /tmp/nllm-cli-prompt.txt --no-bos", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_msg(strncmp(out, "403 407 261 378 ", 16) == 0, "%s", out); /* + newline token(s) */
  free(out);
  remove("/tmp/nllm-cli-prompt.txt");
  char tj[1024];
  if (testdata_path(tj, sizeof tj, "tokenizers/hf/qwen2.5/tokenizer.json")) {
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer %s -p 'Hello world'", nllm_bin, tj);
    ck_assert_int_eq(run(cmd, &out, NULL), 0);
    ck_assert_str_eq(out, "9707 1879\n");
    free(out);
  }
}
END_TEST

START_TEST(errors_are_one_line) {
  static const char *bad[] = {
      "run -m /nonexistent/x.gguf -p hi",
      "run --temp abc",
      "run -c 0",
      "bogus",
      "run --no-such-option",
      "tokenize",
      "logits -p hi",
      "run -m Makefile",
      "run --top-p 2",
      "run -n -5",
      "info -m /dev/null",
      "run -ngl -1",
#ifndef NLLM_CUDA /* GPU options are refused by a build without CUDA */
      "run --gpu -p hi",
      "bench -ngl 2 -p 4 -n 2",
#endif
  };
  char cmd[2048];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s %s", nllm_bin, bad[i]);
    int rc = run(cmd, &out, &err);
    ck_assert_msg(rc != 0, "'%s' exited 0", bad[i]);
    ck_assert_msg(strncmp(err, "nllm: error: ", 13) == 0, "'%s': stderr '%s'", bad[i], err);
    char *nl = strchr(err, '\n');
    ck_assert_msg(nl && nl[1] == 0, "'%s': more than one line: '%s'", bad[i], err);
    free(out);
    free(err);
  }
}
END_TEST

START_TEST(logits_and_info) {
  char cmd[2048], *out;
  snprintf(cmd, sizeof cmd, "%s logits -p 'Once upon a time' -n 4 -o /tmp/nllm-cli-%d.logits",
           nllm_bin, (int)getpid());
  ck_assert_int_eq(run(cmd, NULL, NULL), 0);
  char path[128];
  snprintf(path, sizeof path, "/tmp/nllm-cli-%d.logits", (int)getpid());
  golden_logits *g = golden_logits_load(path);
  ck_assert_ptr_nonnull(g);
  ck_assert_int_eq(g->n_prompt, 5);
  ck_assert_int_eq(g->n_gen, 4);
  ck_assert_int_eq(g->n_vocab, 512);
  ck_assert_int_eq(g->n_pos, 9);
  ck_assert_int_eq(g->gen_ids[0], 432);
  golden_logits_free(g);
  remove(path);
  snprintf(cmd, sizeof cmd, "%s logits --prompt-ids '1 403 407' -n 2 -o /tmp/nllm-cli-%d.logits",
           nllm_bin, (int)getpid());
  ck_assert_int_eq(run(cmd, NULL, NULL), 0);
  remove(path);
  snprintf(cmd, sizeof cmd, "%s info", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert(strstr(out, "architecture: llama"));
  ck_assert(strstr(out, "token_embd.weight"));
  free(out);
  snprintf(cmd, sizeof cmd, "%s --help", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert(strstr(out, "tokenize") && strstr(out, "bench") && strstr(out, "chat"));
  free(out);
  snprintf(cmd, sizeof cmd, "%s run --help", nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert(strstr(out, "--repeat-penalty"));
  free(out);
}
END_TEST

START_TEST(chat_reuses_cache) {
  char cmd[2048], *out;
  snprintf(cmd, sizeof cmd,
           "printf 'Hello\\nTell me more\\n' | %s chat --chat-template chatml -n 8 --temp 0",
           nllm_bin);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_int_gt((int)strlen(out), 4);
  free(out);
}
END_TEST

int main(void) {
  cli_setup();
  Suite *s = suite_create("cli");
  TCase *tc = tcase_create("cli");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, run_greedy_ids_golden);
  tcase_add_test(tc, tokenize_formats);
  tcase_add_test(tc, errors_are_one_line);
  tcase_add_test(tc, logits_and_info);
  tcase_add_test(tc, chat_reuses_cache);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
