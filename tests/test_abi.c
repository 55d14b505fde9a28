/* The ABI promise, checked: the exported symbols equal the committed list (abi/symbols.txt)
 * and every public struct's size and field offsets equal abi/struct_layout.txt. Regenerate
 * both deliberately with `make abi-update` (and bump NLLM_ABI_VERSION if anything changed
 * other than appending). */
#include <stddef.h>

#include "nativellm.h"
#include "testutil.h"

#define FIELD(S, F) \
  { #S "." #F, offsetof(S, F) }
#define SIZE(S) \
  { #S, sizeof(S) }

static const struct {
  const char *name;
  size_t value;
} layout[] = {
    SIZE(nllm_model_params),
    FIELD(nllm_model_params, struct_size),
    FIELD(nllm_model_params, n_threads),
    FIELD(nllm_model_params, use_mmap),
    FIELD(nllm_model_params, n_ctx_default),
    FIELD(nllm_model_params, n_gpu_layers),
    FIELD(nllm_model_params, vocab_only),
    FIELD(nllm_model_params, quantize_type),
    FIELD(nllm_model_params, progress),
    FIELD(nllm_model_params, progress_user_data),
    FIELD(nllm_model_params, no_repack),
    SIZE(nllm_context_params),
    FIELD(nllm_context_params, struct_size),
    FIELD(nllm_context_params, n_ctx),
    FIELD(nllm_context_params, n_threads),
    FIELD(nllm_context_params, n_batch),
    FIELD(nllm_context_params, kv_type),
    FIELD(nllm_context_params, all_logits),
    FIELD(nllm_context_params, n_seq_max),
    FIELD(nllm_context_params, seed),
    FIELD(nllm_context_params, abort_callback),
    FIELD(nllm_context_params, abort_user_data),
    SIZE(nllm_sampler_params),
    FIELD(nllm_sampler_params, struct_size),
    FIELD(nllm_sampler_params, temperature),
    FIELD(nllm_sampler_params, top_k),
    FIELD(nllm_sampler_params, top_p),
    FIELD(nllm_sampler_params, min_p),
    FIELD(nllm_sampler_params, repeat_penalty),
    FIELD(nllm_sampler_params, repeat_last_n),
    FIELD(nllm_sampler_params, seed),
    SIZE(nllm_generate_params),
    FIELD(nllm_generate_params, struct_size),
    FIELD(nllm_generate_params, max_tokens),
    FIELD(nllm_generate_params, add_bos),
    FIELD(nllm_generate_params, parse_special),
    FIELD(nllm_generate_params, stop_at_eog),
    FIELD(nllm_generate_params, on_token),
    FIELD(nllm_generate_params, user_data),
    SIZE(nllm_timings),
    FIELD(nllm_timings, struct_size),
    FIELD(nllm_timings, n_prompt_tokens),
    FIELD(nllm_timings, n_gen_tokens),
    FIELD(nllm_timings, prompt_ms),
    FIELD(nllm_timings, gen_ms),
    SIZE(nllm_chat_message),
    FIELD(nllm_chat_message, role),
    FIELD(nllm_chat_message, content),
    SIZE(nllm_convert_params),
    FIELD(nllm_convert_params, struct_size),
    FIELD(nllm_convert_params, n_threads),
    FIELD(nllm_convert_params, type),
    FIELD(nllm_convert_params, type_name),
    FIELD(nllm_convert_params, progress),
    FIELD(nllm_convert_params, progress_user_data),
    SIZE(nllm_convert_stats),
    FIELD(nllm_convert_stats, struct_size),
    FIELD(nllm_convert_stats, n_tensors),
    FIELD(nllm_convert_stats, bytes_in),
    FIELD(nllm_convert_stats, bytes_out),
    FIELD(nllm_convert_stats, seconds),
    FIELD(nllm_context_params, kv_type_v),
    SIZE(nllm_batch),
    FIELD(nllm_batch, struct_size),
    FIELD(nllm_batch, n_tokens),
    FIELD(nllm_batch, tokens),
    FIELD(nllm_batch, pos),
    FIELD(nllm_batch, seq_id),
    FIELD(nllm_batch, logits),
    SIZE(nllm_chat_template_params),
    FIELD(nllm_chat_template_params, struct_size),
    FIELD(nllm_chat_template_params, add_generation_prompt),
    FIELD(nllm_chat_template_params, template_text),
    FIELD(nllm_chat_template_params, messages_json),
    FIELD(nllm_chat_template_params, tools_json),
    FIELD(nllm_chat_template_params, vars_json),
    FIELD(nllm_chat_template_params, max_output_bytes),
    FIELD(nllm_chat_template_params, time_limit_ms),
    FIELD(nllm_chat_template_params, now),
    SIZE(nllm_lora_adapter_params),
    FIELD(nllm_lora_adapter_params, struct_size),
    FIELD(nllm_lora_adapter_params, weight_type),
    FIELD(nllm_context_params, bf16_activations),
};

static char *current_layout(void) {
  size_t cap = 16384, at = 0;
  char *s = malloc(cap);
  for (size_t i = 0; i < sizeof layout / sizeof layout[0]; i++)
    at += (size_t)snprintf(s + at, cap - at, "%s %zu\n", layout[i].name, layout[i].value);
  return s;
}

/* Exported symbols of the shared library, sorted, one per line. */
static char *current_symbols(void) {
  const char *build = getenv("NLLM_BUILD");
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "nm -D --defined-only %s/libnativellm.so.1 | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | "
           "LC_ALL=C sort",
           build && *build ? build : "build");
  FILE *p = popen(cmd, "r");
  if (!p) return NULL;
  size_t cap = 65536;
  char *s = malloc(cap);
  size_t n = fread(s, 1, cap - 1, p);
  s[n] = 0;
  pclose(p);
  return s;
}

static void check_against(const char *file, char *now) {
  ck_assert_msg(now && *now, "could not compute the current %s", file);
  if (getenv("NLLM_ABI_UPDATE")) {
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fputs(now, f);
    fclose(f);
  }
  char *want = read_file(file, NULL);
  ck_assert_msg(want, "%s is missing (run make abi-update once, deliberately)", file);
  ck_assert_msg(strcmp(want, now) == 0,
                "%s differs from the built library: the ABI changed. If intended, run make "
                "abi-update and bump NLLM_ABI_VERSION unless you only appended.\n--- "
                "committed:\n%s\n--- now:\n%s",
                file, want, now);
  free(want);
  free(now);
}

START_TEST(struct_layout_matches) {
  check_against("abi/struct_layout.txt", current_layout());
}
END_TEST

START_TEST(exported_symbols_match) {
  char *now = current_symbols();
  /* Every exported name carries the prefix: nothing internal leaks. */
  for (char *l = now; l && *l;) {
    char *e = strchr(l, '\n');
    ck_assert_msg(strncmp(l, "nllm_", 5) == 0, "exported symbol without nllm_ prefix: %.*s",
                  (int)(e ? e - l : (long)strlen(l)), l);
    l = e ? e + 1 : l + strlen(l);
  }
  check_against("abi/symbols.txt", now);
}
END_TEST

START_TEST(version_queries) {
  ck_assert_int_eq(nllm_abi_version(), NLLM_ABI_VERSION);
  ck_assert_str_eq(nllm_version(), NLLM_VERSION_STRING);
  ck_assert_str_eq(nllm_status_name(NLLM_ERR_FORMAT), "NLLM_ERR_FORMAT");
  ck_assert_ptr_nonnull(nllm_system_info());
}
END_TEST

/* The params inits write no byte past the size the caller passes (the header's macros pass
 * sizeof the caller's struct): an app built against an older header has a smaller struct, and
 * what follows it in its memory must stay as it was. */
#define SIZED_CALL(T)                                    \
  static nllm_status T##_sized_call(void *p, size_t n) { \
    return T##_init_sized(p, n);                         \
  }
#define INIT_CALLS(T)                    \
  SIZED_CALL(T)                          \
  static void T##_legacy_call(void *p) { \
    (T##_init)(p);                       \
  }
INIT_CALLS(nllm_model_params)
INIT_CALLS(nllm_chat_template_params)
INIT_CALLS(nllm_context_params)
INIT_CALLS(nllm_sampler_params)
INIT_CALLS(nllm_generate_params)
INIT_CALLS(nllm_convert_params)
INIT_CALLS(nllm_batch)
/* structs born after the macros: no unsized init */
SIZED_CALL(nllm_lora_adapter_params)

static const struct {
  const char *name;
  nllm_status (*sized)(void *, size_t);
  void (*legacy)(void *);
  size_t size, v1_size; /* the library's struct; what the unsized symbol writes */
} inits[] = {
#define INIT(T, last) \
  { #T, T##_sized_call, T##_legacy_call, sizeof(T), offsetof(T, last) + sizeof(((T *)0)->last) }
    INIT(nllm_model_params, progress_user_data),
    INIT(nllm_chat_template_params, now),
    INIT(nllm_context_params, kv_type_v),
    INIT(nllm_sampler_params, json_schema),
    INIT(nllm_generate_params, finish_reason),
    INIT(nllm_convert_params, progress_user_data),
    INIT(nllm_batch, logits),
    {"nllm_lora_adapter_params", nllm_lora_adapter_params_sized_call, NULL,
     sizeof(nllm_lora_adapter_params), sizeof(nllm_lora_adapter_params)},
#undef INIT
};

#define GUARD 0xA5

static union {
  max_align_t align;
  unsigned char b[1024];
} app;

static void assert_guard_from(const char *what, size_t from) {
  for (size_t i = from; i < sizeof app.b; i++)
    ck_assert_msg(app.b[i] == GUARD, "%s: byte %zu past the caller's struct was written", what, i);
}

static uint32_t app_struct_size(void) {
  uint32_t s;
  memcpy(&s, app.b, sizeof s);
  return s;
}

START_TEST(params_init_writes_only_the_callers_size) {
  for (size_t k = 0; k < sizeof inits / sizeof inits[0]; k++) {
    const size_t sizes[] = {sizeof(uint32_t), inits[k].size / 2, inits[k].size - 1, inits[k].size,
                            inits[k].size + 24};
    for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
      size_t n = sizes[j];
      memset(app.b, GUARD, sizeof app.b);
      ck_assert_int_eq(inits[k].sized(app.b, n), NLLM_OK);
      assert_guard_from(inits[k].name, n);
      ck_assert_uint_eq(app_struct_size(), n);
      /* a newer (larger) struct: the fields this library does not know are zero */
      for (size_t i = inits[k].size; i < n; i++) ck_assert_uint_eq(app.b[i], 0);
    }
    /* not a struct size: nothing written, a message naming the struct */
    memset(app.b, GUARD, sizeof app.b);
    ck_assert_int_eq(inits[k].sized(app.b, 2), NLLM_ERR_INVALID_ARG);
    ck_assert_int_eq(inits[k].sized(app.b, (size_t)NLLM_PARAMS_MAX_SIZE + 1), NLLM_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(nllm_last_error(), inits[k].name));
    ck_assert_int_eq(inits[k].sized(NULL, inits[k].size), NLLM_ERR_INVALID_ARG);
    assert_guard_from(inits[k].name, 0);
    /* the unsized symbol (programs built before the macros) writes the ABI 1.0 layout, also
     * when the struct grows later */
    if (!inits[k].legacy) continue;
    inits[k].legacy(app.b);
    assert_guard_from(inits[k].name, inits[k].v1_size);
    ck_assert_uint_eq(app_struct_size(), inits[k].v1_size);
  }
}
END_TEST

/* nllm_context_params as an app built before kv_type_v was appended has it: made by the macro
 * (sizeof this struct), then accepted by nllm_context_create with defaults for the rest. */
typedef struct old_context_params {
  uint32_t struct_size;
  int32_t n_ctx, n_threads, n_batch, kv_type, all_logits, n_seq_max;
  uint64_t seed;
  nllm_abort_fn abort_callback;
  void *abort_user_data;
} old_context_params;

START_TEST(older_app_struct_is_initialized_and_read) {
  struct {
    old_context_params p;
    uint32_t guard[4];
  } old;
  memset(&old, GUARD, sizeof old);
  ck_assert_int_eq(
      nllm_context_params_init_sized((nllm_context_params *)(void *)&old.p, sizeof old.p), NLLM_OK);
  for (int i = 0; i < 4; i++) ck_assert_uint_eq(old.guard[i], 0xA5A5A5A5u);
  ck_assert_uint_eq(old.p.struct_size, sizeof old.p);
  ck_assert_int_eq(old.p.kv_type, NLLM_TYPE_F16);
  ck_assert_int_eq(old.p.n_seq_max, 1);
  ck_assert_uint_eq(old.p.seed, NLLM_SEED_DEFAULT);
  old.p.n_ctx = 64;
  nllm_model *m;
  ck_assert_int_eq(nllm_model_load("models/stories260K.gguf", NULL, &m), NLLM_OK);
  nllm_context *ctx;
  ck_assert_msg(
      nllm_context_create(m, (const nllm_context_params *)(const void *)&old.p, &ctx) == NLLM_OK,
      "%s", nllm_last_error());
  ck_assert_int_eq(nllm_context_n_ctx(ctx), 64);
  nllm_context_free(ctx);
  nllm_model_free(m);
}
END_TEST

int main(void) {
  Suite *s = suite_create("abi");
  TCase *tc = tcase_create("abi");
  tcase_add_test(tc, struct_layout_matches);
  tcase_add_test(tc, exported_symbols_match);
  tcase_add_test(tc, version_queries);
  tcase_add_test(tc, params_init_writes_only_the_callers_size);
  tcase_add_test(tc, older_app_struct_is_initialized_and_read);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
