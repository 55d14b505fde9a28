/* nllm info: architecture, hyperparameters, metadata and the tensor table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nllm.h"

/* general.file_type in llama.cpp's numbering (llama_ftype), as quantizers write it. */
static const char *file_type_name(int64_t ft) {
  static const struct {
    int ft;
    const char *name;
  } names[] = {{0, "F32"},      {1, "F16"},      {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},
               {8, "Q5_0"},     {9, "Q5_1"},     {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"},
               {13, "Q3_K_L"},  {14, "Q4_K_S"},  {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},
               {18, "Q6_K"},    {19, "IQ2_XXS"}, {20, "IQ2_XS"}, {21, "Q2_K_S"}, {22, "IQ3_XS"},
               {23, "IQ3_XXS"}, {24, "IQ1_S"},   {25, "IQ4_NL"}, {26, "IQ3_S"},  {27, "IQ3_M"},
               {28, "IQ2_S"},   {29, "IQ2_M"},   {30, "IQ4_XS"}, {31, "IQ1_M"},  {32, "BF16"},
               {36, "TQ1_0"},   {37, "TQ2_0"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (names[i].ft == ft) return names[i].name;
  return NULL;
}

/* The weight type most of the parameters have (files without general.file_type). */
static const char *main_weight_type(const nllm_model *m) {
  int64_t count[64] = {0};
  for (int32_t i = 0; i < nllm_model_tensor_count(m); i++) {
    const char *name;
    int32_t type, nd;
    int64_t ne[4];
    if (nllm_model_tensor_info(m, i, &name, &type, &nd, ne) || type < 0 || type >= 64 || nd < 2)
      continue;
    int64_t n = 1;
    for (int d = 0; d < nd; d++) n *= ne[d];
    count[type] += n;
  }
  int best = -1;
  for (int t = 0; t < 64; t++)
    if (count[t] && (best < 0 || count[t] > count[best])) best = t;
  return best < 0 ? NULL : nllm_type_name(best);
}

static void print_file_type(const nllm_model *m) {
  int64_t ft;
  const char *name =
      nllm_model_meta_int(m, "general.file_type", &ft) == NLLM_OK ? file_type_name(ft) : NULL;
  const char *main = main_weight_type(m);
  if (name)
    printf("file type: %s\n", name);
  else
    printf("file type: not recorded (most weights %s)\n", main ? main : "?");
}

static void print_chat_template(const nllm_model *m) {
  const char *t = NULL;
  nllm_chat_message probe = {"user", "hi"};
  int32_t need = 0;
  nllm_status st = nllm_chat_format(m, &probe, 1, 1, NULL, 0, &need);
  int usable = st == NLLM_OK || st == NLLM_ERR_BUFFER_TOO_SMALL;
  if (nllm_model_meta_str(m, "tokenizer.chat_template", &t) == NLLM_OK && t)
    printf("chat template: yes (%zu bytes%s)\n", strlen(t),
           usable ? "" : "; not understood by this build, use --chat-template");
  else
    printf("chat template: %s\n", usable ? "yes" : "no (nllm chat needs --chat-template)");
}

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
  print_file_type(m);
  print_chat_template(m);
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
