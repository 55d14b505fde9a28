/* OpenBLAS's thread count belongs to the host program (numpy on the same OpenBLAS): the library
 * links OpenBLAS's serial build and never sets a thread count, also when a prompt goes through
 * sgemm (here the F32 bundled model, a batch above the float crossover, in the scalar tier: the
 * SIMD tiers compute float weights with their own GEMM) on several contexts at once. And a
 * program under an address-space limit exits after its work (the threaded build's workers spun
 * in their shutdown there, issue 24 item 17). */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#include "nativellm.h"
#include "ops.h"
#include "qtypes.h"
#include "testutil.h"

#define MODEL "models/stories260K.gguf"

#if !defined(NLLM_NO_BLAS)
#include <cblas.h>

/* This program's own definition takes the place of OpenBLAS's for every caller linked into it
 * (the library here is the static internal archive): a call from the library is counted. */
static pthread_mutex_t calls_lock = PTHREAD_MUTEX_INITIALIZER;
static int set_threads_calls;

void openblas_set_num_threads(int n) {
  (void)n;
  pthread_mutex_lock(&calls_lock);
  set_threads_calls++;
  pthread_mutex_unlock(&calls_lock);
}

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

START_TEST(serial_openblas_is_linked) {
  nllm_qtypes_set_isa(NLLM_ISA_SCALAR);
  ck_assert_msg(openblas_get_parallel() == 0,
                "the OpenBLAS loaded is threaded (openblas_get_parallel() = %d): the build "
                "must link the serial one (libopenblas-serial-dev, Makefile OPENBLAS_SERIAL)",
                openblas_get_parallel());
  ck_assert_int_eq(nllm_blas_is_serial(), 1);
  /* the prompts below do go through sgemm */
  ck_assert_int_eq(nllm_matmul_uses_blas(NLLM_TYPE_F32, 64, 2), 1);
}
END_TEST

/* The serial OpenBLAS is not safe for concurrent calls: the pool's threads (and contexts on
 * several threads) must not be inside sgemm at once. Every product of several threads equals
 * the one-thread product. */
START_TEST(concurrent_sgemm_products_are_right) {
  enum { ROWS = 512, COLS = 256, NT = 48, THREADS = 4 };
  nllm_qtypes_set_isa(NLLM_ISA_SCALAR);
  ck_assert_int_eq(nllm_matmul_uses_blas(NLLM_TYPE_F32, NT, THREADS), 1);
  float *W = malloc(sizeof(float) * ROWS * COLS), *x = malloc(sizeof(float) * NT * COLS);
  float *ref = malloc(sizeof(float) * NT * ROWS), *y = malloc(sizeof(float) * NT * ROWS);
  ck_assert(W && x && ref && y);
  for (int i = 0; i < ROWS * COLS; i++) W[i] = (float)((i * 7919) % 201) / 100.0f - 1.0f;
  for (int i = 0; i < NT * COLS; i++) x[i] = (float)((i * 104729) % 199) / 100.0f - 1.0f;
  void *wd = malloc(nllm_matmul_wsize(NLLM_TYPE_F32, COLS, NT, THREADS));
  ck_assert_ptr_nonnull(wd);
  nllm_matmul(ref, W, NLLM_TYPE_F32, ROWS, COLS, x, NT, wd, 1);
  for (int r = 0; r < 200; r++) {
    for (int i = 0; i < NT * ROWS; i++) y[i] = NAN;
    nllm_matmul(y, W, NLLM_TYPE_F32, ROWS, COLS, x, NT, wd, THREADS);
    for (int i = 0; i < NT * ROWS; i++)
      ck_assert_msg(fabsf(y[i] - ref[i]) <= 1e-4f * (1.0f + fabsf(ref[i])),
                    "run %d: y[%d] = %g, one thread gave %g", r, i, y[i], ref[i]);
  }
  free(wd);
  free(W);
  free(x);
  free(ref);
  free(y);
}
END_TEST

START_TEST(host_thread_count_is_never_set) {
  nllm_qtypes_set_isa(NLLM_ISA_SCALAR);
  ck_assert_int_eq(nllm_model_load(MODEL, NULL, &model), NLLM_OK);
  int before = openblas_get_num_threads();
  decode_prompt(NULL);
  pthread_t th[3];
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(pthread_create(&th[i], NULL, decode_prompt, NULL), 0);
  for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
  ck_assert_int_eq(set_threads_calls, 0);
  ck_assert_int_eq(openblas_get_num_threads(), before);
  nllm_model_free(model);
}
END_TEST
#endif

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* `nllm run` with a prompt long enough for sgemm, under `ulimit -v`: it must print its story and
 * exit, not hang after the work. */
START_TEST(exits_under_address_space_limit) {
#ifdef UNDER_ASAN
  fprintf(stderr, "SKIP: an address-space limit cannot be set under AddressSanitizer\n");
#else
  const char *b = getenv("NLLM_BUILD");
  char nllm_bin[512];
  snprintf(nllm_bin, sizeof nllm_bin, "%s/nllm", b && *b ? b : "build");
  int fd[2];
  ck_assert_int_eq(pipe(fd), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    dup2(fd[1], 1);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 2);
    setenv("NLLM_ISA", "scalar", 1); /* the tier whose float prompts go through sgemm */
    struct rlimit rl = {(rlim_t)200 << 20, (rlim_t)200 << 20};
    setrlimit(RLIMIT_AS, &rl);
    execl(nllm_bin, "nllm", "run", "-m", MODEL, "-t", "2", "-n", "8", "--temp", "0", "-p",
          "Once upon a time, there was a little girl named Lily. She loved to play outside in "
          "the park with her friends and her big red ball.",
          (char *)NULL);
    _exit(127);
  }
  close(fd[1]);
  /* wait up to 60 s for the exit */
  int status = 0, done = 0;
  for (int i = 0; i < 600 && !done; i++) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    ck_assert_int_ge(w, 0);
    if (w == pid) {
      done = 1;
    } else {
      struct timespec ts = {0, 100 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  char out[4096];
  ssize_t n = read(fd[0], out, sizeof out - 1);
  close(fd[0]);
  out[n > 0 ? n : 0] = 0;
  ck_assert_msg(done, "nllm run under ulimit -v 200 MB did not exit within 60 s (output: %s)", out);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "nllm run exited with %d: %s",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
  ck_assert_msg(strstr(out, "Lily") != NULL, "no story printed: %s", out);
#endif
}
END_TEST

int main(void) {
  Suite *s = suite_create("blas_threads");
  TCase *tc = tcase_create("blas_threads");
  tcase_set_timeout(tc, 120);
#if !defined(NLLM_NO_BLAS)
  tcase_add_test(tc, serial_openblas_is_linked);
  tcase_add_test(tc, host_thread_count_is_never_set);
  tcase_add_test(tc, concurrent_sgemm_products_are_right);
#endif
  tcase_add_test(tc, exits_under_address_space_limit);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
