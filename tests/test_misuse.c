/* API misuse: every public function of include/nativellm.h called with NULL handles, NULL
 * pointers and out-of-range indices returns a status or a documented safe value, never crashes;
 * wrong struct_size for every params struct; NULL-after-free patterns. */
#include <stdint.h>

#include "nativellm.h"
#include "testutil.h"

#define MODEL "models/stories260K.gguf"

static nllm_model *load(void) {
  nllm_model *m = NULL;
  ck_assert_int_eq(nllm_model_load(MODEL, NULL, &m), NLLM_OK);
  return m;
}

START_TEST(library_calls_take_any_value) {
  ck_assert_ptr_nonnull(nllm_version());
  ck_assert_int_eq(nllm_abi_version(), NLLM_ABI_VERSION);
  ck_assert_ptr_nonnull(nllm_last_error());
  ck_assert_ptr_nonnull(nllm_system_info());
  static const nllm_status odd[] = {INT32_MIN, -12, -1000, 1, 42, INT32_MAX};
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
    ck_assert_ptr_nonnull(nllm_status_name(odd[i]));
  ck_assert_ptr_null(nllm_type_name(-1));
  ck_assert_ptr_null(nllm_type_name(INT32_MAX));
  ck_assert_ptr_null(nllm_type_name(INT32_MIN));
  nllm_set_log_level(-100);
  nllm_set_log_level(INT32_MAX);
  nllm_set_log_level(NLLM_LOG_WARN);
  nllm_set_log_callback(NULL, NULL);
  /* the unsized symbols (the macros of the same names would take sizeof *NULL) */
  (nllm_model_params_init)(NULL);
  (nllm_context_params_init)(NULL);
  (nllm_sampler_params_init)(NULL);
  (nllm_generate_params_init)(NULL);
  (nllm_chat_template_params_init)(NULL);
  (nllm_convert_params_init)(NULL);
  (nllm_batch_init)(NULL);
  ck_assert_int_eq(nllm_model_params_init_sized(NULL, sizeof(nllm_model_params)),
                   NLLM_ERR_INVALID_ARG);
  /* row sizes: bad types, negative or unaligned counts, and counts whose bytes overflow */
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_F32, 8), 32);
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_Q4_0, 64), 36);
  ck_assert_uint_eq(nllm_type_row_size(-1, 32), 0);
  ck_assert_uint_eq(nllm_type_row_size(INT32_MAX, 32), 0);
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_F32, -4), 0);
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_Q4_0, 33), 0);
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_F32, (int64_t)1 << 62), 0);
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_F32, INT64_MAX), 0);
  ck_assert_uint_eq(nllm_type_row_size(NLLM_TYPE_Q8_0, (int64_t)1 << 62), ((uint64_t)1 << 57) * 34);
}
END_TEST

START_TEST(null_model) {
  const nllm_model *m = NULL;
  ck_assert_str_eq(nllm_model_arch(m), "");
  ck_assert_str_eq(nllm_model_name(m), "");
  ck_assert_uint_eq(nllm_model_n_params(m), 0);
  ck_assert_uint_eq(nllm_model_size_bytes(m), 0);
  ck_assert_int_eq(nllm_model_n_vocab(m), 0);
  ck_assert_int_eq(nllm_model_n_ctx_train(m), 0);
  ck_assert_int_eq(nllm_model_n_embd(m), 0);
  ck_assert_int_eq(nllm_model_n_layer(m), 0);
  ck_assert_int_eq(nllm_model_token(m, NLLM_TOKEN_BOS), -1);
  ck_assert_int_eq(nllm_model_token_is_eog(m, 2), 0);
  const char *s = "x";
  int64_t i = 0;
  double f = 0;
  ck_assert_int_eq(nllm_model_meta_str(m, "general.name", &s), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_meta_int(m, "k", &i), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_meta_float(m, "k", &f), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_meta_count(m), 0);
  ck_assert_ptr_null(nllm_model_meta_key(m, 0));
  char buf[16];
  int32_t n = 0;
  ck_assert_int_eq(nllm_model_meta_value_text(m, 0, buf, sizeof buf, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_tensor_count(m), 0);
  const char *name;
  int32_t type, nd;
  int64_t ne[4];
  ck_assert_int_eq(nllm_model_tensor_info(m, 0, &name, &type, &nd, ne), NLLM_ERR_INVALID_ARG);
  nllm_token t[4];
  ck_assert_int_eq(nllm_tokenize(m, "a", 1, 1, 0, t, 4, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_token_to_piece(m, 1, 0, buf, sizeof buf, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_detokenize(m, t, 0, 0, buf, sizeof buf, &n), NLLM_ERR_INVALID_ARG);
  nllm_chat_message msg = {"user", "hi"};
  ck_assert_int_eq(nllm_chat_format(m, &msg, 1, 1, buf, sizeof buf, &n), NLLM_ERR_INVALID_ARG);
  nllm_context *c = (nllm_context *)1;
  ck_assert_int_eq(nllm_context_create(m, NULL, &c), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_null(c);
  nllm_sampler *sp = (nllm_sampler *)1;
  ck_assert_int_eq(nllm_sampler_create(m, NULL, &sp), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_null(sp);
  nllm_model_free(NULL);
}
END_TEST

START_TEST(null_pointers_with_a_model) {
  nllm_model *m = load();
  const char *s;
  int64_t i;
  double f;
  ck_assert_int_eq(nllm_model_meta_str(m, NULL, &s), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_meta_str(m, "general.architecture", NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_meta_int(m, NULL, &i), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_meta_int(m, "llama.block_count", NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_meta_float(m, NULL, &f), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_meta_float(m, "llama.rope.freq_base", NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_meta_str(m, "", &s), NLLM_ERR_NOT_FOUND);
  ck_assert_ptr_null(nllm_model_meta_key(m, -1));
  ck_assert_ptr_null(nllm_model_meta_key(m, INT32_MAX));
  char buf[64];
  int32_t n = 0;
  ck_assert_int_eq(nllm_model_meta_value_text(m, -1, buf, sizeof buf, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_meta_value_text(m, INT32_MAX, buf, sizeof buf, &n),
                   NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_meta_value_text(m, 0, NULL, 10, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_meta_value_text(m, 0, buf, -1, &n), NLLM_ERR_INVALID_ARG);
  /* NULL buffer with cap 0 is the documented way to ask for the size. */
  ck_assert_int_eq(nllm_model_meta_value_text(m, 0, NULL, 0, &n), NLLM_ERR_BUFFER_TOO_SMALL);
  ck_assert_int_gt(n, 0);
  ck_assert_int_eq(nllm_model_meta_value_text(m, 0, buf, sizeof buf, NULL), NLLM_OK);
  const char *name;
  int32_t type, nd;
  int64_t ne[4];
  ck_assert_int_eq(nllm_model_tensor_info(m, -1, &name, &type, &nd, ne), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_tensor_info(m, 0, NULL, &type, &nd, ne), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_tensor_info(m, 0, &name, NULL, &nd, ne), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_tensor_info(m, 0, &name, &type, NULL, ne), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_model_tensor_info(m, 0, &name, &type, &nd, NULL), NLLM_ERR_INVALID_ARG);
  static const int32_t which[] = {-1, 6, INT32_MAX, INT32_MIN};
  for (size_t k = 0; k < sizeof which / sizeof which[0]; k++)
    ck_assert_int_eq(nllm_model_token(m, which[k]), -1);
  ck_assert_int_eq(nllm_model_token_is_eog(m, -1), 0);
  ck_assert_int_eq(nllm_model_token_is_eog(m, INT32_MAX), 0);

  /* tokenizer */
  nllm_token t[8];
  ck_assert_int_eq(nllm_tokenize(m, NULL, 3, 1, 0, t, 8, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_tokenize(m, "abc", 3, 1, 0, NULL, 8, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_tokenize(m, "abc", 3, 1, 0, t, 8, NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_tokenize(m, "abc", 3, 1, 0, t, -1, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_tokenize(m, NULL, 0, 0, 0, t, 8, &n), NLLM_OK);
  ck_assert_int_eq(n, 0);
  ck_assert_int_eq(nllm_tokenize(m, "abc", 3, 1, 0, NULL, 0, &n), NLLM_ERR_BUFFER_TOO_SMALL);
  ck_assert_int_gt(n, 0);
  ck_assert_int_eq(nllm_token_to_piece(m, 300, 0, NULL, 8, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_token_to_piece(m, 300, 0, buf, 8, NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_token_to_piece(m, 300, 0, buf, -8, &n), NLLM_ERR_INVALID_ARG);
  static const nllm_token bad_ids[] = {-1, 512, INT32_MAX, INT32_MIN};
  for (size_t k = 0; k < sizeof bad_ids / sizeof bad_ids[0]; k++) {
    ck_assert_int_ne(nllm_token_to_piece(m, bad_ids[k], 1, buf, sizeof buf, &n), NLLM_OK);
    ck_assert_int_ne(nllm_detokenize(m, &bad_ids[k], 1, 1, buf, sizeof buf, &n), NLLM_OK);
  }
  ck_assert_int_eq(nllm_detokenize(m, NULL, 2, 0, buf, sizeof buf, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_detokenize(m, t, -1, 0, buf, sizeof buf, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_detokenize(m, t, 0, 0, NULL, 4, &n), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_detokenize(m, t, 0, 0, buf, 4, NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_detokenize(m, NULL, 0, 0, buf, sizeof buf, &n), NLLM_OK);
  ck_assert_int_eq(n, 0);

  /* chat templates: the model's own and a caller's */
  nllm_chat_message msgs[2] = {{"system", "Be brief."}, {"user", "hi"}};
  nllm_chat_message holes[2] = {{NULL, "x"}, {"user", NULL}};
  nllm_status cst = nllm_chat_format(m, msgs, 2, 1, buf, sizeof buf, &n);
  ck_assert(cst == NLLM_OK || cst == NLLM_ERR_UNSUPPORTED); /* stories260K has no template */
  ck_assert_int_eq(nllm_chat_apply_template("chatml", NULL, 2, 1, buf, sizeof buf, &n),
                   NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_chat_apply_template("chatml", msgs, -1, 1, buf, sizeof buf, &n),
                   NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_chat_apply_template("chatml", msgs, 2, 1, NULL, 8, &n),
                   NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_chat_apply_template("chatml", msgs, 2, 1, buf, sizeof buf, NULL),
                   NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_chat_apply_template("chatml", msgs, 2, 1, buf, -1, &n),
                   NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_chat_apply_template("chatml", holes, 1, 1, buf, sizeof buf, &n),
                   NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_chat_apply_template("chatml", holes + 1, 1, 1, buf, sizeof buf, &n),
                   NLLM_ERR_INVALID_ARG);
  ck_assert_int_ne(nllm_chat_apply_template(NULL, msgs, 2, 1, buf, sizeof buf, &n), NLLM_OK);
  ck_assert_int_eq(nllm_chat_apply_template("no such family", msgs, 2, 1, buf, sizeof buf, &n),
                   NLLM_ERR_UNSUPPORTED);
  ck_assert_int_eq(nllm_chat_apply_template("chatml", msgs, 2, 1, NULL, 0, &n),
                   NLLM_ERR_BUFFER_TOO_SMALL);
  ck_assert_int_gt(n, 10);
  ck_assert_int_eq(nllm_chat_apply_template("chatml", msgs, 0, 0, buf, sizeof buf, &n), NLLM_OK);

  nllm_context *c = (nllm_context *)1;
  ck_assert_int_eq(nllm_context_create(m, NULL, NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_sampler_create(m, NULL, NULL), NLLM_ERR_INVALID_ARG);
  (void)c;
  nllm_model_free(m);
}
END_TEST

START_TEST(null_context_and_sampler) {
  nllm_model *m = load();
  nllm_context *c = NULL;
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 16;
  ck_assert_int_eq(nllm_context_create(m, &cp, &c), NLLM_OK);
  nllm_sampler *s = NULL;
  ck_assert_int_eq(nllm_sampler_create(m, NULL, &s), NLLM_OK); /* NULL params = defaults */
  nllm_token tok = 1, out = -7;

  ck_assert_int_eq(nllm_decode(NULL, &tok, 1), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_decode(c, NULL, 1), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_null(nllm_get_logits(NULL));
  ck_assert_ptr_null(nllm_get_logits_ith(NULL, 0));
  ck_assert_ptr_null(nllm_get_logits(c)); /* nothing decoded yet */
  ck_assert_ptr_null(nllm_get_logits_ith(c, 0));
  ck_assert_int_eq(nllm_context_pos(NULL), 0);
  ck_assert_int_eq(nllm_context_n_ctx(NULL), 0);
  ck_assert_ptr_null(nllm_context_model(NULL));
  ck_assert_ptr_eq(nllm_context_model(c), m);
  ck_assert_int_eq(nllm_context_rewind(NULL, 0), NLLM_ERR_INVALID_ARG);
  nllm_context_reset(NULL);
  nllm_timings tm;
  tm.struct_size = sizeof tm;
  ck_assert_int_eq(nllm_context_timings(NULL, &tm), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_context_timings(c, NULL), NLLM_ERR_INVALID_ARG);
  tm.struct_size = 0;
  ck_assert_int_eq(nllm_context_timings(c, &tm), NLLM_ERR_INVALID_ARG);
  /* An older caller's smaller nllm_timings gets only what it has room for. */
  struct {
    nllm_timings t;
    uint32_t guard;
  } small;
  memset(&small, 0xAB, sizeof small);
  small.t.struct_size = offsetof(nllm_timings, n_gen_tokens);
  ck_assert_int_eq(nllm_context_timings(c, &small.t), NLLM_OK);
  ck_assert_uint_eq(small.t.struct_size, offsetof(nllm_timings, n_gen_tokens));
  ck_assert_int_eq(small.t.n_gen_tokens, (int32_t)0xABABABAB);

  ck_assert_int_eq(nllm_sampler_sample(NULL, c, &out), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_sampler_sample(s, NULL, &out), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_sampler_sample(s, c, NULL), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_sampler_sample(s, c, &out), NLLM_ERR_INVALID_ARG); /* no logits yet */
  float logits[512] = {0};
  ck_assert_int_eq(nllm_sampler_sample_logits(NULL, logits, 512, &out), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_sampler_sample_logits(s, NULL, 512, &out), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_sampler_sample_logits(s, logits, 512, NULL), NLLM_ERR_INVALID_ARG);
  nllm_sampler_accept(NULL, 1);
  nllm_sampler_accept(s, -1); /* out-of-vocabulary ids are recorded harmlessly */
  nllm_sampler_accept(s, INT32_MAX);
  nllm_sampler_accept(s, INT32_MIN);
  nllm_sampler_reset(NULL, 1);
  nllm_sampler_reset(s, NLLM_SEED_DEFAULT);
  nllm_sampler_free(NULL);

  ck_assert_int_eq(nllm_decode(c, &tok, 1), NLLM_OK);
  ck_assert_int_eq(nllm_sampler_sample(s, c, &out), NLLM_OK);
  ck_assert(out >= 0 && out < 512);
  ck_assert_ptr_null(nllm_get_logits_ith(c, -1));
  ck_assert_ptr_null(nllm_get_logits_ith(c, 1));
  ck_assert_ptr_null(nllm_get_logits_ith(c, INT32_MAX));
  ck_assert_ptr_nonnull(nllm_get_logits_ith(c, 0));

  int32_t n_gen = 5;
  nllm_generate_params gp;
  nllm_generate_params_init(&gp);
  gp.max_tokens = 2;
  ck_assert_int_eq(nllm_generate(NULL, s, "x", -1, &gp, &n_gen), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(n_gen, 0);
  ck_assert_int_eq(nllm_generate(c, NULL, "x", -1, &gp, &n_gen), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_generate(c, s, NULL, 3, &gp, &n_gen), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_generate(c, s, "x", -1, &gp, NULL), NLLM_OK); /* n_generated optional */
  ck_assert_int_eq(nllm_generate(c, s, "x", -1, NULL, &n_gen), NLLM_ERR_CONTEXT_FULL);
  nllm_context_reset(c);
  nllm_token pids[2] = {1, 403}, bad_pids[2] = {1, 512};
  ck_assert_int_eq(nllm_generate_tokens(NULL, s, pids, 2, &gp, &n_gen), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_generate_tokens(c, NULL, pids, 2, &gp, &n_gen), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_generate_tokens(c, s, NULL, 2, &gp, &n_gen), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_generate_tokens(c, s, pids, -1, &gp, &n_gen), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_generate_tokens(c, s, bad_pids, 2, &gp, &n_gen), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_context_pos(c), 0);
  ck_assert_int_eq(nllm_generate_tokens(c, s, pids, 2, &gp, NULL), NLLM_OK);

  /* A sampler of another model (even an identical file) is refused. */
  nllm_model *m2 = load();
  nllm_sampler *s2 = NULL;
  ck_assert_int_eq(nllm_sampler_create(m2, NULL, &s2), NLLM_OK);
  nllm_context_reset(c);
  ck_assert_int_eq(nllm_generate(c, s2, "x", -1, &gp, &n_gen), NLLM_ERR_INVALID_ARG);
  nllm_sampler_free(s2);
  nllm_model_free(m2);

  /* NULL-after-free: the pattern hosts use is safe. */
  nllm_sampler_free(s);
  s = NULL;
  nllm_sampler_free(s);
  nllm_context_free(c);
  c = NULL;
  nllm_context_free(c);
  nllm_model_free(m);
  m = NULL;
  nllm_model_free(m);
}
END_TEST

/* struct_size rules for each params struct (test_api covers nllm_context_params). */
START_TEST(struct_size_every_params_struct) {
  nllm_model *m = NULL;
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.struct_size = 0;
  ck_assert_int_eq(nllm_model_load(MODEL, &mp, &m), NLLM_ERR_INVALID_ARG);
  ck_assert(strstr(nllm_last_error(), "struct_size"));
  struct {
    nllm_model_params p;
    uint8_t future[24];
  } bigm;
  memset(&bigm, 0, sizeof bigm);
  nllm_model_params_init(&bigm.p);
  bigm.p.struct_size = sizeof bigm;
  ck_assert_int_eq(nllm_model_load(MODEL, &bigm.p, &m), NLLM_OK);
  bigm.future[23] = 1;
  nllm_model *m3 = (nllm_model *)1;
  ck_assert_int_eq(nllm_model_load(MODEL, &bigm.p, &m3), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_null(m3);
  /* An older caller that knows only struct_size + n_threads: defaults for the rest. */
  nllm_model_params_init(&mp);
  mp.struct_size = offsetof(nllm_model_params, use_mmap);
  mp.n_gpu_layers = 99; /* beyond struct_size: ignored */
  ck_assert_int_eq(nllm_model_load(MODEL, &mp, &m3), NLLM_OK);
  nllm_model_free(m3);

  nllm_sampler_params sp;
  nllm_sampler *s = (nllm_sampler *)1;
  nllm_sampler_params_init(&sp);
  sp.struct_size = 2;
  ck_assert_int_eq(nllm_sampler_create(m, &sp, &s), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_null(s);
  struct {
    nllm_sampler_params p;
    uint64_t future;
  } bigs;
  memset(&bigs, 0, sizeof bigs);
  nllm_sampler_params_init(&bigs.p);
  bigs.p.struct_size = sizeof bigs;
  bigs.future = 3;
  ck_assert_int_eq(nllm_sampler_create(m, &bigs.p, &s), NLLM_ERR_INVALID_ARG);
  nllm_sampler_params_init(&sp);
  sp.struct_size = offsetof(nllm_sampler_params, top_k);
  sp.temperature = 0;
  sp.top_k = -5; /* beyond struct_size: the default is used, so this is not an error */
  ck_assert_int_eq(nllm_sampler_create(m, &sp, &s), NLLM_OK);

  nllm_context *c = NULL;
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 32;
  ck_assert_int_eq(nllm_context_create(m, &cp, &c), NLLM_OK);
  nllm_generate_params gp;
  nllm_generate_params_init(&gp);
  gp.struct_size = 0;
  int32_t n_gen;
  ck_assert_int_eq(nllm_generate(c, s, "Once", -1, &gp, &n_gen), NLLM_ERR_INVALID_ARG);
  struct {
    nllm_generate_params p;
    uint32_t future;
  } bigg;
  memset(&bigg, 0, sizeof bigg);
  nllm_generate_params_init(&bigg.p);
  bigg.p.struct_size = sizeof bigg;
  bigg.p.max_tokens = 3;
  ck_assert_int_eq(nllm_generate(c, s, "Once", -1, &bigg.p, &n_gen), NLLM_OK);
  ck_assert_int_le(n_gen, 3);
  bigg.future = 1;
  ck_assert_int_eq(nllm_generate(c, s, "Once", -1, &bigg.p, &n_gen), NLLM_ERR_INVALID_ARG);
  nllm_context_free(c);
  nllm_sampler_free(s);
  nllm_model_free(m);
}
END_TEST

int main(void) {
  Suite *s = suite_create("misuse");
  TCase *tc = tcase_create("misuse");
  tcase_add_test(tc, library_calls_take_any_value);
  tcase_add_test(tc, null_model);
  tcase_add_test(tc, null_pointers_with_a_model);
  tcase_add_test(tc, null_context_and_sampler);
  tcase_add_test(tc, struct_size_every_params_struct);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
