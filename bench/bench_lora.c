/* What LoRA adapters cost per decode step (and per prompt chunk), measured so that a busy host
 * does not decide the answer: one context runs the base and every adapter in turn, one step
 * each, round after round, so all of them see the same neighbours; each round's step time of an
 * adapter is divided by the base's of the same round, and the median of those ratios is the
 * overhead reported (with the median step times). Both in wall time and in the process's CPU
 * time (every thread's): on a host with more runnable threads than cores the wall time of a
 * step is mostly the scheduler's, while its CPU time still counts the work (and the stalls on
 * memory) of the step.
 *
 * usage: bench_lora MODEL ADAPTER[:TYPE]... [-t THREADS] [-n ROUNDS] [-p PROMPT_TOKENS]
 * TYPE (f32, f16, bf16; default: the library's) is what the adapter's F32 weights are kept in,
 * so one file compares its storage types in one run. -p 0 (default) times single-token decode
 * steps (the cache grows to 256 positions and starts over); -p N times N-token prompt chunks
 * from an empty cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "nativellm.h"

#define MAX_CFG 9
#define DECODE_CTX 256

static double now_ms(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* "PATH:TYPE" -> path (in buf) and NLLM_TYPE_* of TYPE; no known TYPE: the whole text, NONE. */
static int32_t split_type(const char *spec, char *buf, size_t cap) {
  static const int32_t types[] = {NLLM_TYPE_F32, NLLM_TYPE_F16, NLLM_TYPE_BF16};
  snprintf(buf, cap, "%s", spec);
  char *colon = strrchr(buf, ':');
  if (colon)
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
      if (!strcasecmp(colon + 1, nllm_type_name(types[i]))) {
        *colon = 0;
        return types[i];
      }
  return NLLM_TYPE_NONE;
}

static int fail(const char *what) {
  fprintf(stderr, "bench_lora: %s: %s\n", what, nllm_last_error());
  return 1;
}

int main(int argc, char **argv) {
  const char *model_path = NULL, *paths[MAX_CFG];
  int n_ad = 0, threads = 2, rounds = 64, prompt = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-t") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-n") && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-p") && i + 1 < argc)
      prompt = atoi(argv[++i]);
    else if (!model_path)
      model_path = argv[i];
    else if (n_ad < MAX_CFG - 1)
      paths[n_ad++] = argv[i];
  }
  if (!model_path || n_ad == 0 || threads < 1 || rounds < 1 || prompt < 0 || prompt > 4096) {
    fprintf(stderr, "usage: bench_lora MODEL ADAPTER... [-t THREADS] [-n ROUNDS] [-p PROMPT]\n");
    return 2;
  }
  nllm_model *m = NULL;
  if (nllm_model_load(model_path, NULL, &m)) return fail(model_path);
  nllm_lora_adapter *ad[MAX_CFG] = {0};
  for (int k = 0; k < n_ad; k++) {
    char path[4096];
    nllm_lora_adapter_params lp;
    nllm_lora_adapter_params_init(&lp);
    lp.weight_type = split_type(paths[k], path, sizeof path);
    if (nllm_lora_adapter_load_params(m, path, &lp, &ad[k])) return fail(paths[k]);
  }
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = prompt ? prompt + 1 : DECODE_CTX;
  cp.n_batch = prompt ? prompt : 1;
  cp.n_threads = threads;
  nllm_context *ctx = NULL;
  if (nllm_context_create(m, &cp, &ctx)) return fail("context");
  const int n_cfg = n_ad + 1, n_tok = prompt ? prompt : 1;
  nllm_token *ids = malloc((size_t)n_tok * sizeof *ids);
  double *t = malloc(sizeof(double) * (size_t)(rounds * n_cfg));
  double *cpu = malloc(sizeof(double) * (size_t)(rounds * n_cfg));
  double *ratio = malloc(sizeof(double) * (size_t)rounds);
  if (!ids || !t || !cpu || !ratio) return 1;
  const int32_t nv = nllm_model_n_vocab(m);
  for (int i = 0; i < n_tok; i++) ids[i] = (nllm_token)((1 + 7919 * i) % nv);
  /* round -1 warms every configuration (pages in the adapters, sizes the scratch) */
  for (int r = -1; r < rounds; r++)
    for (int c = 0; c < n_cfg; c++) {
      const float one = 1.0f;
      if (nllm_context_set_lora(ctx, c ? &ad[c - 1] : NULL, c ? &one : NULL, c ? 1 : 0))
        return fail("set_lora");
      if (prompt || nllm_context_pos(ctx) >= DECODE_CTX - 1) nllm_context_reset(ctx);
      const double t0 = now_ms(CLOCK_MONOTONIC), c0 = now_ms(CLOCK_PROCESS_CPUTIME_ID);
      if (nllm_decode(ctx, ids, n_tok)) return fail("decode");
      if (r < 0) continue;
      t[r * n_cfg + c] = now_ms(CLOCK_MONOTONIC) - t0;
      cpu[r * n_cfg + c] = now_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
    }
  printf("bench_lora: %s, %d threads, %d rounds of %s, %s\n", model_path, threads, rounds,
         prompt ? "prompt chunks" : "decode steps", nllm_system_info());
  printf("| config | rank | kept as | wall ms/step | ratio to base | CPU ms/step | CPU ratio |\n");
  printf("| :----- | ---: | :------ | -----------: | ------------: | ----------: | --------: |\n");
  double *col = malloc(sizeof(double) * (size_t)rounds);
  if (!col) return 1;
  for (int c = 0; c < n_cfg; c++) {
    double med[4];
    for (int k = 0; k < 2; k++) {
      const double *v = k ? cpu : t;
      for (int r = 0; r < rounds; r++) {
        col[r] = v[r * n_cfg + c];
        ratio[r] = v[r * n_cfg + c] / v[r * n_cfg];
      }
      med[2 * k] = median(col, rounds);
      med[2 * k + 1] = median(ratio, rounds);
    }
    const int32_t wt = c ? nllm_lora_adapter_weight_type(ad[c - 1]) : NLLM_TYPE_NONE;
    printf("| %s | %d | %s | %.2f | %.3f | %.2f | %.3f |\n", c ? paths[c - 1] : "base",
           c ? nllm_lora_adapter_rank(ad[c - 1]) : 0,
           !c                     ? "-"
           : wt == NLLM_TYPE_NONE ? "mixed"
                                  : nllm_type_name(wt),
           med[0], med[1], med[2], med[3]);
  }
  free(col);
  free(ids);
  free(t);
  free(cpu);
  free(ratio);
  nllm_context_free(ctx);
  for (int k = 0; k < n_ad; k++) nllm_lora_adapter_free(ad[k]);
  nllm_model_free(m);
  return 0;
}
