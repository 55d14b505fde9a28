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

int main(void) {
  Suite *s = suite_create("abi");
  TCase *tc = tcase_create("abi");
  tcase_add_test(tc, struct_layout_matches);
  tcase_add_test(tc, exported_symbols_match);
  tcase_add_test(tc, version_queries);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
