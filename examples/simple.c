/* The README's example: load the bundled model and print 64 greedy tokens of a story. */
#include <stdio.h>
#include "nativellm.h"

static int32_t print_piece(nllm_token t, const char *piece, int32_t n, void *user_data) {
  (void)t, (void)user_data;
  fwrite(piece, 1, (size_t)n, stdout);
  return 0; /* non-zero would stop */
}

int main(int argc, char **argv) {
  nllm_model *model = NULL;
  nllm_context *ctx = NULL;
  nllm_sampler *smp = NULL;
  nllm_sampler_params sp;
  nllm_sampler_params_init(&sp);
  sp.temperature = 0; /* greedy */
  nllm_generate_params gp;
  nllm_generate_params_init(&gp);
  gp.max_tokens = 64;
  gp.on_token = print_piece;
  nllm_status st = nllm_model_load(argc > 1 ? argv[1] : "models/stories260K.gguf", NULL, &model);
  if (!st) st = nllm_context_create(model, NULL, &ctx);
  if (!st) st = nllm_sampler_create(model, &sp, &smp);
  if (!st) st = nllm_generate(ctx, smp, "Once upon a time", -1, &gp, NULL);
  if (st) fprintf(stderr, "error: %s: %s\n", nllm_status_name(st), nllm_last_error());
  printf("\n");
  nllm_sampler_free(smp);
  nllm_context_free(ctx);
  nllm_model_free(model);
  return st ? 1 : 0;
}
