/* `nllm convert` / `nllm quantize` / `--quantize` as a user drives them: weight-type names in
 * any case with presets, valid names listed on error (issue 22 item 8), the destination
 * checked first and errors on their own line (issue 22 item 4), progress as plain lines when
 * stderr is not a terminal. */
#include "cliutil.h"

static char out_file[256];

static void setup_out(void) {
  snprintf(out_file, sizeof out_file, "/tmp/nllm-cli-convert-%d.gguf", (int)getpid());
}

START_TEST(quantize_bad_destination_fails_first) {
  char cmd[2048], *out, *err;
  snprintf(cmd, sizeof cmd, "%s quantize models/stories260K.gguf /no/such/dir/x.gguf Q8_0",
           nllm_bin);
  ck_assert_int_eq(run(cmd, &out, &err), 1);
  /* one line, starting the output: no progress before it, the user's path in it */
  ck_assert_msg(strncmp(err, "nllm: error: ", 13) == 0, "%s", err);
  char *nl = strchr(err, '\n');
  ck_assert_msg(nl && nl[1] == 0, "more than one line: %s", err);
  ck_assert_msg(strstr(err, "/no/such/dir/x.gguf") && !strstr(err, ".tmp."), "%s", err);
  ck_assert(!strchr(err, '%') && !strchr(err, '\r'));
  free(out);
  free(err);
}
END_TEST

START_TEST(quantize_progress_plain_lines_and_summary) {
  char cmd[2048], *out, *err;
  snprintf(cmd, sizeof cmd, "%s quantize models/stories260K.gguf %s q4_k_m -t 1", nllm_bin,
           out_file);
  ck_assert_int_eq(run(cmd, &out, &err), 0);
  ck_assert_msg(!strchr(err, '\r'), "a \\r in non-terminal output: %s", err);
  ck_assert_msg(strstr(err, "100%"), "%s", err);
  ck_assert_msg(strstr(err, "wrote ") && strstr(err, " -> ") && strstr(err, " s\n"), "%s", err);
  ck_assert_int_eq(access(out_file, R_OK), 0);
  free(out);
  free(err);
  /* the written file runs */
  snprintf(cmd, sizeof cmd, "%s run -m %s -p 'Once upon a time' -n 4 --temp 0", nllm_bin, out_file);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  free(out);
  remove(out_file);
}
END_TEST

START_TEST(type_names_same_parser_everywhere) {
  static const char *ok[] = {
      "quantize models/stories260K.gguf OUT Q8_0", "quantize models/stories260K.gguf OUT q8_0",
      "convert models/stories260K.gguf OUT f16",   "convert models/stories260K.gguf OUT",
      "run --quantize q8_0 -p hi -n 2 --temp 0",   "run --quantize Q4_K -p hi -n 2 --temp 0",
  };
  static const char *bad[] = {
      "quantize models/stories260K.gguf OUT q9_0",
      "convert models/stories260K.gguf OUT Q4_K_X",
      "run --quantize q9_0 -p hi -n 2",
      "quantize models/stories260K.gguf OUT",
  };
  char cmd[2048], *err;
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    char line[512], *o = strstr(ok[i], "OUT");
    snprintf(line, sizeof line, "%.*s%s%s", o ? (int)(o - ok[i]) : (int)strlen(ok[i]), ok[i],
             o ? out_file : "", o ? o + 3 : "");
    snprintf(cmd, sizeof cmd, "%s %s", nllm_bin, line);
    ck_assert_msg(run(cmd, NULL, &err) == 0, "'%s': %s", line, err);
    free(err);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char line[512], *o = strstr(bad[i], "OUT");
    snprintf(line, sizeof line, "%.*s%s%s", o ? (int)(o - bad[i]) : (int)strlen(bad[i]), bad[i],
             o ? out_file : "", o ? o + 3 : "");
    snprintf(cmd, sizeof cmd, "%s %s", nllm_bin, line);
    ck_assert_msg(run(cmd, NULL, &err) == 1, "'%s' did not fail", line);
    ck_assert_msg(strncmp(err, "nllm: error: ", 13) == 0, "'%s': %s", line, err);
    /* an unknown name gets the list of valid ones */
    if (strstr(line, "q9_0") || strstr(line, "Q4_K_X") || i == 3)
      ck_assert_msg(strstr(err, "Q4_K_M") && strstr(err, "Q8_0") && strstr(err, "IQ4_XS"),
                    "'%s': %s", line, err);
    free(err);
  }
  /* a preset where one type is needed says so and names the base type */
  snprintf(cmd, sizeof cmd, "%s run --quantize q4_k_m -p hi -n 2", nllm_bin);
  ck_assert_int_eq(run(cmd, NULL, &err), 1);
  ck_assert_msg(strstr(err, "preset") && strstr(err, "Q4_K"), "%s", err);
  free(err);
  remove(out_file);
}
END_TEST

/* nllm gen-model on the public GGUF writer: the model it writes runs; --type takes any case. */
START_TEST(gen_model_tiny_runs) {
  char cmd[2048], *out, *err;
  snprintf(cmd, sizeof cmd, "%s gen-model -o %s --shape tiny --type q8_0", nllm_bin, out_file);
  ck_assert_msg(run(cmd, NULL, &err) == 0, "%s", err);
  free(err);
  snprintf(cmd, sizeof cmd, "%s run -m %s -p hi -n 3 --temp 0", nllm_bin, out_file);
  ck_assert_int_eq(run(cmd, &out, NULL), 0);
  ck_assert_int_gt((int)strlen(out), 2);
  free(out);
  snprintf(cmd, sizeof cmd, "%s gen-model -o %s --shape tiny --type q9", nllm_bin, out_file);
  ck_assert_int_eq(run(cmd, NULL, &err), 1);
  ck_assert_msg(strstr(err, "Q4_K_M") && strstr(err, "Q8_0"), "%s", err);
  free(err);
  remove(out_file);
}
END_TEST

int main(void) {
  cli_setup();
  setup_out();
  Suite *s = suite_create("cli_convert");
  TCase *tc = tcase_create("cli_convert");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, quantize_bad_destination_fails_first);
  tcase_add_test(tc, quantize_progress_plain_lines_and_summary);
  tcase_add_test(tc, type_names_same_parser_everywhere);
  tcase_add_test(tc, gen_model_tiny_runs);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
