/* nllm_generate's stop conditions: stop strings (across token boundaries, never streamed), the
 * finish reason of every way a generation ends, a prompt that cannot fit, and the prompt/generation
 * split of the timings. Runs on the bundled stories260K model, greedy. */
#include "nativellm.h"
#include "testutil.h"

#define MODEL "models/stories260K.gguf"

typedef struct capture {
  char text[65536];
  size_t len;
  int n_calls, n_tokens, stop_after; /* stop_after > 0: on_token returns 1 at that token */
  size_t piece_end[1024];            /* text length after each token's piece */
  nllm_token ids[1024];
} capture;

static int32_t on_tok(nllm_token t, const char *piece, int32_t n, void *ud) {
  capture *c = ud;
  ck_assert_int_ge(n, 0);
  ck_assert_uint_lt(c->len + (size_t)n, sizeof c->text);
  memcpy(c->text + c->len, piece, (size_t)n);
  c->len += (size_t)n;
  c->text[c->len] = 0;
  c->n_calls++;
  if (t >= 0) {
    if (c->n_tokens < 1024) c->piece_end[c->n_tokens] = c->len, c->ids[c->n_tokens] = t;
    c->n_tokens++;
  }
  return c->stop_after > 0 && c->n_tokens == c->stop_after;
}

static nllm_model *model;

static void setup(void) {
  ck_assert_msg(nllm_model_load(MODEL, NULL, &model) == NLLM_OK, "%s", nllm_last_error());
}
static void teardown(void) {
  nllm_model_free(model);
}

/* Greedy generation from a fresh context of n_ctx; returns the status. */
static nllm_status gen(int32_t n_ctx, const char *prompt, int32_t max_tokens, const char **stop,
                       int32_t n_stop, capture *c, int32_t *finish, int32_t *n_gen) {
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = n_ctx;
  nllm_sampler_params sp;
  nllm_sampler_params_init(&sp);
  sp.temperature = 0;
  nllm_context *ctx = NULL;
  nllm_sampler *s = NULL;
  ck_assert_int_eq(nllm_context_create(model, &cp, &ctx), NLLM_OK);
  ck_assert_int_eq(nllm_sampler_create(model, &sp, &s), NLLM_OK);
  nllm_generate_params gp;
  nllm_generate_params_init(&gp);
  gp.max_tokens = max_tokens;
  gp.on_token = on_tok;
  gp.user_data = c;
  gp.stop = stop;
  gp.n_stop = n_stop;
  gp.finish_reason = finish;
  *finish = -1;
  nllm_status st = nllm_generate(ctx, s, prompt, -1, &gp, n_gen);
  nllm_sampler_free(s);
  nllm_context_free(ctx);
  return st;
}

START_TEST(stop_string_across_tokens_is_not_streamed) {
  static capture full, cut;
  int32_t finish, n;
  ck_assert_int_eq(gen(512, "Once upon a time", 80, NULL, 0, &full, &finish, &n), NLLM_OK);
  ck_assert_int_eq(finish, NLLM_FINISH_LENGTH);
  ck_assert_int_eq(n, 80);
  /* A stop string made of the end of one piece and the start of the next. */
  char stop[16] = {0};
  size_t at = 0;
  for (int k = 5; k + 1 < full.n_tokens; k++) {
    size_t a = full.piece_end[k - 1], b = full.piece_end[k], e = full.piece_end[k + 1];
    if (b - a >= 2 && e - b >= 2) {
      memcpy(stop, full.text + b - 2, 4);
      at = b - 2;
      break;
    }
  }
  ck_assert_msg(at > 0, "no two pieces of two bytes in '%s'", full.text);
  size_t first = (size_t)(strstr(full.text, stop) - full.text);
  ck_assert_uint_le(first, at);
  const char *stops[] = {"no such text in a story", stop};
  ck_assert_int_eq(gen(512, "Once upon a time", 80, stops, 2, &cut, &finish, &n), NLLM_OK);
  ck_assert_int_eq(finish, NLLM_FINISH_STOP);
  ck_assert_uint_eq(cut.len, first);
  ck_assert(!memcmp(cut.text, full.text, first));
  ck_assert_ptr_null(strstr(cut.text, stop));
  ck_assert_int_eq(cut.n_tokens, n); /* every generated token reached on_token */
}
END_TEST

START_TEST(held_text_is_flushed_when_no_stop_comes) {
  static capture full, held;
  int32_t finish, n;
  ck_assert_int_eq(gen(512, "Once upon a time", 30, NULL, 0, &full, &finish, &n), NLLM_OK);
  /* The last byte of the text begins this stop string, so it is held back until the end. */
  char stop[3] = {full.text[full.len - 1], '\x01', 0};
  const char *stops[] = {stop};
  ck_assert_int_eq(gen(512, "Once upon a time", 30, stops, 1, &held, &finish, &n), NLLM_OK);
  ck_assert_int_eq(finish, NLLM_FINISH_LENGTH);
  ck_assert_str_eq(held.text, full.text);
  ck_assert_int_eq(held.n_calls, held.n_tokens + 1); /* one last call with token -1 */
}
END_TEST

/* Writes the bundled model with tokenizer.ggml.eos_token_id (a u32 after the key and its type)
 * set to eos. */
static void with_eos(const char *path, nllm_token eos) {
  size_t len;
  char *b = read_file(MODEL, &len);
  ck_assert_ptr_nonnull(b);
  static const char key[] = "tokenizer.ggml.eos_token_id";
  char *k = memmem(b, len, key, sizeof key - 1);
  ck_assert_ptr_nonnull(k);
  uint32_t type, v = (uint32_t)eos;
  memcpy(&type, k + sizeof key - 1, 4);
  ck_assert_int_eq(type, 4); /* GGUF u32 */
  memcpy(k + sizeof key - 1 + 4, &v, 4);
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(b, 1, len, f), len);
  fclose(f);
  free(b);
}

START_TEST(finish_reasons) {
  static capture c;
  int32_t finish, n;
  /* stories260K never emits EOS (its stories are separated by BOS): a copy whose EOS is the
   * fourth greedy token must stop right before that token's first appearance. */
  memset(&c, 0, sizeof c);
  ck_assert_int_eq(gen(512, "Once upon a time", 40, NULL, 0, &c, &finish, &n), NLLM_OK);
  nllm_token eos = c.ids[3];
  int eos_at = 0;
  while (c.ids[eos_at] != eos) eos_at++;
  char path[128];
  snprintf(path, sizeof path, "/tmp/nllm-test-generate-%d.gguf", (int)getpid());
  with_eos(path, eos);
  nllm_model *stories = model;
  ck_assert_msg(nllm_model_load(path, NULL, &model) == NLLM_OK, "%s", nllm_last_error());
  remove(path);
  memset(&c, 0, sizeof c);
  ck_assert_int_eq(gen(512, "Once upon a time", 40, NULL, 0, &c, &finish, &n), NLLM_OK);
  ck_assert_int_eq(finish, NLLM_FINISH_EOG);
  ck_assert_int_eq(n, eos_at);
  nllm_model_free(model);
  model = stories;
  memset(&c, 0, sizeof c);
  c.stop_after = 3;
  ck_assert_int_eq(gen(512, "Once upon a time", 50, NULL, 0, &c, &finish, &n), NLLM_OK);
  ck_assert_int_eq(finish, NLLM_FINISH_ABORTED);
  ck_assert_int_eq(n, 3);
  /* The context fills during generation: the text so far is streamed, reason LENGTH. */
  memset(&c, 0, sizeof c);
  ck_assert_int_eq(gen(16, "Once upon a time", 100, NULL, 0, &c, &finish, &n),
                   NLLM_ERR_CONTEXT_FULL);
  ck_assert_int_eq(finish, NLLM_FINISH_LENGTH);
  ck_assert_int_eq(n, 16 - 5 + 1); /* 11 decoded after the 5 prompt tokens, the last one not */
  ck_assert_int_eq(c.n_tokens, n);
  /* A prompt that cannot fit is an error before anything is generated. */
  memset(&c, 0, sizeof c);
  ck_assert_int_eq(gen(4, "Once upon a time", 10, NULL, 0, &c, &finish, &n), NLLM_ERR_CONTEXT_FULL);
  ck_assert_int_eq(finish, NLLM_FINISH_NONE);
  ck_assert_int_eq(n, 0);
  ck_assert_int_eq(c.n_calls, 0);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "does not fit"));
}
END_TEST

START_TEST(bad_stop_arrays) {
  static capture c;
  int32_t finish, n;
  const char *empty[] = {""};
  ck_assert_int_eq(gen(64, "Once", 4, empty, 1, &c, &finish, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "empty"));
  const char *null[] = {"a", NULL};
  ck_assert_int_eq(gen(64, "Once", 4, null, 2, &c, &finish, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(gen(64, "Once", 4, NULL, 1, &c, &finish, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(gen(64, "Once", 4, empty, -1, &c, &finish, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(finish, NLLM_FINISH_NONE);
  ck_assert_int_eq(c.n_calls, 0);
}
END_TEST

/* An empty prompt decodes BOS alone: that is prompt work, not a generated token. */
START_TEST(bos_alone_is_prompt_time) {
  nllm_context *ctx = NULL;
  nllm_sampler *s = NULL;
  ck_assert_int_eq(nllm_context_create(model, NULL, &ctx), NLLM_OK);
  ck_assert_int_eq(nllm_sampler_create(model, NULL, &s), NLLM_OK);
  nllm_generate_params gp;
  nllm_generate_params_init(&gp);
  gp.max_tokens = 5;
  gp.stop_at_eog = 0;
  int32_t n = 0;
  ck_assert_int_eq(nllm_generate(ctx, s, "", 0, &gp, &n), NLLM_OK);
  ck_assert_int_eq(n, 5);
  nllm_timings tm = {.struct_size = sizeof tm};
  nllm_context_timings(ctx, &tm);
  ck_assert_int_eq(tm.n_prompt_tokens, 1);
  ck_assert_int_eq(tm.n_gen_tokens, 5);
  nllm_sampler_free(s);
  nllm_context_free(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("generate");
  TCase *tc = tcase_create("generate");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, stop_string_across_tokens_is_not_streamed);
  tcase_add_test(tc, held_text_is_flushed_when_no_stop_comes);
  tcase_add_test(tc, finish_reasons);
  tcase_add_test(tc, bad_stop_arrays);
  tcase_add_test(tc, bos_alone_is_prompt_time);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
