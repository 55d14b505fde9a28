/* Loading LoRA adapters (PEFT folders and GGUF adapter files) and checking them against the
 * base model. Every tensor pair becomes one nllm_lora_mat (F32, F16 or BF16), so the base
 * weights stay shared and untouched (quantized or not) and the pass adds s * scale * B (A x). */
#include "model/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/json.h"
#include "formats/hf.h"
#include "formats/safetensors.h"
#include "ops.h"
#include "qtypes.h"

/* GGUF stem after "blk.N." -> slot. */
static const struct {
  const char *stem;
  int slot;
} slot_names[] = {
    {"attn_q", NLLM_LORA_Q},  {"attn_qkv", NLLM_LORA_Q},    {"attn_k", NLLM_LORA_K},
    {"attn_v", NLLM_LORA_V},  {"attn_output", NLLM_LORA_O}, {"ffn_gate", NLLM_LORA_GATE},
    {"ffn_up", NLLM_LORA_UP}, {"ffn_down", NLLM_LORA_DOWN},
};

int nllm_lora_slot_of(const char *name, int32_t n_layer, int *il) {
  int layer = -1, used = 0;
  char stem[64];
  if (sscanf(name, "blk.%d.%63[a-z_].weight%n", &layer, stem, &used) != 2 || name[used] != 0)
    return -1;
  if (layer < 0 || layer >= n_layer) return -1;
  for (size_t i = 0; i < sizeof slot_names / sizeof slot_names[0]; i++)
    if (!strcmp(stem, slot_names[i].stem)) {
      *il = layer;
      return slot_names[i].slot;
    }
  return -1;
}

const nllm_weight *nllm_lora_base_weight(const nllm_model *m, int il, int slot) {
  const nllm_layer *L = &m->layers[il];
  const nllm_weight *w[NLLM_LORA_SLOTS] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                           &L->w_gate, &L->w_up, &L->w_down};
  return slot >= 0 && slot < NLLM_LORA_SLOTS && w[slot]->data ? w[slot] : NULL;
}

static void lora_free(nllm_lora_adapter *a) {
  if (!a) return;
  if (a->mats && a->model)
    for (int64_t i = 0; i < (int64_t)a->model->hp.n_layer * NLLM_LORA_SLOTS; i++) {
      nllm_aligned_free(a->mats[i].a);
      nllm_aligned_free(a->mats[i].bt);
    }
  free(a->mats);
  free(a->name);
  free(a->path);
  free(a);
}

void nllm_lora_retain(nllm_lora_adapter *a) {
  if (a) atomic_fetch_add(&a->refs, 1);
}

void nllm_lora_release(nllm_lora_adapter *a) {
  if (a && atomic_fetch_sub(&a->refs, 1) == 1) lora_free(a);
}

static nllm_status lora_new(const nllm_model *m, const char *path, nllm_lora_adapter **out) {
  nllm_lora_adapter *a = nllm_calloc(1, sizeof *a);
  if (!a) return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
  a->model = m;
  atomic_init(&a->refs, 1);
  a->mats = nllm_calloc((size_t)m->hp.n_layer * NLLM_LORA_SLOTS, sizeof *a->mats);
  a->path = nllm_strdup(path);
  const char *base = strrchr(path, '/');
  a->name = nllm_strdup(base && base[1] ? base + 1 : path);
  if (!a->mats || !a->path || !a->name) {
    lora_free(a);
    return nllm_err(NLLM_ERR_NOMEM, "%s: out of memory", path);
  }
  *out = a;
  return NLLM_OK;
}

/* Row order of a q/k weight: GGUF's Llama files hold each head's rows as rotary pairs
 * (2i, 2i+1), HF's as halves (i, i + d/2). to_pairs: halves -> pairs; else back. */
static void permute_rows(float *b, int64_t rows, int64_t r, int64_t n_head, int to_pairs,
                         float *tmp) {
  const int64_t hd = rows / n_head, half = hd / 2;
  memcpy(tmp, b, (size_t)(rows * r) * sizeof(float));
  for (int64_t h = 0; h < n_head; h++)
    for (int64_t i = 0; i < half; i++)
      for (int64_t j = 0; j < 2; j++) {
        const int64_t pairs = h * hd + 2 * i + j, halves = h * hd + j * half + i;
        const int64_t dst = to_pairs ? pairs : halves, src = to_pairs ? halves : pairs;
        memcpy(b + dst * r, tmp + src * r, (size_t)r * sizeof(float));
      }
}

static int is_float_type(int32_t t) {
  return t == NLLM_TYPE_F32 || t == NLLM_TYPE_F16 || t == NLLM_TYPE_BF16;
}

static float *to_f32(const nllm_tensor *t) {
  const int64_t n = t->ne[0] * t->ne[1];
  float *f = nllm_aligned_alloc((size_t)n * sizeof(float));
  if (f) nllm_qtype_get(t->type)->to_float(t->data, f, n);
  return f;
}

/* F16 keeps 11 bits only from 2^-14 up to 65504: before an F32 (or BF16) matrix is rounded to
 * it, it is scaled by the power of two that puts its largest magnitude in [2^14, 2^15), so no
 * value overflows and only those 2^29 below the largest lose bits as subnormals. Exact in F32;
 * returns the inverse factor, which the pair's scale takes (1: all zero or not finite). */
static float f16_fit(float *v, int64_t n) {
  float mx = 0;
  for (int64_t i = 0; i < n; i++) {
    const float a = fabsf(v[i]);
    if (!isfinite(a)) return 1.0f;
    if (a > mx) mx = a;
  }
  if (mx == 0) return 1.0f;
  int e;
  frexpf(mx, &e); /* mx in [2^(e-1), 2^e) */
  int k = 15 - e;
  if (k > 60) k = 60; /* a matrix this small changes nothing; keep the inverse a normal float */
  for (int64_t i = 0; i < n; i++) v[i] = ldexpf(v[i], k);
  return ldexpf(1.0f, -k);
}

/* v (n floats, read from a tensor of type from) as the adapter keeps it: v itself in F32, else
 * a new copy in F16 or BF16 (exact when v holds that type's values). *factor: what the pair's
 * scale is multiplied by (f16_fit's). NULL: no memory. */
static void *stored(float *v, int64_t n, int32_t from, int32_t type, float *factor) {
  *factor = 1.0f;
  if (type == NLLM_TYPE_F32) return v;
  if (type == NLLM_TYPE_F16 && from != NLLM_TYPE_F16) *factor = f16_fit(v, n);
  uint16_t *h = nllm_aligned_alloc((size_t)n * sizeof(uint16_t));
  if (h) nllm_qtype_get(type)->from_float_ref(v, h, n);
  return h;
}

/* The type a pair is kept in. A pair of one half type keeps it (the kernels widen each weight
 * exactly); any other becomes the requested type, by default (NLLM_TYPE_NONE) F16 next to a
 * quantized base matrix, whose own rounding is several times F16's, and F32 next to a float
 * one, where F16 would be the larger error (docs/api.md has the figures). */
static int32_t kept_type(const nllm_tensor *ta, const nllm_tensor *tb, const nllm_weight *w,
                         int32_t want) {
  if (ta->type == tb->type && ta->type != NLLM_TYPE_F32) return ta->type;
  if (want != NLLM_TYPE_NONE) return want;
  return is_float_type(w->type) ? NLLM_TYPE_F32 : NLLM_TYPE_F16;
}

/* What the adapter file says about the layout and scale of its pairs. */
typedef struct lora_file {
  const char *file;    /* for messages */
  int rows_in_pairs;   /* q/k rows of lora_b in GGUF's rotary-pair order */
  float alpha;         /* scale = alpha / r (alpha 0: 1, as llama.cpp) */
  int rslora;          /* scale = alpha / sqrt(r) */
  int32_t config_r;    /* PEFT's r, which every pair must have; 0: any */
  int32_t weight_type; /* nllm_lora_adapter_params.weight_type */
} lora_file;

/* Checks one A/B pair against the base tensor base_name and stores it. */
static nllm_status add_pair(nllm_lora_adapter *ad, const lora_file *lf, const char *base_name,
                            const nllm_tensor *ta, const nllm_tensor *tb) {
  const nllm_model *m = ad->model;
  if (!nllm_source_tensor(&m->src, base_name))
    return nllm_err(
        NLLM_ERR_FORMAT,
        "%s: adapter tensor '%s' is for '%s', which the base model %s has no tensor named",
        lf->file, ta->name, base_name, m->src.path);
  int il = -1, slot = nllm_lora_slot_of(base_name, m->hp.n_layer, &il);
  const nllm_weight *w = slot >= 0 ? nllm_lora_base_weight(m, il, slot) : NULL;
  if (!w)
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: adapter tensor '%s' changes '%s'; nativellm adapts only the attention "
                    "and feed-forward matrices of the layers",
                    lf->file, ta->name, base_name);
  for (int k = 0; k < 2; k++) {
    const nllm_tensor *t = k ? tb : ta;
    if (!is_float_type(t->type) || !nllm_qtype_get(t->type))
      return nllm_err(NLLM_ERR_UNSUPPORTED,
                      "%s: adapter tensor '%s' has type %d; LoRA A/B must be F32, F16 or BF16",
                      lf->file, t->name, t->type);
    if (t->n_dims != 2 || t->ne[2] != 1 || t->ne[3] != 1)
      return nllm_err(NLLM_ERR_FORMAT, "%s: adapter tensor '%s' is not a matrix (%d dimensions)",
                      lf->file, t->name, t->n_dims);
  }
  const int64_t in = ta->ne[0], r = ta->ne[1], rb = tb->ne[0], out = tb->ne[1];
  if (in != w->cols || out != w->rows)
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: adapter tensors '%s' [%lld x %lld] and '%s' [%lld x %lld] do not fit "
                    "'%s' (%lld outputs x %lld inputs): A must be [r x %lld], B [%lld x r]",
                    lf->file, ta->name, (long long)r, (long long)in, tb->name, (long long)out,
                    (long long)rb, base_name, (long long)w->rows, (long long)w->cols,
                    (long long)w->cols, (long long)w->rows);
  if (r != rb || r < 1 || r > 65536)
    return nllm_err(
        NLLM_ERR_FORMAT,
        "%s: adapter tensors '%s' (rank %lld) and '%s' (rank %lld) disagree on the rank", lf->file,
        ta->name, (long long)r, tb->name, (long long)rb);
  if (lf->config_r && r != lf->config_r)
    return nllm_err(NLLM_ERR_FORMAT, "%s: adapter tensor '%s' has rank %lld, the config's r is %d",
                    lf->file, ta->name, (long long)r, lf->config_r);
  nllm_lora_mat *lm = &ad->mats[(size_t)il * NLLM_LORA_SLOTS + (size_t)slot];
  if (lm->r)
    return nllm_err(NLLM_ERR_FORMAT, "%s: two adapter tensor pairs change '%s'", lf->file,
                    base_name);
  float *a = to_f32(ta), *b = to_f32(tb);
  float *tmp = nllm_aligned_alloc((size_t)nllm_lowrank_bt_size(r, out) * sizeof(float));
  nllm_status st = NLLM_OK;
  float scale_by = 1.0f;
  if (!a || !b || !tmp) {
    st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory for '%s'", lf->file, ta->name);
  } else {
    /* q/k rows follow the base's rope layout: only Llama's GGUF files store them as pairs */
    const int base_pairs = !strcmp(m->arch->name, "llama") && !m->hp.rope_neox;
    const int64_t heads = slot == NLLM_LORA_Q ? m->hp.n_head : m->hp.n_head_kv;
    if ((slot == NLLM_LORA_Q || slot == NLLM_LORA_K) && !m->arch->fused_qkv &&
        base_pairs != lf->rows_in_pairs)
      permute_rows(b, out, r, heads, base_pairs, tmp);
    /* B packed for the kernels (kernels/ops.h) */
    for (int64_t i = 0; i < nllm_lowrank_bt_size(r, out); i++) tmp[i] = 0;
    for (int64_t o = 0; o < out; o++)
      for (int64_t j = 0; j < r; j++) tmp[nllm_lowrank_bt_index(r, o, j)] = b[o * r + j];
    lm->type = kept_type(ta, tb, w, lf->weight_type);
    float fa, fb;
    lm->a = stored(a, r * in, ta->type, lm->type, &fa);
    lm->bt = stored(tmp, nllm_lowrank_bt_size(r, out), tb->type, lm->type, &fb);
    scale_by = fa * fb;
    if (!lm->a || !lm->bt)
      st = nllm_err(NLLM_ERR_NOMEM, "%s: out of memory for '%s'", lf->file, ta->name);
    if (lm->a == a) a = NULL;
    if (lm->bt == tmp) tmp = NULL;
  }
  nllm_aligned_free(a);
  nllm_aligned_free(b);
  nllm_aligned_free(tmp);
  if (st) return st;
  lm->r = (int32_t)r;
  lm->scale = scale_by * (lf->alpha == 0.0f ? 1.0f
                          : lf->rslora      ? lf->alpha / sqrtf((float)r)
                                            : lf->alpha / (float)r);
  if (r > ad->max_rank) ad->max_rank = (int32_t)r;
  ad->n_mats++;
  return NLLM_OK;
}

static int ends_with(const char *s, const char *suffix, size_t *stem_len) {
  size_t n = strlen(s), k = strlen(suffix);
  if (n < k || strcmp(s + n - k, suffix)) return 0;
  *stem_len = n - k;
  return 1;
}

static nllm_status finish(nllm_lora_adapter *ad, const char *file, nllm_status st,
                          nllm_lora_adapter **out) {
  if (st == NLLM_OK && ad->n_mats == 0)
    st = nllm_err(NLLM_ERR_FORMAT, "%s: the adapter has no LoRA tensors", file);
  if (st) {
    lora_free(ad);
    return st;
  }
  *out = ad;
  return NLLM_OK;
}

/* ---------------------------------------------------------------- GGUF adapters */

static nllm_status from_gguf(const nllm_model *m, const nllm_source *src, const char *file,
                             int32_t weight_type, nllm_lora_adapter **out) {
  const char *s = NULL;
  if (nllm_source_get_str(src, "general.type", &s) != NLLM_OK || strcmp(s, "adapter"))
    return nllm_err(NLLM_ERR_FORMAT, "%s: not a GGUF adapter (general.type is '%s', not 'adapter')",
                    file, s ? s : "absent");
  s = NULL;
  if (nllm_source_get_str(src, "adapter.type", &s) != NLLM_OK || strcmp(s, "lora"))
    return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: adapter.type is '%s'; only 'lora' is supported",
                    file, s ? s : "absent");
  s = NULL;
  if (nllm_source_get_str(src, "general.architecture", &s) != NLLM_OK || strcmp(s, m->arch->name))
    return nllm_err(NLLM_ERR_FORMAT,
                    "%s: the adapter is for architecture '%s', the base model is '%s'", file,
                    s ? s : "absent", m->arch->name);
  double alpha = 0;
  nllm_status st = nllm_source_get_float(src, "adapter.lora.alpha", &alpha);
  if (st == NLLM_ERR_FORMAT) return st;
  if (!isfinite(alpha))
    return nllm_err(NLLM_ERR_FORMAT, "%s: adapter.lora.alpha is not finite", file);
  lora_file lf = {.file = file,
                  .rows_in_pairs = !strcmp(m->arch->name, "llama"),
                  .alpha = (float)alpha,
                  .weight_type = weight_type};
  nllm_lora_adapter *ad = NULL;
  if ((st = lora_new(m, file, &ad))) return st;
  if (nllm_source_get_str(src, "general.name", &s) == NLLM_OK && *s) {
    char *n = nllm_strdup(s);
    if (n) free(ad->name), ad->name = n;
  }
  ad->alpha = lf.alpha;
  for (int64_t i = 0; i < src->n_tensors && !st; i++) {
    const nllm_tensor *ta = &src->tensors[i];
    size_t stem = 0;
    if (ends_with(ta->name, ".lora_b", &stem)) continue; /* found from its lora_a */
    if (!ends_with(ta->name, ".lora_a", &stem)) {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s' is neither a .lora_a nor a .lora_b", file,
                    ta->name);
      break;
    }
    char base[256], bname[272];
    if (stem >= sizeof base) {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: tensor name '%.64s...' is too long", file, ta->name);
      break;
    }
    memcpy(base, ta->name, stem);
    base[stem] = 0;
    snprintf(bname, sizeof bname, "%s.lora_b", base);
    const nllm_tensor *tb = nllm_source_tensor(src, bname);
    if (!tb) {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s' has no '%s'", file, ta->name, bname);
      break;
    }
    st = add_pair(ad, &lf, base, ta, tb);
  }
  /* a lora_b without its lora_a */
  for (int64_t i = 0; i < src->n_tensors && !st; i++) {
    const nllm_tensor *tb = &src->tensors[i];
    size_t stem = 0;
    char aname[272];
    if (!ends_with(tb->name, ".lora_b", &stem)) continue;
    snprintf(aname, sizeof aname, "%.*s.lora_a", (int)(stem < 255 ? stem : 255), tb->name);
    if (!nllm_source_tensor(src, aname))
      st = nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s' has no '%s'", file, tb->name, aname);
  }
  return finish(ad, file, st, out);
}

nllm_status nllm_lora_load_gguf_buffer(const nllm_model *m, const uint8_t *buf, uint64_t size,
                                       const char *name, nllm_lora_adapter **out) {
  nllm_source src;
  nllm_status st = gguf_parse_buffer(buf, size, name, &src);
  if (st) return st;
  st = from_gguf(m, &src, name, NLLM_TYPE_NONE, out);
  nllm_source_free(&src);
  return st;
}

/* ---------------------------------------------------------------- PEFT folders */

static const cJSON *jget(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Reads what adapter_config.json says; refuses what would change the arithmetic unseen. */
static nllm_status peft_config(const cJSON *c, const char *file, lora_file *lf,
                               const cJSON **targets) {
  if (!cJSON_IsObject(c)) return nllm_err(NLLM_ERR_FORMAT, "%s: not a JSON object", file);
  const cJSON *v = jget(c, "peft_type");
  if (v && (!cJSON_IsString(v) || strcmp(v->valuestring, "LORA")))
    return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: peft_type is '%s'; only LORA adapters are supported",
                    file, cJSON_IsString(v) ? v->valuestring : "?");
  v = jget(c, "r");
  if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 65536 ||
      v->valuedouble != floor(v->valuedouble))
    return nllm_err(NLLM_ERR_FORMAT, "%s: 'r' must be an integer from 1 to 65536", file);
  lf->config_r = (int32_t)v->valuedouble;
  v = jget(c, "lora_alpha");
  if (v && (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)))
    return nllm_err(NLLM_ERR_FORMAT, "%s: 'lora_alpha' must be a number", file);
  /* PEFT's default lora_alpha is 8 */
  lf->alpha = v ? (float)v->valuedouble : 8.0f;
  if (lf->alpha == 0.0f)
    return nllm_err(NLLM_ERR_FORMAT, "%s: 'lora_alpha' is 0: the adapter would change nothing",
                    file);
  v = jget(c, "use_rslora");
  lf->rslora = v && cJSON_IsTrue(v);
  static const char *const refused[] = {"use_dora", "fan_in_fan_out"};
  for (size_t i = 0; i < 2; i++)
    if (cJSON_IsTrue(jget(c, refused[i])))
      return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: '%s' is true; nativellm supports plain LoRA only",
                      file, refused[i]);
  v = jget(c, "bias");
  if (v && (!cJSON_IsString(v) || strcmp(v->valuestring, "none")))
    return nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: 'bias' must be \"none\" (trained biases are not supported)", file);
  static const char *const patterns[] = {"rank_pattern", "alpha_pattern"};
  for (size_t i = 0; i < 2; i++) {
    v = jget(c, patterns[i]);
    if (v && (!cJSON_IsObject(v) || v->child))
      return nllm_err(NLLM_ERR_UNSUPPORTED, "%s: a non-empty '%s' is not supported", file,
                      patterns[i]);
  }
  *targets = jget(c, "target_modules");
  return NLLM_OK;
}

/* Whether module (its last dotted part) is listed in target_modules; a string (a regular
 * expression or "all-linear") is not checked. */
static int targeted(const cJSON *targets, const char *module, size_t len) {
  if (!cJSON_IsArray(targets)) return 1;
  const char *dot = module;
  for (size_t i = 0; i < len; i++)
    if (module[i] == '.') dot = module + i + 1;
  size_t n = len - (size_t)(dot - module);
  const cJSON *t;
  cJSON_ArrayForEach(t, targets) {
    if (cJSON_IsString(t) && strlen(t->valuestring) == n && !memcmp(t->valuestring, dot, n))
      return 1;
  }
  return 0;
}

static nllm_status from_peft(const nllm_model *m, const char *config, size_t config_len,
                             const char *config_name, const nllm_tensor_list *list,
                             const char *file, int32_t weight_type, nllm_lora_adapter **out) {
  nllm_status st = NLLM_OK;
  cJSON *c = nllm_json_parse(config, config_len, config_name, &st);
  if (!c) return st;
  lora_file lf = {.file = file, .weight_type = weight_type};
  const cJSON *targets = NULL;
  nllm_lora_adapter *ad = NULL;
  if ((st = peft_config(c, config_name, &lf, &targets)) || (st = lora_new(m, file, &ad))) {
    cJSON_Delete(c);
    return st;
  }
  ad->alpha = lf.alpha;
  static const char prefix[] = "base_model.model.";
  for (int64_t i = 0; i < list->n && !st; i++) {
    const nllm_tensor *ta = &list->t[i];
    size_t stem = 0;
    if (ends_with(ta->name, ".lora_B.weight", &stem)) continue;
    /* a module name after the prefix: "base_model.model.lora_A.weight" has none */
    if (!ends_with(ta->name, ".lora_A.weight", &stem) || stem < sizeof prefix ||
        strncmp(ta->name, prefix, sizeof prefix - 1)) {
      st = nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s' is not a LoRA weight (base_model.model.<module>.lora_A/"
                    "lora_B.weight)",
                    file, ta->name);
      break;
    }
    const char *module = ta->name + sizeof prefix - 1;
    const size_t mlen = stem - (sizeof prefix - 1);
    char hf[256], bname[256], gg[256];
    if (stem >= 200) {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: tensor name '%.64s...' is too long", file, ta->name);
      break;
    }
    if (!targeted(targets, module, mlen)) {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s' adapts a module target_modules does not list",
                    file, ta->name);
      break;
    }
    snprintf(hf, sizeof hf, "%.*s.weight", (int)mlen, module);
    snprintf(bname, sizeof bname, "%.*s.lora_B.weight", (int)stem, ta->name);
    const nllm_tensor *tb = NULL;
    for (int64_t k = 0; k < list->n && !tb; k++)
      if (!strcmp(list->t[k].name, bname)) tb = &list->t[k];
    if (!tb) {
      st = nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s' has no '%s'", file, ta->name, bname);
      break;
    }
    int plus_one = 0;
    int64_t expert = -1;
    nllm_status ms =
        hf_map_tensor_name(m->arch->name, hf, m->hp.n_layer, gg, sizeof gg, &plus_one, &expert);
    if (ms == NLLM_OK && expert >= 0) {
      st = nllm_err(NLLM_ERR_UNSUPPORTED,
                    "%s: tensor '%s' adapts the expert matrix '%s': LoRA on mixture-of-experts "
                    "experts is not supported",
                    file, ta->name, hf);
      break;
    }
    if (ms != NLLM_OK) {
      st = nllm_err(NLLM_ERR_FORMAT,
                    "%s: tensor '%s' adapts '%s', which a %s model has no weight for", file,
                    ta->name, hf, m->arch->name);
      break;
    }
    st = add_pair(ad, &lf, gg, ta, tb);
  }
  for (int64_t i = 0; i < list->n && !st; i++) {
    const nllm_tensor *tb = &list->t[i];
    size_t stem = 0;
    if (!ends_with(tb->name, ".lora_B.weight", &stem)) continue;
    char aname[272];
    snprintf(aname, sizeof aname, "%.*s.lora_A.weight", (int)(stem < 200 ? stem : 200), tb->name);
    int found = 0;
    for (int64_t k = 0; k < list->n && !found; k++) found = !strcmp(list->t[k].name, aname);
    if (!found)
      st = nllm_err(NLLM_ERR_FORMAT, "%s: tensor '%s' has no '%s'", file, tb->name, aname);
  }
  cJSON_Delete(c);
  return finish(ad, file, st, out);
}

nllm_status nllm_lora_load_peft_buffer(const nllm_model *m, const char *config, size_t config_len,
                                       const uint8_t *stbuf, uint64_t st_size, const char *name,
                                       nllm_lora_adapter **out) {
  nllm_source owner;
  memset(&owner, 0, sizeof owner);
  nllm_tensor_list list = {0};
  nllm_status st = safetensors_parse(&owner, stbuf, st_size, name, &list);
  if (!st)
    st = from_peft(m, config, config_len, "adapter_config.json", &list, name, NLLM_TYPE_NONE, out);
  nllm_tensor_list_free(&list);
  nllm_source_free(&owner);
  return st;
}

/* A PEFT folder's two files: dir/adapter_config.json, dir/adapter_model.safetensors. */
static nllm_status load_peft(const nllm_model *m, const char *dir, const char *weights,
                             int32_t weight_type, nllm_lora_adapter **out) {
  char cfg[4096], wpath[4096];
  snprintf(cfg, sizeof cfg, "%s/adapter_config.json", dir);
  if (weights)
    snprintf(wpath, sizeof wpath, "%s", weights);
  else
    snprintf(wpath, sizeof wpath, "%s/adapter_model.safetensors", dir);
  int exists = 0;
  nllm_status st = nllm_regular_file(wpath, &exists);
  if (st) return st;
  if (!exists) {
    char bin[4096];
    snprintf(bin, sizeof bin, "%s/adapter_model.bin", dir);
    if (access(bin, F_OK) == 0)
      return nllm_err(NLLM_ERR_UNSUPPORTED,
                      "%s: only adapter_model.bin (a pickle) is there; save the adapter with "
                      "safe_serialization (adapter_model.safetensors)",
                      dir);
    return nllm_err(NLLM_ERR_IO, "%s: no adapter_model.safetensors", dir);
  }
  nllm_file_map cmap;
  if ((st = nllm_file_map_open_max(cfg, 0, NLLM_HF_MAX_JSON, "adapter_config.json", &cmap)))
    return st;
  nllm_source owner;
  memset(&owner, 0, sizeof owner);
  nllm_tensor_list list = {0};
  st = safetensors_open(&owner, wpath, 0, &list);
  if (!st) st = from_peft(m, (const char *)cmap.data, cmap.size, cfg, &list, dir, weight_type, out);
  nllm_tensor_list_free(&list);
  nllm_source_free(&owner);
  nllm_file_map_close(&cmap);
  return st;
}

nllm_status nllm_lora_load(const nllm_model *m, const char *path, int32_t weight_type,
                           nllm_lora_adapter **out) {
  struct stat sb;
  if (stat(path, &sb) != 0)
    return nllm_err(NLLM_ERR_IO, "%s: no such adapter file or folder", path);
  if (S_ISDIR(sb.st_mode)) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') dir[--n] = 0;
    return load_peft(m, dir, NULL, weight_type, out);
  }
  size_t stem = 0;
  if (ends_with(path, ".safetensors", &stem)) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    return load_peft(m, dir, path, weight_type, out);
  }
  nllm_source src;
  nllm_status st = gguf_open(path, 0, &src);
  if (st) return st;
  st = from_gguf(m, &src, path, weight_type, out);
  nllm_source_free(&src);
  return st;
}

static inline float elem(int32_t type, const void *v, int64_t i) {
  if (type == NLLM_TYPE_F32) return ((const float *)v)[i];
  float f;
  nllm_qtype_get(type)->to_float_ref((const uint16_t *)v + i, &f, 1);
  return f;
}

void nllm_lora_merge(const nllm_lora_mat *lm, float s, float *w, int64_t rows, int64_t cols) {
  const float k = s * lm->scale;
  for (int64_t o = 0; o < rows; o++) {
    float *wr = w + o * cols;
    for (int64_t j = 0; j < lm->r; j++) {
      const float bj = k * elem(lm->type, lm->bt, nllm_lowrank_bt_index(lm->r, o, j));
      for (int64_t i = 0; i < cols; i++) wr[i] += bj * elem(lm->type, lm->a, j * cols + i);
    }
  }
}
