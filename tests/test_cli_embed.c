/* `nllm embed` as a user drives it: texts from -p / -f (one per line) tokenized and embedded
 * many at a time, one line of floats per text or JSON, checked against the float64 references
 * of ../shared/testdata/embed; bad options get one clear error line. */
#include "cliutil.h"

/* The floats of one line of text into v; returns how many. */
static int parse_floats(const char *line, float *v, int max) {
  int n = 0;
  char *end;
  for (const char *p = line; n < max && *p != '\n'; p = end) {
    while (*p == ' ') p++;
    if (*p == '\n') break;
    float x = strtof(p, &end);
    if (end == p) break;
    v[n++] = x;
  }
  return n;
}

/* The reference vector after the header line hdr in the file text. */
static int ref_vector(const char *file_text, const char *hdr, float *v, int max) {
  const char *h = strstr(file_text, hdr);
  ck_assert_msg(h, "no '%s' in the reference", hdr);
  return parse_floats(strchr(h, '\n') + 1, v, max);
}

static double rel_err(const float *a, const float *b, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; i++)
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += b[i] * b[i];
  return sqrt(num / den);
}

START_TEST(texts_from_file_match_reference) {
  char mp[1024], rp[1024];
  if (!testdata_path(mp, sizeof mp, "hf/tiny-qwen3") ||
      !testdata_path(rp, sizeof rp, "embed/tiny-qwen3.embeddings.txt"))
    return;
  char *ref = read_file(rp, NULL);
  char in[128], cmd[4096], *out, *err;
  snprintf(in, sizeof in, "/tmp/nllm-cli-embed-%d.txt", (int)getpid());
  FILE *f = fopen(in, "w");
  ck_assert_ptr_nonnull(f);
  /* sequences 0 and 2 of the reference, a blank line (skipped) between them */
  fputs("Paris\n\nThe capital of China is Beijing.<|endoftext|>\n", f);
  fclose(f);
  for (int norm = 0; norm <= 1; norm++) {
    /* the reference is exact (float64 on the stored BF16 weights) */
    snprintf(cmd, sizeof cmd, "%s embed -m %s -f %s --special --pooling last %s --no-bf16-act",
             nllm_bin, mp, in, norm ? "--normalize" : "--no-normalize");
    ck_assert_msg(run(cmd, &out, &err) == 0, "%s", err);
    char *line2 = strchr(out, '\n');
    ck_assert_ptr_nonnull(line2);
    float got[2][64], want[64];
    ck_assert_int_eq(parse_floats(out, got[0], 64), 32);
    ck_assert_int_eq(parse_floats(line2 + 1, got[1], 64), 32);
    ck_assert_msg(strchr(line2 + 1, '\n')[1] == 0, "more than two lines: %s", out);
    for (int s = 0; s < 2; s++) {
      char hdr[64];
      snprintf(hdr, sizeof hdr, "seq %d pooling last normalize %d\n", s ? 2 : 0, norm);
      ck_assert_int_eq(ref_vector(ref, hdr, want, 64), 32);
      double e = rel_err(got[s], want, 32);
      ck_assert_msg(e < 1e-5, "%s: rel err %g", hdr, e);
    }
    free(out);
    free(err);
  }
  /* JSON: one object per text with its token count */
  snprintf(cmd, sizeof cmd, "%s embed -m %s -f %s --special --pooling mean --json", nllm_bin, mp,
           in);
  ck_assert_int_eq(run(cmd, &out, &err), 0);
  ck_assert_msg(strstr(out, "\"pooling\":\"mean\"") && strstr(out, "\"normalize\":true") &&
                    strstr(out, "\"index\":1,\"n_tokens\":8,\"embedding\":["),
                "%s", out);
  free(out);
  free(err);
  /* per token: one line per token, a blank line after each text (1 + 8 tokens) */
  snprintf(cmd, sizeof cmd, "%s embed -m %s -f %s --special --pooling none", nllm_bin, mp, in);
  ck_assert_int_eq(run(cmd, &out, &err), 0);
  int lines = 0, blank = 0;
  for (char *p = out; *p; p++)
    if (*p == '\n') lines++, blank += p[1] == '\n';
  ck_assert_int_eq(lines, 11);
  ck_assert_int_eq(blank, 2);
  free(out);
  free(err);
  remove(in);
  free(ref);
}
END_TEST

/* An encoder from its Hugging Face folder: WordPiece text to the model's default (CLS,
 * normalized, from modules.json); generation is refused with one line naming the encoder. */
START_TEST(bert_text_matches_reference) {
  char mp[1024], rp[1024], cmd[2048], *out, *err;
  if (!testdata_path(mp, sizeof mp, "embed/tiny-bert") ||
      !testdata_path(rp, sizeof rp, "embed/tiny-bert.embeddings.txt"))
    return;
  char *ref = read_file(rp, NULL);
  float got[128], want[128];
  ck_assert_int_eq(ref_vector(ref, "seq 0 pooling cls normalize 1\n", want, 128), 64);
  /* exact activations, then rounded to BF16 (the default on CPUs with AVX512_BF16) */
  for (int round = 0; round <= 1; round++) {
    snprintf(cmd, sizeof cmd, "%s embed -m %s -p 'Hello world' %s", nllm_bin, mp,
             round ? "--bf16-act" : "--no-bf16-act");
    ck_assert_msg(run(cmd, &out, &err) == 0, "%s", err);
    ck_assert_int_eq(parse_floats(out, got, 128), 64);
    double e = rel_err(got, want, 64);
    ck_assert_msg(e < (round ? 1e-2 : 1e-5), "%s: rel err %g", cmd, e);
    free(out);
    free(err);
  }
  snprintf(cmd, sizeof cmd, "%s run -m %s -p hi -n 1", nllm_bin, mp);
  ck_assert_int_eq(run(cmd, &out, &err), 1);
  ck_assert_msg(strstr(err, "encoder") && strchr(err, '\n')[1] == 0, "%s", err);
  free(out);
  free(err);
  free(ref);
}
END_TEST

START_TEST(bad_options_one_error_line) {
  char mp[1024], cmd[2048], *out, *err;
  if (!testdata_path(mp, sizeof mp, "hf/tiny-qwen3")) return;
  static const char *const bad[][2] = {
      {"--pooling max -p x", "--pooling"},
      {"-p x --normalize --no-normalize", "--normalize"},
      {"--prompt-ids '1 99999999'", "not a token id"},
      {"", "exactly one of"},
      {"-p x -b 1 --prompt-ids '1 2'", "exactly one of"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(cmd, sizeof cmd, "%s embed -m %s %s", nllm_bin, mp, bad[i][0]);
    ck_assert_int_eq(run(cmd, &out, &err), 1);
    ck_assert_msg(!strncmp(err, "nllm: error: ", 13) && strstr(err, bad[i][1]), "%s: %s", bad[i][0],
                  err);
    ck_assert_msg(strchr(err, '\n')[1] == 0, "more than one line: %s", err);
    ck_assert_str_eq(out, "");
    free(out);
    free(err);
  }
}
END_TEST

int main(void) {
  cli_setup();
  Suite *s = suite_create("cli_embed");
  TCase *tc = tcase_create("cli_embed");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, texts_from_file_match_reference);
  tcase_add_test(tc, bert_text_matches_reference);
  tcase_add_test(tc, bad_options_one_error_line);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
