/* Hugging Face folder side files: config.json, model.safetensors.index.json,
 * tokenizer_config.json and generation_config.json, loaded through hf_open and then
 * nllm_model_load on a scratch folder that also holds a complete tiny Llama checkpoint and a
 * small tokenizer.json (written once at start-up), so configs that parse reach the hparam and
 * shape checks. The input is the four files separated by lines "--8<--"; a missing or empty
 * (or blank) section means that file is absent. Seeds: fuzz/corpus/fuzz_hf. */
#include <stdint.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "formats/source.h"

static char dir[256];
static const char *const files[4] = {"config.json", "model.safetensors.index.json",
                                     "tokenizer_config.json", "generation_config.json"};

/* hidden 32, ff 64, 1 layer, 4 heads (2 kv), vocab 40: HF names and [out, in] shapes. */
static void write_checkpoint(const char *name) {
  static const struct {
    const char *n;
    int rows, cols;
  } t[] = {
      {"model.embed_tokens.weight", 40, 32},
      {"model.norm.weight", 0, 32},
      {"lm_head.weight", 40, 32},
      {"model.layers.0.input_layernorm.weight", 0, 32},
      {"model.layers.0.self_attn.q_proj.weight", 32, 32},
      {"model.layers.0.self_attn.k_proj.weight", 16, 32},
      {"model.layers.0.self_attn.v_proj.weight", 16, 32},
      {"model.layers.0.self_attn.o_proj.weight", 32, 32},
      {"model.layers.0.post_attention_layernorm.weight", 0, 32},
      {"model.layers.0.mlp.gate_proj.weight", 64, 32},
      {"model.layers.0.mlp.up_proj.weight", 64, 32},
      {"model.layers.0.mlp.down_proj.weight", 32, 64},
  };
  char hdr[4096];
  size_t h = 0, off = 0;
  h += (size_t)snprintf(hdr + h, sizeof hdr - h, "{");
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    size_t n = (size_t)(t[i].rows ? t[i].rows : 1) * (size_t)t[i].cols * 4;
    if (t[i].rows)
      h += (size_t)snprintf(
          hdr + h, sizeof hdr - h,
          "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}", i ? "," : "",
          t[i].n, t[i].rows, t[i].cols, off, off + n);
    else
      h +=
          (size_t)snprintf(hdr + h, sizeof hdr - h,
                           "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                           i ? "," : "", t[i].n, t[i].cols, off, off + n);
    off += n;
  }
  h += (size_t)snprintf(hdr + h, sizeof hdr - h, "}");
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  uint64_t len = h;
  fwrite(&len, 8, 1, f);
  fwrite(hdr, 1, h, f);
  for (size_t i = 0; i < off / 4; i++) {
    float x = (float)((int)(i * 2654435761u % 2001) - 1000) / 4000.0f;
    fwrite(&x, 4, 1, f);
  }
  fclose(f);
}

static void write_tokenizer_json(void) {
  char path[512], vocab[2048];
  size_t v = 0;
  v += (size_t)snprintf(vocab + v, sizeof vocab - v, "\"<unk>\":0,\"<s>\":1,\"</s>\":2");
  for (int i = 3; i < 40; i++)
    v += (size_t)snprintf(vocab + v, sizeof vocab - v, ",\"%c%s\":%d", 'a' + (i - 3) % 26,
                          i - 3 >= 26 ? "b" : "", i);
  snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  FILE *f = fopen(path, "wb");
  if (!f) abort();
  fprintf(f,
          "{\"version\":\"1.0\",\"added_tokens\":["
          "{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
          "{\"id\":1,\"content\":\"<s>\",\"special\":true},"
          "{\"id\":2,\"content\":\"</s>\",\"special\":true}],"
          "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\","
          "\"add_prefix_space\":false,\"use_regex\":true},"
          "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
          "\"model\":{\"type\":\"BPE\",\"vocab\":{%s},\"merges\":[\"a b\"]}}",
          vocab);
  fclose(f);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  snprintf(dir, sizeof dir, "%s/nllm-fuzz-hf-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  if (!mkdtemp(dir)) abort();
  write_checkpoint("model.safetensors");
  write_checkpoint("model-00001-of-00001.safetensors");
  write_tokenizer_json();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char sep[] = "--8<--";
  const uint8_t *p = data, *end = data + size;
  for (int i = 0; i < 4; i++) {
    const uint8_t *q = p;
    while (q < end && !(end - q >= 6 && memcmp(q, sep, 6) == 0)) q++;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    int blank = 1;
    for (const uint8_t *c = p; c < q && blank; c++) blank = *c == ' ' || *c == '\n';
    if (!blank)
      fuzz_write_file(path, p, (size_t)(q - p));
    else
      unlink(path);
    p = q < end ? q + 6 : end;
  }
  nllm_source src;
  if (hf_open(dir, size & 1, &src) != NLLM_OK) return 0;
  nllm_source_free(&src);
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.n_threads = 1;
  nllm_model *m = NULL;
  if (nllm_model_load(dir, &mp, &m) == NLLM_OK) {
    fuzz_use_model(m);
    nllm_model_free(m);
  }
  return 0;
}
