/* Shared by the libFuzzer harnesses: turning an input buffer into a file the path-based loaders
 * can open, and exercising a loaded model the way a host would (so hostile files reach the
 * tokenizer and the forward pass, not only the parser). */
#ifndef NLLM_FUZZ_COMMON_H
#define NLLM_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nativellm.h"

/* The loaders take paths; an anonymous memory file costs no disk and leaves nothing behind. */
static inline int fuzz_memfd(const uint8_t *data, size_t size, char *path, size_t cap) {
  int fd = memfd_create("nllm-fuzz", 0);
  if (fd < 0) abort();
  size_t off = 0;
  while (off < size) {
    ssize_t w = write(fd, data + off, size - off);
    if (w <= 0) abort();
    off += (size_t)w;
  }
  snprintf(path, cap, "/proc/self/fd/%d", fd);
  return fd;
}

static inline void fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  if (size && fwrite(data, 1, size, f) != size) abort();
  fclose(f);
}

/* Every getter, the tokenizer both ways, and one decode step with greedy sampling. */
static inline void fuzz_use_model(nllm_model *m) {
  char buf[512];
  int32_t n;
  (void)nllm_model_arch(m);
  (void)nllm_model_name(m);
  for (int32_t i = 0; i < nllm_model_meta_count(m) && i < 64; i++) {
    (void)nllm_model_meta_key(m, i);
    nllm_model_meta_value_text(m, i, buf, sizeof buf, &n);
  }
  for (int32_t i = 0; i < nllm_model_tensor_count(m) && i < 64; i++) {
    const char *name;
    int32_t type, nd;
    int64_t ne[4];
    nllm_model_tensor_info(m, i, &name, &type, &nd, ne);
  }
  nllm_token ids[64];
  static const char text[] = "Hello the world\n<s> caf\xc3\xa9 \xff\xfe 123";
  if (nllm_tokenize(m, text, (int32_t)sizeof text - 1, 1, 1, ids, 64, &n) == NLLM_OK) {
    nllm_detokenize(m, ids, n, 1, buf, sizeof buf, &n);
  }
  for (nllm_token t = -1; t < 8; t++) nllm_token_to_piece(m, t, 1, buf, sizeof buf, &n);
  nllm_chat_message msg[2] = {{"system", "be brief"}, {"user", "hi"}};
  nllm_chat_format(m, msg, 2, 1, buf, sizeof buf, &n);
  if (nllm_model_n_layer(m) == 0) return; /* vocab_only */
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 4;
  cp.n_threads = 1;
  nllm_context *c = NULL;
  if (nllm_context_create(m, &cp, &c) != NLLM_OK) return;
  nllm_token t[2] = {nllm_model_token(m, NLLM_TOKEN_BOS), 0};
  if (t[0] < 0) t[0] = 0;
  if (nllm_decode(c, t, 2) == NLLM_OK) {
    nllm_sampler_params sp;
    nllm_sampler_params_init(&sp);
    sp.temperature = 0;
    nllm_sampler *s = NULL;
    if (nllm_sampler_create(m, &sp, &s) == NLLM_OK) {
      nllm_token out;
      nllm_sampler_sample(s, c, &out);
      nllm_sampler_free(s);
    }
  }
  nllm_context_free(c);
}

#endif
