/* The public conversion ABI: nllm_type_parse (one parser of weight-type names, any case,
 * presets, valid names listed on error), nllm_convert / nllm_quantize (params, progress,
 * cancellation, stats, the destination checked first). */
#include <ctype.h>
#include <sys/stat.h>

#include "nativellm.h"
#include "testutil.h"

static const char *model_path = "models/stories260K.gguf";

static void out_path(char *buf, size_t cap, const char *tag) {
  snprintf(buf, cap, "/tmp/nllm-convert-api-%d-%s.gguf", (int)getpid(), tag);
}

START_TEST(type_parse_any_case_and_presets) {
  int32_t t = -5, preset = -5;
  ck_assert_int_eq(nllm_type_parse("q8_0", &t, &preset), NLLM_OK);
  ck_assert_int_eq(t, NLLM_TYPE_Q8_0);
  ck_assert_int_eq(preset, 0);
  ck_assert_int_eq(nllm_type_parse("Q4_K_M", &t, &preset), NLLM_OK);
  ck_assert_int_eq(t, NLLM_TYPE_Q4_K);
  ck_assert_int_eq(preset, 1);
  ck_assert_int_eq(nllm_type_parse("bf16", &t, NULL), NLLM_OK);
  ck_assert_int_eq(t, NLLM_TYPE_BF16);
  /* every listed name parses, in its own case and in lower case */
  char names[512];
  snprintf(names, sizeof names, "%s", nllm_type_names());
  int n = 0;
  for (char *save = NULL, *w = strtok_r(names, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
    ck_assert_msg(nllm_type_parse(w, &t, NULL) == NLLM_OK, "%s", w);
    if (!strstr(w, "_M")) ck_assert_str_eq(nllm_type_name(t), w); /* a type is its own name */
    for (char *c = w; *c; c++) *c = (char)tolower((unsigned char)*c);
    ck_assert_msg(nllm_type_parse(w, &t, NULL) == NLLM_OK, "%s", w);
    n++;
  }
  ck_assert_int_ge(n, 15);
}
END_TEST

START_TEST(type_parse_lists_valid_names) {
  int32_t t;
  ck_assert_int_eq(nllm_type_parse("Q7_X", &t, NULL), NLLM_ERR_INVALID_ARG);
  const char *msg = nllm_last_error();
  ck_assert_msg(strstr(msg, "Q7_X") && strstr(msg, "Q4_K_M") && strstr(msg, "Q8_0"), "%s", msg);
  ck_assert_int_eq(nllm_type_parse("", &t, NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_type_parse(NULL, &t, NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_type_parse("F16", NULL, NULL), NLLM_ERR_INVALID_ARG);
}
END_TEST

typedef struct progress_log {
  int calls, cancel_at;
  float last;
  int monotonic;
} progress_log;

static int32_t on_progress(float p, void *ud) {
  progress_log *l = ud;
  if (p < l->last) l->monotonic = 0;
  l->last = p;
  return ++l->calls == l->cancel_at;
}

START_TEST(quantize_with_progress_and_stats) {
  char out[256];
  out_path(out, sizeof out, "q8");
  nllm_convert_params p;
  nllm_convert_params_init(&p);
  ck_assert_int_eq(p.type, NLLM_TYPE_NONE);
  p.type = NLLM_TYPE_Q8_0;
  p.n_threads = 1;
  progress_log log = {0, -1, 0, 1};
  p.progress = on_progress;
  p.progress_user_data = &log;
  nllm_convert_stats st = {.struct_size = sizeof st};
  ck_assert_msg(nllm_quantize(model_path, out, &p, &st) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_gt(log.calls, 2);
  ck_assert(log.monotonic);
  ck_assert_float_eq(log.last, 1.0f);
  ck_assert_int_eq(st.struct_size, sizeof st);
  ck_assert_int_gt(st.n_tensors, 10);
  struct stat sb;
  ck_assert_int_eq(stat(out, &sb), 0);
  ck_assert_uint_eq(st.bytes_out, (uint64_t)sb.st_size);
  ck_assert_uint_gt(st.bytes_in, st.bytes_out); /* F32 in, Q8_0 out */
  ck_assert(st.seconds >= 0);
  /* the file loads and its matrices are Q8_0 */
  nllm_model *m = NULL;
  ck_assert_int_eq(nllm_model_load(out, NULL, &m), NLLM_OK);
  int q8 = 0;
  for (int32_t i = 0; i < nllm_model_tensor_count(m); i++) {
    const char *name;
    int32_t type, nd;
    int64_t ne[4];
    ck_assert_int_eq(nllm_model_tensor_info(m, i, &name, &type, &nd, ne), NLLM_OK);
    q8 += type == NLLM_TYPE_Q8_0;
  }
  ck_assert_int_gt(q8, 5);
  nllm_model_free(m);
  /* by name, any case, a preset; convert without a type keeps types */
  p.type = NLLM_TYPE_NONE;
  p.type_name = "q4_k_m";
  p.progress = NULL;
  ck_assert_msg(nllm_quantize(model_path, out, &p, NULL) == NLLM_OK, "%s", nllm_last_error());
  p.type_name = NULL;
  ck_assert_msg(nllm_convert(model_path, out, &p, NULL) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_msg(nllm_convert(model_path, out, NULL, NULL) == NLLM_OK, "%s", nllm_last_error());
  remove(out);
}
END_TEST

START_TEST(cancel_and_bad_arguments) {
  char out[256];
  out_path(out, sizeof out, "cancel");
  remove(out);
  nllm_convert_params p;
  nllm_convert_params_init(&p);
  p.type_name = "Q8_0";
  progress_log log = {0, 2, 0, 1};
  p.progress = on_progress;
  p.progress_user_data = &log;
  ck_assert_int_eq(nllm_quantize(model_path, out, &p, NULL), NLLM_ERR_ABORTED);
  ck_assert_int_ne(access(out, F_OK), 0); /* nothing written under the name */
  p.progress = NULL;
  /* quantize needs a type, convert does not */
  p.type_name = NULL;
  ck_assert_int_eq(nllm_quantize(model_path, out, &p, NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_msg(strstr(nllm_last_error(), "Q4_K_M"), "%s", nllm_last_error());
  p.type_name = "Q9";
  ck_assert_int_eq(nllm_convert(model_path, out, &p, NULL), NLLM_ERR_INVALID_ARG);
  p.type_name = NULL;
  p.type = 99;
  ck_assert_int_eq(nllm_convert(model_path, out, &p, NULL), NLLM_ERR_INVALID_ARG);
  p.type = NLLM_TYPE_NONE;
  p.struct_size = 3;
  ck_assert_int_eq(nllm_convert(model_path, out, &p, NULL), NLLM_ERR_INVALID_ARG);
  nllm_convert_params_init(&p);
  nllm_convert_stats st = {0};
  ck_assert_int_eq(nllm_convert(model_path, out, &p, &st), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_convert(NULL, out, &p, NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_convert(model_path, NULL, &p, NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_convert("/nonexistent/model.gguf", out, &p, NULL), NLLM_ERR_IO);
  ck_assert_int_ne(access(out, F_OK), 0);
}
END_TEST

/* Issue 22 item 4: a destination that cannot be written fails before any work, naming the
 * user's path (not a temporary file's). */
START_TEST(destination_checked_first) {
  nllm_convert_params p;
  nllm_convert_params_init(&p);
  p.type_name = "Q8_0";
  progress_log log = {0, -1, 0, 1};
  p.progress = on_progress;
  p.progress_user_data = &log;
  const char *bad = "/nonexistent-dir/sub/x.gguf";
  ck_assert_int_eq(nllm_quantize(model_path, bad, &p, NULL), NLLM_ERR_IO);
  const char *msg = nllm_last_error();
  ck_assert_msg(strstr(msg, bad) && !strstr(msg, ".tmp."), "%s", msg);
  ck_assert_int_eq(log.calls, 0); /* no progress: nothing was converted */
  ck_assert_int_eq(nllm_quantize(model_path, "/tmp", &p, NULL), NLLM_ERR_IO);
  ck_assert_msg(strstr(nllm_last_error(), "folder"), "%s", nllm_last_error());
  ck_assert_int_eq(log.calls, 0);
}
END_TEST

/* The public GGUF writer: keys and tensors written, read back through the library. */
START_TEST(gguf_writer_round_trip) {
  nllm_gguf_writer *w = NULL;
  ck_assert_int_eq(nllm_gguf_writer_create(&w), NLLM_OK);
  float row[64];
  for (int i = 0; i < 64; i++) row[i] = (float)i / 64.0f - 0.5f;
  uint8_t q[68];
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_Q8_0, 64), sizeof q);
  ck_assert_int_eq(nllm_quantize_row(NLLM_TYPE_Q8_0, row, q, 64), NLLM_OK);
  ck_assert_int_eq(nllm_quantize_row(NLLM_TYPE_Q8_0, row, q, 63), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_quantize_row(99, row, q, 64), NLLM_ERR_UNSUPPORTED);
  ck_assert_int_eq(nllm_quantize_row(NLLM_TYPE_Q8_0, NULL, q, 64), NLLM_ERR_INVALID_ARG);
  const char *toks[] = {"a", "b"};
  float scores[] = {0, -1};
  int32_t types[] = {1, 1};
  ck_assert_int_eq(nllm_gguf_set_str(w, "general.architecture", "llama"), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_u32(w, "llama.block_count", 7), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_u32(w, "llama.block_count", 2), NLLM_OK); /* replaces */
  ck_assert_int_eq(nllm_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_str(w, "tokenizer.ggml.model", "llama"), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_str_array(w, "tokenizer.ggml.tokens", toks, 2), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_f32_array(w, "tokenizer.ggml.scores", scores, 2), NLLM_OK);
  ck_assert_int_eq(nllm_gguf_set_i32_array(w, "tokenizer.ggml.token_type", types, 2), NLLM_OK);
  int64_t ne[1] = {64};
  ck_assert_int_eq(nllm_gguf_add_tensor(w, "t.weight", NLLM_TYPE_Q8_0, 1, ne, q, sizeof q),
                   NLLM_OK);
  ck_assert_int_eq(nllm_gguf_add_tensor(w, "bad", NLLM_TYPE_Q8_0, 1, ne, q, 3),
                   NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_gguf_set_str(NULL, "k", "v"), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_gguf_set_str(w, NULL, "v"), NLLM_ERR_INVALID_ARG);
  char out[256];
  out_path(out, sizeof out, "writer");
  ck_assert_int_eq(nllm_gguf_write(w, "/nonexistent-dir/x.gguf"), NLLM_ERR_IO);
  ck_assert_msg(strstr(nllm_last_error(), "/nonexistent-dir/x.gguf"), "%s", nllm_last_error());
  ck_assert_int_eq(nllm_gguf_write(w, out), NLLM_OK);
  nllm_gguf_writer_free(w);
  nllm_gguf_writer_free(NULL);
  /* read back: the tokenizer-only load sees the keys (no weights are needed for it) */
  nllm_model_params p;
  nllm_model_params_init(&p);
  p.vocab_only = 1;
  nllm_model *m = NULL;
  ck_assert_msg(nllm_model_load(out, &p, &m) == NLLM_OK, "%s", nllm_last_error());
  int64_t v = 0;
  ck_assert_int_eq(nllm_model_meta_int(m, "llama.block_count", &v), NLLM_OK);
  ck_assert_int_eq(v, 2);
  ck_assert_int_eq(nllm_model_n_vocab(m), 2);
  nllm_model_free(m);
  remove(out);
}
END_TEST

int main(void) {
  Suite *s = suite_create("convert_api");
  TCase *tc = tcase_create("convert_api");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, type_parse_any_case_and_presets);
  tcase_add_test(tc, type_parse_lists_valid_names);
  tcase_add_test(tc, quantize_with_progress_and_stats);
  tcase_add_test(tc, cancel_and_bad_arguments);
  tcase_add_test(tc, destination_checked_first);
  tcase_add_test(tc, gguf_writer_round_trip);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
