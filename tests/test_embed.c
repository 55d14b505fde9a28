/* Embeddings: pooled and per-token vectors of decoders (final-normed hidden state) and of the
 * BERT encoder, against the float64 references of ../shared/testdata/embed (README there), a
 * batch of many texts against the same texts one by one, the LayerNorm / erf-GELU kernels
 * against double references, and the statuses of misuse. */
#include <cJSON.h>

#include "nativellm.h"
#include "ops.h"
#include "qtypes.h"
#include "testutil.h"

#define MAX_SEQ 16
#define MAX_IDS 512
#define MAX_D 1024

/* One *.embeddings.txt file: the id sequences and every stored vector. */
typedef struct ref_vec {
  int seq, pooling, normalize, token; /* token -1 for pooled vectors */
  float *v;
} ref_vec;

typedef struct embed_ref {
  int n_embd, n_seq;
  int ids[MAX_SEQ][MAX_IDS], n_ids[MAX_SEQ];
  ref_vec vecs[512];
  int n_vecs;
} embed_ref;

static int pooling_code(const char *s) {
  if (!strcmp(s, "none")) return NLLM_POOLING_NONE;
  if (!strcmp(s, "mean")) return NLLM_POOLING_MEAN;
  if (!strcmp(s, "cls")) return NLLM_POOLING_CLS;
  if (!strcmp(s, "last")) return NLLM_POOLING_LAST;
  return -9;
}

static embed_ref *embed_ref_load(const char *path) {
  char *text = read_file(path, NULL);
  ck_assert_msg(text, "cannot read %s", path);
  embed_ref *r = calloc(1, sizeof *r);
  ref_vec *pending = NULL;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    if (line[0] == '#') continue;
    int s, t;
    char pool[16];
    int k;
    if (pending) {
      pending->v = malloc(sizeof(float) * (size_t)r->n_embd);
      char *p = line, *end;
      for (int i = 0; i < r->n_embd; i++, p = end) {
        pending->v[i] = strtof(p, &end);
        ck_assert_msg(end != p, "%s: short vector line", path);
      }
      pending = NULL;
    } else if (sscanf(line, "n_embd: %d", &k) == 1) {
      r->n_embd = k;
    } else if (sscanf(line, "n_seq: %d", &k) == 1) {
      r->n_seq = k;
    } else if (sscanf(line, "ids %d:", &s) == 1) {
      ck_assert(s >= 0 && s < MAX_SEQ);
      r->n_ids[s] = parse_ids(strchr(line, ':') + 1, r->ids[s], MAX_IDS);
    } else if (sscanf(line, "seq %d pooling %15s normalize %d token %d", &s, pool, &k, &t) >= 3) {
      ck_assert(r->n_vecs < 512);
      ref_vec *v = &r->vecs[r->n_vecs++];
      v->seq = s;
      v->pooling = pooling_code(pool);
      v->normalize = k;
      v->token = v->pooling == NLLM_POOLING_NONE ? t : -1;
      pending = v;
    }
  }
  free(text);
  ck_assert_msg(r->n_embd > 0 && r->n_seq > 0 && r->n_vecs > 0, "%s: nothing parsed", path);
  return r;
}

static void embed_ref_free(embed_ref *r) {
  for (int i = 0; i < r->n_vecs; i++) free(r->vecs[i].v);
  free(r);
}

static double rel_err(const float *a, const float *b, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; i++) {
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return sqrt(num / (den > 0 ? den : 1));
}

/* bf16_act: NLLM_BF16_ACT_* (the references are exact: float64 on the stored weights) */
static nllm_context *embed_ctx_mode(nllm_model *m, int n_seq, int n_ctx, int pooling, int normalize,
                                    int32_t bf16_act) {
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.bf16_activations = bf16_act;
  cp.embeddings = NLLM_EMBEDDINGS_ONLY;
  cp.pooling = pooling;
  cp.normalize = normalize;
  cp.n_seq_max = n_seq;
  cp.n_ctx = n_ctx;
  cp.n_batch = n_ctx;
  cp.kv_type = NLLM_TYPE_F32;
  nllm_context *ctx = NULL;
  ck_assert_msg(nllm_context_create(m, &cp, &ctx) == NLLM_OK, "context: %s", nllm_last_error());
  return ctx;
}

static nllm_context *embed_ctx(nllm_model *m, int n_seq, int n_ctx, int pooling, int normalize) {
  return embed_ctx_mode(m, n_seq, n_ctx, pooling, normalize, NLLM_BF16_ACT_EXACT);
}

/* Every sequence of the file in one batch (sequence s = id s); row_of[s] = its first row. */
static void decode_all(nllm_context *ctx, const embed_ref *r, int *row_of) {
  static nllm_token tok[MAX_SEQ * MAX_IDS];
  static int32_t seq[MAX_SEQ * MAX_IDS];
  int n = 0;
  for (int s = 0; s < r->n_seq; s++) {
    row_of[s] = n;
    for (int i = 0; i < r->n_ids[s]; i++, n++) tok[n] = r->ids[s][i], seq[n] = s;
  }
  nllm_batch b;
  nllm_batch_init(&b);
  b.n_tokens = n;
  b.tokens = tok;
  b.seq_id = seq;
  ck_assert_msg(nllm_decode_batch(ctx, &b) == NLLM_OK, "decode: %s", nllm_last_error());
}

/* Every stored vector of the reference against the model, each within bound in the BF16
 * activation mode bf16_act; returns the worst error. */
static double check_refs_mode(nllm_model *m, const embed_ref *r, const char *name, int32_t bf16_act,
                              double bound) {
  static const int poolings[] = {NLLM_POOLING_NONE, NLLM_POOLING_MEAN, NLLM_POOLING_CLS,
                                 NLLM_POOLING_LAST};
  int n_total = 0;
  for (int s = 0; s < r->n_seq; s++) n_total += r->n_ids[s];
  double worst = 0;
  int n_checked = 0;
  for (size_t pi = 0; pi < sizeof poolings / sizeof poolings[0]; pi++)
    for (int norm = 0; norm <= 1; norm++) {
      int any = 0;
      for (int i = 0; i < r->n_vecs; i++)
        any |= r->vecs[i].pooling == poolings[pi] && r->vecs[i].normalize == norm;
      if (!any) continue;
      nllm_context *ctx = embed_ctx_mode(m, r->n_seq, n_total, poolings[pi], norm, bf16_act);
      ck_assert_int_eq(nllm_context_pooling(ctx), poolings[pi]);
      ck_assert_int_eq(nllm_context_normalize(ctx), norm);
      int row_of[MAX_SEQ];
      decode_all(ctx, r, row_of);
      for (int i = 0; i < r->n_vecs; i++) {
        const ref_vec *v = &r->vecs[i];
        if (v->pooling != poolings[pi] || v->normalize != norm) continue;
        const float *got = NULL;
        if (v->token >= 0)
          ck_assert_int_eq(nllm_get_embeddings_ith(ctx, row_of[v->seq] + v->token, &got), NLLM_OK);
        else
          ck_assert_int_eq(nllm_get_embeddings_seq(ctx, v->seq, &got), NLLM_OK);
        double e = rel_err(got, v->v, r->n_embd);
        ck_assert_msg(e < bound, "%s seq %d pooling %d normalize %d token %d: rel err %g", name,
                      v->seq, v->pooling, v->normalize, v->token, e);
        if (e > worst) worst = e;
        n_checked++;
      }
      nllm_context_free(ctx);
    }
  ck_assert_int_eq(n_checked, r->n_vecs);
  fprintf(stderr, "%s: %d vectors, worst rel err %.3g\n", name, n_checked, worst);
  return worst;
}

static double check_refs(nllm_model *m, const embed_ref *r, const char *name) {
  return check_refs_mode(m, r, name, NLLM_BF16_ACT_EXACT, 1e-5);
}

/* ---- decoders */

static const char *const decoders[][2] = {
    {"hf/tiny-qwen3", "embed/tiny-qwen3.embeddings.txt"},
    {"hf/tiny-llama", "embed/tiny-llama.embeddings.txt"},
};

START_TEST(decoder_matches_reference) {
  char mp[1024], rp[1024];
  if (!testdata_path(mp, sizeof mp, decoders[_i][0]) ||
      !testdata_path(rp, sizeof rp, decoders[_i][1]))
    return;
  embed_ref *r = embed_ref_load(rp);
  nllm_model *m = NULL;
  ck_assert_msg(nllm_model_load(mp, NULL, &m) == NLLM_OK, "%s: %s", mp, nllm_last_error());
  ck_assert_int_eq(nllm_model_n_embd(m), r->n_embd);
  ck_assert_int_eq(nllm_model_pooling(m), NLLM_POOLING_LAST); /* a decoder's default */
  check_refs(m, r, decoders[_i][0]);
  nllm_model_free(m);
  embed_ref_free(r);
}
END_TEST

/* A batch of every text equals each text decoded alone (and logits are still there with
 * NLLM_EMBEDDINGS_WITH_LOGITS). */
START_TEST(decoder_batch_equals_one_by_one) {
  char mp[1024], rp[1024];
  if (!testdata_path(mp, sizeof mp, decoders[_i][0]) ||
      !testdata_path(rp, sizeof rp, decoders[_i][1]))
    return;
  embed_ref *r = embed_ref_load(rp);
  nllm_model *m = NULL;
  ck_assert_int_eq(nllm_model_load(mp, NULL, &m), NLLM_OK);
  const int d = r->n_embd;
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.embeddings = NLLM_EMBEDDINGS_WITH_LOGITS;
  cp.pooling = NLLM_POOLING_MEAN;
  cp.n_seq_max = r->n_seq;
  cp.n_ctx = 512;
  cp.kv_type = NLLM_TYPE_F32;
  nllm_context *ctx = NULL;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_OK);
  int row_of[MAX_SEQ];
  decode_all(ctx, r, row_of);
  float *batched = malloc(sizeof(float) * (size_t)(r->n_seq * d));
  for (int s = 0; s < r->n_seq; s++) {
    const float *v = NULL;
    ck_assert_int_eq(nllm_get_embeddings_seq(ctx, s, &v), NLLM_OK);
    memcpy(batched + s * d, v, sizeof(float) * (size_t)d);
    ck_assert_ptr_nonnull(nllm_get_logits_seq(ctx, s));
  }
  for (int s = 0; s < r->n_seq; s++) {
    nllm_seq_remove(ctx, NLLM_SEQ_ALL, -1, -1);
    ck_assert_int_eq(nllm_decode(ctx, r->ids[s], r->n_ids[s]), NLLM_OK);
    const float *v = NULL;
    ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 0, &v), NLLM_OK);
    double e = rel_err(v, batched + s * d, d);
    ck_assert_msg(e < 1e-5, "seq %d: alone vs batched rel err %g", s, e);
    /* only sequence 0 had rows in this call */
    if (r->n_seq > 1) ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 1, &v), NLLM_ERR_NOT_FOUND);
  }
  free(batched);
  nllm_context_free(ctx);
  nllm_model_free(m);
  embed_ref_free(r);
}
END_TEST

/* ---- BERT */

/* The tiny-bert folder (BertModel, BF16, its WordPiece tokenizer.json). */
static int bert_dir(char *buf, size_t cap) {
  return testdata_path(buf, cap, "embed/tiny-bert");
}

static nllm_model *bert_load(const char *dir, int32_t quantize_type) {
  nllm_model_params mp;
  nllm_model_params_init(&mp);
  mp.quantize_type = quantize_type;
  nllm_model *m = NULL;
  ck_assert_msg(nllm_model_load(dir, &mp, &m) == NLLM_OK, "%s: %s", dir, nllm_last_error());
  return m;
}

START_TEST(bert_matches_reference) {
  char dir[1024], rp[1024];
  if (!bert_dir(dir, sizeof dir) || !testdata_path(rp, sizeof rp, "embed/tiny-bert.embeddings.txt"))
    return;
  embed_ref *r = embed_ref_load(rp);
  nllm_model *m = bert_load(dir, NLLM_TYPE_NONE);
  ck_assert_str_eq(nllm_model_arch(m), "bert");
  /* sentence-transformers' modules.json + 1_Pooling: CLS, then Normalize */
  ck_assert_int_eq(nllm_model_pooling(m), NLLM_POOLING_CLS);
  ck_assert_int_eq(nllm_model_normalize(m), 1);
  check_refs(m, r, "tiny-bert");
  /* activations rounded to BF16 (the default on CPUs with AVX512_BF16): about BF16's precision
   * (2^-9 per activation) through two layers */
  check_refs_mode(m, r, "tiny-bert (BF16 activations)", NLLM_BF16_ACT_ROUND, 1e-2);
  nllm_model_free(m);
  embed_ref_free(r);
}
END_TEST

/* Text to vector: the model's own tokenizer ([CLS] ... [SEP] WordPiece ids) gives the
 * reference ids of all 8 texts, and their vectors match. Needs a build whose tokenizer reads
 * the folder's tokenizer.json (WordPiece). */
START_TEST(bert_texts_match_reference) {
  char dir[1024], rp[1024];
  if (!testdata_path(dir, sizeof dir, "embed/tiny-bert") ||
      !testdata_path(rp, sizeof rp, "embed/tiny-bert.embeddings.txt"))
    return;
  embed_ref *r = embed_ref_load(rp);
  char *text = read_file(rp, NULL);
  nllm_model *m = bert_load(dir, NLLM_TYPE_NONE);
  nllm_context *ctx = embed_ctx(m, 1, 512, NLLM_POOLING_CLS, 1);
  int checked = 0;
  for (int s = 0; s < r->n_seq; s++) {
    char key[32];
    snprintf(key, sizeof key, "\ntext %d: ", s);
    const char *p = strstr(text, key);
    ck_assert_msg(p, "no text %d", s);
    p += strlen(key);
    /* the text is a JSON string on one line */
    const char *end = strchr(p, '\n');
    char *json = strndup(p, (size_t)(end - p));
    cJSON *j = cJSON_Parse(json);
    ck_assert_msg(cJSON_IsString(j), "text %d is not a JSON string", s);
    nllm_token ids[MAX_IDS];
    int32_t n = 0;
    ck_assert_int_eq(nllm_tokenize(m, j->valuestring, -1, 1, 0, ids, MAX_IDS, &n), NLLM_OK);
    ck_assert_int_eq(n, r->n_ids[s]);
    ck_assert_msg(!memcmp(ids, r->ids[s], sizeof(nllm_token) * (size_t)n), "text %d ids", s);
    ck_assert_int_eq(nllm_decode(ctx, ids, n), NLLM_OK);
    const float *v = NULL;
    ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 0, &v), NLLM_OK);
    for (int i = 0; i < r->n_vecs; i++)
      if (r->vecs[i].seq == s && r->vecs[i].pooling == NLLM_POOLING_CLS && r->vecs[i].normalize) {
        double e = rel_err(v, r->vecs[i].v, r->n_embd);
        ck_assert_msg(e < 1e-5, "text %d: rel err %g", s, e);
        checked++;
      }
    cJSON_Delete(j);
    free(json);
  }
  ck_assert_int_eq(checked, r->n_seq);
  nllm_context_free(ctx);
  nllm_model_free(m);
  free(text);
  embed_ref_free(r);
}
END_TEST

/* nllm convert of the folder: the GGUF `bert` file (llama.cpp's tensor names and keys) gives
 * the same vectors in F32, and F16 weights stay close. */
START_TEST(bert_gguf_matches_reference) {
  char dir[1024], rp[1024];
  if (!bert_dir(dir, sizeof dir) || !testdata_path(rp, sizeof rp, "embed/tiny-bert.embeddings.txt"))
    return;
  embed_ref *r = embed_ref_load(rp);
  const char *types[] = {"F32", "F16"};
  for (int ti = 0; ti < 2; ti++) {
    char out[256];
    snprintf(out, sizeof out, "/tmp/nllm-test-embed-bert-%d-%s.gguf", (int)getuid(), types[ti]);
    nllm_convert_params cp;
    nllm_convert_params_init(&cp);
    cp.type_name = types[ti];
    ck_assert_msg(nllm_convert(dir, out, &cp, NULL) == NLLM_OK, "convert: %s", nllm_last_error());
    nllm_model *m = bert_load(out, NLLM_TYPE_NONE);
    ck_assert_str_eq(nllm_model_arch(m), "bert");
    ck_assert_int_eq(nllm_model_pooling(m), NLLM_POOLING_CLS);
    ck_assert_int_eq(nllm_model_normalize(m), 1);
    int64_t causal = 1;
    ck_assert_int_eq(nllm_model_meta_int(m, "bert.attention.causal", &causal), NLLM_OK);
    ck_assert_int_eq(causal, 0);
    if (ti == 0) {
      check_refs(m, r, "tiny-bert GGUF F32");
    } else {
      int n_total = 0;
      for (int s = 0; s < r->n_seq; s++) n_total += r->n_ids[s];
      nllm_context *ctx = embed_ctx(m, r->n_seq, n_total, NLLM_POOLING_MEAN, 1);
      int row_of[MAX_SEQ];
      decode_all(ctx, r, row_of);
      for (int i = 0; i < r->n_vecs; i++) {
        const ref_vec *v = &r->vecs[i];
        if (v->pooling != NLLM_POOLING_MEAN || !v->normalize) continue;
        const float *got = NULL;
        ck_assert_int_eq(nllm_get_embeddings_seq(ctx, v->seq, &got), NLLM_OK);
        double e = rel_err(got, v->v, r->n_embd);
        ck_assert_msg(e < 1e-2, "F16 seq %d: rel err %g", v->seq, e);
      }
      nllm_context_free(ctx);
    }
    nllm_model_free(m);
    unlink(out);
  }
  embed_ref_free(r);
}
END_TEST

/* Quantize-on-load runs the same pass: Q8_0 weights stay close to the F32 reference. The
 * bound covers Q8_0 activations too: Q8_0 weights meet them at every batch size on the SIMD
 * tiers, as in llama.cpp (a batch of 256 tokens or more used to go to sgemm with f32
 * activations, 2.5e-2 here; with Q8_0 activations the worst text is at 3.2e-2). */
START_TEST(bert_quantized_on_load) {
  char dir[1024], rp[1024];
  if (!bert_dir(dir, sizeof dir) || !testdata_path(rp, sizeof rp, "embed/tiny-bert.embeddings.txt"))
    return;
  embed_ref *r = embed_ref_load(rp);
  nllm_model *m = bert_load(dir, NLLM_TYPE_Q8_0);
  int n_total = 0;
  for (int s = 0; s < r->n_seq; s++) n_total += r->n_ids[s];
  nllm_context *ctx = embed_ctx(m, r->n_seq, n_total, NLLM_POOLING_CLS, 1);
  int row_of[MAX_SEQ];
  decode_all(ctx, r, row_of);
  int checked = 0;
  double worst = 0;
  for (int i = 0; i < r->n_vecs; i++) {
    const ref_vec *v = &r->vecs[i];
    if (v->pooling != NLLM_POOLING_CLS || !v->normalize) continue;
    const float *got = NULL;
    ck_assert_int_eq(nllm_get_embeddings_seq(ctx, v->seq, &got), NLLM_OK);
    double e = rel_err(got, v->v, r->n_embd);
    ck_assert_msg(e < 4e-2, "Q8_0 seq %d: rel err %g", v->seq, e);
    worst = e > worst ? e : worst;
    checked++;
  }
  fprintf(stderr, "tiny-bert Q8_0 on load (%s): worst rel err %.3g\n", nllm_cpu_features(), worst);
  ck_assert_int_eq(checked, r->n_seq);
  nllm_context_free(ctx);
  nllm_model_free(m);
  embed_ref_free(r);
}
END_TEST

/* Texts in one batch, in several chunks (n_batch smaller than the batch), equal each alone. */
START_TEST(bert_batch_equals_one_by_one) {
  char dir[1024], rp[1024];
  if (!bert_dir(dir, sizeof dir) || !testdata_path(rp, sizeof rp, "embed/tiny-bert.embeddings.txt"))
    return;
  embed_ref *r = embed_ref_load(rp);
  nllm_model *m = bert_load(dir, NLLM_TYPE_NONE);
  const int d = r->n_embd;
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  cp.embeddings = NLLM_EMBEDDINGS_ONLY;
  cp.pooling = NLLM_POOLING_MEAN;
  cp.n_seq_max = r->n_seq;
  cp.n_ctx = 512;
  cp.n_batch = 160; /* the 127-token text fits; the batch is cut between sequences */
  nllm_context *ctx = NULL;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_OK);
  int row_of[MAX_SEQ];
  decode_all(ctx, r, row_of);
  float *batched = malloc(sizeof(float) * (size_t)(r->n_seq * d));
  for (int s = 0; s < r->n_seq; s++) {
    const float *v = NULL;
    ck_assert_int_eq(nllm_get_embeddings_seq(ctx, s, &v), NLLM_OK);
    memcpy(batched + s * d, v, sizeof(float) * (size_t)d);
  }
  /* again, one by one, in reverse order and each as sequence 3: nothing stays between calls */
  for (int s = r->n_seq - 1; s >= 0; s--) {
    int32_t seq[MAX_IDS];
    for (int i = 0; i < r->n_ids[s]; i++) seq[i] = 3;
    nllm_batch b;
    nllm_batch_init(&b);
    b.n_tokens = r->n_ids[s];
    b.tokens = r->ids[s];
    b.seq_id = seq;
    ck_assert_int_eq(nllm_decode_batch(ctx, &b), NLLM_OK);
    const float *v = NULL;
    ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 3, &v), NLLM_OK);
    double e = rel_err(v, batched + s * d, d);
    ck_assert_msg(e < 1e-5, "seq %d: alone vs batched rel err %g", s, e);
    ck_assert_int_eq(nllm_context_pos(ctx), 0);
  }
  free(batched);
  nllm_context_free(ctx);
  nllm_model_free(m);
  embed_ref_free(r);
}
END_TEST

/* ---- misuse */

START_TEST(bad_inputs_get_statuses) {
  char mp[1024];
  if (!testdata_path(mp, sizeof mp, "hf/tiny-llama")) return;
  nllm_model *m = NULL;
  ck_assert_int_eq(nllm_model_load(mp, NULL, &m), NLLM_OK);
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  nllm_context *ctx = NULL;
  cp.embeddings = NLLM_EMBEDDINGS_ONLY;
  cp.pooling = 7;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "pooling"));
  cp.pooling = -2;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_ERR_INVALID_ARG);
  cp.pooling = NLLM_POOLING_MEAN;
  cp.normalize = 2;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_ERR_INVALID_ARG);
  cp.normalize = -1;
  cp.embeddings = 3;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_ERR_INVALID_ARG);

  /* a context without embeddings */
  nllm_context_params_init(&cp);
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_OK);
  nllm_token t[3] = {1, 2, 3};
  ck_assert_int_eq(nllm_decode(ctx, t, 3), NLLM_OK);
  const float *v = (const float *)1;
  ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 0, &v), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_null(v);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "without embeddings"));
  ck_assert_int_eq(nllm_get_embeddings_ith(ctx, 0, &v), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_context_pooling(ctx), -1);
  nllm_context_free(ctx);

  /* embeddings: sequence and row out of range, nothing decoded yet, NULL arguments */
  cp.embeddings = NLLM_EMBEDDINGS_ONLY;
  cp.n_seq_max = 2;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_OK);
  ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 0, &v), NLLM_ERR_NOT_FOUND);
  ck_assert_int_eq(nllm_decode(ctx, t, 3), NLLM_OK);
  ck_assert_ptr_null(nllm_get_logits(ctx)); /* embeddings only: no head */
  ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 0, &v), NLLM_OK);
  ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 2, &v), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_get_embeddings_seq(ctx, -1, &v), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 1, &v), NLLM_ERR_NOT_FOUND);
  ck_assert_int_eq(nllm_get_embeddings_ith(ctx, 3, &v), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_get_embeddings_ith(ctx, -1, &v), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_get_embeddings_ith(ctx, 2, &v), NLLM_OK);
  ck_assert_int_eq(nllm_get_embeddings_seq(NULL, 0, &v), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 0, NULL), NLLM_ERR_INVALID_ARG);
  nllm_context_free(ctx);

  /* pooling none: per-token only */
  cp.pooling = NLLM_POOLING_NONE;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_OK);
  ck_assert_int_eq(nllm_decode(ctx, t, 3), NLLM_OK);
  ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 0, &v), NLLM_ERR_INVALID_ARG);
  ck_assert_int_eq(nllm_get_embeddings_ith(ctx, 1, &v), NLLM_OK);
  nllm_context_free(ctx);
  nllm_model_free(m);
}
END_TEST

START_TEST(bert_bad_inputs_get_statuses) {
  char dir[1024];
  if (!bert_dir(dir, sizeof dir)) return;
  nllm_model *m = bert_load(dir, NLLM_TYPE_NONE);
  nllm_context_params cp;
  nllm_context_params_init(&cp);
  nllm_context *ctx = NULL;
  /* an encoder has no logits */
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "encoder"));
  cp.embeddings = NLLM_EMBEDDINGS_WITH_LOGITS;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_ERR_INVALID_ARG);
  cp.embeddings = NLLM_EMBEDDINGS_ONLY;
  cp.n_seq_max = 2;
  cp.n_ctx = 600;
  cp.n_batch = 8;
  ck_assert_int_eq(nllm_context_create(m, &cp, &ctx), NLLM_OK);
  nllm_token t[600];
  int32_t seq[600], pos[600];
  for (int i = 0; i < 600; i++) t[i] = 1000 + i, seq[i] = 0, pos[i] = i;
  nllm_batch b;
  nllm_batch_init(&b);
  b.tokens = t;
  b.seq_id = seq;
  /* a sequence longer than n_batch */
  b.n_tokens = 9;
  ck_assert_int_eq(nllm_decode_batch(ctx, &b), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "n_batch"));
  /* rows of a sequence not contiguous */
  b.n_tokens = 5;
  seq[1] = 1;
  ck_assert_int_eq(nllm_decode_batch(ctx, &b), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "contiguous"));
  seq[1] = 0;
  /* a position beyond the 512 position embeddings */
  pos[0] = 600;
  b.pos = pos;
  b.n_tokens = 1;
  ck_assert_int_eq(nllm_decode_batch(ctx, &b), NLLM_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(nllm_last_error(), "position"));
  b.pos = NULL;
  /* after the refusals the context works, from position 0 */
  b.n_tokens = 4;
  ck_assert_int_eq(nllm_decode_batch(ctx, &b), NLLM_OK);
  const float *v = NULL;
  ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 0, &v), NLLM_OK);
  nllm_context_free(ctx);
  nllm_model_free(m);
}
END_TEST

/* ---- hostile BERT GGUF files: a small valid one, then one defect at a time */

enum { HB_OK, HB_NO_TYPES, HB_POS_WIDTH, HB_RANK, HB_POOL_RANGE, HB_NO_BIAS, HB_N };

static void hostile_bert_write(const char *path, int defect) {
  const int d = 32, ff = 64, n_pos = 16, n_vocab = 8;
  nllm_gguf_writer *w = NULL;
  ck_assert_int_eq(nllm_gguf_writer_create(&w), NLLM_OK);
  const char *toks[8] = {"<unk>", "<s>", "</s>", "a", "b", "c", "d", "e"};
  float scores[8] = {0, 0, 0, -1, -2, -3, -4, -5};
  int32_t types[8] = {2, 3, 3, 1, 1, 1, 1, 1};
  ck_assert(!nllm_gguf_set_str(w, "general.architecture", "bert") &&
            !nllm_gguf_set_u32(w, "bert.context_length", (uint32_t)n_pos) &&
            !nllm_gguf_set_u32(w, "bert.embedding_length", (uint32_t)d) &&
            !nllm_gguf_set_u32(w, "bert.block_count", 1) &&
            !nllm_gguf_set_u32(w, "bert.feed_forward_length", (uint32_t)ff) &&
            !nllm_gguf_set_u32(w, "bert.attention.head_count", 2) &&
            !nllm_gguf_set_f32(w, "bert.attention.layer_norm_epsilon", 1e-12f) &&
            !nllm_gguf_set_u32(w, "bert.pooling_type",
                               defect == HB_RANK         ? 4
                               : defect == HB_POOL_RANGE ? 9
                                                         : 1) &&
            !nllm_gguf_set_str(w, "tokenizer.ggml.model", "llama") &&
            !nllm_gguf_set_str_array(w, "tokenizer.ggml.tokens", toks, 8) &&
            !nllm_gguf_set_f32_array(w, "tokenizer.ggml.scores", scores, 8) &&
            !nllm_gguf_set_i32_array(w, "tokenizer.ggml.token_type", types, 8));
  static float data[64 * 64];
  uint64_t rng = 7;
  for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) data[i] = 0.3f * test_frand(&rng);
  struct {
    const char *name;
    int64_t cols, rows;
  } t[] = {{"token_embd.weight", d, n_vocab},
           {"position_embd.weight", defect == HB_POS_WIDTH ? d + 1 : d, n_pos},
           {"token_types.weight", d, 2},
           {"token_embd_norm.weight", d, 1},
           {"token_embd_norm.bias", d, 1},
           {"blk.0.attn_q.weight", d, d},
           {"blk.0.attn_q.bias", d, 1},
           {"blk.0.attn_k.weight", d, d},
           {"blk.0.attn_k.bias", d, 1},
           {"blk.0.attn_v.weight", d, d},
           {"blk.0.attn_v.bias", d, 1},
           {"blk.0.attn_output.weight", d, d},
           {"blk.0.attn_output.bias", d, 1},
           {"blk.0.attn_output_norm.weight", d, 1},
           {"blk.0.attn_output_norm.bias", d, 1},
           {"blk.0.ffn_up.weight", d, ff},
           {"blk.0.ffn_up.bias", ff, 1},
           {"blk.0.ffn_down.weight", ff, d},
           {"blk.0.ffn_down.bias", d, 1},
           {"blk.0.layer_output_norm.weight", d, 1},
           {"blk.0.layer_output_norm.bias", d, 1}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    if (defect == HB_NO_TYPES && !strcmp(t[i].name, "token_types.weight")) continue;
    if (defect == HB_NO_BIAS && !strcmp(t[i].name, "blk.0.ffn_up.bias")) continue;
    int64_t ne[2] = {t[i].cols, t[i].rows};
    ck_assert_int_eq(nllm_gguf_add_tensor(w, t[i].name, NLLM_TYPE_F32, t[i].rows > 1 ? 2 : 1, ne,
                                          data, (uint64_t)(t[i].cols * t[i].rows) * 4),
                     NLLM_OK);
  }
  ck_assert_int_eq(nllm_gguf_write(w, path), NLLM_OK);
  nllm_gguf_writer_free(w);
}

START_TEST(hostile_bert_gguf_gets_statuses) {
  static const struct {
    nllm_status st;
    const char *needle;
  } want[HB_N] = {{NLLM_OK, ""},
                  {NLLM_ERR_FORMAT, "token_types"},
                  {NLLM_ERR_FORMAT, "position_embd"},
                  {NLLM_ERR_UNSUPPORTED, "rank"},
                  {NLLM_ERR_FORMAT, "pooling_type"},
                  {NLLM_ERR_FORMAT, "ffn_up.bias"}};
  char path[128];
  snprintf(path, sizeof path, "/tmp/nllm-test-embed-hostile-%d.gguf", (int)getpid());
  for (int defect = 0; defect < HB_N; defect++) {
    hostile_bert_write(path, defect);
    nllm_model *m = NULL;
    nllm_status st = nllm_model_load(path, NULL, &m);
    ck_assert_msg(st == want[defect].st, "defect %d: %s (%s)", defect, nllm_status_name(st),
                  nllm_last_error());
    if (st) {
      ck_assert_ptr_null(m);
      ck_assert_msg(strstr(nllm_last_error(), want[defect].needle), "defect %d: %s", defect,
                    nllm_last_error());
      continue;
    }
    /* the valid one: 16 positions; a 17-token text and generation are refused, 16 work */
    ck_assert_int_eq(nllm_model_is_encoder(m), 1);
    ck_assert_int_eq(nllm_model_pooling(m), NLLM_POOLING_MEAN);
    nllm_context *ctx = embed_ctx(m, 1, 32, NLLM_POOLING_MEAN, 1);
    nllm_token ids[17];
    for (int i = 0; i < 17; i++) ids[i] = 3 + i % 5;
    ck_assert_int_eq(nllm_decode(ctx, ids, 17), NLLM_ERR_INVALID_ARG);
    ck_assert_int_eq(nllm_decode(ctx, ids, 16), NLLM_OK);
    const float *v = NULL;
    ck_assert_int_eq(nllm_get_embeddings_seq(ctx, 0, &v), NLLM_OK);
    double ss = 0;
    for (int i = 0; i < 32; i++) ss += (double)v[i] * v[i];
    ck_assert_msg(fabs(ss - 1) < 1e-5, "normalized: |v|^2 = %g", ss);
    nllm_context_free(ctx);
    nllm_model_free(m);
  }
  unlink(path);
}
END_TEST

/* ---- kernels against double references, random and edge rows */

START_TEST(layernorm_and_gelu_match_reference) {
  uint64_t rng = 42;
  static float x[4 * MAX_D], out[4 * MAX_D], w[MAX_D], bias[MAX_D];
  const int widths[] = {1, 7, 64, 768, MAX_D};
  for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
    const int n = widths[wi];
    for (int i = 0; i < n; i++) w[i] = 3 * test_frand(&rng), bias[i] = 3 * test_frand(&rng);
    for (int r = 0; r < 4; r++)
      for (int i = 0; i < n; i++)
        /* row 1 constant (variance 0), row 2 a large offset (cancellation), others random */
        x[r * n + i] = r == 1   ? 3.0f
                       : r == 2 ? 1e4f + 3 * test_frand(&rng)
                                : 5 * 3 * test_frand(&rng);
    nllm_layernorm(out, x, w, bias, n, 4, 1e-12f, 2);
    for (int r = 0; r < 4; r++) {
      double mean = 0, var = 0;
      for (int i = 0; i < n; i++) mean += x[r * n + i];
      mean /= n;
      for (int i = 0; i < n; i++) var += (x[r * n + i] - mean) * (x[r * n + i] - mean);
      var /= n;
      for (int i = 0; i < n; i++) {
        double want = (x[r * n + i] - mean) / sqrt(var + 1e-12) * w[i] + bias[i];
        ck_assert_msg(fabs(out[r * n + i] - want) <= 1e-4 * (1 + fabs(want)),
                      "layernorm n %d row %d i %d: %g vs %g", n, r, i, out[r * n + i], want);
      }
    }
  }
  /* the erf GELU of every ISA tier (AVX2: its own erfc and exp) against double erf, and the
   * SIMD tiers against the scalar one; edge values first, n not a multiple of 8 */
  const int n = 5003;
  float *g = malloc(sizeof(float) * n), *g0 = malloc(sizeof(float) * n);
  float *scalar = malloc(sizeof(float) * n);
  static const float edge[] = {0,    -0.f,  1,  -1,  1e-30f, -1e-30f, 0.5f, -0.5f, 3,     -3,
                               5.5f, -5.5f, 10, -10, 30,     -30,     100,  -100,  1e30f, -1e30f};
  const int n_edge = (int)(sizeof edge / sizeof edge[0]);
  for (int i = 0; i < n; i++) g0[i] = i < n_edge ? edge[i] : 12 * test_frand(&rng);
  for (int isa = NLLM_ISA_SCALAR; isa <= nllm_qtypes_isa_max(); isa++) {
    nllm_qtypes_set_isa(isa);
    memcpy(g, g0, sizeof(float) * n);
    nllm_gelu_erf(g, n, 2);
    if (isa == NLLM_ISA_SCALAR) memcpy(scalar, g, sizeof(float) * n);
    for (int i = 0; i < n; i++) {
      double want = 0.5 * g0[i] * (1 + erf(g0[i] / sqrt(2.0)));
      ck_assert_msg(fabs(g[i] - want) <= 1e-6 * (1 + fabs(want)), "isa %d: gelu(%g) = %g, want %g",
                    isa, g0[i], g[i], want);
      ck_assert_msg(fabs(g[i] - scalar[i]) <= 1e-6 * (1 + fabs(scalar[i])),
                    "isa %d vs scalar: gelu(%g) = %g vs %g", isa, g0[i], g[i], scalar[i]);
    }
  }
  nllm_qtypes_set_isa(nllm_qtypes_isa_max());
  free(g);
  free(g0);
  free(scalar);
}
END_TEST

int main(void) {
  Suite *s = suite_create("embed");
  TCase *tc = tcase_create("embed");
  tcase_set_timeout(tc, 600);
  const int n_dec = (int)(sizeof decoders / sizeof decoders[0]);
  tcase_add_loop_test(tc, decoder_matches_reference, 0, n_dec);
  tcase_add_loop_test(tc, decoder_batch_equals_one_by_one, 0, n_dec);
  tcase_add_test(tc, bert_matches_reference);
  tcase_add_test(tc, bert_texts_match_reference);
  tcase_add_test(tc, bert_gguf_matches_reference);
  tcase_add_test(tc, bert_quantized_on_load);
  tcase_add_test(tc, bert_batch_equals_one_by_one);
  tcase_add_test(tc, bad_inputs_get_statuses);
  tcase_add_test(tc, bert_bad_inputs_get_statuses);
  tcase_add_test(tc, hostile_bert_gguf_gets_statuses);
  tcase_add_test(tc, layernorm_and_gelu_match_reference);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
