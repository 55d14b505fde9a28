/* nllm gen-model: a random-weight Llama (or BERT encoder) of a real shape in any weight type,
 * so benchmarks of 100M-8B shapes (and mixture-of-experts ones: GGUF "llama" with expert
 * tensors, as Mixtral is stored) need no download. The tokenizer is a synthetic SentencePiece
 * vocab (specials, 256 byte tokens, then made-up pieces), enough for the CLI and speed runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nllm.h"

typedef struct shape {
  const char *name;
  int dim, layers, heads, kv_heads, ff, vocab;
  int bert; /* a BERT encoder (arch bert, 512 positions) instead of a Llama */
  int experts, experts_used, head_dim; /* 0 experts: dense; head_dim 0: dim / heads */
} shape;

static const shape shapes[] = {
    {"110M", 768, 12, 12, 12, 2048, 32000, 0, 0, 0, 0},
    {"1.1B", 2048, 22, 32, 4, 5632, 32000, 0, 0, 0, 0},
    {"8B", 4096, 32, 32, 8, 14336, 32000, 0, 0, 0, 0},
    {"tiny", 64, 2, 4, 2, 192, 32000, 0, 0, 0, 0},
    /* rows of 256 (every K-quant fits) and a small vocabulary: quantized-base tests */
    {"small", 256, 2, 4, 2, 768, 1024, 0, 0, 0, 0},
    {"bert-base", 768, 12, 12, 12, 3072, 30522, 1, 0, 0, 0},
    /* OLMoE-1B-7B's shape (without its q/k norm): ff is one expert's width */
    {"olmoe-1b-7b", 2048, 16, 16, 16, 1024, 50304, 0, 64, 8, 0},
    /* Qwen3-30B-A3B's shape (without its q/k norm); 17 GB in Q4_K: --layers makes it shallower */
    {"qwen3-30b-a3b", 2048, 48, 32, 4, 768, 151936, 0, 128, 8, 128},
    {"tiny-moe", 64, 2, 4, 2, 96, 32000, 0, 8, 2, 0},
};

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

/* splitmix64's finaliser: independent-looking streams from consecutive row numbers */
static uint64_t row_seed(uint64_t tensor_seed, uint64_t row) {
  uint64_t z = tensor_seed + (row + 1) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z ? z : 1; /* xorshift never leaves 0 */
}

/* Uniform in [-a, a]: cheap, and the speed of a matmul does not depend on the distribution. */
static void fill_random(float *x, size_t n, float a, uint64_t *s) {
  for (size_t i = 0; i < n; i++)
    x[i] = a * (2.0f * (float)(rng_next(s) >> 40) / (float)(1 << 24) - 1.0f);
}

typedef struct gen_state {
  nllm_gguf_writer *w;
  void **blocks;
  int n_blocks;
  uint64_t rng;
} gen_state;

/* rows x cols, or n_mats such matrices stacked (ne {cols, rows, n_mats}: one per expert) */
static int add_tensor(gen_state *g, const char *name, int32_t type, int64_t rows, int64_t cols,
                      int64_t n_mats, float scale, float constant) {
  size_t row_bytes = (size_t)nllm_type_row_size(type, cols);
  if (!row_bytes) type = NLLM_TYPE_F32, row_bytes = (size_t)nllm_type_row_size(type, cols);
  const int64_t all_rows = rows * n_mats;
  void *data = malloc(row_bytes * (size_t)all_rows);
  if (!data) return cli_error("out of memory for tensor %s", name);
  g->blocks[g->n_blocks++] = data;
  /* Rows in parallel, each from its own seed (a hash of the tensor's and the row's number): the
   * 8B shape is quantized in seconds on a many-core machine, and the file does not depend on
   * the thread count. */
  const uint64_t tensor_seed = g->rng += 0x9E3779B97F4A7C15ull;
  nllm_status st = NLLM_OK;
#pragma omp parallel
  {
    float *tmp = malloc(sizeof(float) * (size_t)cols);
    nllm_status my = tmp ? NLLM_OK : NLLM_ERR_NOMEM;
#pragma omp for schedule(dynamic, 16)
    for (int64_t r = 0; r < all_rows; r++) {
      if (my) continue;
      uint64_t s = row_seed(tensor_seed, (uint64_t)r);
      if (constant != 0)
        for (int64_t c = 0; c < cols; c++) tmp[c] = constant;
      else
        fill_random(tmp, (size_t)cols, scale, &s);
      my = nllm_quantize_row(type, tmp, (uint8_t *)data + (size_t)r * row_bytes, cols);
    }
#pragma omp critical
    if (my && !st) st = my;
    free(tmp);
  }
  if (st) return cli_status_error(st, "quantizing");
  int64_t ne[3] = {cols, rows, n_mats};
  st = nllm_gguf_add_tensor(g->w, name, type,
                            n_mats > 1 ? 3
                            : rows > 1 ? 2
                                       : 1,
                            ne, data, row_bytes * (size_t)all_rows);
  if (st) return cli_status_error(st, "writing tensor");
  return 0;
}

static int add_vocab(nllm_gguf_writer *w, int n_vocab) {
  char **toks = calloc((size_t)n_vocab, sizeof *toks);
  float *scores = calloc((size_t)n_vocab, sizeof *scores);
  int32_t *types = calloc((size_t)n_vocab, sizeof *types);
  int rc = 1;
  if (!toks || !scores || !types) goto out;
  for (int i = 0; i < n_vocab; i++) {
    char buf[32];
    if (i == 0)
      snprintf(buf, sizeof buf, "<unk>"), types[i] = 2;
    else if (i == 1)
      snprintf(buf, sizeof buf, "<s>"), types[i] = 3;
    else if (i == 2)
      snprintf(buf, sizeof buf, "</s>"), types[i] = 3;
    else if (i < 3 + 256)
      snprintf(buf, sizeof buf, "<0x%02X>", i - 3), types[i] = 6;
    else
      snprintf(buf, sizeof buf, "\xe2\x96\x81w%d", i), types[i] = 1;
    toks[i] = strdup(buf);
    if (!toks[i]) goto out;
    scores[i] = -(float)i;
  }
  if (nllm_gguf_set_str(w, "tokenizer.ggml.model", "llama") ||
      nllm_gguf_set_str_array(w, "tokenizer.ggml.tokens", (const char *const *)toks,
                              (uint64_t)n_vocab) ||
      nllm_gguf_set_f32_array(w, "tokenizer.ggml.scores", scores, (uint64_t)n_vocab) ||
      nllm_gguf_set_i32_array(w, "tokenizer.ggml.token_type", types, (uint64_t)n_vocab) ||
      nllm_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1) ||
      nllm_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2) ||
      nllm_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0))
    goto out;
  rc = 0;
out:
  for (int i = 0; toks && i < n_vocab; i++) free(toks[i]);
  free(toks);
  free(scores);
  free(types);
  return rc;
}

/* BERT's tensors and keys as llama.cpp's converter writes them (arch bert), random weights,
 * LayerNorm weights 1 and biases random: what an embedding benchmark runs. */
static int add_bert(gen_state *g, const shape *sh, int32_t type, float a) {
  nllm_gguf_writer *w = g->w;
  if (nllm_gguf_set_u32(w, "bert.context_length", 512) ||
      nllm_gguf_set_u32(w, "bert.embedding_length", (uint32_t)sh->dim) ||
      nllm_gguf_set_u32(w, "bert.block_count", (uint32_t)sh->layers) ||
      nllm_gguf_set_u32(w, "bert.feed_forward_length", (uint32_t)sh->ff) ||
      nllm_gguf_set_u32(w, "bert.attention.head_count", (uint32_t)sh->heads) ||
      nllm_gguf_set_f32(w, "bert.attention.layer_norm_epsilon", 1e-12f) ||
      nllm_gguf_set_bool(w, "bert.attention.causal", 0) ||
      nllm_gguf_set_u32(w, "bert.pooling_type", 2) ||
      nllm_gguf_set_u32(w, "tokenizer.ggml.token_type_count", 2))
    return cli_error("building metadata: %s", nllm_last_error());
  if (add_tensor(g, "token_embd.weight", type, sh->vocab, sh->dim, 1, a, 0) ||
      add_tensor(g, "position_embd.weight", type, 512, sh->dim, 1, a, 0) ||
      /* llama.cpp adds the type row to the F32 embeddings as it is stored: F32 */
      add_tensor(g, "token_types.weight", NLLM_TYPE_F32, 2, sh->dim, 1, a, 0) ||
      add_tensor(g, "token_embd_norm.weight", NLLM_TYPE_F32, 1, sh->dim, 1, 0, 1.0f) ||
      add_tensor(g, "token_embd_norm.bias", NLLM_TYPE_F32, 1, sh->dim, 1, a, 0))
    return 1;
  char name[64];
  for (int l = 0; l < sh->layers; l++) {
    struct {
      const char *stem;
      int64_t rows, cols;
      int norm;
    } t[] = {{"attn_q", sh->dim, sh->dim, 0},     {"attn_k", sh->dim, sh->dim, 0},
             {"attn_v", sh->dim, sh->dim, 0},     {"attn_output", sh->dim, sh->dim, 0},
             {"attn_output_norm", 1, sh->dim, 1}, {"ffn_up", sh->ff, sh->dim, 0},
             {"ffn_down", sh->dim, sh->ff, 0},    {"layer_output_norm", 1, sh->dim, 1}};
    for (size_t j = 0; j < sizeof t / sizeof t[0]; j++) {
      snprintf(name, sizeof name, "blk.%d.%s.weight", l, t[j].stem);
      if (add_tensor(g, name, t[j].norm ? NLLM_TYPE_F32 : type, t[j].rows, t[j].cols, 1, a,
                     t[j].norm ? 1.0f : 0))
        return 1;
      snprintf(name, sizeof name, "blk.%d.%s.bias", l, t[j].stem);
      if (add_tensor(g, name, NLLM_TYPE_F32, 1, t[j].norm ? sh->dim : t[j].rows, 1, a, 0)) return 1;
    }
  }
  return 0;
}

int cmd_gen_model(int argc, char **argv) {
  const char *out = NULL, *shape_name = "110M", *type_name = "Q4_0";
  int layers = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      printf(
          "usage: nllm gen-model -o OUT.gguf [--shape SHAPE] [--type TYPE] [--layers N]\n"
          "Writes a random-weight Llama of a real shape (for benchmarks). SHAPE: 110M, 1.1B, "
          "8B, tiny, small (dense), bert-base (a BERT encoder, 768 x 12 layers), olmoe-1b-7b, "
          "qwen3-30b-a3b, tiny-moe (mixture of experts). TYPE: F32, F16, BF16, Q8_0, Q4_0, ... "
          "(default Q4_0); norms and routers stay F32. --layers N: only the first N layers of "
          "the shape (a shallower model whose every layer is the real one's).\n");
      return 0;
    }
    if (i + 1 >= argc) return cli_error("option %s needs a value", argv[i]);
    if (!strcmp(argv[i], "-o"))
      out = argv[++i];
    else if (!strcmp(argv[i], "--shape"))
      shape_name = argv[++i];
    else if (!strcmp(argv[i], "--type"))
      type_name = argv[++i];
    else if (!strcmp(argv[i], "--layers")) {
      char *end;
      long v = strtol(argv[++i], &end, 10);
      if (*end || v < 1 || v > 4096)
        return cli_error("--layers: '%s' is not a layer count in [1, 4096]", argv[i]);
      layers = (int)v;
    } else
      return cli_error("unknown option '%s' for gen-model", argv[i]);
  }
  if (!out) return cli_error("gen-model needs -o OUT.gguf");
  const shape *sh = NULL;
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    if (!strcmp(shapes[i].name, shape_name)) sh = &shapes[i];
  if (!sh)
    return cli_error(
        "unknown shape '%s' (110M, 1.1B, 8B, tiny, small, bert-base, olmoe-1b-7b, "
        "qwen3-30b-a3b, tiny-moe)",
        shape_name);
  shape custom = *sh;
  if (layers) {
    if (layers > sh->layers)
      return cli_error("--layers %d: the %s shape has %d layers", layers, sh->name, sh->layers);
    custom.layers = layers;
    sh = &custom;
  }
  int32_t type, preset;
  if (nllm_type_parse(type_name, &type, &preset)) return cli_error("--type: %s", nllm_last_error());
  if (preset)
    return cli_error(
        "--type: %s is a mixed preset; gen-model writes one type (quantize the "
        "result with `nllm quantize` for a preset)",
        type_name);
  type_name = nllm_type_name(type);

  gen_state g = {NULL, calloc(16 + 24 * (size_t)sh->layers, sizeof(void *)), 0,
                 0x9E3779B97F4A7C15ull};
  int rc = 1;
  if (nllm_gguf_writer_create(&g.w) || !g.blocks) {
    cli_error("out of memory");
    goto done;
  }
  const int hd = sh->head_dim ? sh->head_dim : sh->dim / sh->heads, kvd = hd * sh->kv_heads;
  const int qd = hd * sh->heads;
  nllm_gguf_writer *w = g.w;
  char name[64];
  snprintf(name, sizeof name, "random %s %s %s", sh->bert ? "bert" : "llama", sh->name, type_name);
  const float a = 0.02f * sqrtf(3.0f); /* uniform with std 0.02 */
  if (sh->bert) {
    if (nllm_gguf_set_str(w, "general.architecture", "bert") ||
        nllm_gguf_set_str(w, "general.name", name) || add_vocab(w, sh->vocab)) {
      cli_error("building metadata: %s", nllm_last_error());
      goto done;
    }
    if (add_bert(&g, sh, type, a)) goto done;
    goto write;
  }
  if (nllm_gguf_set_str(w, "general.architecture", "llama") ||
      nllm_gguf_set_str(w, "general.name", name) ||
      nllm_gguf_set_u32(w, "llama.context_length", 4096) ||
      nllm_gguf_set_u32(w, "llama.embedding_length", (uint32_t)sh->dim) ||
      nllm_gguf_set_u32(w, "llama.block_count", (uint32_t)sh->layers) ||
      nllm_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)sh->ff) ||
      nllm_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)sh->heads) ||
      nllm_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)sh->kv_heads) ||
      nllm_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)hd) ||
      nllm_gguf_set_u32(w, "llama.attention.key_length", (uint32_t)hd) ||
      nllm_gguf_set_u32(w, "llama.attention.value_length", (uint32_t)hd) ||
      (sh->experts &&
       (nllm_gguf_set_u32(w, "llama.expert_count", (uint32_t)sh->experts) ||
        nllm_gguf_set_u32(w, "llama.expert_used_count", (uint32_t)sh->experts_used))) ||
      nllm_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f) ||
      add_vocab(w, sh->vocab)) {
    cli_error("building metadata: %s", nllm_last_error());
    goto done;
  }
  if (add_tensor(&g, "token_embd.weight", type, sh->vocab, sh->dim, 1, a, 0) ||
      add_tensor(&g, "output_norm.weight", NLLM_TYPE_F32, 1, sh->dim, 1, 0, 1.0f) ||
      add_tensor(&g, "output.weight", type, sh->vocab, sh->dim, 1, a, 0))
    goto done;
  const int ne = sh->experts;
  for (int l = 0; l < sh->layers; l++) {
    struct {
      const char *suffix;
      int64_t rows, cols, n_mats;
      int f32; /* 1: constant 1 (a norm), 2: random F32 (the router) */
    } t[] = {{"attn_norm.weight", 1, sh->dim, 1, 1},     {"attn_q.weight", qd, sh->dim, 1, 0},
             {"attn_k.weight", kvd, sh->dim, 1, 0},      {"attn_v.weight", kvd, sh->dim, 1, 0},
             {"attn_output.weight", sh->dim, qd, 1, 0},  {"ffn_norm.weight", 1, sh->dim, 1, 1},
             {"ffn_gate.weight", sh->ff, sh->dim, 1, 0}, {"ffn_up.weight", sh->ff, sh->dim, 1, 0},
             {"ffn_down.weight", sh->dim, sh->ff, 1, 0}},
      te[] = {{"attn_norm.weight", 1, sh->dim, 1, 1},
              {"attn_q.weight", qd, sh->dim, 1, 0},
              {"attn_k.weight", kvd, sh->dim, 1, 0},
              {"attn_v.weight", kvd, sh->dim, 1, 0},
              {"attn_output.weight", sh->dim, qd, 1, 0},
              {"ffn_norm.weight", 1, sh->dim, 1, 1},
              {"ffn_gate_inp.weight", ne, sh->dim, 1, 2},
              {"ffn_gate_exps.weight", sh->ff, sh->dim, ne, 0},
              {"ffn_up_exps.weight", sh->ff, sh->dim, ne, 0},
              {"ffn_down_exps.weight", sh->dim, sh->ff, ne, 0}};
    const size_t n_t = ne ? sizeof te / sizeof te[0] : sizeof t / sizeof t[0];
    for (size_t j = 0; j < n_t; j++) {
      const int f32 = ne ? te[j].f32 : t[j].f32;
      snprintf(name, sizeof name, "blk.%d.%s", l, ne ? te[j].suffix : t[j].suffix);
      if (add_tensor(&g, name, f32 ? NLLM_TYPE_F32 : type, ne ? te[j].rows : t[j].rows,
                     ne ? te[j].cols : t[j].cols, ne ? te[j].n_mats : t[j].n_mats,
                     f32 == 2 ? 1.0f : a, f32 == 1 ? 1.0f : 0))
        goto done;
    }
  }
write:;
  nllm_status st = nllm_gguf_write(w, out);
  if (st) {
    cli_status_error(st, "cannot write the model");
    goto done;
  }
  fprintf(stderr, "gen-model: wrote %s (%s shape, %s)\n", out, sh->name, type_name);
  rc = 0;
done:
  for (int i = 0; i < g.n_blocks; i++) free(g.blocks[i]);
  free(g.blocks);
  nllm_gguf_writer_free(g.w);
  return rc;
}

/* nllm gen-lora: a random LoRA adapter in llama.cpp's GGUF adapter layout for a model's
 * attention and FFN matrices, so adapter overhead can be measured on any shape. */
int cmd_gen_lora(int argc, char **argv) {
  const char *base = NULL, *out = NULL;
  long long rank = 16, seed = 1;
  double alpha = 0;
  int attn_only = 0;
  int32_t lora_type = NLLM_TYPE_F32;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      printf(
          "usage: nllm gen-lora -m BASE.gguf -o OUT.gguf [--rank R] [--alpha A] [--seed S] "
          "[--type f32|f16] [--attn-only]\n"
          "Writes a random LoRA adapter (GGUF, adapter.type lora; F32 tensors unless --type f16) "
          "for every attention and feed-forward matrix of BASE (only q/k/v/o with "
          "--attn-only). R defaults to 16, A to 2 R (scale alpha/r = 2).\n");
      return 0;
    }
    if (!strcmp(argv[i], "--attn-only")) {
      attn_only = 1;
      continue;
    }
    if (i + 1 >= argc) return cli_error("option %s needs a value", argv[i]);
    const char *opt = argv[i], *val = argv[++i];
    if (!strcmp(opt, "-m"))
      base = val;
    else if (!strcmp(opt, "-o"))
      out = val;
    else if (!strcmp(opt, "--rank")) {
      if (!cli_int(opt, val, 1, 4096, &rank)) return 1;
    } else if (!strcmp(opt, "--alpha")) {
      if (!cli_float(opt, val, 0, 1e6, &alpha)) return 1;
    } else if (!strcmp(opt, "--seed")) {
      if (!cli_int(opt, val, 1, 1LL << 62, &seed)) return 1;
    } else if (!strcmp(opt, "--type")) {
      if (nllm_type_parse(val, &lora_type, NULL) ||
          (lora_type != NLLM_TYPE_F32 && lora_type != NLLM_TYPE_F16))
        return cli_error("--type must be f32 or f16, not '%s'", val);
    } else
      return cli_error("unknown option '%s' for gen-lora", opt);
  }
  if (!base || !out) return cli_error("gen-lora needs -m BASE.gguf and -o OUT.gguf");
  if (alpha == 0) alpha = 2.0 * (double)rank;
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.use_mmap = 1;
  mp.vocab_only = 1;
  nllm_model *m = NULL;
  nllm_status st = nllm_model_load(base, &mp, &m);
  if (st) return cli_status_error(st, "cannot load the base model");
  static const char *const stems[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                      "ffn_gate", "ffn_up", "ffn_down"};
  const int n_stems = attn_only ? 4 : 7;
  nllm_gguf_writer *w = NULL;
  int rc = 1, n_blocks = 0, cap = 2 * nllm_model_tensor_count(m) + 1;
  void **blocks = calloc((size_t)cap, sizeof *blocks);
  uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)seed;
  if (nllm_gguf_writer_create(&w) || !blocks) {
    cli_error("out of memory");
    goto done;
  }
  const char *arch = "";
  if (nllm_model_meta_str(m, "general.architecture", &arch)) {
    cli_status_error(NLLM_ERR_FORMAT, "the base has no general.architecture");
    goto done;
  }
  if (nllm_gguf_set_str(w, "general.architecture", arch) ||
      nllm_gguf_set_str(w, "general.type", "adapter") ||
      nllm_gguf_set_str(w, "general.name", "random lora") ||
      nllm_gguf_set_str(w, "adapter.type", "lora") ||
      nllm_gguf_set_f32(w, "adapter.lora.alpha", (float)alpha)) {
    cli_error("building metadata: %s", nllm_last_error());
    goto done;
  }
  int n_mats = 0;
  for (int32_t i = 0; i < nllm_model_tensor_count(m); i++) {
    const char *name;
    int32_t type, n_dims;
    int64_t ne[4];
    if (nllm_model_tensor_info(m, i, &name, &type, &n_dims, ne) || n_dims != 2) continue;
    int layer = -1, used = 0;
    char stem[64];
    if (sscanf(name, "blk.%d.%63[a-z_].weight%n", &layer, stem, &used) != 2 || name[used]) continue;
    int want = 0;
    for (int k = 0; k < n_stems; k++) want |= !strcmp(stem, stems[k]);
    if (!want) continue;
    /* A ~ std 1/sqrt(in) like PEFT's init; B small but non-zero, so the adapter changes the
     * output without swamping the base */
    const int64_t in = ne[0], outs = ne[1];
    for (int k = 0; k < 2; k++) {
      const int64_t n = k ? outs * rank : rank * in;
      float *x = malloc((size_t)n * sizeof(float));
      if (!x) {
        cli_error("out of memory");
        goto done;
      }
      blocks[n_blocks++] = x;
      const float a = (k ? 0.02f / sqrtf((float)rank) : 1.0f / sqrtf((float)in)) * sqrtf(3.0f);
      fill_random(x, (size_t)n, a, &rng);
      char tn[160];
      snprintf(tn, sizeof tn, "%s.lora_%c", name, k ? 'b' : 'a');
      int64_t tne[2] = {k ? rank : in, k ? outs : rank};
      uint64_t bytes = (uint64_t)n * 4;
      void *data = x;
      if (lora_type == NLLM_TYPE_F16) {
        bytes = (uint64_t)n * 2;
        if (!(data = malloc((size_t)bytes))) {
          cli_error("out of memory");
          goto done;
        }
        st = nllm_quantize_row(NLLM_TYPE_F16, x, data, n);
        free(x);
        blocks[n_blocks - 1] = data; /* the writer reads it at nllm_gguf_write */
        if (st) {
          cli_status_error(st, "converting to F16");
          goto done;
        }
      }
      if ((st = nllm_gguf_add_tensor(w, tn, lora_type, 2, tne, data, bytes))) {
        cli_status_error(st, "writing tensor");
        goto done;
      }
    }
    n_mats++;
  }
  if (!n_mats) {
    cli_error("%s has no attention or FFN matrices named blk.N.*.weight", base);
    goto done;
  }
  if ((st = nllm_gguf_write(w, out))) {
    cli_status_error(st, "cannot write the adapter");
    goto done;
  }
  fprintf(stderr, "gen-lora: wrote %s (%d matrices, rank %lld, alpha %g)\n", out, n_mats, rank,
          alpha);
  rc = 0;
done:
  for (int i = 0; i < n_blocks; i++) free(blocks[i]);
  free(blocks);
  nllm_gguf_writer_free(w);
  nllm_model_free(m);
  return rc;
}
