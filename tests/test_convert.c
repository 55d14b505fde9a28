/* Conversion and quantization: HF folders written as GGUF and read back equal (q/k rows
 * un-permuted for Llama); per-tensor type choices equal llama.cpp's on the golden files; the
 * quantize -> dequantize error of each format within its known bound; quantize-on-load. */
#include <math.h>
#include <sys/stat.h>

#include "convert/convert.h"
#include "convert/gguf_write.h"
#include "formats/hf.h"
#include "qtypes.h"
#include "testutil.h"

static char out_path[256];

static void make_out_path(const char *tag) {
  snprintf(out_path, sizeof out_path, "/tmp/nllm_test_convert_%d_%s.gguf", (int)getpid(), tag);
}

static int hf_dir(char *dir, size_t cap, const char *name) {
  char rel[128];
  snprintf(rel, sizeof rel, "hf/%s/config.json", name);
  if (!testdata_path(dir, cap, rel)) return 0;
  *strrchr(dir, '/') = 0;
  return 1;
}

/* Row r of a tensor as floats. */
static void row_f32(const nllm_tensor *t, int64_t r, float *out) {
  const nllm_qtype *q = nllm_qtype_get(t->type);
  ck_assert_msg(q != NULL, "type %d", t->type);
  size_t rs = nllm_row_size(t->type, t->ne[0]);
  q->to_float((const uint8_t *)t->data + (size_t)r * rs, out, t->ne[0]);
}

static int64_t n_rows(const nllm_tensor *t) {
  return t->ne[1] * t->ne[2] * t->ne[3];
}

static int ends_with(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Every tensor of a equals the one in b (values exactly, after undoing the rope permutation for
 * q/k when heads are given). */
static void assert_same_tensors(const nllm_source *a, const nllm_source *b, int64_t n_head,
                                int64_t n_head_kv) {
  for (int64_t i = 0; i < a->n_tensors; i++) {
    const nllm_tensor *ta = &a->tensors[i];
    const nllm_tensor *tb = nllm_source_tensor(b, ta->name);
    ck_assert_msg(tb != NULL, "%s missing after conversion", ta->name);
    ck_assert_int_eq(ta->n_dims, tb->n_dims);
    for (int d = 0; d < 4; d++) ck_assert_int_eq(ta->ne[d], tb->ne[d]);
    int64_t heads = ends_with(ta->name, "attn_q.weight")   ? n_head
                    : ends_with(ta->name, "attn_k.weight") ? n_head_kv
                                                           : 0;
    int64_t ne0 = ta->ne[0], rows = n_rows(ta), d = heads ? ta->ne[1] / heads : 1;
    float *ra = malloc((size_t)ne0 * sizeof *ra), *rb = malloc((size_t)ne0 * sizeof *rb);
    for (int64_t r = 0; r < rows; r++) {
      int64_t src_r = r;
      if (heads) { /* GGUF row r = (h, i, half) holds HF row (h, half, i) */
        int64_t h = r / d, k = r % d;
        src_r = h * d + (k % 2) * (d / 2) + k / 2;
      }
      row_f32(ta, src_r, ra);
      row_f32(tb, r, rb);
      ck_assert_msg(memcmp(ra, rb, (size_t)ne0 * sizeof *ra) == 0, "%s row %lld differs", ta->name,
                    (long long)r);
    }
    free(ra);
    free(rb);
  }
}

static const nllm_value *kv(const nllm_source *s, const char *key) {
  const nllm_value *v = nllm_source_get(s, key);
  ck_assert_msg(v != NULL, "key %s missing", key);
  return v;
}

START_TEST(test_convert_llama) {
  char dir[1024];
  if (!hf_dir(dir, sizeof dir, "tiny-llama")) return;
  nllm_source hf, g;
  ck_assert_msg(hf_open(dir, 1, &hf) == NLLM_OK, "%s", nllm_last_error());
  make_out_path("llama");
  ck_assert_msg(nllm_convert_source(&hf, out_path, NULL, 2, NULL, NULL) == NLLM_OK, "%s",
                nllm_last_error());
  ck_assert_msg(gguf_open(out_path, 1, &g) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(g.n_tensors, hf.n_tensors);
  assert_same_tensors(&hf, &g, 4, 2);
  /* matrices keep BF16, norms became F32 */
  ck_assert_int_eq(nllm_source_tensor(&g, "blk.0.attn_q.weight")->type, NLLM_TYPE_BF16);
  ck_assert_int_eq(nllm_source_tensor(&g, "blk.0.attn_norm.weight")->type, NLLM_TYPE_F32);
  ck_assert(nllm_source_get(&g, "nllm.rope.neox") == NULL);
  ck_assert(nllm_source_get(&g, "tokenizer.hf.dir") == NULL);
  const char *s;
  ck_assert_int_eq(nllm_source_get_str(&g, "tokenizer.ggml.model", &s), NLLM_OK);
  ck_assert_str_eq(s, "llama");
  const nllm_value *tokens = kv(&g, "tokenizer.ggml.tokens");
  const nllm_value *types = kv(&g, "tokenizer.ggml.token_type");
  const nllm_value *scores = kv(&g, "tokenizer.ggml.scores");
  ck_assert_uint_eq(tokens->v.arr.n, 32000);
  ck_assert_uint_eq(scores->v.arr.n, 32000);
  ck_assert_str_eq(nllm_value_arr_str(tokens, 1)->s, "<s>");
  ck_assert_int_eq(nllm_value_arr_int(types, 0), 2); /* <unk> */
  ck_assert_int_eq(nllm_value_arr_int(types, 1), 3); /* control */
  ck_assert_str_eq(nllm_value_arr_str(tokens, 3)->s, "<0x00>");
  ck_assert_int_eq(nllm_value_arr_int(types, 3), 6); /* byte */
  ck_assert_int_eq(nllm_value_arr_int(types, 500), 1);
  /* "▁t" is the first merge: the highest-priority score */
  ck_assert_str_eq(nllm_value_arr_str(tokens, 261)->s, "\xe2\x96\x81t");
  ck_assert(nllm_value_arr_float(scores, 261) == -1.0);
  int64_t v;
  ck_assert_int_eq(nllm_source_get_int(&g, "tokenizer.ggml.bos_token_id", &v), NLLM_OK);
  ck_assert_int_eq(v, 1);
  ck_assert_int_eq(nllm_source_get_int(&g, "llama.block_count", &v), NLLM_OK);
  ck_assert_int_eq(v, 2);
  nllm_source_free(&g);
  nllm_source_free(&hf);
  unlink(out_path);
}
END_TEST

static void convert_qwen(const char *name, int64_t n_head, int64_t n_head_kv) {
  char dir[1024];
  if (!hf_dir(dir, sizeof dir, name)) return;
  nllm_source hf, g;
  ck_assert_msg(hf_open(dir, 1, &hf) == NLLM_OK, "%s", nllm_last_error());
  make_out_path(name);
  ck_assert_msg(nllm_convert_source(&hf, out_path, "", 0, NULL, NULL) == NLLM_OK, "%s",
                nllm_last_error());
  ck_assert_msg(gguf_open(out_path, 1, &g) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(g.n_tensors, hf.n_tensors);
  assert_same_tensors(&hf, &g, 0, 0); /* qwen2/qwen3 GGUFs keep rotate_half rows */
  ck_assert(nllm_source_tensor(&g, "output.weight") == NULL);
  const char *s;
  ck_assert_int_eq(nllm_source_get_str(&g, "tokenizer.ggml.model", &s), NLLM_OK);
  ck_assert_str_eq(s, "gpt2");
  ck_assert_int_eq(nllm_source_get_str(&g, "tokenizer.ggml.pre", &s), NLLM_OK);
  ck_assert_str_eq(s, "qwen2");
  const nllm_value *tokens = kv(&g, "tokenizer.ggml.tokens");
  const nllm_value *types = kv(&g, "tokenizer.ggml.token_type");
  ck_assert_uint_eq(tokens->v.arr.n, 151936); /* padded to the embedding's rows */
  ck_assert_str_eq(nllm_value_arr_str(tokens, 151645)->s, "<|im_end|>");
  ck_assert_int_eq(nllm_value_arr_int(types, 151645), 3);
  ck_assert_int_eq(nllm_value_arr_int(types, 151935), 5);
  ck_assert_str_eq(nllm_value_arr_str(tokens, 785)->s, "The");
  const nllm_value *merges = kv(&g, "tokenizer.ggml.merges");
  ck_assert_uint_gt(merges->v.arr.n, 100000);
  ck_assert_str_eq(nllm_value_arr_str(merges, 0)->s, "\xc4\xa0 \xc4\xa0");
  ck_assert(nllm_source_get(&g, "nllm.eog_token_ids") != NULL);
  nllm_source_free(&g);
  nllm_source_free(&hf);
  unlink(out_path);
  (void)n_head;
  (void)n_head_kv;
}

START_TEST(test_convert_qwen2) {
  convert_qwen("tiny-qwen2", 4, 2);
}
END_TEST

START_TEST(test_convert_qwen3) {
  convert_qwen("tiny-qwen3", 4, 2);
}
END_TEST

START_TEST(test_convert_q8_0) {
  char dir[1024];
  if (!hf_dir(dir, sizeof dir, "tiny-qwen3")) return;
  nllm_source hf, g;
  ck_assert_msg(hf_open(dir, 1, &hf) == NLLM_OK, "%s", nllm_last_error());
  make_out_path("q8");
  ck_assert_msg(nllm_convert_source(&hf, out_path, "Q8_0", 2, NULL, NULL) == NLLM_OK, "%s",
                nllm_last_error());
  ck_assert_msg(gguf_open(out_path, 1, &g) == NLLM_OK, "%s", nllm_last_error());
  int64_t ft;
  ck_assert_int_eq(nllm_source_get_int(&g, "general.file_type", &ft), NLLM_OK);
  ck_assert_int_eq(ft, 7);
  for (int64_t i = 0; i < g.n_tensors; i++) {
    const nllm_tensor *t = &g.tensors[i];
    ck_assert_int_eq(t->type, t->n_dims >= 2 ? NLLM_TYPE_Q8_0 : NLLM_TYPE_F32);
    const nllm_tensor *o = nllm_source_tensor(&hf, t->name);
    float *a = malloc((size_t)t->ne[0] * 4), *b = malloc((size_t)t->ne[0] * 4);
    double worst = 0;
    for (int64_t r = 0; r < n_rows(t) && r < 64; r++) {
      row_f32(o, r, a);
      row_f32(t, r, b);
      double e = rel_rms(b, a, (int)t->ne[0]);
      worst = e > worst ? e : worst;
    }
    ck_assert_msg(worst < 0.01, "%s: rel rms %g", t->name, worst);
    free(a);
    free(b);
  }
  nllm_source_free(&g);
  nllm_source_free(&hf);
  unlink(out_path);
}
END_TEST

/* Converting from the load-only low-bit types: to F16 the ternary values times their fp16
 * scale are exact; to Q8_0 they keep within Q8_0's rounding. */
START_TEST(test_convert_from_lowbit) {
  static const char *types[] = {"TQ1_0", "TQ2_0"};
  char path[1024], rel[256];
  snprintf(rel, sizeof rel, "golden/models/lowbit/tiny-a-%s.gguf", types[_i / 2]);
  if (!testdata_path(path, sizeof path, rel)) return;
  const char *target = _i % 2 ? "Q8_0" : "F16";
  int32_t want = _i % 2 ? NLLM_TYPE_Q8_0 : NLLM_TYPE_F16;
  nllm_source src, g;
  ck_assert_msg(gguf_open(path, 1, &src) == NLLM_OK, "%s", nllm_last_error());
  make_out_path("lowbit");
  ck_assert_msg(nllm_convert_source(&src, out_path, target, 2, NULL, NULL) == NLLM_OK, "%s",
                nllm_last_error());
  ck_assert_msg(gguf_open(out_path, 1, &g) == NLLM_OK, "%s", nllm_last_error());
  int n_lowbit = 0;
  for (int64_t i = 0; i < g.n_tensors; i++) {
    const nllm_tensor *t = &g.tensors[i];
    const nllm_tensor *o = nllm_source_tensor(&src, t->name);
    ck_assert_ptr_nonnull(o);
    if (t->n_dims < 2) continue;
    ck_assert_int_eq(t->type, want);
    n_lowbit += o->type != NLLM_TYPE_F32;
    float *a = malloc((size_t)t->ne[0] * 4), *b = malloc((size_t)t->ne[0] * 4);
    for (int64_t r = 0; r < n_rows(t); r++) {
      row_f32(o, r, a);
      row_f32(t, r, b);
      if (want == NLLM_TYPE_F16)
        for (int64_t c = 0; c < t->ne[0]; c++)
          ck_assert_msg(a[c] == b[c], "%s row %lld col %lld: %g vs %g", t->name, (long long)r,
                        (long long)c, b[c], a[c]);
      else
        ck_assert_msg(rel_rms(b, a, (int)t->ne[0]) < 0.01, "%s row %lld", t->name, (long long)r);
    }
    free(a);
    free(b);
  }
  ck_assert_int_eq(n_lowbit, 30); /* every matrix of these files is ternary */
  nllm_source_free(&g);
  nllm_source_free(&src);
  unlink(out_path);
}
END_TEST

/* The per-tensor choices equal those llama.cpp made for the golden files (4 layers). */
START_TEST(test_preset_rules_match_golden) {
  static const char *presets[] = {"Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q4_0", "Q8_0", "Q6_K"};
  int checked = 0;
  for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
    char rel[128], path[1024];
    snprintf(rel, sizeof rel, "golden/models/tiny-a-%s.gguf", presets[p]);
    if (!testdata_path(path, sizeof path, rel)) continue;
    nllm_source g;
    ck_assert_msg(gguf_open(path, 1, &g) == NLLM_OK, "%s", nllm_last_error());
    nllm_quant_target tg;
    ck_assert_int_eq(nllm_quant_target_parse(presets[p], &tg), NLLM_OK);
    int has_output = nllm_source_tensor(&g, "output.weight") != NULL;
    for (int64_t i = 0; i < g.n_tensors; i++) {
      nllm_tensor t = g.tensors[i];
      t.type = NLLM_TYPE_F32;
      int32_t want = g.tensors[i].type, got = nllm_quant_tensor_type(&tg, &t, 4, has_output);
      ck_assert_msg(got == want, "%s %s: chose %s, llama.cpp %s", presets[p], t.name,
                    nllm_ggml_type_name(got), nllm_ggml_type_name(want));
      checked++;
    }
    nllm_source_free(&g);
  }
  if (checked && !testdata_is_subset()) ck_assert_int_gt(checked, 100); /* every preset read */
}
END_TEST

/* The same for the 8-expert moe-a files: the router kept F32, attn_k/attn_v Q8_0 and
 * attn_output Q5_K (Q4_K_M) for 8 experts, ffn_down_exps under ffn_down's rule. */
START_TEST(test_preset_rules_match_golden_moe) {
  static const char *presets[] = {"Q4_K_M", "Q4_0", "Q8_0"};
  int checked = 0;
  for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
    char rel[128], path[1024];
    snprintf(rel, sizeof rel, "golden/models/moe-a-%s.gguf", presets[p]);
    if (!testdata_path(path, sizeof path, rel)) continue;
    nllm_source g;
    ck_assert_msg(gguf_open(path, 1, &g) == NLLM_OK, "%s", nllm_last_error());
    nllm_quant_target tg;
    ck_assert_int_eq(nllm_quant_target_parse(presets[p], &tg), NLLM_OK);
    tg.n_expert = 8;
    int has_output = nllm_source_tensor(&g, "output.weight") != NULL;
    for (int64_t i = 0; i < g.n_tensors; i++) {
      nllm_tensor t = g.tensors[i];
      t.type = NLLM_TYPE_F32;
      int32_t want = g.tensors[i].type, got = nllm_quant_tensor_type(&tg, &t, 4, has_output);
      ck_assert_msg(got == want, "moe-a %s %s: chose %s, llama.cpp %s", presets[p], t.name,
                    nllm_ggml_type_name(got), nllm_ggml_type_name(want));
      checked++;
    }
    nllm_source_free(&g);
  }
  if (checked) ck_assert_int_eq(checked, 3 * (4 * 10 + 3)); /* 10 per layer + embd, norm, head */
}
END_TEST

START_TEST(test_target_parse_and_fallback) {
  nllm_quant_target tg;
  ck_assert_int_eq(nllm_quant_target_parse("q4_k_m", &tg), NLLM_OK);
  ck_assert_int_eq(tg.type, NLLM_TYPE_Q4_K);
  ck_assert_int_eq(tg.file_type, 15);
  ck_assert_int_eq(nllm_quant_target_parse(NULL, &tg), NLLM_OK);
  ck_assert_int_eq(tg.kind, NLLM_PRESET_KEEP);
  ck_assert_int_eq(nllm_quant_target_parse("Q7_X", &tg), NLLM_ERR_INVALID_ARG);
  ck_assert(strstr(nllm_last_error(), "'Q7_X'") != NULL);
  /* the load-only low-bit types are refused with the reason */
  static const char *load_only[] = {"TQ1_0", "tq2_0", "MXFP4", "IQ2_XXS", "IQ1_M"};
  for (size_t i = 0; i < sizeof load_only / sizeof load_only[0]; i++) {
    ck_assert_int_eq(nllm_quant_target_parse(load_only[i], &tg), NLLM_ERR_UNSUPPORTED);
    ck_assert(strstr(nllm_last_error(), "not a quantization target") != NULL);
    ck_assert(strstr(nllm_last_error(), "importance matrix") != NULL);
  }
  nllm_quant_target_parse("Q4_K", &tg);
  nllm_tensor t = {
      .name = "blk.0.ffn_up.weight", .type = NLLM_TYPE_BF16, .n_dims = 2, .ne = {96, 32, 1, 1}};
  ck_assert_int_eq(nllm_quant_tensor_type(&tg, &t, 2, 1), NLLM_TYPE_Q8_0); /* 96 % 256 */
  t.ne[0] = 48;
  ck_assert_int_eq(nllm_quant_tensor_type(&tg, &t, 2, 1), NLLM_TYPE_F16); /* 48 % 32 */
  t.ne[0] = 512;
  ck_assert_int_eq(nllm_quant_tensor_type(&tg, &t, 2, 1), NLLM_TYPE_Q4_K);
  t.n_dims = 1;
  ck_assert_int_eq(nllm_quant_tensor_type(&tg, &t, 2, 1), NLLM_TYPE_F32);
  /* a tied model's embedding is its output matrix */
  nllm_tensor e = {
      .name = "token_embd.weight", .type = NLLM_TYPE_BF16, .n_dims = 2, .ne = {512, 100, 1, 1}};
  ck_assert_int_eq(nllm_quant_tensor_type(&tg, &e, 2, 0), NLLM_TYPE_Q6_K);
  ck_assert_int_eq(nllm_quant_tensor_type(&tg, &e, 2, 1), NLLM_TYPE_Q4_K);
}
END_TEST

/* quantize -> dequantize on N(0,1) data: rel RMS within each format's known bound, set a little
 * above the error the format's step size predicts. Q8_0: step = amax/127 with amax of 32 normal
 * samples ~2.1 sigma, uniform rounding error step/sqrt(12) -> ~0.5% (measured 0.52%), so 0.6%.
 * Q4_0: amax/8 step -> ~7.5%; the K formats use 256-element super-blocks with 6-bit sub-block
 * scales, fitting min and scale per 32 (Q4_K ~4%, Q6_K ~1%, Q2_K ~20-25%). */
typedef struct rt_case {
  int32_t type;
  double bound;
} rt_case;

static const rt_case rt_cases[] = {
    {NLLM_TYPE_F16, 0.001},   {NLLM_TYPE_BF16, 0.005},  {NLLM_TYPE_Q8_0, 0.006},
    {NLLM_TYPE_Q4_0, 0.10},   {NLLM_TYPE_Q4_1, 0.10},   {NLLM_TYPE_Q5_0, 0.06},
    {NLLM_TYPE_Q5_1, 0.05},   {NLLM_TYPE_Q2_K, 0.40},   {NLLM_TYPE_Q3_K, 0.20},
    {NLLM_TYPE_Q4_K, 0.10},   {NLLM_TYPE_Q5_K, 0.05},   {NLLM_TYPE_Q6_K, 0.025},
    {NLLM_TYPE_IQ4_NL, 0.10}, {NLLM_TYPE_IQ4_XS, 0.10},
};

static uint64_t rng_state = 88172645463325252ull;
static double gauss(void) {
  double u[2];
  for (int i = 0; i < 2; i++) {
    u[i] = ((double)(test_xorshift(&rng_state) >> 11) + 0.5) / 9007199254740992.0;
  }
  return sqrt(-2 * log(u[0])) * cos(2 * M_PI * u[1]);
}

START_TEST(test_roundtrip_error) {
  const int64_t n = 4096;
  float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *tmp = malloc(n * sizeof *tmp);
  void *q = malloc((size_t)n * 4);
  for (int64_t i = 0; i < n; i++) x[i] = (float)gauss();
  int tested = 0;
  for (size_t c = 0; c < sizeof rt_cases / sizeof rt_cases[0]; c++) {
    int32_t t = rt_cases[c].type;
    if (!nllm_qtype_get(t)) {
      fprintf(stderr, "SKIP: round trip %s (not in this build's format table)\n",
              nllm_ggml_type_name(t));
      continue;
    }
    ck_assert_int_eq(nllm_convert_row(x, NLLM_TYPE_F32, q, t, n, tmp), NLLM_OK);
    ck_assert_int_eq(nllm_convert_row(q, t, y, NLLM_TYPE_F32, n, tmp), NLLM_OK);
    double e = rel_rms(y, x, (int)n);
    fprintf(stderr, "round trip %-7s rel RMS %.4f%% (bound %.2f%%)\n", nllm_ggml_type_name(t),
            100 * e, 100 * rt_cases[c].bound);
    ck_assert_msg(e < rt_cases[c].bound, "%s: rel RMS %g >= %g", nllm_ggml_type_name(t), e,
                  rt_cases[c].bound);
    ck_assert_msg(e > 0 || t == NLLM_TYPE_F32, "%s: no error at all is suspicious",
                  nllm_ggml_type_name(t));
    tested++;
  }
  ck_assert_int_ge(tested, 3);
  free(x);
  free(y);
  free(tmp);
  free(q);
}
END_TEST

static int32_t count_progress(float p, void *ud) {
  int *calls = ud;
  ck_assert(p >= 0 && p <= 1);
  (*calls)++;
  return 0;
}

static int32_t cancel_progress(float p, void *ud) {
  return 1;
}

START_TEST(test_quantize_inplace) {
  char dir[1024];
  if (!hf_dir(dir, sizeof dir, "tiny-qwen3")) return;
  nllm_source hf, ref;
  ck_assert_msg(hf_open(dir, 1, &hf) == NLLM_OK, "%s", nllm_last_error());
  ck_assert_int_eq(hf_open(dir, 1, &ref), NLLM_OK);
  int calls = 0;
  ck_assert_msg(
      nllm_source_quantize_inplace(&hf, NLLM_TYPE_Q8_0, 2, count_progress, &calls) == NLLM_OK, "%s",
      nllm_last_error());
  ck_assert_int_gt(calls, 5);
  for (int64_t i = 0; i < hf.n_tensors; i++) {
    const nllm_tensor *t = &hf.tensors[i], *o = &ref.tensors[i];
    ck_assert_str_eq(t->name, o->name);
    if (t->n_dims < 2) {
      ck_assert_int_eq(t->type, NLLM_TYPE_BF16);
      ck_assert(memcmp(t->data, o->data, t->nbytes) == 0);
      continue;
    }
    ck_assert_int_eq(t->type, NLLM_TYPE_Q8_0);
    ck_assert_uint_eq(t->nbytes, (uint64_t)(t->ne[0] / 32 * 34 * n_rows(t)));
    float a[128], b[128];
    row_f32(o, 0, a);
    row_f32(t, 0, b);
    ck_assert(rel_rms(b, a, (int)t->ne[0]) < 0.01);
  }
  ck_assert_int_eq(nllm_source_quantize_inplace(&ref, NLLM_TYPE_Q8_0, 1, cancel_progress, NULL),
                   NLLM_ERR_ABORTED);
  ck_assert_int_eq(nllm_source_quantize_inplace(&ref, 99, 1, NULL, NULL), NLLM_ERR_UNSUPPORTED);
  nllm_source_free(&hf);
  nllm_source_free(&ref);
}
END_TEST

START_TEST(test_convert_failures_leave_no_file) {
  char dir[1024];
  if (!hf_dir(dir, sizeof dir, "tiny-qwen2")) return;
  nllm_source hf;
  ck_assert_int_eq(hf_open(dir, 1, &hf), NLLM_OK);
  make_out_path("cancel");
  ck_assert_int_eq(nllm_convert_source(&hf, out_path, "Q8_0", 1, cancel_progress, NULL),
                   NLLM_ERR_ABORTED);
  ck_assert(access(out_path, F_OK) != 0);
  ck_assert_int_eq(nllm_convert_source(&hf, out_path, "Q9", 1, NULL, NULL), NLLM_ERR_INVALID_ARG);
  ck_assert(access(out_path, F_OK) != 0);
  ck_assert_int_ne(nllm_convert_source(&hf, "/nonexistent-dir/x.gguf", NULL, 1, NULL, NULL),
                   NLLM_OK);
  nllm_source_free(&hf);
}
END_TEST

int main(void) {
  Suite *s = suite_create("convert");
  TCase *tc = tcase_create("convert");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_convert_llama);
  tcase_add_test(tc, test_convert_qwen2);
  tcase_add_test(tc, test_convert_qwen3);
  tcase_add_test(tc, test_convert_q8_0);
  tcase_add_loop_test(tc, test_convert_from_lowbit, 0, 4);
  tcase_add_test(tc, test_preset_rules_match_golden);
  tcase_add_test(tc, test_preset_rules_match_golden_moe);
  tcase_add_test(tc, test_target_parse_and_fallback);
  tcase_add_test(tc, test_roundtrip_error);
  tcase_add_test(tc, test_quantize_inplace);
  tcase_add_test(tc, test_convert_failures_leave_no_file);
  suite_add_tcase(s, tc);
  return run_suite(s);
}
