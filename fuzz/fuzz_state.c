/* Saved-state loading (nllm_state_load) on arbitrary bytes. A checksum and a 64-bit model
 * fingerprint stop almost every random input at the header, so byte 0 picks what the harness
 * repairs before loading: bit 0 the header fields a real state of this context has (magic,
 * version, fingerprint, shapes, KV types), bit 1 the payload size, bit 2 the checksum (the
 * structural checks of the payload are then what stands between the bytes and the cache);
 * bits 3-4 pick the target (the whole context, or sequence 0, 1 or 2). The rest is the state.
 * After a successful load one token is decoded into every non-empty sequence and sampled, and
 * the state is saved again. Model: the bundled stories260K, run from the repository root.
 * Seeds: fuzz/corpus/fuzz_state (a whole-context and a one-sequence state of that model). */
#include <stdint.h>

#include "engine/engine.h"
#include "fuzz_common.h"

static nllm_model *model;
static nllm_context *ctx;
static uint8_t header_all[72], header_seq[72];

static void fresh_context(void) {
  nllm_context_free(ctx);
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.n_ctx = 64;
  cp.n_seq_max = 3;
  cp.n_threads = 1;
  if (nllm_context_create(model, &cp, &ctx) != NLLM_OK) abort();
  nllm_token ids[6] = {1, 20, 30, 40, 50, 60};
  int32_t seq[6] = {0, 0, 0, 1, 1, 2};
  nllm_batch b;
  nllm_batch_init(&b);
  b.n_tokens = 6;
  b.tokens = ids;
  b.seq_id = seq;
  if (nllm_decode_batch(ctx, &b) != NLLM_OK) abort();
}

static void save_header(int32_t seq, uint8_t *out) {
  uint64_t size = 0;
  if (nllm_state_size(ctx, seq, &size) != NLLM_OK) abort();
  uint8_t *buf = malloc(size);
  if (!buf || nllm_state_save(ctx, seq, buf, size, &size) != NLLM_OK) abort();
  memcpy(out, buf, 72);
  free(buf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if (nllm_model_load("models/stories260K.gguf", NULL, &model) != NLLM_OK) {
    fprintf(stderr, "fuzz_state: run from the repository root (models/stories260K.gguf)\n");
    abort();
  }
  fresh_context();
  save_header(NLLM_SEQ_ALL, header_all);
  save_header(0, header_seq);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const int32_t target = (mode >> 3 & 3) == 3 ? NLLM_SEQ_ALL : (int32_t)(mode >> 3 & 3);
  size_t n = size - 1;
  uint8_t *st = malloc(n ? n : 1);
  if (!st) abort();
  memcpy(st, data + 1, n);
  if (n >= 72) {
    const uint8_t *h = target == NLLM_SEQ_ALL ? header_all : header_seq;
    if (mode & 1) memcpy(st, h, 56); /* magic .. n_seq: all but the size and the checksum */
    if (mode & 2) {
      const uint64_t payload = n - 72;
      memcpy(st + 56, &payload, 8);
    }
    if (mode & 4) {
      const uint64_t sum = nllm_state_checksum(st, n);
      memcpy(st + 64, &sum, 8);
    }
  }
  int32_t used0 = 0, used1 = 0;
  nllm_context_kv_cells(ctx, &used0, NULL);
  if (nllm_state_load(ctx, target, st, n) == NLLM_OK) {
    for (int32_t s = 0; s < 3; s++) {
      if (nllm_seq_pos_max(ctx, s) < 0) continue;
      nllm_token t = 5;
      int32_t sid = s;
      nllm_batch b;
      nllm_batch_init(&b);
      b.n_tokens = 1;
      b.tokens = &t;
      b.seq_id = &sid;
      if (nllm_decode_batch(ctx, &b) == NLLM_OK) {
        const float *l = nllm_get_logits_seq(ctx, s);
        if (!l) abort();
        volatile float sink = l[0];
        (void)sink;
      }
    }
    uint64_t again = 0;
    if (nllm_state_size(ctx, NLLM_SEQ_ALL, &again) != NLLM_OK) abort();
    fresh_context(); /* the next input starts from the same context */
  } else {
    /* a refused state leaves the context as it was */
    nllm_context_kv_cells(ctx, &used1, NULL);
    if (used0 != used1) abort();
  }
  free(st);
  return 0;
}
