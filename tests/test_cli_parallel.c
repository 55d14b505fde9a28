/* nllm parallel: every prompt's greedy ids equal `nllm run --temp 0 --ids` on it alone, with
 * more prompts than sequences (queued ones start as others finish, some at end of story). */
#include <sys/wait.h>

#include "testutil.h"

static char nllm_bin[512];

/* Runs a shell command; stdout into *out (may be NULL). Returns the exit code. */
static int run(const char *cmd, char **out) {
  char full[4096], p[128];
  snprintf(p, sizeof p, "/tmp/nllm-par-%d.out", (int)getpid());
  snprintf(full, sizeof full, "%s >%s 2>/dev/null", cmd, p);
  int rc = system(full);
  if (out) *out = read_file(p, NULL);
  remove(p);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static const char *prompts[] = {
    "Once upon a time",
    "Lily and Tom went to the park",
    "The cat sat",
    "One day a big dog",
    "Tim had a red ball",
    "The sun was hot",
    "Sam",
    "A little bird sang in the tree",
};
#define N_PROMPTS (int)(sizeof prompts / sizeof prompts[0])

START_TEST(parallel_equals_run) {
  const char *b = getenv("NLLM_BUILD");
  snprintf(nllm_bin, sizeof nllm_bin, "%s/nllm", b && *b ? b : "build");
  char path[128], cmd[2048];
  snprintf(path, sizeof path, "/tmp/nllm-par-%d.txt", (int)getpid());
  FILE *f = fopen(path, "w");
  for (int i = 0; i < N_PROMPTS; i++) fprintf(f, "%s\n%s", prompts[i], i == 3 ? "\n" : "");
  fclose(f);
  /* -n 200: several stories end with EOS before, so slots free up at different steps */
  static const char *np[] = {"3", "8"};
  for (int k = 0; k < 2; k++) {
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s parallel -f %s -n 200 --temp 0 --ids -np %s", nllm_bin, path,
             np[k]);
    ck_assert_int_eq(run(cmd, &out), 0);
    char *line = out;
    for (int i = 0; i < N_PROMPTS; i++) {
      char *nl = strchr(line, '\n');
      ck_assert_ptr_nonnull(nl);
      *nl = 0;
      char *ref = NULL;
      snprintf(cmd, sizeof cmd, "%s run -p '%s' -n 200 --temp 0 --ids", nllm_bin, prompts[i]);
      ck_assert_int_eq(run(cmd, &ref), 0);
      ref[strcspn(ref, "\n")] = 0;
      ck_assert_msg(strlen(ref) > 0 && strcmp(line, ref) == 0,
                    "prompt %d (-np %s):\n%s\nvs run:\n%s", i, np[k], line, ref);
      free(ref);
      line = nl + 1;
    }
    ck_assert_str_eq(line, "");
    free(out);
  }
  /* text mode: the prompt, then the story */
  char *out = NULL;
  snprintf(cmd, sizeof cmd, "%s parallel -f %s -n 12 --temp 0 -np 2", nllm_bin, path);
  ck_assert_int_eq(run(cmd, &out), 0);
  ck_assert_msg(strncmp(out, "Once upon a time, there was a little girl", 41) == 0, "%s", out);
  free(out);
  remove(path);
  snprintf(cmd, sizeof cmd, "%s parallel -n 5", nllm_bin);
  ck_assert_int_eq(run(cmd, NULL), 1);
  snprintf(cmd, sizeof cmd, "%s parallel -f /nonexistent/prompts.txt", nllm_bin);
  ck_assert_int_eq(run(cmd, NULL), 1);
}
END_TEST

int main(void) {
  Suite *s = suite_create("cli_parallel");
  TCase *tc = tcase_create("parallel");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, parallel_equals_run);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
