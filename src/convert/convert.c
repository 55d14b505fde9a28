/* Conversion and quantization (see convert.h). Tensors are converted row by row through F32
 * (model/quantize_load.c), and written with the GGUF writer. */
#include "convert/convert.h"

#include "core/json.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include "convert/gguf_write.h"
#include "formats/hf.h"
#include "qtypes.h"

/* ---------------------------------------------------------------- targets */

typedef struct target_row {
  const char *name;
  nllm_preset_kind kind;
  int32_t type;
  int32_t file_type; /* llama_ftype numbering; -1: no such file type */
} target_row;

static const target_row targets[] = {
    {"F32", NLLM_PRESET_PURE, NLLM_TYPE_F32, 0},
    {"F16", NLLM_PRESET_PURE, NLLM_TYPE_F16, 1},
    {"BF16", NLLM_PRESET_PURE, NLLM_TYPE_BF16, 32},
    {"Q4_0", NLLM_PRESET_PURE, NLLM_TYPE_Q4_0, 2},
    {"Q4_1", NLLM_PRESET_PURE, NLLM_TYPE_Q4_1, 3},
    {"Q5_0", NLLM_PRESET_PURE, NLLM_TYPE_Q5_0, 8},
    {"Q5_1", NLLM_PRESET_PURE, NLLM_TYPE_Q5_1, 9},
    {"Q8_0", NLLM_PRESET_PURE, NLLM_TYPE_Q8_0, 7},
    {"Q2_K", NLLM_PRESET_Q2_K, NLLM_TYPE_Q2_K, 10},
    {"Q3_K", NLLM_PRESET_PURE, NLLM_TYPE_Q3_K, -1},
    {"Q4_K", NLLM_PRESET_PURE, NLLM_TYPE_Q4_K, -1},
    {"Q5_K", NLLM_PRESET_PURE, NLLM_TYPE_Q5_K, -1},
    {"Q6_K", NLLM_PRESET_PURE, NLLM_TYPE_Q6_K, 18},
    {"Q3_K_M", NLLM_PRESET_Q3_K_M, NLLM_TYPE_Q3_K, 12},
    {"Q4_K_M", NLLM_PRESET_Q4_K_M, NLLM_TYPE_Q4_K, 15},
    {"Q5_K_M", NLLM_PRESET_Q5_K_M, NLLM_TYPE_Q5_K, 17},
    {"IQ4_NL", NLLM_PRESET_PURE, NLLM_TYPE_IQ4_NL, 25},
    {"IQ4_XS", NLLM_PRESET_PURE, NLLM_TYPE_IQ4_XS, 30},
};

nllm_status nllm_quant_target_parse(const char *name, nllm_quant_target *out) {
  memset(out, 0, sizeof *out);
  out->type = NLLM_TYPE_NONE;
  out->file_type = -1;
  out->name = "";
  if (!name || !*name) return NLLM_OK;
  for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
    if (strcasecmp(targets[i].name, name) == 0) {
      out->kind = targets[i].kind;
      out->type = targets[i].type;
      out->file_type = targets[i].file_type;
      out->name = targets[i].name;
      return NLLM_OK;
    }
  return nllm_err(NLLM_ERR_INVALID_ARG,
                  "unknown type '%.40s' (F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K "
                  "Q5_K Q6_K Q3_K_M Q4_K_M Q5_K_M IQ4_NL IQ4_XS)",
                  name);
}

/* The layers that get more bits in the _M presets: the first and last eighth, and every third
 * layer in between (the usual quantizer's choice, so files match what users know). */
static int use_more_bits(int64_t i, int64_t n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static int name_is(const char *name, const char *suffix) {
  size_t n = strlen(name), s = strlen(suffix);
  return n >= s && strcmp(name + n - s, suffix) == 0;
}

static int64_t layer_of(const char *name) {
  if (strncmp(name, "blk.", 4) != 0) return -1;
  return strtoll(name + 4, NULL, 10);
}

int32_t nllm_quant_tensor_type(const nllm_quant_target *tg, const nllm_tensor *t, int64_t n_layers,
                               int has_output) {
  if (t->n_dims < 2) return NLLM_TYPE_F32; /* norms and biases: small, and precision matters */
  if (tg->kind == NLLM_PRESET_KEEP) return t->type;
  int32_t base = tg->type, q = base;
  int64_t il = layer_of(t->name);
  nllm_preset_kind k = tg->kind;
  if (strcmp(t->name, "output.weight") == 0 ||
      (!has_output && strcmp(t->name, "token_embd.weight") == 0)) {
    q = nllm_type_is_float(base) || base == NLLM_TYPE_Q8_0 ? base : NLLM_TYPE_Q6_K;
  } else if (name_is(t->name, ".attn_v.weight")) {
    if (k == NLLM_PRESET_Q2_K)
      q = NLLM_TYPE_Q3_K;
    else if (k == NLLM_PRESET_Q3_K_M)
      q = il < 2 ? NLLM_TYPE_Q5_K : NLLM_TYPE_Q4_K;
    else if ((k == NLLM_PRESET_Q4_K_M || k == NLLM_PRESET_Q5_K_M) && use_more_bits(il, n_layers))
      q = NLLM_TYPE_Q6_K;
  } else if (name_is(t->name, ".ffn_down.weight")) {
    if (k == NLLM_PRESET_Q2_K)
      q = NLLM_TYPE_Q3_K;
    else if (k == NLLM_PRESET_Q3_K_M)
      q = il < n_layers / 16 ? NLLM_TYPE_Q5_K : NLLM_TYPE_Q4_K;
    else if ((k == NLLM_PRESET_Q4_K_M || k == NLLM_PRESET_Q5_K_M) && use_more_bits(il, n_layers))
      q = NLLM_TYPE_Q6_K;
  } else if (name_is(t->name, ".attn_output.weight")) {
    if (k == NLLM_PRESET_Q2_K)
      q = NLLM_TYPE_Q3_K;
    else if (k == NLLM_PRESET_Q3_K_M)
      q = NLLM_TYPE_Q4_K;
  } else if (name_is(t->name, ".attn_qkv.weight")) {
    if (k == NLLM_PRESET_Q3_K_M)
      q = NLLM_TYPE_Q4_K;
    else if (k == NLLM_PRESET_Q4_K_M)
      q = NLLM_TYPE_Q5_K;
    else if (k == NLLM_PRESET_Q5_K_M)
      q = NLLM_TYPE_Q6_K;
  }
  int32_t bs = 0, ts = 0;
  if (nllm_ggml_type_block(q, &bs, &ts) && bs > 1 && t->ne[0] % bs != 0)
    q = t->ne[0] % 32 == 0 && q != NLLM_TYPE_Q8_0 ? NLLM_TYPE_Q8_0 : NLLM_TYPE_F16;
  return q;
}

static int64_t src_int(const nllm_source *src, const char *arch, const char *key, int64_t dflt) {
  char full[128];
  snprintf(full, sizeof full, "%s.%s", arch, key);
  int64_t v;
  return nllm_source_get_int(src, full, &v) == NLLM_OK ? v : dflt;
}

/* ---------------------------------------------------------------- tokenizer.json -> GGUF keys */

/* token text -> id, open addressing; the vocab and merges of a 150k-token BPE need it */
typedef struct tok_map {
  const char **key;
  int32_t *id;
  uint64_t cap;
} tok_map;

static uint64_t str_hash(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
  return h;
}

static int32_t tok_map_find(const tok_map *m, const char *s, size_t n) {
  for (uint64_t i = str_hash(s, n) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (!m->key[i]) return -1;
    if (strlen(m->key[i]) == n && memcmp(m->key[i], s, n) == 0) return m->id[i];
  }
}

static void tok_map_put(tok_map *m, const char *s, int32_t id) {
  uint64_t i = str_hash(s, strlen(s)) & (m->cap - 1);
  while (m->key[i]) i = (i + 1) & (m->cap - 1);
  m->key[i] = s;
  m->id[i] = id;
}

/* GGUF token types */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static const char *bpe_pre_name(const cJSON *root, const char *arch) {
  char *pre = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"));
  const char *name = "default";
  if (pre) {
    if (strstr(pre, "\\\\p{N}{1,3}"))
      name = "llama-bpe";
    else if (strstr(pre, "(?i:'s|'t|'re|'ve|'m|'ll|'d)") && strstr(pre, "\\\\p{N}|"))
      name = "qwen2";
    else if (strstr(pre, "\"ByteLevel\"") && strstr(pre, "\"use_regex\":true"))
      name = "gpt-2";
    free(pre);
  }
  return name;
}

static nllm_status tokenizer_keys(gguf_writer *w, const char *dir, const char *arch,
                                  int64_t n_vocab_cfg) {
  char path[4096];
  int pn = snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  if (pn < 0 || (size_t)pn >= sizeof path) return nllm_err(NLLM_ERR_INVALID_ARG, "path too long");
  nllm_file_map fm;
  nllm_status st =
      nllm_file_map_open_max(path, 1, NLLM_HF_MAX_TOKENIZER_JSON, "a tokenizer JSON file", &fm);
  if (st != NLLM_OK) return st;
  cJSON *root = nllm_json_parse((const char *)fm.data, (size_t)fm.size, path, &st);
  nllm_file_map_close(&fm);
  if (!root) return st;
  const char **tokens = NULL;
  int32_t *types = NULL;
  float *scores = NULL;
  char *pads = NULL, *merge_buf = NULL;
  const char **merges = NULL;
  tok_map map = {0};
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  const cJSON *mtype = cJSON_GetObjectItemCaseSensitive(model, "type");
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *mlist = cJSON_GetObjectItemCaseSensitive(model, "merges");
  const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
  if (!cJSON_IsString(mtype) || strcmp(mtype->valuestring, "BPE") != 0 || !cJSON_IsObject(vocab) ||
      !cJSON_IsArray(mlist)) {
    st = nllm_err(NLLM_ERR_UNSUPPORTED,
                  "%s: only BPE tokenizers (model.type \"BPE\" with vocab "
                  "and merges) can be converted",
                  path);
    goto done;
  }
  int spm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
  int64_t n = n_vocab_cfg;
  for (const cJSON *e = vocab->child; e; e = e->next)
    if (cJSON_IsNumber(e) && e->valuedouble >= n) n = (int64_t)e->valuedouble + 1;
  for (const cJSON *e = added ? added->child : NULL; e; e = e->next) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
    if (cJSON_IsNumber(id) && id->valuedouble >= n) n = (int64_t)id->valuedouble + 1;
  }
  if (n <= 0 || n > (1 << 24)) {
    st = nllm_err(NLLM_ERR_FORMAT, "%s: vocabulary size %lld out of range", path, (long long)n);
    goto done;
  }
  tokens = nllm_calloc((size_t)n, sizeof *tokens);
  types = nllm_calloc((size_t)n, sizeof *types);
  scores = nllm_calloc((size_t)n, sizeof *scores);
  pads = nllm_calloc((size_t)n, 24);
  map.cap = 1;
  while (map.cap < (uint64_t)n * 2) map.cap <<= 1;
  map.key = nllm_calloc(map.cap, sizeof *map.key);
  map.id = nllm_calloc(map.cap, sizeof *map.id);
  if (!tokens || !types || !scores || !pads || !map.key || !map.id) {
    st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  for (const cJSON *e = vocab->child; e; e = e->next) {
    if (!cJSON_IsNumber(e) || e->valuedouble < 0) {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: vocab entry '%.40s' has no valid id", path, e->string);
      goto done;
    }
    int64_t id = (int64_t)e->valuedouble;
    tokens[id] = e->string;
    types[id] = TT_NORMAL;
    unsigned hb;
    if (spm && strlen(e->string) == 6 && sscanf(e->string, "<0x%2X>", &hb) == 1)
      types[id] = TT_BYTE;
  }
  for (const cJSON *e = added ? added->child : NULL; e; e = e->next) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
    if (!cJSON_IsNumber(id) || id->valuedouble < 0 || !cJSON_IsString(content)) continue;
    int64_t i = (int64_t)id->valuedouble;
    tokens[i] = content->valuestring;
    types[i] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")) ? TT_CONTROL : TT_USER;
  }
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
  for (int64_t i = 0; i < n; i++) {
    if (!tokens[i]) {
      /* ids the config counts but the tokenizer never produces (padding of the matrix) */
      snprintf(pads + i * 24, 24, "[PAD%d]", (int)(i & 0xffffff));
      tokens[i] = pads + i * 24;
      types[i] = TT_UNUSED;
    }
    if (cJSON_IsString(unk) && strcmp(tokens[i], unk->valuestring) == 0) {
      types[i] = TT_UNKNOWN;
      if ((st = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)i)) != NLLM_OK)
        goto done;
    }
    if (types[i] != TT_UNUSED && tok_map_find(&map, tokens[i], strlen(tokens[i])) < 0)
      tok_map_put(&map, tokens[i], (int32_t)i);
  }

  int n_merges = cJSON_GetArraySize(mlist);
  merges = nllm_calloc((size_t)n_merges + 1, sizeof *merges);
  size_t mb = 0;
  for (const cJSON *e = mlist->child; e; e = e->next) {
    if (cJSON_IsString(e))
      mb += strlen(e->valuestring) + 1;
    else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
             cJSON_IsString(e->child->next))
      mb += strlen(e->child->valuestring) + strlen(e->child->next->valuestring) + 2;
    else {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: a merge is neither \"a b\" nor [\"a\", \"b\"]", path);
      goto done;
    }
  }
  merge_buf = nllm_malloc(mb + 1);
  if (!merges || !merge_buf) {
    st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  /* merges as "a b"; for SentencePiece-style vocabularies also a score per token: the merge
   * rank of the pair that makes it, so a score-driven merger picks pairs in BPE's order */
  int64_t rank = 0;
  char *at = merge_buf;
  for (const cJSON *e = mlist->child; e; e = e->next, rank++) {
    char *m = at;
    if (cJSON_IsString(e))
      at += sprintf(at, "%s", e->valuestring) + 1;
    else
      at += sprintf(at, "%s %s", e->child->valuestring, e->child->next->valuestring) + 1;
    merges[rank] = m;
    if (spm) {
      char *sp = strchr(m, ' ');
      if (!sp) continue;
      char joined[512];
      size_t l1 = (size_t)(sp - m), l2 = strlen(sp + 1);
      if (l1 + l2 >= sizeof joined) continue;
      memcpy(joined, m, l1);
      memcpy(joined + l1, sp + 1, l2);
      int32_t id = tok_map_find(&map, joined, l1 + l2);
      if (id >= 0 && types[id] == TT_NORMAL && scores[id] == 0) scores[id] = -(float)(rank + 1);
    }
  }
  if ((st = gguf_writer_set_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2")) != NLLM_OK)
    goto done;
  if (!spm &&
      (st = gguf_writer_set_str(w, "tokenizer.ggml.pre", bpe_pre_name(root, arch))) != NLLM_OK)
    goto done;
  if ((st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tokens, (uint64_t)n)) != NLLM_OK ||
      (st = gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n)) != NLLM_OK)
    goto done;
  if (spm)
    st = gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", scores, (uint64_t)n);
  else
    st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, (uint64_t)n_merges);
done:
  free(tokens);
  free(types);
  free(scores);
  free(pads);
  free(merges);
  free(merge_buf);
  free(map.key);
  free(map.id);
  cJSON_Delete(root);
  return st;
}

/* ---------------------------------------------------------------- convert */

/* Llama 3's rope scaling as GGUF files carry it: a per-frequency divisor tensor rope_freqs. */
static nllm_status llama3_rope_freqs(const nllm_source *src, const char *arch, float **out,
                                     int64_t *n_out) {
  char key[128];
  const char *type;
  snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
  *out = NULL;
  if (nllm_source_get_str(src, key, &type) != NLLM_OK || strcmp(type, "llama3") != 0)
    return NLLM_OK;
  double factor = 8, lo = 1, hi = 4, base = 10000;
  int64_t orig = src_int(src, arch, "rope.scaling.original_context_length", 8192);
  int64_t n_rot = src_int(src, arch, "rope.dimension_count", 0);
  snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
  nllm_source_get_float(src, key, &factor);
  snprintf(key, sizeof key, "%s.rope.scaling.low_freq_factor", arch);
  nllm_source_get_float(src, key, &lo);
  snprintf(key, sizeof key, "%s.rope.scaling.high_freq_factor", arch);
  nllm_source_get_float(src, key, &hi);
  snprintf(key, sizeof key, "%s.rope.freq_base", arch);
  nllm_source_get_float(src, key, &base);
  if (n_rot < 2)
    return nllm_err(NLLM_ERR_FORMAT, "%s: llama3 rope scaling without a rope dimension", src->path);
  float *f = nllm_aligned_alloc((size_t)(n_rot / 2) * sizeof *f);
  if (!f) return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  double lo_wl = (double)orig / lo, hi_wl = (double)orig / hi;
  for (int64_t i = 0; i < n_rot / 2; i++) {
    double freq = pow(base, -2.0 * (double)i / (double)n_rot), wl = 2 * M_PI / freq;
    if (wl < hi_wl)
      f[i] = 1.0f;
    else if (wl > lo_wl)
      f[i] = (float)factor;
    else {
      double smooth = ((double)orig / wl - lo) / (hi - lo);
      f[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
    }
  }
  *out = f;
  *n_out = n_rot / 2;
  return NLLM_OK;
}

static int skip_key(const char *key, int llama3) {
  if (strcmp(key, "nllm.rope.neox") == 0 || strncmp(key, "tokenizer.hf.", 13) == 0) return 1;
  if (strcmp(key, "general.file_type") == 0 || strcmp(key, "general.quantization_version") == 0)
    return 1;
  if (llama3 && strstr(key, ".rope.scaling.")) return 1;
  return 0;
}

nllm_status nllm_convert_source(const nllm_source *src, const char *out_path,
                                const char *type_or_preset, int n_threads,
                                nllm_progress_fn progress, void *user_data) {
  nllm_quant_target tg;
  nllm_status st = nllm_quant_target_parse(type_or_preset, &tg);
  if (st != NLLM_OK) return st;
  const char *arch = "";
  if ((st = nllm_source_get_str(src, "general.architecture", &arch)) != NLLM_OK) return st;
  const nllm_value *neox = nllm_source_get(src, "nllm.rope.neox");
  int hf_layout = neox && neox->type == NLLM_V_BOOL && neox->v.u;
  int permute = hf_layout && strcmp(arch, "llama") == 0;
  int64_t n_layers = src_int(src, arch, "block_count", 0);
  int64_t n_head = src_int(src, arch, "attention.head_count", 0);
  int64_t n_head_kv = src_int(src, arch, "attention.head_count_kv", n_head);
  int has_output = nllm_source_tensor(src, "output.weight") != NULL;

  float *rope_freqs = NULL;
  int64_t n_freqs = 0;
  if (hf_layout && (st = llama3_rope_freqs(src, arch, &rope_freqs, &n_freqs)) != NLLM_OK) return st;
  nllm_tensor_job *jobs = nllm_calloc((size_t)src->n_tensors + 1, sizeof *jobs);
  gguf_writer *w = gguf_writer_new();
  if (!jobs || !w) {
    st = nllm_err(NLLM_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int64_t i = 0; i < src->n_kv; i++)
    if (!skip_key(src->kv[i].key, rope_freqs != NULL) &&
        (st = gguf_writer_set(w, src->kv[i].key, &src->kv[i].val)) != NLLM_OK)
      goto done;
  const char *tok_dir;
  if (nllm_source_get_str(src, "tokenizer.hf.dir", &tok_dir) == NLLM_OK &&
      (st = tokenizer_keys(w, tok_dir, arch, src_int(src, arch, "vocab_size", 0))) != NLLM_OK)
    goto done;
  if (tg.file_type >= 0 &&
      (st = gguf_writer_set_u32(w, "general.file_type", (uint32_t)tg.file_type)) != NLLM_OK)
    goto done;
  if (tg.kind != NLLM_PRESET_KEEP && !nllm_type_is_float(tg.type) &&
      (st = gguf_writer_set_u32(w, "general.quantization_version", 2)) != NLLM_OK)
    goto done;

  uint64_t total = 1, done_bytes = 0;
  for (int64_t i = 0; i < src->n_tensors; i++) total += src->tensors[i].nbytes;
  for (int64_t i = 0; i < src->n_tensors; i++) {
    const nllm_tensor *t = &src->tensors[i];
    nllm_tensor_job *j = &jobs[i];
    j->t = t;
    j->out_type = nllm_quant_tensor_type(&tg, t, n_layers, has_output);
    if (tg.kind == NLLM_PRESET_KEEP && t->n_dims < 2 && !nllm_type_is_float(t->type))
      j->out_type = t->type; /* nothing to convert a quantized vector from */
    if (permute && (name_is(t->name, ".attn_q.weight") || name_is(t->name, ".attn_q.bias")))
      j->permute_heads = n_head;
    if (permute && (name_is(t->name, ".attn_k.weight") || name_is(t->name, ".attn_k.bias")))
      j->permute_heads = n_head_kv;
    if (j->permute_heads &&
        (j->permute_heads <= 0 || t->ne[t->n_dims == 1 ? 0 : 1] % (2 * j->permute_heads))) {
      st = nllm_err(NLLM_ERR_FORMAT,
                    "tensor '%s': %lld rows do not split into %lld heads of "
                    "rotary pairs",
                    t->name, (long long)t->ne[t->n_dims == 1 ? 0 : 1], (long long)j->permute_heads);
      goto done;
    }
    if (j->out_type == t->type && !j->permute_heads) {
      j->out = NULL;
      j->out_bytes = t->nbytes;
    } else {
      uint64_t rows = (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
      if (!nllm_ggml_tensor_bytes(j->out_type, (uint64_t)t->ne[0], rows, &j->out_bytes))
        j->out_bytes = 0; /* refused just below */
      if (!j->out_bytes && t->nbytes) {
        st = nllm_err(NLLM_ERR_FORMAT,
                      "tensor '%s': rows of %lld cannot be stored as %s (not a whole number of "
                      "blocks, or a size past 2^64 bytes)",
                      t->name, (long long)t->ne[0], nllm_ggml_type_name(j->out_type));
        goto done;
      }
      if (!(j->out = nllm_aligned_alloc(j->out_bytes ? j->out_bytes : 1))) {
        st = nllm_err(NLLM_ERR_NOMEM, "out of memory for tensor '%s' (%llu bytes)", t->name,
                      (unsigned long long)j->out_bytes);
        goto done;
      }
      if ((st = nllm_tensor_convert(j, n_threads)) != NLLM_OK) goto done;
    }
    if (j->out_type != tg.type && tg.kind != NLLM_PRESET_KEEP && t->n_dims >= 2) {
      int32_t bs = 0, ts = 0;
      if (nllm_ggml_type_block(tg.type, &bs, &ts) && t->ne[0] % bs)
        nllm_log(NLLM_LOG_INFO, "%s: row length %lld is not a multiple of %d; stored as %s",
                 t->name, (long long)t->ne[0], bs, nllm_ggml_type_name(j->out_type));
    }
    if ((st = gguf_writer_add_tensor(w, t->name, j->out_type, t->n_dims, t->ne,
                                     j->out ? j->out : t->data, j->out_bytes)) != NLLM_OK)
      goto done;
    done_bytes += t->nbytes;
    if (progress && progress((float)done_bytes / (float)total * 0.95f, user_data)) {
      st = nllm_err(NLLM_ERR_ABORTED, "conversion cancelled by the progress callback");
      goto done;
    }
  }
  if (rope_freqs) {
    int64_t ne[1] = {n_freqs};
    if ((st = gguf_writer_add_tensor(w, "rope_freqs.weight", NLLM_TYPE_F32, 1, ne, rope_freqs,
                                     (uint64_t)n_freqs * sizeof(float))) != NLLM_OK)
      goto done;
  }
  if ((st = gguf_writer_write(w, out_path)) != NLLM_OK) goto done;
  if (progress) progress(1.0f, user_data);
done:
  if (jobs)
    for (int64_t i = 0; i < src->n_tensors; i++) nllm_aligned_free(jobs[i].out);
  free(jobs);
  gguf_writer_free(w);
  nllm_aligned_free(rope_freqs);
  return st;
}
