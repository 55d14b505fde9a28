/* Hugging Face folders: the shared tiny models load with GGUF keys and names; hostile
 * safetensors and broken folders are refused with the right status and a message that names the
 * problem; failed allocations at every point leak nothing. */
#include <ftw.h>
#include <sys/stat.h>

#include "formats/hf.h"
#include "formats/safetensors.h"
#include "testutil.h"

/* ---------------------------------------------------------------- helpers */

static int64_t get_int(const nllm_source *s, const char *key) {
  int64_t v = -12345;
  ck_assert_msg(nllm_source_get_int(s, key, &v) == NLLM_OK, "key %s: %s", key, nllm_last_error());
  return v;
}

static double get_float(const nllm_source *s, const char *key) {
  double v = -1;
  ck_assert_msg(nllm_source_get_float(s, key, &v) == NLLM_OK, "key %s", key);
  return v;
}

static const char *get_str(const nllm_source *s, const char *key) {
  const char *v = NULL;
  ck_assert_msg(nllm_source_get_str(s, key, &v) == NLLM_OK, "key %s", key);
  return v;
}

static const nllm_tensor *tensor(const nllm_source *s, const char *name, int type, int64_t ne0,
                                 int64_t ne1) {
  const nllm_tensor *t = nllm_source_tensor(s, name);
  ck_assert_msg(t != NULL, "tensor %s missing", name);
  ck_assert_int_eq(t->type, type);
  ck_assert_int_eq(t->ne[0], ne0);
  ck_assert_int_eq(t->ne[1], ne1);
  ck_assert_int_eq(t->n_dims, ne1 == 1 ? 1 : 2);
  size_t es = type == NLLM_TYPE_F32 ? 4 : 2;
  ck_assert_uint_eq(t->nbytes, (uint64_t)(ne0 * ne1) * es);
  return t;
}

static int inside_map(const nllm_source *s, const nllm_tensor *t) {
  for (int i = 0; i < s->n_maps; i++) {
    const uint8_t *p = t->data;
    if (p >= s->maps[i].data && p + t->nbytes <= s->maps[i].data + s->maps[i].size) return i;
  }
  return -1;
}

static int has_id(const nllm_value *v, int64_t id) {
  for (uint64_t i = 0; i < v->v.arr.n; i++)
    if (nllm_value_arr_int(v, i) == id) return 1;
  return 0;
}

static void assert_err(nllm_status got, nllm_status want, const char *substr) {
  ck_assert_msg(got == want, "status %d, expected %d (%s)", got, want, nllm_last_error());
  ck_assert_msg(strstr(nllm_last_error(), substr) != NULL, "message '%s' lacks '%s'",
                nllm_last_error(), substr);
}

/* A safetensors image: length field (or `hlen` when non-zero), header, `data` bytes of
 * pattern. Returns the size. Headers are padded with spaces to 8 bytes unless raw. */
static size_t make_st(uint8_t *buf, size_t cap, const char *header, uint64_t hlen, size_t data,
                      int raw) {
  size_t h = strlen(header), padded = raw ? h : (h + 7) / 8 * 8;
  ck_assert(8 + padded + data <= cap);
  uint64_t field = hlen ? hlen : padded;
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(field >> (8 * i));
  memcpy(buf + 8, header, h);
  memset(buf + 8 + h, ' ', padded - h);
  for (size_t i = 0; i < data; i++) buf[8 + padded + i] = (uint8_t)(i * 7 + 1);
  return 8 + padded + data;
}

static nllm_status parse(const uint8_t *buf, size_t size, nllm_source *src,
                         nllm_tensor_list *list) {
  memset(src, 0, sizeof *src);
  memset(list, 0, sizeof *list);
  return safetensors_parse(src, buf, size, "x.safetensors", list);
}

static nllm_status parse_header(const char *header, size_t data) {
  static uint8_t buf[1 << 16];
  size_t n = make_st(buf, sizeof buf, header, 0, data, 0);
  nllm_source src;
  nllm_tensor_list list;
  nllm_status st = parse(buf, n, &src, &list);
  nllm_tensor_list_free(&list);
  nllm_source_free(&src);
  return st;
}

static void write_file(const char *dir, const char *name, const void *data, size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "cannot write %s", path);
  ck_assert_uint_eq(fwrite(data, 1, n, f), n);
  fclose(f);
}

static void write_text(const char *dir, const char *name, const char *text) {
  write_file(dir, name, text, strlen(text));
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  return remove(p);
}

static char tmpdir[256];

static void make_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/nllm_test_hf_XXXXXX");
  ck_assert(mkdtemp(tmpdir) != NULL);
}

static void remove_tmpdir(void) {
  nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static const char *tiny_config =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"num_hidden_layers\": 1,"
    " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"intermediate_size\": 16,"
    " \"vocab_size\": 4, \"rms_norm_eps\": 1e-5, \"bos_token_id\": 1, \"eos_token_id\": 2}";

/* Header for a one-layer model of tiny_config in F32 with the given extra entries; sizes and
 * offsets are computed so the file is valid unless the caller breaks it. */
typedef struct st_builder {
  char header[8192];
  uint64_t off;
} st_builder;

static void stb_begin(st_builder *b) {
  strcpy(b->header, "{\"__metadata__\": {\"format\": \"pt\"}");
  b->off = 0;
}

static void stb_add(st_builder *b, const char *name, const char *dtype, int64_t d0, int64_t d1) {
  int64_t n = d0 * (d1 ? d1 : 1);
  int es = strcmp(dtype, "F32") == 0 ? 4 : 2;
  char e[512];
  if (d1)
    snprintf(e, sizeof e,
             ", \"%s\": {\"dtype\": \"%s\", \"shape\": [%lld, %lld], "
             "\"data_offsets\": [%llu, %llu]}",
             name, dtype, (long long)d0, (long long)d1, (unsigned long long)b->off,
             (unsigned long long)(b->off + (uint64_t)(n * es)));
  else
    snprintf(e, sizeof e,
             ", \"%s\": {\"dtype\": \"%s\", \"shape\": [%lld], "
             "\"data_offsets\": [%llu, %llu]}",
             name, dtype, (long long)d0, (unsigned long long)b->off,
             (unsigned long long)(b->off + (uint64_t)(n * es)));
  strcat(b->header, e);
  b->off += (uint64_t)(n * es);
}

static void stb_write(st_builder *b, const char *dir, const char *file) {
  static uint8_t buf[1 << 16];
  strcat(b->header, "}");
  size_t n = make_st(buf, sizeof buf, b->header, 0, b->off, 0);
  write_file(dir, file, buf, n);
}

static void stb_layer0(st_builder *b) {
  stb_add(b, "model.layers.0.input_layernorm.weight", "F32", 8, 0);
  stb_add(b, "model.layers.0.self_attn.q_proj.weight", "F32", 8, 8);
  stb_add(b, "model.layers.0.self_attn.k_proj.weight", "F32", 4, 8);
  stb_add(b, "model.layers.0.self_attn.v_proj.weight", "F32", 4, 8);
  stb_add(b, "model.layers.0.self_attn.o_proj.weight", "F32", 8, 8);
  stb_add(b, "model.layers.0.post_attention_layernorm.weight", "F32", 8, 0);
  stb_add(b, "model.layers.0.mlp.gate_proj.weight", "F32", 16, 8);
  stb_add(b, "model.layers.0.mlp.up_proj.weight", "F32", 16, 8);
  stb_add(b, "model.layers.0.mlp.down_proj.weight", "F32", 8, 16);
}

static void stb_globals(st_builder *b) {
  stb_add(b, "model.embed_tokens.weight", "F32", 4, 8);
  stb_add(b, "model.norm.weight", "F32", 8, 0);
  stb_add(b, "lm_head.weight", "F32", 4, 8);
}

/* A complete valid tiny folder (single file). */
static void write_tiny_folder(const char *config) {
  write_text(tmpdir, "config.json", config);
  st_builder b;
  stb_begin(&b);
  stb_globals(&b);
  stb_layer0(&b);
  stb_write(&b, tmpdir, "model.safetensors");
}

static nllm_status open_tmp(nllm_source *src) {
  return hf_open(tmpdir, 1, src);
}

/* ---------------------------------------------------------------- the shared folders */

START_TEST(test_tiny_llama_sharded) {
  char dir[1024];
  if (!testdata_path(dir, sizeof dir, "hf/tiny-llama/config.json")) return;
  *strrchr(dir, '/') = 0;
  nllm_source s;
  ck_assert_msg(hf_open(dir, 1, &s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_str_eq(get_str(&s, "general.architecture"), "llama");
  ck_assert_int_eq(get_int(&s, "llama.embedding_length"), 64);
  ck_assert_int_eq(get_int(&s, "llama.block_count"), 2);
  ck_assert_int_eq(get_int(&s, "llama.attention.head_count"), 4);
  ck_assert_int_eq(get_int(&s, "llama.attention.head_count_kv"), 2);
  ck_assert_int_eq(get_int(&s, "llama.attention.key_length"), 16);
  ck_assert_int_eq(get_int(&s, "llama.attention.value_length"), 16);
  ck_assert_int_eq(get_int(&s, "llama.rope.dimension_count"), 16);
  ck_assert_int_eq(get_int(&s, "llama.feed_forward_length"), 192);
  ck_assert_int_eq(get_int(&s, "llama.context_length"), 2048);
  ck_assert_int_eq(get_int(&s, "llama.vocab_size"), 32000);
  ck_assert_double_eq_tol(get_float(&s, "llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-12);
  ck_assert_double_eq_tol(get_float(&s, "llama.rope.freq_base"), 10000, 1e-6);
  ck_assert_int_eq(get_int(&s, "nllm.rope.neox"), 1);
  ck_assert_str_eq(get_str(&s, "tokenizer.hf.dir"), dir);
  ck_assert_int_eq(get_int(&s, "tokenizer.ggml.bos_token_id"), 1);
  ck_assert_int_eq(get_int(&s, "tokenizer.ggml.eos_token_id"), 2);
  ck_assert_int_eq(get_int(&s, "tokenizer.ggml.add_bos_token"), 1);
  const nllm_value *eog = nllm_source_get(&s, "nllm.eog_token_ids");
  ck_assert(eog && eog->type == NLLM_V_ARRAY && eog->v.arr.elem_type == NLLM_V_I32);
  ck_assert_uint_eq(eog->v.arr.n, 1);
  ck_assert(has_id(eog, 2));
  ck_assert(nllm_source_get(&s, "llama.attention.sliding_window") == NULL);
  ck_assert(nllm_source_get(&s, "llama.rope.scaling.type") == NULL);

  ck_assert_int_eq(s.n_maps, 2);
  ck_assert_int_eq(s.n_tensors, 3 + 2 * 9);
  const nllm_tensor *emb = tensor(&s, "token_embd.weight", NLLM_TYPE_BF16, 64, 32000);
  const nllm_tensor *out = tensor(&s, "output.weight", NLLM_TYPE_BF16, 64, 32000);
  tensor(&s, "output_norm.weight", NLLM_TYPE_BF16, 64, 1);
  tensor(&s, "blk.0.attn_norm.weight", NLLM_TYPE_BF16, 64, 1);
  tensor(&s, "blk.0.attn_q.weight", NLLM_TYPE_BF16, 64, 64);
  tensor(&s, "blk.0.attn_k.weight", NLLM_TYPE_BF16, 64, 32);
  tensor(&s, "blk.0.attn_v.weight", NLLM_TYPE_BF16, 64, 32);
  tensor(&s, "blk.0.attn_output.weight", NLLM_TYPE_BF16, 64, 64);
  tensor(&s, "blk.1.ffn_norm.weight", NLLM_TYPE_BF16, 64, 1);
  tensor(&s, "blk.1.ffn_gate.weight", NLLM_TYPE_BF16, 64, 192);
  tensor(&s, "blk.1.ffn_up.weight", NLLM_TYPE_BF16, 64, 192);
  const nllm_tensor *down = tensor(&s, "blk.1.ffn_down.weight", NLLM_TYPE_BF16, 192, 64);
  /* the README's split: embeddings + layer 0 in shard 1, layer 1 + lm_head in shard 2 */
  ck_assert_int_eq(inside_map(&s, emb), 0);
  ck_assert_int_eq(inside_map(&s, down), 1);
  ck_assert_int_eq(inside_map(&s, out), 1);
  for (int64_t i = 0; i < s.n_tensors; i++) ck_assert_int_ge(inside_map(&s, &s.tensors[i]), 0);
  nllm_source_free(&s);
}
END_TEST

START_TEST(test_tiny_qwen2_tied_bias) {
  char dir[1024];
  if (!testdata_path(dir, sizeof dir, "hf/tiny-qwen2/config.json")) return;
  *strrchr(dir, '/') = 0;
  nllm_source s;
  ck_assert_msg(hf_open(dir, 0, &s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_str_eq(get_str(&s, "general.architecture"), "qwen2");
  ck_assert_int_eq(get_int(&s, "qwen2.attention.key_length"), 8);
  ck_assert_double_eq_tol(get_float(&s, "qwen2.rope.freq_base"), 1e6, 1e-3);
  ck_assert_double_eq_tol(get_float(&s, "qwen2.attention.layer_norm_rms_epsilon"), 1e-6, 1e-12);
  /* sliding_window 32768 is in the config but use_sliding_window is false */
  ck_assert(nllm_source_get(&s, "qwen2.attention.sliding_window") == NULL);
  ck_assert(nllm_source_tensor(&s, "output.weight") == NULL);
  ck_assert_int_eq(s.n_tensors, 2 + 2 * 12);
  tensor(&s, "token_embd.weight", NLLM_TYPE_BF16, 32, 151936);
  tensor(&s, "blk.0.attn_q.bias", NLLM_TYPE_BF16, 32, 1);
  tensor(&s, "blk.1.attn_k.bias", NLLM_TYPE_BF16, 16, 1);
  tensor(&s, "blk.1.attn_v.bias", NLLM_TYPE_BF16, 16, 1);
  ck_assert(nllm_source_tensor(&s, "blk.0.attn_output.bias") == NULL);
  ck_assert_int_eq(get_int(&s, "tokenizer.ggml.add_bos_token"), 0);
  ck_assert_int_eq(get_int(&s, "tokenizer.ggml.eos_token_id"), 151643);
  /* the Instruct tokenizer_config's eos <|im_end|> joins the end-of-generation set */
  const nllm_value *eog = nllm_source_get(&s, "nllm.eog_token_ids");
  ck_assert(eog && has_id(eog, 151643) && has_id(eog, 151645));
  ck_assert(strstr(get_str(&s, "tokenizer.chat_template"), "<|im_start|>") != NULL);
  nllm_source_free(&s);
}
END_TEST

START_TEST(test_tiny_qwen3_head_dim) {
  char dir[1024];
  if (!testdata_path(dir, sizeof dir, "hf/tiny-qwen3/config.json")) return;
  *strrchr(dir, '/') = 0;
  nllm_source s;
  ck_assert_msg(hf_open(dir, 1, &s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_str_eq(get_str(&s, "general.architecture"), "qwen3");
  ck_assert_int_eq(get_int(&s, "qwen3.embedding_length"), 32);
  ck_assert_int_eq(get_int(&s, "qwen3.attention.key_length"), 16);
  ck_assert_int_eq(get_int(&s, "qwen3.attention.value_length"), 16);
  ck_assert_int_eq(get_int(&s, "qwen3.rope.dimension_count"), 16);
  ck_assert_int_eq(get_int(&s, "qwen3.context_length"), 40960);
  ck_assert(nllm_source_get(&s, "qwen3.attention.sliding_window") == NULL);
  ck_assert(nllm_source_tensor(&s, "output.weight") == NULL);
  tensor(&s, "blk.0.attn_q.weight", NLLM_TYPE_BF16, 32, 64);
  tensor(&s, "blk.0.attn_k.weight", NLLM_TYPE_BF16, 32, 32);
  tensor(&s, "blk.0.attn_output.weight", NLLM_TYPE_BF16, 64, 32);
  tensor(&s, "blk.1.attn_q_norm.weight", NLLM_TYPE_BF16, 16, 1);
  tensor(&s, "blk.1.attn_k_norm.weight", NLLM_TYPE_BF16, 16, 1);
  const nllm_value *eog = nllm_source_get(&s, "nllm.eog_token_ids");
  ck_assert(eog && eog->v.arr.n == 2 && has_id(eog, 151645) && has_id(eog, 151643));
  ck_assert_int_eq(get_int(&s, "tokenizer.ggml.eos_token_id"), 151645);
  nllm_source_free(&s);
}
END_TEST

/* ---------------------------------------------------------------- hostile safetensors */

START_TEST(test_st_header_bounds) {
  uint8_t buf[256];
  nllm_source src;
  nllm_tensor_list list;
  const char *h = "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}";
  size_t n = make_st(buf, sizeof buf, h, 0, 8, 0);
  ck_assert_int_eq(parse(buf, n, &src, &list), NLLM_OK);
  ck_assert_int_eq(list.n, 1);
  nllm_tensor_list_free(&list);
  nllm_source_free(&src);
  assert_err(parse(buf, 5, &src, &list), NLLM_ERR_FORMAT, "too small");
  nllm_source_free(&src);
  /* a length field that points past the end of the file */
  n = make_st(buf, sizeof buf, h, 4000, 8, 0);
  assert_err(parse(buf, n, &src, &list), NLLM_ERR_FORMAT, "header length 4000");
  nllm_source_free(&src);
  n = make_st(buf, sizeof buf, h, UINT64_MAX, 8, 0);
  assert_err(parse(buf, n, &src, &list), NLLM_ERR_FORMAT, "header length");
  nllm_source_free(&src);
  n = make_st(buf, sizeof buf, "{", 1, 0, 1);
  assert_err(parse(buf, n, &src, &list), NLLM_ERR_FORMAT, "header length 1");
  nllm_source_free(&src);
  /* header shorter than claimed by 8: the JSON gets cut */
  n = make_st(buf, sizeof buf, h, 40, 8, 0);
  assert_err(parse(buf, n, &src, &list), NLLM_ERR_FORMAT, "well-formed");
  nllm_source_free(&src);
}
END_TEST

START_TEST(test_st_bad_entries) {
  assert_err(
      parse_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]", 8),
      NLLM_ERR_FORMAT, "well-formed");
  assert_err(parse_header("[1, 2, 3]", 0), NLLM_ERR_FORMAT, "not an object");
  assert_err(parse_header("{\"w\": 3}", 0), NLLM_ERR_FORMAT, "'w' is not an object");
  assert_err(parse_header("{\"w\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8),
             NLLM_ERR_FORMAT, "'w' needs");
  assert_err(
      parse_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 16]}}", 8),
      NLLM_ERR_FORMAT, "shape x dtype size is 8 bytes");
  assert_err(
      parse_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 8),
      NLLM_ERR_FORMAT, "extend past the end of the data section (8 bytes)");
  assert_err(
      parse_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", 8),
      NLLM_ERR_FORMAT, "end before begin");
  assert_err(
      parse_header("{\"w\": {\"dtype\": \"I8\", \"shape\": [8], \"data_offsets\": [0, 8]}}", 8),
      NLLM_ERR_UNSUPPORTED, "'w' has dtype I8");
  assert_err(
      parse_header("{\"w\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]}}", 8),
      NLLM_ERR_UNSUPPORTED, "U8");
  assert_err(
      parse_header("{\"w\": {\"dtype\": \"Q9\", \"shape\": [8], \"data_offsets\": [0, 8]}}", 8),
      NLLM_ERR_FORMAT, "unknown dtype 'Q9'");
  assert_err(
      parse_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8),
      NLLM_ERR_FORMAT, "shape[0]");
  assert_err(
      parse_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0.5, 8]}}", 8),
      NLLM_ERR_FORMAT, "data_offsets must be");
  assert_err(
      parse_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", 8),
      NLLM_ERR_FORMAT, "data_offsets must be");
  assert_err(parse_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,2], "
                          "\"data_offsets\": [0, 8]}}",
                          8),
             NLLM_ERR_UNSUPPORTED, "5 dimensions");
  /* 2^32 x 2^32 elements: the product overflows 64 bits before any span check */
  assert_err(parse_header("{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
                          "\"data_offsets\": [0, 8]}}",
                          8),
             NLLM_ERR_FORMAT, "overflows");
  assert_err(
      parse_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                   " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                   16),
      NLLM_ERR_FORMAT, "overlap");
  assert_err(
      parse_header("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                   " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
                   16),
      NLLM_ERR_FORMAT, "'a' is listed twice");
  /* empty tensors take no bytes and may sit anywhere in the section */
  ck_assert_int_eq(parse_header("{\"e\": {\"dtype\": \"F16\", \"shape\": [0, 4], \"data_offsets\": "
                                "[4, 4]}, \"a\": {\"dtype\": \"F32\", \"shape\": [2], "
                                "\"data_offsets\": [0, 8]}}",
                                8),
                   NLLM_OK);
}
END_TEST

START_TEST(test_st_misaligned_copy) {
  /* an unpadded 7-byte-off header leaves F32 data misaligned: it loads through a copy */
  static uint8_t buf[256];
  const char *h = "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}";
  size_t n = make_st(buf, sizeof buf, h, 0, 0, 1);
  float v[2] = {1.5f, -2.25f};
  memcpy(buf + n, v, 8);
  nllm_source src;
  nllm_tensor_list list;
  ck_assert_int_eq(parse(buf, n + 8, &src, &list), NLLM_OK);
  ck_assert(((uintptr_t)list.t[0].data & 3) == 0);
  ck_assert(memcmp(list.t[0].data, v, 8) == 0);
  nllm_tensor_list_free(&list);
  nllm_source_free(&src);
}
END_TEST

/* ---------------------------------------------------------------- broken folders */

START_TEST(test_folder_synthetic_ok) {
  make_tmpdir();
  write_tiny_folder(tiny_config);
  nllm_source s;
  ck_assert_msg(open_tmp(&s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(s.n_tensors, 12);
  tensor(&s, "output.weight", NLLM_TYPE_F32, 8, 4);
  ck_assert_int_eq(get_int(&s, "llama.attention.key_length"), 4);
  nllm_source_free(&s);
  remove_tmpdir();
}
END_TEST

START_TEST(test_folder_config_errors) {
  make_tmpdir();
  nllm_source s;
  assert_err(open_tmp(&s), NLLM_ERR_IO, "no config.json");
  write_tiny_folder("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8,");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "config.json: invalid JSON near byte");
  write_text(tmpdir, "config.json", "[]");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "not a JSON object");
  write_text(tmpdir, "config.json", "{\"hidden_size\": 8}");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'architectures'");
  write_text(tmpdir, "config.json", "{\"architectures\": [\"MambaForCausalLM\"]}");
  assert_err(open_tmp(&s), NLLM_ERR_UNSUPPORTED, "'MambaForCausalLM'");
  write_text(tmpdir, "config.json",
             "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8}");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'num_hidden_layers' is missing");
  write_text(tmpdir, "config.json",
             "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": \"8\", "
             "\"num_hidden_layers\": 1}");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'hidden_size' must be an integer");
  write_text(
      tmpdir, "config.json",
      "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"num_hidden_layers\": 1,"
      " \"num_attention_heads\": 3, \"intermediate_size\": 16, \"vocab_size\": 4}");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "not a multiple of num_attention_heads 3");
  write_text(
      tmpdir, "config.json",
      "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"num_hidden_layers\": 1,"
      " \"num_attention_heads\": 2, \"intermediate_size\": 16, \"vocab_size\": 4,"
      " \"rope_scaling\": {\"rope_type\": \"longrope\", \"factor\": 4}}");
  assert_err(open_tmp(&s), NLLM_ERR_UNSUPPORTED, "'longrope'");
  write_text(
      tmpdir, "config.json",
      "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"num_hidden_layers\": 1,"
      " \"num_attention_heads\": 2, \"intermediate_size\": 16, \"vocab_size\": 4,"
      " \"eos_token_id\": [2, \"x\"]}");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'eos_token_id'");
  remove_tmpdir();
}
END_TEST

/* A one-layer mixture-of-experts folder of 2 experts: Mixtral's names (qwen = 0) or
 * Qwen3-MoE's; expert `odd` gets a wrong shape (odd_shape), is left out of w3/up (odd_missing)
 * or is renamed to expert 5 (odd_index). */
enum { ODD_NONE, ODD_SHAPE, ODD_MISSING, ODD_INDEX };

static void write_moe_folder(const char *config, int qwen, int odd) {
  write_text(tmpdir, "config.json", config);
  st_builder b;
  stb_begin(&b);
  stb_globals(&b);
  stb_add(&b, "model.layers.0.input_layernorm.weight", "F32", 8, 0);
  stb_add(&b, "model.layers.0.self_attn.q_proj.weight", "F32", 8, 8);
  stb_add(&b, "model.layers.0.self_attn.k_proj.weight", "F32", 4, 8);
  stb_add(&b, "model.layers.0.self_attn.v_proj.weight", "F32", 4, 8);
  stb_add(&b, "model.layers.0.self_attn.o_proj.weight", "F32", 8, 8);
  stb_add(&b, "model.layers.0.post_attention_layernorm.weight", "F32", 8, 0);
  const char *pre = qwen ? "model.layers.0.mlp" : "model.layers.0.block_sparse_moe";
  const char *names[3] = {qwen ? "gate_proj" : "w1", qwen ? "up_proj" : "w3",
                          qwen ? "down_proj" : "w2"};
  char name[128];
  snprintf(name, sizeof name, "%s.gate.weight", pre);
  stb_add(&b, name, "F32", 2, 8);
  for (int e = 0; e < 2; e++)
    for (int m = 0; m < 3; m++) {
      if (e == 1 && m == 1 && odd == ODD_MISSING) continue;
      snprintf(name, sizeof name, "%s.experts.%d.%s.weight", pre,
               e == 1 && odd == ODD_INDEX ? 5 : e, names[m]);
      const int64_t rows = m == 2 ? 8 : 16, cols = m == 2 ? 16 : 8;
      stb_add(&b, name, "F32", rows, e == 1 && m == 0 && odd == ODD_SHAPE ? cols / 2 : cols);
    }
  stb_write(&b, tmpdir, "model.safetensors");
}

#define MIXTRAL_CFG(extra)                                                                       \
  "{\"architectures\": [\"MixtralForCausalLM\"], \"hidden_size\": 8, \"num_hidden_layers\": 1, " \
  "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"intermediate_size\": 16, "          \
  "\"vocab_size\": 4" extra "}"
#define QWEN3MOE_CFG(extra)                                                                       \
  "{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"hidden_size\": 8, \"num_hidden_layers\": 1, " \
  "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"intermediate_size\": 32, "           \
  "\"moe_intermediate_size\": 16, \"vocab_size\": 4, \"num_experts\": 2, "                        \
  "\"num_experts_per_tok\": 1" extra "}"

/* Mixture-of-experts folders: experts stacked into GGUF's 3-D tensors, the expert keys, and
 * every inconsistency between config.json and the experts refused with a message. */
START_TEST(test_folder_moe) {
  make_tmpdir();
  nllm_source s;
  write_moe_folder(MIXTRAL_CFG(", \"num_local_experts\": 2, \"num_experts_per_tok\": 1"), 0,
                   ODD_NONE);
  ck_assert_msg(open_tmp(&s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(get_int(&s, "llama.expert_count"), 2);
  ck_assert_int_eq(get_int(&s, "llama.expert_used_count"), 1);
  const nllm_value *norm = nllm_source_get(&s, "llama.expert_weights_norm");
  ck_assert(norm && norm->type == NLLM_V_BOOL && norm->v.u == 1);
  const nllm_tensor *t = nllm_source_tensor(&s, "blk.0.ffn_down_exps.weight");
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->n_dims, 3);
  ck_assert(t->ne[0] == 16 && t->ne[1] == 8 && t->ne[2] == 2 && t->ne[3] == 1);
  tensor(&s, "blk.0.ffn_gate_inp.weight", NLLM_TYPE_F32, 8, 2);
  ck_assert_ptr_null(nllm_source_tensor(&s, "blk.0.ffn_gate.weight"));
  nllm_source_free(&s);

  write_moe_folder(QWEN3MOE_CFG(", \"norm_topk_prob\": true"), 1, ODD_NONE);
  ck_assert_msg(open_tmp(&s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_str_eq(get_str(&s, "general.architecture"), "qwen3moe");
  ck_assert_int_eq(get_int(&s, "qwen3moe.expert_feed_forward_length"), 16);
  ck_assert_int_eq(get_int(&s, "qwen3moe.feed_forward_length"), 32);
  t = nllm_source_tensor(&s, "blk.0.ffn_gate_exps.weight");
  ck_assert_ptr_nonnull(t);
  ck_assert(t->ne[0] == 8 && t->ne[1] == 16 && t->ne[2] == 2 && t->type == NLLM_TYPE_F32);
  ck_assert_int_eq(t->nbytes, 2 * 16 * 8 * 4); /* both experts, one after the other */
  nllm_source_free(&s);

  write_moe_folder(MIXTRAL_CFG(", \"num_local_experts\": 3, \"num_experts_per_tok\": 1"), 0,
                   ODD_NONE);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "has 2 experts but config.json says 3");
  write_moe_folder(MIXTRAL_CFG(", \"num_local_experts\": 2, \"num_experts_per_tok\": 3"), 0,
                   ODD_NONE);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'num_experts_per_tok' = 3 is out of range");
  write_moe_folder(MIXTRAL_CFG(", \"num_experts_per_tok\": 1"), 0, ODD_NONE);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'num_local_experts' is missing");
  write_moe_folder(MIXTRAL_CFG(", \"num_local_experts\": 2, \"num_experts_per_tok\": 1"), 0,
                   ODD_SHAPE);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "differ in shape or type");
  write_moe_folder(MIXTRAL_CFG(", \"num_local_experts\": 2, \"num_experts_per_tok\": 1"), 0,
                   ODD_MISSING);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'blk.0.ffn_up_exps.weight' has 1 experts");
  write_moe_folder(MIXTRAL_CFG(", \"num_local_experts\": 2, \"num_experts_per_tok\": 1"), 0,
                   ODD_INDEX);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "names expert 5 but config.json has 2");
  write_moe_folder(QWEN3MOE_CFG(", \"mlp_only_layers\": [0]"), 1, ODD_NONE);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "layer 0 is dense by config.json");
  write_moe_folder(QWEN3MOE_CFG(", \"decoder_sparse_step\": 2"), 1, ODD_NONE);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "layer 0 is dense by config.json");
  write_moe_folder(QWEN3MOE_CFG(", \"mlp_only_layers\": [1]"), 1, ODD_NONE);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'mlp_only_layers' holds an entry");
  write_moe_folder(QWEN3MOE_CFG(", \"norm_topk_prob\": 1"), 1, ODD_NONE);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'norm_topk_prob' must be true or false");
  /* Mixtral's names under the Qwen3-MoE class are unknown tensors */
  write_moe_folder(QWEN3MOE_CFG(""), 0, ODD_NONE);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "block_sparse_moe");
  remove_tmpdir();
}
END_TEST

START_TEST(test_folder_rope_scaling_llama3) {
  make_tmpdir();
  write_tiny_folder(
      "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"num_hidden_layers\": 1,"
      " \"num_attention_heads\": 2, \"intermediate_size\": 16, \"vocab_size\": 4,"
      " \"rope_theta\": 500000.0, \"max_position_embeddings\": 131072,"
      " \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
      " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
      " \"eos_token_id\": [128001, 128008, 128009]}");
  nllm_source s;
  ck_assert_msg(open_tmp(&s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_str_eq(get_str(&s, "llama.rope.scaling.type"), "llama3");
  ck_assert_double_eq_tol(get_float(&s, "llama.rope.scaling.factor"), 8, 1e-6);
  ck_assert_double_eq_tol(get_float(&s, "llama.rope.scaling.low_freq_factor"), 1, 1e-6);
  ck_assert_double_eq_tol(get_float(&s, "llama.rope.scaling.high_freq_factor"), 4, 1e-6);
  ck_assert_int_eq(get_int(&s, "llama.rope.scaling.original_context_length"), 8192);
  const nllm_value *eog = nllm_source_get(&s, "nllm.eog_token_ids");
  ck_assert(eog && eog->v.arr.n == 3 && has_id(eog, 128009));
  nllm_source_free(&s);
  remove_tmpdir();
}
END_TEST

START_TEST(test_folder_tensor_names) {
  make_tmpdir();
  nllm_source s;
  st_builder b;
  /* an unknown tensor is refused, never dropped */
  write_text(tmpdir, "config.json", tiny_config);
  stb_begin(&b);
  stb_globals(&b);
  stb_layer0(&b);
  stb_add(&b, "model.layers.0.mlp.extra_proj.weight", "F32", 2, 0);
  stb_write(&b, tmpdir, "model.safetensors");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'model.layers.0.mlp.extra_proj.weight'");
  /* a layer past num_hidden_layers */
  stb_begin(&b);
  stb_globals(&b);
  stb_layer0(&b);
  stb_add(&b, "model.layers.1.input_layernorm.weight", "F32", 8, 0);
  stb_write(&b, tmpdir, "model.safetensors");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "layer 1 but config.json has num_hidden_layers 1");
  /* a bias where the model has none (norms) */
  stb_begin(&b);
  stb_globals(&b);
  stb_layer0(&b);
  stb_add(&b, "model.layers.0.input_layernorm.bias", "F32", 8, 0);
  stb_write(&b, tmpdir, "model.safetensors");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "input_layernorm.bias");
  /* rotary inv_freq buffers are skipped */
  stb_begin(&b);
  stb_globals(&b);
  stb_layer0(&b);
  stb_add(&b, "model.layers.0.self_attn.rotary_emb.inv_freq", "F32", 2, 0);
  stb_write(&b, tmpdir, "model.safetensors");
  ck_assert_msg(open_tmp(&s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(s.n_tensors, 12);
  nllm_source_free(&s);
  /* no weights at all */
  remove_tmpdir();
  make_tmpdir();
  write_text(tmpdir, "config.json", tiny_config);
  assert_err(open_tmp(&s), NLLM_ERR_IO, "no model.safetensors");
  write_text(tmpdir, "pytorch_model.bin", "x");
  assert_err(open_tmp(&s), NLLM_ERR_UNSUPPORTED, "PyTorch");
  remove_tmpdir();
}
END_TEST

static void write_index(const char *dir, const char *entries) {
  char text[4096];
  snprintf(text, sizeof text, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {%s}}", entries);
  write_text(dir, "model.safetensors.index.json", text);
}

START_TEST(test_folder_shards) {
  make_tmpdir();
  nllm_source s;
  st_builder b;
  write_text(tmpdir, "config.json", tiny_config);
  stb_begin(&b);
  stb_globals(&b);
  stb_write(&b, tmpdir, "a.safetensors");
  stb_begin(&b);
  stb_layer0(&b);
  stb_write(&b, tmpdir, "b.safetensors");
  write_index(tmpdir,
              "\"model.embed_tokens.weight\": \"a.safetensors\", "
              "\"model.layers.0.mlp.up_proj.weight\": \"b.safetensors\"");
  ck_assert_msg(open_tmp(&s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(s.n_tensors, 12);
  ck_assert_int_eq(s.n_maps, 2);
  nllm_source_free(&s);
  /* the index names a shard that is not there */
  write_index(tmpdir,
              "\"model.embed_tokens.weight\": \"a.safetensors\", "
              "\"model.layers.0.mlp.up_proj.weight\": \"c.safetensors\"");
  assert_err(open_tmp(&s), NLLM_ERR_IO, "shard 'c.safetensors'");
  /* a tensor the index puts in the wrong shard */
  write_index(tmpdir,
              "\"model.embed_tokens.weight\": \"b.safetensors\", "
              "\"model.layers.0.mlp.up_proj.weight\": \"a.safetensors\"");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'model.embed_tokens.weight' is not in shard");
  /* no path escapes through shard names */
  write_index(tmpdir, "\"model.embed_tokens.weight\": \"../a.safetensors\"");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "invalid shard file name");
  write_text(tmpdir, "model.safetensors.index.json", "{\"weight_map\": []}");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'weight_map'");
  /* the same tensor in two shards */
  stb_begin(&b);
  stb_layer0(&b);
  stb_add(&b, "model.norm.weight", "F32", 8, 0);
  stb_write(&b, tmpdir, "b.safetensors");
  write_index(tmpdir,
              "\"model.embed_tokens.weight\": \"a.safetensors\", "
              "\"model.layers.0.mlp.up_proj.weight\": \"b.safetensors\"");
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "'output_norm.weight' is present twice");
  /* a hostile shard is reported with its file name */
  write_file(tmpdir, "b.safetensors", "\x10\x00\x00\x00\x00\x00\x00\x00{}", 10);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "b.safetensors: header length 16");
  remove_tmpdir();
}
END_TEST

START_TEST(test_folder_gemma_phi3) {
  make_tmpdir();
  nllm_source s;
  st_builder b;
  write_text(tmpdir, "config.json",
             "{\"architectures\": [\"Gemma2ForCausalLM\"], \"hidden_size\": 8, "
             "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
             " \"head_dim\": 4, \"intermediate_size\": 16, \"vocab_size\": 4,"
             " \"attn_logit_softcapping\": 50.0, \"final_logit_softcapping\": 30.0,"
             " \"query_pre_attn_scalar\": 256, \"sliding_window\": 4096}");
  stb_begin(&b);
  stb_add(&b, "model.embed_tokens.weight", "F32", 4, 8);
  stb_add(&b, "model.norm.weight", "F32", 8, 0);
  stb_add(&b, "model.layers.0.post_attention_layernorm.weight", "F32", 8, 0);
  stb_add(&b, "model.layers.0.pre_feedforward_layernorm.weight", "F32", 8, 0);
  stb_add(&b, "model.layers.0.post_feedforward_layernorm.weight", "BF16", 8, 0);
  stb_write(&b, tmpdir, "model.safetensors");
  ck_assert_msg(open_tmp(&s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_str_eq(get_str(&s, "general.architecture"), "gemma2");
  ck_assert_double_eq_tol(get_float(&s, "gemma2.attn_logit_softcapping"), 50, 1e-6);
  ck_assert_double_eq_tol(get_float(&s, "gemma2.final_logit_softcapping"), 30, 1e-6);
  ck_assert_double_eq_tol(get_float(&s, "gemma2.attention.scale"), 1.0 / 16, 1e-7);
  ck_assert_int_eq(get_int(&s, "gemma2.attention.sliding_window"), 4096);
  ck_assert(nllm_source_tensor(&s, "output.weight") == NULL);
  tensor(&s, "blk.0.post_attention_norm.weight", NLLM_TYPE_F32, 8, 1);
  tensor(&s, "blk.0.ffn_norm.weight", NLLM_TYPE_F32, 8, 1);
  const nllm_tensor *pf = tensor(&s, "blk.0.post_ffw_norm.weight", NLLM_TYPE_F32, 8, 1);
  /* stored w was the pattern byte-wise; the loaded one is 1 + w, now F32 and owned */
  const nllm_tensor *on = nllm_source_tensor(&s, "output_norm.weight");
  ck_assert(inside_map(&s, on) < 0 && inside_map(&s, pf) < 0);
  const uint8_t *file = s.maps[0].data;
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | file[i];
  float w0;
  memcpy(&w0, file + 8 + hlen + 4 * 8 * 4, 4); /* model.norm follows the 4x8 embedding */
  ck_assert_float_eq(((const float *)on->data)[0], w0 + 1.0f);
  nllm_source_free(&s);

  write_text(tmpdir, "config.json",
             "{\"architectures\": [\"Phi3ForCausalLM\"], \"hidden_size\": 8, "
             "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"intermediate_size\": 16,"
             " \"vocab_size\": 4, \"partial_rotary_factor\": 0.5, \"tie_word_embeddings\": false}");
  stb_begin(&b);
  stb_globals(&b);
  stb_add(&b, "model.layers.0.self_attn.qkv_proj.weight", "F32", 24, 8);
  stb_add(&b, "model.layers.0.mlp.gate_up_proj.weight", "F32", 32, 8);
  stb_write(&b, tmpdir, "model.safetensors");
  ck_assert_msg(open_tmp(&s) == NLLM_OK, "%s", nllm_last_error());
  ck_assert(nllm_source_get(&s, "phi3.nllm.fused_gate_up") == NULL); /* the arch table knows */
  ck_assert_int_eq(get_int(&s, "phi3.rope.dimension_count"), 2);
  tensor(&s, "blk.0.attn_qkv.weight", NLLM_TYPE_F32, 8, 24);
  tensor(&s, "blk.0.ffn_up.weight", NLLM_TYPE_F32, 8, 32);
  tensor(&s, "output.weight", NLLM_TYPE_F32, 8, 4);
  nllm_source_free(&s);
  /* fused names belong to Phi-3 only */
  write_text(tmpdir, "config.json", tiny_config);
  assert_err(open_tmp(&s), NLLM_ERR_FORMAT, "qkv_proj");
  /* layer_types must agree with the architecture's pattern; unknown activations are refused */
  static const struct {
    const char *cls, *extra, *msg;
    nllm_status st;
  } cases[] = {
      {"Gemma2ForCausalLM", "\"sliding_window\": 4, \"layer_types\": [\"sliding_attention\"]", NULL,
       NLLM_OK},
      {"Gemma2ForCausalLM", "\"sliding_window\": 4, \"layer_types\": [\"full_attention\"]",
       "layer_types[0] is 'full_attention'", NLLM_ERR_UNSUPPORTED},
      {"Gemma2ForCausalLM", "\"layer_types\": [\"a\", \"b\"]", "num_hidden_layers (1)",
       NLLM_ERR_FORMAT},
      {"Qwen2ForCausalLM",
       "\"sliding_window\": 4, \"use_sliding_window\": false, "
       "\"layer_types\": [\"full_attention\"]",
       NULL, NLLM_OK},
      {"GemmaForCausalLM", "\"hidden_act\": \"gelu\", \"hidden_activation\": \"gelu\"",
       "hidden_activation 'gelu' is not supported", NLLM_ERR_UNSUPPORTED},
      {"GemmaForCausalLM", "\"hidden_act\": \"gelu\"", NULL, NLLM_OK},
      {"LlamaForCausalLM", "\"hidden_act\": \"relu\"", "hidden_act 'relu'", NLLM_ERR_UNSUPPORTED},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"architectures\": [\"%s\"], \"hidden_size\": 8, \"num_hidden_layers\": 1, "
             "\"num_attention_heads\": 2, \"intermediate_size\": 16, \"vocab_size\": 4, %s}",
             cases[i].cls, cases[i].extra);
    write_text(tmpdir, "config.json", cfg);
    stb_begin(&b);
    stb_add(&b, "model.embed_tokens.weight", "F32", 4, 8);
    stb_add(&b, "model.norm.weight", "F32", 8, 0);
    stb_write(&b, tmpdir, "model.safetensors");
    if (cases[i].st == NLLM_OK) {
      ck_assert_msg(open_tmp(&s) == NLLM_OK, "%s: %s", cfg, nllm_last_error());
      nllm_source_free(&s);
    } else {
      assert_err(open_tmp(&s), cases[i].st, cases[i].msg);
    }
  }
  remove_tmpdir();
}
END_TEST

/* ---------------------------------------------------------------- allocation failures */

static void alloc_sweep(const char *dir) {
  int k;
  for (k = 1; k < 100000; k++) {
    nllm_alloc_fail_countdown = k;
    nllm_source s;
    nllm_status st = hf_open(dir, 1, &s);
    int left = nllm_alloc_fail_countdown;
    nllm_alloc_fail_countdown = 0;
    if (st == NLLM_OK) {
      ck_assert_int_gt(left, 0); /* it succeeded because the failure point was never reached */
      nllm_source_free(&s);
      break;
    }
    ck_assert_msg(st == NLLM_ERR_NOMEM, "fail at %d: %d %s", k, st, nllm_last_error());
    ck_assert(s.n_tensors == 0 && s.maps == NULL && s.blocks == NULL);
  }
  ck_assert_int_gt(k, 10);
}

START_TEST(test_alloc_failures) {
  char dir[1024];
  if (!testdata_path(dir, sizeof dir, "hf/tiny-llama/config.json")) return;
  *strrchr(dir, '/') = 0;
  alloc_sweep(dir);
  if (!testdata_path(dir, sizeof dir, "hf/tiny-qwen2/config.json")) return;
  *strrchr(dir, '/') = 0;
  alloc_sweep(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("hf");
  TCase *tc = tcase_create("hf");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_tiny_llama_sharded);
  tcase_add_test(tc, test_tiny_qwen2_tied_bias);
  tcase_add_test(tc, test_tiny_qwen3_head_dim);
  tcase_add_test(tc, test_st_header_bounds);
  tcase_add_test(tc, test_st_bad_entries);
  tcase_add_test(tc, test_st_misaligned_copy);
  tcase_add_test(tc, test_folder_synthetic_ok);
  tcase_add_test(tc, test_folder_config_errors);
  tcase_add_test(tc, test_folder_moe);
  tcase_add_test(tc, test_folder_rope_scaling_llama3);
  tcase_add_test(tc, test_folder_tensor_names);
  tcase_add_test(tc, test_folder_shards);
  tcase_add_test(tc, test_folder_gemma_phi3);
  tcase_add_test(tc, test_alloc_failures);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
