/* OpenBLAS's thread count belongs to the host program: a prompt that goes through sgemm (here the
 * F32 bundled model, a batch above the float crossover) must leave it as the host set it, also
 * when several contexts decode at once on their own threads. */
#include <pthread.h>

#include "nativellm.h"
#include "testutil.h"

#if !defined(NLLM_NO_BLAS)
#include <cblas.h>

#define MODEL "models/stories260K.gguf"

static nllm_model *model;

/* Decodes a 64-token prompt (the BLAS path) in a fresh context. */
static void *decode_prompt(void *arg) {
  (void)arg;
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 128;
  cp.n_threads = 2;
  nllm_context *ctx = NULL;
  ck_assert_int_eq(nllm_context_create(model, &cp, &ctx), NLLM_OK);
  nllm_token ids[64];
  for (int i = 0; i < 64; i++) ids[i] = 3 + (i * 37) % 500;
  for (int r = 0; r < 4; r++) {
    nllm_context_reset(ctx);
    ck_assert_int_eq(nllm_decode(ctx, ids, 64), NLLM_OK);
  }
  nllm_context_free(ctx);
  return NULL;
}

START_TEST(host_thread_count_is_kept) {
  ck_assert_int_eq(nllm_model_load(MODEL, NULL, &model), NLLM_OK);
  openblas_set_num_threads(3);
  decode_prompt(NULL);
  ck_assert_int_eq(openblas_get_num_threads(), 3);
  pthread_t th[3];
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(pthread_create(&th[i], NULL, decode_prompt, NULL), 0);
  for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
  ck_assert_int_eq(openblas_get_num_threads(), 3);
  nllm_model_free(model);
}
END_TEST
#endif

int main(void) {
  Suite *s = suite_create("blas_threads");
  TCase *tc = tcase_create("blas_threads");
  tcase_set_timeout(tc, 60);
#if !defined(NLLM_NO_BLAS)
  tcase_add_test(tc, host_thread_count_is_kept);
#endif
  suite_add_tcase(s, tc);
  return run_suite(s);
}
