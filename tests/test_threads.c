/* The threading promises of include/nativellm.h, one test each:
 *  - one model shared by several threads, each with its own context and sampler, gives exactly
 *    (bit for bit) what the same work gives run serially: the model is immutable after load;
 *  - model getters, the tokenizer and chat formatting may be called from many threads at once;
 *  - nllm_last_error() is per thread;
 *  - samplers with a grammar, made on several threads at once, share the model's token trie.
 * Run under ThreadSanitizer by `make tsan`. */
#include <pthread.h>

#include "nativellm.h"
#include "testutil.h"

#define MODEL "models/stories260K.gguf"
#define N_WORKERS 4
#define N_GEN 24
#define N_VOCAB 512

typedef struct job {
  const nllm_model *model;
  int id;
  int n_threads;
  /* results */
  nllm_status st;
  nllm_token ids[N_GEN];
  float logits[N_GEN][N_VOCAB];
} job;

/* Each worker: its own prompt, seed and sampling settings, so the four runs differ. */
static void *run_job(void *arg) {
  job *j = arg;
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 64;
  cp.n_threads = j->n_threads;
  nllm_sampler_params sp;
  nllm_sampler_params_init(&sp);
  sp.seed = 1234u + (unsigned)j->id;
  sp.temperature = j->id == 0 ? 0.0f : 0.7f + 0.1f * (float)j->id;
  nllm_context *c = NULL;
  nllm_sampler *s = NULL;
  j->st = nllm_context_create(j->model, &cp, &c);
  if (j->st == NLLM_OK) j->st = nllm_sampler_create(j->model, &sp, &s);
  nllm_token prompt[4] = {1, 403 + j->id, 407, 261 + 7 * j->id};
  if (j->st == NLLM_OK) j->st = nllm_decode(c, prompt, 4);
  for (int i = 0; i < 4 && s; i++) nllm_sampler_accept(s, prompt[i]);
  for (int t = 0; t < N_GEN && j->st == NLLM_OK; t++) {
    const float *l = nllm_get_logits(c);
    memcpy(j->logits[t], l, sizeof j->logits[t]);
    j->st = nllm_sampler_sample(s, c, &j->ids[t]);
    if (j->st != NLLM_OK) break;
    nllm_sampler_accept(s, j->ids[t]);
    j->st = nllm_decode(c, &j->ids[t], 1);
  }
  nllm_sampler_free(s);
  nllm_context_free(c);
  return NULL;
}

static nllm_model *load(void) {
  nllm_model *m = NULL;
  nllm_status st = nllm_model_load(MODEL, NULL, &m);
  ck_assert_msg(st == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(nllm_model_n_vocab(m), N_VOCAB);
  return m;
}

static void concurrent_equals_serial(int n_threads) {
  nllm_model *m = load();
  static job serial[N_WORKERS], par[N_WORKERS];
  for (int i = 0; i < N_WORKERS; i++) {
    serial[i] = (job){.model = m, .id = i, .n_threads = n_threads};
    run_job(&serial[i]);
    ck_assert_msg(serial[i].st == NLLM_OK, "serial job %d: %s", i, nllm_last_error());
  }
  pthread_t th[N_WORKERS];
  for (int i = 0; i < N_WORKERS; i++) {
    par[i] = (job){.model = m, .id = i, .n_threads = n_threads};
    ck_assert_int_eq(pthread_create(&th[i], NULL, run_job, &par[i]), 0);
  }
  for (int i = 0; i < N_WORKERS; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < N_WORKERS; i++) {
    ck_assert_int_eq(par[i].st, NLLM_OK);
    ck_assert_msg(memcmp(serial[i].ids, par[i].ids, sizeof par[i].ids) == 0,
                  "job %d: generated ids differ between serial and concurrent runs", i);
    ck_assert_msg(memcmp(serial[i].logits, par[i].logits, sizeof par[i].logits) == 0,
                  "job %d: logits differ between serial and concurrent runs", i);
  }
  /* The jobs really were different work (else the comparison proves little). */
  ck_assert(memcmp(serial[0].ids, serial[1].ids, sizeof serial[0].ids) != 0);
  nllm_model_free(m);
}

START_TEST(shared_model_one_thread_each) {
  concurrent_equals_serial(1);
}
END_TEST

/* Each context also runs its own OpenMP team inside. */
START_TEST(shared_model_openmp_inside) {
  concurrent_equals_serial(2);
}
END_TEST

typedef struct reader {
  const nllm_model *model;
  int ok;
} reader;

static void *read_model(void *arg) {
  reader *r = arg;
  const nllm_model *m = r->model;
  r->ok = 1;
  for (int it = 0; it < 50; it++) {
    const char *s;
    int64_t v;
    r->ok &= strcmp(nllm_model_arch(m), "llama") == 0;
    r->ok &= nllm_model_n_vocab(m) == N_VOCAB && nllm_model_n_layer(m) == 5;
    r->ok &= nllm_model_meta_str(m, "general.architecture", &s) == NLLM_OK && !strcmp(s, "llama");
    r->ok &= nllm_model_meta_int(m, "llama.block_count", &v) == NLLM_OK && v == 5;
    r->ok &= nllm_model_token(m, NLLM_TOKEN_BOS) == 1;
    nllm_token ids[64];
    int32_t n = 0;
    r->ok &= nllm_tokenize(m, "Once upon a time", -1, 1, 0, ids, 64, &n) == NLLM_OK && n >= 1;
    char buf[256];
    int32_t len;
    r->ok &= nllm_detokenize(m, ids, n, 0, buf, sizeof buf, &len) == NLLM_OK;
    r->ok &= nllm_token_to_piece(m, 300, 0, buf, sizeof buf, &len) == NLLM_OK;
    nllm_chat_message msg[2] = {{"system", "Be brief."}, {"user", "Once upon a time"}};
    nllm_status cst = nllm_chat_format(m, msg, 2, 1, buf, sizeof buf, &len);
    r->ok &= cst == NLLM_OK || cst == NLLM_ERR_UNSUPPORTED;
    r->ok &= nllm_chat_apply_template("chatml", msg, 2, 1, buf, sizeof buf, &len) == NLLM_OK &&
             strstr(buf, "<|im_start|>user\nOnce upon a time") != NULL;
  }
  return NULL;
}

START_TEST(concurrent_getters_tokenizer_chat) {
  nllm_model *m = load();
  pthread_t th[N_WORKERS];
  reader r[N_WORKERS];
  for (int i = 0; i < N_WORKERS; i++) {
    r[i] = (reader){.model = m};
    ck_assert_int_eq(pthread_create(&th[i], NULL, read_model, &r[i]), 0);
  }
  for (int i = 0; i < N_WORKERS; i++) {
    pthread_join(th[i], NULL);
    ck_assert_msg(r[i].ok, "reader %d saw a wrong value", i);
  }
  nllm_model_free(m);
}
END_TEST

/* Two threads fail differently, wait for each other, then each must still read its own message;
 * the main thread's message is untouched by both. */
static pthread_barrier_t barrier;

static void *fail_and_check(void *arg) {
  int who = (int)(intptr_t)arg;
  nllm_model *m = (nllm_model *)1;
  char path[64];
  snprintf(path, sizeof path, "/nonexistent/thread-%d.gguf", who);
  nllm_status st = nllm_model_load(path, NULL, &m);
  pthread_barrier_wait(&barrier);
  pthread_barrier_wait(&barrier); /* the other thread has failed too by now */
  return (void *)(intptr_t)(st == NLLM_ERR_IO && m == NULL && strstr(nllm_last_error(), path));
}

static void *no_error_yet(void *arg) {
  (void)arg;
  return (void *)(intptr_t)(strcmp(nllm_last_error(), "") == 0);
}

START_TEST(last_error_is_thread_local) {
  nllm_context *c = NULL;
  ck_assert_int_eq(nllm_context_create(NULL, NULL, &c), NLLM_ERR_INVALID_ARG);
  char mine[256];
  snprintf(mine, sizeof mine, "%s", nllm_last_error());
  ck_assert(strstr(mine, "model is NULL"));
  ck_assert_int_eq(pthread_barrier_init(&barrier, NULL, 2), 0);
  pthread_t a, b, fresh;
  ck_assert_int_eq(pthread_create(&a, NULL, fail_and_check, (void *)(intptr_t)1), 0);
  ck_assert_int_eq(pthread_create(&b, NULL, fail_and_check, (void *)(intptr_t)2), 0);
  void *ra, *rb, *rf;
  pthread_join(a, &ra);
  pthread_join(b, &rb);
  ck_assert_msg(ra && rb, "a thread's nllm_last_error() showed another thread's failure");
  ck_assert_str_eq(nllm_last_error(), mine);
  ck_assert_int_eq(pthread_create(&fresh, NULL, no_error_yet, NULL), 0);
  pthread_join(fresh, &rf);
  ck_assert_msg(rf, "a new thread must start with an empty nllm_last_error()");
  pthread_barrier_destroy(&barrier);
}
END_TEST

/* Samplers with a grammar made on several threads at once share the model's token trie (the
 * first to finish building it publishes it): each picks what it picks alone. */
typedef struct gjob {
  const nllm_model *model;
  int id;
  nllm_status st;
  nllm_token ids[N_GEN];
} gjob;

static void *run_grammar_job(void *arg) {
  gjob *j = arg;
  nllm_sampler_params sp;
  nllm_sampler_params_init(&sp);
  sp.seed = (uint32_t)(100 + j->id);
  sp.json_schema = "{\"type\": \"array\", \"items\": {\"type\": \"string\"}}";
  nllm_sampler *s = NULL;
  if ((j->st = nllm_sampler_create(j->model, &sp, &s))) return NULL;
  pthread_barrier_wait(&barrier);
  float l[N_VOCAB];
  uint64_t rng = (uint64_t)j->id + 1;
  for (int i = 0; i < N_GEN && !j->st; i++) {
    for (int k = 0; k < N_VOCAB; k++) l[k] = (float)(test_xorshift(&rng) % 1000) / 100.0f;
    if (!(j->st = nllm_sampler_sample_logits(s, l, N_VOCAB, &j->ids[i])))
      nllm_sampler_accept(s, j->ids[i]);
  }
  nllm_sampler_free(s);
  return NULL;
}

START_TEST(grammar_samplers_share_the_trie) {
  gjob serial[N_WORKERS], par[N_WORKERS];
  nllm_model *m = load();
  ck_assert_int_eq(pthread_barrier_init(&barrier, NULL, 1), 0);
  for (int i = 0; i < N_WORKERS; i++) {
    serial[i] = (gjob){.model = m, .id = i};
    run_grammar_job(&serial[i]);
    ck_assert_int_eq(serial[i].st, NLLM_OK);
  }
  pthread_barrier_destroy(&barrier);
  nllm_model_free(m);
  m = load(); /* a fresh model: no trie yet, the threads race to build it */
  ck_assert_int_eq(pthread_barrier_init(&barrier, NULL, N_WORKERS), 0);
  pthread_t th[N_WORKERS];
  for (int i = 0; i < N_WORKERS; i++) {
    par[i] = (gjob){.model = m, .id = i};
    ck_assert_int_eq(pthread_create(&th[i], NULL, run_grammar_job, &par[i]), 0);
  }
  for (int i = 0; i < N_WORKERS; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < N_WORKERS; i++) {
    ck_assert_int_eq(par[i].st, NLLM_OK);
    ck_assert(!memcmp(par[i].ids, serial[i].ids, sizeof par[i].ids));
  }
  pthread_barrier_destroy(&barrier);
  nllm_model_free(m);
}
END_TEST

int main(void) {
  Suite *s = suite_create("threads");
  TCase *tc = tcase_create("threads");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, shared_model_one_thread_each);
  tcase_add_test(tc, shared_model_openmp_inside);
  tcase_add_test(tc, concurrent_getters_tokenizer_chat);
  tcase_add_test(tc, grammar_samplers_share_the_trie);
  tcase_add_test(tc, last_error_is_thread_local);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
