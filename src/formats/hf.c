/* Hugging Face model folders (config.json + safetensors + tokenizer.json) turned into the neutral
 * nllm_source, spelled the way a GGUF file spells the same model: GGUF metadata keys and GGUF
 * tensor names. The architecture code then runs both sources through one path.
 *
 * Two conventions differ from what a converted GGUF holds, and both are recorded as metadata
 * rather than fixed up by copying weights (see docs/formats.md, "Hugging Face folders"):
 *  - q/k projection rows stay in HF's rotate_half layout; `nllm.rope.neox` = true tells the
 *    forward pass to pair dimension i with i + d/2 (NEOX rope) instead of (2i, 2i+1).
 *  - the tokenizer stays in tokenizer.json; `tokenizer.hf.dir` names the folder. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/json.h"
#include "formats/ggml_types.h"
#include "formats/hf.h"
#include "formats/safetensors.h"

enum {
  A_LLAMA = 1 << 0,
  A_QWEN2 = 1 << 1,
  A_QWEN3 = 1 << 2,
  A_GEMMA = 1 << 3,
  A_GEMMA2 = 1 << 4,
  A_PHI3 = 1 << 5,
  A_BERT = 1 << 6,
  A_MIXTRAL = 1 << 7,
  A_QWEN3MOE = 1 << 8,
  A_QWEN2MOE = 1 << 9,
  A_OLMOE = 1 << 10,
  A_MOE = A_MIXTRAL | A_QWEN3MOE | A_QWEN2MOE | A_OLMOE,
  A_MLP_EXPERTS = A_QWEN3MOE | A_QWEN2MOE | A_OLMOE, /* router mlp.gate, mlp.experts.E.* */
  A_ALL = 0x7ff & ~A_BERT,                           /* the decoders' rules */
};

typedef struct hf_arch {
  const char *hf_class; /* config.json architectures[0] */
  const char *arch;     /* general.architecture */
  unsigned flag;
} hf_arch;

static const hf_arch hf_archs[] = {
    {"LlamaForCausalLM", "llama", A_LLAMA},
    {"MistralForCausalLM", "llama", A_LLAMA},
    {"Qwen2ForCausalLM", "qwen2", A_QWEN2},
    {"Qwen3ForCausalLM", "qwen3", A_QWEN3},
    {"GemmaForCausalLM", "gemma", A_GEMMA},
    {"Gemma2ForCausalLM", "gemma2", A_GEMMA2},
    {"Phi3ForCausalLM", "phi3", A_PHI3},
    {"MixtralForCausalLM", "llama", A_MIXTRAL},
    {"Qwen3MoeForCausalLM", "qwen3moe", A_QWEN3MOE},
    {"Qwen2MoeForCausalLM", "qwen2moe", A_QWEN2MOE},
    {"OlmoeForCausalLM", "olmoe", A_OLMOE},
    {"BertModel", "bert", A_BERT},
};

/* Per-layer tensors: HF stem after "model.layers.N." -> GGUF stem after "blk.N.". */
enum { R_BIAS = 1, R_PLUS1 = 2 };
typedef struct name_rule {
  const char *hf, *gguf;
  unsigned archs;
  unsigned flags; /* R_BIAS: a ".bias" may follow too; R_PLUS1: Gemma stores norm weights - 1 */
} name_rule;

static const name_rule layer_rules[] = {
    {"input_layernorm", "attn_norm", A_ALL, R_PLUS1},
    {"self_attn.q_proj", "attn_q", A_ALL, R_BIAS},
    {"self_attn.k_proj", "attn_k", A_ALL, R_BIAS},
    {"self_attn.v_proj", "attn_v", A_ALL, R_BIAS},
    {"self_attn.o_proj", "attn_output", A_ALL, R_BIAS},
    {"self_attn.qkv_proj", "attn_qkv", A_PHI3, R_BIAS},
    {"self_attn.q_norm", "attn_q_norm", A_ALL, 0},
    {"self_attn.k_norm", "attn_k_norm", A_ALL, 0},
    {"post_attention_layernorm", "ffn_norm", A_ALL & ~A_GEMMA2, R_PLUS1},
    {"post_attention_layernorm", "post_attention_norm", A_GEMMA2, R_PLUS1},
    {"pre_feedforward_layernorm", "ffn_norm", A_GEMMA2, R_PLUS1},
    {"post_feedforward_layernorm", "post_ffw_norm", A_GEMMA2, R_PLUS1},
    {"mlp.gate_proj", "ffn_gate", A_ALL, R_BIAS},
    {"mlp.up_proj", "ffn_up", A_ALL, R_BIAS},
    {"mlp.down_proj", "ffn_down", A_ALL, R_BIAS},
    {"mlp.gate_up_proj", "ffn_up", A_PHI3, R_BIAS},
    /* BERT, after "encoder.layer.N." */
    {"attention.self.query", "attn_q", A_BERT, R_BIAS},
    {"attention.self.key", "attn_k", A_BERT, R_BIAS},
    {"attention.self.value", "attn_v", A_BERT, R_BIAS},
    {"attention.output.dense", "attn_output", A_BERT, R_BIAS},
    {"attention.output.LayerNorm", "attn_output_norm", A_BERT, R_BIAS},
    {"intermediate.dense", "ffn_up", A_BERT, R_BIAS},
    {"output.dense", "ffn_down", A_BERT, R_BIAS},
    {"output.LayerNorm", "layer_output_norm", A_BERT, R_BIAS},
    {"block_sparse_moe.gate", "ffn_gate_inp", A_MIXTRAL, 0},
    {"mlp.gate", "ffn_gate_inp", A_MLP_EXPERTS, 0},
    {"mlp.shared_expert.gate_proj", "ffn_gate_shexp", A_QWEN2MOE, 0},
    {"mlp.shared_expert.up_proj", "ffn_up_shexp", A_QWEN2MOE, 0},
    {"mlp.shared_expert.down_proj", "ffn_down_shexp", A_QWEN2MOE, 0},
    {"mlp.shared_expert_gate", "ffn_gate_inp_shexp", A_QWEN2MOE, 0},
};

/* One expert's matrix: HF stem "<prefix>E.<name>" -> the stacked GGUF tensor "blk.N.<gguf>". */
typedef struct expert_rule {
  const char *prefix, *name, *gguf;
  unsigned archs;
} expert_rule;

static const expert_rule expert_rules[] = {
    {"block_sparse_moe.experts.", "w1", "ffn_gate_exps", A_MIXTRAL},
    {"block_sparse_moe.experts.", "w3", "ffn_up_exps", A_MIXTRAL},
    {"block_sparse_moe.experts.", "w2", "ffn_down_exps", A_MIXTRAL},
    {"mlp.experts.", "gate_proj", "ffn_gate_exps", A_MLP_EXPERTS},
    {"mlp.experts.", "up_proj", "ffn_up_exps", A_MLP_EXPERTS},
    {"mlp.experts.", "down_proj", "ffn_down_exps", A_MLP_EXPERTS},
};

static const name_rule global_rules[] = {
    {"model.embed_tokens", "token_embd", A_ALL, 0},
    {"model.norm", "output_norm", A_ALL, R_PLUS1},
    {"lm_head", "output", A_ALL, 0},
    {"embeddings.word_embeddings", "token_embd", A_BERT, 0},
    {"embeddings.position_embeddings", "position_embd", A_BERT, 0},
    {"embeddings.token_type_embeddings", "token_types", A_BERT, 0},
    {"embeddings.LayerNorm", "token_embd_norm", A_BERT, R_BIAS},
};

/* ---------------------------------------------------------------- json files */

static nllm_status path_join(char *buf, size_t cap, const char *dir, const char *file) {
  int n = snprintf(buf, cap, "%s/%s", dir, file);
  if (n < 0 || (size_t)n >= cap) return nllm_err(NLLM_ERR_INVALID_ARG, "%s: path too long", dir);
  return NLLM_OK;
}

/* Parses a JSON file. An absent optional file gives *out = NULL and NLLM_OK. */
static nllm_status read_json(const char *path, int required, cJSON **out) {
  *out = NULL;
  if (!required && access(path, F_OK) != 0) return NLLM_OK;
  nllm_file_map m;
  nllm_status st = nllm_file_map_open_max(path, 0, NLLM_HF_MAX_JSON, "a JSON config", &m);
  if (st != NLLM_OK) return st;
  cJSON *j = nllm_json_parse((const char *)m.data, (size_t)m.size, path, &st);
  nllm_file_map_close(&m);
  if (!j) return st;
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return nllm_err(NLLM_ERR_FORMAT, "%s: top level is not a JSON object", path);
  }
  *out = j;
  return NLLM_OK;
}

/* A key's value; JSON null counts as absent (HF writes "rope_scaling": null). */
static const cJSON *jget(const cJSON *obj, const char *key) {
  const cJSON *v = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
  return v && !cJSON_IsNull(v) ? v : NULL;
}

static int json_int(const cJSON *v, int64_t *out) {
  if (!cJSON_IsNumber(v)) return 0;
  double d = v->valuedouble;
  if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0)) return 0;
  int64_t i = (int64_t)d;
  if ((double)i != d) return 0;
  *out = i;
  return 1;
}

/* Integer config value in [lo, hi]; *found says whether it was there. */
static nllm_status cfg_int(const cJSON *cfg, const char *file, const char *key, int required,
                           int64_t lo, int64_t hi, int64_t *out, int *found) {
  const cJSON *v = jget(cfg, key);
  if (found) *found = v != NULL;
  if (!v) {
    if (required) return nllm_err(NLLM_ERR_FORMAT, "%s: required key '%s' is missing", file, key);
    return NLLM_OK;
  }
  int64_t i;
  if (!json_int(v, &i))
    return nllm_err(NLLM_ERR_FORMAT, "%s: key '%s' must be an integer", file, key);
  if (i < lo || i > hi)
    return nllm_err(NLLM_ERR_FORMAT, "%s: key '%s' = %lld is out of range [%lld, %lld]", file, key,
                    (long long)i, (long long)lo, (long long)hi);
  *out = i;
  return NLLM_OK;
}

static nllm_status cfg_float(const cJSON *cfg, const char *file, const char *key, double *out,
                             int *found) {
  const cJSON *v = jget(cfg, key);
  if (found) *found = v != NULL;
  if (!v) return NLLM_OK;
  if (!cJSON_IsNumber(v))
    return nllm_err(NLLM_ERR_FORMAT, "%s: key '%s' must be a number", file, key);
  *out = v->valuedouble;
  return NLLM_OK;
}

/* ---------------------------------------------------------------- metadata builder */

typedef struct kv_builder {
  nllm_source *src;
  int64_t cap;
} kv_builder;

static nllm_status kv_add(kv_builder *b, const char *key, const nllm_value *v) {
  nllm_source *src = b->src;
  if (src->n_kv == b->cap)
    return nllm_err(NLLM_ERR_INTERNAL, "%s: metadata table full at key '%s'", src->path, key);
  for (int64_t i = 0; i < src->n_kv; i++)
    if (strcmp(src->kv[i].key, key) == 0)
      return nllm_err(NLLM_ERR_INTERNAL, "%s: metadata key '%s' set twice", src->path, key);
  char *k = nllm_source_strdup(src, key, strlen(key));
  if (!k) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", src->path);
  src->kv[src->n_kv].key = k;
  src->kv[src->n_kv].val = *v;
  src->n_kv++;
  return NLLM_OK;
}

static nllm_status kv_u32(kv_builder *b, const char *arch, const char *key, int64_t x) {
  char full[160];
  snprintf(full, sizeof full, "%s%s%s", arch ? arch : "", arch ? "." : "", key);
  if (x < 0 || x > (int64_t)UINT32_MAX)
    return nllm_err(NLLM_ERR_FORMAT, "%s: value %lld for '%s' does not fit in 32 bits",
                    b->src->path, (long long)x, full);
  nllm_value v = {.type = NLLM_V_U32};
  v.v.u = (uint64_t)x;
  return kv_add(b, full, &v);
}

static nllm_status kv_f32(kv_builder *b, const char *arch, const char *key, double x) {
  char full[160];
  snprintf(full, sizeof full, "%s%s%s", arch ? arch : "", arch ? "." : "", key);
  nllm_value v = {.type = NLLM_V_F32};
  v.v.f = (double)(float)x; /* what a GGUF file would hold */
  return kv_add(b, full, &v);
}

static nllm_status kv_bool(kv_builder *b, const char *key, int x) {
  nllm_value v = {.type = NLLM_V_BOOL};
  v.v.u = x ? 1 : 0;
  return kv_add(b, key, &v);
}

static nllm_status kv_str(kv_builder *b, const char *key, const char *s) {
  nllm_value v = {.type = NLLM_V_STRING};
  size_t len = strlen(s);
  char *copy = nllm_source_strdup(b->src, s, len);
  if (!copy) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", b->src->path);
  v.v.str.s = copy;
  v.v.str.len = len;
  return kv_add(b, key, &v);
}

static nllm_status kv_i32_array(kv_builder *b, const char *key, const int64_t *x, int n) {
  int32_t *data = nllm_source_alloc(b->src, (size_t)n * sizeof *data);
  if (!data) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", b->src->path);
  for (int i = 0; i < n; i++) data[i] = (int32_t)x[i];
  nllm_value v = {.type = NLLM_V_ARRAY};
  v.v.arr.elem_type = NLLM_V_I32;
  v.v.arr.n = (uint64_t)n;
  v.v.arr.data = data;
  return kv_add(b, key, &v);
}

/* ---------------------------------------------------------------- hyperparameters */

#define TRY(x)                            \
  do {                                    \
    if ((st = (x)) != NLLM_OK) return st; \
  } while (0)

/* rope_scaling -> ARCH.rope.scaling.*. Types that change nothing inside the trained context
 * ("default", "dynamic") are dropped with a log line; types this engine cannot compute are
 * refused so a model never runs silently wrong. */
static nllm_status rope_scaling_keys(kv_builder *b, const char *arch, const cJSON *cfg,
                                     const char *file) {
  nllm_status st;
  const cJSON *rs = jget(cfg, "rope_scaling");
  if (!rs) return NLLM_OK;
  if (!cJSON_IsObject(rs))
    return nllm_err(NLLM_ERR_FORMAT, "%s: 'rope_scaling' must be an object or null", file);
  const cJSON *ty = jget(rs, "rope_type");
  if (!ty) ty = jget(rs, "type");
  if (!cJSON_IsString(ty))
    return nllm_err(NLLM_ERR_FORMAT, "%s: 'rope_scaling' has no string 'rope_type'/'type'", file);
  const char *t = ty->valuestring;
  if (strcmp(t, "default") == 0) return NLLM_OK;
  if (strcmp(t, "dynamic") == 0) {
    nllm_log(NLLM_LOG_WARN,
             "%s: rope_scaling 'dynamic' ignored (it only acts beyond the "
             "trained context length)",
             file);
    return NLLM_OK;
  }
  if (strcmp(t, "linear") != 0 && strcmp(t, "yarn") != 0 && strcmp(t, "llama3") != 0)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: rope_scaling type '%.40s' is not supported "
                    "(supported: linear, yarn, llama3)",
                    file, t);
  double factor = 0;
  int found;
  TRY(cfg_float(rs, file, "factor", &factor, &found));
  if (!found || !(factor > 0))
    return nllm_err(NLLM_ERR_FORMAT, "%s: rope_scaling '%s' needs a positive 'factor'", file, t);
  char key[96];
  snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
  TRY(kv_str(b, key, t));
  TRY(kv_f32(b, arch, "rope.scaling.factor", factor));
  int64_t orig = 0;
  TRY(cfg_int(rs, file, "original_max_position_embeddings", 0, 1, INT32_MAX, &orig, &found));
  if (found) TRY(kv_u32(b, arch, "rope.scaling.original_context_length", orig));
  if (strcmp(t, "llama3") == 0) {
    double lo = 1, hi = 4;
    int f1, f2;
    TRY(cfg_float(rs, file, "low_freq_factor", &lo, &f1));
    TRY(cfg_float(rs, file, "high_freq_factor", &hi, &f2));
    if (!f1 || !f2 || !found)
      return nllm_err(NLLM_ERR_FORMAT,
                      "%s: rope_scaling 'llama3' needs low_freq_factor, "
                      "high_freq_factor and original_max_position_embeddings",
                      file);
    TRY(kv_f32(b, arch, "rope.scaling.low_freq_factor", lo));
    TRY(kv_f32(b, arch, "rope.scaling.high_freq_factor", hi));
  }
  return NLLM_OK;
}

/* Collects token ids from an int or a list of ints, skipping ones already present. */
static nllm_status collect_ids(const cJSON *v, const char *file, const char *key, int64_t *ids,
                               int *n, int cap) {
  if (!v) return NLLM_OK;
  const cJSON *one = v;
  int count = 1;
  if (cJSON_IsArray(v)) {
    count = cJSON_GetArraySize(v);
    one = v->child;
  }
  for (int i = 0; i < count; i++, one = one->next) {
    int64_t id;
    if (!json_int(one, &id) || id < 0 || id > INT32_MAX)
      return nllm_err(NLLM_ERR_FORMAT, "%s: '%s' must be a token id or a list of token ids", file,
                      key);
    int dup = 0;
    for (int k = 0; k < *n; k++) dup |= ids[k] == id;
    if (!dup && *n < cap) ids[(*n)++] = id;
  }
  return NLLM_OK;
}

/* The id of an added token by its text, from tokenizer_config.json's added_tokens_decoder
 * ({"151645": {"content": "<|im_end|>", ...}}). Special tokens such as an instruct model's
 * end-of-turn live there, so eos/bos given as text resolve without loading the vocab. */
static int64_t added_token_id(const cJSON *tcfg, const cJSON *tok) {
  if (cJSON_IsObject(tok)) tok = jget(tok, "content");
  if (!cJSON_IsString(tok)) return -1;
  const cJSON *dec = jget(tcfg, "added_tokens_decoder");
  if (!cJSON_IsObject(dec)) return -1;
  for (const cJSON *e = dec->child; e; e = e->next) {
    const cJSON *c = jget(e, "content");
    if (cJSON_IsString(c) && strcmp(c->valuestring, tok->valuestring) == 0) {
      char *end;
      long long id = strtoll(e->string, &end, 10);
      if (*end == 0 && end != e->string && id >= 0 && id <= INT32_MAX) return id;
    }
  }
  return -1;
}

static nllm_status special_token_keys(kv_builder *b, const cJSON *cfg, const cJSON *gen,
                                      const cJSON *tcfg, const char *dir) {
  nllm_status st;
  char cfile[4096], gfile[4096];
  TRY(path_join(cfile, sizeof cfile, dir, "config.json"));
  TRY(path_join(gfile, sizeof gfile, dir, "generation_config.json"));
  int64_t eos[16], bos[4];
  int n_eos = 0, n_bos = 0;
  TRY(collect_ids(jget(gen, "eos_token_id"), gfile, "eos_token_id", eos, &n_eos, 16));
  TRY(collect_ids(jget(cfg, "eos_token_id"), cfile, "eos_token_id", eos, &n_eos, 16));
  int64_t teos = added_token_id(tcfg, jget(tcfg, "eos_token"));
  if (teos >= 0) {
    int dup = 0;
    for (int i = 0; i < n_eos; i++) dup |= eos[i] == teos;
    if (!dup && n_eos < 16) eos[n_eos++] = teos;
  }
  TRY(collect_ids(jget(gen, "bos_token_id"), gfile, "bos_token_id", bos, &n_bos, 4));
  TRY(collect_ids(jget(cfg, "bos_token_id"), cfile, "bos_token_id", bos, &n_bos, 4));
  if (!n_bos) {
    int64_t tbos = added_token_id(tcfg, jget(tcfg, "bos_token"));
    if (tbos >= 0) bos[n_bos++] = tbos;
  }
  if (n_bos) TRY(kv_u32(b, NULL, "tokenizer.ggml.bos_token_id", bos[0]));
  if (n_eos) {
    TRY(kv_u32(b, NULL, "tokenizer.ggml.eos_token_id", eos[0]));
    TRY(kv_i32_array(b, "nllm.eog_token_ids", eos, n_eos));
  }
  int64_t pad = 0;
  int found;
  const cJSON *padv = jget(gen, "pad_token_id") ? gen : cfg;
  TRY(cfg_int(padv, padv == gen ? gfile : cfile, "pad_token_id", 0, 0, INT32_MAX, &pad, &found));
  if (found) TRY(kv_u32(b, NULL, "tokenizer.ggml.padding_token_id", pad));

  const cJSON *addbos = jget(tcfg, "add_bos_token");
  if (cJSON_IsBool(addbos)) TRY(kv_bool(b, "tokenizer.ggml.add_bos_token", cJSON_IsTrue(addbos)));
  const cJSON *addeos = jget(tcfg, "add_eos_token");
  if (cJSON_IsBool(addeos)) TRY(kv_bool(b, "tokenizer.ggml.add_eos_token", cJSON_IsTrue(addeos)));
  /* chat_template is a string, or a list of {name, template} where "default" is the one used */
  const cJSON *tmpl = jget(tcfg, "chat_template");
  if (cJSON_IsArray(tmpl)) {
    const cJSON *pick = NULL;
    for (const cJSON *e = tmpl->child; e; e = e->next) {
      const cJSON *nm = jget(e, "name"), *tx = jget(e, "template");
      if (!cJSON_IsString(tx)) continue;
      if (!pick || (cJSON_IsString(nm) && strcmp(nm->valuestring, "default") == 0)) pick = tx;
    }
    tmpl = pick;
  }
  if (cJSON_IsString(tmpl)) TRY(kv_str(b, "tokenizer.chat_template", tmpl->valuestring));
  TRY(kv_str(b, "tokenizer.hf.dir", dir));
  return NLLM_OK;
}

/* Newer configs list each layer's attention ("sliding_attention" / "full_attention"). The
 * engine derives the same from the architecture (model.c: every layer slides, or Gemma 2's
 * even layers); a config that says otherwise would run silently wrong, so it is refused. */
static nllm_status check_layer_types(const hf_arch *ha, const cJSON *cfg, const char *file,
                                     int64_t layers, int has_window) {
  const cJSON *lt = jget(cfg, "layer_types");
  if (!lt) return NLLM_OK;
  if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != layers)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: 'layer_types' must be a list of num_hidden_layers "
                    "(%lld) strings",
                    file, (long long)layers);
  int64_t il = 0;
  for (const cJSON *e = lt->child; e; e = e->next, il++) {
    int want_sliding = has_window && (!(ha->flag & A_GEMMA2) || il % 2 == 0);
    const char *want = want_sliding ? "sliding_attention" : "full_attention";
    if (!cJSON_IsString(e) || strcmp(e->valuestring, want) != 0)
      return nllm_err(NLLM_ERR_UNSUPPORTED,
                      "%s: layer_types[%lld] is '%.40s'; this engine runs "
                      "that layer as '%s' (only the architecture's standard pattern is "
                      "supported)",
                      file, (long long)il, cJSON_IsString(e) ? e->valuestring : "(not a string)",
                      want);
  }
  return NLLM_OK;
}

/* The engine computes SiLU-gated MLPs, and for Gemma GELU-gated ones with the tanh
 * approximation (HF's Gemma uses hidden_activation, falling back to gelu_pytorch_tanh when it
 * is absent even where the legacy hidden_act says "gelu"). Anything else is refused. */
static nllm_status check_activation(const hf_arch *ha, const cJSON *cfg, const char *file) {
  int gemma = (ha->flag & (A_GEMMA | A_GEMMA2)) != 0;
  const char *key = gemma ? "hidden_activation" : "hidden_act";
  const cJSON *act = jget(cfg, key);
  if (!act) return NLLM_OK;
  if (!cJSON_IsString(act))
    return nllm_err(NLLM_ERR_FORMAT, "%s: '%s' must be a string", file, key);
  const char *a = act->valuestring;
  int ok = gemma ? strcmp(a, "gelu_pytorch_tanh") == 0 || strcmp(a, "gelu_new") == 0
                 : strcmp(a, "silu") == 0 || strcmp(a, "swish") == 0;
  if (!ok)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: %s '%.40s' is not supported for %s (supported: "
                    "%s)",
                    file, key, a, ha->hf_class, gemma ? "gelu_pytorch_tanh" : "silu");
  return NLLM_OK;
}

/* Mixtral, Qwen3-MoE, Qwen2-MoE and OLMoE: expert counts, one expert's width (OLMoE's
 * intermediate_size, the others' moe_intermediate_size), Qwen2-MoE's shared expert width, the
 * renormalization of the chosen experts' weights (Mixtral always; the others' norm_topk_prob,
 * false when absent as in HF's classes), and which layers are sparse (OLMoE and Mixtral: all). */
static nllm_status moe_keys(kv_builder *b, const hf_arch *ha, const cJSON *cfg, const char *file,
                            int64_t layers, hf_model_info *info) {
  nllm_status st;
  const char *arch = ha->arch;
  const int mixtral = (ha->flag & A_MIXTRAL) != 0, olmoe = (ha->flag & A_OLMOE) != 0;
  const int qwen = !mixtral && !olmoe;
  int64_t ne = 0, used = 0, step = 1;
  TRY(cfg_int(cfg, file, mixtral ? "num_local_experts" : "num_experts", 1, 1, NLLM_HF_MAX_EXPERTS,
              &ne, NULL));
  TRY(cfg_int(cfg, file, "num_experts_per_tok", 1, 1, ne, &used, NULL));
  TRY(kv_u32(b, arch, "expert_count", ne));
  TRY(kv_u32(b, arch, "expert_used_count", used));
  int norm = 1; /* Mixtral always renormalizes */
  if (!mixtral) {
    int64_t moe_ff = 0;
    TRY(cfg_int(cfg, file, olmoe ? "intermediate_size" : "moe_intermediate_size", 1, 1, 1 << 24,
                &moe_ff, NULL));
    TRY(kv_u32(b, arch, "expert_feed_forward_length", moe_ff));
    const cJSON *nt = jget(cfg, "norm_topk_prob");
    if (nt && !cJSON_IsBool(nt))
      return nllm_err(NLLM_ERR_FORMAT, "%s: 'norm_topk_prob' must be true or false", file);
    norm = cJSON_IsTrue(nt); /* HF's default for these classes is false */
  }
  if (qwen) TRY(cfg_int(cfg, file, "decoder_sparse_step", 0, 1, INT32_MAX, &step, NULL));
  if (ha->flag & A_QWEN2MOE) {
    int64_t sh_ff = 0;
    TRY(cfg_int(cfg, file, "shared_expert_intermediate_size", 1, 1, 1 << 24, &sh_ff, NULL));
    TRY(kv_u32(b, arch, "expert_shared_feed_forward_length", sh_ff));
  }
  if (olmoe) {
    /* OLMoE's clip_qkv clamps q, k and v; the released models leave it null */
    const cJSON *clip = jget(cfg, "clip_qkv");
    if (clip && !cJSON_IsNull(clip))
      return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: clip_qkv is not supported (only null)", file);
  }
  char key[96];
  snprintf(key, sizeof key, "%s.expert_weights_norm", arch);
  TRY(kv_bool(b, key, norm));
  info->n_expert = ne;
  info->sparse = nllm_source_alloc(b->src, (size_t)layers);
  if (!info->sparse) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", file);
  for (int64_t il = 0; il < layers; il++) info->sparse[il] = (il + 1) % step == 0;
  const cJSON *dense = jget(cfg, "mlp_only_layers");
  if (dense && (!qwen || !cJSON_IsArray(dense)))
    return nllm_err(NLLM_ERR_FORMAT, "%s: 'mlp_only_layers' must be a list of layer indices%s",
                    file, !qwen ? " (and this architecture has none)" : "");
  for (const cJSON *e = dense ? dense->child : NULL; e; e = e->next) {
    int64_t il;
    if (!json_int(e, &il) || il < 0 || il >= layers)
      return nllm_err(NLLM_ERR_FORMAT,
                      "%s: 'mlp_only_layers' holds an entry that is not a layer index in [0, %lld)",
                      file, (long long)layers);
    info->sparse[il] = 0;
  }
  return NLLM_OK;
}

static nllm_status hparam_keys(kv_builder *b, const hf_arch *ha, const cJSON *cfg, const char *file,
                               hf_model_info *info) {
  nllm_status st;
  const char *arch = ha->arch;
  int64_t hidden, layers, heads, kv_heads, ffn, vocab, head_dim = 0, ctx = 0;
  int found;
  TRY(cfg_int(cfg, file, "hidden_size", 1, 1, 1 << 20, &hidden, NULL));
  TRY(cfg_int(cfg, file, "num_hidden_layers", 1, 1, 4096, &layers, NULL));
  TRY(cfg_int(cfg, file, "num_attention_heads", 1, 1, 4096, &heads, NULL));
  kv_heads = heads;
  TRY(cfg_int(cfg, file, "num_key_value_heads", 0, 1, 4096, &kv_heads, NULL));
  TRY(cfg_int(cfg, file, "intermediate_size", 1, 1, 1 << 24, &ffn, NULL));
  TRY(cfg_int(cfg, file, "vocab_size", 1, 1, INT32_MAX, &vocab, NULL));
  TRY(cfg_int(cfg, file, "head_dim", 0, 1, 1 << 16, &head_dim, &found));
  if (!found) {
    if (hidden % heads)
      return nllm_err(NLLM_ERR_FORMAT,
                      "%s: hidden_size %lld is not a multiple of "
                      "num_attention_heads %lld and no head_dim is given",
                      file, (long long)hidden, (long long)heads);
    head_dim = hidden / heads;
  }
  if (heads % kv_heads)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: num_attention_heads %lld is not a multiple of "
                    "num_key_value_heads %lld",
                    file, (long long)heads, (long long)kv_heads);
  TRY(cfg_int(cfg, file, "max_position_embeddings", 0, 1, INT32_MAX, &ctx, &found));
  double eps = 1e-6, theta = 10000, partial = 1;
  TRY(cfg_float(cfg, file, "rms_norm_eps", &eps, NULL));
  TRY(cfg_float(cfg, file, "rope_theta", &theta, NULL));
  TRY(cfg_float(cfg, file, "partial_rotary_factor", &partial, NULL));
  if (!(eps >= 0 && eps < 1) || !(theta > 0) || !(partial > 0 && partial <= 1))
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: rms_norm_eps %g, rope_theta %g or "
                    "partial_rotary_factor %g out of range",
                    file, eps, theta, partial);

  TRY(kv_str(b, "general.architecture", arch));
  TRY(kv_u32(b, arch, "embedding_length", hidden));
  TRY(kv_u32(b, arch, "block_count", layers));
  if (found) TRY(kv_u32(b, arch, "context_length", ctx));
  TRY(kv_u32(b, arch, "feed_forward_length", ffn));
  TRY(kv_u32(b, arch, "attention.head_count", heads));
  TRY(kv_u32(b, arch, "attention.head_count_kv", kv_heads));
  TRY(kv_u32(b, arch, "attention.key_length", head_dim));
  TRY(kv_u32(b, arch, "attention.value_length", head_dim));
  TRY(kv_f32(b, arch, "attention.layer_norm_rms_epsilon", eps));
  TRY(kv_f32(b, arch, "rope.freq_base", theta));
  TRY(kv_u32(b, arch, "rope.dimension_count", (int64_t)((double)head_dim * partial + 0.5)));
  TRY(kv_u32(b, arch, "vocab_size", vocab));

  /* Qwen2 configs carry a sliding_window that is off unless use_sliding_window says so. */
  const cJSON *use_sw = jget(cfg, "use_sliding_window");
  int64_t sw = 0;
  if (!cJSON_IsFalse(use_sw)) {
    TRY(cfg_int(cfg, file, "sliding_window", 0, 1, INT32_MAX, &sw, &found));
    if (found) TRY(kv_u32(b, arch, "attention.sliding_window", sw));
  }
  if (sw > 0 && (ha->flag & (A_QWEN2 | A_QWEN2MOE))) {
    /* HF's Qwen2 slides only from layer max_window_layers on; the engine slides them all */
    int64_t mwl = 0;
    TRY(cfg_int(cfg, file, "max_window_layers", 0, 0, INT32_MAX, &mwl, &found));
    if (found && mwl > 0 && mwl < layers)
      return nllm_err(NLLM_ERR_UNSUPPORTED,
                      "%s: use_sliding_window with max_window_layers %lld "
                      "< num_hidden_layers %lld (a window on only some layers) is not supported",
                      file, (long long)mwl, (long long)layers);
  }
  TRY(check_layer_types(ha, cfg, file, layers, sw > 0));
  TRY(check_activation(ha, cfg, file));
  TRY(rope_scaling_keys(b, arch, cfg, file));

  if (ha->flag & A_GEMMA2) {
    double cap = 0;
    TRY(cfg_float(cfg, file, "attn_logit_softcapping", &cap, &found));
    if (found) TRY(kv_f32(b, arch, "attn_logit_softcapping", cap));
    TRY(cfg_float(cfg, file, "final_logit_softcapping", &cap, &found));
    if (found) TRY(kv_f32(b, arch, "final_logit_softcapping", cap));
    double qpas = 0;
    TRY(cfg_float(cfg, file, "query_pre_attn_scalar", &qpas, &found));
    if (found && qpas > 0) TRY(kv_f32(b, arch, "attention.scale", 1.0 / sqrt(qpas)));
  }
  TRY(kv_bool(b, "nllm.rope.neox", 1));

  /* HF's default when the key is absent differs per model class; these are theirs. */
  const cJSON *tie = jget(cfg, "tie_word_embeddings");
  info->tied = tie ? cJSON_IsTrue(tie) : (ha->flag & (A_GEMMA | A_GEMMA2)) != 0;
  info->n_layers = layers;
  if (ha->flag & A_MOE) TRY(moe_keys(b, ha, cfg, file, layers, info));
  return NLLM_OK;
}

static int shard_name_ok(const char *s);

/* BertModel's config: absolute positions, LayerNorm, erf GELU; anything else is refused. */
static nllm_status bert_hparam_keys(kv_builder *b, const cJSON *cfg, const char *file,
                                    hf_model_info *info) {
  nllm_status st;
  int64_t hidden, layers, heads, ffn, vocab, ctx = 512, types = 2;
  TRY(cfg_int(cfg, file, "hidden_size", 1, 1, 1 << 20, &hidden, NULL));
  TRY(cfg_int(cfg, file, "num_hidden_layers", 1, 1, 4096, &layers, NULL));
  TRY(cfg_int(cfg, file, "num_attention_heads", 1, 1, 4096, &heads, NULL));
  TRY(cfg_int(cfg, file, "intermediate_size", 1, 1, 1 << 24, &ffn, NULL));
  TRY(cfg_int(cfg, file, "vocab_size", 1, 1, INT32_MAX, &vocab, NULL));
  TRY(cfg_int(cfg, file, "max_position_embeddings", 0, 1, 1 << 24, &ctx, NULL));
  TRY(cfg_int(cfg, file, "type_vocab_size", 0, 1, 1024, &types, NULL));
  if (hidden % heads)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: hidden_size %lld is not a multiple of num_attention_heads %lld", file,
                    (long long)hidden, (long long)heads);
  double eps = 1e-12;
  TRY(cfg_float(cfg, file, "layer_norm_eps", &eps, NULL));
  if (!(eps >= 0 && eps < 1))
    return nllm_err(NLLM_ERR_FORMAT, "%s: layer_norm_eps %g is out of range", file, eps);
  const cJSON *act = jget(cfg, "hidden_act"), *pet = jget(cfg, "position_embedding_type");
  if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu") != 0))
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: hidden_act %.40s is not supported for BertModel (supported: gelu)", file,
                    cJSON_IsString(act) ? act->valuestring : "(not a string)");
  if (pet && (!cJSON_IsString(pet) || strcmp(pet->valuestring, "absolute") != 0))
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: position_embedding_type %.40s is not supported (supported: absolute)",
                    file, cJSON_IsString(pet) ? pet->valuestring : "(not a string)");
  const char *arch = "bert";
  TRY(kv_str(b, "general.architecture", arch));
  TRY(kv_u32(b, arch, "embedding_length", hidden));
  TRY(kv_u32(b, arch, "block_count", layers));
  TRY(kv_u32(b, arch, "context_length", ctx));
  TRY(kv_u32(b, arch, "feed_forward_length", ffn));
  TRY(kv_u32(b, arch, "attention.head_count", heads));
  TRY(kv_f32(b, arch, "attention.layer_norm_epsilon", eps));
  TRY(kv_bool(b, "bert.attention.causal", 0));
  TRY(kv_u32(b, arch, "vocab_size", vocab));
  TRY(kv_u32(b, NULL, "tokenizer.ggml.token_type_count", types));
  info->tied = 0;
  info->n_layers = layers;
  return NLLM_OK;
}

/* sentence-transformers' modules.json: the Pooling module's config gives the pooling
 * (<arch>.pooling_type), a Normalize module's presence the normalization
 * (nllm.embedding.normalize). Absent file: nothing is set (the engine's defaults apply). */
static nllm_status sentence_transformers_keys(kv_builder *b, const char *dir, const char *arch) {
  char path[4096];
  nllm_status st;
  TRY(path_join(path, sizeof path, dir, "modules.json"));
  if (access(path, F_OK) != 0) return NLLM_OK;
  nllm_file_map fm;
  TRY(nllm_file_map_open_max(path, 0, NLLM_HF_MAX_JSON, "a JSON config", &fm));
  cJSON *mods = nllm_json_parse((const char *)fm.data, (size_t)fm.size, path, &st);
  nllm_file_map_close(&fm);
  if (!mods) return st;
  int normalize = 0;
  int64_t pooling = -1;
  st = NLLM_OK;
  if (!cJSON_IsArray(mods))
    st = nllm_err(NLLM_ERR_FORMAT, "%s: top level is not a JSON list of modules", path);
  for (const cJSON *e = mods->child; e && st == NLLM_OK; e = e->next) {
    const cJSON *type = jget(e, "type"), *mpath = jget(e, "path");
    if (!cJSON_IsString(type)) continue;
    const char *t = type->valuestring;
    if (strcmp(t, "sentence_transformers.models.Normalize") == 0) normalize = 1;
    if (strcmp(t, "sentence_transformers.models.Pooling") != 0) continue;
    if (!cJSON_IsString(mpath) || !shard_name_ok(mpath->valuestring)) {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: the Pooling module's path must be a folder name", path);
      break;
    }
    char sub[4096], cfgp[4096];
    cJSON *pc = NULL;
    if ((st = path_join(sub, sizeof sub, dir, mpath->valuestring)) != NLLM_OK ||
        (st = path_join(cfgp, sizeof cfgp, sub, "config.json")) != NLLM_OK ||
        (st = read_json(cfgp, 1, &pc)) != NLLM_OK)
      break;
    static const struct {
      const char *key;
      int64_t type;
    } modes[] = {{"pooling_mode_cls_token", 2},
                 {"pooling_mode_mean_tokens", 1},
                 {"pooling_mode_lasttoken", 3},
                 {"pooling_mode_max_tokens", -2},
                 {"pooling_mode_mean_sqrt_len_tokens", -2},
                 {"pooling_mode_weightedmean_tokens", -2}};
    int n_on = 0;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
      if (!cJSON_IsTrue(jget(pc, modes[i].key))) continue;
      n_on++;
      if (modes[i].type < 0)
        st = nllm_err(NLLM_ERR_UNSUPPORTED,
                      "%s: %s is not supported (supported: cls_token, mean_tokens, lasttoken)",
                      cfgp, modes[i].key);
      pooling = modes[i].type;
    }
    if (st == NLLM_OK && n_on != 1)
      st = nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: %d pooling modes are on; exactly one of cls_token, mean_tokens, "
                    "lasttoken is supported",
                    cfgp, n_on);
    cJSON_Delete(pc);
  }
  cJSON_Delete(mods);
  if (st != NLLM_OK) return st;
  if (pooling >= 0) TRY(kv_u32(b, arch, "pooling_type", pooling));
  return kv_bool(b, "nllm.embedding.normalize", normalize);
}

#undef TRY

/* ---------------------------------------------------------------- tensor names */

static int ends_with(const char *s, size_t len, const char *suf, size_t *stem) {
  size_t l = strlen(suf);
  if (len < l || memcmp(s + len - l, suf, l) != 0) return 0;
  *stem = len - l;
  return 1;
}

/* Finds the rule for a stem ("self_attn.q_proj") under an architecture. */
static const name_rule *find_rule(const name_rule *rules, size_t n, const char *stem,
                                  size_t stem_len, unsigned arch, int is_bias) {
  for (size_t i = 0; i < n; i++) {
    if (!(rules[i].archs & arch)) continue;
    if (strlen(rules[i].hf) != stem_len || memcmp(rules[i].hf, stem, stem_len) != 0) continue;
    if (is_bias && !(rules[i].flags & R_BIAS)) return NULL;
    return &rules[i];
  }
  return NULL;
}

/* "<prefix>E.<name>" of an expert rule: the rule, with *expert = E. */
static const expert_rule *find_expert_rule(const char *stem, size_t stem_len, unsigned arch,
                                           int64_t *expert) {
  for (size_t i = 0; i < sizeof expert_rules / sizeof expert_rules[0]; i++) {
    const expert_rule *r = &expert_rules[i];
    size_t pl = strlen(r->prefix), nl = strlen(r->name);
    if (!(r->archs & arch) || stem_len <= pl || memcmp(stem, r->prefix, pl) != 0) continue;
    const char *p = stem + pl, *end = stem + stem_len;
    int64_t e = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 5) e = e * 10 + (*p++ - '0'), digits++;
    if (!digits || (digits > 1 && stem[pl] == '0') || p >= end || *p != '.') continue;
    p++;
    if ((size_t)(end - p) != nl || memcmp(p, r->name, nl) != 0) continue;
    *expert = e;
    return r;
  }
  return NULL;
}

nllm_status hf_map_tensor_name(const char *arch_name, const char *hf, int64_t n_layers, char *out,
                               size_t cap, int *plus_one, int64_t *expert) {
  unsigned arch = 0;
  for (size_t i = 0; i < sizeof hf_archs / sizeof hf_archs[0]; i++)
    if (strcmp(hf_archs[i].arch, arch_name) == 0) arch |= hf_archs[i].flag;
  *plus_one = 0;
  *expert = -1;
  size_t len = strlen(hf), stem_len;
  int is_bias = 0;
  if (ends_with(hf, len, ".rotary_emb.inv_freq", &stem_len)) return NLLM_HF_SKIP;
  if (arch & A_BERT) {
    /* BertForMaskedLM-style checkpoints put the encoder under "bert."; the position ids
     * buffer and the unused pooler head are not weights an embedder computes with */
    if (strncmp(hf, "bert.", 5) == 0) hf += 5, len -= 5;
    if (strcmp(hf, "embeddings.position_ids") == 0 || strncmp(hf, "pooler.", 7) == 0)
      return NLLM_HF_SKIP;
  }
  if (!ends_with(hf, len, ".weight", &stem_len)) {
    if (!ends_with(hf, len, ".bias", &stem_len)) goto unknown;
    is_bias = 1;
  }
  const char *suffix = is_bias ? "bias" : "weight";
  const char *layer_prefix = arch & A_BERT ? "encoder.layer." : "model.layers.";
  size_t lp = strlen(layer_prefix);
  if (strncmp(hf, layer_prefix, lp) == 0) {
    const char *p = hf + lp;
    int64_t layer = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 7) layer = layer * 10 + (*p++ - '0'), digits++;
    if (!digits || *p != '.' || (digits > 1 && hf[lp] == '0')) goto unknown;
    p++;
    if (layer >= n_layers)
      return nllm_err(NLLM_ERR_FORMAT,
                      "tensor '%s' names layer %lld but config.json has "
                      "num_hidden_layers %lld",
                      hf, (long long)layer, (long long)n_layers);
    size_t off = (size_t)(p - hf);
    if (stem_len <= off) goto unknown;
    const expert_rule *er = is_bias ? NULL : find_expert_rule(p, stem_len - off, arch, expert);
    if (er) {
      if (*expert >= NLLM_HF_MAX_EXPERTS)
        return nllm_err(NLLM_ERR_FORMAT, "tensor '%s' names expert %lld (at most %d experts)", hf,
                        (long long)*expert, NLLM_HF_MAX_EXPERTS);
      snprintf(out, cap, "blk.%lld.%s.weight", (long long)layer, er->gguf);
      return NLLM_OK;
    }
    const name_rule *r = find_rule(layer_rules, sizeof layer_rules / sizeof layer_rules[0], p,
                                   stem_len - off, arch, is_bias);
    if (!r) goto unknown;
    snprintf(out, cap, "blk.%lld.%s.%s", (long long)layer, r->gguf, suffix);
    *plus_one = (r->flags & R_PLUS1) && (arch & (A_GEMMA | A_GEMMA2));
    return NLLM_OK;
  }
  const name_rule *r = find_rule(global_rules, sizeof global_rules / sizeof global_rules[0], hf,
                                 stem_len, arch, is_bias);
  if (!r) goto unknown;
  snprintf(out, cap, "%s.%s", r->gguf, suffix);
  *plus_one = (r->flags & R_PLUS1) && (arch & (A_GEMMA | A_GEMMA2));
  return NLLM_OK;
unknown:
  return nllm_err(NLLM_ERR_FORMAT,
                  "tensor '%s' is not one this engine knows for architecture "
                  "'%s' (refusing rather than ignoring it)",
                  hf, arch_name);
}

/* Gemma's RMSNorm multiplies by (1 + w); storing 1 + w once keeps every forward pass the same. */
static nllm_status norm_plus_one(nllm_source *src, nllm_tensor *t) {
  int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
  float *w = nllm_source_alloc(src, (size_t)n * sizeof *w);
  if (!w) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory for '%s'", src->path, t->name);
  for (int64_t i = 0; i < n; i++) {
    float x;
    if (t->type == NLLM_TYPE_F32)
      x = ((const float *)t->data)[i];
    else if (t->type == NLLM_TYPE_F16)
      x = nllm_fp16_to_fp32(((const uint16_t *)t->data)[i]);
    else
      x = nllm_bf16_to_fp32(((const uint16_t *)t->data)[i]);
    w[i] = x + 1.0f;
  }
  t->data = w;
  t->type = NLLM_TYPE_F32;
  t->nbytes = (uint64_t)n * sizeof *w;
  return NLLM_OK;
}

/* ---------------------------------------------------------------- weights */

static int shard_name_ok(const char *s) {
  return *s && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int str_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard file's identity: two names (symlinks, hard links) of one file are one shard. */
typedef struct shard_file {
  dev_t dev;
  ino_t ino;
  const char *name;
} shard_file;

static int shard_file_cmp(const void *a, const void *b) {
  const shard_file *x = a, *y = b;
  if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
  if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* A loaded tensor's name and the shard (index into the sorted shard names) it came from. */
typedef struct placed_name {
  const char *name;
  int shard;
} placed_name;

static int placed_cmp(const void *a, const void *b) {
  const placed_name *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : (x->shard > y->shard) - (x->shard < y->shard);
}

/* Every shard the index names is checked (a regular file, and a file no other name in the
 * index also reaches) before any is read: a hostile index cannot make the loader read one
 * large file hundreds of times, or wait on a FIFO. Sorting keeps every step O(n log n) in the
 * number of index entries. */
static nllm_status check_shard_files(const char *dir, const char **shards, int n_shards) {
  shard_file *files = nllm_calloc((size_t)n_shards, sizeof *files);
  if (!files) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", dir);
  nllm_status st = NLLM_OK;
  for (int s = 0; s < n_shards && st == NLLM_OK; s++) {
    char path[4096];
    struct stat sb;
    if ((st = path_join(path, sizeof path, dir, shards[s])) != NLLM_OK) break;
    if (stat(path, &sb) != 0)
      st = nllm_err(NLLM_ERR_IO, "%s: shard '%s' named by %s is missing", dir, shards[s],
                    "model.safetensors.index.json");
    else if (!S_ISREG(sb.st_mode))
      st = nllm_err(NLLM_ERR_IO, "%s: shard '%s' is not a regular file (%s)", dir, shards[s],
                    nllm_file_kind(sb.st_mode));
    files[s].dev = sb.st_dev;
    files[s].ino = sb.st_ino;
    files[s].name = shards[s];
  }
  if (st == NLLM_OK) {
    qsort(files, (size_t)n_shards, sizeof *files, shard_file_cmp);
    for (int s = 1; s < n_shards && st == NLLM_OK; s++)
      if (files[s].dev == files[s - 1].dev && files[s].ino == files[s - 1].ino)
        st = nllm_err(NLLM_ERR_FORMAT,
                      "%s: shards '%s' and '%s' named by model.safetensors.index.json are one "
                      "file (symlinks or hard links to the same shard)",
                      dir, files[s - 1].name, files[s].name);
  }
  free(files);
  return st;
}

/* Opens every shard the index names, and checks each mapped tensor is in its shard. */
static nllm_status load_sharded(nllm_source *src, const char *dir, const char *index_path,
                                int use_mmap, nllm_tensor_list *list) {
  cJSON *idx;
  nllm_status st = read_json(index_path, 1, &idx);
  if (st != NLLM_OK) return st;
  const char **shards = NULL;
  int64_t *first = NULL; /* list index where each shard's tensors begin; [n] = end */
  placed_name *placed = NULL;
  int n_shards = 0;
  const cJSON *wm = jget(idx, "weight_map");
  if (!cJSON_IsObject(wm) || !wm->child) {
    st = nllm_err(NLLM_ERR_FORMAT, "%s: 'weight_map' must be a non-empty object", index_path);
    goto done;
  }
  int n_map = cJSON_GetArraySize(wm);
  shards = nllm_calloc((size_t)n_map, sizeof *shards);
  first = nllm_calloc((size_t)n_map + 1, sizeof *first);
  if (!shards || !first) {
    st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", index_path);
    goto done;
  }
  for (const cJSON *e = wm->child; e; e = e->next) {
    if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s' maps to an invalid shard file name",
                    index_path, e->string);
      goto done;
    }
    shards[n_shards++] = e->valuestring;
  }
  /* file-name order is the order the shards were written in (model-0000N-of-...) */
  qsort(shards, (size_t)n_shards, sizeof *shards, str_cmp);
  int n_unique = 0;
  for (int s = 0; s < n_shards; s++)
    if (!n_unique || strcmp(shards[n_unique - 1], shards[s]) != 0) shards[n_unique++] = shards[s];
  n_shards = n_unique;
  if ((st = check_shard_files(dir, shards, n_shards)) != NLLM_OK) goto done;
  for (int s = 0; s < n_shards; s++) {
    char path[4096];
    if ((st = path_join(path, sizeof path, dir, shards[s])) != NLLM_OK) goto done;
    first[s] = list->n;
    if ((st = safetensors_open(src, path, use_mmap, list)) != NLLM_OK) goto done;
  }
  first[n_shards] = list->n;
  placed = nllm_malloc((size_t)(list->n ? list->n : 1) * sizeof *placed);
  if (!placed) {
    st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", index_path);
    goto done;
  }
  for (int s = 0; s < n_shards; s++)
    for (int64_t i = first[s]; i < first[s + 1]; i++) placed[i] = (placed_name){list->t[i].name, s};
  qsort(placed, (size_t)list->n, sizeof *placed, placed_cmp);
  for (const cJSON *e = wm->child; e; e = e->next) {
    const char *const *hit =
        bsearch(&e->valuestring, shards, (size_t)n_shards, sizeof *shards, str_cmp);
    placed_name key = {e->string, hit ? (int)(hit - shards) : -1};
    if (!hit || !bsearch(&key, placed, (size_t)list->n, sizeof *placed, placed_cmp)) {
      st = nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s' is not in shard '%s' where the index "
                    "says it is",
                    dir, e->string, e->valuestring);
      goto done;
    }
  }
done:
  free(shards);
  free(first);
  free(placed);
  cJSON_Delete(idx);
  return st;
}

static int tensor_name_cmp(const void *a, const void *b) {
  return strcmp(((const nllm_tensor *)a)->name, ((const nllm_tensor *)b)->name);
}

/* One expert's matrix found in the folder, before stacking. */
typedef struct expert_piece {
  const char *name; /* the stacked GGUF tensor's */
  int64_t expert;
  const nllm_tensor *t;
} expert_piece;

static int piece_cmp(const void *a, const void *b) {
  const expert_piece *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : (x->expert > y->expert) - (x->expert < y->expert);
}

/* Stacks each layer's per-expert matrices into one GGUF-shaped tensor (ne {cols, rows,
 * n_expert}): the forward pass and the converter then see what a GGUF file holds. This copies
 * the experts once (HF shards keep an expert's three matrices together, not one matrix's
 * experts). */
static nllm_status stack_experts(nllm_source *src, const char *dir, const hf_model_info *info,
                                 expert_piece *pc, int64_t n_pc, nllm_tensor *out, int64_t *n_out) {
  qsort(pc, (size_t)n_pc, sizeof *pc, piece_cmp);
  for (int64_t i = 0; i < n_pc;) {
    int64_t j = i;
    while (j < n_pc && strcmp(pc[j].name, pc[i].name) == 0) j++;
    const nllm_tensor *t0 = pc[i].t;
    for (int64_t k = i; k < j; k++) {
      const nllm_tensor *t = pc[k].t;
      if (pc[k].expert != k - i) {
        const int dup = k > i && pc[k].expert == pc[k - 1].expert;
        return nllm_err(NLLM_ERR_FORMAT, "%s: '%s': expert %lld is %s", dir, pc[i].name,
                        (long long)(dup ? pc[k].expert : k - i), dup ? "present twice" : "missing");
      }
      if (t->n_dims != 2 || t->type != t0->type || t->ne[0] != t0->ne[0] || t->ne[1] != t0->ne[1] ||
          t->nbytes != t0->nbytes)
        return nllm_err(NLLM_ERR_FORMAT,
                        "%s: the experts of '%s' differ in shape or type (expert %lld: %s "
                        "[%lld, %lld], expert 0: %s [%lld, %lld])",
                        dir, pc[i].name, (long long)pc[k].expert, nllm_ggml_type_name(t->type),
                        (long long)t->ne[1], (long long)t->ne[0], nllm_ggml_type_name(t0->type),
                        (long long)t0->ne[1], (long long)t0->ne[0]);
    }
    if (j - i != info->n_expert)
      return nllm_err(NLLM_ERR_FORMAT, "%s: '%s' has %lld experts but config.json says %lld", dir,
                      pc[i].name, (long long)(j - i), (long long)info->n_expert);
    uint64_t total;
    if (!nllm_mul_ok(t0->nbytes, (uint64_t)(j - i), &total) || total > SIZE_MAX)
      return nllm_err(NLLM_ERR_FORMAT, "%s: '%s' is too large", dir, pc[i].name);
    uint8_t *data = nllm_source_alloc(src, total ? (size_t)total : 1);
    if (!data)
      return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory stacking the experts of '%s' (%.1f MiB)",
                      dir, pc[i].name, (double)total / 1048576.0);
    for (int64_t k = i; k < j; k++)
      memcpy(data + (size_t)(k - i) * t0->nbytes, pc[k].t->data, (size_t)t0->nbytes);
    nllm_tensor st = *t0;
    st.name = pc[i].name;
    st.n_dims = 3;
    st.ne[2] = j - i;
    st.nbytes = total;
    st.data = data;
    out[(*n_out)++] = st;
    i = j;
  }
  return NLLM_OK;
}

/* The sparse layers config.json describes must be the ones the weights have routers for. */
static nllm_status check_sparse_layers(const char *dir, const hf_model_info *info,
                                       const nllm_tensor *t, int64_t n) {
  for (int64_t il = 0; il < info->n_layers; il++) {
    char name[64];
    snprintf(name, sizeof name, "blk.%lld.ffn_gate_inp.weight", (long long)il);
    int has = 0;
    for (int64_t i = 0; i < n && !has; i++) has = strcmp(t[i].name, name) == 0;
    int want = info->sparse && info->sparse[il];
    if (has != want)
      return nllm_err(NLLM_ERR_FORMAT,
                      "%s: layer %lld is %s by config.json (num_experts, decoder_sparse_step, "
                      "mlp_only_layers) but its weights %s an expert router",
                      dir, (long long)il, want ? "sparse" : "dense", has ? "have" : "lack");
  }
  return NLLM_OK;
}

static nllm_status build_tensors(nllm_source *src, const char *dir, const char *arch,
                                 const hf_model_info *info, int use_mmap) {
  nllm_tensor_list raw = {0};
  expert_piece *pieces = NULL;
  int64_t n_pieces = 0;
  char path[4096];
  nllm_status st = path_join(path, sizeof path, dir, "model.safetensors.index.json");
  if (st != NLLM_OK) return st;
  if (access(path, F_OK) == 0) {
    st = load_sharded(src, dir, path, use_mmap, &raw);
  } else {
    if ((st = path_join(path, sizeof path, dir, "model.safetensors")) != NLLM_OK) return st;
    if (access(path, F_OK) != 0) {
      char bin[4096];
      path_join(bin, sizeof bin, dir, "pytorch_model.bin");
      st = nllm_err(access(bin, F_OK) == 0 ? NLLM_ERR_UNSUPPORTED : NLLM_ERR_IO,
                    "%s: no model.safetensors or model.safetensors.index.json%s", dir,
                    access(bin, F_OK) == 0 ? " (PyTorch .bin checkpoints are not supported)" : "");
    } else {
      st = safetensors_open(src, path, use_mmap, &raw);
    }
  }
  if (st != NLLM_OK) goto done;

  nllm_tensor *out = nllm_source_alloc(src, (size_t)(raw.n ? raw.n : 1) * sizeof *out);
  pieces = nllm_malloc((size_t)(raw.n ? raw.n : 1) * sizeof *pieces);
  if (!out || !pieces) {
    st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", dir);
    goto done;
  }
  int64_t n = 0;
  for (int64_t i = 0; i < raw.n; i++) {
    char name[256];
    int plus_one;
    int64_t expert;
    st = hf_map_tensor_name(arch, raw.t[i].name, info->n_layers, name, sizeof name, &plus_one,
                            &expert);
    if (st == NLLM_HF_SKIP) {
      st = NLLM_OK;
      continue;
    }
    if (st != NLLM_OK) {
      st = nllm_err_prefix(st, "%s: ", dir);
      goto done;
    }
    /* A tied model's output matrix is the embedding; a stray lm_head copy is not used by HF. */
    if (info->tied && strcmp(name, "output.weight") == 0) continue;
    if (expert >= 0 && expert >= info->n_expert) {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s' names expert %lld but config.json has %lld",
                    dir, raw.t[i].name, (long long)expert, (long long)info->n_expert);
      goto done;
    }
    if (expert >= 0) {
      const char *nm = nllm_source_strdup(src, name, strlen(name));
      if (!nm) {
        st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
      }
      pieces[n_pieces++] = (expert_piece){nm, expert, &raw.t[i]};
      continue;
    }
    nllm_tensor t = raw.t[i];
    if (!(t.name = nllm_source_strdup(src, name, strlen(name)))) {
      st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", dir);
      goto done;
    }
    if (plus_one && (st = norm_plus_one(src, &t)) != NLLM_OK) goto done;
    out[n++] = t;
  }
  if (n_pieces && (st = stack_experts(src, dir, info, pieces, n_pieces, out, &n)) != NLLM_OK)
    goto done;
  if (info->n_expert && (st = check_sparse_layers(dir, info, out, n)) != NLLM_OK) goto done;
  qsort(out, (size_t)n, sizeof *out, tensor_name_cmp);
  for (int64_t i = 1; i < n; i++)
    if (strcmp(out[i - 1].name, out[i].name) == 0) {
      st = nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s' is present twice (in two shards, or "
                    "under two source names)",
                    dir, out[i].name);
      goto done;
    }
  src->tensors = out;
  src->n_tensors = n;
done:
  free(pieces);
  nllm_tensor_list_free(&raw);
  return st;
}

/* ---------------------------------------------------------------- entry */

nllm_status hf_open(const char *dir, int use_mmap, nllm_source *out) {
  memset(out, 0, sizeof *out);
  cJSON *cfg = NULL, *gen = NULL, *tcfg = NULL;
  char cfg_path[4096], path[4096];
  nllm_status st = path_join(cfg_path, sizeof cfg_path, dir, "config.json");
  if (st != NLLM_OK) return st;
  if (!(out->path = nllm_strdup(dir))) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", dir);
  kv_builder b = {out, 64};
  if (!(out->kv = nllm_source_alloc(out, (size_t)b.cap * sizeof *out->kv))) {
    st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", dir);
    goto fail;
  }
  if (access(cfg_path, F_OK) != 0) {
    st = nllm_err(NLLM_ERR_IO, "%s: no config.json (not a Hugging Face model folder)", dir);
    goto fail;
  }
  if ((st = read_json(cfg_path, 1, &cfg)) != NLLM_OK) goto fail;
  if ((st = path_join(path, sizeof path, dir, "generation_config.json")) != NLLM_OK ||
      (st = read_json(path, 0, &gen)) != NLLM_OK)
    goto fail;
  if ((st = path_join(path, sizeof path, dir, "tokenizer_config.json")) != NLLM_OK ||
      (st = read_json(path, 0, &tcfg)) != NLLM_OK)
    goto fail;

  const cJSON *archs = jget(cfg, "architectures");
  if (!cJSON_IsArray(archs) || !cJSON_IsString(archs->child)) {
    st = nllm_err(NLLM_ERR_FORMAT, "%s: 'architectures' must be a list naming the model class",
                  cfg_path);
    goto fail;
  }
  const char *cls = archs->child->valuestring;
  const hf_arch *ha = NULL;
  for (size_t i = 0; i < sizeof hf_archs / sizeof hf_archs[0]; i++)
    if (strcmp(hf_archs[i].hf_class, cls) == 0) ha = &hf_archs[i];
  if (!ha) {
    st = nllm_err(
        NLLM_ERR_UNSUPPORTED,
        "%s: architecture '%.80s' is not supported (supported: "
        "Llama, Mistral, Mixtral, Qwen2, Qwen3, Qwen3-MoE, Gemma, Gemma2, Phi3, BertModel)",
        cfg_path, cls);
    goto fail;
  }
  hf_model_info info = {0};
  if ((st = ha->flag & A_BERT ? bert_hparam_keys(&b, cfg, cfg_path, &info)
                              : hparam_keys(&b, ha, cfg, cfg_path, &info)) != NLLM_OK ||
      (st = sentence_transformers_keys(&b, dir, ha->arch)) != NLLM_OK)
    goto fail;
  {
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    if ((st = kv_str(&b, "general.name", base)) != NLLM_OK) goto fail;
  }
  if ((st = special_token_keys(&b, cfg, gen, tcfg, dir)) != NLLM_OK) goto fail;
  if ((st = build_tensors(out, dir, ha->arch, &info, use_mmap)) != NLLM_OK) goto fail;
  cJSON_Delete(cfg);
  cJSON_Delete(gen);
  cJSON_Delete(tcfg);
  return NLLM_OK;
fail:
  cJSON_Delete(cfg);
  cJSON_Delete(gen);
  cJSON_Delete(tcfg);
  nllm_source_free(out);
  return st;
}
