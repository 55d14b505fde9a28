/* Conversion and quantization (see convert.h). Tensors are converted row by row through F32
 * (model/quantize_load.c), and written with the GGUF writer. */
#include "convert/convert.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include "convert/gguf_write.h"
#include "tokenizer/tokenizer.h"
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

static pthread_once_t names_once = PTHREAD_ONCE_INIT;
static char names[256];

static void build_names(void) {
  size_t at = 0;
  for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
    at += (size_t)snprintf(names + at, sizeof names - at, "%s%s", i ? " " : "", targets[i].name);
}

const char *nllm_quant_target_names(void) {
  pthread_once(&names_once, build_names);
  return names;
}

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
  /* GGUF's other weight types load and run, but are not quantization targets: the low-bit
   * IQ types are only useful with an importance matrix guiding the rounding, the ternary TQ
   * types only for models trained ternary, MXFP4 for models trained in it */
  for (int32_t t = 0; t < NLLM_GGML_TYPE_COUNT; t++) {
    const char *tn = nllm_ggml_type_name(t);
    if (tn && strcasecmp(tn, name) == 0 &&
        (!strncmp(tn, "IQ", 2) || !strncmp(tn, "TQ", 2) || !strcmp(tn, "MXFP4")))
      return nllm_err(NLLM_ERR_UNSUPPORTED,
                      "%s is not a quantization target: files of this type are read and run, "
                      "but writing useful ones needs an importance matrix (IQ types) or a model "
                      "trained for it (TQ1_0/TQ2_0 ternary, MXFP4), which nllm quantize does "
                      "not have; targets (any case): %s",
                      tn, nllm_quant_target_names());
  }
  return nllm_err(NLLM_ERR_INVALID_ARG, "unknown weight type '%.40s' (valid, any case: %s)", name,
                  nllm_quant_target_names());
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
  /* BERT's token-type rows are added to the F32 embeddings as stored (llama.cpp needs F32) */
  if (strcmp(t->name, "token_types.weight") == 0) return NLLM_TYPE_F32;
  if (tg->kind == NLLM_PRESET_KEEP) return t->type;
  int32_t base = tg->type, q = base;
  int64_t il = layer_of(t->name);
  nllm_preset_kind k = tg->kind;
  /* an 8-expert model's attention is a small part of it, and its experts' quality hangs on it */
  const int moe8 = tg->n_expert == 8 && !nllm_type_is_float(base);
  if (name_is(t->name, ".ffn_gate_inp.weight") || name_is(t->name, ".ffn_gate_inp_shexp.weight")) {
    /* the router and Qwen2-MoE's shared expert gate (one row, which llama.cpp holds as a
     * vector): tiny, and their rounding decides which experts run and how much */
    q = NLLM_TYPE_F32;
  } else if (strcmp(t->name, "output.weight") == 0 ||
             (!has_output && strcmp(t->name, "token_embd.weight") == 0)) {
    q = nllm_type_is_float(base) || base == NLLM_TYPE_Q8_0 ? base : NLLM_TYPE_Q6_K;
  } else if (name_is(t->name, ".attn_v.weight")) {
    if (k == NLLM_PRESET_Q2_K)
      q = NLLM_TYPE_Q3_K;
    else if (k == NLLM_PRESET_Q3_K_M)
      q = il < 2 ? NLLM_TYPE_Q5_K : NLLM_TYPE_Q4_K;
    else if ((k == NLLM_PRESET_Q4_K_M || k == NLLM_PRESET_Q5_K_M) && use_more_bits(il, n_layers))
      q = NLLM_TYPE_Q6_K;
    if (moe8) q = NLLM_TYPE_Q8_0;
  } else if (name_is(t->name, ".attn_k.weight")) {
    if (moe8) q = NLLM_TYPE_Q8_0;
  } else if (name_is(t->name, ".ffn_down.weight") || name_is(t->name, ".ffn_down_exps.weight") ||
             name_is(t->name, ".ffn_down_shexp.weight")) { /* llama.cpp: any "ffn_down" */
    if (k == NLLM_PRESET_Q2_K)
      q = NLLM_TYPE_Q3_K;
    else if (k == NLLM_PRESET_Q3_K_M)
      q = il < n_layers / 16 ? NLLM_TYPE_Q5_K : NLLM_TYPE_Q4_K;
    else if ((k == NLLM_PRESET_Q4_K_M || k == NLLM_PRESET_Q5_K_M) && use_more_bits(il, n_layers))
      q = NLLM_TYPE_Q6_K;
  } else if (name_is(t->name, ".attn_output.weight") && moe8) {
    if (k == NLLM_PRESET_Q2_K || k == NLLM_PRESET_Q3_K_M || k == NLLM_PRESET_Q4_K_M)
      q = NLLM_TYPE_Q5_K;
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

/* ---------------------------------------------------------------- tokenizer keys */

/* A special id the tokenizer does not have must not be left to a reader's default (a llama
 * tokenizer defaults bos to 1): -1 written as u32 means "none". */
static nllm_status set_special(gguf_writer *w, const char *key, nllm_token id) {
  return gguf_writer_set_u32(w, key, id >= 0 ? (uint32_t)id : 0xFFFFFFFFu);
}

/* The tokenizer.ggml.* keys of a Hugging Face folder's tokenizer, written from the tokenizer
 * object the model loads (src/tokenizer), so both read tokenizer.json the same way. */
nllm_status nllm_convert_tokenizer_keys(gguf_writer *w, const nllm_tokenizer *tok,
                                        int64_t n_vocab_model) {
  nllm_tokenizer_gguf g;
  int32_t n_min = n_vocab_model > 0 && n_vocab_model < (1 << 24) ? (int32_t)n_vocab_model : 0;
  nllm_status st = nllm_tokenizer_to_gguf(tok, n_min, &g);
  if (st != NLLM_OK) return st;
  static const char *const id_keys[5] = {
      "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
      "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"};
  if (!(st = gguf_writer_set_str(w, "tokenizer.ggml.model", g.model)) && g.pre)
    st = gguf_writer_set_str(w, "tokenizer.ggml.pre", g.pre);
  if (!st) st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", g.tokens, (uint64_t)g.n_vocab);
  if (!st)
    st = gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", g.types, (uint64_t)g.n_vocab);
  if (!st && g.scores)
    st = gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", g.scores, (uint64_t)g.n_vocab);
  if (!st && g.merges)
    st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", g.merges, (uint64_t)g.n_merges);
  for (int k = 0; k < 5 && !st; k++) st = set_special(w, id_keys[k], g.special[k]);
  if (!st && g.sep >= 0) st = set_special(w, "tokenizer.ggml.seperator_token_id", g.sep);
  if (!st && g.mask >= 0) st = set_special(w, "tokenizer.ggml.mask_token_id", g.mask);
  if (!st) st = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", g.add_bos);
  if (!st) st = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", g.add_eos);
  if (!st && g.scores)
    st = gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", g.add_space_prefix);
  if (!st && g.chat_template)
    st = gguf_writer_set_str(w, "tokenizer.chat_template", g.chat_template);
  nllm_tokenizer_gguf_free(&g);
  return st;
}

static nllm_status tokenizer_keys(gguf_writer *w, const char *dir, int64_t n_vocab_model) {
  char path[4096];
  int pn = snprintf(path, sizeof path, "%s/tokenizer.json", dir);
  if (pn < 0 || (size_t)pn >= sizeof path) return nllm_err(NLLM_ERR_INVALID_ARG, "path too long");
  nllm_tokenizer *tok = NULL;
  nllm_status st = nllm_tokenizer_from_hf(path, &tok);
  if (st != NLLM_OK) return st;
  st = nllm_convert_tokenizer_keys(w, tok, n_vocab_model);
  nllm_tokenizer_free(tok);
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
  return nllm_convert_source_merged(src, out_path, type_or_preset, n_threads, progress, user_data,
                                    NULL, 0);
}

/* t as F32 with every adapter that adapts it merged in; NULL with *st set on failure, NULL with
 * NLLM_OK when none adapts it. */
static float *merge_lora(const nllm_tensor *t, int64_t n_layers, const nllm_lora_active *lora,
                         int32_t n_lora, nllm_status *st) {
  *st = NLLM_OK;
  int il = -1, slot = nllm_lora_slot_of(t->name, (int32_t)n_layers, &il);
  if (slot < 0 || t->n_dims != 2) return NULL;
  int any = 0;
  for (int32_t k = 0; k < n_lora; k++) any |= nllm_lora_mat_of(lora[k].a, il, slot)->r > 0;
  if (!any) return NULL;
  const nllm_qtype *q = nllm_qtype_get(t->type);
  const int64_t rows = t->ne[1], cols = t->ne[0];
  float *w = q ? nllm_aligned_alloc((size_t)(rows * cols) * sizeof(float)) : NULL;
  if (!w) {
    *st = q ? nllm_err(NLLM_ERR_NOMEM, "out of memory merging LoRA into '%s'", t->name)
            : nllm_err(NLLM_ERR_UNSUPPORTED, "'%s': cannot merge LoRA into its type", t->name);
    return NULL;
  }
  const size_t rs = nllm_row_size(t->type, cols);
  for (int64_t r = 0; r < rows; r++)
    q->to_float((const uint8_t *)t->data + (size_t)r * rs, w + r * cols, cols);
  for (int32_t k = 0; k < n_lora; k++) {
    const nllm_lora_mat *lm = nllm_lora_mat_of(lora[k].a, il, slot);
    if (lm->r) nllm_lora_merge(lm, lora[k].scale, w, rows, cols);
  }
  return w;
}

nllm_status nllm_convert_source_merged(const nllm_source *src, const char *out_path,
                                       const char *type_or_preset, int n_threads,
                                       nllm_progress_fn progress, void *user_data,
                                       const nllm_lora_active *lora, int32_t n_lora) {
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
  tg.n_expert = src_int(src, arch, "expert_count", 0);

  float *rope_freqs = NULL;
  int64_t n_freqs = 0;
  if (hf_layout && (st = llama3_rope_freqs(src, arch, &rope_freqs, &n_freqs)) != NLLM_OK) return st;
  nllm_tensor_job *jobs = nllm_calloc((size_t)src->n_tensors + 1, sizeof *jobs);
  /* merged copies (F32) of the tensors adapters change, and their rows */
  nllm_tensor *merged = nllm_calloc((size_t)src->n_tensors + 1, sizeof *merged);
  float **merged_data = nllm_calloc((size_t)src->n_tensors + 1, sizeof *merged_data);
  gguf_writer *w = gguf_writer_new();
  if (!jobs || !merged || !merged_data || !w) {
    st = nllm_err(NLLM_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int64_t i = 0; i < src->n_kv; i++)
    if (!skip_key(src->kv[i].key, rope_freqs != NULL) &&
        (st = gguf_writer_set(w, src->kv[i].key, &src->kv[i].val)) != NLLM_OK)
      goto done;
  const char *tok_dir;
  if (nllm_source_get_str(src, "tokenizer.hf.dir", &tok_dir) == NLLM_OK &&
      (st = tokenizer_keys(w, tok_dir, src_int(src, arch, "vocab_size", 0))) != NLLM_OK)
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
    j->out_type = nllm_quant_tensor_type(&tg, t, n_layers, has_output);
    if (tg.kind == NLLM_PRESET_KEEP && t->n_dims < 2 && !nllm_type_is_float(t->type))
      j->out_type = t->type; /* nothing to convert a quantized vector from */
    if ((merged_data[i] = merge_lora(t, n_layers, lora, n_lora, &st))) {
      /* converted from the merged F32 rows to the type the original would have become */
      merged[i] = *t;
      merged[i].type = NLLM_TYPE_F32;
      merged[i].data = merged_data[i];
      merged[i].nbytes = (uint64_t)(t->ne[0] * t->ne[1]) * sizeof(float);
      t = &merged[i];
    } else if (st) {
      goto done;
    }
    j->t = t;
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
      nllm_aligned_free(merged_data[i]); /* converted: the F32 copy is not written */
      merged_data[i] = NULL;
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
    done_bytes += src->tensors[i].nbytes;
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
  if (merged_data)
    for (int64_t i = 0; i < src->n_tensors; i++) nllm_aligned_free(merged_data[i]);
  free(jobs);
  free(merged);
  free(merged_data);
  gguf_writer_free(w);
  nllm_aligned_free(rope_freqs);
  return st;
}
