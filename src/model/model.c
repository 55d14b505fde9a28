/* Model loading: architecture table, hyperparameters from metadata, tensors bound and checked
 * against them. Everything the forward pass needs is resolved here, once. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/quantize_load.h"
#include "ops.h"
#include "qtypes.h"

/* One row per architecture; a property left out is off (model.h says what each one means).
 * OLMoE and Qwen2-MoE do not renormalize the chosen experts' weights: llama.cpp's graphs for
 * them do not, and their HF configs default norm_topk_prob to false. */
static const nllm_arch arch_table[] = {
    {.name = "llama", .expert_norm = 1},
    {.name = "mistral", .expert_norm = 1},
    {.name = "qwen2", .rope_neox = 1},
    {.name = "qwen2moe", .rope_neox = 1, .shared_expert = 1},
    {.name = "qwen3", .rope_neox = 1, .qk_norm = 1},
    {.name = "qwen3moe", .rope_neox = 1, .qk_norm = 1, .expert_norm = 1},
    {.name = "olmoe", .rope_neox = 1, .qk_norm = NLLM_QK_NORM_FULL},
    {.name = "gemma", .rope_neox = 1, .gelu = 1, .embed_scale = 1},
    {.name = "gemma2",
     .rope_neox = 1,
     .gelu = 1,
     .embed_scale = 1,
     .post_norms = 1,
     .swa_global_every = 2},
    {.name = "phi3", .rope_neox = 1, .fused_qkv = 1, .fused_gate_up = 1},
    {.name = "bert",
     .bidirectional = 1,
     .layernorm = 1,
     .norm_after_residual = 1,
     .abs_pos = 1,
     .ffn_gelu_erf = 1},
};

const nllm_arch *nllm_arch_find(const char *name) {
  for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0]; i++)
    if (strcmp(arch_table[i].name, name) == 0) return &arch_table[i];
  return NULL;
}

/* "llama, mistral, ..." for the unsupported-architecture message, so it cannot fall behind the
 * table. */
static void arch_names(char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = 0;
  for (size_t i = 0; i < sizeof arch_table / sizeof arch_table[0] && len < cap; i++) {
    int w = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", arch_table[i].name);
    if (w < 0) break;
    len += (size_t)w;
  }
}

/* Key "<arch>.<suffix>" */
static const char *akey(const nllm_model *m, const char *suffix) {
  static _Thread_local char buf[256];
  snprintf(buf, sizeof buf, "%s.%s", m->arch->name, suffix);
  return buf;
}

static nllm_status get_i32(const nllm_model *m, const char *suffix, int required, int32_t dflt,
                           int32_t lo, int32_t hi, int32_t *out) {
  int64_t v;
  const char *key = akey(m, suffix);
  nllm_status st = nllm_source_get_int(&m->src, key, &v);
  if (st == NLLM_ERR_NOT_FOUND && !required) {
    *out = dflt;
    return NLLM_OK;
  }
  if (st != NLLM_OK) return st;
  if (v < lo || v > hi)
    return nllm_err(NLLM_ERR_FORMAT, "%s: %s = %lld is out of range [%d, %d]", m->src.path, key,
                    (long long)v, lo, hi);
  *out = (int32_t)v;
  return NLLM_OK;
}

static nllm_status get_f32(const nllm_model *m, const char *suffix, float dflt, float lo, float hi,
                           float *out) {
  double v;
  const char *key = akey(m, suffix);
  nllm_status st = nllm_source_get_float(&m->src, key, &v);
  if (st == NLLM_ERR_NOT_FOUND) {
    *out = dflt;
    return NLLM_OK;
  }
  if (st != NLLM_OK) return st;
  if (!(v >= lo && v <= hi))
    return nllm_err(NLLM_ERR_FORMAT, "%s: %s = %g is out of range [%g, %g]", m->src.path, key, v,
                    (double)lo, (double)hi);
  *out = (float)v;
  return NLLM_OK;
}

/* Mixture of experts: expert_count 0 (or absent) is a dense model. */
static nllm_status read_expert_hparams(nllm_model *m) {
  nllm_hparams *hp = &m->hp;
  nllm_status st;
  if ((st = get_i32(m, "expert_count", 0, 0, 0, 1 << 16, &hp->n_expert))) return st;
  hp->n_expert_used = 0;
  hp->n_ff_exp = hp->n_ff;
  hp->expert_norm = m->arch->expert_norm;
  if (!hp->n_expert) return NLLM_OK;
  if ((st = get_i32(m, "expert_used_count", 1, 0, 1, hp->n_expert, &hp->n_expert_used)) ||
      (st = get_i32(m, "expert_feed_forward_length", 0, hp->n_ff, 1, 1 << 24, &hp->n_ff_exp)) ||
      (st = get_i32(m, "expert_shared_feed_forward_length", 0, hp->n_ff, 1, 1 << 24,
                    &hp->n_ff_shexp)))
    return st;
  const char *key = akey(m, "expert_weights_norm");
  const nllm_value *v = nllm_source_get(&m->src, key);
  if (v) {
    if (v->type != NLLM_V_BOOL)
      return nllm_err(NLLM_ERR_FORMAT, "%s: %s must be a bool (it is %s)", m->src.path, key,
                      nllm_value_type_name(v->type));
    hp->expert_norm = v->v.u != 0;
  }
  return NLLM_OK;
}

static nllm_status read_hparams(nllm_model *m) {
  nllm_hparams *hp = &m->hp;
  nllm_status st;
  const int32_t BIG = 1 << 24;
  if ((st = get_i32(m, "embedding_length", 1, 0, 1, BIG, &hp->n_embd)) ||
      (st = get_i32(m, "block_count", 1, 0, 1, 4096, &hp->n_layer)) ||
      (st = get_i32(m, "feed_forward_length", 1, 0, 1, BIG, &hp->n_ff)) ||
      (st = get_i32(m, "attention.head_count", 1, 0, 1, 4096, &hp->n_head)) ||
      (st = get_i32(m, "attention.head_count_kv", 0, hp->n_head, 1, 4096, &hp->n_head_kv)) ||
      (st = get_i32(m, "context_length", 0, 2048, 1, 1 << 30, &hp->n_ctx_train)))
    return st;
  if (hp->n_head % hp->n_head_kv != 0)
    return nllm_err(NLLM_ERR_FORMAT, "%s: head_count %d is not a multiple of head_count_kv %d",
                    m->src.path, hp->n_head, hp->n_head_kv);
  int32_t dflt_hd = hp->n_embd / hp->n_head;
  if ((st = get_i32(m, "attention.key_length", 0, dflt_hd, 1, 65536, &hp->head_dim))) return st;
  int32_t vlen;
  if ((st = get_i32(m, "attention.value_length", 0, hp->head_dim, 1, 65536, &vlen))) return st;
  if (vlen != hp->head_dim)
    return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: value_length %d != key_length %d is not supported",
                    m->src.path, vlen, hp->head_dim);
  if (hp->head_dim % 2)
    return nllm_err(NLLM_ERR_FORMAT, "%s: head dimension %d is odd", m->src.path, hp->head_dim);
  if ((st = get_i32(m, "rope.dimension_count", 0, hp->head_dim, 2, hp->head_dim, &hp->n_rot)))
    return st;
  if (hp->n_rot % 2)
    return nllm_err(NLLM_ERR_FORMAT, "%s: rope.dimension_count %d is odd", m->src.path, hp->n_rot);
  /* rms_eps is the epsilon of whichever norm the arch uses */
  if ((st =
           m->arch->layernorm
               ? get_f32(m, "attention.layer_norm_epsilon", 1e-12f, 0.0f, 1.0f, &hp->rms_eps)
               : get_f32(m, "attention.layer_norm_rms_epsilon", 1e-5f, 0.0f, 1.0f, &hp->rms_eps)) ||
      (st = get_f32(m, "rope.freq_base", 10000.0f, 1.0f, 1e12f, &hp->rope_base)) ||
      (st = get_f32(m, "attn_logit_softcapping", 0.0f, 0.0f, 1e6f, &hp->attn_softcap)) ||
      (st = get_f32(m, "final_logit_softcapping", 0.0f, 0.0f, 1e6f, &hp->final_softcap)) ||
      (st = get_i32(m, "attention.sliding_window", 0, 0, 0, 1 << 30, &hp->sliding_window)))
    return st;
  hp->rope_neox = m->arch->rope_neox;
  const nllm_value *neox = nllm_source_get(&m->src, "nllm.rope.neox");
  if (neox && neox->type == NLLM_V_BOOL) hp->rope_neox = neox->v.u != 0;
  /* HF folders carry Gemma 2's query_pre_attn_scalar as attention.scale. llama.cpp's GGUF
   * files do not; its rule for them is 1/sqrt(head_dim), except Gemma 2 27B (46 layers), whose
   * query_pre_attn_scalar is n_embd / n_head. */
  float dflt_scale = 1.0f / sqrtf((float)hp->head_dim);
  if (strcmp(m->arch->name, "gemma2") == 0 && hp->n_layer == 46)
    dflt_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
  if ((st = get_f32(m, "attention.scale", dflt_scale, 1e-6f, 1e6f, &hp->attn_scale))) return st;
  /* Without a pooling_type: mean for encoders (sentence-transformers' default), the last
   * token for decoders (the only row that has seen the whole text). Vectors are normalized
   * unless the file says otherwise (nllm.embedding.normalize, from sentence-transformers'
   * modules.json), as llama.cpp's embedding tool and server do. */
  if ((st = get_i32(m, "pooling_type", 0, m->arch->bidirectional ? 1 : 3, 0, 4, &hp->pooling)))
    return st;
  if (hp->pooling > 3)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: %s.pooling_type %d (rank: a reranker) is not supported", m->src.path,
                    m->arch->name, hp->pooling);
  hp->normalize = 1;
  const nllm_value *nv = nllm_source_get(&m->src, "nllm.embedding.normalize");
  if (nv && nv->type == NLLM_V_BOOL) hp->normalize = nv->v.u != 0;
  return read_expert_hparams(m);
}

/* Rotary frequencies with the file's scaling rule folded in, so the forward pass only ever
 * computes pos * inv_freq[i]. */
static nllm_status build_rope(nllm_model *m) {
  nllm_hparams *hp = &m->hp;
  int n = hp->n_rot / 2;
  m->inv_freq = nllm_source_alloc(&m->src, (size_t)n * sizeof(float));
  if (!m->inv_freq) return nllm_err(NLLM_ERR_NOMEM, "out of memory (rope table)");
  for (int i = 0; i < n; i++)
    m->inv_freq[i] = (float)pow((double)hp->rope_base, -2.0 * i / hp->n_rot);

  const char *type = NULL;
  nllm_source_get_str(&m->src, akey(m, "rope.scaling.type"), &type);
  float factor = 1.0f;
  nllm_status st = get_f32(m, "rope.scaling.factor", 1.0f, 1e-3f, 1e6f, &factor);
  if (st) return st;
  if (!type) {
    float lin;
    if ((st = get_f32(m, "rope.scale_linear", 1.0f, 1e-3f, 1e6f, &lin))) return st;
    if (lin != 1.0f) type = "linear", factor = lin;
  }
  if (type && strcmp(type, "none") != 0 && factor != 1.0f) {
    if (strcmp(type, "linear") == 0) {
      for (int i = 0; i < n; i++) m->inv_freq[i] /= factor;
    } else if (strcmp(type, "llama3") == 0) {
      float lo, hi;
      int32_t orig;
      if ((st = get_f32(m, "rope.scaling.low_freq_factor", 1.0f, 1e-6f, 1e6f, &lo)) ||
          (st = get_f32(m, "rope.scaling.high_freq_factor", 4.0f, 1e-6f, 1e6f, &hi)) ||
          (st = get_i32(m, "rope.scaling.original_context_length", 0, 8192, 1, 1 << 30, &orig)))
        return st;
      double low_wl = orig / lo, high_wl = orig / hi;
      for (int i = 0; i < n; i++) {
        double f = m->inv_freq[i], wl = 2 * M_PI / f;
        if (wl > low_wl)
          f /= factor;
        else if (wl >= high_wl) {
          double s = (orig / wl - lo) / (hi - lo);
          f = (1 - s) * f / factor + s * f;
        }
        m->inv_freq[i] = (float)f;
      }
    } else {
      return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: rope scaling type '%s' is not supported",
                      m->src.path, type);
    }
  }
  /* GGUF Llama 3.1 files carry the scaling as per-frequency divisors. */
  const nllm_tensor *rf = nllm_source_tensor(&m->src, "rope_freqs.weight");
  if (rf) {
    if (rf->type != NLLM_TYPE_F32 || rf->ne[0] != n || rf->n_dims != 1)
      return nllm_err(NLLM_ERR_FORMAT, "%s: rope_freqs.weight must be F32 [%d]", m->src.path, n);
    const float *d = rf->data;
    for (int i = 0; i < n; i++) {
      if (!(d[i] > 0))
        return nllm_err(NLLM_ERR_FORMAT, "%s: rope_freqs.weight[%d] = %g is not positive",
                        m->src.path, i, (double)d[i]);
      m->inv_freq[i] /= d[i];
    }
  }
  m->rope_freqs = (nllm_weight){.data = m->inv_freq, .type = NLLM_TYPE_F32, .rows = 1, .cols = n};
  return NLLM_OK;
}

/* Finds a tensor, checks its shape is [cols] (rows == 0) or [cols, rows], its type computable;
 * vectors become F32. A missing optional tensor leaves w zeroed. */
static nllm_status bind(nllm_model *m, nllm_weight *w, const char *name, int64_t rows, int64_t cols,
                        int required) {
  memset(w, 0, sizeof *w);
  const nllm_tensor *t = nllm_source_tensor(&m->src, name);
  if (!t) {
    if (!required) return NLLM_OK;
    return nllm_err(NLLM_ERR_FORMAT, "%s: required tensor '%s' is missing", m->src.path, name);
  }
  int64_t want1 = rows ? rows : 1;
  if (t->ne[0] != cols || t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld] "
                    "from the hyperparameters",
                    m->src.path, name, (long long)t->ne[0], (long long)t->ne[1],
                    (long long)t->ne[2], (long long)t->ne[3], (long long)cols, (long long)want1);
  const nllm_qtype *qt = nllm_qtype_get(t->type);
  if (!qt) {
    const char *tn = nllm_ggml_type_name(t->type);
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: tensor '%s' has type %s, which nativellm does not support", m->src.path,
                    name, tn ? tn : "unknown");
  }
  if (cols % qt->block_size)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s' row length %lld is not a multiple of %s's "
                    "block size %d",
                    m->src.path, name, (long long)cols, qt->name, qt->block_size);
  w->rows = want1;
  w->cols = cols;
  w->type = t->type;
  w->data = t->data;
  if (!rows && t->type != NLLM_TYPE_F32) {
    float *f = nllm_source_alloc(&m->src, (size_t)cols * sizeof(float));
    if (!f) return nllm_err(NLLM_ERR_NOMEM, "out of memory converting '%s'", name);
    qt->to_float(t->data, f, cols);
    w->data = f;
    w->type = NLLM_TYPE_F32;
  }
  m->n_params += (uint64_t)(want1 * cols);
  m->n_bytes += t->nbytes;
  return NLLM_OK;
}

/* A 3-D expert tensor: ne {cols, rows, n_expert}, one ordinary matrix per expert; w holds one
 * expert's shape and points at expert 0. */
static nllm_status bind_experts(nllm_model *m, nllm_weight *w, const char *name, int64_t rows,
                                int64_t cols) {
  memset(w, 0, sizeof *w);
  const nllm_tensor *t = nllm_source_tensor(&m->src, name);
  if (!t)
    return nllm_err(NLLM_ERR_FORMAT, "%s: required tensor '%s' is missing", m->src.path, name);
  const int64_t ne = m->hp.n_expert;
  if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != ne || t->ne[3] != 1)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, "
                    "%lld] (one matrix per expert) from the hyperparameters",
                    m->src.path, name, (long long)t->ne[0], (long long)t->ne[1],
                    (long long)t->ne[2], (long long)t->ne[3], (long long)cols, (long long)rows,
                    (long long)ne);
  const nllm_qtype *qt = nllm_qtype_get(t->type);
  if (!qt) {
    const char *tn = nllm_ggml_type_name(t->type);
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: tensor '%s' has type %s, which nativellm does not support", m->src.path,
                    name, tn ? tn : "unknown");
  }
  if (cols % qt->block_size)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s' row length %lld is not a multiple of %s's block size %d",
                    m->src.path, name, (long long)cols, qt->name, qt->block_size);
  w->rows = rows;
  w->cols = cols;
  w->type = t->type;
  w->data = t->data;
  m->n_params += (uint64_t)(rows * cols * ne);
  m->n_bytes += t->nbytes;
  return NLLM_OK;
}

static nllm_status bind_layer(nllm_model *m, int il) {
  const nllm_hparams *hp = &m->hp;
  const nllm_arch *a = m->arch;
  nllm_layer *L = &m->layers[il];
  /* a fused architecture never binds wk/wv/w_gate: they must read as absent, not as garbage */
  memset(L, 0, sizeof *L);
  int64_t d = hp->n_embd, qd = (int64_t)hp->n_head * hp->head_dim,
          kvd = (int64_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff;
  char n[96];
  nllm_status st;
#define B(field, suffix, rows, cols, req)         \
  snprintf(n, sizeof n, "blk.%d.%s", il, suffix); \
  if ((st = bind(m, &L->field, n, rows, cols, req))) return st;
  if (a->norm_after_residual) { /* BERT: the norms after attention and after the FFN */
    B(attn_norm, "attn_output_norm.weight", 0, d, 1);
    B(attn_norm_b, "attn_output_norm.bias", 0, d, 1);
    B(ffn_norm, "layer_output_norm.weight", 0, d, 1);
    B(ffn_norm_b, "layer_output_norm.bias", 0, d, 1);
  } else {
    B(attn_norm, "attn_norm.weight", 0, d, 1);
    B(ffn_norm, "ffn_norm.weight", 0, d, 1);
  }
  if (a->layernorm) { /* LayerNorm archs have biases on every projection */
    B(bo, "attn_output.bias", 0, d, 1);
    B(b_up, "ffn_up.bias", 0, ff, 1);
    B(b_down, "ffn_down.bias", 0, d, 1);
  }
  if (a->fused_qkv) {
    B(wq, "attn_qkv.weight", qd + 2 * kvd, d, 1);
  } else {
    B(wq, "attn_q.weight", qd, d, 1);
    B(wk, "attn_k.weight", kvd, d, 1);
    B(wv, "attn_v.weight", kvd, d, 1);
  }
  B(wo, "attn_output.weight", d, qd, 1);
  /* Biases are optional everywhere (Qwen2 has them; some Llama finetunes too). */
  B(bq, "attn_q.bias", 0, qd, a->layernorm);
  B(bk, "attn_k.bias", 0, kvd, a->layernorm);
  B(bv, "attn_v.bias", 0, kvd, a->layernorm);
  const int full = a->qk_norm == NLLM_QK_NORM_FULL;
  B(q_norm, "attn_q_norm.weight", 0, full ? qd : hp->head_dim, a->qk_norm);
  B(k_norm, "attn_k_norm.weight", 0, full ? kvd : hp->head_dim, a->qk_norm);
  snprintf(n, sizeof n, "blk.%d.ffn_gate_inp.weight", il);
  const int sparse = nllm_source_tensor(&m->src, n) != NULL;
  if (sparse && !hp->n_expert)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s' is an expert router but %s.expert_count is "
                    "0 or missing",
                    m->src.path, n, a->name);
  if (sparse) {
    const int64_t fe = hp->n_ff_exp;
    B(ffn_gate_inp, "ffn_gate_inp.weight", hp->n_expert, d, 1);
#define BE(field, suffix, rows, cols)             \
  snprintf(n, sizeof n, "blk.%d.%s", il, suffix); \
  if ((st = bind_experts(m, &L->field, n, rows, cols))) return st;
    BE(ffn_gate_exps, "ffn_gate_exps.weight", fe, d);
    BE(ffn_up_exps, "ffn_up_exps.weight", fe, d);
    BE(ffn_down_exps, "ffn_down_exps.weight", d, fe);
#undef BE
    if (a->shared_expert) {
      const int64_t fs = hp->n_ff_shexp;
      B(ffn_gate_inp_shexp, "ffn_gate_inp_shexp.weight", 0, d, 1);
      B(ffn_gate_shexp, "ffn_gate_shexp.weight", fs, d, 1);
      B(ffn_up_shexp, "ffn_up_shexp.weight", fs, d, 1);
      B(ffn_down_shexp, "ffn_down_shexp.weight", d, fs, 1);
    }
  } else if (a->fused_gate_up) {
    B(w_up, "ffn_up.weight", 2 * ff, d, 1);
  } else if (a->ffn_gelu_erf) {
    B(w_up, "ffn_up.weight", ff, d, 1);
  } else {
    B(w_gate, "ffn_gate.weight", ff, d, 1);
    B(w_up, "ffn_up.weight", ff, d, 1);
  }
  if (!sparse) {
    B(w_down, "ffn_down.weight", d, ff, 1);
  }
  B(post_attn_norm, "post_attention_norm.weight", 0, d, a->post_norms);
  B(post_ffn_norm, "post_ffw_norm.weight", 0, d, a->post_norms);
#undef B
  int global = a->swa_global_every > 0 && il % a->swa_global_every == a->swa_global_every - 1;
  L->window = global ? 0 : hp->sliding_window;
  return NLLM_OK;
}

static nllm_status bind_tensors(nllm_model *m) {
  nllm_hparams *hp = &m->hp;
  const nllm_tensor *te = nllm_source_tensor(&m->src, "token_embd.weight");
  if (!te)
    return nllm_err(NLLM_ERR_FORMAT, "%s: required tensor 'token_embd.weight' is missing",
                    m->src.path);
  if (te->ne[1] < 1 || te->ne[1] > (1 << 24))
    return nllm_err(NLLM_ERR_FORMAT, "%s: token_embd.weight has %lld rows", m->src.path,
                    (long long)te->ne[1]);
  hp->n_vocab = (int32_t)te->ne[1];
  nllm_status st = bind(m, &m->tok_embd, "token_embd.weight", hp->n_vocab, hp->n_embd, 1);
  if (st) return st;
  if (m->arch->abs_pos) {
    /* an encoder: position and type tables, the embedding norm, and no output head */
    const nllm_tensor *pe = nllm_source_tensor(&m->src, "position_embd.weight");
    const nllm_tensor *tt = nllm_source_tensor(&m->src, "token_types.weight");
    if (!pe || !tt)
      return nllm_err(NLLM_ERR_FORMAT, "%s: required tensor '%s' is missing", m->src.path,
                      !pe ? "position_embd.weight" : "token_types.weight");
    if (pe->ne[1] < 1 || pe->ne[1] > (1 << 24) || tt->ne[1] < 1 || tt->ne[1] > 1024)
      return nllm_err(NLLM_ERR_FORMAT,
                      "%s: position_embd.weight (%lld rows) or "
                      "token_types.weight (%lld rows) has a bad row count",
                      m->src.path, (long long)pe->ne[1], (long long)tt->ne[1]);
    if ((st = bind(m, &m->pos_embd, "position_embd.weight", pe->ne[1], hp->n_embd, 1)) ||
        (st = bind(m, &m->tok_types, "token_types.weight", tt->ne[1], hp->n_embd, 1)) ||
        (st = bind(m, &m->tok_embd_norm, "token_embd_norm.weight", 0, hp->n_embd, 1)) ||
        (st = bind(m, &m->tok_embd_norm_b, "token_embd_norm.bias", 0, hp->n_embd, 1)))
      return st;
  } else {
    if ((st = bind(m, &m->output_norm, "output_norm.weight", 0, hp->n_embd, 1))) return st;
    if ((st = bind(m, &m->output, "output.weight", hp->n_vocab, hp->n_embd, 0))) return st;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */
  }
  m->layers = nllm_source_alloc(&m->src, (size_t)hp->n_layer * sizeof *m->layers);
  if (!m->layers) return nllm_err(NLLM_ERR_NOMEM, "out of memory (layers)");
  for (int il = 0; il < hp->n_layer; il++)
    if ((st = bind_layer(m, il))) return st;
  return NLLM_OK;
}

static nllm_status load_tokenizer(nllm_model *m) {
  if (nllm_source_get(&m->src, "tokenizer.ggml.model"))
    return nllm_tokenizer_from_source(&m->src, &m->tok);
  const char *dir = NULL;
  if (nllm_source_get_str(&m->src, "tokenizer.hf.dir", &dir) == NLLM_OK) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    return nllm_tokenizer_from_hf(path, &m->tok);
  }
  return nllm_err(NLLM_ERR_FORMAT,
                  "%s: no tokenizer (neither tokenizer.ggml.* keys nor a "
                  "tokenizer.json)",
                  m->src.path);
}

static nllm_status load_eog(nllm_model *m) {
  const nllm_value *v = nllm_source_get(&m->src, "nllm.eog_token_ids");
  if (!v) return NLLM_OK;
  uint32_t et = v->type == NLLM_V_ARRAY ? v->v.arr.elem_type : NLLM_V_COUNT;
  /* token ids are integers: a float array (possibly holding NaN) is a broken file */
  if (et == NLLM_V_F32 || et == NLLM_V_F64 || et == NLLM_V_BOOL || !nllm_value_type_size(et))
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: metadata key 'nllm.eog_token_ids' must be an array of integer token ids "
                    "(it is %s%s%s)",
                    m->src.path, v->type == NLLM_V_ARRAY ? "an array of " : "a ",
                    nllm_value_type_name(v->type == NLLM_V_ARRAY ? et : v->type),
                    v->type == NLLM_V_ARRAY ? "" : " value");
  if (v->v.arr.n > 64)
    return nllm_err(NLLM_ERR_FORMAT, "%s: 'nllm.eog_token_ids' lists %llu ids (at most 64)",
                    m->src.path, (unsigned long long)v->v.arr.n);
  m->eog_ids = nllm_source_alloc(&m->src, (size_t)(v->v.arr.n ? v->v.arr.n : 1) * sizeof(int32_t));
  if (!m->eog_ids) return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  for (uint64_t i = 0; i < v->v.arr.n; i++) {
    int64_t id = nllm_value_arr_int(v, i);
    if (id < 0 || id > INT32_MAX) /* a u64 above 2^63 reads as negative */
      return nllm_err(NLLM_ERR_FORMAT, "%s: 'nllm.eog_token_ids'[%llu] = %lld is not a token id",
                      m->src.path, (unsigned long long)i, (long long)id);
    m->eog_ids[i] = (int32_t)id;
  }
  m->n_eog = (int32_t)v->v.arr.n;
  return NLLM_OK;
}

/* The layer index of a "blk.N." tensor, or -1 for the model-wide ones. */
static long tensor_layer(const char *name) {
  if (strncmp(name, "blk.", 4) != 0) return -1;
  char *end;
  long il = strtol(name + 4, &end, 10);
  return end > name + 4 && *end == '.' ? il : -1;
}

/* Offload takes the last n_gpu_layers layers, and the embedding and output head only with all
 * of them (nllm_model_offload); everything else is the CPU's. */
static int cpu_computes(const nllm_tensor *t, void *user) {
  const int32_t *first_gpu_layer = user;
  long il = tensor_layer(t->name);
  return il < 0 ? *first_gpu_layer > 0 : il < *first_gpu_layer;
}

static nllm_status copy_cpu_weights(nllm_model *m, int32_t n_gpu_layers) {
  const int32_t nl = m->hp.n_layer;
  int32_t first_gpu_layer = n_gpu_layers < 0 || n_gpu_layers >= nl ? 0 : nl - n_gpu_layers;
  return nllm_source_copy_tensors(&m->src, cpu_computes, &first_gpu_layer);
}

/* ---------------------------------------------------------------- weights kept packed
 * The CPU's matmul weights in a format whose row keeps them packed (qtypes.h prepack) are
 * repacked once here into the layout of the tier's interleaved kernels, which then serve every
 * token count without repacking per matmul (kernels/ops.h nllm_matmul_pk). Their plain rows stay
 * where the file's mapping has them, so that whatever reads `data` (the tier capped after the
 * load, rows past the last whole group, a tensor dump) still reads them, but their pages are
 * given back: the packed copy takes the memory the plain one took (AVX-512's Q8_0 layout 6%
 * more). Only the dense layer
 * matrices and an untied output head: get_rows reads the embedding (and a tied head) plain, the
 * expert kernel reads its stacked matrices plain. */

/* The matrices a prepack may keep packed; returns their count (at most cap). */
static int matmul_weights(nllm_model *m, nllm_weight **w, int cap) {
  int n = 0;
#define ADD(x)                                              \
  do {                                                      \
    if ((x).data && (x).rows > 1 && n < cap) w[n++] = &(x); \
  } while (0)
  for (int il = 0; il < m->hp.n_layer; il++) {
    nllm_layer *L = &m->layers[il];
    ADD(L->wq);
    ADD(L->wk);
    ADD(L->wv);
    ADD(L->wo);
    ADD(L->w_gate);
    ADD(L->w_up);
    ADD(L->w_down);
    ADD(L->ffn_gate_shexp);
    ADD(L->ffn_up_shexp);
    ADD(L->ffn_down_shexp);
  }
  if (m->output.data != m->tok_embd.data) ADD(m->output);
#undef ADD
  return n;
}

typedef struct prepacked {
  const void *plain, *packed;
  void (*layout)(void);
  size_t plain_bytes, packed_bytes; /* the packed copy may be larger (qtypes.h) */
  uintptr_t lo, hi; /* the whole pages of the plain rows, given back to the file */
} prepacked;

static int by_lo(const void *a, const void *b) {
  const prepacked *x = a, *y = b;
  return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* [s, t) of a file mapping (s page-aligned) made anonymous memory with the same bytes, in
 * chunks of up to 2 MiB along 2 MiB boundaries (huge pages where the OS gives them); tmp: 2 MiB */
#define OWN_CHUNK ((uintptr_t)2 << 20)
static int own_range(uintptr_t s, uintptr_t t, uintptr_t page, uint8_t *tmp) {
  for (uintptr_t c = s, next; c < t; c = next) {
    next = (c & ~(OWN_CHUNK - 1)) + OWN_CHUNK;
    if (next > t) next = t;
    const size_t len = (size_t)(next - c), map_len = (len + page - 1) & ~(size_t)(page - 1);
    memcpy(tmp, (const void *)c, len);
    void *p = mmap((void *)c, map_len, PROT_READ | PROT_WRITE,
                   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 0;
#if defined(MADV_HUGEPAGE)
    if (map_len == OWN_CHUNK) (void)madvise(p, map_len, MADV_HUGEPAGE);
#endif
    memcpy(p, tmp, len);
    (void)mprotect(p, map_len, PROT_READ);
  }
  return 1;
}

/* A read load (use_mmap 0) that packed weights from the mapped file: everything but the packed
 * rows' pages becomes memory of its own (the other tensors, the metadata), as a read load's
 * is, at the addresses it has, so that a file changed or truncated after the load reaches only
 * the plain rows of the packed weights, which nothing reads while the tier that packed them is
 * in use (docs/reliability.md). */
static nllm_status own_unpacked(nllm_model *m, prepacked *pk, int np, uintptr_t page) {
  qsort(pk, (size_t)np, sizeof *pk, by_lo);
  uint8_t *tmp = malloc(OWN_CHUNK);
  if (!tmp) return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  int ok = 1;
  for (int32_t i = 0; ok && i < m->src.n_maps; i++) {
    const nllm_file_map *fm = &m->src.maps[i];
    if (!fm->is_mmap || !fm->size) continue;
    const uintptr_t base = (uintptr_t)fm->data, end = base + (uintptr_t)fm->size;
    uintptr_t cur = base;
    for (int k = 0; ok && k < np; k++) {
      if (pk[k].hi <= pk[k].lo || pk[k].lo < base || pk[k].hi > end) continue;
      ok = own_range(cur, pk[k].lo, page, tmp);
      cur = pk[k].hi;
    }
    if (ok) ok = own_range(cur, end, page, tmp);
  }
  free(tmp);
  return ok ? NLLM_OK
            : nllm_err(NLLM_ERR_NOMEM, "%s: cannot map memory for the weights", m->src.path);
}

/* Whether the load may keep weights packed: a CPU-only load of the file's own weights. */
static int prepack_wanted(const nllm_model_params *p) {
  return !p->no_repack && !p->vocab_only && p->quantize_type == NLLM_TYPE_NONE &&
         p->n_gpu_layers == 0;
}

/* Packs the bound matrices that can be (the file mapped: `read` 1 when the load was asked to
 * read the weights into memory, which the tensors not packed then are) and gives the pages of
 * their plain rows back. */
static nllm_status prepack_weights(nllm_model *m, int read) {
  int cap = 10 * m->hp.n_layer + 1;
  nllm_weight **w = malloc((size_t)cap * sizeof *w);
  prepacked *pk = calloc((size_t)cap + 1, sizeof *pk);
  nllm_status st = NLLM_OK;
  if (!w || !pk) {
    st = nllm_err(NLLM_ERR_NOMEM, "out of memory");
    goto done;
  }
  const int n = matmul_weights(m, w, cap);
  size_t total = 0;
  int np = 0;
  for (int i = 0; i < n; i++) {
    const size_t b = nllm_prepack_size(w[i]->type, w[i]->rows, w[i]->cols);
    int seen = 0; /* a matrix bound twice (tied fields) is packed once */
    for (int k = 0; k < np; k++) seen |= pk[k].plain == w[i]->data;
    if (!b || seen) continue;
    pk[np++] =
        (prepacked){.plain = w[i]->data,
                    .plain_bytes = nllm_prepack_plain_size(w[i]->type, w[i]->rows, w[i]->cols),
                    .packed_bytes = b};
    total += (b + 63) & ~(size_t)63;
  }
  uint8_t *buf = total ? nllm_source_alloc(&m->src, total) : NULL;
  if (total && !buf) {
    st = nllm_err(NLLM_ERR_NOMEM, "%s: cannot allocate %.1f MiB for the packed weights",
                  m->src.path, (double)total / 1048576.0);
    goto done;
  }
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  size_t off = 0;
  for (int k = 0; k < np; k++) {
    for (int i = 0; i < n; i++)
      if (w[i]->data == pk[k].plain) {
        if (!pk[k].packed) {
          nllm_packed p;
          nllm_prepack(w[i]->data, w[i]->type, w[i]->rows, w[i]->cols, buf + off, m->n_threads,
                       &p);
          pk[k].packed = p.data;
          pk[k].layout = p.layout;
          off += (pk[k].packed_bytes + 63) & ~(size_t)63;
        }
        w[i]->packed = pk[k].packed;
        w[i]->packed_layout = pk[k].layout;
      }
    /* the plain rows' whole pages back to the file at once (they read again from it if
     * touched): the load holds the plain and the packed copy of one matrix at a time */
    pk[k].lo = ((uintptr_t)pk[k].plain + page - 1) & ~(page - 1);
    pk[k].hi = ((uintptr_t)pk[k].plain + pk[k].plain_bytes) & ~(page - 1);
    if (pk[k].hi > pk[k].lo)
      (void)madvise((void *)pk[k].lo, (size_t)(pk[k].hi - pk[k].lo), MADV_DONTNEED);
  }
  if (read) st = own_unpacked(m, pk, np, page);
done:
  free(w);
  free(pk);
  return st;
}

nllm_status nllm_mdl_load(const char *path, const nllm_model_params *params, nllm_model **out) {
  *out = NULL;
  nllm_model *m = nllm_calloc(1, sizeof *m);
  if (!m) return nllm_err(NLLM_ERR_NOMEM, "out of memory");
  if (params->progress && params->progress(0.0f, params->progress_user_data)) {
    free(m);
    return nllm_err(NLLM_ERR_ABORTED, "%s: loading cancelled by the progress callback", path);
  }
  /* A lone tokenizer.json is a tokenizer-only model (nllm tokenize --tokenizer); a folder whose
   * name ends in ".json" is still a model folder. */
  size_t plen = strlen(path);
  struct stat sb;
  int json_only = plen >= 5 && strcmp(path + plen - 5, ".json") == 0 &&
                  !(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
  /* Reading the weights into memory (huge pages where the OS allows) makes CPU decode faster
   * than 4 KiB file pages (docs/performance.md), but only weights the CPU computes with are worth
   * the copy: a tokenizer-only load and quantize-on-load (the results are new buffers anyway) map
   * the file whatever use_mmap says, and a GPU load maps it and copies only the CPU's share
   * once the layer count is known (copy_cpu_weights). */
  const int map = params->use_mmap || params->vocab_only || json_only ||
                  params->quantize_type != NLLM_TYPE_NONE || params->n_gpu_layers != 0 ||
                  prepack_wanted(params);
  const int copy_later =
      !params->use_mmap && params->quantize_type == NLLM_TYPE_NONE && params->n_gpu_layers != 0;
  nllm_status st = json_only ? NLLM_OK : nllm_source_open(path, map, &m->src);
  if (st) {
    free(m);
    return st;
  }
  m->vocab_only = params->vocab_only || json_only;
  m->name = "";
  if (json_only) {
    if (!(m->src.path = nllm_strdup(path))) {
      st = nllm_err(NLLM_ERR_NOMEM, "out of memory");
      goto fail;
    }
    if ((st = nllm_tokenizer_from_hf(path, &m->tok))) goto fail;
    m->hp.n_vocab = nllm_tokenizer_n_vocab(m->tok);
    m->n_ctx_default = 4096;
    *out = m;
    return NLLM_OK;
  }
  m->n_threads = params->n_threads > 0 ? params->n_threads : nllm_default_threads();
  nllm_source_get_str(&m->src, "general.name", &m->name);

  if ((st = load_tokenizer(m)) || (st = load_eog(m))) goto fail;
  if (!m->vocab_only) {
    const char *arch_name;
    if ((st = nllm_source_get_str(&m->src, "general.architecture", &arch_name))) goto fail;
    m->arch = nllm_arch_find(arch_name);
    if (!m->arch) {
      char names[256];
      arch_names(names, sizeof names);
      st = nllm_err(NLLM_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)",
                    path, arch_name, names);
      goto fail;
    }
    if ((st = read_hparams(m))) goto fail;
    if (copy_later && (st = copy_cpu_weights(m, params->n_gpu_layers))) goto fail;
    if (params->quantize_type != NLLM_TYPE_NONE) {
      const nllm_qtype *qt = nllm_qtype_get(params->quantize_type);
      if (!qt || !qt->from_float_ref || params->quantize_type == NLLM_TYPE_Q8_K) {
        st = nllm_err(NLLM_ERR_INVALID_ARG,
                      "quantize_type %d is not a weight type nativellm can "
                      "quantize to",
                      params->quantize_type);
        goto fail;
      }
      if ((st = nllm_source_quantize_inplace(&m->src, params->quantize_type, m->n_threads,
                                             params->progress, params->progress_user_data)))
        goto fail;
    }
    if ((st = bind_tensors(m)) || (st = build_rope(m))) goto fail;
    /* (a file this build reads rather than maps, as a folder's, is read whatever map says) */
    if (prepack_wanted(params) && (st = prepack_weights(m, !params->use_mmap))) goto fail;
    if (nllm_tokenizer_n_vocab(m->tok) > m->hp.n_vocab) {
      st = nllm_err(NLLM_ERR_FORMAT,
                    "%s: tokenizer has %d tokens but token_embd.weight only %d "
                    "rows",
                    path, nllm_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
      goto fail;
    }
  } else {
    m->hp.n_vocab = nllm_tokenizer_n_vocab(m->tok);
  }
  if (params->progress && params->progress(1.0f, params->progress_user_data)) {
    st = nllm_err(NLLM_ERR_ABORTED, "%s: loading cancelled by the progress callback", path);
    goto fail;
  }
  if (!m->vocab_only && params->n_gpu_layers != 0 && m->arch->layernorm) {
    st = nllm_err(NLLM_ERR_UNSUPPORTED, "%s: '%s' models run on the CPU only (n_gpu_layers 0)",
                  path, m->arch->name);
    goto fail;
  }
  if (!m->vocab_only && params->n_gpu_layers != 0 &&
      (st = nllm_model_offload(m, params->n_gpu_layers)))
    goto fail;
  m->n_ctx_default = params->n_ctx_default > 0                           ? params->n_ctx_default
                     : m->hp.n_ctx_train > 0 && m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train
                                                                         : 4096;
  *out = m;
  return NLLM_OK;
fail:
  nllm_mdl_free(m);
  return st;
}

void nllm_mdl_free(nllm_model *m) {
  if (!m) return;
  nllm_model_offload_free(m);
  nllm_tokenizer_free(m->tok);
  nllm_source_free(&m->src);
  free(m);
}

int nllm_model_is_eog(const nllm_model *m, nllm_token t) {
  for (int32_t i = 0; i < m->n_eog; i++)
    if (m->eog_ids[i] == t) return 1;
  return nllm_tokenizer_is_eog(m->tok, t);
}
