/* The forward pass over the backend interface (kernels/backend.h): a backend op that fails
 * records its status, the pass stops at the next layer check and returns that first failure
 * with its message, and the context decodes correctly afterwards. The failing backend is the
 * CPU's op table with one op wrapped, so no device is needed. */
#include "engine/engine.h"
#include "testutil.h"

#define MODEL "models/stories260K.gguf"

/* The wrapped matmul: call number fail_at fails; every call after a failure does nothing, as a
 * backend's ops must. */
static int matmul_calls, fail_at, calls_after_failure;

static void failing_matmul(nllm_fw_backend *be, float *y, const nllm_weight *w, const float *x,
                           int64_t n) {
  if (be->st) {
    calls_after_failure++;
    return;
  }
  if (++matmul_calls == fail_at) {
    be->st = nllm_err(NLLM_ERR_BACKEND, "injected failure of matmul %d", matmul_calls);
    return;
  }
  nllm_cpu_fw_ops.matmul(be, y, w, x, n);
}

static nllm_context *make_ctx(nllm_model *m) {
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 64;
  cp.n_threads = 1;
  nllm_context *c = NULL;
  ck_assert_msg(nllm_context_create(m, &cp, &c) == NLLM_OK, "%s", nllm_last_error());
  return c;
}

START_TEST(test_failing_op) {
  nllm_model *m = NULL;
  ck_assert_msg(nllm_model_load(MODEL, NULL, &m) == NLLM_OK, "%s", nllm_last_error());
  const int32_t nv = nllm_model_n_vocab(m);
  const nllm_token prompt[] = {1, 403, 407, 261, 378};
  const int32_t n = (int32_t)(sizeof prompt / sizeof prompt[0]);

  nllm_context *ref = make_ctx(m);
  ck_assert_int_eq(nllm_decode(ref, prompt, n), NLLM_OK);
  const float *want = nllm_get_logits(ref);
  ck_assert_ptr_nonnull(want);

  /* every matmul of the pass: fail each in turn (a layer's first, its last, the output head) */
  nllm_context *c = make_ctx(m);
  const nllm_fw_ops *cpu_ops = c->fs.cpu.ops;
  nllm_fw_ops ops = *cpu_ops;
  ops.matmul = failing_matmul;
  ops.matmul_group = NULL; /* q, k, v and gate, up one by one, through the wrapper too */
  const int per_layer = 7; /* q, k, v, o, gate, up, down */
  const int total = per_layer * m->hp.n_layer + 1;
  for (fail_at = 1; fail_at <= total; fail_at++) {
    matmul_calls = calls_after_failure = 0;
    c->fs.cpu.ops = &ops;
    ck_assert_int_eq(nllm_decode(c, prompt, n), NLLM_ERR_BACKEND);
    char expect[64];
    snprintf(expect, sizeof expect, "injected failure of matmul %d", fail_at);
    ck_assert_msg(strstr(nllm_last_error(), expect), "matmul %d: message '%s'", fail_at,
                  nllm_last_error());
    /* the rest of the failing layer at most, nothing of a later one */
    const int left_in_layer = fail_at == total ? 0 : per_layer - 1 - (fail_at - 1) % per_layer;
    ck_assert_msg(calls_after_failure <= left_in_layer,
                  "matmul %d failed, %d more called (%d left in its layer)", fail_at,
                  calls_after_failure, left_in_layer);

    /* the failed rows left nothing behind: the same decode now gives the reference logits */
    c->fs.cpu.ops = cpu_ops;
    ck_assert_int_eq(nllm_decode(c, prompt, n), NLLM_OK);
    const float *got = nllm_get_logits(c);
    ck_assert_msg(memcmp(got, want, (size_t)nv * sizeof(float)) == 0,
                  "logits after the failure of matmul %d differ", fail_at);
    nllm_context_reset(c);
  }
  nllm_context_free(c);
  nllm_context_free(ref);
  nllm_model_free(m);
}
END_TEST

int main(void) {
  Suite *s = suite_create("backend");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_failing_op);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
