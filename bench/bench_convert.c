/* Quantize-on-load throughput: BF16 weight matrices (the usual Hub dtype) converted in memory
 * to Q8_0 and Q4_K by nllm_source_quantize_inplace, in MB of BF16 input per second, at 1 thread
 * and all threads. Short: 64 MB of weights per run, best of 3. */
#include <stdio.h>
#include <stdlib.h>

#include "convert/convert.h"
#include "qtypes.h"

enum { N_TENSORS = 8, ROWS = 2048, COLS = 2048 };

static nllm_status make_source(nllm_source *src) {
  memset(src, 0, sizeof *src);
  src->path = nllm_strdup("bench");
  src->tensors = nllm_source_alloc(src, N_TENSORS * sizeof *src->tensors);
  if (!src->path || !src->tensors) return NLLM_ERR_NOMEM;
  uint32_t seed = 12345;
  for (int i = 0; i < N_TENSORS; i++) {
    nllm_tensor *t = &src->tensors[i];
    char name[64];
    snprintf(name, sizeof name, "blk.%d.ffn_up.weight", i);
    uint16_t *w = nllm_source_alloc(src, (size_t)ROWS * COLS * 2);
    t->name = nllm_source_strdup(src, name, strlen(name));
    if (!w || !t->name) return NLLM_ERR_NOMEM;
    for (size_t k = 0; k < (size_t)ROWS * COLS; k++) {
      seed = seed * 1664525u + 1013904223u;
      w[k] = nllm_fp32_to_bf16(((float)(seed >> 8) / 16777216.0f - 0.5f) * 0.1f);
    }
    t->type = NLLM_TYPE_BF16;
    t->n_dims = 2;
    t->ne[0] = COLS;
    t->ne[1] = ROWS;
    t->ne[2] = t->ne[3] = 1;
    t->nbytes = (uint64_t)ROWS * COLS * 2;
    t->data = w;
  }
  src->n_tensors = N_TENSORS;
  return NLLM_OK;
}

static double run(int32_t type, int threads) {
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    nllm_source src;
    if (make_source(&src) != NLLM_OK) {
      fprintf(stderr, "out of memory\n");
      exit(1);
    }
    double t0 = nllm_time_ms();
    nllm_status st = nllm_source_quantize_inplace(&src, type, threads, NULL, NULL);
    double ms = nllm_time_ms() - t0;
    nllm_source_free(&src);
    if (st != NLLM_OK) {
      fprintf(stderr, "quantize failed: %s\n", nllm_last_error());
      exit(1);
    }
    double mbs = (double)N_TENSORS * ROWS * COLS * 2 / 1e6 / (ms / 1e3);
    if (mbs > best) best = mbs;
  }
  return best;
}

int main(void) {
  int all = nllm_default_threads();
  const int32_t types[] = {NLLM_TYPE_Q8_0, NLLM_TYPE_Q4_K};
  printf("quantize-on-load, %d x %dx%d BF16 (%.0f MB), best of 3\n", N_TENSORS, ROWS, COLS,
         (double)N_TENSORS * ROWS * COLS * 2 / 1e6);
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    const char *name = nllm_ggml_type_name(types[i]);
    if (!nllm_qtype_get(types[i])) {
      printf("%-5s skipped: not in this build's format table\n", name);
      continue;
    }
    double one = run(types[i], 1), many = run(types[i], all);
    printf("%-5s 1 thread %8.1f MB/s   %d threads %8.1f MB/s  (x%.2f)\n", name, one, all, many,
           many / one);
  }
  return 0;
}
