/* nllm info: architecture, hyperparameters, metadata and the tensor table. */
#include <stdio.h>
#include <stdlib.h>

#include "nllm.h"

int cmd_info(int argc, char **argv) {
  cli_opts o;
  if (cli_parse(argc, argv, "-m", &o)) return 1;
  if (o.help) {
    printf("usage: nllm info [-m MODEL]\n\n");
    cli_print_options("-m");
    return 0;
  }
  nllm_model *m = cli_load_model(&o, 0, 1);
  if (!m) return 1;
  printf(
      "architecture: %s\nname: %s\nparameters: %llu (%.2f M)\nweights: %.2f MiB\n"
      "vocabulary: %d\ncontext (train): %d\nembedding: %d\nlayers: %d\n",
      nllm_model_arch(m), nllm_model_name(m), (unsigned long long)nllm_model_n_params(m),
      (double)nllm_model_n_params(m) / 1e6, (double)nllm_model_size_bytes(m) / 1048576.0,
      nllm_model_n_vocab(m), nllm_model_n_ctx_train(m), nllm_model_n_embd(m),
      nllm_model_n_layer(m));
  static const char *special[] = {"bos", "eos", "eot", "unk", "pad", "newline"};
  for (int i = 0; i < 6; i++) printf("token.%s: %d\n", special[i], nllm_model_token(m, i));
  printf("\nmetadata (%d keys):\n", nllm_model_meta_count(m));
  char buf[512];
  for (int32_t i = 0; i < nllm_model_meta_count(m); i++) {
    int32_t n;
    nllm_model_meta_value_text(m, i, buf, sizeof buf, &n);
    printf("  %-40s = %s\n", nllm_model_meta_key(m, i), buf);
  }
  printf("\ntensors (%d):\n", nllm_model_tensor_count(m));
  for (int32_t i = 0; i < nllm_model_tensor_count(m); i++) {
    const char *name;
    int32_t type, nd;
    int64_t ne[4];
    if (nllm_model_tensor_info(m, i, &name, &type, &nd, ne)) continue;
    const char *tn = nllm_type_name(type);
    printf("  %-36s %-7s [", name, tn ? tn : "?");
    for (int d = 0; d < nd; d++) printf(d ? ", %lld" : "%lld", (long long)ne[d]);
    printf("]\n");
  }
  nllm_model_free(m);
  return 0;
}
