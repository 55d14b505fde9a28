/* Writes the small seed files of fuzz/corpus/: complete tiny models that pass every load check
 * (so the fuzzer starts from inputs that reach hparams, shape and tokenizer validation, not just
 * the magic test), in several weight types and with both tokenizer kinds.
 * Usage: gen_seeds OUTDIR   (writes OUTDIR/fuzz_gguf/... and OUTDIR/fuzz_safetensors/...) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convert/gguf_write.h"
#include "qtypes.h"

#define N_EMBD 32
#define N_FF 64
#define N_VOCAB 40

static float weights[1 << 16];
static uint8_t qbuf[1 << 16][4]; /* room for any quantized copy below */

static void die(const char *what, nllm_status st) {
  fprintf(stderr, "gen_seeds: %s: %s (%s)\n", what, nllm_status_name(st), nllm_last_error());
  exit(1);
}

/* A vocabulary of byte tokens plus a few merged words: enough for SPM and byte-level BPE. */
static void set_vocab(gguf_writer *w, int spm) {
  static char names[N_VOCAB][16];
  const char *strs[N_VOCAB];
  float scores[N_VOCAB];
  int32_t types[N_VOCAB];
  const char *words[] = {"\xe2\x96\x81t",
                         "he",
                         "\xe2\x96\x81"
                         "the",
                         "\xe2\x96\x81"
                         "a",
                         "an",
                         "nd",
                         "Ġt",
                         "Ġthe"};
  for (int i = 0; i < N_VOCAB; i++) {
    if (i == 0)
      snprintf(names[i], sizeof names[i], "<unk>");
    else if (i == 1)
      snprintf(names[i], sizeof names[i], "<s>");
    else if (i == 2)
      snprintf(names[i], sizeof names[i], "</s>");
    else if (i < 3 + 8)
      snprintf(names[i], sizeof names[i], "%s", words[i - 3]);
    else if (spm)
      snprintf(names[i], sizeof names[i], "<0x%02X>", 0x20 + (i - 11));
    else
      snprintf(names[i], sizeof names[i], "%c", 'a' + (i - 11) % 26 + (i - 11) / 26);
    strs[i] = names[i];
    scores[i] = -(float)i;
    types[i] = i < 3 ? (i == 0 ? 2 : 3) : (spm && i >= 11 ? 6 : 1);
  }
  nllm_status st = gguf_writer_set_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
  if (!st && !spm) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", "default");
  if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, N_VOCAB);
  if (!st && spm) st = gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", scores, N_VOCAB);
  if (!st) st = gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, N_VOCAB);
  if (!st && !spm) {
    const char *merges[] = {"Ġ t", "h e", "Ġt he", "a n", "n d"};
    st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 5);
  }
  if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
  if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
  if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
  if (!st)
    st = gguf_writer_set_str(w, "tokenizer.chat_template",
                             "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}"
                             "{% endfor %}");
  if (st) die("vocab", st);
}

/* A WordPiece vocabulary in GGUF's "bert" spelling: word starts with U+2581, continuations
 * bare, the five [specials] as control tokens. */
static void set_vocab_bert(gguf_writer *w) {
  static char names[N_VOCAB][16];
  const char *strs[N_VOCAB];
  int32_t types[N_VOCAB];
  static const char *const fixed[] = {
      "[PAD]",           "[UNK]",          "[CLS]", "[SEP]", "[MASK]",
      "\xe2\x96\x81the", "\xe2\x96\x81un", "aff",   "able",  "."};
  for (int i = 0; i < N_VOCAB; i++) {
    if (i < 10)
      snprintf(names[i], sizeof names[i], "%s", fixed[i]);
    else if (i < 25)
      snprintf(names[i], sizeof names[i], "\xe2\x96\x81%c", 'a' + (i - 10));
    else
      snprintf(names[i], sizeof names[i], "%c", 'a' + (i - 25));
    strs[i] = names[i];
    types[i] = i < 5 ? 3 : 1;
  }
  nllm_status st = gguf_writer_set_str(w, "tokenizer.ggml.model", "bert");
  if (!st) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", "bert-bge");
  if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, N_VOCAB);
  if (!st) st = gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, N_VOCAB);
  if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 2);
  if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.seperator_token_id", 3);
  if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 1);
  if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 0);
  if (!st) st = gguf_writer_set_u32(w, "tokenizer.ggml.mask_token_id", 4);
  if (st) die("bert vocab", st);
}

static size_t qoff;
static void add(gguf_writer *w, const char *name, int32_t type, int64_t cols, int64_t rows) {
  int64_t ne[2] = {cols, rows};
  int nd = rows ? 2 : 1;
  int64_t n = cols * (rows ? rows : 1);
  const void *data = weights;
  uint64_t nbytes = (uint64_t)n * 4;
  if (nd == 1) type = NLLM_TYPE_F32; /* norms stay F32 like real files */
  if (type != NLLM_TYPE_F32) {
    const nllm_qtype *q = nllm_qtype_get(type);
    if (!q || !q->from_float_ref) die(name, NLLM_ERR_UNSUPPORTED);
    nbytes = (uint64_t)(n / q->block_size) * q->type_size;
    uint8_t *dst = &qbuf[0][0] + qoff;
    q->from_float_ref(weights, dst, n);
    qoff += nbytes;
    data = dst;
  }
  nllm_status st = gguf_writer_add_tensor(w, name, type, nd, ne, data, nbytes);
  if (st) die(name, st);
}

static void write_model(const char *path, int32_t type, int spm, int n_layer, int vocab_only) {
  qoff = 0;
  gguf_writer *w = gguf_writer_new();
  nllm_status st = gguf_writer_set_str(w, "general.architecture", "llama");
  if (!st) st = gguf_writer_set_str(w, "general.name", "fuzz-seed");
  if (!st) st = gguf_writer_set_u32(w, "llama.context_length", 64);
  if (!st) st = gguf_writer_set_u32(w, "llama.embedding_length", N_EMBD);
  if (!st) st = gguf_writer_set_u32(w, "llama.block_count", (uint32_t)n_layer);
  if (!st) st = gguf_writer_set_u32(w, "llama.feed_forward_length", N_FF);
  if (!st) st = gguf_writer_set_u32(w, "llama.attention.head_count", 4);
  if (!st) st = gguf_writer_set_u32(w, "llama.attention.head_count_kv", 2);
  if (!st) st = gguf_writer_set_u32(w, "llama.rope.dimension_count", 8);
  if (!st) st = gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
  if (!st) st = gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
  if (!st) st = gguf_writer_set_u32(w, "general.alignment", 32);
  if (st) die("hparams", st);
  if (spm == 2)
    set_vocab_bert(w);
  else
    set_vocab(w, spm);
  if (!vocab_only) {
    add(w, "token_embd.weight", type, N_EMBD, N_VOCAB);
    add(w, "output_norm.weight", type, N_EMBD, 0);
    for (int l = 0; l < n_layer; l++) {
      char n[64];
#define T(suffix, cols, rows)                    \
  snprintf(n, sizeof n, "blk.%d.%s", l, suffix); \
  add(w, n, type, cols, rows);
      T("attn_norm.weight", N_EMBD, 0);
      T("attn_q.weight", N_EMBD, N_EMBD);
      T("attn_k.weight", N_EMBD, N_EMBD / 2);
      T("attn_v.weight", N_EMBD, N_EMBD / 2);
      T("attn_output.weight", N_EMBD, N_EMBD);
      T("ffn_norm.weight", N_EMBD, 0);
      T("ffn_gate.weight", N_EMBD, N_FF);
      T("ffn_up.weight", N_EMBD, N_FF);
      T("ffn_down.weight", N_FF, N_EMBD);
#undef T
    }
  }
  if ((st = gguf_writer_write(w, path))) die(path, st);
  gguf_writer_free(w);
}

/* A safetensors file: 8-byte header length, JSON header, data. */
static void write_safetensors(const char *path, const char *dtype, int esize) {
  char hdr[512];
  int n =
      snprintf(hdr, sizeof hdr,
               "{\"__metadata__\":{\"format\":\"pt\"},"
               "\"model.norm.weight\":{\"dtype\":\"%s\",\"shape\":[4],\"data_offsets\":[0,%d]},"
               "\"lm_head.weight\":{\"dtype\":\"%s\",\"shape\":[2,4],\"data_offsets\":[%d,%d]}}",
               dtype, 4 * esize, dtype, 4 * esize, 12 * esize);
  while (n % 8) hdr[n++] = ' ';
  FILE *f = fopen(path, "wb");
  if (!f) die(path, NLLM_ERR_IO);
  uint64_t len = (uint64_t)n;
  fwrite(&len, 8, 1, f);
  fwrite(hdr, 1, (size_t)n, f);
  fwrite(weights, 1, (size_t)(12 * esize), f);
  fclose(f);
}

/* The HF harness input: sections separated by a line "\n--8<--\n":
 * config.json, model.safetensors.index.json (or empty: none), tokenizer_config.json. */
static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) die(path, NLLM_ERR_IO);
  fputs(text, f);
  fclose(f);
}

static void mk(const char *d) {
  if (mkdir(d, 0755) != 0 && errno != EEXIST) die(d, NLLM_ERR_IO);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: gen_seeds OUTDIR\n");
    return 2;
  }
  for (size_t i = 0; i < sizeof weights / sizeof weights[0]; i++)
    weights[i] = (float)((int)(i * 2654435761u % 2001) - 1000) / 4000.0f;
  char p[4096];
  mk(argv[1]);
  snprintf(p, sizeof p, "%s/fuzz_gguf", argv[1]);
  mk(p);
  static const struct {
    const char *name;
    int32_t type;
    int spm, layers, vocab_only;
  } models[] = {
      {"llama-f32-spm.gguf", NLLM_TYPE_F32, 1, 1, 0},
      {"llama-f16-bpe.gguf", NLLM_TYPE_F16, 0, 1, 0},
      {"llama-q8_0-spm-2l.gguf", NLLM_TYPE_Q8_0, 1, 2, 0},
      {"llama-q4_0-bpe.gguf", NLLM_TYPE_Q4_0, 0, 1, 0},
      {"vocab-only-spm.gguf", NLLM_TYPE_F32, 1, 1, 1},
      {"vocab-only-bert.gguf", NLLM_TYPE_F32, 2, 1, 1}, /* spm 2: a WordPiece vocabulary */
  };
  for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
    snprintf(p, sizeof p, "%s/fuzz_gguf/%s", argv[1], models[i].name);
    write_model(p, models[i].type, models[i].spm, models[i].layers, models[i].vocab_only);
  }
  snprintf(p, sizeof p, "%s/fuzz_safetensors", argv[1]);
  mk(p);
  snprintf(p, sizeof p, "%s/fuzz_safetensors/f32.safetensors", argv[1]);
  write_safetensors(p, "F32", 4);
  snprintf(p, sizeof p, "%s/fuzz_safetensors/bf16.safetensors", argv[1]);
  write_safetensors(p, "BF16", 2);
  snprintf(p, sizeof p, "%s/fuzz_safetensors/f16.safetensors", argv[1]);
  write_safetensors(p, "F16", 2);
  snprintf(p, sizeof p, "%s/fuzz_hf", argv[1]);
  mk(p);
  snprintf(p, sizeof p, "%s/fuzz_hf/llama-config", argv[1]);
  write_text(
      p,
      "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":32,\"intermediate_size\":64,"
      "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
      "\"max_position_embeddings\":64,\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,"
      "\"vocab_size\":40,\"bos_token_id\":1,\"eos_token_id\":[2,3],"
      "\"tie_word_embeddings\":false,\"rope_scaling\":{\"rope_type\":\"llama3\","
      "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
      "\"original_max_position_embeddings\":32}}\n--8<--\n\n--8<--\n"
      "{\"add_bos_token\":true,\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}\n");
  snprintf(p, sizeof p, "%s/fuzz_hf/qwen2-sharded", argv[1]);
  write_text(
      p,
      "{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":32,\"intermediate_size\":64,"
      "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"num_key_value_heads\":4,"
      "\"max_position_embeddings\":64,\"rms_norm_eps\":1e-6,\"vocab_size\":40,"
      "\"tie_word_embeddings\":true,\"sliding_window\":32}\n--8<--\n"
      "{\"metadata\":{\"total_size\":48},\"weight_map\":{\"model.norm.weight\":"
      "\"model-00001-of-00001.safetensors\",\"lm_head.weight\":"
      "\"model-00001-of-00001.safetensors\"}}\n--8<--\n{}\n");
  return 0;
}
